"""The servers `make docs` and `make simulator` start: their ports from the documented variables,
listening on 127.0.0.1 only, and stopped by `make stop` from another shell."""

from __future__ import annotations

import subprocess
import time

import psutil
import pytest
import requests
from helpers import free_port, fresh_shell, make

from civic_warehouse import settings

pytestmark = pytest.mark.integration


def _listening_addresses(pid: int) -> set[str]:
    process = psutil.Process(pid)
    return {
        conn.laddr.ip
        for member in (process, *process.children(recursive=True))
        for conn in member.net_connections(kind="inet")
        if conn.status == psutil.CONN_LISTEN
    }


def _wait_for(url: str, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[0]
        try:
            requests.get(url, timeout=2)
            return
        except requests.RequestException:
            time.sleep(0.5)
    pytest.fail(f"{url} did not answer in {timeout:.0f}s")


def test_make_stop_stops_the_servers_make_started_in_other_shells(warehouse_url, tmp_path):
    build = tmp_path / "build"
    (build / "docs").mkdir(parents=True)
    (build / "docs" / "index.html").write_text("<!doctype html><title>docs</title>")
    docs_port, simulator_port = free_port(), free_port()
    env = fresh_shell(
        # A warehouse of its own: `make stop` stops the embedded one only when none is named.
        WAREHOUSE_URL=warehouse_url,
        AIRFLOW_HOME=str(tmp_path / "airflow"),
        CW_RUN_DIR=str(tmp_path / "run"),
        CW_BUILD_DIR=str(build),
        DOCS_PORT=str(docs_port),
        SIMULATOR_PORT=str(simulator_port),
    )
    servers = {
        target: subprocess.Popen(
            ["make", "--no-print-directory", target],
            cwd=settings.PROJECT_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # as from a terminal of its own
        )
        for target in ("docs", "simulator")
    }
    try:
        _wait_for(f"http://127.0.0.1:{docs_port}/", servers["docs"])
        _wait_for(f"http://127.0.0.1:{simulator_port}/", servers["simulator"])
        assert "docs" in requests.get(f"http://127.0.0.1:{docs_port}/", timeout=5).text
        for target, process in servers.items():
            # make, then the Python process that serves: both in the terminal's process group.
            assert _listening_addresses(process.pid) == {"127.0.0.1"}, target
        stopped = make("stop", env, timeout=300)
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        assert "stopped docs" in stopped.stdout and "stopped simulator" in stopped.stdout
        for process in servers.values():
            process.wait(timeout=30)  # make exits once the server it ran is gone
        assert not list((tmp_path / "run").glob("*.json"))
    finally:
        for process in servers.values():
            if process.poll() is None:
                process.kill()
