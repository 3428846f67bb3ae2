"""A DAG run whose candidate fails the gate: the run fails, the marts stay, the owner is alerted."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, HTTPServer

import psycopg
import pytest
from helpers import table_fingerprint

from civic_warehouse import pipeline
from civic_warehouse.catalog import get_source

pytestmark = pytest.mark.integration


@pytest.fixture
def webhook(monkeypatch):
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("CIVIC_ALERT_WEBHOOK_URL", f"http://127.0.0.1:{server.server_port}/hook")
    yield received
    server.shutdown()


def test_a_critical_failure_fails_the_run_and_alerts_the_owner(
    clean_warehouse, simulator, airflow_db, webhook
):
    from airflow.dag_processing.dagbag import DagBag

    from civic_warehouse import settings

    source = get_source("calls_for_service")
    pipeline.extract(
        source.name, pipeline.query_for_run(source, None, None, "2026-08-03", "2026-08-04")
    )
    pipeline.transform_candidate()
    pipeline.audit()
    pipeline.publish()
    published = table_fingerprint(clean_warehouse, "open", "fct_calls_for_service", "event_number")
    with psycopg.connect(clean_warehouse) as conn:  # the feed starts sending coordinates as 0, 0
        conn.execute(
            """
            update raw.calls_for_service set record = record || '{"latitude": "0", "longitude": "0"}'
            where record_key in (select record_key from raw.calls_for_service limit 100)
            """
        )

    dag = DagBag(dag_folder=str(settings.DAGS_DIR)).get_dag("city_pipeline")
    # A day the city system has no calls for: the run rebuilds from the (now bad) raw layer.
    run = dag.test(
        logical_date=datetime.now(UTC), run_conf={"start": "2025-06-01", "end": "2025-06-02"}
    )

    assert str(run.state) == "failed"
    states = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
    assert states["audit"] == "failed" and states["publish"] == "upstream_failed"
    assert (
        table_fingerprint(clean_warehouse, "open", "fct_calls_for_service", "event_number")
        == published
    )
    assert len(webhook) == 1
    alert = webhook[0]
    assert alert["task_id"] == "audit" and alert["departments"] == ["Emergency Communications"]
    assert "suite fct_calls_for_service" in alert["text"] and "Data Docs:" in alert["text"]
