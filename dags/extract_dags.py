"""One Airflow extract DAG per source in the catalog (``sources/*.yml``): adding a file adds a DAG.

Each DAG loads its source's records for the run's data interval into the raw layer and emits the
raw table's Asset, which schedules the transform DAG.
"""

from __future__ import annotations

from airflow.sdk import CronDataIntervalTimetable, Param, dag, get_current_context, task
from airflow.sdk.exceptions import AirflowFailException

from civic_warehouse import airflow_glue
from civic_warehouse.catalog import SourceConfig, load_catalog

DOC = """
### Extract `{name}` ({protocol})

{description}

**Owner:** {owner}. **Schedule:** `{schedule}` ({timezone}). **Lands in:** `raw.{raw_table}`
(one row per business key `{keys}`; rejects in `raw._rejects`).

A scheduled run loads the records that changed during its data interval (reaching back by the
source's lookback for late updates), or the events of the interval for a source without a
last-change field; reference data is read whole. Re-running an interval changes nothing.

**Trigger:** with the form's logical date and no `start`/`end`, a run loads the data interval that
logical date infers (the last whole scheduled interval before it), as a scheduled run would. A run
with no logical date (the REST API's or `airflow dags trigger`'s default in Airflow 3) has no data
interval: it loads what changed since the last load, less the lookback (everything on the first
load), exactly like `python -m civic_warehouse extract {name}` without dates. A source without a
last-change field has nothing to continue from: such a run fails at once, without retries, naming
the source and asking for `start`/`end` or a logical date.

**Backfill:** trigger with `start` and `end` (local dates, end exclusive) to load the events of those
days, or `airflow backfill create --dag-id {dag_id} --from-date ... --to-date ...` for scheduled
intervals. **Reconcile:** read every record and mark the ones the city system deleted.
If a run has not finished {deadline} after it was queued (for a scheduled run: after its data
interval closed), the owner is alerted (an Airflow Deadline Alert).
"""

PARAMS = {
    "start": Param(
        None,
        type=["null", "string"],
        format="date",
        description="Backfill from this local date (inclusive). Empty: the run's data interval, "
        "or since the last load for a run without a logical date.",
    ),
    "end": Param(
        None,
        type=["null", "string"],
        format="date",
        description="Backfill up to this local date (exclusive).",
    ),
    "reconcile": Param(
        False,
        type="boolean",
        description="Full refresh: read every record; mark keys the source no longer has as deleted.",
    ),
}


def extract_dag(source: SourceConfig) -> None:
    dag_id = airflow_glue.extract_dag_id(source.name)
    raw_table = airflow_glue.raw_table_asset(source)
    deadline = airflow_glue.freshness_deadline(source)

    @dag(
        dag_id=dag_id,
        schedule=CronDataIntervalTimetable(source.schedule, timezone=source.timezone),
        **airflow_glue.schedule_timing(source),
        max_active_runs=1,
        default_args=airflow_glue.default_args(),
        tags=["extract", source.protocol, "raw"],
        params=PARAMS,
        deadline=deadline,
        doc_md=DOC.format(
            dag_id=dag_id,
            keys=", ".join(source.business_key),
            deadline=deadline.interval,
            **source.__dict__,
        ),
    )
    def extract_source() -> None:
        @task(task_id="extract", outlets=[raw_table])
        def extract() -> dict:
            from civic_warehouse import pipeline

            context = get_current_context()
            params = context["params"]
            # A run without a logical date has no data interval keys at all (see DOC).
            interval_end = context.get("data_interval_end")
            try:
                query = pipeline.query_for_run(
                    source,
                    context.get("data_interval_start"),
                    interval_end,
                    params.get("start"),
                    params.get("end"),
                    reconcile=params["reconcile"],
                )
            except pipeline.RunScopeError as err:
                # The trigger asked for what the source cannot give: retries would fail alike.
                raise AirflowFailException(str(err)) from None
            result = pipeline.extract(source.name, query)
            # The transform DAG anchors the publication delay on the newest loaded interval.
            context["outlet_events"][raw_table].extra = {
                "data_interval_end": interval_end.isoformat() if interval_end else None,
                "inserted": result["inserted"],
                "updated": result["updated"],
            }
            return result

        extract()

    extract_source()


# Reading a few small YAML files is the only parse-time work; connectors are imported inside tasks.
for _source in load_catalog().values():
    extract_dag(_source)
