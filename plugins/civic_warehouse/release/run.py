"""A release: the open marts, as the gate passed them, upserted to the city's open-data portal.

Two steps, so that a release is idempotent and a failed one finishes when run again:

1. Under the publish lock, in one snapshot: refuse unless ``open`` is exactly a build the quality
   gate passed (``publish.candidate_build`` and its verdict in ``quality.validated_builds``); then,
   for each configured mart, queue what the portal lacks (``quality.release_queue``): every row
   whose content differs from what the ledger (``quality.released_rows``) says was sent, and a
   deletion for every key sent before that the mart no longer has.
2. Send the queue in batches; each batch the portal accepted leaves the queue and enters the
   ledger in one transaction. A re-run queues again from ``open`` against the ledger, so it sends
   only what was not accepted, and nothing at all when the portal already holds ``open``.

The ledger is kept per portal address and dataset, so a new portal (or a portal moved) is sent
everything. Rows are sent as PostgreSQL renders them in JSON (``to_jsonb``, times in UTC).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any, Protocol

import psycopg
from psycopg import sql

from civic_warehouse import publish, settings, warehouse
from civic_warehouse.connectors.http import HttpClient, SourceError
from civic_warehouse.release.ckan import CkanDataset
from civic_warehouse.release.config import MartRelease, load_releases
from civic_warehouse.release.socrata import SocrataDataset

log = logging.getLogger(__name__)

QUEUE = sql.Identifier(settings.QUALITY_SCHEMA, "release_queue")
LEDGER = sql.Identifier(settings.QUALITY_SCHEMA, "released_rows")
RELEASES = sql.Identifier(settings.QUALITY_SCHEMA, "releases")


class ReleaseError(RuntimeError):
    """A release refused (an unvalidated build, a mart missing) or failed at the portal."""


class PortalDataset(Protocol):
    def prepare(self, columns: list[tuple[str, str]]) -> None: ...
    def upsert(self, records: list[dict[str, Any]]) -> None: ...
    def delete(self, keys: list[list[Any]]) -> None: ...


@dataclass(frozen=True)
class Released:
    mart: str
    portal: str
    dataset: str
    rows: int
    upserted: int
    deleted: int


def release(url: str | None = None, releases: list[MartRelease] | None = None) -> list[Released]:
    """Bring the portal's datasets to what ``open`` holds; returns what each mart sent."""
    releases = load_releases() if releases is None else releases
    for item in releases:
        # A missing credential or portal address stops the release before anything is read or sent.
        item.portal.credentials()
        item.portal.url()
    with warehouse.connect(url, autocommit=True) as conn:
        build, columns, rows = _queue(conn, releases)
        done = []
        for item in releases:
            upserted, deleted = _send(conn, item, columns[item.mart])
            done.append(
                Released(
                    item.mart, item.portal.name, item.dataset, rows[item.mart], upserted, deleted
                )
            )
            with conn.transaction():
                conn.execute(
                    sql.SQL("insert into {} values (now(), %s, %s, %s, %s, %s)").format(RELEASES),
                    [build, _target(item), item.mart, upserted, deleted],
                )
    log.info("released build %s: %s", build[:12], done)
    return done


def _target(item: MartRelease) -> str:
    """The ledger's name for a dataset: the portal's kind, address and dataset id."""
    return f"{item.portal.kind} {item.portal.url()}/{item.dataset}"


def _queue(
    conn: psycopg.Connection, releases: list[MartRelease]
) -> tuple[str, dict[str, list[tuple[str, str]]], dict[str, int]]:
    """Step 1: check the gate's verdict on ``open`` and queue what each dataset lacks."""
    targets = {item.mart: _target(item) for item in releases}
    with conn.transaction():
        conn.execute("set local timezone = 'UTC'")  # times are sent in UTC, whoever releases
        # Publishing waits until the queue is made: it is made from one published build.
        conn.execute("select pg_advisory_xact_lock(hashtext('civic_warehouse.publish'))")
        _ensure_tables(conn)
        build = publish.candidate_build(conn, settings.OPEN_SCHEMA)
        verdict = publish.latest_verdict(conn, build)
        if verdict is None or not verdict.passed:
            said = "never validated" if verdict is None else "failed by the quality gate"
            raise ReleaseError(
                f"refusing to release: the published build {build[:12]} in schema "
                f"{settings.OPEN_SCHEMA!r} was {said} (published with --force, or changed after "
                "publishing); publish a build the gate passed, then release"
            )
        columns, rows = {}, {}
        for item in releases:
            columns[item.mart] = _columns(conn, item)
            rows[item.mart] = _queue_mart(conn, item, targets[item.mart])
    return build, columns, rows


def _columns(conn: psycopg.Connection, item: MartRelease) -> list[tuple[str, str]]:
    found = conn.execute(
        """
        select a.attname, format_type(a.atttypid, null)
        from pg_attribute a join pg_class c on c.oid = a.attrelid
        join pg_namespace n on n.oid = c.relnamespace
        where n.nspname = %s and c.relname = %s and a.attnum > 0 and not a.attisdropped
        order by a.attnum
        """,
        [settings.OPEN_SCHEMA, item.mart],
    ).fetchall()
    if not found:
        raise ReleaseError(
            f"{item.describe()}: the mart is not published (no {settings.OPEN_SCHEMA}.{item.mart})"
        )
    missing = [k for k in item.key if k not in {name for name, _ in found}]
    if missing:
        raise ReleaseError(f"{item.describe()}: key column(s) {', '.join(missing)} not in the mart")
    return [(name, kind) for name, kind in found]


def _queue_mart(conn: psycopg.Connection, item: MartRelease, target: str) -> int:
    """Queue the rows of ``item``'s mart the portal lacks; returns the mart's row count."""
    mart = sql.Identifier(settings.OPEN_SCHEMA, item.mart)
    key = sql.SQL("jsonb_build_array({})::text").format(
        sql.SQL(", ").join(sql.SQL("m.{}").format(sql.Identifier(k)) for k in item.key)
    )
    rows = sql.SQL(
        "select {key} as key, to_jsonb(m) as record, {nulls} as has_null from {mart} m"
    ).format(
        key=key,
        nulls=sql.SQL(" or ").join(
            sql.SQL("m.{} is null").format(sql.Identifier(k)) for k in item.key
        ),
        mart=mart,
    )
    problem = conn.execute(
        sql.SQL(
            "select key, has_null, count(*) from ({}) r group by key, has_null "
            "having has_null or count(*) > 1 limit 1"
        ).format(rows)
    ).fetchone()
    if problem:
        key_text, has_null, count = problem
        what = "a null in its key" if has_null else f"{count} rows share the key"
        raise ReleaseError(
            f"{item.describe()}: the mart has {what} {key_text} (key: {', '.join(item.key)}); "
            "nothing was sent"
        )
    conn.execute(sql.SQL("delete from {} where target = %s").format(QUEUE), [target])
    conn.execute(
        sql.SQL(
            """
            insert into {queue} (target, key, digest, record)
            select %(target)s, r.key, md5(r.record::text), r.record from ({rows}) r
            left join {ledger} l on l.target = %(target)s and l.key = r.key
            where l.digest is distinct from md5(r.record::text)
            union all
            select %(target)s, l.key, null, null from {ledger} l
            where l.target = %(target)s and not exists (select 1 from ({rows}) r where r.key = l.key)
            """
        ).format(queue=QUEUE, rows=rows, ledger=LEDGER),
        {"target": target},
    )
    return conn.execute(sql.SQL("select count(*) from {}").format(mart)).fetchone()[0]


def _send(
    conn: psycopg.Connection, item: MartRelease, columns: list[tuple[str, str]]
) -> tuple[int, int]:
    """Step 2: send ``item``'s queue in batches; returns the rows upserted and deleted."""
    target = _target(item)
    client = HttpClient(f"portal {item.portal.name}")
    dataset: PortalDataset = (CkanDataset if item.portal.kind == "ckan" else SocrataDataset)(
        item, client
    )
    upserted = deleted = 0
    try:
        dataset.prepare(columns)
        while True:
            batch = conn.execute(
                sql.SQL(
                    "select key, digest, record from {} where target = %s order by key limit %s"
                ).format(QUEUE),
                [target, item.batch_rows],
            ).fetchall()
            if not batch:
                return upserted, deleted
            upserts = [(key, digest, record) for key, digest, record in batch if digest]
            deletions = [key for key, digest, _ in batch if digest is None]
            if upserts:
                dataset.upsert([record for _, _, record in upserts])
            if deletions:
                dataset.delete([json.loads(key) for key in deletions])
            with conn.transaction():
                _accepted(conn, target, upserts, deletions)
            upserted += len(upserts)
            deleted += len(deletions)
    except SourceError as err:
        hint = ""
        if err.status in (401, 403):
            names = " and ".join(item.portal.credential_env)
            hint = f" (check the credentials in {names})"
        raise ReleaseError(
            f"{item.describe()}: {err}{hint}; {upserted} row(s) upserted and {deleted} deleted "
            "in this run are kept, and running the release again sends the rest"
        ) from err


def _accepted(
    conn: psycopg.Connection,
    target: str,
    upserts: list[tuple[str, str, Any]],
    deletions: list[str],
) -> None:
    keys = [key for key, _, _ in upserts] + deletions
    conn.execute(
        sql.SQL("delete from {} where target = %s and key = any(%s)").format(QUEUE), [target, keys]
    )
    if upserts:
        conn.cursor().executemany(
            sql.SQL(
                "insert into {} (target, key, digest) values (%s, %s, %s) "
                "on conflict (target, key) do update set digest = excluded.digest"
            ).format(LEDGER),
            [(target, key, digest) for key, digest, _ in upserts],
        )
    if deletions:
        conn.execute(
            sql.SQL("delete from {} where target = %s and key = any(%s)").format(LEDGER),
            [target, deletions],
        )


def _ensure_tables(conn: psycopg.Connection) -> None:
    conn.execute(
        sql.SQL("create schema if not exists {}").format(sql.Identifier(settings.QUALITY_SCHEMA))
    )
    conn.execute(
        sql.SQL(
            "create table if not exists {} (target text not null, key text not null, "
            "digest text not null, primary key (target, key))"
        ).format(LEDGER)
    )
    conn.execute(
        sql.SQL(
            "create table if not exists {} (target text not null, key text not null, "
            "digest text, record jsonb, primary key (target, key))"
        ).format(QUEUE)
    )
    conn.execute(
        sql.SQL(
            "create table if not exists {} (released_at timestamptz not null, build text not null, "
            "target text not null, mart text not null, upserted integer not null, "
            "deleted integer not null)"
        ).format(RELEASES)
    )
