"""DAG runs (``dag.test``) in a Python process of their own, as ``make demo`` makes them.

A test process runs dbt many times, and each dbt adapter made in a process costs more than the one
before (dbt-adapters extends a module-level list of behaviour flags in place and inspects the call
stack once per entry: docs/internals.md). A transform DAG run makes an adapter per model task, so
in a test worker that has run dbt for an hour it took several times as long as in a new process.
A deployed task and ``make demo`` each start from a new process; the tests' DAG runs do too.

The runs reach what the test started in its own process (the simulator, a webhook, a portal)
through the environment it inherits. Run as a script, this module makes the runs the request names
and writes their states, and what they left changed in the environment, to a JSON file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# A transform run in a busy worker takes minutes; far past that, something hangs.
RUN_TIMEOUT_SECONDS = 1800


@dataclass(frozen=True)
class DagRuns:
    states: dict[str, str]  # each DAG's run state, by DAG id
    environment_changed: list[str]  # variables the runs left set, changed or unset in the process


def run_pipeline(start: str, end: str) -> DagRuns:
    """``demo.run_pipeline``: every extract DAG for ``start``..``end``, then the transform DAG."""
    return _run({"pipeline": [start, end]})


def run_dag(dag_id: str, conf: dict[str, Any]) -> str:
    """One run of ``dag_id`` with ``conf``; returns its state."""
    return _run({"dag_id": dag_id, "conf": conf}).states[dag_id]


def newest_run_task_states(dag_id: str) -> dict[str, str]:
    """Each task's state in ``dag_id``'s newest run, from Airflow's metadata database."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        run = (
            session.query(DagRun)
            .filter(DagRun.dag_id == dag_id)
            .order_by(DagRun.run_after.desc())
            .first()
        )
        return {ti.task_id: str(ti.state) for ti in run.get_task_instances(session=session)}


def _run(request: dict[str, Any]) -> DagRuns:
    with tempfile.TemporaryDirectory(prefix="civic-dag-runs-") as scratch:
        result = Path(scratch) / "result.json"
        process = subprocess.run(
            [sys.executable, __file__, json.dumps(request), str(result)],
            env=os.environ,
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT_SECONDS,
        )
        if process.returncode != 0 or not result.exists():
            raise AssertionError(
                f"DAG runs {request} ended with exit {process.returncode}:\n"
                f"{(process.stdout + process.stderr)[-5000:]}"
            )
        return DagRuns(**json.loads(result.read_text()))


def _main(request: dict[str, Any], result: Path) -> None:
    from civic_warehouse import demo

    before = dict(os.environ)
    if "pipeline" in request:
        states = demo.run_pipeline(*request["pipeline"])
    else:
        states = {request["dag_id"]: demo.run_dag(request["dag_id"], request["conf"])}
    changed = sorted(
        k for k in before.keys() | os.environ.keys() if before.get(k) != os.environ.get(k)
    )
    result.write_text(json.dumps({"states": states, "environment_changed": changed}))


if __name__ == "__main__":
    _main(json.loads(sys.argv[1]), Path(sys.argv[2]))
