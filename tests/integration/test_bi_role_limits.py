"""bi_reader cannot lift its own limits: each attempt, over a real connection, is refused or undone.

The statements are shared with the fault and security suite's report (``attack_scenarios``).
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import psycopg
import pytest
from attack_scenarios import BI_SETTINGS, BI_WRITES, OTHER_DATABASES, lifted, wait_for
from test_publish import UNGATED, stage_candidate

from civic_warehouse import access, publish, warehouse

pytestmark = pytest.mark.integration

PASSWORD = "only-for-tests"
LIMIT = "2s"  # short, so that the timeout tests take seconds


@pytest.fixture
def bi(clean_warehouse):
    """bi_reader's URL, with the guard running as the owner, as ``make bi`` runs it."""
    stage_candidate(clean_warehouse, 5)
    publish.publish(clean_warehouse, force_reason=UNGATED)
    with psycopg.connect(clean_warehouse) as conn:
        access.ensure_bi_role(conn, password=PASSWORD, statement_timeout=LIMIT)
    parts = warehouse.ConnectionParts.from_url(clean_warehouse)
    url = warehouse.ConnectionParts(
        parts.host, parts.port, access.BI_ROLE, PASSWORD, parts.dbname
    ).url()
    with access.Guard(clean_warehouse, statement_timeout=LIMIT, password=PASSWORD) as guard:
        yield url, guard
    with psycopg.connect(clean_warehouse) as conn:
        access.ensure_bi_role(conn, password=PASSWORD)  # back to the default limit


def test_a_lifted_statement_timeout_is_cancelled_at_the_limit(bi):
    url, guard = bi
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("set statement_timeout = 0")
        started = time.monotonic()
        with pytest.raises(psycopg.errors.QueryCanceled):
            conn.execute("select pg_sleep(20)")
        elapsed = time.monotonic() - started
    assert 2.0 <= elapsed < 4.0, elapsed
    assert wait_for(lambda: any("cancelled" in action for action in guard.actions))


def test_a_transaction_left_open_past_the_limit_is_ended(bi):
    url, _ = bi
    with psycopg.connect(url) as conn:
        conn.execute("select 1")  # opens a transaction, then leaves it idle, holding its locks
        time.sleep(3.5)
        with pytest.raises(psycopg.OperationalError):
            conn.execute("select 1")


@pytest.mark.parametrize("attack", BI_SETTINGS)
def test_settings_the_role_gives_itself_are_undone(bi, attack):
    url, _ = bi
    database = warehouse.ConnectionParts.from_url(url).dbname
    with lifted(url) as conn:
        conn.execute(attack.format(database=f'"{database}"'))

    def restored() -> bool:
        with psycopg.connect(url) as conn:
            return conn.execute(
                "select current_setting('statement_timeout'),"
                " current_setting('default_transaction_read_only')"
            ).fetchone() == ("2s", "on")

    assert wait_for(restored)


def test_temp_file_limit_is_fixed_by_the_owner(bi, clean_warehouse):
    url, _ = bi
    with psycopg.connect(clean_warehouse) as conn:
        if not access._is_superuser(conn):
            pytest.skip("only a superuser can set temp_file_limit")
    with lifted(url) as conn:
        assert conn.execute("show temp_file_limit").fetchone()[0] == access.TEMP_FILE_LIMIT
        for attack in (
            "set temp_file_limit = -1",
            "alter role bi_reader set temp_file_limit = -1",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(attack)
        conn.execute("alter role bi_reader reset all")  # keeps what a superuser set
    with psycopg.connect(url) as conn:
        assert conn.execute("show temp_file_limit").fetchone()[0] == access.TEMP_FILE_LIMIT


@pytest.mark.parametrize("attack", BI_WRITES)
def test_lifting_read_only_writes_nothing(bi, attack):
    url, _ = bi
    with lifted(url) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute(attack)


@pytest.mark.parametrize("database", OTHER_DATABASES)
def test_bi_reader_cannot_connect_to_other_databases(bi, database):
    url, _ = bi
    other = warehouse.ConnectionParts.from_url(url).url(database)
    with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
        psycopg.connect(other).close()


def test_a_password_the_role_gives_itself_is_undone(bi):
    url, guard = bi
    with lifted(url) as conn:
        conn.execute("alter role bi_reader password 'chosen-by-bi-reader'")
    assert wait_for(lambda: "restored its password" in guard.actions)
    psycopg.connect(url).close()


def test_grants_also_undo_what_the_role_changed(clean_warehouse):
    """Without a guard running, the next ``grants``/``make bi`` puts everything back."""
    with psycopg.connect(clean_warehouse) as conn:
        access.ensure_bi_role(conn, password=PASSWORD)
    parts = warehouse.ConnectionParts.from_url(clean_warehouse)
    url = warehouse.ConnectionParts(
        parts.host, parts.port, access.BI_ROLE, PASSWORD, parts.dbname
    ).url()
    with lifted(url) as conn:
        conn.execute("alter role bi_reader set statement_timeout = 0")
        conn.execute("alter role bi_reader set default_transaction_read_only = off")
    with psycopg.connect(clean_warehouse) as conn:
        access.ensure_bi_role(conn, password=PASSWORD)
    with psycopg.connect(url) as conn:
        assert conn.execute("show default_transaction_read_only").fetchone()[0] == "on"


def test_the_role_is_made_through_a_connection_that_reads_rows_as_dicts(clean_warehouse):
    """The public page's first build on a new warehouse makes the role on its own connection,
    whose rows are dicts: the role is made all the same, and the connection keeps its rows."""
    from psycopg.rows import dict_row

    with psycopg.connect(clean_warehouse, row_factory=dict_row) as conn:
        access.ensure_bi_role(conn)
        row = conn.execute(
            "select rolname from pg_roles where rolname = %s", [access.BI_ROLE]
        ).fetchone()
    assert row == {"rolname": access.BI_ROLE}


def test_scram_verifier_is_what_postgresql_accepts():
    verifier = access.scram_verifier("s3cret")
    assert access.verifier_matches(verifier, "s3cret")
    assert not access.verifier_matches(verifier, "other")
    assert not access.verifier_matches(None, "s3cret")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def refused(url: str) -> bool:
    try:
        psycopg.connect(url, connect_timeout=5).close()
    except psycopg.OperationalError:
        return True
    return False


def test_embedded_warehouse_requires_passwords_and_migrates_trust(tmp_path: Path):
    """A data directory of its own: the shared one stays as it is for concurrent sessions."""
    embedded = warehouse.EmbeddedWarehouse(root=tmp_path / "wh", port=free_port())
    base = f"127.0.0.1:{embedded.port}"
    try:
        embedded.start()
        with psycopg.connect(embedded.url(), autocommit=True) as conn:
            access.ensure_bi_role(conn, password=PASSWORD)

        def check_refusals() -> None:
            for url in (
                f"postgresql://postgres@{base}/postgres",
                f"postgresql://postgres:wrong@{base}/postgres",
                f"postgresql://bi_reader@{base}/postgres",
                f"postgresql://bi_reader:wrong@{base}/postgres",
            ):
                assert refused(url), url
            assert not refused(embedded.url())

        check_refusals()
        # A data directory made by an earlier version trusted every local connection.
        hba = embedded.pgdata / "pg_hba.conf"
        hba.write_text(
            "local all all trust\nhost all all 127.0.0.1/32 trust\nhost all all ::1/128 trust\n"
        )
        with psycopg.connect(embedded.url(), autocommit=True) as conn:
            conn.execute("select pg_reload_conf()")
        assert wait_for(lambda: not refused(f"postgresql://bi_reader:wrong@{base}/postgres"))
        embedded.start()  # what every command does first
        check_refusals()
        assert hba.read_text() == warehouse.PG_HBA
    finally:
        embedded.stop()
