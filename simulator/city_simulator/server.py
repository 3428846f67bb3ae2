"""An HTTP server speaking Socrata SODA 2.1 for the simulated city's 911 calls.

Serves ``GET /resource/<dataset_id>.json`` (``$select``, ``$where``, ``$order``, ``$limit``,
``$offset`` and ``?column=value`` filters) and ``GET /api/views/<dataset_id>.json`` with the
headers, body layout and error envelopes of a real Socrata server, so connectors and their tests
exercise the same code paths they would against a city's open-data portal. The Socrata datasets
are the 911 calls (``cfs9-mru1``), traffic crashes (``tc26-kabc``) and MRU cases
(``mru5-case``); building permits are served over CKAN's
``GET /api/3/action/datastore_search?resource_id=<uuid>``.

It is also the city's open-data portal a publisher releases to: ``POST /resource/<id>.json`` is the
SODA producer upsert (``soda_portal``) and ``POST /api/3/action/<name>`` the CKAN actions that
write (``ckan_portal``), each read back through the same read routes. They accept only the
credentials given to ``SimulatorServer`` (from ``SIMULATOR_CKAN_API_TOKEN``,
``SIMULATOR_SOCRATA_KEY_ID`` and ``SIMULATOR_SOCRATA_KEY_SECRET`` when run as a process).

Run it with ``python -m city_simulator --port 8780``.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime as dt
import functools
import gzip
import hashlib
import json
import logging
import os
import re
import signal
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, Self
from urllib.parse import parse_qsl, urlsplit

import msgspec

from city_simulator import (
    arcgis,
    ckan_portal,
    crashes,
    faults,
    mru_cases,
    open311,
    permits,
    soda_portal,
    soql,
)
from city_simulator.calls import (
    CALLS_COLUMNS,
    CALLS_DATASET_ID,
    CALLS_DATASET_NAME,
    LOCAL_TZ,
    MAX_UPDATE_LAG,
    SYSTEM_COLUMNS,
)
from city_simulator.service_requests import ServiceRequestStore

log = logging.getLogger(__name__)

DEFAULT_PORT = 8780
DEFAULT_LIMIT = 1000

# A canned HTTP answer: (status, headers, body). Tests queue these in SimulatorServer.faults.
Fault = tuple[int, dict[str, str], bytes]

_JSON_TYPE = "application/json;charset=utf-8"
_ONE_DAY = dt.timedelta(days=1)
# The metadata API names floating timestamps "calendar_date" and fixed ones "date".
_VIEW_TYPES = {"floating_timestamp": "calendar_date", "fixed_timestamp": "date"}
# Rows as compact JSON, one per line: msgspec writes a page about fifteen times faster than the
# json module, which matters when a bench pages a million rows through the simulator.
_encode_lines = msgspec.json.Encoder().encode_lines


@dataclass(frozen=True)
class SodaDataset:
    """A Socrata dataset the simulator serves: its columns and its per-day generator."""

    dataset_id: str
    name: str
    description: str
    columns: tuple[tuple[str, str], ...]
    event_field: str  # floating timestamp; a generated day's rows all fall on that day
    max_update_lag: dt.timedelta  # :updated_at never trails event_field by more
    generate: Callable[[dt.date, int, float], Sequence[dict]]  # (day, seed, scale) -> rows
    key: str  # business key
    amend: Callable[[dict, str], dict]  # a late update of a record (see faults.Injector)


def _reprioritise_call(record: dict, _stamp: str) -> dict:
    """A late update to a 911 call: its priority is revised after review."""
    priority = int(record["priority"])
    record["priority"] = str(priority - 1 if priority > 1 else 2)
    return record


SODA_DATASETS: tuple[SodaDataset, ...] = (
    SodaDataset(
        CALLS_DATASET_ID,
        CALLS_DATASET_NAME,
        "Synthetic 911 calls for service for a mid-size US city.",
        CALLS_COLUMNS,
        "time_received",
        MAX_UPDATE_LAG,
        faults.call_day_records,
        "event_number",
        _reprioritise_call,
    ),
    SodaDataset(
        crashes.CRASHES_DATASET_ID,
        crashes.CRASHES_DATASET_NAME,
        crashes.CRASHES_DESCRIPTION,
        crashes.CRASHES_COLUMNS,
        "crash_date",
        crashes.MAX_UPDATE_LAG,
        crashes.day_records,
        "crash_id",
        crashes.amend,
    ),
    SodaDataset(
        mru_cases.MRU_DATASET_ID,
        mru_cases.MRU_DATASET_NAME,
        mru_cases.MRU_DESCRIPTION,
        mru_cases.MRU_COLUMNS,
        "opened",
        mru_cases.MAX_UPDATE_LAG,
        mru_cases.day_records,
        "case_number",
        mru_cases.amend,
    ),
)


class SodaResource:
    """One Socrata dataset as a SODA resource over a fixed range of days.

    Rows come from the dataset's generator at ``scale``, through ``overlay``, where data faults
    (inserted rows, late updates, duplicates, schema drift) change them.
    """

    system_columns: ClassVar[dict[str, str]] = dict(SYSTEM_COLUMNS)

    def __init__(
        self,
        dataset: SodaDataset,
        first_day: dt.date,
        last_day: dt.date,
        seed: int,
        scale: float = 1.0,
    ) -> None:
        if last_day < first_day:
            raise ValueError(f"last_day {last_day} is before first_day {first_day}")
        if scale <= 0:
            raise ValueError(f"scale must be positive, got {scale}")
        self.dataset = dataset
        self.dataset_id, self.name = dataset.dataset_id, dataset.name
        self.first_day, self.last_day, self.seed, self.scale = first_day, last_day, seed, scale
        shape = faults.RecordShape(
            key=dataset.key,
            event=dataset.event_field,
            updated=":updated_at",
            row_id=":id",
            created=":created_at",
            stamp=lambda utc: soql.format_timestamp(utc, "fixed_timestamp"),
            new_row_id=functools.partial(faults.hashed_row_id, dataset.dataset_id, seed),
            amend=dataset.amend,
        )
        # The fault clock starts at the newest generated :updated_at (naive UTC).
        self.overlay = faults.Overlay(shape, lambda: self.base_last_modified.replace(tzinfo=None))

    @property
    def columns(self) -> dict[str, str]:
        """Dataset columns (without system fields), including any added by schema drift."""
        return self.overlay.columns(dict(self.dataset.columns))

    @property
    def schema(self) -> dict[str, str]:
        return {**self.system_columns, **self.columns}

    def records(self, day: dt.date) -> Sequence[dict]:
        """The generated rows of one day (shared: read-only)."""
        return self.dataset.generate(day, self.seed, self.scale)

    def sorted_rows(
        self, where: soql.Expr | None, order: tuple[tuple[str, bool], ...]
    ) -> tuple[dict, ...]:
        """Matching rows in ``order``; remembered so that paging through them sorts only once."""
        return _sorted_rows(self, self.overlay.version, where, order)

    def count(self, where: soql.Expr | None) -> int:
        """How many rows match ``where``; remembered, as a real Socrata answers counts quickly."""
        return _count(self, self.overlay.version, where)

    def rows(self, where: soql.Expr | None) -> list[dict]:
        """Rows matching ``where``, in generation order; generates only days it could match."""
        keep = None if where is None else soql.compile_predicate(where)
        days, overlay = self._days(where), self.overlay
        if overlay.clean:
            if keep is None:
                return [row for day in days for row in self.records(day)]
            return [row for day in days for row in self.records(day) if keep(row)]
        rows = [row for day in days for row in overlay.view(self.records(day), day)]
        rows += overlay.extra_rows()  # changed after generation: not pruned by day
        return rows if keep is None else [row for row in rows if keep(row)]

    def ground_truth(
        self, start: dt.datetime | None = None, end: dt.datetime | None = None
    ) -> dict[str, dict]:
        """By business key, the latest version of every record with event time in [start, end)."""
        first = max(self.first_day, start.date()) if start else self.first_day
        last = min(self.last_day, end.date()) if end else self.last_day
        generated = (row for day in _days_between(first, last) for row in self.records(day))
        return self.overlay.ground_truth(generated, start, end)

    def _days(self, where: soql.Expr | None) -> Iterator[dt.date]:
        """The days whose rows could match ``where``, clipped to the served range."""
        first, last = self.first_day, self.last_day
        low, high = soql.timestamp_bounds(where, self.dataset.event_field)
        if low is not None:
            first = max(first, low.date())
        if high is not None:
            last = min(last, high.date())
        # :updated_at (UTC) trails the event time (local) by at most max_update_lag.
        low, high = soql.timestamp_bounds(where, ":updated_at")
        if low is not None:
            first = max(first, _utc_to_local(low - self.dataset.max_update_lag).date())
        if high is not None:
            last = min(last, _utc_to_local(high).date())
        return _days_between(first, last)

    @functools.cached_property
    def base_last_modified(self) -> dt.datetime:
        """The newest generated :updated_at; only the last few days can hold it."""
        start = max(self.first_day, self.last_day - self.dataset.max_update_lag)
        stamps = [
            row[":updated_at"]
            for day in _days_between(start, self.last_day)
            for row in self.records(day)
        ]
        newest = max(stamps, default=None)
        if newest is None:
            return dt.datetime.combine(self.first_day, dt.time(), dt.UTC)
        return soql.parse_timestamp(newest).replace(microsecond=0, tzinfo=dt.UTC)

    @property
    def last_modified(self) -> dt.datetime:
        """The newest :updated_at, counting rows changed by faults."""
        newest = self.overlay.newest
        if newest is None:
            return self.base_last_modified
        return max(self.base_last_modified, newest.replace(microsecond=0, tzinfo=dt.UTC))

    def metadata(self) -> dict:
        return {
            "id": self.dataset_id,
            "name": self.name,
            "assetType": "dataset",
            "description": self.dataset.description,
            "rowsUpdatedAt": int(self.last_modified.timestamp()),
            "columns": [
                {
                    "id": 1000 + position,
                    "name": field.replace("_", " ").title(),
                    "fieldName": field,
                    "dataTypeName": _VIEW_TYPES.get(datatype, datatype),
                    "renderTypeName": _VIEW_TYPES.get(datatype, datatype),
                    "position": position,
                }
                for position, (field, datatype) in enumerate(self.columns.items(), start=1)
            ],
        }


@functools.lru_cache(maxsize=8)
def _sorted_rows(
    resource: SodaResource,
    _version: int,
    where: soql.Expr | None,
    order: tuple[tuple[str, bool], ...],
) -> tuple[dict, ...]:
    rows = resource.rows(where)
    soql.sort_rows(rows, order, resource.schema)
    return tuple(rows)


@functools.lru_cache(maxsize=64)
def _count(resource: SodaResource, _version: int, where: soql.Expr | None) -> int:
    return len(resource.rows(where))


def _days_between(first: dt.date, last: dt.date) -> Iterator[dt.date]:
    day = first
    while day <= last:
        yield day
        day += _ONE_DAY


def _utc_to_local(utc: dt.datetime) -> dt.datetime:
    return utc.replace(tzinfo=dt.UTC).astimezone(LOCAL_TZ).replace(tzinfo=None)


class _Query:
    """A parsed ``/resource`` request."""

    def __init__(self, params: dict[str, str], resource: SodaResource) -> None:
        for name in params:
            if name.startswith("$") and not name.startswith("$$") and name not in _SUPPORTED:
                raise soql.SoqlError(
                    "query.soql.malformed", f"{name} is not supported by the simulator", 1
                )
        schema = resource.schema
        self.limit = _non_negative(params, "$limit", DEFAULT_LIMIT)
        self.offset = _non_negative(params, "$offset", 0)
        self.select = soql.parse_select(
            params.get("$select", "*"), resource.columns, resource.system_columns
        )
        # Unordered SODA output comes back in :id order: stable, but unrelated to time.
        self.order = tuple(soql.parse_order(params.get("$order", ":id"), schema))
        conditions = [
            soql.comparison(name, "=", value, schema)
            for name, value in params.items()
            if not name.startswith("$")
        ]
        if "$where" in params:
            conditions.append(soql.parse_where(params["$where"], schema))
        self.where: soql.Expr | None = None
        if len(conditions) == 1:
            self.where = conditions[0]
        elif conditions:
            self.where = soql.BoolOp("AND", tuple(conditions))


_SUPPORTED = frozenset({"$select", "$where", "$order", "$limit", "$offset"})


def _non_negative(params: dict[str, str], name: str, default: int) -> int:
    text = params.get(name)
    if text is None:
        return default
    if not text.strip().isdigit():
        raise soql.SoqlError("query.soql.malformed", f"Invalid {name}: {text}", 1)
    return int(text)


def render_rows(
    rows: Sequence[dict], fields: tuple[str, ...], all_fields: tuple[str, ...]
) -> bytes:
    """A SODA 2.1 body: one object per line, lines led by commas, ``[]`` when empty."""
    if not rows:
        return b"[]\n"
    if fields != all_fields:
        rows = [{f: row[f] for f in fields if f in row} for row in rows]
    # A newline inside JSON text is always escaped: the only raw newlines are between rows.
    return b"[" + _encode_lines(rows)[:-1].replace(b"\n", b"\n,") + b"]\n"


def _http_date(moment: dt.datetime) -> str:
    return format_datetime(moment, usegmt=True)


class SimulatorServer:
    """The city-systems simulator: a threaded HTTP server over deterministic data.

    ``faults`` holds canned answers (status, headers, body) served, oldest first, instead of the
    next requests; ``requests_log`` records (path, query) of every request received.

    ``resources`` are the Socrata datasets (911 calls, traffic crashes, MRU cases) and
    ``datastores`` the CKAN DataStore tables (building permits). ``scale`` multiplies every
    dataset's daily volume. ``inject`` sets bounded behavioural faults (slow, dropped or truncated
    answers; rows inserted, updated or duplicated while a client pages; schema drift), and
    ``ground_truth`` says what a correct client should end up holding.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        first_day: dt.date = dt.date(2026, 1, 1),
        last_day: dt.date = dt.date(2026, 10, 31),
        seed: int = 2026,
        scale: float = 1.0,
        ckan_token: str | None = None,
        socrata_credentials: tuple[str, str] | None = None,
    ) -> None:
        self.seed, self.scale = seed, scale
        self.resources = {
            d.dataset_id: SodaResource(d, first_day, last_day, seed, scale) for d in SODA_DATASETS
        }
        self.datastores = {
            permits.PERMITS_RESOURCE_ID: permits.permits_datastore(first_day, last_day, seed, scale)
        }
        self.inject = faults.Injector(
            {i: r.overlay for i, r in [*self.resources.items(), *self.datastores.items()]}
        )
        # 311 requests for the ArcGIS and Open311 routes; set its ``as_of`` to move the clock.
        self.service_requests = ServiceRequestStore(first_day, last_day, seed)
        # The open-data portal the warehouse releases its open marts to (write side).
        self.ckan_portal = ckan_portal.CkanPortal(ckan_token)
        self.soda_portal = soda_portal.SodaPortal(socrata_credentials)
        self.faults: deque[Fault] = deque()
        self.requests_log: list[tuple[str, dict[str, str]]] = []
        self._httpd = _HTTPServer((host, port), _Handler)
        self._httpd.simulator = self
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def ground_truth(
        self,
        dataset_id: str,
        start: dt.datetime | None = None,
        end: dt.datetime | None = None,
    ) -> dict[str, dict]:
        """What a correct client of ``dataset_id`` ends up holding for event times in [start, end).

        One record per business key, in its latest version (late updates applied, inserted rows
        included, duplicates collapsed, schema drift applied), as the server renders it in full:
        SODA rows with system fields, CKAN rows with ``_id``. ``start``/``end`` are naive local
        times on the dataset's event field (time_received, crash_date, opened, applied_date).
        """
        resource = self.resources.get(dataset_id) or self.datastores.get(dataset_id)
        if resource is None:
            known = sorted([*self.resources, *self.datastores])
            raise KeyError(f"no dataset {dataset_id!r}; known: {known}")
        return resource.ground_truth(start, end)

    def start(self) -> Self:
        """Serve from a daemon thread; returns at once."""
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="city-simulator", daemon=True
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve from the calling thread until interrupted."""
        try:
            self._httpd.serve_forever()
        finally:
            self._httpd.server_close()

    def stop(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    simulator: SimulatorServer

    def handle_error(self, request: object, client_address: object) -> None:
        # A client hanging up mid-response is routine for a test server, not worth a traceback.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            log.error("error serving %s", client_address, exc_info=True)


_RESOURCE_PATH = re.compile(r"^/resource/(?P<id>[^/]+)\.json$")
_VIEW_PATH = re.compile(r"^/api/views/(?P<id>[^/]+)\.json$")
_CKAN_ACTION_PATH = re.compile(r"^/api/3/action/(?P<action>[^/]+)$")


def _portal_read(simulator: SimulatorServer, match: re.Match, params: dict[str, str]) -> bool:
    """Whether a CKAN GET reads what was released to the portal rather than the permits."""
    action = match["action"]
    if action == "package_show":
        return True
    return action == "datastore_search" and simulator.ckan_portal.holds(
        params.get("resource_id") or params.get("id")
    )


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so paging clients reuse one connection
    server: _HTTPServer
    _spoil: str | None = None  # faults.DROP or faults.TRUNCATE for the current answer

    def version_string(self) -> str:
        return "nginx"  # what Socrata's front end announces

    def log_message(self, *args: object) -> None:
        """Silence the per-request access log."""

    def do_GET(self) -> None:
        self._handle(self._route)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self._handle(functools.partial(self._route_write, body=body))

    def _handle(self, route: Callable[[SimulatorServer, str, dict[str, str]], None]) -> None:
        """Log the request, apply the faults armed for it, then answer it through ``route``."""
        simulator = self.server.simulator
        url = urlsplit(self.path)
        params = dict(parse_qsl(url.query, keep_blank_values=True))
        simulator.requests_log.append((url.path, params))
        injected = simulator.inject.take(url.path)
        self._spoil = injected.body
        if injected.delay:
            time.sleep(injected.delay)
        try:
            fault = simulator.faults.popleft()
        except IndexError:
            fault = None
        if fault is not None:
            status, headers, body = fault
            self._send(status, headers, body, compress=False)
            return
        try:
            route(simulator, url.path, params)
        except Exception:
            log.exception("simulator failed on %s", self.path)
            self._send_json(500, {"message": "Internal error", "error": True})

    def _route_write(
        self, simulator: SimulatorServer, path: str, _params: dict[str, str], body: bytes
    ) -> None:
        """The portal's write side: SODA producer upserts and CKAN actions."""
        if match := _RESOURCE_PATH.match(path):
            authorization = self.headers.get("Authorization")
            self._send_json(*simulator.soda_portal.upsert(match["id"], body, authorization))
        elif match := _CKAN_ACTION_PATH.match(path):
            try:
                data = json.loads(body or b"{}")
            except ValueError:
                data = None
            self._send_json(
                *simulator.ckan_portal.action(
                    match["action"], data, self.headers.get("Authorization"), self._site()
                )
            )
        else:
            self._send_json(404, {"code": "not_found", "error": True, "message": "Not found"})

    def _site(self) -> str:
        host = self.headers.get("Host") or self.server.simulator.url.removeprefix("http://")
        return f"http://{host}"

    def _route(self, simulator: SimulatorServer, path: str, params: dict[str, str]) -> None:
        if (match := _RESOURCE_PATH.match(path)) and simulator.soda_portal.holds(match["id"]):
            self._send_json(*simulator.soda_portal.read(match["id"], params))
        elif match := _RESOURCE_PATH.match(path):
            resource = simulator.resources.get(match["id"])
            if resource is None:
                self._send_missing(match["id"])
            else:
                self._serve_rows(resource, params)
        elif match := _VIEW_PATH.match(path):
            resource = simulator.resources.get(match["id"])
            if resource is None:
                self._send_missing(match["id"])
            else:
                headers = {"Last-Modified": _http_date(resource.last_modified)}
                self._send_json(200, resource.metadata(), headers)
        elif (match := _CKAN_ACTION_PATH.match(path)) and _portal_read(simulator, match, params):
            self._send_json(
                *simulator.ckan_portal.action(match["action"], params, None, self._site())
            )
        elif match := _CKAN_ACTION_PATH.match(path):
            status, body = permits.datastore_action(
                simulator.datastores,
                match["action"],
                params,
                urlsplit(self.path).query,
                path,
                self._site(),
            )
            self._send(status, {}, json.dumps(body).encode())
        elif path.startswith(arcgis.PATH_PREFIX):
            self._send(*arcgis.respond(simulator.service_requests, path, params))
        elif path.startswith(open311.PATH_PREFIX):
            self._send(*open311.respond(simulator.service_requests, path, params))
        else:
            self._send_json(404, {"code": "not_found", "error": True, "message": "Not found"})

    def _serve_rows(self, resource: SodaResource, params: dict[str, str]) -> None:
        try:
            query = _Query(params, resource)
        except soql.SoqlError as error:
            self._send_json(400, error.body(resource.dataset_id))
            return
        modified = _http_date(resource.last_modified)
        headers = {
            "ETag": self._etag(resource, params),
            "X-SODA2-Data-Out-Of-Date": "false",
            "X-SODA2-Truth-Last-Modified": modified,
            "X-SODA2-Secondary-Last-Modified": modified,
            "Last-Modified": modified,
        }
        if self.headers.get("If-None-Match") == headers["ETag"]:
            self._send(304, headers, b"")
            return
        fields = query.select.fields
        if query.select.count:
            types = ["number"]
            count = resource.count(query.where)
            body = render_rows([{fields[0]: str(count)}], fields, fields)
        else:
            types = [resource.schema[f] for f in fields]
            rows = resource.sorted_rows(query.where, query.order)
            page = rows[query.offset : query.offset + query.limit]
            body = render_rows(page, fields, tuple(resource.schema))
            resource.overlay.after_page(rows, page, query.limit)  # armed data faults act now
        headers["X-SODA2-Fields"] = json.dumps(list(fields), separators=(",", ":"))
        headers["X-SODA2-Types"] = json.dumps(types, separators=(",", ":"))
        self._send(200, headers, body)

    def _etag(self, resource: SodaResource, params: dict[str, str]) -> str:
        # Same data and same query give the same tag; app tokens do not change the answer.
        query = sorted((k, v) for k, v in params.items() if not k.startswith("$$"))
        key = json.dumps(
            [resource.dataset_id, resource.seed, str(resource.first_day),
             str(resource.last_day), resource.scale, resource.overlay.version, query]
        )  # fmt: skip
        digest = hashlib.sha256(key.encode()).digest()[:24]
        return f'"{base64.urlsafe_b64encode(digest).decode()}"'

    def _send_missing(self, dataset_id: str) -> None:
        body = {"code": "dataset.missing", "error": True, "message": "Not found",
                "data": {"id": dataset_id}}  # fmt: skip
        self._send_json(404, body)

    def _send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, headers or {}, json.dumps(payload).encode())

    def _send(
        self, status: int, headers: dict[str, str], body: bytes, compress: bool = True
    ) -> None:
        headers = {
            "Content-Type": _JSON_TYPE,
            "Access-Control-Allow-Origin": "*",
            "X-Socrata-RequestId": uuid.uuid4().hex,
            "Vary": "Accept-Encoding",
            **headers,
        }
        if self._spoil == faults.TRUNCATE:
            body = body[: len(body) // 2]  # a complete HTTP answer whose JSON stops half-way
        if compress and body and "gzip" in self.headers.get("Accept-Encoding", ""):
            body = gzip.compress(body, compresslevel=1, mtime=0)
            headers["Content-Encoding"] = "gzip"
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if status != 304:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self._spoil == faults.DROP:
            # Promise the whole body, send half, hang up: the client sees a broken connection.
            self.wfile.write(body[: len(body) // 2])
            self.close_connection = True
            return
        self.wfile.write(body)


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="city_simulator",
        description="Serve simulated city 911 calls over the Socrata SODA 2.1 protocol.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    # The days the city's systems hold: the options, else SIMULATOR_FIRST_DAY and
    # SIMULATOR_LAST_DAY (so `make airflow` can serve the days its scheduler will ask for).
    parser.add_argument(
        "--first-day",
        type=dt.date.fromisoformat,
        default=os.environ.get("SIMULATOR_FIRST_DAY") or "2026-01-01",
    )
    parser.add_argument(
        "--last-day",
        type=dt.date.fromisoformat,
        default=os.environ.get("SIMULATOR_LAST_DAY") or "2026-10-31",
    )
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument(
        "--scale", type=float, default=1.0, help="multiply every dataset's daily volume"
    )
    return parser.parse_args(argv)


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    key = (
        os.environ.get("SIMULATOR_SOCRATA_KEY_ID"),
        os.environ.get("SIMULATOR_SOCRATA_KEY_SECRET"),
    )
    server = SimulatorServer(
        args.host,
        args.port,
        args.first_day,
        args.last_day,
        args.seed,
        args.scale,
        # The portal's write side accepts only the credentials given here (none: it refuses all).
        ckan_token=os.environ.get("SIMULATOR_CKAN_API_TOKEN") or None,
        socrata_credentials=key if all(key) else None,
    )
    signal.signal(signal.SIGTERM, _interrupt)  # docker stop sends SIGTERM
    print(f"city simulator listening on {server.url}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
