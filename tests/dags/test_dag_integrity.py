"""Every DAG file imports cleanly; every DAG is documented, owned, tagged and retried; the extract
DAGs follow the catalog and the transform DAG follows their Assets."""

from __future__ import annotations

import shutil

import pytest

from civic_warehouse import airflow_glue, cosmos_watcher, settings
from civic_warehouse.catalog import load_catalog


def parse_dags():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(settings.DAGS_DIR))


@pytest.fixture(scope="module")
def dagbag(dbt_manifest):
    return parse_dags()


def test_dag_files_import_without_errors(dagbag):
    assert dagbag.import_errors == {}
    assert dagbag.dags, "no DAGs found in dags/"


def test_every_dag_has_an_owner_tags_retries_and_docs(dagbag):
    for dag_id, dag in dagbag.dags.items():
        assert dag.doc_md and dag.doc_md.strip(), f"{dag_id}: doc_md is empty"
        assert dag.tags, f"{dag_id}: no tags"
        for task in dag.tasks:
            assert task.owner and task.owner != "airflow", f"{dag_id}.{task.task_id}: no owner"
        retried = [t for t in dag.tasks if t.retries > 0]
        assert retried, f"{dag_id}: no task retries"
        assert all(t.retry_exponential_backoff for t in retried), (
            f"{dag_id}: retries without backoff"
        )


def test_there_is_one_extract_dag_per_catalogued_source_and_one_transform_dag(dagbag):
    expected = {airflow_glue.extract_dag_id(name) for name in load_catalog()}
    assert set(dagbag.dags) == expected | {airflow_glue.TRANSFORM_DAG_ID}


def test_each_extract_dag_runs_on_its_sources_schedule_and_emits_its_raw_table(dagbag):
    for name, source in load_catalog().items():
        dag = dagbag.dags[airflow_glue.extract_dag_id(name)]
        presets = {"@daily": "0 0 * * *", "@weekly": "0 0 * * 0"}
        assert dag.timetable.expression == presets.get(source.schedule, source.schedule)
        assert str(dag.timetable.timezone) == source.timezone
        (extract,) = dag.tasks
        assert [a.name for a in extract.outlets] == [f"raw.{source.raw_table}"]
        assert set(dag.params) == {"start", "end", "reconcile"}
        assert dag.max_active_runs == 1


def test_each_extract_dag_has_a_freshness_deadline_alerting_its_source(dagbag):
    from airflow.sdk import DeadlineReference

    for name in load_catalog():
        (alert,) = dagbag.dags[airflow_glue.extract_dag_id(name)].deadline
        assert alert.callback.kwargs == {"source": name}
        assert alert.callback.path == "civic_warehouse.airflow_glue.on_source_overdue"
        assert alert.reference == DeadlineReference.DAGRUN_QUEUED_AT
        assert alert.interval == airflow_glue.FRESHNESS_GRACE


def test_adding_a_source_file_adds_an_extract_dag(tmp_path, monkeypatch, dbt_manifest):
    shutil.copytree(settings.SOURCES_DIR, tmp_path, dirs_exist_ok=True)
    text = (tmp_path / "traffic_crashes.yml").read_text()
    (tmp_path / "bike_crashes.yml").write_text(
        text.replace("name: traffic_crashes", "name: bike_crashes").replace(
            "raw_table: traffic_crashes", "raw_table: bike_crashes"
        )
    )
    monkeypatch.setattr(settings, "SOURCES_DIR", tmp_path)

    bag = parse_dags()

    assert bag.import_errors == {}
    dag = bag.dags["extract_bike_crashes"]
    assert [a.name for a in dag.tasks[0].outlets] == ["raw.bike_crashes"]
    transform = bag.dags[airflow_glue.TRANSFORM_DAG_ID]
    assert "raw.bike_crashes" in {a.name for a in transform.timetable.asset_condition.objects}


def test_the_transform_dag_is_scheduled_on_every_raw_table(dagbag):
    dag = dagbag.dags[airflow_glue.TRANSFORM_DAG_ID]
    names = {a.name for a in dag.timetable.asset_condition.objects}
    assert names == {f"raw.{s.raw_table}" for s in load_catalog().values()}


def test_the_transform_dag_has_a_task_per_dbt_model_then_gate_publish_docs(dagbag, dbt_manifest):
    import json

    dag = dagbag.dags[airflow_glue.TRANSFORM_DAG_ID]
    nodes = json.loads(dbt_manifest.read_text())["nodes"].values()
    models = {
        n["name"] for n in nodes if n["resource_type"] == "model" and "stewardship" not in n["tags"]
    }
    rendered = {t.task_id.split(".")[1] for t in dag.tasks if t.task_id.endswith(".run")}
    assert rendered == models
    assert dag.get_task("prepare_warehouse").downstream_task_ids >= {
        "dbt_build.dbt_producer_watcher"
    }
    assert dag.get_task("audit").upstream_task_ids >= {"dbt_build.dbt_producer_watcher_done"}
    assert dag.get_task("audit").downstream_task_ids == {"publish"}
    assert dag.get_task("publish").downstream_task_ids == {"docs"}
    assert dag.get_task("audit").retries == 0  # a failed gate is a verdict, not a glitch


def test_the_dbt_producer_stores_no_progress_events_and_cosmos_sends_no_telemetry(dagbag, caplog):
    import json
    import logging

    from cosmos import settings as cosmos_settings

    producer = dagbag.dags[airflow_glue.TRANSFORM_DAG_ID].get_task("dbt_build.dbt_producer_watcher")
    parse = producer._make_parse_callable()

    def event(name: str) -> str:
        node = {"unique_id": "model.civic_warehouse.stg_x", "node_status": "started"}
        info = {"name": name, "level": "info", "msg": f"{name} of stg_x"}
        return json.dumps({"info": info, "data": {"node_info": node}})

    with caplog.at_level(logging.INFO, logger="cosmos"):
        for name in ("NodeStart", "NodeCompiling", "NodeExecuting", "LogStartLine"):
            parse(event(name), {"context": None})
    # Only the event that is not a node's progress reaches Cosmos' parser (which logs it).
    assert [r.getMessage().split("  ")[-1] for r in caplog.records] == ["LogStartLine of stg_x"]
    assert not cosmos_settings.enable_telemetry
    assert not cosmos_settings.enable_watcher_reliable_retry


class _RecordingTaskInstance:
    """The producer's and a model task's XComs, kept in memory (no Airflow API in this test)."""

    try_number = 1

    def __init__(self) -> None:
        self.pushed: dict[str, object] = {}

    def xcom_push(self, key: str, value: object) -> None:
        self.pushed[key] = value

    def xcom_pull(self, task_ids=None, key: str = "return_value", **_) -> object:
        return self.pushed.get(key)


def test_the_dbt_producer_stores_what_the_model_tasks_read_once_dbt_is_done(
    dagbag, tmp_path, monkeypatch
):
    import json

    from airflow.exceptions import AirflowException
    from cosmos.operators._watcher import base as cosmos_watcher_base

    producer_state_asked = []
    monkeypatch.setattr(
        cosmos_watcher_base,
        "build_producer_state_fetcher",
        lambda **_: lambda: producer_state_asked.append(1),
    )

    dag = dagbag.dags[airflow_glue.TRANSFORM_DAG_ID]
    producer = dag.get_task("dbt_build.dbt_producer_watcher")
    model, tests = next(
        (m, t) for m, t in producer.tests_per_model.items() if t and m.startswith("model.")
    )
    model_task = next(
        t for t in dag.tasks if t.task_id.endswith(".run") and t.model_unique_id == model
    )
    tests_task = next(
        t for t in dag.tasks if t.task_id.endswith(".test") and t.model_unique_id == model
    )

    def finished(unique_id: str, resource_type: str, status: str) -> str:
        node = {"unique_id": unique_id, "node_status": status, "resource_type": resource_type}
        info = {"name": "NodeFinished", "level": "debug", "msg": f"{unique_id} {status}"}
        return json.dumps({"info": info, "data": {"node_info": node}})

    ti = _RecordingTaskInstance()
    producer._held_xcoms = held = cosmos_watcher.HeldXComs(
        ti, cosmos_watcher.watched_xcom_keys(producer)
    )
    try:
        parse = producer._make_parse_callable()
        extra = {"context": {"ti": ti, "task_instance": ti}, "project_dir": str(tmp_path)}
        parse(finished(model, "model", "error"), extra)
        for test in tests:
            parse(finished(test, "test", "pass"), extra)
        assert ti.pushed == {}  # nothing while dbt runs: its threads never wait on the API
        held.flush()
    finally:
        producer._held_xcoms = None

    key = model.replace(".", "__")
    assert set(ti.pushed) == {f"{key}_status", f"{key}_dbt_event", f"{key}_tests_status"}
    assert ti.pushed[f"{key}_status"]["status"] == "error"
    context = {"ti": ti, "task_instance": ti, "run_id": "r"}
    # The failed model fails its own task and its tests' task passes, on a first try without
    # asking for the producer's state (a retry asks, and reruns the model, as in Cosmos).
    with pytest.raises(AirflowException, match="error"):
        model_task.poke(context)
    assert tests_task.poke(context) is True
    assert producer_state_asked == []


@pytest.mark.parametrize("full_refresh", [False, True])
def test_every_dbt_task_retries_its_node_with_a_command_dbt_accepts(
    dagbag, monkeypatch, full_refresh
):
    """A model, seed, snapshot or tests task's retry reruns its node alone (`dbt run`, `seed`,
    `snapshot` or `test`): each command, as Cosmos builds it, passes dbt's own argument parser,
    and keeps what it shares with the build (a full refresh; dbt's unit tests left out)."""
    import click
    from cosmos.constants import _PRODUCER_CMD_FLAGS_XCOM_KEY
    from dbt.cli.main import cli

    dag = dagbag.dags[airflow_glue.TRANSFORM_DAG_ID]
    producer = dag.get_task("dbt_build.dbt_producer_watcher")
    monkeypatch.setattr(producer, "full_refresh", full_refresh)
    ti = _RecordingTaskInstance()
    ti.try_number = 2
    ti.xcom_push(_PRODUCER_CMD_FLAGS_XCOM_KEY, producer.add_cmd_flags())
    context = {"ti": ti, "task_instance": ti, "run_id": "r"}
    commands: dict[str, list[str]] = {}
    for task in cosmos_watcher.watching_tasks(dag.task_group, producer.task_id):
        ran = []

        def run(context, cmd_flags, task=task, ran=ran):
            ran.append(task.build_cmd(context, cmd_flags)[0])

        monkeypatch.setattr(task, "build_and_run_cmd", run)
        task._fallback_to_non_watcher_run(ti.try_number, context)
        project = task._generate_dbt_flags(
            str(settings.DBT_PROJECT_DIR), task.profile_config.profiles_yml_filepath
        )
        commands.setdefault(ran[0][1], [*ran[0][1:], *project])

    assert set(commands) == {"run", "seed", "snapshot", "test"}
    for args in commands.values():
        parent = cli.make_context("dbt", list(args))
        try:
            cli.get_command(parent, args[0]).make_context(args[0], list(args[1:]), parent=parent)
        except click.UsageError as err:
            pytest.fail(f"a retry would run `dbt {' '.join(args)}`: {err}")
    assert ("--full-refresh" in commands["run"]) is full_refresh
    assert ("--full-refresh" in commands["seed"]) is full_refresh
    assert "--exclude-resource-type" in commands["test"]


def test_a_missing_dbt_manifest_is_an_import_error_that_says_how_to_make_it(tmp_path, monkeypatch):
    monkeypatch.setattr(airflow_glue, "DBT_MANIFEST_DIR", tmp_path / "nowhere")

    bag = parse_dags()

    (error,) = [e for f, e in bag.import_errors.items() if f.endswith("transform_dag.py")]
    assert "does not exist" in error and "python -m civic_warehouse dbt-manifest" in error
    assert airflow_glue.TRANSFORM_DAG_ID not in bag.dags
