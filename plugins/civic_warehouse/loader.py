"""Land a source's pages in its ``raw`` table as they arrive, all in one transaction.

Every raw row keeps the record exactly as served (jsonb) plus lineage: batch, extracted-at, source,
request page. A record that cannot be keyed goes to ``raw._rejects`` with its position and reason.
Re-loading the same scope changes nothing: a row is only rewritten when the record itself changed,
and the latest version of a record (by the source's last-change time, then position) wins. Each
page travels to PostgreSQL as one JSON array, which splits it into records and upserts them, so
memory stays flat however large the load and no record is parsed in Python unless its protocol
needs reshaping; the upserts, the rejects, the watermark and the batch log commit together or not
at all. While the transaction writes, other sessions parse the next pages (``page_feed``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
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
from civic_warehouse.connectors.base import JsonArray, Page, Query
from civic_warehouse.page_feed import PageFeed

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
    parsed_ahead: int  # pages parsed by the parsing sessions, ahead of the transaction

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
    # CREATE ... IF NOT EXISTS fails (unique violation) when another session creates the same
    # object at the same moment, as extracts of several sources on several workers do: serialise
    # this DDL with a lock held until the caller's transaction ends.
    conn.execute("select pg_advisory_xact_lock(hashtext('civic_warehouse.raw ddl'))")
    # Creating a schema needs a right on the database, which a role given just the raw schema lacks.
    if conn.execute("select to_regnamespace(%s) is null", [RAW]).fetchone()[0]:
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

    Each page goes to PostgreSQL as one JSON array, which splits it into records, keys them,
    reads their last-change time and sets rejects aside. ``updated_at`` reads a record's
    last-change time for pages of parsed records; a page kept as served (``JsonArray``, Socrata)
    has ISO 8601 times, read in SQL (text without an offset is local to the source).

    The next pages are fetched in a background thread, and parsed by other database sessions,
    while the transaction writes the current one (``page_feed``). A reconcile (a query with no
    window) saw every record the source has, so keys it did not see are marked deleted
    (``deleted_at``); they come back if the source serves them again.
    """
    _large_buffers_off_the_heap()
    batch_id = str(uuid.uuid4())
    scope = describe(query)
    reconcile = query.events is None and query.updated is None
    started_at = datetime.now(UTC)
    with conn.transaction():
        # A transaction of its own, so the DDL lock is not held while the batch loads.
        ensure_raw_tables(conn, source)
    batch = {"source": source.name, "batch": batch_id, "scope": scope, "at": started_at}
    served = _served(source)
    feed = PageFeed(
        conn,
        pages,
        functools.partial(_create_staging, source, served),
        functools.partial(_stage_page, source, served, updated_at),
        sessions=settings.load_parse_sessions(),
        # Times without an offset are the source's local time, as PostgreSQL reads them there.
        session_settings={"TimeZone": source.timezone},
    )
    with feed, conn.transaction():
        # Counting the batch's keys sorts or hashes them: in memory rather than in temporary files.
        conn.execute("set local work_mem = '256MB'")
        # Every valid record's key and time (``_seen``), and every upsert (``_written``): small
        # rows, from which the batch's counts, watermark and (for a reconcile) deletions come.
        conn.execute(
            """
            create temporary table _seen (record_key text, updated_at timestamptz)
                on commit drop;
            create temporary table _written (record_key text, inserted boolean) on commit drop
            """
        )
        conn.execute(
            sql.SQL("delete from {} where source = %s and scope = %s").format(
                sql.Identifier(RAW, "_rejects")
            ),
            [source.name, scope],
        )
        statements = _page_statements(source)
        staged_statements = _page_statements(source, feed.table)
        zone = conn.execute("select current_setting('TimeZone')").fetchone()[0]
        conn.execute("select set_config('TimeZone', %s, true)", [source.timezone])
        page_count = received = 0
        for page, staged in feed:
            page_count += 1
            received += len(page)
            if staged is None:
                _load_page(conn, source, statements, batch, page, updated_at)
            else:
                _upsert(conn, staged_statements, {**batch, "page": page.number, "place": staged})
        conn.execute("select set_config('TimeZone', %s, true)", [zone])
        feed.drop_staging(conn)
        rejected, inserted, updated, distinct = _count(conn, source, scope, batch_id)
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
        parsed_ahead=feed.staged,
    )
    log.info("loaded %s", result.as_dict())
    return result


# glibc's mallopt parameter: the size from which an allocation gets pages of its own (mmap).
_M_MMAP_THRESHOLD = -3
# Well under a page's body (megabytes), well over the allocations of ordinary objects.
LARGE_BUFFER = 1 << 20


@functools.cache
def _large_buffers_off_the_heap() -> bool:
    """Give every buffer of a megabyte or more pages of its own, returned when it is freed.

    glibc raises the size it serves from separate pages each time such a buffer is freed (the
    "dynamic mmap threshold"), so after the first page every response body, every copy of it and
    every statement buffer is carved out of the heaps of the fetching and the loading threads,
    between small long-lived objects: the heaps fragment and the resident size creeps up with
    every page, however many pages are held at once. A fixed threshold keeps memory flat in the
    number of pages loaded. A no-op where the C library has no ``mallopt`` (not glibc).
    """
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, LARGE_BUFFER))


def _load_page(
    conn: psycopg.Connection,
    source: SourceConfig,
    statements: tuple[sql.Composed, sql.Composed],
    batch: dict[str, Any],
    page: Page,
    updated_at: UpdatedAt | None,
) -> None:
    """Upsert one page's records as served, keep its rejects.

    A page kept as served has its last-change times read by PostgreSQL. A time PostgreSQL cannot
    read fails the statement; the page is then read again in Python, where the connector's
    ``updated_at`` says what is wrong with each such record, and they are rejected.
    """
    if _times_read_in_sql(page, updated_at):
        try:
            _upsert(conn, statements, _parameters(source, batch, page, updated_at))
            return
        except psycopg.errors.DataError as err:
            log.warning(
                "source %s: page %d: a last-change time PostgreSQL cannot read (%s): "
                "reading the page in Python",
                source.name,
                page.number,
                err.diag.message_primary,
            )
        page = Page(page.number, page.url, page.records)
    _upsert(conn, statements, _parameters(source, batch, page, updated_at))


def _create_staging(
    source: SourceConfig, served: sql.Composed, session: psycopg.Connection, table: sql.Identifier
) -> None:
    """The table pages are parsed into ahead of the transaction (see ``page_feed``): the columns
    of ``served`` (``_served``, composed once a load), under each page's place in the load."""
    session.execute(
        sql.SQL(
            "create unlogged table {} as select 0 as place, * from ({}) as served with no data"
        ).format(table, served),
        # no rows: only the columns' types are read
        _parameters(source, {}, Page(0, "", []), None),
    )
    session.execute(sql.SQL("create index on {} (place)").format(table))


def _stage_page(
    source: SourceConfig,
    served: sql.Composed,
    updated_at: UpdatedAt | None,
    session: psycopg.Connection,
    table: sql.Identifier,
    place: int,
    page: Page,
) -> None:
    """Parse, key and time one page into ``table``, in a parsing session (see ``page_feed``).

    What the transaction would do first with the page as served; a time PostgreSQL cannot read
    fails it, and the transaction then loads the page itself.
    """
    statement = sql.SQL("insert into {} select %(place)s::integer, * from ({}) as served").format(
        table, served
    )
    session.execute(statement, {**_parameters(source, {}, page, updated_at), "place": place})


def _times_read_in_sql(page: Page, updated_at: UpdatedAt | None) -> bool:
    return isinstance(page.served, JsonArray) and updated_at is not None


def _parameters(
    source: SourceConfig, batch: dict[str, Any], page: Page, updated_at: UpdatedAt | None
) -> dict[str, Any]:
    """The page statement's parameters: the batch, the page's body and where its times come from."""
    parameters = {**batch, "body": page.json_array(), "page": page.number}
    if _times_read_in_sql(page, updated_at):
        return {**parameters, "read_in_sql": True, "updated": None, "unreadable": None}
    stamps: list[str | None] = []
    errors: list[str | None] = []
    for record in page.records if updated_at else ():
        stamp = error = None
        if isinstance(record, dict):
            try:
                changed = updated_at(record)
                stamp = changed.isoformat() if changed else None
            except ValueError as err:
                error = f"unreadable {source.updated_field}: {err}"
        stamps.append(stamp)
        errors.append(error)
    return {**parameters, "read_in_sql": False, "updated": stamps, "unreadable": errors}


def _upsert(
    conn: psycopg.Connection, statements: tuple[sql.Composed, sql.Composed], parameters: dict
) -> None:
    """Most pages hold each key once and are upserted as they are. A page serving a key twice
    makes the upsert refuse to touch a row twice; it is upserted again keeping each key's latest
    version (sorting every page for the rare one costs more)."""
    each, latest = statements
    try:
        with conn.transaction():
            conn.execute(each, parameters)
    except psycopg.errors.CardinalityViolation:
        with conn.transaction():
            conn.execute(latest, parameters)


def _served(source: SourceConfig) -> sql.Composed:
    """One page as served (a JSON array): each record with its position, key, last-change time,
    and the reason it is rejected, if it is.

    ``read_in_sql``: take each record's last-change time from its updated field (text in ISO
    8601; without an offset it is local to the source: the session's time zone). Otherwise
    ``updated`` holds them by position, and ``unreadable`` why one could not be read.
    """
    field_values = [sql.SQL("record ->> {}").format(sql.Literal(f)) for f in source.business_key]
    key = sql.SQL("concat_ws('|', {})").format(sql.SQL(", ").join(field_values))
    missing = sql.SQL("concat_ws(', ', {})").format(
        sql.SQL(", ").join(
            sql.SQL("case when coalesce({value}, '') = '' then {name} end").format(
                value=value, name=sql.Literal(name)
            )
            for value, name in zip(field_values, source.business_key, strict=True)
        )
    )
    return sql.SQL(
        """
        select
            record,
            position,
            reason,
            record_key,
            case when reason is null then stamp::timestamptz end as updated_at
        from (
            select
                record,
                position,
                {key} as record_key,
                coalesce(
                    case when jsonb_typeof(record) <> 'object'
                        then 'expected a JSON object, got ' || case jsonb_typeof(record)
                            when 'array' then 'list'
                            when 'string' then 'str'
                            when 'boolean' then 'bool'
                            when 'null' then 'NoneType'
                            when 'number' then
                                case when record::text ~ '^-?[0-9]+$' then 'int' else 'float' end
                        end
                    end,
                    'business key field(s) missing or empty: ' || nullif({missing}, ''),
                    (%(unreadable)s::text[])[position + 1]
                ) as reason,
                case
                    when not %(read_in_sql)s then (%(updated)s::text[])[position + 1]
                    when coalesce(record ->> {field}, '') = '' then null
                    -- only text that starts like an ISO date: 'now' or 'today' would be read too
                    when record ->> {field} like '____-__-__%%' then record ->> {field}
                    else 'not an ISO 8601 time: ' || (record ->> {field})
                end as stamp
            from (
                select value as record, ordinality::integer - 1 as position
                from jsonb_array_elements(convert_from(%(body)b, 'UTF8')::jsonb) with ordinality
            ) as served
        ) as read
        """
    ).format(key=key, missing=missing, field=sql.Literal(source.updated_field or ""))


def _page_statements(
    source: SourceConfig, staging: sql.Identifier | None = None
) -> tuple[sql.Composed, sql.Composed]:
    """The page statement upserting every record as it comes, and the one keeping only each
    key's latest version in the page: of the page as served, or as staged in ``staging`` (at the
    page's ``place``)."""
    if staging is None:
        records = sql.SQL("({})").format(_served(source))
    else:
        records = sql.SQL(
            "(select record, position, reason, record_key, updated_at from {}"
            " where place = %(place)s)"
        ).format(staging)
    return (
        _page_statement(source, records, latest_only=False),
        _page_statement(source, records, latest_only=True),
    )


def _page_statement(
    source: SourceConfig, records: sql.Composable, latest_only: bool
) -> sql.Composed:
    """One page's records upserted, or rejected with their reason.

    Pages are upserted one after the other, so a key served again on a later page (rows that
    shifted while paging) is just upserted again: the latest version wins, by last-change time
    and then by page and position, exactly as if the batch had been sorted as a whole.
    """
    return sql.SQL(
        """
        with timed as {records},

        rejected as (
            insert into {rejects}
                (source, batch_id, scope, request_page, position, reason, payload, rejected_at)
            select
                %(source)s, %(batch)s, %(scope)s, %(page)s, position, reason, record::text, now()
            from timed
            where reason is not null
        ),

        seen as (
            insert into _seen (record_key, updated_at)
            select record_key, updated_at from timed
            where reason is null
        ),

        merged as (
            insert into {table} as t (
                record_key, record, source, batch_id, extracted_at, request_page, source_updated_at
            )
            select {distinct}
                record_key, record, %(source)s, %(batch)s, %(at)s, %(page)s, updated_at
            from timed
            where reason is null
            {order}
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
                    -- in one batch, a version with a time beats one without, as in a sort
                    and not (t.batch_id = excluded.batch_id and excluded.source_updated_at is null
                             and t.source_updated_at is not null)
            returning record_key, (xmax = 0) as inserted
        )

        insert into _written (record_key, inserted)
        select record_key, inserted from merged
        """
    ).format(
        records=records,
        rejects=sql.Identifier(RAW, "_rejects"),
        table=sql.Identifier(RAW, source.raw_table),
        distinct=sql.SQL("distinct on (record_key)" if latest_only else ""),
        order=sql.SQL(
            "order by record_key, updated_at desc nulls last, position desc" if latest_only else ""
        ),
    )


def _count(
    conn: psycopg.Connection, source: SourceConfig, scope: str, batch_id: str
) -> tuple[int, int, int, int]:
    """(rejected, inserted, updated, distinct keys) of the batch.

    A key is inserted the first time the batch writes it, if the table did not have it; every
    other key the batch wrote was updated, however many times its pages served it.
    """
    rejected = conn.execute(
        sql.SQL("select count(*) from {} where batch_id = %s").format(
            sql.Identifier(RAW, "_rejects")
        ),
        [batch_id],
    ).fetchone()[0]
    if rejected:
        log.warning("source %s: %d record(s) rejected, see %s._rejects", source.name, rejected, RAW)
    seen, distinct = conn.execute(
        "select count(*), count(distinct record_key) from _seen"
    ).fetchone()
    # Counting distinct keys sorts them (most of a second for a million): when no key was served
    # twice, none was written twice either.
    written_keys = "count(*)" if seen == distinct else "count(distinct record_key)"
    inserted, written = conn.execute(
        f"select count(*) filter (where inserted), {written_keys} from _written"
    ).fetchone()
    return rejected, inserted, written - inserted, distinct


def _mark_deleted(conn: psycopg.Connection, source: SourceConfig) -> int:
    # The source publishes no tombstones: a key a full read no longer returns was deleted there.
    return conn.execute(
        sql.SQL(
            """
            update {table} as t set deleted_at = now()
            where t.deleted_at is null
                and not exists (select from _seen as s where s.record_key = t.record_key)
            """
        ).format(table=sql.Identifier(RAW, source.raw_table))
    ).rowcount


def _advance_watermark(conn: psycopg.Connection, source: SourceConfig) -> datetime | None:
    # Never moves backwards: a backfill of an old interval must not rewind the increments.
    row = conn.execute(
        sql.SQL(
            """
            insert into {watermarks} (source, watermark, advanced_at)
            select %s, max(updated_at), now() from _seen
            having max(updated_at) is not null
            on conflict (source) do update
                set watermark = greatest({watermarks}.watermark, excluded.watermark),
                    advanced_at = excluded.advanced_at
            returning watermark
            """
        ).format(watermarks=sql.Identifier(RAW, "_watermarks")),
        [source.name],
    ).fetchone()
    return row[0] if row else watermark(conn, source)
