"""A source that would serve without end fails its load, and the load commits nothing."""

from __future__ import annotations

import dataclasses
import json
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

import psycopg
import pytest
from attack_scenarios import call
from fake_http import listening

from civic_warehouse import loader, page_feed
from civic_warehouse.catalog import get_source
from civic_warehouse.connectors import Page, Query, Window, connector_for
from civic_warehouse.connectors.http import HttpClient, SourceError

pytestmark = pytest.mark.integration

SOURCE = get_source("calls_for_service")
SCOPE = Query(
    events=Window(datetime(2026, 3, 2, 5, tzinfo=UTC), datetime(2026, 3, 3, 5, tzinfo=UTC))
)


class IgnoresOffset(BaseHTTPRequestHandler):
    """A SODA endpoint that counts millions of rows and serves the first page for every $offset."""

    def do_GET(self) -> None:
        params = parse_qs(urlsplit(self.path).query)
        if params.get("$select") == ["count(*)"]:
            body = [{"count": "7300000"}]
        else:
            body = [call(n) for n in range(int(params["$limit"][0]))]
        payload = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def conn(clean_warehouse):
    with psycopg.connect(clean_warehouse) as connection:
        yield connection


def committed(conn: psycopg.Connection) -> tuple[int, int, list[str]]:
    """Rows in the raw table, batches logged, staging schemas left."""
    rows = conn.execute("select count(*) from raw.calls_for_service").fetchone()[0]
    batches = 0
    if conn.execute("select to_regclass('raw._batches')").fetchone()[0]:
        batches = conn.execute("select count(*) from raw._batches").fetchone()[0]
    return rows, batches, page_feed.staging_schemas(conn)


def test_a_server_that_ignores_offset_fails_the_load_quickly_and_commits_nothing(conn):
    with listening(IgnoresOffset) as url:
        source = dataclasses.replace(SOURCE, base_url=url, page_size=500)
        connector = connector_for(source, HttpClient(source.name))
        started = time.monotonic()
        with pytest.raises(SourceError) as raised:
            loader.load(conn, source, SCOPE, connector.pages(SCOPE), connector.updated_at)
    message = str(raised.value)
    assert "calls_for_service" in message and "ignores $offset" in message
    assert "\n" not in message
    assert time.monotonic() - started < 10
    assert committed(conn) == (0, 0, [])


def test_pages_past_the_byte_cap_fail_the_load_and_commit_nothing(conn, monkeypatch):
    monkeypatch.setenv("CW_MAX_STAGED_BYTES", "5000")
    pages = [Page(n, f"u{n}", [call(n * 100 + i) for i in range(10)]) for n in range(1, 50)]
    with pytest.raises(SourceError) as raised:
        loader.load(conn, SOURCE, SCOPE, pages, connector_for(SOURCE).updated_at)
    message = str(raised.value)
    assert "calls_for_service" in message and "5000 bytes" in message
    assert "CW_MAX_STAGED_BYTES" in message and "\n" not in message
    assert committed(conn) == (0, 0, [])


def test_pages_within_the_byte_cap_load(conn, monkeypatch):
    pages = [Page(n, f"u{n}", [call(n * 100 + i) for i in range(10)]) for n in range(1, 4)]
    monkeypatch.setenv("CW_MAX_STAGED_BYTES", str(sum(p.nbytes for p in pages)))
    result = loader.load(conn, SOURCE, SCOPE, pages, connector_for(SOURCE).updated_at)
    assert (result.pages, result.inserted) == (3, 30)
