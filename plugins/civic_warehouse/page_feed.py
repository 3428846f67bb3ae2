"""The pages of one load, fetched ahead in a thread and parsed ahead in database sessions of their own.

A load commits in one transaction, so one PostgreSQL backend does its writing; left alone, that
backend would also turn every page's JSON into ``jsonb``, which is most of its work. Parsing
sessions take pages as they arrive and stage each, parsed, keyed and timed, in an unlogged table
of the load's own schema, under the page's place in the load; the loading transaction then reads
the parsed page from there. One table for all the pages: a table per page would take a lock per
page in the transaction, and a large load would run out of the server's lock table.

When no page is staged yet, the loading transaction takes the next one itself, so the parsing
sessions can only add to its speed; a page that could not be staged (a time PostgreSQL cannot
read, a lost session) is loaded as served, by the transaction.

Every page a load takes ends up in the warehouse, staged or loaded, so the feed caps their bytes
(``CW_MAX_STAGED_BYTES``): a source that serves without end fails its load (a ``SourceError``,
rolled back) before it fills the server's disk.

The loading transaction drops the staging schema once it read every page; if it fails, the feed
drops it after the rollback. A load that was killed leaves its schema behind: the next load on the
same server drops it (each load holds a lock on its schema for as long as it runs, so a schema
nobody holds is a dead load's).
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import psycopg
from psycopg import sql

from civic_warehouse import settings
from civic_warehouse.connectors.base import Page
from civic_warehouse.connectors.http import SourceError

log = logging.getLogger(__name__)

# Pages fetched ahead of the one being loaded, besides those being parsed: enough to hide a
# request's latency, few enough that memory holds a handful of pages whatever the load's size.
READ_AHEAD = 2
STAGING_PREFIX = f"{settings.RAW_SCHEMA}_load_"
# The first key of the advisory lock a load holds on its staging schema (the second: the name's).
_LOCK_SPACE = "civic_warehouse.page staging"
# How long the feed's sessions wait for a lock: a parsing session then leaves its page to the
# transaction, and a schema that cannot be dropped is left to the next load.
_SESSION_LOCK_TIMEOUT = "10s"

# NYC 311's whole history (about 40 M rows, some 50 GB as served) fits twice over; a source serving
# without end is stopped long before a warehouse's disk fills.
DEFAULT_MAX_STAGED_BYTES = 100 * 10**9


def max_staged_bytes() -> int:
    return settings.positive_number("CW_MAX_STAGED_BYTES", DEFAULT_MAX_STAGED_BYTES, "bytes")


# Creates the staging table: (session, table).
CreateStaging = Callable[[psycopg.Connection, sql.Identifier], None]
# Stages one page: (session, staging table, the page's place in the load, page).
Stage = Callable[[psycopg.Connection, sql.Identifier, int, Page], None]


@dataclass
class _Slot:
    page: Page | None = None  # None: the pages ended
    error: BaseException | None = None  # fetching failed here
    state: str = "queued"  # queued -> parsing -> staged | failed, or queued -> taken


class PageFeed:
    """Iterate over ``(page, its place in the load if it is staged, else None)``, in order.

    ``create`` makes the staging table (``table``), and ``stage`` stages a page in it, in up to
    ``sessions`` parsing sessions (0: none, the transaction parses every page). Use as a context
    manager around the loading transaction, and call ``drop_staging`` in the transaction after
    the last page.

    ``source`` names the pages' source in the error that stops a load past ``max_bytes`` of pages
    (default ``CW_MAX_STAGED_BYTES``).
    """

    def __init__(
        self,
        conn: psycopg.Connection,
        pages: Iterable[Page],
        create: CreateStaging,
        stage: Stage,
        sessions: int,
        session_settings: dict[str, str] | None = None,
        *,
        source: str = "",
        max_bytes: int | None = None,
    ) -> None:
        self._conn = conn
        self._pages = pages
        self._create = create
        self._stage = stage
        self._sessions = sessions
        self._settings = session_settings or {}
        self._source = source
        self._max_bytes = max_bytes or max_staged_bytes()
        self.bytes = 0  # of the pages fetched
        self._schema = f"{STAGING_PREFIX}{uuid.uuid4().hex}"
        self.table = sql.Identifier(self._schema, "pages")
        self._slots: dict[int, _Slot] = {}
        self._fetched = 0  # slots appended
        self._consumed = 0  # slots handed to the transaction
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._keeper: psycopg.Connection | None = None
        self._parsers: list[threading.Thread] = []
        self.staged = 0  # pages the transaction read staged
        self._dropped = False

    # -- lifetime ------------------------------------------------------------------------------

    def __enter__(self) -> PageFeed:
        if self._sessions > 0:
            self._keeper = self._open_session("keeping the staging schema")
        if self._keeper is not None and not self._create_staging():
            self._keeper.close()
            self._keeper = None
        if self._keeper is not None:
            for number in range(self._sessions):
                thread = threading.Thread(target=self._parse, name=f"parse-{number}", daemon=True)
                thread.start()
                self._parsers.append(thread)
        threading.Thread(target=self._fetch, name="read-ahead", daemon=True).start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop_parsing()
        if self._keeper is not None:
            try:
                if not self._dropped:
                    _drop_staging(self._keeper, self._schema)
            finally:
                self._keeper.close()

    def drop_staging(self, conn: psycopg.Connection) -> None:
        """Drop the staging schema in the loading transaction, once it read every page.

        The transaction holds a lock on the staging table until it ends, which may be later
        than the load (a caller's own transaction): a session of the feed would wait for it.
        """
        self._stop_parsing()
        if self._keeper is not None:
            conn.execute(_drop_schema(self._schema))
            self._dropped = True

    def _stop_parsing(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        # The fetching thread is not joined: it may be inside a request; it stops after it.
        for thread in self._parsers:
            thread.join()

    def _create_staging(self) -> bool:
        try:
            _drop_dead_staging(self._keeper)
            self._keeper.execute(
                "select pg_advisory_lock(hashtext(%s), hashtext(%s))", [_LOCK_SPACE, self._schema]
            )
            self._keeper.execute(sql.SQL("create schema {}").format(sql.Identifier(self._schema)))
            self._create(self._keeper, self.table)
        except psycopg.Error as err:  # e.g. a role that may not create schemas
            log.warning("no staging schema (%s): parsing in the transaction", err)
            return False
        return True

    def _open_session(self, purpose: str) -> psycopg.Connection | None:
        info = self._conn.info
        try:
            session = psycopg.connect(
                info.dsn, autocommit=True, **({"password": info.password} if info.password else {})
            )
        except psycopg.Error as err:
            log.warning("no database session for %s (%s): parsing in the transaction", purpose, err)
            return None
        # Staged pages are disposable: their commits need not wait for the disk.
        session.execute("set synchronous_commit = off")
        session.execute(sql.SQL("set lock_timeout = {}").format(sql.Literal(_SESSION_LOCK_TIMEOUT)))
        for name, value in self._settings.items():
            session.execute("select set_config(%s, %s, false)", [name, value])
        return session

    # -- the transaction's side ----------------------------------------------------------------

    def __iter__(self) -> Iterator[tuple[Page, int | None]]:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._consumed in self._slots)
                slot = self._slots[self._consumed]
                if slot.state == "queued":
                    slot.state = "taken"
                while slot.state == "parsing":
                    self._cond.wait()
            if slot.error is not None:
                raise slot.error
            if slot.page is None:
                return
            staged = slot.state == "staged"
            self.staged += staged
            yield slot.page, self._consumed if staged else None
            with self._cond:
                del self._slots[self._consumed]
                self._consumed += 1
                self._cond.notify_all()

    # -- the fetching thread -------------------------------------------------------------------

    def _fetch(self) -> None:
        iterator = iter(self._pages)
        try:
            for page in iterator:
                self._count_bytes(page)
                if not self._append(_Slot(page=page)):
                    return
            self._append(_Slot())
        except BaseException as err:  # raised in the loading thread
            self._append(_Slot(error=err))
        finally:
            close = getattr(iterator, "close", None)
            if close:
                close()  # a generator's own cleanup (open responses, sessions) runs here

    def _count_bytes(self, page: Page) -> None:
        self.bytes += page.nbytes
        if self.bytes > self._max_bytes:
            raise SourceError(
                self._source,
                page.url,
                f"the load passed {self._max_bytes} bytes of pages (CW_MAX_STAGED_BYTES) at page "
                f"{page.number}; nothing of it was committed",
            )

    def _append(self, slot: _Slot) -> bool:
        ahead = READ_AHEAD + len(self._parsers)
        with self._cond:
            self._cond.wait_for(
                lambda: self._stop.is_set() or self._fetched - self._consumed < ahead
            )
            if self._stop.is_set():
                return False
            self._slots[self._fetched] = slot
            self._fetched += 1
            self._cond.notify_all()
            return True

    # -- the parsing threads -------------------------------------------------------------------

    def _parse(self) -> None:
        session = self._open_session("parsing pages")
        if session is None:
            return
        with session:
            while (claimed := self._claim()) is not None:
                number, slot = claimed
                try:
                    self._stage(session, self.table, number, slot.page)
                    state = "staged"
                except Exception as err:
                    # The transaction loads the page instead, and says why if it fails there too.
                    expected = isinstance(err, psycopg.errors.DataError)  # e.g. an unreadable time
                    log.log(
                        logging.DEBUG if expected else logging.WARNING,
                        "page %s not parsed ahead: %s",
                        slot.page.number,
                        err,
                    )
                    state = "failed"
                with self._cond:
                    slot.state = state
                    self._cond.notify_all()
                if session.closed or session.broken:
                    return

    def _claim(self) -> tuple[int, _Slot] | None:
        """The first page nobody took yet, marked as being parsed; None once there is none left."""
        with self._cond:
            while not self._stop.is_set():
                for number in range(self._consumed, self._fetched):
                    slot = self._slots[number]
                    if slot.page is None:
                        return None  # the pages ended, or fetching failed
                    if slot.state == "queued":
                        slot.state = "parsing"
                        return number, slot
                self._cond.wait()
        return None


def _drop_schema(schema: str) -> sql.Composed:
    return sql.SQL("drop schema if exists {} cascade").format(sql.Identifier(schema))


def _drop_staging(session: psycopg.Connection, schema: str) -> None:
    try:
        session.execute(_drop_schema(schema))
    except psycopg.Error as err:  # the next load drops it (this session's lock ends with it)
        log.warning("could not drop %s now (%s): the next load will", schema, err)


def _drop_dead_staging(session: psycopg.Connection) -> None:
    """Drop the staging schemas of loads that were killed (no session holds their lock)."""
    for schema in staging_schemas(session):
        try:
            with session.transaction():
                dead = session.execute(
                    "select pg_try_advisory_xact_lock(hashtext(%s), hashtext(%s))",
                    [_LOCK_SPACE, schema],
                ).fetchone()[0]
                if dead:
                    log.info("dropping %s, left by a load that did not finish", schema)
                    session.execute(_drop_schema(schema))
        except psycopg.Error as err:  # e.g. another role's: its owner's next load drops it
            log.warning("could not drop %s (%s)", schema, err)


def staging_schemas(conn: psycopg.Connection) -> list[str]:
    """The staging schemas on the server (each belongs to a running or a killed load)."""
    rows = conn.execute(
        "select nspname from pg_namespace where starts_with(nspname, %s) order by 1",
        [STAGING_PREFIX],
    ).fetchall()
    return [name for (name,) in rows]
