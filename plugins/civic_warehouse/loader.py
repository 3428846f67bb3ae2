"""Land a source's pages in its ``raw`` table: COPY as pages arrive, then merge in one transaction.

Every raw row keeps the record exactly as served (jsonb) plus lineage: batch, extracted-at, source,
request page. A record that cannot be keyed goes to ``raw._rejects`` with its position and reason.
Re-loading the same scope changes nothing: a row is only rewritten when the record itself changed,
and the latest version of a record (by the source's last-change time, then position) wins. Pages
stream through COPY into a temporary table, so memory stays flat however large the load; the
merge, the rejects, the watermark and the batch log commit together or not at all.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import sql

from civic_warehouse import settings
from civic_warehouse.catalog import SourceConfig
from civic_warehouse.connectors.base import Page, Query

log = logging.getLogger(__name__)

RAW = settings.RAW_SCHEMA
UpdatedAt = Callable[[dict[str, Any]], datetime | None]


@dataclass(frozen=True)
class LoadResult:
    source: str
    batch_id: str
    scope: str
    pages: int
    received: int
    inserted: int
    updated: int
    unchanged: int
    duplicates: int
    rejected: int
    deleted: int
    watermark: str | None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def describe(query: Query) -> str:
    """A stable name for what a load covered: re-running the same scope replaces its rejects."""
    if query.events:
        return f"events {query.events.start.isoformat()} .. {query.events.end.isoformat()}"
    if query.updated:
        return f"updated {query.updated.start.isoformat()} .. {query.updated.end.isoformat()}"
    return "reconcile"


def ensure_raw_tables(conn: psycopg.Connection, source: SourceConfig) -> None:
    ensure_bookkeeping(conn)
    conn.execute(
        sql.SQL(
            """
            create table if not exists {table} (
                record_key text primary key,
                record jsonb not null,
                source text not null,
                batch_id uuid not null,
                extracted_at timestamptz not null,
                request_page integer not null,
                source_updated_at timestamptz,
                deleted_at timestamptz
            );
            -- raw tables created by earlier versions gain the newer lineage columns
            alter table {table} add column if not exists source_updated_at timestamptz;
            alter table {table} add column if not exists deleted_at timestamptz
            """
        ).format(table=sql.Identifier(RAW, source.raw_table))
    )


def ensure_bookkeeping(conn: psycopg.Connection) -> None:
    """The loader's tables of rejects, batches and watermarks (the stewardship reports read them)."""
    conn.execute(sql.SQL("create schema if not exists {}").format(sql.Identifier(RAW)))
    conn.execute(
        sql.SQL(
            """
            create table if not exists {rejects} (
                source text not null,
                batch_id uuid not null,
                scope text not null,
                request_page integer not null,
                position integer not null,
                reason text not null,
                payload text not null,
                rejected_at timestamptz not null
            );
            create table if not exists {batches} (
                batch_id uuid primary key,
                source text not null,
                scope text not null,
                started_at timestamptz not null,
                finished_at timestamptz not null,
                pages integer not null,
                received integer not null,
                inserted integer not null,
                updated integer not null,
                rejected integer not null,
                deleted integer not null
            );
            create table if not exists {watermarks} (
                source text primary key,
                watermark timestamptz not null,
                advanced_at timestamptz not null
            )
            """
        ).format(
            rejects=sql.Identifier(RAW, "_rejects"),
            batches=sql.Identifier(RAW, "_batches"),
            watermarks=sql.Identifier(RAW, "_watermarks"),
        )
    )


def watermark(conn: psycopg.Connection, source: SourceConfig) -> datetime | None:
    """The latest last-change time loaded for ``source``, or None before its first load."""
    exists = conn.execute("select to_regclass(%s)", [f"{RAW}._watermarks"]).fetchone()[0]
    if not exists:
        return None
    row = conn.execute(
        sql.SQL("select watermark from {} where source = %s").format(
            sql.Identifier(RAW, "_watermarks")
        ),
        [source.name],
    ).fetchone()
    return row[0] if row else None


def load(
    conn: psycopg.Connection,
    source: SourceConfig,
    query: Query,
    pages: Iterable[Page],
    updated_at: UpdatedAt | None = None,
) -> LoadResult:
    """Load every page of one query, or nothing: any failure rolls the whole batch back.

    A reconcile (a query with no window) saw every record the source has, so keys it did not see
    are marked deleted (``deleted_at``); they come back if the source serves them again.
    """
    batch_id = str(uuid.uuid4())
    scope = describe(query)
    reconcile = query.events is None and query.updated is None
    started_at = datetime.now(UTC)
    with conn.transaction():
        ensure_raw_tables(conn, source)
        conn.execute(
            """
            create temporary table _incoming (
                record_key text, record jsonb, updated_at timestamptz,
                request_page integer, position integer
            ) on commit drop
            """
        )
        conn.execute(
            sql.SQL("delete from {} where source = %s and scope = %s").format(
                sql.Identifier(RAW, "_rejects")
            ),
            [source.name, scope],
        )
        page_count = received = rejected = 0
        for page in pages:
            page_count += 1
            received += len(page.records)
            rejected += _copy_page(conn, source, scope, batch_id, page, updated_at)
        distinct = conn.execute("select count(distinct record_key) from _incoming").fetchone()[0]
        inserted, updated = _merge(conn, source, batch_id, started_at)
        deleted = _mark_deleted(conn, source) if reconcile else 0
        new_watermark = _advance_watermark(conn, source)
        conn.execute(
            sql.SQL("insert into {} values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)").format(
                sql.Identifier(RAW, "_batches")
            ),
            [
                batch_id,
                source.name,
                scope,
                started_at,
                datetime.now(UTC),
                page_count,
                received,
                inserted,
                updated,
                rejected,
                deleted,
            ],
        )
    result = LoadResult(
        source=source.name,
        batch_id=batch_id,
        scope=scope,
        pages=page_count,
        received=received,
        inserted=inserted,
        updated=updated,
        unchanged=distinct - inserted - updated,
        duplicates=received - rejected - distinct,
        rejected=rejected,
        deleted=deleted,
        watermark=new_watermark.isoformat() if new_watermark else None,
    )
    log.info("loaded %s", result.as_dict())
    return result


def _copy_page(
    conn: psycopg.Connection,
    source: SourceConfig,
    scope: str,
    batch_id: str,
    page: Page,
    updated_at: UpdatedAt | None,
) -> int:
    rejects: list[tuple[int, str, str]] = []
    with conn.cursor().copy(
        "copy _incoming (record_key, record, updated_at, request_page, position) from stdin"
    ) as copy:
        for position, record in enumerate(page.records):
            key, reason = _record_key(source, record)
            changed = None
            if not reason and updated_at:
                try:
                    changed = updated_at(record)
                except ValueError as err:
                    reason = f"unreadable {source.updated_field}: {err}"
            if reason:
                rejects.append((position, reason, json.dumps(record, default=str)))
                continue
            copy.write_row((key, json.dumps(record), changed, page.number, position))
    if rejects:
        log.warning(
            "source %s: page %d: %d record(s) rejected", source.name, page.number, len(rejects)
        )
        with conn.cursor() as cursor:
            cursor.executemany(
                sql.SQL("insert into {} values (%s, %s, %s, %s, %s, %s, %s, now())").format(
                    sql.Identifier(RAW, "_rejects")
                ),
                [
                    (source.name, batch_id, scope, page.number, pos, why, body)
                    for pos, why, body in rejects
                ],
            )
    return len(rejects)


def _record_key(source: SourceConfig, record: object) -> tuple[str | None, str | None]:
    if not isinstance(record, dict):
        return None, f"expected a JSON object, got {type(record).__name__}"
    missing = [field for field in source.business_key if record.get(field) in (None, "")]
    if missing:
        return None, f"business key field(s) missing or empty: {', '.join(missing)}"
    return "|".join(str(record[field]) for field in source.business_key), None


def _merge(
    conn: psycopg.Connection, source: SourceConfig, batch_id: str, extracted_at: datetime
) -> tuple[int, int]:
    statement = sql.SQL(
        """
        with latest as (
            select distinct on (record_key) record_key, record, updated_at, request_page
            from _incoming
            order by record_key, updated_at desc nulls last, request_page desc, position desc
        )
        insert into {table} as t (
            record_key, record, source, batch_id, extracted_at, request_page, source_updated_at
        )
        select record_key, record, %s, %s, %s, request_page, updated_at from latest
        on conflict (record_key) do update
            set record = excluded.record,
                batch_id = excluded.batch_id,
                extracted_at = excluded.extracted_at,
                request_page = excluded.request_page,
                source_updated_at = excluded.source_updated_at,
                deleted_at = null
            where (t.record is distinct from excluded.record or t.deleted_at is not null)
                -- an older version fetched late (a lookback re-read) never replaces a newer one
                and (t.source_updated_at is null or excluded.source_updated_at is null
                     or excluded.source_updated_at >= t.source_updated_at)
        returning (xmax = 0) as inserted
        """
    ).format(table=sql.Identifier(RAW, source.raw_table))
    rows = conn.execute(statement, [source.name, batch_id, extracted_at]).fetchall()
    inserted = sum(1 for (was_insert,) in rows if was_insert)
    return inserted, len(rows) - inserted


def _mark_deleted(conn: psycopg.Connection, source: SourceConfig) -> int:
    # The source publishes no tombstones: a key a full read no longer returns was deleted there.
    return conn.execute(
        sql.SQL(
            """
            update {table} as t set deleted_at = now()
            where t.deleted_at is null
                and not exists (select 1 from _incoming i where i.record_key = t.record_key)
            """
        ).format(table=sql.Identifier(RAW, source.raw_table))
    ).rowcount


def _advance_watermark(conn: psycopg.Connection, source: SourceConfig) -> datetime | None:
    # Never moves backwards: a backfill of an old interval must not rewind the increments.
    row = conn.execute(
        sql.SQL(
            """
            insert into {watermarks} (source, watermark, advanced_at)
            select %s, max(updated_at), now() from _incoming having max(updated_at) is not null
            on conflict (source) do update
                set watermark = greatest({watermarks}.watermark, excluded.watermark),
                    advanced_at = excluded.advanced_at
            returning watermark
            """
        ).format(watermarks=sql.Identifier(RAW, "_watermarks")),
        [source.name],
    ).fetchone()
    return row[0] if row else watermark(conn, source)
