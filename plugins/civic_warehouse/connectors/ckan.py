"""CKAN DataStore: ``GET {base_url}/api/3/action/datastore_search?resource_id=<dataset>``.

Pages with ``limit``/``offset`` in a fixed order (the business key, then the datastore's own
``_id``) and stops when the offset reaches the reported ``total``, never on a short page: CKAN
silently caps ``limit`` (32000 unless the site says otherwise), so the offset advances by the
number of records actually returned. Timestamps come without a zone and are read in the source's
time zone.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from civic_warehouse.catalog import SourceConfig
from civic_warehouse.connectors.base import Page, Query
from civic_warehouse.connectors.http import HttpClient, SourceError, describe_error_body
from civic_warehouse.connectors.paging import PageGuard
from civic_warehouse.connectors.quoting import plain_field
from civic_warehouse.connectors.times import TimeReader, time_filters

ROW_ID = "_id"


class CKANConnector:
    def __init__(self, source: SourceConfig, client: HttpClient) -> None:
        self.source = source
        self.client = client
        self.times = TimeReader(source)

    @property
    def url(self) -> str:
        return f"{self.source.resolved_base_url()}/api/3/action/datastore_search"

    def pages(self, query: Query) -> Iterator[Page]:
        # datastore_search filters only on equality (``filters``) and full text (``q``), and
        # datastore_search_sql is disabled on many portals. So a time window is applied here:
        # the whole resource is paged and records outside the window are dropped.
        filters = time_filters(self.source, query)
        keys = list(self.source.business_key)
        if ROW_ID not in keys:
            keys.append(ROW_ID)
        params: dict[str, Any] = {
            "resource_id": self.source.dataset,
            "limit": self.source.page_size,
            "sort": ", ".join(f"{plain_field(self.source, key)} asc" for key in keys),
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
            kept = [r for r in records if self.times.in_windows(r, filters, url)]
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
        return self.times.updated_at(record)

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
