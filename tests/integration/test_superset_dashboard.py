"""Superset provisioned from bi/ on a real published warehouse, looked at in headless Chromium:
the admin logs in, opens the "City performance" dashboard, and every chart the bundle defines has
drawn its data (no error, no empty result), showing what its title says. Superset reads the
warehouse as bi_reader.

One module-wide warehouse (two weeks of every source, built and published) and one Superset
(its own virtualenv, made from bi/requirements.txt on first use; a throwaway home).
"""

from __future__ import annotations

import json
import secrets
import urllib.request
from pathlib import Path

import psycopg
import pytest
import yaml
from browser import chromium, save_screenshot, wait_for  # noqa: F401 (fixture)
from helpers import UNGATED_FIXTURE
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from civic_warehouse import access, pipeline, superset, warehouse

pytestmark = pytest.mark.integration

SCREENSHOT = "superset-city-performance"
CHART_NAMES = sorted(
    yaml.safe_load(path.read_text())["slice_name"]
    for path in (superset.BI_DIR / "assets" / "charts").glob("*.yaml")
)

# What each chart on the dashboard shows, read from the DOM Superset renders: still loading, an
# error alert, Superset's "no results" state, or something drawn (an ECharts canvas, a big number,
# table rows).
CHART_STATES = """
return Array.from(document.querySelectorAll('[data-test="chart-grid-component"]')).map(chart => {
  const body = chart.querySelector('[data-test="slice-container"]');
  const error = chart.querySelector('.ant-alert-error, [role="alert"]');
  const number = body && body.querySelector('.header-line');
  return {
    name: chart.getAttribute('data-test-chart-name'),
    loading: !!chart.querySelector('[data-test="loading-indicator"]'),
    error: error ? error.innerText.trim() || 'error' : null,
    empty: !!chart.querySelector('[data-test="empty-state"]')
      || chart.innerText.includes('No results were returned'),
    drawn: !!body && (
      !!body.querySelector('canvas')
      || !!(number && number.innerText.trim())
      || body.querySelectorAll('table tbody tr').length > 0
    ),
  };
});
"""


def test_provisioning_refuses_a_warehouse_with_nothing_published(clean_warehouse, tmp_path):
    keys = superset.Secrets("key", "admin", "reader")
    with pytest.raises(superset.SupersetError, match=r"no published fct_kpi_daily.*make demo"):
        superset.provision(clean_warehouse, tmp_path, keys)


@pytest.fixture(scope="module")
def published(built_fortnight: str) -> str:
    pipeline.publish(built_fortnight, force_reason=UNGATED_FIXTURE)
    return built_fortnight


@pytest.fixture(scope="module")
def keys() -> superset.Secrets:
    return superset.Secrets(*(secrets.token_urlsafe(24) for _ in superset.SECRET_VARIABLES))


@pytest.fixture(scope="module")
def superset_url(published: str, keys: superset.Secrets, tmp_path_factory):
    home = tmp_path_factory.mktemp("superset-home")
    superset.provision(published, home, keys)
    with superset.serve(published, home, keys) as url:
        yield url


@pytest.fixture(scope="module")
def dashboard(superset_url: str, keys: superset.Secrets, chromium):  # noqa: F811 (fixture)
    chromium.set_window_size(1400, 3200)  # the whole dashboard in view
    log_in(chromium, superset_url, superset.ADMIN_USERNAME, keys.admin_password)
    chromium.get(superset_url + superset.DASHBOARD_PATH)

    def settled(driver) -> list[dict] | None:
        states = driver.execute_script(CHART_STATES)
        done = len(states) == len(CHART_NAMES) and all(
            not s["loading"] and (s["drawn"] or s["error"] or s["empty"]) for s in states
        )
        return states if done else None

    states = wait_for(chromium, settled, "every chart finished loading", timeout=180)
    save_screenshot(chromium, SCREENSHOT)
    return states


def log_in(driver, base_url: str, username: str, password: str) -> None:
    """Sign in through Superset's login page, as a person would.

    The page is a React app that can render its form again while it loads, dropping what was
    typed before, so each field is typed into until it still holds its value a moment later.
    """
    fields = {"username": username, "password": password}

    def filled(d) -> bool:
        for field_id, value in fields.items():
            found = d.find_elements(By.ID, field_id)
            if not found:
                return False
            if found[0].get_attribute("value") != value:
                found[0].send_keys(Keys.CONTROL, "a")
                found[0].send_keys(value)
                return False  # looked at again on the next poll
        return True

    driver.get(f"{base_url}/login/")
    wait_for(driver, filled, "the login form holds the admin's credentials")
    driver.find_element(By.CSS_SELECTOR, '[data-test="login-button"]').click()

    def outcome(d) -> str | None:
        if "/login" not in d.current_url:
            return "signed in"
        alerts = [a.text for a in d.find_elements(By.CSS_SELECTOR, '[role="alert"]') if a.text]
        return f"refused: {alerts}" if alerts else None

    assert wait_for(driver, outcome, "the admin is signed in or refused") == "signed in"


def test_every_chart_on_the_dashboard_draws_its_data(dashboard):
    assert sorted(state["name"] for state in dashboard) == CHART_NAMES
    failed = {
        state["name"]: state
        for state in dashboard
        if state["error"] or state["empty"] or not state["drawn"]
    }
    assert not failed, (
        f"charts without data (screenshot build/screenshots/{SCREENSHOT}.png): {failed}"
    )


def test_the_big_numbers_are_the_published_totals(dashboard, published, chromium):  # noqa: F811
    with psycopg.connect(published) as conn:
        expected = dict(
            conn.execute(
                "select metric_id, sum(metric_value)::bigint from open.fct_kpi_daily"
                " where area = 'Citywide' and metric_id in ('mru_calls_handled', 'permits_issued')"
                " group by metric_id"
            ).fetchall()
        )
    shown = {
        chart.get_attribute("data-test-chart-name"): chart.find_element(
            By.CSS_SELECTOR, ".header-line"
        ).text
        for chart in chromium.find_elements(
            By.CSS_SELECTOR, '[data-test-viz-type="big_number_total"]'
        )
    }
    assert shown == {
        "MRU calls handled": f"{expected['mru_calls_handled']:,}",
        "Building permits issued": f"{expected['permits_issued']:,}",
    }


EQUITY_CHART = "Open 311 requests per 10,000 residents on the last day shown, by neighborhood"


def test_the_equity_tables_citywide_is_the_citys_rate_on_the_last_day_on_every_row(
    dashboard,
    published,
    chromium,  # noqa: F811 (fixture)
):
    with psycopg.connect(published) as conn:
        (citywide,) = conn.execute(
            "select round(daily.metric_value * 10000"
            " / (select sum(population) from open.dim_neighborhood), 1)"
            " from open.fct_kpi_daily as daily where area = 'Citywide'"
            " and metric_id = 'service_requests_open_backlog' order by date_day desc limit 1"
        ).fetchone()
    chart = chromium.find_element(By.CSS_SELECTOR, f'[data-test-chart-name="{EQUITY_CHART}"]')
    headers = [th.text for th in chart.find_elements(By.CSS_SELECTOR, "table thead th")]
    column = headers.index("Citywide")
    rows = chart.find_elements(By.CSS_SELECTOR, "table tbody tr")
    shown = {row.find_elements(By.TAG_NAME, "td")[column].text for row in rows}
    assert len(rows) > 1 and shown == {str(citywide)}, headers


def test_the_share_charts_axes_run_from_0_to_100_percent_as_imported(superset_url, keys):
    token = api(superset_url, "/api/v1/security/login", {
        "username": superset.ADMIN_USERNAME, "password": keys.admin_password, "provider": "db",
    })["access_token"]  # fmt: skip
    listed = api(
        superset_url, "/api/v1/chart/?q=(columns:!(slice_name,params),page_size:100)", token=token
    )["result"]
    params = {chart["slice_name"]: json.loads(chart["params"]) for chart in listed}
    shares = {name: p for name, p in params.items() if "%" in p.get("y_axis_format", "")}
    assert len(shares) == 2
    for name, chart in shares.items():
        assert (chart["truncateYAxis"], chart["y_axis_bounds"]) == (True, [0, 1]), name


def test_superset_connects_as_the_bi_role_with_the_password_kept_out_of_sight(
    superset_url, keys, published
):
    token = api(superset_url, "/api/v1/security/login", {
        "username": superset.ADMIN_USERNAME, "password": keys.admin_password, "provider": "db",
    })["access_token"]  # fmt: skip
    databases = api(superset_url, "/api/v1/database/", token=token)["result"]
    assert [db["database_name"] for db in databases] == ["Civic warehouse"]
    database_id = databases[0]["id"]
    detail = api(superset_url, f"/api/v1/database/{database_id}/connection", token=token)["result"]
    parts = warehouse.ConnectionParts.from_url(published)
    assert detail["sqlalchemy_uri"] == (
        f"postgresql+psycopg2://{access.BI_ROLE}:XXXXXXXXXX@{parts.host}:{parts.port}/{parts.dbname}"
    )
    assert keys.bi_reader_password not in json.dumps(detail)


def api(base_url: str, path: str, body: dict | None = None, token: str | None = None) -> dict:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(base_url + path, data=data, headers=headers)
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.load(response)


def test_the_bundle_in_the_repository_holds_no_password():
    for path in Path(superset.BI_DIR / "assets").rglob("*.yaml"):
        config = yaml.safe_load(path.read_text())
        if "sqlalchemy_uri" in config:
            assert ":XXXXXXXXXX@" in config["sqlalchemy_uri"], path
