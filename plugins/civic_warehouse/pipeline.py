"""The pipeline's steps, each a plain function: the DAGs call them, and so do the CLI and the tests.

extract (per source, per data interval) -> transform (dbt build into ``candidate``)
-> audit (Great Expectations gate) -> publish (swap into ``open``) -> docs.
"""

from __future__ import annotations

import logging
from datetime import date, datetime, time
from typing import Any

from civic_warehouse import catalog, quality, settings, transform, warehouse
from civic_warehouse import publish as publishing
from civic_warehouse.connectors import Window, connector_for
from civic_warehouse.loader import load

log = logging.getLogger(__name__)


def window_for(
    source: catalog.SourceConfig,
    interval_start: datetime,
    interval_end: datetime,
    start: str | None = None,
    end: str | None = None,
) -> Window:
    """The run's data interval, unless a backfill names local dates ``start``..``end`` (end exclusive)."""
    if not start and not end:
        return Window(interval_start, interval_end)
    if not (start and end):
        raise ValueError("give both start and end (local dates, end exclusive), or neither")
    return Window(_local_midnight(source, start), _local_midnight(source, end))


def extract(source_name: str, window: Window, url: str | None = None) -> dict[str, Any]:
    source = catalog.get_source(source_name)
    connector = connector_for(source)
    with warehouse.connect(url) as conn:
        result = load(conn, source, window, connector.pages(window))
    return result.as_dict() | {"window": [window.start.isoformat(), window.end.isoformat()]}


def transform_candidate(url: str | None = None, full_refresh: bool = False) -> dict[str, Any]:
    args = ["build"] + (["--full-refresh"] if full_refresh else [])
    result = transform.run_dbt(args, url)
    return {"nodes": len(result.results), "failures": len(result.failures())}


def audit(url: str | None = None) -> dict[str, Any]:
    return quality.gate(settings.CANDIDATE_SCHEMA, url).summary()


def publish(url: str | None = None) -> list[dict[str, Any]]:
    return [m.__dict__ for m in publishing.publish(url)]


def docs(url: str | None = None) -> dict[str, str]:
    transform.run_dbt(["docs", "generate"], url)
    return {
        "dbt_docs": str(settings.DBT_PROJECT_DIR / "target" / "index.html"),
        "data_docs": str(quality.data_docs_index()),
    }


def _local_midnight(source: catalog.SourceConfig, day: str) -> datetime:
    return datetime.combine(date.fromisoformat(day), time(0), tzinfo=source.tz)
