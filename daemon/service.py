"""The daemon: watcher threads feed the store; the pipeline and the sender run on the event loop.

Shutdown on SIGTERM: the watchers stop at their next tick, the pipeline finishes (commits or
rolls back) the batch in hand, the sender finishes the message in hand. Nothing is half-done:
every step is a transaction, and whatever did not commit is done again at the next start.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger

from daemon import memory, selfcheck
from daemon.config import Config
from daemon.db import SchemaMismatch, Turns, clear_fault, make_engine, prepare, report_fault
from daemon.errors import ConfigError, Problem, SystemicFault
from daemon.intake.fetch import FolderWatcher, MailboxLease, keep_leases
from daemon.intake.store import MailStore
from daemon.intake.workers import ReadPool
from daemon.metrics import Metrics
from daemon.office import digest, reminders, results
from daemon.outbound.drafts import Drafting
from daemon.outbound.send import Sender
from daemon.pipeline import Ahead, Groups, process_pending, read_ahead
from daemon.routing import rules as rules_module
from daemon.routing.rules import RuleSet
from daemon.understand import dkim_check
from daemon.understand.signatures import document_roots

log = logging.getLogger("vanthu.service")

# The health component of the sender's own drains failing (a damaged journal, the database
# refusing its writes), apart from the SMTP server's trouble ("smtp").
SENDING = "sending"

RULES_CHECK_SECONDS = 2.0
RESULTS_CHECK_SECONDS = 3.0


def sd_notify(message: str) -> None:
    """Tell systemd about our state (Type=notify); a no-op outside systemd."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(address)
            sock.sendall(message.encode())
        except OSError as err:
            log.warning("systemd.notify_failed", extra={"error": str(err)})


class Daemon:
    def __init__(self, cfg: Config, ruleset: RuleSet,
                 proving: selfcheck.Proving | None = None) -> None:
        # Refuse to start on a configuration that cannot work (an email that cannot be
        # composed with the configured identity or templates, a trust root that does not
        # load): a configuration error with every problem (exit 78, systemd does not restart),
        # rather than every mail quarantined one by one in production. `proving`: the check
        # begun before this module was imported (`vanthu run`); its answer is taken once the
        # database is ready, the PDFs having been drawn aside meanwhile.
        proving = proving or selfcheck.Proving(cfg, ruleset, aside=True)
        self.cfg = cfg
        self.rules = ruleset
        memory.tune()  # before the threads start: they would each make an arena
        self.engine = make_engine(cfg.storage.url)
        problems = []
        try:  # a new database is created; another schema stops the daemon until it is upgraded
            prepare(self.engine)
        except SchemaMismatch as err:  # exit 78: restarting cannot help
            problems.append(Problem("[storage] url", None, str(err)))
        problems[:0] = proving.problems()
        if problems:
            self.engine.dispose()
            raise ConfigError(problems)
        for note in selfcheck.notes(cfg):
            log.warning("config.note", extra={"note": note})
        self.store = MailStore(cfg.storage.data_dir)
        self.turns = Turns()  # storing and sending write before recording (SQLite: one writer)
        self.sender = Sender(self.engine, cfg.smtp, self.turns)
        self.pool = ReadPool(cfg.limits, dkim_check(cfg), roots=document_roots(cfg))
        self.stopping = asyncio.Event()
        self.wake_pipeline = asyncio.Event()
        self.wake_sender = asyncio.Event()
        self.stop_threads = threading.Event()
        self.ahead = Ahead()  # the pipeline's next batch, read while this one is recorded
        # On SQLite the emails of recorded mails are composed in the workers (on PostgreSQL
        # several daemons share the work: each composes in its own transaction).
        self.drafting = Drafting(cfg, self.pool, self.store) \
            if self.engine.dialect.name == "sqlite" else None

        self.watchers: list[FolderWatcher] = []
        self.metrics = Metrics(cfg.metrics, self.engine, lambda: self.pool.restarts)
        try:  # last: nothing after it may fail and leave the endpoint open
            self.metrics.start()
        except OSError as err:  # taken by another program, or not this machine's address
            self.engine.dispose()
            raise ConfigError([Problem("[metrics] listen", None, f"cannot listen on "
                                       f"{cfg.metrics.listen}: {err.strerror or err}")]) from err

    def reload_rules(self) -> None:
        """SIGHUP: load the rules again; a set with errors is rejected, the old one kept."""
        sd_notify("RELOADING=1")
        try:
            rules = rules_module.load(Path(self.cfg.rules.dir))
            # The new rules must still let vanthu compose every email (e.g. a receipt
            # template edited along with them) before they replace the running ones.
            if problems := selfcheck.prove(self.cfg, rules):
                raise ConfigError(problems)
            self.rules = rules
            log.info("rules.reloaded", extra={"rules": len(self.rules.rules)})
        except ConfigError as err:
            for problem in err.problems:
                log.error("rules.rejected", extra={"problem": str(problem)})
        sd_notify("READY=1")

    async def _wait(self, event: asyncio.Event, timeout: float) -> None:
        waiters = [asyncio.ensure_future(event.wait()),
                   asyncio.ensure_future(self.stopping.wait())]
        _, pending = await asyncio.wait(waiters, timeout=timeout,
                                        return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        if event is not self.stopping:  # a stop, once asked, is never forgotten
            event.clear()

    async def _pipeline_loop(self) -> None:
        paused = 0.0  # seconds of the current pause; 0 while the pipeline is healthy
        groups = Groups()  # one mail first, then more: each short life registers something
        while not self.stopping.is_set():
            await self._store_first(groups)
            try:
                began = time.monotonic()
                done = await asyncio.to_thread(process_pending, self.engine, self.cfg,
                                               self.store, self.rules, self.pool, groups.size,
                                               ahead=self.ahead, turns=self.turns,
                                               drafting=self.drafting)
                groups.done(done)
                if done:
                    self.metrics.batch.observe(time.monotonic() - began)
                    memory.trim()  # the batch's mails, read and composed, are freed
            except SystemicFault as err:
                self.metrics.faults.inc()
                # Not the mails' fault: keep them stored, say why, try again later by itself.
                paused = min(max(paused * 2, self.PAUSE_FIRST), self.PAUSE_MAX)
                log.error("pipeline.paused", extra={"cause": str(err), "retry_in": paused})
                await asyncio.to_thread(self._record_fault, str(err))
                await self._wait(asyncio.Event(), paused)
                continue
            except Exception:  # bulkhead: the loop must survive a database hiccup
                log.exception("pipeline.batch_failed")
                done = 0
                await self._wait(self.wake_pipeline, 5.0)
            if paused and done:
                paused = 0.0
                if await asyncio.to_thread(self._clear_fault):
                    log.info("pipeline.resumed")
            if done:
                self.wake_sender.set()
                for watcher in self.watchers:  # a rule may have asked to move a mail
                    watcher.nudge.set()
                continue
            await self._wait(self.wake_pipeline, 5.0)

    async def _store_first(self, groups: Groups) -> None:
        """While a fetch thread stores a backlog, wait (at most STORE_FIRST_SECONDS, then one
        batch is processed and this may wait again): the backlog is stored at the pace of
        the wire and the disk, not shared with the pipeline's work in this process. The
        workers read ahead meanwhile (`read_ahead`, a bounded amount): their core is idle."""
        deadline = time.monotonic() + self.STORE_FIRST_SECONDS
        while (self.turns.catching_up() and not self.stopping.is_set()
               and time.monotonic() < deadline):
            if self.pool is not None and self.engine.dialect.name == "sqlite":
                # The workers' core is idle meanwhile: they read what is stored already.
                try:
                    await asyncio.to_thread(read_ahead, self.engine, self.store, self.pool,
                                            self.ahead, groups)
                except Exception:  # reading ahead is an optimisation: the pipeline reads anyway
                    log.exception("pipeline.read_ahead_failed")
            await self._wait(asyncio.Event(), 0.1)

    STORE_FIRST_SECONDS = 30.0
    PAUSE_FIRST = 15.0  # seconds before the first retry after a systemic fault
    PAUSE_MAX = 600.0

    def _record_fault(self, cause: str, component: str = "pipeline") -> bool:
        """Tell `status` about a fault of `component`; False when it cannot be written."""
        try:
            report_fault(self.engine, component, cause)
            return True
        except Exception:  # the database may be the fault itself: the log still has it
            log.exception("health.unrecorded")
            return False

    def _clear_fault(self, component: str = "pipeline") -> bool:
        try:
            return clear_fault(self.engine, component)
        except Exception:
            log.exception("health.unrecorded")
            return False

    async def _sender_loop(self) -> None:
        """Drain the outbox until stopping. The drain stops between emails by itself and cuts
        the SMTP transaction in hand (daemon.outbound.send), so a stop never waits for a
        crawling server. Waits are asyncio timeouts: the monotonic clock."""
        # The last drain failed (and `status` was told), or this life has not drained yet: a
        # fault left by a daemon killed while failing is cleared by its first good drain.
        failing = True
        while not self.stopping.is_set():
            try:
                sent = await self.sender.drain(stopping=self.stopping)
            except Exception as err:  # bulkhead; an outcome not written waits in memory
                log.exception("outbox.drain_failed")
                # A damaged journal or database stops every drain until someone acts:
                # `status` names it (the emails only show as overdue much later).
                failing = await asyncio.to_thread(
                    self._record_fault, f"{type(err).__name__}: {err}", SENDING) or failing
                await self._wait(asyncio.Event(), 15.0)  # not woken early: the database is ill
                continue
            if failing and await asyncio.to_thread(self._clear_fault, SENDING):
                log.info("outbox.drain_recovered")
            failing = False
            if not sent:
                await self._wait(self.wake_sender, 15.0)

    async def _digest_job(self) -> None:
        """Queue the digest of the latest due period, unless already sent (idempotent)."""
        try:
            key = await asyncio.to_thread(digest.send_due, self.engine, self.cfg, self.rules,
                                          datetime.now(UTC))
        except Exception:  # bulkhead: the next period (or the next start) tries again
            log.exception("digest.failed")
            return
        if key:
            log.info("digest.queued", extra={"period": key})
            self.wake_sender.set()

    async def _reminder_job(self) -> None:
        """Queue today's deadline reminders (idempotent: once per case and day)."""
        try:
            today = datetime.now(self.cfg.agency.tz).date()
            if await asyncio.to_thread(reminders.send_reminders, self.engine, self.cfg,
                                       self.rules, today):
                self.wake_sender.set()
        except Exception:  # bulkhead: tomorrow's run (or the next start) tries again
            log.exception("reminders.failed")

    def _scheduler(self) -> AsyncIOScheduler:
        """APScheduler 3 on our event loop: the digest at each configured time (jobs in memory;
        what was sent is in the `digests` table)."""
        tz = self.cfg.agency.tz
        scheduler = AsyncIOScheduler(timezone=tz, job_defaults={
            "coalesce": True, "max_instances": 1, "misfire_grace_time": 3600})
        for moment in self.cfg.digest.times:
            hour, minute = (int(x) for x in moment.split(":"))
            scheduler.add_job(self._digest_job, CronTrigger(hour=hour, minute=minute,
                                                            timezone=tz),
                              id=f"digest-{moment}", name=f"digest {moment}")
        scheduler.add_job(self._reminder_job, CronTrigger(hour=7, minute=30, timezone=tz),
                          id="reminders", name="deadline reminders 07:30")
        return scheduler

    async def _results_loop(self) -> None:
        """Send the signed results the clerk drops in the results folder."""
        while not self.stopping.is_set():
            try:
                if await results.scan_inbox(self.cfg, self.engine):
                    self.wake_sender.set()
            except Exception:  # bulkhead: a bad file or a busy database must not stop the loop
                log.exception("results.scan_failed")
            await self._wait(asyncio.Event(), RESULTS_CHECK_SECONDS)

    def _rules_stamp(self) -> tuple[tuple[str, int, int], ...]:
        directory = Path(self.cfg.rules.dir)
        try:
            return tuple(sorted((p.name, p.stat().st_mtime_ns, p.stat().st_size)
                                for p in directory.glob("*.yaml")))
        except OSError:
            return ()

    async def _watch_rules(self) -> None:
        """Reload the rules when a rule file changes, as SIGHUP does. A change is loaded only
        once the files have looked the same for one whole interval, so a file caught half
        written by an editor (or a copy in progress) is never taken for the new rules."""
        loaded = self._rules_stamp()
        seen = loaded
        while not self.stopping.is_set():
            await self._wait(asyncio.Event(), RULES_CHECK_SECONDS)
            current = self._rules_stamp()
            if current != seen:
                seen = current  # still changing: look again next time
                log.info("rules.changed")
            elif current != loaded:
                loaded = current
                self.reload_rules()

    async def _watchdog(self) -> None:
        usec = int(os.environ.get("WATCHDOG_USEC", "0"))
        if not usec:
            return
        while not self.stopping.is_set():
            sd_notify("WATCHDOG=1")
            await self._wait(asyncio.Event(), usec / 2_000_000)

    async def run(self, until: Callable[[], bool] | None = None, signals: bool = True) -> None:
        """Run until SIGTERM/SIGINT (or until `until()` says so, checked every 0.2 s).

        `signals=False` leaves signal handling alone (a daemon run in a thread, in tests).
        """
        loop = asyncio.get_running_loop()
        if signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.stopping.set)
            loop.add_signal_handler(signal.SIGHUP, self.reload_rules)

        def stored() -> None:
            loop.call_soon_threadsafe(self.wake_pipeline.set)

        # The workers start first, in the background: the fork server imports the readers
        # while the rest of the start runs, so they hardly delay the first registration.
        self.pool.start()

        threads = []
        # One daemon fetches each mailbox (a lease); another on the same database stands by.
        held = [MailboxLease(self.engine, mailbox.name) for mailbox in self.cfg.mailboxes]
        for lease in held:
            await asyncio.to_thread(lease.renew)
        keeper = threading.Thread(target=keep_leases, args=(held, self.stop_threads),
                                  daemon=True, name="leases")
        keeper.start()
        for mailbox, lease in zip(self.cfg.mailboxes, held, strict=True):
            for folder in mailbox.folders:
                watcher = FolderWatcher(mailbox, folder, self.engine, self.store,
                                        self.cfg.limits.max_message_bytes, stored,
                                        self.stop_threads, lease, self.cfg.intake,
                                        turns=self.turns)
                self.watchers.append(watcher)
                thread = threading.Thread(target=watcher.run, daemon=True,
                                          name=f"imap:{mailbox.name}:{folder}")
                thread.start()
                threads.append(thread)
        # The pipeline first: the jobs below must not delay the first registration.
        tasks = [asyncio.create_task(self._pipeline_loop())]
        scheduler = self._scheduler()
        scheduler.start()
        await self._digest_job()  # a period missed while we were down is sent now
        await self._reminder_job()
        tasks += [asyncio.create_task(self._sender_loop()),
                 asyncio.create_task(self._watchdog()),
                 asyncio.create_task(self._watch_rules()),
                 asyncio.create_task(self.metrics.keep_writing(self.stopping)),
                 results_loop := asyncio.create_task(self._results_loop())]
        sd_notify("READY=1")
        log.info("daemon.started", extra={"mailboxes": len(self.cfg.mailboxes),
                                          "watchers": len(threads)})
        while not self.stopping.is_set():
            await self._wait(asyncio.Event(), 0.2)
            if until is not None and until():
                self.stopping.set()
        sd_notify("STOPPING=1")
        log.info("daemon.stopping")
        scheduler.shutdown(wait=False)
        self.stop_threads.set()
        for watcher in self.watchers:
            watcher.nudge.set()
        # A result being verified is dropped (its worker killed): verifying may take up to
        # VERIFY_SECONDS, past systemd's stop timeout, and the file is taken again at the next
        # start (a result is sent once whatever happens: it is known by its sha256).
        results_loop.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for thread in threads:
            await asyncio.to_thread(thread.join, 5.0)
        await asyncio.to_thread(keeper.join, 10.0)  # gives the leases up
        self.pool.close()
        self.metrics.stop()
        if self.sender.journal is not None:
            self.sender.journal.close()
        self.engine.dispose()
        log.info("daemon.stopped")
