"""The GX gate blocks publishing of bad data; the published marts stay exactly as they were.

Bad data comes from the city-systems simulator's fault API, as a broken source system would send
it, and travels the whole way: extract -> transform -> audit -> publish. What stewards then read
is tested here too: the dbt docs of the published marts, and the Data Docs in a browser offline.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler
from pathlib import Path

import psycopg
import pytest
from browser import OFFLINE_FLAG, console_errors, headless_chromium, save_screenshot, wait_for
from conftest import GATED_FORTNIGHT
from fake_http import listening
from helpers import schema_fingerprint
from selenium.webdriver.common.by import By

from city_simulator import mru_cases, permits
from city_simulator.calls import CALLS_DATASET_ID
from civic_warehouse import data_docs, docs_site, pipeline, quality, settings
from civic_warehouse.catalog import get_source, load_catalog

pytestmark = pytest.mark.integration

START, END = GATED_FORTNIGHT  # the published fortnight, as its faulty sources serve it again


def extract(source_name: str, start: str = START, end: str = END, reconcile: bool = False) -> dict:
    source = get_source(source_name)
    if source.event_time_field and not reconcile:
        query = pipeline.query_for_run(source, None, None, start, end)
    else:
        query = pipeline.query_for_run(source, None, None, reconcile=True)
    return pipeline.extract(source_name, query)


def results_of(url: str, run_id: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            """
            select suite, column_name, severity, success, sample_failing_values
            from quality.validation_results where run_id = %s and not success
            order by suite, column_name
            """,
            [run_id],
        ).fetchall()


def data_docs_page(suite: str, since: float) -> str:
    """The Data Docs page of the newest validation of ``suite`` written after ``since``."""
    site = quality.data_docs_index().parent
    pages = [p for p in (site / "validations" / suite).rglob("*.html") if p.stat().st_mtime > since]
    assert pages, f"no Data Docs page for {suite}"
    return max(pages, key=lambda p: p.stat().st_mtime).read_text()


def failed_result_page(suite: str, expectation: str) -> Path:
    """The Data Docs page (relative to the site) of the newest stored validation of ``suite`` in
    which ``expectation`` (a column, or a SQL expectation's description) failed."""
    store = settings.EXPECTATIONS_DIR / "uncommitted" / "validations"
    # <suite>/<run name>/<run time>/<batch>.json, as the page is <suite>/.../<batch>.html
    for stored in sorted((store / suite).glob("*/*/*.json"), key=lambda p: p.parent.name)[::-1]:
        for result in json.loads(stored.read_text())["results"]:
            config = result["expectation_config"]
            target = config["kwargs"].get("column") or config.get("description")
            if target == expectation and not result["success"]:
                return Path("validations") / stored.relative_to(store).with_suffix(".html")
    pytest.fail(f"no stored validation of {suite} in which {expectation!r} failed")


def suite_expectation(suite: str, expectation: str) -> dict:
    document = json.loads(
        (settings.EXPECTATIONS_DIR / "expectations" / f"{suite}.json").read_text()
    )
    [found] = [
        e
        for e in document["expectations"]
        if expectation in (e["kwargs"].get("column"), e.get("description"))
    ]
    return found


class QuietSiteHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@contextmanager
def served(site: Path) -> Iterator[str]:
    """``site`` over HTTP on 127.0.0.1, as `make docs` serves build/docs."""
    with listening(functools.partial(QuietSiteHandler, directory=str(site))) as url:
        yield url


# Every rendered table's rows, each with its table's header, as a steward sees them.
TABLE_ROWS_JS = """
return [...document.querySelectorAll('table')].flatMap(table => {
  const header = [...table.querySelectorAll('thead th')].map(th => th.innerText.trim());
  return [...table.querySelectorAll('tbody tr')].map(tr => ({
    header: header,
    cells: [...tr.children].map(td => td.innerText.trim()),
    failed: tr.querySelector('.fa-times') !== null,
  }));
});
"""
# The shown status icons, and whether a Font Awesome font is loaded to draw them.
STATUS_ICONS_JS = """
const icons = [...document.querySelectorAll('i.fa-check-circle, i.fa-times')];
return {
  icons: icons.length,
  drawn: icons.filter(i => i.getBoundingClientRect().width > 0).length,
  fonts: [...document.fonts].filter(f => f.family.includes('Font Awesome') && f.status === 'loaded')
    .map(f => f.family),
};
"""


def loaded_resources(driver) -> list[str]:
    return driver.execute_script(
        "return performance.getEntriesByType('resource').map(entry => entry.name)"
    )


@pytest.fixture(scope="module")
def offline_chromium():
    """Headless Chromium on a network that resolves no host but 127.0.0.1."""
    with headless_chromium(flags=(OFFLINE_FLAG,)) as driver:
        yield driver


def blocked_by_the_gate(published: str) -> quality.QualityGateFailed:
    """Build the candidate from raw and audit it: the gate must refuse it, and the published
    marts must stay byte for byte as they were."""
    before = schema_fingerprint(published, "open")
    pipeline.transform_candidate()
    with pytest.raises(quality.QualityGateFailed) as raised:
        pipeline.audit()
    assert schema_fingerprint(published, "open") == before
    return raised.value


@pytest.fixture(scope="module")
def published(gated_fortnight, simulator):
    """Two weeks of every source extracted from the simulator, built, validated and published."""
    pipeline.publish()
    yield gated_fortnight
    simulator.inject.clear()


@pytest.fixture
def faults(simulator):
    """The simulator's fault switchboard, cleared after the test."""
    yield simulator.inject
    simulator.inject.clear()


def test_good_data_passes_and_results_are_recorded(published):
    with psycopg.connect(published) as conn:
        suites = dict(
            conn.execute(
                """
                select suite, bool_and(success) from quality.validation_results
                where run_id = (select run_id from quality.validation_results
                                order by validated_at desc limit 1)
                group by suite
                """
            ).fetchall()
        )
        calls = conn.execute(
            "select count(*) from quality.validation_results where suite = 'fct_calls_for_service'"
        ).fetchone()[0]
    suite = settings.EXPECTATIONS_DIR / "expectations" / "fct_calls_for_service.json"
    assert calls >= len(json.loads(suite.read_text())["expectations"]) >= 9
    # A suite for each source as it landed and for each open mart, all passing on a healthy feed.
    assert suites == {
        "dim_call_type": True,
        "dim_date": True,
        "dim_department": True,
        "dim_neighborhood": True,
        "dim_service_type": True,
        "fct_building_permits": True,
        "fct_kpi_daily": True,
        "fct_kpi_equity": True,
        "fct_kpi_withheld_records": True,
        "fct_recent_calls_for_service": True,
        "fct_service_request_status_history": True,
        "fct_calls_for_service": True,
        "fct_mru_responses": True,
        "fct_mru_evaluation": True,
        "fct_mru_responses_by_neighborhood": True,
        "fct_response_times_by_neighborhood": True,
        "fct_calls_by_call_type": True,
        "fct_service_requests": True,
        "fct_traffic_crashes": True,
        "stg_cad__calls_for_service": True,
        "stg_crashes__traffic_crashes": True,
        "stg_gis__neighborhoods": True,
        "stg_mru__cases": True,
        "stg_open311__service_requests": True,
        "stg_permits__building_permits": True,
    }


def test_the_dbt_docs_catalog_describes_every_published_mart(published):
    """The docs step runs after publishing renamed the candidate schema to open: its dbt docs
    describe every published mart where it now is, every column with its type."""
    pipeline.docs(published)

    marts = {path.stem for path in (settings.DBT_PROJECT_DIR / "models" / "marts").rglob("*.sql")}
    with psycopg.connect(published) as conn:
        columns: dict[str, set[str]] = {}
        for table, column in conn.execute(
            "select table_name, column_name from information_schema.columns"
            " where table_schema = 'open'"
        ):
            columns.setdefault(table, set()).add(column)
    assert set(columns) == marts and len(marts) == 19
    site = docs_site.SITE_DIR / "dbt"
    catalog = json.loads((site / "catalog.json").read_text())
    described = {
        node["metadata"]["name"]: node
        for node in catalog["nodes"].values()
        if node["metadata"]["schema"] == settings.OPEN_SCHEMA
    }
    assert set(described) == marts
    for name, node in described.items():
        types = {column["name"]: column["type"] for column in node["columns"].values()}
        assert set(types) == columns[name], name
        assert all(types.values()), f"{name}: columns without a type: {types}"
    manifest = json.loads((site / "manifest.json").read_text())
    assert {
        node["schema"]
        for node in manifest["nodes"].values()
        if node["resource_type"] == "model" and node["name"] in marts
    } == {settings.OPEN_SCHEMA}


BAND = "daily volume within a band of the same weekday's trailing 4-week average"
COLLAPSE = (
    "no day with under a quarter of the same weekday's trailing 4-week average (at least 20 a day)"
)


def test_a_volume_dip_is_a_recorded_warning_and_still_publishes(published, faults):
    before = schema_fingerprint(published, "open")
    # About a third of Thursday July 16th's MRU cases reach the portal: unusual, not a collapse.
    faults.drop_volume(mru_cases.MRU_DATASET_ID, dt.date(2026, 7, 16), keep=0.35)
    for name in load_catalog():
        extract(name, "2026-07-15", "2026-07-18")
    pipeline.transform_candidate()

    report = quality.gate()
    pipeline.publish()

    assert report.critical_failures == []
    assert [(w.suite, w.column, w.severity) for w in report.warnings] == [
        ("stg_mru__cases", BAND, "warning")
    ]
    assert report.warnings[0].samples[0]["day"] == "2026-07-16"
    after = schema_fingerprint(published, "open")
    assert after["fct_mru_responses"] != before["fct_mru_responses"]  # published
    [(suite, _, severity, success, samples)] = results_of(published, report.run_id)
    assert (suite, severity, success) == ("stg_mru__cases", "warning", False)
    assert samples[0]["day"] == "2026-07-16"

    faults.clear()  # the portal is repaired; the next extract fills the day
    extract("mru_cases", "2026-07-16", "2026-07-17")


def test_a_volume_collapse_blocks_publishing(published, faults):
    started = time.time()
    # Nine in ten of Thursday July 23rd's MRU cases never reach the portal: pages went missing.
    faults.drop_volume(mru_cases.MRU_DATASET_ID, dt.date(2026, 7, 23), keep=0.1)
    for name in load_catalog():
        extract(name, "2026-07-18", "2026-07-25")
    failed = blocked_by_the_gate(published)

    report = failed.report
    [failure] = report.critical_failures
    assert (failure.suite, failure.column) == ("stg_mru__cases", COLLAPSE)
    assert failure.samples[0]["day"] == "2026-07-23"
    assert failure.samples[0]["cases"] < 0.25 * float(failure.samples[0]["trailing_average"])
    assert "Owner: " in str(failed) and "Data Docs:" in str(failed)
    assert {
        (suite, severity) for suite, _, severity, _, _ in results_of(published, report.run_id)
    } == {
        ("stg_mru__cases", "critical"),
        ("stg_mru__cases", "warning"),  # the band fails too, as a warning
    }
    assert "under a quarter" in data_docs_page("stg_mru__cases", started)

    faults.clear()
    extract("mru_cases", "2026-07-23", "2026-07-24")


def test_out_of_city_coordinates_block_publishing(published, faults):
    started = time.time()
    # The CAD feed switched projection for a tenth of its calls: state-plane feet.
    faults.move_out_of_city(CALLS_DATASET_ID, share=0.1)
    extract("calls_for_service")
    failed = blocked_by_the_gate(published)

    message = str(failed)
    assert "suite stg_cad__calls_for_service" in message
    assert "expect_column_values_to_be_between on stg_cad__calls_for_service.latitude" in message
    assert "1834520.5" in message  # sample failing values
    assert "Owner: Emergency Communications" in message
    assert "Data Docs:" in message and failed.report.data_docs.exists()
    recorded = results_of(published, failed.report.run_id)
    # Caught twice: in the mart about to be published and in the source feed it came from.
    assert [(suite, column, severity) for suite, column, severity, _, _ in recorded] == [
        ("fct_calls_for_service", "latitude", "critical"),
        ("fct_calls_for_service", "longitude", "critical"),
        ("stg_cad__calls_for_service", "latitude", "critical"),
        ("stg_cad__calls_for_service", "longitude", "critical"),
    ]
    assert "1834520.5" in json.dumps(recorded[2][4])
    page = data_docs_page("stg_cad__calls_for_service", started)
    assert "1834520.5" in page and "latitude" in page

    faults.clear()
    extract("calls_for_service")


def test_data_docs_work_with_no_internet(published, offline_chromium, tmp_path):
    """Stewards on a city network without the internet: the Data Docs index lists the
    validations with their status icons, and a validation page is styled."""
    site = docs_site.build(tmp_path / "docs").parent
    pages = sorted((site / "quality").rglob("*.html"))
    assert len(pages) > 20
    assert {page.name: data_docs.external_resources(page.read_text()) for page in pages} == {
        page.name: set() for page in pages
    }
    driver = offline_chromium
    with served(site) as base:
        driver.get(f"{base}/quality/index.html")
        # bootstrap-table draws the rows from the page's data, each linking to its validation.
        rows = wait_for(
            driver,
            lambda d: d.find_elements(By.CSS_SELECTOR, "tr[data-href^='validations/']"),
            "the index lists the validations",
        )
        shown = driver.find_element(By.CSS_SELECTOR, ".pagination-info").text
        assert len(rows) == 10 and int(re.search(r"of (\d+) rows", shown).group(1)) >= 20, shown
        icons = wait_for(
            driver,
            lambda d: (state := d.execute_script(STATUS_ICONS_JS))["fonts"] and state,
            "the index's status icons are drawn in Font Awesome",
        )
        assert icons["icons"] == len(rows) and icons["drawn"] == icons["icons"]
        assert console_errors(driver) == []
        assert all(url.startswith(base) for url in loaded_resources(driver))

        # In the page's own script: bootstrap-table redraws its rows as it settles.
        driver.execute_script(
            "document.querySelector(\"tr[data-href^='validations/'] td:nth-child(2)\").click()"
        )
        wait_for(driver, lambda d: "/validations/" in d.current_url, "a row opens its validation")
        wait_for(
            driver,
            lambda d: d.execute_script(TABLE_ROWS_JS),
            "the validation page's results table is rendered",
        )
        # Bootstrap's spacing utilities (pl-5: 3rem) on the page's main container.
        padding = driver.execute_script(
            "return getComputedStyle(document.querySelector('.container-fluid')).paddingLeft"
        )
        assert padding == "48px"
        icons = driver.execute_script(STATUS_ICONS_JS)
        assert icons["fonts"] and icons["icons"] and icons["drawn"] == icons["icons"]
        assert console_errors(driver) == []
        assert all(url.startswith(base) for url in loaded_resources(driver))
        save_screenshot(driver, "data_docs_validation_offline")


def test_a_failed_expectations_page_shows_its_severity_and_steward_notes(
    published, offline_chromium, tmp_path
):
    """The page of the collapse run above: the collapse blocked (critical), the band was a
    warning; each failed row says which, and what the failure means."""
    site = docs_site.build(tmp_path / "docs").parent
    page = failed_result_page("stg_mru__cases", COLLAPSE)
    driver = offline_chromium
    with served(site) as base:
        driver.get(f"{base}/quality/{page.as_posix()}")
        rows = wait_for(
            driver,
            lambda d: [row for row in d.execute_script(TABLE_ROWS_JS) if row["failed"]],
            "the failed expectations are listed",
        )
        save_screenshot(driver, "data_docs_failed_expectations")
    shown = {
        expectation: dict(zip(row["header"], row["cells"], strict=True))
        for row in rows
        for expectation in (COLLAPSE, BAND)
        if expectation in row["cells"][1]
    }
    assert set(shown) == {COLLAPSE, BAND}, rows
    for expectation, severity in ((COLLAPSE, "critical"), (BAND, "warning")):
        committed = suite_expectation("stg_mru__cases", expectation)
        assert committed["severity"] == severity
        assert shown[expectation]["Severity"] == severity
        assert shown[expectation]["Steward notes"] == " ".join(committed["notes"].split())


def test_records_without_business_keys_block_publishing(published, faults):
    started = time.time()
    faults.null_keys(CALLS_DATASET_ID, share=0.05)
    loaded = extract("calls_for_service")
    assert loaded["rejected"] > 0.01 * loaded["received"]  # kept in raw._rejects with the reason
    failed = blocked_by_the_gate(published)

    [failure] = failed.report.critical_failures
    assert (failure.suite, failure.column) == (
        "stg_cad__calls_for_service",
        "the latest extract rejected at most 1% of the records it received",
    )
    assert failure.observed == loaded["rejected"]
    assert failure.samples[0]["reason"] == "business key field(s) missing or empty: event_number"
    assert "Owner: Emergency Communications" in str(failed)
    [(suite, _, severity, _, samples)] = results_of(published, failed.report.run_id)
    assert (suite, severity) == ("stg_cad__calls_for_service", "critical")
    assert "event_number" in json.dumps(samples)
    assert "the latest extract rejected" in data_docs_page("stg_cad__calls_for_service", started)

    faults.clear()
    assert extract("calls_for_service")["rejected"] == 0


def test_values_that_do_not_parse_block_publishing(published, faults):
    started = time.time()
    # The CAD export writes a placeholder where some calls' arrival time belongs.
    faults.garble_values(CALLS_DATASET_ID, ["time_arrived"], text="N/A", share=0.02)
    extract("calls_for_service")
    # The build goes through (the bad values are staged as null); the gate stops it.
    failed = blocked_by_the_gate(published)

    [failure] = failed.report.critical_failures
    assert (failure.suite, failure.column) == (
        "stg_cad__calls_for_service",
        "every number and time in the record parses as its type",
    )
    assert failure.observed > 0
    assert all(sample["unparsed_fields"] == "time_arrived" for sample in failure.samples)
    assert "Owner: Emergency Communications" in str(failed)
    assert "parses as its type" in data_docs_page("stg_cad__calls_for_service", started)

    faults.clear()
    extract("calls_for_service")


def test_records_served_twice_under_reformatted_keys_block_publishing(published, faults):
    started = time.time()
    # The permit system re-exported some permits with their numbers padded: new keys to the loader.
    faults.duplicate_keys(permits.PERMITS_RESOURCE_ID, share=0.1)
    extract("building_permits")
    failed = blocked_by_the_gate(published)

    [failure] = failed.report.critical_failures
    assert (failure.suite, failure.column) == (
        "stg_permits__building_permits",
        "no duplicate permit_number after dedupe (ignoring case and spaces)",
    )
    sample = failure.samples[0]
    assert sample["records"] == 2 and sample["keys_as_served"][0].strip() == sample["business_key"]
    assert "Owner: Planning and Development" in str(failed)
    assert [r[0] for r in results_of(published, failed.report.run_id)] == [
        "stg_permits__building_permits"
    ]
    assert "no duplicate permit_number" in data_docs_page("stg_permits__building_permits", started)

    faults.clear()
    # A full read no longer finds the padded keys: they are marked deleted at the source.
    assert extract("building_permits", reconcile=True)["deleted"] > 0


def test_an_impossible_kpi_blocks_publishing(published):
    before = schema_fingerprint(published, "open")
    pipeline.transform_candidate()
    with psycopg.connect(published) as conn:  # a metric definition that divides the wrong way
        conn.execute(
            """
            update candidate.fct_kpi_daily set metric_value = metric_value + 1
            where aggregation = 'share' and metric_value is not null
            """
        )

    with pytest.raises(quality.QualityGateFailed) as raised:
        pipeline.audit()

    [failure] = raised.value.report.critical_failures
    assert (failure.suite, failure.column) == (
        "fct_kpi_daily",
        "KPI values in range: shares between 0 and 1, times and counts not negative",
    )
    assert all(sample["aggregation"] == "share" for sample in failure.samples)
    assert all(float(sample["metric_value"]) > 1 for sample in failure.samples)
    assert schema_fingerprint(published, "open") == before


def test_a_candidate_that_collapsed_against_the_published_version_is_blocked(published):
    with psycopg.connect(published) as conn:
        conn.execute(
            """
            update raw.calls_for_service set deleted_at = now()
            where record_key in (select record_key from raw.calls_for_service order by record_key
                                 limit (select count(*) * 2 / 3 from raw.calls_for_service))
            """
        )
        # The MRU cases of those calls go with them (each case answers one call).
        conn.execute(
            """
            update raw.mru_cases set deleted_at = now()
            where record ->> 'event_number' in (
                select record ->> 'event_number' from raw.calls_for_service
                where deleted_at is not null)
            """
        )
    pipeline.transform_candidate()
    report = quality.validate()
    failed = {(o.expectation, o.severity) for o in report.critical_failures}
    assert failed == {("expect_table_row_count_to_be_between", "critical")}, str(
        report.critical_failures
    )
    assert "fct_calls_for_service" in {o.suite for o in report.critical_failures}


def test_data_docs_keep_the_newest_runs_and_the_warehouse_every_result(published, monkeypatch):
    """Each gate run rebuilds the Data Docs index from every result kept: Data Docs keep the
    newest ``CW_DATA_DOCS_RUNS`` runs of each suite, the warehouse every result."""
    store = settings.EXPECTATIONS_DIR / "uncommitted" / "validations"
    pages = quality.data_docs_index().parent / "validations"
    monkeypatch.setenv(quality.RUNS_KEPT_ENV, "0")
    with pytest.raises(ValueError, match="CW_DATA_DOCS_RUNS='0'"):
        quality.validate()
    monkeypatch.setenv(quality.RUNS_KEPT_ENV, "2")
    before = {run.relative_to(store) for run in store.glob("*/*/*")}
    reports = [quality.validate() for _ in range(3)]

    kept = {run.relative_to(store) for run in store.glob("*/*/*")}
    suites = {run.parts[0] for run in kept}
    assert len(suites) == 25 and len(kept) == 2 * len(suites)
    shown = {page.parent.relative_to(pages) for page in pages.glob("*/*/*/*.html")}
    assert shown == kept
    index = quality.data_docs_index().read_text()
    assert all(run.as_posix() in index for run in kept)
    assert before and not any(run.as_posix() in index for run in before - kept)
    with psycopg.connect(published) as conn:
        recorded = {
            str(run_id)
            for (run_id,) in conn.execute("select distinct run_id from quality.validation_results")
        }
    assert {r.run_id for r in reports} <= recorded and len(recorded) > 3
