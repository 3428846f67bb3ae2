"""The BI role reads the open tier and nothing else, and cannot write."""

from __future__ import annotations

import psycopg
import pytest
from test_publish import UNGATED, stage_candidate

from civic_warehouse import access, publish, warehouse

pytestmark = pytest.mark.integration


@pytest.fixture
def bi_url(clean_warehouse):
    with psycopg.connect(clean_warehouse) as conn:
        conn.execute("create schema raw; create table raw.secret as select 'caller name' as name")
        access.ensure_bi_role(conn, password="only-for-tests")
    for rows in (5, 10):  # a previous version exists too
        stage_candidate(clean_warehouse, rows)
        publish.publish(clean_warehouse, force_reason=UNGATED)
    parts = warehouse.ConnectionParts.from_url(clean_warehouse)
    return warehouse.ConnectionParts(
        parts.host, parts.port, access.BI_ROLE, "only-for-tests", parts.dbname
    ).url()


def test_bi_reader_reads_published_marts(bi_url):
    with psycopg.connect(bi_url) as conn:
        assert conn.execute("select count(*) from open.fct_example").fetchone()[0] == 10


def test_bi_reader_reads_a_newly_published_version_too(bi_url, clean_warehouse):
    stage_candidate(clean_warehouse, 20)
    publish.publish(clean_warehouse, force_reason=UNGATED)
    with psycopg.connect(bi_url) as conn:
        assert conn.execute("select count(*) from open.fct_example").fetchone()[0] == 20


@pytest.mark.parametrize(
    "table", ["raw.secret", "candidate.fct_example", "open_previous.fct_example"]
)
def test_bi_reader_cannot_read_other_tiers(bi_url, clean_warehouse, table):
    stage_candidate(clean_warehouse, 5)  # a candidate exists too
    with psycopg.connect(bi_url) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute(f"select * from {table}")


def test_bi_reader_cannot_write_and_has_a_statement_timeout(bi_url):
    with psycopg.connect(bi_url) as conn:
        assert conn.execute("show statement_timeout").fetchone()[0] == "1min"
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("create table open.mine (x int)")
