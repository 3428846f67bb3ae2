"""The CKAN DataStore connector against a local server answering in CKAN's documented shapes."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import fake_http
import pytest

from civic_warehouse.catalog import SourceConfig
from civic_warehouse.connectors import connector_for
from civic_warehouse.connectors.base import Query, Window
from civic_warehouse.connectors.http import HttpClient, SourceError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "city-apis"
ACTION = "/api/3/action/datastore_search"
RESOURCE = "2968e2c0-d479-49ba-a884-4ef523ada3c0"
NEW_YORK = ZoneInfo("America/New_York")


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


# -- a tiny HTTP server --------------------------------------------------------------------------


class FakeServer(fake_http.FakeServer):
    def offsets(self) -> list[str]:
        return [q.get("offset", "") for _path, q in self.requests]


@pytest.fixture(scope="module")
def http_server() -> Iterator[tuple[str, dict[str, FakeServer]]]:
    with fake_http.serving("application/json;charset=utf-8") as served:
        yield served


@pytest.fixture
def server(http_server) -> FakeServer:
    url, current = http_server
    fake = FakeServer()
    fake.url = url
    current["server"] = fake
    return fake


# -- a fake datastore_search ---------------------------------------------------------------------

FIELDS = [
    {"type": "int", "id": "_id"},
    {"type": "text", "id": "case_enquiry_id"},
    {"type": "timestamp", "id": "open_dt"},
    {"type": "timestamp", "id": "last_modified"},
    {"type": "text", "id": "case_title"},
    {"type": "numeric", "id": "latitude"},
]


class FakeDatastore:
    """``datastore_search`` over ``records`` in CKAN's documented envelope.

    ``cap``: CKAN's silent limit cap (32000 on real sites; echoed back as the applied limit).
    """

    def __init__(self, records: list[dict[str, Any]], *, cap: int = 32000) -> None:
        self.records = records
        self.cap = cap

    def __call__(self, path: str, params: dict[str, str]) -> tuple[int, Any]:
        if path != ACTION:
            return 400, f"Bad request - Action name not known: {path.rsplit('/', 1)[-1]}"
        if params.get("resource_id") != RESOURCE:
            return 404, fixture("ckan_error_404_not_found.json")
        rows = list(self.records)
        for term in reversed([t.strip() for t in params.get("sort", "").split(",") if t.strip()]):
            field, direction = term.split()
            if field not in {f["id"] for f in FIELDS}:
                return 409, {"success": False, "error": {"sort": [f'field "{field}" not in table'], "__type": "Validation Error"}}  # fmt: skip
            rows.sort(key=lambda r, f=field: r[f], reverse=direction == "desc")
        limit = min(int(params.get("limit", 100)), self.cap)
        offset = int(params.get("offset", 0))
        query = f"limit={limit}&resource_id={RESOURCE}"
        return 200, {
            "help": "https://data.example.gov/api/3/action/help_show?name=datastore_search",
            "success": True,
            "result": {
                "include_total": True,
                "resource_id": RESOURCE,
                "fields": FIELDS,
                "records_format": "objects",
                "records": rows[offset : offset + limit],
                "limit": limit,
                "total": len(rows),
                "_links": {
                    "start": f"{ACTION}?{query}",
                    "next": f"{ACTION}?offset={offset + limit}&{query}",
                },
            },
        }


def cases(count: int, *, opened: list[str] | None = None) -> list[dict[str, Any]]:
    """311 cases with typed values; served out of key order so the sort is what orders them."""
    rows = [
        {
            "_id": n + 1,
            "case_enquiry_id": f"1010{(count - n):05d}",
            "open_dt": opened[n] if opened else f"2026-03-{1 + n % 28:02d}T08:15:00",
            "last_modified": f"2026-04-{1 + n % 28:02d}T17:00:00",
            "case_title": "Pothole Repair (Internal)",
            "latitude": 42.3594,
        }
        for n in range(count)
    ]
    return rows


def make_source(url: str, **changes: Any) -> SourceConfig:
    source = SourceConfig(
        name="boston_311",
        description="311 service requests",
        owner="Citizen Services",
        protocol="ckan",
        base_url=url,
        dataset=RESOURCE,
        business_key=("case_enquiry_id",),
        event_time_field="open_dt",
        updated_field="last_modified",
        timezone="America/New_York",
        raw_table="boston_311",
        page_size=3,
    )
    return dataclasses.replace(source, **changes)


def client(name: str) -> HttpClient:
    return HttpClient(name, sleep=lambda seconds: None)


def read(source: SourceConfig, query: Query | None = None) -> list[Any]:
    return list(connector_for(source, client(source.name)).pages(query or Query()))


def keys(pages: list[Any]) -> list[str]:
    return [r["case_enquiry_id"] for page in pages for r in page.records]


# -- paging --------------------------------------------------------------------------------------


def test_paging_stops_when_the_offset_reaches_the_total(server):
    server.answer = FakeDatastore(cases(6))
    pages = read(make_source(server.url))
    assert keys(pages) == sorted(r["case_enquiry_id"] for r in cases(6))
    # Two full pages and done: no third request for an empty page.
    assert server.offsets() == ["0", "3"]


def test_a_short_last_page_is_the_last_because_of_the_total(server):
    server.answer = FakeDatastore(cases(7))
    pages = read(make_source(server.url))
    assert [len(p.records) for p in pages] == [3, 3, 1]
    assert server.offsets() == ["0", "3", "6"]


def test_a_silently_capped_limit_is_not_the_end(server):
    # The site caps limit at 2 (32000 on real sites) and echoes it: the offset follows what came.
    server.answer = FakeDatastore(cases(7), cap=2)
    pages = read(make_source(server.url, page_size=5))
    assert sorted(keys(pages)) == sorted(r["case_enquiry_id"] for r in cases(7))
    assert len(keys(pages)) == 7
    assert server.offsets() == ["0", "2", "4", "6"]
    assert {q["limit"] for _p, q in server.requests} == {"5"}


def test_requests_name_the_resource_and_a_deterministic_order(server):
    server.answer = FakeDatastore(cases(2))
    read(make_source(server.url))
    path, params = server.requests[0]
    assert path == ACTION
    assert params["resource_id"] == RESOURCE
    assert params["sort"] == "case_enquiry_id asc, _id asc"


def test_an_empty_page_before_the_total_is_an_error(server):
    datastore = FakeDatastore(cases(5))

    def shrinking(path: str, params: dict[str, str]) -> tuple[int, Any]:
        status, body = datastore(path, params)
        if params.get("offset") == "3":
            body["result"]["records"] = []
        return status, body

    server.answer = shrinking
    with pytest.raises(SourceError, match="no records at offset 3 although the resource reports 5"):
        read(make_source(server.url))


# -- time windows, applied client-side -----------------------------------------------------------


def test_an_event_window_keeps_records_by_local_wall_clock_time(server):
    opened = [
        "2026-03-01T23:59:59",  # before the window
        "2026-03-02T00:00:00",  # its first second (05:00 UTC)
        "2026-03-03T23:59:59.500000",
        "2026-03-04T00:00:00",  # its end: excluded
        None,  # no time: cannot be in a window
    ]
    server.answer = FakeDatastore(cases(5, opened=opened))
    window = Window(datetime(2026, 3, 2, 5, tzinfo=UTC), datetime(2026, 3, 4, 5, tzinfo=UTC))
    pages = read(make_source(server.url), Query(events=window))
    assert sorted(r["open_dt"] for page in pages for r in page.records) == [
        "2026-03-02T00:00:00",
        "2026-03-03T23:59:59.500000",
    ]
    assert server.offsets() == ["0", "3"]  # the whole resource was paged


def test_an_updated_window_filters_the_updated_field(server):
    server.answer = FakeDatastore(cases(6))
    window = Window(datetime(2026, 4, 2, tzinfo=NEW_YORK), datetime(2026, 4, 4, tzinfo=NEW_YORK))
    pages = read(make_source(server.url), Query(updated=window))
    assert sorted(r["last_modified"] for page in pages for r in page.records) == [
        "2026-04-02T17:00:00",
        "2026-04-03T17:00:00",
    ]


def test_an_unreadable_time_names_the_field(server):
    server.answer = FakeDatastore(cases(1, opened=["03/02/2026 08:15"]))
    window = Window(datetime(2026, 3, 2, tzinfo=UTC), datetime(2026, 3, 3, tzinfo=UTC))
    with pytest.raises(SourceError, match=r"field 'open_dt': cannot read '03/02/2026 08:15'"):
        read(make_source(server.url), Query(events=window))


# -- errors --------------------------------------------------------------------------------------


def test_an_unknown_resource_is_a_404_naming_ckans_error(server):
    server.answer = FakeDatastore(cases(1))
    with pytest.raises(SourceError) as raised:
        read(make_source(server.url, dataset="00000000-0000-0000-0000-000000000000"))
    message = str(raised.value)
    assert "'boston_311'" in message and "HTTP 404" in message
    assert "Not Found Error" in message and "Resource was not found" in message
    assert len(server.requests) == 1


def test_a_validation_error_is_a_409(server):
    server.answer = lambda path, params: (409, fixture("ckan_error_409_validation.json"))
    with pytest.raises(SourceError) as raised:
        read(make_source(server.url))
    message = str(raised.value)
    assert "HTTP 409" in message and "Validation Error" in message
    assert "Cannot parse JSON" in message
    assert len(server.requests) == 1


def test_an_authorization_error_is_a_403(server):
    body = {
        "help": "https://data.example.gov/api/3/action/help_show?name=datastore_search",
        "success": False,
        "error": {"__type": "Authorization Error", "message": "Access denied"},
    }
    server.answer = lambda path, params: (403, body)
    with pytest.raises(SourceError, match=r"HTTP 403.*Authorization Error.*Access denied"):
        read(make_source(server.url))


def test_an_unsuccessful_answer_with_status_200_is_an_error(server):
    server.answer = lambda path, params: (200, fixture("ckan_error_409_validation.json"))
    with pytest.raises(SourceError, match="CKAN Validation Error: filters: Cannot parse JSON"):
        read(make_source(server.url))


# -- times ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2015-04-20T12:13:22", datetime(2015, 4, 20, 16, 13, 22, tzinfo=UTC)),  # EDT
        ("2026-01-15T12:00:00", datetime(2026, 1, 15, 17, tzinfo=UTC)),  # EST
        ("2026-01-15T12:00:00+00:00", datetime(2026, 1, 15, 12, tzinfo=UTC)),
        (None, None),
    ],
)
def test_updated_at_reads_zoneless_timestamps_in_the_source_zone(server, value, expected):
    source = make_source(server.url)
    moment = connector_for(source, client(source.name)).updated_at({"last_modified": value})
    assert moment == expected
    assert moment is None or moment.utcoffset().total_seconds() == 0
