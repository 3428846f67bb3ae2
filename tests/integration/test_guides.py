"""The "Add a ..." guides in docs/ do what they say, read from the pages themselves.

Each test copies the project (without build state) to a directory of its own, writes the files the
page shows (a fenced block titled with its path), and runs the page's commands and SQL in the
page's order, against a real warehouse and the simulator, then checks what the page promises: the
new mart published in ``open`` with the gate's verdict recorded, or the gate failing on a row that
breaks the new rule. A page that drifts from the project fails here.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest

from civic_warehouse import pipeline, settings
from civic_warehouse.catalog import get_source, load_catalog

pytestmark = pytest.mark.integration

DOCS = settings.PROJECT_ROOT / "docs"
# Two weeks of every source: the volume expectations compare a day with the weeks before it.
START, END = "2026-07-01", "2026-07-15"
BLOCK = re.compile(r"^```(\w*)([^\n]*)\n(.*?)^```", re.S | re.M)
ATTRIBUTE = re.compile(r'(\w+)="([^"]*)"')
# The guides run the project's CLI and its unit tests, as `python -m ...` from the project's root.
COMMAND = "python -m "
# What a copy of the project leaves out: state the guides must not inherit from this checkout.
BUILD_STATE = shutil.ignore_patterns(
    ".git",
    ".venv",
    ".warehouse",
    ".airflow",
    ".cluster",
    ".run",
    ".superset",
    "build",
    "target",
    "logs",
    "uncommitted",
    "__pycache__",
    ".pytest_cache",
    ".ruff_cache",
)


@dataclass
class Step:
    """One fenced block of a guide: a file to write, commands to run, or SQL to run."""

    language: str
    attributes: dict[str, str]
    body: str


@dataclass
class Outcome:
    commands: list[tuple[str, subprocess.CompletedProcess]] = field(default_factory=list)


def guide_steps(page: str) -> list[Step]:
    text = (DOCS / page).read_text()
    return [
        Step(language, dict(ATTRIBUTE.findall(info)), body)
        for language, info, body in BLOCK.findall(text)
    ]


def project_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "project"
    shutil.copytree(settings.PROJECT_ROOT, copy, ignore=BUILD_STATE)
    return copy


def copy_environ(copy: Path, url: str) -> dict[str, str]:
    """The copy's code and its own generated state; dbt writes into the copy's target and GX into
    the copy's expectations/ (the session's own, under pytest-xdist, are elsewhere)."""
    env = {
        k: v for k, v in os.environ.items() if k not in ("DBT_TARGET_PATH", "CW_EXPECTATIONS_DIR")
    }
    return env | {
        "PYTHONPATH": os.pathsep.join([str(copy / "plugins"), str(copy / "simulator")]),
        "WAREHOUSE_URL": url,
        "CW_BUILD_DIR": str(copy / "build"),
        "CW_RUN_DIR": str(copy / ".run"),
    }


def write_file(copy: Path, step: Step) -> None:
    target = copy / step.attributes["title"]
    if "line" in step.attributes:
        # One line of an existing file, the one starting with ``line``, replaced.
        lines = target.read_text().splitlines(keepends=True)
        found = [i for i, text in enumerate(lines) if text.startswith(step.attributes["line"])]
        assert len(found) == 1, (
            f"{target.name}: {len(found)} lines start {step.attributes['line']!r}"
        )
        lines[found[0]] = step.body
        target.write_text("".join(lines))
        return
    if "append" in step.attributes:
        # A JSON object added to a list of an existing file (a suite's expectations).
        document = json.loads(target.read_text())
        document[step.attributes["append"]].append(json.loads(step.body))
        target.write_text(json.dumps(document, indent=2) + "\n")
        return
    assert not target.exists(), f"the guide creates {target.relative_to(copy)}, which exists"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(step.body)


def run_commands(copy: Path, env: dict[str, str], step: Step, outcome: Outcome) -> None:
    expect_failure = step.attributes.get("expect") == "fail"
    for line in step.body.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        assert line.startswith(COMMAND), f"the guide's commands are `python -m ...`: {line!r}"
        argv = [sys.executable, "-m", *shlex.split(line[len(COMMAND) :])]
        done = subprocess.run(argv, cwd=copy, env=env, capture_output=True, text=True)
        outcome.commands.append((line, done))
        if expect_failure:
            assert done.returncode != 0, f"{line} should fail, as the guide says:\n{done.stdout}"
        else:
            assert done.returncode == 0, f"{line} failed:\n{done.stdout}\n{done.stderr}"


def follow(page: str, tmp_path: Path, url: str) -> tuple[Path, Outcome]:
    """Do what ``page`` says, in order, in a copy of the project; returns the copy and outputs."""
    copy = project_copy(tmp_path)
    env = copy_environ(copy, url)
    outcome = Outcome()
    steps = guide_steps(page)
    assert any("title" in s.attributes for s in steps), f"{page} shows no file to write"
    for step in steps:
        if "title" in step.attributes:
            write_file(copy, step)
        elif step.language == "sh":
            run_commands(copy, env, step, outcome)
        elif step.language == "sql" and step.attributes.get("run") == "warehouse":
            with psycopg.connect(url) as conn:
                conn.execute(step.body)
    return copy, outcome


@pytest.fixture(scope="module")
def loaded_city(warehouse_url, simulator):
    """Where every guide starts: two weeks of every source in the raw layer, nothing built."""
    from conftest import reset_warehouse

    reset_warehouse(warehouse_url)
    simulator.inject.clear()
    simulator.faults.clear()
    for name in load_catalog():
        source = get_source(name)
        if source.event_time_field:
            query = pipeline.query_for_run(source, None, None, START, END)
        else:
            query = pipeline.query_for_run(source, None, None, reconcile=True)
        pipeline.extract(name, query, warehouse_url)
    return warehouse_url


def latest_gate(url: str) -> tuple[bool, dict[str, bool]]:
    """The latest gate run's verdict and its results, as "suite: expectation on column"."""
    with psycopg.connect(url) as conn:
        passed, run_id = conn.execute(
            "select passed, run_id from quality.validated_builds order by validated_at desc limit 1"
        ).fetchone()
        results = conn.execute(
            "select suite || ': ' || expectation || coalesce(' on ' || column_name, ''), success"
            " from quality.validation_results"
            " where run_id = %s",
            [run_id],
        ).fetchall()
    return passed, dict(results)


def published_rows(url: str, table: str) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute(f'select count(*) from open."{table}"').fetchone()[0]


def test_add_a_mart(loaded_city, tmp_path):
    follow("add-a-mart.md", tmp_path, loaded_city)

    days = published_rows(loaded_city, "fct_traffic_crash_days")
    assert 7 <= days <= 14  # the crashes of two weeks, by local day
    with psycopg.connect(loaded_city) as conn:
        crashes = conn.execute("select sum(crashes) from open.fct_traffic_crash_days").fetchone()[0]
        assert crashes == published_rows(loaded_city, "fct_traffic_crashes")
    passed, results = latest_gate(loaded_city)
    assert passed
    suite = {k: v for k, v in results.items() if k.startswith("fct_traffic_crash_days: ")}
    assert len(suite) == 3 and all(suite.values()), suite


def test_add_a_quality_rule(loaded_city, tmp_path):
    copy, outcome = follow("add-a-quality-rule.md", tmp_path, loaded_city)
    rule = "fct_traffic_crashes: expect_column_values_to_be_between on vehicles_involved"

    suite = json.loads((copy / "expectations/expectations/fct_traffic_crashes.json").read_text())
    assert suite["expectations"][-1]["kwargs"]["column"] == "vehicles_involved"
    (_, failed_gate), (_, refused) = outcome.commands[1:3]
    assert "suite fct_traffic_crashes: expect_column_values_to_be_between on " in failed_gate.stderr
    assert "fct_traffic_crashes.vehicles_involved" in failed_gate.stderr
    assert "sample failing values [0]" in failed_gate.stderr
    assert "refusing to publish candidate build" in refused.stderr
    assert "the quality gate failed it (1 critical failure(s)" in refused.stderr
    with psycopg.connect(loaded_city) as conn:
        verdicts = conn.execute(
            "select passed, critical_failures from quality.validated_builds"
            " order by validated_at desc limit 2"
        ).fetchall()
        assert verdicts == [(True, 0), (False, 1)]
        assert conn.execute(
            "select min(vehicles_involved) from open.fct_traffic_crashes"
        ).fetchone() == (1,)
    passed, results = latest_gate(loaded_city)
    assert passed and results[rule] is True


def test_add_a_source(loaded_city, tmp_path):
    _, outcome = follow("add-a-source.md", tmp_path, loaded_city)

    extracted = json.loads(outcome.commands[0][1].stdout)
    assert extracted["received"] > 5000 and extracted["rejected"] == 0, extracted
    listed = [json.loads(line)["name"] for line in outcome.commands[1][1].stdout.splitlines()]
    assert "public_works_requests" in listed
    with psycopg.connect(loaded_city) as conn:
        raw = conn.execute(
            "select count(*) from raw.public_works_requests where deleted_at is null"
        ).fetchone()[0]
        assert published_rows(loaded_city, "fct_public_works_requests") == raw
        assert conn.execute(
            "select count(*) from open.fct_public_works_requests"
            " where is_closed and days_to_close is null or requested_date_local is null"
        ).fetchone() == (0,)
        owned = conn.execute(
            "select owned_sources from open.dim_department where department_name = 'Public Works'"
        ).fetchone()[0]
        assert "public_works_requests" in owned
    passed, results = latest_gate(loaded_city)
    assert passed
    new_suites = {
        k: v
        for k, v in results.items()
        if k.startswith(("stg_public_works__requests: ", "fct_public_works_requests: "))
    }
    assert len(new_suites) == 13, new_suites
    warnings = {k for k in new_suites if "band of the same weekday" in k}
    assert all(v for k, v in new_suites.items() if k not in warnings), new_suites
