"""Tiny HTTP servers on 127.0.0.1 for tests: scripted JSON answers for connector contract tests,
and any handler a test needs (webhooks, raw bodies)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


class FakeServer:
    """Records every GET and answers it with ``answer(path, params) -> (status, body)``."""

    not_found_body: Any = {}

    def __init__(self) -> None:
        self.url = ""
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.answer: Callable[[str, dict[str, str]], tuple[int, Any]] = lambda p, q: (
            404,
            self.not_found_body,
        )


@contextmanager
def serving(content_type: str) -> Iterator[tuple[str, dict[str, FakeServer]]]:
    """One listening socket for a test module; each test plugs its FakeServer into ``current``."""
    current: dict[str, FakeServer] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            fake = current["server"]
            parts = urlsplit(self.path)
            params = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
            fake.requests.append((parts.path, params))
            status, body = fake.answer(parts.path, params)
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: Any) -> None:
            pass

    with listening(Handler) as url:
        yield url, current


@contextmanager
def listening(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """Serve ``handler`` on a free port of 127.0.0.1 in a thread; yields the base URL."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()
