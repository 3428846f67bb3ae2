"""The HTTP client hands JSON arrays over as served (checked, counted, unparsed) when asked to."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest
from fake_http import listening

from civic_warehouse.connectors.base import JsonArray
from civic_warehouse.connectors.http import HttpClient, SourceError


class RawServer:
    """Answers each GET with the next scripted body (bytes, sent as they are); keeps the headers."""

    def __init__(self) -> None:
        self.bodies: deque[bytes] = deque()
        self.headers: list[dict[str, str]] = []


@pytest.fixture(scope="module")
def raw_server() -> Iterator[tuple[str, RawServer]]:
    script = RawServer()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            script.headers.append(dict(self.headers))
            body = script.bodies.popleft()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    with listening(Handler) as url:
        yield f"{url}/resource/x.json", script


@pytest.fixture
def served(raw_server) -> tuple[str, RawServer]:
    url, script = raw_server
    script.bodies.clear()
    script.headers.clear()
    return url, script


def client() -> HttpClient:
    return HttpClient("test", sleep=lambda seconds: None, max_attempts=3)


def test_an_array_comes_back_as_served_with_its_length(served):
    url, script = served
    body = b'[{"a":"1"}\n,{"b":[1,{"c":"]"}]}\n,"x"]\n'
    script.bodies.append(body)
    answer = client().get_json(url, {}, arrays_as_served=True)
    assert answer == JsonArray(body, 3)
    assert answer.decode() == [{"a": "1"}, {"b": [1, {"c": "]"}]}, "x"]


def test_a_cut_off_array_is_fetched_again(served):
    url, script = served
    script.bodies.extend([b'[{"a":"1"}\n,{"b":', b'[{"a":"1"}]'])
    answer = client().get_json(url, {}, arrays_as_served=True)
    assert answer.size == 1 and len(script.headers) == 2


def test_a_malformed_element_in_a_whole_array_is_handed_over_for_the_loader_to_reject(served):
    url, script = served
    script.bodies.append(b'[{"a":"1"},{"b" 2}]')
    page = client().get_json(url, {}, arrays_as_served=True)
    assert isinstance(page, JsonArray) and page.size == 2
    assert len(script.headers) == 1  # not retried: the body came whole


def test_a_body_cut_inside_the_array_is_retried_then_refused(served):
    url, script = served
    script.bodies.extend([b'[{"a":"1"},{"b": "2'] * 3)
    with pytest.raises(SourceError, match="truncated or invalid JSON"):
        client().get_json(url, {}, arrays_as_served=True)


def test_a_body_that_is_not_an_array_is_decoded(served):
    url, script = served
    script.bodies.append(b'{"error": true, "message": "no"}')
    assert client().get_json(url, {}, arrays_as_served=True) == {"error": True, "message": "no"}


def test_a_server_on_this_machine_is_asked_for_uncompressed_bodies(served):
    url, script = served
    script.bodies.append(b"[]")
    client().get_json(url, {})
    assert script.headers[0]["Accept-Encoding"] == "identity"
