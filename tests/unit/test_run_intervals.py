"""The data intervals Airflow hands an extract run, as Airflow makes them, read by every protocol.

A CronDataIntervalTimetable in the source's zone makes the intervals (the scheduler's catch-up, a
manual trigger's inferred interval); the task receives them as pendulum DateTimes
(``coerce_datetime`` of the run's interval). Each is read from the simulator by the source's
connector and must select exactly what the same instants as plain UTC datetimes select.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pendulum
import pytest
from airflow.sdk.timezone import coerce_datetime
from airflow.timetables.base import DataInterval, TimeRestriction
from airflow.timetables.interval import CronDataIntervalTimetable

from civic_warehouse import pipeline
from civic_warehouse.catalog import SourceConfig, get_source
from civic_warehouse.connectors import Query, Window, connector_for

# The simulator's 311 requests as an ArcGIS layer with date fields (modelled on Dayton's), so the
# ArcGIS connector filters by time too; the catalog's ArcGIS source is reference data.
ARCGIS_311 = SourceConfig(
    name="arcgis_service_requests",
    description="311 requests from an ArcGIS MapServer layer",
    owner="Public Works",
    protocol="arcgis",
    base_url="${CITY_SIMULATOR_URL}/arcgis/rest/services",
    dataset="PublicWorks/ServiceRequests/MapServer/0",
    business_key=("SERVNO",),
    event_time_field="ADDDTTM",
    updated_field="ModDTTM",
    timezone="America/New_York",
    raw_table="arcgis_service_requests",
    lookback=timedelta(days=2),
    page_size=2000,
)
SOURCES = {
    "socrata": lambda: get_source("traffic_crashes"),
    "open311": lambda: get_source("service_requests"),
    "ckan": lambda: get_source("building_permits"),
    "arcgis": lambda: ARCGIS_311,
}

# How the instants reach query_for_run: as the timetable makes them, as the task's context holds
# them, moved into the DAG's zone, and carrying a standard-library zone (what ``astimezone(UTC)``
# of a pendulum DateTime gives: the object whose arithmetic loses its zone).
HANDED_OVER: dict[str, Callable[[pendulum.DateTime, str], datetime]] = {
    "timetable": lambda moment, tz: moment,
    "task context": lambda moment, tz: coerce_datetime(datetime.fromisoformat(moment.isoformat())),
    "DAG zone": lambda moment, tz: moment.in_timezone(tz),
    "stdlib zone": lambda moment, tz: moment.astimezone(UTC),
}


def timetable(source: SourceConfig) -> CronDataIntervalTimetable:
    return CronDataIntervalTimetable(source.schedule, timezone=source.timezone)


def scheduled_intervals(source: SourceConfig, first: str, last: str) -> list[DataInterval]:
    """The intervals the scheduler creates catching up from local day ``first`` to ``last``."""
    table = timetable(source)
    earliest = pendulum.parse(first, tz=source.timezone)
    latest = pendulum.parse(last, tz=source.timezone)
    restriction = TimeRestriction(earliest=earliest, latest=latest, catchup=True)
    intervals, previous = [], None
    while (
        info := table.next_dagrun_info(
            last_automated_data_interval=previous, restriction=restriction
        )
    ) is not None:
        intervals.append(info.data_interval)
        previous = info.data_interval
    return intervals


def plain(moment: datetime) -> datetime:
    return datetime.fromtimestamp(moment.timestamp(), UTC)


def read(source: SourceConfig, query: Query) -> dict[str, dict]:
    records: dict[str, dict] = {}
    for page in connector_for(source).pages(query):
        for record in page.records:
            key = record.get(source.business_key[0])
            records[str(key)] = record
    return records


def changed_at(source: SourceConfig, record: dict) -> datetime:
    return connector_for(source).updated_at(record)


@pytest.fixture(autouse=True)
def healthy_simulator(simulator):
    simulator.inject.clear()
    simulator.faults.clear()
    yield simulator


@pytest.mark.parametrize("handed_over", sorted(HANDED_OVER))
@pytest.mark.parametrize("protocol", sorted(SOURCES))
def test_a_scheduled_interval_across_the_autumn_clock_change_is_read(protocol, handed_over):
    source = SOURCES[protocol]()
    # The day the clocks go back in New York: 25 hours, 04:00Z to 05:00Z the next day.
    (interval,) = scheduled_intervals(source, "2026-11-01", "2026-11-01")
    assert interval.end - interval.start == timedelta(hours=25)
    convert = HANDED_OVER[handed_over]

    query = pipeline.query_for_run(
        source, convert(interval.start, source.timezone), convert(interval.end, source.timezone)
    )

    window = query.updated
    assert window == Window(plain(interval.start) - source.lookback, plain(interval.end))
    assert type(window.start) is datetime and window.start.utcoffset() == timedelta(0)
    records = read(source, query)
    reference = read(source, Query(updated=window))
    assert records.keys() == reference.keys() and records
    assert all(window.start <= changed_at(source, r) < window.end for r in records.values())


@pytest.mark.parametrize("protocol", sorted(SOURCES))
def test_catching_up_over_several_days_across_the_clock_change_reads_each_interval(protocol):
    source = SOURCES[protocol]()
    intervals = scheduled_intervals(source, "2026-10-29", "2026-11-02")
    lengths = [i.end - i.start for i in intervals]
    assert lengths == [timedelta(hours=24)] * 3 + [timedelta(hours=25), timedelta(hours=24)]

    read_keys: set[str] = set()
    for interval in intervals:
        start = coerce_datetime(interval.start)
        end = coerce_datetime(interval.end)
        query = pipeline.query_for_run(source, start, end)
        assert query.updated.end - query.updated.start == (end - start) + source.lookback
        read_keys |= read(source, query).keys()

    # Together the runs cover every change from the first interval's lookback to the last's end.
    first, last = plain(intervals[0].start) - source.lookback, plain(intervals[-1].end)
    assert read_keys == read(source, Query(updated=Window(first, last))).keys()
    assert read_keys


@pytest.mark.parametrize("protocol", sorted(SOURCES))
def test_a_manual_trigger_reads_the_interval_its_logical_date_infers(protocol):
    source = SOURCES[protocol]()
    # The trigger form's logical date is when the user pressed the button.
    pressed = pendulum.datetime(2026, 10, 20, 14, 30, tz="UTC")
    interval = timetable(source).infer_manual_data_interval(run_after=pressed)
    start, end = coerce_datetime(interval.start), coerce_datetime(interval.end)

    query = pipeline.query_for_run(source, start, end)

    yesterday = pendulum.datetime(2026, 10, 19, tz=source.timezone)
    assert query.updated == Window(plain(yesterday) - source.lookback, plain(yesterday.add(days=1)))
    assert read(source, query)


# (protocol, first day, end day exclusive, hours): the spring and the autumn clock change. The
# ArcGIS layer holds only the 90 days before the simulator's clock (2026-11-01).
BACKFILLS = [
    *[(p, "2026-03-07", "2026-03-10", 71) for p in sorted(SOURCES) if p != "arcgis"],
    *[(p, "2026-10-31", "2026-11-02", 49) for p in sorted(SOURCES)],
]


@pytest.mark.parametrize(("protocol", "first", "end", "hours"), BACKFILLS)
def test_a_backfill_of_local_days_across_a_clock_change_is_read(protocol, first, end, hours):
    source = SOURCES[protocol]()
    query = pipeline.query_for_run(source, None, None, first, end)
    assert plain(query.events.end) - plain(query.events.start) == timedelta(hours=hours)
    records = read(source, query)
    assert records
    for record in records.values():
        assert query.events.start <= event_time(source, record) < query.events.end


def event_time(source: SourceConfig, record: dict) -> datetime:
    # Each connector reads its own time format; its updated_at reads the event field the same way.
    as_event = dataclasses.replace(source, updated_field=source.event_time_field)
    return connector_for(as_event).updated_at(record)


def test_a_naive_interval_is_refused_with_a_reason():
    source = get_source("service_requests")
    with pytest.raises(ValueError, match="no time zone"):
        pipeline.query_for_run(source, datetime(2026, 3, 7), datetime(2026, 3, 8))


def test_a_run_without_interval_of_a_source_without_change_times_says_what_to_pass():
    source = dataclasses.replace(
        get_source("traffic_crashes"), updated_field=None, lookback=timedelta(0)
    )
    with pytest.raises(pipeline.RunScopeError) as raised:
        pipeline.query_for_run(source, None, None)
    message = str(raised.value)
    assert "'traffic_crashes'" in message and "updated_field" in message
    assert "start and end" in message and "logical date" in message
