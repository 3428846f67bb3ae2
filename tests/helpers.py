"""Small helpers shared by the integration tests."""

from __future__ import annotations

import csv
import datetime as dt
import os
import socket
import subprocess
import sys
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg
from psycopg import sql


def table_fingerprint(url: str, schema: str, table: str, key: str) -> tuple[int, str]:
    """Row count and an md5 over every row in key order: equal only if the content is identical."""
    with psycopg.connect(url) as conn:
        return conn.execute(
            sql.SQL(
                "select count(*), md5(coalesce(string_agg(t::text, '|' order by {key}), '')) from {table} t"
            ).format(key=sql.Identifier(key), table=sql.Identifier(schema, table))
        ).fetchone()


def schema_fingerprint(url: str, schema: str) -> dict[str, tuple[int, str]]:
    """``table_fingerprint`` of every table in ``schema``, rows ordered by their whole text."""
    with psycopg.connect(url) as conn:
        tables = [
            name
            for (name,) in conn.execute(
                "select table_name from information_schema.tables where table_schema = %s",
                [schema],
            )
        ]
        return {
            table: conn.execute(
                sql.SQL(
                    "select count(*), md5(coalesce(string_agg(t::text, '|' order by t::text), ''))"
                    " from {} t"
                ).format(sql.Identifier(schema, table))
            ).fetchone()
            for table in sorted(tables)
        }


EVENT_SOURCES = (
    "calls_for_service",
    "mru_cases",
    "service_requests",
    "building_permits",
    "traffic_crashes",
)


def extract_city_window(url: str, simulator, start: str, end: str) -> str:
    """Every source extracted from the simulator into ``url``'s raw layer for local dates
    [start, end), neighborhoods whole, with no fault armed and no 311 status history left over."""
    from civic_warehouse import catalog, pipeline

    simulator.inject.clear()
    simulator.faults.clear()
    with psycopg.connect(url, autocommit=True) as conn:
        # The 311 status snapshot lives outside the schemas the warehouse fixtures reset.
        conn.execute("drop schema if exists internal cascade")
    for name in EVENT_SOURCES:
        source = catalog.get_source(name)
        pipeline.extract(name, pipeline.query_for_run(source, None, None, start, end), url)
    neighborhoods = catalog.get_source("neighborhoods")
    pipeline.extract(neighborhoods.name, pipeline.query_for_run(neighborhoods, None, None), url)
    return url


def build_city_window(url: str, simulator, start: str, end: str) -> str:
    """``extract_city_window``, then the whole project built by dbt, its tests and unit tests
    passing (the stewardship reports aside: they describe a gate run)."""
    from civic_warehouse import transform

    extract_city_window(url, simulator, start, end)
    transform.run_dbt(["build", "--exclude", "tag:stewardship"], url)
    return url


def stage_published_copy(url: str) -> None:
    """A candidate holding what ``open`` holds, every relation as a new table."""
    with psycopg.connect(url) as conn:
        conn.execute("drop schema if exists candidate cascade")
        conn.execute("create schema candidate")
        for (name,) in conn.execute(
            "select table_name from information_schema.tables where table_schema = 'open'"
        ).fetchall():
            conn.execute(
                sql.SQL("create table {} as select * from {}").format(
                    sql.Identifier("candidate", name), sql.Identifier("open", name)
                )
            )


# The open tier's readers are tested on whatever the build produced, gate or no gate.
UNGATED_FIXTURE = "test fixture: the readers of the open tier are tested here, not the gate"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def fresh_shell(**variables: str) -> dict[str, str]:
    """A new terminal's environment: no virtualenv on PATH, none of this test session's settings."""
    venv_bin = str(Path(sys.executable).parent)
    path = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p and p != venv_bin]
    return {
        "HOME": os.environ.get("HOME", "/root"),
        "PATH": os.pathsep.join(path or ["/usr/local/bin", "/usr/bin", "/bin"]),
        "LANG": "C.UTF-8",
        **variables,
    }


def make(target: str, env: dict[str, str], timeout: float = 900) -> subprocess.CompletedProcess:
    """`make <target>` in the project, as a user types it, with the given environment."""
    from civic_warehouse import settings

    return subprocess.run(
        ["make", "--no-print-directory", target],
        cwd=settings.PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


DISCLOSURE_POLICY = Path(__file__).resolve().parents[1] / "dbt_project/seeds/disclosure_policy.csv"
DEFAULT_PUBLICATION_DELAY_HOURS = 24  # dbt var publication_delay_hours
CITY_TIMEZONE = ZoneInfo("America/New_York")


def as_published(records, default_cutoff: dt.datetime | None) -> dict[str, dict]:
    """The simulator's 911 calls as the open tier publishes them (docs/privacy.md), by event number,
    each with ``received_local``, the text of its published local received time.

    A call of a type the disclosure policy delays longer than the default is held back that much
    more before ``default_cutoff`` (the local time up to which other calls are published; None when
    the run publishes everything loaded), and its received time is cut to the policy's grain.
    """
    with DISCLOSURE_POLICY.open() as policy_file:
        policy = {row["call_type_code"]: row for row in csv.DictReader(policy_file)}
    cutoff = default_cutoff and default_cutoff.replace(tzinfo=CITY_TIMEZONE).astimezone(dt.UTC)
    published = {}
    for record in records:
        received_local = record["time_received"].replace("T", " ").removesuffix(".000")
        rule = policy.get(record.get("call_type_code"))
        if rule:
            received = dt.datetime.fromisoformat(record["time_received"])
            extra = int(rule["publication_delay_hours"]) - DEFAULT_PUBLICATION_DELAY_HOURS
            at = received.replace(tzinfo=CITY_TIMEZONE).astimezone(dt.UTC)
            if cutoff and extra > 0 and at > cutoff - dt.timedelta(hours=extra):
                continue
            received = received.replace(minute=0, second=0, microsecond=0)
            if rule["time_grain"] == "day":
                received = received.replace(hour=0)
            received_local = f"{received:%Y-%m-%d %H:%M:%S}"
        published[record["event_number"]] = record | {"received_local": received_local}
    return published
