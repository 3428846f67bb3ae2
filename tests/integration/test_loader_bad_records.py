"""One bad record never fails a load: it is rejected with what was wrong, and the rest lands.

Each kind of bad record the city APIs have served (or could): text PostgreSQL cannot store, bytes
that are not UTF-8, lone surrogates, nesting deeper than any reader, keys that are not keys, times
that are not times, a key served twice. A load fails only when nothing can be read at all (a body
that is no JSON array) or the warehouse itself fails, and then with one line naming the source.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlsplit

import psycopg
import pytest
from attack_scenarios import served_page as served
from fake_http import listening

from civic_warehouse import loader
from civic_warehouse.catalog import get_source
from civic_warehouse.connectors import Page, Query, Window, connector_for
from civic_warehouse.connectors.base import JsonArray
from civic_warehouse.connectors.http import SourceError
from civic_warehouse.errors import USER_ERRORS

pytestmark = pytest.mark.integration

SCOPE = Query(
    events=Window(datetime(2026, 5, 1, 4, tzinfo=UTC), datetime(2026, 5, 2, 4, tzinfo=UTC))
)
SOURCE = get_source("calls_for_service")
UPDATED_AT = connector_for(SOURCE).updated_at


def call(number: object, updated: object = "2026-05-01T12:00:00.000Z", **fields) -> dict:
    return {"event_number": number, ":updated_at": updated, "priority": "3", **fields}


def text(record: dict) -> bytes:
    return json.dumps(record).encode()


@pytest.fixture
def conn(clean_warehouse):
    with psycopg.connect(clean_warehouse) as connection:
        yield connection


@pytest.fixture(params=["0", "2"], ids=["in the transaction", "parsed ahead"])
def sessions(request, monkeypatch):
    monkeypatch.setenv("CW_LOAD_PARSE_SESSIONS", request.param)


def keys(conn) -> list[str]:
    return [k for (k,) in conn.execute("select record_key from raw.calls_for_service order by 1")]


def rejects(conn) -> list[tuple[int, int, str, str]]:
    return conn.execute(
        "select request_page, position, reason, payload from raw._rejects order by 1, 2"
    ).fetchall()


def load(conn, *pages: Page) -> loader.LoadResult:
    return loader.load(conn, SOURCE, SCOPE, list(pages), UPDATED_AT)


# -- text PostgreSQL or Python cannot take -------------------------------------------------------


def test_a_nul_in_a_string_is_rejected_and_the_rest_lands(conn, sessions):
    page = served(text(call("A")), text(call("B", note="nul \u0000 here")), text(call("C")))
    result = load(conn, page)
    assert (result.inserted, result.rejected, result.received) == (2, 1, 3)
    assert keys(conn) == ["A", "C"]
    [(page_number, position, reason, payload)] = rejects(conn)
    assert (page_number, position) == (1, 1)
    assert "NUL" in reason
    assert json.loads(payload) == call("B", note="nul \u0000 here")


def test_a_nul_in_a_parsed_record_is_rejected(conn):
    result = load(conn, Page(1, "u", [call("A"), call("B", **{"k\x00": "v"})]))
    assert (result.inserted, result.rejected) == (1, 1)
    assert "NUL" in rejects(conn)[0][2]


def test_bytes_that_are_not_utf8_are_rejected_with_their_offset(conn, sessions):
    bad = b'{"event_number": "B", ":updated_at": "2026-05-01T12:00:00Z", "note": "caf\xe9"}'
    result = load(conn, served(text(call("A")), bad, text(call("C"))))
    assert (result.inserted, result.rejected) == (2, 1)
    assert keys(conn) == ["A", "C"]
    [(_, position, reason, payload)] = rejects(conn)
    assert position == 1
    offset = bad.index(b"\xe9")
    assert reason == f"text that is not valid UTF-8: byte 0xe9 at offset {offset} of the record"
    assert payload.endswith('"caf\\xe9"}')


def test_a_lone_surrogate_is_rejected(conn, sessions):
    bad = b'{"event_number": "B", "note": "\\ud800 alone"}'
    result = load(conn, served(text(call("A")), bad))
    assert (result.inserted, result.rejected) == (1, 1)
    [(_, position, reason, payload)] = rejects(conn)
    assert position == 1
    assert "surrogate" in reason
    assert payload == bad.decode()


def test_a_lone_surrogate_in_a_parsed_record_is_rejected(conn):
    result = load(conn, Page(1, "u", [call("A"), call("B", note="\ud800")]))
    assert (result.inserted, result.rejected) == (1, 1)
    assert "surrogate" in rejects(conn)[0][2]


def test_nesting_postgresql_can_store_lands_and_deeper_is_rejected(conn, sessions):
    # 10,000 levels is more than Python's JSON readers take, not more than jsonb does.
    deep = b'{"event_number": "B", "nested": ' + b"[" * 10_000 + b"]" * 10_000 + b"}"
    deeper = b'{"event_number": "D", "nested": ' + b"[" * 200_000 + b"]" * 200_000 + b"}"
    result = load(conn, served(text(call("A")), deep, text(call("C")), deeper))
    assert (result.inserted, result.rejected) == (3, 1)
    assert keys(conn) == ["A", "B", "C"]
    [(_, position, reason, payload)] = rejects(conn)
    assert position == 3
    assert reason.startswith("PostgreSQL cannot read this record: stack depth limit exceeded")
    assert payload == deeper.decode()


def test_a_body_that_is_no_json_array_fails_naming_source_url_and_offset(conn):
    page = Page(3, "http://city.example/resource/x.json?$offset=10", JsonArray(b'[{"a": 1}', 1))
    with pytest.raises(SourceError) as raised:
        load(conn, page)
    message = str(raised.value)
    assert message.startswith("source 'calls_for_service': http://city.example/resource/x.json")
    assert "page 3 is not a JSON array of records" in message
    assert "byte 9" in message
    assert isinstance(raised.value, USER_ERRORS)


# -- keys and times ------------------------------------------------------------------------------


def test_keys_that_are_not_text_or_a_number_or_are_blank_are_rejected(conn, sessions):
    page = served(
        *(text(call(key)) for key in ["A", "   ", ["A", "B"], {"id": 1}, True, 42, "", None, "\t"])
    )
    result = load(conn, page)
    assert keys(conn) == ["42", "A"]
    assert (result.inserted, result.rejected) == (2, 7)
    reasons = [reason for _, _, reason, _ in rejects(conn)]
    not_scalar = "business key field(s) not text or a number: event_number"
    blank = "business key field(s) blank (only spaces): event_number"
    missing = "business key field(s) missing or empty: event_number"
    assert reasons == [blank, not_scalar, not_scalar, not_scalar, missing, missing, blank]


def test_keys_that_are_not_keys_are_rejected_from_parsed_records_too(conn):
    records = [call("A"), call("  "), call(["A"]), call({"id": 1}), call(False)]
    result = load(conn, Page(1, "u", records))
    assert (result.inserted, result.rejected) == (1, 4)


def test_a_numeric_change_time_is_rejected_as_unreadable(conn, sessions):
    page = served(text(call("A")), text(call("B", updated=1714564800)), text(call("C")))
    result = load(conn, page)
    assert (result.inserted, result.rejected) == (2, 1)
    [(_, position, reason, _)] = rejects(conn)
    assert position == 1
    assert reason.startswith("unreadable :updated_at: 1714564800")


def test_a_numeric_change_time_in_a_parsed_record_is_rejected(conn):
    result = load(conn, Page(1, "u", [call("A"), call("B", updated=1714564800)]))
    assert (result.inserted, result.rejected) == (1, 1)
    assert rejects(conn)[0][2].startswith("unreadable :updated_at: 1714564800")


def test_every_kind_of_bad_record_in_one_page(conn, sessions):
    page = served(
        text(call("A")),
        text(call("B", note="\u0000")),
        b'{"event_number": "C", "note": "\xff"}',
        b'{"event_number": "D", "note": "\\udc00"}',
        b'{"event_number": "E", "n": ' + b"[" * 200_000 + b"]" * 200_000 + b"}",
        text(call("F", updated=12)),
        text(call(" ")),
        text(call("G")),
        number=4,
    )
    result = load(conn, page)
    assert keys(conn) == ["A", "G"]
    assert [(p, position) for p, position, _, _ in rejects(conn)] == [(4, i) for i in range(1, 7)]
    assert result.rejected == 6


# -- a key served more than once in one load ------------------------------------------------------


def test_a_key_repeated_in_one_page_keeps_the_latest_and_rejects_the_others(conn, sessions):
    older = call("A", updated="2026-05-01T09:00:00Z", disposition_code="ADV")
    newer = call("A", updated="2026-05-01T18:00:00Z", disposition_code="ARR")
    result = load(conn, served(text(newer), text(call("B")), text(older), text(newer)))
    assert (
        json.loads(json.dumps(newer))
        == conn.execute(
            "select record from raw.calls_for_service where record_key = 'A'"
        ).fetchone()[0]
    )
    [(page, position, reason, payload)] = rejects(conn)
    assert (page, position, json.loads(payload)) == (1, 2, older)
    assert reason == (
        "business key 'A' served again in this load: this version was replaced by a later one"
    )
    # received = distinct keys + rejected + identical copies
    assert (result.received, result.inserted, result.rejected, result.duplicates) == (4, 2, 1, 1)


def test_a_version_replaced_by_a_later_page_is_rejected_from_where_it_was_served(conn, sessions):
    older = call("A", updated="2026-05-01T09:00:00Z", disposition_code="ADV")
    newer = call("A", updated="2026-05-01T18:00:00Z", disposition_code="ARR")
    result = load(
        conn,
        served(text(call("B")), text(older), number=1),
        served(text(newer), number=2),
        served(text(call("C")), text(older), number=3),
    )
    assert keys(conn) == ["A", "B", "C"]
    landed = conn.execute(
        "select record, request_page from raw.calls_for_service where record_key = 'A'"
    ).fetchone()
    assert landed == (newer, 2)
    lost = [(page, position, json.loads(payload)) for page, position, _, payload in rejects(conn)]
    assert lost == [(1, 1, older), (3, 1, older)]
    assert (result.received, result.rejected, result.duplicates) == (5, 2, 0)
    assert result.inserted + result.updated + result.unchanged == 3


# -- the warehouse failing -----------------------------------------------------------------------


def test_the_warehouse_dying_mid_load_is_one_error_naming_the_source_and_rolls_back(conn):
    def pages():
        yield served(text(call("A")), number=1)
        with psycopg.connect(conn.info.dsn, password=conn.info.password, autocommit=True) as other:
            other.execute(
                "select pg_terminate_backend(pid) from pg_stat_activity"
                " where datname = current_database() and pid <> pg_backend_pid()"
            )
        yield served(text(call("B")), number=2)

    with pytest.raises(loader.LoadError) as raised:
        loader.load(conn, SOURCE, SCOPE, pages(), UPDATED_AT)
    message = str(raised.value)
    assert message.startswith("source 'calls_for_service': the warehouse failed during the load")
    assert "nothing of this load was committed" in message
    assert "\n" not in message
    assert isinstance(raised.value, USER_ERRORS)
    with psycopg.connect(conn.info.dsn, password=conn.info.password) as fresh:
        exists = fresh.execute("select to_regclass('raw.calls_for_service')").fetchone()[0]
        assert (
            exists is None
            or fresh.execute("select count(*) from raw.calls_for_service").fetchone()[0] == 0
        )


# -- the command line, against a server serving the bad page -------------------------------------


def socrata_server(bodies: dict[int, bytes]):
    """A Socrata endpoint for ``calls_for_service`` serving ``bodies`` by ``$offset``."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            params = {k: v[-1] for k, v in parse_qs(urlsplit(self.path).query).items()}
            if params.get("$select") == "count(*)":
                body = b'[{"count": "1"}]'
            else:
                body = bodies.get(int(params.get("$offset", "0")), b"[]")
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    return listening(Handler)


def extract(url: str, warehouse: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "civic_warehouse",
            "extract",
            "calls_for_service",
            "--since",
            "2026-05-01",
            "--until",
            "2026-05-02",
        ],
        env={**os.environ, "CITY_SIMULATOR_URL": url, "WAREHOUSE_URL": warehouse},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_cli_extract_of_a_page_of_bad_records_completes(conn, clean_warehouse):
    page = (
        b"["
        + b",".join(
            [
                text(call("A")),
                text(call("B", note="\u0000")),
                b'{"event_number": "C", "note": "\xff"}',
                text(call("   ")),
                text(call("E", updated=1714564800)),
                text(call(["F"])),
                text(call("G")),
            ]
        )
        + b"]"
    )
    with socrata_server({0: page}) as url:
        completed = extract(url, clean_warehouse)
    assert completed.returncode == 0, completed.stderr
    assert "Traceback" not in completed.stderr
    summary = json.loads(completed.stdout)
    assert (summary["inserted"], summary["rejected"]) == (2, 5)
    assert keys(conn) == ["A", "G"]
    assert [position for _, position, _, _ in rejects(conn)] == [1, 2, 3, 4, 5]


def test_the_cli_says_in_one_line_when_a_body_is_no_json_array(clean_warehouse):
    with socrata_server({0: b'[{"event_number": "A"}, {"event_number": '}) as url:
        completed = extract(url, clean_warehouse)
    assert completed.returncode == 1
    assert "Traceback" not in completed.stderr
    lines = [line for line in completed.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1
    assert "calls_for_service" in lines[0]


def test_a_record_nested_deeper_than_the_client_reads_reaches_the_loader(clean_warehouse):
    # The HTTP client's decoder gives up past its depth; the body is still one whole array, so it
    # is handed over as served and the loader judges each record (PostgreSQL reads this depth).
    deep = b'[{"event_number": "D", "n": ' + b"[" * 10_000 + b"]" * 10_000 + b"}]"
    with socrata_server({0: deep}) as url:
        completed = extract(url, clean_warehouse)
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert "Traceback" not in completed.stderr
    with psycopg.connect(clean_warehouse) as conn:
        landed = conn.execute("select count(*) from raw.calls_for_service").fetchone()[0]
        assert landed + len(rejects(conn)) == 1


def test_the_cli_says_in_one_line_when_the_warehouse_dies(clean_warehouse):
    served_once = threading.Event()

    class Killer(dict):
        def get(self, offset, default=None):
            if offset == 0:
                rows = [call(f"K{i}") for i in range(SOURCE.page_size)]
                return json.dumps(rows).encode()
            if not served_once.is_set():
                served_once.set()
                with psycopg.connect(clean_warehouse, autocommit=True) as other:
                    other.execute(
                        "select pg_terminate_backend(pid) from pg_stat_activity where datname"
                        " = current_database() and pid <> pg_backend_pid()"
                        " and backend_type = 'client backend'"
                    )
            return b"[]"

    with socrata_server(Killer()) as url:
        completed = extract(url, clean_warehouse)
    assert completed.returncode == 1, completed.stdout
    assert "Traceback" not in completed.stderr
    errors = [line for line in completed.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, completed.stderr
    assert "calls_for_service" in errors[0]
