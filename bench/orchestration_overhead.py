"""Orchestration overhead: the transform DAG against a bare ``dbt build`` of the same models.

One run, one database, the same data: every source is extracted from the city simulator for a
window (not timed), then

* ``dbt_build``: the pipeline's build outside Airflow (``pipeline.transform_candidate``: ``dbt build
  --exclude tag:stewardship --exclude-resource-type unit_test --full-refresh`` with its variables),
  and
* ``ours``: the ``transform_marts`` DAG run through Airflow in this process (``dag.test``) with
  ``full_refresh`` and the same ``as_of``: Cosmos' local execution mode, a task per model, seed and
  snapshot running ``dbt build --select <its node>`` (its tests included) through dbtRunner.

The first line compares the DAG's dbt part (from the first dbt task starting to the last one
ending) with the bare build; the second, the whole DAG (gate, publish, docs included) with the same
steps called directly. ``prepare_warehouse``, before the dbt part, is mostly Airflow's execution API
starting in this process (``dag.test`` serves it; a deployment's API server is already running),
so it is left out of the first line and printed on stderr. The run fails only if a build or the
DAG run does; what remains of the overhead, and what would remove it, is in bench/README.md.

    python bench/orchestration_overhead.py                 # 2026-03-07 .. 2026-03-10
    python bench/orchestration_overhead.py --start 2026-10-01 --end 2026-11-01
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins"))

from civic_warehouse import settings, warehouse  # noqa: E402

DATABASE = "civic_bench_orchestration"


def bench_url() -> str:
    base = os.environ.get("WAREHOUSE_URL") or warehouse.warehouse_url()
    return warehouse.ConnectionParts.from_url(base).url(DATABASE)


def load_sources(start: str, end: str) -> None:
    from civic_warehouse import catalog, pipeline

    for source in catalog.load_catalog().values():
        query = pipeline.query_for_run(
            source, None, None, *(() if not source.event_time_field else (start, end))
        )
        result = pipeline.extract(source.name, query)
        print(f"loaded {source.name}: {result['inserted']} rows", file=sys.stderr)


def bare_dbt_build(as_of: datetime) -> float:
    from civic_warehouse import pipeline

    started = time.perf_counter()
    pipeline.transform_candidate(full_refresh=True, as_of=as_of)
    return time.perf_counter() - started


def gate_publish_docs() -> float:
    from civic_warehouse import pipeline

    started = time.perf_counter()
    pipeline.audit()
    pipeline.publish()
    pipeline.docs()
    return time.perf_counter() - started


def transform_dag(as_of: datetime) -> tuple[float, float, list[float]]:
    """The DAG's dbt span and its wall time, in seconds, and each dbt task's duration."""
    from airflow.dag_processing.dagbag import DagBag

    from civic_warehouse import airflow_glue

    dag = DagBag(dag_folder=str(settings.DAGS_DIR)).get_dag(airflow_glue.TRANSFORM_DAG_ID)
    started = time.perf_counter()
    run = airflow_glue.run_in_process(dag, {"full_refresh": True, "as_of": as_of.isoformat()})
    wall = time.perf_counter() - started
    if str(run.state) != "success":
        raise SystemExit(f"the transform DAG run ended {run.state}")
    instances = {ti.task_id: ti for ti in run.get_task_instances()}
    prepare = instances["prepare_warehouse"]
    # dag.test starts Airflow's execution API in this process on the first task's first request:
    # prepare_warehouse's time is mostly that (a deployment's API server is already running).
    print(
        f"prepare_warehouse {(prepare.end_date - prepare.start_date).total_seconds():.1f}s "
        "(Airflow's execution API starting; not timed)",
        file=sys.stderr,
    )
    dbt_tasks = [ti for task_id, ti in instances.items() if task_id.startswith("dbt_build.")]
    span = max(ti.end_date for ti in dbt_tasks) - min(ti.start_date for ti in dbt_tasks)
    durations = [(ti.end_date - ti.start_date).total_seconds() for ti in dbt_tasks]
    return span.total_seconds(), wall, durations


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--start", default="2026-03-07", help="first local date to extract")
    parser.add_argument("--end", default="2026-03-10", help="local date to stop before")
    parser.add_argument("--keep-database", action="store_true")
    args = parser.parse_args()

    url = bench_url()
    warehouse.drop_database(url)
    warehouse.ensure_database(url)
    os.environ["WAREHOUSE_URL"] = url
    os.environ.update(settings.airflow_environ())
    os.environ["AIRFLOW_HOME"] = tempfile.mkdtemp(prefix="bench-orchestration-airflow-")
    os.environ.setdefault("DBT_TARGET_PATH", tempfile.mkdtemp(prefix="bench-orchestration-dbt-"))
    # Cosmos keeps dbt's partial-parse state between tasks and runs; the bare build starts with
    # none: a cache of this run's own has the DAG's first dbt task parse the project in full too.
    os.environ["AIRFLOW__COSMOS__CACHE_DIR"] = tempfile.mkdtemp(
        prefix="bench-orchestration-cosmos-"
    )

    import subprocess

    from city_simulator.server import SimulatorServer
    from civic_warehouse import airflow_glue

    airflow = Path(sys.executable).with_name("airflow")
    subprocess.run([str(airflow), "db", "migrate"], check=True, capture_output=True)
    airflow_glue.ensure_dbt_manifest()
    as_of = datetime.now(UTC)
    try:
        with SimulatorServer(port=0) as simulator:
            os.environ["CITY_SIMULATOR_URL"] = simulator.url
            load_sources(args.start, args.end)
        peer_dbt = bare_dbt_build(as_of)
        peer_rest = gate_publish_docs()
        print(
            f"bare dbt build {peer_dbt:.1f}s, gate+publish+docs {peer_rest:.1f}s", file=sys.stderr
        )
        ours_dbt, ours_wall, durations = transform_dag(as_of)
        print(
            f"transform DAG: dbt part {ours_dbt:.1f}s ({len(durations)} dbt tasks, "
            f"{statistics.median(durations):.1f}s median, {sum(durations):.1f}s in all), "
            f"whole {ours_wall:.1f}s",
            file=sys.stderr,
        )
    finally:
        if not args.keep_database:
            warehouse.drop_database(url)
    peer_wall = peer_dbt + peer_rest
    print(
        f"BENCH orchestration_overhead ours={ours_dbt:.1f}s dbt_build={peer_dbt:.1f}s "
        f"ratio={ours_dbt / peer_dbt:.3f}"
    )
    print(
        f"BENCH transform_dag_wall ours={ours_wall:.1f}s "
        f"dbt_build_gate_publish_docs={peer_wall:.1f}s ratio={ours_wall / peer_wall:.3f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
