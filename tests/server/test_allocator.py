"""glibc's allocator settings take effect: the arena limit that `python -m server` sets at start."""

from __future__ import annotations

import platform
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

# Four threads allocate while all are alive (an exited thread's arena is reused), then glibc's
# malloc_stats prints one "Arena N:" block per arena to stderr.
PROBE = textwrap.dedent(
    """
    import ctypes, sys, threading
    from server import allocator
    allocator.limit_arenas(int(sys.argv[1]))
    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    barrier = threading.Barrier(5)
    def work():
        libc.malloc(1000)
        barrier.wait()
        barrier.wait()
    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    barrier.wait()
    libc.malloc_stats()
    barrier.wait()
    """
)


def arenas_used(limit: int) -> int:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(limit)],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return len(re.findall(r"^Arena \d+:", done.stderr, re.M))


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's allocator only")
def test_arena_limit_caps_the_arenas_threads_get() -> None:
    """With the limit, four allocating threads share 2 arenas; without it, each gets its own."""
    assert arenas_used(2) == 2
    assert arenas_used(0) >= 5
