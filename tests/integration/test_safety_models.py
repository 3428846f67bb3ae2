"""The safety marts publish what the city systems hold: every crash and every MRU case of a
fortnight, with the city's own counts of deaths, serious injuries and MRU outcomes, on a calendar
and a neighborhood map that cover the whole city."""

from __future__ import annotations

from datetime import date, datetime
from fractions import Fraction

import psycopg
import pytest

from city_simulator.city import LAT_MAX, LAT_MIN, LON_MAX, LON_MIN, NEIGHBORHOODS

pytestmark = pytest.mark.integration

# The built_fortnight fixture's window, as naive local date-times.
NAIVE_START, NAIVE_END = datetime(2026, 8, 1), datetime(2026, 8, 15)
CRASHES_DATASET, MRU_DATASET = "tc26-kabc", "mru5-case"
RESOLVED_WITHOUT_POLICE = {"RESOLVED_WITHOUT_POLICE", "REFERRED_TO_SERVICES"}

# The days federal offices closed in 2026, as OPM lists them (4 July fell on a Saturday).
OBSERVED_FEDERAL_HOLIDAYS_2026 = {
    date(2026, 1, 1),
    date(2026, 1, 19),
    date(2026, 2, 16),
    date(2026, 5, 25),
    date(2026, 6, 19),
    date(2026, 7, 3),
    date(2026, 9, 7),
    date(2026, 10, 12),
    date(2026, 11, 11),
    date(2026, 11, 26),
    date(2026, 12, 25),
}


@pytest.fixture(scope="module")
def warehouse(built_fortnight: str) -> str:
    """The fortnight's sources and the neighborhood layer, built into marts. Every source: the facts
    withhold the locations of records in suppressed KPI cells, and the KPIs read them all."""
    return built_fortnight


@pytest.fixture(scope="module")
def crashes_truth(simulator) -> dict[str, dict]:
    return simulator.ground_truth(CRASHES_DATASET, NAIVE_START, NAIVE_END)


@pytest.fixture(scope="module")
def mru_truth(simulator) -> dict[str, dict]:
    return simulator.ground_truth(MRU_DATASET, NAIVE_START, NAIVE_END)


def fetch(url: str, query: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(query).fetchall()


def test_crash_mart_holds_exactly_the_citys_crashes(warehouse, crashes_truth):
    crash_ids = {
        crash_id
        for (crash_id,) in fetch(warehouse, "select crash_id from candidate.fct_traffic_crashes")
    }

    assert crash_ids == set(crashes_truth) and len(crash_ids) > 100


def test_killed_and_seriously_injured_totals_equal_the_citys(warehouse, crashes_truth):
    killed = sum(int(r.get("number_killed", "0")) for r in crashes_truth.values())
    serious = sum(int(r.get("number_serious_injuries", "0")) for r in crashes_truth.values())

    [(mart_killed, mart_serious)] = fetch(
        warehouse,
        "select sum(people_killed), sum(people_seriously_injured) from candidate.fct_traffic_crashes",
    )

    assert (mart_killed, mart_serious) == (killed, serious) and serious > 0


def test_every_crash_is_classified_as_the_report_codes_it(warehouse, crashes_truth):
    classified = dict(
        fetch(warehouse, "select crash_id, most_severe_injury from candidate.fct_traffic_crashes")
    )

    assert classified == {key: r["most_severe_injury"] for key, r in crashes_truth.items()}


def test_crash_times_read_back_as_the_reports_local_wall_clock(warehouse, crashes_truth):
    local_times = dict(
        fetch(warehouse, "select crash_id, crash_at_local from candidate.fct_traffic_crashes")
    )

    assert local_times == {
        key: datetime.fromisoformat(r["crash_date"]) for key, r in crashes_truth.items()
    }


def test_mru_mart_holds_exactly_the_citys_cases(warehouse, mru_truth):
    case_numbers = {
        case for (case,) in fetch(warehouse, "select case_number from candidate.fct_mru_responses")
    }

    assert case_numbers == set(mru_truth) and len(case_numbers) > 100


def test_mru_share_resolved_without_police_equals_the_citys(warehouse, mru_truth):
    resolved = sum(r["outcome"] in RESOLVED_WITHOUT_POLICE for r in mru_truth.values())

    [(mart_resolved, mart_cases)] = fetch(
        warehouse,
        "select count(*) filter (where is_resolved_without_police), count(*) "
        "from candidate.fct_mru_responses",
    )

    assert Fraction(mart_resolved, mart_cases) == Fraction(resolved, len(mru_truth))


def test_every_mru_case_carries_its_calls_time_and_neighborhood(warehouse):
    # A case whose CAD event counts in a suppressed neighborhood KPI cell is published without its
    # neighborhood (docs/privacy.md); every other case has its call's.
    [(without_time, without_neighborhood, withheld)] = fetch(
        warehouse,
        "select count(*) filter (where received_at_utc is null), "
        "count(*) filter (where neighborhood is null and withheld.record_id is null), "
        "count(*) filter (where withheld.record_id is not null) "
        "from candidate.fct_mru_responses as cases "
        "left join candidate.fct_kpi_withheld_records as withheld "
        "on withheld.record_source = 'cad_event' and withheld.record_id = cases.event_number",
    )

    assert (without_time, without_neighborhood) == (0, 0)
    assert withheld > 0


def test_every_city_neighborhood_is_on_the_map_with_a_centroid_inside_the_city(warehouse):
    rows = fetch(
        warehouse,
        "select neighborhood, centroid_latitude, centroid_longitude from candidate.dim_neighborhood",
    )

    assert {name for name, _, _ in rows} == {n.name for n in NEIGHBORHOODS}
    assert all(LAT_MIN <= lat <= LAT_MAX and LON_MIN <= lon <= LON_MAX for _, lat, lon in rows)


def test_calendar_closes_on_the_federal_holidays_opm_lists(warehouse):
    observed = {
        day
        for (day,) in fetch(
            warehouse,
            "select date_day from candidate.dim_date "
            "where year_number = 2026 and is_us_federal_holiday_observed",
        )
    }

    assert observed == OBSERVED_FEDERAL_HOLIDAYS_2026
