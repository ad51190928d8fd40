"""The read pool's worker handler (the thread that replaces workers that ended) wakes when a
worker ends or the pool changes, not for every result waiting to be read: the standard
Pool's handler spins while a large result is read, taking the interpreter from the daemon's
threads. Real forkserver workers; the wakes are counted, nothing is timed."""

from __future__ import annotations

import multiprocessing
import multiprocessing.pool
import os
import signal
import threading
from typing import Any

import pytest

from daemon.config import LimitsConfig
from daemon.intake.workers import FORK_SERVER_PRELOAD, ReadPool, _Pool

RESULT_BYTES = 4 * 1024 * 1024  # far beyond a pipe's buffer: read in many pieces


def _big(index: int) -> tuple[int, bytes]:
    return os.getpid(), bytes([index % 256]) * RESULT_BYTES


def _counting(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the worker handler's rounds (each one checks every worker)."""
    rounds: list[int] = []
    original = multiprocessing.pool.Pool._maintain_pool  # type: ignore[attr-defined]

    def counted(*args: Any) -> None:
        rounds.append(1)
        original(*args)

    monkeypatch.setattr(multiprocessing.pool.Pool, "_maintain_pool", staticmethod(counted))
    return rounds


@pytest.mark.parametrize("per_worker", [None, 3])
def test_the_handler_wakes_for_ended_workers_not_for_results(
        monkeypatch: pytest.MonkeyPatch, per_worker: int | None) -> None:
    rounds = _counting(monkeypatch)
    context = multiprocessing.get_context("forkserver")
    # One fork server per process, started by its first user: every user sets the same list.
    context.set_forkserver_preload(FORK_SERVER_PRELOAD)
    tasks = 24
    pool = _Pool(2, maxtasksperchild=per_worker, context=context)
    try:
        results = pool.map(_big, range(tasks), chunksize=1)
    finally:
        pool.close()
        pool.join()
    # Every result came back whole, in order, from workers replaced as often as told.
    assert [data[:1] for _, data in results] == [bytes([i]) for i in range(tasks)]
    assert all(len(data) == RESULT_BYTES for _, data in results)
    workers = len({pid for pid, _ in results})
    if per_worker is None:
        assert workers <= 2
    else:
        assert workers >= tasks // per_worker
    # One round at the start, one per worker that ended and one per change of the pool
    # (tasks drained, closed): a handler woken by each of the 24 results read in pieces would
    # make hundreds.
    ended = 0 if per_worker is None else tasks // per_worker
    assert len(rounds) <= 4 + ended, len(rounds)


def _pid(_: int) -> int:
    return os.getpid()


_said: Any = None  # in a worker of the tests below: where a held task says it started


def _keep(queue: Any) -> None:
    global _said
    _said = queue


def _hold(*_: Any) -> None:
    """A task that says it started (when the pool has a queue for it), then never ends."""
    if _said is not None:
        _said.put(os.getpid())
    threading.Event().wait()


def _take_task_lock_and_kill(pool: multiprocessing.pool.Pool) -> None:
    """With every worker inside a held task (so none waits for one, holding the task pipe's
    read lock), take that lock for good, as a worker killed while it waited leaves it, and
    kill the workers."""
    assert pool._inqueue._rlock.acquire(timeout=120)  # type: ignore[attr-defined]
    for worker in pool._pool:  # type: ignore[attr-defined]
        os.kill(worker.pid, signal.SIGKILL)


def test_terminating_ends_when_the_worker_waiting_for_a_task_was_killed() -> None:
    """A worker waiting for a task holds the pool's read lock; killed there (the OOM killer,
    SIGKILL, a signal to the process group) it never gives it back. The standard Pool then
    waits for that lock forever when it is terminated: the daemon hung at its stop."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(FORK_SERVER_PRELOAD)
    started = context.SimpleQueue()
    pool = _Pool(2, initializer=_keep, initargs=(started,), context=context)
    for n in range(2):
        pool.apply_async(_hold, (n,))
    assert len({started.get(), started.get()}) == 2  # both workers are in a task
    _take_task_lock_and_kill(pool)
    ending = threading.Thread(target=pool.terminate, daemon=True)
    ending.start()
    ending.join(300)  # it takes LOCK_SECONDS; the standard Pool never ends
    assert not ending.is_alive(), "terminate hung on the dead worker's lock"
    pool.join()


def test_terminating_ends_when_a_worker_died_holding_the_result_lock() -> None:
    """A worker holds the result pipe's write lock while it sends a result; killed then, it
    never gives it back, and the standard Pool's terminate waits for it forever (its last
    word to the result handler). Held here by the test, as a dead worker leaves it."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(FORK_SERVER_PRELOAD)
    pool = _Pool(2, context=context)
    assert set(pool.map(_pid, range(4), chunksize=1))
    assert pool._outqueue._wlock.acquire(timeout=120)  # type: ignore[attr-defined]
    ending = threading.Thread(target=pool.terminate, daemon=True)
    ending.start()
    ending.join(300)  # it takes LOCK_SECONDS; the standard Pool never ends
    assert not ending.is_alive(), "terminate hung on the result lock"
    pool.join()


def _echo(raw: bytes, limits: LimitsConfig) -> bytes:
    return raw


def _read(pool: ReadPool, items: list[bytes]) -> list[Any]:
    return pool.collect(pool.submit(items, work=_echo))


def test_a_pool_that_takes_no_task_blames_no_mail() -> None:
    """Workers that can never take a task (the task lock held by a worker killed while it
    waited) are the pool's fault: the batch is read again by a new pool, and no mail is
    judged unreadable (which quarantines it for good)."""
    pool = ReadPool(LimitsConfig(workers=2))
    try:
        assert _read(pool, [b"first", b"second"]) == [b"first", b"second"]
        inner = pool._pool
        assert inner is not None and pool._started is not None
        pool.submit([b"held", b"held"], work=_hold)
        assert len({pool._started.get()[0] for _ in range(2)}) == 2  # both in a task
        _take_task_lock_and_kill(inner)
        # The lock is never given back, so no worker takes anything however long one waits.
        pool.START_SECONDS = 2.0
        assert _read(pool, [b"third", b"fourth"]) == [None, None]
        assert pool.restarts == 1
        pool.START_SECONDS = ReadPool.START_SECONDS
        assert _read(pool, [b"third", b"fourth"]) == [b"third", b"fourth"]  # a new pool
    finally:
        pool.close()
