"""The write side of a city's Socrata portal: the SODA Producer API's upsert.

``POST /resource/<dataset_id>.json`` with a JSON array of rows, authenticated with HTTP Basic
(a user's or an API key's id and secret), upserts by the dataset's row identifier: a row whose
identifier is new is created, one already held is updated (the fields sent replace theirs), and a
row carrying ``":deleted": true`` is deleted. The answer counts ``Rows Created``, ``Rows Updated``,
``Rows Deleted`` and ``Errors`` (rows without their identifier). Wrong or missing credentials get
Socrata's 401 envelope; an unknown dataset its 404.

A Socrata dataset and its row identifier are made by a steward in the portal, not over this API:
``DATASETS`` are the ones the simulated city's portal holds. ``GET /resource/<id>.json`` reads
them back as SODA 2.1 does: ``$limit``, ``$offset``, ``$order``; numbers as strings, null fields
left out.
"""

from __future__ import annotations

import base64
import json
import threading
from typing import Any

from city_simulator.write_faults import WriteFailures

# Dataset id -> row identifier: the datasets the simulated city publishes its open marts to.
DATASETS = {"crsh-open": "crash_id"}
DEFAULT_LIMIT = 1000


class SodaPortal:
    """Writable Socrata datasets (thread-safe). ``credentials`` is the one (id, secret) accepted."""

    def __init__(self, credentials: tuple[str, str] | None = None) -> None:
        self.credentials = credentials
        self.row_identifiers = dict(DATASETS)
        self.rows: dict[str, dict[str, dict]] = {dataset: {} for dataset in DATASETS}
        self.fail_writes = WriteFailures()
        self._lock = threading.Lock()

    def holds(self, dataset_id: str) -> bool:
        return dataset_id in self.rows

    def upsert(self, dataset_id: str, body: bytes, authorization: str | None) -> tuple[int, dict]:
        """(HTTP status, JSON body) for an upsert of ``body`` into ``dataset_id``."""
        if not self._authorized(authorization):
            return 401, {
                "code": "authentication_required",
                "error": True,
                "message": "You must be logged in to write to this dataset",
            }
        if not self.holds(dataset_id):
            return 404, {
                "code": "dataset.missing",
                "error": True,
                "message": "Not found",
                "data": {"id": dataset_id},
            }
        try:
            rows = json.loads(body)
        except ValueError as err:
            return 400, {"code": "invalid_request", "error": True, "message": f"bad JSON: {err}"}
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            return 400, {
                "code": "invalid_request",
                "error": True,
                "message": "an upsert is a JSON array of row objects",
            }
        if status := self.fail_writes.take():
            return status, {"code": "internal_error", "error": True, "message": "simulated"}
        identifier = self.row_identifiers[dataset_id]
        counts = {"Rows Created": 0, "Rows Updated": 0, "Rows Deleted": 0, "Errors": 0}
        with self._lock:
            held = self.rows[dataset_id]
            for row in rows:
                key = row.get(identifier)
                if key is None:
                    counts["Errors"] += 1
                elif row.get(":deleted") is True:
                    if held.pop(str(key), None) is not None:
                        counts["Rows Deleted"] += 1
                elif str(key) in held:
                    held[str(key)] |= row
                    counts["Rows Updated"] += 1
                else:
                    held[str(key)] = dict(row)
                    counts["Rows Created"] += 1
        return 200, {"By RowIdentifier": len(rows) - counts["Errors"], **counts, "By SID": 0}

    def read(self, dataset_id: str, params: dict[str, str]) -> tuple[int, Any]:
        """(HTTP status, JSON body) of ``GET /resource/<dataset_id>.json`` over written rows."""
        try:
            limit = int(params.get("$limit", DEFAULT_LIMIT))
            offset = int(params.get("$offset", 0))
        except ValueError:
            return 400, {"code": "query.soql.malformed", "error": True, "message": "bad paging"}
        order = params.get("$order", ":id").split()[0]
        with self._lock:
            rows = list(self.rows[dataset_id].values())  # :id order: the order of creation
        if order != ":id":
            rows.sort(key=lambda r: (r.get(order) is None, str(r.get(order))))
        return 200, [_rendered(r) for r in rows[offset : offset + limit]]

    def _authorized(self, authorization: str | None) -> bool:
        if not self.credentials or not authorization or not authorization.startswith("Basic "):
            return False
        try:
            sent = base64.b64decode(authorization.removeprefix("Basic "), validate=True).decode()
        except ValueError:
            return False
        return sent == ":".join(self.credentials)


def _rendered(row: dict) -> dict:
    """A row as SODA 2.1 serves it: numbers as strings, null fields left out."""
    return {
        name: str(value)
        if isinstance(value, int | float) and not isinstance(value, bool)
        else value
        for name, value in row.items()
        if value is not None
    }
