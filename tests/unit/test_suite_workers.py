"""How `make test` splits the suite: each pytest-xdist worker writes only into a directory of its
own, and the suite is never split against one WAREHOUSE_URL."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import XDIST_WORKER

from civic_warehouse import settings, transform


@pytest.mark.skipif(not XDIST_WORKER, reason="a session of one process writes the project's own")
def test_a_worker_writes_its_state_outside_the_project():
    written = {
        "dbt target": transform.target_dir(),
        "GX project": settings.EXPECTATIONS_DIR,
        "build": settings.BUILD_DIR,
        "run records": settings.RUN_DIR,
        "Cosmos cache": os.environ["AIRFLOW__COSMOS__CACHE_DIR"],
    }
    inside = {
        name: str(path)
        for name, path in written.items()
        if Path(path).resolve().is_relative_to(settings.PROJECT_ROOT)
    }
    assert inside == {}
    assert (settings.EXPECTATIONS_DIR / "expectations" / "fct_calls_for_service.json").exists()


def test_several_processes_against_one_warehouse_url_are_refused(tmp_path):
    env = os.environ | {"WAREHOUSE_URL": "postgresql://postgres@127.0.0.1:9/unused"}
    env.pop("PYTEST_XDIST_WORKER", None)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-n", "2", "--basetemp", str(tmp_path / "t"),
         "tests/unit/test_suite_workers.py"],
        cwd=settings.PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == pytest.ExitCode.USAGE_ERROR, done.stdout + done.stderr
    assert "in one process (without -n)" in done.stderr
