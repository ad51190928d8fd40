"""A daemon killed with SIGKILL leaves no reader processes behind (outside systemd, whose
control group would end them, every restart of a crash loop would add a pool)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import ROOT, wait_for

_READ_THEN_DIE = """
import os, signal, sys, threading
from daemon.config import LimitsConfig
from daemon.intake.workers import ReadPool
from tests.test_intake_orphans import hang

pool = ReadPool(LimitsConfig(workers=2, parse_seconds=3600), reader=hang)
threading.Thread(target=pool.read_all, args=([sys.argv[1].encode()],), daemon=True).start()
input()  # the test waits until a worker is busy with the mail, then says when to die
os.kill(os.getpid(), signal.SIGKILL)
"""


def hang(raw: bytes, limits: object) -> None:
    """A reader stuck on a mail: says where it is, then never returns by itself."""
    with open(raw.decode(), "w") as f:
        f.write(str(os.getpid()))
    time.sleep(3600)


def _descendants(pid: int) -> set[int]:
    """Every process whose parent chain leads to `pid`, from /proc."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as f:
                    stat = f.read()
            except OSError:
                continue
            parents[int(entry)] = int(stat[stat.rfind(b")") + 2:].split()[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().split(b")")[-1].split()[0] != b"Z"
    except OSError:
        return False


def test_readers_end_with_a_killed_daemon(tmp_path: Path) -> None:
    """Killed while a worker is busy with a mail that hangs it, the daemon takes its fork server
    and every worker with it: the busy one too, which would otherwise run on for an hour."""
    busy = tmp_path / "busy"
    with subprocess.Popen([sys.executable, "-c", _READ_THEN_DIE, str(busy)], cwd=ROOT,
                          stdin=subprocess.PIPE, text=True) as child:
        assert child.stdin is not None
        wait_for(lambda: busy.exists() and busy.read_text() != "", timeout=120)
        spawned = _descendants(child.pid)  # the fork server, its workers (and a tracker)
        assert int(busy.read_text()) in spawned
        child.stdin.write("\n")
        child.stdin.flush()
        child.wait(timeout=120)
    assert child.returncode == -signal.SIGKILL
    try:
        wait_for(lambda: not any(_alive(pid) for pid in spawned), timeout=60)
    finally:
        for pid in spawned:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
