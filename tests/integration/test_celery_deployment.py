"""The distributed deployment, natively: the pipeline through the REST API on a Celery worker.

Scheduler, dag-processor, api-server, triggerer and a Celery worker run as separate processes, as
in docker-compose.yml, against a PostgreSQL metadata database of their own (on the warehouse's
server) and Redis as the broker. The pipeline's DAGs are triggered through the REST API v2 with a
JWT; the marts they publish are checked in the warehouse; then everything is stopped.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psutil
import psycopg
import pytest
import requests

from city_simulator.calls import calls_between
from civic_warehouse import warehouse
from civic_warehouse.cluster import broker, processes
from civic_warehouse.cluster.deployment import (
    DEFAULT_BROKER_URL,
    Cluster,
    ClusterConfig,
    pipeline_stages,
    run_pipeline,
)

pytestmark = pytest.mark.integration

START, END = "2026-03-09", "2026-03-10"
# Generous: on an idle 2-core machine the whole pipeline takes minutes, but the transform DAG is
# some 70 Celery tasks (one process each), and a machine busy with other work slows them a lot.
PIPELINE_TIMEOUT = 2700


@dataclass
class Outcome:
    config: ClusterConfig
    metadata_url: str
    stages: list[dict[str, dict[str, Any]]]
    anonymous_status: int
    results: dict[str, dict[str, str]]
    task_instances: dict[str, list[dict[str, Any]]]
    processes_seen: set[int]
    survivors: list[int]


@pytest.fixture(scope="module")
def deployment(clean_warehouse_module, tmp_path_factory) -> Outcome:
    home = tmp_path_factory.mktemp("cluster")
    metadata_url = warehouse.ConnectionParts.from_url(clean_warehouse_module).url(
        f"airflow_test_{os.getpid()}"
    )
    warehouse.drop_database(metadata_url)
    config = ClusterConfig(
        home=home,
        metadata_url=metadata_url,
        broker_url=DEFAULT_BROKER_URL,
        api_port=broker.free_port(),
        simulator_port=broker.free_port(),
        worker_concurrency=4,
        schedules=False,
        name=f"civic-test-{os.getpid()}",
        extra_env={"DBT_TARGET_PATH": str(home / "dbt-target")},
    )
    cluster = Cluster(config)
    stages = pipeline_stages(START, END)
    seen: set[int] = set()
    try:
        cluster.start()
        anonymous = requests.get(f"{config.api_url}/api/v2/dags", timeout=30).status_code
        api = cluster.api()
        results = run_pipeline(api, stages, timeout=PIPELINE_TIMEOUT)
        task_instances = {
            dag_id: api.task_instances(dag_id, run["run_id"]) for dag_id, run in results.items()
        }
    finally:
        seen = _processes_of(cluster)
        survivors = cluster.stop()
    yield Outcome(config, metadata_url, stages, anonymous, results, task_instances, seen, survivors)
    warehouse.drop_database(metadata_url)


def _processes_of(cluster: Cluster) -> set[int]:
    pids: set[int] = set()
    for component in (cluster.state() or {"components": []})["components"]:
        try:
            leader = psutil.Process(component["pid"])
            pids |= {leader.pid, *(child.pid for child in leader.children(recursive=True))}
        except psutil.NoSuchProcess:
            continue
    return pids


def test_the_api_refuses_requests_without_a_token(deployment):
    assert deployment.anonymous_status == 401


def test_every_dag_of_the_pipeline_triggered_through_the_api_succeeds(deployment):
    expected = {dag_id for stage in deployment.stages for dag_id in stage}
    assert set(deployment.results) == expected
    assert {run["state"] for run in deployment.results.values()} == {"success"}, deployment.results


def test_the_tasks_ran_on_the_celery_worker(deployment):
    instances = [ti for tis in deployment.task_instances.values() for ti in tis]
    assert instances
    assert {ti["queue"] for ti in instances} == {deployment.config.name}
    worker_log = (deployment.config.log_dir / "worker.log").read_text()
    executed = set(
        re.findall(r"Executing workload in Celery: .*?log_path='dag_id=([^/]+)/", worker_log)
    )
    assert executed == set(deployment.results)


def test_the_published_calls_are_the_ones_the_city_system_served(deployment, warehouse_url):
    served = {r["event_number"] for r in calls_between(datetime(2026, 3, 9), datetime(2026, 3, 10))}
    with psycopg.connect(warehouse_url) as conn:
        published = {
            number
            for (number,) in conn.execute("select event_number from open.fct_calls_for_service")
        }
        gate = conn.execute(
            "select count(*), count(*) filter (where not success and severity = 'critical') "
            "from quality.validation_results"
        ).fetchone()
    assert published == served and len(served) > 100
    assert gate[0] > 0 and gate[1] == 0


def test_airflow_keeps_its_metadata_outside_the_warehouse_database(deployment, warehouse_url):
    with psycopg.connect(deployment.metadata_url) as conn:
        runs = dict(conn.execute("select dag_id, state from dag_run").fetchall())
    assert runs == {dag_id: run["state"] for dag_id, run in deployment.results.items()}
    with psycopg.connect(warehouse_url) as conn:
        assert conn.execute("select to_regclass('public.dag_run')").fetchone() == (None,)


def test_stopping_leaves_no_process_behind(deployment):
    assert deployment.processes_seen, "no component process was found running before the stop"
    assert deployment.survivors == []
    alive = [pid for pid in deployment.processes_seen if _alive(pid)]
    assert alive == []
    assert not deployment.config.state_file.exists()


def test_a_redis_of_our_own_serves_when_none_answers(tmp_path):
    silent = f"redis://127.0.0.1:{broker.free_port()}/3"
    own = broker.ensure_redis(silent, tmp_path)
    try:
        assert own.server is not None and own.url != silent
        assert own.url.endswith("/3") and broker.answers(own.url)
    finally:
        survivors = processes.stop(own.server.pid, own.server.created) if own.server else []
    assert survivors == [] and not broker.answers(own.url, timeout=0.5)


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_extracts_starting_together_create_the_raw_layer_without_colliding(clean_warehouse):
    # Extract tasks of several sources start at the same moment on Celery workers; each creates
    # the raw schema and the loader's tables if they are missing.
    from concurrent.futures import ThreadPoolExecutor

    from civic_warehouse import loader
    from civic_warehouse.catalog import load_catalog

    sources = list(load_catalog().values()) * 2

    def create(source) -> None:
        with psycopg.connect(clean_warehouse) as conn, conn.transaction():
            loader.ensure_raw_tables(conn, source)

    with ThreadPoolExecutor(len(sources)) as pool:
        list(pool.map(create, sources))
    with psycopg.connect(clean_warehouse) as conn:
        tables = conn.execute(
            "select count(*) from information_schema.tables where table_schema = 'raw'"
        ).fetchone()[0]
    assert tables == len(load_catalog()) + 3  # each source's table, _rejects, _batches, _watermarks
