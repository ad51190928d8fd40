"""Prometheus metrics: an HTTP endpoint (`[metrics] listen`) and/or a file for node_exporter's
textfile collector (`[metrics] textfile`), both off by default.

What the mailroom holds is read from the database when asked (a scrape, or each write of the
textfile), so every daemon sharing one database reports the same figures for the whole
service: mails stored, quarantined and registered by kind, the outbox by state and the age of
its oldest pending email, each mailbox folder's last successful fetch, and the latencies of
the pipeline (stored -> registered) and of sending (queued -> sent) as histograms. Their
bucket counts grow with the rows: each is added once, past a watermark (register entries by
id, sent emails by their time of sending), so a scrape reads only what is new. What only a
process knows is counted in it: its worker restarts and the time of its pipeline batches.

A scrape that cannot read the database still answers, with `vanthu_database_up 0`.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import write_to_textfile
from prometheus_client.registry import Collector
from sqlalchemy import Connection, Engine, func, select

from daemon.config import MetricsConfig
from daemon.db import checkpoints, messages, outbox, reading, register_entries

log = logging.getLogger("vanthu.metrics")

# Seconds: a mail is registered within seconds when all is well, an email sent within
# seconds to minutes (retries wait minutes to hours).
LATENCY_BUCKETS = (0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 14400.0,
                   86400.0)
BATCH_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Latency:
    """A cumulative histogram of durations, added to once per row."""

    def __init__(self) -> None:
        self.counts = [0] * (len(LATENCY_BUCKETS) + 1)  # the last one: above every bound
        self.total = 0.0

    def add(self, seconds: float) -> None:
        seconds = max(seconds, 0.0)  # clocks of two machines may disagree a little
        self.counts[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.total += seconds

    def family(self, name: str, documentation: str) -> HistogramMetricFamily:
        buckets: list[tuple[str, float]] = []
        running = 0
        for bound, count in zip((*LATENCY_BUCKETS, float("inf")), self.counts, strict=True):
            running += count
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), running))
        return HistogramMetricFamily(name, documentation, buckets=buckets, sum_value=self.total)


class DatabaseCollector(Collector):
    """The mailroom's figures, read from the database at each collection (thread-safe: the
    HTTP server's threads and the textfile writer may collect at once)."""

    def __init__(self, engine: Engine, restarts: Callable[[], int]) -> None:
        self.engine = engine
        self.restarts = restarts
        self.lock = threading.Lock()
        self.pipeline = Latency()
        self.sending = Latency()
        self.last_entry = 0  # register entries up to this id are counted in `pipeline`
        # Emails sent up to this time are counted in `sending`; those sent at that very
        # time are remembered by id, so a row committed later with the same time still counts.
        self.last_sent: datetime | None = None
        self.sent_at_last: set[int] = set()

    def collect(self) -> Iterable[Metric]:
        up = GaugeMetricFamily("vanthu_database_up",
                               "1 when the database answered this collection, else 0")
        try:
            with self.lock, reading(self.engine) as conn:
                found = list(self._figures(conn))
        except Exception as err:  # bulkhead: a scrape must answer even when the database won't
            log.warning("metrics.database_failed", extra={"error": f"{type(err).__name__}: "
                                                                   f"{err}"[:300]})
            up.add_metric([], 0)
            found = []
        else:
            up.add_metric([], 1)
        yield up
        yield from found
        restarts = CounterMetricFamily(
            "vanthu_worker_restarts", "Parsing worker pools restarted by this process (a mail "
            "ran past [limits] parse_seconds or its worker died)")
        restarts.add_metric([], self.restarts())
        yield restarts

    def _figures(self, conn: Connection) -> Iterator[Metric]:
        yield from _mails(conn)
        yield from _outbox(conn, datetime.now(UTC))
        yield _fetches(conn)
        self._add_latencies(conn)
        yield self.pipeline.family(
            "vanthu_pipeline_latency_seconds",
            "From a mail stored to its register entry, for every registered mail")
        yield self.sending.family(
            "vanthu_send_latency_seconds", "From an email queued to it sent, for every sent email")

    def _add_latencies(self, conn: Connection) -> None:
        rows = conn.execute(
            select(register_entries.c.id, register_entries.c.registered_at, messages.c.stored_at)
            .join(messages, messages.c.id == register_entries.c.message_id)
            .where(register_entries.c.id > self.last_entry,
                   register_entries.c.registered_at.is_not(None))
            .order_by(register_entries.c.id)).all()
        for entry_id, registered_at, stored_at in rows:
            self.pipeline.add((registered_at - stored_at).total_seconds())
            self.last_entry = entry_id
        query = select(outbox.c.id, outbox.c.created_at, outbox.c.sent_at).where(
            outbox.c.state == "sent", outbox.c.sent_at.is_not(None))
        if self.last_sent is not None:
            query = query.where(outbox.c.sent_at >= self.last_sent)
        for row_id, created_at, sent_at in conn.execute(query.order_by(outbox.c.sent_at)).all():
            if sent_at == self.last_sent and row_id in self.sent_at_last:
                continue
            if sent_at != self.last_sent:
                self.last_sent, self.sent_at_last = sent_at, set()
            self.sent_at_last.add(row_id)
            self.sending.add((sent_at - created_at).total_seconds())


def _mails(conn: Connection) -> Iterator[Metric]:
    stored = GaugeMetricFamily("vanthu_mails_stored", "Mails stored, by kind (unknown: not yet "
                               "understood)", labels=["kind"])
    states = GaugeMetricFamily("vanthu_mails", "Mails by state and kind", labels=["state",
                                                                                   "kind"])
    held = GaugeMetricFamily("vanthu_mails_quarantined", "Mails held for the clerk now, by kind",
                             labels=["kind"])
    by_kind: dict[str, int] = {}
    for state, kind, count in conn.execute(
            select(messages.c.state, messages.c.kind, func.count())
            .group_by(messages.c.state, messages.c.kind)).all():
        kind = kind or "unknown"
        by_kind[kind] = by_kind.get(kind, 0) + count
        states.add_metric([state, kind], count)
        if state == "quarantined":
            held.add_metric([kind], count)
    for kind, count in sorted(by_kind.items()):
        stored.add_metric([kind], count)
    registered = GaugeMetricFamily("vanthu_mails_registered", "Register entries, by register "
                                   "(book) and kind", labels=["book", "kind"])
    for book, kind, count in conn.execute(
            select(register_entries.c.book, register_entries.c.kind, func.count())
            .group_by(register_entries.c.book, register_entries.c.kind)).all():
        registered.add_metric([book, kind], count)
    yield from (stored, held, registered, states)


def _outbox(conn: Connection, now: datetime) -> Iterator[Metric]:
    emails = GaugeMetricFamily("vanthu_outbox_emails", "Emails in the outbox, by state",
                               labels=["state"])
    counts: dict[str, int] = {state: count for state, count in conn.execute(
        select(outbox.c.state, func.count()).group_by(outbox.c.state)).all()}
    for state in sorted({"draft", "pending", "sent", "failed", *counts}):
        emails.add_metric([state], counts.get(state, 0))
    oldest = conn.execute(select(func.min(outbox.c.created_at))
                          .where(outbox.c.state.in_(["draft", "pending"]))).scalar()
    age = GaugeMetricFamily("vanthu_outbox_oldest_pending_age_seconds",
                            "Age of the oldest email waiting to be sent, composed or not "
                            "(0: none waits)")
    if isinstance(oldest, str):  # SQLite hands an aggregate back as text
        oldest = datetime.fromisoformat(oldest)
    if oldest is not None and oldest.tzinfo is None:
        oldest = oldest.replace(tzinfo=UTC)
    age.add_metric([], max((now - oldest).total_seconds(), 0.0) if oldest else 0.0)
    yield from (emails, age)


def _fetches(conn: Connection) -> Metric:
    fetched = GaugeMetricFamily(
        "vanthu_mailbox_last_fetch_timestamp_seconds",
        "When each mailbox folder was last fetched without error (Unix time)",
        labels=["mailbox", "folder"])
    for mailbox, folder, at in conn.execute(
            select(checkpoints.c.mailbox, checkpoints.c.folder, checkpoints.c.last_fetch_at)
            .where(checkpoints.c.last_fetch_at.is_not(None))).all():
        fetched.add_metric([mailbox, folder], at.timestamp())
    return fetched


class Metrics:
    """One daemon's metrics: its own registry (never the process-wide default), the database
    collector, the in-process instruments, the endpoint and the textfile writer."""

    def __init__(self, cfg: MetricsConfig, engine: Engine,
                 restarts: Callable[[], int]) -> None:
        self.cfg = cfg
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(DatabaseCollector(engine, restarts))
        self.batch = Histogram("vanthu_pipeline_batch_seconds",
                               "Time of each pipeline batch that handled mail, in this process",
                               buckets=BATCH_BUCKETS, registry=self.registry)
        self.faults = Counter("vanthu_pipeline_pauses", "Pipeline pauses for a fault that is not "
                              "the mail's (SystemicFault), in this process",
                              registry=self.registry)
        self.server: Any = None

    @property
    def enabled(self) -> bool:
        return bool(self.cfg.listen or self.cfg.textfile)

    def start(self) -> None:
        """Open the endpoint, if configured. Raises OSError when the address cannot be had."""
        if self.cfg.listen:
            host, port = self.cfg.address
            self.server, _ = start_http_server(port, host, registry=self.registry)
            log.info("metrics.listening", extra={"address": self.cfg.listen})

    def write(self) -> None:
        """Write the textfile atomically (a temporary file beside it, then renamed)."""
        if self.cfg.textfile:
            write_to_textfile(self.cfg.textfile, self.registry)

    async def keep_writing(self, stopping: asyncio.Event) -> None:
        """Write the textfile now and every `interval_seconds` until `stopping`."""
        while self.cfg.textfile:
            try:
                await asyncio.to_thread(self.write)
            except OSError as err:  # a full disk or a folder removed: say so and go on
                log.error("metrics.textfile_failed", extra={
                    "path": str(Path(self.cfg.textfile)), "error": str(err)})
            try:
                await asyncio.wait_for(stopping.wait(), self.cfg.interval_seconds)
                return
            except TimeoutError:
                continue

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
