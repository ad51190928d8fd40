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
import os

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


_PAGE = os.sysconf("SC_PAGE_SIZE")


def resident_bytes() -> int | None:
    """This process's resident memory (Linux's /proc/self/statm), None when unknown."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None


# Resident memory after the last `trim_when_grown` trimmed (None: not yet, or unknown).
_trimmed_at: int | None = None


def trim_when_grown(slack: int) -> bool:
    """`trim` when this process holds more than `slack` bytes above what it held after it last
    trimmed here (always when that is unknown); whether it trimmed. Trimming after every
    small mail gives back pages the next one takes again: each page is zeroed and mapped
    anew (about half a millisecond of kernel time a mail in a worker), for memory that was
    never more than one mail's."""
    global _trimmed_at
    now = resident_bytes()
    if now is not None and _trimmed_at is not None and now - _trimmed_at <= slack:
        return False
    trim()
    _trimmed_at = resident_bytes()
    return True
