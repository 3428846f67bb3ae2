"""Pages parsed ahead of the loading transaction, in sessions of their own: in order, each staged
page readable by the transaction, a page that could not be staged left to it, nothing left behind."""

from __future__ import annotations

import json
import secrets
import time
import uuid

import psycopg
import pytest
from psycopg import sql

from civic_warehouse import page_feed
from civic_warehouse.connectors import Page
from civic_warehouse.connectors.base import JsonArray
from civic_warehouse.page_feed import PageFeed

pytestmark = pytest.mark.integration

# The transaction's time per page in these tests: slower than a parsing session, so that the
# sessions run ahead as they do under a real load.
CONSUMER_DELAY = 0.05


@pytest.fixture
def conn(clean_warehouse):
    with psycopg.connect(clean_warehouse) as connection:
        yield connection


def page(number: int) -> Page:
    records = [{"n": number, "i": i} for i in range(3)]
    return Page(number, f"u{number}", JsonArray(json.dumps(records).encode(), len(records)))


def create(session: psycopg.Connection, table: sql.Identifier) -> None:
    session.execute(sql.SQL("create unlogged table {} (place integer, value jsonb)").format(table))


def stage(session: psycopg.Connection, table: sql.Identifier, place: int, page: Page) -> None:
    """Parse a page into ``table``, as the loader does; the page numbered 13 cannot be staged."""
    if page.number == 13:
        session.execute("select 1 / 0")
    session.execute(
        sql.SQL("insert into {} select %s, value from jsonb_array_elements(%s::jsonb)").format(
            table
        ),
        [place, page.json_array().decode()],
    )


def consume(conn, feed: PageFeed, drop: bool = False) -> list[tuple[int, list | None]]:
    """What the transaction sees: each page's number and, if it was staged, its staged records.
    ``drop``: the transaction drops the staging, as the loader's does."""
    seen = []
    with conn.transaction():
        for delivered, place in feed:
            records = None
            if place is not None:
                query = sql.SQL("select value from {} where place = %s order by value ->> 'i'")
                records = [row[0] for row in conn.execute(query.format(feed.table), [place])]
            seen.append((delivered.number, records))
            time.sleep(CONSUMER_DELAY)
        # However many pages were read staged, the transaction holds a lock on one table of them:
        # a lock per page would exhaust the server's lock table in a large load.
        locked = conn.execute(
            "select count(*) from pg_locks l join pg_class c on c.oid = l.relation"
            " join pg_namespace n on n.oid = c.relnamespace"
            " where l.pid = pg_backend_pid() and starts_with(n.nspname, %s)",
            [page_feed.STAGING_PREFIX],
        ).fetchone()[0]
        assert locked <= 2, f"{locked} staging relations locked"  # the table and its index
        if drop:
            feed.drop_staging(conn)
    return seen


def test_pages_come_in_order_and_staged_ones_hold_their_records(conn):
    with PageFeed(conn, (page(n) for n in range(1, 21)), create, stage, sessions=2) as feed:
        seen = consume(conn, feed)
        schemas = page_feed.staging_schemas(conn)
    assert [number for number, _ in seen] == list(range(1, 21))
    staged = {number: records for number, records in seen if records is not None}
    assert len(staged) >= 10, "the parsing sessions never got ahead of a slow transaction"
    assert feed.staged == len(staged)
    for number, records in staged.items():
        assert records == [{"n": number, "i": i} for i in range(3)]
    assert len(schemas) == 1 and schemas[0].startswith(page_feed.STAGING_PREFIX)
    # The staging schema is gone once the feed is closed.
    assert page_feed.staging_schemas(conn) == []


def test_a_page_that_cannot_be_staged_is_left_to_the_transaction(conn):
    with PageFeed(conn, (page(n) for n in range(10, 17)), create, stage, sessions=2) as feed:
        seen = consume(conn, feed)
    assert [number for number, _ in seen] == list(range(10, 17))
    assert dict(seen)[13] is None
    assert feed.staged >= 3


def test_without_parsing_sessions_the_transaction_takes_every_page(conn):
    with PageFeed(conn, (page(n) for n in range(1, 6)), create, stage, sessions=0) as feed:
        assert page_feed.staging_schemas(conn) == []
        seen = consume(conn, feed)
    assert seen == [(n, None) for n in range(1, 6)]
    assert feed.staged == 0


def test_a_fetching_failure_reaches_the_transaction_after_the_pages_before_it(conn):
    def pages():
        yield page(1)
        yield page(2)
        raise RuntimeError("source calls: HTTP 503 on page 3")

    delivered = []
    feed = PageFeed(conn, pages(), create, stage, sessions=2)
    with pytest.raises(RuntimeError, match="page 3"), feed:
        for fed, _ in feed:
            delivered.append(fed.number)
    assert delivered == [1, 2]
    assert page_feed.staging_schemas(conn) == []


def test_a_killed_loads_staging_is_dropped_by_the_next_and_a_running_ones_kept(conn):
    dead = f"{page_feed.STAGING_PREFIX}{uuid.uuid4().hex}"
    running = f"{page_feed.STAGING_PREFIX}{uuid.uuid4().hex}"
    conn.autocommit = True
    for schema in (dead, running):
        conn.execute(sql.SQL("create schema {}").format(sql.Identifier(schema)))
    # A running load holds its schema's lock in a session of its own.
    with psycopg.connect(conn.info.dsn, password=conn.info.password, autocommit=True) as other:
        other.execute(
            "select pg_advisory_lock(hashtext(%s), hashtext(%s))",
            [page_feed._LOCK_SPACE, running],
        )
        conn.autocommit = False
        with PageFeed(conn, (page(n) for n in range(1, 3)), create, stage, sessions=1) as feed:
            consume(conn, feed)
        left = page_feed.staging_schemas(conn)
    conn.execute(sql.SQL("drop schema {}").format(sql.Identifier(running)))
    conn.commit()
    assert left == [running]


def test_a_role_that_may_not_create_schemas_loads_in_the_transaction_alone(
    conn, monkeypatch, caplog
):
    from civic_warehouse import loader
    from civic_warehouse.catalog import get_source
    from civic_warehouse.connectors import Query, connector_for

    source = get_source("calls_for_service")
    role = "cw_test_raw_only"
    conn.autocommit = True
    conn.execute(sql.SQL("drop role if exists {}").format(sql.Identifier(role)))
    password = secrets.token_hex(16)  # the embedded warehouse asks every TCP login for one
    conn.execute(
        sql.SQL("create role {} login password {}").format(
            sql.Identifier(role), sql.Literal(password)
        )
    )
    conn.execute(sql.SQL("create schema raw authorization {}").format(sql.Identifier(role)))
    # Loading writes temporary tables. TEMP, and CONNECT once the BI role was restricted from
    # another database, are no longer every role's (the BI role must not have them).
    conn.execute(
        sql.SQL("grant connect, temporary on database {} to {}").format(
            sql.Identifier(conn.info.dbname), sql.Identifier(role)
        )
    )
    monkeypatch.setenv("CW_LOAD_PARSE_SESSIONS", "2")
    records = [{"event_number": f"E{n}", ":updated_at": "2026-05-01T12:00:00Z"} for n in range(3)]
    try:
        with psycopg.connect(conn.info.dsn, user=role, password=password) as limited:
            result = loader.load(
                limited,
                source,
                Query(),
                [Page(n, "u", records[n : n + 1]) for n in range(3)],
                connector_for(source).updated_at,
            )
        assert (result.inserted, result.parsed_ahead) == (3, 0)
        assert "no staging schema" in caplog.text
        assert page_feed.staging_schemas(conn) == []
    finally:
        conn.execute("drop schema raw cascade")
        conn.execute(
            sql.SQL("revoke connect, temporary on database {} from {}").format(
                sql.Identifier(conn.info.dbname), sql.Identifier(role)
            )
        )
        conn.execute(sql.SQL("drop role {}").format(sql.Identifier(role)))


def test_inside_a_longer_transaction_the_staging_goes_with_it(conn, caplog):
    # The caller's own transaction is open: the staged table stays locked after the load.
    conn.execute("select 1")
    with PageFeed(conn, (page(n) for n in range(1, 8)), create, stage, sessions=2) as feed:
        seen = consume(conn, feed, drop=True)
    assert [number for number, _ in seen] == list(range(1, 8))
    assert feed.staged >= 3
    assert "could not drop" not in caplog.text
    conn.commit()
    assert page_feed.staging_schemas(conn) == []
