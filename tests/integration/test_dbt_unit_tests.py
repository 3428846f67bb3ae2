"""dbt's unit tests run here, every one of them: the pipeline's builds leave them out (their inputs
are fixed in the project, so a daily build would prove the same thing every day)."""

from __future__ import annotations

import json

import pytest

from civic_warehouse import transform

pytestmark = pytest.mark.integration


def test_every_dbt_unit_test_runs_and_passes(clean_warehouse_module):
    url = clean_warehouse_module
    # A unit test reads the column types of its model's inputs: every model is built, on empty
    # raw tables (`--empty` cannot build models whose hooks index their sources).
    transform.run_dbt(["build", "--exclude-resource-type", "test", "unit_test"], url)

    result = transform.run_dbt(["test", "--select", "test_type:unit"], url, check=False)

    manifest = json.loads((transform.target_dir() / "manifest.json").read_text())
    statuses = {r["unique_id"]: r["status"] for r in result.results}
    assert manifest["unit_tests"], "the project declares no unit tests"
    assert set(statuses) == set(manifest["unit_tests"])
    assert not result.failures(), [f"{r['unique_id']}: {r['status']}" for r in result.failures()]
    assert set(statuses.values()) == {"pass"}
