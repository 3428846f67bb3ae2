"""Long-running child processes, each in a process group of its own, logging to a file.

A component of the deployment (scheduler, Celery worker, ...) forks helpers of its own: parsing
processes, pool workers, task supervisors. Starting each component as the leader of a new session
lets a stop reach every process it forked, and keeps the components alive when the shell that
started them exits.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil


@dataclass(frozen=True)
class Running:
    name: str
    pid: int
    log: Path
    created: float  # the process's start time: with the pid, it names the process for sure

    def alive(self) -> bool:
        return _alive(self.pid)

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except FileNotFoundError:
            return "(no log)"


def spawn(name: str, argv: Sequence[str], env: Mapping[str, str], log: Path) -> Running:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        process = subprocess.Popen(
            list(argv),
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Running(name, process.pid, log, psutil.Process(process.pid).create_time())


def still_running(pid: int, created: float) -> bool:
    """Whether the process that had ``pid`` at ``created`` still runs (not a reused pid)."""
    try:
        process = psutil.Process(pid)
        return process.create_time() == created and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def stop(pid: int, created: float, timeout: float = 30.0) -> list[int]:
    """Stop a component and everything it forked; return the pids that outlived SIGKILL.

    SIGTERM goes to the leader first, so it shuts down the way it is designed to (a Celery worker
    finishes or requeues its tasks, the scheduler stops its processors); what is left of its
    process group and of its descendants after ``timeout`` is terminated, then killed. A leader
    that already died may have left its group behind: that is stopped too.
    """
    family = _family(pid, created)
    if still_running(pid, created):
        _signal(pid, signal.SIGTERM)
        _wait_gone([pid], timeout)
    for sig, grace in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        stragglers = [p for p in _family(pid, created) | family if _alive(p)]
        for straggler in stragglers:
            _signal(straggler, sig)
        _wait_gone(stragglers, grace)
    return sorted(p for p in family | _family(pid, created) if _alive(p))


def _family(pid: int, created: float) -> set[int]:
    """The leader, its descendants, and the members of its process group started after it."""
    pids: set[int] = set()
    if still_running(pid, created):
        pids.add(pid)
        with contextlib.suppress(psutil.NoSuchProcess):
            pids.update(child.pid for child in psutil.Process(pid).children(recursive=True))
    for process in psutil.process_iter(["create_time"]):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if os.getpgid(process.pid) == pid and process.info["create_time"] >= created:
                pids.add(process.pid)
    return pids


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _wait_gone(pids: Sequence[int], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        _reap(pids)
        time.sleep(0.2)
    _reap(pids)


def _reap(pids: Sequence[int]) -> None:
    # Components started by this process are its children: collect their exit status.
    for pid in pids:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
