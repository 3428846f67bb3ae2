"""A record of each server the Makefile runs in the foreground (docs, Superset, the simulator).

A server started with ``make bi`` in one terminal is stopped by ``make stop`` in another: each
records its pid and start time in ``.run/<name>.json`` while it serves, and ``stop_all`` stops
every recorded process with all it forked (Superset's gunicorn workers, say).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import psutil

from civic_warehouse import settings
from civic_warehouse.cluster import processes


@contextlib.contextmanager
def registered(name: str, url: str, run_dir: Path | None = None) -> Iterator[Path]:
    """Record this process as server ``name`` at ``url`` until the block exits."""
    record = (run_dir or settings.RUN_DIR) / f"{name}.json"
    record.parent.mkdir(parents=True, exist_ok=True)
    me = {"name": name, "pid": os.getpid(), "created": psutil.Process().create_time(), "url": url}
    record.write_text(json.dumps(me) + "\n")
    try:
        yield record
    finally:
        with contextlib.suppress(FileNotFoundError, ValueError):
            if json.loads(record.read_text())["pid"] == me["pid"]:
                record.unlink()


def running(run_dir: Path | None = None) -> list[dict]:
    """The recorded servers whose process still runs."""
    return [s for s in _records(run_dir) if processes.still_running(s["pid"], s["created"])]


def stop_all(run_dir: Path | None = None) -> list[str]:
    """Stop every recorded server; return the names of those stopped."""
    stopped = []
    for server in _records(run_dir):
        if processes.still_running(server["pid"], server["created"]):
            processes.stop(server["pid"], server["created"])
            stopped.append(server["name"])
        server["record"].unlink(missing_ok=True)
    return stopped


def _records(run_dir: Path | None) -> list[dict]:
    records = []
    for path in sorted((run_dir or settings.RUN_DIR).glob("*.json")):
        with contextlib.suppress(FileNotFoundError, ValueError, KeyError):
            records.append(json.loads(path.read_text()) | {"record": path})
    return records
