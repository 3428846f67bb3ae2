"""The loader keeps page-sized buffers off the C heap, so memory stays flat however many pages."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from civic_warehouse import settings

# A fresh interpreter (the allocator's state is per process): frees one large buffer, which is
# what makes glibc serve the next ones from the heap, then allocates and frees a few more, as a
# load does with every page, and prints how much of them is still resident (KiB).
PROGRAM = """
import sys
from civic_warehouse import loader

if sys.argv[1] == "loader":
    loader._large_buffers_off_the_heap()

def resident_kib():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))

size = 8 << 20
first = bytearray(size)
del first
before = resident_kib()
for _ in range(5):
    page = bytearray(size)  # zero-filled: every byte of it resident
    del page
print(resident_kib() - before)
"""

SIZE_KIB = 8 << 10


def resident_after_freeing(mode: str) -> int:
    result = subprocess.run(
        [sys.executable, "-c", PROGRAM, mode],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(settings.PLUGINS_DIR)},
    )
    return int(result.stdout.strip())


@pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only"
)
def test_freed_page_buffers_go_back_to_the_system():
    # Without the loader's setting glibc keeps a freed page-sized buffer resident...
    assert resident_after_freeing("default") >= SIZE_KIB // 2
    # ...with it, each one is returned as soon as it is freed.
    assert resident_after_freeing("loader") < SIZE_KIB // 4
