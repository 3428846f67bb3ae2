"""The gate's suites, as committed: one per source and fact mart, each expectation explained."""

from __future__ import annotations

import json

import pytest

from civic_warehouse import settings
from civic_warehouse.catalog import load_catalog

SUITES = {
    path.stem: json.loads(path.read_text())
    for path in sorted((settings.EXPECTATIONS_DIR / "expectations").glob("*.json"))
}
SOURCE_SUITES = {name: suite for name, suite in SUITES.items() if name.startswith("stg_")}


@pytest.mark.parametrize("name", SUITES)
def test_every_expectation_has_one_severity_and_says_what_a_failure_means(name):
    for expectation in SUITES[name]["expectations"]:
        assert expectation["severity"] in ("critical", "warning"), expectation["id"]
        assert "severity" not in expectation["meta"], "severity lives in GX's own field only"
        assert len(expectation["notes"]) > 40, expectation["id"]


def test_every_source_in_the_catalog_has_a_suite_owned_by_its_department():
    catalog = load_catalog()
    by_source = {suite["meta"]["source"]: suite for suite in SOURCE_SUITES.values()}
    assert sorted(by_source) == sorted(catalog)
    for source, suite in by_source.items():
        assert suite["meta"]["owner"] == catalog[source].owner, source
        assert suite["meta"]["schema"] == "staging"


@pytest.mark.parametrize("name", SOURCE_SUITES)
def test_every_source_suite_checks_rejects_duplicates_and_coordinates(name):
    expectations = SOURCE_SUITES[name]["expectations"]
    descriptions = [e.get("description", "") for e in expectations]
    assert any(d.startswith("the latest extract rejected at most 1%") for d in descriptions)
    assert any(d.startswith("no duplicate ") for d in descriptions)
    assert "every number and time in the record parses as its type" in descriptions
    queries = " ".join(e["kwargs"].get("unexpected_rows_query", "") for e in expectations)
    source = SOURCE_SUITES[name]["meta"]["source"]
    assert f"where source = '{source}'" in queries  # its own rejects, not another source's
    columns = {e["kwargs"].get("column") for e in expectations}
    has_coordinates = {"latitude", "longitude"} <= columns
    assert has_coordinates or "vertex" in queries or name == "stg_mru__cases"


@pytest.mark.parametrize("name", [n for n in SOURCE_SUITES if n != "stg_gis__neighborhoods"])
def test_event_sources_check_time_order_future_and_a_volume_band(name):
    by_description = {
        e.get("description", ""): e["severity"] for e in SOURCE_SUITES[name]["expectations"]
    }
    assert any(d.startswith("timestamps in order") for d in by_description)
    assert any(d.endswith("in the future") for d in by_description)
    band = "daily volume within a band of the same weekday's trailing 4-week average"
    assert by_description[band] == "warning"
    # A day with a fraction of its usual records is missing data: it blocks.
    collapse = "no day with under a quarter of the same weekday's trailing 4-week average (at least 20 a day)"
    assert by_description[collapse] == "critical"


def test_every_open_mart_has_a_suite_that_guards_its_grain_and_row_count():
    marts = {path.stem for path in (settings.DBT_PROJECT_DIR / "models" / "marts").rglob("*.sql")}
    assert marts and marts == {name for name in SUITES if not name.startswith("stg_")}
    for name in marts:
        types = {e["type"] for e in SUITES[name]["expectations"]}
        assert "expect_table_row_count_to_be_between" in types, name
        assert types & {"expect_column_values_to_be_unique", "expect_compound_columns_to_be_unique"}
