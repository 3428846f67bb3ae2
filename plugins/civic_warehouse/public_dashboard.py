"""The resident-facing performance page: a static site built from the published marts.

Written to ``build/public/`` after every publish: one self-contained ``index.html`` (the Vega
JavaScript is inlined, so the page renders with no internet and from any static host or a file) and
one CSV per chart under ``data/``. Headline numbers carry the day their data runs to; every chart
has a table behind it (a real ``<table>`` with a caption, for screen readers and for anyone who
wants the numbers) and a CSV download.

The page reads only what the BI role may read: the ``open`` schema, in a read-only transaction
running as ``bi_reader``. Figures the page aggregates itself follow the open marts' small-cell rule:
a neighborhood or call-type cell from 1 to ``min_cell_count`` - 1 records is withheld.
"""

from __future__ import annotations

import csv
import html
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import altair as alt
import psycopg
import vl_convert
import yaml
from psycopg import sql
from psycopg.rows import dict_row

from civic_warehouse import access, settings, warehouse

log = logging.getLogger(__name__)

SITE_DIR = settings.BUILD_DIR / "public"
BUNDLE_CACHE_DIR = settings.BUILD_DIR / "cache"
WINDOW_DAYS = 30  # headline and breakdown figures cover the last 30 days of each source
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


def query_params() -> dict[str, Any]:
    return {"window_days": WINDOW_DAYS, "min_cell_count": min_cell_count()}


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    kind: str = "text"  # text, date, count, share, minutes, number


@dataclass(frozen=True)
class Panel:
    """One chart on the page: the query behind it, its table's columns, and how it is drawn."""

    slug: str
    section: str
    title: str
    description: str
    sql: str
    columns: tuple[Column, ...]
    chart: Callable[[list[dict]], alt.Chart] | None = None


# Headlines: each metric over the last WINDOW_DAYS days its source covers, from the Citywide KPIs.
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

# The median response of the whole period, from the calls themselves (a median of daily medians
# is not a median), measured as the KPI catalog measures it.
RESPONSE_HEADLINE_SQL = """
with coverage as materialized (
    select max(received_date_local) as last_day from open.fct_recent_calls_for_service
)
select
    coverage.last_day as data_as_of,
    calls.priority,
    count(*) as responses,
    round(
        (percentile_cont(0.5) within group (order by calls.seconds_received_to_on_scene))::numeric
        / 60, 1
    ) as median_minutes
from open.fct_recent_calls_for_service as calls
cross join coverage
where
    calls.responding_unit_type in ('POLICE', 'FIRE')
    and calls.seconds_received_to_on_scene > 0
    and calls.priority = 1
    and calls.received_date_local > coverage.last_day - %(window_days)s
group by coverage.last_day, calls.priority
"""


def _weekly_share_sql(metric_id: str, weeks: int) -> str:
    return f"""
with daily as (
    select * from open.fct_kpi_daily
    where area = 'Citywide' and metric_id = '{metric_id}'
)
select
    date_trunc('week', date_day)::date as week_start,
    sum(denominator) as records,
    round(sum(numerator)::numeric / nullif(sum(denominator), 0), 4) as share,
    max(target) as target
from daily
where date_day > (select max(date_day) from daily) - {weeks * 7}
group by 1
order by 1
"""


MRU_WEEKLY_SQL = """
with daily as (
    select * from open.fct_kpi_daily
    where area = 'Citywide'
      and metric_id in ('mru_calls_handled', 'mru_resolved_without_police_share')
)
select
    date_trunc('week', date_day)::date as week_start,
    sum(metric_value) filter (where metric_id = 'mru_calls_handled') as calls_handled,
    round(
        sum(numerator) filter (where metric_id = 'mru_resolved_without_police_share')::numeric
        / nullif(sum(denominator) filter (where metric_id = 'mru_resolved_without_police_share'), 0),
        4
    ) as resolved_without_police_share
from daily
where date_day > (select max(date_day) from daily) - 364
group by 1
order by 1
"""

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

TRAFFIC_MONTHLY_SQL = """
with daily as (
    select * from open.fct_kpi_daily
    where area = 'Citywide' and metric_id in ('traffic_deaths', 'traffic_serious_injuries')
)
select
    date_trunc('month', date_day)::date as month_start,
    sum(metric_value) filter (where metric_id = 'traffic_deaths') as people_killed,
    sum(metric_value) filter (where metric_id = 'traffic_serious_injuries')
        as people_killed_or_seriously_injured
from daily
where date_day >= date_trunc('month', (select max(date_day) from daily)) - interval '23 months'
group by 1
order by 1
"""


# Breakdowns aggregate the fact marts over the period; a cell from 1 to min_cell_count - 1
# records is withheld, as the open marts withhold theirs.
def _by_neighborhood(fact: str, count: str, value: str, value_sql: str, where: str) -> str:
    """Every neighborhood with its ``count`` of ``fact`` rows and ``value`` over the window
    (``value_sql`` aggregating rows aliased ``facts``, which ``where`` filters); cells withheld
    as the open marts withhold theirs."""
    withheld = f"coalesce(cells.{count}, 0) between 1 and %(min_cell_count)s - 1"
    return f"""
with coverage as materialized (
    select max(received_date_local) as last_day from open.{fact}
),
cells as (
    select
        facts.neighborhood,
        count(*) as {count},
        {value_sql} as {value}
    from open.{fact} as facts
    cross join coverage
    where
        {where}
        and facts.received_date_local > coverage.last_day - %(window_days)s
    group by facts.neighborhood
)
select
    neighborhoods.neighborhood,
    {withheld} as suppressed,
    case when not {withheld} then coalesce(cells.{count}, 0) end as {count},
    case when not {withheld} then cells.{value} end as {value}
from open.dim_neighborhood as neighborhoods
left join cells
    on neighborhoods.neighborhood = cells.neighborhood
"""


MRU_BY_NEIGHBORHOOD_SQL = (
    _by_neighborhood(
        "fct_mru_responses",
        "calls_handled",
        "resolved_without_police_share",
        "round(avg(case when facts.is_resolved_without_police then 1 else 0 end), 4)",
        "facts.neighborhood is not null",
    )
    + "order by calls_handled desc nulls last, neighborhoods.neighborhood\n"
)

RESPONSE_BY_NEIGHBORHOOD_SQL = (
    _by_neighborhood(
        "fct_recent_calls_for_service",
        "responses",
        "median_minutes",
        "round((percentile_cont(0.5) within group (order by facts.seconds_received_to_on_scene))"
        "::numeric / 60, 1)",
        "facts.responding_unit_type in ('POLICE', 'FIRE')"
        " and facts.seconds_received_to_on_scene > 0 and facts.priority = 1",
    )
    + "order by median_minutes desc nulls last, neighborhoods.neighborhood\n"
)

CALLS_BY_TYPE_SQL = """
with coverage as materialized (
    select max(received_date_local) as last_day from open.fct_recent_calls_for_service
),
cells as (
    select
        calls.call_type,
        coalesce(calls.call_category, 'Other') as call_category,
        count(*) as calls,
        round(avg(case when calls.is_mru_response then 1 else 0 end), 4) as answered_by_mru_share
    from open.fct_recent_calls_for_service as calls
    cross join coverage
    where calls.received_date_local > coverage.last_day - %(window_days)s
    group by calls.call_type, coalesce(calls.call_category, 'Other')
)
select
    call_type,
    call_category,
    calls between 1 and %(min_cell_count)s - 1 as suppressed,
    case when calls >= %(min_cell_count)s then calls end as calls,
    case when calls >= %(min_cell_count)s then answered_by_mru_share end as answered_by_mru_share
from cells
order by cells.calls desc, call_type
limit 20
"""


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


def _mru_weekly_chart(rows: list[dict]) -> alt.Chart:
    return (
        alt.Chart(alt.Data(values=rows))
        .mark_line(point=True, color="#1f6f8b")
        .encode(
            x=alt.X("week_start:T", title="Week starting"),
            y=alt.Y("calls_handled:Q", title="Calls handled by MRU"),
            tooltip=["week_start:T", "calls_handled:Q"],
        )
    )


def _response_daily_chart(rows: list[dict]) -> alt.Chart:
    return (
        alt.Chart(alt.Data(values=rows))
        .mark_line(point=False)
        .encode(
            x=alt.X("date_day:T", title="Day"),
            y=alt.Y("median_minutes:Q", title="Median minutes to on scene"),
            color=alt.Color("priority:N", title=None),
            tooltip=["date_day:T", "priority:N", "median_minutes:Q"],
        )
    )


def _share_weekly_chart(rows: list[dict]) -> alt.Chart:
    line = (
        alt.Chart(alt.Data(values=rows))
        .mark_line(point=True, color="#1f6f8b")
        .encode(
            x=alt.X("week_start:T", title="Week starting"),
            y=alt.Y("share:Q", title="Closed on time", axis=alt.Axis(format="%")),
            tooltip=["week_start:T", alt.Tooltip("share:Q", format=".1%")],
        )
    )
    return line


def _traffic_monthly_chart(rows: list[dict]) -> alt.Chart:
    return (
        alt.Chart(alt.Data(values=rows))
        .transform_fold(
            ["people_killed", "people_killed_or_seriously_injured"], as_=["column", "people"]
        )
        .transform_calculate(
            measure="datum.column == 'people_killed' ? 'Killed' : 'Killed or seriously injured'"
        )
        .mark_bar()
        .encode(
            x=alt.X("yearmonth(month_start):O", title="Month"),
            xOffset="measure:N",
            y=alt.Y("people:Q", title="People"),
            color=alt.Color("measure:N", title=None, scale=alt.Scale(range=["#8b1f1f", "#e08a3c"])),
            tooltip=[
                alt.Tooltip("yearmonth(month_start):O", title="Month"),
                "measure:N",
                "people:Q",
            ],
        )
    )


PANELS: tuple[Panel, ...] = (
    Panel(
        "mru_calls_per_week",
        "Trends",
        "Mediation Response Unit calls handled, per week",
        "Calls the unit answered by phone or on scene instead of police, over the last 52 weeks, "
        "and the share of them resolved without police.",
        MRU_WEEKLY_SQL,
        (
            Column("week_start", "Week starting", "date"),
            Column("calls_handled", "Calls handled", "count"),
            Column("resolved_without_police_share", "Resolved without police", "share"),
        ),
        _mru_weekly_chart,
    ),
    Panel(
        "response_time_per_day",
        "Trends",
        "Median 911 response time by priority, per day",
        "Minutes from the call being received to the first police or fire unit on scene, over the "
        "last 90 days. Officer-initiated calls are left out.",
        RESPONSE_DAILY_SQL,
        (
            Column("date_day", "Day", "date"),
            Column("priority", "Priority"),
            Column("median_minutes", "Median minutes", "number"),
            Column("responses", "Responses", "count"),
        ),
        _response_daily_chart,
    ),
    Panel(
        "service_requests_on_time_per_week",
        "Trends",
        "311 requests closed within their service-level target, per week",
        "Share of the requests closed each week that were closed by their due time, over the "
        "last 26 weeks.",
        _weekly_share_sql("service_requests_closed_on_time_share", 26),
        (
            Column("week_start", "Week starting", "date"),
            Column("records", "Requests closed", "count"),
            Column("share", "Closed on time", "share"),
        ),
        _share_weekly_chart,
    ),
    Panel(
        "traffic_deaths_and_serious_injuries_per_month",
        "Trends",
        "People killed or seriously injured in traffic, per month",
        "People killed (K) and killed or seriously injured (K + A) in police-reported crashes, "
        "over the last 24 months. The Vision Zero target is zero.",
        TRAFFIC_MONTHLY_SQL,
        (
            Column("month_start", "Month", "date"),
            Column("people_killed", "People killed", "count"),
            Column("people_killed_or_seriously_injured", "Killed or seriously injured", "count"),
        ),
        _traffic_monthly_chart,
    ),
    Panel(
        "mru_calls_by_neighborhood",
        "By neighborhood",
        f"Mediation Response Unit calls by neighborhood, last {WINDOW_DAYS} days",
        "Calls the unit handled from each neighborhood, and the share resolved without police.",
        MRU_BY_NEIGHBORHOOD_SQL,
        (
            Column("neighborhood", "Neighborhood"),
            Column("calls_handled", "Calls handled", "count"),
            Column("resolved_without_police_share", "Resolved without police", "share"),
        ),
        _bar_by_category("neighborhood", "calls_handled", "Calls handled"),
    ),
    Panel(
        "response_time_by_neighborhood",
        "By neighborhood",
        f"Median priority 1 response time by neighborhood, last {WINDOW_DAYS} days",
        "Minutes from the call being received to the first police or fire unit on scene, for the "
        "most urgent calls from each neighborhood.",
        RESPONSE_BY_NEIGHBORHOOD_SQL,
        (
            Column("neighborhood", "Neighborhood"),
            Column("responses", "Responses", "count"),
            Column("median_minutes", "Median minutes", "number"),
        ),
        _bar_by_category("neighborhood", "median_minutes", "Median minutes", ".1f"),
    ),
    Panel(
        "calls_by_call_type",
        "By call type",
        f"911 calls by call type, last {WINDOW_DAYS} days",
        "The 20 most frequent call types, and the share the Mediation Response Unit answered.",
        CALLS_BY_TYPE_SQL,
        (
            Column("call_type", "Call type"),
            Column("call_category", "Category"),
            Column("calls", "Calls", "count"),
            Column("answered_by_mru_share", "Answered by MRU", "share"),
        ),
        _bar_by_category("call_type", "calls", "Calls"),
    ),
)

HEADLINE_COLUMNS = (
    Column("metric_name", "Measure"),
    Column("value", "Value", "number"),
    Column("unit", "Unit"),
    Column("target", "Target", "number"),
    Column("data_as_of", "Data as of", "date"),
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
    index.write_text(render(headlines, results, datetime.now(UTC)))
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
    if row["metric_id"] == "service_requests_open_backlog":
        return "at the end of the day"
    return f"in the {WINDOW_DAYS} days to"


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
                text = '<abbr title="fewer records than can be published">suppressed</abbr>'
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
    return (
        f"<table><caption>{html.escape(caption)}</caption><thead><tr>{head}</tr></thead>"
        f"<tbody>{''.join(body)}</tbody></table>{note}"
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
    values = [{key: _plain(value) for key, value in row.items()} for row in rows]
    chart = panel.chart(values).properties(width="container", height=260, title=panel.title)
    return chart.to_dict()


def render(headlines: list[dict], results: dict[str, list[dict]], generated_at: datetime) -> str:
    as_of = max((row["data_as_of"] for row in headlines if row["data_as_of"]), default=None)
    cards = "".join(
        f'<div class="card"><p class="value">{html.escape(_headline_value(row))}</p>'
        f'<p class="name">{html.escape(row["metric_name"])}</p>'
        f'<p class="asof">{html.escape(_headline_label(row))} '
        f"{html.escape(_display(row['data_as_of'], 'date'))}"
        + (
            f" · target {html.escape(_display(row['target'], _kind_of(row)))}"
            if row["target"] is not None
            else ""
        )
        + "</p></div>"
        for row in headlines
    )
    headline_table = _table(
        "Headline numbers (the figures in the cards above)", HEADLINE_COLUMNS, headlines, False
    )
    sections: dict[str, list[str]] = {}
    specs: dict[str, dict] = {}
    for panel in PANELS:
        rows = results[panel.slug]
        specs[panel.slug] = _spec(panel, rows)
        suppressed = any(row.get(SUPPRESSED) for row in rows)
        sections.setdefault(panel.section, []).append(
            f'<figure class="panel" id="{panel.slug}">'
            f'<div class="chart" id="chart-{panel.slug}" role="img" '
            f'aria-label="{html.escape(panel.title)}: chart; the table below has its numbers"></div>'
            f"<figcaption><p>{html.escape(panel.description)}</p>"
            f'<p><a class="csv" href="data/{panel.slug}.csv" download>Download the data (CSV)</a></p>'
            f"</figcaption>"
            f"<details><summary>Table: {html.escape(panel.title)}</summary>"
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
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>How our city is doing</title>
<style>
body{{font-family:system-ui,sans-serif;max-width:72rem;margin:0 auto;padding:1rem 2rem;color:#1b1b1b;line-height:1.45}}
h1{{margin-bottom:.2rem}} .asof-page{{color:#444;margin-top:0}}
.cards{{display:grid;grid-template-columns:repeat(auto-fill,minmax(13rem,1fr));gap:1rem}}
.card{{border:1px solid #ccd;border-radius:.5rem;padding:.8rem}} .card p{{margin:.2rem 0}}
.value{{font-size:1.9rem;font-weight:700;color:#1f6f8b}} .name{{font-weight:600}} .asof{{color:#555;font-size:.85rem}}
.panel{{margin:1.5rem 0;border-top:1px solid #dde;padding-top:1rem}} .chart{{width:100%}}
table{{border-collapse:collapse;margin:.5rem 0}} caption{{text-align:left;font-weight:600;padding:.3rem 0}}
th,td{{border:1px solid #ccd;padding:.2rem .5rem;text-align:left}} .num{{text-align:right}}
.note{{color:#555;font-size:.85rem}} a.csv{{font-weight:600}}
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
</main>
<footer><p class="note">Neighborhood and call-type figures from 1 to {min_cell_count() - 1} records
are suppressed to protect the people behind them. Calls appear once their publication delay has
passed.</p></footer>
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


def _kind_of(row: dict) -> str:
    return "share" if "share" in row["unit"] else "number"
