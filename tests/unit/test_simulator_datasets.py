"""The simulator's other Socrata datasets: traffic crashes, MRU cases (agreeing with the 911
calls), the dataset registry, and the volume ``scale``."""

from __future__ import annotations

import collections
import datetime as dt
import json
import re

import pytest
import requests

from city_simulator import calls, crashes, faults, mru_cases
from city_simulator.calls import CALLS_DATASET_ID, calls_for_day
from city_simulator.city import LAT_MAX, LAT_MIN, LON_MAX, LON_MIN
from city_simulator.crashes import CRASHES_DATASET_ID, crashes_for_day
from city_simulator.mru_cases import MRU_DATASET_ID, cases_for_day
from city_simulator.permits import PERMITS_RESOURCE_ID
from city_simulator.server import SimulatorServer

FIRST_DAY, LAST_DAY = dt.date(2026, 3, 1), dt.date(2026, 4, 30)
SERVED = [FIRST_DAY + dt.timedelta(days=i) for i in range((LAST_DAY - FIRST_DAY).days + 1)]
MARCH = SERVED[:31]
YEAR = [dt.date(2025, 1, 1) + dt.timedelta(days=i) for i in range(365)]
FLOATING = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.000$")
FIXED = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.000Z$")
COUNTS = ("number_killed", "number_serious_injuries", "number_minor_injuries",
          "number_possible_injuries")  # fmt: skip


@pytest.fixture(scope="module")
def server():
    with SimulatorServer(first_day=FIRST_DAY, last_day=LAST_DAY) as srv:
        yield srv


@pytest.fixture
def sim(server):
    server.inject.clear()
    server.faults.clear()
    server.requests_log.clear()
    return server


@pytest.fixture(scope="module")
def year_of_crashes() -> list[dict]:
    return [r for day in YEAR for r in crashes_for_day(day)]


@pytest.fixture(scope="module")
def march_cases() -> list[dict]:
    return [r for day in MARCH for r in cases_for_day(day)]


@pytest.fixture(scope="module")
def march_calls() -> dict[str, dict]:
    return {r["event_number"]: r for day in MARCH for r in calls_for_day(day)}


def get_rows(sim: SimulatorServer, dataset_id: str, **params: object) -> list[dict]:
    response = requests.get(f"{sim.url}/resource/{dataset_id}.json", params=params, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def page_through(sim: SimulatorServer, dataset_id: str, size: int, **params: object) -> list[dict]:
    rows, offset = [], 0
    while True:
        page = get_rows(sim, dataset_id, **params, **{"$limit": size, "$offset": offset})
        rows.extend(page)
        if len(page) < size:
            return rows
        offset += size


# --- registry -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dataset_id", "key", "event"),
    [
        (CALLS_DATASET_ID, "event_number", "time_received"),
        (CRASHES_DATASET_ID, "crash_id", "crash_date"),
        (MRU_DATASET_ID, "case_number", "opened"),
    ],
)
def test_each_socrata_dataset_is_served_with_its_own_schema(sim, dataset_id, key, event):
    response = requests.get(
        f"{sim.url}/resource/{dataset_id}.json", params={"$limit": 3, "$order": event}, timeout=30
    )
    assert response.status_code == 200
    fields = json.loads(response.headers["X-SODA2-Fields"])
    types = dict(zip(fields, json.loads(response.headers["X-SODA2-Types"]), strict=True))
    assert types[key] == "text" and types[event] == "floating_timestamp"
    assert all(key in row for row in response.json())
    meta = requests.get(f"{sim.url}/api/views/{dataset_id}.json", timeout=30).json()
    assert meta["id"] == dataset_id and meta["name"] and meta["description"]
    assert {c["fieldName"] for c in meta["columns"]} == set(fields)
    assert set(sim.resources) == {CALLS_DATASET_ID, CRASHES_DATASET_ID, MRU_DATASET_ID}
    assert set(sim.datastores) == {PERMITS_RESOURCE_ID}


def test_an_unknown_column_names_the_dataset_it_was_asked_of(sim):
    response = requests.get(
        f"{sim.url}/resource/{CRASHES_DATASET_ID}.json",
        params={"$where": "time_received > '2026-03-01'"},
        timeout=30,
    )
    assert response.status_code == 400
    body = response.json()
    assert body["errorCode"] == "query.soql.no-such-column"
    assert body["data"]["dataset"] == CRASHES_DATASET_ID


# --- crashes ------------------------------------------------------------------------------------


def test_crashes_regenerate_identically_and_depend_on_the_seed():
    day = dt.date(2026, 3, 14)
    first = crashes_for_day(day)
    crashes.day_records.cache_clear()
    assert crashes_for_day(day) == first
    assert crashes_for_day(day, seed=7) != first


def test_about_15_crashes_a_day_and_20_to_35_deaths_a_year(year_of_crashes):
    assert 13 <= len(year_of_crashes) / len(YEAR) <= 17
    fatal = [r for r in year_of_crashes if r["most_severe_injury"] == "K"]
    deaths = sum(int(r["number_killed"]) for r in year_of_crashes)
    assert 20 <= deaths <= 35
    assert 0.002 <= len(fatal) / len(year_of_crashes) <= 0.008
    pdo = sum(r["property_damage_only"] == "Y" for r in year_of_crashes)
    assert 0.6 <= pdo / len(year_of_crashes) <= 0.8


def test_pedestrians_are_few_crashes_but_many_deaths(year_of_crashes):
    def pedestrian_share(rows: list[dict]) -> float:
        return sum(r["pedestrians_involved"] != "0" for r in rows) / len(rows)

    fatal = [r for r in year_of_crashes if r["most_severe_injury"] == "K"]
    assert pedestrian_share(year_of_crashes) < 0.05
    assert pedestrian_share(fatal) > 3 * pedestrian_share(year_of_crashes)


def test_kabco_counts_agree_with_the_most_severe_injury(year_of_crashes):
    for r in year_of_crashes:
        counts = [int(r[f]) for f in COUNTS]
        assert crashes.most_severe(*counts) == r["most_severe_injury"], r
        assert (r["property_damage_only"] == "Y") == (sum(counts) == 0)
        worst = "KABCO".index(r["most_severe_injury"])
        assert all(c == 0 for c in counts[:worst])
        if r["pedestrians_involved"] != "0" or r["cyclists_involved"] != "0":
            assert r["number_of_vehicles"] == "1"
        assert 1 <= int(r["number_of_vehicles"]) <= 4


def test_crash_records_are_soda_shaped_and_located_at_block_level(year_of_crashes):
    ids = [r["crash_id"] for r in year_of_crashes]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"TC-2025\d{4}-\d{4}", i) for i in ids)
    assert len({r[":id"] for r in year_of_crashes}) == len(ids)
    for r in year_of_crashes[:2000]:
        assert all(isinstance(v, str) and v for v in r.values()), r
        assert FLOATING.match(r["crash_date"]) and FIXED.match(r[":updated_at"])
        assert r["crash_date"][:10].replace("-", "") == r["crash_id"][3:11]
        assert re.fullmatch(r"\d+XX [A-Z0-9 .-]+", r["block_address"])
        if "intersection" in r:
            street, cross = r["intersection"].split(" & ")
            assert street in r["block_address"] and street != cross
        if "latitude" in r:
            assert LAT_MIN <= float(r["latitude"]) <= LAT_MAX
            assert LON_MIN <= float(r["longitude"]) <= LON_MAX
        assert r[":created_at"] <= r[":updated_at"]
    assert 0.3 < sum("intersection" in r for r in year_of_crashes) / len(year_of_crashes) < 0.6


def test_crashes_page_over_http_exactly_as_generated(sim):
    where = "crash_date >= '2026-03-05T00:00:00' AND crash_date < '2026-03-12T00:00:00'"
    rows = page_through(
        sim, CRASHES_DATASET_ID, 40, **{"$where": where, "$order": "crash_date, crash_id"}
    )
    expected = [r for d in MARCH[4:11] for r in crashes_for_day(d)]
    assert [r["crash_id"] for r in rows] == [r["crash_id"] for r in expected]
    assert rows[0] == {k: v for k, v in expected[0].items() if not k.startswith(":")}
    count = get_rows(sim, CRASHES_DATASET_ID, **{"$select": "count(*)", "$where": where})
    assert count == [{"count": str(len(expected))}]


@pytest.mark.parametrize("dataset_id", [CRASHES_DATASET_ID, MRU_DATASET_ID])
def test_updated_at_windows_miss_no_late_supplements(sim, dataset_id):
    since = "2026-04-10T00:00:00.000Z"
    rows = page_through(
        sim,
        dataset_id,
        500,
        **{"$select": ":*,*", "$where": f":updated_at > '{since}'", "$order": ":updated_at,:id"},
    )
    resource = sim.resources[dataset_id]
    everything = [r for d in SERVED for r in resource.records(d)]
    expected = sorted((r[":updated_at"], r[":id"]) for r in everything if r[":updated_at"] > since)
    assert [(r[":updated_at"], r[":id"]) for r in rows] == expected


# --- MRU cases ----------------------------------------------------------------------------------


def test_one_case_for_every_mru_call_and_no_other(march_cases, march_calls):
    mru_calls = {n for n, c in march_calls.items() if c["unit_type"] == "MRU"}
    linked = [c["event_number"] for c in march_cases]
    assert len(linked) == len(set(linked)) == len(mru_calls) > 300
    assert set(linked) == mru_calls


def test_case_outcome_and_mode_follow_the_call(march_cases, march_calls):
    outcome = {"MRS": "RESOLVED_WITHOUT_POLICE", "MRF": "REFERRED_TO_SERVICES",
               "MPR": "POLICE_REQUESTED"}  # fmt: skip
    for case in march_cases:
        call = march_calls[case["event_number"]]
        assert case["outcome"] == outcome[call["disposition_code"]], (case, call)
        assert case["response_mode"] == call["mru_response_mode"]
        assert ("referral_agency" in case) == (case["outcome"] == "REFERRED_TO_SERVICES")
        assert case["mediator_team"].split("-")[0] == call["district"]
        assert case["follow_up_required"] in ("Y", "N")
    referred = [c for c in march_cases if c["outcome"] == "REFERRED_TO_SERVICES"]
    assert len({c["referral_agency"] for c in referred}) >= 4


def test_cases_open_on_the_call_and_close_after_it(march_cases, march_calls):
    for case in march_cases:
        call = march_calls[case["event_number"]]
        assert FLOATING.match(case["opened"]) and FLOATING.match(case["closed"])
        assert call["time_received"] <= case["opened"] <= call["time_closed"] <= case["closed"]
        if "time_dispatched" in call:
            assert case["opened"] <= call["time_dispatched"]
        assert case["opened"][:10] == call["time_received"][:10]
        assert case["case_number"].startswith(f"MRU-{case['opened'][:10].replace('-', '')}-")
        closed = dt.datetime.fromisoformat(case["closed"])
        lag = closed - dt.datetime.fromisoformat(case["opened"])
        assert lag <= mru_cases.MAX_UPDATE_LAG
        if case["follow_up_required"] == "N":
            assert lag < dt.timedelta(hours=12)
    numbers = [c["case_number"] for c in march_cases]
    assert len(set(numbers)) == len(numbers)


def test_mru_cases_and_calls_agree_over_http(sim):
    where = "time_received >= '2026-04-06T00:00:00' AND time_received < '2026-04-11T00:00:00'"
    mru_calls = page_through(sim, CALLS_DATASET_ID, 1000, unit_type="MRU", **{"$where": where})
    opened = where.replace("time_received", "opened")
    cases = page_through(sim, MRU_DATASET_ID, 100, **{"$where": opened, "$order": "case_number"})
    assert sorted(c["event_number"] for c in cases) == sorted(c["event_number"] for c in mru_calls)
    assert len(cases) > 50


# --- scale --------------------------------------------------------------------------------------


def test_scale_one_is_exactly_the_published_calls():
    day = dt.date(2026, 3, 3)
    assert faults.call_day_records(day) == calls.day_records(day)
    assert faults.call_day_records(day, 2026, 2.0) != calls.day_records(day)


def test_scale_multiplies_every_dataset_and_keeps_ids_unique():
    days = MARCH[:7]
    for generate in (faults.call_day_records, crashes.day_records, mru_cases.day_records):
        base = sum(len(generate(d, 2026, 1.0)) for d in days)
        triple = [r for d in days for r in generate(d, 2026, 3.0)]
        assert 2.4 <= len(triple) / base <= 3.6, generate  # MRU cases: a draw on a draw
        assert len({r[":id"] for r in triple}) == len(triple)
    scaled_calls = [r for d in days for r in faults.call_day_records(d, 2026, 3.0)]
    numbers = [r["event_number"] for r in scaled_calls]
    assert len(set(numbers)) == len(numbers)
    scaled_cases = [r for d in days for r in mru_cases.day_records(d, 2026, 3.0)]
    mru = {r["event_number"] for r in scaled_calls if r["unit_type"] == "MRU"}
    assert {c["event_number"] for c in scaled_cases} == mru


def test_a_scaled_server_serves_the_scaled_volume():
    day = dt.date(2026, 3, 2)
    with SimulatorServer(first_day=day, last_day=day, scale=2.0) as scaled:
        total = get_rows(scaled, CALLS_DATASET_ID, **{"$select": "count(*)"})[0]["count"]
        crash_total = get_rows(scaled, CRASHES_DATASET_ID, **{"$select": "count(*)"})
        permits = requests.get(
            f"{scaled.url}/api/3/action/datastore_search",
            params={"resource_id": PERMITS_RESOURCE_ID, "limit": 0},
            timeout=30,
        ).json()["result"]["total"]
    assert int(total) == len(faults.call_day_records(day, 2026, 2.0))
    assert 1.6 <= int(total) / len(calls_for_day(day)) <= 2.4
    assert int(crash_total[0]["count"]) == len(crashes.day_records(day, 2026, 2.0))
    assert permits > 40  # a Monday: about 31 applications at scale 1


def test_row_ids_stay_unique_past_the_13_bit_sequence_of_the_calls():
    day = dt.date(2026, 3, 2)
    ids = {faults.row_id(1, day, seq) for seq in range(20_000)}
    ids |= {faults.row_id(1, day + dt.timedelta(days=1), seq) for seq in range(20_000)}
    assert len(ids) == 40_000
    assert all(re.fullmatch(r"row-[a-z2-9]{4}-[a-z2-9]{4}", i) for i in list(ids)[:100])
    with pytest.raises(ValueError):
        faults.row_id(1, day, 1 << 20)


def test_volume_counts_fit_the_weekday_pattern(year_of_crashes):
    by_weekday = collections.Counter(
        dt.date.fromisoformat(r["crash_date"][:10]).weekday() for r in year_of_crashes
    )
    assert by_weekday[4] > by_weekday[6]  # Friday beats Sunday
