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

import functools
import logging
import reprlib
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec
import psycopg
from psycopg import sql

from civic_warehouse import settings
from civic_warehouse.catalog import SourceConfig
from civic_warehouse.connectors.base import JsonArray, Page, Query, json_array_elements
from civic_warehouse.connectors.http import SourceError
from civic_warehouse.page_feed import PageFeed

log = logging.getLogger(__name__)

RAW = settings.RAW_SCHEMA
UpdatedAt = Callable[[dict[str, Any]], datetime | None]


class LoadError(RuntimeError):
    """The warehouse failed during a load (the load was rolled back); names the source and why."""

    def __init__(self, source: str, what: str) -> None:
        self.source = source
        super().__init__(f"source {source!r}: {what}")


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
        _fetching(source, pages),
        functools.partial(_create_staging, source, served),
        functools.partial(_stage_page, source, served, updated_at),
        sessions=settings.load_parse_sessions(),
        # Times without an offset are the source's local time, as PostgreSQL reads them there.
        session_settings={"TimeZone": source.timezone},
        source=source.name,
    )
    page_count = received = 0
    try:
        with feed, conn.transaction():
            # Counting the batch's keys sorts or hashes them: in memory rather than in temp files.
            conn.execute("set local work_mem = '256MB'")
            # Every valid record's key, time and place (``_seen``), and every upsert
            # (``_written``): small rows, from which the batch's counts, watermark and (for a
            # reconcile) deletions come, and where a version replaced later in the load was served.
            conn.execute(
                """
                create temporary table _seen (
                    record_key text, updated_at timestamptz, page integer, position integer
                ) on commit drop;
                create temporary table _written (record_key text, inserted boolean) on commit drop
                """
            )
            conn.execute(_SERVED_AGAIN)
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
            for page, staged in feed:
                page_count += 1
                received += len(page)
                if staged is None:
                    _load_page(conn, source, statements, batch, page, updated_at)
                else:
                    parameters = {**batch, "page": page.number, "place": staged, "payloads": None}
                    _upsert(conn, staged_statements, parameters)
            conn.execute("select set_config('TimeZone', %s, true)", [zone])
            feed.drop_staging(conn)
            rejected, inserted, updated, distinct = _count(conn, source, scope, batch_id)
            deleted = _mark_deleted(conn, source) if reconcile else 0
            new_watermark = _advance_watermark(conn, source)
            conn.execute(
                sql.SQL(
                    "insert into {} values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
                ).format(sql.Identifier(RAW, "_batches")),
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
    except (psycopg.OperationalError, psycopg.InterfaceError) as err:
        # The server went away, was shut down or cancelled the load: nothing in the records can
        # help, and the transaction is gone with the session.
        where = f"on page {page_count}" if page_count else "before its first page"
        first_line = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise LoadError(
            source.name,
            f"the warehouse failed during the load, {where} ({first_line}); "
            "nothing of this load was committed",
        ) from err
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


def _fetching(source: SourceConfig, pages: Iterable[Page]) -> Iterator[Page]:
    """``pages``, with a page the connector could not read at all failing as a ``SourceError``.

    A body a connector's JSON reader chokes on (nested too deeply, text that is not Unicode)
    or a connector's own refusal of a query surfaces as a bare Python error; this names the
    source and where it was in the paging.
    """
    iterator = iter(pages)
    url = source.resolved_base_url()
    try:
        for page in iterator:
            url = page.url
            yield page
    except (ValueError, RecursionError, msgspec.MsgspecError) as err:
        if isinstance(err, SourceError):
            raise
        raise SourceError(
            source.name, url, f"the next page could not be read: {_describe_error(err)}"
        ) from err
    finally:
        close = getattr(iterator, "close", None)
        if close:
            close()


def _describe_error(err: BaseException) -> str:
    if isinstance(err, RecursionError):
        return "a record is nested too deeply to read"
    return f"{type(err).__name__}: {err}"


# What PostgreSQL raises for a record it cannot store or parse.
_DATABASE_RECORD_FAULTS = (
    psycopg.errors.DataError,
    psycopg.errors.ProgramLimitExceeded,
    psycopg.errors.StatementTooComplex,
)
# Faults of the records in a page, not of the database or the load: the page is then read again
# record by record (``_load_carefully``), and each record at fault is rejected.
_RECORD_FAULTS = (
    *_DATABASE_RECORD_FAULTS,  # NUL in text, bad encoding, an unreadable time, deep nesting
    ValueError,  # text Python cannot encode (a lone surrogate)
    RecursionError,
    msgspec.MsgspecError,
)


def _load_page(
    conn: psycopg.Connection,
    source: SourceConfig,
    statements: tuple[sql.Composed, sql.Composed],
    batch: dict[str, Any],
    page: Page,
    updated_at: UpdatedAt | None,
) -> None:
    """Upsert one page's records as served, keep its rejects.

    The whole page goes to PostgreSQL as one statement; if any record makes that fail (a time
    PostgreSQL cannot read, text it cannot store), the page is read again record by record and
    only the records at fault are rejected.
    """
    try:
        _upsert(conn, statements, _parameters(source, batch, page, updated_at))
        return
    except _RECORD_FAULTS as err:
        message = err.diag.message_primary if isinstance(err, psycopg.Error) else err
        log.warning(
            "source %s: page %d: a record the page statement cannot take (%s): "
            "reading the page record by record",
            source.name,
            page.number,
            message,
        )
    _load_carefully(conn, source, statements, batch, page, updated_at)


def _load_carefully(
    conn: psycopg.Connection,
    source: SourceConfig,
    statements: tuple[sql.Composed, sql.Composed],
    batch: dict[str, Any],
    page: Page,
    updated_at: UpdatedAt | None,
) -> None:
    """Split the page into its records, reject each one that cannot be stored, land the rest.

    A rejected record's place in the page is kept (as a JSON ``null`` whose reason is given), so
    every record keeps its position. What Python can tell is checked here; anything else
    PostgreSQL refuses is found by parsing halves of the page until the one record is isolated.
    """
    elements = _elements(source, page)
    reasons: list[str | None] = []
    payloads: list[str | None] = []
    stamps: list[str | None] = []
    for element in elements:
        reason, payload, record = _screen(element)
        stamp = None
        if reason is None and updated_at is not None and isinstance(record, dict):
            stamp, reason = _stamp(source, updated_at, record)
            payload = payload if reason is None else element.decode()
        reasons.append(reason)
        payloads.append(payload)
        stamps.append(stamp)
    for attempt in range(2):
        parameters = {
            **batch,
            "body": _array(elements, reasons),
            "page": page.number,
            "read_in_sql": False,
            "updated": stamps,
            "unreadable": reasons,
            "payloads": payloads,
        }
        try:
            _upsert(conn, statements, parameters)
            return
        except _DATABASE_RECORD_FAULTS:
            if attempt:
                raise
        for position, reason in _refused(conn, source, elements, reasons, stamps):
            reasons[position] = reason
            payloads[position] = _text(elements[position])


def _elements(source: SourceConfig, page: Page) -> list[bytes]:
    """The page's records, each as JSON text (bytes); a record Python cannot encode as ``None``."""
    if isinstance(page.served, JsonArray):
        try:
            return json_array_elements(page.served.text)
        except ValueError as err:
            raise SourceError(
                source.name, page.url, f"page {page.number} is not a JSON array of records: {err}"
            ) from err
    return [_encoded(record) for record in page.served]


def _encoded(record: Any) -> bytes:
    try:
        return _ENCODER.encode(record)
    except (ValueError, RecursionError, msgspec.MsgspecError) as err:
        # Kept as a marker the screen rejects: the record is never sent as it is.
        return (
            _UNENCODABLE
            + _describe_error(err).encode("utf-8", "backslashreplace")
            + b"|"
            + (reprlib.repr(record).encode("utf-8", "backslashreplace"))
        )


# ``enc_hook=str``: a value JSON cannot carry is kept as text, as ``Page.json_array`` does.
_ENCODER = msgspec.json.Encoder(enc_hook=str)
_UNENCODABLE = b"\x00unencodable|"


def _screen(element: bytes) -> tuple[str | None, str | None, Any]:
    """(why the record cannot be stored or None, its text for a reject, the record parsed)."""
    if element.startswith(_UNENCODABLE):
        why, _, shown = element[len(_UNENCODABLE) :].decode().partition("|")
        return f"a record that cannot be written as JSON text: {why}", shown, None
    try:
        element.decode("utf-8")
    except UnicodeDecodeError as err:
        return (
            f"text that is not valid UTF-8: byte 0x{element[err.start]:02x} at offset "
            f"{err.start} of the record",
            _text(element),
            None,
        )
    try:
        record = msgspec.json.decode(element)
    except RecursionError:
        # Deeper than Python reads, not necessarily than PostgreSQL stores: what it refuses is
        # rejected with its reason (``_refused``), as on the page statement.
        return None, None, None
    except msgspec.DecodeError as err:
        reason = f"JSON that cannot be read: {err}"
        if "surrogate" in str(err) or "escape" in str(err):
            reason = f"text that is not valid Unicode (a lone surrogate escape?): {err}"
        return reason, _text(element), None
    if b"\\u0000" in element and _holds_nul(record):
        return (
            "text holding a NUL character (\\u0000), which PostgreSQL cannot store",
            _text(element),
            None,
        )
    return None, None, record


def _holds_nul(value: Any) -> bool:
    # Without recursion: a record may be nested as deeply as the JSON reader allows.
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False


def _text(element: bytes) -> str:
    """A record's served text as PostgreSQL can store it: bad bytes and NULs escaped."""
    return element.decode("utf-8", "backslashreplace").replace("\x00", "\\u0000")


def _stamp(
    source: SourceConfig, updated_at: UpdatedAt, record: dict[str, Any]
) -> tuple[str | None, str | None]:
    """(the record's last-change time in ISO 8601, or why it cannot be read)."""
    try:
        changed = updated_at(record)
    except Exception as err:  # a connector's reader meeting a type it never expected
        value = record.get(source.updated_field) if source.updated_field else None
        detail = str(err) if isinstance(err, ValueError) else f"not a time ({type(err).__name__})"
        return None, f"unreadable {source.updated_field}: {value!r}: {detail}"
    return (changed.isoformat() if changed else None), None


def _array(elements: list[bytes], reasons: list[str | None]) -> bytes:
    return (
        b"[" + b",".join(b"null" if r else e for e, r in zip(elements, reasons, strict=True)) + b"]"
    )


def _refused(
    conn: psycopg.Connection,
    source: SourceConfig,
    elements: list[bytes],
    reasons: list[str | None],
    stamps: list[str | None],
) -> Iterator[tuple[int, str]]:
    """(position, PostgreSQL's reason) of each record PostgreSQL refuses to parse, key or time.

    Parses halves of the page (nothing is written) until each refused record stands alone: a
    handful of statements per refused record.
    """
    probe = sql.SQL(
        "select count(record_key), count(reason), count(updated_at) from ({}) as served"
    ).format(_served(source))
    ranges = [(0, len(elements))]
    while ranges:
        start, end = ranges.pop()
        parameters = {
            "body": _array(elements[start:end], reasons[start:end]),
            "read_in_sql": False,
            "updated": stamps[start:end],
            "unreadable": reasons[start:end],
        }
        try:
            with conn.transaction():
                conn.execute(probe, parameters)
            continue
        except _DATABASE_RECORD_FAULTS as err:
            if end - start == 1:
                detail = err.diag.message_detail
                message = err.diag.message_primary + (f" ({detail})" if detail else "")
                yield start, f"PostgreSQL cannot read this record: {message}"
                continue
        middle = (start + end) // 2
        ranges += [(start, middle), (middle, end)]


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
    parameters = {**batch, "body": page.json_array(), "page": page.number, "payloads": None}
    if _times_read_in_sql(page, updated_at):
        return {**parameters, "read_in_sql": True, "updated": None, "unreadable": None}
    stamps: list[str | None] = []
    errors: list[str | None] = []
    for record in page.records if updated_at else ():
        stamp = error = None
        if isinstance(record, dict):
            stamp, error = _stamp(source, updated_at, record)
        stamps.append(stamp)
        errors.append(error)
    return {**parameters, "read_in_sql": False, "updated": stamps, "unreadable": errors}


def _upsert(
    conn: psycopg.Connection, statements: tuple[sql.Composed, sql.Composed], parameters: dict
) -> None:
    """Most pages hold each key once, and no key an earlier page of the load held: they are
    upserted as they are. A key served twice in the page, or served again after an earlier page,
    makes that statement fail (cardinality violation); the page is then upserted keeping each
    key's latest version and rejecting the others (checking every page for the rare one costs
    more)."""
    each, latest = statements
    try:
        with conn.transaction():
            conn.execute(each, parameters)
    except psycopg.errors.CardinalityViolation:
        with conn.transaction():
            # Where an earlier version was served is looked up by key: index the load's keys
            # once a load turns out to serve some again.
            conn.execute("create index if not exists _seen_key on _seen (record_key)")
            conn.execute(latest, parameters)


# A key the load already wrote, met again by a later page's upsert: raised by the upsert as the
# database does for a key met twice in one statement, so both go the same way (``_upsert``).
_SERVED_AGAIN = """
    create or replace function pg_temp.served_again_in_this_load() returns boolean
    language plpgsql as $$
    begin
        raise exception using
            errcode = 'cardinality_violation',
            message = 'a key served again in the same load';
    end
    $$
"""


def _served(source: SourceConfig) -> sql.Composed:
    """One page as served (a JSON array): each record with its position, key, last-change time,
    and the reason it is rejected, if it is.

    ``read_in_sql``: take each record's last-change time from its updated field (text in ISO
    8601; without an offset it is local to the source: the session's time zone). Otherwise
    ``updated`` holds them by position, and ``unreadable`` why a record cannot be loaded.

    A key field must be text or a number, and not blank: a list, an object or a boolean read as
    text would make a key no other system could match.
    """
    field_values = [sql.SQL("record ->> {}").format(sql.Literal(f)) for f in source.business_key]
    key = sql.SQL("concat_ws('|', {})").format(sql.SQL(", ").join(field_values))

    def fields_where(condition: str) -> sql.Composed:
        return sql.SQL("concat_ws(', ', {})").format(
            sql.SQL(", ").join(
                sql.SQL("case when {condition} then {name} end").format(
                    condition=sql.SQL(condition).format(
                        value=value,
                        typed=sql.SQL("jsonb_typeof(record -> {})").format(sql.Literal(name)),
                    ),
                    name=sql.Literal(name),
                )
                for value, name in zip(field_values, source.business_key, strict=True)
            )
        )

    missing = fields_where("coalesce({value}, '') = ''")
    not_scalar = fields_where("{typed} not in ('string', 'number', 'null')")
    blank = fields_where(
        "{typed} = 'string' and {value} <> '' and btrim({value}, E' \\t\\n\\r') = ''"
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
                    (%(unreadable)s::text[])[position + 1],
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
                    'business key field(s) not text or a number: ' || nullif({not_scalar}, ''),
                    'business key field(s) blank (only spaces): ' || nullif({blank}, '')
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
    ).format(
        key=key,
        missing=missing,
        not_scalar=not_scalar,
        blank=blank,
        field=sql.Literal(source.updated_field or ""),
    )


def _page_statements(
    source: SourceConfig, staging: sql.Identifier | None = None
) -> tuple[sql.Composed, sql.Composed]:
    """The page statement upserting every record as it comes, and the one keeping only each
    key's latest version and rejecting the others: of the page as served, or as staged in
    ``staging`` (at the page's ``place``)."""
    if staging is None:
        records = sql.SQL("({})").format(_served(source))
    else:
        records = sql.SQL(
            "(select record, position, reason, record_key, updated_at from {}"
            " where place = %(place)s)"
        ).format(staging)
    return _page_statement(source, records), _latest_statement(source, records)


# The upsert's rule, shared by both statements: an older version fetched late (a lookback
# re-read) never replaces a newer one, and in one batch a version with a time beats one without,
# as in a sort.
_REPLACES = """
    (t.record is distinct from excluded.record or t.deleted_at is not null)
    and (t.source_updated_at is null or excluded.source_updated_at is null
         or excluded.source_updated_at >= t.source_updated_at)
    and not (t.batch_id = excluded.batch_id and excluded.source_updated_at is null
             and t.source_updated_at is not null)
"""


# How both page statements begin: the page's rejects written with their reason, and every key
# it served noted (``_seen``), before the rows are upserted.
_REJECT_AND_NOTE_PAGE = """
        with timed as {records},

        rejected as (
            insert into {rejects}
                (source, batch_id, scope, request_page, position, reason, payload, rejected_at)
            select
                %(source)s, %(batch)s, %(scope)s, %(page)s, position, reason,
                coalesce((%(payloads)s::text[])[position + 1], record::text), now()
            from timed
            where reason is not null
        ),

        seen as (
            insert into _seen (record_key, updated_at, page, position)
            select record_key, updated_at, %(page)s, position from timed
            where reason is null
        ),
"""


def _upsert_rows(rows: str, guard: str) -> str:
    """How both page statements end: ``rows`` upserted into the raw table where ``guard`` (a
    condition ending in ``and``, or nothing) and the change rule allow, and noted in ``_written``."""
    return f"""
        merged as (
            insert into {{table}} as t (
                record_key, record, source, batch_id, extracted_at, request_page, source_updated_at
            )
            select record_key, record, %(source)s, %(batch)s, %(at)s, %(page)s, updated_at
            {rows}
            on conflict (record_key) do update
                set record = excluded.record,
                    batch_id = excluded.batch_id,
                    extracted_at = excluded.extracted_at,
                    request_page = excluded.request_page,
                    source_updated_at = excluded.source_updated_at,
                    deleted_at = null
                where {guard} {{replaces}}
            returning record_key, (xmax = 0) as inserted
        )

        insert into _written (record_key, inserted)
        select record_key, inserted from merged
        """


def _page_statement(source: SourceConfig, records: sql.Composable) -> sql.Composed:
    """One page's records upserted, or rejected with their reason.

    A key an earlier page of the load wrote makes the statement fail (``_SERVED_AGAIN``,
    checked before anything else about the row), so that the page is loaded by
    ``_latest_statement``, which says which version lost.
    """
    return sql.SQL(
        _REJECT_AND_NOTE_PAGE
        + """

        """
        + _upsert_rows(
            "from timed where reason is null",
            "case when t.batch_id = excluded.batch_id"
            " then pg_temp.served_again_in_this_load() else true end and",
        )
    ).format(
        records=records,
        rejects=sql.Identifier(RAW, "_rejects"),
        table=sql.Identifier(RAW, source.raw_table),
        replaces=sql.SQL(_REPLACES),
    )


def _latest_statement(source: SourceConfig, records: sql.Composable) -> sql.Composed:
    """One page's records upserted keeping each key's latest version in the load, the other
    versions rejected as replaced, and the rest rejected with their reason.

    Pages are upserted one after the other, so a key served again on a later page (rows that
    shifted while paging) is just upserted again: the latest version wins, by last-change time
    and then by page and position, exactly as if the batch had been sorted as a whole. A version
    that lost is rejected (with the key), from the page or from the raw row it was replaced in;
    a copy identical to the winner loses nothing and is only counted as a duplicate.
    """
    return sql.SQL(
        _REJECT_AND_NOTE_PAGE
        + """

        ranked as (
            select
                record_key, record, position, updated_at,
                row_number() over (
                    partition by record_key order by updated_at desc nulls last, position desc
                ) as rank
            from timed
            where reason is null
        ),

        latest as (select * from ranked where rank = 1),

        judged as (
            select
                l.record_key, l.record, l.position,
                e.record as earlier, e.request_page as earlier_page,
                e.record is distinct from l.record as contested,
                e.source_updated_at is null
                    or (l.updated_at is not null and l.updated_at >= e.source_updated_at) as wins
            from latest as l
            join {table} as e on e.record_key = l.record_key and e.batch_id = %(batch)s
        ),

        lost as (
            select %(page)s::integer as page, r.position, r.record_key, r.record::text as payload
            from ranked as r join latest as l using (record_key)
            where r.rank > 1 and r.record is distinct from l.record
            union all
            select %(page)s, position, record_key, record::text
            from judged where contested and not wins
            union all
            select
                earlier_page,
                (select s.position from _seen as s
                 where s.record_key = j.record_key and s.page = j.earlier_page
                 order by s.updated_at desc nulls last, s.position desc limit 1),
                record_key,
                earlier::text
            from judged as j where contested and wins
        ),

        superseded as (
            insert into {rejects}
                (source, batch_id, scope, request_page, position, reason, payload, rejected_at)
            select
                %(source)s, %(batch)s, %(scope)s, page, coalesce(position, -1),
                'business key ' || quote_literal(record_key)
                    || ' served again in this load: this version was replaced by a later one',
                payload, now()
            from lost
        ),

        """
        + _upsert_rows("from latest", "")
    ).format(
        records=records,
        rejects=sql.Identifier(RAW, "_rejects"),
        table=sql.Identifier(RAW, source.raw_table),
        replaces=sql.SQL(_REPLACES),
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
