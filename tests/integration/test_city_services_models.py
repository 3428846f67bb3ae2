"""The city-services marts hold exactly what the city's 311 and permit systems hold for a window,
with service-level verdicts, intervals and totals that agree with a computation of our own from the
simulator's records.

One module-wide build: the 311 system is extracted twice, first as it stood on FIRST_CLOCK and then
as it stands at the simulator's own clock, so the status snapshot sees requests change.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

import psycopg
import pytest
from psycopg.rows import dict_row

from city_simulator.permits import PERMITS_RESOURCE_ID
from city_simulator.service_requests import CLOSED, service_requests_between, to_utc
from civic_warehouse import catalog, pipeline, transform

pytestmark = pytest.mark.integration

START, END = "2026-08-01", "2026-08-15"  # local dates, end exclusive
NAIVE_START, NAIVE_END = dt.datetime(2026, 8, 1), dt.datetime(2026, 8, 15)
FIRST_CLOCK = dt.datetime(2026, 8, 10)  # naive local: the first 311 extract sees the city then

MARTS = [
    "+fct_service_requests",
    "+fct_service_request_status_history",
    "+fct_building_permits",
    "+dim_department",
    # the dimensions the facts' relationships tests point at
    "+dim_date",
    "+dim_neighborhood",
]


@dataclass(frozen=True)
class Built:
    url: str
    requests: list[dict]  # the simulator's 311 records for the window, at its final clock
    permits: dict[str, dict]  # the simulator's permits for the window, by permit number


def extract(source_name: str, url: str) -> dict:
    source = catalog.get_source(source_name)
    return pipeline.extract(
        source_name, pipeline.query_for_run(source, None, None, START, END), url
    )


def rows(url: str, query: str) -> list[dict]:
    with psycopg.connect(url, row_factory=dict_row) as conn:
        return conn.execute(query).fetchall()


def rounded(value: Decimal) -> Decimal:
    """PostgreSQL's round(numeric, 2): half away from zero."""
    return value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


@pytest.fixture(scope="module")
def built(clean_warehouse_module, simulator) -> Built:
    url = clean_warehouse_module
    simulator.inject.clear()
    simulator.faults.clear()
    with psycopg.connect(url, autocommit=True) as conn:
        # The snapshot lives outside the schemas the warehouse fixtures reset.
        conn.execute("drop schema if exists internal cascade")
    store = simulator.service_requests
    final_clock = store.as_of
    store.as_of = FIRST_CLOCK
    try:
        extract("service_requests", url)
        transform.run_dbt(["build", "--select", "+snap_service_request_status"], url)
    finally:
        store.as_of = final_clock
    extract("service_requests", url)
    extract("building_permits", url)
    # The permit fact withholds the location of a permit in a suppressed KPI cell, and the KPIs
    # are computed from every source.
    for name in ("calls_for_service", "mru_cases", "traffic_crashes"):
        extract(name, url)
    transform.run_dbt(["build", "--select", *MARTS], url)
    return Built(
        url=url,
        requests=service_requests_between(NAIVE_START, NAIVE_END, final_clock, simulator.seed),
        permits=simulator.ground_truth(PERMITS_RESOURCE_ID, NAIVE_START, NAIVE_END),
    )


def test_the_request_mart_holds_exactly_the_window_s_requests(built):
    mart = rows(built.url, "select service_request_id from candidate.fct_service_requests")
    assert sorted(r["service_request_id"] for r in mart) == sorted(
        r["service_request_id"] for r in built.requests
    )
    assert len(built.requests) > 1000


def test_service_level_verdicts_agree_with_the_simulator_s_records(built):
    as_of = max(to_utc(r["updated_datetime"]) for r in built.requests)
    expected = {}
    for record in built.requests:
        requested = to_utc(record["requested_datetime"])
        due = to_utc(record["requested_datetime"] + dt.timedelta(days=record["target_days"]))
        closed = to_utc(record["closed_datetime"]) if record["status"] == CLOSED else None
        seconds = ((closed or as_of) - requested).total_seconds()
        past_open = closed is None and as_of > due
        expected[record["service_request_id"]] = {
            "status": "closed" if closed else "open",
            "department": record["department"],
            "target_days": record["target_days"],
            "requested_date_local": record["requested_datetime"].date(),
            "closed_at_utc": closed,
            "days_open": rounded(Decimal(int(seconds)) / Decimal(86400)),
            "closed_within_target": closed <= due if closed else (False if past_open else None),
            "is_past_target_open": past_open,
            "as_of_at_utc": as_of,
        }
    mart = rows(
        built.url,
        "select service_request_id, "
        + ", ".join(next(iter(expected.values())))
        + " from candidate.fct_service_requests",
    )
    actual = {r.pop("service_request_id"): r for r in mart}

    assert actual == expected
    # Met, missed and open past target all occur; by late October nothing requested in early
    # August is still within its target (the longest is 60 days): the unit tests cover that case.
    verdicts = {(e["status"], e["closed_within_target"]) for e in expected.values()}
    assert verdicts == {("closed", True), ("closed", False), ("open", False)}


def test_status_history_has_an_open_then_a_closed_period_per_closed_request(built):
    expected = {}
    for record in built.requests:
        request_id = record["service_request_id"]
        requested = to_utc(record["requested_datetime"])
        if record["status"] != CLOSED:
            expected[(request_id, 1)] = ("open", requested, None, False)
            continue
        closed = to_utc(record["closed_datetime"])
        # Only requests open when the first snapshot ran were seen open; others were inferred.
        seen_open = record["requested_datetime"] <= FIRST_CLOCK < record["closed_datetime"]
        hours = rounded(Decimal(int((closed - requested).total_seconds())) / Decimal(3600))
        expected[(request_id, 1)] = ("open", requested, hours, not seen_open)
        expected[(request_id, 2)] = ("closed", closed, None, False)
    mart = rows(
        built.url,
        "select service_request_id, status_sequence, status, started_at_utc, is_inferred,"
        " case when not is_current then hours_in_status end as closed_hours"
        " from candidate.fct_service_request_status_history",
    )
    actual = {
        (r["service_request_id"], r["status_sequence"]): (
            r["status"],
            r["started_at_utc"],
            r["closed_hours"],
            r["is_inferred"],
        )
        for r in mart
    }

    assert actual == expected
    assert {inferred for *_, inferred in expected.values()} == {True, False}


def test_the_permit_mart_holds_the_window_s_permits_and_their_housing_units(built):
    mart = rows(
        built.url,
        "select permit_number, housing_units_added, applied_date_local, issued_date_local,"
        " days_application_to_issue from candidate.fct_building_permits",
    )

    assert sorted(r["permit_number"] for r in mart) == sorted(built.permits)
    assert sum(r["housing_units_added"] for r in mart) == sum(
        p["housing_units"] for p in built.permits.values()
    )
    for row in mart:
        permit = built.permits[row["permit_number"]]
        applied = dt.datetime.fromisoformat(permit["applied_date"]).date()
        issued = permit["issued_date"] and dt.datetime.fromisoformat(permit["issued_date"]).date()
        assert (row["applied_date_local"], row["issued_date_local"]) == (applied, issued or None)
        assert row["days_application_to_issue"] == ((issued - applied).days if issued else None)


def test_departments_own_the_sources_the_catalog_says_they_own(built):
    mart = rows(built.url, "select department_name, owned_sources from candidate.dim_department")
    owned = {r["department_name"]: set(r["owned_sources"]) for r in mart}
    for name, source in catalog.load_catalog().items():
        assert name in owned.get(source.owner, set()), f"{source.owner} should own {name}"
    assert sum(len(sources) for sources in owned.values()) == len(catalog.load_catalog())
