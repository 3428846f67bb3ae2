"""The project's own style gates run with the tests: ruff on Python, sqlfluff on the dbt models."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from civic_warehouse import settings

pytestmark = pytest.mark.integration


def test_python_passes_ruff():
    ruff = Path(sys.executable).with_name("ruff")
    paths = ["plugins", "dags", "tests", "bench", "bi"]
    checked = subprocess.run(
        [str(ruff), "check", *paths], cwd=settings.PROJECT_ROOT, capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout
    formatted = subprocess.run(
        [str(ruff), "format", "--check", *paths],
        cwd=settings.PROJECT_ROOT,
        capture_output=True,
        text=True,
    )
    assert formatted.returncode == 0, formatted.stdout


def test_dbt_models_pass_sqlfluff(warehouse_url):
    linted = subprocess.run(
        [sys.executable, "-m", "civic_warehouse", "lint-sql"],
        cwd=settings.PROJECT_ROOT,
        capture_output=True,
        text=True,
    )
    assert linted.returncode == 0, linted.stdout[-3000:]


def test_dbt_manifest_passes_dbt_score(warehouse_url):
    linted = subprocess.run(
        [sys.executable, "-m", "civic_warehouse", "lint-dbt"],
        cwd=settings.PROJECT_ROOT,
        capture_output=True,
        text=True,
    )
    assert linted.returncode == 0, linted.stdout[-3000:] + linted.stderr[-2000:]


def test_dbt_score_rules_fail_a_project_that_breaks_the_structure_guide(warehouse_url, tmp_path):
    # Arrange: the project's real manifest, broken in one way per rule of dbt_conventions.
    from civic_warehouse import transform

    transform.run_dbt(["parse"])
    manifest = json.loads((transform.target_dir() / "manifest.json").read_text())
    nodes = manifest["nodes"]
    nodes["model.civic_warehouse.fct_kpi_daily"]["config"]["contract"]["enforced"] = False
    nodes["model.civic_warehouse.dim_date"]["raw_code"] += (
        "\n-- {{ source('cad', 'calls_for_service') }}"
    )
    nodes["model.civic_warehouse.dim_neighborhood"]["description"] = "Neighborhoods."
    nodes["model.civic_warehouse.int_kpi_source_coverage"]["name"] = "kpi_source_coverage"
    for test in [
        n for n in nodes.values() if (n.get("attached_node") or "").endswith(".dim_call_type")
    ]:
        del nodes[test["unique_id"]]
    for test in [n for n in nodes.values() if n["name"].startswith("relationships_fct_traffic")]:
        del nodes[test["unique_id"]]
    manifest["sources"]["source.civic_warehouse.cad.calls_for_service"]["freshness"] = None
    exposure = manifest["exposures"]["exposure.civic_warehouse.superset_city_operations"]
    exposure["owner"]["email"] = None
    broken = tmp_path / "manifest.json"
    broken.write_text(json.dumps(manifest))

    # Act
    linted = subprocess.run(
        [Path(sys.executable).with_name("dbt-score"), "lint", "--manifest", str(broken)],
        cwd=settings.PROJECT_ROOT,
        capture_output=True,
        text=True,
    )

    # Assert: it fails, and names every broken rule.
    assert linted.returncode != 0
    for rule in (
        "published_marts_enforce_contracts",
        "only_staging_reads_sources",
        "description_states_the_grain",
        "model_name_follows_its_layer",
        "grain_is_tested",
        "facts_relate_to_dimensions",
        "source_has_freshness",
        "exposure_is_owned_and_rated",
    ):
        assert f"civic_warehouse.dbt_conventions.{rule}" in linted.stdout, rule


# The project's macros that carry a rule (time zones and DST, intervals, small-cell suppression,
# KABCO, block generalization, the publication delay, confidence intervals, the disclosure policy,
# complementary suppression, withheld locations): a model applying one proves it in a unit test.
RULE_MACROS = {
    "floating_to_utc",
    "seconds_between",
    "is_small_cell",
    "kabco_most_severe",
    "generalize_to_block",
    "publication_cutoff",
    "is_publishable_call",
    "wilson_bound",
    "normal_mean_bound",
    "location_per_policy",
    "time_per_policy",
    "complementary_suppression",
    "withhold_location",
    "suppress_parts_of_a_total",
}


def test_every_model_applying_a_rule_macro_has_a_unit_test(warehouse_url):
    from civic_warehouse import transform

    transform.run_dbt(["parse"])
    manifest = json.loads((transform.target_dir() / "manifest.json").read_text())
    tested = {unit_test["model"] for unit_test in manifest["unit_tests"].values()}
    untested = {
        node["name"]: sorted(rules)
        for node in manifest["nodes"].values()
        if node["resource_type"] == "model"
        and (rules := RULE_MACROS & {m.split(".")[-1] for m in node["depends_on"]["macros"]})
        and node["name"] not in tested
    }
    assert not untested, f"models applying rule macros without unit tests: {untested}"
