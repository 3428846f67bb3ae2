"""Building permits from the simulator, served over real CKAN DataStore HTTP."""

from __future__ import annotations

import collections
import datetime as dt
import json
import re
import statistics
from pathlib import Path

import pytest
import requests

from city_simulator import permits
from city_simulator.city import LAT_MAX, LAT_MIN, LON_MAX, LON_MIN, NEIGHBORHOODS
from city_simulator.permits import PERMITS_RESOURCE_ID, permits_for_day
from city_simulator.server import SimulatorServer

FIRST_DAY, LAST_DAY = dt.date(2026, 3, 1), dt.date(2026, 4, 30)
DAYS = [FIRST_DAY + dt.timedelta(days=i) for i in range((LAST_DAY - FIRST_DAY).days + 1)]
AS_OF = dt.datetime(2026, 5, 1)
ACTION = "/api/3/action/datastore_search"
STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d$")
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "city-apis"


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
def served() -> list[dict]:
    """Every permit the server holds, as the generator makes them."""
    return [r for day in DAYS for r in permits_for_day(day, as_of=AS_OF)]


def search(sim: SimulatorServer, **params: object) -> requests.Response:
    params.setdefault("resource_id", PERMITS_RESOURCE_ID)
    return requests.get(f"{sim.url}{ACTION}", params=params, timeout=30)


def result(sim: SimulatorServer, **params: object) -> dict:
    response = search(sim, **params)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["success"] is True
    return body["result"]


def page_by_total(sim: SimulatorServer, limit: int, **params: object) -> list[dict]:
    """Page the way CKAN must be paged: advance by what came back, stop when offset >= total."""
    records, offset = [], 0
    while True:
        got = result(sim, limit=limit, offset=offset, **params)
        records.extend(got["records"])
        offset += len(got["records"])
        if offset >= got["total"] or not got["records"]:
            return records


# --- generator ----------------------------------------------------------------------------------


def test_a_day_regenerates_identically_and_depends_on_the_seed():
    day = dt.date(2026, 3, 10)
    first = permits_for_day(day, as_of=AS_OF)
    permits.day_records.cache_clear()
    assert permits_for_day(day, as_of=AS_OF) == first
    assert permits_for_day(day, seed=7, as_of=AS_OF) != first


def test_about_25_applications_a_day_mostly_on_weekdays(served):
    per_day = collections.Counter(r["applied_date"][:10] for r in served)
    assert 20 <= len(served) / len(DAYS) <= 30
    weekday = [per_day[str(d)] for d in DAYS if d.weekday() < 5]
    weekend = [per_day[str(d)] for d in DAYS if d.weekday() >= 5]
    assert statistics.mean(weekday) > 2 * statistics.mean(weekend)


def test_permit_numbers_are_unique_business_keys(served):
    numbers = [r["permit_number"] for r in served]
    assert len(set(numbers)) == len(numbers)
    assert all(re.fullmatch(r"BLD-2026-\d{6}", n) for n in numbers)


def test_dates_follow_the_status_and_never_go_backwards(served):
    # Nothing expires within two months: an issued permit lapses after a year without a final.
    assert {r["status"] for r in served} == set(permits.STATUSES) - {"expired"}
    for r in served:
        status = r["status"]
        assert (r["issued_date"] is not None) == (status in ("issued", "finaled", "expired")), r
        assert (r["finaled_date"] is not None) == (status == "finaled"), r
        stamps = [r[f] for f in ("applied_date", "issued_date", "finaled_date") if r[f]]
        assert stamps == sorted(stamps), r
        assert all(STAMP.match(s) for s in [*stamps, r["last_modified"]])
        assert max(stamps) <= r["last_modified"] <= AS_OF.isoformat()


def test_days_to_issue_depend_on_the_kind_of_work(served):
    waits = collections.defaultdict(list)
    for r in served:
        if r["issued_date"]:
            days = dt.datetime.fromisoformat(r["issued_date"]) - dt.datetime.fromisoformat(
                r["applied_date"]
            )
            waits[r["permit_type"]].append(days.total_seconds() / 86400)
    median = {kind: statistics.median(w) for kind, w in waits.items()}
    assert median["RESIDENTIAL ALTERATION"] < median["RESIDENTIAL ADDITION"]
    assert median["RESIDENTIAL ADDITION"] < median["RESIDENTIAL NEW"]
    assert median["RESIDENTIAL ALTERATION"] < 10 < median["COMMERCIAL NEW"]


def test_recent_applications_are_not_yet_issued_and_old_ones_are(served):
    recent = [r for r in served if r["applied_date"] >= "2026-04-27"]
    early = [r for r in served if r["applied_date"] < "2026-03-08"]
    waiting = sum(r["status"] in ("applied", "in review") for r in recent)
    assert waiting / len(recent) > 0.4
    assert sum(r["status"] in ("applied", "in review") for r in early) / len(early) < 0.1


def test_what_the_portal_shows_moves_with_as_of_but_the_permits_do_not():
    week = DAYS[:7]
    soon = [r for day in week for r in permits_for_day(day, as_of=dt.datetime(2026, 3, 8))]
    later = [r for day in week for r in permits_for_day(day, as_of=dt.datetime(2027, 6, 1))]
    fixed = ("permit_number", "permit_type", "applied_date", "valuation", "address")
    assert [[r[f] for f in fixed] for r in soon] == [[r[f] for f in fixed] for r in later]
    rank = {"applied": 0, "in review": 1, "issued": 2, "finaled": 3, "expired": 3, "withdrawn": 3}
    assert all(rank[a["status"]] <= rank[b["status"]] for a, b in zip(soon, later, strict=True))
    statuses = collections.Counter(r["status"] for r in later)
    assert {"finaled", "expired", "withdrawn"} <= statuses.keys()
    assert statuses["applied"] + statuses["in review"] == 0
    assert statuses["issued"] < 0.05 * len(later)  # only long builds are still under way


def test_housing_units_are_the_net_dwellings_added(served):
    for r in served:
        units, work = r["housing_units"], r["work_class"]
        if work == "NEW SINGLE FAMILY":
            assert units == 1
        elif work == "NEW MULTIFAMILY":
            assert 2 <= units <= 40
            assert f"{units} UNIT" in r["description"]
        elif work == "RESIDENTIAL DEMOLITION":
            assert units in (-1, -2)
        elif work != "NEW TWO FAMILY":
            assert units == 0, r
    assert any(r["housing_units"] < 0 for r in served)


def test_places_are_block_level_addresses_in_the_city(served):
    names = {n.name for n in NEIGHBORHOODS}
    for r in served:
        assert re.fullmatch(r"\d+XX [A-Z0-9 .-]+", r["address"]), r
        assert r["neighborhood"] in names
        if r["latitude"] is not None:
            assert LAT_MIN <= r["latitude"] <= LAT_MAX and LON_MIN <= r["longitude"] <= LON_MAX
        assert isinstance(r["valuation"], int | float) and r["valuation"] > 0


# --- datastore_search ---------------------------------------------------------------------------


def test_envelope_and_typed_values_match_ckan(sim):
    response = search(sim, limit=5)
    body = response.json()
    assert response.headers["Content-Type"] == "application/json;charset=utf-8"
    assert body["help"] == f"{sim.url}/api/3/action/help_show?name=datastore_search"
    got = body["result"]
    assert got["resource_id"] == PERMITS_RESOURCE_ID
    assert got["include_total"] is True and got["records_format"] == "objects"
    assert {"fields", "records", "total", "limit", "_links"} <= got.keys()
    types = {f["id"]: f["type"] for f in got["fields"]}
    assert types["_id"] == "int" and got["fields"][0]["id"] == "_id"
    assert types["applied_date"] == "timestamp" and types["valuation"] == "numeric"
    assert types["housing_units"] == "int4" and types["latitude"] == "float8"
    record = got["records"][0]
    assert list(record) == [f["id"] for f in got["fields"]]
    assert isinstance(record["_id"], int) and isinstance(record["housing_units"], int)
    assert isinstance(record["valuation"], int | float) and not isinstance(
        record["valuation"], bool
    )
    assert STAMP.match(record["applied_date"])
    assert any(r["finaled_date"] is None for r in result(sim, limit=200)["records"])


def test_default_limit_is_100_and_large_limits_are_silently_capped(sim):
    default = result(sim)
    assert default["limit"] == 100 and len(default["records"]) == 100
    assert "offset" not in default  # CKAN echoes offset only when it was asked for
    capped = result(sim, limit=100_000)
    assert capped["limit"] == 32000
    assert len(capped["records"]) == capped["total"]


def test_total_counts_every_row_and_paging_by_total_reads_each_once(sim, served):
    records = page_by_total(sim, 250)
    assert result(sim, limit=0)["total"] == len(served)
    assert [r["permit_number"] for r in records] == [r["permit_number"] for r in served]
    assert [r["_id"] for r in records] == list(range(1, len(served) + 1))
    offsets = [int(q["offset"]) for _, q in sim.requests_log if "offset" in q]
    assert offsets == list(range(0, len(served), 250))


def test_links_point_at_the_start_and_the_next_page(sim):
    got = result(sim, limit=7, offset=14)
    start, following = got["_links"]["start"], got["_links"]["next"]
    assert start.startswith(f"{ACTION}?") and "offset" not in start
    assert f"resource_id={PERMITS_RESOURCE_ID}" in start and "limit=7" in start
    assert following.startswith(f"{ACTION}?") and "offset=21" in following
    assert "offset=7" in got["_links"]["prev"]
    following_page = requests.get(f"{sim.url}{following}", timeout=30).json()["result"]
    assert following_page["records"][0]["_id"] == 22


def test_filters_are_equalities_lists_mean_in_and_total_follows(sim, served):
    wanted = {"permit_type": "DEMOLITION", "status": ["issued", "finaled"]}
    got = result(sim, filters=json.dumps(wanted), limit=32000)
    expected = [
        r for r in served if r["permit_type"] == "DEMOLITION" and r["status"] in wanted["status"]
    ]
    assert got["total"] == len(expected) == len(got["records"]) > 0
    assert got["filters"] == wanted
    numeric = result(sim, filters=json.dumps({"housing_units": -1}), limit=32000)
    assert numeric["total"] == sum(r["housing_units"] == -1 for r in served) > 0


def test_sort_orders_like_postgres_with_nulls_last_ascending(sim, served):
    got = result(sim, sort="issued_date desc, _id", limit=32000)["records"]
    issued = [r["issued_date"] for r in got]
    not_issued = sum(r["issued_date"] is None for r in served)
    assert issued[:not_issued] == [None] * not_issued  # DESC puts nulls first
    assert issued[not_issued:] == sorted(issued[not_issued:], reverse=True)
    ascending = result(sim, sort="valuation asc", limit=50)["records"]
    assert [r["valuation"] for r in ascending] == sorted(r["valuation"] for r in served)[:50]


def test_q_searches_the_full_text(sim, served):
    got = result(sim, q="demolish garage", limit=32000)
    assert got["total"] > 0
    assert all(
        "DEMOLISH" in r["description"] and "GARAGE" in r["description"] for r in got["records"]
    )
    by_field = result(sim, q=json.dumps({"neighborhood": "westwood"}), limit=32000)
    assert by_field["total"] == sum(r["neighborhood"] == "WESTWOOD" for r in served)


def test_fields_include_total_and_list_records(sim):
    got = result(sim, fields="permit_number,status", include_total="false", limit=3)
    assert [f["id"] for f in got["fields"]] == ["permit_number", "status"]
    assert all(r.keys() == {"permit_number", "status"} for r in got["records"])
    assert "total" not in got
    lists = result(sim, fields="_id,permit_number", records_format="lists", limit=2)
    assert lists["records"][0][0] == 1 and lists["records"][0][1].startswith("BLD-")


def test_unknown_resource_is_ckans_404(sim):
    response = search(sim, resource_id="00000000-0000-0000-0000-000000000000")
    assert response.status_code == 404
    body = response.json()
    expected = json.loads((FIXTURES / "ckan_error_404_not_found.json").read_text())
    assert body["success"] is False and body["error"] == expected["error"]
    assert body["help"].endswith("/api/3/action/help_show?name=datastore_search")


def test_unparseable_filters_are_ckans_409(sim):
    response = search(sim, filters="{not json")
    assert response.status_code == 409
    expected = json.loads((FIXTURES / "ckan_error_409_validation.json").read_text())
    assert response.json()["error"] == expected["error"]


@pytest.mark.parametrize(
    ("params", "field", "message"),
    [
        ({"filters": json.dumps({"nosuch": 1})}, "filters", 'invalid value "nosuch"'),
        ({"filters": "[1, 2]"}, "filters", "Not a JSON Object"),
        ({"sort": "status, bogus desc"}, "sort", 'invalid value "bogus desc"'),
        ({"fields": "permit_number,nope"}, "fields", 'invalid value "nope"'),
        ({"limit": "ten"}, "limit", "Invalid integer"),
        ({"offset": "-5"}, "offset", "Must be a natural number"),
        ({"resource_id": ""}, "resource_id", "Missing value"),
    ],
)
def test_invalid_parameters_are_validation_errors(sim, params, field, message):
    response = search(sim, **params)
    assert response.status_code == 409
    body = response.json()
    assert body["success"] is False
    assert body["error"] == {field: [message], "__type": "Validation Error"}


def test_unknown_action_is_a_bare_400_string(sim):
    response = requests.get(f"{sim.url}/api/3/action/datastore_search_sql", timeout=30)
    assert response.status_code == 400
    assert response.json() == "Bad request - Action name not known: datastore_search_sql"


def test_paging_all_permits_by_total_reads_each_once(sim):
    records = page_by_total(sim, 1000, sort="permit_number asc, _id asc")
    numbers = [r["permit_number"] for r in records]
    assert len(numbers) > 1000 and len(numbers) == len(set(numbers))
