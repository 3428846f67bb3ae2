"""Releasing to a CKAN portal: the dataset's metadata, then its DataStore table, upserted by key.

CKAN Action API: ``POST <base>/api/3/action/<name>`` with a JSON body and the API token in the
``Authorization`` header. The dataset (package) is created or patched, the mart's resource gets a
DataStore table with the mart's key as ``primary_key`` (``datastore_create``), and rows go in with
``datastore_upsert`` (method ``upsert``) and out with ``datastore_delete`` filtered on the key.
"""

from __future__ import annotations

from typing import Any

from civic_warehouse.connectors.http import HttpClient, SourceError
from civic_warehouse.release.config import MartRelease

# PostgreSQL column types (format_type) as DataStore field types; any other is released as text.
FIELD_TYPES = {
    "text": "text",
    "character varying": "text",
    "integer": "int4",
    "smallint": "int4",
    "bigint": "int8",
    "numeric": "numeric",
    "double precision": "float8",
    "real": "float8",
    "boolean": "bool",
    "date": "date",
    "timestamp without time zone": "timestamp",
    "timestamp with time zone": "timestamptz",
}


class CkanDataset:
    """One mart's dataset on a CKAN portal."""

    def __init__(self, release: MartRelease, client: HttpClient) -> None:
        self.release = release
        self.client = client
        (token,) = release.portal.credentials()
        self.headers = {"Authorization": token}
        self.base = f"{release.portal.url()}/api/3/action"
        self.resource_id: str | None = None

    def prepare(self, columns: list[tuple[str, str]]) -> None:
        """Create or update the dataset's metadata and its DataStore table (idempotent)."""
        release = self.release
        metadata = {"title": release.title, "notes": release.description}
        try:
            package = self._call("package_show", {"id": release.dataset})
        except SourceError as err:
            if err.status != 404:
                raise
            package = self._call("package_create", {"name": release.dataset, **metadata})
        if any(package.get(k) != v for k, v in metadata.items()):
            package = self._call("package_patch", {"id": package["id"], **metadata})
        fields = [{"id": name, "type": FIELD_TYPES.get(kind, "text")} for name, kind in columns]
        table = {"fields": fields, "primary_key": list(release.key)}
        resource = next((r for r in package["resources"] if r.get("name") == release.mart), None)
        if resource is None:
            table["resource"] = {"package_id": package["id"], "name": release.mart}
        else:
            table["resource_id"] = resource["id"]
        self.resource_id = self._call("datastore_create", table)["resource_id"]

    def upsert(self, records: list[dict[str, Any]]) -> None:
        self._call(
            "datastore_upsert",
            {"resource_id": self.resource_id, "records": records, "method": "upsert"},
        )

    def delete(self, keys: list[list[Any]]) -> None:
        columns = self.release.key
        if len(columns) == 1:
            # One request: a filter's list of values deletes every row whose key is among them.
            self._delete({columns[0]: [key[0] for key in keys]})
            return
        for key in keys:
            self._delete(dict(zip(columns, key, strict=True)))

    def _delete(self, filters: dict[str, Any]) -> None:
        if not filters or any(value in ([], None) for value in filters.values()):
            # Without filters (or with empty ones) CKAN deletes the whole table.
            raise ValueError(f"refusing to send datastore_delete without a key: {filters!r}")
        self._call("datastore_delete", {"resource_id": self.resource_id, "filters": filters})

    def _call(self, action: str, data: dict[str, Any]) -> Any:
        url = f"{self.base}/{action}"
        answer = self.client.post_json(url, data, self.headers)
        if not isinstance(answer, dict) or answer.get("success") is not True:
            raise SourceError(
                self.client.source, url, f"not a CKAN success answer: {answer!r:.300}"
            )
        return answer["result"]
