"""Open311 GeoReport v2: ``GET {base_url}/{dataset}.json`` (the dataset is normally ``requests``).

The spec bounds every answer twice: ``start_date``..``end_date`` may span at most 90 days, and a
server may return only the first 1000 requests of a span. So the event window is walked in chunks
of at most 90 days; each chunk is paged with the ``page``/``page_size`` extension most servers
add (Chicago, Austin); and when a server ignores paging (page 2 repeats page 1) a full answer may
be truncated, so the chunk is split in half until every part comes back under the server's cap.
A short page ends a chunk, so a source's ``page_size`` must not exceed the largest page its server
serves (Chicago: 500).

Both date parameters filter on ``requested_datetime``. The spec calls ``end_date`` the "latest
datetime to include", so chunk edges are trimmed client-side to half-open intervals: a request at
an edge is served once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from civic_warehouse.catalog import SourceConfig
from civic_warehouse.connectors.base import Page, Query, Window
from civic_warehouse.connectors.http import HttpClient, SourceError
from civic_warehouse.connectors.paging import PageGuard
from civic_warehouse.connectors.quoting import path_segment
from civic_warehouse.connectors.times import TimeReader

log = logging.getLogger(__name__)

REQUESTED_FIELD = "requested_datetime"
UPDATED_FIELD = "updated_datetime"
MAX_SPAN = timedelta(days=90)
MAX_PAGE_SIZE = 1000
# GeoReport v2 has no filter on updated_datetime. An incremental pull therefore reads the requests
# made up to this long before its window and keeps those updated inside it. A status change more
# than 90 days after the request is missed here and caught by the periodic full reconcile.
UPDATE_REACH = timedelta(days=90)
# A full reconcile (a Query with no window) walks this far back unless told otherwise.
FULL_HISTORY = timedelta(days=365)
# Halving a 90-day chunk 16 times leaves about two minutes: more requests than the server's cap in
# less time than that cannot be separated by start_date/end_date.
MAX_SPLITS = 16
_SECOND = timedelta(seconds=1)


class Open311Connector:
    def __init__(
        self,
        source: SourceConfig,
        client: HttpClient,
        *,
        earliest: datetime | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        """``earliest``: where a full reconcile starts (default: ``FULL_HISTORY`` before now)."""
        self.source = source
        self.client = client
        self.earliest = earliest
        self.times = TimeReader(source)
        self._clock = clock
        # Set once a server is seen to ignore paging: the most rows it returns for one span.
        self._cap_without_paging: int | None = None

    @property
    def url(self) -> str:
        return f"{self.source.resolved_base_url()}/{path_segment(self.source, self.source.dataset)}.json"

    @property
    def page_size(self) -> int:
        return min(self.source.page_size, MAX_PAGE_SIZE)

    def pages(self, query: Query) -> Iterator[Page]:
        window = self._event_window(query)
        number = 0
        # Repeated pages are handled in _chunk_pages (they mean the end, or paging ignored), and
        # GeoReport announces no count: only the number of pages is capped here.
        guard = PageGuard(self.source.name, "page/page_size")
        for chunk in _chunks(window):
            for url, span, records in self._chunk_pages(chunk, depth=0):
                guard.count(url)
                kept = [r for r in records if self._wanted(r, span, window, query.updated, url)]
                number += 1
                yield Page(number=number, url=url, records=kept)

    def updated_at(self, record: dict[str, Any]) -> datetime | None:
        return self.times.updated_at(record, default_field=UPDATED_FIELD)

    def _event_window(self, query: Query) -> Window:
        if query.events:
            return query.events
        if query.updated:
            # See UPDATE_REACH: requests updated in the window, as far as the spec can find them.
            return Window(query.updated.start - UPDATE_REACH, query.updated.end)
        now = self._clock()
        return Window(self.earliest or now - FULL_HISTORY, now)

    def _chunk_pages(self, chunk: Window, depth: int) -> Iterator[tuple[str, Window, list[Any]]]:
        """Every request of one span of at most 90 days, page by page, with the span it is from."""
        cap = self._cap_without_paging
        if cap is not None:
            url, records = self._fetch(chunk, 1)
            if len(records) >= cap:
                yield from self._split(chunk, depth, cap)
            else:
                yield url, chunk, records
            return

        size = self.page_size
        first_url, first = self._fetch(chunk, 1)
        if len(first) < size:
            yield first_url, chunk, first
            return
        url, current = self._fetch(chunk, 2)
        if current == first:
            # Paging ignored: the first answer may be cut at the server's cap. Throw it away and
            # ask for the two halves instead.
            log.warning(
                "source %s: the server ignores page/page_size; splitting spans of %d requests",
                self.source.name,
                len(first),
            )
            self._cap_without_paging = len(first)
            yield from self._split(chunk, depth, len(first))
            return
        yield first_url, chunk, first
        number = 2
        while True:
            yield url, chunk, current
            if len(current) < size:
                return
            number += 1
            url, following = self._fetch(chunk, number)
            if following and following == current:
                return  # page numbers past the end clamped to the last page: nothing more
            if following and following == first:
                raise SourceError(
                    self.source.name,
                    url,
                    f"page {number} repeats page 1; the server's paging is unreliable",
                )
            current = following

    def _split(
        self, chunk: Window, depth: int, cap: int
    ) -> Iterator[tuple[str, Window, list[Any]]]:
        middle = chunk.start + (chunk.end - chunk.start) // 2
        middle -= timedelta(microseconds=middle.microsecond)
        if depth >= MAX_SPLITS or middle <= chunk.start:
            raise SourceError(
                self.source.name,
                self.url,
                f"at least {cap} requests between {chunk.start.isoformat()} and "
                f"{chunk.end.isoformat()} and the server ignores paging: they cannot all be read",
            )
        yield from self._chunk_pages(Window(chunk.start, middle), depth + 1)
        yield from self._chunk_pages(Window(middle, chunk.end), depth + 1)

    def _fetch(self, chunk: Window, page: int) -> tuple[str, list[Any]]:
        params = {
            "start_date": self._literal(chunk.start),
            "end_date": self._literal(chunk.end),
            "page": page,
            "page_size": self.page_size,
        }
        url = f"{self.url}?{urlencode(params)}"
        body = self.client.get_json(self.url, params)
        if not isinstance(body, list):
            raise SourceError(
                self.source.name,
                url,
                f"expected a JSON array of requests, got {type(body).__name__}",
            )
        return url, body

    def _literal(self, moment: datetime) -> str:
        # W3C datetime with the city's own offset, e.g. 2026-03-02T00:00:00-05:00.
        return moment.astimezone(self.source.tz).isoformat(timespec="seconds")

    def _wanted(
        self,
        record: Any,
        chunk: Window,
        window: Window,
        updated: Window | None,
        url: str,
    ) -> bool:
        if not isinstance(record, dict):
            return True  # the loader rejects it with its position
        try:
            requested = self.times.read(record.get(REQUESTED_FIELD))
            changed = self.times.read(record.get(self.source.updated_field or UPDATED_FIELD))
        except ValueError as err:
            raise SourceError(self.source.name, url, str(err)) from err
        # A record without a time is kept: the server placed it in the span, the loader dedupes.
        if requested is not None and not (
            chunk.start <= requested < chunk.end and window.start <= requested < window.end
        ):
            return False
        return updated is None or changed is None or updated.start <= changed < updated.end


def _chunks(window: Window) -> Iterator[Window]:
    """Whole-second spans of at most MAX_SPAN covering the window (start_date has no fractions).

    In UTC: arithmetic on two times in one named zone is wall-clock arithmetic, and 90 wall-clock
    days across the autumn clock change are 90 days and an hour.
    """
    start = window.start.astimezone(UTC)
    start -= timedelta(microseconds=start.microsecond)
    end = window.end.astimezone(UTC)
    if end.microsecond:
        end = end - timedelta(microseconds=end.microsecond) + _SECOND
    while start < end:
        stop = min(start + MAX_SPAN, end)
        yield Window(start, stop)
        start = stop
