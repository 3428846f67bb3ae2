"""The open tier attacked as a curious resident would: with nothing but what it publishes, try to
get back a neighborhood KPI cell that is suppressed, a share with a small numerator, or a sensitive
call's home and time. Any cell recovered fails the audit.

The attacks (docs/privacy.md):
1. recomputation: every KPI cell recomputed from the row-level facts beside it (the calls, MRU
   cases, permits and crashes, by their neighborhood and local date);
2. differencing: the city's figure less the published neighborhoods of the same metric and day,
   less the records the facts publish with no neighborhood;
3. small numerators: a published neighborhood share whose numerator counts 1 to min_cell_count - 1;
4. sensitive calls: a call type of the disclosure policy published finer than its location level
   or time grain, in every fact that carries calls.

The truth each attack is scored against is fct_kpi_daily compiled with a minimum cell count of 1
(nothing suppressed), run on the same build. The marts are attacked in the candidate schema, which
publishing swaps into the open tier unchanged.
"""

from __future__ import annotations

import csv
import os

import psycopg
import pytest
from helpers import build_city_window
from psycopg.rows import dict_row

from civic_warehouse import settings, transform

pytestmark = pytest.mark.integration

# The demo's window (python -m civic_warehouse demo).
START, END = "2026-10-01", "2026-11-01"
MARTS = "candidate"
COMPILED_DAILY = "compiled/civic_warehouse/models/marts/performance/fct_kpi_daily.sql"

# Each KPI's cells as the row-level facts give them back: (metric_id, date_day, neighborhood,
# records, numerator). A response time's cell counts the responses it is computed from.
RECOMPUTED_CELLS = f"""
select 'mru_calls_handled' as metric_id, day as date_day, neighborhood, count(*) as records,
    null::bigint as numerator
from (
    select coalesce(received_date_local, (case_opened_at_utc at time zone %(tz)s)::date) as day,
        neighborhood
    from {MARTS}.fct_mru_responses
) as cases
group by day, neighborhood
union all
select 'mru_resolved_without_police_share', day, neighborhood, count(*),
    count(*) filter (where is_resolved_without_police)
from (
    select coalesce(received_date_local, (case_opened_at_utc at time zone %(tz)s)::date) as day,
        neighborhood, is_resolved_without_police
    from {MARTS}.fct_mru_responses
) as cases
group by day, neighborhood
union all
select 'response_time_' || statistic || '_priority_' || priority, received_date_local,
    neighborhood, count(*), null
from {MARTS}.fct_calls_for_service
cross join (values ('median'), ('p90')) as statistics (statistic)
where responding_unit_type in ('POLICE', 'FIRE') and seconds_received_to_on_scene > 0
group by statistic, priority, received_date_local, neighborhood
union all
select 'permits_issued', issued_date_local, neighborhood, count(*), null
from {MARTS}.fct_building_permits
where issued_date_local is not null
group by issued_date_local, neighborhood
union all
select 'housing_units_added', issued_date_local, neighborhood, count(*), null
from {MARTS}.fct_building_permits
where issued_date_local is not null and housing_units_added != 0
group by issued_date_local, neighborhood
union all
select 'traffic_deaths', crash_date_local, neighborhood, count(*), null
from {MARTS}.fct_traffic_crashes
where people_killed > 0
group by crash_date_local, neighborhood
union all
select 'traffic_serious_injuries', crash_date_local, neighborhood, count(*), null
from {MARTS}.fct_traffic_crashes
where people_killed + people_seriously_injured > 0
group by crash_date_local, neighborhood
"""

# Fact tables that carry calls, and the columns the disclosure policy generalizes in them.
CALL_FACTS = {
    "fct_calls_for_service": "received_at_local",
    "fct_recent_calls_for_service": "received_at_local",
}


def rows(url: str, query: str, params: dict | None = None) -> list[dict]:
    with psycopg.connect(url, row_factory=dict_row) as conn:
        return conn.execute(query, params).fetchall()


def min_cell_count() -> int:
    from civic_warehouse import public_dashboard

    return public_dashboard.min_cell_count()


def disclosure_policy() -> dict[str, dict]:
    path = settings.DBT_PROJECT_DIR / "seeds" / "disclosure_policy.csv"
    with path.open(newline="") as handle:
        return {row["call_type_code"]: row for row in csv.DictReader(handle)}


def unsuppressed_cells(url: str) -> str:
    """fct_kpi_daily's query with nothing suppressed: the truth the attacks are scored against."""
    transform.run_dbt(
        ["compile", "--select", "fct_kpi_daily", "--vars", "{min_cell_count: 1}"], url
    )
    return (transform.target_dir() / COMPILED_DAILY).read_text()


def audit(url: str) -> dict[str, int]:
    """Every attack on the marts built in ``url``: how many cells each attacked and recovered."""
    truth = unsuppressed_cells(url)
    small = min_cell_count()
    params = {"tz": os.environ.get("CW_AUDIT_TIMEZONE", "America/New_York"), "small": small}
    suppressed = f"""
        truth as ({truth}),
        published as (select * from {MARTS}.fct_kpi_daily),
        cells as (
            select published.metric_id, published.date_day, published.area,
                published.aggregation, published.suppressed,
                truth.observation_count as true_records, truth.numerator as true_numerator
            from published
            inner join truth
                on published.metric_id = truth.metric_id
                and published.date_day = truth.date_day
                and published.area = truth.area
            where published.area_type = 'neighborhood'
        )"""
    [recomputation] = rows(
        url,
        f"""
        with {suppressed},
        recomputed as ({RECOMPUTED_CELLS})
        select
            count(*) as attacked,
            count(*) filter (
                where coalesce(recomputed.records, 0) = cells.true_records
                and (cells.aggregation != 'share'
                    or coalesce(recomputed.numerator, 0) = cells.true_numerator)
            ) as recovered
        from cells
        left join recomputed
            on cells.metric_id = recomputed.metric_id
            and cells.date_day = recomputed.date_day
            and cells.area = recomputed.neighborhood
        where cells.suppressed and cells.true_records > 0
        """,
        params,
    )
    # A published cell the rows do not add up to would tell where the rows without a location
    # belong: the difference is records of this neighborhood whose other cells are suppressed.
    [consistency] = rows(
        url,
        f"""
        with recomputed as ({RECOMPUTED_CELLS})
        select
            count(*) as attacked,
            count(*) filter (
                where coalesce(recomputed.records, 0) != published.observation_count
                or (published.aggregation = 'share'
                    and coalesce(recomputed.numerator, 0) != published.numerator)
            ) as recovered
        from {MARTS}.fct_kpi_daily as published
        left join recomputed
            on published.metric_id = recomputed.metric_id
            and published.date_day = recomputed.date_day
            and published.area = recomputed.neighborhood
        where published.area_type = 'neighborhood' and not published.suppressed
            and published.metric_id in (select metric_id from recomputed)
        """,
        params,
    )
    [released] = rows(
        url,
        f"""
        select
            (select count(*) from {MARTS}.fct_kpi_daily where suppressed) as suppressed_cells,
            (select count(*) from {MARTS}.fct_kpi_daily where area_type = 'neighborhood')
                as neighborhood_cells,
            (select count(*) from {MARTS}.fct_kpi_withheld_records) as withheld_records,
            (select count(*) from {MARTS}.fct_calls_for_service) as calls,
            (select count(*) from {MARTS}.fct_calls_for_service where neighborhood is null)
                as calls_without_neighborhood
        """,
    )
    # The city's figure less the published neighborhoods and the records published with no
    # neighborhood is what the suppressed neighborhoods hold between them: one suppressed
    # neighborhood on a metric's day is given back whole.
    [differencing] = rows(
        url,
        f"""
        with {suppressed},
        recomputed as ({RECOMPUTED_CELLS}),
        days as (
            select metric_id, date_day,
                count(*) filter (where suppressed) as suppressed_cells,
                count(*) filter (where suppressed and true_records > 0) as nonempty_suppressed,
                sum(true_records) filter (where suppressed) as suppressed_records
            from cells
            group by metric_id, date_day
        ),
        unlocated as (
            select metric_id, date_day, sum(records) as records
            from recomputed where neighborhood is null
            group by metric_id, date_day
        ),
        city as (
            select metric_id, date_day, observation_count
            from {MARTS}.fct_kpi_daily where area_type = 'citywide'
        ),
        published_parts as (
            select metric_id, date_day, coalesce(sum(observation_count), 0) as records
            from {MARTS}.fct_kpi_daily
            where area_type = 'neighborhood' and not suppressed
            group by metric_id, date_day
        )
        select
            count(*) filter (where days.nonempty_suppressed > 0) as attacked,
            count(*) filter (
                where days.suppressed_cells = 1 and days.nonempty_suppressed = 1
                and city.observation_count - published_parts.records
                    - coalesce(unlocated.records, 0) = days.suppressed_records
            ) as recovered
        from days
        inner join city using (metric_id, date_day)
        inner join published_parts using (metric_id, date_day)
        left join unlocated using (metric_id, date_day)
        """,
        params,
    )
    [numerators] = rows(
        url,
        f"""
        select
            count(*) filter (where aggregation = 'share') as attacked,
            count(*) filter (
                where aggregation = 'share' and numerator between 1 and %(small)s - 1
            ) as recovered
        from {MARTS}.fct_kpi_daily
        where area_type = 'neighborhood'
        """,
        params,
    )
    sensitive = {"attacked": 0, "recovered": 0}
    for code, policy in disclosure_policy().items():
        keeps_block = policy["location_level"] == "block"
        keeps_area = policy["location_level"] != "none"
        grain = policy["time_grain"]
        for fact, received in CALL_FACTS.items():
            [found] = rows(
                url,
                f"""
                select
                    count(*) as attacked,
                    count(*) filter (
                        where (not %(keeps_block)s and (block_address is not null
                                or latitude is not null or longitude is not null))
                            or (not %(keeps_area)s and (neighborhood is not null
                                or district is not null))
                            or {received} != date_trunc(%(grain)s, {received})
                            or dispatched_at_utc is not null or on_scene_at_utc is not null
                            or cleared_at_utc is not null
                    ) as recovered
                from {MARTS}.{fact}
                where call_type_code = %(code)s
                """,
                {
                    "code": code,
                    "keeps_block": keeps_block,
                    "keeps_area": keeps_area,
                    "grain": grain,
                },
            )
            sensitive["attacked"] += found["attacked"]
            sensitive["recovered"] += found["recovered"]
        [cases] = rows(
            url,
            f"""
            select
                count(*) as attacked,
                count(*) filter (
                    where case_opened_at_utc
                            != date_trunc(%(grain)s, case_opened_at_utc, %(tz)s)
                        or case_closed_at_utc
                            != date_trunc(%(grain)s, case_closed_at_utc, %(tz)s)
                        or (not %(keeps_area)s and neighborhood is not null)
                ) as recovered
            from {MARTS}.fct_mru_responses
            where call_type_code = %(code)s
            """,
            {"code": code, "grain": grain, "keeps_area": keeps_area, "tz": params["tz"]},
        )
        sensitive["attacked"] += cases["attacked"]
        sensitive["recovered"] += cases["recovered"]
    # The MRU evaluation's call types add up to its all-types row, per month, group and figure:
    # where exactly one type's figure is suppressed and the total is published, it is recovered.
    [evaluation] = rows(
        url,
        f"""
        with figures as (
            select evaluation.month_start, evaluation.comparison_group,
                evaluation.call_type_code, figure.name, figure.value
            from {MARTS}.fct_mru_evaluation as evaluation
            cross join lateral (values
                ('calls', evaluation.call_count),
                ('resolved', evaluation.resolved_without_police_calls),
                ('repeat_30', evaluation.repeat_within_30_days_calls),
                ('repeat_90', evaluation.repeat_within_90_days_calls),
                ('on_scene', evaluation.on_scene_calls)
            ) as figure (name, value)
        ),
        totals as (
            select month_start, comparison_group, name,
                count(*) filter (where call_type_code is not null and value is null) as hidden,
                bool_or(call_type_code is null and value is not null) as total_published
            from figures
            group by month_start, comparison_group, name
        )
        select
            count(*) filter (where hidden > 0) as attacked,
            count(*) filter (where hidden = 1 and total_published) as recovered
        from totals
        """,
    )
    # The public page's breakdowns: the neighborhoods (or call types) add up to the city's row, less
    # the records published with no location: where exactly one part is suppressed and the city's
    # row is published, it is recovered.
    [breakdowns] = rows(
        url,
        f"""
        with parts as (
            select 'mru' as mart, area_type = 'citywide' as is_total, calls_handled as value
            from {MARTS}.fct_mru_responses_by_neighborhood
            union all
            select 'response_times', area_type = 'citywide', responses
            from {MARTS}.fct_response_times_by_neighborhood
            union all
            select 'call_types', call_type_code is null, calls
            from {MARTS}.fct_calls_by_call_type
        ),
        totals as (
            select mart,
                count(*) filter (where not is_total and value is null) as hidden,
                bool_or(is_total and value is not null) as total_published
            from parts
            group by mart
        )
        select
            count(*) as attacked,
            count(*) filter (where hidden = 1 and total_published) as recovered
        from totals
        """,
    )
    figures = {
        **released,
        "mru_evaluation_attacked": evaluation["attacked"],
        "mru_evaluation_recovered": evaluation["recovered"],
        "breakdowns_attacked": breakdowns["attacked"],
        "breakdowns_recovered": breakdowns["recovered"],
        "consistency_attacked": consistency["attacked"],
        "consistency_recovered": consistency["recovered"],
        "recomputation_attacked": recomputation["attacked"],
        "recomputation_recovered": recomputation["recovered"],
        "differencing_attacked": differencing["attacked"],
        "differencing_recovered": differencing["recovered"],
        "small_numerator_attacked": numerators["attacked"],
        "small_numerator_recovered": numerators["recovered"],
        "sensitive_calls_attacked": sensitive["attacked"],
        "sensitive_calls_recovered": sensitive["recovered"],
    }
    print("DISCLOSURE AUDIT " + " ".join(f"{key}={value}" for key, value in figures.items()))
    return figures


@pytest.fixture(scope="module")
def warehouse(clean_warehouse_module: str, simulator) -> str:
    return build_city_window(clean_warehouse_module, simulator, START, END)


@pytest.fixture(scope="module")
def figures(warehouse: str) -> dict[str, int]:
    return audit(warehouse)


def test_the_attacks_had_cells_to_attack(figures):
    # An audit of nothing passes for nothing: the window has small cells and sensitive calls.
    assert figures["recomputation_attacked"] > 100
    assert figures["consistency_attacked"] > 100
    assert figures["differencing_attacked"] > 100
    assert figures["small_numerator_attacked"] > 100
    assert figures["sensitive_calls_attacked"] > 100


def test_no_suppressed_cell_is_recomputed_from_the_row_level_facts(figures):
    assert figures["recomputation_recovered"] == 0


def test_every_published_cell_is_what_its_rows_add_up_to(figures):
    assert figures["consistency_recovered"] == 0


def test_no_suppressed_cell_is_the_citys_figure_less_the_published_neighborhoods(figures):
    assert figures["differencing_recovered"] == 0


def test_no_published_share_has_a_small_numerator(figures):
    assert figures["small_numerator_recovered"] == 0


def test_no_suppressed_mru_evaluation_figure_is_the_total_less_the_published_call_types(figures):
    assert figures["mru_evaluation_recovered"] == 0


def test_no_suppressed_breakdown_cell_is_the_citys_row_less_the_others(figures):
    assert figures["breakdowns_attacked"] == 3
    assert figures["breakdowns_recovered"] == 0


def test_no_sensitive_call_is_published_finer_than_its_policy(figures):
    assert figures["sensitive_calls_recovered"] == 0


# A city four times the size, over a fortnight: more records per cell, so fewer small cells, but
# many more cells to attack and rows to count.
LARGER_CITY_SCALE = 4.0
LARGER_START, LARGER_END = "2026-10-01", "2026-10-15"


def test_the_audit_holds_on_a_larger_city(figures, clean_warehouse: str):
    from city_simulator.server import SimulatorServer

    warehouse = clean_warehouse
    previous = os.environ["CITY_SIMULATOR_URL"]
    try:
        with SimulatorServer(port=0, scale=LARGER_CITY_SCALE) as larger:
            os.environ["CITY_SIMULATOR_URL"] = larger.url
            build_city_window(warehouse, larger, LARGER_START, LARGER_END)
            larger_figures = audit(warehouse)
    finally:
        os.environ["CITY_SIMULATOR_URL"] = previous

    assert larger_figures["recomputation_attacked"] > 100
    assert larger_figures["sensitive_calls_attacked"] > figures["sensitive_calls_attacked"] / 2
    recovered = {key: value for key, value in larger_figures.items() if key.endswith("_recovered")}
    assert set(recovered.values()) == {0}, recovered
