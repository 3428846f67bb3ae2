"""The city-systems simulator: deterministic 911 calls served over real SODA 2.1 HTTP."""

from __future__ import annotations

import collections
import datetime as dt
import gzip
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from city_simulator import calls
from city_simulator.calls import CALLS_DATASET_ID, calls_between, calls_for_day
from city_simulator.city import LAT_MAX, LAT_MIN, LON_MAX, LON_MIN
from city_simulator.server import SimulatorServer

FIRST_DAY, LAST_DAY = dt.date(2026, 3, 1), dt.date(2026, 4, 30)
MARCH = [FIRST_DAY + dt.timedelta(days=i) for i in range(31)]
FLOATING = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.000$")
FIXED = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
TIMES = ("time_received", "time_dispatched", "time_arrived", "time_closed")
NEW_YORK = calls.LOCAL_TZ


@pytest.fixture(scope="module")
def march() -> list[dict]:
    return [r for day in MARCH for r in calls_for_day(day)]


@pytest.fixture(scope="module")
def server():
    with SimulatorServer(first_day=FIRST_DAY, last_day=LAST_DAY) as srv:
        yield srv


@pytest.fixture
def sim(server):
    server.faults.clear()
    server.requests_log.clear()
    return server


def resource(sim: SimulatorServer, dataset_id: str = CALLS_DATASET_ID) -> str:
    return f"{sim.url}/resource/{dataset_id}.json"


def get_rows(sim: SimulatorServer, **params: object) -> list[dict]:
    response = requests.get(resource(sim), params=params, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def page_through(sim: SimulatorServer, page_size: int, **params: object) -> list[dict]:
    rows, offset = [], 0
    while True:
        page = get_rows(sim, **params, **{"$limit": page_size, "$offset": offset})
        rows.extend(page)
        if len(page) < page_size:
            return rows
        offset += page_size


def window(start: str, end: str) -> str:
    return f"time_received >= '{start}' AND time_received < '{end}'"


def local_to_utc(text: str) -> dt.datetime:
    local = dt.datetime.fromisoformat(text).replace(tzinfo=NEW_YORK)
    return local.astimezone(dt.UTC)


def fixed_to_utc(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


# --- generator ----------------------------------------------------------------------------------


def test_a_day_regenerates_identically_and_depends_on_the_seed():
    day = dt.date(2026, 3, 14)
    first = calls_for_day(day)
    calls.day_records.cache_clear()  # force a real second generation
    assert calls_for_day(day) == first
    assert calls_for_day(day, seed=7) != first


def test_returned_records_are_copies_callers_may_change():
    day = dt.date(2026, 3, 14)
    calls_for_day(day)[0]["priority"] = "changed"
    assert calls_for_day(day)[0]["priority"] != "changed"


def test_calls_between_is_the_half_open_window_in_order():
    start, end = dt.datetime(2026, 3, 2, 18, 30), dt.datetime(2026, 3, 4, 6, 0)
    got = calls_between(start, end)
    days = calls_for_day(dt.date(2026, 3, 2)) + calls_for_day(dt.date(2026, 3, 3))
    days += calls_for_day(dt.date(2026, 3, 4))
    expected = [r for r in days if start <= dt.datetime.fromisoformat(r["time_received"]) < end]
    assert got == expected
    keys = [(r["time_received"], r["event_number"]) for r in got]
    assert keys == sorted(keys)


def test_business_keys_and_row_ids_are_well_formed_and_unique(march):
    numbers = [r["event_number"] for r in march]
    assert all(re.fullmatch(r"CFS-202603\d\d-\d{4}", n) for n in numbers)
    assert len(set(numbers)) == len(numbers)
    ids = [r[":id"] for r in march]
    assert all(re.fullmatch(r"row-[a-z2-9]{4}-[a-z2-9]{4}", i) for i in ids)
    assert len(set(ids)) == len(ids)


def test_every_value_is_a_string_and_null_keys_are_left_out(march):
    always = {"event_number", "call_type_code", "call_type", "priority", "time_received"}
    always |= {"time_closed", "unit_type", "disposition_code", "disposition", "block_address"}
    always |= {"neighborhood", "district", ":id", ":created_at", ":updated_at"}
    for record in march:
        assert all(isinstance(v, str) and v for v in record.values()), record
        assert always <= record.keys(), record
        assert ("mru_response_mode" in record) == (record["unit_type"] == "MRU")
        assert ("latitude" in record) == ("longitude" in record)


def test_timestamps_use_the_soda_wire_formats(march):
    for record in march:
        for field in TIMES:
            if field in record:
                assert FLOATING.match(record[field]), record[field]
        assert FIXED.match(record[":created_at"]) and FIXED.match(record[":updated_at"])


def test_received_dispatched_arrived_closed_never_go_backwards(march):
    for record in march:
        stamps = [record[f] for f in TIMES if f in record]
        assert stamps == sorted(stamps), record
        if "time_arrived" in record:
            assert "time_dispatched" in record


def test_nobody_sent_means_no_dispatch_or_arrival(march):
    for record in march:
        phone = record["unit_type"] == "NONE" or record.get("mru_response_mode") == "PHONE"
        assert phone == ("time_dispatched" not in record), record


def test_updated_at_is_shortly_after_closing_in_utc_across_dst():
    # 2026-03-08 and 2026-11-01 are the US daylight-saving changes.
    days = [dt.date(2026, 1, 15), dt.date(2026, 3, 8), dt.date(2026, 7, 15), dt.date(2026, 11, 1)]
    lags = []
    for day in days:
        for record in calls_for_day(day):
            lag = fixed_to_utc(record[":updated_at"]) - local_to_utc(record["time_closed"])
            created = fixed_to_utc(record[":created_at"])
            assert created >= local_to_utc(record["time_received"])
            assert created <= fixed_to_utc(record[":updated_at"])
            lags.append(lag)
    assert min(lags) >= dt.timedelta(0)
    assert max(lags) <= calls.MAX_UPDATE_LAG
    # A wrong UTC offset would push the usual few-minute lag past an hour or below zero.
    quick = sum(lag <= dt.timedelta(minutes=16) for lag in lags)
    assert quick / len(lags) > 0.9


def test_no_floating_time_falls_in_the_spring_forward_gap():
    stamps = [r[f] for r in calls_for_day(dt.date(2026, 3, 8)) for f in TIMES if f in r]
    assert not [s for s in stamps if s.startswith("2026-03-08T02:")]


def test_volume_follows_the_day_and_the_week(march):
    per_day = collections.Counter(r["time_received"][:10] for r in march)
    assert all(450 <= n <= 650 for n in per_day.values()), per_day
    by_hour = collections.Counter(int(r["time_received"][11:13]) for r in march)
    assert sum(by_hour[h] for h in (3, 4, 5)) * 2 < sum(by_hour[h] for h in (15, 16, 17))
    late = collections.Counter(
        dt.date.fromisoformat(r["time_received"][:10]).weekday()
        for r in march
        if r["time_received"][11:13] in ("21", "22", "23")
    )
    assert late[4] + late[5] > late[0] + late[1]  # Friday + Saturday nights beat Monday + Tuesday


def test_priorities_fit_the_call_type(march):
    priorities = collections.defaultdict(set)
    for record in march:
        priorities[record["call_type"]].add(int(record["priority"]))
    assert priorities["SHOTS FIRED"] <= {1, 2}
    assert priorities["BARKING DOG"] == {5}
    assert all(p <= {1, 2, 3, 4, 5} for p in priorities.values())


def test_mru_resolves_almost_all_calls_without_police(march):
    mru = [r for r in march if r["unit_type"] == "MRU"]
    assert len(mru) > 300
    without_police = sum(r["disposition_code"] in ("MRS", "MRF") for r in mru)
    assert 0.95 <= without_police / len(mru) <= 1.0
    assert {r["disposition_code"] for r in mru} <= {"MRS", "MRF", "MPR"}
    assert {r["mru_response_mode"] for r in mru} == {"PHONE", "ON_SCENE"}


def test_mru_works_weekdays_8_to_20_and_police_cover_the_rest(march):
    eligible = {"NOISE COMPLAINT", "NEIGHBOR DISPUTE", "BARKING DOG", "LOITERING", "DISORDERLY"}
    for record in march:
        received = dt.datetime.fromisoformat(record["time_received"])
        on_duty = received.weekday() < 5 and 8 <= received.hour < 20
        if record["unit_type"] == "MRU":
            assert on_duty, record
        elif record["call_type"] in eligible and not on_duty:
            assert record["unit_type"] in ("POLICE", "NONE")


def test_places_are_in_dayton_and_about_one_percent_lack_coordinates(march):
    located = [r for r in march if "latitude" in r]
    assert 0.002 <= 1 - len(located) / len(march) <= 0.03
    for r in located:
        assert LAT_MIN <= float(r["latitude"]) <= LAT_MAX
        assert LON_MIN <= float(r["longitude"]) <= LON_MAX
        assert re.fullmatch(r"-?\d+\.\d{6}", r["longitude"])
    assert all(re.fullmatch(r"\d+XX [A-Z0-9 .-]+", r["block_address"]) for r in march)
    assert {r["district"] for r in march} == {"EAST", "WEST"}
    assert len({r["neighborhood"] for r in march}) >= 20


# --- SODA endpoint ------------------------------------------------------------------------------


def test_paging_returns_each_record_exactly_once(sim):
    where = window("2026-03-02T00:00:00", "2026-03-05T00:00:00")
    rows = page_through(sim, 400, **{"$where": where, "$order": "time_received,event_number"})
    expected = calls_between(dt.datetime(2026, 3, 2), dt.datetime(2026, 3, 5))
    assert [r["event_number"] for r in rows] == [r["event_number"] for r in expected]
    offsets = [int(query["$offset"]) for _, query in sim.requests_log]
    assert offsets == list(range(0, len(expected) + 1, 400))


def test_a_range_reads_the_same_whatever_the_page_size(sim):
    params = {"$where": window("2026-04-10T06:00:00", "2026-04-12T06:00:00"), "$select": ":*,*"}
    small = page_through(sim, 97, **params, **{"$order": ":updated_at DESC, :id"})
    large = page_through(sim, 50_000, **params, **{"$order": ":updated_at DESC, :id"})
    assert small == large
    assert len({r[":id"] for r in small}) == len(small) > 1000


def test_unordered_pages_come_in_a_stable_order(sim):
    params = {"$where": window("2026-03-20T00:00:00", "2026-03-21T00:00:00")}
    assert page_through(sim, 100, **params) == page_through(sim, 1000, **params)


def test_where_bounds_time_received(sim):
    rows = get_rows(
        sim,
        **{"$where": window("2026-03-10T12:00:00.000", "2026-03-11T00:00:00"), "$limit": 5000},
    )
    expected = calls_between(dt.datetime(2026, 3, 10, 12), dt.datetime(2026, 3, 11))
    assert sorted(r["event_number"] for r in rows) == sorted(r["event_number"] for r in expected)
    assert all("2026-03-10T12:00:00.000" <= r["time_received"] < "2026-03-11" for r in rows)


def test_where_on_updated_at_compares_fixed_timestamps(sim):
    since = "2026-04-20T15:30:00.000Z"
    rows = page_through(
        sim,
        1000,
        **{"$select": ":*,*", "$where": f":updated_at > '{since}'", "$order": ":updated_at,:id"},
    )
    assert rows and all(r[":updated_at"] > since for r in rows)
    keys = [(r[":updated_at"], r[":id"]) for r in rows]
    assert keys == sorted(keys)
    served_days = [FIRST_DAY + dt.timedelta(days=i) for i in range((LAST_DAY - FIRST_DAY).days + 1)]
    everything = [r for day in served_days for r in calls_for_day(day)]
    assert len(rows) == sum(r[":updated_at"] > since for r in everything)


def test_where_supports_or_parentheses_is_null_and_any_keyword_case(sim):
    where = (
        "(call_type_code = 'NOISE' or call_type_code='DOG') and latitude IS NOT NULL "
        "AnD " + window("2026-03-03T00:00:00", "2026-03-04T00:00:00")
    )
    rows = get_rows(sim, **{"$where": where})
    expected = [
        r
        for r in calls_for_day(dt.date(2026, 3, 3))
        if r["call_type_code"] in ("NOISE", "DOG") and "latitude" in r
    ]
    assert sorted(r["event_number"] for r in rows) == sorted(r["event_number"] for r in expected)


def test_numbers_compare_as_numbers(sim):
    where = window("2026-03-03T00:00:00", "2026-03-04T00:00:00") + " AND longitude < -84.25"
    rows = get_rows(sim, **{"$where": where, "$order": "longitude DESC"})
    longitudes = [float(r["longitude"]) for r in rows]
    assert rows and max(longitudes) < -84.25
    assert longitudes == sorted(longitudes, reverse=True)


def test_simple_equality_filters(sim):
    rows = get_rows(sim, unit_type="MRU", district="EAST", **{"$limit": 200})
    assert len(rows) == 200
    assert {(r["unit_type"], r["district"]) for r in rows} == {("MRU", "EAST")}


def test_system_fields_only_when_selected(sim):
    where = window("2026-03-03T00:00:00", "2026-03-04T00:00:00")
    plain = get_rows(sim, **{"$where": where, "$limit": 5})
    full = get_rows(sim, **{"$where": where, "$limit": 5, "$select": ":*, *"})
    assert not any(k.startswith(":") for r in plain for k in r)
    assert all({":id", ":created_at", ":updated_at"} <= r.keys() for r in full)
    chosen = get_rows(sim, **{"$where": where, "$limit": 5, "$select": "event_number, :id"})
    assert all(r.keys() == {"event_number", ":id"} for r in chosen)


def test_count_star(sim):
    where = window("2026-03-03T00:00:00", "2026-03-04T00:00:00")
    rows = get_rows(sim, **{"$select": "count(*)", "$where": where})
    assert rows == [{"count": str(len(calls_for_day(dt.date(2026, 3, 3))))}]


def test_days_outside_the_served_range_are_not_served(sim):
    where = window("2026-02-01T00:00:00", "2026-03-01T00:00:00")
    assert get_rows(sim, **{"$where": where}) == []
    assert get_rows(sim, **{"$where": "time_received >= '2026-05-01T00:00:00'"}) == []


def test_bounded_queries_generate_only_the_days_they_need(sim):
    get_rows(sim, **{"$limit": 1, "$where": window("2026-03-05T00:00:00", "2026-03-06T00:00:00")})
    calls.day_records.cache_clear()
    get_rows(sim, **{"$where": window("2026-04-05T00:00:00", "2026-04-06T00:00:00")})
    assert calls.day_records.cache_info().currsize == 1
    calls.day_records.cache_clear()
    get_rows(sim, **{"$where": ":updated_at >= '2026-04-28T00:00:00Z'"})
    # Received at most MAX_UPDATE_LAG (3 days) before 04-28 00:00 UTC: 04-24 local onwards.
    assert calls.day_records.cache_info().currsize == 7


def test_body_is_laid_out_like_soda2(sim):
    where = window("2026-03-03T00:00:00", "2026-03-04T00:00:00")
    body = requests.get(resource(sim), params={"$where": where, "$limit": 3}, timeout=30).text
    lines = body.split("\n")
    assert lines[0].startswith("[{") and lines[1].startswith(",{") and lines[2].startswith(",{")
    assert lines[2].endswith("}]") and lines[3] == ""
    empty = requests.get(resource(sim), params={"$where": where, "$offset": 10_000}, timeout=30)
    assert empty.status_code == 200 and empty.text == "[]\n"


def test_headers_match_a_real_soda_server(sim):
    params = {"$select": ":*,*", "$limit": 2}
    response = requests.get(resource(sim), params=params, timeout=30)
    h = response.headers
    assert h["Content-Type"] == "application/json;charset=utf-8"
    fields, types = json.loads(h["X-SODA2-Fields"]), json.loads(h["X-SODA2-Types"])
    assert len(fields) == len(types)
    assert dict(zip(fields, types, strict=True))[":updated_at"] == "fixed_timestamp"
    assert dict(zip(fields, types, strict=True))["time_received"] == "floating_timestamp"
    assert dict(zip(fields, types, strict=True))["latitude"] == "number"
    assert set(response.json()[0]) <= set(fields)
    assert h["X-SODA2-Data-Out-Of-Date"] == "false"
    assert h["Last-Modified"] == h["X-SODA2-Truth-Last-Modified"]
    assert h["Last-Modified"].endswith(" GMT")
    assert re.fullmatch(r'"[A-Za-z0-9_-]+"', h["ETag"])
    assert re.fullmatch(r"[0-9a-f]{32}", h["X-Socrata-RequestId"])
    assert h["Access-Control-Allow-Origin"] == "*"
    plain = requests.get(resource(sim), params={"$limit": 1}, timeout=30).headers
    assert not any(f.startswith(":") for f in json.loads(plain["X-SODA2-Fields"]))


def test_gzip_only_when_asked(sim):
    zipped = requests.get(
        resource(sim),
        params={"$limit": 50},
        headers={"Accept-Encoding": "gzip"},
        stream=True,
        timeout=30,
    )
    raw = zipped.raw.read(decode_content=False)
    assert zipped.headers["Content-Encoding"] == "gzip"
    assert len(json.loads(gzip.decompress(raw))) == 50
    plain = requests.get(
        resource(sim), params={"$limit": 50}, headers={"Accept-Encoding": "identity"}, timeout=30
    )
    assert "Content-Encoding" not in plain.headers and len(plain.json()) == 50


def test_etag_revalidation_answers_304(sim):
    first = requests.get(resource(sim), params={"$limit": 3}, timeout=30)
    again = requests.get(
        resource(sim),
        params={"$limit": 3},
        headers={"If-None-Match": first.headers["ETag"]},
        timeout=30,
    )
    assert again.status_code == 304 and again.content == b""
    other = requests.get(resource(sim), params={"$limit": 4}, timeout=30)
    assert other.headers["ETag"] != first.headers["ETag"]


def test_unknown_dataset_is_a_socrata_404(sim):
    response = requests.get(resource(sim, "zzzz-zzzz"), timeout=30)
    assert response.status_code == 404
    assert response.json() == {
        "code": "dataset.missing",
        "error": True,
        "message": "Not found",
        "data": {"id": "zzzz-zzzz"},
    }


@pytest.mark.parametrize(
    ("param", "text", "column", "position"),
    [
        ("$where", "time_received > '2026-03-01' AND nosuchcolumn = 'x'", "nosuchcolumn", 34),
        ("$order", "time_received, bogus DESC", "bogus", 16),
        ("$select", "*, :nope", ":nope", 4),
        ("priorty", "1", "priorty", 1),
    ],
)
def test_unknown_columns_are_a_socrata_400(sim, param, text, column, position):
    response = requests.get(resource(sim), params={param: text}, timeout=30)
    assert response.status_code == 400
    assert response.json() == {
        "message": f"Query coordinator error: query.soql.no-such-column; No such column: {column}",
        "errorCode": "query.soql.no-such-column",
        "data": {
            "column": column,
            "dataset": CALLS_DATASET_ID,
            "position": {"row": 1, "column": position},
        },
    }


@pytest.mark.parametrize(
    "where",
    ["time_received >", "time_received > '2026-03-01' AND", "(priority = 1", "priority = 1 2"],
)
def test_unparseable_where_is_malformed(sim, where):
    response = requests.get(resource(sim), params={"$where": where}, timeout=30)
    assert response.status_code == 400
    body = response.json()
    assert body["errorCode"] == "query.soql.malformed"
    assert body["message"].startswith("Query coordinator error: query.soql.malformed; ")


def test_a_bad_timestamp_literal_is_a_type_mismatch(sim):
    response = requests.get(resource(sim), params={"$where": "time_received > 'soon'"}, timeout=30)
    assert response.status_code == 400
    assert response.json()["errorCode"] == "query.soql.type-mismatch"


def test_unknown_paths_are_404(sim):
    assert requests.get(f"{sim.url}/resource/", timeout=30).status_code == 404
    assert requests.get(f"{sim.url}/api/v3/views/x/query.json", timeout=30).status_code == 404


def test_queued_faults_are_served_in_order_then_real_answers_resume(sim):
    sim.faults.extend(
        [
            (429, {"Retry-After": "3"}, b'{"message":"Too many requests"}'),
            (202, {}, b'{"message":"Request processing"}'),
        ]
    )
    throttled = requests.get(resource(sim), params={"$limit": 1}, timeout=30)
    processing = requests.get(resource(sim), params={"$limit": 1}, timeout=30)
    served = requests.get(resource(sim), params={"$limit": 1}, timeout=30)
    assert (throttled.status_code, throttled.headers["Retry-After"]) == (429, "3")
    assert throttled.json() == {"message": "Too many requests"}
    assert processing.status_code == 202
    assert served.status_code == 200
    assert len(served.json()) == 1
    assert [path for path, _ in sim.requests_log] == [f"/resource/{CALLS_DATASET_ID}.json"] * 3
    assert sim.requests_log[0][1] == {"$limit": "1"}


def test_metadata_describes_columns_and_freshness(sim):
    response = requests.get(f"{sim.url}/api/views/{CALLS_DATASET_ID}.json", timeout=30)
    meta = response.json()
    types = {c["fieldName"]: c["dataTypeName"] for c in meta["columns"]}
    assert types["event_number"] == "text"
    assert types["time_received"] == "calendar_date"  # the views API name for floating
    assert types["priority"] == "number"
    assert meta["name"]
    updated = dt.datetime.fromtimestamp(meta["rowsUpdatedAt"], dt.UTC)
    assert (
        dt.datetime(2026, 4, 30, tzinfo=dt.UTC) < updated < dt.datetime(2026, 5, 4, tzinfo=dt.UTC)
    )
    missing = requests.get(f"{sim.url}/api/views/zzzz-zzzz.json", timeout=30)
    assert missing.status_code == 404
    assert missing.json()["code"] == "dataset.missing"


def test_a_month_is_served_in_one_large_page(sim):
    where = window("2026-04-01T00:00:00", "2026-05-01T00:00:00")
    params = {"$where": where, "$order": "time_received,event_number", "$limit": 50_000}
    rows = get_rows(sim, **params, **{"$select": ":*,*"})
    assert len(rows) > 15_000
    assert all(":updated_at" in r for r in rows)


def test_cli_serves_until_sigterm():
    env = {**os.environ, "PYTHONPATH": str(Path(calls.__file__).parents[2])}
    args = ["--port", "0", "--first-day", "2026-03-01", "--last-day", "2026-03-02"]
    process = subprocess.Popen(
        [sys.executable, "-m", "city_simulator.server", *args],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        line = process.stdout.readline()
        url = re.fullmatch(r"city simulator listening on (http://127\.0\.0\.1:\d+)\n", line)
        assert url, line
        rows = requests.get(f"{url[1]}/resource/{CALLS_DATASET_ID}.json", timeout=30).json()
        assert {r["time_received"][:10] for r in rows} == {"2026-03-01", "2026-03-02"}
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        process.kill()
        process.stdout.close()
