"""`airflow backfill create` for an extract DAG: one run per scheduled interval, each loading the
records of its own data interval."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from civic_warehouse import airflow_glue, loader, pipeline
from civic_warehouse.catalog import get_source

pytestmark = pytest.mark.integration

SOURCE = "traffic_crashes"  # a small daily source
DAG_ID = airflow_glue.extract_dag_id(SOURCE)


def airflow(*args: str) -> str:
    command = [str(Path(sys.executable).with_name("airflow")), *args]
    completed = subprocess.run(command, capture_output=True, text=True, env=os.environ)
    assert completed.returncode == 0, f"airflow {' '.join(args)}:\n{completed.stderr[-3000:]}"
    return completed.stdout


def backfill_runs() -> list:
    from airflow.models import DagRun
    from airflow.utils.types import DagRunType

    return DagRun.find(dag_id=DAG_ID, run_type=DagRunType.BACKFILL_JOB)


def test_backfill_create_makes_a_run_per_day_and_each_loads_its_interval(
    clean_warehouse, simulator, airflow_db
):
    airflow("dags", "reserialize")  # the backfill reads the DAG from the metadata database

    airflow(
        "backfill",
        "create",
        "--dag-id",
        DAG_ID,
        "--from-date",
        "2026-03-07",
        "--to-date",
        "2026-03-09",
    )

    runs = backfill_runs()
    assert len(runs) == 2  # logical dates 03-07 and 03-08 (each its local day; 03-08 has 23 hours)
    source = get_source(SOURCE)
    intervals = sorted((r.data_interval_start, r.data_interval_end) for r in runs)
    for start, end in intervals:  # one local day each, midnight to midnight in the source's zone
        local_start, local_end = start.astimezone(source.tz), end.astimezone(source.tz)
        assert local_start.hour == local_end.hour == 0
        assert (local_end.date() - local_start.date()).days == 1

    for run in runs:  # the scheduler's part, done here task by task for each backfill run
        airflow("tasks", "test", DAG_ID, "extract", run.run_id)

    with psycopg.connect(clean_warehouse) as conn:
        scopes = {
            scope
            for (scope,) in conn.execute(
                "select scope from raw._batches where source = %s", [SOURCE]
            )
        }
        loaded = conn.execute(f"select count(*) from raw.{source.raw_table}").fetchone()[0]
    expected = {loader.describe(pipeline.query_for_run(source, s, e)) for s, e in intervals}
    assert scopes == expected
    assert loaded > 0
