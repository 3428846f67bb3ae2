"""Pages kept as served (unparsed JSON arrays, as the Socrata connector yields them) load exactly
like parsed ones: same rows, same times, same rejects, and fetching runs ahead of loading safely."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime

import psycopg
import pytest

from civic_warehouse import loader
from civic_warehouse.catalog import get_source
from civic_warehouse.connectors import Page, Query, Window, connector_for
from civic_warehouse.connectors.base import JsonArray
from civic_warehouse.connectors.http import SourceError

pytestmark = pytest.mark.integration

SCOPE = Query(
    events=Window(datetime(2026, 5, 1, 4, tzinfo=UTC), datetime(2026, 5, 2, 4, tzinfo=UTC))
)
SOURCE = get_source("calls_for_service")  # America/New_York
UPDATED_AT = connector_for(SOURCE).updated_at


def call(number: str, updated: object = "2026-05-01T12:00:00.000Z", **fields) -> dict:
    return {"event_number": number, ":updated_at": updated, "priority": "3", **fields}


def served(number: int, records: list) -> Page:
    """A page the way a server sent it: Socrata's layout, one record per line."""
    text = ("[" + "\n,".join(json.dumps(r) for r in records) + "]\n").encode()
    return Page(number, f"u{number}", JsonArray(text, len(records)))


@pytest.fixture
def conn(clean_warehouse):
    with psycopg.connect(clean_warehouse) as connection:
        yield connection


def raw_rows(conn) -> dict:
    rows = conn.execute(
        "select record_key, record, request_page, source_updated_at from raw.calls_for_service"
    ).fetchall()
    return {key: (record, page, updated) for key, record, page, updated in rows}


def test_a_served_page_lands_like_the_same_page_parsed(conn):
    records = [call("A"), call("B", disposition_code="ARR"), call("C", note="line\nbreak é")]
    from_served = loader.load(conn, SOURCE, SCOPE, [served(1, records)], UPDATED_AT)
    landed = raw_rows(conn)
    conn.execute("drop schema raw cascade")
    from_parsed = loader.load(conn, SOURCE, SCOPE, [Page(1, "u1", records)], UPDATED_AT)
    assert (from_served.inserted, from_served.rejected, from_served.received) == (3, 0, 3)
    assert from_served.watermark == from_parsed.watermark
    assert landed == raw_rows(conn)
    assert landed["C"][0] == records[2]


def test_times_without_an_offset_are_the_sources_local_time(conn):
    page = served(1, [call("A", updated="2026-05-01T08:00:00.000"), call("B")])
    loader.load(conn, SOURCE, SCOPE, [page], UPDATED_AT)
    rows = raw_rows(conn)
    assert rows["A"][2] == datetime(2026, 5, 1, 12, tzinfo=UTC)  # 08:00 EDT
    assert rows["B"][2] == datetime(2026, 5, 1, 12, tzinfo=UTC)
    # The session's time zone is left as it was: results read back in it unchanged.
    assert loader.watermark(conn, SOURCE) == datetime(2026, 5, 1, 12, tzinfo=UTC)


def test_unreadable_times_in_a_served_page_are_rejected_and_the_rest_loads(conn):
    page = served(
        2,
        [call("A"), call("B", updated="yesterday"), call("C", updated="2026-13-01T00:00:00Z")],
    )
    result = loader.load(conn, SOURCE, SCOPE, [page], UPDATED_AT)
    assert (result.inserted, result.rejected) == (1, 2)
    rejects = conn.execute(
        "select request_page, position, reason, payload::jsonb from raw._rejects order by position"
    ).fetchall()
    assert [(page, position) for page, position, _, _ in rejects] == [(2, 1), (2, 2)]
    assert all(reason.startswith("unreadable :updated_at: ") for _, _, reason, _ in rejects)
    assert rejects[0][3] == call("B", updated="yesterday")


def test_served_records_that_are_not_keyed_objects_are_rejected(conn):
    page = served(1, [call("A"), {"priority": "2"}, ["not", "an", "object"], 7, None])
    result = loader.load(conn, SOURCE, SCOPE, [page], UPDATED_AT)
    reasons = conn.execute("select reason from raw._rejects order by position").fetchall()
    assert (result.inserted, result.rejected) == (1, 4)
    assert [r for (r,) in reasons] == [
        "business key field(s) missing or empty: event_number",
        "expected a JSON object, got list",
        "expected a JSON object, got int",
        "expected a JSON object, got NoneType",
    ]


def test_a_key_served_again_on_a_later_page_keeps_its_latest_version_and_rejects_the_others(conn):
    loader.load(conn, SOURCE, SCOPE, [served(1, [call("Z")])], UPDATED_AT)
    newer = call("A", updated="2026-05-01T18:00:00.000Z", disposition_code="ARR")
    older = call("A", updated="2026-05-01T09:00:00.000Z", disposition_code="ADV")
    changed = call("Z", updated="2026-05-01T13:00:00.000Z", disposition_code="RPT")
    pages = [served(1, [newer, changed]), served(2, [older, changed]), served(3, [newer])]
    result = loader.load(conn, SOURCE, SCOPE, pages, UPDATED_AT)
    assert raw_rows(conn)["A"][0]["disposition_code"] == "ARR"
    assert (result.received, result.inserted, result.updated) == (5, 1, 1)
    # The older version of A lost: rejected. The second copies of A and Z lose nothing: counted.
    assert (result.unchanged, result.rejected, result.duplicates) == (0, 1, 2)
    rejects = conn.execute(
        "select request_page, position, reason, payload::jsonb from raw._rejects"
    )
    assert [(page, position, payload) for page, position, _, payload in rejects] == [(2, 0, older)]


def test_when_loading_fails_the_pages_are_no_longer_fetched(conn):
    fetched: list[int] = []
    stopped = threading.Event()

    def pages():
        try:
            for number in range(1, 1000):
                fetched.append(number)
                if number == 2:  # a body that is no array of records: the load fails there
                    yield Page(number, "u2", JsonArray(b'{"not": "an array"}', 1))
                else:
                    yield served(number, [call(f"K{number}")])
        finally:
            stopped.set()

    with pytest.raises(SourceError, match="u2: page 2 is not a JSON array of records"):
        loader.load(conn, SOURCE, SCOPE, pages(), UPDATED_AT)
    conn.rollback()
    assert stopped.wait(10)
    assert len(fetched) < 10
    exists = conn.execute("select to_regclass('raw.calls_for_service')").fetchone()[0]
    assert exists is None or raw_rows(conn) == {}


def landed(conn) -> tuple[list, list]:
    """The raw rows and rejects of the load, without what differs between batches."""
    rows = conn.execute(
        "select record_key, record, request_page, source_updated_at, deleted_at"
        " from raw.calls_for_service order by record_key"
    ).fetchall()
    rejects = conn.execute(
        "select request_page, position, reason, payload from raw._rejects order by 1, 2"
    ).fetchall()
    return rows, rejects


def test_pages_parsed_ahead_land_exactly_as_the_transaction_alone_lands_them(conn, monkeypatch):
    def pages() -> list[Page]:
        made = []
        for number in range(1, 13):
            records = [call(f"P{number}-{i}", note=f"n{i}") for i in range(40)]
            # a key served on every page, its version newest on page 6
            hours = 18 if number == 6 else 9 + number % 5
            records.append(call("EVERY", updated=f"2026-05-01T{hours:02d}:00:00Z", page=number))
            if number == 3:
                records += [{"priority": "2"}, ["not", "an", "object"]]  # rejected in SQL
            if number == 5:
                records.append(call("LATE", updated="yesterday"))  # unreadable: read in Python
            if number == 8:
                records += [call("TWICE", note="first"), call("TWICE", note="second")]
            made.append(served(number, records))
        return made

    results = {}
    for sessions in ("0", "2"):
        monkeypatch.setenv("CW_LOAD_PARSE_SESSIONS", sessions)
        conn.execute("drop schema if exists raw cascade")
        conn.commit()
        results[sessions] = (loader.load(conn, SOURCE, SCOPE, pages(), UPDATED_AT), landed(conn))

    slow_upsert = loader._upsert

    def slow(*args, **kwargs):
        time.sleep(0.03)  # a transaction slower than parsing, as under a large load
        return slow_upsert(*args, **kwargs)

    monkeypatch.setattr(loader, "_upsert", slow)
    conn.execute("drop schema raw cascade")
    conn.commit()
    results["2, slow"] = (loader.load(conn, SOURCE, SCOPE, pages(), UPDATED_AT), landed(conn))

    alone, alone_landed = results["0"]
    assert alone.parsed_ahead == 0
    # EVERY's 11 older versions and TWICE's first are rejected as replaced.
    assert (alone.received, alone.rejected, alone.duplicates) == (12 * 41 + 5, 3 + 11 + 1, 0)
    assert alone_landed[0][0][1]["page"] == 6  # EVERY's newest version
    for sessions in ("2", "2, slow"):
        result, what_landed = results[sessions]
        assert what_landed == alone_landed, sessions
        counts = ("received", "inserted", "updated", "unchanged", "duplicates", "rejected")
        assert [getattr(result, c) for c in counts] == [getattr(alone, c) for c in counts]
        assert result.watermark == alone.watermark
    assert results["2, slow"][0].parsed_ahead >= 8
    assert (
        conn.execute(
            "select count(*) from pg_namespace where nspname like 'raw\\_load\\_%'"
        ).fetchone()[0]
        == 0
    )
