"""BI tools show the dbt descriptions: persist_docs writes them as PostgreSQL comments on the
candidate marts, they travel with the candidate -> open schema swap, and bi_reader can read them."""

from __future__ import annotations

import json

import psycopg
import pytest

from civic_warehouse import access, publish, settings, transform, warehouse

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def published(clean_warehouse_module):
    """Every mart built (on empty raw tables: comments need no rows) and published."""
    url = clean_warehouse_module
    transform.run_dbt(
        ["build", "--exclude", "tag:stewardship", "resource_type:test", "resource_type:unit_test"],
        url,
    )
    # The tests are of the marts' descriptions (on empty marts), not of the gate.
    publish.publish(url, force_reason="test fixture: empty marts, described for BI tools")
    with psycopg.connect(url) as conn:
        access.ensure_bi_role(conn, password="only-for-tests")
    manifest = json.loads((transform.target_dir() / "manifest.json").read_text())
    marts = {
        node["alias"]: node
        for node in manifest["nodes"].values()
        if node["resource_type"] == "model"
        and node["original_file_path"].startswith("models/marts/")
    }
    parts = warehouse.ConnectionParts.from_url(url)
    bi_url = warehouse.ConnectionParts(
        parts.host, parts.port, access.BI_ROLE, "only-for-tests", parts.dbname
    ).url()
    return bi_url, marts


def _open_relations(bi_url: str) -> dict[str, tuple[str | None, dict[str, str | None]]]:
    """As bi_reader: each relation of the open schema, its comment and its columns' comments."""
    with psycopg.connect(bi_url) as conn:
        rows = conn.execute(
            """
            select
                c.relname,
                obj_description(c.oid, 'pg_class'),
                a.attname,
                col_description(c.oid, a.attnum)
            from pg_class as c
            inner join pg_namespace as n on c.relnamespace = n.oid
            inner join pg_attribute as a on a.attrelid = c.oid
            where
                n.nspname = %s
                and c.relkind in ('r', 'v', 'm', 'p')
                and a.attnum > 0
                and not a.attisdropped
                and has_table_privilege(c.oid, 'select')
            order by c.relname, a.attnum
            """,
            [settings.OPEN_SCHEMA],
        ).fetchall()
    relations: dict[str, tuple[str | None, dict[str, str | None]]] = {}
    for relation, comment, column, column_comment in rows:
        relations.setdefault(relation, (comment, {}))[1][column] = column_comment
    return relations


def test_bi_reader_sees_every_published_mart(published):
    bi_url, marts = published
    assert set(_open_relations(bi_url)) == set(marts)


def test_every_open_mart_carries_its_dbt_description_starting_with_its_grain(published):
    bi_url, marts = published
    for relation, (comment, _) in _open_relations(bi_url).items():
        assert comment, f"open.{relation} has no comment"
        assert comment.strip() == marts[relation]["description"].strip(), relation
        assert comment.startswith("One row per"), relation


def test_every_column_of_every_open_mart_carries_its_dbt_description(published):
    bi_url, marts = published
    for relation, (_, columns) in _open_relations(bi_url).items():
        documented = marts[relation]["columns"]
        for column, comment in columns.items():
            assert comment, f"open.{relation}.{column} has no comment"
            assert comment.strip() == documented[column]["description"].strip(), (
                f"open.{relation}.{column}"
            )


def test_every_column_of_the_internal_layers_is_described_too(published, clean_warehouse_module):
    # Contracts make the marts declare every column; staging and intermediate models declare theirs
    # by hand, so the built relations are checked against what the yml describes.
    with psycopg.connect(clean_warehouse_module) as conn:
        relations = conn.execute(
            """
            select
                n.nspname || '.' || c.relname,
                obj_description(c.oid, 'pg_class') is not null,
                array_agg(a.attname order by a.attnum)
                    filter (where col_description(c.oid, a.attnum) is null)
            from pg_class as c
            inner join pg_namespace as n on c.relnamespace = n.oid
            inner join pg_attribute as a on a.attrelid = c.oid
            where
                n.nspname in ('staging', 'intermediate', 'internal')
                and c.relkind in ('r', 'v', 'm', 'p')
                and a.attnum > 0
                and not a.attisdropped
            group by n.nspname, c.relname, c.oid
            """
        ).fetchall()
    assert len(relations) >= 10
    undescribed = {
        name: columns for name, described, columns in relations if not described or columns
    }
    assert not undescribed, f"relations or columns without a description: {undescribed}"
