"""Publish audited candidate marts: one transaction swaps ``candidate`` into ``open``.

Readers resolve ``open.<mart>`` either to the old tables or to the new ones, never to a mix or to an
empty table. The replaced version is kept in ``open_previous`` so ``restore`` can bring it back.

Only a candidate build the quality gate passed is published. The gate records the build's identity
(``candidate_build``) with its verdict in ``quality.validated_builds``; publishing computes the
identity again, under lock, and refuses unless the latest verdict on exactly that identity is a
pass. ``force_reason`` overrides the refusal, and the override is recorded with who and why in
``quality.publish_overrides``.
"""

from __future__ import annotations

import getpass
import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg import sql

from civic_warehouse import access, settings, warehouse

log = logging.getLogger(__name__)

CANDIDATE = settings.CANDIDATE_SCHEMA
OPEN = settings.OPEN_SCHEMA
PREVIOUS = settings.OPEN_PREVIOUS_SCHEMA
VALIDATED_BUILDS = sql.Identifier(settings.QUALITY_SCHEMA, "validated_builds")
OVERRIDES = sql.Identifier(settings.QUALITY_SCHEMA, "publish_overrides")
# Tables, views, materialized views, partitioned and foreign tables: what readers could query.
RELATION_KINDS = ("r", "v", "m", "p", "f")
LOCKABLE_KINDS = ("r", "v", "m", "p")
VALIDATE_HINT = "rebuild if needed and run the gate (`python -m civic_warehouse validate`)"
OVERRIDE_HINT = 'or override with `python -m civic_warehouse publish --force --reason "..."`'


class PublishError(RuntimeError):
    pass


@dataclass(frozen=True)
class PublishedMart:
    name: str
    rows: int


@dataclass(frozen=True)
class GateVerdict:
    run_id: str
    validated_at: datetime
    passed: bool
    critical_failures: int


def publish(url: str | None = None, force_reason: str | None = None) -> list[PublishedMart]:
    """Swap the candidate into ``open`` if the gate passed exactly this build.

    ``force_reason`` publishes a build the gate did not pass; who and why are recorded.
    """
    if force_reason is not None and not force_reason.strip():
        raise PublishError("an override needs a reason: say why this build is published unchecked")
    with warehouse.connect(url) as conn, conn.transaction():
        if not _schema_exists(conn, CANDIDATE):
            raise PublishError(
                f"nothing to publish: schema {CANDIDATE!r} does not exist (run dbt build first)"
            )
        # Serialise publishers; readers are not blocked by this lock.
        conn.execute("select pg_advisory_xact_lock(hashtext('civic_warehouse.publish'))")
        ensure_tables(conn)
        # Writers to the candidate (and, through its views, to what they read) wait until the swap
        # commits, so the build checked below is the build published; readers are not blocked.
        _lock_relations(conn, CANDIDATE)
        build = candidate_build(conn, CANDIDATE)
        verdict = latest_verdict(conn, build)
        if verdict is None or not verdict.passed:
            if force_reason is None:
                raise PublishError(_refusal(build, verdict))
            _record_override(conn, build, verdict, force_reason.strip())
        conn.execute(sql.SQL("drop schema if exists {} cascade").format(sql.Identifier(PREVIOUS)))
        if _schema_exists(conn, OPEN):
            _rename_schema(conn, OPEN, PREVIOUS)
        _rename_schema(conn, CANDIDATE, OPEN)
        access.grant_open_tier(conn)
        marts = published_marts(conn)
    log.info(
        "published build %s: %s", build[:12], ", ".join(f"{m.name} ({m.rows} rows)" for m in marts)
    )
    return marts


def restore(url: str | None = None) -> list[PublishedMart]:
    """Bring back the previously published version (the current one becomes the previous)."""
    with warehouse.connect(url) as conn, conn.transaction():
        if not _schema_exists(conn, PREVIOUS):
            raise PublishError(f"nothing to restore: schema {PREVIOUS!r} does not exist")
        conn.execute("select pg_advisory_xact_lock(hashtext('civic_warehouse.publish'))")
        _rename_schema(conn, OPEN, "open_swap")
        _rename_schema(conn, PREVIOUS, OPEN)
        _rename_schema(conn, "open_swap", PREVIOUS)
        access.grant_open_tier(conn)
        return published_marts(conn)


def candidate_build(conn: psycopg.Connection, schema: str = CANDIDATE) -> str:
    """The identity of the build in ``schema``: a hex digest, computed in the database, that
    changes whenever dbt rebuilds a relation or anything writes to one.

    Each relation contributes its name, kind, oid and relfilenode (new on every dbt rebuild,
    truncate or rewrite), its columns, a view's definition, and its rows' count and order-free
    checksum (every UPDATE, INSERT or DELETE; for a view, what it shows, whatever it reads).
    Neither the gate nor publishing writes to the candidate, so neither changes the identity.
    """
    relations = conn.execute(
        """
        select c.relname, c.relkind::text, c.oid::bigint, c.relfilenode::bigint,
               coalesce((select string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod),
                                           ', ' order by a.attnum)
                         from pg_attribute a
                         where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped), ''),
               -- A view reading a relation beside it names the schema (candidate.dim_x, then
               -- open.dim_x once swapped in): left out, as the identity goes with the relations.
               case when c.relkind in ('v', 'm')
                    then replace(pg_get_viewdef(c.oid), quote_ident(%s) || '.', '') else '' end
        from pg_class c join pg_namespace n on n.oid = c.relnamespace
        where n.nspname = %s and c.relkind = any(%s)
        order by c.relname
        """,
        [schema, schema, list(RELATION_KINDS)],
    ).fetchall()
    # Not the schema's name: the identity goes with the relations when they are swapped in.
    digest = hashlib.sha256()
    for name, *catalog in relations:
        rows, checksum = conn.execute(
            sql.SQL(
                "select count(*), coalesce(sum(hashtextextended(r::text, 0)), 0) from {} as r"
            ).format(sql.Identifier(schema, name))
        ).fetchone()
        digest.update(repr((name, *catalog, rows, str(checksum))).encode())
    return digest.hexdigest()


def record_verdict(
    conn: psycopg.Connection,
    build: str,
    run_id: str,
    validated_at: datetime,
    passed: bool,
    critical_failures: int,
) -> None:
    """What the gate said about ``build``: the only verdict publishing accepts."""
    ensure_tables(conn)
    conn.execute(
        sql.SQL("insert into {} values (%s, %s, %s, %s, %s)").format(VALIDATED_BUILDS),
        [build, run_id, validated_at, passed, critical_failures],
    )


def latest_verdict(conn: psycopg.Connection, build: str) -> GateVerdict | None:
    row = conn.execute(
        sql.SQL(
            "select run_id::text, validated_at, passed, critical_failures from {} "
            "where build = %s order by validated_at desc limit 1"
        ).format(VALIDATED_BUILDS),
        [build],
    ).fetchone()
    return GateVerdict(*row) if row else None


def ensure_tables(conn: psycopg.Connection) -> None:
    conn.execute(
        sql.SQL("create schema if not exists {}").format(sql.Identifier(settings.QUALITY_SCHEMA))
    )
    conn.execute(
        sql.SQL(
            """
            create table if not exists {} (
                build text not null,
                run_id uuid not null,
                validated_at timestamptz not null,
                passed boolean not null,
                critical_failures integer not null
            )
            """
        ).format(VALIDATED_BUILDS)
    )
    conn.execute(
        sql.SQL(
            """
            create table if not exists {} (
                published_at timestamptz not null default now(),
                build text not null,
                gate_run_id uuid,
                gate_passed boolean,
                database_role text not null,
                os_user text not null,
                reason text not null
            )
            """
        ).format(OVERRIDES)
    )


def published_marts(conn: psycopg.Connection, schema: str = OPEN) -> list[PublishedMart]:
    tables = conn.execute(
        "select table_name from information_schema.tables where table_schema = %s order by table_name",
        [schema],
    ).fetchall()
    return [
        PublishedMart(
            name=name,
            rows=conn.execute(
                sql.SQL("select count(*) from {}").format(sql.Identifier(schema, name))
            ).fetchone()[0],
        )
        for (name,) in tables
    ]


def _refusal(build: str, verdict: GateVerdict | None) -> str:
    if verdict is None:
        said = (
            "the quality gate never validated it (not since it was built or last changed); "
            f"{VALIDATE_HINT}"
        )
    else:
        said = (
            f"the quality gate failed it ({verdict.critical_failures} critical failure(s), "
            f"run {verdict.run_id} at {verdict.validated_at:%Y-%m-%d %H:%M:%S %Z}); fix the data, "
            f"{VALIDATE_HINT}"
        )
    return f"refusing to publish candidate build {build[:12]}: {said}, {OVERRIDE_HINT}"


def _record_override(
    conn: psycopg.Connection, build: str, verdict: GateVerdict | None, reason: str
) -> None:
    conn.execute(
        sql.SQL(
            "insert into {} (build, gate_run_id, gate_passed, database_role, os_user, reason) "
            "values (%s, %s, %s, session_user, %s, %s)"
        ).format(OVERRIDES),
        [
            build,
            verdict.run_id if verdict else None,
            verdict.passed if verdict else None,
            getpass.getuser(),
            reason,
        ],
    )
    log.warning(
        "publishing candidate build %s without a passing gate (override by %s: %s)",
        build[:12],
        getpass.getuser(),
        reason,
    )


def _lock_relations(conn: psycopg.Connection, schema: str) -> None:
    names = conn.execute(
        """
        select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace
        where n.nspname = %s and c.relkind = any(%s) order by c.relname
        """,
        [schema, list(LOCKABLE_KINDS)],
    ).fetchall()
    if names:
        conn.execute(
            sql.SQL("lock table {} in share mode").format(
                sql.SQL(", ").join(sql.Identifier(schema, name) for (name,) in names)
            )
        )


def _schema_exists(conn: psycopg.Connection, schema: str) -> bool:
    return bool(conn.execute("select 1 from pg_namespace where nspname = %s", [schema]).fetchone())


def _rename_schema(conn: psycopg.Connection, old: str, new: str) -> None:
    conn.execute(
        sql.SQL("alter schema {} rename to {}").format(sql.Identifier(old), sql.Identifier(new))
    )
