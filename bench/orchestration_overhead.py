"""Orchestration overhead: the transform DAG against a bare ``dbt build`` of the same models.

One run, one database, the same data: every source is extracted from the city simulator for a
window (not timed), then

* ``dbt_build``: the pipeline's build outside Airflow (``pipeline.transform_candidate``: ``dbt build
  --exclude tag:stewardship --exclude-resource-type unit_test --full-refresh`` with its variables),
  and
* ``ours``: the ``transform_marts`` DAG run through Airflow in this process (``dag.test``) with
  ``full_refresh`` and the same ``as_of``: Cosmos' watcher mode runs one ``dbt build``, then a task
  per model, seed and snapshot reports on its node and the node's tests.

The first line compares the DAG's dbt part (from ``prepare_warehouse`` starting to the last dbt task
ending) with the bare build (target: ratio at most 1.3). The second compares the whole DAG (gate,
publish, docs included) with the same steps called directly. Airflow's execution API, which
``dag.test`` serves in this process, is started before the DAG run, as a deployment's API server is.

    python bench/orchestration_overhead.py                 # 2026-03-07 .. 2026-03-10
    python bench/orchestration_overhead.py --start 2026-10-01 --end 2026-11-01
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins"))

from civic_warehouse import settings, warehouse  # noqa: E402

LIMIT = 1.3
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


def start_execution_api() -> float:
    """Start Airflow's execution API in this process, as ``dag.test`` does on its first task's
    first request; returns the seconds it took.

    A deployment's API server is already running when a DAG run starts, so its start-up is not the
    run's overhead: timed, it was about 4 s of ``prepare_warehouse``. ``dag.test`` reuses the one
    in-process server, so the run finds it started.
    """
    from airflow.sdk.execution_time.supervisor import InProcessTestSupervisor

    started = time.perf_counter()
    InProcessTestSupervisor._api_client().get("health").raise_for_status()
    return time.perf_counter() - started


def transform_dag(as_of: datetime) -> tuple[float, float, float]:
    """The DAG's dbt span, its build span (up to the producer's end) and its wall time, in seconds."""
    from airflow.dag_processing.dagbag import DagBag

    from civic_warehouse import airflow_glue

    dag = DagBag(dag_folder=str(settings.DAGS_DIR)).get_dag(airflow_glue.TRANSFORM_DAG_ID)
    api_start = start_execution_api()
    print(f"Airflow's execution API started in {api_start:.1f}s (not timed)", file=sys.stderr)
    started = time.perf_counter()
    run = airflow_glue.run_in_process(dag, {"full_refresh": True, "as_of": as_of.isoformat()})
    wall = time.perf_counter() - started
    if str(run.state) != "success":
        raise SystemExit(f"the transform DAG run ended {run.state}")
    dbt_part = [
        ti
        for ti in run.get_task_instances()
        if ti.task_id == "prepare_warehouse" or ti.task_id.startswith("dbt_build.")
    ]
    started_at = min(ti.start_date for ti in dbt_part)
    span = max(ti.end_date for ti in dbt_part) - started_at
    producer = next(ti for ti in dbt_part if ti.task_id.endswith(".dbt_producer_watcher"))
    return span.total_seconds(), (producer.end_date - started_at).total_seconds(), wall


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
    # Cosmos keeps the producer's partial-parse state between runs; the bare build starts with
    # none: a cache of this run's own keeps both parsing the project in full.
    os.environ["AIRFLOW__COSMOS__CACHE_DIR"] = tempfile.mkdtemp(
        prefix="bench-orchestration-cosmos-"
    )

    import subprocess

    from civic_warehouse import airflow_glue
    from civic_warehouse.simulator.server import SimulatorServer

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
        ours_dbt, ours_build, ours_wall = transform_dag(as_of)
        print(
            f"transform DAG: dbt part {ours_dbt:.1f}s (build {ours_build:.1f}s, then the model "
            f"tasks {ours_dbt - ours_build:.1f}s), whole {ours_wall:.1f}s",
            file=sys.stderr,
        )
    finally:
        if not args.keep_database:
            warehouse.drop_database(url)
    peer_wall = peer_dbt + peer_rest
    ratio = ours_dbt / peer_dbt
    print(
        f"BENCH orchestration_overhead ours={ours_dbt:.1f}s dbt_build={peer_dbt:.1f}s "
        f"ratio={ratio:.3f}"
    )
    print(
        f"BENCH orchestration_overhead_build ours={ours_build:.1f}s dbt_build={peer_dbt:.1f}s "
        f"ratio={ours_build / peer_dbt:.3f}"
    )
    print(
        f"BENCH transform_dag_wall ours={ours_wall:.1f}s "
        f"dbt_build_gate_publish_docs={peer_wall:.1f}s ratio={ours_wall / peer_wall:.3f}"
    )
    return 0 if ratio <= LIMIT else 1


if __name__ == "__main__":
    sys.exit(main())
