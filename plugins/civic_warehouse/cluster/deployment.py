"""Airflow deployments run natively on one machine, each component a process of its own.

Two kinds share this code. The CeleryExecutor deployment of docker-compose.yml (``cluster``):
scheduler, dag-processor, api-server, triggerer and a Celery worker, configured the way the compose
file configures their containers, sharing a PostgreSQL metadata database (never the warehouse's
database), Redis as the Celery broker and the metadata database as Celery's result backend. And the
LocalExecutor deployment ``make airflow`` starts (``standalone``): the same components but the
worker, on the project's Airflow home, with its metadata in a PostgreSQL database of its own.
Both run the BI role's guard (``python -m civic_warehouse.access guard``) beside Airflow, as compose
runs its ``bi-guard`` service: wherever BI tools can reach the warehouse, a ``bi_reader`` query
past its limit is cancelled even when the role lifted its own ``statement_timeout``.
Tasks reach the api-server's execution API over HTTP, with tokens signed by a JWT secret all
components share. Optionally the city-systems simulator runs beside them, as it does in compose.

The api-server (and the simulator) start first, and the scheduler only once they answer: a task the
scheduler queued before that would fail its first try with "connection refused".

``start`` records what it started in ``<home>/cluster.json``; ``stop`` (from any process) reads it.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
from cryptography.fernet import Fernet

from civic_warehouse import access, settings, warehouse
from civic_warehouse.cluster import broker, processes
from civic_warehouse.cluster.api import AirflowApi, ApiError

log = logging.getLogger(__name__)

DEFAULT_HOME = settings.PROJECT_ROOT / ".cluster"
DEFAULT_BROKER_URL = "redis://127.0.0.1:6379/0"  # database 0 of the Redis on this machine
DEFAULT_METADATA_DATABASE = "airflow"
ADMIN_USER = os.environ.get("AIRFLOW_ADMIN_USER", "admin")

# Started first, and waited for: what tasks call (the execution API, the city systems).
FIRST = ("api-server", "simulator")
# Stopped in this order: nothing schedules new work while the worker finishes what it holds, and
# the api-server (which running tasks report to) goes last, before the broker.
COMPONENTS = (
    "scheduler",
    "triggerer",
    "dag-processor",
    "worker",
    "simulator",
    "bi-guard",
    "api-server",
)


class ClusterError(RuntimeError):
    """The deployment could not start, or a component died; the message carries its log's tail."""


@dataclass
class ClusterConfig:
    home: Path = DEFAULT_HOME
    # "CeleryExecutor" (with a worker and a broker) or "LocalExecutor" (tasks run by the scheduler).
    executor: str = "CeleryExecutor"
    # postgresql:// URL of Airflow's metadata database; default: database ``metadata_database`` on
    # the warehouse's server (the embedded one, or WAREHOUSE_URL's), never the warehouse's own.
    metadata_url: str | None = None
    metadata_database: str = DEFAULT_METADATA_DATABASE
    broker_url: str = DEFAULT_BROKER_URL
    api_host: str = settings.LISTEN_ADDRESS
    api_port: int = settings.AIRFLOW_PORT
    simulator_port: int | None = None  # also serve the city-systems simulator on this port
    # Run the BI role's guard on the warehouse (WAREHOUSE_URL, or the embedded one).
    bi_guard: bool = True
    worker_concurrency: int = 4
    # False: the scheduler creates no runs from schedules or assets; only triggered runs run.
    schedules: bool = True
    # A DAG the processor sees for the first time waits to be unpaused (a shared deployment's
    # choice); False lets its schedule run at once.
    paused_at_creation: bool = True
    # Celery queue and worker name: deployments sharing one Redis never take each other's tasks.
    name: str = "civic"
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def state_file(self) -> Path:
        return self.home / "cluster.json"

    @property
    def log_dir(self) -> Path:
        return self.home / "logs"

    @property
    def password_file(self) -> Path:
        return self.home / "simple_auth_manager_passwords.json"

    @property
    def api_url(self) -> str:
        return settings.server_url(self.api_port, self.api_host)

    @property
    def celery(self) -> bool:
        return self.executor == "CeleryExecutor"


def standalone_config() -> ClusterConfig:
    """``make airflow``: LocalExecutor on the project's Airflow home, with the simulator.

    Its metadata is in PostgreSQL too (``AIRFLOW_METADATA_DATABASE``): on SQLite, a CLI command
    writing while the scheduler does (``airflow backfill create``) failed with "database is locked".
    """
    return ClusterConfig(
        home=settings.airflow_home(),
        executor="LocalExecutor",
        metadata_database=settings.AIRFLOW_METADATA_DATABASE,
        simulator_port=settings.SIMULATOR_PORT,
        paused_at_creation=False,
        name="standalone",
    )


class Cluster:
    def __init__(self, config: ClusterConfig) -> None:
        self.config = config

    def __enter__(self) -> Cluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout: float = 600.0) -> dict[str, Any]:
        """Start every component and wait until the API reports them healthy; return the state."""
        config = self.config
        if self.running():
            raise ClusterError(
                f"a deployment recorded in {config.state_file} is still running: stop it first"
            )
        config.home.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + timeout
        metadata_url = config.metadata_url or default_metadata_url(config.metadata_database)
        warehouse.ensure_database(metadata_url)
        redis = (
            broker.ensure_redis(config.broker_url, config.home / "redis") if config.celery else None
        )
        broker_url = redis.url if redis else None
        env = self.environ(metadata_url, broker_url)
        started = [redis.server] if redis and redis.server else []
        try:
            self._prepare(env)
            later = self._component_commands()
            first = {name: later.pop(name) for name in FIRST if name in later}
            started += self._spawn(first, env)
            self._record(started, metadata_url, broker_url)
            self._wait_until_serving(started, deadline)
            started += self._spawn(later, env)
            state = self._record(started, metadata_url, broker_url)
            self._wait_until_healthy(started, deadline)
        except BaseException:
            self._record(started, metadata_url, broker_url)
            self.stop()
            raise
        return state

    def stop(self) -> list[int]:
        """Stop every recorded component; return the pids of processes that survived (none)."""
        state = self.state()
        if not state:
            return []
        survivors: list[int] = []
        recorded = {c["name"]: c for c in state["components"]}
        for name in (*COMPONENTS, "redis"):
            component = recorded.get(name)
            if component:
                log.info("stopping %s (pid %s)", name, component["pid"])
                survivors += processes.stop(component["pid"], component["created"])
        self.config.state_file.unlink(missing_ok=True)
        return survivors

    def state(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.config.state_file.read_text())
        except FileNotFoundError:
            return None

    def running(self) -> list[str]:
        """Names of the recorded components that still run."""
        state = self.state() or {"components": []}
        return [
            c["name"]
            for c in state["components"]
            if processes.still_running(c["pid"], c["created"])
        ]

    def api(self) -> AirflowApi:
        """An API client logged in as the admin user."""
        state = self.state()
        url = state["api_url"] if state else self.config.api_url
        client = AirflowApi(url, ADMIN_USER, admin_password(self.config))
        client.login()
        return client

    def environ(self, metadata_url: str, broker_url: str | None) -> dict[str, str]:
        """The configuration every component shares, as Airflow environment variables."""
        config = self.config
        keys = _secrets(config.home)
        bin_dir = str(Path(sys.executable).parent)
        env = {
            **os.environ,
            **settings.airflow_environ(),
            # Components start helpers through PATH (a shell without the virtualenv active has
            # no `airflow` or `dbt` on it).
            "PATH": os.pathsep.join(p for p in (bin_dir, os.environ.get("PATH", "")) if p),
            "AIRFLOW_HOME": str(config.home),
            "AIRFLOW__CORE__EXECUTOR": config.executor,
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{config.api_url}/execution/",
            "AIRFLOW__API__BASE_URL": f"{config.api_url}/",
            "AIRFLOW__API__HOST": config.api_host,
            "AIRFLOW__API__PORT": str(config.api_port),
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": str(config.paused_at_creation),
            "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": str(config.schedules),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN_USER}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(config.password_file),
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(config.log_dir),
            # Task logs are read from the shared log folder; the log servers only need own ports.
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(broker.free_port()),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(broker.free_port()),
        }
        credentials = warehouse.ConnectionParts.from_url(metadata_url).url().split("://", 1)[1]
        env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"postgresql+psycopg2://{credentials}"
        if config.celery:
            env |= {
                "AIRFLOW__CELERY__RESULT_BACKEND": f"db+postgresql://{credentials}",
                "AIRFLOW__CELERY__BROKER_URL": broker_url or config.broker_url,
                "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(config.worker_concurrency),
                "AIRFLOW__OPERATORS__DEFAULT_QUEUE": config.name,
            }
        # Secrets every component must share (a worker whose JWT secret differs from the
        # api-server's has every task refused): from the environment, else generated once.
        for variable, value in keys.items():
            env[variable] = os.environ.get(variable) or value
        if config.simulator_port:
            env["CITY_SIMULATOR_URL"] = settings.server_url(config.simulator_port, "127.0.0.1")
        return env | config.extra_env

    def _component_commands(self) -> dict[str, list[str]]:
        config = self.config
        airflow = str(Path(sys.executable).with_name("airflow"))
        commands = {
            "api-server": [
                airflow,
                "api-server",
                "--host",
                config.api_host,
                "--port",
                str(config.api_port),
            ],
            "scheduler": [airflow, "scheduler"],
            "dag-processor": [airflow, "dag-processor"],
            "triggerer": [airflow, "triggerer"],
        }
        if config.celery:
            commands["worker"] = [
                airflow,
                "celery",
                "worker",
                "--queues",
                config.name,
                "--concurrency",
                str(config.worker_concurrency),
                "--celery-hostname",
                f"{config.name}@%h",
            ]
        if config.bi_guard:
            commands["bi-guard"] = [sys.executable, "-m", "civic_warehouse.access", "guard"]
        if config.simulator_port:
            commands["simulator"] = [
                sys.executable,
                "-m",
                "city_simulator",
                "--host",
                "127.0.0.1",
                "--port",
                str(config.simulator_port),
            ]
        return commands

    def _spawn(
        self, commands: dict[str, list[str]], env: dict[str, str]
    ) -> list[processes.Running]:
        return [
            processes.spawn(name, argv, env, self.config.log_dir / f"{name}.log")
            for name, argv in commands.items()
        ]

    def _prepare(self, env: dict[str, str]) -> None:
        """Metadata schema, admin password and the dbt manifest the transform DAG renders from."""
        from civic_warehouse import airflow_glue

        airflow_glue.ensure_dbt_manifest()
        _write_password_file(self.config)
        self.config.log_dir.mkdir(parents=True, exist_ok=True)
        migrate_log = self.config.log_dir / "db-migrate.log"
        airflow = str(Path(sys.executable).with_name("airflow"))
        with migrate_log.open("wb") as out:
            completed = subprocess.run(
                [airflow, "db", "migrate"], env=env, stdout=out, stderr=subprocess.STDOUT
            )
        if completed.returncode:
            tail = migrate_log.read_text(errors="replace")[-3000:]
            raise ClusterError(f"airflow db migrate failed (log {migrate_log}):\n{tail}")

    def _record(
        self, started: list[processes.Running], metadata_url: str, broker_url: str | None
    ) -> dict[str, Any]:
        state = {
            "api_url": self.config.api_url,
            "username": ADMIN_USER,
            "password_file": str(self.config.password_file),
            "log_dir": str(self.config.log_dir),
            "executor": self.config.executor,
            "metadata_database": "{0.host}:{0.port}/{0.dbname}".format(
                warehouse.ConnectionParts.from_url(metadata_url)
            ),
            "broker_url": broker_url,
            "queue": self.config.name,
            "components": [
                {"name": r.name, "pid": r.pid, "created": r.created, "log": str(r.log)}
                for r in started
            ],
        }
        self.config.state_file.write_text(json.dumps(state, indent=2) + "\n")
        return state

    def _wait_until_serving(self, started: list[processes.Running], deadline: float) -> None:
        """Until the api-server (and the simulator, when started) answer HTTP."""
        client = AirflowApi(self.config.api_url, ADMIN_USER, admin_password(self.config))
        simulator = self.config.simulator_port

        def waiting() -> list[str]:
            names = [] if _answers(client) else ["api-server"]
            if simulator and not _answers_http(settings.server_url(simulator, "127.0.0.1")):
                names.append("simulator")
            return names

        self._wait(started, deadline, waiting, "not answering", poll=1)

    def _wait_until_healthy(self, started: list[processes.Running], deadline: float) -> None:
        client = AirflowApi(self.config.api_url, ADMIN_USER, admin_password(self.config))
        worker = next((r for r in started if r.name == "worker"), None)
        guard = next((r for r in started if r.name == "bi-guard"), None)

        def unhealthy() -> list[str]:
            names = _unhealthy(client)
            if worker and not _worker_ready(worker):
                names.append("worker")
            if guard and not _guard_ready(guard):
                names.append("bi-guard")
            return names

        self._wait(started, deadline, unhealthy, "not healthy", poll=2)

    def _wait(
        self,
        started: list[processes.Running],
        deadline: float,
        pending: Callable[[], list[str]],
        what: str,
        poll: float,
    ) -> None:
        """Until ``pending`` names no component; a component that exits, or the deadline, fails."""
        while True:
            _raise_if_exited(started)
            names = pending()
            if not names:
                return
            if time.monotonic() > deadline:
                raise ClusterError(
                    f"{what} in time: {', '.join(names)} (logs in {self.config.log_dir})"
                )
            time.sleep(poll)


def default_metadata_url(database: str = DEFAULT_METADATA_DATABASE) -> str:
    """A database of its own on the warehouse's server: Airflow's tables never mix with the data."""
    parts = warehouse.connection_parts()
    return parts.url(database)


def admin_password(config: ClusterConfig) -> str:
    return json.loads(config.password_file.read_text())[ADMIN_USER]


def pipeline_stages(
    start: str | None, end: str | None, full_refresh: bool = False
) -> list[dict[str, dict[str, Any]]]:
    """The DAG runs that make up one pipeline run, stage by stage, each DAG with its run conf.

    Every source's extract DAG for the local dates ``start``..``end`` (end exclusive; both empty:
    the run's data interval), then the transform DAG. The one place that names them.
    """
    from civic_warehouse import airflow_glue
    from civic_warehouse.catalog import load_catalog

    extract = {"start": start, "end": end, "reconcile": False}
    return [
        {airflow_glue.extract_dag_id(name): extract for name in sorted(load_catalog())},
        {airflow_glue.TRANSFORM_DAG_ID: {"full_refresh": full_refresh}},
    ]


def run_pipeline(
    api: AirflowApi, stages: list[dict[str, dict[str, Any]]], timeout: float = 1800.0
) -> dict[str, dict[str, str]]:
    """Trigger each stage's DAGs through the API, wait for them; each DAG's run id and state.

    The DAGs of a stage run side by side; the next stage is triggered only when all succeeded.
    Triggered rather than left to assets and schedules, so that a run of the pipeline is exactly
    these DAG runs (a deployment started with ``schedules=False`` creates no others).
    """
    results: dict[str, dict[str, str]] = {}
    deadline = time.monotonic() + timeout
    for stage in stages:
        for dag_id, conf in stage.items():
            api.wait_for_dag(dag_id, timeout=min(max(deadline - time.monotonic(), 1), 300))
            api.unpause(dag_id)
            run_id = api.trigger(dag_id, conf, logical_date=datetime.now(UTC))
            results[dag_id] = {"run_id": run_id, "state": "queued"}
        for dag_id in stage:
            run_id = results[dag_id]["run_id"]
            remaining = max(deadline - time.monotonic(), 1)
            results[dag_id]["state"] = api.wait_for_run(dag_id, run_id, timeout=remaining)
        if any(results[dag_id]["state"] != "success" for dag_id in stage):
            break
    return results


def _raise_if_exited(started: list[processes.Running]) -> None:
    for component in started:
        if not component.alive():
            raise ClusterError(
                f"{component.name} exited during start-up (log {component.log}):\n"
                f"{component.log_tail()}"
            )


def _answers(client: AirflowApi) -> bool:
    try:
        client.health()
    except (ApiError, OSError):
        return False
    return True


def _answers_http(url: str) -> bool:
    try:
        requests.get(url, timeout=5)
    except requests.RequestException:
        return False
    return True


def _unhealthy(client: AirflowApi) -> list[str]:
    try:
        health = client.health()
    except (ApiError, OSError):
        return ["api-server"]
    return [
        name
        for name in ("metadatabase", "scheduler", "triggerer", "dag_processor")
        if (health.get(name) or {}).get("status") != "healthy"
    ]


def _worker_ready(worker: processes.Running) -> bool:
    # Celery logs "<name>@<host> ready." once it consumes from its queues.
    return " ready." in worker.log_tail(20000)


def _guard_ready(guard: processes.Running) -> bool:
    # Printed once the role and its grants are in place, before the first pass.
    return f"guarding {access.BI_ROLE}" in guard.log_tail(20000)


def _write_password_file(config: ClusterConfig) -> None:
    """The admin's password: AIRFLOW_ADMIN_PASSWORD, else the one generated on the first start."""
    path = config.password_file
    passwords = json.loads(path.read_text()) if path.exists() else {}
    wanted = os.environ.get("AIRFLOW_ADMIN_PASSWORD") or passwords.get(ADMIN_USER)
    passwords[ADMIN_USER] = wanted or secrets.token_urlsafe(18)
    path.touch(mode=0o600)
    path.chmod(0o600)  # also a file an older version, or another tool, left readable
    path.write_text(json.dumps(passwords) + "\n")


def _secrets(home: Path) -> dict[str, str]:
    """Fernet key, JWT secret and API secret key, generated on the first start and kept in home."""
    path = home / "secrets.json"
    if not path.exists():
        path.touch(mode=0o600)
        path.write_text(
            json.dumps(
                {
                    "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
                    "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(48),
                    "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(48),
                },
                indent=2,
            )
            + "\n"
        )
    return json.loads(path.read_text())
