"""Shared fixtures: a real warehouse (embedded, or WAREHOUSE_URL), the simulator, and Airflow.

Airflow reads its configuration when first imported, so its environment is set here, before any
test module imports it, and points at a throwaway AIRFLOW_HOME.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
from fake_http import listening

from civic_warehouse import settings

_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="civic-airflow-"))
os.environ.update(settings.airflow_environ() | {"AIRFLOW_HOME": str(_AIRFLOW_HOME)})

# One database per test session, so concurrent sessions on one embedded server do not collide.
TEST_DATABASE = f"civic_test_{os.getpid()}"
PROJECT_SCHEMAS = (
    "raw",
    "staging",
    "intermediate",
    "internal",
    "reference",
    "candidate",
    "open",
    "open_previous",
    "quality",
    "stewardship",
    "analytics",
)


@pytest.fixture(scope="session")
def warehouse_url() -> Iterator[str]:
    """A database of its own for the test session; WAREHOUSE_URL's database when that is set."""
    import psycopg
    from psycopg import sql

    from civic_warehouse import warehouse

    configured = os.environ.get("WAREHOUSE_URL")
    if configured:
        parts = warehouse.ConnectionParts.from_url(configured)
        with psycopg.connect(parts.url("postgres"), autocommit=True) as conn:
            if not conn.execute(
                "select 1 from pg_database where datname = %s", [parts.dbname]
            ).fetchone():
                conn.execute(sql.SQL("create database {}").format(sql.Identifier(parts.dbname)))
        url = configured
    else:
        embedded = warehouse.EmbeddedWarehouse()
        embedded.start()
        with psycopg.connect(embedded.url(), autocommit=True) as conn:
            conn.execute(
                sql.SQL("drop database if exists {} with (force)").format(
                    sql.Identifier(TEST_DATABASE)
                )
            )
            conn.execute(sql.SQL("create database {}").format(sql.Identifier(TEST_DATABASE)))
        url = embedded.url(TEST_DATABASE)
    os.environ["WAREHOUSE_URL"] = url
    reset_warehouse(url)
    yield url
    if not configured:
        with psycopg.connect(embedded.url(), autocommit=True) as conn:
            conn.execute(
                sql.SQL("drop database if exists {} with (force)").format(
                    sql.Identifier(TEST_DATABASE)
                )
            )


def reset_warehouse(url: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(url, autocommit=True) as conn:
        for schema in PROJECT_SCHEMAS:
            conn.execute(sql.SQL("drop schema if exists {} cascade").format(sql.Identifier(schema)))


@pytest.fixture
def clean_warehouse(warehouse_url: str) -> str:
    reset_warehouse(warehouse_url)
    return warehouse_url


@pytest.fixture(scope="session")
def simulator():
    from civic_warehouse.simulator.server import SimulatorServer

    with SimulatorServer(port=0) as server:
        os.environ["CITY_SIMULATOR_URL"] = server.url
        yield server


@pytest.fixture(scope="session")
def dbt_manifest() -> Path:
    """The dbt manifest the transform DAG is rendered from, written when missing or stale."""
    from civic_warehouse import airflow_glue

    return airflow_glue.ensure_dbt_manifest()


@pytest.fixture(scope="session")
def airflow_db(dbt_manifest: Path) -> Path:
    airflow = Path(sys.executable).with_name("airflow")
    subprocess.run([str(airflow), "db", "migrate"], check=True, capture_output=True, env=os.environ)
    return _AIRFLOW_HOME


@pytest.fixture(scope="module")
def clean_warehouse_module(warehouse_url: str) -> str:
    reset_warehouse(warehouse_url)
    return warehouse_url


@pytest.fixture
def webhook(monkeypatch) -> Iterator[list[dict]]:
    """A local alert webhook (``CIVIC_ALERT_WEBHOOK_URL``); yields the JSON bodies it received."""
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    with listening(Handler) as url:
        monkeypatch.setenv("CIVIC_ALERT_WEBHOOK_URL", f"{url}/hook")
        yield received
