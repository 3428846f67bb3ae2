"""Run dbt against the warehouse, with connection settings and variables taken from the project."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from civic_warehouse import catalog, loader, quality, settings, warehouse

log = logging.getLogger(__name__)

# The pipeline's builds (the transform DAG, `demo`, the benchmarks) leave out dbt's unit tests, as
# dbt Labs recommends for production: their inputs are fixed in the project, so they prove the same
# thing every day; `make test` runs them all (tests/integration/test_dbt_unit_tests.py).
PIPELINE_BUILD_FLAGS = ("--exclude-resource-type", "unit_test")
# Every dbt the pipeline runs, in a process of its own or in an Airflow task, sends dbt Labs nothing.
DBT_TELEMETRY_OFF = {"DBT_SEND_ANONYMOUS_USAGE_STATS": "False"}
# dbt's own log file (logs/dbt.log, debug level) is off for the pipeline's dbt: dbt's threads queue
# on that file's lock for each of its thousands of debug lines (a daily build measured 0.5-1 s
# faster without). dbt's messages still reach the run's log; DBT_LOG_LEVEL_FILE set in the
# environment (debug, say) turns the file back on for run_dbt.
DBT_LOG_FILE_OFF = {"DBT_LOG_LEVEL_FILE": "none"}
# The publication anchor (macros/publication_cutoff.sql) reaches dbt in the environment, not in
# --vars: dbt parses the whole project again whenever a variable changes (a daily build measured
# 12-13 s so, 7-8 s with the partial parse), and the anchor changes with every run.
PUBLISH_AS_OF_ENV = "CW_PUBLISH_AS_OF"
# The schema dbt places the marts in (dbt_project.yml): the candidate schema to build them, the
# published one to document them.
MARTS_SCHEMA_ENV = "CW_MARTS_SCHEMA"


class DbtError(RuntimeError):
    """A dbt command failed; the message lists the failing nodes and their messages."""


@dataclass(frozen=True)
class DbtResult:
    command: str
    results: list[dict]

    def failures(self) -> list[dict]:
        return [r for r in self.results if r["status"] in ("error", "fail", "runtime error")]


def dbt_vars() -> dict:
    """The variables every dbt command gets from the source catalog.

    ``source_timezones``: the IANA zone of each source's floating timestamps.
    ``source_lookback_hours``: how far behind the newest change an incremental model re-reads a
    source (its ``lookback``).
    """
    sources = catalog.load_catalog()
    return {
        "source_timezones": {name: s.timezone for name, s in sources.items()},
        "source_lookback_hours": {
            name: s.lookback.total_seconds() / 3600 for name, s in sources.items()
        },
    }


def dbt_environ(url: str | None = None) -> dict[str, str]:
    return {
        **DBT_LOG_FILE_OFF,
        **os.environ,
        **warehouse.dbt_environ(url),
        "DBT_PROFILES_DIR": str(settings.DBT_PROJECT_DIR),
        "DBT_PROJECT_DIR": str(settings.DBT_PROJECT_DIR),
        **DBT_TELEMETRY_OFF,
    }


def dbt_executable() -> str:
    # The dbt next to this interpreter, so a virtualenv's dbt is used even when it is not on PATH.
    candidate = Path(sys.executable).with_name("dbt")
    return str(candidate) if candidate.exists() else "dbt"


def dbt_command() -> list[str]:
    """How the pipeline starts a dbt process: dbt's command line in this interpreter, with the
    garbage collector set for dbt's large, short-lived object graph (see dbt_command.py)."""
    return [sys.executable, "-m", "civic_warehouse.dbt_command"]


def ensure_dbt_sources(url: str | None = None) -> None:
    """Create the tables the project writes outside dbt, which dbt models read as sources.

    A source never loaded yet is an empty table, not a failed build.
    """
    with warehouse.connect(url) as conn:
        for source in catalog.load_catalog().values():
            loader.ensure_raw_tables(conn, source)
        quality.ensure_results_table(conn)


def run_dbt(
    args: list[str],
    url: str | None = None,
    check: bool = True,
    extra_vars: dict[str, Any] | None = None,
    as_of: datetime | None = None,
    environ: dict[str, str] | None = None,
) -> DbtResult:
    """Run ``dbt <args>`` in a subprocess (dbt keeps global state; one process per command is safest).

    The project's variables (source time zones, ``extra_vars``) are merged with any ``--vars`` in
    ``args``; the caller's own values win. ``as_of`` anchors the publication delay. ``environ``
    adds to dbt's environment.
    """
    ensure_dbt_sources(url)
    args, given = _split_vars(args)
    merged = dbt_vars() | (extra_vars or {}) | given
    command = [*dbt_command(), *args, "--vars", json.dumps(merged, default=str)]
    log.info("running %s", " ".join(command))
    completed = subprocess.run(
        command,
        cwd=settings.DBT_PROJECT_DIR,
        # set even when empty: an in-process Cosmos run leaves its anchor in os.environ
        env=dbt_environ(url)
        | {PUBLISH_AS_OF_ENV: as_of.isoformat() if as_of else ""}
        | (environ or {}),
        capture_output=True,
        text=True,
    )
    sys.stdout.write(completed.stdout)
    sys.stderr.write(completed.stderr)
    results = _run_results(args[0])
    result = DbtResult(command=" ".join(args), results=results)
    if check and completed.returncode != 0:
        detail = "\n".join(
            f"  {r['unique_id']}: {r['status']}: {(r.get('message') or '').strip()}"
            for r in result.failures()
        )
        tail = "\n".join(completed.stdout.strip().splitlines()[-15:])
        raise DbtError(
            f"dbt {' '.join(args)} failed (exit {completed.returncode})\n{detail or tail}"
        )
    return result


def docs_target_dir() -> Path:
    """Where ``generate_docs`` writes the dbt docs of the published warehouse."""
    return target_dir() / "published_docs"


def generate_docs(url: str | None = None) -> Path:
    """``dbt docs generate`` for the marts as published; returns the docs' index page.

    The manifest of a build places the marts in the candidate schema, which publishing renamed:
    a catalog read against it would describe none of them. These docs parse the project with the
    marts in the published schema instead. They have a target directory of their own, so the
    builds' partial parse (marts in candidate) and theirs (in open) each stay current.
    """
    target = docs_target_dir()
    run_dbt(
        ["docs", "generate", "--target-path", str(target)],
        url,
        environ={MARTS_SCHEMA_ENV: settings.OPEN_SCHEMA},
    )
    return target / "index.html"


def _split_vars(args: list[str]) -> tuple[list[str], dict[str, Any]]:
    if "--vars" not in args:
        return args, {}
    at = args.index("--vars")
    given = yaml.safe_load(args[at + 1]) or {}  # dbt accepts YAML or JSON here
    return args[:at] + args[at + 2 :], given


def target_dir() -> Path:
    """dbt's target directory: DBT_TARGET_PATH when set (parallel runs), else dbt_project/target.

    A relative DBT_TARGET_PATH is relative to the dbt project, as dbt reads it (Cosmos' dbt tasks
    set one), not to this process's working directory.
    """
    configured = Path(os.environ.get("DBT_TARGET_PATH") or "target")
    return configured if configured.is_absolute() else settings.DBT_PROJECT_DIR / configured


def _run_results(command: str) -> list[dict]:
    path = target_dir() / "run_results.json"
    if command not in ("build", "run", "test", "seed", "snapshot") or not path.exists():
        return []
    document = json.loads(path.read_text())
    return [
        {
            "unique_id": r["unique_id"],
            "status": r["status"],
            "message": r.get("message"),
            "rows_affected": (r.get("adapter_response") or {}).get("rows_affected"),
        }
        for r in document["results"]
    ]
