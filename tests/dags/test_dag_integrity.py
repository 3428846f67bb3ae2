"""Every DAG file imports cleanly and every DAG is documented, owned, tagged and retried."""

from __future__ import annotations

import pytest

from civic_warehouse import settings


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(settings.DAGS_DIR))


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


def test_pipeline_has_one_extract_task_per_catalogued_source(dagbag):
    from civic_warehouse.catalog import load_catalog

    dag = dagbag.dags["city_pipeline"]
    extract_tasks = {t.task_id for t in dag.tasks if t.task_id.startswith("extract_")}
    assert extract_tasks == {f"extract_{name}" for name in load_catalog()}


def test_gate_runs_before_publish_and_publish_before_docs(dagbag):
    dag = dagbag.dags["city_pipeline"]
    assert dag.get_task("audit").downstream_task_ids == {"publish"}
    assert dag.get_task("publish").downstream_task_ids == {"docs"}
    assert dag.get_task("transform").downstream_task_ids == {"audit"}
