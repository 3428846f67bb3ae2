"""The resident-facing page, built from a real published warehouse and loaded in headless Chromium:
every chart draws its data with no network, every chart has a captioned table and a CSV behind it,
small cells are withheld, and the page reads only what the BI role may read.

One module-wide warehouse: four weeks of every source, built and published.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import psycopg
import pytest
from browser import chromium, console_errors, save_screenshot, wait_for  # noqa: F401 (fixture)
from helpers import publish_city_window
from selenium.webdriver.common.by import By

from civic_warehouse import public_dashboard

pytestmark = pytest.mark.integration

START, END = "2026-08-01", "2026-08-29"  # local dates, end exclusive: four whole weeks


@pytest.fixture(scope="module")
def published(clean_warehouse_module: str, simulator) -> str:
    return publish_city_window(clean_warehouse_module, simulator, START, END)


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


def test_neighborhood_cells_from_too_few_records_are_withheld(published, tmp_path, monkeypatch):
    # One day instead of thirty: many neighborhoods then have only a few MRU calls.
    monkeypatch.setattr(public_dashboard, "WINDOW_DAYS", 1)
    index = public_dashboard.build(published, tmp_path)
    with psycopg.connect(published) as conn:
        counts = dict(
            conn.execute(
                "select neighborhood, count(*) from open.fct_mru_responses "
                "where received_date_local = (select max(received_date_local) "
                "from open.fct_mru_responses) group by neighborhood"
            ).fetchall()
        )
    published_cells = {
        row["neighborhood"]: row["calls_handled"]
        for row in csv_rows(tmp_path / "data" / "mru_calls_by_neighborhood.csv")
    }
    small = {name for name, count in counts.items() if 1 <= count < 5}
    assert small, "the day should have neighborhoods with 1 to 4 calls"
    for name, value in published_cells.items():
        count = counts.get(name, 0)
        assert value == ("" if name in small else str(count)), name
    assert "suppressed</abbr>" in index.read_text()


def test_the_page_reads_as_the_bi_role_and_so_never_the_raw_layer(published, monkeypatch):
    monkeypatch.setattr(
        public_dashboard,
        "HEADLINES_SQL",
        "select count(*) from raw.calls_for_service where %(window_days)s > %(min_cell_count)s",
    )
    with pytest.raises(public_dashboard.DashboardError, match=r"'headlines'.*permission denied"):
        public_dashboard.read_open(published)
