"""The pipeline's steps, each a plain function: the DAGs call them, and so do the CLI and the tests.

extract (per source, per data interval) -> transform (dbt build into ``candidate``)
-> audit (Great Expectations gate) -> publish (swap into ``open``) -> docs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
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
from civic_warehouse.connectors import Page, Query, Window, connector_for

log = logging.getLogger(__name__)


def local_midnight(source: catalog.SourceConfig, day: str) -> datetime:
    """Midnight of a local date (YYYY-MM-DD) in the source's zone, or an ISO datetime as given."""
    moment = datetime.fromisoformat(day)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=source.tz)
    return moment


def query_for_run(
    source: catalog.SourceConfig,
    interval_start: datetime | None,
    interval_end: datetime | None,
    start: str | None = None,
    end: str | None = None,
    reconcile: bool = False,
) -> Query:
    """What one extract run fetches.

    A scheduled run takes the records that changed during its data interval, reaching back by the
    source's lookback for late updates (or, for a source without a last-change field, the events of
    its interval). A backfill names local dates ``start``..``end`` (end exclusive) and takes the
    events of those days. A reconcile reads everything.
    """
    if reconcile or not (source.event_time_field or source.updated_field):
        return Query()  # reference data (no time fields) is read whole every run
    if start or end:
        if not source.event_time_field:
            raise ValueError(f"source {source.name!r} has no event_time_field to backfill by")
        if not (start and end):
            raise ValueError("give both start and end (local dates, end exclusive), or neither")
        return Query(events=Window(local_midnight(source, start), local_midnight(source, end)))
    if interval_start is None or interval_end is None:
        raise ValueError("a run needs a data interval, or start and end dates")
    if source.updated_field:
        return Query(updated=Window(interval_start - source.lookback, interval_end))
    return Query(events=Window(interval_start, interval_end))


def query_since_watermark(
    source: catalog.SourceConfig, url: str | None = None, until: datetime | None = None
) -> Query:
    """Records changed since the last load (less the lookback), for runs outside a schedule."""
    if not source.updated_field:
        raise ValueError(f"source {source.name!r} has no updated_field: give --since and --until")
    with warehouse.connect(url) as conn:
        mark = loader.watermark(conn, source)
    if mark is None:
        return Query()  # first load: everything
    return Query(updated=Window(mark - source.lookback, until or datetime.now(UTC)))


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


def publish(url: str | None = None) -> list[dict[str, Any]]:
    return [m.__dict__ for m in publishing.publish(url)]


def docs(url: str | None = None) -> dict[str, str]:
    transform.run_dbt(
        ["build", "--select", "tag:stewardship", *transform.PIPELINE_BUILD_FLAGS], url
    )
    transform.run_dbt(["docs", "generate"], url)
    return {
        "site": str(docs_site.build()),
        "dbt_docs": str(settings.DBT_PROJECT_DIR / "target" / "index.html"),
        "data_docs": str(quality.data_docs_index()),
        # The resident-facing page, from what was just published.
        "public_dashboard": str(public_dashboard.build(url)),
    }


def _observed(pages: Iterator[Page], progress: Callable[[Page], None]) -> Iterator[Page]:
    for page in pages:
        progress(page)
        yield page
