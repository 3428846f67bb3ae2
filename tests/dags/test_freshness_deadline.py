"""A source whose extract run misses its freshness deadline alerts the source's owner."""

from __future__ import annotations

from civic_warehouse import airflow_glue


def test_a_missed_deadline_alerts_the_sources_owner(webhook):
    # The context Airflow's scheduler hands a deadline callback: the run and the deadline.
    context = {
        "dag_run": {
            "dag_id": "extract_service_requests",
            "dag_run_id": "scheduled__2026-03-07T05:00:00+00:00",
            "logical_date": "2026-03-07T05:00:00Z",
        },
        "deadline": {"id": "d1", "deadline_time": "2026-03-08T11:00:00Z"},
    }

    airflow_glue.on_source_overdue(source="service_requests", context=context)

    (alert,) = webhook
    assert alert["subject"] == "civic-warehouse: source service_requests is overdue"
    assert alert["departments"] == ["311 Customer Service"]
    assert alert["run_id"] == "scheduled__2026-03-07T05:00:00+00:00"
    assert "2026-03-08T11:00:00Z" in alert["text"]
