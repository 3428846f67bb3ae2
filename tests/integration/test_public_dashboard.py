"""The resident-facing page, built from a real published warehouse and loaded in headless Chromium:
every chart draws its data with no network, every chart has a captioned table and a CSV behind it,
small cells are withheld, and the page reads only what the BI role may read. At its edges: partial
weeks are left out of the charts, every span is the data's own, every date says why it is that day,
and the page reads on a phone 390 px wide (screenshots in build/screenshots/public_dashboard_390*).

One module-wide warehouse: four weeks of every source, built and published as the DAG publishes
them (the publication delay counted from the window's end), so the calls end a day before the rest.
"""

from __future__ import annotations

import csv
import re
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg
import pytest
from browser import (  # noqa: F401 (the chromium fixture)
    chromium,
    console_errors,
    emulate_viewport,
    headless_chromium,
    save_screenshot,
    wait_for,
)
from helpers import UNGATED_FIXTURE, extract_city_window
from selenium.webdriver.common.by import By

from civic_warehouse import catalog, pipeline, public_dashboard

pytestmark = pytest.mark.integration

# Local dates, end exclusive: 28 days from a Saturday, so the data's first and last weeks are
# partial, and August is not whole.
START, END = "2026-08-01", "2026-08-29"
PHONE = (390, 844)


@pytest.fixture(scope="module")
def published(clean_warehouse_module: str, simulator) -> str:
    url = extract_city_window(clean_warehouse_module, simulator, START, END)
    zone = ZoneInfo(catalog.get_source("calls_for_service").timezone)
    pipeline.transform_candidate(url, as_of=datetime.fromisoformat(END).replace(tzinfo=zone))
    pipeline.publish(url, force_reason=UNGATED_FIXTURE)
    return url


@pytest.fixture(scope="module")
def site(published: str, tmp_path_factory) -> Path:
    return public_dashboard.build(published, tmp_path_factory.mktemp("public"))


@pytest.fixture(scope="module")
def loaded(site: Path, chromium):  # noqa: F811 (the fixture imported above)
    chromium.get(site.as_uri())
    wait_for(
        chromium,
        lambda d: (
            len(d.find_elements(By.CSS_SELECTOR, ".chart svg g.role-mark"))
            >= len(public_dashboard.PANELS)
        ),
        "every chart drew an SVG with marks",
        timeout=120,  # a 1 MB inline script on a busy 2-core machine
    )
    return chromium


def csv_rows(path: Path) -> list[dict]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_every_chart_draws_its_data_with_no_network(site, loaded):
    html = site.read_text()
    # Everything the page needs is in the file: no script, style or font from another host.
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)
    for panel in public_dashboard.PANELS:
        marks = loaded.find_elements(By.CSS_SELECTOR, f"#chart-{panel.slug} svg g.role-mark path")
        assert marks, f"chart {panel.slug} drew no marks"
    assert console_errors(loaded) == []
    shot = save_screenshot(loaded, "public_dashboard")
    assert shot.stat().st_size > 10_000


def test_headlines_say_how_recent_their_data_is(published, site, loaded):
    with psycopg.connect(published) as conn:
        (last_day,) = conn.execute(
            "select max(date_day) from open.fct_kpi_daily where area = 'Citywide'"
        ).fetchone()
    assert loaded.find_element(By.ID, "data-as-of").text == last_day.isoformat()
    cards = loaded.find_elements(By.CSS_SELECTOR, ".cards .card")
    headlines = csv_rows(site.parent / "data" / "headlines.csv")
    assert len(cards) == len(headlines) == 9
    assert all(row["data_as_of"] and row["value"] != "" for row in headlines)
    with psycopg.connect(published) as conn:
        (handled,) = conn.execute(
            "select sum(metric_value) from open.fct_kpi_daily where area = 'Citywide' "
            "and metric_id = 'mru_calls_handled' and date_day > %s::date - 30",
            [last_day],
        ).fetchone()
    mru = next(row for row in headlines if row["metric_name"].startswith("Calls handled"))
    assert int(mru["value"]) == handled > 0


def test_every_chart_has_a_captioned_table_and_a_csv_of_the_same_rows(site, loaded):
    for panel in public_dashboard.PANELS:
        figure = loaded.find_element(By.ID, panel.slug)
        table = figure.find_element(By.TAG_NAME, "table")
        caption = table.find_element(By.TAG_NAME, "caption").get_attribute("textContent")
        assert caption == panel.title
        link = figure.find_element(By.CSS_SELECTOR, "a.csv")
        assert link.get_attribute("download") is not None
        data = site.parent / link.get_attribute("href").split(site.parent.as_uri() + "/")[1]
        rows = csv_rows(data)
        assert list(rows[0]) == [column.key for column in panel.columns]
        body_rows = table.find_elements(By.CSS_SELECTOR, "tbody tr")
        assert len(body_rows) == len(rows) > 0, panel.slug


def test_neighborhood_cells_from_too_few_records_are_withheld(published, site):
    """The page's neighborhood table is a mart dbt builds, suppresses and the gate checks. Built
    over one day instead of thirty (into a schema of its own), many neighborhoods have only a few
    MRU cases. Those cases are published without a neighborhood (docs/privacy.md: a record of a
    suppressed KPI cell has its location withheld), so no neighborhood of the mart, or of the rows
    it is computed from, shows 1 to 4 of them; its figures are the rows'; and no single withheld
    neighborhood is the city's total less the others."""
    from civic_warehouse import transform

    zone = ZoneInfo(catalog.get_source("calls_for_service").timezone)
    one_day = "one_day_window"
    transform.run_dbt(
        [
            "build",
            "--select",
            "+fct_mru_responses_by_neighborhood",
            *transform.PIPELINE_BUILD_FLAGS,
        ],
        published,
        extra_vars={"public_window_days": 1},
        as_of=datetime.fromisoformat(END).replace(tzinfo=zone),
        environ={"CW_MARTS_SCHEMA": one_day},
    )
    with psycopg.connect(published) as conn:
        counts = dict(
            conn.execute(
                f"select neighborhood, count(*) from {one_day}.fct_mru_responses "
                "where received_date_local = (select max(received_date_local) "
                f"from {one_day}.fct_mru_responses) group by neighborhood"
            ).fetchall()
        )
        cells = conn.execute(
            "select area, area_type, suppressed, calls_handled, window_start, last_day"
            f" from {one_day}.fct_mru_responses_by_neighborhood"
        ).fetchall()
        conn.execute(f"drop schema {one_day} cascade")
        conn.commit()
    withheld = counts.pop(None, 0)
    assert withheld, "the day should have cases in small neighborhood cells, their place withheld"
    assert {name for name, count in counts.items() if 1 <= count < 5} == set()
    assert counts, "the day should have neighborhoods with enough cases to publish"
    assert all(start == last for *_, start, last in cells)  # one day
    (city,) = [handled for _, kind, _, handled, *_ in cells if kind == "citywide"]
    assert city == sum(counts.values()) + withheld
    neighborhoods = [row for row in cells if row[1] == "neighborhood"]
    for name, _, suppressed, handled, *_ in neighborhoods:
        assert suppressed or handled == counts.get(name, 0), name
        assert handled is None or not 1 <= handled < 5, name
    assert sum(1 for row in neighborhoods if row[2]) != 1
    # The page says why nothing is left to mark suppressed here, in its privacy section.
    assert "records behind a\nsuppressed figure are published without their location" in (
        site.read_text().lower()
    )


def test_the_page_reads_as_the_bi_role_and_so_never_the_raw_layer(published, monkeypatch):
    monkeypatch.setattr(
        public_dashboard,
        "HEADLINES_SQL",
        "select count(*) from raw.calls_for_service where %(window_days)s > %(min_cell_count)s",
    )
    with pytest.raises(public_dashboard.DashboardError, match=r"'headlines'.*permission denied"):
        public_dashboard.read_open(published)


def days_by_week(url: str, metric_id: str) -> dict[date, int]:
    """The Citywide days of a metric in each week (from Monday), read from the warehouse."""
    with psycopg.connect(url) as conn:
        return dict(
            conn.execute(
                "select date_trunc('week', date_day)::date, count(*) from open.fct_kpi_daily"
                " where area = 'Citywide' and metric_id = %s group by 1 order by 1",
                [metric_id],
            ).fetchall()
        )


def drawn_weeks(driver, slug: str) -> list[date]:
    """The weeks a chart drew points for, from the label each point has for screen readers
    ("Week starting 2026-08-03: ...")."""
    labels = driver.execute_script(
        "return Array.from(document.querySelectorAll(arguments[0]))"
        ".map(mark => mark.getAttribute('aria-label'))",
        f'#chart-{slug} svg [aria-roledescription="point"]',
    )
    return sorted(
        date.fromisoformat(re.match(r"Week starting (\d{4}-\d{2}-\d{2}): ", label)[1])
        for label in labels
    )


def test_partial_weeks_are_left_out_of_the_charts_and_their_captions_say_so(
    published, site, loaded
):
    weeks = days_by_week(published, "service_requests_closed_on_time_share")
    full = sorted(week for week, days in weeks.items() if days == 7)
    partial = {week: days for week, days in weeks.items() if days < 7}
    assert full and len(partial) == 2, "the window should start and end mid-week"
    panel = "service_requests_on_time_per_week"
    # Drawn: the full weeks only, never a partial week's fall.
    assert drawn_weeks(loaded, panel) == full
    # Kept in the table and the CSV, with the days each has.
    rows = csv_rows(site.parent / "data" / f"{panel}.csv")
    assert {date.fromisoformat(row["week_start"]): int(row["days_with_data"]) for row in rows} == (
        weeks
    )
    caption = loaded.find_element(By.CSS_SELECTOR, f"#{panel} .span").text
    assert caption.startswith(f"{len(full)} full weeks, {full[0]} to ")
    for week, days in partial.items():
        assert f"the week of {week} (data on {days} of its 7 days)" in caption
    # The MRU cases start on a Monday here: only their last week is partial.
    mru = days_by_week(published, "mru_calls_handled")
    assert drawn_weeks(loaded, "mru_calls_per_week") == sorted(
        week for week, days in mru.items() if days == 7
    )


def test_a_chart_with_no_full_period_marks_the_partial_one(site, loaded):
    # August is not whole: the monthly chart draws it, marked, and its caption says so.
    panel = "traffic_deaths_and_serious_injuries_per_month"
    [row] = csv_rows(site.parent / "data" / f"{panel}.csv")
    assert (row["month_start"], row["days_with_data"], row["days_in_period"]) == (
        "2026-08-01",
        "28",
        "31",
    )
    texts = [t.text for t in loaded.find_elements(By.CSS_SELECTOR, f"#chart-{panel} svg text")]
    assert "partial month" in texts
    caption = loaded.find_element(By.CSS_SELECTOR, f"#{panel} .span").text
    assert caption.startswith("No full month of data yet")
    assert "August 2026 (data on 28 of its 31 days)" in caption


def test_captions_name_the_datas_own_span(published, site, loaded):
    page = site.read_text()
    for fixed in ("last 52 weeks", "last 26 weeks", "last 24 months", "last 90 days", "last 30"):
        assert fixed not in page
    with psycopg.connect(published) as conn:
        first, last = conn.execute(
            "select min(received_date_local), max(received_date_local)"
            " from open.fct_recent_calls_for_service"
        ).fetchone()
    days = (last - first).days + 1
    assert days < public_dashboard.window_days()  # the data is younger than the page's window
    for slug in ("calls_by_call_type", "response_time_by_neighborhood"):
        caption = loaded.find_element(By.CSS_SELECTOR, f"#{slug} .span").text
        assert caption.startswith(f"The {days} days {first} to {last}: all the data so far"), slug
    caption = loaded.find_element(By.CSS_SELECTOR, "#response_time_per_day .span").text
    assert caption == f"Each day from {first} to {last} ({days} days)."


def test_every_headline_date_says_why_it_ends_there(published, loaded):
    with psycopg.connect(published) as conn:
        last_days = dict(
            conn.execute(
                "select metric_id, max(date_day) from open.fct_kpi_daily"
                " where area = 'Citywide' group by metric_id"
            ).fetchall()
        )
    as_of = max(last_days.values())
    behind = set()
    for card in loaded.find_elements(By.CSS_SELECTOR, ".cards .card"):
        metric_id = card.get_attribute("data-metric")
        last_day = last_days[metric_id]
        assert last_day.isoformat() in card.find_element(By.CSS_SELECTOR, ".asof").text
        why = card.find_element(By.CSS_SELECTOR, ".why").text
        if last_day < as_of:
            behind.add(metric_id)
            assert re.search(r"published 24 hours after they (are received|open)", why), why
        else:
            assert why.startswith("The latest day of "), why
    # The calls and the MRU cases wait out the publication delay; the other sources do not.
    assert behind == {
        "mru_calls_handled",
        "mru_resolved_without_police_share",
        "response_time_median_priority_1",
    }


# Every element with a box, which must lie inside the viewport; and any SVG text Vega shortened.
OVERFLOWS = """
const width = document.documentElement.clientWidth;
const out = [];
for (const element of document.querySelectorAll('body *')) {
  const box = element.getBoundingClientRect();
  if (box.width === 0 && box.height === 0) continue;
  if (box.left < -0.5 || box.right > width + 0.5) {
    out.push(`${element.tagName} "${(element.textContent || '').trim().slice(0, 60)}" `
      + `from ${Math.round(box.left)} to ${Math.round(box.right)}`);
  }
}
for (const text of document.querySelectorAll('svg text')) {
  if (text.textContent.includes('\u2026')) out.push(`shortened: "${text.textContent}"`);
}
for (const wrap of document.querySelectorAll('.table-wrap')) {
  if (wrap.scrollWidth > wrap.clientWidth) out.push(`table scrolls: ${wrap.textContent.slice(0, 60)}`);
}
return out;
"""


@pytest.fixture(scope="module")
def phone(site: Path):
    # The city's own time zone, west of Greenwich: a date read as UTC midnight would show a day early.
    with headless_chromium() as driver:
        emulate_viewport(driver, *PHONE, timezone="America/New_York")
        driver.get(site.as_uri())
        wait_for(
            driver,
            lambda d: (
                len(d.find_elements(By.CSS_SELECTOR, ".chart svg g.role-mark"))
                >= len(public_dashboard.PANELS)
            ),
            "every chart drew on the phone",
            timeout=120,
        )
        yield driver


def test_the_page_reads_on_a_phone_390_px_wide(phone):
    assert phone.execute_script("return [innerWidth, innerHeight]") == list(PHONE)
    save_screenshot(phone, "public_dashboard_390_first_screen", full_page=False)
    height = phone.execute_script("return document.documentElement.scrollHeight")
    emulate_viewport(phone, PHONE[0], height)
    shot = save_screenshot(phone, "public_dashboard_390", full_page=False)
    emulate_viewport(phone, *PHONE)
    assert shot.stat().st_size > 10_000
    titles = [h.text for h in phone.find_elements(By.CSS_SELECTOR, ".panel h3")]
    assert titles == [panel.title for panel in public_dashboard.PANELS]
    assert phone.execute_script(OVERFLOWS) == []
    # The tables behind the charts too, opened.
    phone.execute_script("document.querySelectorAll('details').forEach(d => d.open = true)")
    assert phone.execute_script(OVERFLOWS) == []
    assert phone.execute_script(
        "return document.documentElement.scrollWidth <= document.documentElement.clientWidth"
    )
    # The weeks start on the Mondays the data has, in the resident's own time zone.
    weeks = drawn_weeks(phone, "mru_calls_per_week")
    assert weeks and all(week.weekday() == 0 for week in weeks)
    assert console_errors(phone) == []
