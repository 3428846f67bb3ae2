"""ArcGIS REST: one FeatureServer/MapServer layer, read through its ``query`` operation.

The layer's metadata (``?f=json``, read once) decides how to page it: ``maxRecordCount`` bounds the
page size, ``supportsPagination`` chooses ``resultOffset`` paging over object-id ranges, the
object-id field (or, on layers without one, the business key) gives a stable order, and the field
types say which fields hold dates. Date fields are compared with ``timestamp '...'`` literals in
UTC: ArcGIS rejects ISO strings. Errors arrive as HTTP 200 with an ``{"error": ...}`` envelope, so
every body is inspected before its features are counted.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from civic_warehouse.catalog import SourceConfig
from civic_warehouse.connectors.base import Page, Query
from civic_warehouse.connectors.http import HttpClient, SourceError
from civic_warehouse.connectors.paging import PageGuard
from civic_warehouse.connectors.quoting import plain_field, url_path
from civic_warehouse.connectors.times import TimeFilter, TimeReader, time_filters

log = logging.getLogger(__name__)

DATE_TYPE = "esriFieldTypeDate"
OID_TYPE = "esriFieldTypeOID"
# Old MapServers do not publish maxRecordCount; ArcGIS Server's default is 1000. A server that
# caps lower still says so with exceededTransferLimit, which the paging below honours.
DEFAULT_MAX_RECORD_COUNT = 1000
# Busy on-prem servers answer heavy queries with these codes inside a 200 envelope.
RETRYABLE_CODES = frozenset({500, 503})
# Token required / invalid token: asking again cannot help.
TOKEN_CODES = frozenset({498, 499})
# Text dates seen in ArcGIS string fields, e.g. "4/21/2006 12:00:00 AM".
TEXT_DATE_FORMATS = ("%m/%d/%Y %I:%M:%S %p", "%m/%d/%Y %H:%M:%S", "%m/%d/%Y")


@dataclass(frozen=True)
class LayerInfo:
    """What the layer's metadata says about paging it."""

    max_record_count: int | None
    supports_pagination: bool
    object_id_field: str | None
    field_types: dict[str, str]

    @classmethod
    def from_metadata(cls, metadata: dict[str, Any]) -> LayerInfo:
        fields = [f for f in metadata.get("fields") or [] if isinstance(f, dict) and "name" in f]
        field_types = {f["name"]: f.get("type", "") for f in fields}
        # 10.0 MapServers name the object-id field only through its type.
        oid = metadata.get("objectIdField") or next(
            (name for name, kind in field_types.items() if kind == OID_TYPE), None
        )
        capabilities = metadata.get("advancedQueryCapabilities") or {}
        max_records = metadata.get("maxRecordCount")
        if not isinstance(max_records, int) or max_records < 1:
            max_records = None
        return cls(
            max_record_count=max_records,
            supports_pagination=capabilities.get("supportsPagination") is True,
            object_id_field=oid,
            field_types=field_types,
        )


class ArcGISConnector:
    def __init__(self, source: SourceConfig, client: HttpClient) -> None:
        self.source = source
        self.client = client
        # Date fields are epoch milliseconds; string fields hold ISO or US-style text.
        self.times = TimeReader(source, epoch_ms=True, text_formats=TEXT_DATE_FORMATS)
        self._layer: LayerInfo | None = None

    @property
    def layer_url(self) -> str:
        return f"{self.source.resolved_base_url()}/{url_path(self.source, self.source.dataset)}"

    @property
    def query_url(self) -> str:
        return f"{self.layer_url}/query"

    def layer(self) -> LayerInfo:
        if self._layer is None:
            layer = LayerInfo.from_metadata(self._get(self.layer_url, {"f": "json"}))
            if layer.object_id_field is not None:
                # The server's name goes into where clauses and orderByFields like the catalog's.
                try:
                    plain_field(self.source, layer.object_id_field, "the layer's objectIdField")
                except ValueError as err:
                    raise SourceError(self.source.name, self.layer_url, str(err)) from None
            self._layer = layer
        return self._layer

    @property
    def page_size(self) -> int:
        cap = self.layer().max_record_count or DEFAULT_MAX_RECORD_COUNT
        return min(self.source.page_size, cap)

    def pages(self, query: Query) -> Iterator[Page]:
        layer = self.layer()
        filters = self._filters(query, layer)
        where = self._where(filters, layer)
        if layer.supports_pagination:
            batches = self._offset_pages(where, layer)
        elif layer.object_id_field:
            batches = self._object_id_pages(where, layer.object_id_field)
        else:
            raise SourceError(
                self.source.name,
                self.layer_url,
                "the layer supports neither pagination nor object ids, so it cannot be read "
                "completely; ask the publisher to enable pagination or publish an objectIdField",
            )
        for number, (url, records) in enumerate(batches, start=1):
            # Exact bounds client-side: literals are whole seconds, and non-date fields cannot be
            # compared by the server at all.
            kept = [r for r in records if self.times.in_windows(r, filters, url)]
            yield Page(number=number, url=url, records=kept)

    def updated_at(self, record: dict[str, Any]) -> datetime | None:
        return self.times.updated_at(record)

    # -- paging -------------------------------------------------------------------------------

    def _offset_pages(self, where: str, layer: LayerInfo) -> Iterator[tuple[str, list[Any]]]:
        size = self.page_size
        params: dict[str, Any] = {
            "where": where,
            "outFields": "*",
            "orderByFields": self._order_by(layer),
            "returnGeometry": "true",
            "outSR": "4326",
            "resultRecordCount": size,
            "f": "json",
        }
        offset = 0
        guard = PageGuard(self.source.name, "resultOffset")
        while True:
            body = self._get(self.query_url, {**params, "resultOffset": offset})
            features = self._features(body)
            url = f"{self.query_url}?resultOffset={offset}"
            guard.check(url, features)
            yield url, [_record(f) for f in features]
            offset += len(features)
            # Servers clamp resultRecordCount silently, so a short page alone does not end the
            # data: only a short page without exceededTransferLimit does.
            if not features or (not _exceeded(body) and len(features) < size):
                return

    def _object_id_pages(self, where: str, oid: str) -> Iterator[tuple[str, list[Any]]]:
        """Old servers: list the matching ids once, then read them in ranges that tile the id space."""
        params = {"where": where, "returnIdsOnly": "true", "f": "json"}
        body = self._get(self.query_url, params)
        ids = body.get("objectIds") or []
        # Each id is written into a where clause: a whole number, or the listing is refused.
        if not isinstance(ids, list) or not all(
            isinstance(i, int) and not isinstance(i, bool) for i in ids
        ):
            raise SourceError(
                self.source.name,
                _with_params(self.query_url, params),
                f"expected objectIds to be a list of whole numbers, got {str(ids)[:200]}",
            )
        ids = sorted(ids)
        size = self.page_size
        lower: int | None = None
        # The ranges tile the listed ids, so they end; the guard only caps their number.
        guard = PageGuard(self.source.name, "the object-id ranges")
        for start in range(0, len(ids), size):
            guard.count(self.query_url)
            chunk = ids[start : start + size]
            yield from self._id_range(where, oid, lower, chunk)
            lower = chunk[-1]

    def _id_range(
        self, where: str, oid: str, lower: int | None, chunk: list[int]
    ) -> Iterator[tuple[str, list[Any]]]:
        # (lower, last]: consecutive ranges leave no gap, so a row added between listing the ids
        # and reading them is still read once.
        low = f"{oid} > {lower}" if lower is not None else f"{oid} >= {chunk[0]}"
        bounded = f"({where}) AND {low} AND {oid} <= {chunk[-1]}"
        params = {
            "where": bounded,
            "outFields": "*",
            "returnGeometry": "true",
            "outSR": "4326",
            "f": "json",
        }
        body = self._get(self.query_url, params)
        features = self._features(body)
        if _exceeded(body):
            # The server caps lower than the chunk (or rows arrived in the range): halve it.
            if len(chunk) == 1:
                raise SourceError(
                    self.source.name,
                    _with_params(self.query_url, params),
                    "the server capped a range holding a single listed object id; "
                    "the layer changed while it was read",
                )
            middle = len(chunk) // 2
            yield from self._id_range(where, oid, lower, chunk[:middle])
            yield from self._id_range(where, oid, chunk[middle - 1], chunk[middle:])
            return
        records = sorted((_record(f) for f in features), key=lambda r: _sort_key(r.get(oid)))
        yield _with_params(self.query_url, {"where": bounded}), records

    def _order_by(self, layer: LayerInfo) -> str:
        if layer.object_id_field:
            return f"{layer.object_id_field} ASC"
        # Layers without an object-id field (Dayton 311) reject an OBJECTID sort: use the
        # business key, with the event time to order rows whose key is null.
        fields = list(self.source.business_key)
        if self.source.event_time_field and self.source.event_time_field not in fields:
            fields.append(self.source.event_time_field)
        return ",".join(f"{plain_field(self.source, field)} ASC" for field in fields)

    # -- filters ------------------------------------------------------------------------------

    def _filters(self, query: Query, layer: LayerInfo) -> list[TimeFilter]:
        filters = time_filters(self.source, query)
        for field, _window in filters:
            if layer.field_types and field not in layer.field_types:
                raise SourceError(
                    self.source.name,
                    self.layer_url,
                    f"field {field!r} is not in the layer (fields: {', '.join(layer.field_types)})",
                )
        return filters

    def _where(self, filters: list[TimeFilter], layer: LayerInfo) -> str:
        clauses = []
        for field, window in filters:
            if layer.field_types.get(field) != DATE_TYPE:
                log.warning(
                    "source %s: %s is not a date field; filtering it client-side over the whole layer",
                    self.source.name,
                    field,
                )
                continue
            column = plain_field(self.source, field)
            clauses.append(
                f"{column} >= timestamp '{_literal(window.start)}' "
                f"AND {column} < timestamp '{_literal(window.end, round_up=True)}'"
            )
        return " AND ".join(clauses) or "1=1"

    # -- requests -----------------------------------------------------------------------------

    def _get(self, url: str, params: dict[str, Any]) -> dict[str, Any]:
        """A decoded answer that is not an error envelope; 500/503 envelopes are asked again."""
        retries = self.client.retries(_with_params(url, params))
        while True:
            body = self.client.get_json(url, params)
            if not isinstance(body, dict):
                raise SourceError(
                    self.source.name,
                    _with_params(url, params),
                    f"expected a JSON object, got {type(body).__name__}",
                )
            error = body.get("error")
            if error is None:
                return body
            code, reason = _describe(error)
            if code not in RETRYABLE_CODES:
                raise SourceError(self.source.name, _with_params(url, params), reason)
            # The client's own budget, so envelope retries back off and end like HTTP retries.
            retries.wait(reason)

    def _features(self, body: dict[str, Any]) -> list[Any]:
        features = body.get("features")
        if not isinstance(features, list):
            raise SourceError(
                self.source.name,
                self.query_url,
                f"expected a 'features' list in the answer, got keys {sorted(body)}",
            )
        return features


def _record(feature: Any) -> dict[str, Any]:
    if not isinstance(feature, dict):
        return feature
    record = dict(feature.get("attributes") or {})
    if "geometry" in feature:
        record["geometry"] = feature["geometry"]
    return record


def _exceeded(body: dict[str, Any]) -> bool:
    # f=json puts the flag at the top; f=geojson under "properties".
    properties = body.get("properties") if isinstance(body.get("properties"), dict) else {}
    return (
        body.get("exceededTransferLimit") is True or properties.get("exceededTransferLimit") is True
    )


def _describe(error: Any) -> tuple[int | None, str]:
    if not isinstance(error, dict):
        return None, f"ArcGIS error: {error!r}"
    try:
        code = int(error.get("code"))
    except (TypeError, ValueError):
        code = None
    reason = f"ArcGIS error {error.get('code')}: {error.get('message') or 'no message'}"
    details = error.get("details")
    if details:
        parts = details if isinstance(details, list) else [details]
        reason += f" (details: {'; '.join(str(part) for part in parts)})"
    if code in TOKEN_CODES:
        reason += " - the layer needs a valid token; not retried"
    return code, reason


def _literal(moment: datetime, *, round_up: bool = False) -> str:
    utc = moment.astimezone(UTC)
    if round_up and utc.microsecond:
        utc = utc.replace(microsecond=0) + timedelta(seconds=1)
    return utc.strftime("%Y-%m-%d %H:%M:%S")


def _sort_key(value: Any) -> tuple[bool, Any]:
    return (value is not None, value if value is not None else 0)


def _with_params(url: str, params: dict[str, Any]) -> str:
    return f"{url}?{urlencode(params)}"
