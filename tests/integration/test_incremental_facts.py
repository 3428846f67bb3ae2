"""Large facts are built incrementally: a full refresh gives what the daily increments added up to,
and the published mart keeps showing what was audited while later builds append new versions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from helpers import table_fingerprint

from civic_warehouse import loader, pipeline, transform
from civic_warehouse import publish as publishing
from civic_warehouse.catalog import get_source
from civic_warehouse.connectors import Page, Query, Window, connector_for

pytestmark = pytest.mark.integration

CALLS = "fct_calls_for_service"
VERSIONS = "internal.int_calls_for_service_versions"
AS_OF = datetime(2026, 6, 10, tzinfo=UTC)  # every call of the test is past the publication delay


def build(full_refresh: bool = False) -> None:
    """dbt build of the calls fact and what it needs (the rest of the project is not involved)."""
    args = ["build", "--select", f"+{CALLS}", "--indirect-selection", "cautious"] + (
        ["--full-refresh"] if full_refresh else []
    )
    transform.run_dbt(args, as_of=AS_OF)


def fingerprint(url: str, schema: str = "candidate") -> tuple[int, str]:
    return table_fingerprint(url, schema, CALLS, "event_number")


def raw_call(url: str, event_number: str) -> dict:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "select record from raw.calls_for_service where record_key = %s", [event_number]
        ).fetchone()[0]


def load_new_versions(url: str, records: list[dict]) -> None:
    """The source serving changed records, loaded by the real loader (as an extract would)."""
    source = get_source("calls_for_service")
    stamps = [r[":updated_at"] for r in records]
    query = Query(updated=Window(datetime.fromisoformat(min(stamps)), datetime.now(UTC)))
    page = Page(number=1, url="http://city.example/resource/calls.json", records=records)
    with psycopg.connect(url) as conn:
        loader.load(conn, source, query, [page], connector_for(source).updated_at)


def changed(record: dict, updated_at: datetime, **fields: str) -> dict:
    return record | fields | {":updated_at": updated_at.strftime("%Y-%m-%dT%H:%M:%S.000Z")}


def mart_row(url: str, event_number: str, schema: str = "candidate") -> tuple:
    with psycopg.connect(url) as conn:
        return conn.execute(
            f"select disposition_code, priority from {schema}.{CALLS} where event_number = %s",
            [event_number],
        ).fetchone()


def test_full_refresh_equals_the_sum_of_daily_increments(clean_warehouse, simulator):
    url = clean_warehouse
    source = get_source("calls_for_service")
    days = [datetime(2026, 6, d, tzinfo=source.tz) for d in range(1, 5)]

    # Day 1: the first build derives everything; it is audited and published.
    pipeline.extract(source.name, pipeline.query_for_run(source, days[0], days[1]))
    build()
    # dbt's tests audited the build; the GX gate has tests of its own.
    publishing.publish(url, force_reason="test fixture: the calls fact built alone, by dbt")
    published = fingerprint(url, "open")
    first_call = "CFS-20260601-0001"
    assert mart_row(url, first_call, "open") is not None

    # Day 2: new calls, and day 1's first call changed at the source after its first load.
    pipeline.extract(source.name, pipeline.query_for_run(source, days[1], days[2]))
    record = raw_call(url, first_call)
    load_new_versions(url, [changed(record, days[1] + timedelta(hours=20), priority="1")])
    build()
    assert mart_row(url, first_call) == (record["disposition_code"], 1)
    # Readers of the published view still see what was audited, not the rows appended since.
    assert fingerprint(url, "open") == published
    assert mart_row(url, first_call, "open") == (
        record["disposition_code"],
        int(record["priority"]),
    )

    # Day 3: new calls, plus a late update inside the lookback window that was committed by a load
    # which started before day 2's build (its extracted_at is older than the build's watermark):
    # only the lookback on the source's change time finds it.
    pipeline.extract(source.name, pipeline.query_for_run(source, days[2], days[3]))
    with psycopg.connect(url) as conn:
        newest = conn.execute("select max(_source_updated_at) from " + VERSIONS).fetchone()[0]
        before_build = conn.execute("select min(_valid_from) from " + VERSIONS).fetchone()[0]
    late_call = "CFS-20260602-0005"
    late = changed(raw_call(url, late_call), newest - timedelta(hours=12), disposition_code="RPT")
    load_new_versions(url, [late])
    with psycopg.connect(url) as conn:
        conn.execute(
            "update raw.calls_for_service set extracted_at = %s where record_key = %s",
            [before_build, late_call],
        )
    build()
    assert mart_row(url, late_call)[0] == "RPT"

    # Day 4: new calls; the first call changes once more, and a lookback re-read changes nothing.
    pipeline.extract(source.name, pipeline.query_for_run(source, days[3], days[3] + timedelta(1)))
    again = changed(raw_call(url, first_call), days[3] + timedelta(hours=2), disposition_code="ARR")
    load_new_versions(url, [again])
    build()
    assert mart_row(url, first_call) == ("ARR", 1)
    with psycopg.connect(url) as conn:
        versions = conn.execute(
            f"select count(*) from {VERSIONS} where event_number = %s", [first_call]
        ).fetchone()[0]
        current = conn.execute(
            f"select count(*) from {VERSIONS} where _valid_to is null"
        ).fetchone()
        keys = conn.execute("select count(*) from raw.calls_for_service").fetchone()
    assert versions == 3  # first load, two changes; re-reads of unchanged calls add no version
    assert current == keys
    increments = fingerprint(url)
    assert increments[0] == keys[0]

    # dbt's full refresh re-derives every call: the same mart.
    build(full_refresh=True)
    assert fingerprint(url) == increments

    # And a build from nothing (the state dropped) gives it too.
    with psycopg.connect(url) as conn:
        conn.execute(f"drop table {VERSIONS} cascade")
    build()
    assert fingerprint(url) == increments


def test_a_call_deleted_at_the_source_leaves_the_mart(clean_warehouse, simulator):
    url = clean_warehouse
    source = get_source("calls_for_service")
    day = datetime(2026, 6, 1, tzinfo=source.tz)
    pipeline.extract(source.name, pipeline.query_for_run(source, day, day + timedelta(days=1)))
    build()
    gone = "CFS-20260601-0002"
    assert mart_row(url, gone) is not None
    with psycopg.connect(url) as conn:
        # What a reconcile that no longer finds the call records (loader._mark_deleted).
        conn.execute(
            "update raw.calls_for_service set deleted_at = now() where record_key = %s", [gone]
        )
    build()
    assert mart_row(url, gone) is None
    incremental = fingerprint(url)
    build(full_refresh=True)
    assert fingerprint(url) == incremental


def test_a_daily_build_tests_the_rows_it_changed_and_still_catches_errors(
    clean_warehouse, simulator
):
    """A daily build's data tests read the rows it changed, not every call: a bad value that an
    increment brings, and a new row that repeats a call's key, still fail; a full refresh tests
    every row."""
    url = clean_warehouse
    source = get_source("calls_for_service")
    days = [datetime(2026, 6, d, tzinfo=source.tz) for d in range(1, 4)]
    pipeline.extract(source.name, pipeline.query_for_run(source, days[0], days[1]))
    build()

    # An increment brings a priority outside 1..5: the staging test of the rows to derive fails,
    # and the calls are not derived until the source corrects it.
    pipeline.extract(source.name, pipeline.query_for_run(source, days[1], days[2]))
    call = "CFS-20260601-0003"
    record = raw_call(url, call)
    load_new_versions(url, [changed(record, days[1] + timedelta(hours=20), priority="9")])
    with pytest.raises(transform.DbtError, match="accepted_values_stg_cad__calls_for_service_prio"):
        build()
    corrected = int(record["priority"]) % 5 + 1  # not the first version's: a new version
    load_new_versions(
        url, [changed(record, days[1] + timedelta(hours=21), priority=str(corrected))]
    )
    build()
    assert mart_row(url, call) == (record["disposition_code"], corrected)

    # The build appended a new version of the call; its replaced version, reopened, repeats the
    # key of a row older than this build: the mart's uniqueness test, scoped to the keys the build
    # changed, reads every row of those keys and fails.
    with psycopg.connect(url) as conn:
        conn.execute(
            f"update {VERSIONS} set _valid_to = null where event_number = %s"
            " and _valid_to is not null",
            [call],
        )
    with pytest.raises(transform.DbtError, match="unique_fct_calls_for_service_event_number"):
        transform.run_dbt(["test", "--select", CALLS], as_of=AS_OF)
    with psycopg.connect(url) as conn:
        conn.execute(
            f"update {VERSIONS} set _valid_to = _valid_from + interval '1 second'"
            f" where event_number = %s and _valid_from < (select max(_valid_from) from {VERSIONS})",
            [call],
        )

    # A row changed in place, behind the loader's back (no new load time, no recent change
    # time), is no row a daily build changes: only a full refresh, which tests every row, sees it.
    with psycopg.connect(url) as conn:
        old_call = conn.execute(
            "select record_key from raw.calls_for_service order by source_updated_at limit 1"
        ).fetchone()[0]
        conn.execute(
            "update raw.calls_for_service set record = record || %s::jsonb where record_key = %s",
            ['{"priority": "7"}', old_call],
        )
    pipeline.extract(source.name, pipeline.query_for_run(source, days[2], days[2] + timedelta(1)))
    build()
    with pytest.raises(transform.DbtError, match="accepted_values_stg_cad__calls_for_service_prio"):
        build(full_refresh=True)
