"""Who may read what: the BI role reads the open tier and nothing else.

Tiers, as Boston's analytics team does it: ``raw`` is restricted (records as served, exact
identifiers), ``staging``/``internal``/``candidate`` are internal, ``open`` is what BI tools and the
public see. Grants are applied on every publish, because publishing swaps in a new ``open`` schema.

``bi_reader``'s limits are held where it cannot undo them. Privileges make lifting read-only change
nothing: no TEMP, no CREATE on any schema, no large objects, no other database of the owner's.
``temp_file_limit`` is a superuser parameter, so the role cannot raise it. What PostgreSQL lets
any role change about itself (``SET statement_timeout``, ``ALTER ROLE ... SET``, its password) is
undone by the guard (:class:`Guard`, ``python -m civic_warehouse.access guard``): it cancels the
role's queries past the limit and restores its settings and password.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import logging
import os
import re
import secrets
import sys
import threading
import time
from collections.abc import Callable, Iterator

import psycopg
from psycopg import sql
from psycopg.rows import tuple_row

from civic_warehouse import settings

log = logging.getLogger(__name__)

BI_ROLE = "bi_reader"
STATEMENT_TIMEOUT = os.environ.get("BI_READER_STATEMENT_TIMEOUT", "60s")
TEMP_FILE_LIMIT = os.environ.get("BI_READER_TEMP_FILE_LIMIT", "1GB")
SCRAM_ITERATIONS = 4096
# The functions that create a large object; reading or writing one needs its owner's grant.
LARGE_OBJECT_CREATORS = (
    "lo_creat(integer)",
    "lo_create(oid)",
    "lo_from_bytea(oid, bytea)",
    "lo_import(text)",
    "lo_import(text, oid)",
)


def scram_verifier(
    password: str, salt: bytes | None = None, iterations: int = SCRAM_ITERATIONS
) -> str:
    """The SCRAM-SHA-256 verifier PostgreSQL stores (RFC 5802/7677), computed here.

    Sent instead of the password, the password never reaches the server's logs; computed again from
    a stored salt, it tells whether the stored verifier is still the password's.
    """
    salt = salt or secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.digest(salted, b"Client Key", "sha256")
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.digest(salted, b"Server Key", "sha256")
    b64 = base64.b64encode
    return (
        f"SCRAM-SHA-256${iterations}:{b64(salt).decode()}"
        f"${b64(stored_key).decode()}:{b64(server_key).decode()}"
    )


def verifier_matches(verifier: str | None, password: str) -> bool:
    match = re.fullmatch(r"SCRAM-SHA-256\$(\d+):([^$]+)\$([^:]+):(.+)", verifier or "")
    if not match:
        return False
    expected = scram_verifier(password, base64.b64decode(match[2]), int(match[1]))
    return hmac.compare_digest(expected, verifier)


def milliseconds(value: str) -> int:
    """A PostgreSQL time setting (``60s``, ``1min``, ``500ms``, ``60000``) in milliseconds."""
    units = {"us": 0.001, "ms": 1, "s": 1000, "min": 60_000, "h": 3_600_000, "d": 86_400_000}
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(us|ms|s|min|h|d)?\s*", value)
    if not match:
        raise ValueError(f"not a PostgreSQL time setting: {value!r}")
    return round(float(match[1]) * units[match[2] or "ms"])


def _is_superuser(conn: psycopg.Connection) -> bool:
    return conn.execute("select current_setting('is_superuser')").fetchone()[0] == "on"


def role_settings(conn: psycopg.Connection, statement_timeout: str) -> dict[str, list[str]]:
    """What ``bi_reader``'s settings must be: for every database, and for this one."""
    everywhere = [
        "default_transaction_read_only=on",
        f"statement_timeout={STATEMENT_TIMEOUT}",
    ]
    # Only a superuser may set it, and then only a superuser may change it.
    if _is_superuser(conn):
        everywhere.append(f"temp_file_limit={TEMP_FILE_LIMIT}")
    # Per database, so that databases on one server (a test's, the demo's) keep their own limit.
    here = ["default_transaction_read_only=on", f"statement_timeout={statement_timeout}"]
    return {"everywhere": sorted(everywhere), "here": sorted(here)}


# Roles, their settings and databases' grants are the server's rows, not one database's: another
# session (a concurrent test's, a guard on another database, a publish) may be writing the same
# row at the same moment, and PostgreSQL then fails one with "tuple concurrently updated".
CONCURRENT_UPDATE = (psycopg.errors.InternalError_, psycopg.errors.UniqueViolation)


def _retried(conn: psycopg.Connection, action: Callable[[], object]) -> None:
    """``action`` in a transaction (a savepoint in the caller's), again while it meets a
    concurrent writer of the same rows."""
    for attempt in range(5):
        try:
            with conn.transaction():
                action()
            return
        except CONCURRENT_UPDATE:
            if attempt == 4:
                raise
            time.sleep(0.1 * (attempt + 1))


def _apply_role_settings(conn: psycopg.Connection, statement_timeout: str) -> None:
    _retried(conn, lambda: _write_role_settings(conn, statement_timeout))


def _write_role_settings(conn: psycopg.Connection, statement_timeout: str) -> None:
    role, database = sql.Identifier(BI_ROLE), sql.Identifier(conn.info.dbname)
    wanted = role_settings(conn, statement_timeout)
    for scope, reset in (
        ("everywhere", sql.SQL("alter role {} reset all").format(role)),
        ("here", sql.SQL("alter role {} in database {} reset all").format(role, database)),
    ):
        conn.execute(reset)
        for item in wanted[scope]:
            name, value = item.split("=", 1)
            target = (
                sql.SQL("alter role {}").format(role)
                if scope == "everywhere"
                else sql.SQL("alter role {} in database {}").format(role, database)
            )
            conn.execute(
                sql.SQL("{} set {} = {}").format(target, sql.Identifier(name), sql.Literal(value))
            )


def _current_role_settings(conn: psycopg.Connection) -> dict[str, list[str]]:
    rows = conn.execute(
        """
        select case when s.setdatabase = 0 then 'everywhere' else 'here' end, s.setconfig
        from pg_db_role_setting s join pg_roles r on r.oid = s.setrole
        where r.rolname = %s
          and s.setdatabase in (0, (select oid from pg_database where datname = current_database()))
        """,
        [BI_ROLE],
    ).fetchall()
    found = {"everywhere": [], "here": []}
    for scope, config in rows:
        found[scope] = sorted(config or [])
    return found


def _set_password(conn: psycopg.Connection, password: str) -> None:
    conn.execute(
        sql.SQL("alter role {} login password {}").format(
            sql.Identifier(BI_ROLE), sql.Literal(scram_verifier(password))
        )
    )


def ensure_bi_role(
    conn: psycopg.Connection, password: str | None = None, statement_timeout: str | None = None
) -> None:
    """Create or update ``bi_reader``; it can log in only when a password is given.

    Re-running it undoes whatever the role changed about itself (settings, password).
    """
    password = password if password is not None else os.environ.get("BI_READER_PASSWORD")
    role = sql.Identifier(BI_ROLE)
    with _rows_as_tuples(conn):
        exists = conn.execute("select 1 from pg_roles where rolname = %s", [BI_ROLE]).fetchone()
        if not exists:
            conn.execute(sql.SQL("create role {} nologin").format(role))
        if password:
            _set_password(conn, password)
        _apply_role_settings(conn, statement_timeout or STATEMENT_TIMEOUT)
        restrict_bi_role(conn)
        grant_open_tier(conn)


@contextlib.contextmanager
def _rows_as_tuples(conn: psycopg.Connection) -> Iterator[None]:
    """The caller's connection may make dicts of its rows (the public page's does); these
    functions read theirs by position."""
    previous = conn.row_factory
    conn.row_factory = tuple_row
    try:
        yield
    finally:
        conn.row_factory = previous


def _savepoint(conn: psycopg.Connection, statement: sql.Composable) -> bool:
    """Run a statement the connected role may lack the privilege for; say whether it ran."""
    try:
        _retried(conn, lambda: conn.execute(statement))
    except psycopg.errors.InsufficientPrivilege as error:
        log.warning("bi_reader: not applied (%s): %s", error.diag.message_primary, statement)
        return False
    return True


def restrict_bi_role(conn: psycopg.Connection) -> None:
    """Privileges such that ``bi_reader`` lifting read-only can write nothing anywhere.

    PUBLIC's default TEMP and CONNECT cannot be taken from one role alone, so they are taken from
    PUBLIC, on the warehouse database and on the other databases the connected role owns, after
    granting them to every other existing role that could log in: nobody else loses access.
    """
    role = sql.Identifier(BI_ROLE)
    others = [
        name
        for (name,) in conn.execute(
            "select rolname from pg_roles where rolcanlogin and not rolsuper and rolname <> %s",
            [BI_ROLE],
        )
    ]
    databases = conn.execute(
        """
        select datname, datname = current_database(),
               has_database_privilege('public', oid, 'CONNECT'),
               has_database_privilege('public', oid, 'TEMP')
        from pg_database
        where datallowconn and pg_get_userbyid(datdba) = current_user
           or datname = current_database()
        """
    ).fetchall()
    for name, current, public_connect, public_temp in databases:
        database = sql.Identifier(name)
        privileges = []
        if public_temp:
            privileges.append("temporary")
        if public_connect and not current:
            privileges.append("connect")
        for privilege in privileges:
            keyword = sql.SQL(privilege)
            for other in others:
                _savepoint(
                    conn,
                    sql.SQL("grant {} on database {} to {}").format(
                        keyword, database, sql.Identifier(other)
                    ),
                )
            if privilege == "temporary":
                _savepoint(
                    conn, sql.SQL("grant temporary on database {} to current_user").format(database)
                )
            _savepoint(
                conn, sql.SQL("revoke {} on database {} from public").format(keyword, database)
            )
        _savepoint(conn, sql.SQL("revoke all on database {} from {}").format(database, role))
    grant_connect = sql.SQL("grant connect on database {} to {}").format(
        sql.Identifier(conn.info.dbname), role
    )
    _retried(conn, lambda: conn.execute(grant_connect))
    for (schema,) in conn.execute(
        "select nspname from pg_namespace where has_schema_privilege(%s, oid, 'CREATE')",
        [BI_ROLE],
    ).fetchall():
        for grantee in (sql.SQL("public"), role):
            _savepoint(
                conn,
                sql.SQL("revoke create on schema {} from {}").format(
                    sql.Identifier(schema), grantee
                ),
            )
    for function in LARGE_OBJECT_CREATORS:
        if conn.execute("select to_regprocedure(%s)", [function]).fetchone()[0] is not None:
            # Owned by the bootstrap superuser: only a superuser can revoke this.
            _savepoint(
                conn, sql.SQL("revoke execute on function {} from public").format(sql.SQL(function))
            )


def grant_open_tier(conn: psycopg.Connection) -> None:
    """Let the BI role read every table in ``open`` and nothing of the version it replaced."""
    if not conn.execute("select 1 from pg_roles where rolname = %s", [BI_ROLE]).fetchone():
        return
    schema, role = sql.Identifier(settings.OPEN_SCHEMA), sql.Identifier(BI_ROLE)
    # A schema keeps its grants when renamed: the replaced version must not stay readable.
    if conn.execute(
        "select 1 from pg_namespace where nspname = %s", [settings.OPEN_PREVIOUS_SCHEMA]
    ).fetchone():
        previous = sql.Identifier(settings.OPEN_PREVIOUS_SCHEMA)
        conn.execute(sql.SQL("revoke all on schema {} from {}").format(previous, role))
    if conn.execute(
        "select 1 from pg_namespace where nspname = %s", [settings.OPEN_SCHEMA]
    ).fetchone():
        conn.execute(sql.SQL("grant usage on schema {} to {}").format(schema, role))
        conn.execute(sql.SQL("grant select on all tables in schema {} to {}").format(schema, role))


def enforce(
    conn: psycopg.Connection, statement_timeout: str | None = None, password: str | None = None
) -> list[str]:
    """One pass of the guard on the connection's database; returns what it undid.

    ``bi_reader`` may ``SET statement_timeout = 0`` or ``ALTER ROLE`` itself: PostgreSQL lets any
    role do both for user-settable parameters, so the limit is held here instead: queries past it are
    cancelled, transactions left open past it (holding locks a publish waits for) are ended, and the
    role's settings and password are put back. ``conn`` must be autocommit, as a superuser (or a
    member of ``pg_signal_backend`` and ``pg_read_all_stats``, without the password check).
    """
    statement_timeout = statement_timeout or STATEMENT_TIMEOUT
    limit_ms = milliseconds(statement_timeout)
    done = []
    for pid, state in conn.execute(
        """
        select pid, state from pg_stat_activity
        where usename = %(role)s and datname = current_database()
          and (state = 'active' and query_start < now() - %(limit)s * interval '1 millisecond'
               or state like 'idle in transaction%%'
                  and state_change < now() - %(limit)s * interval '1 millisecond')
        """,
        {"role": BI_ROLE, "limit": limit_ms},
    ).fetchall():
        if state == "active":
            conn.execute("select pg_cancel_backend(%s)", [pid])
            done.append(f"cancelled query of backend {pid} running past {statement_timeout}")
        else:
            conn.execute("select pg_terminate_backend(%s)", [pid])
            done.append(f"ended backend {pid} idle in transaction past {statement_timeout}")
    if not conn.execute("select 1 from pg_roles where rolname = %s", [BI_ROLE]).fetchone():
        return done
    if _current_role_settings(conn) != role_settings(conn, statement_timeout):
        _apply_role_settings(conn, statement_timeout)
        done.append("restored its role settings")
    if password and _is_superuser(conn):
        stored = conn.execute(
            "select rolpassword from pg_authid where rolname = %s", [BI_ROLE]
        ).fetchone()[0]
        if not verifier_matches(stored, password):
            _set_password(conn, password)
            done.append("restored its password")
    return done


class Guard:
    """:func:`enforce` every ``interval`` seconds in a thread, while the ``with`` block runs."""

    def __init__(
        self,
        url: str,
        statement_timeout: str | None = None,
        password: str | None = None,
        interval: float | None = None,
    ) -> None:
        self.url = url
        self.statement_timeout = statement_timeout or STATEMENT_TIMEOUT
        self.password = password
        # A quarter of the limit, at most a second: a query runs at most that much past it.
        self.interval = interval or min(1.0, milliseconds(self.statement_timeout) / 4000)
        self.actions: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self.run, name="bi-reader-guard", daemon=True)

    def run(self) -> None:
        conn = None
        while not self._stop.is_set():
            try:
                if conn is None or conn.closed:
                    conn = psycopg.connect(self.url, autocommit=True, connect_timeout=5)
                for action in enforce(conn, self.statement_timeout, self.password):
                    log.warning("bi_reader guard: %s", action)
                    self.actions.append(action)
            except psycopg.Error as error:
                log.warning("bi_reader guard: %s; retrying", error)
                if conn is not None:
                    conn.close()
                conn = None
            self._stop.wait(self.interval)
        if conn is not None:
            conn.close()

    def __enter__(self) -> Guard:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()


def main(argv: list[str]) -> int:
    """``python -m civic_warehouse.access guard``: the guard in the foreground, as a service."""
    if argv != ["guard"]:
        print("usage: python -m civic_warehouse.access guard", file=sys.stderr)
        return 2
    from civic_warehouse import warehouse

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    url = warehouse.warehouse_url()
    with warehouse.connect(url) as conn:
        ensure_bi_role(conn)
    print(
        f"guarding {BI_ROLE} (statement timeout {STATEMENT_TIMEOUT}); stop with Ctrl-C", flush=True
    )
    try:
        with Guard(url, password=os.environ.get("BI_READER_PASSWORD")):
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
