"""Land a source's pages in its ``raw`` table: COPY as pages arrive, then merge in one transaction.

Every raw row keeps the record exactly as served (jsonb) plus lineage: batch, extracted-at, source,
request page. A record that cannot be keyed goes to ``raw._rejects`` with its position and reason.
Re-loading the same interval changes nothing: a row is only rewritten when the record itself changed,
and the latest version of a record (by the source's updated field, then position) wins.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

import psycopg
from psycopg import sql

from civic_warehouse import settings
from civic_warehouse.catalog import SourceConfig
from civic_warehouse.connectors.base import Page, Window

log = logging.getLogger(__name__)

RAW = settings.RAW_SCHEMA


@dataclass(frozen=True)
class LoadResult:
    source: str
    batch_id: str
    pages: int
    received: int
    inserted: int
    updated: int
    unchanged: int
    rejected: int

    def as_dict(self) -> dict[str, int | str]:
        return dict(self.__dict__)


def ensure_raw_tables(conn: psycopg.Connection, source: SourceConfig) -> None:
    conn.execute(sql.SQL("create schema if not exists {}").format(sql.Identifier(RAW)))
    conn.execute(
        sql.SQL(
            """
            create table if not exists {table} (
                record_key text primary key,
                record jsonb not null,
                source text not null,
                batch_id uuid not null,
                extracted_at timestamptz not null,
                request_page integer not null
            )
            """
        ).format(table=sql.Identifier(RAW, source.raw_table))
    )
    conn.execute(
        sql.SQL(
            """
            create table if not exists {rejects} (
                source text not null,
                batch_id uuid not null,
                interval_start timestamptz not null,
                interval_end timestamptz not null,
                request_page integer not null,
                position integer not null,
                reason text not null,
                payload text not null,
                rejected_at timestamptz not null
            );
            create table if not exists {batches} (
                batch_id uuid primary key,
                source text not null,
                interval_start timestamptz not null,
                interval_end timestamptz not null,
                started_at timestamptz not null,
                finished_at timestamptz not null,
                pages integer not null,
                received integer not null,
                inserted integer not null,
                updated integer not null,
                rejected integer not null
            )
            """
        ).format(rejects=sql.Identifier(RAW, "_rejects"), batches=sql.Identifier(RAW, "_batches"))
    )


def load(
    conn: psycopg.Connection, source: SourceConfig, window: Window, pages: Iterable[Page]
) -> LoadResult:
    """Load every page of one interval, or nothing: the caller's failure rolls the whole batch back."""
    batch_id = str(uuid.uuid4())
    started_at = datetime.now(UTC)
    with conn.transaction():
        ensure_raw_tables(conn, source)
        conn.execute(
            """
            create temporary table _incoming (
                record_key text, record jsonb, updated_at text, request_page integer, position integer
            ) on commit drop
            """
        )
        # A re-run of this interval replaces its earlier rejects instead of adding to them.
        conn.execute(
            sql.SQL(
                "delete from {} where source = %s and interval_start = %s and interval_end = %s"
            ).format(sql.Identifier(RAW, "_rejects")),
            [source.name, window.start, window.end],
        )
        page_count = received = rejected = 0
        for page in pages:
            page_count += 1
            received += len(page.records)
            rejected += _copy_page(conn, source, window, batch_id, page)
        inserted, updated = _merge(conn, source, batch_id, started_at)
        conn.execute(
            sql.SQL("insert into {} values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)").format(
                sql.Identifier(RAW, "_batches")
            ),
            [
                batch_id,
                source.name,
                window.start,
                window.end,
                started_at,
                datetime.now(UTC),
                page_count,
                received,
                inserted,
                updated,
                rejected,
            ],
        )
    result = LoadResult(
        source=source.name,
        batch_id=batch_id,
        pages=page_count,
        received=received,
        inserted=inserted,
        updated=updated,
        unchanged=received - rejected - inserted - updated,
        rejected=rejected,
    )
    log.info("loaded %s", result.as_dict())
    return result


def _copy_page(
    conn: psycopg.Connection, source: SourceConfig, window: Window, batch_id: str, page: Page
) -> int:
    rejects: list[tuple[int, str, str]] = []
    with conn.cursor().copy(
        "copy _incoming (record_key, record, updated_at, request_page, position) from stdin"
    ) as copy:
        for position, record in enumerate(page.records):
            key, reason = _record_key(source, record)
            if reason:
                rejects.append((position, reason, json.dumps(record, default=str)))
                continue
            updated = record.get(source.updated_field) if source.updated_field else None
            copy.write_row((key, json.dumps(record), updated, page.number, position))
    if rejects:
        log.warning(
            "source %s: page %d: %d record(s) rejected", source.name, page.number, len(rejects)
        )
        with conn.cursor() as cursor:
            cursor.executemany(
                sql.SQL("insert into {} values (%s, %s, %s, %s, %s, %s, %s, %s, now())").format(
                    sql.Identifier(RAW, "_rejects")
                ),
                [
                    (source.name, batch_id, window.start, window.end, page.number, pos, why, body)
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
            select distinct on (record_key) record_key, record, request_page
            from _incoming
            order by record_key, updated_at desc nulls last, request_page desc, position desc
        )
        insert into {table} as t (record_key, record, source, batch_id, extracted_at, request_page)
        select record_key, record, %s, %s, %s, request_page from latest
        on conflict (record_key) do update
            set record = excluded.record,
                batch_id = excluded.batch_id,
                extracted_at = excluded.extracted_at,
                request_page = excluded.request_page
            where t.record is distinct from excluded.record
        returning (xmax = 0) as inserted
        """
    ).format(table=sql.Identifier(RAW, source.raw_table))
    rows = conn.execute(statement, [source.name, batch_id, extracted_at]).fetchall()
    inserted = sum(1 for (was_insert,) in rows if was_insert)
    return inserted, len(rows) - inserted
