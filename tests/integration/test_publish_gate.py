"""Only what the gate passed is published, by every route: the CLI, the pipeline and the module.

The marts are built by dbt once; each later candidate is a copy of the published marts (so the
gate passes it) that a test then breaks or changes, as a bad build or a stray write would.
"""

from __future__ import annotations

import getpass
import subprocess
import sys

import psycopg
import pytest
from helpers import schema_fingerprint, stage_published_copy

from civic_warehouse import pipeline, publish, quality, settings, transform, warehouse

pytestmark = pytest.mark.integration

# A share above 1: the gate's KPI range expectation fails (critical).
BREAK_A_KPI = """
    update candidate.fct_kpi_daily set metric_value = metric_value + 1
    where aggregation = 'share' and metric_value is not null
"""
# Sums raised: nothing the gate checks, but not what it validated either.
RAISE_SUMS = """
    update candidate.fct_kpi_daily set metric_value = metric_value + 1000
    where aggregation = 'sum' and metric_value > 0
"""


@pytest.fixture(scope="module")
def published(gated_fortnight):
    """Two weeks of every source, built by dbt, passed by the gate and published."""
    pipeline.publish()
    return gated_fortnight


def execute(url: str, statement: str) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute(statement).rowcount


def cli_publish(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "civic_warehouse", "publish", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


def current_build(url: str) -> str:
    with psycopg.connect(url) as conn:
        return publish.candidate_build(conn)


def current_build_of_open(url: str) -> str:
    """The identity of what was published: the candidate's relations keep it when swapped in."""
    with psycopg.connect(url) as conn:
        return publish.candidate_build(conn, settings.OPEN_SCHEMA)


def overrides(url: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        publish.ensure_tables(conn)
        return conn.execute(
            "select build, gate_run_id::text, gate_passed, database_role, os_user, reason "
            "from quality.publish_overrides order by published_at"
        ).fetchall()


def test_a_build_the_gate_passed_is_published(published):
    stage_published_copy(published)
    report = quality.gate()
    staged = schema_fingerprint(published, "candidate")

    marts = pipeline.publish()

    assert report.build == current_build_of_open(published)
    assert {m["name"] for m in marts} == set(staged)
    assert schema_fingerprint(published, "open") == staged
    with psycopg.connect(published) as conn:
        verdict = publish.latest_verdict(conn, report.build)
    assert verdict.passed and verdict.run_id == report.run_id
    assert overrides(published) == []


def test_a_build_the_gate_failed_is_refused_by_every_route(published):
    stage_published_copy(published)
    assert execute(published, BREAK_A_KPI) > 0
    report = quality.validate()
    assert not report.passed
    before = schema_fingerprint(published, "open")
    staged = schema_fingerprint(published, "candidate")
    expected = (
        f"refusing to publish candidate build {report.build[:12]}: the quality gate failed it "
        f"({len(report.critical_failures)} critical failure(s), run {report.run_id} at "
    )

    cli = cli_publish()
    with pytest.raises(publish.PublishError) as by_pipeline:
        pipeline.publish()
    with pytest.raises(publish.PublishError) as by_module:
        publish.publish()

    assert cli.returncode == 1, cli.stdout + cli.stderr
    [error] = [line for line in cli.stderr.splitlines() if line.startswith("error: ")]
    assert error.startswith(f"error: {expected}"), cli.stderr
    assert 'publish --force --reason "..."' in error and "validate" in error
    assert cli.stdout == ""
    for refused in (by_pipeline.value, by_module.value):
        assert str(refused).startswith(expected) and "\n" not in str(refused)
    assert schema_fingerprint(published, "open") == before
    assert schema_fingerprint(published, "candidate") == staged
    assert overrides(published) == []


def test_a_build_changed_after_the_gate_passed_it_is_refused(published):
    stage_published_copy(published)
    report = quality.gate()
    before = schema_fingerprint(published, "open")

    # A write the gate would not catch: it still is not the build the gate validated.
    assert execute(published, RAISE_SUMS) > 0
    with pytest.raises(publish.PublishError, match="the quality gate never validated it"):
        publish.publish()
    execute(published, RAISE_SUMS.replace("+ 1000", "- 1000"))
    # The rows are back as validated: so is the identity (it is of the content, not the writes).
    assert current_build(published) == report.build

    # One model rebuilt by dbt, alone: same rows, but a build the gate never saw.
    transform.run_dbt(["run", "--select", "dim_department"])
    assert current_build(published) != report.build
    with pytest.raises(publish.PublishError, match="the quality gate never validated it"):
        publish.publish()
    assert schema_fingerprint(published, "open") == before


def test_an_override_publishes_and_records_who_and_why(published):
    stage_published_copy(published)
    execute(published, BREAK_A_KPI)
    report = quality.validate()
    assert not report.passed
    staged = schema_fingerprint(published, "candidate")

    forced_without_reason = cli_publish("--force")
    cli = cli_publish("--force", "--reason", "KPI fix verified by hand; dashboard due today")

    assert forced_without_reason.returncode == 2, forced_without_reason.stderr
    assert "--force and --reason go together" in forced_without_reason.stderr
    assert cli.returncode == 0, cli.stderr
    assert schema_fingerprint(published, "open") == staged
    role = warehouse.ConnectionParts.from_url(published).user
    assert overrides(published) == [
        (
            report.build,
            report.run_id,
            False,
            role,
            getpass.getuser(),
            "KPI fix verified by hand; dashboard due today",
        )
    ]
    # Overriding does not make the build pass: the gate's verdict on it stands.
    with psycopg.connect(published) as conn:
        assert not publish.latest_verdict(conn, report.build).passed

    # The previous (passed) version is still kept, and comes back.
    publish.restore()
    assert schema_fingerprint(published, "open") != staged
