"""The write side of a city's CKAN portal: datasets (packages) and DataStore tables a publisher fills.

Speaks the CKAN Action API as CKAN 2.10 does: ``POST /api/3/action/<name>`` with a JSON body and an
``Authorization: <API token>`` header, answering ``{"success": true, "result": ...}`` or
``{"success": false, "error": {"__type": ..., ...}}`` with CKAN's status codes (403 for a missing or
wrong token, 404 for an unknown dataset or resource, 409 for a validation error). Actions:
``package_show``, ``package_create``, ``package_patch``, ``datastore_create`` (with ``primary_key``),
``datastore_upsert`` (``upsert``, ``insert`` and ``update``), ``datastore_delete`` (``filters``
whose values may be lists) and ``datastore_search`` over what was written, so a client reads back
what it published through the portal's own read API.

Everything is kept in memory; ``token`` is the one API token accepted (None accepts none), and
``fail_writes`` fails a release part-way.
"""

from __future__ import annotations

import re
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

from city_simulator.write_faults import WriteFailures

WRITE_ACTIONS = frozenset(
    {"package_create", "package_patch", "datastore_create", "datastore_upsert", "datastore_delete"}
)
READ_ACTIONS = frozenset({"package_show", "datastore_search"})
ACTIONS = WRITE_ACTIONS | READ_ACTIONS
# CKAN's package name rule (ckan.logic.validators.name_validator).
_PACKAGE_NAME = re.compile(r"^[a-z0-9_-]{2,100}$")
_PACKAGE_FIELDS = ("title", "notes", "license_id", "owner_org", "author", "maintainer", "url")
_FIELD_TYPES = frozenset(
    {"text", "int", "int4", "int8", "float8", "numeric", "bool", "date", "timestamp",
     "timestamptz", "time", "json"}
)  # fmt: skip
ROWS_DEFAULT, ROWS_MAX = 100, 32000  # as the read side (ckan.datastore.search.rows_*)


class ActionError(Exception):
    """An action CKAN refuses: HTTP ``status`` and the ``error`` object of the envelope."""

    def __init__(self, status: int, error: dict[str, Any]) -> None:
        super().__init__(error)
        self.status, self.error = status, error


def _validation(**complaints: str) -> ActionError:
    return ActionError(
        409, {**{k: [v] for k, v in complaints.items()}, "__type": "Validation Error"}
    )


def _not_found(what: str) -> ActionError:
    return ActionError(404, {"__type": "Not Found Error", "message": f"Not found: {what}"})


@dataclass
class DataStoreTable:
    """One resource's DataStore table: typed fields, a primary key, rows by key in write order."""

    resource_id: str
    fields: dict[str, str]
    primary_key: tuple[str, ...] = ()
    rows: dict[tuple, dict] = field(default_factory=dict)
    next_id: int = 1

    def key(self, record: dict) -> tuple:
        missing = [k for k in self.primary_key if record.get(k) is None]
        if missing:
            raise _validation(
                records=f'fields "{", ".join(missing)}" are missing but needed as key'
            )
        return tuple(record[k] for k in self.primary_key)


class CkanPortal:
    """Packages and DataStore tables, written and read through the Action API (thread-safe)."""

    def __init__(self, token: str | None = None) -> None:
        self.token = token
        self.packages: dict[str, dict] = {}  # by name
        self.tables: dict[str, DataStoreTable] = {}  # by resource id
        self.fail_writes = WriteFailures()
        self._lock = threading.Lock()

    def holds(self, resource_id: str | None) -> bool:
        return resource_id in self.tables

    def action(
        self, name: str, data: Any, authorization: str | None, site: str
    ) -> tuple[int, dict]:
        """(HTTP status, JSON body) for the action ``name`` called with ``data``."""
        help_url = f"{site}/api/3/action/help_show?name={name}"
        try:
            if not isinstance(data, dict):
                raise ActionError(400, {"__type": "Bad request", "message": "JSON body expected"})
            if name in WRITE_ACTIONS and (not self.token or authorization != self.token):
                raise ActionError(
                    403,
                    {
                        "__type": "Authorization Error",
                        "message": f"Access denied: User not authorized to call {name}",
                    },
                )
            if name in WRITE_ACTIONS and (status := self.fail_writes.take()):
                raise ActionError(
                    status, {"__type": "Internal Server Error", "message": "simulated failure"}
                )
            with self._lock:
                result = getattr(self, f"_{name}")(data)
        except ActionError as refused:
            return refused.status, {"help": help_url, "success": False, "error": refused.error}
        return 200, {"help": help_url, "success": True, "result": result}

    # -- packages --------------------------------------------------------------------------------

    def _package(self, id_or_name: Any) -> dict:
        for package in self.packages.values():
            if id_or_name in (package["id"], package["name"]):
                return package
        raise _not_found("Dataset was not found.")

    def _package_show(self, data: dict) -> dict:
        package = self._package(data.get("id"))
        return {**package, "resources": [dict(r) for r in package["resources"]]}

    def _package_create(self, data: dict) -> dict:
        name = data.get("name")
        if not isinstance(name, str) or not _PACKAGE_NAME.match(name):
            raise _validation(
                name="Must be purely lowercase alphanumeric (ascii) characters and these "
                "symbols: -_ (2 to 100 characters)"
            )
        if name in self.packages:
            raise _validation(name="That URL is already in use.")
        package = {"id": str(uuid.uuid4()), "name": name, "state": "active", "resources": []}
        package |= {k: data[k] for k in _PACKAGE_FIELDS if k in data}
        self.packages[name] = package
        return self._package_show({"id": name})

    def _package_patch(self, data: dict) -> dict:
        package = self._package(data.get("id"))
        package |= {k: data[k] for k in _PACKAGE_FIELDS if k in data}
        return self._package_show({"id": package["id"]})

    # -- datastore -------------------------------------------------------------------------------

    def _table(self, data: dict) -> DataStoreTable:
        resource_id = data.get("resource_id") or data.get("id")
        if not resource_id:
            raise _validation(resource_id="Missing value")
        table = self.tables.get(resource_id)
        if table is None:
            raise _not_found("Resource was not found.")
        return table

    def _datastore_create(self, data: dict) -> dict:
        fields = data.get("fields") or []
        if not isinstance(fields, list) or not all(
            isinstance(f, dict) and isinstance(f.get("id"), str) for f in fields
        ):
            raise _validation(fields="fields must be a list of {id, type}")
        bad = [f["type"] for f in fields if f.get("type", "text") not in _FIELD_TYPES]
        if bad:
            raise _validation(fields=f'invalid type "{bad[0]}"')
        primary_key = data.get("primary_key") or []
        primary_key = [primary_key] if isinstance(primary_key, str) else list(primary_key)
        if "resource" in data:
            resource = data["resource"] or {}
            package = self._package(resource.get("package_id"))
            resource_id = str(uuid.uuid4())
            package["resources"].append(
                {
                    "id": resource_id,
                    "package_id": package["id"],
                    "name": resource.get("name", ""),
                    "url_type": "datastore",
                    "datastore_active": True,
                }
            )
            table = self.tables[resource_id] = DataStoreTable(resource_id, {})
        else:
            table = self._table(data)
        types = {f["id"]: f.get("type", "text") for f in fields}
        changed = [n for n, t in types.items() if n in table.fields and table.fields[n] != t]
        if changed:
            raise _validation(fields=f'field "{changed[0]}" exists with another type')
        table.fields |= types
        unknown = [k for k in primary_key if k not in table.fields]
        if unknown:
            raise _validation(primary_key=f'field "{unknown[0]}" not in table')
        if primary_key and tuple(primary_key) != table.primary_key:
            keyed: dict[tuple, dict] = {}
            table.primary_key = tuple(primary_key)
            for row in table.rows.values():
                key = table.key(row)
                if key in keyed:
                    raise _validation(primary_key="could not create unique index: duplicate key")
                keyed[key] = row
            table.rows = keyed
        return {
            "resource_id": table.resource_id,
            "fields": [{"id": n, "type": t} for n, t in table.fields.items()],
            "primary_key": list(table.primary_key),
            "method": "insert",
        }

    def _datastore_upsert(self, data: dict) -> dict:
        table = self._table(data)
        method = data.get("method", "upsert")
        records = data.get("records")
        if method not in ("upsert", "insert", "update"):
            raise _validation(method=f'"{method}" is not a valid method')
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            raise _validation(records="records must be a list of objects")
        if method != "insert" and not table.primary_key:
            raise _validation(table="table does not have a unique key defined")
        for record in records:
            unknown = sorted(set(record) - set(table.fields) - {"_id"})
            if unknown:
                raise _validation(records=f'fields "{", ".join(unknown)}" do not exist')
        # Checked whole before any row is written: CKAN runs a request in one transaction.
        staged = dict(table.rows)
        next_id = table.next_id
        for record in records:
            key = table.key(record) if table.primary_key else (next_id,)
            held = staged.get(key)
            if method == "update" and held is None:
                raise _validation(key=f"key {list(key)} not found")
            if method == "insert" and held is not None:
                raise _validation(records=f"key {list(key)} already exists")
            if held is None:
                held = {"_id": next_id}
                next_id += 1
            staged[key] = {**held, **{n: record.get(n) for n in table.fields}, "_id": held["_id"]}
        table.rows, table.next_id = staged, next_id
        return {"resource_id": table.resource_id, "method": method}

    def _datastore_delete(self, data: dict) -> dict:
        table = self._table(data)
        if "filters" not in data:
            del self.tables[table.resource_id]  # CKAN: no filters deletes the whole table
            return {"resource_id": table.resource_id}
        filters = data["filters"]
        if not isinstance(filters, dict):
            raise _validation(filters="Not a dict")
        unknown = [n for n in filters if n not in table.fields]
        if unknown:
            raise _validation(filters=f'field "{unknown[0]}" not in table')
        wanted = {n: v if isinstance(v, list) else [v] for n, v in filters.items()}
        table.rows = {
            key: row
            for key, row in table.rows.items()
            if not all(row.get(n) in values for n, values in wanted.items())
        }
        return {"resource_id": table.resource_id, "filters": filters}

    def _datastore_search(self, data: dict) -> dict:
        table = self._table(data)
        limit = min(_natural(data, "limit", ROWS_DEFAULT), ROWS_MAX)
        offset = _natural(data, "offset", 0)
        rows = sorted(table.rows.values(), key=lambda r: r["_id"])
        names = ["_id", *table.fields]
        return {
            "resource_id": table.resource_id,
            "fields": [{"id": "_id", "type": "int"}]
            + [{"id": n, "type": t} for n, t in table.fields.items()],
            "records": [{n: row.get(n) for n in names} for row in rows[offset : offset + limit]],
            "limit": limit,
            "total": len(rows),
            "total_was_estimated": False,
        }


def _natural(data: dict, name: str, default: int) -> int:
    value = data.get(name, default)
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if not isinstance(value, int) or value < 0:
        raise _validation(**{name: "Must be a natural number"})
    return value
