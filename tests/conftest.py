"""Shared fixtures: a real warehouse (embedded, or WAREHOUSE_URL), the simulator, and Airflow.

Airflow reads its configuration when first imported, so its environment is set here, before any
test module imports it, and points at a throwaway AIRFLOW_HOME.

Warehouse states several modules start from (a window extracted and built, a window passed by the
gate) are made once per session and kept as template databases: a module starts from a copy
(``CREATE DATABASE ... TEMPLATE``), seconds where extracting and building again takes minutes.
"""

from __future__ import annotations

import atexit
import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

# `make test` runs the suite in two pytest-xdist workers. Each is a test session of its own, with
# what a session writes kept apart: dbt's target directory (its partial parse state), the GX
# project's results and Data Docs (a copy of expectations/, suites included), the build and run
# directories, Cosmos' partial parse cache, and its own embedded PostgreSQL server (roles are per
# server: one worker's tests of the BI role's limits must not reach the other's queries). Set
# before the project's settings are imported, as they read them once.
XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER")
if XDIST_WORKER:
    _WORKER_DIR = Path(tempfile.mkdtemp(prefix=f"civic-{XDIST_WORKER}-"))
    atexit.register(shutil.rmtree, _WORKER_DIR, ignore_errors=True)
    shutil.copytree(
        Path(__file__).resolve().parents[1] / "expectations",
        _WORKER_DIR / "expectations",
        ignore=shutil.ignore_patterns("uncommitted"),
    )
    os.environ.update(
        CW_EXPECTATIONS_DIR=str(_WORKER_DIR / "expectations"),
        CW_BUILD_DIR=str(_WORKER_DIR / "build"),
        CW_RUN_DIR=str(_WORKER_DIR / "run"),
        DBT_TARGET_PATH=str(_WORKER_DIR / "dbt-target"),
        AIRFLOW__COSMOS__CACHE_DIR=str(_WORKER_DIR / "cosmos-cache"),
    )

from fake_http import listening  # noqa: E402 (after the worker's settings)
from helpers import build_city_window, free_port  # noqa: E402

from civic_warehouse import settings  # noqa: E402

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


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get("WAREHOUSE_URL") and config.getoption("numprocesses", None):
        raise pytest.UsageError(
            "WAREHOUSE_URL names one database on a server whose roles the tests change: run the "
            "tests against it in one process (without -n), as `make test` does"
        )


@pytest.fixture(scope="session")
def warehouse_url() -> Iterator[str]:
    """A database of its own for the test session; WAREHOUSE_URL's database when that is set.

    Embedded: the project's server (.warehouse/) for a session of one process; under pytest-xdist,
    a server of the worker's own, stopped when the worker ends.
    """
    import psycopg
    from psycopg import sql

    from civic_warehouse import warehouse

    configured = os.environ.get("WAREHOUSE_URL")
    if configured:
        warehouse.ensure_database(configured)
        url = configured
    else:
        if XDIST_WORKER:
            # In the worker's own directory, not pytest's temporary one: another pytest session of
            # this user may remove old sessions' temporary directories while this one runs.
            embedded = warehouse.EmbeddedWarehouse(root=_WORKER_DIR / "warehouse", port=free_port())
        else:
            embedded = warehouse.EmbeddedWarehouse()
        # One initdb at a time: as root, the first creates the server's system user.
        with open(Path(tempfile.gettempdir()) / "civic-warehouse-initdb.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            embedded.start()
        with psycopg.connect(embedded.url(), autocommit=True) as conn:
            conn.execute(drop_database(TEST_DATABASE))
            conn.execute(sql.SQL("create database {}").format(sql.Identifier(TEST_DATABASE)))
        url = embedded.url(TEST_DATABASE)
    os.environ["WAREHOUSE_URL"] = url
    reset_warehouse(url)
    yield url
    if not configured:
        with psycopg.connect(embedded.url(), autocommit=True) as conn:
            conn.execute(drop_database(TEST_DATABASE))
        if XDIST_WORKER:
            embedded.stop()


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


class WarehouseStates:
    """Named warehouse states, each made once per session, then restored for each module using it.

    A state is made in a new, empty session database and copied into a template database named
    after the session's; restoring replaces the session database by a copy of the template. The
    session database is replaced, not its schemas: whatever it held is gone, as after
    ``reset_warehouse``. Database-level grants are not part of a copy (PostgreSQL copies a
    database's contents, not its privileges), so a state holds nothing published: the module
    publishes its copy itself, and publishing grants the BI role its access.
    """

    def __init__(self, url: str) -> None:
        from civic_warehouse import warehouse

        self.url = url
        self.parts = warehouse.ConnectionParts.from_url(url)
        self.made: set[str] = set()

    def restore(self, name: str, make: Callable[[str], None]) -> str:
        """The session database holding state ``name``; ``make(url)`` makes it the first time."""
        session = self.parts.dbname
        if name in self.made:
            self._replace(session, copy_of=self._template(name))
        else:
            self._replace(session)
            make(self.url)
            self._replace(self._template(name), copy_of=session)
            self.made.add(name)
        return self.url

    def drop_all(self) -> None:
        with self._admin() as conn:
            for name in self.made:
                conn.execute(drop_database(self._template(name)))

    def _template(self, name: str) -> str:
        return f"{self.parts.dbname}__{name}"

    def _admin(self):
        import psycopg

        return psycopg.connect(self.parts.url("postgres"), autocommit=True)

    def _replace(self, database: str, copy_of: str | None = None) -> None:
        """``database`` dropped and made again: empty, or a copy of ``copy_of``."""
        from psycopg import sql

        create = sql.SQL("create database {}").format(sql.Identifier(database))
        with self._admin() as conn:
            conn.execute(drop_database(database))
            if copy_of:
                # A copy needs its source to itself: connections a made state left open end.
                conn.execute(
                    "select pg_terminate_backend(pid) from pg_stat_activity"
                    " where datname = %s and pid <> pg_backend_pid()",
                    [copy_of],
                )
                create += sql.SQL(" template {}").format(sql.Identifier(copy_of))
            conn.execute(create)


def drop_database(name: str):
    from psycopg import sql

    return sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))


@pytest.fixture(scope="session")
def warehouse_states(warehouse_url: str) -> Iterator[WarehouseStates]:
    states = WarehouseStates(warehouse_url)
    yield states
    states.drop_all()


# Local dates, end exclusive: every source's fortnight, built into marts (BUILT_FORTNIGHT), and
# another passed by the gate (GATED_FORTNIGHT), two weeks so every weekday's volume expectation has
# a week before it.
BUILT_FORTNIGHT = ("2026-08-01", "2026-08-15")
GATED_FORTNIGHT = ("2026-07-01", "2026-07-15")


@pytest.fixture(scope="module")
def built_fortnight(warehouse_states: WarehouseStates, simulator) -> str:
    """Every source extracted for BUILT_FORTNIGHT and the whole project built by dbt, its tests
    and unit tests passing (the stewardship reports aside: they describe a gate run)."""

    def make(url: str) -> None:
        build_city_window(url, simulator, *BUILT_FORTNIGHT)

    simulator.inject.clear()
    simulator.faults.clear()
    return warehouse_states.restore("built_fortnight", make)


@pytest.fixture(scope="module")
def gated_fortnight(warehouse_states: WarehouseStates, simulator) -> str:
    """Every source of the catalog extracted for GATED_FORTNIGHT (reference data whole), built by
    the pipeline and passed by the quality gate: the candidate a module then publishes."""
    from civic_warehouse import catalog, pipeline

    def make(url: str) -> None:
        for name in catalog.load_catalog():
            source = catalog.get_source(name)
            if source.event_time_field:
                query = pipeline.query_for_run(source, None, None, *GATED_FORTNIGHT)
            else:
                query = pipeline.query_for_run(source, None, None, reconcile=True)
            pipeline.extract(name, query, url)
        pipeline.transform_candidate(url)
        pipeline.audit(url)

    simulator.inject.clear()
    simulator.faults.clear()
    return warehouse_states.restore("gated_fortnight", make)


@pytest.fixture(scope="session")
def simulator():
    from city_simulator.server import SimulatorServer

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
