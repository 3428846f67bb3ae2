"""The GX gate blocks publishing of bad data; the published marts stay exactly as they were.

Bad data comes from the city-systems simulator's fault API, as a broken source system would send
it, and travels the whole way: extract -> transform -> audit -> publish.
"""

from __future__ import annotations

import datetime as dt
import json
import time

import psycopg
import pytest
from helpers import schema_fingerprint

from civic_warehouse import pipeline, quality, settings
from civic_warehouse.catalog import get_source, load_catalog
from civic_warehouse.simulator import mru_cases, permits
from civic_warehouse.simulator.calls import CALLS_DATASET_ID

pytestmark = pytest.mark.integration

START, END = "2026-07-01", "2026-07-15"  # two weeks: every weekday has a week before it


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
def published(warehouse_url, simulator):
    """Two weeks of every source extracted from the simulator, built, validated and published."""
    from conftest import reset_warehouse

    reset_warehouse(warehouse_url)
    simulator.inject.clear()
    for name in load_catalog():
        extract(name)
    pipeline.transform_candidate()
    pipeline.audit()
    pipeline.publish()
    yield warehouse_url
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
    assert calls >= 10
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
        "fct_recent_calls_for_service": True,
        "fct_service_request_status_history": True,
        "fct_calls_for_service": True,
        "fct_mru_responses": True,
        "fct_service_requests": True,
        "fct_traffic_crashes": True,
        "stg_cad__calls_for_service": True,
        "stg_crashes__traffic_crashes": True,
        "stg_gis__neighborhoods": True,
        "stg_mru__cases": True,
        "stg_open311__service_requests": True,
        "stg_permits__building_permits": True,
    }


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
    assert len(suites) == 20 and len(kept) == 2 * len(suites)
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
