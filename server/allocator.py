"""glibc's allocator, tuned for a server of many threads: fewer arenas, freed memory handed back.

glibc gives each thread that allocates its own arena, up to 8 per core, and each arena keeps its
own peak of freed blocks. The server's threads (the event loop, each engine's worker, CTranslate2
and onnxruntime pools, database and executor threads) then held 17 arenas; limiting them to 2
(`limit_arenas`) lowered the soak benchmark's quiet level by about 30 MB. A photo decode frees
buffers of hundreds of MB, and without a trim (`release_memory`) its thread keeps that peak for good.
Elsewhere (musl, macOS) both do nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from collections.abc import Callable

#: mallopt's parameter number for the arena limit (glibc's malloc.h).
M_ARENA_MAX = -8


def limit_arenas(arenas: int) -> bool:
    """Let at most `arenas` malloc arenas serve the process (0 leaves glibc's default).

    Call it at start, before threads start: a thread keeps the arena it first allocated from.
    Returns whether the limit was applied (False where the C library is not glibc).
    """
    if arenas <= 0:
        return False
    mallopt = _libc_function("mallopt")
    return mallopt is not None and mallopt(M_ARENA_MAX, arenas) == 1


def release_memory() -> None:
    """Return freed heap memory to the OS. Takes milliseconds: call it off the event loop."""
    trim = _libc_function("malloc_trim")
    if trim is not None:
        trim(0)


@functools.cache
def _libc_function(name: str) -> Callable[..., int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return getattr(libc, name)  # type: ignore[no-any-return]
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to tune
        return None
