"""The transform DAG under Airflow releases what it published to the city's open-data portal."""

from __future__ import annotations

import dag_process
import pytest
from helpers import extract_city_window
from portal_reads import assert_portal_serves_open, portal_server

pytestmark = pytest.mark.integration

START, END = "2026-07-01", "2026-07-15"  # two weeks: the gate's volume expectations pass
# Past the window and the publication delay (as in test_gate_failure: the window is loaded outside
# Airflow, so the run names its anchor rather than take other modules' older data intervals).
AS_OF = "2026-07-16T12:00:00+00:00"


def test_a_transform_run_ends_with_the_open_marts_on_the_portal(
    clean_warehouse, simulator, airflow_db, monkeypatch
):
    from civic_warehouse import airflow_glue

    extract_city_window(clean_warehouse, simulator, START, END)
    with portal_server(monkeypatch) as portal:
        state = dag_process.run_dag(
            airflow_glue.TRANSFORM_DAG_ID, {"full_refresh": False, "as_of": AS_OF}
        )

        assert state == "success"
        states = dag_process.newest_run_task_states(airflow_glue.TRANSFORM_DAG_ID)
        assert (states["publish"], states["release"]) == ("success", "success")
        assert_portal_serves_open(clean_warehouse, portal)


def test_without_a_portal_the_release_task_is_skipped_not_failed(dbt_manifest, monkeypatch):
    from airflow.sdk.exceptions import AirflowSkipException

    from civic_warehouse import airflow_glue, demo

    monkeypatch.delenv("CITY_PORTAL_URL", raising=False)
    task = demo.dagbag().dags[airflow_glue.TRANSFORM_DAG_ID].get_task("release")

    with pytest.raises(AirflowSkipException, match="CITY_PORTAL_URL is not set"):
        task.python_callable()
