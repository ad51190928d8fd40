"""Read (parse) mails in worker processes: both cores work, and a hostile mail that hangs a
worker, exhausts its memory or crashes it costs that worker, never the daemon.

Each worker runs `understand.read`, which is pure. A mail not read within `parse_seconds`, or
whose worker died, is reported as a BadMessage and quarantined; the pool is rebuilt. Mails of
the batch not yet collected are simply read again in the next batch.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import resource
from multiprocessing.pool import Pool

from daemon.config import LimitsConfig
from daemon.errors import BadMessage
from daemon.understand import Reading, read

log = logging.getLogger("vanthu.workers")


def _init_worker(memory_mb: int) -> None:
    limit = memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    logging.getLogger().handlers[:] = []  # the parent logs; a worker only returns results


def _read(raw: bytes, limits: LimitsConfig) -> Reading | BadMessage:
    try:
        return read(raw, limits)
    except BadMessage as err:
        return err
    except MemoryError:
        return BadMessage(f"reading needs more than {limits.worker_memory_mb} MB of memory")


class ReadPool:
    """A pool of parsing processes (spawned, so no thread state of the daemon is inherited)."""

    def __init__(self, limits: LimitsConfig) -> None:
        self.limits = limits
        self.size = limits.workers or os.cpu_count() or 1
        self._pool: Pool | None = None

    def start(self) -> None:
        """Start the workers now, so the first mail does not wait for them."""
        self._get()

    def _get(self) -> Pool:
        if self._pool is None:
            context = multiprocessing.get_context("spawn")
            self._pool = context.Pool(self.size, initializer=_init_worker,
                                      initargs=(self.limits.worker_memory_mb,))
        return self._pool

    def read_all(self, raws: list[bytes]) -> list[Reading | BadMessage | None]:
        """One result per mail: a Reading, a BadMessage, or None (not read: try again)."""
        pool = self._get()
        pending = [pool.apply_async(_read, (raw, self.limits)) for raw in raws]
        results: list[Reading | BadMessage | None] = []
        for i, task in enumerate(pending):
            try:
                results.append(task.get(timeout=self.limits.parse_seconds))
            except multiprocessing.TimeoutError:
                log.error("workers.timeout", extra={"seconds": self.limits.parse_seconds})
                results.append(BadMessage(
                    f"reading took longer than {self.limits.parse_seconds} s, or its worker "
                    "died; the mail may be built to exhaust the parser"))
                results.extend([None] * (len(pending) - i - 1))
                self.close()  # the stuck worker must go; the rest of the batch is reread
                break
        return results

    def close(self) -> None:
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()
            self._pool = None
