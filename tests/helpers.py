"""Small helpers shared by the integration tests."""

from __future__ import annotations

import psycopg
from psycopg import sql


def table_fingerprint(url: str, schema: str, table: str, key: str) -> tuple[int, str]:
    """Row count and an md5 over every row in key order: equal only if the content is identical."""
    with psycopg.connect(url) as conn:
        return conn.execute(
            sql.SQL(
                "select count(*), md5(coalesce(string_agg(t::text, '|' order by {key}), '')) from {table} t"
            ).format(key=sql.Identifier(key), table=sql.Identifier(schema, table))
        ).fetchone()
