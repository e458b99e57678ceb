"""Handing freed memory back to the operating system (glibc's `malloc_trim`; elsewhere nothing).

glibc keeps freed blocks in per-thread arenas; a photo decode frees buffers of hundreds of MB
there, and without a trim each decode thread keeps its peak for good. (Trimming after every call
as well did not change the soak's slow growth, so calls do not.)
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
