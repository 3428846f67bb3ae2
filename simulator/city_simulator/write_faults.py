"""A write-side fault of the simulated portals: a release that fails part-way.

The transport faults (``faults.Injector``) act on the next requests; a publisher's release must
also be failed after some of its writes were accepted, to show that a re-run finishes the job.
"""

from __future__ import annotations

import threading


class WriteFailures:
    """After ``after`` more accepted writes, refuse the next ``count`` with HTTP ``status``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._after = self._count = 0
        self._status = 500

    def arm(self, after: int, count: int = 1, status: int = 500) -> None:
        if after < 0 or count < 1:
            raise ValueError(f"after must be >= 0 and count >= 1, got {after} and {count}")
        with self._lock:
            self._after, self._count, self._status = after, count, status

    def clear(self) -> None:
        with self._lock:
            self._after = self._count = 0

    def take(self) -> int | None:
        """The status to refuse this write with, or None to accept it (and count it)."""
        with self._lock:
            if not self._count:
                return None
            if self._after:
                self._after -= 1
                return None
            self._count -= 1
            return self._status
