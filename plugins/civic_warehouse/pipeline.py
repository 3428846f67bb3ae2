"""The pipeline's steps, each a plain function: the DAGs call them, and so do the CLI and the tests.

extract (per source, per data interval) -> transform (dbt build into ``candidate``)
-> audit (Great Expectations gate) -> publish (swap into ``open``) -> docs.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from civic_warehouse import (
    catalog,
    docs_site,
    loader,
    public_dashboard,
    quality,
    settings,
    transform,
    warehouse,
)
from civic_warehouse import publish as publishing
from civic_warehouse.connectors import Page, Query, Window, as_utc, connector_for

log = logging.getLogger(__name__)


def local_midnight(source: catalog.SourceConfig, day: str) -> datetime:
    """Midnight of a local date (YYYY-MM-DD) in the source's zone, or an ISO datetime as given."""
    moment = datetime.fromisoformat(day)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=source.tz)
    return moment


class RunScopeError(ValueError):
    """A run asks for records its source cannot select that way; running it again cannot help."""


def query_for_run(
    source: catalog.SourceConfig,
    interval_start: datetime | None,
    interval_end: datetime | None,
    start: str | None = None,
    end: str | None = None,
    reconcile: bool = False,
    url: str | None = None,
) -> Query:
    """What one extract run fetches.

    A scheduled run takes the records that changed during its data interval, reaching back by the
    source's lookback for late updates (or, for a source without a last-change field, the events of
    its interval). A backfill names local dates ``start``..``end`` (end exclusive) and takes the
    events of those days. A reconcile reads everything. A run without a data interval (Airflow 3
    runs triggered without a logical date) loads what changed since the last load, as the CLI's
    ``extract`` without dates does; ``url`` names the warehouse that remembers the last load.

    The interval may be any aware datetimes (Airflow passes pendulum DateTimes): they are made
    plain UTC here, before any arithmetic, so the lookback is elapsed time across clock changes.
    """
    if reconcile or not (source.event_time_field or source.updated_field):
        return Query()  # reference data (no time fields) is read whole every run
    if start or end:
        if not source.event_time_field:
            raise RunScopeError(
                f"source {source.name!r} has no event_time_field to backfill by: "
                "trigger it without start and end"
            )
        if not (start and end):
            raise RunScopeError(
                f"source {source.name!r}: give both start and end "
                "(local dates, end exclusive), or neither"
            )
        return Query(events=Window(local_midnight(source, start), local_midnight(source, end)))
    if interval_start is None or interval_end is None:
        if not source.updated_field:
            raise RunScopeError(
                f"source {source.name!r} has no updated_field, so a run without a data interval "
                "has no last load to continue from: trigger it with start and end (local dates, "
                "end exclusive), or with a logical date"
            )
        return query_since_watermark(source, url)
    interval = Window(as_utc(interval_start), as_utc(interval_end))
    if source.updated_field:
        return Query(updated=Window(interval.start - source.lookback, interval.end))
    return Query(events=interval)


def query_since_watermark(
    source: catalog.SourceConfig, url: str | None = None, until: datetime | None = None
) -> Query:
    """Records changed since the last load (less the lookback), for runs outside a schedule.

    The CLI's ``extract`` without dates and an Airflow run without a data interval both load this.
    Before a source's first load that is everything it has.
    """
    if not source.updated_field:
        raise RunScopeError(
            f"source {source.name!r} has no updated_field: give --since and --until"
        )
    with warehouse.connect(url) as conn:
        mark = loader.watermark(conn, source)
    if mark is None:
        return Query()  # first load: everything
    start, end = as_utc(mark) - source.lookback, as_utc(until or datetime.now(UTC))
    if as_utc(mark) >= end:
        # The source stamped a change later than now (its clock runs ahead of ours): read up to
        # that change, so the run neither refuses an empty window nor misses what came since.
        log.warning(
            "source %s: its newest change (%s) is later than now; reading up to it",
            source.name,
            mark.isoformat(),
        )
        end = as_utc(mark) + timedelta(seconds=1)
    return Query(updated=Window(start, end))


def extract(
    source_name: str,
    query: Query,
    url: str | None = None,
    progress: Callable[[Page], None] | None = None,
) -> dict[str, Any]:
    source = catalog.get_source(source_name)
    connector = connector_for(source)
    pages = connector.pages(query)
    if progress:
        pages = _observed(pages, progress)
    with warehouse.connect(url) as conn:
        result = loader.load(conn, source, query, pages, connector.updated_at)
    return result.as_dict()


def transform_candidate(
    url: str | None = None, full_refresh: bool = False, as_of: datetime | None = None
) -> dict[str, Any]:
    """Build staging and marts into ``candidate``; ``as_of`` anchors the publication delay."""
    # The stewardship reports describe the gate's results, so they are built after it (see docs).
    args = ["build", "--exclude", "tag:stewardship", *transform.PIPELINE_BUILD_FLAGS]
    args += ["--full-refresh"] if full_refresh else []
    result = transform.run_dbt(args, url, as_of=as_of)
    return {"nodes": len(result.results), "failures": len(result.failures())}


def audit(url: str | None = None) -> dict[str, Any]:
    return quality.gate(settings.CANDIDATE_SCHEMA, url).summary()


def publish(url: str | None = None, force_reason: str | None = None) -> list[dict[str, Any]]:
    """Publish the candidate the gate passed; ``force_reason`` overrides the gate (recorded)."""
    return [m.__dict__ for m in publishing.publish(url, force_reason=force_reason)]


def docs(url: str | None = None) -> dict[str, str]:
    transform.run_dbt(
        ["build", "--select", "tag:stewardship", *transform.PIPELINE_BUILD_FLAGS], url
    )
    dbt_docs = transform.generate_docs(url)
    site = docs_site.build(url=url, dbt_docs=dbt_docs.parent)
    # The resident-facing page, from what was just published; it links its own copy of data.json.
    page = public_dashboard.build(url)
    shutil.copy2(site.parent / "data.json", page.parent / "data.json")
    return {
        "site": str(site),
        "dbt_docs": str(dbt_docs),
        "data_docs": str(quality.data_docs_index()),
        "data_inventory": str(site.parent / "data.json"),
        "public_dashboard": str(page),
    }


def _observed(pages: Iterator[Page], progress: Callable[[Page], None]) -> Iterator[Page]:
    for page in pages:
        progress(page)
        yield page
