"""Landing pages in the raw layer: lineage kept, rejects kept, re-runs change nothing, latest wins."""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg
import pytest

from civic_warehouse import loader
from civic_warehouse.catalog import get_source
from civic_warehouse.connectors import Page, Query, Window, connector_for

pytestmark = pytest.mark.integration

SCOPE = Query(
    events=Window(datetime(2026, 5, 1, 4, tzinfo=UTC), datetime(2026, 5, 2, 4, tzinfo=UTC))
)
SOURCE = get_source("calls_for_service")
UPDATED_AT = connector_for(SOURCE).updated_at


def call(number: str, updated: str = "2026-05-01T12:00:00.000Z", **fields) -> dict:
    return {"event_number": number, ":updated_at": updated, "priority": "3", **fields}


@pytest.fixture
def conn(clean_warehouse):
    with psycopg.connect(clean_warehouse) as connection:
        yield connection


def load(conn, pages: list[Page]) -> loader.LoadResult:
    return loader.load(conn, SOURCE, SCOPE, pages, UPDATED_AT)


def raw_rows(conn) -> dict:
    rows = conn.execute(
        "select record_key, record, request_page from raw.calls_for_service"
    ).fetchall()
    return {key: (record, page) for key, record, page in rows}


def test_records_land_with_lineage(conn):
    result = load(conn, [Page(1, "u1", [call("A"), call("B")]), Page(2, "u2", [call("C")])])
    assert (result.inserted, result.updated, result.rejected, result.pages) == (3, 0, 0, 2)
    rows = raw_rows(conn)
    assert rows["C"] == (call("C"), 2)
    lineage = conn.execute(
        "select distinct source, batch_id::text, extracted_at is not null from raw.calls_for_service"
    ).fetchall()
    assert lineage == [("calls_for_service", result.batch_id, True)]


def test_reloading_the_same_interval_changes_nothing(conn):
    pages = [Page(1, "u", [call("A"), call("B")])]
    first = load(conn, pages)
    before = conn.execute("select * from raw.calls_for_service order by record_key").fetchall()
    second = load(conn, pages)
    after = conn.execute("select * from raw.calls_for_service order by record_key").fetchall()
    assert (first.inserted, second.inserted, second.updated, second.unchanged) == (2, 0, 0, 2)
    assert before == after


def test_a_changed_record_replaces_the_old_version(conn):
    load(conn, [Page(1, "u", [call("A", disposition_code="ADV")])])
    result = load(
        conn,
        [Page(1, "u", [call("A", updated="2026-05-02T09:00:00.000Z", disposition_code="RPT")])],
    )
    assert (result.inserted, result.updated) == (0, 1)
    assert raw_rows(conn)["A"][0]["disposition_code"] == "RPT"


def test_within_a_batch_the_latest_version_wins(conn):
    newer = call("A", updated="2026-05-01T18:00:00.000Z", disposition_code="ARR")
    older = call("A", updated="2026-05-01T09:00:00.000Z", disposition_code="ADV")
    load(conn, [Page(1, "u", [newer]), Page(2, "u", [older])])
    assert raw_rows(conn)["A"][0]["disposition_code"] == "ARR"


def test_unkeyed_records_are_rejected_with_position_and_reason(conn):
    result = load(
        conn,
        [Page(1, "u", [call("A"), {"priority": "2"}, ["not", "an", "object"]])],
    )
    assert (result.inserted, result.rejected) == (1, 2)
    rejects = conn.execute(
        "select source, request_page, position, reason from raw._rejects order by position"
    ).fetchall()
    assert rejects == [
        ("calls_for_service", 1, 1, "business key field(s) missing or empty: event_number"),
        ("calls_for_service", 1, 2, "expected a JSON object, got list"),
    ]
    # Re-running the interval replaces its rejects rather than piling them up.
    load(conn, [Page(1, "u", [call("A"), {"priority": "2"}])])
    assert conn.execute("select count(*) from raw._rejects").fetchone()[0] == 1


def test_a_failing_extract_commits_nothing(conn):

    def pages():
        yield Page(1, "u", [call("A")])
        raise ConnectionError("city server went away on page 2")

    with pytest.raises(ConnectionError):
        load(conn, pages())
    conn.rollback()
    exists = conn.execute("select to_regclass('raw.calls_for_service')").fetchone()[0]
    assert exists is None or raw_rows(conn) == {}


def test_a_late_reread_of_an_older_version_never_replaces_a_newer_one(conn):
    load(
        conn,
        [Page(1, "u", [call("A", updated="2026-05-02T09:00:00.000Z", disposition_code="RPT")])],
    )
    result = load(
        conn,
        [Page(1, "u", [call("A", updated="2026-05-01T09:00:00.000Z", disposition_code="ADV")])],
    )
    assert result.updated == 0
    assert raw_rows(conn)["A"][0]["disposition_code"] == "RPT"


def test_the_watermark_advances_and_never_rewinds(conn):
    load(conn, [Page(1, "u", [call("A", updated="2026-05-02T09:00:00.000Z")])])
    load(conn, [Page(1, "u", [call("B", updated="2026-04-01T09:00:00.000Z")])])  # a backfill
    assert loader.watermark(conn, SOURCE) == datetime(2026, 5, 2, 9, tzinfo=UTC)


def test_a_reconcile_marks_keys_the_source_no_longer_has(conn):
    load(conn, [Page(1, "u", [call("A"), call("B"), call("C")])])
    result = loader.load(conn, SOURCE, Query(), [Page(1, "u", [call("A"), call("C")])], UPDATED_AT)
    assert result.deleted == 1
    deleted = conn.execute(
        "select record_key from raw.calls_for_service where deleted_at is not null"
    ).fetchall()
    assert deleted == [("B",)]
    # It comes back if the source serves it again.
    load(conn, [Page(1, "u", [call("B")])])
    assert (
        conn.execute(
            "select count(*) from raw.calls_for_service where deleted_at is not null"
        ).fetchone()[0]
        == 0
    )


def test_duplicates_across_pages_are_counted_once(conn):
    result = load(
        conn, [Page(1, "u", [call("A"), call("B")]), Page(2, "u", [call("B"), call("C")])]
    )
    assert (result.received, result.inserted, result.duplicates) == (4, 3, 1)
