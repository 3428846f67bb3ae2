"""The command line data engineers use outside Airflow."""

from __future__ import annotations

import subprocess
import sys


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "civic_warehouse", *args], capture_output=True, text=True, timeout=60
    )


def test_simulator_options_reach_the_simulator():
    result = run_cli("simulator", "--help")
    assert result.returncode == 0
    assert "--port" in result.stdout and "--first-day" in result.stdout


def test_sources_lists_the_catalog():
    result = run_cli("sources")
    assert result.returncode == 0
    assert '"name": "calls_for_service"' in result.stdout


def test_an_unknown_source_is_named_in_the_error():
    result = run_cli("extract", "no_such_source", "--since", "2026-01-01")
    assert result.returncode != 0
    assert "no source named 'no_such_source'" in result.stderr
