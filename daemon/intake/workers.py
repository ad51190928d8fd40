"""Read (parse) mails in worker processes: both cores work, and a hostile mail that hangs a
worker, exhausts its memory or crashes it costs that worker, never the daemon.

Each worker runs `understand.read`, which is pure. A mail not read within `parse_seconds`
*of a worker taking it*, or whose worker died, is reported as a BadMessage and quarantined;
the pool is rebuilt. The clock starts when a worker reports that it took the mail, not when
the mail was queued: starting a worker never counts against a mail. Mails of the batch not yet
collected are read again in the next batch.

Workers are forked from a fork server: a fresh single-threaded process (no thread state of
the daemon is inherited) that imports the readers once. The import (over a second of CPU) is
paid once per daemon rather than once per worker, so the first mail of a daemon's life waits
less, and a pool rebuilt after a stuck worker is ready at once.
"""

from __future__ import annotations

import functools
import logging
import multiprocessing
import os
import pickle
import resource
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.pool import AsyncResult, Pool
from multiprocessing.queues import SimpleQueue
from typing import Any, cast

from daemon import memory
from daemon.config import LimitsConfig
from daemon.errors import BadMessage
from daemon.understand import Reading, read
from daemon.understand.signatures import Roots
from daemon.understand.trust import DkimCheck

log = logging.getLogger("vanthu.workers")

Reader = Callable[[bytes, LimitsConfig], Reading | BadMessage]

# What the fork server imports once, so that every process forked from it (the readers, the
# verifiers of signed results) has it without paying for the import: the readers (with pypdf,
# which they import lazily), the results' verifier, pyHanko (imported lazily by both), PDFium,
# the composers of emails (drafts) and the PDF maker of receipt slips (fpdf2 with fontTools,
# imported lazily by the receipt).
# The daemon's own process needs none of pypdf, pyHanko, PDFium and fpdf2.
# Python has one fork server per process: every user of it sets this same list.
FORK_SERVER_PRELOAD = [__name__, "daemon.understand.pdfscan", "daemon.office.results",
                       "pyhanko.sign.validation", "pypdfium2", "daemon.outbound.drafts",
                       "fpdf", "fontTools.subset", "daemon.intake.preloaded"]

# A worker reads this many mails, then a fresh one forked from the fork server takes its
# place (a fork: milliseconds): whatever the parsers keep or fragment stays bounded.
MAILS_PER_WORKER = 100
# How much less the workers' claim on the processors weighs than the daemon's own process
# (CPU time is shared by weight: at 10 the daemon's process takes about 90% of a core that
# both want): the process that fetches, stores and sends is not slowed by reading.
WORKER_NICE = 10
# A worker gives its free memory back before a mail when it has grown this much since it last
# did (`memory.trim_when_grown`).
TRIM_SLACK = 8 * 1024 * 1024

# Set in each worker by `_init_worker`: where it reports "I took task N at time T".
_started: SimpleQueue[tuple[int, float]] | None = None


def _process_start(pid: int) -> str | None:
    """When process `pid` started (field 22 of /proc/PID/stat), None when it is gone or a
    zombie (killed, not yet reaped)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] in (b"Z", b"X") else fields[19].decode()


def _watch_daemon(pid: int, started: str | None) -> None:
    """End this worker when the daemon that made the pool is gone. A daemon killed with SIGKILL
    outside systemd's control group would otherwise leave its workers (and through them the
    fork server) alive: each worker holds the pool's queue open for the others, and a busy one
    runs on until its mail is done, so every restart of a crash loop would add a pool."""
    while _process_start(pid) == started:
        time.sleep(1.0)
    os._exit(0)


def _init_worker(memory_mb: int, started: SimpleQueue[tuple[int, float]],
                 daemon: int, daemon_started: str | None) -> None:
    global _started, _broken
    _started = started
    logging.getLogger().handlers[:] = []  # the parent logs; a worker only returns results
    try:
        threading.Thread(target=_watch_daemon, args=(daemon, daemon_started), daemon=True,
                         name="watch-daemon").start()
        memory.tune()
        os.nice(WORKER_NICE)
        limit = memory_mb * 1024 * 1024
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        if hard != resource.RLIM_INFINITY:
            # A lower cap set for the whole service (systemd's LimitAS=) holds: a worker may
            # not raise it.
            limit = min(limit, hard)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    except Exception as err:  # whatever failed here is the system's, told below
        # A worker whose start raised would end at once, and the pool would fork another
        # without end (a core spinning, no mail read). This one stays, and answers every
        # task with why it cannot read: the daemon pauses and says so.
        _broken = f"{type(err).__name__}: {err}"


@dataclass(frozen=True)
class Broken:
    """A worker's answer to a task when it could not start as a worker must (its memory cap,
    its priority): the mail was not read, and no mail can be until the system is mended."""

    reason: str


# Set in a worker whose start failed (`_init_worker`): why.
_broken: str | None = None


def read_guarded(raw: bytes, limits: LimitsConfig, dkim: DkimCheck | None = None,
                 parse: Reader | None = None,
                 roots: Roots | None = None) -> Reading | BadMessage:
    """`understand.read` (verifying DKIM when `dkim` says so, PDF signatures against
    `roots`), or `parse`, with every failure
    of the parser turned into a BadMessage: the same in a worker and in the daemon's own
    process (`process_pending` without a pool). A parser exception is a property of the
    mail, so no retry would help."""
    try:
        return parse(raw, limits) if parse is not None else read(raw, limits, dkim, roots)
    except BadMessage as err:
        return err
    except MemoryError:
        return BadMessage(f"reading needs more than {limits.worker_memory_mb} MB of memory")
    except Exception as err:  # bulkhead: the parser may raise anything on hostile input
        return BadMessage(f"unreadable mail: {type(err).__name__}: {err}")


def _task(task_id: int, reader: Callable[[Any, LimitsConfig], Any], raw: Any,
          limits: LimitsConfig) -> Any:
    # What the worker's last mail left free goes back to the system, once it is more than a
    # small mail's worth.
    memory.trim_when_grown(TRIM_SLACK)
    if _started is not None:
        # CLOCK_MONOTONIC is system-wide on Linux: the parent can compare it with its own.
        _started.put((task_id, time.monotonic()))
    if _broken is not None:
        return Broken(_broken)
    return reader(raw, limits)


@dataclass(frozen=True)
class Reads:
    """A batch of mails handed to the workers: task ids, their results to come, the pool's
    life they were handed to, and when."""

    ids: list[int]
    tasks: list[AsyncResult[Any]]
    generation: int
    queued: float


class _Pool(Pool):
    """multiprocessing's Pool, except that its worker handler (the thread that replaces
    workers that ended) no longer wakes for every result that waits to be read. The standard
    one waits on the result pipe as well: while a large result is still being read, that
    thread spins, checking every worker's exit status, and takes the interpreter from the
    threads that work (measured: 600 results of 2 MB took 27-50 s of this process's CPU
    instead of 1.4 s). It still wakes when a worker ends (its sentinel) and when the pool is
    closed, terminated or out of tasks (the pool's change notifier)."""

    def _get_sentinels(self) -> list[Any]:
        return [self._change_notifier._reader]  # type: ignore[attr-defined]

    # How long terminating waits for the workers' read lock (see `_help_stuff_finish`).
    LOCK_SECONDS = 10.0

    @staticmethod
    def _help_stuff_finish(inqueue: Any, task_handler: Any, size: int) -> None:
        """Terminating: take the workers' read lock, then read away the tasks no worker took
        (the task handler may be blocked writing to a full pipe). The standard one waits for
        that lock forever, and a worker killed while it waited for a task (the kernel's OOM
        killer, SIGKILL, a signal to the whole process group) holds it forever: the daemon
        hung at its next stop, or when it replaced a stuck pool. A live worker that holds
        the lock gives it back as soon as anything is written, which the task handler does
        while the pool ends (a sentinel per worker). So when the lock is not free after
        LOCK_SECONDS, its holder is dead: the tasks are read away without it (the workers
        are killed next in any case)."""
        if not inqueue._rlock.acquire(timeout=_Pool.LOCK_SECONDS):
            log.warning("workers.lock_lost", extra={"lock": "tasks"})
        try:
            while task_handler.is_alive() and inqueue._reader.poll():
                inqueue._reader.recv()
                time.sleep(0)
        except (OSError, EOFError, pickle.UnpicklingError):
            pass  # a task read away in pieces: nobody will run it

    @classmethod
    def _terminate_pool(cls, taskqueue: Any, inqueue: Any, outqueue: Any,
                        *rest: Any) -> None:
        """The standard end of the pool, once the result pipe's write lock is free. A worker
        holds it while it sends a result, and one killed then (the OOM killer is most likely
        to pick a worker holding a large result) never gives it back: the standard end's
        last word to the result handler would wait for it forever. A live worker ends its
        send as the result handler reads on, so after LOCK_SECONDS the holder is dead, and
        the lock is given back for it (a multiprocessing lock is a semaphore: any process
        may release it). Every worker is killed next."""
        lock = outqueue._wlock
        if lock is not None:
            if not lock.acquire(timeout=cls.LOCK_SECONDS):
                log.warning("workers.lock_lost", extra={"lock": "results"})
            lock.release()
        super()._terminate_pool(taskqueue, inqueue, outqueue, *rest)  # type: ignore[misc]


class ReadPool:
    """A pool of parsing processes, forked from a fork server that has the readers imported."""

    # How long a mail may wait for a worker to take it at all: only a pool that cannot start
    # (a broken interpreter, no memory for a process) waits this long.
    START_SECONDS = 300.0

    def __init__(self, limits: LimitsConfig, dkim: DkimCheck | None = None,
                 reader: Reader | None = None, roots: Roots | None = None) -> None:
        self.limits = limits
        self.size = limits.workers or os.cpu_count() or 1
        self.reader: Reader = reader or functools.partial(read_guarded, dkim=dkim, roots=roots)
        self._pool: Pool | None = None
        self._started: SimpleQueue[tuple[int, float]] | None = None
        self._next_task = 0
        self.restarts = 0  # times the pool was killed and made anew (a metric)
        # Why the workers cannot read (they could not start as they must), from the last
        # result that said so; None once one reads again.
        self.broken: str | None = None
        self._generation = 0  # the pool's life: a batch handed to an earlier one is lost
        self._began: dict[int, float] = {}  # task id -> when a worker took it
        self._lock = threading.Lock()  # the pool is made once, by whichever thread asks first

    def start(self) -> None:
        """Start the workers now, in the background: the first mail does not wait for them,
        and nothing else waits while the fork server imports the readers."""
        threading.Thread(target=self._start, daemon=True, name="workers-start").start()

    def _start(self) -> None:
        try:
            self._get()
        except Exception as err:  # the fork server died (killed, no memory): the first
            # batch starts the pool again, and says so if it cannot
            log.warning("workers.not_started", extra={"error": f"{type(err).__name__}: {err}"})

    def _get(self) -> Pool:
        with self._lock:
            if self._pool is None:
                context = multiprocessing.get_context("forkserver")
                context.set_forkserver_preload(FORK_SERVER_PRELOAD)
                self._started = context.SimpleQueue()
                self._pool = _Pool(self.size, initializer=_init_worker,
                                   initargs=(self.limits.worker_memory_mb, self._started,
                                             os.getpid(), _process_start(os.getpid())),
                                   maxtasksperchild=MAILS_PER_WORKER, context=context)
            return self._pool

    def _wait(self, task_id: int, task: AsyncResult[Any], queued: float) -> bool | None:
        """Wait for `task`, handed to the pool at `queued`: True when it is done, False when
        it ran past its time, None when no worker took it within START_SECONDS."""
        assert self._started is not None
        while True:
            while not self._started.empty():
                tid, at = self._started.get()
                self._began[tid] = at
            begin = self._began.get(task_id)
            now = time.monotonic()
            if begin is None:
                left = queued + self.START_SECONDS - now
            else:
                left = begin + self.limits.parse_seconds - now
            if task.ready():
                return True
            if left <= 0:
                return None if begin is None else False
            # Until a worker takes the mail, look for its start notice every 50 ms.
            task.wait(left if begin is not None else min(left, 0.05))

    def submit(self, raws: Sequence[Any],
               work: Callable[[Any, LimitsConfig], Any] | None = None) -> Reads:
        """Hand `raws` to the workers now; `collect` gives the results. The pipeline hands
        the next batch over before it records the current one, so the workers read while
        the daemon's own process writes. `work`: what the workers do with each item (a
        picklable function of it and the limits), instead of reading it as a mail (the
        emails of recorded mails are composed so: daemon/outbound/drafts.py)."""
        pool = self._get()
        ids = list(range(self._next_task, self._next_task + len(raws)))
        self._next_task += len(raws)
        tasks = [pool.apply_async(_task, (tid, work or self.reader, raw, self.limits))
                 for tid, raw in zip(ids, raws, strict=True)]
        return Reads(ids, tasks, self._generation, time.monotonic())

    def current(self, reads: Reads) -> bool:
        """Whether `reads` were handed to the pool of now (not to one since replaced)."""
        return reads.generation == self._generation

    def ready(self, reads: Reads) -> bool:
        """Whether every result of `reads` is in (or its pool is gone): `collect` won't wait."""
        return reads.generation != self._generation or all(t.ready() for t in reads.tasks)

    def collect(self, reads: Reads) -> list[Any]:
        """One result per item of `reads`: a Reading (or what its `work` returned), a
        BadMessage, or None (not done: try again; every item handed to a pool since killed
        is None)."""
        results: list[Any] = []
        for i, (tid, task) in enumerate(zip(reads.ids, reads.tasks, strict=True)):
            if reads.generation != self._generation:  # its pool was killed meanwhile
                results.extend([None] * (len(reads.tasks) - i))
                break
            done = self._wait(tid, task, reads.queued)
            if done:
                self._began.pop(tid, None)
                try:
                    result = task.get()
                except Exception as err:  # bulkhead: a result that cannot be unpickled
                    result = BadMessage(f"reading failed: {type(err).__name__}: {err}")
                if isinstance(result, Broken):  # not read: the system's fault, not the mail's
                    if self.broken != result.reason:
                        log.error("workers.broken", extra={"reason": result.reason})
                    self.broken = result.reason
                    result = None
                elif result is not None:
                    self.broken = None
                results.append(result)
                continue
            if done is None:
                # No worker took it: the pool is stuck (a worker died holding the task lock,
                # the fork server is gone), not the mail. It is read again, by a new pool.
                log.error("workers.stuck", extra={"seconds": self.START_SECONDS})
                results.extend([None] * (len(reads.tasks) - i))
            else:
                log.error("workers.timeout", extra={"seconds": self.limits.parse_seconds})
                results.append(BadMessage(
                    f"reading took longer than {self.limits.parse_seconds} s, or its worker "
                    "died; the mail may be built to exhaust the parser"))
                results.extend([None] * (len(reads.tasks) - i - 1))
            self.restarts += 1
            self.close()  # the stuck worker must go; the rest of the batch is reread
            break
        return results

    def read_all(self, raws: list[bytes]) -> list[Reading | BadMessage | None]:
        """One result per mail: a Reading, a BadMessage, or None (not read: try again)."""
        return cast("list[Reading | BadMessage | None]", self.collect(self.submit(raws)))

    def close(self) -> None:
        with self._lock:
            self._generation += 1
            self._began.clear()
            if self._pool is not None:
                self._pool.terminate()
                self._pool.join()
                self._pool = None
            if self._started is not None:
                self._started.close()
                self._started = None
