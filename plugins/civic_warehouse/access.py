"""Who may read what: the BI role reads the open tier and nothing else.

Tiers, as Boston's analytics team does it: ``raw`` is restricted (records as served, exact
identifiers), ``staging``/``internal``/``candidate`` are internal, ``open`` is what BI tools and the
public see. Grants are applied on every publish, because publishing swaps in a new ``open`` schema.
"""

from __future__ import annotations

import os

import psycopg
from psycopg import sql

from civic_warehouse import settings

BI_ROLE = "bi_reader"
STATEMENT_TIMEOUT = os.environ.get("BI_READER_STATEMENT_TIMEOUT", "60s")


def ensure_bi_role(conn: psycopg.Connection, password: str | None = None) -> None:
    """Create or update ``bi_reader``; it can log in only when a password is given."""
    password = password if password is not None else os.environ.get("BI_READER_PASSWORD")
    role = sql.Identifier(BI_ROLE)
    exists = conn.execute("select 1 from pg_roles where rolname = %s", [BI_ROLE]).fetchone()
    if not exists:
        conn.execute(sql.SQL("create role {} nologin").format(role))
    if password:
        conn.execute(sql.SQL("alter role {} login password {}").format(role, sql.Literal(password)))
    conn.execute(
        sql.SQL("alter role {} set statement_timeout = {}").format(
            role, sql.Literal(STATEMENT_TIMEOUT)
        )
    )
    conn.execute(sql.SQL("alter role {} set default_transaction_read_only = on").format(role))
    database = conn.info.dbname
    conn.execute(
        sql.SQL("grant connect on database {} to {}").format(sql.Identifier(database), role)
    )
    grant_open_tier(conn)


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
