"""The published KPIs agree with the city's own records: every citywide daily figure we check is
recomputed here, independently, from the simulator's records of a fortnight; neighborhood figures
add up to the city's; and small neighborhood cells are withheld.

One module-wide build of the whole project (all five event sources and the neighborhood layer).
"""

from __future__ import annotations

import datetime as dt
import statistics
from collections import Counter, defaultdict
from decimal import ROUND_HALF_UP, Decimal

import psycopg
import pytest
from psycopg.rows import dict_row

from city_simulator.calls import CALLS_DATASET_ID
from city_simulator.crashes import CRASHES_DATASET_ID
from city_simulator.mru_cases import MRU_DATASET_ID
from city_simulator.permits import PERMITS_RESOURCE_ID
from city_simulator.service_requests import service_requests_between
from civic_warehouse import transform

pytestmark = pytest.mark.integration

# The built_fortnight fixture's window, as naive local date-times.
NAIVE_START, NAIVE_END = dt.datetime(2026, 8, 1), dt.datetime(2026, 8, 15)
RESOLVED_WITHOUT_POLICE = {"RESOLVED_WITHOUT_POLICE", "REFERRED_TO_SERVICES"}
# Counts whose every record names a neighborhood (311 requests without coordinates have none).
COUNTS_WITH_A_NEIGHBORHOOD_FOR_EVERY_RECORD = (
    "mru_calls_handled",
    "permits_issued",
    "housing_units_added",
    "traffic_deaths",
    "traffic_serious_injuries",
)
COMPILED_DAILY = "compiled/civic_warehouse/models/marts/performance/fct_kpi_daily.sql"


@pytest.fixture(scope="module")
def warehouse(built_fortnight: str) -> str:
    return built_fortnight


def rows(url: str, query: str, params: list | None = None) -> list[dict]:
    with psycopg.connect(url, row_factory=dict_row) as conn:
        return conn.execute(query, params).fetchall()


def citywide(url: str, metric_id: str) -> dict[dt.date, dict]:
    """The metric's Citywide rows, by local date."""
    return {
        row["date_day"]: row
        for row in rows(
            url,
            "select * from candidate.fct_kpi_daily where metric_id = %s and area = 'Citywide'",
            [metric_id],
        )
    }


def days_between(first: dt.date, last: dt.date) -> list[dt.date]:
    return [first + dt.timedelta(days=n) for n in range((last - first).days + 1)]


def local_day(stamp: str) -> dt.date:
    return dt.datetime.fromisoformat(stamp).date()


def rounded(value: float | Decimal, places: str) -> Decimal:
    """PostgreSQL's round(numeric, n): half away from zero."""
    return Decimal(str(value)).quantize(Decimal(places), rounding=ROUND_HALF_UP)


def test_mru_calls_handled_each_day_are_the_citys_case_counts(warehouse, simulator):
    cases = simulator.ground_truth(MRU_DATASET_ID, NAIVE_START, NAIVE_END).values()
    per_day = Counter(local_day(case["opened"]) for case in cases)

    published = citywide(warehouse, "mru_calls_handled")

    # the days run from the first case to the last, weekends without cases included as zeros
    assert sorted(published) == days_between(min(per_day), max(per_day))
    assert {day: row["metric_value"] for day, row in published.items()} == {
        day: per_day.get(day, 0) for day in published
    }
    assert sum(per_day.values()) > 100


def test_mru_share_resolved_without_police_is_the_citys_each_day(warehouse, simulator):
    cases = simulator.ground_truth(MRU_DATASET_ID, NAIVE_START, NAIVE_END).values()
    resolved, handled = Counter(), Counter()
    for case in cases:
        handled[local_day(case["opened"])] += 1
        resolved[local_day(case["opened"])] += case["outcome"] in RESOLVED_WITHOUT_POLICE

    published = citywide(warehouse, "mru_resolved_without_police_share")

    for day, row in published.items():
        if handled[day]:
            assert (row["numerator"], row["denominator"]) == (resolved[day], handled[day])
            assert row["metric_value"] == rounded(resolved[day] / handled[day], "0.0001")
            assert row["on_track"] == (row["metric_value"] >= Decimal("0.95"))
        else:  # a day without cases has no share, and no verdict
            assert (row["metric_value"], row["denominator"], row["on_track"]) == (None, 0, None)
    assert any(handled[day] for day in published)


def test_traffic_deaths_each_day_are_the_people_the_city_reports_killed(warehouse, simulator):
    crashes = simulator.ground_truth(CRASHES_DATASET_ID, NAIVE_START, NAIVE_END).values()
    killed, ksi = Counter(), Counter()
    for crash in crashes:
        day = local_day(crash["crash_date"])
        killed[day] += int(crash.get("number_killed", "0"))
        ksi[day] += int(crash.get("number_killed", "0"))
        ksi[day] += int(crash.get("number_serious_injuries", "0"))
    crash_days = {local_day(crash["crash_date"]) for crash in crashes}

    deaths = citywide(warehouse, "traffic_deaths")
    serious = citywide(warehouse, "traffic_serious_injuries")

    assert sorted(deaths) == days_between(min(crash_days), max(crash_days))
    assert {day: row["metric_value"] for day, row in deaths.items()} == {
        day: killed[day] for day in deaths
    }
    assert {day: row["metric_value"] for day, row in serious.items()} == {
        day: ksi[day] for day in serious
    }
    # Vision Zero's target is zero: a day is on track only when nobody died
    assert all(row["on_track"] == (row["metric_value"] == 0) for row in deaths.values())
    assert sum(ksi.values()) > 0


def test_housing_units_and_permits_count_on_the_day_the_permit_was_issued(warehouse, simulator):
    permits = simulator.ground_truth(PERMITS_RESOURCE_ID, NAIVE_START, NAIVE_END).values()
    units, issued = Counter(), Counter()
    for permit in permits:
        if permit["issued_date"]:
            day = local_day(permit["issued_date"])
            units[day] += permit["housing_units"] or 0
            issued[day] += 1

    housing = citywide(warehouse, "housing_units_added")
    permits_issued = citywide(warehouse, "permits_issued")

    assert {day: row["metric_value"] for day, row in housing.items()} == {
        day: units[day] for day in housing
    }
    assert {day: row["metric_value"] for day, row in permits_issued.items()} == {
        day: issued[day] for day in permits_issued
    }
    assert any(units[day] for day in housing) and sum(issued[d] for d in permits_issued) > 50


def test_response_time_median_and_90th_percentile_are_the_citys(warehouse, simulator):
    calls = simulator.ground_truth(CALLS_DATASET_ID, NAIVE_START, NAIVE_END).values()
    seconds = defaultdict(list)
    for call in calls:
        if call["unit_type"] in ("POLICE", "FIRE") and "time_arrived" in call:
            elapsed = (
                dt.datetime.fromisoformat(call["time_arrived"])
                - dt.datetime.fromisoformat(call["time_received"])
            ).total_seconds()
            if elapsed > 0:  # officer-initiated calls are logged with the unit on scene
                seconds[local_day(call["time_received"]), int(call["priority"])].append(elapsed)

    for priority in (1, 3):
        median = citywide(warehouse, f"response_time_median_priority_{priority}")
        p90 = citywide(warehouse, f"response_time_p90_priority_{priority}")
        assert median and sorted(median) == sorted(p90)
        for day in median:
            measured = sorted(seconds[day, priority])
            assert median[day]["observation_count"] == len(measured)
            assert median[day]["metric_value"] == rounded(statistics.median(measured), "0.1")
            # PostgreSQL's percentile_cont is the "inclusive" (linear interpolation) quantile
            ninetieth = statistics.quantiles(measured, n=10, method="inclusive")[8]
            assert abs(p90[day]["metric_value"] - Decimal(str(ninetieth))) <= Decimal("0.05")


def test_the_311_backlog_is_the_requests_open_at_each_days_end(warehouse, simulator):
    requests = service_requests_between(
        NAIVE_START, NAIVE_END, as_of=simulator.service_requests.as_of
    )

    backlog = citywide(warehouse, "service_requests_open_backlog")

    for day, row in backlog.items():
        still_open = sum(
            r["requested_datetime"].date() <= day
            and (r["closed_datetime"] is None or r["closed_datetime"].date() > day)
            for r in requests
        )
        assert row["metric_value"] == still_open
    assert sorted(backlog) == days_between(
        min(r["requested_datetime"].date() for r in requests),
        max(r["requested_datetime"].date() for r in requests),
    )


def test_suppressed_cells_publish_no_figures(warehouse):
    suppressed = rows(
        warehouse,
        "select * from candidate.fct_kpi_daily where suppressed",
    )

    assert suppressed, "a fortnight of daily neighborhood cells has some small ones"
    assert all(row["area_type"] == "neighborhood" for row in suppressed)
    assert all(
        (row["metric_value"], row["numerator"], row["denominator"], row["observation_count"])
        == (None, None, None, None)
        and row["on_track"] is None
        for row in suppressed
    )


def test_suppressed_cells_are_left_out_of_the_equity_ranks(warehouse):
    [counts] = rows(
        warehouse,
        """
        select
            count(*) filter (where suppressed) as suppressed,
            count(*) filter (
                where suppressed and (rank_from_worst is not null or neighborhood_value is not null)
            ) as suppressed_but_shown,
            count(*) filter (where rank_from_worst is not null) as ranked
        from candidate.fct_kpi_equity
        """,
    )

    assert counts["suppressed"] > 0 and counts["ranked"] > 0
    assert counts["suppressed_but_shown"] == 0


def test_published_neighborhood_counts_add_up_to_the_citys(warehouse):
    mismatched = rows(
        warehouse,
        """
        select metric_id, date_day
        from candidate.fct_kpi_daily
        where metric_id = any(%s)
        group by metric_id, date_day
        having not bool_or(suppressed)
            and sum(metric_value) filter (where area_type = 'neighborhood')
            != sum(metric_value) filter (where area_type = 'citywide')
        """,
        [list(COUNTS_WITH_A_NEIGHBORHOOD_FOR_EVERY_RECORD)],
    )

    assert mismatched == []


def test_without_suppression_every_days_neighborhoods_add_up_to_the_city(warehouse):
    # Daily neighborhood cells are mostly small, so the published table has few days with nothing
    # suppressed; the same model compiled with a minimum cell count of 1 publishes every cell.
    transform.run_dbt(
        ["compile", "--select", "fct_kpi_daily", "--vars", "{min_cell_count: 1}"], warehouse
    )
    compiled = (transform.target_dir() / COMPILED_DAILY).read_text()

    checked = rows(
        warehouse,
        f"""
        with daily as ({compiled})
        select
            metric_id,
            date_day,
            bool_or(suppressed) as any_suppressed,
            sum(metric_value) filter (where area_type = 'neighborhood') as neighborhoods,
            sum(metric_value) filter (where area_type = 'citywide') as city
        from daily
        where metric_id = any(%s)
        group by metric_id, date_day
        """,
        [list(COUNTS_WITH_A_NEIGHBORHOOD_FOR_EVERY_RECORD)],
    )

    assert not any(row["any_suppressed"] for row in checked)
    assert [row for row in checked if row["neighborhoods"] != row["city"]] == []
    assert sum(row["city"] != 0 for row in checked) > 20
