"""ArcGIS REST layers for the simulated city: 311 service requests and neighborhood boundaries.

``PublicWorks/ServiceRequests/MapServer/0`` is modelled on Dayton's on-prem
``COD_ServiceRequests_Last90`` layer: a rolling window of the last 90 days of requests as of the
simulator's clock, no ``objectIdField`` (so ordering by OBJECTID fails), a ``RowNumber`` that
renumbers as old rows leave the window, and date fields that refuse ISO-string comparisons.
``Planning/Neighborhoods/FeatureServer/0`` is a hosted-style polygon layer with an OBJECTID.

Both answer ``?f=json`` with layer metadata and ``/query`` with ``where`` (``1=1``, comparisons,
``IS [NOT] NULL``, ``[NOT] IN``, ``[NOT] LIKE``, AND / OR / NOT and parentheses; ``date '...'``
and ``timestamp '...'`` literals, read as UTC), ``outFields``, ``orderByFields``,
``resultOffset``, ``resultRecordCount`` (clamped to ``maxRecordCount``), ``returnGeometry``,
``outSR`` (4326 or 102100/3857; the layers are stored in Web Mercator), ``geometryPrecision``,
``returnCountOnly``, ``returnIdsOnly`` and ``f`` = ``json`` | ``pjson`` | ``geojson`` | ``html``.
Dates are epoch milliseconds (UTC). Every error is HTTP 200 with an ``{"error": ...}`` body.
"""

from __future__ import annotations

import datetime as dt
import functools
import itertools
import json
import math
import random
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from city_simulator.city import LAT_MAX, LAT_MIN, LON_MAX, LON_MIN, NEIGHBORHOODS
from city_simulator.service_requests import (
    CLOSED,
    IN_PROGRESS,
    ServiceRequestStore,
    snapshot,
    to_utc,
)

PATH_PREFIX = "/arcgis/rest/services"
SERVICE_REQUESTS_LAYER = f"{PATH_PREFIX}/PublicWorks/ServiceRequests/MapServer/0"
NEIGHBORHOODS_LAYER = f"{PATH_PREFIX}/Planning/Neighborhoods/FeatureServer/0"
CURRENT_VERSION = 11.4
MAX_RECORD_COUNT = 2000
ROLLING_WINDOW = dt.timedelta(days=90)  # the 311 layer only holds this much history

Response = tuple[int, dict[str, str], bytes]
Row = Mapping[str, object]

_JSON = "application/json; charset=utf-8"
_WGS84 = {"wkid": 4326, "latestWkid": 4326}
_WEB_MERCATOR = {"wkid": 102100, "latestWkid": 3857}
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_ONE_MS = dt.timedelta(milliseconds=1)
_EARTH_RADIUS = 6378137.0


class ArcGISError(Exception):
    """A request the server refuses; sent as HTTP 200 with an error envelope, as ArcGIS does."""

    def __init__(self, code: int, message: str, details: list[str] | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.details = code, message, details or []

    def body(self) -> dict:
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


def _invalid(parameter: str) -> ArcGISError:
    details = [f"'{parameter}' parameter is invalid", "Unable to complete Query operation."]
    return ArcGISError(400, "Unable to complete operation.", details)


def _failed_query() -> ArcGISError:
    # What ArcGIS answers when the where clause names a field the layer does not have.
    return ArcGISError(400, "Failed to execute query.", [])


# --- layers --------------------------------------------------------------------------------------

_NUMBER_TYPES = frozenset(
    {"esriFieldTypeOID", "esriFieldTypeInteger", "esriFieldTypeSmallInteger",
     "esriFieldTypeDouble", "esriFieldTypeSingle"}
)  # fmt: skip


@dataclass(frozen=True)
class Field:
    name: str
    type: str  # esriFieldType*
    length: int | None = None

    @property
    def family(self) -> str:
        """What a where-clause literal must be to compare with it: string, number or date."""
        if self.type == "esriFieldTypeDate":
            return "date"
        return "number" if self.type in _NUMBER_TYPES else "string"

    def definition(self) -> dict:
        out = {"name": self.name, "type": self.type, "alias": self.name}
        if self.length is not None:
            out["length"] = self.length
        return out


@dataclass(frozen=True)
class Feature:
    attributes: dict
    geometry: object  # (lon, lat) for points, tuple of rings of (lon, lat) for polygons; or None


@dataclass(frozen=True)
class Layer:
    folder: str
    service: str
    kind: str  # MapServer or FeatureServer
    name: str
    description: str
    geometry_type: str  # esriGeometryPoint or esriGeometryPolygon
    fields: tuple[Field, ...]
    display_field: str
    object_id_field: str | None
    features: Callable[[tuple], tuple[Feature, ...]]  # the rows, given a ServiceRequestStore.key
    layer_id: int = 0

    @property
    def path(self) -> str:
        return f"{PATH_PREFIX}/{self.folder}/{self.service}/{self.kind}/{self.layer_id}"

    @functools.cached_property
    def by_name(self) -> dict[str, Field]:
        """Fields by upper-cased name: ArcGIS field names are case-insensitive."""
        return {f.name.upper(): f for f in self.fields}

    def metadata(self) -> dict:
        out = {
            "currentVersion": CURRENT_VERSION,
            "id": self.layer_id,
            "name": self.name,
            "type": "Feature Layer",
            "description": self.description,
            "geometryType": self.geometry_type,
            "sourceSpatialReference": _WEB_MERCATOR,
            "copyrightText": "City of Dayton (simulated)",
            "parentLayer": None,
            "subLayers": [],
            "defaultVisibility": True,
            "extent": {**_city_extent(), "spatialReference": _WEB_MERCATOR},
            "hasAttachments": False,
            "displayField": self.display_field,
            "typeIdField": None,
            "fields": [f.definition() for f in self.fields],
            "geometryField": {"name": "Shape", "type": "esriFieldTypeGeometry", "alias": "Shape"},
            "relationships": [],
            "capabilities": "Map,Query,Data" if self.kind == "MapServer" else "Query",
            "maxRecordCount": MAX_RECORD_COUNT,
            "supportsStatistics": False,
            "supportsAdvancedQueries": True,
            "supportedQueryFormats": "JSON, geoJSON",
            "useStandardizedQueries": True,
            "dateFieldsTimeReference": {"timeZone": "UTC", "respectsDaylightSaving": False},
            "advancedQueryCapabilities": {
                "useStandardizedQueries": True,
                "supportsStatistics": False,
                "supportsOrderBy": True,
                "supportsDistinct": False,
                "supportsPagination": True,
                "supportsTrueCurve": False,
                "supportsReturningQueryExtent": False,
                "supportsQueryWithDistance": False,
            },
        }
        if self.object_id_field is not None:
            out["objectIdField"] = self.object_id_field
            out["uniqueIdField"] = {"name": self.object_id_field, "isSystemMaintained": True}
        return out


def _city_extent() -> dict:
    xmin, ymin = _mercator(LON_MIN, LAT_MIN)
    xmax, ymax = _mercator(LON_MAX, LAT_MAX)
    return {"xmin": xmin, "ymin": ymin, "xmax": xmax, "ymax": ymax}


# --- the 311 layer -------------------------------------------------------------------------------

_REQUEST_FIELDS = (
    Field("RowNumber", "esriFieldTypeInteger"),
    Field("SERVNO", "esriFieldTypeString", 12),
    Field("REFNO", "esriFieldTypeString", 12),
    Field("ADDDTTM", "esriFieldTypeDate", 8),
    Field("RESDTTM", "esriFieldTypeDate", 8),
    Field("ModDTTM", "esriFieldTypeDate", 8),
    Field("STATUS", "esriFieldTypeString", 20),
    Field("RESFLAG", "esriFieldTypeString", 10),
    Field("RESCODE", "esriFieldTypeString", 30),
    Field("PROBCODE", "esriFieldTypeString", 10),
    Field("PROBDESC", "esriFieldTypeString", 60),
    Field("CatName", "esriFieldTypeString", 40),
    Field("ADDRESS", "esriFieldTypeString", 60),
    Field("NEIGH_COM", "esriFieldTypeString", 40),
    Field("DISTRICT", "esriFieldTypeString", 10),
)
_STATUS_TEXT = {CLOSED: "CLOSED", IN_PROGRESS: "IN PROGRESS"}


def epoch_ms(local: dt.datetime | None) -> int | None:
    """A naive local time as ArcGIS sends dates: integer milliseconds since 1970 UTC."""
    return None if local is None else (to_utc(local) - _EPOCH) // _ONE_MS


def request_features(store: ServiceRequestStore) -> tuple[Feature, ...]:
    """The 311 layer's rows at the store's clock: the last 90 days, oldest first."""
    return _request_features(store.key)


@functools.lru_cache(maxsize=4)
def _request_features(key: tuple) -> tuple[Feature, ...]:
    first_day, last_day, seed, as_of = key
    store = ServiceRequestStore(first_day, last_day, seed)
    store.as_of = as_of
    features = []
    for number, request in enumerate(store.opened(as_of - ROLLING_WINDOW), start=1):
        record = snapshot(request, as_of)
        status = record["status"]
        attributes = {
            "RowNumber": number,
            "SERVNO": record["service_request_id"],
            "REFNO": record["parent_request_id"],
            "ADDDTTM": epoch_ms(record["requested_datetime"]),
            "RESDTTM": epoch_ms(record["closed_datetime"]),
            "ModDTTM": epoch_ms(record["updated_datetime"]),
            "STATUS": _STATUS_TEXT.get(status, "OPEN"),
            "RESFLAG": "Closed" if status == CLOSED else "Open",
            "RESCODE": record["resolution_code"],
            "PROBCODE": record["service_code"],
            "PROBDESC": record["problem_description"],
            "CatName": record["department"],
            "ADDRESS": record["address"],
            "NEIGH_COM": record["neighborhood"],
            "DISTRICT": record["district"],
        }
        point = None if record["lat"] is None else (record["long"], record["lat"])
        features.append(Feature(attributes, point))
    return tuple(features)


# --- the neighborhoods layer ---------------------------------------------------------------------

_NEIGHBORHOOD_FIELDS = (
    Field("OBJECTID", "esriFieldTypeOID"),
    Field("NAME", "esriFieldTypeString", 40),
    Field("DISTRICT", "esriFieldTypeString", 10),
    Field("POPULATION", "esriFieldTypeInteger"),
    Field("AREA_SQMI", "esriFieldTypeDouble"),
)
_CITY_POPULATION = 137_000
_MILES_PER_DEGREE_LAT = 69.05
_MID_LAT = (LAT_MIN + LAT_MAX) / 2
_LON_SCALE = math.cos(math.radians(_MID_LAT))  # east-west degrees are shorter here


def _clip(polygon: list[tuple[float, float]], a: float, b: float, c: float):
    """The part of a convex polygon where a*x + b*y <= c (Sutherland-Hodgman, one edge)."""
    out = []
    for i, (x1, y1) in enumerate(polygon):
        x2, y2 = polygon[(i + 1) % len(polygon)]
        in1, in2 = a * x1 + b * y1 <= c, a * x2 + b * y2 <= c
        if in1:
            out.append((x1, y1))
        if in1 != in2:
            t = (c - a * x1 - b * y1) / (a * (x2 - x1) + b * (y2 - y1))
            out.append((x1 + t * (x2 - x1), y1 + t * (y2 - y1)))
    return out


def _area_sqmi(ring: tuple[tuple[float, float], ...]) -> float:
    twice = sum(x1 * y2 - x2 * y1 for (x1, y1), (x2, y2) in itertools.pairwise(ring))
    return abs(twice) / 2 * (_MILES_PER_DEGREE_LAT**2) * _LON_SCALE


@functools.cache
def neighborhood_features() -> tuple[Feature, ...]:
    """One polygon per neighborhood: the city's box split between the nearest centroids.

    Rings are closed and clockwise (Esri's outer-ring order), in longitude/latitude.
    """
    sites = [(n.lon * _LON_SCALE, n.lat) for n in NEIGHBORHOODS]
    total_weight = sum(n.weight for n in NEIGHBORHOODS)
    features = []
    for oid, (hood, (sx, sy)) in enumerate(zip(NEIGHBORHOODS, sites, strict=True), start=1):
        west, east = LON_MIN * _LON_SCALE, LON_MAX * _LON_SCALE
        cell = [(west, LAT_MIN), (west, LAT_MAX), (east, LAT_MAX), (east, LAT_MIN)]  # clockwise
        for ox, oy in sites:
            if (ox, oy) != (sx, sy):  # keep the side of the bisector nearer this centroid
                cell = _clip(cell, ox - sx, oy - sy, (ox * ox + oy * oy - sx * sx - sy * sy) / 2)
        ring = tuple((round(x / _LON_SCALE, 6), round(y, 6)) for x, y in cell)
        ring += ring[:1]
        jitter = random.Random(f"population:{hood.name}").uniform(0.85, 1.15)
        attributes = {
            "OBJECTID": oid,
            "NAME": hood.name,
            "DISTRICT": hood.district,
            "POPULATION": round(_CITY_POPULATION * hood.weight / total_weight * jitter),
            "AREA_SQMI": round(_area_sqmi(ring), 3),
        }
        features.append(Feature(attributes, (ring,)))
    return tuple(features)


LAYERS: dict[str, Layer] = {
    layer.path: layer
    for layer in (
        Layer(
            "PublicWorks", "ServiceRequests", "MapServer", "Service Requests - Last 90 Days",
            "311 service requests opened in the last 90 days; rows leave the layer after that "
            "and RowNumber is renumbered. SERVNO is the stable request number.",
            "esriGeometryPoint", _REQUEST_FIELDS, "SERVNO", None, _request_features,
        ),
        Layer(
            "Planning", "Neighborhoods", "FeatureServer", "Neighborhoods",
            "Neighborhood boundaries with their police district and population.",
            "esriGeometryPolygon", _NEIGHBORHOOD_FIELDS, "NAME", "OBJECTID",
            lambda _key: neighborhood_features(),
        ),
    )
}  # fmt: skip
_SERVICES = {(layer.folder, layer.service, layer.kind): layer for layer in LAYERS.values()}


# --- where clauses -------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"\s*(?:(?P<string>'(?:[^']|'')*')|(?P<number>-?\d+(?:\.\d+)?(?![\w.]))"
    r"|(?P<op><>|!=|<=|>=|=|<|>)|(?P<punct>[(),])|(?P<word>[A-Za-z_][A-Za-z0-9_.]*))"
)
_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d{1,3})?$")
_DATE = re.compile(r"^\d{4}-\d\d-\d\d$")
_COMPARE: dict[str, Callable[[object, object], bool]] = {
    "=": lambda a, b: a == b,
    "<>": lambda a, b: a != b,
    "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}
Predicate = Callable[[Row], bool]


@dataclass(frozen=True)
class _Operand:
    family: str  # string, number or date
    field: str | None = None  # a field reference, else a literal
    value: object = None

    def get(self, row: Row) -> object:
        return row[self.field] if self.field is not None else self.value


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens, position = [], 0
    text = text.rstrip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            raise _invalid("where")
        kind = match.lastgroup
        tokens.append((kind, match[kind]))
        position = match.end()
    return tokens


class _WhereParser:
    def __init__(self, text: str, layer: Layer) -> None:
        self.tokens = _tokenize(text)
        self.position = 0
        self.layer = layer

    def parse(self) -> Predicate:
        if not self.tokens:
            raise _invalid("where")
        predicate = self._or()
        if self.position != len(self.tokens):
            raise _invalid("where")
        return predicate

    def _peek(self, offset: int = 0) -> tuple[str, str]:
        index = self.position + offset
        return self.tokens[index] if index < len(self.tokens) else ("end", "")

    def _next(self) -> tuple[str, str]:
        token = self._peek()
        if token[0] == "end":
            raise _invalid("where")
        self.position += 1
        return token

    def _keyword(self, *words: str) -> bool:
        kind, text = self._peek()
        if kind == "word" and text.upper() in words:
            self.position += 1
            return True
        return False

    def _expect(self, kind: str, text: str | None = None) -> str:
        got_kind, got = self._next()
        if got_kind != kind or (text is not None and got.upper() != text):
            raise _invalid("where")
        return got

    def _or(self) -> Predicate:
        parts = [self._and()]
        while self._keyword("OR"):
            parts.append(self._and())
        return parts[0] if len(parts) == 1 else (lambda row: any(p(row) for p in parts))

    def _and(self) -> Predicate:
        parts = [self._not()]
        while self._keyword("AND"):
            parts.append(self._not())
        return parts[0] if len(parts) == 1 else (lambda row: all(p(row) for p in parts))

    def _not(self) -> Predicate:
        if self._keyword("NOT"):
            inner = self._not()
            return lambda row: not inner(row)
        if self._peek() == ("punct", "("):
            self.position += 1
            inner = self._or()
            self._expect("punct", ")")
            return inner
        return self._predicate()

    def _predicate(self) -> Predicate:
        left = self._operand()
        if self._keyword("IS"):
            negate = self._keyword("NOT")
            self._expect("word", "NULL")
            if negate:
                return lambda row: left.get(row) is not None
            return lambda row: left.get(row) is None
        negate = self._keyword("NOT")
        if self._keyword("IN"):
            self._expect("punct", "(")
            values = [self._literal_for(left)]
            while self._peek() == ("punct", ","):
                self.position += 1
                values.append(self._literal_for(left))
            self._expect("punct", ")")
            choices = frozenset(values)
            return lambda row: (v := left.get(row)) is not None and (v in choices) != negate
        if self._keyword("LIKE"):
            pattern = self._literal_for(left)
            if left.family != "string":
                raise ArcGISError(400, "Unable to complete operation.", [])
            regex = re.compile(
                "".join(
                    ".*" if ch == "%" else "." if ch == "_" else re.escape(ch) for ch in pattern
                ),
                re.DOTALL,
            )
            return lambda row: (
                (v := left.get(row)) is not None and bool(regex.fullmatch(v)) != negate
            )
        if negate:
            raise _invalid("where")
        kind, op = self._next()
        if kind != "op":
            raise _invalid("where")
        right = self._operand()
        _check_types(left, right)
        compare = _COMPARE[op]
        if left.field is None and right.field is None:  # 1=1, 1=0
            constant = compare(left.value, right.value)
            return lambda row: constant

        def predicate(row: Row) -> bool:
            a, b = left.get(row), right.get(row)
            return a is not None and b is not None and compare(a, b)

        return predicate

    def _literal_for(self, field: _Operand) -> object:
        literal = self._operand()
        if literal.field is not None:
            raise _invalid("where")
        _check_types(field, literal)
        return literal.value

    def _operand(self) -> _Operand:
        kind, text = self._next()
        if kind == "string":
            return _Operand("string", value=text[1:-1].replace("''", "'"))
        if kind == "number":
            return _Operand("number", value=float(text))
        if kind != "word":
            raise _invalid("where")
        upper = text.upper()
        if upper in ("TIMESTAMP", "DATE") and self._peek()[0] == "string":
            literal = self._next()[1][1:-1]
            return _Operand("date", value=_date_literal(upper, literal))
        field = self.layer.by_name.get(upper)
        if field is None:
            raise _failed_query()
        return _Operand(field.family, field=field.name)


def _date_literal(kind: str, text: str) -> int:
    pattern = _TIMESTAMP if kind == "TIMESTAMP" else _DATE
    if not pattern.match(text):
        raise _invalid("where")
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError as error:
        raise _invalid("where") from error
    return (moment.replace(tzinfo=dt.UTC) - _EPOCH) // _ONE_MS


def _check_types(left: _Operand, right: _Operand) -> None:
    """Mismatched types fail the query, as on the city's server: chiefly a date field compared
    with a plain string such as '2026-09-22T00:00:00'."""
    if left.family != right.family:
        raise ArcGISError(
            400, "Unable to complete operation.", ["Unable to perform query operation."]
        )


def compile_where(text: str, layer: Layer) -> Predicate:
    """A row predicate for an ArcGIS where clause; raises :class:`ArcGISError` when invalid."""
    return _WhereParser(text, layer).parse()


# --- queries -------------------------------------------------------------------------------------


def _flag(params: Mapping[str, str], name: str) -> bool:
    return params.get(name, "").strip().lower() == "true"


def _integer(params: Mapping[str, str], name: str, default: int) -> int:
    text = params.get(name, "").strip()
    if not text:
        return default
    if not text.isdigit():
        raise _invalid(name)
    return int(text)


def _out_fields(layer: Layer, text: str) -> tuple[Field, ...]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:  # without outFields ArcGIS returns only the id (or display) field
        return (layer.by_name[(layer.object_id_field or layer.display_field).upper()],)
    if "*" in names:
        return layer.fields
    chosen: dict[str, Field] = {}
    for name in names:
        field = layer.by_name.get(name.upper())
        if field is None:
            raise _invalid("outFields")
        chosen.setdefault(field.name, field)
    return tuple(chosen.values())


def _order(layer: Layer, text: str) -> tuple[tuple[str, bool], ...]:
    """(field, descending) pairs; any unknown field fails the query (think OBJECTID on Dayton)."""
    order = []
    for part in text.split(","):
        words = part.split()
        if not words:
            continue
        field = layer.by_name.get(words[0].upper())
        direction = words[1].upper() if len(words) > 1 else "ASC"
        if field is None or len(words) > 2 or direction not in ("ASC", "DESC"):
            raise _invalid("orderByFields")
        order.append((field.name, direction == "DESC"))
    return tuple(order)


def _spatial_reference(text: str) -> dict:
    text = text.strip()
    if not text:
        return _WEB_MERCATOR  # the layers' own reference: clients that forget outSR get metres
    if text.startswith("{"):
        try:
            text = str(json.loads(text).get("wkid", ""))
        except (ValueError, AttributeError) as error:
            raise _invalid("outSR") from error
    if text == "4326":
        return _WGS84
    if text in ("102100", "3857", "102113"):
        return _WEB_MERCATOR
    raise _invalid("outSR")


def _mercator(lon: float, lat: float) -> tuple[float, float]:
    x = math.radians(lon) * _EARTH_RADIUS
    y = math.log(math.tan(math.pi / 4 + math.radians(lat) / 2)) * _EARTH_RADIUS
    return x, y


def _project(lon: float, lat: float, wgs84: bool, precision: int | None) -> list[float]:
    x, y = (lon, lat) if wgs84 else _mercator(lon, lat)
    if precision is not None:
        x, y = round(x, precision), round(y, precision)
    return [x, y]


def _null_last_key(field: str) -> Callable[[Feature], tuple]:
    def key(feature: Feature) -> tuple:
        value = feature.attributes[field]
        return (0, 0) if value is None else (1, value)

    return key


@functools.lru_cache(maxsize=16)
def _matching(
    layer_path: str, source: tuple, where: str, order: tuple[tuple[str, bool], ...]
) -> tuple[Feature, ...]:
    """Features of a layer matching ``where`` in ``order``; kept so paging sorts only once."""
    layer = LAYERS[layer_path]
    features = layer.features(source)
    keep = compile_where(where, layer)
    rows = [f for f in features if keep(f.attributes)]
    for field, descending in reversed(order):  # stable sorts, least significant key first
        rows.sort(key=_null_last_key(field), reverse=descending)
    return tuple(rows)


def _query(layer: Layer, store: ServiceRequestStore, params: Mapping[str, str]) -> dict:
    where = params.get("where", "").strip()
    if not where and not params.get("objectIds", "").strip():
        raise ArcGISError(400, "Invalid or missing input parameters.", [])
    fields = _out_fields(layer, params.get("outFields", ""))
    order = _order(layer, params.get("orderByFields", ""))
    source = store.key
    matches = _matching(layer.path, source, where or "1=1", order)
    object_ids = params.get("objectIds", "").strip()
    if object_ids:
        if layer.object_id_field is None:
            raise _invalid("objectIds")
        try:
            wanted = {int(i) for i in object_ids.split(",")}
        except ValueError as error:
            raise _invalid("objectIds") from error
        matches = tuple(f for f in matches if f.attributes[layer.object_id_field] in wanted)
    if _flag(params, "returnCountOnly"):
        return {"count": len(matches)}
    if _flag(params, "returnIdsOnly"):
        if layer.object_id_field is None:
            raise _invalid("returnIdsOnly")
        oid = layer.object_id_field
        return {"objectIdFieldName": oid, "objectIds": [f.attributes[oid] for f in matches]}
    offset = _integer(params, "resultOffset", 0)
    count = _integer(params, "resultRecordCount", MAX_RECORD_COUNT) or MAX_RECORD_COUNT
    count = min(count, MAX_RECORD_COUNT)  # silently, as ArcGIS does
    page = matches[offset : offset + count]
    more = offset + len(page) < len(matches)
    geometry = params.get("returnGeometry", "true").strip().lower() != "false"
    precision = params.get("geometryPrecision", "").strip()
    if precision and not precision.isdigit():
        raise _invalid("geometryPrecision")
    digits = int(precision) if precision else None
    if params.get("f", "").lower() == "geojson":
        return _geojson(layer, page, fields, geometry, more, digits)
    reference = _spatial_reference(params.get("outSR", ""))
    return _esri_json(layer, page, fields, geometry, more, reference, digits)


def _esri_json(
    layer: Layer,
    page: tuple[Feature, ...],
    fields: tuple[Field, ...],
    geometry: bool,
    more: bool,
    reference: dict,
    digits: int | None,
) -> dict:
    out: dict = {}
    if layer.kind == "MapServer":
        out["displayFieldName"] = layer.display_field
        out["fieldAliases"] = {f.name: f.name for f in fields}
    else:
        out["objectIdFieldName"] = layer.object_id_field
        out["uniqueIdField"] = {"name": layer.object_id_field, "isSystemMaintained": True}
        out["globalIdFieldName"] = ""
    out["geometryType"] = layer.geometry_type
    out["spatialReference"] = reference
    if page:  # an empty feature set comes without its fields
        out["fields"] = [f.definition() for f in fields]
    wgs84 = reference["wkid"] == 4326
    features = []
    for feature in page:
        item: dict = {"attributes": {f.name: feature.attributes[f.name] for f in fields}}
        if geometry and feature.geometry is not None:
            if layer.geometry_type == "esriGeometryPoint":
                x, y = _project(*feature.geometry, wgs84, digits)
                item["geometry"] = {"x": x, "y": y}
            else:
                item["geometry"] = {
                    "rings": [[_project(*p, wgs84, digits) for p in r] for r in feature.geometry]
                }
        features.append(item)
    out["features"] = features
    if more:
        out["exceededTransferLimit"] = True
    return out


def _geojson(
    layer: Layer,
    page: tuple[Feature, ...],
    fields: tuple[Field, ...],
    geometry: bool,
    more: bool,
    digits: int | None,
) -> dict:
    features = []
    for feature in page:
        item: dict = {"type": "Feature"}
        if layer.object_id_field is not None:
            item["id"] = feature.attributes[layer.object_id_field]
        shape = None
        if geometry and feature.geometry is not None:
            if layer.geometry_type == "esriGeometryPoint":
                shape = {"type": "Point", "coordinates": _project(*feature.geometry, True, digits)}
            else:  # GeoJSON wants exterior rings counter-clockwise, the reverse of Esri's
                rings = [
                    [_project(*p, True, digits) for p in reversed(r)] for r in feature.geometry
                ]
                shape = {"type": "Polygon", "coordinates": rings}
        item["geometry"] = shape
        item["properties"] = {f.name: feature.attributes[f.name] for f in fields}
        features.append(item)
    out: dict = {"type": "FeatureCollection", "features": features}
    if more:
        out["properties"] = {"exceededTransferLimit": True}
    return out


# --- routing -------------------------------------------------------------------------------------

_PATH = re.compile(
    r"^/arcgis/rest/services(?:/(?P<folder>[^/]+)(?:/(?P<service>[^/]+)/(?P<kind>MapServer|"
    r"FeatureServer)(?:/(?P<layer>\d+)(?P<query>/query)?)?)?)?/?$"
)


def _service_info(folder: str, service: str, kind: str) -> dict:
    layer = _SERVICES[(folder, service, kind)]
    entry = {"id": layer.layer_id, "name": layer.name, "type": "Feature Layer",
             "geometryType": layer.geometry_type}  # fmt: skip
    out = {
        "currentVersion": CURRENT_VERSION,
        "serviceDescription": layer.description,
        "layers": [entry],
        "tables": [],
        "spatialReference": _WEB_MERCATOR,
        "capabilities": layer.metadata()["capabilities"],
        "maxRecordCount": MAX_RECORD_COUNT,
        "supportedQueryFormats": "JSON, geoJSON",
    }
    if kind == "MapServer":
        out["mapName"] = "Layers"
    return out


def _directory(folder: str | None) -> dict | None:
    folders = sorted({layer.folder for layer in LAYERS.values()})
    if folder is None:
        return {"currentVersion": CURRENT_VERSION, "folders": folders, "services": []}
    if folder not in folders:
        return None
    services = [
        {"name": f"{layer.folder}/{layer.service}", "type": layer.kind}
        for layer in LAYERS.values()
        if layer.folder == folder
    ]
    return {"currentVersion": CURRENT_VERSION, "folders": [], "services": services}


def _answer(store: ServiceRequestStore, path: str, params: Mapping[str, str]) -> dict:
    match = _PATH.match(path)
    if match is None:
        raise ArcGISError(404, "Service not found.", [])
    folder, service, kind = match["folder"], match["service"], match["kind"]
    if service is None:
        listing = _directory(folder)
        if listing is None:
            raise ArcGISError(404, "Folder not found.", [])
        return listing
    if (folder, service, kind) not in _SERVICES:
        raise ArcGISError(404, f"Service {folder}/{service}/{kind} not found.", [])
    if match["layer"] is None:
        return _service_info(folder, service, kind)
    layer = LAYERS.get(path.rstrip("/").removesuffix("/query"))
    if layer is None:
        raise ArcGISError(400, "Invalid or missing input parameters.", ["Invalid layer ID"])
    if match["query"] is None:
        return layer.metadata()
    return _query(layer, store, params)


def respond(store: ServiceRequestStore, path: str, params: Mapping[str, str]) -> Response:
    """The HTTP answer (status, headers, body) to a GET under ``/arcgis/rest/services``."""
    fmt = params.get("f", "").strip().lower()
    if fmt in ("", "html"):
        body = (
            "<html><head><title>ArcGIS REST Services Directory</title></head><body>"
            f"<p>{path}</p><p>Add f=json to this URL for the machine-readable answer.</p>"
            "</body></html>"
        )
        return 200, {"Content-Type": "text/html; charset=utf-8"}, body.encode()
    try:
        if fmt not in ("json", "pjson", "geojson"):
            raise ArcGISError(
                400, "Invalid or missing input parameters.", ["'f' parameter is invalid"]
            )
        payload = _answer(store, path, params)
    except ArcGISError as error:
        payload = error.body()
    if fmt == "geojson" and "error" not in payload:
        content_type = "application/geo+json; charset=utf-8"
    else:
        content_type = _JSON
    indent = 2 if fmt == "pjson" else None
    separators = None if indent else (",", ":")
    body = json.dumps(payload, indent=indent, separators=separators).encode()
    return 200, {"Content-Type": content_type}, body
