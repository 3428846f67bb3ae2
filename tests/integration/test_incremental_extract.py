"""Scheduled runs pull what changed in their interval, reaching back by the lookback: nothing lost."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import psycopg
import pytest

from city_simulator.calls import calls_between
from civic_warehouse import pipeline
from civic_warehouse.catalog import get_source

pytestmark = pytest.mark.integration


def utc(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_daily_increments_land_every_change_exactly_once(clean_warehouse, simulator):
    source = get_source("calls_for_service")
    days = [datetime(2026, 6, d, tzinfo=source.tz) for d in range(1, 5)]
    results = [
        pipeline.extract(source.name, pipeline.query_for_run(source, day, day + timedelta(days=1)))
        for day in days
    ]
    first, last = days[0] - source.lookback, days[-1] + timedelta(days=1)
    # Ground truth: every call whose last change falls in what the runs covered.
    candidates = calls_between(datetime(2026, 5, 25), datetime(2026, 6, 6))
    expected = {c["event_number"] for c in candidates if first <= utc(c[":updated_at"]) < last}
    with psycopg.connect(clean_warehouse) as conn:
        landed = {key for (key,) in conn.execute("select record_key from raw.calls_for_service")}
        watermark = conn.execute("select watermark from raw._watermarks").fetchone()[0]
    assert landed == expected
    # Overlapping lookbacks re-read records: they are counted as unchanged, never inserted twice.
    assert sum(r["inserted"] for r in results) == len(expected)
    assert sum(r["unchanged"] for r in results) > 0
    assert watermark == max(
        utc(c[":updated_at"]) for c in candidates if c["event_number"] in expected
    )


def test_rerunning_a_day_changes_nothing(clean_warehouse, simulator):
    source = get_source("calls_for_service")
    day = datetime(2026, 6, 10, tzinfo=source.tz)
    query = pipeline.query_for_run(source, day, day + timedelta(days=1))
    first = pipeline.extract(source.name, query)
    with psycopg.connect(clean_warehouse) as conn:
        before = conn.execute("select * from raw.calls_for_service order by record_key").fetchall()
    second = pipeline.extract(source.name, query)
    with psycopg.connect(clean_warehouse) as conn:
        after = conn.execute("select * from raw.calls_for_service order by record_key").fetchall()
    assert first["inserted"] > 400 and second["inserted"] == second["updated"] == 0
    assert after == before


def test_a_reconcile_reads_the_whole_dataset(clean_warehouse, monkeypatch):
    from city_simulator.server import SimulatorServer

    source = get_source("calls_for_service")
    # A small city system of two days, read in full.
    with SimulatorServer(port=0, first_day=date(2026, 2, 1), last_day=date(2026, 2, 2)) as small:
        monkeypatch.setenv("CITY_SIMULATOR_URL", small.url)
        result = pipeline.extract(
            source.name, pipeline.query_for_run(source, None, None, reconcile=True)
        )
    expected = calls_between(datetime(2026, 2, 1), datetime(2026, 2, 3))
    assert result["inserted"] == len(expected)
    assert result["scope"] == "reconcile" and result["deleted"] == 0
    assert result["watermark"] == max(c[":updated_at"] for c in expected).replace(".000Z", "+00:00")
