"""Socrata SODA: 2.1 ``/resource/<id>.json`` ($limit/$offset) and SODA3 ``query.json`` (POST, pages).

Paging is only stable with an explicit order, so every request orders by the filtered field and
then ``:id``. Floating timestamps are local wall-clock times: bounds are written in the source's
zone. System fields (``:updated_at``) are fixed timestamps in UTC.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from civic_warehouse.catalog import SourceConfig
from civic_warehouse.connectors.base import JsonArray, Page, Query, Window
from civic_warehouse.connectors.http import HttpClient, SourceError
from civic_warehouse.connectors.paging import PageGuard
from civic_warehouse.connectors.quoting import path_segment, soql_field
from civic_warehouse.connectors.times import TimeReader

log = logging.getLogger(__name__)

# Reading a dataset that keeps changing underneath gives up after this many passes.
MAX_PASSES = 3


class SocrataConnector:
    def __init__(self, source: SourceConfig, client: HttpClient) -> None:
        self.source = source
        self.client = client
        self.times = TimeReader(source)

    @property
    def url(self) -> str:
        base = self.source.resolved_base_url()
        dataset = path_segment(self.source, self.source.dataset)
        if self.source.api_version == 3:
            return f"{base}/api/v3/views/{dataset}/query.json"
        return f"{base}/resource/{dataset}.json"

    def pages(self, query: Query) -> Iterator[Page]:
        """Page through the matching rows; read again if the dataset changed while paging.

        Offset paging over a dataset that gains rows mid-read shifts every later page: rows can be
        skipped. The count of matching rows before and after a pass tells whether that happened.
        Rows served twice are harmless (the loader keeps one per key); a second pass catches the
        skipped ones. A server that ignores the paging (the same page again, more rows than it
        counts) stops the extract.
        """
        where, order_field = self._where(query)
        number = 0
        guard = PageGuard(
            self.source.name, "pageNumber" if self.source.api_version == 3 else "$offset"
        )
        for _ in range(MAX_PASSES):
            before = self._count(where)
            guard.restart()
            for page in self._one_pass(where, order_field, number, guard, before):
                number = page.number
                yield page
            after = self._count(where)
            if after == before:
                return
            log.warning(
                "source %s: %d matching rows before paging, %d after: reading again",
                self.source.name,
                before,
                after,
            )
        raise SourceError(
            self.source.name, self.url, f"dataset kept changing during {MAX_PASSES} passes"
        )

    def _one_pass(
        self,
        where: str | None,
        order_field: str,
        number: int,
        guard: PageGuard,
        announced: int | None,
    ) -> Iterator[Page]:
        if self.source.api_version == 3:
            yield from self._soda3_pages(where, order_field, number, guard)
            return
        params: dict[str, Any] = {
            "$select": ":*, *",
            "$order": order_field if order_field == ":id" else f"{order_field}, :id",
            "$limit": self.source.page_size,
        }
        if where:
            params["$where"] = where
        offset = 0
        while True:
            body = self.client.get_json(
                self.url, {**params, "$offset": offset}, self._headers(), arrays_as_served=True
            )
            records = self._records(body)
            number += 1
            url = f"{self.url}?$offset={offset}"
            guard.check(url, records)
            full = records.size >= self.source.page_size
            # A short page ends the pass whatever the count said; past the count, a full page asks
            # for more that should not exist. Rows added since the count are no fault of the
            # server's: count again first.
            if full and announced is not None and guard.rows > announced:
                announced = self._count(where)
                guard.beyond(url, announced, "count(*) counts {} matching rows")
            yield Page(number=number, url=url, records=records)
            if records.size < self.source.page_size:
                return
            offset += records.size

    def _count(self, where: str | None) -> int | None:
        if self.source.api_version == 3:
            return None  # SODA3 pages are ordered snapshots server-side
        params = {"$select": "count(*)"} | ({"$where": where} if where else {})
        body = self.client.get_json(self.url, params, self._headers())
        try:
            return int(body[0]["count"])
        except (IndexError, KeyError, TypeError, ValueError) as err:
            raise SourceError(self.source.name, self.url, f"unreadable count: {body!r}") from err

    def updated_at(self, record: dict[str, Any]) -> datetime | None:
        return self.times.updated_at(record)

    def _soda3_pages(
        self, where: str | None, order_field: str, number: int, guard: PageGuard
    ) -> Iterator[Page]:
        order = order_field if order_field == ":id" else f"{order_field}, :id"
        statement = f"SELECT :*, * {'WHERE ' + where if where else ''} ORDER BY {order}"
        page_number = 0
        while True:
            number += 1
            page_number += 1
            body = self.client.post_json(
                self.url,
                {
                    "query": statement,
                    "page": {"pageNumber": page_number, "pageSize": self.source.page_size},
                    "includeSynthetic": False,
                },
                self._headers(),
                arrays_as_served=True,
            )
            records = self._records(body)
            url = f"{self.url}#page={page_number}"
            guard.check(url, records)
            yield Page(number=number, url=url, records=records)
            if records.size < self.source.page_size:
                return

    def _where(self, query: Query) -> tuple[str | None, str]:
        """The ``$where`` clause and the field to order by, each field quoted (``quoting``)."""
        clauses, order_field = [], self.source.event_time_field or ":id"
        if query.events:
            clauses.append(self._between(self.source.event_time_field, query.events))
        if query.updated:
            if not self.source.updated_field:
                raise ValueError(f"source {self.source.name!r} has no updated_field to query by")
            clauses.append(self._between(self.source.updated_field, query.updated))
            order_field = self.source.updated_field
        return (" AND ".join(clauses) or None), soql_field(self.source, order_field)

    def _between(self, field: str, window: Window) -> str:
        column = soql_field(self.source, field)
        start, end = self._literal(field, window.start), self._literal(field, window.end)
        return f"{column} >= '{start}' AND {column} < '{end}'"

    def _literal(self, field: str, moment: datetime) -> str:
        if field.startswith(":"):  # system fields are fixed timestamps
            return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        return moment.astimezone(self.source.tz).strftime("%Y-%m-%dT%H:%M:%S.000")

    def _headers(self) -> dict[str, str] | None:
        token = self.source.app_token()
        return {"X-App-Token": token} if token else None

    def _records(self, body: Any) -> JsonArray:
        # Records need no reshaping: the page travels to the warehouse as served, unparsed.
        if not isinstance(body, JsonArray):
            raise SourceError(
                self.source.name,
                self.url,
                f"expected a JSON array of records, got {type(body).__name__}",
            )
        return body
