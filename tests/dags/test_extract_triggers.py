"""Extract DAG runs for every way a run starts, through Airflow, for a source of every protocol.

Each run gets the data interval Airflow gives that kind of run: a trigger with a logical date (the
UI's form) the timetable's ``infer_manual_data_interval`` of it, which for a cron timetable is the
interval the scheduler made for that day; a run triggered without a logical date (the REST API's
and CLI's default) none at all. ``dag.test`` makes the run exactly so and runs its task through
the Task SDK, which hands the interval to the task as the scheduler's runs have it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pendulum
import psycopg
import pytest

from civic_warehouse import airflow_glue, loader, pipeline
from civic_warehouse.catalog import SourceConfig, get_source
from civic_warehouse.connectors import Query, as_utc

pytestmark = pytest.mark.integration

SOURCES = {
    "socrata": "traffic_crashes",
    "open311": "service_requests",
    "ckan": "building_permits",
    "arcgis": "neighborhoods",  # reference data: read whole by every kind of run
}
# What the trigger form sends when nothing in it is changed: every param at its default.
EMPTY_FORM = {"start": None, "end": None, "reconcile": False}


def run(source: SourceConfig, logical_date: datetime | None, conf: dict):
    """The DAG run Airflow makes for a trigger with ``logical_date`` (or none) and ``conf``."""
    from civic_warehouse import demo

    dag = demo.dagbag().get_dag(airflow_glue.extract_dag_id(source.name))
    # As in airflow_glue.run_in_process: dag.test of a DAG with a deadline alert crashes after it.
    deadline, dag.deadline = dag.deadline, None
    try:
        return dag.test(logical_date=logical_date, run_conf=conf)
    finally:
        dag.deadline = deadline


def last_batch(url: str, source: SourceConfig) -> tuple[str, int]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "select scope, received from raw._batches where source = %s"
            " order by finished_at desc limit 1",
            [source.name],
        ).fetchone()


def scheduled_interval(source: SourceConfig, day: str):
    """The data interval the scheduler gives the run of local ``day`` (the timetable's own)."""
    from airflow.timetables.base import TimeRestriction
    from airflow.timetables.interval import CronDataIntervalTimetable

    timetable = CronDataIntervalTimetable(source.schedule, timezone=source.timezone)
    midnight = pendulum.parse(day, tz=source.timezone)
    restriction = TimeRestriction(earliest=midnight, latest=midnight, catchup=True)
    info = timetable.next_dagrun_info(last_automated_data_interval=None, restriction=restriction)
    return info.data_interval


@pytest.fixture(scope="module")
def warehouse(clean_warehouse_module, simulator, airflow_db) -> str:
    simulator.inject.clear()
    simulator.faults.clear()
    return clean_warehouse_module


def assert_loaded(source: SourceConfig, received: int) -> None:
    # Every window below holds records of every event source in the simulator.
    assert received > 0, f"{source.name}: nothing loaded"


@pytest.mark.parametrize("protocol", sorted(SOURCES))
def test_an_empty_form_trigger_loads_the_interval_its_logical_date_infers(warehouse, protocol):
    source = get_source(SOURCES[protocol])
    pressed = datetime(2026, 10, 20, 14, 30, tzinfo=UTC)  # the form's logical date: "now"

    dag_run = run(source, pressed, EMPTY_FORM)

    assert str(dag_run.state) == "success"
    if source.schedule == "@daily":  # the last whole local day before the logical date
        day = datetime(2026, 10, 19, tzinfo=source.tz)
        assert dag_run.data_interval_start == day
        assert dag_run.data_interval_end == day + timedelta(days=1)
    scope, received = last_batch(warehouse, source)
    expected = pipeline.query_for_run(
        source, dag_run.data_interval_start, dag_run.data_interval_end
    )
    assert scope == loader.describe(expected)
    assert_loaded(source, received)


@pytest.mark.parametrize("protocol", sorted(SOURCES))
def test_a_filled_in_trigger_loads_the_events_of_its_local_days(warehouse, protocol):
    source = get_source(SOURCES[protocol])
    conf = {"start": "2026-10-30", "end": "2026-11-02", "reconcile": False}  # across the change

    dag_run = run(source, datetime(2026, 12, 7, 9, tzinfo=UTC), conf)

    assert str(dag_run.state) == "success"
    scope, received = last_batch(warehouse, source)
    expected = pipeline.query_for_run(source, None, None, conf["start"], conf["end"])
    assert scope == loader.describe(expected)
    if expected.events:
        assert expected.events.start.isoformat() == "2026-10-30T00:00:00-04:00"
        assert expected.events.end.isoformat() == "2026-11-02T00:00:00-05:00"
    assert_loaded(source, received)


@pytest.mark.parametrize("protocol", sorted(SOURCES))
def test_the_scheduled_interval_over_the_night_the_clocks_go_back_is_loaded(warehouse, protocol):
    source = get_source(SOURCES[protocol])
    interval = scheduled_interval(source, "2026-11-01")  # a daily or weekly interval from Sunday
    start, end = (
        interval.start.in_timezone(source.timezone),
        interval.end.in_timezone(source.timezone),
    )
    local_days = (end.date() - start.date()).days
    # Queued when the interval closes: the scheduler's run_after, the form's logical date here.
    dag_run = run(source, interval.end, EMPTY_FORM)

    assert str(dag_run.state) == "success"
    assert (dag_run.data_interval_start, dag_run.data_interval_end) == (
        interval.start,
        interval.end,
    )
    assert interval.end - interval.start == timedelta(days=local_days, hours=1)
    scope, received = last_batch(warehouse, source)
    expected = pipeline.query_for_run(source, interval.start, interval.end)
    if expected.updated:
        assert expected.updated.end - expected.updated.start == (
            timedelta(days=local_days, hours=1) + source.lookback
        )
    assert scope == loader.describe(expected)
    assert_loaded(source, received)


@pytest.mark.parametrize("protocol", sorted(SOURCES))
def test_a_run_without_logical_date_loads_what_changed_since_the_last_load(warehouse, protocol):
    source = get_source(SOURCES[protocol])
    pipeline.extract(
        source.name, pipeline.query_for_run(source, None, None, "2026-10-27", "2026-10-29")
    )
    with psycopg.connect(warehouse) as conn:
        mark = loader.watermark(conn, source)

    dag_run = run(source, None, {})

    assert str(dag_run.state) == "success"
    assert dag_run.logical_date is None and dag_run.data_interval_start is None
    scope, received = last_batch(warehouse, source)
    if source.updated_field:
        # What `python -m civic_warehouse extract <source>` loads: from the watermark, less the
        # lookback, to the moment the run started.
        assert scope.startswith(f"updated {(as_utc(mark) - source.lookback).isoformat()} .. ")
        until = datetime.fromisoformat(scope.split(" .. ")[1])
        assert dag_run.start_date <= until <= datetime.now(UTC)
    else:
        assert scope == loader.describe(Query())
    assert_loaded(source, received)


def test_a_trigger_the_source_cannot_answer_fails_at_once_and_tells_the_owner_why(
    warehouse, webhook
):
    source = get_source("service_requests")

    dag_run = run(source, None, {"start": "2026-10-30", "end": None, "reconcile": False})

    assert str(dag_run.state) == "failed"
    (task,) = dag_run.get_task_instances()
    assert str(task.state) == "failed" and task.try_number == 1  # not retried
    (alert,) = webhook
    assert "'service_requests': give both start and end" in alert["text"]


def test_catching_up_scheduled_runs_across_the_clock_change(warehouse):
    """`airflow backfill create` makes the runs the scheduler's catch-up makes; each loads its own
    interval, the 25-hour day included."""
    from airflow.models import DagRun
    from airflow.utils.types import DagRunType

    source = get_source("service_requests")
    dag_id = airflow_glue.extract_dag_id(source.name)

    def airflow(*args: str) -> None:
        command = [str(Path(sys.executable).with_name("airflow")), *args]
        done = subprocess.run(command, capture_output=True, text=True, env=os.environ)
        assert done.returncode == 0, f"airflow {' '.join(args)}:\n{done.stderr[-3000:]}"

    airflow("dags", "reserialize")  # the backfill reads the DAG from the metadata database
    airflow(
        "backfill",
        "create",
        "--dag-id",
        dag_id,
        "--from-date",
        "2026-10-30",
        "--to-date",
        "2026-11-02",
    )
    runs = DagRun.find(dag_id=dag_id, run_type=DagRunType.BACKFILL_JOB)
    intervals = sorted((r.data_interval_start, r.data_interval_end) for r in runs)
    assert [end - start for start, end in intervals] == [timedelta(hours=h) for h in (24, 24, 25)]

    for backfill_run in runs:  # the scheduler's part, task by task
        airflow("tasks", "test", dag_id, "extract", backfill_run.run_id)

    with psycopg.connect(warehouse) as conn:
        scopes = {
            scope
            for (scope,) in conn.execute(
                "select scope from raw._batches where source = %s", [source.name]
            )
        }
    expected = {loader.describe(pipeline.query_for_run(source, s, e)) for s, e in intervals}
    assert expected <= scopes


def test_a_run_since_the_watermark_reads_up_to_a_change_stamped_later_than_now(warehouse):
    """A source whose clock runs ahead stamps changes in the future; the next run without an
    interval must read from that watermark (less the lookback), not fail on an empty window."""
    source = get_source(SOURCES["socrata"])
    pipeline.extract(
        source.name, pipeline.query_for_run(source, None, None, "2026-10-27", "2026-10-28")
    )
    ahead = datetime.now(UTC).replace(microsecond=0) + timedelta(days=5)
    with psycopg.connect(warehouse, autocommit=True) as conn:
        conn.execute(
            "update raw._watermarks set watermark = %s where source = %s", [ahead, source.name]
        )
    query = pipeline.query_since_watermark(source, warehouse)
    assert query.updated.start == ahead - source.lookback
    assert query.updated.end > ahead
