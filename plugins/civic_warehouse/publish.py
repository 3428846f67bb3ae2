"""Publish audited candidate marts: one transaction swaps ``candidate`` into ``open``.

Readers resolve ``open.<mart>`` either to the old tables or to the new ones, never to a mix or to an
empty table. The replaced version is kept in ``open_previous`` so ``restore`` can bring it back.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import psycopg
from psycopg import sql

from civic_warehouse import access, settings, warehouse

log = logging.getLogger(__name__)

CANDIDATE = settings.CANDIDATE_SCHEMA
OPEN = settings.OPEN_SCHEMA
PREVIOUS = settings.OPEN_PREVIOUS_SCHEMA


class PublishError(RuntimeError):
    pass


@dataclass(frozen=True)
class PublishedMart:
    name: str
    rows: int


def publish(url: str | None = None) -> list[PublishedMart]:
    with warehouse.connect(url) as conn, conn.transaction():
        if not _schema_exists(conn, CANDIDATE):
            raise PublishError(
                f"nothing to publish: schema {CANDIDATE!r} does not exist (run dbt build first)"
            )
        # Serialise publishers; readers are not blocked by this lock.
        conn.execute("select pg_advisory_xact_lock(hashtext('civic_warehouse.publish'))")
        conn.execute(sql.SQL("drop schema if exists {} cascade").format(sql.Identifier(PREVIOUS)))
        if _schema_exists(conn, OPEN):
            _rename_schema(conn, OPEN, PREVIOUS)
        _rename_schema(conn, CANDIDATE, OPEN)
        access.grant_open_tier(conn)
        marts = published_marts(conn)
    log.info("published %s", ", ".join(f"{m.name} ({m.rows} rows)" for m in marts))
    return marts


def restore(url: str | None = None) -> list[PublishedMart]:
    """Bring back the previously published version (the current one becomes the previous)."""
    with warehouse.connect(url) as conn, conn.transaction():
        if not _schema_exists(conn, PREVIOUS):
            raise PublishError(f"nothing to restore: schema {PREVIOUS!r} does not exist")
        conn.execute("select pg_advisory_xact_lock(hashtext('civic_warehouse.publish'))")
        _rename_schema(conn, OPEN, "open_swap")
        _rename_schema(conn, PREVIOUS, OPEN)
        _rename_schema(conn, "open_swap", PREVIOUS)
        access.grant_open_tier(conn)
        return published_marts(conn)


def published_marts(conn: psycopg.Connection, schema: str = OPEN) -> list[PublishedMart]:
    tables = conn.execute(
        "select table_name from information_schema.tables where table_schema = %s order by table_name",
        [schema],
    ).fetchall()
    return [
        PublishedMart(
            name=name,
            rows=conn.execute(
                sql.SQL("select count(*) from {}").format(sql.Identifier(schema, name))
            ).fetchone()[0],
        )
        for (name,) in tables
    ]


def _schema_exists(conn: psycopg.Connection, schema: str) -> bool:
    return bool(conn.execute("select 1 from pg_namespace where nspname = %s", [schema]).fetchone())


def _rename_schema(conn: psycopg.Connection, old: str, new: str) -> None:
    conn.execute(
        sql.SQL("alter schema {} rename to {}").format(sql.Identifier(old), sql.Identifier(new))
    )
