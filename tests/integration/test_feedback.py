"""The data-quality feedback channel after a real pipeline run: reports are added, listed and closed
with `python -m civic_warehouse feedback`, the stewards' docs list the open ones beside the failing
expectations, and the public page, served over HTTP, says for each dataset how fresh it is, what
the quality gate checked last and where to report a problem."""

from __future__ import annotations

import functools
import html
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import SimpleHTTPRequestHandler
from zoneinfo import ZoneInfo

import psycopg
import pytest
import requests
from fake_http import listening
from helpers import UNGATED_FIXTURE, extract_city_window

from civic_warehouse import catalog, docs_site, pipeline, public_dashboard, quality, settings

pytestmark = pytest.mark.integration

START, END = "2026-08-10", "2026-08-13"  # local dates, end exclusive
FEEDBACK_SETTINGS = ("CW_FEEDBACK_URL", "CW_FEEDBACK_EMAIL")


@pytest.fixture(scope="module")
def warehouse(clean_warehouse_module: str, simulator) -> Iterator[str]:
    """Extract, build, gate, publish (what the gate passed, else as a recorded override), docs;
    with no feedback address configured."""
    saved = {name: os.environ.pop(name) for name in FEEDBACK_SETTINGS if name in os.environ}
    url = extract_city_window(clean_warehouse_module, simulator, START, END)
    pipeline.transform_candidate(url, as_of=publication_anchor())
    report = quality.validate(url=url)
    pipeline.publish(url, force_reason=None if report.passed else UNGATED_FIXTURE)
    pipeline.docs(url)
    yield url
    os.environ.update(saved)


def publication_anchor() -> datetime:
    """The end of the window, as the DAG anchors the publication delay."""
    zone = ZoneInfo(catalog.get_source("calls_for_service").timezone)
    return datetime.fromisoformat(END).replace(tzinfo=zone)


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "civic_warehouse", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


def text_of(markup: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", markup)).split())


def test_reports_are_added_listed_and_closed_through_the_cli(warehouse):
    message = "Call 2026-08-11 on Elm St shows no unit on scene, but police came"
    added = cli(
        "feedback", "add", "--dataset", "calls_for_service", "--message", message,
        "--reporter", "a resident",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    number = int(re.search(r"report #(\d+) recorded", added.stdout).group(1))
    again = cli("feedback", "add", "--dataset", "calls_for_service", "--message", message)
    assert again.returncode == 0 and "already reported and open" in again.stdout
    assert f"#{number} [open]" in again.stdout

    unknown = cli("feedback", "add", "--dataset", "calls", "--message", message)
    assert unknown.returncode == 1
    assert "no dataset named 'calls' in the inventory" in unknown.stderr
    empty = cli("feedback", "add", "--dataset", "fct_traffic_crashes", "--message", "  ")
    assert empty.returncode == 1 and "the message is empty" in empty.stderr

    listed = cli("feedback", "list")
    assert listed.returncode == 0
    assert f"#{number} [open] calls_for_service: {message}" in listed.stdout
    assert "by a resident" in listed.stdout

    closed = cli("feedback", "close", str(number), "--resolution", "unit times corrected in CAD")
    assert closed.returncode == 0, closed.stderr
    assert "unit times corrected in CAD" in closed.stdout
    twice = cli("feedback", "close", str(number))
    assert twice.returncode == 1 and f"report #{number} is already closed" in twice.stderr
    assert f"#{number}" not in cli("feedback", "list").stdout
    everything = cli("feedback", "list", "--all").stdout
    assert f"#{number} [closed] calls_for_service" in everything
    with psycopg.connect(warehouse) as conn:
        status, resolution, reports = conn.execute(
            "select status, resolution, (select count(*) from quality.feedback_reports "
            "where message = %s) from quality.feedback_reports where report_id = %s",
            [message, number],
        ).fetchone()
    assert (status, resolution, reports) == ("closed", "unit times corrected in CAD", 1)


def test_the_stewards_docs_list_open_reports_beside_failing_expectations(
    warehouse, simulator, tmp_path
):
    message = "Crash count for 2026-08-12 looks doubled"
    added = cli("feedback", "add", "--dataset", "fct_traffic_crashes", "--message", message)
    number = int(re.search(r"report #(\d+) recorded", added.stdout).group(1))
    # The CAD feed switched projection for a tenth of its calls: the gate fails on them.
    calls = catalog.get_source("calls_for_service")
    simulator.inject.move_out_of_city(calls.dataset, share=0.1)
    try:
        query = pipeline.query_for_run(calls, None, None, START, END)
        pipeline.extract(calls.name, query, warehouse)
    finally:
        simulator.inject.clear()
    pipeline.transform_candidate(warehouse, as_of=publication_anchor())
    assert not quality.validate(url=warehouse).passed
    pipeline.docs(warehouse)
    site = docs_site.SITE_DIR
    page = (site / "stewardship.html").read_text()
    reports = re.search(r'<table id="open-reports">.*?</table>', page, re.S).group(0)
    assert f"#{number}" in reports and html.escape(message) in reports
    with psycopg.connect(warehouse) as conn:
        failing = conn.execute(
            "select table_name, expectation from stewardship.quality_open_failures"
        ).fetchall()
    assert ("stg_cad__calls_for_service", "expect_column_values_to_be_between") in failing
    assert f"Failing expectations ({len(failing)})" in page
    for table, expectation in failing:
        assert f"<td>{table}</td><td>{expectation}</td>" in page
    assert 'href="stewardship.html"' in (site / "index.html").read_text()

    assert cli("feedback", "close", str(number)).returncode == 0
    rebuilt = docs_site.build(tmp_path / "docs", warehouse).parent / "stewardship.html"
    assert html.escape(message) not in rebuilt.read_text()


@pytest.fixture
def served_page(warehouse) -> Iterator[str]:
    site = public_dashboard.SITE_DIR
    with listening(functools.partial(SimpleHTTPRequestHandler, directory=str(site))) as url:
        yield url


def stg_suites() -> dict[str, str]:
    """The suite of each source's feed as staged, by source."""
    suites = [
        json.loads(p.read_text())
        for p in (settings.EXPECTATIONS_DIR / "expectations").glob("*.json")
    ]
    return {s["meta"]["source"]: s["name"] for s in suites if s["meta"].get("source")}


def sections(page: str) -> dict[str, str]:
    return {
        name: text_of(body)
        for name, body in re.findall(r'<div class="dataset" id="dataset-(\w+)">(.*?)</div>', page)
    }


def test_the_public_page_says_how_fresh_each_dataset_is_and_where_to_report(warehouse, served_page):
    page = requests.get(f"{served_page}/index.html", timeout=10).text
    shown = sections(page)
    assert set(shown) == set(public_dashboard.SOURCE_NAMES)
    assert requests.get(f"{served_page}/data.json", timeout=10).json()["dataset"]
    assert 'href="data.json"' in page

    with psycopg.connect(warehouse) as conn:
        for name, text in shown.items():
            source = catalog.get_source(name)
            values = conn.execute(
                f"select record ->> %s from raw.{source.raw_table} where deleted_at is null",
                [source.event_time_field],
            ).fetchall()
            days = sorted(datetime.fromisoformat(value).date() for (value,) in values)
            (loaded,) = conn.execute(
                "select max(finished_at) from raw._batches where source = %s", [name]
            ).fetchone()
            assert f"Records from {days[0]} to {days[-1]}" in text, name
            assert (
                f"last loaded from the city's system {loaded.astimezone(UTC):%Y-%m-%d %H:%M} UTC"
                in text
            )
            suite = stg_suites()[name]
            passed, evaluated, at = conn.execute(
                "select count(*) filter (where success), count(*), max(validated_at) "
                "from quality.validation_results where suite = %(suite)s and run_id = ("
                "select run_id from quality.validation_results where suite = %(suite)s "
                "order by validated_at desc limit 1)",
                {"suite": suite},
            ).fetchone()
            assert evaluated > 0
            assert (
                f"Quality checks: {passed} of {evaluated} passed, {at.astimezone(UTC):%Y-%m-%d %H:%M} UTC"
                in text
            ), name
    assert shown["calls_for_service"].endswith(
        "To report a problem, contact Dispatch Center (Emergency Communications)."
    )
    assert shown["service_requests"].endswith("contact 311 Call Center (311 Customer Service).")


@pytest.mark.parametrize(
    ("setting", "value", "link"),
    [
        ("CW_FEEDBACK_EMAIL", "open-data@city.example", "mailto:open-data@city.example?subject="),
        ("CW_FEEDBACK_URL", "https://issues.city.example/new", "https://issues.city.example/new"),
    ],
)
def test_a_configured_feedback_address_is_the_report_link(
    warehouse, tmp_path, monkeypatch, setting, value, link
):
    monkeypatch.setenv(setting, value)
    page = public_dashboard.build(warehouse, tmp_path / "public").read_text()
    links = re.findall(r'<a class="report" href="([^"]+)">Report a problem with ([^<]+)</a>', page)
    assert sorted(topic for _, topic in links) == sorted(public_dashboard.SOURCE_NAMES.values())
    assert all(href.startswith(link) for href, _ in links)
