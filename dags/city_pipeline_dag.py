"""The city pipeline DAG: extract every catalogued source, build the marts, gate them, publish."""

from __future__ import annotations

import pendulum
from airflow.sdk import CronDataIntervalTimetable, Param, dag, get_current_context, task

from civic_warehouse.airflow_glue import default_args
from civic_warehouse.catalog import load_catalog

CITY_TIMEZONE = "America/New_York"

# Reading a few small YAML files is the only parse-time work; connectors are imported inside tasks.
SOURCES = sorted(load_catalog())


@dag(
    dag_id="city_pipeline",
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone=CITY_TIMEZONE),
    start_date=pendulum.datetime(2026, 1, 1, tz=CITY_TIMEZONE),
    catchup=False,
    max_active_runs=1,
    default_args=default_args(),
    tags=["city", "extract", "dbt", "quality", "publish"],
    params={
        "start": Param(
            None,
            type=["null", "string"],
            format="date",
            description="Backfill from this local date (inclusive). Empty: the run's data interval.",
        ),
        "end": Param(
            None,
            type=["null", "string"],
            format="date",
            description="Backfill up to this local date (exclusive).",
        ),
        "full_refresh": Param(
            False, type="boolean", description="Rebuild incremental models from scratch."
        ),
        "reconcile": Param(
            False,
            type="boolean",
            description="Read every record of every source; mark keys a source no longer has as deleted.",
        ),
    },
    doc_md="""
### City pipeline

For each source in the catalog (`sources/*.yml`): extract the records that changed during the run's
data interval (one local day, reaching back by the source's lookback for late updates) from the city
system into the `raw` layer. Then `dbt build` the staging models and the marts into the
`candidate` schema, validate the candidates with Great Expectations, and only if no critical
expectation failed swap them into the `open` schema that BI tools read.

**Backfill:** trigger with `start` and `end` (local dates, end exclusive) to load the events of those
days, or `airflow backfill create` for scheduled intervals. **Reconcile:** read every record and mark
the ones a source deleted. Re-running is idempotent: the raw layer keeps one row per record (the
latest version wins) and the marts are rebuilt.
""",
)
def city_pipeline():
    @task
    def extract(source: str) -> dict:
        from civic_warehouse import catalog, pipeline

        context = get_current_context()
        params = context["params"]
        query = pipeline.query_for_run(
            catalog.get_source(source),
            context["data_interval_start"],
            context["data_interval_end"],
            params.get("start"),
            params.get("end"),
            reconcile=params["reconcile"],
        )
        return pipeline.extract(source, query)

    @task
    def transform() -> dict:
        from civic_warehouse import pipeline

        context = get_current_context()
        # The data interval's end anchors the publication delay, so a re-run publishes the same.
        return pipeline.transform_candidate(
            full_refresh=context["params"]["full_refresh"], as_of=context["data_interval_end"]
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

    extracted = [extract.override(task_id=f"extract_{name}")(source=name) for name in SOURCES]
    built = transform()
    extracted >> built
    built >> audit() >> publish() >> docs()


city_pipeline()
