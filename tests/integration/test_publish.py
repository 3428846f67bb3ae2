"""Publishing swaps whole versions: readers never see an error, a mix or an empty mart."""

from __future__ import annotations

import threading

import psycopg
import pytest
from helpers import table_fingerprint

from civic_warehouse import publish

pytestmark = pytest.mark.integration

# The hand-made candidates below have no suites for the gate to pass: their publishing is forced.
UNGATED = "test fixture: a hand-made candidate the quality gate has no suites for"


def stage_candidate(url: str, rows: int) -> None:
    """A candidate mart of ``rows`` rows, all stamped with the version (= row count)."""
    with psycopg.connect(url) as conn:
        conn.execute("create schema if not exists candidate")
        conn.execute("drop table if exists candidate.fct_example")
        conn.execute(
            "create table candidate.fct_example as "
            "select g as id, %s::int as version from generate_series(1, %s) g",
            [rows, rows],
        )


def test_readers_see_one_whole_version_at_a_time(clean_warehouse):
    stage_candidate(clean_warehouse, 1000)
    publish.publish(clean_warehouse, force_reason=UNGATED)
    seen, errors, stop = set(), [], threading.Event()

    def read() -> None:
        with psycopg.connect(clean_warehouse, autocommit=True) as conn:
            while not stop.is_set():
                try:
                    count, versions = conn.execute(
                        "select count(*), array_agg(distinct version) from open.fct_example"
                    ).fetchone()
                    seen.add((count, tuple(versions)))
                except psycopg.Error as err:  # any error is a failure of the swap
                    errors.append(err)

    readers = [threading.Thread(target=read) for _ in range(3)]
    for reader in readers:
        reader.start()
    try:
        for rows in (2000, 1500, 3000, 2500, 1200):
            stage_candidate(clean_warehouse, rows)
            publish.publish(clean_warehouse, force_reason=UNGATED)
    finally:
        stop.set()
        for reader in readers:
            reader.join()

    assert errors == []
    # Every read saw exactly one version, complete: its row count equals its version stamp.
    assert seen and all(versions == (count,) for count, versions in seen)
    assert len(seen) > 1


def test_restore_brings_back_the_previous_version(clean_warehouse):
    stage_candidate(clean_warehouse, 100)
    publish.publish(clean_warehouse, force_reason=UNGATED)
    first = table_fingerprint(clean_warehouse, "open", "fct_example", "id")
    stage_candidate(clean_warehouse, 50)
    publish.publish(clean_warehouse, force_reason=UNGATED)

    restored = publish.restore(clean_warehouse)

    assert [(m.name, m.rows) for m in restored] == [("fct_example", 100)]
    assert table_fingerprint(clean_warehouse, "open", "fct_example", "id") == first


def test_nothing_to_publish_is_an_error(clean_warehouse):
    with pytest.raises(publish.PublishError, match="nothing to publish"):
        publish.publish(clean_warehouse)


def test_a_build_the_gate_never_saw_is_refused(clean_warehouse):
    stage_candidate(clean_warehouse, 100)
    publish.publish(clean_warehouse, force_reason=UNGATED)
    published = table_fingerprint(clean_warehouse, "open", "fct_example", "id")
    stage_candidate(clean_warehouse, 50)

    with pytest.raises(publish.PublishError) as refused:
        publish.publish(clean_warehouse)

    message = str(refused.value)
    assert message.startswith("refusing to publish candidate build ") and "\n" not in message
    assert "the quality gate never validated it" in message
    assert "python -m civic_warehouse validate" in message and "--force --reason" in message
    assert table_fingerprint(clean_warehouse, "open", "fct_example", "id") == published
    assert table_fingerprint(clean_warehouse, "candidate", "fct_example", "id")[0] == 50


def test_a_build_is_refused_with_no_quality_schema_at_all(clean_warehouse):
    stage_candidate(clean_warehouse, 10)
    with pytest.raises(publish.PublishError, match="never validated it"):
        publish.publish(clean_warehouse)
    with psycopg.connect(clean_warehouse) as conn:
        assert conn.execute("select to_regclass('open.fct_example')").fetchone()[0] is None


@pytest.mark.parametrize("reason", ["", "   "])
def test_an_override_needs_a_reason(clean_warehouse, reason):
    stage_candidate(clean_warehouse, 10)
    with pytest.raises(publish.PublishError, match="an override needs a reason"):
        publish.publish(clean_warehouse, force_reason=reason)
