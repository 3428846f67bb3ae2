"""The Open311 GeoReport v2 connector against a local server built from the spec's payloads."""

from __future__ import annotations

import dataclasses
import itertools
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import fake_http
import pendulum
import pytest

from civic_warehouse.catalog import SourceConfig
from civic_warehouse.connectors import connector_for
from civic_warehouse.connectors.base import Query, Window
from civic_warehouse.connectors.http import HttpClient, SourceError
from civic_warehouse.connectors.open311 import MAX_SPLITS, Open311Connector

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "city-apis"
ENDPOINT = "/open311/v2"
NEW_YORK = ZoneInfo("America/New_York")
NINETY_DAYS = timedelta(days=90)


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


# -- a tiny HTTP server --------------------------------------------------------------------------


class FakeServer(fake_http.FakeServer):
    not_found_body: Any = []

    def spans(self) -> list[tuple[datetime, datetime]]:
        return [
            (datetime.fromisoformat(q["start_date"]), datetime.fromisoformat(q["end_date"]))
            for _path, q in self.requests
        ]


@pytest.fixture(scope="module")
def http_server() -> Iterator[tuple[str, dict[str, FakeServer]]]:
    with fake_http.serving("application/json; charset=utf-8") as served:
        yield served


@pytest.fixture
def server(http_server) -> FakeServer:
    url, current = http_server
    fake = FakeServer()
    fake.url = url
    current["server"] = fake
    return fake


# -- a fake GeoReport v2 endpoint ----------------------------------------------------------------


def error(code: int, description: str) -> list[dict[str, Any]]:
    return [{"code": code, "description": description}]


class FakeGeoReport:
    """``requests.json`` over ``records``, as the spec describes it.

    start_date..end_date (both included, the spec's "latest datetime to include") may span at most
    90 days. ``paging``: honour the page/page_size extension, else ignore it. ``cap``: the most
    requests one answer carries (the spec's 1000).
    """

    def __init__(self, records: list[dict[str, Any]], *, paging: bool = True, cap: int = 1000):
        self.records = sorted(records, key=lambda r: requested(r))
        self.paging = paging
        self.cap = cap

    def __call__(self, path: str, params: dict[str, str]) -> tuple[int, Any]:
        if path != f"{ENDPOINT}/requests.json":
            return 404, error(404, f"no such method: {path}")
        start = datetime.fromisoformat(params["start_date"])
        end = datetime.fromisoformat(params["end_date"])
        if end - start > NINETY_DAYS:
            return 400, error(400, "start_date and end_date may not span more than 90 days")
        rows = [r for r in self.records if start <= requested(r) <= end]
        if self.paging:
            size = min(int(params["page_size"]), self.cap)
            page = int(params["page"])
            return 200, rows[(page - 1) * size : page * size]
        return 200, rows[: self.cap]


def requested(record: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(record["requested_datetime"])


# The spec's offset, UTC and Chicago's two: every time is written with one of them in turn.
OFFSETS = [timezone(timedelta(hours=-8)), UTC, timezone(timedelta(hours=-6)), NEW_YORK]


def stamp(moment: datetime, n: int) -> str:
    return moment.astimezone(OFFSETS[n % len(OFFSETS)]).isoformat().replace("+00:00", "Z")


def service_requests(first: datetime, count: int, step: timedelta) -> list[dict[str, Any]]:
    """``count`` requests cycled from the spec's example, ``step`` apart from ``first``."""
    template = fixture("open311_spec_requests_example.json")
    rows = []
    for n in range(count):
        record = dict(template[n % len(template)])
        moment = first + n * step
        record["service_request_id"] = 700000 + n
        record["requested_datetime"] = stamp(moment, n)
        record["updated_datetime"] = stamp(moment + timedelta(hours=1), n + 1)
        rows.append(record)
    return rows


def make_source(url: str, **changes: Any) -> SourceConfig:
    source = SourceConfig(
        name="service_requests_311",
        description="311 service requests",
        owner="Citizen Services",
        protocol="open311",
        base_url=url + ENDPOINT,
        dataset="requests",
        business_key=("service_request_id",),
        event_time_field="requested_datetime",
        updated_field="updated_datetime",
        timezone="America/New_York",
        raw_table="service_requests_311",
        page_size=1000,
    )
    return dataclasses.replace(source, **changes)


def client(name: str) -> HttpClient:
    return HttpClient(name, sleep=lambda seconds: None)


def read(source: SourceConfig, query: Query) -> list[Any]:
    return list(connector_for(source, client(source.name)).pages(query))


def ids(pages: list[Any]) -> list[int]:
    return [r["service_request_id"] for page in pages for r in page.records]


def local(*args: int) -> datetime:
    return datetime(*args, tzinfo=NEW_YORK)


# -- chunks of at most 90 days -------------------------------------------------------------------


def test_a_long_window_is_walked_in_chunks_of_at_most_90_days(server):
    records = service_requests(local(2025, 12, 20), 120, timedelta(days=2))
    server.answer = FakeGeoReport(records)
    window = Window(local(2026, 1, 1), local(2026, 7, 20))
    pages = read(make_source(server.url), Query(events=window))

    spans = server.spans()
    assert spans[0][0] == window.start and spans[-1][1] == window.end
    assert all(end - start <= NINETY_DAYS for start, end in spans)
    assert all(a[1] == b[0] for a, b in itertools.pairwise(spans))  # contiguous
    assert len(spans) == 3
    assert server.requests[0][1]["start_date"] == "2026-01-01T00:00:00-05:00"
    expected = [
        r["service_request_id"] for r in records if window.start <= requested(r) < window.end
    ]
    assert ids(pages) == expected


def test_chunks_across_the_autumn_clock_change_stay_within_90_days(server):
    server.answer = FakeGeoReport([])
    window = Window(local(2026, 9, 1), local(2027, 1, 1))
    read(make_source(server.url), Query(events=window))
    assert all(end - start <= NINETY_DAYS for start, end in server.spans())
    assert server.requests[0][1]["end_date"] == "2026-11-29T23:00:00-05:00"


@pytest.mark.parametrize(
    "zone",
    [pendulum.timezone("America/New_York"), pendulum.UTC, UTC, NEW_YORK],
    ids=["pendulum New York", "pendulum UTC", "stdlib UTC", "stdlib New York"],
)
def test_a_window_of_pendulum_datetimes_in_any_zone_is_read(server, zone):
    """Airflow hands over pendulum DateTimes; arithmetic on one that carries a standard-library
    zone used to drop the zone and fail comparing naive and aware times."""
    records = service_requests(local(2026, 10, 31, 12), 30, timedelta(hours=1))
    server.answer = FakeGeoReport(records)
    start = pendulum.datetime(2026, 11, 1, tz="America/New_York").astimezone(zone)
    end = pendulum.datetime(2026, 11, 2, tz="America/New_York").astimezone(zone)

    pages = read(make_source(server.url), Query(events=Window(start, end)))

    assert server.requests[0][1]["start_date"] == "2026-11-01T00:00:00-04:00"
    assert server.requests[-1][1]["end_date"] == "2026-11-02T00:00:00-05:00"
    assert ids(pages) == [r["service_request_id"] for r in records if start <= requested(r) < end]
    assert len(ids(pages)) == 18  # the 12 made before midnight on the 31st are outside


def test_a_request_on_a_chunk_edge_is_served_once(server):
    start = local(2026, 1, 1)
    edge = start + NINETY_DAYS  # end_date of the first chunk, start_date of the second
    records = service_requests(edge - timedelta(hours=1), 3, timedelta(hours=1))
    server.answer = FakeGeoReport(records)
    pages = read(make_source(server.url), Query(events=Window(start, start + 2 * NINETY_DAYS)))
    assert sorted(ids(pages)) == [700000, 700001, 700002]


# -- pages within a chunk ------------------------------------------------------------------------


@pytest.mark.parametrize(("count", "pages_asked"), [(7, ["1", "2", "3"]), (6, ["1", "2", "3"])])
def test_a_chunk_is_paged_until_a_short_or_empty_page(server, count, pages_asked):
    records = service_requests(local(2026, 3, 2), count, timedelta(hours=3))
    server.answer = FakeGeoReport(records)
    pages = read(
        make_source(server.url, page_size=3),
        Query(events=Window(local(2026, 3, 1), local(2026, 3, 31))),
    )
    assert ids(pages) == [700000 + n for n in range(count)]
    assert [q["page"] for _p, q in server.requests] == pages_asked
    assert {q["page_size"] for _p, q in server.requests} == {"3"}


def test_a_page_number_past_the_end_answered_with_the_last_page_ends_the_chunk(server):
    geo = FakeGeoReport(service_requests(local(2026, 3, 2), 6, timedelta(hours=3)))

    def clamping(path: str, params: dict[str, str]) -> tuple[int, Any]:
        if int(params["page"]) > 5:
            return 400, error(400, "the client kept paging")
        return geo(path, params | {"page": str(min(int(params["page"]), 2))})

    server.answer = clamping
    window = Window(local(2026, 3, 1), local(2026, 3, 31))
    pages = read(make_source(server.url, page_size=3), Query(events=window))
    assert ids(pages) == [700000 + n for n in range(6)]
    assert [q["page"] for _p, q in server.requests] == ["1", "2", "3"]


def test_paging_that_wraps_back_to_the_first_page_is_an_error(server):
    geo = FakeGeoReport(service_requests(local(2026, 3, 2), 9, timedelta(hours=3)))

    def wrapping(path: str, params: dict[str, str]) -> tuple[int, Any]:
        return geo(path, params | {"page": str((int(params["page"]) - 1) % 2 + 1)})

    server.answer = wrapping
    window = Window(local(2026, 3, 1), local(2026, 3, 31))
    with pytest.raises(SourceError, match="page 3 repeats page 1"):
        read(make_source(server.url, page_size=3), Query(events=window))


def test_page_size_is_capped_at_1000(server):
    server.answer = FakeGeoReport(service_requests(local(2026, 3, 2), 2, timedelta(hours=1)))
    read(
        make_source(server.url, page_size=5000),
        Query(events=Window(local(2026, 3, 1), local(2026, 3, 3))),
    )
    assert server.requests[0][1]["page_size"] == "1000"


def test_a_server_that_ignores_paging_has_its_chunks_split(server):
    window = Window(local(2026, 3, 1), local(2026, 5, 30))
    records = service_requests(local(2026, 3, 2), 9, timedelta(days=5))
    # One more exactly where the chunk is first halved: both halves' answers include it.
    start, end = window.start.astimezone(UTC), window.end.astimezone(UTC)
    middle = start + (end - start) // 2
    records += service_requests(middle, 1, timedelta(0))
    records[-1]["service_request_id"] = 700009
    server.answer = FakeGeoReport(records, paging=False, cap=3)
    pages = read(make_source(server.url, page_size=3), Query(events=window))

    assert sorted(ids(pages)) == [700000 + n for n in range(10)]
    assert len(ids(pages)) == 10  # nothing twice
    first, second = server.requests[0][1], server.requests[1][1]
    assert (first["page"], second["page"]) == ("1", "2")
    assert first["start_date"] == second["start_date"] and first["end_date"] == second["end_date"]
    assert all(len(page.records) < 3 for page in pages)
    assert len(server.requests) > 3


def test_splitting_is_bounded(server):
    same_moment = service_requests(local(2026, 3, 2, 9), 4, timedelta(0))
    server.answer = FakeGeoReport(same_moment, paging=False, cap=3)
    window = Window(local(2026, 3, 1), local(2026, 3, 31))
    with pytest.raises(SourceError, match="ignores paging: they cannot all be read"):
        read(make_source(server.url, page_size=3), Query(events=window))
    # No span narrower than MAX_SPLITS halvings of the chunk (give or take a rounded second).
    narrowest = min(end - start for start, end in server.spans())
    assert narrowest >= (window.end - window.start) / 2**MAX_SPLITS - timedelta(seconds=1)
    assert len(server.requests) <= 2 + 2 * MAX_SPLITS


# -- queries without an event window -------------------------------------------------------------


def test_an_updated_window_reads_90_days_back_and_keeps_what_changed_in_it(server):
    template = fixture("open311_spec_requests_example.json")[0]
    records = [
        template | {"service_request_id": 1, "requested_datetime": "2026-04-01T09:00:00-04:00",
                    "updated_datetime": "2026-06-01T12:00:00-04:00"},
        template | {"service_request_id": 2, "requested_datetime": "2026-04-01T10:00:00-04:00",
                    "updated_datetime": "2026-05-01T12:00:00-04:00"},
        template | {"service_request_id": 3, "requested_datetime": "2026-05-31T23:30:00Z",
                    "updated_datetime": "2026-06-01T16:00:00Z"},
    ]  # fmt: skip
    server.answer = FakeGeoReport(records)
    updated = Window(local(2026, 6, 1), local(2026, 6, 2))
    pages = read(make_source(server.url), Query(updated=updated))

    assert server.requests[0][1]["start_date"] == "2026-03-03T00:00:00-05:00"
    assert server.requests[-1][1]["end_date"] == "2026-06-02T00:00:00-04:00"
    assert sorted(ids(pages)) == [1, 3]


def test_no_window_walks_back_365_days_from_now(server):
    server.answer = FakeGeoReport([])
    now = datetime(2026, 6, 1, 12, tzinfo=UTC)
    source = make_source(server.url)
    list(Open311Connector(source, client(source.name), clock=lambda: now).pages(Query()))
    spans = server.spans()
    assert spans[0][0] == now - timedelta(days=365)
    assert spans[-1][1] == now
    assert len(spans) == 5


def test_the_earliest_date_of_a_full_walk_is_configurable(server):
    server.answer = FakeGeoReport([])
    now = datetime(2026, 6, 1, 12, tzinfo=UTC)
    source = make_source(server.url)
    connector = Open311Connector(
        source, client(source.name), earliest=now - timedelta(days=30), clock=lambda: now
    )
    list(connector.pages(Query()))
    assert server.spans() == [(now - timedelta(days=30), now)]


# -- errors --------------------------------------------------------------------------------------


def test_an_error_array_fails_at_once_with_code_and_description(server):
    server.answer = lambda path, params: (403, fixture("open311_spec_error_403.json"))
    with pytest.raises(SourceError) as raised:
        read(make_source(server.url), Query(events=Window(local(2026, 3, 1), local(2026, 3, 2))))
    message = str(raised.value)
    assert "'service_requests_311'" in message and "HTTP 403" in message
    assert "403" in message and "Invalid api_key received" in message
    assert len(server.requests) == 1


def test_an_unknown_endpoint_is_a_404(server):
    server.answer = FakeGeoReport([])
    with pytest.raises(SourceError, match=r"HTTP 404.*no such method"):
        read(
            make_source(server.url, dataset="request"),
            Query(events=Window(local(2026, 3, 1), local(2026, 3, 2))),
        )


def test_an_answer_that_is_not_an_array_is_refused(server):
    server.answer = lambda path, params: (200, {"service_requests": []})
    with pytest.raises(SourceError, match="expected a JSON array of requests, got dict"):
        read(make_source(server.url), Query(events=Window(local(2026, 3, 1), local(2026, 3, 2))))


# -- times ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2010-04-14T06:37:38-08:00", datetime(2010, 4, 14, 14, 37, 38, tzinfo=UTC)),  # the spec's
        ("2014-12-17T18:39:03-06:00", datetime(2014, 12, 18, 0, 39, 3, tzinfo=UTC)),  # Chicago CST
        ("2015-10-09T15:26:59-05:00", datetime(2015, 10, 9, 20, 26, 59, tzinfo=UTC)),  # Chicago CDT
        ("2026-03-02T05:00:00Z", datetime(2026, 3, 2, 5, tzinfo=UTC)),
        ("2026-03-02T00:00:00", datetime(2026, 3, 2, 5, tzinfo=UTC)),  # no offset: the city's zone
        (None, None),
    ],
)
def test_updated_at_reads_mixed_offsets_as_utc(server, value, expected):
    source = make_source(server.url)
    moment = connector_for(source, client(source.name)).updated_at({"updated_datetime": value})
    assert moment == expected
    assert moment is None or moment.utcoffset() == timedelta(0)


def test_updated_at_of_the_spec_example(server):
    source = make_source(server.url)
    connector = connector_for(source, client(source.name))
    first, second = fixture("open311_spec_requests_example.json")
    assert connector.updated_at(first) == datetime(2010, 4, 14, 14, 37, 38, tzinfo=UTC)
    assert connector.updated_at(second) == datetime(2010, 4, 19, 14, 37, 38, tzinfo=UTC)
