"""One reading of served times for every connector (``connectors.times``)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from civic_warehouse.catalog import get_source
from civic_warehouse.connectors import Query, Window, connector_for
from civic_warehouse.connectors.arcgis import TEXT_DATE_FORMATS
from civic_warehouse.connectors.http import SourceError
from civic_warehouse.connectors.times import TimeReader, parse_time, time_filters

NEW_YORK = ZoneInfo("America/New_York")
NOON_UTC = datetime(2026, 3, 2, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "options", "expected"),
    [
        ("2026-03-02T12:00:00Z", {}, NOON_UTC),
        ("2026-03-02T07:00:00-05:00", {}, NOON_UTC),
        ("2026-03-02T07:00:00.000", {}, NOON_UTC),  # no zone: the city's wall clock
        (" 2026-03-02T07:00:00 ", {}, NOON_UTC),
        (1772452800000, {"epoch_ms": True}, NOON_UTC),
        ("1772452800000", {"epoch_ms": True}, NOON_UTC),
        ("3/2/2026 7:00:00 AM", {"text_formats": TEXT_DATE_FORMATS}, NOON_UTC),
        (None, {}, None),
        ("", {}, None),
    ],
)
def test_served_times_are_read_as_utc_instants(value, options, expected):
    assert parse_time(value, NEW_YORK, **options) == expected


@pytest.mark.parametrize(
    ("value", "options"),
    [
        (1772452800000, {}),  # numbers are times only where the protocol says so (ArcGIS)
        ("1772452800000", {}),
        (True, {"epoch_ms": True}),
        ({"at": "2026-03-02"}, {}),
        ("3/2/2026 7:00:00 AM", {}),
        ("yesterday", {"epoch_ms": True, "text_formats": TEXT_DATE_FORMATS}),
    ],
)
def test_what_is_not_a_time_is_refused_saying_what(value, options):
    with pytest.raises(ValueError, match=r"cannot read .* as a time"):
        parse_time(value, NEW_YORK, **options)


@pytest.mark.parametrize(
    "name", ["calls_for_service", "service_requests", "building_permits", "neighborhoods"]
)
def test_every_connector_reads_change_times_alike(name):
    source = get_source(name)
    if not source.updated_field and source.protocol == "arcgis":
        source = dataclasses.replace(source, updated_field="EditDate")
    connector = connector_for(source)
    field = source.updated_field or "updated_datetime"
    assert connector.updated_at({field: "2026-03-02T12:00:00Z"}) == NOON_UTC
    assert connector.updated_at({}) is None
    with pytest.raises(ValueError) as raised:
        connector.updated_at({field: ["not", "a", "time"]})
    assert name in str(raised.value) and field in str(raised.value)


def test_records_are_kept_inside_the_window_and_an_unreadable_time_names_the_page():
    source = get_source("building_permits")
    window = Window(NOON_UTC, datetime(2026, 3, 3, 12, tzinfo=UTC))
    filters = time_filters(source, Query(events=window))
    reader = TimeReader(source)
    field = source.event_time_field
    assert reader.in_windows({field: "2026-03-02T12:00:00Z"}, filters, "u")
    assert not reader.in_windows({field: "2026-03-03T12:00:00Z"}, filters, "u")  # half-open
    assert not reader.in_windows({}, filters, "u")
    assert reader.in_windows(["not a record"], filters, "u")  # the loader rejects it
    with pytest.raises(SourceError, match=r"building_permits.*page-7.*cannot read 'soon'"):
        reader.in_windows({field: "soon"}, filters, "page-7")


def test_a_window_on_a_field_the_source_lacks_is_refused():
    source = get_source("neighborhoods")
    window = Window(NOON_UTC, datetime(2026, 3, 3, tzinfo=UTC))
    with pytest.raises(ValueError, match=r"neighborhoods.*no updated_field"):
        time_filters(source, Query(updated=window))
