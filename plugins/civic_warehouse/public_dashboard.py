"""The resident-facing performance page: a static site built from the published marts.

Written to ``build/public/`` after every publish: one self-contained ``index.html`` (the Vega
JavaScript is inlined, so the page renders with no internet and from any static host or a file) and
one CSV per chart under ``data/``. Headline numbers carry the days their data covers and why it
ends where it does; every chart has a table behind it (a real ``<table>`` with a caption, for screen
readers and for anyone who wants the numbers) and a CSV download.

The page is right at its edges. Every span it names (a headline's days, a chart's weeks) is read
from the data, not assumed; a week or month the data covers only in part is left out of its chart
(the table keeps it, with its days), so a period that has barely begun is never drawn as a fall;
and it reads on a phone 390 px wide.

The page reads only what the BI role may read: the ``open`` schema, in a read-only transaction
running as ``bi_reader``. Its breakdowns by neighborhood and call type are marts of their own, built,
suppressed and gated by dbt and the gate like every open mart; the page adds no figure of its own
below the Citywide level.
"""

from __future__ import annotations

import csv
import functools
import html
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import altair as alt
import psycopg
import vl_convert
import yaml
from psycopg import sql
from psycopg.rows import dict_row

from civic_warehouse import access, feedback, settings, warehouse

log = logging.getLogger(__name__)

SITE_DIR = settings.BUILD_DIR / "public"
BUNDLE_CACHE_DIR = settings.BUILD_DIR / "cache"
SUPPRESSED = "suppressed"


class DashboardError(RuntimeError):
    """The page could not be built from the warehouse."""


def dbt_var(name: str) -> Any:
    """A variable of the dbt project, as the marts were built with it."""
    project = yaml.safe_load((settings.DBT_PROJECT_DIR / "dbt_project.yml").read_text())
    return project["vars"][name]


def min_cell_count() -> int:
    """The open marts' small-cell threshold."""
    return int(dbt_var("min_cell_count"))


def window_days() -> int:
    """The days headlines and breakdowns cover, up to each source's latest day (as the breakdown
    marts were built)."""
    return int(dbt_var("public_window_days"))


def query_params() -> dict[str, Any]:
    return {"window_days": window_days(), "min_cell_count": min_cell_count()}


# The marts that wait out the publication delay (the models calling the publication_cutoff()
# macro: the calls fact, and the MRU responses after it), by the source they are extracted from.
# Their figures end earlier than the other sources': the page says so beside each date.
DELAYED_SOURCES = {
    "calls_for_service": "911 calls are published {hours} hours after they are received",
    "mru_cases": "Mediation Response Unit cases are published {hours} hours after they open",
}
SOURCE_NAMES = {
    "calls_for_service": "911 calls",
    "mru_cases": "Mediation Response Unit cases",
    "service_requests": "311 requests",
    "building_permits": "building permits",
    "traffic_crashes": "crash reports",
}


@functools.cache
def metric_sources() -> dict[str, str]:
    """Each KPI's source, from the dbt project's metric catalog (the seed the marts are built on)."""
    with (settings.DBT_PROJECT_DIR / "seeds" / "kpi_metrics.csv").open(newline="") as handle:
        return {row["metric_id"]: row["source_name"] for row in csv.DictReader(handle)}


@functools.cache
def sensitive_call_types() -> list[dict[str, str]]:
    """The disclosure policy's call types (the seed the marts apply it from), with their names."""
    seeds = settings.DBT_PROJECT_DIR / "seeds"
    with (seeds / "call_types.csv").open(newline="") as handle:
        names = {row["call_type_code"]: row["call_type"] for row in csv.DictReader(handle)}
    with (seeds / "disclosure_policy.csv").open(newline="") as handle:
        return [
            row | {"call_type": names.get(row["call_type_code"], row["call_type_code"])}
            for row in csv.DictReader(handle)
        ]


def data_end_note(metric_id: str) -> str:
    """Why a headline's data ends on the day it does: the publication delay, or the latest day."""
    source = metric_sources()[metric_id]
    if source in DELAYED_SOURCES:
        hours = int(dbt_var("publication_delay_hours"))
        return DELAYED_SOURCES[source].format(hours=hours) + ", so the latest day is not in yet."
    return f"The latest day of {SOURCE_NAMES[source]} published."


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    kind: str = "text"  # text, date, count, share, minutes, number


@dataclass(frozen=True)
class Panel:
    """One chart on the page: the query behind it, its table's columns, how it is drawn, and the
    sentence naming the span its rows cover."""

    slug: str
    section: str
    title: str
    description: str
    sql: str
    columns: tuple[Column, ...]
    chart: Callable[[list[dict]], alt.Chart]
    span: Callable[[list[dict]], str]


# Headlines: each metric over the last window_days() days its source covers, from the Citywide KPIs.
# A stock (the open 311 backlog) is its value on the last day; shares pool numerators and
# denominators, so they are the share of all the period's records.
HEADLINES_SQL = """
with citywide as (
    select * from open.fct_kpi_daily
    where area = 'Citywide' and metric_id in (
        'mru_calls_handled', 'mru_resolved_without_police_share',
        'service_requests_closed_on_time_share', 'service_requests_open_backlog',
        'permits_issued', 'housing_units_added', 'traffic_deaths', 'traffic_serious_injuries'
    )
),
coverage as materialized (
    select metric_id, max(date_day) as last_day from citywide group by metric_id
)
select
    citywide.metric_id,
    citywide.metric_name,
    citywide.unit,
    citywide.direction,
    citywide.target,
    min(citywide.date_day) as data_from,
    coverage.last_day as data_as_of,
    case
        when citywide.metric_id = 'service_requests_open_backlog'
            then max(citywide.metric_value) filter (where citywide.date_day = coverage.last_day)
        when citywide.aggregation = 'share'
            then round(sum(citywide.numerator)::numeric / nullif(sum(citywide.denominator), 0), 4)
        else sum(citywide.metric_value)
    end as value,
    sum(citywide.observation_count) as records
from citywide
inner join coverage
    on citywide.metric_id = coverage.metric_id
    and citywide.date_day > coverage.last_day - %(window_days)s
group by
    citywide.metric_id, citywide.metric_name, citywide.unit, citywide.direction,
    citywide.aggregation, citywide.target, coverage.last_day
order by citywide.metric_id
"""

# The median response of the whole period (a median of daily medians is not a median): the city's
# row of the response-time breakdown, measured as the KPI catalog measures it.
RESPONSE_HEADLINE_SQL = """
select
    window_start as data_from, last_day as data_as_of, responses, median_minutes
from open.fct_response_times_by_neighborhood
where area_type = 'citywide'
"""


# Periods: each week (from Monday) or month with the days the data has in it. A period with fewer
# days than it has is partial; the window starts on a period's first day, so only the data's own
# edges make one.
def _periodic_sql(period: str, periods: int, metric_ids: tuple[str, ...], measures: str) -> str:
    metrics = ", ".join(f"'{metric_id}'" for metric_id in metric_ids)
    return f"""
with daily as (
    select
        date_trunc('{period}', date_day)::date as {period}_start,
        *
    from open.fct_kpi_daily
    where area = 'Citywide' and metric_id in ({metrics})
)
select
    {period}_start,
    count(distinct date_day) as days_with_data,
    ({period}_start + interval '1 {period}')::date - {period}_start as days_in_period,
    count(distinct date_day) < ({period}_start + interval '1 {period}')::date - {period}_start
        as partial,
    {measures}
from daily
where {period}_start
    >= date_trunc('{period}', (select max(date_day) from daily)) - interval '{periods - 1} {period}s'
group by {period}_start
order by {period}_start
"""


MRU_WEEKLY_SQL = _periodic_sql(
    "week",
    52,
    ("mru_calls_handled", "mru_resolved_without_police_share"),
    """sum(metric_value) filter (where metric_id = 'mru_calls_handled') as calls_handled,
    round(
        sum(numerator) filter (where metric_id = 'mru_resolved_without_police_share')::numeric
        / nullif(sum(denominator) filter (where metric_id = 'mru_resolved_without_police_share'), 0),
        4
    ) as resolved_without_police_share""",
)

ON_TIME_WEEKLY_SQL = _periodic_sql(
    "week",
    26,
    ("service_requests_closed_on_time_share",),
    """sum(denominator) as records,
    round(sum(numerator)::numeric / nullif(sum(denominator), 0), 4) as share""",
)

RESPONSE_DAILY_SQL = """
with daily as (
    select * from open.fct_kpi_daily
    where area = 'Citywide'
      and metric_id in (
          'response_time_median_priority_1',
          'response_time_median_priority_2',
          'response_time_median_priority_3'
      )
)
select
    date_day,
    'Priority ' || right(metric_id, 1) as priority,
    round(metric_value / 60, 1) as median_minutes,
    observation_count as responses
from daily
where date_day > (select max(date_day) from daily) - 90
order by date_day, priority
"""

TRAFFIC_MONTHLY_SQL = _periodic_sql(
    "month",
    24,
    ("traffic_deaths", "traffic_serious_injuries"),
    """sum(metric_value) filter (where metric_id = 'traffic_deaths') as people_killed,
    sum(metric_value) filter (where metric_id = 'traffic_serious_injuries')
        as people_killed_or_seriously_injured""",
)


# Breakdowns: the marts built for them (dbt_project/models/marts/performance), small cells and
# their complements already withheld; the page leaves out their Citywide rows and keeps the top
# call types.
MRU_BY_NEIGHBORHOOD_SQL = """
select
    area as neighborhood, suppressed, calls_handled, resolved_without_police_share,
    window_start, last_day
from open.fct_mru_responses_by_neighborhood
where area_type = 'neighborhood'
order by calls_handled desc nulls last, area
"""

RESPONSE_BY_NEIGHBORHOOD_SQL = """
select area as neighborhood, suppressed, responses, median_minutes, window_start, last_day
from open.fct_response_times_by_neighborhood
where area_type = 'neighborhood'
order by median_minutes desc nulls last, area
"""

CALLS_BY_TYPE_SQL = """
select
    call_type, call_category, suppressed, calls, answered_by_mru_share, window_start, last_day
from open.fct_calls_by_call_type
where call_type_code is not null
order by calls desc nulls last, call_type
limit 20
"""


# Dates reach the charts as ISO days; Vega reads those as UTC midnight, so the charts keep to UTC
# time units, or a resident west of Greenwich would see every week start a day early.
def _bar_by_category(category: str, value: str, title: str, fmt: str = ",d"):
    def chart(rows: list[dict]) -> alt.Chart:
        return (
            alt.Chart(alt.Data(values=rows))
            .mark_bar(color="#1f6f8b")
            .encode(
                y=alt.Y(f"{category}:N", sort="-x", title=None),
                x=alt.X(f"{value}:Q", title=title),
                tooltip=[alt.Tooltip(f"{category}:N"), alt.Tooltip(f"{value}:Q", format=fmt)],
            )
            .transform_filter(f"datum.{value} != null")
        )

    return chart


def drawn_periods(rows: list[dict]) -> list[dict]:
    """The weeks or months a chart draws: the full ones. A partial period would be drawn as a fall
    that did not happen; only when the data has no full period yet are the partial ones drawn,
    and then marked."""
    full = [row for row in rows if not row["partial"]]
    return full or rows


def _partial_marks(base: alt.Chart, period: str) -> alt.Chart:
    return (
        base.transform_filter("datum.partial")
        .mark_text(dy=-12, fontSize=11, color="#444")
        .encode(text=alt.value(f"partial {period}"))
    )


_DIMMED_WHEN_PARTIAL = alt.condition("datum.partial", alt.value(0.45), alt.value(1.0))


def _weekly_line(value: str, title: str, fmt: str, axis_format: str | None = None):
    def chart(rows: list[dict]) -> alt.LayerChart:
        drawn = drawn_periods(rows)
        # Ticks on the weeks drawn: Vega's own weekly ticks fall on Sundays, between them.
        mondays = [
            datetime.fromisoformat(row["week_start"]).replace(tzinfo=UTC).timestamp() * 1000
            for row in drawn
        ]
        base = alt.Chart(alt.Data(values=drawn)).encode(
            x=alt.X(
                "utcyearmonthdate(week_start):T",
                title="Week starting",
                axis=alt.Axis(values=mondays, format="%b %-d", labelOverlap=True),
            ),
            y=alt.Y(
                f"{value}:Q",
                title=title,
                axis=alt.Axis(format=axis_format) if axis_format else alt.Axis(),
                # a share runs from 0 to 100%, never beyond
                scale=alt.Scale(domain=[0, 1]) if axis_format == "%" else alt.Scale(),
            ),
        )
        # What a screen reader says of each point: the week by its full date, and its days.
        line = (
            base.transform_calculate(
                summary=f"'Week starting ' + utcFormat(datum.week_start, '%Y-%m-%d') + ': {title} '"
                f" + format(datum.{value}, '{fmt}') + ' (data on ' + datum.days_with_data"
                " + ' of 7 days)'"
            )
            .mark_line(point=True, color="#1f6f8b")
            .encode(
                description="summary:N",
                opacity=_DIMMED_WHEN_PARTIAL,
                tooltip=[
                    alt.Tooltip("utcyearmonthdate(week_start):T", title="Week starting"),
                    alt.Tooltip(f"{value}:Q", title=title, format=fmt),
                    alt.Tooltip("days_with_data:Q", title="Days with data"),
                ],
            )
        )
        return alt.layer(line, _partial_marks(base, "week"))

    return chart


def _response_daily_chart(rows: list[dict]) -> alt.Chart:
    return (
        alt.Chart(alt.Data(values=rows))
        .mark_line(point=False)
        .encode(
            x=alt.X("utcyearmonthdate(date_day):T", title="Day"),
            y=alt.Y("median_minutes:Q", title="Median minutes to on scene"),
            color=alt.Color("priority:N", title=None, legend=alt.Legend(orient="bottom")),
            tooltip=[
                alt.Tooltip("utcyearmonthdate(date_day):T", title="Day"),
                "priority:N",
                "median_minutes:Q",
            ],
        )
    )


def _traffic_monthly_chart(rows: list[dict]) -> alt.LayerChart:
    drawn = alt.Data(values=drawn_periods(rows))
    month = alt.X("utcyearmonth(month_start):O", title="Month")
    bars = (
        alt.Chart(drawn)
        .transform_fold(
            ["people_killed", "people_killed_or_seriously_injured"], as_=["column", "people"]
        )
        .transform_calculate(
            measure="datum.column == 'people_killed' ? 'Killed' : 'Killed or seriously injured'"
        )
        .mark_bar()
        .encode(
            x=month,
            xOffset="measure:N",
            y=alt.Y("people:Q", title="People"),
            color=alt.Color(
                "measure:N",
                title=None,
                scale=alt.Scale(range=["#8b1f1f", "#e08a3c"]),
                legend=alt.Legend(orient="bottom"),
            ),
            opacity=_DIMMED_WHEN_PARTIAL,
            tooltip=[
                alt.Tooltip("utcyearmonth(month_start):O", title="Month"),
                "measure:N",
                "people:Q",
                alt.Tooltip("days_with_data:Q", title="Days with data"),
            ],
        )
    )
    top = alt.Chart(drawn).encode(x=month, y="people_killed_or_seriously_injured:Q")
    return alt.layer(bars, _partial_marks(top, "month"))


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _period_span(period: str) -> Callable[[list[dict]], str]:
    """The sentence naming the full periods a chart draws and the partial ones it leaves out."""
    key = f"{period}_start"

    def name(row: dict) -> str:
        start = row[key]
        return start.strftime("%B %Y") if period == "month" else f"the week of {start.isoformat()}"

    def span(rows: list[dict]) -> str:
        if not rows:
            return "No data published yet."
        full = [row for row in rows if not row["partial"]]
        partial = "; ".join(
            f"{name(row)} (data on {row['days_with_data']} of its {row['days_in_period']} days)"
            for row in rows
            if row["partial"]
        )
        if not full:
            return f"No full {period} of data yet, so the chart draws what there is, marked partial: {partial}."
        first, last = full[0][key], full[-1][key]
        if period == "week":
            text = f"{_plural(len(full), 'full week')}, {first} to {last + timedelta(days=6)}."
        else:
            months = f"{first:%B %Y}" + (f" to {last:%B %Y}" if last != first else "")
            text = f"{_plural(len(full), 'full month')}, {months}."
        if partial:
            text += f" Left out of the chart as partial (the table has them): {partial}."
        return text

    return span


def _daily_span(rows: list[dict]) -> str:
    days = sorted({row["date_day"] for row in rows})
    if not days:
        return "No data published yet."
    return f"Each day from {days[0]} to {days[-1]} ({_plural(len(days), 'day')})."


def _window_span(rows: list[dict]) -> str:
    """The days a breakdown covers: the last window_days(), or all there are when fewer."""
    row = next((row for row in rows if row.get("last_day")), None)
    if row is None:
        return "No data published yet."
    days = (row["last_day"] - row["window_start"]).days + 1
    text = f"The {_plural(days, 'day')} {row['window_start']} to {row['last_day']}"
    if days < window_days():
        text += f": all the data so far, less than {window_days()} days"
    return text + "."


# The MRU evaluation (fct_mru_evaluation): the unit's calls against similar police calls, all the
# unit's call types together, each month; small (suppressed) cells are left out by the mart.
MRU_EVALUATION_SQL = """
select
    month_start, comparison_group, call_count, resolved_without_police_share,
    repeat_within_30_days_share, repeat_within_30_days_ci_lower, repeat_within_30_days_ci_upper,
    mean_minutes_on_scene, mean_minutes_on_scene_ci_lower, mean_minutes_on_scene_ci_upper
from open.fct_mru_evaluation
where call_type = 'ALL MRU CALL TYPES' and not suppressed
order by month_start, comparison_group
"""


def _mru_evaluation_chart(rows: list[dict]) -> alt.LayerChart:
    """Mean time on scene of each group by month, with its 95% interval as a bar through it."""
    base = alt.Chart(alt.Data(values=rows)).encode(
        x=alt.X("utcyearmonth(month_start):O", title="Month"),
        xOffset="comparison_group:N",
        color=alt.Color("comparison_group:N", title=None, legend=alt.Legend(orient="bottom")),
    )
    interval = base.mark_rule().encode(
        y=alt.Y("mean_minutes_on_scene_ci_lower:Q", title="Mean minutes on scene (95% interval)"),
        y2="mean_minutes_on_scene_ci_upper:Q",
    )
    return alt.layer(
        interval, base.mark_point(filled=True, size=60).encode(y="mean_minutes_on_scene:Q")
    )


def _months_span(rows: list[dict]) -> str:
    months = sorted({row["month_start"] for row in rows})
    if not months:
        return "No data published yet."
    return f"Each month from {months[0]:%B %Y} to {months[-1]:%B %Y}, the last perhaps in part."


def _period_columns(period: str) -> tuple[Column, ...]:
    return (
        Column(f"{period}_start", f"{period.capitalize()} starting", "date"),
        Column("days_with_data", "Days with data", "count"),
        Column("days_in_period", f"Days in the {period}", "count"),
    )


PANELS: tuple[Panel, ...] = (
    Panel(
        "mru_calls_per_week",
        "Trends",
        "Mediation Response Unit calls handled, per week",
        "Calls the unit answered by phone or on scene instead of police, and the share of them "
        "resolved without police.",
        MRU_WEEKLY_SQL,
        (
            *_period_columns("week"),
            Column("calls_handled", "Calls handled", "count"),
            Column("resolved_without_police_share", "Resolved without police", "share"),
        ),
        _weekly_line("calls_handled", "Calls handled by MRU", ",d"),
        _period_span("week"),
    ),
    Panel(
        "response_time_per_day",
        "Trends",
        "Median 911 response time by priority, per day",
        "Minutes from the call being received to the first police or fire unit on scene. "
        "Officer-initiated calls are left out.",
        RESPONSE_DAILY_SQL,
        (
            Column("date_day", "Day", "date"),
            Column("priority", "Priority"),
            Column("median_minutes", "Median minutes", "number"),
            Column("responses", "Responses", "count"),
        ),
        _response_daily_chart,
        _daily_span,
    ),
    Panel(
        "service_requests_on_time_per_week",
        "Trends",
        "311 requests closed within their service-level target, per week",
        "Share of the requests closed each week that were closed by their due time.",
        ON_TIME_WEEKLY_SQL,
        (
            *_period_columns("week"),
            Column("records", "Requests closed", "count"),
            Column("share", "Closed on time", "share"),
        ),
        _weekly_line("share", "Closed on time", ".1%", axis_format="%"),
        _period_span("week"),
    ),
    Panel(
        "traffic_deaths_and_serious_injuries_per_month",
        "Trends",
        "People killed or seriously injured in traffic, per month",
        "People killed (K) and killed or seriously injured (K + A) in police-reported crashes. "
        "The Vision Zero target is zero.",
        TRAFFIC_MONTHLY_SQL,
        (
            *_period_columns("month"),
            Column("people_killed", "People killed", "count"),
            Column("people_killed_or_seriously_injured", "Killed or seriously injured", "count"),
        ),
        _traffic_monthly_chart,
        _period_span("month"),
    ),
    Panel(
        "mru_calls_by_neighborhood",
        "By neighborhood",
        "Mediation Response Unit calls by neighborhood",
        "Calls the unit handled from each neighborhood, and the share resolved without police.",
        MRU_BY_NEIGHBORHOOD_SQL,
        (
            Column("neighborhood", "Neighborhood"),
            Column("calls_handled", "Calls handled", "count"),
            Column("resolved_without_police_share", "Resolved without police", "share"),
        ),
        _bar_by_category("neighborhood", "calls_handled", "Calls handled"),
        _window_span,
    ),
    Panel(
        "response_time_by_neighborhood",
        "By neighborhood",
        "Median priority 1 response time by neighborhood",
        "Minutes from the call being received to the first police or fire unit on scene, for the "
        "most urgent calls from each neighborhood.",
        RESPONSE_BY_NEIGHBORHOOD_SQL,
        (
            Column("neighborhood", "Neighborhood"),
            Column("responses", "Responses", "count"),
            Column("median_minutes", "Median minutes", "number"),
        ),
        _bar_by_category("neighborhood", "median_minutes", "Median minutes", ".1f"),
        _window_span,
    ),
    Panel(
        "calls_by_call_type",
        "By call type",
        "911 calls by call type",
        "The 20 most frequent call types, and the share the Mediation Response Unit answered.",
        CALLS_BY_TYPE_SQL,
        (
            Column("call_type", "Call type"),
            Column("call_category", "Category"),
            Column("calls", "Calls", "count"),
            Column("answered_by_mru_share", "Answered by MRU", "share"),
        ),
        _bar_by_category("call_type", "calls", "Calls"),
        _window_span,
    ),
    Panel(
        "mru_evaluation",
        "Does the Mediation Response Unit work?",
        "Mediation Response Unit against police on similar calls",
        "Calls of the types the unit handles, answered by the unit or by police, compared within "
        "the same call type, neighborhood, hour band and month. Repeat: another call from the same "
        "block within 30 days (known once the 30 days have passed). Ranges are 95% confidence "
        "intervals. This compares, it does not prove cause: the unit chooses the calls it takes.",
        MRU_EVALUATION_SQL,
        (
            Column("month_start", "Month starting", "date"),
            Column("comparison_group", "Answered by"),
            Column("call_count", "Calls", "count"),
            Column("resolved_without_police_share", "Resolved without police", "share"),
            Column("repeat_within_30_days_share", "Repeat within 30 days", "share"),
            Column("repeat_within_30_days_ci_lower", "Repeat: 95% low", "share"),
            Column("repeat_within_30_days_ci_upper", "Repeat: 95% high", "share"),
            Column("mean_minutes_on_scene", "Mean minutes on scene", "number"),
            Column("mean_minutes_on_scene_ci_lower", "Minutes: 95% low", "number"),
            Column("mean_minutes_on_scene_ci_upper", "Minutes: 95% high", "number"),
        ),
        _mru_evaluation_chart,
        _months_span,
    ),
)

HEADLINE_COLUMNS = (
    Column("metric_name", "Measure"),
    Column("value", "Value", "number"),
    Column("unit", "Unit"),
    Column("target", "Target", "number"),
    Column("data_from", "Data from", "date"),
    Column("data_as_of", "Data to", "date"),
)


def page_queries() -> dict[str, str]:
    """Every query behind the page, by name (the benchmark runs the same ones)."""
    return {
        "headlines": HEADLINES_SQL,
        "response_headline": RESPONSE_HEADLINE_SQL,
        **{panel.slug: panel.sql for panel in PANELS},
    }


def read_open(url: str | None = None) -> dict[str, list[dict]]:
    """Run every page query as the BI role, read-only: the page sees what BI tools see."""
    params = query_params()
    with warehouse.connect(url, row_factory=dict_row) as conn:
        if not conn.execute(
            "select 1 from pg_namespace where nspname = %s", [settings.OPEN_SCHEMA]
        ).fetchone():
            raise DashboardError(
                f"public dashboard: nothing published yet (no schema {settings.OPEN_SCHEMA!r})"
            )
        if not conn.execute(
            "select 1 from pg_roles where rolname = %s", [access.BI_ROLE]
        ).fetchone():
            access.ensure_bi_role(conn)
        conn.commit()
        conn.read_only = True
        with conn.transaction():
            conn.execute(sql.SQL("set local role {}").format(sql.Identifier(access.BI_ROLE)))
            results = {}
            for name, query in page_queries().items():
                try:
                    results[name] = conn.execute(query, params).fetchall()
                except psycopg.Error as error:
                    raise DashboardError(
                        f"public dashboard: query {name!r} failed on schema "
                        f"{settings.OPEN_SCHEMA!r}: {error}"
                    ) from error
    return results


def build(url: str | None = None, site: Path = SITE_DIR) -> Path:
    """Write the page and its CSVs under ``site``; returns the page."""
    results = read_open(url)
    data_dir = site / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    headlines = _headline_rows(results["headlines"], results["response_headline"])
    _write_csv(data_dir / "headlines.csv", headlines, HEADLINE_COLUMNS)
    for panel in PANELS:
        _write_csv(data_dir / f"{panel.slug}.csv", results[panel.slug], panel.columns)
    index = site / "index.html"
    about = feedback.page_section(url, SOURCE_NAMES)
    index.write_text(render(headlines, results, datetime.now(UTC), about))
    log.info("public dashboard written to %s", index)
    return index


def _headline_rows(kpis: list[dict], response: list[dict]) -> list[dict]:
    rows = [dict(row) for row in kpis]
    for row in response:
        rows.append(
            {
                "metric_id": "response_time_median_priority_1",
                "metric_name": "Median response time, priority 1 calls",
                "unit": "minutes",
                "direction": "lower_is_better",
                "target": None,
                "data_from": row["data_from"],
                "data_as_of": row["data_as_of"],
                "value": row["median_minutes"],
                "records": row["responses"],
            }
        )
    order = [
        "mru_calls_handled",
        "mru_resolved_without_police_share",
        "response_time_median_priority_1",
        "service_requests_closed_on_time_share",
        "service_requests_open_backlog",
        "permits_issued",
        "housing_units_added",
        "traffic_deaths",
        "traffic_serious_injuries",
    ]
    return sorted(rows, key=lambda row: order.index(row["metric_id"]))


def _write_csv(path: Path, rows: list[dict], columns: tuple[Column, ...]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([column.key for column in columns])
        for row in rows:
            writer.writerow([_plain(row.get(column.key)) for column in columns])


def _plain(value: Any) -> Any:
    """A value as CSV and JSON carry it: dates in ISO form, decimals as numbers."""
    if isinstance(value, Decimal):
        return float(value) if value % 1 else int(value)
    if isinstance(value, date):
        return value.isoformat()
    return value


def _display(value: Any, kind: str) -> str:
    if value is None:
        return "—"
    if kind == "share":
        return f"{float(value):.1%}"
    if kind == "count":
        return f"{int(value):,}"
    if kind == "number":
        number = float(value)
        return f"{number:,.0f}" if number.is_integer() else f"{number:,.1f}"
    if kind == "date":
        return value.isoformat() if isinstance(value, date) else str(value)
    return str(value)


def _headline_value(row: dict) -> str:
    if row["value"] is None:
        return "no data"
    if "share" in row["unit"]:
        return _display(row["value"], "share")
    if row["unit"] == "minutes":
        return f"{float(row['value']):.1f} min"
    return _display(row["value"], "number")


def _headline_label(row: dict) -> str:
    """The days a headline covers, from its data: the last window_days(), or fewer if that is all."""
    if row["data_as_of"] is None:
        return "no data yet"
    if row["metric_id"] == "service_requests_open_backlog":
        return f"at the end of {row['data_as_of'].isoformat()}"
    days = (row["data_as_of"] - row["data_from"]).days + 1
    return (
        f"in the {_plural(days, 'day')} {row['data_from'].isoformat()} "
        f"to {row['data_as_of'].isoformat()}"
    )


def _table(
    caption: str, columns: tuple[Column, ...], rows: list[dict], suppressed_note: bool
) -> str:
    head = "".join(f'<th scope="col">{html.escape(c.label)}</th>' for c in columns)
    body = []
    for row in rows:
        cells = []
        for index, column in enumerate(columns):
            value = row.get(column.key)
            if value is None and row.get(SUPPRESSED) and column.kind != "text":
                text = '<abbr title="withheld to protect the people behind few records">suppressed</abbr>'
            else:
                text = html.escape(_display(value, column.kind))
            tag = "th" if index == 0 else "td"
            scope = ' scope="row"' if index == 0 else ""
            align = ' class="num"' if column.kind != "text" else ""
            cells.append(f"<{tag}{scope}{align}>{text}</{tag}>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    note = (
        f'<p class="note">Cells from 1 to {min_cell_count() - 1} records are suppressed to protect '
        "the people behind them.</p>"
        if suppressed_note
        else ""
    )
    # A table wider than a phone scrolls inside its own box, not the page.
    return (
        f'<div class="table-wrap"><table><caption>{html.escape(caption)}</caption>'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>{note}"
    )


def _vega_bundle() -> str:
    """Vega, Vega-Lite and vega-embed as one script, as Altair's own inline template embeds them.

    vl-convert ships the JavaScript for the Vega-Lite version Altair writes; bundling it takes
    seconds, so the bundle is kept under build/ per version.
    """
    major, minor = alt.SCHEMA_VERSION.lstrip("v").split(".")[:2]
    vl_version = f"v{major}_{minor}"
    cached = BUNDLE_CACHE_DIR / f"vega-embed-{vl_convert.__version__}-{vl_version}.js"
    if not cached.exists():
        cached.parent.mkdir(parents=True, exist_ok=True)
        partial = cached.with_suffix(f".{os.getpid()}.tmp")
        partial.write_text(vl_convert.javascript_bundle(vl_version=vl_version))
        partial.replace(cached)  # atomic: concurrent builds never read half a bundle
    return cached.read_text()


def _spec(panel: Panel, rows: list[dict]) -> dict:
    # The title is the figure's HTML heading, which wraps on a narrow screen; a Vega title does not.
    values = [{key: _plain(value) for key, value in row.items()} for row in rows]
    chart = panel.chart(values).properties(width="container", height=260)
    return chart.to_dict()


def _card(row: dict) -> str:
    target = (
        f" · target {html.escape(_display(row['target'], _kind_of(row)))}"
        if row["target"] is not None
        else ""
    )
    why = (
        f'<p class="why">{html.escape(data_end_note(row["metric_id"]))}</p>'
        if row["data_as_of"] is not None
        else ""
    )
    return (
        f'<div class="card" data-metric="{html.escape(row["metric_id"])}">'
        f'<p class="value">{html.escape(_headline_value(row))}</p>'
        f'<p class="name">{html.escape(row["metric_name"])}</p>'
        f'<p class="asof">{html.escape(_headline_label(row))}{target}</p>{why}</div>'
    )


def render(
    headlines: list[dict],
    results: dict[str, list[dict]],
    generated_at: datetime,
    about_the_data: str = "",
) -> str:
    as_of = max((row["data_as_of"] for row in headlines if row["data_as_of"]), default=None)
    cards = "".join(_card(row) for row in headlines)
    headline_table = _table(
        "Headline numbers (the figures in the cards above)", HEADLINE_COLUMNS, headlines, False
    )
    sections: dict[str, list[str]] = {}
    specs: dict[str, dict] = {}
    for panel in PANELS:
        rows = results[panel.slug]
        specs[panel.slug] = _spec(panel, rows)
        suppressed = any(row.get(SUPPRESSED) for row in rows)
        title = html.escape(panel.title)
        sections.setdefault(panel.section, []).append(
            f'<figure class="panel" id="{panel.slug}">'
            f'<figcaption><h3 id="title-{panel.slug}">{title}</h3>'
            f'<p class="span">{html.escape(panel.span(rows))}</p>'
            f"<p>{html.escape(panel.description)}</p></figcaption>"
            f'<div class="chart" id="chart-{panel.slug}" role="img" '
            f'aria-label="{title}: chart; the table below has its numbers"></div>'
            f'<p><a class="csv" href="data/{panel.slug}.csv" download>Download the data (CSV)</a></p>'
            f"<details><summary>Table: {title}</summary>"
            f"{_table(panel.title, panel.columns, rows, suppressed)}</details></figure>"
        )
    body = "".join(
        f"<section><h2>{html.escape(name)}</h2>{''.join(figures)}</section>"
        for name, figures in sections.items()
    )
    stamp = generated_at.strftime("%Y-%m-%d %H:%M UTC")
    # "</" inside a script element would end it early.
    specs_json = json.dumps(specs).replace("</", "<\\/")
    as_of_text = as_of.isoformat() if as_of else "no data yet"
    delay_hours = int(dbt_var("publication_delay_hours"))
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>How our city is doing</title>
<style>
body{{font-family:system-ui,sans-serif;max-width:72rem;margin:0 auto;padding:1rem 2rem;color:#1b1b1b;line-height:1.45}}
h1{{margin-bottom:.2rem}} h3{{margin:.2rem 0}} .asof-page{{color:#444;margin-top:0}}
.cards{{display:grid;grid-template-columns:repeat(auto-fill,minmax(13rem,1fr));gap:1rem}}
.card{{border:1px solid #ccd;border-radius:.5rem;padding:.8rem}} .card p{{margin:.2rem 0}}
.value{{font-size:1.9rem;font-weight:700;color:#1f6f8b}} .name{{font-weight:600}}
.asof,.why{{color:#555;font-size:.85rem}}
.panel{{margin:1.5rem 0;border-top:1px solid #dde;padding-top:1rem}} .chart{{width:100%}}
.span{{color:#333}}
.table-wrap{{max-width:100%;overflow-x:auto}}
table{{border-collapse:collapse;margin:.5rem 0}} caption{{text-align:left;font-weight:600;padding:.3rem 0}}
th,td{{border:1px solid #ccd;padding:.2rem .5rem;text-align:left}} .num{{text-align:right}}
.note{{color:#555;font-size:.85rem}} a.csv{{font-weight:600}}
main,header,footer,p,h1,h2,h3,caption,th,td{{overflow-wrap:anywhere}}
@media (max-width:40rem){{
body{{padding:.75rem}} h1{{font-size:1.6rem}} .panel{{margin:1rem 0}}
th,td{{padding:.2rem .3rem}}
}}
</style>
<script>
// Vega, Vega-Lite and vega-embed, inlined so that the page needs no network.
{_vega_bundle()}
</script>
</head>
<body>
<header>
<h1>How our city is doing</h1>
<p class="asof-page">Data as of <strong id="data-as-of">{html.escape(as_of_text)}</strong>
· page built {html.escape(stamp)} from the published open data</p>
</header>
<main>
<section><h2>Headline numbers</h2><div class="cards">{cards}</div>
<details><summary>Table: headline numbers</summary>{headline_table}</details>
<p><a class="csv" href="data/headlines.csv" download>Download the headline numbers (CSV)</a></p>
</section>
{body}
{about_the_data}
{_privacy_section(delay_hours)}
</main>
<footer><p class="note">Neighborhood and call-type figures from 1 to {min_cell_count() - 1} records
are suppressed to protect the people behind them (<a href="#privacy">how we protect privacy</a>). 911 calls and Mediation Response Unit cases are
published {delay_hours} hours after they come in, so their figures end before the others'. A week
or month the data covers only in part is left out of its chart and kept in its table.</p></footer>
<script>
const specs = {specs_json};
for (const [slug, spec] of Object.entries(specs)) {{
  vegaEmbed("#chart-" + slug, spec, {{renderer: "svg", actions: false}})
    .catch((error) => console.error("chart " + slug + ": " + error));
}}
</script>
</body>
</html>
"""


_LOCATION_PUBLISHED = {
    "none": "no location",
    "neighborhood": "neighborhood only",
    "block": "block",
}


def _privacy_section(delay_hours: int) -> str:
    """How the open data protects the people in it (docs/privacy.md says it in full)."""
    policy = "".join(
        f"<tr><td>{html.escape(row['call_type'].capitalize())}</td>"
        f"<td>{html.escape(_LOCATION_PUBLISHED[row['location_level']])}</td>"
        f"<td>by {html.escape(row['time_grain'])}</td>"
        f'<td class="num">{int(row["publication_delay_hours"])} hours</td></tr>'
        for row in sensitive_call_types()
    )
    smallest = min_cell_count()
    return f"""<section id="privacy"><h2>How we protect privacy</h2>
<p>The open data has no names, phone numbers or narratives. Addresses are cut to the block
(1234 Main St becomes 12XX Main St) and map points are rounded to about 100 metres. 911 calls and
Mediation Response Unit cases are published {delay_hours} hours after they come in.</p>
<p>Calls that could point at a victim, a patient or a child are published with less detail:</p>
<div class="table-wrap"><table><caption>Sensitive 911 call types</caption>
<thead><tr><th scope="col">Call type</th><th scope="col">Location published</th>
<th scope="col">Time published</th><th scope="col">Published after</th></tr></thead>
<tbody>{policy}</tbody></table></div>
<p>A neighborhood figure from 1 to {smallest - 1} records is suppressed, and so is a share whose
count is that small. Where a day has only one suppressed neighborhood, a second one is suppressed
beside it, so the city's total less the other neighborhoods cannot give it back. Records behind a
suppressed figure are published without their location, so counting them cannot either; the city's
totals still count them.</p></section>"""


def _kind_of(row: dict) -> str:
    return "share" if "share" in row["unit"] else "number"
