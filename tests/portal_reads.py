"""The city's open-data portal in tests: a simulator of its own, read back through its read APIs."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import psycopg
import requests
from psycopg import sql

KPI, CRASHES = "fct_kpi_daily", "fct_traffic_crashes"
PACKAGE, SOCRATA_ID = "city-kpis-daily", "crsh-open"  # as portal/releases.yml names them
CREDENTIALS = {
    "CKAN_API_TOKEN": "ckan-token-of-this-test",
    "SOCRATA_KEY_ID": "key-of-this-test",
    "SOCRATA_KEY_SECRET": "secret-of-this-test",
}


@contextlib.contextmanager
def portal_server(monkeypatch) -> Iterator:
    """A portal whose write side starts empty, and the release's environment pointing at it."""
    from city_simulator.server import SimulatorServer

    with SimulatorServer(
        port=0,
        ckan_token=CREDENTIALS["CKAN_API_TOKEN"],
        socrata_credentials=(CREDENTIALS["SOCRATA_KEY_ID"], CREDENTIALS["SOCRATA_KEY_SECRET"]),
    ) as server:
        monkeypatch.setenv("CITY_PORTAL_URL", server.url)
        for name, value in CREDENTIALS.items():
            monkeypatch.setenv(name, value)
        yield server


def open_rows(url: str, mart: str) -> list[dict]:
    """The mart's rows as JSON (what the portal must serve), times in UTC."""
    with psycopg.connect(url) as conn:
        conn.execute("set timezone = 'UTC'")
        return [
            row
            for (row,) in conn.execute(
                sql.SQL("select to_jsonb(m) from {} m").format(sql.Identifier("open", mart))
            )
        ]


def ckan_rows(portal) -> list[dict]:
    """Every row of the KPI dataset, read back through CKAN's own read API."""
    action = f"{portal.url}/api/3/action"
    package = requests.get(f"{action}/package_show", params={"id": PACKAGE}, timeout=30).json()
    [resource] = [r for r in package["result"]["resources"] if r["name"] == KPI]
    rows, offset = [], 0
    while True:
        page = requests.get(
            f"{action}/datastore_search",
            params={"resource_id": resource["id"], "limit": 32000, "offset": offset},
            timeout=30,
        ).json()["result"]
        rows += [{k: v for k, v in r.items() if k != "_id"} for r in page["records"]]
        offset += len(page["records"])
        if offset >= page["total"]:
            return rows


def socrata_rows(portal) -> list[dict]:
    """Every row of the crashes dataset, read back through SODA 2.1."""
    rows, offset = [], 0
    while True:
        page = requests.get(
            f"{portal.url}/resource/{SOCRATA_ID}.json",
            params={"$limit": 1000, "$offset": offset, "$order": ":id"},
            timeout=30,
        ).json()
        rows += page
        offset += len(page)
        if len(page) < 1000:
            return rows


def as_soda(row: dict) -> dict:
    """A row as SODA 2.1 serves it: numbers as strings, null fields left out."""
    return {
        k: str(v) if isinstance(v, int | float) and not isinstance(v, bool) else v
        for k, v in row.items()
        if v is not None
    }


def by_key(rows: list[dict], *key: str) -> list[dict]:
    return sorted(rows, key=lambda r: tuple(str(r.get(k)) for k in key))


def assert_portal_serves_open(url: str, portal) -> None:
    kpi_key = ("metric_id", "date_day", "area")
    assert by_key(ckan_rows(portal), *kpi_key) == by_key(open_rows(url, KPI), *kpi_key)
    expected = [as_soda(r) for r in open_rows(url, CRASHES)]
    assert by_key(socrata_rows(portal), "crash_id") == by_key(expected, "crash_id")
