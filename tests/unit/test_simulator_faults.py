"""Behavioural faults of the simulator, observed over real HTTP, and its ground truth."""

from __future__ import annotations

import datetime as dt
import json

import pytest
import requests

from city_simulator.calls import CALLS_DATASET_ID, calls_between
from city_simulator.crashes import CRASHES_DATASET_ID, crashes_for_day
from city_simulator.mru_cases import MRU_DATASET_ID, cases_for_day
from city_simulator.permits import PERMITS_RESOURCE_ID, permits_for_day
from city_simulator.server import SimulatorServer

FIRST_DAY, LAST_DAY = dt.date(2026, 3, 1), dt.date(2026, 3, 14)
START, END = dt.datetime(2026, 3, 3), dt.datetime(2026, 3, 4)  # one day of calls, ~550 rows
WHERE = "time_received >= '2026-03-03T00:00:00' AND time_received < '2026-03-04T00:00:00'"
ORDER = "time_received, :id"
CKAN = "/api/3/action/datastore_search"


@pytest.fixture(scope="module")
def server():
    with SimulatorServer(first_day=FIRST_DAY, last_day=LAST_DAY) as srv:
        yield srv


@pytest.fixture
def sim(server):
    server.inject.clear()
    server.faults.clear()
    server.requests_log.clear()
    yield server
    server.inject.clear()


def soda(sim: SimulatorServer, dataset_id: str = CALLS_DATASET_ID) -> str:
    return f"{sim.url}/resource/{dataset_id}.json"


def get_page(sim: SimulatorServer, dataset_id: str = CALLS_DATASET_ID, **params) -> list[dict]:
    response = requests.get(soda(sim, dataset_id), params=params, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def soda_pages(sim: SimulatorServer, size: int, where: str = WHERE, **params) -> list[list[dict]]:
    """An offset pager that trusts the server: the pages as served."""
    pages, offset = [], 0
    while True:
        page = get_page(
            sim,
            **{"$select": ":*,*", "$where": where, "$order": ORDER, "$limit": size},
            **{"$offset": offset},
            **params,
        )
        pages.append(page)
        if len(page) < size:
            return pages
        offset += size


def latest(rows: list[dict], key: str, updated: str) -> dict[str, dict]:
    """What a careful client keeps: one row per business key, the most recently updated."""
    kept: dict[str, dict] = {}
    for row in rows:
        held = kept.get(row[key])
        if held is None or str(row[updated]) > str(held[updated]):
            kept[row[key]] = row
    return kept


def catch_up(sim: SimulatorServer, rows: list[dict]) -> list[dict]:
    """The careful client's second pass: everything updated after what it has already seen."""
    watermark = max(r[":updated_at"] for r in rows)
    where = f"{WHERE} AND :updated_at > '{watermark}'"
    return [r for page in soda_pages(sim, 1000, where=where) for r in page]


def flat(pages: list[list[dict]]) -> list[dict]:
    return [r for page in pages for r in page]


def generated_calls() -> dict[str, dict]:
    return {r["event_number"]: r for r in calls_between(START, END)}


# --- ground truth without faults ----------------------------------------------------------------


def test_ground_truth_is_the_generated_data_when_nothing_goes_wrong(sim):
    assert sim.ground_truth(CALLS_DATASET_ID, START, END) == generated_calls()
    day = dt.date(2026, 3, 5)
    crashes = sim.ground_truth(CRASHES_DATASET_ID, dt.datetime(2026, 3, 5), dt.datetime(2026, 3, 6))
    assert crashes == {r["crash_id"]: r for r in crashes_for_day(day)}
    cases = sim.ground_truth(MRU_DATASET_ID, dt.datetime(2026, 3, 5), dt.datetime(2026, 3, 6))
    assert cases == {r["case_number"]: r for r in cases_for_day(day)}
    permits = sim.ground_truth(
        PERMITS_RESOURCE_ID, dt.datetime(2026, 3, 5), dt.datetime(2026, 3, 6)
    )
    expected = permits_for_day(day, as_of=dt.datetime(2026, 3, 15))
    assert [{k: v for k, v in r.items() if k != "_id"} for r in permits.values()] == expected
    assert len(sim.ground_truth(CALLS_DATASET_ID)) == sum(
        len(calls_between(dt.datetime(2026, 3, d), dt.datetime(2026, 3, d + 1)))
        for d in range(1, 15)
    )
    with pytest.raises(KeyError):
        sim.ground_truth("zzzz-zzzz")


def test_a_clean_paged_read_matches_the_ground_truth(sim):
    rows = flat(soda_pages(sim, 200))
    assert len(rows) == len({r["event_number"] for r in rows})
    assert latest(rows, "event_number", ":updated_at") == sim.ground_truth(
        CALLS_DATASET_ID, START, END
    )


# --- transport faults ---------------------------------------------------------------------------


def test_slow_answers_are_slow_for_exactly_the_next_n_requests(sim):
    # Judged by a client timeout far below the delay, not by a stopwatch.
    sim.inject.slow(3.0, requests=2)
    for _ in range(2):
        with pytest.raises(requests.Timeout):
            requests.get(soda(sim, CALLS_DATASET_ID), params={"$limit": 1}, timeout=0.5)
    assert len(get_page(sim, **{"$limit": 1})) == 1


def test_a_fault_can_be_narrowed_to_one_protocol(sim):
    sim.inject.slow(3.0, requests=1, path=CKAN)
    soda_answer = requests.get(soda(sim, CALLS_DATASET_ID), params={"$limit": 1}, timeout=2.5)
    assert soda_answer.status_code == 200  # SODA untouched
    with pytest.raises(requests.Timeout):
        requests.get(
            f"{sim.url}{CKAN}", params={"resource_id": PERMITS_RESOURCE_ID, "limit": 1}, timeout=0.5
        )


def test_a_dropped_connection_breaks_the_body_then_service_resumes(sim):
    sim.inject.drop_connections(requests=1)
    with pytest.raises((requests.exceptions.ChunkedEncodingError, requests.ConnectionError)):
        requests.get(soda(sim), params={"$limit": 200}, timeout=30)
    assert len(get_page(sim, **{"$limit": 200})) == 200


def test_a_truncated_body_is_complete_http_but_broken_json(sim):
    sim.inject.truncate_bodies(requests=2)
    for url, params in [
        (soda(sim), {"$limit": 50}),
        (f"{sim.url}{CKAN}", {"resource_id": PERMITS_RESOURCE_ID, "limit": 50}),
    ]:
        identity = {"Accept-Encoding": "identity"}
        response = requests.get(url, params=params, headers=identity, timeout=30)
        assert response.status_code == 200
        assert int(response.headers["Content-Length"]) == len(response.content) > 0
        with pytest.raises(json.JSONDecodeError):
            json.loads(response.content)
    assert len(get_page(sim, **{"$limit": 50})) == 50


# --- data faults --------------------------------------------------------------------------------


def test_rows_inserted_while_paging_repeat_a_tail_and_hide_the_new_rows(sim):
    sim.inject.insert_rows_while_paging(CALLS_DATASET_ID, rows=3, pages=1)
    pages = soda_pages(sim, 200)
    first_pass = flat(pages)
    keys = [r["event_number"] for r in first_pass]

    # The three new rows went in at the start after page one, so page two began with
    # page one's last three rows again, and the new rows were never seen.
    assert [r["event_number"] for r in pages[1][:3]] == [r["event_number"] for r in pages[0][-3:]]
    assert len(keys) - len(set(keys)) == 3
    truth = sim.ground_truth(CALLS_DATASET_ID, START, END)
    inserted = set(truth) - set(generated_calls())
    assert len(inserted) == 3 and not inserted & set(keys)
    first = pages[0][0]
    assert all(truth[k]["time_received"] == first["time_received"] for k in inserted)

    # Re-reading by update watermark finds them; the careful client then holds the truth.
    merged = latest(first_pass + catch_up(sim, first_pass), "event_number", ":updated_at")
    assert merged == truth


def test_rows_inserted_into_ckan_move_the_total_between_pages(sim):
    sim.inject.insert_rows_while_paging(PERMITS_RESOURCE_ID, rows=2, pages=1)
    params = {
        "resource_id": PERMITS_RESOURCE_ID,
        "limit": 100,
        "sort": "permit_number asc, _id asc",
    }
    totals, records, offset = [], [], 0
    while True:
        got = requests.get(f"{sim.url}{CKAN}", params={**params, "offset": offset}, timeout=30)
        result = got.json()["result"]
        totals.append(result["total"])
        records.extend(result["records"])
        offset += len(result["records"])
        if offset >= result["total"]:
            break
    assert totals[1] == totals[0] + 2 and len(set(totals[1:])) == 1
    truth = sim.ground_truth(PERMITS_RESOURCE_ID)
    assert len(truth) == totals[0] + 2
    seen = {r["permit_number"] for r in records}
    assert len(set(truth) - seen) == 2  # landed right after the first permit, behind the reader
    assert all(k.endswith(("-L1", "-L2")) for k in set(truth) - seen)
    new_ids = [truth[k]["_id"] for k in set(truth) - seen]
    assert sorted(new_ids) == [totals[0] + 1, totals[0] + 2]


def test_late_updates_change_rows_after_they_were_served(sim):
    sim.inject.update_late(CALLS_DATASET_ID, rows=5, pages=1)
    pages = soda_pages(sim, 200)
    first_pass = flat(pages)
    truth = sim.ground_truth(CALLS_DATASET_ID, START, END)
    assert {r["event_number"] for r in first_pass} == set(truth)

    stale = {r["event_number"] for r in first_pass if r != truth[r["event_number"]]}
    assert stale == {r["event_number"] for r in pages[0][:5]}
    for key in stale:
        served = next(r for r in first_pass if r["event_number"] == key)
        assert truth[key][":updated_at"] > served[":updated_at"]
        assert truth[key]["priority"] != served["priority"]

    again = catch_up(sim, first_pass)
    assert {r["event_number"] for r in again} == stale
    assert latest(first_pass + again, "event_number", ":updated_at") == truth
    meta = requests.get(f"{sim.url}/api/views/{CALLS_DATASET_ID}.json", timeout=30).json()
    newest = max(dt.datetime.fromisoformat(r[":updated_at"]) for r in truth.values())
    assert meta["rowsUpdatedAt"] == int(newest.timestamp())


def test_late_updates_reach_ckan_records_too(sim):
    sim.inject.update_late(PERMITS_RESOURCE_ID, rows=4, pages=1)
    params = {"resource_id": PERMITS_RESOURCE_ID, "limit": 50}
    before = requests.get(f"{sim.url}{CKAN}", params=params, timeout=30).json()["result"]
    after = requests.get(f"{sim.url}{CKAN}", params=params, timeout=30).json()["result"]
    changed = [(a, b) for a, b in zip(before["records"], after["records"], strict=True) if a != b]
    assert len(changed) == 4
    for old, new in changed:
        assert new["last_modified"] > old["last_modified"]
        assert new["status"] != old["status"] or new["valuation"] != old["valuation"]
    truth = sim.ground_truth(PERMITS_RESOURCE_ID)
    assert all(truth[new["permit_number"]] == new for _, new in changed)


def test_duplicate_keys_across_pages_lose_nothing(sim):
    sim.inject.duplicate_across_pages(CALLS_DATASET_ID, pages=2)
    pages = soda_pages(sim, 200)
    rows = flat(pages)
    assert pages[1][0] == pages[0][-1] and pages[2][0] == pages[1][-1]
    truth = sim.ground_truth(CALLS_DATASET_ID, START, END)
    assert len(rows) == len(truth) + 2
    assert latest(rows, "event_number", ":updated_at") == truth == generated_calls()
    # The duplicates stay in the dataset, right behind the rows that closed those pages.
    again = [r["event_number"] for r in flat(soda_pages(sim, 1000))]
    twice = [k for k in again if again.count(k) > 1]
    assert twice == [pages[0][-1]["event_number"]] * 2 + [pages[1][-1]["event_number"]] * 2


def test_schema_drift_renames_a_column_from_a_given_day(sim):
    day = dt.date(2026, 3, 3)
    sim.inject.drift_schema(CRASHES_DATASET_ID, day, renamed={"block_address": "location_block"})
    response = requests.get(
        soda(sim, CRASHES_DATASET_ID),
        params={"$where": "crash_date >= '2026-03-02T00:00:00' AND crash_date < '2026-03-04T00:00:00'",
                "$order": "crash_date", "$limit": 1000},
        timeout=30,
    )  # fmt: skip
    fields = json.loads(response.headers["X-SODA2-Fields"])
    assert "block_address" in fields and "location_block" in fields
    before = [r for r in response.json() if r["crash_date"] < "2026-03-03"]
    after = [r for r in response.json() if r["crash_date"] >= "2026-03-03"]
    assert before and after
    assert all("block_address" in r and "location_block" not in r for r in before)
    assert all("location_block" in r and "block_address" not in r for r in after)
    named = get_page(sim, CRASHES_DATASET_ID, **{"$where": "location_block IS NOT NULL"})
    assert {r["crash_date"][:10] for r in named} >= {"2026-03-03", "2026-03-14"}
    assert min(r["crash_date"] for r in named) >= "2026-03-03"
    meta = requests.get(f"{sim.url}/api/views/{CRASHES_DATASET_ID}.json", timeout=30).json()
    assert "location_block" in {c["fieldName"] for c in meta["columns"]}
    truth = sim.ground_truth(CRASHES_DATASET_ID, dt.datetime(2026, 3, 3), dt.datetime(2026, 3, 4))
    assert all("location_block" in r for r in truth.values())


def test_schema_drift_can_add_a_column_to_ckan_records(sim):
    sim.inject.drift_schema(
        PERMITS_RESOURCE_ID, dt.date(2026, 3, 10), added={"ward": ("text", "WARD 3")}
    )
    got = requests.get(
        f"{sim.url}{CKAN}",
        params={"resource_id": PERMITS_RESOURCE_ID, "limit": 32000},
        timeout=30,
    ).json()["result"]
    assert {"id": "ward", "type": "text"} in got["fields"]
    for record in got["records"]:
        expected = "WARD 3" if record["applied_date"] >= "2026-03-10" else None
        assert record["ward"] == expected
    filtered = requests.get(
        f"{sim.url}{CKAN}",
        params={"resource_id": PERMITS_RESOURCE_ID, "filters": json.dumps({"ward": "WARD 3"})},
        timeout=30,
    ).json()["result"]
    assert filtered["total"] == sum(r["applied_date"] >= "2026-03-10" for r in got["records"])


def test_data_faults_are_bounded_and_clear_restores_the_generated_data(sim):
    etag = requests.get(soda(sim), params={"$limit": 10}, timeout=30).headers["ETag"]
    sim.inject.update_late(CALLS_DATASET_ID, rows=1, pages=2)
    pages = [get_page(sim, **{"$limit": 10, "$offset": 10 * n}) for n in range(4)]
    generated = calls_between(dt.datetime(2026, 3, 1), dt.datetime(2026, 3, 15))
    truth = sim.ground_truth(CALLS_DATASET_ID)
    changed = {r["event_number"] for r in generated if truth[r["event_number"]] != r}
    # The first row of the first two pages served after arming; then the fault is spent.
    assert changed == {pages[0][0]["event_number"], pages[1][0]["event_number"]}
    assert requests.get(soda(sim), params={"$limit": 10}, timeout=30).headers["ETag"] != etag
    sim.inject.clear()
    assert sim.ground_truth(CALLS_DATASET_ID, START, END) == generated_calls()


def test_fault_arguments_are_checked(sim):
    with pytest.raises(KeyError, match="zzzz-zzzz"):
        sim.inject.update_late("zzzz-zzzz")
    with pytest.raises(ValueError):
        sim.inject.insert_rows_while_paging(CALLS_DATASET_ID, rows=0)
    with pytest.raises(ValueError):
        sim.inject.slow(1.0, requests=0)
    with pytest.raises(ValueError):
        sim.inject.drift_schema(CALLS_DATASET_ID, FIRST_DAY)


# --- bad data -----------------------------------------------------------------------------------


def ckan_records(sim: SimulatorServer) -> list[dict]:
    got = requests.get(
        f"{sim.url}{CKAN}", params={"resource_id": PERMITS_RESOURCE_ID, "limit": 32000}, timeout=30
    ).json()
    return got["result"]["records"]


def test_null_keys_reach_a_share_of_the_records_and_every_page_agrees(sim):
    sim.inject.null_keys(CALLS_DATASET_ID, share=0.05)
    rows = flat(soda_pages(sim, 100))
    keyless = [r for r in rows if r.get("event_number") is None]
    assert 0.02 * len(rows) < len(keyless) < 0.08 * len(rows)
    assert keyless == [r for r in flat(soda_pages(sim, 250)) if r.get("event_number") is None]
    # A correct client rejects the records it cannot key, so the truth does not hold them.
    truth = sim.ground_truth(CALLS_DATASET_ID, START, END)
    assert len(truth) == len(rows) - len(keyless) and None not in truth


def test_out_of_city_coordinates_keep_the_wire_type(sim):
    sim.inject.move_out_of_city(CALLS_DATASET_ID, share=1.0, day=dt.date(2026, 3, 3))
    sim.inject.move_out_of_city(PERMITS_RESOURCE_ID, share=1.0)
    calls = [r for r in flat(soda_pages(sim, 1000)) if "latitude" in r]  # some have no place
    assert calls and {(r["latitude"], r["longitude"]) for r in calls} == {("1834520.5", "592300.2")}
    other_day = get_page(sim, **{"$where": "time_received >= '2026-03-04T00:00:00'"})
    assert all(float(r["latitude"]) < 90 for r in other_day if "latitude" in r)
    located = [r for r in ckan_records(sim) if r["latitude"] is not None]
    assert located and {(r["latitude"], r["longitude"]) for r in located} == {(1834520.5, 592300.2)}


def test_garbled_values_replace_only_the_named_fields_of_a_share(sim):
    sim.inject.garble_values(CALLS_DATASET_ID, ["time_arrived"], text="N/A", share=0.1)
    rows = flat(soda_pages(sim, 500))
    garbled = [r for r in rows if r.get("time_arrived") == "N/A"]
    arrived = [r for r in rows if "time_arrived" in r]
    assert 0.05 * len(arrived) < len(garbled) < 0.15 * len(arrived)
    # Only that field: times, keys and the rest of the record are as generated.
    assert all(r["time_received"].startswith("2026-") and r["event_number"] for r in garbled)
    assert garbled == [r for r in flat(soda_pages(sim, 250)) if r.get("time_arrived") == "N/A"]
    with pytest.raises(ValueError):
        sim.inject.garble_values(CALLS_DATASET_ID, [])


def test_a_volume_drop_keeps_a_share_of_one_day(sim):
    day = dt.date(2026, 3, 3)
    whole = len(generated_calls())
    sim.inject.drop_volume(CALLS_DATASET_ID, day, keep=0.2)
    served = flat(soda_pages(sim, 1000))
    assert 0.1 * whole < len(served) < 0.3 * whole
    assert len(sim.ground_truth(CALLS_DATASET_ID, START, END)) == len(served)
    after = get_page(sim, **{"$where": "time_received >= '2026-03-04T00:00:00'", "$limit": 50000})
    assert len(after) == sum(
        len(calls_between(dt.datetime(2026, 3, d), dt.datetime(2026, 3, d + 1)))
        for d in range(4, 15)
    )
    with pytest.raises(ValueError):
        sim.inject.drop_volume(CALLS_DATASET_ID, day, keep=1.0)


def test_duplicate_keys_serve_a_record_again_under_a_padded_key(sim):
    sim.inject.duplicate_keys(PERMITS_RESOURCE_ID, share=0.1)
    records = ckan_records(sim)
    padded = [r for r in records if r["permit_number"].endswith(" ")]
    originals = {r["permit_number"]: r for r in records if not r["permit_number"].endswith(" ")}
    assert padded
    for copy in padded:
        original = originals[copy["permit_number"].strip()]
        assert copy["_id"] != original["_id"]
        assert {k: v for k, v in copy.items() if k not in ("_id", "permit_number")} == {
            k: v for k, v in original.items() if k not in ("_id", "permit_number")
        }
    assert len({r["_id"] for r in records}) == len(records)
    sim.inject.clear()
    assert not [r for r in ckan_records(sim) if r["permit_number"].endswith(" ")]
    with pytest.raises(ValueError):
        sim.inject.null_keys(CALLS_DATASET_ID, share=0)
