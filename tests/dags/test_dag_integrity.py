"""Every DAG file imports cleanly; every DAG is documented, owned, tagged and retried; the extract
DAGs follow the catalog and the transform DAG follows their Assets."""

from __future__ import annotations

import shutil

import pytest

from civic_warehouse import airflow_glue, settings, warehouse
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


def dbt_tasks(dag) -> dict:
    """The transform DAG's dbt tasks, each to the unique id of the dbt node it builds."""
    return {
        t.task_id: t.extra_context["dbt_node_config"]["unique_id"]
        for t in dag.tasks
        if t.task_id.startswith("dbt_build.")
    }


def test_the_transform_dag_has_a_task_per_dbt_model_then_gate_publish_docs(dagbag, dbt_manifest):
    import json

    dag = dagbag.dags[airflow_glue.TRANSFORM_DAG_ID]
    nodes = json.loads(dbt_manifest.read_text())["nodes"].values()
    built = {
        n["unique_id"]
        for n in nodes
        if n["resource_type"] in ("model", "seed", "snapshot") and "stewardship" not in n["tags"]
    }
    # A task per model, seed and snapshot (with its tests), named after it; none for a test.
    rendered = dbt_tasks(dag)
    assert set(rendered.values()) == built
    assert all(node.endswith(f".{t.split('.')[1]}") for t, node in rendered.items())
    # The tasks follow dbt's dependencies: a mart after its staging model, after its seed.
    assert (
        "dbt_build.fct_calls_for_service"
        in dag.get_task("dbt_build.int_calls_for_service_versions").downstream_task_ids
    )
    assert "dbt_build.dim_call_type" in dag.get_task("dbt_build.call_types").downstream_task_ids
    roots = {t for t in rendered if not dag.get_task(t).upstream_task_ids - {"prepare_warehouse"}}
    leaves = {t for t in rendered if not dag.get_task(t).downstream_task_ids - {"audit"}}
    assert dag.get_task("prepare_warehouse").downstream_task_ids == roots
    assert dag.get_task("audit").upstream_task_ids == leaves
    assert dag.get_task("audit").downstream_task_ids == {"publish"}
    assert dag.get_task("publish").downstream_task_ids == {"docs", "release"}
    assert dag.get_task("audit").retries == 0  # a failed gate is a verdict, not a glitch


class _AnchorTaskInstance:
    """What a dbt task's templates read of the run: the anchor ``prepare_warehouse`` returned."""

    def xcom_pull(self, task_ids=None, **_) -> str:
        return "2026-03-10T00:00:00+00:00" if task_ids == "prepare_warehouse" else None


@pytest.mark.parametrize("full_refresh", [False, True])
def test_every_dbt_task_builds_its_node_with_its_tests_in_a_command_dbt_accepts(
    dbt_manifest, full_refresh
):
    """Each model, seed or snapshot task runs (and, cleared or retried, runs again) `dbt build
    --select <its node>`: the node and its tests. Each command, as Cosmos renders it for a run,
    passes dbt's own argument parser and keeps what it shares with the pipeline's build (a full
    refresh; dbt's unit tests and the stewardship reports left out)."""
    import click
    from dbt.cli.main import cli

    # Rendering changes the tasks: a DAG of this test's own.
    dag = parse_dags().dags[airflow_glue.TRANSFORM_DAG_ID]
    ti = _AnchorTaskInstance()
    for task_id, node in dbt_tasks(dag).items():
        task = dag.get_task(task_id)
        context = {"ti": ti, "task_instance": ti, "params": {"full_refresh": full_refresh}}
        task.render_template_fields(context, jinja_env=dag.get_template_env())
        command, env = task.build_cmd(context, task.add_cmd_flags())
        # Cosmos adds where the project and its profile are when it runs the command.
        project = str(settings.DBT_PROJECT_DIR)
        args = [*command[1:], "--project-dir", project, "--profiles-dir", project]
        assert args[0] == "build", f"{task_id} runs `dbt {args[0]}`"
        parent = cli.make_context("dbt", list(args))
        try:
            built = cli.get_command(parent, "build").make_context("build", args[1:], parent=parent)
        except click.UsageError as err:
            pytest.fail(f"{task_id} would run `dbt {' '.join(args)}`: {err}")
        # Its node alone, by its path in the project.
        (selected,) = built.params["select"]
        assert selected.startswith("fqn:") and selected.endswith(f".{node.split('.')[2]}")
        assert built.params["full_refresh"] is full_refresh, task_id
        assert "unit_test" in built.params["exclude_resource_types"], task_id
        assert built.params["exclude"] == ("tag:stewardship",), task_id
        assert built.params["indirect_selection"] != "empty", task_id  # its tests run too
        assert env["CW_DB_HOST"] == warehouse.dbt_environ()["CW_DB_HOST"], task_id
        assert env["CW_PUBLISH_AS_OF"] == "2026-03-10T00:00:00+00:00", task_id


def test_cosmos_sends_no_telemetry(dagbag):
    from cosmos import settings as cosmos_settings

    assert not cosmos_settings.enable_telemetry
