"""The quality gate: validate candidate marts with Great Expectations before anything is published.

Suites live in ``expectations/expectations/<table>.json`` (GX's file context, in git): one per
source feed as staged (``stg_*``: required fields, coordinates, timestamps, volume, duplicates,
rejected records) and one per published fact mart (``fct_*``). Each expectation has GX's own
``severity``: ``critical`` blocks publishing, ``warning`` is recorded and published. Every result is
stored in the warehouse's ``quality`` schema and Data Docs are rebuilt on every validation.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from civic_warehouse import publish as publishing
from civic_warehouse import settings, warehouse

log = logging.getLogger(__name__)

DATASOURCE = "warehouse"
SAMPLE_SIZE = 5
# Data Docs keep a page per suite for every gate run, and each run rebuilds the site's index from
# all of them (once per suite): kept without limit, the gate of a daily pipeline slows down every
# day. The warehouse keeps every result (quality.validation_results); Data Docs the newest runs.
RUNS_KEPT_ENV = "CW_DATA_DOCS_RUNS"
DEFAULT_RUNS_KEPT = 30


class QualityGateFailed(RuntimeError):
    """A critical expectation failed: the candidate must not be published."""

    def __init__(self, report: GateReport) -> None:
        self.report = report
        super().__init__(report.describe_failures())


@dataclass(frozen=True)
class ExpectationOutcome:
    suite: str
    table: str
    owner: str | None
    expectation: str
    column: str | None
    severity: str
    success: bool
    observed: Any
    samples: list[Any]
    notes: str | None


@dataclass
class GateReport:
    run_id: str
    validated_at: datetime
    data_docs: Path
    outcomes: list[ExpectationOutcome] = field(default_factory=list)
    # The identity of the build validated (publish.candidate_build): publishing accepts only it.
    build: str | None = None

    @property
    def critical_failures(self) -> list[ExpectationOutcome]:
        return [o for o in self.outcomes if not o.success and o.severity == "critical"]

    @property
    def warnings(self) -> list[ExpectationOutcome]:
        return [o for o in self.outcomes if not o.success and o.severity != "critical"]

    @property
    def passed(self) -> bool:
        return not self.critical_failures

    def owners_of_failures(self) -> list[str]:
        return sorted({o.owner for o in self.critical_failures if o.owner})

    def summary(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "passed": self.passed,
            "expectations": len(self.outcomes),
            "critical_failures": len(self.critical_failures),
            "warnings": len(self.warnings),
            "data_docs": str(self.data_docs),
        }

    def describe_failures(self) -> str:
        lines = [f"quality gate failed: {len(self.critical_failures)} critical expectation(s)"]
        for o in self.critical_failures:
            target = f"{o.table}.{o.column}" if o.column else o.table
            lines.append(
                f"  suite {o.suite}: {o.expectation} on {target}: observed {o.observed!r}; "
                f"sample failing values {o.samples!r}; {o.notes or ''}".rstrip("; ")
            )
        if owners := self.owners_of_failures():
            lines.append(f"Owner: {', '.join(owners)}")
        lines.append(f"Data Docs: {self.data_docs}")
        return "\n".join(lines)


def data_docs_index() -> Path:
    return settings.EXPECTATIONS_DIR / "uncommitted" / "data_docs" / "local_site" / "index.html"


def runs_kept() -> int:
    """How many gate runs Data Docs keep for each suite (``CW_DATA_DOCS_RUNS``)."""
    value = os.environ.get(RUNS_KEPT_ENV, "").strip()
    try:
        kept = int(value) if value else DEFAULT_RUNS_KEPT
    except ValueError:
        kept = 0
    if kept < 1:
        raise ValueError(f"{RUNS_KEPT_ENV}={value!r}: expected a whole number of runs, at least 1")
    return kept


def prune_validation_results(keep: int) -> int:
    """Remove all but the newest ``keep`` stored validation results of each suite, with their
    Data Docs pages; returns how many were removed."""
    store = settings.EXPECTATIONS_DIR / "uncommitted" / "validations"
    pages = data_docs_index().parent / "validations"
    removed = 0
    for suite in sorted(p for p in store.iterdir() if p.is_dir()) if store.is_dir() else ():
        # <suite>/<run name>/<run time, e.g. 20261206T045835.170912Z>/<batch>.json
        runs = [run for name in suite.iterdir() if name.is_dir() for run in name.iterdir()]
        for run in sorted(runs, key=lambda run: run.name, reverse=True)[keep:]:
            shutil.rmtree(run)
            shutil.rmtree(pages / run.relative_to(store), ignore_errors=True)
            removed += 1
    return removed


def gx_context():
    import great_expectations as gx

    return gx.get_context(mode="file", context_root_dir=str(settings.EXPECTATIONS_DIR))


def validate(schema: str = settings.CANDIDATE_SCHEMA, url: str | None = None) -> GateReport:
    """Validate every suite's table in ``schema``; record results; raise nothing (see ``gate``)."""
    import great_expectations as gx
    from great_expectations.checkpoint import UpdateDataDocsAction
    from great_expectations.expectations.metadata_types import FailureSeverity

    # Imports GX, as this function does: not at import time, which the DAG files pay for.
    from civic_warehouse import data_docs

    keep = runs_kept()
    url = url or warehouse.warehouse_url()
    # great_expectations.yml reads the connection string from this variable.
    os.environ["CW_WAREHOUSE_URL"] = url
    context = gx_context()
    datasource = context.data_sources.get(DATASOURCE)
    validation_definitions = []
    for suite in context.suites.all():
        table = suite.meta["table"]
        # Mart suites validate the candidate; source suites name the schema they validate.
        table_schema = suite.meta.get("schema", schema)
        asset_name = f"{table_schema}.{table}"
        try:
            asset = datasource.get_asset(asset_name)
        except LookupError:
            asset = datasource.add_table_asset(
                name=asset_name, table_name=table, schema_name=table_schema
            )
        batch = (
            asset.batch_definitions[0]
            if asset.batch_definitions
            else asset.add_batch_definition_whole_table("whole_table")
        )
        validation_definitions.append(
            context.validation_definitions.add_or_update(
                gx.ValidationDefinition(
                    name=f"{suite.name}__{table_schema}", data=batch, suite=suite
                )
            )
        )
    checkpoint = context.checkpoints.add_or_update(
        gx.Checkpoint(
            name=f"{schema}_gate",
            validation_definitions=validation_definitions,
            actions=[UpdateDataDocsAction(name="update_data_docs")],
            result_format={"result_format": "SUMMARY", "partial_unexpected_count": SAMPLE_SIZE},
        )
    )
    with warehouse.connect(url) as conn:
        parameters = {
            f"min_rows_{suite.meta['table']}": minimum_rows(conn, suite.meta)
            for suite in context.suites.all()
        }
        # Taken before validating: a write during or after validation changes the build that
        # publishing finds, so it no longer matches the one recorded here.
        build = publishing.candidate_build(conn, schema)
    # This run's results make the newest of those kept.
    pruned = prune_validation_results(keep - 1)
    if pruned:
        log.info("Data Docs: %d older validation result(s) removed (%s)", pruned, RUNS_KEPT_ENV)
    run = checkpoint.run(expectation_parameters=parameters)
    data_docs.make_offline(data_docs_index().parent)
    report = GateReport(
        run_id=str(uuid.uuid4()),
        validated_at=datetime.now(UTC),
        data_docs=data_docs_index(),
        build=build,
    )
    with warehouse.connect(url) as conn:
        for suite_result in run.run_results.values():
            suite_name = suite_result.suite_name
            suite_meta = context.suites.get(suite_name).meta
            table = suite_meta["table"]
            for result in suite_result.results:
                config = result.expectation_config
                details = result.result or {}
                samples = list(details.get("partial_unexpected_list") or [])[:SAMPLE_SIZE]
                if not result.success and "unexpected_rows_query" in config.kwargs:
                    batch = f"{suite_meta.get('schema', schema)}.{table}"
                    samples = failing_rows(conn, config.kwargs["unexpected_rows_query"], batch)
                report.outcomes.append(
                    ExpectationOutcome(
                        suite=suite_name,
                        table=table,
                        owner=suite_meta.get("owner"),
                        expectation=config.type,
                        column=config.kwargs.get("column") or _description(config),
                        severity=FailureSeverity(config.severity).value,
                        success=bool(result.success),
                        observed=details.get("observed_value", details.get("unexpected_count")),
                        samples=samples,
                        notes=config.notes,
                    )
                )
        record(conn, report)
    log.info("quality gate: %s", report.summary())
    return report


def failing_rows(conn: psycopg.Connection, query: str, batch: str) -> list[dict[str, Any]]:
    """The first rows a failed SQL expectation found, for the steward's error message.

    GX reports only a count for these at the SUMMARY result format; the full row lists of the
    COMPLETE format would be unbounded for column expectations.
    """
    failing = sql.SQL("select * from ({}) as failing limit {}").format(
        sql.SQL(query.replace("{batch}", batch)), sql.Literal(SAMPLE_SIZE)
    )
    try:
        with conn.transaction(), conn.cursor(row_factory=dict_row) as cursor:
            rows = cursor.execute(failing).fetchall()
    except psycopg.Error as err:
        # GX has recorded the expectation's own error; the samples are only an aid.
        log.warning("no sample rows for a failed expectation on %s: %s", batch, err)
        return []
    # As JSON has them (dates and decimals as text), so messages read as the quality table does.
    return json.loads(json.dumps(rows, default=str))


def minimum_rows(conn: psycopg.Connection, suite_meta: dict[str, Any]) -> int:
    """The fewest rows a table may have: a share of the published version (``max_shrink``).

    A source suite names the mart it is published as (``published_as``). Before a mart's first
    publication there is nothing to collapse against: a city that has not configured a source yet
    still publishes the marts it has.
    """
    table = suite_meta.get("published_as", suite_meta["table"])
    exists = conn.execute("select to_regclass(%s)", [f"{settings.OPEN_SCHEMA}.{table}"]).fetchone()[
        0
    ]
    if not exists:
        return 0
    published = conn.execute(
        sql.SQL("select count(*) from {}").format(sql.Identifier(settings.OPEN_SCHEMA, table))
    ).fetchone()[0]
    shrink = float(suite_meta.get("max_shrink", 0.5))
    return math.ceil(published * (1 - shrink))


def gate(schema: str = settings.CANDIDATE_SCHEMA, url: str | None = None) -> GateReport:
    """Validate and raise ``QualityGateFailed`` on any critical failure."""
    report = validate(schema, url)
    if not report.passed:
        raise QualityGateFailed(report)
    return report


def record(conn: psycopg.Connection, report: GateReport) -> None:
    ensure_results_table(conn)
    results = sql.Identifier(settings.QUALITY_SCHEMA, "validation_results")
    with conn.cursor() as cursor:
        cursor.executemany(
            sql.SQL("insert into {} values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)").format(
                results
            ),
            [
                (
                    report.run_id,
                    report.validated_at,
                    o.suite,
                    o.table,
                    o.expectation,
                    o.column,
                    o.severity,
                    o.success,
                    json.dumps(o.observed, default=str),
                    json.dumps(o.samples, default=str),
                    o.notes,
                )
                for o in report.outcomes
            ],
        )
    if report.build:
        publishing.record_verdict(
            conn,
            report.build,
            report.run_id,
            report.validated_at,
            report.passed,
            len(report.critical_failures),
        )


def ensure_results_table(conn: psycopg.Connection) -> None:
    schema = sql.Identifier(settings.QUALITY_SCHEMA)
    conn.execute(sql.SQL("create schema if not exists {}").format(schema))
    conn.execute(
        sql.SQL(
            """
            create table if not exists {} (
                run_id uuid not null,
                validated_at timestamptz not null,
                suite text not null,
                table_name text not null,
                expectation text not null,
                column_name text,
                severity text not null,
                success boolean not null,
                observed_value jsonb,
                sample_failing_values jsonb,
                notes text
            )
            """
        ).format(sql.Identifier(settings.QUALITY_SCHEMA, "validation_results"))
    )


def _description(config: Any) -> str | None:
    # SQL row expectations carry a description instead of a column.
    return getattr(config, "description", None) or config.kwargs.get("description")
