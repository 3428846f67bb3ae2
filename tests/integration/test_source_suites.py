"""Source suites catch what goes wrong upstream: a day's volume drop, timestamps out of order."""

from __future__ import annotations

import psycopg
import pytest

from civic_warehouse import pipeline, quality
from civic_warehouse.catalog import get_source

pytestmark = pytest.mark.integration

SUITE = "stg_cad__calls_for_service"


@pytest.fixture(scope="module")
def ten_days(clean_warehouse_module, simulator):
    source = get_source("calls_for_service")
    pipeline.extract(
        source.name, pipeline.query_for_run(source, None, None, "2026-07-01", "2026-07-11")
    )
    return clean_warehouse_module


def failures(report: quality.GateReport) -> list[tuple[str, str, str]]:
    return sorted(
        (o.expectation, o.column, o.severity)
        for o in report.outcomes
        if o.suite == SUITE and not o.success
    )


def test_a_healthy_feed_passes(ten_days):
    pipeline.transform_candidate()
    assert failures(quality.validate()) == []


def test_a_day_with_missing_pages_is_a_recorded_warning(ten_days):
    with psycopg.connect(ten_days) as conn:  # most of July 8th never arrived
        conn.execute(
            """
            update raw.calls_for_service set deleted_at = now()
            where record ->> 'time_received' like '2026-07-08T%'
                and record ->> 'time_received' > '2026-07-08T06'
            """
        )
    pipeline.transform_candidate()
    report = quality.validate()
    assert failures(report) == [
        (
            "unexpected_rows_expectation",
            "daily volume within half to twice the trailing 7-day average",
            "warning",
        )
    ]
    assert report.passed
    with psycopg.connect(ten_days) as conn:
        conn.execute("update raw.calls_for_service set deleted_at = null")


def test_timestamps_out_of_order_block_publishing(ten_days):
    with psycopg.connect(ten_days) as conn:
        conn.execute(
            """
            update raw.calls_for_service
            set record = record || jsonb_build_object('time_closed', '2026-06-30T00:00:00.000')
            where record_key in (select record_key from raw.calls_for_service limit 3)
            """
        )
    pipeline.transform_candidate()
    report = quality.validate()
    assert not report.passed
    ordered = [o for o in report.critical_failures if o.suite == SUITE]
    assert [o.column for o in ordered] == [
        "timestamps in order: received <= dispatched <= on scene, received <= closed"
    ]
    assert ordered[0].observed == 3  # rows out of order (SQL expectations report a count)
