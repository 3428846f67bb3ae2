"""A transform DAG run whose candidate fails the gate: the run fails, the marts stay, the owner is
alerted."""

from __future__ import annotations

import dag_process
import pytest
from helpers import table_fingerprint

from city_simulator.calls import CALLS_DATASET_ID
from civic_warehouse import pipeline
from civic_warehouse.catalog import get_source

pytestmark = pytest.mark.integration

START, END = "2026-08-03", "2026-08-04"
# The run's publication anchor, past the window and the publication delay: every call published.
# Named, as the window is loaded outside Airflow: left empty, the anchor is the newest data interval
# the extract DAGs loaded, and other modules' DAG runs in this session's Airflow loaded older ones.
AS_OF = "2026-08-05T12:00:00+00:00"


def test_a_critical_failure_fails_the_run_and_alerts_the_owner(
    clean_warehouse, simulator, airflow_db, webhook
):
    from civic_warehouse import airflow_glue

    source = get_source("calls_for_service")
    window = pipeline.query_for_run(source, None, None, START, END)
    pipeline.extract(source.name, window)
    pipeline.transform_candidate()
    pipeline.audit()
    pipeline.publish()
    published = table_fingerprint(clean_warehouse, "open", "fct_calls_for_service", "event_number")
    # The CAD export switches projection for a fifth of its calls (state-plane feet), and the
    # same interval is extracted again: the new versions replace the good ones in raw.
    simulator.inject.move_out_of_city(CALLS_DATASET_ID, share=0.2)
    try:
        pipeline.extract(source.name, window)
    finally:
        simulator.inject.clear()

    # The run rebuilds the marts from the (now bad) raw layer.
    state = dag_process.run_dag(airflow_glue.TRANSFORM_DAG_ID, {"as_of": AS_OF})

    assert state == "failed"
    states = dag_process.newest_run_task_states(airflow_glue.TRANSFORM_DAG_ID)
    assert states["audit"] == "failed" and states["publish"] == "upstream_failed"
    assert (
        table_fingerprint(clean_warehouse, "open", "fct_calls_for_service", "event_number")
        == published
    )
    assert len(webhook) == 1
    alert = webhook[0]
    assert alert["task_id"] == "audit" and alert["departments"] == ["Emergency Communications"]
    # The alert names the suite that caught the moved coordinates (the CAD source suite, checking staging),
    # the failed expectation, and where the Data Docs are.
    assert "suite stg_cad__calls_for_service" in alert["text"]
    assert "latitude" in alert["text"] and "Data Docs:" in alert["text"]
