"""Open311 GeoReport v2 (JSON) for the simulated city's 311 service requests.

``GET /open311/v2/services.json`` lists the service types; ``GET /open311/v2/services/<code>.json``
is a type's (empty) definition; ``GET /open311/v2/requests.json`` searches requests and
``GET /open311/v2/requests/<id>.json`` returns one.

Search arguments follow the spec: ``start_date`` / ``end_date`` select by requested_datetime,
as the half-open window [start_date, end_date), must carry a ``Z`` or an ``HH:MM`` offset, may
not span more than 90 days and default to the 90 days before the simulator's clock;
``status`` and ``service_code`` take comma-separated lists; ``service_request_id`` overrides
everything else. Like Chicago and Austin it also accepts ``page`` (1-based) and ``page_size``
(default and maximum 1000, larger values silently clamped) and ``updated_after`` /
``updated_before`` (a window on updated_datetime, same 90-day rule). Results are newest first.

Timestamps carry the local offset (-05:00 or -04:00), except that about one record in twenty is
written in UTC with ``Z``, as some cities' systems do. Missing values are JSON null; lat and long
are JSON numbers. Errors are ``[{"code": ..., "description": ...}]`` with HTTP 400 or 404.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import zlib
from collections.abc import Mapping

from city_simulator.service_requests import (
    CLOSED,
    LOCAL_TZ,
    SERVICE_TYPES,
    SERVICE_TYPES_BY_CODE,
    ServiceRequest,
    ServiceRequestStore,
    find_request,
    snapshot,
    to_utc,
)

PATH_PREFIX = "/open311/v2"
JURISDICTION_ID = "daytonohio.gov"
MAX_WINDOW = dt.timedelta(days=90)
DEFAULT_PAGE_SIZE = 1000
MAX_PAGE_SIZE = 1000
UTC_WRITER_PERCENT = 5  # share of records whose timestamps are written in UTC ("Z")

Response = tuple[int, dict[str, str], bytes]

_JSON = "application/json; charset=utf-8"
_STATUSES = frozenset({"open", "closed"})
_REQUEST_PATH = re.compile(r"^/open311/v2/requests/(?P<id>[^/]+)\.json$")
_SERVICE_PATH = re.compile(r"^/open311/v2/services/(?P<code>[^/]+)\.json$")
# Offsets are required: "Z" or +HH:MM / -HH:MM after a full date and time.
_W3C_DATETIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d(?::\d\d(?:\.\d+)?)?(?:Z|[+-]\d\d:\d\d)$")


class Open311Error(Exception):
    def __init__(self, status: int, description: str) -> None:
        super().__init__(description)
        self.status, self.description = status, description

    def body(self) -> list[dict]:
        return [{"code": self.status, "description": self.description}]


def writes_utc(service_request_id: str) -> bool:
    """Whether this record's timestamps come out in UTC: a fixed ~5% of requests."""
    return zlib.crc32(service_request_id.encode()) % 100 < UTC_WRITER_PERCENT


def w3c_timestamp(local: dt.datetime | None, utc: bool) -> str | None:
    """A naive local time as ISO 8601 with its offset (or in UTC with ``Z``), to the second."""
    if local is None:
        return None
    if utc:
        return to_utc(local).strftime("%Y-%m-%dT%H:%M:%SZ")
    return local.replace(tzinfo=LOCAL_TZ, microsecond=0).isoformat()


def service_list() -> list[dict]:
    return [
        {
            "service_code": t.code,
            "service_name": t.name,
            "description": t.summary,
            "metadata": False,
            "type": "realtime",
            "keywords": t.keywords,
            "group": t.group,
        }
        for t in SERVICE_TYPES
    ]


def request_record(request: ServiceRequest, as_of: dt.datetime) -> dict:
    """A request as GeoReport v2 JSON, with its status as of ``as_of``."""
    record = snapshot(request, as_of)
    utc = writes_utc(request.service_request_id)
    return {
        "service_request_id": record["service_request_id"],
        "status": "closed" if record["status"] == CLOSED else "open",
        "status_notes": record["status_notes"],
        "service_name": record["service_name"],
        "service_code": record["service_code"],
        "description": record["description"],
        "agency_responsible": record["department"],
        "service_notice": request.type.notice,
        "requested_datetime": w3c_timestamp(record["requested_datetime"], utc),
        "updated_datetime": w3c_timestamp(record["updated_datetime"], utc),
        "expected_datetime": w3c_timestamp(record["expected_datetime"], utc),
        "address": f"{record['address']}, DAYTON, OH, {record['zipcode']}",
        "address_id": record["address_id"],
        "zipcode": record["zipcode"],
        "lat": record["lat"],
        "long": record["long"],
        "media_url": record["media_url"],
    }


def _instant(params: Mapping[str, str], name: str) -> dt.datetime | None:
    text = params.get(name, "").strip()
    if not text:  # "optional" arguments: empty is the same as absent
        return None
    if not _W3C_DATETIME.match(text):
        raise Open311Error(
            400,
            f"{name} must be a w3 date and time with a timezone, such as 2010-01-01T00:00:00Z"
            f" or 2010-01-01T00:00:00-05:00 (a '+' must be sent as %2B): got {text!r}",
        )
    try:
        return dt.datetime.fromisoformat(text).astimezone(dt.UTC)
    except ValueError as error:
        raise Open311Error(400, f"{name} is not a valid date and time: {text!r}") from error


def _window(
    params: Mapping[str, str], start_name: str, end_name: str, clock: dt.datetime | None
) -> tuple[dt.datetime, dt.datetime] | None:
    """The [start, end) window named by two arguments; ``clock`` fills a missing pair."""
    start, end = _instant(params, start_name), _instant(params, end_name)
    if start is None and end is None:
        if clock is None:
            return None
        end = clock
    if start is None:
        start = end - MAX_WINDOW
    if end is None:
        end = start + MAX_WINDOW
    if end < start:
        raise Open311Error(400, f"{end_name} is before {start_name}")
    if end - start > MAX_WINDOW:
        raise Open311Error(
            400, f"The range from {start_name} to {end_name} may not span more than 90 days"
        )
    return start, end


def _choices(params: Mapping[str, str], name: str) -> list[str]:
    return [v.strip() for v in params.get(name, "").split(",") if v.strip()]


def _positive(params: Mapping[str, str], name: str, default: int) -> int:
    text = params.get(name, "").strip()
    if not text:
        return default
    if not text.isdigit() or int(text) < 1:
        raise Open311Error(400, f"{name} must be a positive integer: got {text!r}")
    return int(text)


def _local(utc: dt.datetime) -> dt.datetime:
    return utc.astimezone(LOCAL_TZ).replace(tzinfo=None)


def search(store: ServiceRequestStore, params: Mapping[str, str]) -> list[dict]:
    """The records a ``requests.json`` call returns, in order, one page of them."""
    as_of = store.as_of
    ids = _choices(params, "service_request_id")
    if ids:  # overrides every other argument
        found = []
        for srid in ids:
            request = _served(store, srid)
            if request is not None:
                found.append(request_record(request, as_of))
        return found
    statuses = _choices(params, "status")
    if unknown := [s for s in statuses if s not in _STATUSES]:
        raise Open311Error(400, f"status must be open or closed: got {', '.join(unknown)}")
    codes = _choices(params, "service_code")
    if unknown := [c for c in codes if c not in SERVICE_TYPES_BY_CODE]:
        raise Open311Error(404, f"service_code not found: {', '.join(unknown)}")
    page = _positive(params, "page", 1)
    page_size = min(_positive(params, "page_size", DEFAULT_PAGE_SIZE), MAX_PAGE_SIZE)

    updated = _window(params, "updated_after", "updated_before", None)
    clock = None if updated is not None else to_utc(as_of)
    requested = _window(params, "start_date", "end_date", clock)
    # Bound the days to generate, a little wide: local days do not line up with UTC ones.
    margin = dt.timedelta(days=1)
    if requested is not None:
        candidates = store.opened(_local(requested[0]) - margin, _local(requested[1]) + margin)
    else:  # only an updated window: requests opened before it may have changed in it
        candidates = store.opened(None, _local(updated[1]) + margin)
    selected = []
    for request in candidates:
        if requested is not None and not (requested[0] <= to_utc(request.requested) < requested[1]):
            continue
        if codes and request.type.code not in codes:
            continue
        record = snapshot(request, as_of)
        if statuses and ("closed" if record["status"] == CLOSED else "open") not in statuses:
            continue
        if updated is not None and not (
            updated[0] <= to_utc(record["updated_datetime"]) < updated[1]
        ):
            continue
        selected.append(request)
    selected.sort(key=lambda r: (r.requested, r.service_request_id), reverse=True)
    chosen = selected[(page - 1) * page_size : page * page_size]
    return [request_record(request, as_of) for request in chosen]


def _served(store: ServiceRequestStore, service_request_id: str) -> ServiceRequest | None:
    """The request if this simulator serves it at its clock, else None."""
    try:
        request = find_request(service_request_id, store.seed)
    except KeyError:
        return None
    day = request.requested.date()
    if not store.first_day <= day <= store.last_day or request.requested > store.as_of:
        return None
    return request


def _answer(store: ServiceRequestStore, path: str, params: Mapping[str, str]) -> object:
    jurisdiction = params.get("jurisdiction_id", "").strip()
    if jurisdiction and jurisdiction != JURISDICTION_ID:
        raise Open311Error(404, f"jurisdiction_id not found: {jurisdiction}")
    if path == f"{PATH_PREFIX}/services.json":
        return service_list()
    if path == f"{PATH_PREFIX}/requests.json":
        return search(store, params)
    if match := _SERVICE_PATH.match(path):
        if match["code"] not in SERVICE_TYPES_BY_CODE:
            raise Open311Error(404, f"service_code not found: {match['code']}")
        return {"service_code": match["code"], "attributes": []}
    if match := _REQUEST_PATH.match(path):
        request = _served(store, match["id"])
        if request is None:
            raise Open311Error(404, f"service_request_id not found: {match['id']}")
        return [request_record(request, store.as_of)]
    if path.endswith(".xml"):
        raise Open311Error(400, "This endpoint serves JSON only: use the .json resources")
    raise Open311Error(404, f"No such resource: {path}")


def respond(store: ServiceRequestStore, path: str, params: Mapping[str, str]) -> Response:
    """The HTTP answer (status, headers, body) to a GET under ``/open311/v2``."""
    status = 200
    try:
        payload = _answer(store, path, params)
    except Open311Error as error:
        status, payload = error.status, error.body()
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    return status, {"Content-Type": _JSON}, body
