"""Simulated 311 service requests: the generator and its Open311 GeoReport v2 endpoint."""

from __future__ import annotations

import collections
import datetime as dt
import re

import pytest
import requests

from city_simulator import open311, service_requests
from city_simulator.city import LAT_MAX, LAT_MIN, LON_MAX, LON_MIN, NEIGHBORHOODS
from city_simulator.server import SimulatorServer
from city_simulator.service_requests import (
    CLOSED,
    DEPARTMENTS,
    IN_PROGRESS,
    OPEN,
    SERVICE_TYPES,
    day_requests,
    find_request,
    service_requests_between,
    status_history,
    to_utc,
)

# Spans the March daylight-saving change, so timestamps come with both -05:00 and -04:00.
FIRST_DAY, LAST_DAY = dt.date(2026, 1, 1), dt.date(2026, 6, 30)
CLOCK = dt.datetime(2026, 7, 1)
SPEC_FIELDS = ["service_request_id", "status", "status_notes", "service_name", "service_code",
               "description", "agency_responsible", "service_notice", "requested_datetime",
               "updated_datetime", "expected_datetime", "address", "address_id", "zipcode",
               "lat", "long", "media_url"]  # fmt: skip
OFFSET_STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(Z|[+-]\d\d:\d\d)$")


@pytest.fixture(scope="module")
def server():
    with SimulatorServer(first_day=FIRST_DAY, last_day=LAST_DAY) as srv:
        yield srv


@pytest.fixture
def sim(server):
    server.faults.clear()
    server.requests_log.clear()
    server.service_requests.as_of = CLOCK
    yield server
    server.service_requests.as_of = CLOCK


@pytest.fixture(scope="module")
def year() -> list[dict]:
    return service_requests_between(dt.datetime(2026, 1, 1), dt.datetime(2026, 11, 1))


def get(sim: SimulatorServer, resource: str = "requests.json", **params) -> requests.Response:
    return requests.get(f"{sim.url}/open311/v2/{resource}", params=params, timeout=30)


def search(sim: SimulatorServer, **params) -> list[dict]:
    response = get(sim, **params)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == "application/json; charset=utf-8"
    return response.json()


def instant(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).astimezone(dt.UTC)


# --- the generator ------------------------------------------------------------------------------


def test_a_day_regenerates_identically_and_depends_on_the_seed():
    day = dt.date(2026, 5, 12)
    first = day_requests(day)
    day_requests.cache_clear()  # force a real second generation
    assert day_requests(day) == first
    assert day_requests(day, seed=7) != first


def test_thirty_days_hold_a_mid_size_citys_volume():
    records = service_requests_between(dt.datetime(2026, 4, 1), dt.datetime(2026, 5, 1))
    assert 2500 < len(records) < 5000


def test_ids_are_stable_business_keys_that_name_their_day(year):
    ids = [r["service_request_id"] for r in year]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"SR26-\d{7}", i) for i in ids)
    for record in year[::97]:
        request = find_request(record["service_request_id"])
        assert request.requested == record["requested_datetime"]
    with pytest.raises(KeyError):
        find_request("SR26-0001999")
    with pytest.raises(KeyError):
        find_request("not-an-id")


def test_volume_averages_about_120_a_day_and_is_lower_at_weekends(year):
    per_day = collections.Counter(r["requested_datetime"].date() for r in year)
    assert 105 < len(year) / len(per_day) < 135
    weekday = [n for d, n in per_day.items() if d.weekday() < 5]
    weekend = [n for d, n in per_day.items() if d.weekday() >= 5]
    assert sum(weekend) / len(weekend) < 0.7 * sum(weekday) / len(weekday)


def test_fifteen_service_types_belong_to_the_five_departments(year):
    assert len(SERVICE_TYPES) == 15
    assert {t.department for t in SERVICE_TYPES} == set(DEPARTMENTS)
    grass = next(t for t in SERVICE_TYPES if t.code == "GRASS")
    assert grass.problem == "GRASS COMPLAINTS" and grass.department == "Housing Inspection"
    mix = collections.Counter(r["service_code"] for r in year)
    assert set(mix) == {t.code for t in SERVICE_TYPES}
    by_month = collections.Counter(
        r["requested_datetime"].month for r in year if r["service_code"] == "GRASS"
    )
    assert by_month[7] > 10 * by_month[1]  # grass complaints are a summer thing


def test_addresses_are_blocks_inside_the_city_with_a_zipcode(year):
    assert set(service_requests.ZIPCODES) == {n.name for n in NEIGHBORHOODS}
    for record in year[::13]:
        assert re.fullmatch(r"\d+XX .+", record["address"]), record["address"]
        assert record["zipcode"] == service_requests.ZIPCODES[record["neighborhood"]]
        if record["lat"] is not None:
            assert LAT_MIN <= record["lat"] <= LAT_MAX
            assert LON_MIN <= record["long"] <= LON_MAX


def test_histories_run_open_then_in_progress_then_closed_and_never_backwards(year):
    for record in year[::7]:
        history = status_history(record["service_request_id"])
        statuses = [change["status"] for change in history]
        assert statuses in ([OPEN, CLOSED], [OPEN, IN_PROGRESS, CLOSED])
        times = [change["at"] for change in history]
        assert times == sorted(times) and times[0] == record["requested_datetime"]
        assert history[-1]["resolution_code"] is not None


def test_a_snapshot_shows_the_last_change_at_or_before_as_of():
    srid = next(
        r.service_request_id for r in day_requests(dt.date(2026, 5, 4)) if len(r.history) == 3
    )
    opened, started, closed = status_history(srid)
    start, end = opened["at"], opened["at"] + dt.timedelta(seconds=1)

    def status_at(as_of: dt.datetime) -> tuple:
        (record,) = [
            r
            for r in service_requests_between(start, end, as_of=as_of)
            if r["service_request_id"] == srid
        ]
        return record["status"], record["updated_datetime"], record["closed_datetime"]

    assert status_at(started["at"] - dt.timedelta(seconds=1)) == (OPEN, opened["at"], None)
    assert status_at(started["at"]) == (IN_PROGRESS, started["at"], None)
    assert status_at(closed["at"]) == (CLOSED, closed["at"], closed["at"])
    assert service_requests_between(start, end, as_of=start - dt.timedelta(seconds=1)) == []


def test_some_requests_miss_their_target_and_recent_ones_are_still_open(year):
    closed = [r for r in year if r["status"] == CLOSED]
    late = [r for r in closed if r["closed_datetime"] > r["expected_datetime"]]
    assert 0.05 < len(late) / len(closed) < 0.5
    last_week = [r for r in year if r["requested_datetime"] >= dt.datetime(2026, 10, 25)]
    still_open = [r for r in last_week if r["status"] != CLOSED]
    assert len(still_open) / len(last_week) > 0.4
    january = [r for r in year if r["requested_datetime"] < dt.datetime(2026, 2, 1)]
    assert sum(r["status"] != CLOSED for r in january) / len(january) < 0.05


def test_the_default_as_of_is_the_end_of_the_simulators_default_range():
    window = (dt.datetime(2026, 10, 31), dt.datetime(2026, 11, 2))
    records = service_requests_between(*window)
    assert records and max(r["requested_datetime"] for r in records) < dt.datetime(2026, 11, 1)
    assert service_requests_between(*window, as_of=dt.datetime(2026, 11, 2)) != records


def test_duplicates_repeat_an_earlier_request_at_the_same_address(year):
    duplicates = [r for r in year if r["resolution_code"] == "DUPLICATE"]
    assert 0.02 < len(duplicates) / len(year) < 0.12
    for record in duplicates:
        parent = find_request(record["parent_request_id"])
        assert parent.requested <= record["requested_datetime"]
        assert parent.address == record["address"] and parent.type.code == record["service_code"]
        assert record["status_notes"] == f"Duplicate of {parent.service_request_id}."


# --- the Open311 endpoint -----------------------------------------------------------------------


def test_the_service_list_follows_the_spec(sim):
    services = get(sim, "services.json").json()
    assert [s["service_code"] for s in services] == [t.code for t in SERVICE_TYPES]
    for service in services:
        assert set(service) == {"service_code", "service_name", "description", "metadata",
                                "type", "keywords", "group"}  # fmt: skip
        assert service["metadata"] is False and service["type"] == "realtime"


def test_records_carry_every_spec_field_with_nulls_present(sim):
    records = search(
        sim, start_date="2026-05-01T00:00:00-04:00", end_date="2026-05-08T00:00:00-04:00"
    )
    assert records
    for record in records:
        assert list(record) == SPEC_FIELDS
        assert record["status"] in ("open", "closed")
        assert OFFSET_STAMP.match(record["requested_datetime"])
        assert OFFSET_STAMP.match(record["updated_datetime"])
        assert record["lat"] is None or isinstance(record["lat"], float)
        assert record["long"] is None or isinstance(record["long"], float)
        assert isinstance(record["address_id"], int) and isinstance(record["zipcode"], str)
    assert any(r["description"] is None for r in records)
    assert any(r["media_url"] is None for r in records) and any(r["media_url"] for r in records)


def test_the_default_window_is_the_90_days_before_the_clock_capped_at_1000(sim):
    records = search(sim)
    assert len(records) == open311.DEFAULT_PAGE_SIZE
    requested = [instant(r["requested_datetime"]) for r in records]
    assert requested == sorted(requested, reverse=True)  # newest first
    assert requested[0] < to_utc(CLOCK)


def test_the_default_window_follows_the_clock_and_stops_at_the_first_served_day(sim):
    clock = dt.datetime(2026, 3, 1, 12, 0)
    sim.service_requests.as_of = clock
    records, page = [], 1
    while batch := search(sim, page=page):
        records.extend(batch)
        page += 1
    truth = service_requests_between(dt.datetime.combine(FIRST_DAY, dt.time()), clock, clock)
    assert [r["service_request_id"] for r in records] == [
        r["service_request_id"] for r in reversed(truth)
    ]
    assert instant(records[-1]["requested_datetime"]) < to_utc(dt.datetime(2026, 1, 1, 3))


def test_pages_cover_every_request_in_the_window_exactly_once(sim):
    window = {"start_date": "2026-02-20T00:00:00-05:00", "end_date": "2026-03-20T00:00:00-04:00"}
    ids, page = [], 1
    while True:
        records = search(sim, page=page, page_size=700, **window)
        ids.extend(r["service_request_id"] for r in records)
        if len(records) < 700:
            break
        page += 1
    assert page > 2
    truth = service_requests_between(dt.datetime(2026, 2, 20), dt.datetime(2026, 3, 20), CLOCK)
    assert len(ids) == len(set(ids))
    assert sorted(ids) == sorted(r["service_request_id"] for r in truth)


def test_page_size_is_clamped_to_1000(sim):
    window = {"start_date": "2026-04-01T00:00:00Z", "end_date": "2026-06-01T00:00:00Z"}
    assert len(search(sim, page_size=5000, **window)) == open311.MAX_PAGE_SIZE


def test_a_window_longer_than_90_days_is_refused(sim):
    ok = get(sim, start_date="2026-01-01T00:00:00Z", end_date="2026-04-01T00:00:00Z")
    assert ok.status_code == 200  # exactly 90 days
    response = get(sim, start_date="2026-01-01T00:00:00Z", end_date="2026-04-01T00:00:01Z")
    assert response.status_code == 400
    (error,) = response.json()
    assert error["code"] == 400 and "90 days" in error["description"]


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({"start_date": "2026-03-01T00:00:00"}, 400),  # no offset
        ({"start_date": "2026-03-01T00:00:00+00:00"}, 400),  # a raw "+" arrives as a space
        ({"start_date": "2026-03-10T00:00:00Z", "end_date": "2026-03-01T00:00:00Z"}, 400),
        ({"status": "pending"}, 400),
        ({"page": "0"}, 400),
        ({"page_size": "many"}, 400),
        ({"service_code": "UFO"}, 404),
        ({"jurisdiction_id": "example.gov"}, 404),
    ],
)
def test_bad_arguments_get_an_error_array(sim, params, status):
    url = f"{sim.url}/open311/v2/requests.json?" + "&".join(f"{k}={v}" for k, v in params.items())
    response = requests.get(url, timeout=30)
    assert response.status_code == status
    (error,) = response.json()
    assert error["code"] == status and error["description"]


def test_unknown_resources_are_404_arrays(sim):
    for resource in ("requests/SR26-0001999.json", "nothing.json", "services/UFO.json"):
        response = get(sim, resource)
        assert response.status_code == 404
        assert response.json()[0]["code"] == 404


def test_mixed_offsets_all_parse_to_the_true_instant(sim):
    window = {"start_date": "2026-02-01T00:00:00Z", "end_date": "2026-04-30T00:00:00Z"}
    records, page = [], 1
    while batch := search(sim, page=page, **window):
        records.extend(batch)
        page += 1
    zulu = [r for r in records if r["requested_datetime"].endswith("Z")]
    assert 0.02 < len(zulu) / len(records) < 0.09
    offsets = collections.Counter(r["requested_datetime"][-6:] for r in records if r not in zulu)
    assert set(offsets) == {"-05:00", "-04:00"}
    for record in records:
        request = find_request(record["service_request_id"])
        assert instant(record["requested_datetime"]) == to_utc(request.requested)
        assert instant(record["expected_datetime"]) == to_utc(request.expected)
        assert record["requested_datetime"].endswith("Z") == record["updated_datetime"].endswith(
            "Z"
        )


def test_the_window_is_an_instant_range_whatever_offset_the_client_uses(sim):
    local = search(
        sim, start_date="2026-03-08T00:00:00-05:00", end_date="2026-03-09T00:00:00-04:00"
    )
    utc = search(sim, start_date="2026-03-08T05:00:00Z", end_date="2026-03-09T04:00:00Z")
    assert local == utc
    truth = service_requests_between(dt.datetime(2026, 3, 8), dt.datetime(2026, 3, 9), CLOCK)
    assert {r["service_request_id"] for r in local} == {r["service_request_id"] for r in truth}


def test_status_and_service_code_filter_as_of_the_clock(sim):
    window = {"start_date": "2026-06-25T00:00:00Z", "end_date": "2026-07-01T00:00:00Z"}
    everything = search(sim, **window)
    opened = search(sim, status="open", **window)
    closed = search(sim, status="closed", **window)
    assert opened and closed
    assert {r["status"] for r in opened} == {"open"} and {r["status"] for r in closed} == {"closed"}
    assert len(opened) + len(closed) == len(everything) < open311.MAX_PAGE_SIZE
    assert search(sim, status="open,closed", **window) == everything
    potholes = search(sim, service_code="POTHOLE,GRASS", **window)
    assert {r["service_code"] for r in potholes} == {"POTHOLE", "GRASS"}


def test_a_request_closes_when_the_clock_passes_its_closing_time(sim):
    request = next(
        r
        for r in day_requests(dt.date(2026, 6, 10))
        if r.history[-1].at - r.requested > dt.timedelta(days=2)
    )
    closing = request.history[-1]
    path = f"requests/{request.service_request_id}.json"
    sim.service_requests.as_of = closing.at - dt.timedelta(seconds=1)
    (before,) = get(sim, path).json()
    assert before["status"] == "open"
    assert instant(before["updated_datetime"]) < to_utc(closing.at)
    sim.service_requests.as_of = closing.at
    (after,) = get(sim, path).json()
    assert after["status"] == "closed" and after["status_notes"] == closing.note
    assert instant(after["updated_datetime"]) == to_utc(closing.at)
    sim.service_requests.as_of = request.requested - dt.timedelta(seconds=1)
    assert get(sim, path).status_code == 404  # not opened yet


def test_service_request_id_overrides_the_other_arguments(sim):
    ids = "SR26-0100001,SR26-0150002,SR26-0001999"
    records = search(sim, service_request_id=ids, status="closed", start_date="bogus")
    assert [r["service_request_id"] for r in records] == ["SR26-0100001", "SR26-0150002"]


def test_updated_after_selects_by_last_change(sim):
    window = {"updated_after": "2026-06-29T00:00:00Z", "updated_before": "2026-06-30T00:00:00Z"}
    records, page = [], 1
    while batch := search(sim, page=page, **window):
        records.extend(batch)
        page += 1
    assert records
    low, high = instant(window["updated_after"]), instant(window["updated_before"])
    assert all(low <= instant(r["updated_datetime"]) < high for r in records)
    assert min(instant(r["requested_datetime"]) for r in records) < low - dt.timedelta(days=7)


def test_faults_and_the_request_log_apply_to_open311_routes(sim):
    sim.faults.append((500, {}, b"oops"))
    assert get(sim, "services.json").status_code == 500
    assert get(sim, "services.json").status_code == 200
    assert [path for path, _ in sim.requests_log] == ["/open311/v2/services.json"] * 2
