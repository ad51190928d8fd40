"""Keep the daemon's memory flat under load (glibc's allocator; a no-op elsewhere).

Mail comes in bytes objects of every size, from a few kilobytes to tens of megabytes, made
and freed by several threads. glibc's defaults let such a process grow for hours: each thread
may get its own arena (up to eight per core), and its mmap threshold rises to the size of
the largest block ever freed, after which every large block is carved from an arena and its
freed space stays with the process. `tune` caps the arenas at two and fixes the threshold, so
a large block is mapped and given back whole; `trim` returns the arenas' free pages to the
system after a batch of mail.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger("vanthu.memory")

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
ARENAS = 2
MMAP_THRESHOLD = 256 * 1024  # a block this large or larger is its own mapping
TRIM_THRESHOLD = 1024 * 1024  # free memory at the top of the heap past this goes back


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "mallopt") else None


_LIBC = _libc()


def tune() -> bool:
    """Set the allocator's limits in this process (before its threads start); whether it
    could (glibc)."""
    if _LIBC is None:
        return False
    done = all(_LIBC.mallopt(option, value) == 1 for option, value in (
        (M_ARENA_MAX, ARENAS), (M_MMAP_THRESHOLD, MMAP_THRESHOLD),
        (M_TRIM_THRESHOLD, TRIM_THRESHOLD)))
    if not done:
        log.warning("memory.tune_refused")
    return done


def trim() -> None:
    """Give the free pages of every arena back to the system (glibc's malloc_trim)."""
    if _LIBC is not None and hasattr(_LIBC, "malloc_trim"):
        _LIBC.malloc_trim(0)
