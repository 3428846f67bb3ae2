"""Source suites catch what goes wrong upstream: a day's volume drop, timestamps out of order."""

from __future__ import annotations

import datetime as dt

import psycopg
import pytest

from city_simulator.calls import CALLS_DATASET_ID
from civic_warehouse import pipeline, quality
from civic_warehouse.catalog import get_source

pytestmark = pytest.mark.integration

SUITE = "stg_cad__calls_for_service"


def extract_calls(start: str, end: str) -> dict:
    source = get_source("calls_for_service")
    return pipeline.extract(source.name, pipeline.query_for_run(source, None, None, start, end))


@pytest.fixture(scope="module")
def ten_days(clean_warehouse_module, simulator):
    simulator.inject.clear()
    extract_calls("2026-07-01", "2026-07-11")
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


def test_a_day_with_missing_pages_is_a_recorded_warning(ten_days, simulator):
    # Part of Wednesday July 15th never arrived: the CAD export lost some pages. Too few calls for
    # a usual day (a warning), not so few that the day collapsed (which would block).
    simulator.inject.drop_volume(CALLS_DATASET_ID, dt.date(2026, 7, 15), keep=0.4)
    try:
        extract_calls("2026-07-11", "2026-07-17")
    finally:
        simulator.inject.clear()
    pipeline.transform_candidate()
    report = quality.validate()
    assert failures(report) == [
        (
            "unexpected_rows_expectation",
            "daily volume within a band of the same weekday's trailing 4-week average",
            "warning",
        )
    ]
    [warning] = [o for o in report.warnings if o.suite == SUITE]
    assert [s["day"] for s in warning.samples] == ["2026-07-15"]
    assert report.passed
    extract_calls("2026-07-15", "2026-07-16")  # the export is repaired; the day is filled


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
    assert len(ordered[0].samples) == 3  # and the rows themselves, for the steward
