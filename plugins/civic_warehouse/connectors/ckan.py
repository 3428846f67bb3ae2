"""CKAN DataStore: ``GET {base_url}/api/3/action/datastore_search?resource_id=<dataset>``.

Pages with ``limit``/``offset`` in a fixed order (the business key, then the datastore's own
``_id``) and stops when the offset reaches the reported ``total``, never on a short page: CKAN
silently caps ``limit`` (32000 unless the site says otherwise), so the offset advances by the
number of records actually returned. Timestamps come without a zone and are read in the source's
time zone.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, tzinfo
from typing import Any
from urllib.parse import urlencode

from civic_warehouse.catalog import SourceConfig
from civic_warehouse.connectors.base import Page, Query, Window
from civic_warehouse.connectors.http import HttpClient, SourceError, describe_error_body
from civic_warehouse.connectors.paging import PageGuard

ROW_ID = "_id"


class CKANConnector:
    def __init__(self, source: SourceConfig, client: HttpClient) -> None:
        self.source = source
        self.client = client

    @property
    def url(self) -> str:
        return f"{self.source.resolved_base_url()}/api/3/action/datastore_search"

    def pages(self, query: Query) -> Iterator[Page]:
        # datastore_search filters only on equality (``filters``) and full text (``q``), and
        # datastore_search_sql is disabled on many portals. So a time window is applied here:
        # the whole resource is paged and records outside the window are dropped.
        filters = self._filters(query)
        keys = list(self.source.business_key)
        if ROW_ID not in keys:
            keys.append(ROW_ID)
        params: dict[str, Any] = {
            "resource_id": self.source.dataset,
            "limit": self.source.page_size,
            "sort": ", ".join(f"{key} asc" for key in keys),
        }
        offset, number = 0, 0
        guard = PageGuard(self.source.name, "offset")
        while True:
            url = f"{self.url}?{urlencode({**params, 'offset': offset})}"
            records, total = self._result(
                self.client.get_json(self.url, {**params, "offset": offset}), url
            )
            number += 1
            guard.check(url, records)
            guard.beyond(url, total, "the resource reports a total of {}")
            kept = [r for r in records if self._in_windows(r, filters, url)]
            yield Page(number=number, url=url, records=kept)
            offset += len(records)
            if offset >= total:
                return
            if not records:
                raise SourceError(
                    self.source.name,
                    url,
                    f"no records at offset {offset} although the resource reports {total}",
                )

    def updated_at(self, record: dict[str, Any]) -> datetime | None:
        field = self.source.updated_field
        if not field:
            return None
        try:
            return parse_time(record.get(field), self.source.tz)
        except ValueError as err:
            raise ValueError(f"source {self.source.name!r}: field {field!r}: {err}") from err

    def _filters(self, query: Query) -> list[tuple[str, Window]]:
        filters = []
        if query.events:
            if not self.source.event_time_field:
                raise ValueError(f"source {self.source.name!r} has no event_time_field to query by")
            filters.append((self.source.event_time_field, query.events))
        if query.updated:
            if not self.source.updated_field:
                raise ValueError(f"source {self.source.name!r} has no updated_field to query by")
            filters.append((self.source.updated_field, query.updated))
        return filters

    def _in_windows(self, record: Any, filters: list[tuple[str, Window]], url: str) -> bool:
        if not filters:
            return True
        if not isinstance(record, dict):
            return True  # the loader rejects it with its position
        for field, window in filters:
            try:
                moment = parse_time(record.get(field), self.source.tz)
            except ValueError as err:
                raise SourceError(self.source.name, url, f"field {field!r}: {err}") from err
            if moment is None or not window.start <= moment < window.end:
                return False
        return True

    def _result(self, body: Any, url: str) -> tuple[list[Any], int]:
        if not isinstance(body, dict):
            raise SourceError(
                self.source.name, url, f"expected a JSON object, got {type(body).__name__}"
            )
        if body.get("success") is not True:
            raise SourceError(self.source.name, url, describe_error_body(body))
        result = body.get("result") or {}
        records, total = result.get("records"), result.get("total")
        if not isinstance(records, list) or not isinstance(total, int):
            raise SourceError(
                self.source.name,
                url,
                "expected result.records (a list) and result.total (a number); "
                f"got keys {sorted(result)}",
            )
        return records, total


def parse_time(value: Any, tz: tzinfo) -> datetime | None:
    """A DataStore timestamp (``2015-04-20T12:13:22``, no zone: local) as an aware UTC instant."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValueError(f"cannot read {value!r} as a time")
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ValueError(f"cannot read {value!r} as a time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=tz)
    return moment.astimezone(UTC)
