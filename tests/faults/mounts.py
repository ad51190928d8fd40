"""File-system faults for the fault suite: a small tmpfs for the data folder (so it can be
filled), a read-only bind mount, and a database held locked by another process.

Mounting needs root in a container that allows it; when the mount is refused the case is
skipped with the reason, never passed. Every mount is undone in a `finally`.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def _mount(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["mount", *args], capture_output=True, text=True, timeout=30)


def _umount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=30)


@contextmanager
def tmpfs(path: Path, size: str = "4m") -> Iterator[Path]:
    """A tmpfs of `size` mounted at `path` for the duration."""
    path.mkdir(parents=True, exist_ok=True)
    done = _mount("-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path))
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs at {path} (root and a container that allows mount "
                    f"are needed): {done.stderr.strip()}")
    try:
        yield path
    finally:
        _umount(path)


@contextmanager
def read_only(path: Path) -> Iterator[Path]:
    """`path` bound onto itself and remounted read-only, until the block ends."""
    done = _mount("--bind", str(path), str(path))
    if done.returncode != 0:
        pytest.skip(f"cannot bind-mount {path}: {done.stderr.strip()}")
    try:
        done = _mount("-o", "remount,bind,ro", str(path))
        if done.returncode != 0:
            pytest.skip(f"cannot remount {path} read-only: {done.stderr.strip()}")
        yield path
    finally:
        _umount(path)


def fill(directory: Path) -> Path:
    """Fill the file system of `directory` to the last byte; return the filler to delete."""
    filler = directory / "filler.bin"
    with open(filler, "wb", buffering=0) as handle:  # unbuffered: nothing left to flush
        for size in (1 << 20, 65536, 4096, 512):
            try:
                while True:
                    handle.write(b"\0" * size)
            except OSError as err:
                if err.errno != errno.ENOSPC:
                    raise
    return filler


def free(filler: Path) -> None:
    filler.unlink(missing_ok=True)


_HOLDER = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=60)
conn.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.read()  # until the test closes our stdin (or dies)
conn.execute("COMMIT")
"""


class LockHolder:
    """Another process holding `BEGIN EXCLUSIVE` on the SQLite file until `release()`."""

    def __init__(self, database: Path) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", _HOLDER, str(database)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if line.strip() != b"locked":
            self.release()
            raise AssertionError(f"the lock holder did not get the lock: {line!r}")

    def release(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def __enter__(self) -> LockHolder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def free_bytes(path: Path) -> int:
    stats = os.statvfs(path)
    return stats.f_bavail * stats.f_frsize
