"""Releasing the open marts to the city's open-data portal: CKAN and Socrata, through the simulator.

The marts are built by dbt once, passed by the quality gate and published; each test releases them
to a portal of its own (a fresh simulator: its write side starts empty) and reads back through the
portal's own read API (``datastore_search``, ``GET /resource/<id>.json``) to compare every row.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys

import psycopg
import pytest
from helpers import extract_city_window, stage_published_copy
from portal_reads import (
    CRASHES,
    CREDENTIALS,
    KPI,
    SOCRATA_ID,
    assert_portal_serves_open,
    open_rows,
    portal_server,
    socrata_rows,
)

from civic_warehouse import pipeline, publish, quality
from civic_warehouse.release import ReleaseError, release
from civic_warehouse.release.config import load_releases

pytestmark = pytest.mark.integration

START, END = "2026-07-01", "2026-07-15"  # two weeks: the volume expectations have a week before


@pytest.fixture(scope="module")
def published(warehouse_url, simulator):
    """Two weeks of every source, built by dbt, passed by the gate and published."""
    from conftest import reset_warehouse

    reset_warehouse(warehouse_url)
    extract_city_window(warehouse_url, simulator, START, END)
    pipeline.transform_candidate(warehouse_url)
    report = quality.gate()
    assert report.passed
    pipeline.publish(warehouse_url)
    # The gate's verdict holds for what was published, views reading their neighbours included.
    with psycopg.connect(warehouse_url) as conn:
        assert publish.candidate_build(conn, "open") == report.build
    return warehouse_url


@pytest.fixture
def portal(published, monkeypatch):
    """A city portal of its own (CKAN and Socrata write sides), and the release's environment."""
    with portal_server(monkeypatch) as server:
        yield server


def writes(portal) -> list[str]:
    """The write requests the portal received (SODA upserts and CKAN actions that write)."""
    return [
        path
        for path, _ in portal.requests_log
        if path.startswith("/resource/")
        or path.rsplit("/", 1)[-1] in ("datastore_upsert", "datastore_delete", "package_patch")
    ]


def small_batches(rows: int) -> list:
    return [dataclasses.replace(r, batch_rows=rows) for r in load_releases()]


def cli_release() -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "civic_warehouse", "release"],
        capture_output=True,
        text=True,
        timeout=300,
        env=os.environ,
    )


def test_release_makes_the_portal_serve_open_and_a_rerun_changes_nothing(published, portal):
    first = cli_release()
    assert first.returncode == 0, first.stderr
    assert_portal_serves_open(published, portal)
    assert len(open_rows(published, KPI)) > 100 and len(open_rows(published, CRASHES)) > 100
    portal.requests_log.clear()

    again = release(published)

    assert [(r.mart, r.upserted, r.deleted) for r in again] == [(KPI, 0, 0), (CRASHES, 0, 0)]
    assert writes(portal) == []
    assert_portal_serves_open(published, portal)


def test_a_release_failed_midway_finishes_when_run_again(published, portal, monkeypatch):
    monkeypatch.setenv("CW_RETRY_SECONDS", "1")  # the portal's outage outlasts the retries
    total = len(open_rows(published, CRASHES))
    portal.soda_portal.fail_writes.arm(after=2, count=1000)
    portal.ckan_portal.fail_writes.arm(after=3, count=1, status=503)  # retried: not an outage

    with pytest.raises(ReleaseError) as failed:
        release(published, small_batches(40))

    message = str(failed.value)
    assert f"dataset {SOCRATA_ID!r}" in message and "HTTP 500" in message
    assert "80 row(s) upserted" in message and "running the release again" in message
    assert len(socrata_rows(portal)) == 80 < total
    portal.soda_portal.fail_writes.clear()
    monkeypatch.delenv("CW_RETRY_SECONDS")
    # Dropped connections: the portal applied the batch, the answer was lost; sent again.
    portal.inject.drop_connections(requests=2, path=f"/resource/{SOCRATA_ID}.json")

    rerun = release(published, small_batches(40))

    assert [r.upserted for r in rerun] == [0, total - 80]
    assert_portal_serves_open(published, portal)


def test_rows_gone_from_a_republished_mart_are_deleted_on_the_portal(published, portal):
    release(published)
    stage_published_copy(published)
    with psycopg.connect(published) as conn:
        gone = conn.execute(
            "delete from candidate.fct_traffic_crashes where crash_id in "
            "(select crash_id from candidate.fct_traffic_crashes order by crash_id limit 3) "
            "returning crash_id"
        ).fetchall()
    assert len(gone) == 3
    assert quality.gate().passed
    pipeline.publish(published)

    again = release(published)

    assert [(r.mart, r.upserted, r.deleted) for r in again] == [(KPI, 0, 0), (CRASHES, 0, 3)]
    served = {r["crash_id"] for r in socrata_rows(portal)}
    assert served and not served & {crash_id for (crash_id,) in gone}
    assert_portal_serves_open(published, portal)


def test_a_bad_token_is_a_clear_error_naming_the_portal_and_dataset(published, portal, monkeypatch):
    monkeypatch.setenv("CKAN_API_TOKEN", "not-the-token")
    with pytest.raises(ReleaseError) as ckan:
        release(published)
    monkeypatch.setenv("CKAN_API_TOKEN", CREDENTIALS["CKAN_API_TOKEN"])
    monkeypatch.setenv("SOCRATA_KEY_SECRET", "not-the-secret")
    cli = cli_release()

    message = str(ckan.value)
    assert "portal 'city_ckan' dataset 'city-kpis-daily'" in message
    assert "HTTP 403" in message and "Authorization Error" in message
    assert "check the credentials in CKAN_API_TOKEN" in message
    assert cli.returncode == 1
    [error] = [line for line in cli.stderr.splitlines() if line.startswith("error: ")]
    assert "portal 'city_socrata' dataset 'crsh-open'" in error and "HTTP 401" in error
    assert "SOCRATA_KEY_ID and SOCRATA_KEY_SECRET" in error


def test_a_build_the_gate_did_not_pass_is_never_released(published, portal):
    with psycopg.connect(published) as conn:
        conn.execute("drop schema if exists candidate cascade")
        conn.execute("create schema candidate")
        conn.execute("create table candidate.fct_traffic_crashes as table open.fct_traffic_crashes")
        conn.execute("create table candidate.fct_kpi_daily as table open.fct_kpi_daily")
    publish.publish(published, force_reason="test: a build published past the gate")
    try:
        cli = cli_release()
        with pytest.raises(ReleaseError, match="refusing to release: the published build"):
            release(published)
    finally:
        publish.restore(published)

    assert cli.returncode == 1 and "never validated" in cli.stderr
    assert portal.requests_log == []
