"""The fault and security suite's attacks, shared by the tests and the report (``bench/attacks.py``).

Each :class:`Attack` runs one attack for real (a hostile HTTP server on 127.0.0.1, a page of bad
records loaded into PostgreSQL, a source file on disk, a ``bi_reader`` session) and returns how
the warehouse survived it, or raises :class:`Lost` saying what was lost: records neither landed
nor rejected, an extract not bounded in time or pages, a traceback or a message that does not
name its cause, a limit of the BI role lifted. Anything else it raises is lost too.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import psycopg
import yaml
from fake_http import listening
from pydantic import ValidationError

from civic_warehouse import access, loader, page_feed, settings, warehouse
from civic_warehouse.catalog import CatalogError, get_source, load_source
from civic_warehouse.connectors import Page, Query, Window, connector_for
from civic_warehouse.connectors.base import JsonArray
from civic_warehouse.connectors.http import HttpClient
from civic_warehouse.errors import USER_ERRORS

CATEGORIES = {
    "loading_crashes": "crashes during loading",
    "hostile_servers": "hostile servers",
    "bad_records": "bad records",
    "catalog_injection": "catalog injection",
    "bi_role": "BI role",
}


class Lost(AssertionError):
    """The attack got through: the message says what was lost."""


@dataclass
class Target:
    """What the attacks run against: a warehouse database (owner's URL), a scratch directory."""

    warehouse_url: str
    workdir: Path
    bi_password: str = "only-for-tests"
    bi_limit: str = "2s"


@dataclass(frozen=True)
class Attack:
    category: str
    name: str
    run: Callable[[Target], str]  # how it was survived; raises Lost


def check(condition: bool, what: str) -> None:
    if not condition:
        raise Lost(what)


def one_line_naming(error: BaseException, *names: str) -> str:
    """The error's message, checked to be one line naming each of ``names``, of a known kind."""
    message = str(error)
    check(isinstance(error, USER_ERRORS), f"{type(error).__name__} reached the user: {message}")
    check("\n" not in message, f"a message of several lines: {message!r}")
    for name in names:
        check(name in message, f"the message does not name {name!r}: {message}")
    return message


# -- a hostile HTTP server ------------------------------------------------------------------------

# (status, headers, body, seconds between the body's bytes: 0 sends it at once)
Answer = tuple[int, dict[str, str], bytes, float]


class Script:
    """What the server answers: ``answer(path, params) -> Answer``; every request is kept."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.answer: Callable[[str, dict[str, str]], Answer] = lambda p, q: (404, {}, b"{}", 0)


@contextlib.contextmanager
def scripted_server() -> Iterator[tuple[str, dict[str, Script]]]:
    """One listening socket; whoever uses it plugs a :class:`Script` into ``current["script"]``."""
    current: dict[str, Script] = {}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            script = current["script"]
            parts = urlsplit(self.path)
            params = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
            script.requests.append((parts.path, params))
            status, headers, body, trickle = script.answer(parts.path, params)
            self.send_response(status)
            for name, value in {"Content-Type": "application/json", **headers}.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            try:
                if not trickle:
                    self.wfile.write(body)
                    return
                for byte in body:
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(trickle)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True  # the client gave up on the body, as it should

        def log_message(self, *args: Any) -> None:
            pass

    with listening(Handler) as url:
        yield url, current


@contextlib.contextmanager
def hostile(answer: Callable[[str, dict[str, str]], Answer]) -> Iterator[Script]:
    with scripted_server() as (url, current):
        script = Script(url)
        script.answer = answer
        current["script"] = script
        yield script


def ok(body: Any, trickle: float = 0.0) -> Answer:
    return 200, {}, json.dumps(body).encode(), trickle


def call(n: int) -> dict[str, str]:
    return {
        "event_number": f"E{n}",
        "time_received": "2026-03-02T10:00:00.000",
        ":updated_at": "2026-03-02T15:00:00.000Z",
        ":id": f"row-{n}",
    }


def permit(n: int) -> dict[str, Any]:
    return {"_id": n, "permit_number": f"P{n}", "applied_date": "2026-03-02T10:00:00"}


def quick_client(name: str, **kwargs: Any) -> HttpClient:
    """A client whose budgets are seconds, so an unbounded extract shows within the attack."""
    return HttpClient(
        name, **{"max_total_seconds": 20, "request_seconds": 5, "retry_seconds": 5, **kwargs}
    )


def refused_within(
    source_name: str, read: Callable[[], Any], seconds: float, *expected: str
) -> str:
    """``read`` must fail with one line naming the source and ``expected``, within ``seconds``."""
    started = time.monotonic()
    try:
        read()
    except Exception as error:
        elapsed = time.monotonic() - started
        message = one_line_naming(error, source_name, *expected)
        check(elapsed < seconds, f"stopped only after {elapsed:.1f} s (bound {seconds} s)")
        return f"refused in {elapsed:.1f} s: {message}"
    raise Lost("the extract completed against a server that never ends its data")


def extract_all(source, client: HttpClient, query: Query | None = None) -> list[Page]:
    return list(connector_for(source, client).pages(query or Query()))


def socrata_pages(answer) -> Callable[[Target], str]:
    def run(target: Target) -> str:
        with hostile(answer) as server:
            source = dataclasses.replace(
                get_source("calls_for_service"), base_url=server.url, page_size=3
            )
            return refused_within(
                source.name,
                lambda: extract_all(source, quick_client(source.name)),
                10,
            )

    return run


def _socrata_ignores_offset(path: str, params: dict[str, str]) -> Answer:
    if params.get("$select") == "count(*)":
        return ok([{"count": "7300000"}])
    return ok([call(1), call(2), call(3)])  # whatever $offset says


def _socrata_serves_more_than_counted(path: str, params: dict[str, str]) -> Answer:
    if params.get("$select") == "count(*)":
        return ok([{"count": "4"}])
    offset = int(params["$offset"])
    return ok([call(offset + i) for i in range(3)])


def _ckan_ignores_offset(target: Target) -> str:
    def answer(path: str, params: dict[str, str]) -> Answer:
        records = [permit(1), permit(2), permit(3)]
        return ok({"success": True, "result": {"records": records, "total": 1_000_000}})

    with hostile(answer) as server:
        source = dataclasses.replace(
            get_source("building_permits"), base_url=server.url, page_size=3
        )
        return refused_within(
            source.name, lambda: extract_all(source, quick_client(source.name)), 10, "offset"
        )


def arcgis_layer_ignoring_result_offset(path: str, params: dict[str, str]) -> Answer:
    """A paging ArcGIS layer that serves its first page again whatever ``resultOffset`` says."""
    if path.endswith("/query"):
        features = [{"attributes": {"OBJECTID": i, "NAME": f"N{i}"}} for i in (1, 2)]
        return ok({"features": features, "exceededTransferLimit": True})
    return ok(
        {
            "objectIdField": "OBJECTID",
            "maxRecordCount": 2,
            "advancedQueryCapabilities": {"supportsPagination": True},
            "fields": [{"name": "OBJECTID", "type": "esriFieldTypeOID"}, {"name": "NAME"}],
        }
    )


def _arcgis_ignores_result_offset(target: Target) -> str:
    with hostile(arcgis_layer_ignoring_result_offset) as server:
        source = dataclasses.replace(
            get_source("neighborhoods"), base_url=server.url, dataset="Layer/FeatureServer/0"
        )
        return refused_within(
            source.name, lambda: extract_all(source, quick_client(source.name)), 10, "resultOffset"
        )


def _arcgis_injects_through_its_metadata(target: Target) -> str:
    metadata = {
        "objectIdField": "OBJECTID > 0 OR 1=1 --",
        "advancedQueryCapabilities": {"supportsPagination": True},
        "fields": [{"name": "OBJECTID", "type": "esriFieldTypeOID"}],
    }
    with hostile(lambda p, q: ok(metadata)) as server:
        source = dataclasses.replace(
            get_source("neighborhoods"), base_url=server.url, dataset="Layer/FeatureServer/0"
        )
        outcome = refused_within(
            source.name,
            lambda: extract_all(source, quick_client(source.name)),
            10,
            "objectIdField",
        )
        check(not any(p.endswith("/query") for p, _ in server.requests), "queried the layer")
        return outcome


def _open311_repeats_page_one(target: Target) -> str:
    size = 2

    def answer(path: str, params: dict[str, str]) -> Answer:
        page = int(params.get("page", "1"))
        first = page if page < 3 else 1  # page 3 onwards: page 1 again
        start = (first - 1) * size
        return ok(
            [
                {
                    "service_request_id": f"R{start + i}",
                    "requested_datetime": "2026-03-02T10:00:00Z",
                }
                for i in range(size)
            ]
        )

    with hostile(answer) as server:
        source = dataclasses.replace(
            get_source("service_requests"), base_url=server.url, page_size=size
        )
        window = Window(datetime(2026, 3, 2, tzinfo=UTC), datetime(2026, 3, 3, tzinfo=UTC))
        return refused_within(
            source.name,
            lambda: extract_all(source, quick_client(source.name), Query(events=window)),
            10,
            "repeats page 1",
        )


def _endless_pages(target: Target) -> str:
    def answer(path: str, params: dict[str, str]) -> Answer:
        if params.get("$select") == "count(*)":
            return ok([{"count": "40000000"}])
        offset = int(params["$offset"])
        return ok([call(offset + i) for i in range(3)])  # new rows on every page, never short

    with environment(CW_MAX_PAGES="50"), hostile(answer) as server:
        source = dataclasses.replace(
            get_source("calls_for_service"), base_url=server.url, page_size=3
        )
        return refused_within(
            source.name,
            lambda: extract_all(source, quick_client(source.name)),
            20,
            "CW_MAX_PAGES",
        )


def _trickling_body(target: Target) -> str:
    with hostile(lambda p, q: ok([call(i) for i in range(3)], trickle=0.2)) as server:
        client = quick_client("calls_for_service", request_seconds=1.5)
        return refused_within(
            "calls_for_service",
            lambda: client.get_json(f"{server.url}/resource/x.json", {}),
            4,
            "CW_REQUEST_SECONDS",
        )


def _endless_429(retry_after: str) -> Callable[[Target], str]:
    def run(target: Target) -> str:
        answer = (429, {"Retry-After": retry_after}, b'{"message":"Too many requests"}', 0)
        with hostile(lambda p, q: answer) as server:
            client = quick_client("calls_for_service", max_total_seconds=2.5)
            return refused_within(
                "calls_for_service",
                lambda: client.get_json(f"{server.url}/resource/x.json", {}),
                4,
                "HTTP 429",
            )

    return run


def _bodies_cut_off(target: Target) -> str:
    answer = (200, {}, b'[{"event_number": "E1"}, {"event_', 0)
    with hostile(lambda p, q: answer) as server:
        client = quick_client("calls_for_service", backoff_base=0.01)
        return refused_within(
            "calls_for_service",
            lambda: client.get_json(f"{server.url}/resource/x.json", {}),
            5,
            "truncated or invalid JSON",
        )


def _redirect_to_a_file(target: Target) -> str:
    answer = (302, {"Location": "file:///etc/passwd"}, b"", 0)
    with hostile(lambda p, q: answer) as server:
        client = quick_client("calls_for_service")
        return refused_within(
            "calls_for_service",
            lambda: client.get_json(f"{server.url}/resource/x.json", {}),
            5,
            "not a requestable URL",
        )


def _token_redirected_elsewhere(target: Target) -> str:
    """A redirect to another host must not carry the app token there."""
    with hostile(lambda p, q: ok([])) as elsewhere:
        answer = (302, {"Location": f"{elsewhere.url}/steal"}, b"", 0)
        with hostile(lambda p, q: answer) as server:
            client = quick_client("calls_for_service")
            outcome = refused_within(
                "calls_for_service",
                lambda: client.get_json(
                    f"{server.url}/resource/x.json", {}, {"X-App-Token": "secret-token"}
                ),
                5,
                "HTTP 302",
            )
        check(not elsewhere.requests, "the request (and its token) followed the redirect")
    return outcome


@contextlib.contextmanager
def environment(**variables: str) -> Iterator[None]:
    before = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


HOSTILE_SERVERS = [
    Attack("hostile_servers", "socrata ignores $offset", socrata_pages(_socrata_ignores_offset)),
    Attack(
        "hostile_servers",
        "socrata serves more rows than it counts",
        socrata_pages(_socrata_serves_more_than_counted),
    ),
    Attack("hostile_servers", "ckan ignores offset", _ckan_ignores_offset),
    Attack("hostile_servers", "arcgis ignores resultOffset", _arcgis_ignores_result_offset),
    Attack("hostile_servers", "open311 repeats page 1", _open311_repeats_page_one),
    Attack("hostile_servers", "new pages without end", _endless_pages),
    Attack("hostile_servers", "a body trickled a byte at a time", _trickling_body),
    Attack("hostile_servers", "429 without end", _endless_429("1")),
    Attack("hostile_servers", "Retry-After of a day", _endless_429("86400")),
    Attack("hostile_servers", "bodies cut off", _bodies_cut_off),
    Attack(
        "hostile_servers",
        "arcgis objectIdField with a where clause",
        _arcgis_injects_through_its_metadata,
    ),
    Attack("hostile_servers", "a redirect to file://", _redirect_to_a_file),
    Attack(
        "hostile_servers", "a redirect taking the app token elsewhere", _token_redirected_elsewhere
    ),
]


# -- bad records ----------------------------------------------------------------------------------

SCOPE = Query(
    events=Window(datetime(2026, 5, 1, 4, tzinfo=UTC), datetime(2026, 5, 2, 4, tzinfo=UTC))
)


def record(number: object, updated: object = "2026-05-01T12:00:00.000Z", **fields: Any) -> bytes:
    return json.dumps(
        {"event_number": number, ":updated_at": updated, "priority": "3", **fields}
    ).encode()


def served_page(*elements: bytes, number: int = 1) -> Page:
    """A page exactly as a server sent it: the elements' bytes, one array."""
    return Page(number, f"u{number}", JsonArray(b"[" + b",\n".join(elements) + b"]", len(elements)))


def _reset_raw(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("drop schema if exists raw cascade")


def landed_and_rejected(url: str) -> tuple[list[str], list[int]]:
    with psycopg.connect(url) as conn:
        keys = [
            k for (k,) in conn.execute("select record_key from raw.calls_for_service order by 1")
        ]
        positions = [
            p for (p,) in conn.execute("select position from raw._rejects order by request_page, 1")
        ]
    return keys, positions


def bad_record(bad: bytes, *, lands: bool = False) -> Callable[[Target], str]:
    """Loads [A, bad, C]: A and C must land, and the bad one must land or be rejected, not lost."""

    def run(target: Target) -> str:
        _reset_raw(target.warehouse_url)
        source = get_source("calls_for_service")
        page = served_page(record("A"), bad, record("C"))
        with psycopg.connect(target.warehouse_url) as conn:
            result = loader.load(conn, source, SCOPE, [page], connector_for(source).updated_at)
        keys, rejected = landed_and_rejected(target.warehouse_url)
        check({"A", "C"} <= set(keys), f"good records lost beside a bad one: landed {keys}")
        if lands:
            check(len(keys) == 3 and not rejected, f"landed {keys}, rejected {rejected}")
            return "landed: PostgreSQL stores it"
        check(rejected == [1], f"the bad record is not in raw._rejects at its position: {rejected}")
        check(result.rejected == 1 and len(keys) == 2, f"landed {keys}: {result}")
        return "rejected with its position and reason; the others landed"

    return run


def _key_repeated(target: Target) -> str:
    _reset_raw(target.warehouse_url)
    source = get_source("calls_for_service")
    older = record("A", updated="2026-05-01T09:00:00Z", disposition_code="ADV")
    newer = record("A", updated="2026-05-01T18:00:00Z", disposition_code="ARR")
    with psycopg.connect(target.warehouse_url) as conn:
        loader.load(
            conn,
            source,
            SCOPE,
            [served_page(record("B"), older, number=1), served_page(newer, number=2)],
            connector_for(source).updated_at,
        )
        landed = conn.execute(
            "select record->>'disposition_code' from raw.calls_for_service where record_key = 'A'"
        ).fetchone()
    keys, rejected = landed_and_rejected(target.warehouse_url)
    check(keys == ["A", "B"], f"landed {keys}")
    check(landed == ("ARR",), f"the version kept is not the latest: {landed}")
    check(rejected == [1], f"the replaced version is not among the rejects: {rejected}")
    return "the latest version landed, the replaced one rejected from where it was served"


DEEP = b'{"event_number": "B", "nested": ' + b"[" * 10_000 + b"]" * 10_000 + b"}"
DEEPER = b'{"event_number": "B", "nested": ' + b"[" * 200_000 + b"]" * 200_000 + b"}"

BAD_RECORDS = [
    Attack("bad_records", "NUL in a string", bad_record(record("B", note="nul \u0000 here"))),
    Attack(
        "bad_records",
        "bytes that are not UTF-8",
        bad_record(b'{"event_number": "B", "note": "caf\xe9"}'),
    ),
    Attack("bad_records", "lone surrogate", bad_record(b'{"event_number": "B", "n": "\\ud800"}')),
    Attack("bad_records", "nesting 10,000 deep", bad_record(DEEP, lands=True)),
    Attack("bad_records", "nesting 200,000 deep", bad_record(DEEPER)),
    Attack("bad_records", "numeric updated_at", bad_record(record("B", updated=1714564800))),
    Attack("bad_records", "blank key", bad_record(record("   "))),
    Attack("bad_records", "empty key", bad_record(record(""))),
    Attack("bad_records", "missing key", bad_record(b'{"priority": "3"}')),
    Attack("bad_records", "list as key", bad_record(record(["A", "B"]))),
    Attack("bad_records", "object as key", bad_record(record({"id": 1}))),
    Attack("bad_records", "boolean as key", bad_record(record(True))),
    Attack("bad_records", "a record that is no object", bad_record(b'"just text"')),
    Attack("bad_records", "key repeated in one load", _key_repeated),
]


# -- crashes during loading -----------------------------------------------------------------------


def committed(url: str) -> tuple[int, int, list[str]]:
    """Rows in the raw table, batches logged, staging schemas left."""
    with psycopg.connect(url) as conn:
        rows = 0
        if conn.execute("select to_regclass('raw.calls_for_service')").fetchone()[0]:
            rows = conn.execute("select count(*) from raw.calls_for_service").fetchone()[0]
        batches = 0
        if conn.execute("select to_regclass('raw._batches')").fetchone()[0]:
            batches = conn.execute("select count(*) from raw._batches").fetchone()[0]
        return rows, batches, page_feed.staging_schemas(conn)


def _warehouse_dies_mid_load(target: Target) -> str:
    _reset_raw(target.warehouse_url)
    source = get_source("calls_for_service")
    url = target.warehouse_url

    def pages() -> Iterator[Page]:
        yield served_page(record("A"), number=1)
        with psycopg.connect(url, autocommit=True) as other:
            other.execute(
                "select pg_terminate_backend(pid) from pg_stat_activity"
                " where datname = current_database() and pid <> pg_backend_pid()"
                " and usename = current_user and backend_type = 'client backend'"
            )
        yield served_page(record("B"), number=2)

    try:
        with psycopg.connect(url) as conn:
            loader.load(conn, source, SCOPE, pages(), connector_for(source).updated_at)
    except Exception as error:
        message = one_line_naming(error, source.name, "nothing of this load was committed")
    else:
        raise Lost("the load reported success although its connection was killed")
    check(committed(url)[:2] == (0, 0), f"a partial load was committed: {committed(url)}")
    return f"refused, nothing committed: {message}"


def _source_fails_mid_load(target: Target) -> str:
    """Page 1 arrives, then the server cuts every body off: the load commits nothing, and a
    re-run against a healthy server lands everything once."""
    _reset_raw(target.warehouse_url)
    healthy = {"on": False}

    def answer(path: str, params: dict[str, str]) -> Answer:
        if params.get("$select") == "count(*)":
            return ok([{"count": "5"}])
        offset = int(params["$offset"])
        if offset and not healthy["on"]:
            return 200, {}, b'[{"event_number": "E', 0
        return ok([call(offset + i) for i in range(min(3, 5 - offset))])

    source = get_source("calls_for_service")
    with hostile(answer) as server:
        local = dataclasses.replace(source, base_url=server.url, page_size=3)

        def load() -> loader.LoadResult:
            connector = connector_for(local, quick_client(local.name, backoff_base=0.01))
            with psycopg.connect(target.warehouse_url) as conn:
                return loader.load(conn, local, SCOPE, connector.pages(SCOPE), connector.updated_at)

        outcome = refused_within(local.name, load, 10, "truncated")
        check(committed(target.warehouse_url) == (0, 0, []), "a partial load was committed")
        healthy["on"] = True
        load()
        first = fingerprint(target.warehouse_url)
        load()
        check(fingerprint(target.warehouse_url) == first, "re-running changed the warehouse")
    check(first[0] == 5, f"the re-run landed {first[0]} of 5 records")
    return f"{outcome}; the re-run landed all 5 once, a second re-run changed nothing"


def fingerprint(url: str) -> tuple[int, str]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "select count(*), md5(coalesce(string_agg(record::text, '|' order by record_key), ''))"
            " from raw.calls_for_service"
        ).fetchone()


def _byte_cap(target: Target) -> str:
    _reset_raw(target.warehouse_url)
    source = get_source("calls_for_service")
    pages = [
        Page(n, f"u{n}", [json.loads(record(f"E{n * 100 + i}")) for i in range(10)])
        for n in range(1, 50)
    ]
    with environment(CW_MAX_STAGED_BYTES="5000"):
        outcome = refused_within(
            source.name,
            lambda: _load_pages(target, source, pages),
            20,
            "CW_MAX_STAGED_BYTES",
        )
    check(committed(target.warehouse_url) == (0, 0, []), "a partial load was committed")
    return outcome


def _load_pages(target: Target, source, pages: list[Page]) -> None:
    with psycopg.connect(target.warehouse_url) as conn:
        loader.load(conn, source, SCOPE, pages, connector_for(source).updated_at)


def _extract_killed(target: Target) -> str:
    """``python -m civic_warehouse extract`` killed (SIGKILL) while its second page is on its way:
    nothing is committed; the next run lands every record once, and one more changes nothing."""
    _reset_raw(target.warehouse_url)
    size = get_source("calls_for_service").page_size
    release = threading.Event()

    def answer(path: str, params: dict[str, str]) -> Answer:
        if params.get("$select") == "count(*)":
            return ok([{"count": str(size + 1)}])
        offset = int(params["$offset"])
        if offset and not release.is_set():
            release.wait(60)  # the extract is killed meanwhile
        return ok([call(offset + i) for i in range(size if offset == 0 else 1)])

    with hostile(answer) as server:

        def extract() -> subprocess.Popen:
            return subprocess.Popen(
                [sys.executable, "-m", "civic_warehouse", "extract", "calls_for_service",
                 "--since", "2026-03-02", "--until", "2026-03-03"],
                env={**os.environ, "WAREHOUSE_URL": target.warehouse_url,
                     "CITY_SIMULATOR_URL": server.url,
                     "PYTHONPATH": os.pathsep.join(str(settings.PROJECT_ROOT / d)
                                                   for d in ("plugins", "simulator"))},
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )  # fmt: skip

        killed = extract()
        asked = wait_for(lambda: any(q.get("$offset") == str(size) for _, q in server.requests), 60)
        time.sleep(1)  # the first page is in the load's transaction by now
        killed.kill()
        killed.communicate()
        release.set()
        check(asked, "the extract never asked for its second page")
        rows, batches, _ = committed(target.warehouse_url)
        check((rows, batches) == (0, 0), f"a killed load committed {rows} rows, {batches} batches")
        fingerprints = []
        for _ in range(2):
            rerun = extract()
            _out, err = rerun.communicate(timeout=300)
            check(rerun.returncode == 0 and "Traceback" not in err, f"the re-run failed: {err}")
            fingerprints.append(fingerprint(target.warehouse_url))
    check(fingerprints[0][0] == size + 1, f"the re-run landed {fingerprints[0][0]} of {size + 1}")
    check(fingerprints[0] == fingerprints[1], "re-running changed the warehouse")
    check(committed(target.warehouse_url)[2] == [], "the killed load's staging schema was left")
    return f"nothing committed; the re-run landed all {size + 1} once, another changed nothing"


LOADING_CRASHES = [
    Attack("loading_crashes", "the warehouse connection killed mid-load", _warehouse_dies_mid_load),
    Attack("loading_crashes", "the source failing mid-load, then re-run", _source_fails_mid_load),
    Attack("loading_crashes", "pages past the staged-bytes cap", _byte_cap),
    Attack("loading_crashes", "the extract process killed mid-load, then re-run", _extract_killed),
]


# -- catalog injection ----------------------------------------------------------------------------

VALID_SOURCE = {
    "name": "calls",
    "description": "calls for service",
    "owner": "Emergency Communications",
    "protocol": "socrata",
    "base_url": "${CITY_TEST_URL:-http://127.0.0.1:8780}",
    "dataset": "abcd-1234",
    "business_key": ["event_number"],
    "event_time_field": "time_received",
    "timezone": "America/New_York",
    "raw_table": "calls",
}
ARCGIS = {
    "protocol": "arcgis",
    "base_url": "https://maps.example.gov/arcgis/rest/services",
    "dataset": "PublicWorks/ServiceRequests/MapServer/0",
    "business_key": ["SERVNO"],
    "event_time_field": "ADDDTTM",
}
OPEN311 = {
    "protocol": "open311",
    "base_url": "https://311.example.gov/open311/v2",
    "dataset": "requests",
    "business_key": ["service_request_id"],
    "event_time_field": "requested_datetime",
}
CKAN = {
    "protocol": "ckan",
    "base_url": "https://data.example.gov",
    "dataset": "01eb7c51-8e12-5f19-856e-271c385758f9",
    "business_key": ["permit_number"],
    "event_time_field": "applied_date",
}

# Each: the changes to a valid socrata file, and the field the error must name.
CATALOG_ATTACKS = {
    # SoQL smuggled through field names into $where / $order / SELECT
    "soql in event_time_field": (
        {"event_time_field": "time_received > '0' OR 1=1 --"},
        "event_time_field",
    ),
    "soql order injection": ({"event_time_field": "time_received, :id"}, "event_time_field"),
    "soql in updated_field": ({"updated_field": ":updated_at) OR (1=1"}, "updated_field"),
    "unknown system field": ({"updated_field": ":deleted"}, "updated_field"),
    "uppercase socrata field": ({"event_time_field": "Time_Received"}, "event_time_field"),
    "soql in business_key": ({"business_key": ["event_number", "x) OR (1=1"]}, "business_key"),
    "ckan sort injection": ({**CKAN, "business_key": ["permit_number desc, x"]}, "business_key"),
    "socrata system field on ckan": ({**CKAN, "updated_field": ":updated_at"}, "updated_field"),
    "arcgis where injection": (
        {**ARCGIS, "event_time_field": "ADDDTTM > 0 OR 1=1"},
        "event_time_field",
    ),
    # query parameters and paths through dataset
    "socrata dataset with query": ({"dataset": "x.json?$where=1=1&x="}, "dataset"),
    "socrata dataset with traversal": ({"dataset": "../../etc/passwd"}, "dataset"),
    "socrata dataset too long": ({"dataset": "abcd-12345"}, "dataset"),
    "arcgis traversal": ({**ARCGIS, "dataset": "../../etc/passwd"}, "dataset"),
    "arcgis dot segments": ({**ARCGIS, "dataset": "a/../b/FeatureServer/0"}, "dataset"),
    "arcgis query": ({**ARCGIS, "dataset": "P/N/FeatureServer/0?where=1=1"}, "dataset"),
    "arcgis fragment": ({**ARCGIS, "dataset": "P/N/FeatureServer/0#x"}, "dataset"),
    "arcgis percent": ({**ARCGIS, "dataset": "P/%2e%2e/FeatureServer/0"}, "dataset"),
    "arcgis wrong server": ({**ARCGIS, "dataset": "P/N/GPServer/0"}, "dataset"),
    "open311 query": ({**OPEN311, "dataset": "requests.json?jurisdiction_id=x&"}, "dataset"),
    "open311 traversal": ({**OPEN311, "dataset": "../requests"}, "dataset"),
    "ckan parameters": ({**CKAN, "dataset": "x&sql=select"}, "dataset"),
    # base_url: only plain http(s)
    "file url": ({"base_url": "file:///etc/passwd"}, "base_url"),
    "ftp url": ({"base_url": "ftp://data.example.gov"}, "base_url"),
    "gopher url": ({"base_url": "gopher://data.example.gov"}, "base_url"),
    "scheme-less host": ({"base_url": "data.example.gov"}, "base_url"),
    "scheme-less host and port": ({"base_url": "127.0.0.1:8780"}, "base_url"),
    "single slash": ({"base_url": "http:/data.example.gov"}, "base_url"),
    "credentials": ({"base_url": "https://user:pw@data.example.gov"}, "base_url"),
    "query string": ({"base_url": "https://data.example.gov/?$where=1=1"}, "base_url"),
    "fragment": ({"base_url": "https://data.example.gov/#x"}, "base_url"),
    "path traversal": ({"base_url": "https://data.example.gov/../../etc"}, "base_url"),
    "encoded path": ({"base_url": "https://data.example.gov/%2e%2e/x"}, "base_url"),
    "bad port": ({"base_url": "https://data.example.gov:99999"}, "base_url"),
    "no host": ({"base_url": "https:///resource"}, "base_url"),
    "spaces": ({"base_url": "https://data.example.gov/a b"}, "base_url"),
    # variables: only CITY_<SYSTEM>_URL, only at the start, default itself a URL
    "any variable": ({"base_url": "${HOME}"}, "base_url"),
    "secret url variable": ({"base_url": "${WAREHOUSE_URL}"}, "base_url"),
    "variable in path": ({"base_url": "https://evil.example/${AWS_SECRET_ACCESS_KEY}"}, "base_url"),
    "allowed variable in path": (
        {"base_url": "https://evil.example/${CITY_SIMULATOR_URL}"},
        "base_url",
    ),
    "two variables": ({"base_url": "${CITY_SIMULATOR_URL}${CITY_OTHER_URL}"}, "base_url"),
    "query after variable": ({"base_url": "${CITY_SIMULATOR_URL}?x=1"}, "base_url"),
    "traversal after variable": ({"base_url": "${CITY_SIMULATOR_URL}/../x"}, "base_url"),
    "file default": ({"base_url": "${CITY_SIMULATOR_URL:-file:///etc/passwd}"}, "base_url"),
    "scheme-less default": ({"base_url": "${CITY_SIMULATOR_URL:-127.0.0.1:8780}"}, "base_url"),
    "empty default": ({"base_url": "${CITY_SIMULATOR_URL:-}"}, "base_url"),
    "lowercase variable": ({"base_url": "${city_simulator_url}"}, "base_url"),
    "bare dollar": ({"base_url": "$CITY_SIMULATOR_URL"}, "base_url"),
    # tokens: only Socrata token names, only on socrata sources
    "token from url variable": ({"app_token_env": "WAREHOUSE_URL"}, "app_token_env"),
    "token from cloud secret": ({"app_token_env": "AWS_SECRET_ACCESS_KEY"}, "app_token_env"),
    "token from other app": ({"app_token_env": "SLACK_APP_TOKEN"}, "app_token_env"),
    "token on ckan": ({**CKAN, "app_token_env": "SOCRATA_APP_TOKEN"}, "app_token_env"),
    # identifiers, bounds, schedules, durations, zones
    "raw_table injection": ({"raw_table": "calls; drop table x"}, "raw_table"),
    "raw_table too long": ({"raw_table": "c" * 64}, "raw_table"),
    "page_size zero": ({"page_size": 0}, "page_size"),
    "page_size huge": ({"page_size": 50_001}, "page_size"),
    "page_size boolean": ({"page_size": True}, "page_size"),
    "open311 page_size": ({**OPEN311, "page_size": 1001}, "page_size"),
    "schedule words": ({"schedule": "every day"}, "schedule"),
    "schedule out of range": ({"schedule": "61 * * * *"}, "schedule"),
    "schedule with seconds": ({"schedule": "0 0 0 * * *"}, "schedule"),
    "schedule once": ({"schedule": "@once"}, "schedule"),
    "lookback words": ({"updated_field": ":updated_at", "lookback": "forever"}, "lookback"),
    "lookback overflow": ({"updated_field": ":updated_at", "lookback": "99999999999d"}, "lookback"),
    "lookback beyond a year": ({"updated_field": ":updated_at", "lookback": "400d"}, "lookback"),
    "lookback without updated_field": ({"lookback": "2d"}, "lookback"),
    "timezone path": ({"timezone": "../../etc/passwd"}, "timezone"),
    "api_version 4": ({"api_version": 4}, "api_version"),
    "api_version on arcgis": ({**ARCGIS, "api_version": 3}, "api_version"),
    "control characters": ({"owner": "Ops\x1b[31m"}, "owner"),
    "empty description": ({"description": "  "}, "description"),
    "number as text": ({"dataset": 1234}, "dataset"),
}


def write_source(directory: Path, **changes: Any) -> Path:
    """A source file: the valid one with ``changes`` (a value of None leaves the field out)."""
    document = {**VALID_SOURCE, **changes}
    document = {k: v for k, v in document.items() if v is not None}
    path = directory / f"{document.get('name', 'calls')}.yml"
    path.write_text(yaml.safe_dump(document))
    return path


def catalog_attack(changes: dict[str, Any], field: str) -> Callable[[Target], str]:
    def run(target: Target) -> str:
        with tempfile.TemporaryDirectory(dir=target.workdir) as directory:
            path = write_source(Path(directory), **changes)
            try:
                load_source(path)
            except CatalogError as error:
                message = one_line_naming(error, str(path), f"field {field!r}: expected ")
                check(
                    "validation error" not in message.lower()
                    and not isinstance(error.__cause__, ValidationError),
                    f"pydantic's error reached the user: {message}",
                )
                return f"refused when the file is loaded: {message.split(': ', 1)[1]}"
        raise Lost(f"a source file with {changes} was accepted")

    return run


CATALOG_INJECTION = [
    Attack("catalog_injection", name, catalog_attack(changes, field))
    for name, (changes, field) in CATALOG_ATTACKS.items()
]


# -- the BI role ----------------------------------------------------------------------------------


@contextlib.contextmanager
def bi_session(target: Target) -> Iterator[tuple[str, access.Guard]]:
    """bi_reader's URL on a warehouse with an open table, the guard running as the owner."""
    with psycopg.connect(target.warehouse_url, autocommit=True) as conn:
        conn.execute("create schema if not exists open")
        conn.execute("create table if not exists open.fct_example as select 1 as x")
        access.ensure_bi_role(conn, password=target.bi_password, statement_timeout=target.bi_limit)
    parts = warehouse.ConnectionParts.from_url(target.warehouse_url)
    url = warehouse.ConnectionParts(
        parts.host, parts.port, access.BI_ROLE, target.bi_password, parts.dbname
    ).url()
    with access.Guard(
        target.warehouse_url, statement_timeout=target.bi_limit, password=target.bi_password
    ) as guard:
        yield url, guard


def lifted(url: str) -> psycopg.Connection:
    """A bi_reader session that has lifted every limit a session can lift."""
    conn = psycopg.connect(url, autocommit=True)
    conn.execute("set default_transaction_read_only = off")
    conn.execute("set statement_timeout = 0")
    return conn


def wait_for(condition: Callable[[], bool], seconds: float = 6.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


def _long_query(target: Target) -> str:
    limit = access.milliseconds(target.bi_limit) / 1000
    with bi_session(target) as (url, _guard), psycopg.connect(url, autocommit=True) as conn:
        conn.execute("set statement_timeout = 0")
        started = time.monotonic()
        try:
            conn.execute("select pg_sleep(%s)", [limit * 10])
        except psycopg.errors.QueryCanceled:
            elapsed = time.monotonic() - started
            check(elapsed < limit + 2, f"cancelled only after {elapsed:.1f} s (limit {limit} s)")
            return f"cancelled by the guard after {elapsed:.1f} s (limit {target.bi_limit})"
    raise Lost(f"a query ran {limit * 10} s past a limit of {target.bi_limit}")


def _idle_transaction(target: Target) -> str:
    limit = access.milliseconds(target.bi_limit) / 1000
    with bi_session(target) as (url, _guard), psycopg.connect(url) as conn:
        conn.execute("select 1")  # opens a transaction, then holds it idle
        time.sleep(limit + 1.5)
        try:
            conn.execute("select 1")
        except psycopg.OperationalError:
            return "ended by the guard past the limit"
    raise Lost("a transaction stayed open past the limit")


def _settings_undone(statement: str) -> Callable[[Target], str]:
    def run(target: Target) -> str:
        with bi_session(target) as (url, _guard):
            database = warehouse.ConnectionParts.from_url(url).dbname
            with lifted(url) as conn:
                conn.execute(statement.format(database=f'"{database}"'))

            def restored() -> bool:
                with psycopg.connect(url) as conn:
                    return conn.execute(
                        "select current_setting('statement_timeout'),"
                        " current_setting('default_transaction_read_only')"
                    ).fetchone() == (target.bi_limit, "on")

            check(wait_for(restored), "the role's own settings were not undone")
        return "undone by the guard"

    return run


def _password_undone(target: Target) -> str:
    with bi_session(target) as (url, guard):
        with lifted(url) as conn:
            conn.execute("alter role bi_reader password 'chosen-by-bi-reader'")
        check(
            wait_for(lambda: "restored its password" in guard.actions),
            "the password bi_reader chose stayed",
        )
        psycopg.connect(url).close()
    return "restored by the guard"


def _refused(statement: str) -> Callable[[Target], str]:
    def run(target: Target) -> str:
        with bi_session(target) as (url, _guard), lifted(url) as conn:
            try:
                conn.execute(statement)
            except psycopg.errors.InsufficientPrivilege as error:
                return f"refused: {error.diag.message_primary}"
        raise Lost(f"bi_reader ran {statement!r} after lifting read-only")

    return run


def _temp_file_limit(target: Target) -> str:
    with psycopg.connect(target.warehouse_url) as conn:
        if not access._is_superuser(conn):
            return "skipped: only a superuser owner can fix temp_file_limit"
    with bi_session(target) as (url, _guard), lifted(url) as conn:
        for statement in (
            "set temp_file_limit = -1",
            "alter role bi_reader set temp_file_limit = -1",
        ):
            try:
                conn.execute(statement)
            except psycopg.errors.InsufficientPrivilege:
                continue
            raise Lost(f"bi_reader ran {statement!r}")
        shown = conn.execute("show temp_file_limit").fetchone()[0]
        check(shown == access.TEMP_FILE_LIMIT, f"temp_file_limit is {shown}")
    return f"refused: a superuser parameter, held at {access.TEMP_FILE_LIMIT}"


def _other_database(database: str) -> Callable[[Target], str]:
    def run(target: Target) -> str:
        with bi_session(target) as (url, _guard):
            other = warehouse.ConnectionParts.from_url(url).url(database)
            try:
                psycopg.connect(other, connect_timeout=5).close()
            except psycopg.OperationalError as error:
                check("permission denied for database" in str(error), str(error))
                return "refused: CONNECT revoked"
        raise Lost(f"bi_reader connected to {database}")

    return run


def _database_listing(target: Target) -> str:
    """pg_database stays readable: Superset lists a PostgreSQL server's catalogs with the query
    below (and psql's \\l reads it too), so revoking it would break BI tools. Every other database
    of the owner's refuses bi_reader's connection, so a name is all it learns (docs/security.md)."""
    with bi_session(target) as (url, _guard), psycopg.connect(url) as conn:
        database = conn.info.dbname
        listed = [
            name
            for (name,) in conn.execute(
                "SELECT datname FROM pg_database WHERE datistemplate = false"
            )
        ]
        connectable = [
            name
            for (name,) in conn.execute(
                "select datname from pg_database where datallowconn and datname <> current_database()"
                " and datdba = (select datdba from pg_database where datname = current_database())"
                " and has_database_privilege(datname, 'CONNECT')"
            )
        ]
    check(database in listed, f"Superset's catalog query does not list {database}")
    check(not connectable, f"bi_reader may connect to {connectable}")
    return f"{len(listed)} names listed; none of the owner's other databases lets bi_reader connect"


BI_SETTINGS = [
    "alter role bi_reader set statement_timeout = 0",
    "alter role bi_reader set default_transaction_read_only = off",
    "alter role bi_reader reset all",
    "alter role bi_reader in database {database} set statement_timeout = 0",
    "alter role bi_reader in database {database} set default_transaction_read_only = off",
]
BI_WRITES = [
    "create temporary table mine (x int)",
    "create table public.mine (x int)",
    "create table open.mine (x int)",
    "create schema mine",
    "create function pg_temp.mine() returns int language sql as 'select 1'",
    "create function public.mine() returns int language sql as 'select 1'",
    "create function open.mine() returns int language sql as 'select 1'",
    "select lo_create(0)",
    "select lo_creat(-1)",
    "select lo_from_bytea(0, 'x')",
    "select lo_import('/etc/hostname')",
    "insert into open.fct_example select * from open.fct_example",
]
OTHER_DATABASES = ["postgres", "template1"]

BI_ROLE_ATTACKS = [
    Attack("bi_role", "SET statement_timeout = 0, then a long query", _long_query),
    Attack("bi_role", "a transaction left open", _idle_transaction),
    *(Attack("bi_role", statement, _settings_undone(statement)) for statement in BI_SETTINGS),
    Attack("bi_role", "a password of its own", _password_undone),
    *(Attack("bi_role", statement, _refused(statement)) for statement in BI_WRITES),
    Attack("bi_role", "temp_file_limit = -1", _temp_file_limit),
    *(Attack("bi_role", f"connect to {name}", _other_database(name)) for name in OTHER_DATABASES),
    Attack("bi_role", "list the server's databases", _database_listing),
]

ATTACKS = [*LOADING_CRASHES, *HOSTILE_SERVERS, *BAD_RECORDS, *CATALOG_INJECTION, *BI_ROLE_ATTACKS]
