"""daemon.memory: the allocator's limits are set in a real process, and trimming gives
memory back (glibc, as on Debian)."""

from __future__ import annotations

import os
import subprocess
import sys

from daemon.config import LimitsConfig
from daemon.errors import BadMessage
from daemon.intake import workers
from daemon.intake.workers import ReadPool
from tests.conftest import ROOT

PROBE = """
import gc, sys
from daemon import memory

def rss_kb():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))

assert memory.tune(), "mallopt refused"
before = rss_kb()
# Many medium blocks below the mmap threshold come from the heap; a small block kept after
# each pins the heap, so only trimming gives the freed pages back.
blocks, pins = [], []
for _ in range(500):
    block = bytearray(200_000)
    block[::4096] = b"x" * len(block[::4096])
    blocks.append(block)
    pins.append(bytearray(1000))
grown = rss_kb()
del blocks, block
gc.collect()
memory.trim()
after = rss_kb()
print(before, grown, after)
assert grown - before > 50_000, (before, grown)
assert after - before < (grown - before) / 4, (before, grown, after)
"""


def test_trim_gives_memory_back() -> None:
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr + done.stdout


GROWN = """
import gc
from daemon import memory

assert memory.tune(), "mallopt refused"
slack = 20 * 1024 * 1024

def grow_and_free(blocks_of_200k):
    # Medium blocks come from the heap, a small block kept after each pins it: only
    # trimming gives the freed pages back.
    blocks, pins = [], []
    for _ in range(blocks_of_200k):
        block = bytearray(200_000)
        block[::4096] = b"x" * len(block[::4096])
        blocks.append(block)
        pins.append(bytearray(1000))
    del blocks, block
    gc.collect()
    return pins

assert memory.trim_when_grown(slack), "the first call has nothing to compare with"
settled = memory.resident_bytes()
kept = [grow_and_free(25)]  # about 5 MB, freed: held, under the slack
assert not memory.trim_when_grown(slack)
assert memory.resident_bytes() - settled > 3_000_000, "the small mail's pages were given back"
kept.append(grow_and_free(250))  # about 50 MB, freed: over the slack
grown = memory.resident_bytes()
assert grown - settled > slack
assert memory.trim_when_grown(slack)
after = memory.resident_bytes()
print(settled, grown, after)
assert after - settled < slack, (settled, grown, after)
"""


def test_trim_waits_until_the_process_has_grown_past_the_slack() -> None:
    """Pages a small mail freed stay for the next one (no kernel work for each); once the
    process has grown past the slack, they go back."""
    done = subprocess.run([sys.executable, "-c", GROWN], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr + done.stdout


def _pid_reader(raw: bytes, limits: object) -> BadMessage:
    """A reader that answers with the pid of the worker that ran it."""
    return BadMessage(str(os.getpid()))


def test_workers_are_replaced_after_their_share_of_mail() -> None:
    """Each worker reads MAILS_PER_WORKER mails, then a fresh one takes its place; every mail
    is still read once, in order."""
    pool = ReadPool(LimitsConfig(workers=2), reader=_pid_reader)
    try:
        count = 2 * workers.MAILS_PER_WORKER + 50
        results = pool.read_all([b"x"] * count)
    finally:
        pool.close()
    pids = [int(str(r)) for r in results if isinstance(r, BadMessage)]
    assert len(pids) == count
    assert len(set(pids)) > 2, "no worker was replaced"
    assert max(pids.count(p) for p in set(pids)) <= workers.MAILS_PER_WORKER


def _niceness_reader(raw: bytes, limits: object) -> BadMessage:
    """A reader that answers with the niceness of the worker that ran it."""
    return BadMessage(str(os.nice(0)))


def test_workers_give_way_to_the_daemons_own_process() -> None:
    """Reading a backlog never takes the processor from the process that fetches, stores
    and sends: each worker runs WORKER_NICE steps nicer than the daemon."""
    pool = ReadPool(LimitsConfig(workers=2), reader=_niceness_reader)
    try:
        results = pool.read_all([b"x"] * 4)
    finally:
        pool.close()
    assert {int(str(r)) for r in results} == {os.nice(0) + workers.WORKER_NICE}


def _warm_reader(raw: bytes, limits: object) -> BadMessage:
    """A reader that answers with what its worker found loaded before reading anything."""
    from daemon.understand import issuer, scams

    return BadMessage(repr((issuer.names.cache_info().currsize,
                            scams.load.cache_info().currsize,
                            "pypdf.filters" in sys.modules)))


def test_workers_start_with_the_readers_tables_loaded() -> None:
    """The word tables (YAML) and pypdf's lazy modules are loaded once, in the fork server:
    a fresh worker does not load them again for its first mail."""
    pool = ReadPool(LimitsConfig(workers=2), reader=_warm_reader)
    try:
        results = pool.read_all([b"x"] * 2)
    finally:
        pool.close()
    assert {str(r) for r in results} == {"(1, 1, True)"}


UNDER_A_SERVICE_CAP = """
import resource
from daemon.config import LimitsConfig
from daemon.intake.workers import ReadPool
from daemon.models import ParsedMail

# What systemd's LimitAS= does to the whole service: a hard cap below worker_memory_mb.
cap = 1536 * 1024 * 1024
resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
pool = ReadPool(LimitsConfig(workers=1, worker_memory_mb=4096))
try:
    found = pool.read_all(["From: a@example.com\\r\\nSubject: x\\r\\n\\r\\nvăn bản".encode()])
finally:
    pool.close()
print(type(found[0]).__name__)
assert isinstance(found[0].mail, ParsedMail), found
"""


def test_workers_read_under_a_lower_cap_of_the_whole_service() -> None:
    """A hard address-space cap set for the service (lower than worker_memory_mb) holds in
    each worker: it does not try to raise it (which fails, so each worker would end before
    its first mail, and the pool would fork new ones without end)."""
    done = subprocess.run([sys.executable, "-c", UNDER_A_SERVICE_CAP], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:] + done.stdout
