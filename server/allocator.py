"""Handing freed memory back to the operating system (glibc's `malloc_trim`; elsewhere nothing).

glibc keeps freed blocks in per-thread arenas, and our model threads (Whisper, Piper, Smart Turn)
and decode threads each free large numpy and Pillow buffers there: without a trim, a long-running
process keeps every thread's peak. The photo decoder trims after each decode, the gateway after
each call.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from collections.abc import Callable


def release_memory() -> None:
    """Return freed heap memory to the OS. Takes milliseconds: call it off the event loop."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim  # type: ignore[no-any-return]
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to trim
        return None
