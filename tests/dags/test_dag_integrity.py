"""Every DAG file imports cleanly; every DAG is documented, owned, tagged and retried; the extract
DAGs follow the catalog and the transform DAG follows their Assets."""

from __future__ import annotations

import shutil

import pytest

from civic_warehouse import airflow_glue, cosmos_watcher, settings, warehouse
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
    # A task per model (with its tests), named after it.
    rendered = {
        t.task_id: t.model_unique_id
        for t in dag.tasks
        if (getattr(t, "model_unique_id", None) or "").startswith("model.")
    }
    assert set(rendered) == {f"dbt_build.{m}" for m in models}
    assert all(node.endswith(f".{t.split('.')[1]}") for t, node in rendered.items())
    assert dag.get_task("prepare_warehouse").downstream_task_ids >= {
        "dbt_build.dbt_producer_watcher"
    }
    assert dag.get_task("audit").upstream_task_ids >= {"dbt_build.dbt_producer_watcher_done"}
    assert dag.get_task("audit").downstream_task_ids == {"publish"}
    assert dag.get_task("publish").downstream_task_ids == {"docs"}
    assert dag.get_task("audit").retries == 0  # a failed gate is a verdict, not a glitch


def test_the_dbt_producer_reads_only_the_dbt_events_cosmos_uses_and_sends_no_telemetry(dagbag):
    """dbt's debug events (its SQL, connections, a node's progress) never reach Cosmos' callback,
    which would turn each into JSON: only a node's end, errors and what dbt logs above debug."""
    from cosmos import settings as cosmos_settings
    from dbt.adapters.events.types import SQLQuery
    from dbt.events.types import LogStartLine, NodeFinished, NodeStart, RunResultError
    from dbt_common.events.base_types import msg_from_base_event

    producer = dagbag.dags[airflow_glue.TRANSFORM_DAG_ID].get_task("dbt_build.dbt_producer_watcher")
    node = {"unique_id": "model.civic_warehouse.stg_x", "node_status": "started"}
    events = [
        NodeStart(node_info=node),
        SQLQuery(conn_name="stg_x", sql="select 1", node_info=node),
        LogStartLine(description="sql view model stg_x", index=1, total=2, node_info=node),
        NodeFinished(node_info=node, run_result={"status": "success"}),
        RunResultError(msg="Database Error in model stg_x"),
    ]
    received = []
    before = producer._dbt_runner_callbacks
    try:
        # As Cosmos registers its callback before each dbt invocation.
        producer._dbt_runner_callbacks = [*(before or []), received.append]
        for callback in producer._dbt_runner_callbacks:
            for event in events:
                callback(msg_from_base_event(event))
    finally:
        producer._dbt_runner_callbacks = before
    assert [e.info.name for e in received] == ["LogStartLine", "NodeFinished", "RunResultError"]
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
    tasks = {
        t.model_unique_id: t
        for t in cosmos_watcher.watching_tasks(dag.task_group, producer.task_id)
    }
    # Three models with two tests or more: one fails, one's test fails, one passes.
    (failed, failed_tests), (tested, tested_tests), (passed, passed_tests) = [
        (m, t) for m, t in producer.tests_per_model.items() if len(t) > 1 and m in tasks
    ][:3]
    # The tasks report on models, seeds and the snapshot; no task of its own for tests.
    assert not [t for t in dag.tasks if t.task_id.endswith(".test")]

    def finished(unique_id: str, resource_type: str, status: str) -> str:
        node = {"unique_id": unique_id, "node_status": status, "resource_type": resource_type}
        info = {"name": "NodeFinished", "level": "debug", "msg": f"{unique_id} {status}"}
        data = {"node_info": node, "run_result": {"message": f"{status}: {unique_id}"}}
        return json.dumps({"info": info, "data": data})

    ti = _RecordingTaskInstance()
    producer._held_xcoms = held = cosmos_watcher.HeldXComs(
        ti, cosmos_watcher.watched_nodes(producer)
    )
    try:
        parse = producer._make_parse_callable()
        extra = {"context": {"ti": ti, "task_instance": ti}, "project_dir": str(tmp_path)}
        parse(finished(failed, "model", "error"), extra)
        for test in failed_tests:
            parse(finished(test, "test", "skipped"), extra)
        parse(finished(tested, "model", "success"), extra)
        # The first test fails; dbt never reports the last (the build was stopped).
        for i, test in enumerate(tested_tests[:-1]):
            parse(finished(test, "test", "fail" if i == 0 else "pass"), extra)
        parse(finished(passed, "model", "success"), extra)
        for test in passed_tests:
            parse(finished(test, "test", "pass"), extra)
        assert ti.pushed == {}  # nothing while dbt runs: its threads never wait on the API
        held.flush()
    finally:
        producer._held_xcoms = None

    # One XCom per node that dbt reached, and no other.
    assert set(ti.pushed) == {cosmos_watcher.node_result_key(m) for m in (failed, tested, passed)}
    context = {"ti": ti, "task_instance": ti, "run_id": "r"}
    # On a first try a node's result decides alone, without asking for the producer's state (a
    # retry asks, and rebuilds the node, as in Cosmos).
    with pytest.raises(AirflowException, match="error"):
        tasks[failed].poke(context)
    with pytest.raises(AirflowException) as tests_failed:
        tasks[tested].poke(context)
    failing, missing = (t.split(".")[2] for t in (tested_tests[0], tested_tests[-1]))
    assert f"{failing} (fail: fail: {tested_tests[0]})" in str(tests_failed.value)
    assert f"{missing} (did not run)" in str(tests_failed.value)
    assert all(t.split(".")[2] not in str(tests_failed.value) for t in tested_tests[1:-1])
    assert tasks[passed].poke(context) is True
    assert tasks[passed].compiled_sql == ""  # none was reported: none is shown
    assert producer_state_asked == []


@pytest.mark.parametrize("full_refresh", [False, True])
def test_every_dbt_task_retries_its_node_with_a_command_dbt_accepts(
    dagbag, monkeypatch, full_refresh
):
    """A model, seed or snapshot task's retry rebuilds its node with its tests (`dbt build
    --select <node>`): each command, as Cosmos builds it, passes dbt's own argument parser, and
    keeps what it shares with the build (a full refresh; dbt's unit tests left out)."""
    import click
    from cosmos.constants import _PRODUCER_CMD_FLAGS_XCOM_KEY
    from dbt.cli.main import cli

    dag = dagbag.dags[airflow_glue.TRANSFORM_DAG_ID]
    producer = dag.get_task("dbt_build.dbt_producer_watcher")
    monkeypatch.setattr(producer, "full_refresh", full_refresh)
    ti = _RecordingTaskInstance()
    ti.try_number = 2
    ti.xcom_push(_PRODUCER_CMD_FLAGS_XCOM_KEY, producer.add_cmd_flags())
    # What a retry renders (its dbt environment, variables and flags) comes from the run.
    context = {
        "ti": ti,
        "task_instance": ti,
        "run_id": "r",
        "params": {"full_refresh": full_refresh},
    }
    kinds = set()
    for task in cosmos_watcher.watching_tasks(dag.task_group, producer.task_id):
        kinds.add(type(task).__name__)
        ran = []

        def run(context, cmd_flags, task=task, ran=ran):
            ran.append(task.build_cmd(context, cmd_flags)[0])

        monkeypatch.setattr(task, "build_and_run_cmd", run)
        task._fallback_to_non_watcher_run(ti.try_number, context)
        project = task._generate_dbt_flags(
            str(settings.DBT_PROJECT_DIR), task.profile_config.profiles_yml_filepath
        )
        args = [*ran[0][1:], *project]
        assert args[0] == "build", f"{task.task_id} retries with `dbt {args[0]}`"
        parent = cli.make_context("dbt", list(args))
        try:
            command = cli.get_command(parent, "build").make_context(
                "build", args[1:], parent=parent
            )
        except click.UsageError as err:
            pytest.fail(f"{task.task_id}'s retry would run `dbt {' '.join(args)}`: {err}")
        # Its node alone, by name (Cosmos' fallback) and by its path (the task's own selector).
        node = task.model_unique_id.split(".", 2)[2]
        selected = {s.rpartition(".")[2].rpartition(":")[2] for s in command.params["select"]}
        assert selected == {node}, task.task_id
        assert command.params["full_refresh"] is full_refresh, task.task_id
        assert "unit_test" in command.params["exclude_resource_types"], task.task_id
        assert task.env["CW_DB_HOST"] == warehouse.dbt_environ()["CW_DB_HOST"], task.task_id
    assert kinds == {
        "DbtRunWatcherOperatorLean",
        "DbtSeedWatcherOperatorLean",
        "DbtSnapshotWatcherOperatorLean",
    }


def test_a_missing_dbt_manifest_is_an_import_error_that_says_how_to_make_it(tmp_path, monkeypatch):
    monkeypatch.setattr(airflow_glue, "DBT_MANIFEST_DIR", tmp_path / "nowhere")

    bag = parse_dags()

    (error,) = [e for f, e in bag.import_errors.items() if f.endswith("transform_dag.py")]
    assert "does not exist" in error and "python -m civic_warehouse dbt-manifest" in error
    assert airflow_glue.TRANSFORM_DAG_ID not in bag.dags
