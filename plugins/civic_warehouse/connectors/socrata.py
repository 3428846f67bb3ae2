"""Socrata SODA 2.1: ``/resource/<id>.json`` paged with ``$limit``/``$offset`` and a stable ``$order``."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from civic_warehouse.catalog import SourceConfig
from civic_warehouse.connectors.base import Page, Window
from civic_warehouse.connectors.http import HttpClient, SourceError


class SocrataConnector:
    def __init__(self, source: SourceConfig, client: HttpClient) -> None:
        self.source = source
        self.client = client

    @property
    def url(self) -> str:
        return f"{self.source.resolved_base_url()}/resource/{self.source.dataset}.json"

    def pages(self, window: Window) -> Iterator[Page]:
        field = self.source.event_time_field
        params = {
            "$select": ":*, *",
            # Floating timestamps are local wall-clock times: compare in the source's zone.
            "$where": (
                f"{field} >= '{self._floating(window.start)}' "
                f"AND {field} < '{self._floating(window.end)}'"
            ),
            # Without $order Socrata pages are not stable; :id breaks ties.
            "$order": f"{field}, :id",
            "$limit": self.source.page_size,
        }
        headers = {"X-App-Token": token} if (token := self.source.app_token()) else None
        offset, number = 0, 0
        while True:
            body = self.client.get_json(self.url, {**params, "$offset": offset}, headers)
            if not isinstance(body, list):
                raise SourceError(
                    self.source.name, self.url, f"expected a JSON array, got {type(body).__name__}"
                )
            number += 1
            yield Page(number=number, url=f"{self.url}?$offset={offset}", records=body)
            if len(body) < self.source.page_size:
                return
            offset += len(body)

    def _floating(self, moment: datetime) -> str:
        return moment.astimezone(self.source.tz).strftime("%Y-%m-%dT%H:%M:%S.000")
