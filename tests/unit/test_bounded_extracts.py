"""Misbehaving servers cannot hold an extract forever: every one here is a real local HTTP server.

A server that ignores paging, serves more than it counts, trickles its body or throttles without
end stops the extract with one clear ``SourceError`` within its time budget; throttling that ends
within the budget is waited out.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from email.utils import formatdate
from typing import Any

import pytest
from attack_scenarios import (
    Answer,
    Script,
    arcgis_layer_ignoring_result_offset,
    call,
    ok,
    permit,
    scripted_server,
)

from civic_warehouse.catalog import get_source
from civic_warehouse.connectors import Query, connector_for
from civic_warehouse.connectors.http import HttpClient, SourceError


@pytest.fixture(scope="module")
def listener() -> Iterator[tuple[str, dict[str, Script]]]:
    with scripted_server() as served:
        yield served


@pytest.fixture
def server(listener) -> Script:
    url, current = listener
    script = Script(url)
    current["script"] = script
    return script


def socrata(server: Script, page_size: int = 3):
    return dataclasses.replace(
        get_source("calls_for_service"), base_url=server.url, page_size=page_size
    )


def client(name: str, **kwargs: Any) -> HttpClient:
    return HttpClient(name, **{"sleep": lambda seconds: None, **kwargs})


def read(source, http: HttpClient) -> list:
    return list(connector_for(source, http).pages(Query()))


# -- paging a server cannot be trusted to end --------------------------------------------------


def test_a_server_that_ignores_offset_stops_the_extract_at_the_repeated_page(server):
    def answer(path: str, params: dict[str, str]) -> Answer:
        if params.get("$select") == "count(*)":
            return ok([{"count": "7300000"}])
        return ok([call(1), call(2), call(3)])  # whatever $offset says

    server.answer = answer
    started = time.monotonic()
    with pytest.raises(SourceError) as raised:
        read(socrata(server), client("calls_for_service"))
    message = str(raised.value)
    assert "calls_for_service" in message and "$offset=3" in message
    assert "same records" in message and "ignores $offset" in message
    assert "\n" not in message
    pages = [q for _p, q in server.requests if q.get("$select") != "count(*)"]
    assert len(pages) == 2 and time.monotonic() - started < 5


def test_a_server_that_serves_more_rows_than_it_counts_is_stopped(server):
    def answer(path: str, params: dict[str, str]) -> Answer:
        if params.get("$select") == "count(*)":
            return ok([{"count": "4"}])
        offset = int(params["$offset"])
        return ok([call(offset + i) for i in range(3)])  # new rows at every offset, never short

    server.answer = answer
    with pytest.raises(SourceError, match=r"served 6 records.*counts 4 matching"):
        read(socrata(server), client("calls_for_service"))
    pages = [q for _p, q in server.requests if q.get("$select") != "count(*)"]
    assert len(pages) == 2


def test_pages_past_the_cap_stop_the_extract(server, monkeypatch):
    monkeypatch.setenv("CW_MAX_PAGES", "3")

    def answer(path: str, params: dict[str, str]) -> Answer:
        if params.get("$select") == "count(*)":
            return ok([{"count": "40000000"}])
        offset = int(params["$offset"])
        return ok([call(offset + i) for i in range(3)])

    server.answer = answer
    with pytest.raises(SourceError, match=r"more than 3 pages.*CW_MAX_PAGES"):
        read(socrata(server), client("calls_for_service"))


def ckan(server: Script):
    return dataclasses.replace(get_source("building_permits"), base_url=server.url, page_size=3)


def ckan_answer(total: int, records: Callable[[int], list[dict]]) -> Callable[..., Answer]:
    def answer(path: str, params: dict[str, str]) -> Answer:
        offset = int(params.get("offset", 0))
        return ok({"success": True, "result": {"records": records(offset), "total": total}})

    return answer


def test_a_ckan_server_that_ignores_offset_stops_at_the_repeated_page(server):
    server.answer = ckan_answer(1_000_000, lambda offset: [permit(1), permit(2), permit(3)])
    with pytest.raises(SourceError, match=r"offset=3.*same records.*ignores offset"):
        read(ckan(server), client("building_permits"))
    assert len(server.requests) == 2


def test_a_ckan_server_that_serves_more_than_its_total_is_stopped(server):
    server.answer = ckan_answer(4, lambda offset: [permit(offset + i) for i in range(3)])
    with pytest.raises(SourceError, match=r"served 6 records.*total of 4"):
        read(ckan(server), client("building_permits"))


def test_an_arcgis_layer_that_ignores_result_offset_stops_at_the_repeated_page(server):
    server.answer = arcgis_layer_ignoring_result_offset
    source = dataclasses.replace(
        get_source("neighborhoods"),
        base_url=server.url,
        dataset="Layer/FeatureServer/0",
    )
    with pytest.raises(SourceError, match=r"resultOffset=2.*same records.*ignores resultOffset"):
        read(source, client("neighborhoods"))


# -- time ----------------------------------------------------------------------------------------


def test_a_trickling_body_stops_at_the_request_deadline(server, monkeypatch):
    monkeypatch.setenv("CW_REQUEST_SECONDS", "1.5")
    server.answer = lambda p, q: ok([call(i) for i in range(3)], trickle=0.2)
    started = time.monotonic()
    with pytest.raises(SourceError) as raised:
        client("calls_for_service").get_json(f"{server.url}/x.json", {})
    elapsed = time.monotonic() - started
    assert 1.4 < elapsed < 3.5
    assert "calls_for_service" in str(raised.value) and "/x.json" in str(raised.value)
    assert "1.5 s" in str(raised.value) and "CW_REQUEST_SECONDS" in str(raised.value)


def test_a_trickling_body_stops_when_the_extract_budget_is_spent(server):
    server.answer = lambda p, q: ok([call(i) for i in range(3)], trickle=0.2)
    http = client("calls_for_service", max_total_seconds=1.5)
    started = time.monotonic()
    with pytest.raises(SourceError, match=r"extract's time budget.*CW_EXTRACT_SECONDS"):
        http.get_json(f"{server.url}/x.json", {})
    assert time.monotonic() - started < 3.5


def test_the_extract_budget_bounds_all_its_pages_not_each_request(server):
    def answer(path: str, params: dict[str, str]) -> Answer:
        if params.get("$select") == "count(*)":
            return ok([{"count": "60"}])
        offset = int(params["$offset"])
        time.sleep(0.4)  # each answer well inside any one request's limits
        return ok([call(offset + i) for i in range(min(3, 60 - offset))])

    server.answer = answer
    http = client("calls_for_service", max_total_seconds=2)
    started = time.monotonic()
    with pytest.raises(SourceError, match="CW_EXTRACT_SECONDS"):
        read(socrata(server), http)
    assert time.monotonic() - started < 4


def throttled(times: int | None, retry_after: str = "1") -> Callable[..., Answer]:
    served = {"429": 0}

    def answer(path: str, params: dict[str, str]) -> Answer:
        if times is None or served["429"] < times:
            served["429"] += 1
            return 429, {"Retry-After": retry_after}, b'{"message":"Too many requests"}', 0
        return ok([call(1)])

    return answer


def test_six_throttled_answers_with_retry_after_are_waited_out(server):
    server.answer = throttled(6)
    delays: list[float] = []
    http = client("calls_for_service", sleep=delays.append)
    body = http.get_json(f"{server.url}/x.json", {})
    assert body == [call(1)]
    assert delays == [1.0] * 6


def test_retry_after_as_an_http_date_is_honoured(server):
    server.answer = throttled(1, retry_after=formatdate(time.time() + 3, usegmt=True))
    delays: list[float] = []
    client("calls_for_service", sleep=delays.append).get_json(f"{server.url}/x.json", {})
    assert len(delays) == 1 and 1.5 < delays[0] <= 3.0


def test_throttling_without_end_gives_up_when_the_budget_is_spent(server):
    server.answer = throttled(None)
    http = HttpClient("calls_for_service", max_total_seconds=2.5)  # real sleeps
    started = time.monotonic()
    with pytest.raises(SourceError) as raised:
        http.get_json(f"{server.url}/x.json", {})
    elapsed = time.monotonic() - started
    message = str(raised.value)
    assert elapsed < 3.5
    assert "HTTP 429" in message and "Too many requests" in message
    assert "extract's time budget" in message and "\n" not in message
    assert len(server.requests) >= 2
