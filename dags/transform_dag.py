"""The transform Airflow DAG: when a raw table changed, dbt builds the marts into ``candidate``
(Cosmos, one task per model with its tests), Great Expectations gates them, then publish and docs.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import AssetAny, Param, dag, get_current_context, task
from airflow.sdk.exceptions import AirflowSkipException

from civic_warehouse import airflow_glue, transform
from civic_warehouse.catalog import load_catalog

# Parse-time work: the catalog's YAML files and the dbt manifest (JSON); no dbt, no warehouse.
RAW_TABLES = [airflow_glue.raw_table_asset(s) for s in load_catalog().values()]


@dag(
    dag_id=airflow_glue.TRANSFORM_DAG_ID,
    schedule=AssetAny(*RAW_TABLES),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=airflow_glue.default_args(),
    tags=["dbt", "quality", "publish"],
    user_defined_macros=airflow_glue.dbt_template_macros(),
    params={
        "full_refresh": Param(
            False, type="boolean", description="Rebuild incremental models from scratch."
        ),
        "as_of": Param(
            None,
            type=["null", "string"],
            format="date-time",
            description=(
                "Publish calls up to the publication delay before this moment. Empty: the end of "
                "the newest data interval the triggering extracts loaded (or the run's own)."
            ),
        ),
    },
    doc_md="""
### Transform, gate, publish

Runs when any extract DAG updated its raw table (Assets `raw.<table>`), or by hand.
`dbt build` builds the staging models and the marts into the `candidate` schema, one Airflow task
per model, seed and snapshot (Cosmos: each task runs `dbt build --select` of its node, so it builds
the node and runs the node's tests, and shows the SQL dbt compiled for it; clearing a task rebuilds
its node with its tests). Great Expectations then validates the candidates (`audit`); only if no critical
expectation failed are they swapped into the `open` schema that BI tools read (`publish`), and the
stewardship reports and docs are rebuilt (`docs`). A failed gate fails the run, alerts the owning
department and leaves `open` untouched.

The publication delay is anchored on the newest data interval the extracts loaded before the run
started (their asset events carry it), so a run never publishes less than what was loaded.
""",
)
def transform_marts() -> None:
    @task(inlets=RAW_TABLES)
    def prepare_warehouse() -> str:
        """Create the tables dbt reads as sources; return the publication anchor (ISO time)."""
        context = get_current_context()
        transform.ensure_dbt_sources()
        return airflow_glue.publication_anchor(context).isoformat()

    dbt_build = airflow_glue.dbt_task_group(
        group_id="dbt_build",
        dbt_vars=transform.dbt_vars(),
        dbt_env={transform.PUBLISH_AS_OF_ENV: "{{ ti.xcom_pull(task_ids='prepare_warehouse') }}"},
        # The stewardship reports describe the gate's results, so they are built after it (docs).
        exclude=["tag:stewardship"],
    )

    @task(retries=0)
    def audit() -> dict:
        # A failed gate is a verdict on the data, not a transient fault: retrying cannot fix it.
        from civic_warehouse import pipeline

        return pipeline.audit()

    @task
    def publish() -> list:
        from civic_warehouse import pipeline

        return pipeline.publish()

    @task
    def docs() -> dict:
        from civic_warehouse import pipeline

        return pipeline.docs()

    @task
    def release() -> list:
        from civic_warehouse import release as portal

        if not portal.portal_configured():
            # A deployment without an open-data portal (a laptop, CI) has nothing to release to.
            raise AirflowSkipException(f"{portal.PORTAL_URL_VARIABLE} is not set: nothing released")
        return [r.__dict__ for r in portal.release()]

    published = prepare_warehouse() >> dbt_build >> audit() >> publish()
    published >> [docs(), release()]


transform_marts()
