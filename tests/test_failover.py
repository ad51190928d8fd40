"""Failover (issue 16, item 3): three real `vanthu run` daemons share a dozen mailboxes on one
Dovecot, one PostgreSQL database and one SMTP server, while mail keeps arriving. In the middle
the daemon watching the mailboxes is SIGKILLed (as the OOM killer would), and later the one
that took them over is stopped with SIGTERM (as systemd stops a unit).

Asserted from the database and the SMTP server's record, never from the daemons' own word:
every mail stored and registered once, register numbers 1..n with no gap, every email
delivered at least once and at most twice, every mailbox leased again by a live daemon within
the lease time after each fault and its next mail stored, and no daemon met a unique-key
violation or a deadlock (the races are settled by claims, not by errors and retries).

The daemons run with short leases (tests/short_leases.py: held LEASE_SECONDS, renewed every
quarter of it). A table of what was done when is printed (`pytest -s`) for the notes.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from imapclient import IMAPClient
from sqlalchemy import Engine, func, select

from daemon.db import leases, locations, make_engine, messages, upgrade
from daemon.leases import Owner
from tests.conftest import RULES
from tests.faults import rig
from tests.faults.invariants import check, settled
from tests.faults.mails import document
from tests.faults.smtp import FaultySmtp
from tests.servers import Dovecot

ROOT = Path(__file__).resolve().parent.parent
MAILBOXES = 12
LEASE_SECONDS = 10.0
# Log events that would mean a race was lost and papered over by an error.
RACE_ERRORS = ("IntegrityError", "UniqueViolation", "DeadlockDetected", "deadlock detected")


def mailbox_name(index: int) -> str:
    """Vietnamese names with diacritics: they become lease names and checkpoint keys."""
    return f"Hộp thư Phòng số {index:02d}"


@dataclass
class Running:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def events(self) -> list[dict[str, object]]:
        found = []
        for line in self.log.read_text(encoding="utf-8", errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                found.append(json.loads(line))
        return found


@dataclass
class Cluster:
    """A dozen mailboxes, one database URL, one data folder; daemons started on demand."""

    dovecot: Dovecot
    dir: Path
    url: str
    smtp_port: int
    users: list[str] = field(default_factory=list)
    daemons: list[Running] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    table: list[str] = field(default_factory=list)
    numbers: int = 0  # documents delivered so far
    ended: set[str] = field(default_factory=set)  # daemons this test ended

    def __post_init__(self) -> None:
        self.users = [f"agency{next(rig._users)}" for _ in range(MAILBOXES)]
        boxes = "".join(f"""
[[mailboxes]]
name = "{mailbox_name(i)}"
host = "127.0.0.1"
port = {self.dovecot.imaps_port}
security = "tls"
ca_file = "{self.dovecot.cert}"
username = "{user}"
password = "pw-{user}"
poll_seconds = 1
""" for i, user in enumerate(self.users))
        (self.dir / "config.toml").write_text(f"""
[agency]
name = "Sở Xây dựng tỉnh Tây Ninh"
code = "000.00.22.H56"
timezone = "Asia/Ho_Chi_Minh"
addresses = ["vanthu.sxd@tayninh.gov.vn"]
message_id_domain = "sxd.tayninh.gov.vn"

[storage]
data_dir = "{self.dir / 'data'}"
database_url = "{self.url}"
{boxes}
[smtp]
host = "127.0.0.1"
port = {self.smtp_port}
security = "none"
from = "vanthu.sxd@tayninh.gov.vn"
timeout_seconds = 10

[rules]
dir = "{RULES}"

[security]
authserv_id = "mx1.tayninh.gov.vn"

[digest]
to = []

[limits]
workers = 1

[status]
min_free_mb = 0

[intake]
start = "all"
""", encoding="utf-8")

    def note(self, event: str, **figures: object) -> None:
        extra = " ".join(f"{k}={v}" for k, v in figures.items())
        self.table.append(f"FAILOVER | t={time.monotonic() - self.started:6.1f}s | "
                          f"{event:44} | {extra}")

    def deliver_all(self, boxes: range | list[int]) -> int:
        """One new document to each mailbox of `boxes`; how many."""
        for index in boxes:
            client = IMAPClient("127.0.0.1", port=self.dovecot.imap_port, ssl=False,
                                timeout=60)
            client.login(self.users[index], f"pw-{self.users[index]}")
            self.numbers += 1
            client.append("INBOX", document(5000 + self.numbers, "failover"))
            client.logout()
        return len(boxes)

    def start(self, name: str) -> Running:
        log = self.dir / f"{name}.log"
        env = dict(os.environ, VANTHU_LEASE_SECONDS=str(LEASE_SECONDS))
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "tests.short_leases", "run", "--config",
                 str(self.dir / "config.toml")], cwd=ROOT, env=env, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True)
        running = Running(name, proc, log)
        self.daemons.append(running)
        return running

    def alive(self) -> dict[int, Running]:
        """The running daemons by pid; a daemon that ended by itself fails the test at once."""
        for daemon in self.daemons:
            if daemon.proc.poll() is not None and daemon.name not in self.ended:
                raise AssertionError(
                    f"daemon {daemon.name} exited by itself ({daemon.proc.returncode}):\n"
                    + daemon.log.read_text(encoding="utf-8", errors="replace")[-3000:])
        return {d.proc.pid: d for d in self.daemons if d.proc.poll() is None}

    def holders(self, engine: Engine) -> dict[str, int | None]:
        """Mailbox → the pid of the daemon holding its lease (None: not leased)."""
        with engine.connect() as conn:
            rows = conn.execute(select(leases.c.name, leases.c.owner)).all()
        owners = {name.removeprefix("mailbox:"): Owner.parse(owner) for name, owner in rows}
        return {mailbox_name(i): (o.pid if (o := owners.get(mailbox_name(i))) else None)
                for i in range(MAILBOXES)}

    def held_by(self, engine: Engine) -> Counter[str]:
        """Running daemon's name → how many mailboxes it holds."""
        live = self.alive()
        return Counter(live[pid].name for pid in self.holders(engine).values()
                       if pid is not None and pid in live)

    def busiest(self, engine: Engine) -> tuple[Running, int]:
        """The running daemon holding the most mailboxes, and how many."""
        name, held = self.held_by(engine).most_common(1)[0]
        return next(d for d in self.daemons if d.name == name), held

    def all_leased_by_live(self, engine: Engine) -> bool:
        live = self.alive()
        return all(pid in live for pid in self.holders(engine).values())

    def end(self, daemon: Running, sig: signal.Signals) -> float:
        """Send `sig`, wait for the exit, end what the daemon left in its process group;
        return how long the exit took."""
        began = time.monotonic()
        self.ended.add(daemon.name)
        if daemon.proc.poll() is None:
            daemon.proc.send_signal(sig)
        try:
            daemon.proc.wait(120)
        finally:
            for pid in rig.group_members(daemon.proc.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        return time.monotonic() - began

    def close(self) -> None:
        for daemon in self.daemons:
            if daemon.proc.poll() is None:
                daemon.proc.kill()
            self.end(daemon, signal.SIGKILL)


def stored_per_mailbox(engine: Engine) -> Counter[str]:
    with engine.connect() as conn:
        return Counter(conn.scalars(select(locations.c.mailbox)))


def count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.scalar(select(func.count()).select_from(messages)) or 0)


def takeover(cluster: Cluster, engine: Engine, event: str, before: Counter[str]) -> None:
    """After a fault: every mailbox leased by a live daemon within the lease time, then a new
    mail to every mailbox stored (the mailbox is watched again, not only leased)."""
    took = rig.wait_for(lambda: cluster.all_leased_by_live(engine), 120,
                        f"every mailbox leased by a live daemon after {event}")
    assert took <= LEASE_SECONDS, f"mailboxes taken over {took:.1f} s after {event}"
    cluster.deliver_all(range(MAILBOXES))
    fetched = rig.wait_for(
        lambda: all(stored_per_mailbox(engine)[mailbox_name(i)] > before[mailbox_name(i)]
                    for i in range(MAILBOXES)), 120, f"a new mail in every mailbox after {event}")
    cluster.note(f"every mailbox leased again after {event}", seconds=f"{took:.1f}",
                 lease_seconds=LEASE_SECONDS, holders=dict(cluster.held_by(engine)),
                 new_mail_stored_s=f"{fetched:.1f}")


@pytest.mark.slow
def test_three_daemons_one_killed_one_stopped(dovecot: Dovecot, pg_url: str,
                                              tmp_path: Path) -> None:
    engine = make_engine(pg_url)
    upgrade(engine)  # as the admin does once (`vanthu db upgrade`) before starting daemons
    with FaultySmtp() as smtp:
        cluster = Cluster(dovecot, tmp_path, pg_url, smtp.port)
        try:
            run(cluster, engine, smtp)
        except BaseException:
            for daemon in cluster.daemons:
                print(f"\n--- daemon {daemon.name} (the end of its log)\n"
                      + daemon.log.read_text(encoding="utf-8", errors="replace")[-4000:])
            raise
        finally:
            cluster.close()
            print("\n" + "\n".join(cluster.table))
            engine.dispose()


def run(cluster: Cluster, engine: Engine, smtp: FaultySmtp) -> None:
    mails = cluster.deliver_all(range(MAILBOXES))
    daemons = [cluster.start(name) for name in ("A", "B", "C")]
    cluster.note("3 daemons started", mails_waiting=mails)
    rig.wait_for(lambda: cluster.all_leased_by_live(engine), 180, "every mailbox leased")
    rig.wait_for(lambda: count(engine) >= MAILBOXES // 2, 180, "mail stored")
    cluster.note("every mailbox leased", holders=dict(cluster.held_by(engine)),
                 stored=count(engine))
    mails += cluster.deliver_all(range(0, MAILBOXES, 2))  # mail arriving during the run
    cluster.note("6 more mails delivered", delivered=mails)

    # SIGKILL the daemon holding the most mailboxes.
    before = stored_per_mailbox(engine)
    victim, held = cluster.busiest(engine)
    cluster.end(victim, signal.SIGKILL)
    cluster.note(f"SIGKILL daemon {victim.name}", mailboxes_held=held, stored=count(engine))
    takeover(cluster, engine, f"SIGKILL of {victim.name}", before)
    mails += MAILBOXES

    # SIGTERM the daemon holding the most mailboxes now.
    before = stored_per_mailbox(engine)
    stopped, held = cluster.busiest(engine)
    took = cluster.end(stopped, signal.SIGTERM)
    assert stopped.proc.returncode == 0, stopped.log.read_text(errors="replace")[-3000:]
    cluster.note(f"SIGTERM daemon {stopped.name}", mailboxes_held=held,
                 exit_s=f"{took:.1f}", stored=count(engine))
    takeover(cluster, engine, f"SIGTERM of {stopped.name}", before)
    mails += MAILBOXES

    finish = rig.wait_for(lambda: settled(engine, mails), 240, f"all {mails} mails done")
    last = next(iter(cluster.alive().values()))
    cluster.note("all mails registered and emails sent", mails=mails,
                 settle_s=f"{finish:.1f}", survivor=last.name)
    cluster.end(last, signal.SIGTERM)
    assert last.proc.returncode == 0

    figures = check(engine, smtp, mails=mails, registered=mails)
    for daemon in daemons:
        text = daemon.log.read_text(encoding="utf-8", errors="replace")
        for word in RACE_ERRORS:
            assert word not in text, f"daemon {daemon.name} met {word}:\n{text[-3000:]}"
        events = daemon.events()
        cluster.note(f"daemon {daemon.name}: what it did",
                     registered=sum(int(str(e.get("mails", 0))) for e in events
                                    if e.get("event") == "pipeline.committed"),
                     sent=sum(1 for e in events if e.get("event") == "outbox.sent"),
                     leases_taken=sum(1 for e in events
                                      if e.get("event") == "mailbox.lease_taken"),
                     exit=daemon.proc.returncode)
    cluster.note("invariants", stored=figures.stored, registered=figures.registered,
                 numbers=f"1..{figures.registered}", emails=figures.emails,
                 copies=f"{figures.copies_min}..{figures.copies_max}", twice=figures.twice,
                 failed=figures.failed)
