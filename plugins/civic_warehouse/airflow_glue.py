"""Airflow-specific glue shared by the DAG files: default arguments, callbacks, assets, deadlines and
the Cosmos configuration that renders the dbt project.

Nothing else in the package imports Airflow, so connectors, loader and CLI work without it; Airflow
and Cosmos are imported inside the functions that need them.
"""

from __future__ import annotations

import logging
import os
import subprocess
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from civic_warehouse import settings

if TYPE_CHECKING:
    from collections.abc import Iterable

    from civic_warehouse.catalog import SourceConfig

log = logging.getLogger(__name__)

OWNER = "data-engineering"
EXTRACT_DAG_PREFIX = "extract_"
TRANSFORM_DAG_ID = "transform_marts"
# A source's extract run is overdue this long after it was queued (its data interval closed).
FRESHNESS_GRACE = timedelta(hours=6)
# The dbt manifest Cosmos renders the transform DAG from; written by `dbt parse`, never at parse time.
DBT_MANIFEST_DIR = settings.BUILD_DIR / "dbt-manifest"
_DBT_INPUTS = ("models", "seeds", "snapshots", "macros", "tests", "dbt_project.yml")


class DbtManifestMissing(RuntimeError):
    """The transform DAG cannot be rendered: the dbt manifest is missing or older than the project."""


def on_task_failure(context: dict[str, Any]) -> None:
    """Alert the department that owns what failed: the source's owner, or the failing suites'."""
    from civic_warehouse import notify

    ti = context.get("task_instance") or context.get("ti")
    task_id = getattr(ti, "task_id", "?")
    dag_id = getattr(ti, "dag_id", None)
    exception = context.get("exception")
    alert = notify.Alert(
        subject=f"civic-warehouse: {dag_id or '?'}.{task_id} failed",
        body=str(exception),
        departments=departments_for(dag_id or "", exception),
        dag_id=dag_id,
        task_id=task_id,
        run_id=getattr(ti, "run_id", None),
    )
    _deliver(alert)


def on_source_overdue(source: str, context: dict[str, Any] | None = None) -> None:
    """Deadline callback: a source's extract run has not finished in time; tell its owner."""
    from civic_warehouse import catalog, notify

    dag_run = (context or {}).get("dag_run") or {}
    deadline = (context or {}).get("deadline") or {}
    owner = catalog.load_catalog().get(source)
    _deliver(
        notify.Alert(
            subject=f"civic-warehouse: source {source} is overdue",
            body=(
                f"The extract of {source} (run {dag_run.get('dag_run_id', '?')}, data interval "
                f"{dag_run.get('data_interval_start', '?')} .. {dag_run.get('data_interval_end', '?')}) "
                "had not finished by "
                f"{deadline.get('deadline_time', '?')}: the city system may be silent or failing."
            ),
            departments=[owner.owner] if owner else [],
            dag_id=dag_run.get("dag_id") or extract_dag_id(source),
            run_id=dag_run.get("dag_run_id") or dag_run.get("run_id"),
        )
    )


def _deliver(alert: Any) -> None:
    from civic_warehouse import notify

    try:
        notify.send(alert)
    except Exception:  # an alert channel being down must not mask the task's own failure
        log.exception("could not deliver the alert")


def departments_for(dag_id: str, exception: BaseException | None) -> list[str]:
    from civic_warehouse import catalog, quality

    if isinstance(exception, quality.QualityGateFailed):
        return exception.report.owners_of_failures()
    if dag_id.startswith(EXTRACT_DAG_PREFIX):
        source = catalog.load_catalog().get(dag_id.removeprefix(EXTRACT_DAG_PREFIX))
        return [source.owner] if source else []
    return []


def default_args(**overrides: Any) -> dict[str, Any]:
    return {
        "owner": OWNER,
        "retries": 2,
        "retry_delay": timedelta(minutes=1),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=15),
        "on_failure_callback": on_task_failure,
        **overrides,
    }


def extract_dag_id(source: str) -> str:
    return f"{EXTRACT_DAG_PREFIX}{source}"


def raw_table_asset(source: SourceConfig):
    """The Asset an extract DAG emits when it loaded its source's raw table."""
    from airflow.sdk import Asset

    # A name-based URI: the warehouse's host is a deployment detail, not part of the asset.
    return Asset(
        name=f"{settings.RAW_SCHEMA}.{source.raw_table}",
        uri=f"civic-warehouse://{settings.RAW_SCHEMA}/{source.raw_table}",
        group="raw",
    )


def schedule_timing(source: SourceConfig) -> dict[str, Any]:
    """``start_date`` and ``catchup`` of a source's extract DAG.

    The scheduler's intervals begin at ``CW_SCHEDULE_START`` (a local date, default 2026-01-01);
    whether it fills the past intervals from there is Airflow's own ``catchup_by_default``
    (``AIRFLOW__SCHEDULER__CATCHUP_BY_DEFAULT``, off unless set). Reference data (no time fields)
    is read whole by every run, so catching up would read the same table once per past interval:
    it runs its latest interval only, whatever the start.
    """
    import pendulum

    if not (source.event_time_field or source.updated_field):
        return {"start_date": pendulum.datetime(2026, 1, 1, tz=source.timezone), "catchup": False}
    start = pendulum.parse(os.environ.get("CW_SCHEDULE_START") or "2026-01-01", tz=source.timezone)
    return {"start_date": start}


def freshness_deadline(source: SourceConfig):
    """A Deadline Alert: a run must finish within ``FRESHNESS_GRACE`` of being queued.

    A scheduled run is queued when its data interval closes, so this says the interval's records
    must have landed that long after it; a run stuck in retries or hanging on a silent city system
    alerts the source's owner. The reference is when the run was queued, not its logical date:
    a backfill's old intervals would all be overdue at once, and a run triggered without a logical
    date has none.
    """
    from airflow.sdk import DeadlineAlert, DeadlineReference, SyncCallback

    return DeadlineAlert(
        reference=DeadlineReference.DAGRUN_QUEUED_AT,
        interval=FRESHNESS_GRACE,
        callback=SyncCallback(on_source_overdue, kwargs={"source": source.name}),
        name=f"{source.name} freshness",
    )


def publication_anchor(context: Any) -> datetime:
    """The moment the publication delay counts from.

    The ``as_of`` param when given; else the end of the newest data interval the extracts loaded
    before the run started (their asset events carry it); else the run's own data interval end,
    or when it was due.
    """
    as_of = context["params"].get("as_of")
    if as_of:
        return datetime.fromisoformat(as_of)
    events = [event for events in context["triggering_asset_events"].values() for event in events]
    # Airflow 3.3 hands an event that arrives while a run of this DAG is active to no later run
    # when its asset already waited in the queue (seen with catch-up: the last interval's events
    # reached no transform run). So the raw tables' newest events up to when this run started
    # count too (the task's inlets): the anchor never lags what was loaded before the run.
    started = context["dag_run"].start_date or context["dag_run"].run_after
    inlet_events = context.get("inlet_events")
    for asset in context["task"].inlets if inlet_events is not None else ():
        events += inlet_events[asset].before(started.isoformat()).ascending(False).limit(50)
    ends = [
        datetime.fromisoformat(event.extra["data_interval_end"])
        for event in events
        if (event.extra or {}).get("data_interval_end")
    ]
    if ends:
        return max(ends)
    return context.get("data_interval_end") or context["dag_run"].run_after


def run_in_process(dag: Any, conf: dict[str, Any]) -> Any:
    """Run ``dag`` once in this process (``dag.test``) with ``conf``; returns the DagRun.

    The run goes without the DAG's deadline alerts: Airflow 3.3.2's ``dag.test`` crashes after a
    successful run of a DAG that has one (apache/airflow#73428), and missed deadlines are the
    scheduler's business anyway.

    The process's environment is restored afterwards: Cosmos copies each dbt task's environment
    (the publication anchor among it) into ``os.environ`` for its OpenLineage parsing and leaves
    it there. A deployment runs each task in a process of its own; in this one, a leftover
    ``CW_PUBLISH_AS_OF`` would hold back what every later dbt command here publishes.
    """
    deadline, dag.deadline = dag.deadline, None
    environment = dict(os.environ)
    try:
        return dag.test(logical_date=datetime.now(UTC), run_conf=conf)
    finally:
        dag.deadline = deadline
        os.environ.clear()
        os.environ.update(environment)


# -- dbt through Cosmos ---------------------------------------------------------------------------


def dbt_manifest_path() -> Path:
    return DBT_MANIFEST_DIR / "manifest.json"


def dbt_manifest_is_current(manifest: Path | None = None) -> bool:
    """The manifest exists and no model, seed, snapshot, macro or test changed after it."""
    manifest = manifest or dbt_manifest_path()
    if not manifest.exists():
        return False
    written = manifest.stat().st_mtime
    for name in _DBT_INPUTS:
        path = settings.DBT_PROJECT_DIR / name
        paths = [path] if path.is_file() else path.rglob("*") if path.exists() else []
        if any(p.stat().st_mtime > written for p in paths):
            return False
    return True


def write_dbt_manifest() -> Path:
    """``dbt parse`` the project into the manifest Cosmos renders from (no warehouse needed)."""
    from civic_warehouse import transform

    DBT_MANIFEST_DIR.mkdir(parents=True, exist_ok=True)
    # Parsing never connects, but the profile must render: placeholders for unset settings.
    placeholders = {
        "CW_DB_HOST": "127.0.0.1",
        "CW_DB_PORT": "5432",
        "CW_DB_USER": "postgres",
        "CW_DB_NAME": "postgres",
    }
    env = placeholders | {
        **os.environ,
        "DBT_PROFILES_DIR": str(settings.DBT_PROJECT_DIR),
        **transform.DBT_TELEMETRY_OFF,
    }
    env.pop("DBT_TARGET_PATH", None)
    # Parse into a directory of its own, then swap the file in: a DAG processor reading the
    # manifest meanwhile sees the old one or the new one, never half of one.
    with tempfile.TemporaryDirectory(dir=DBT_MANIFEST_DIR) as target:
        command = [*transform.dbt_command(), "parse", "--target-path", target]
        completed = subprocess.run(
            command, cwd=settings.DBT_PROJECT_DIR, env=env, capture_output=True, text=True
        )
        if completed.returncode != 0:
            tail = "\n".join(completed.stdout.strip().splitlines()[-15:])
            raise DbtManifestMissing(f"dbt parse of {settings.DBT_PROJECT_DIR} failed:\n{tail}")
        os.replace(Path(target) / "manifest.json", dbt_manifest_path())
    return dbt_manifest_path()


def ensure_dbt_manifest() -> Path:
    """Write the manifest when it is missing or older than the project; cheap when current."""
    if dbt_manifest_is_current():
        return dbt_manifest_path()
    log.info("writing the dbt manifest to %s", DBT_MANIFEST_DIR)
    return write_dbt_manifest()


def require_dbt_manifest() -> Path:
    """The manifest, or an error saying how to make it (DAG files never run dbt while parsing)."""
    manifest = dbt_manifest_path()
    if not dbt_manifest_is_current(manifest):
        state = "is older than the dbt project" if manifest.exists() else "does not exist"
        raise DbtManifestMissing(
            f"the dbt manifest {manifest} {state}; the transform DAG is rendered from it. "
            "Write it with `python -m civic_warehouse dbt-manifest` (make demo, make test and "
            "make airflow do this)."
        )
    return manifest


def warehouse_setting(name: str) -> str:
    """A dbt profile setting (host, port, ...) of the warehouse, for templates rendered at run time."""
    from civic_warehouse import warehouse

    return warehouse.dbt_environ()[name]


def dbt_task_group(
    group_id: str,
    dbt_vars: dict[str, Any],
    dbt_env: dict[str, str] | None = None,
    exclude: Iterable[str] = (),
):
    """The dbt project as a Cosmos task group: one task per model, seed and snapshot, with its tests.

    ``dbt_vars`` and ``dbt_env`` (environment variables for dbt) may hold Airflow templates.

    Cosmos' local execution mode with ``TestBehavior.BUILD``: each task runs ``dbt build --select
    <its node>`` (dbt in the task's process, through dbtRunner), so it builds its node and runs the
    node's tests, fails naming a failing test, shows the SQL dbt compiled for its node, and
    clearing it rebuilds that node with its tests. The tasks follow dbt's own dependencies.
    Rendering reads the manifest: no ``dbt ls`` at parse time. Only Cosmos' documented settings
    are used (see docs/internals.md for why not its watcher mode).
    """
    from cosmos import DbtTaskGroup, ExecutionConfig, ProfileConfig, ProjectConfig, RenderConfig
    from cosmos.constants import ExecutionMode, InvocationMode, LoadMode, TestBehavior

    from civic_warehouse import transform

    # The profile reads CW_DB_* variables: filled in when each task runs, from WAREHOUSE_URL.
    env = {
        name: f"{{{{ warehouse_setting('{name}') }}}}"
        for name in ("CW_DB_HOST", "CW_DB_PORT", "CW_DB_USER", "CW_DB_PASSWORD", "CW_DB_NAME")
    } | {
        # Cosmos runs dbt in a temporary copy of the project and deletes it afterwards, log file
        # included: off whatever the environment says.
        **transform.DBT_LOG_FILE_OFF,
        **transform.DBT_TELEMETRY_OFF,
        # Cosmos shows each task's compiled SQL from the target directory of that temporary copy
        # (a relative path is the project's): a DBT_TARGET_PATH set for the pipeline's own dbt
        # processes must not send dbt's files elsewhere.
        "DBT_TARGET_PATH": "target",
        # A task builds one node: the manifest.json and run_results.json dbt writes after it are
        # work the task does not use (its compiled SQL and partial parse state are still written).
        # dbt's relation cache stays on: without it, tasks running side by side each create their
        # schema, and PostgreSQL's CREATE SCHEMA IF NOT EXISTS races (a duplicate key error).
        "DBT_WRITE_JSON": "False",
        **(dbt_env or {}),
    }
    return DbtTaskGroup(
        group_id=group_id,
        project_config=ProjectConfig(
            dbt_project_path=settings.DBT_PROJECT_DIR,
            manifest_path=require_dbt_manifest(),
            project_name="civic_warehouse",
        ),
        profile_config=ProfileConfig(
            profile_name="civic_warehouse",
            target_name="warehouse",
            profiles_yml_filepath=settings.DBT_PROJECT_DIR / "profiles.yml",
        ),
        render_config=RenderConfig(
            load_method=LoadMode.DBT_MANIFEST,
            exclude=list(exclude),
            # A task per node runs `dbt build --select <node>`: the node and its tests.
            test_behavior=TestBehavior.BUILD,
            # A task is named after its model, seed or snapshot (names are unique in a dbt project),
            # not with Cosmos' `_build` suffix.
            normalize_task_id=_dbt_node_name,
            normalize_task_display_name=_dbt_node_name,
            # Assets per model are not needed (the marts are gated, then published as a whole), and
            # Cosmos' postgres:// asset URIs fail against a warehouse reached over a unix socket.
            emit_datasets=False,
        ),
        execution_config=ExecutionConfig(
            execution_mode=ExecutionMode.LOCAL,
            # dbt in the task's process: no interpreter to start and no dbt to import per task
            # beyond the first in a worker process.
            invocation_mode=InvocationMode.DBT_RUNNER,
            dbt_executable_path=transform.dbt_executable(),
        ),
        operator_args={
            # the same build as the pipeline's outside Airflow: dbt's unit tests left out
            "dbt_cmd_flags": list(transform.PIPELINE_BUILD_FLAGS),
            "env": env,
            "vars": dbt_vars,
            "install_deps": False,
            "full_refresh": "{{ params.full_refresh }}",
        },
    )


def _dbt_node_name(node: Any) -> str:
    return node.name


def dbt_template_macros() -> dict[str, Any]:
    """``user_defined_macros`` for a DAG holding :func:`dbt_task_group`."""
    return {"warehouse_setting": warehouse_setting}
