"""The project's own style gates run with the tests: ruff on Python, sqlfluff on the dbt models."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from civic_warehouse import settings

pytestmark = pytest.mark.integration


def test_python_passes_ruff():
    ruff = Path(sys.executable).with_name("ruff")
    paths = ["plugins", "dags", "tests", "bench"]
    checked = subprocess.run(
        [str(ruff), "check", *paths], cwd=settings.PROJECT_ROOT, capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout
    formatted = subprocess.run(
        [str(ruff), "format", "--check", *paths],
        cwd=settings.PROJECT_ROOT,
        capture_output=True,
        text=True,
    )
    assert formatted.returncode == 0, formatted.stdout


def test_dbt_models_pass_sqlfluff(warehouse_url):
    linted = subprocess.run(
        [sys.executable, "-m", "civic_warehouse", "lint-sql"],
        cwd=settings.PROJECT_ROOT,
        capture_output=True,
        text=True,
    )
    assert linted.returncode == 0, linted.stdout[-3000:]
