"""The Socrata connector pages a real SODA server (the simulator, over HTTP) correctly and safely."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime

import pytest

from city_simulator.calls import calls_between
from civic_warehouse.catalog import get_source
from civic_warehouse.connectors import Query, Window, connector_for
from civic_warehouse.connectors.http import HttpClient, SourceError

# 2026-03-02 00:00 .. 2026-03-04 00:00 in Dayton (EST, UTC-5).
WINDOW = Window(datetime(2026, 3, 2, 5, tzinfo=UTC), datetime(2026, 3, 4, 5, tzinfo=UTC))
EVENTS = Query(events=WINDOW)


@pytest.fixture
def source(simulator):
    simulator.faults.clear()
    simulator.requests_log.clear()
    return dataclasses.replace(get_source("calls_for_service"), page_size=300)


def no_sleep_client(name: str, **kwargs) -> HttpClient:
    return HttpClient(name, sleep=lambda seconds: None, **kwargs)


def test_pages_cover_the_window_exactly_once(source):
    pages = list(connector_for(source).pages(EVENTS))
    records = [r for page in pages for r in page.records]
    expected = calls_between(datetime(2026, 3, 2), datetime(2026, 3, 4))
    served = [r["event_number"] for r in records]
    assert len(served) == len(set(served)), "a record was served on two pages"
    assert set(served) == {r["event_number"] for r in expected}
    assert len(pages) == len(expected) // 300 + 1
    assert all(len(p.records) == 300 for p in pages[:-1])


def test_every_request_is_ordered_and_bounded(source, simulator):
    list(connector_for(source).pages(EVENTS))
    page_requests = [q for _path, q in simulator.requests_log if q.get("$select") != "count(*)"]
    assert page_requests
    for query in page_requests:
        assert query["$order"] == "time_received, :id"
        assert query["$limit"] == "300"
        assert "time_received >= '2026-03-02T00:00:00.000'" in query["$where"]
        assert "time_received < '2026-03-04T00:00:00.000'" in query["$where"]


def test_system_fields_are_requested(source):
    first = next(iter(connector_for(source).pages(EVENTS))).records[0]
    assert ":updated_at" in first and ":id" in first


def test_app_token_is_sent_from_the_environment(source, simulator, monkeypatch):
    seen = []
    monkeypatch.setenv("SOCRATA_APP_TOKEN", "sekrit")
    client = no_sleep_client(source.name)
    client.session.hooks["response"].append(lambda r, *a, **k: seen.append(r.request.headers))
    next(iter(connector_for(source, client).pages(EVENTS)))
    assert seen[0]["X-App-Token"] == "sekrit"


def test_throttling_and_still_processing_are_retried(source, simulator):
    delays = []
    simulator.faults.extend(
        [
            (429, {"Retry-After": "7"}, b'{"message":"Too many requests"}'),
            (202, {}, b'{"message":"Request processing"}'),
            (503, {}, b"<html>Service Unavailable</html>"),
        ]
    )
    client = HttpClient(source.name, sleep=delays.append)
    pages = list(connector_for(source, client).pages(EVENTS))
    assert sum(len(p.records) for p in pages) > 0
    assert delays[0] == 7.0  # Retry-After honoured
    assert len(delays) == 3


def test_client_errors_fail_at_once_naming_source_and_reason(source, simulator):
    body = {
        "message": "Query coordinator error: query.soql.no-such-column; No such column: time_received",
        "errorCode": "query.soql.no-such-column",
        "data": {"column": "time_received"},
    }
    simulator.faults.append((400, {"Content-Type": "application/json"}, json.dumps(body).encode()))
    with pytest.raises(SourceError) as raised:
        list(connector_for(source, no_sleep_client(source.name)).pages(EVENTS))
    message = str(raised.value)
    assert "calls_for_service" in message and "HTTP 400" in message
    assert "query.soql.no-such-column" in message
    assert len(simulator.requests_log) == 1  # never retried


def test_missing_dataset_reports_the_code_field(source):
    missing = dataclasses.replace(source, dataset="zzzz-zzzz")
    with pytest.raises(SourceError, match=r"HTTP 404.*dataset\.missing"):
        list(connector_for(missing, no_sleep_client(source.name)).pages(EVENTS))


def test_retries_are_bounded(source, simulator):
    simulator.faults.extend([(503, {}, b"busy")] * 10)
    client = no_sleep_client(source.name, max_attempts=3)
    try:
        with pytest.raises(SourceError, match="gave up after 3 attempt"):
            list(connector_for(source, client).pages(EVENTS))
    finally:
        # The simulator is the session's: unused faults would fail the next test's requests.
        simulator.faults.clear()
