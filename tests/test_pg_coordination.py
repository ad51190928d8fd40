"""Several daemons on one database (issue 16, item 3), piece by piece: what two daemons racing
for the same thing get on PostgreSQL (READ COMMITTED, row locks, SKIP LOCKED) and on SQLite
(one writer at a time). Tests marked `db` run on both stores.

Real races: threads or processes with their own connections, released together; the
database settles who wins. tests/test_failover.py runs the whole of it with real daemons.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, func, insert, select

from daemon import leases
from daemon.db import (
    cases,
    counters,
    digests,
    health,
    insert_new,
    make_engine,
    next_number,
    outbox,
    register_entries,
    reminders,
    report_fault,
    upgrade,
)
from daemon.db import (
    leases as lease_rows,
)
from daemon.intake.store import MailStore
from daemon.office import digest
from daemon.office.reminders import send_reminders
from daemon.pipeline import process_pending
from tests.desk import Desk
from tests.faults.mails import document
from tests.faults.rig import wait_for

ROOT = Path(__file__).resolve().parent.parent
THREADS = 6


def race(work: Callable[[int], Any], threads: int = THREADS) -> list[Any]:
    """Run `work(i)` in `threads` threads released at once; their results (an exception is a
    result too, re-raised here)."""
    gate = threading.Barrier(threads)
    results: list[Any] = [None] * threads

    def run(i: int) -> None:
        gate.wait()
        try:
            results[i] = work(i)
        except BaseException as err:  # handed back to the test
            results[i] = err

    pool = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(120)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results


# Names people write: Vietnamese with diacritics, spaces, punctuation, other scripts; no
# control characters (PostgreSQL text cannot hold NUL).
NAMES = st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=80)


# --- counters: register numbers stay gap-free --------------------------------------------


@pytest.mark.db
def test_numbers_gap_free_under_concurrent_transactions(database: Engine) -> None:
    """Six writers take numbers of a new counter at once, one transaction each number, a third
    of them rolled back after taking it: the committed numbers are exactly 1..n."""
    name = "incoming:2026 — sổ đến"

    def take(i: int) -> list[int]:
        kept = []
        for round_ in range(12):
            try:
                with database.begin() as conn:
                    number = next_number(conn, name)
                    if (i + round_) % 3 == 0:
                        raise RuntimeError("rolled back")
                kept.append(number)
            except RuntimeError:
                pass
        return kept

    numbers = sorted(n for kept in race(take) for n in kept)
    assert numbers == list(range(1, len(numbers) + 1))
    assert len(numbers) == THREADS * 12 - THREADS * 4
    with database.connect() as conn:
        assert conn.scalar(select(counters.c.value).where(counters.c.name == name)) == len(numbers)


@pytest.mark.db
@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=NAMES)
def test_insert_new_claims_once(database: Engine, name: str) -> None:
    """Any key: the first insert claims it, the second finds it claimed."""
    key = name[:40]
    with database.begin() as conn:
        already = conn.scalar(select(digests.c.period).where(digests.c.period == key))
        first = insert_new(conn, digests, period=key, sent_at=datetime.now(UTC))
        second = insert_new(conn, digests, period=key, sent_at=datetime.now(UTC))
    assert first is (already is None)
    assert second is False


# --- digest periods and reminder days run once ------------------------------------------


@pytest.mark.db
def test_digest_period_claimed_by_one_daemon(tmp_path: Path) -> None:
    desk = Desk(tmp_path)
    email = EmailMessage()
    claimed = race(lambda _: digest.claim(desk.engine, desk.cfg, desk.rules, email, [],
                                          "2026-11-27T06:00"))
    assert sum(1 for c in claimed if c is not None) == 1
    with desk.engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(digests)) == 1
    desk.engine.dispose()


@pytest.mark.db
def test_reminder_day_sent_once(tmp_path: Path) -> None:
    """Six daemons run the reminder job of the same day at once: one reminder per case."""
    desk = Desk(tmp_path)
    today = date(2026, 11, 26)  # a Thursday
    with desk.engine.begin() as conn:
        for n in range(3):
            conn.execute(insert(cases).values(
                code=f"000.00.22.H56-261120-{n:04d}", opened_at=datetime.now(UTC),
                status="in_progress", applicant_name="Nguyễn Thị Ánh Tuyết",
                applicant_email="anh.tuyet@gmail.com", lead_department="qlxd",
                deadline=today + timedelta(days=1)))
    sent = race(lambda _: send_reminders(desk.engine, desk.cfg, desk.rules, today))
    assert sum(sent) == 3
    with desk.engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(reminders)) == 3
        assert conn.scalar(select(func.count()).select_from(outbox)) == 3
    desk.engine.dispose()


# --- the pipeline's stored mails are claimed ---------------------------------------------


class CountingStore(MailStore):
    """The real store, counting how often each mail's bytes are read."""

    def __init__(self, data_dir: Path) -> None:
        super().__init__(data_dir)
        self.reads: Counter[str] = Counter()
        self.lock = threading.Lock()

    def read(self, sha256: str) -> bytes:
        with self.lock:
            self.reads[sha256] += 1
        return super().read(sha256)


@pytest.mark.db
def test_pipelines_of_several_daemons_share_the_mails(store: str, tmp_path: Path) -> None:
    """Four pipelines at once over 12 stored documents, three mails a batch: every document
    registered once with numbers 1..12; on PostgreSQL each mail is also read once (a claimed
    mail is passed by, not read by a second daemon)."""
    desk = Desk(tmp_path)
    desk.receive(*(document(7000 + n, "pipelines") for n in range(12)))
    counting = CountingStore(desk.cfg.storage.data_dir)

    def drain(_: int) -> int:
        done = 0
        while looked := process_pending(desk.engine, desk.cfg, counting, desk.rules, limit=3):
            done += looked
        return done

    race(drain, threads=4)
    with desk.engine.connect() as conn:
        entries = conn.execute(select(register_entries.c.number,
                                      register_entries.c.message_id)).all()
    assert sorted(e.number for e in entries) == list(range(1, 13))
    assert len({e.message_id for e in entries}) == 12
    assert len(counting.reads) == 12
    if store == "postgresql":
        assert max(counting.reads.values()) == 1, counting.reads.most_common(3)
    desk.engine.dispose()


# --- mailbox leases ----------------------------------------------------------------------


@pytest.mark.db
def test_lease_made_at_once_by_threads_of_one_daemon(database: Engine) -> None:
    """The same daemon making a new lease from several threads: no key violation, one row."""
    def take(_: int) -> str | None:
        with database.begin() as conn:
            return leases.acquire(conn, "mailbox:Hộp thư Văn phòng", 90)

    assert race(take) == [None] * THREADS
    with database.connect() as conn:
        rows = conn.execute(select(lease_rows.c.owner)).all()
    assert [r.owner for r in rows] == [str(leases.me())]


@pytest.mark.db
def test_lease_of_another_machine_is_taken_only_when_expired(database: Engine) -> None:
    """A daemon on another machine is never guessed dead: its lease is taken over when it
    expires, not before; a lease this machine's dead process held is taken at once."""
    now = datetime.now(UTC)
    other = "máy-chủ-2.tayninh.gov.vn/4242/98765"
    dead = f"{leases.me().host}/999999999/1"  # no such pid on this machine
    with database.begin() as conn:
        conn.execute(insert(lease_rows).values(name="mailbox:Phòng Quản lý xây dựng",
                                                  owner=other, expires_at=now + timedelta(90),
                                                  acquired_at=now))
        conn.execute(insert(lease_rows).values(name="mailbox:Văn phòng Sở", owner=dead,
                                                  expires_at=now + timedelta(seconds=90),
                                                  acquired_at=now))
    with database.begin() as conn:
        assert leases.acquire(conn, "mailbox:Phòng Quản lý xây dựng", 90, now) == other
        assert leases.acquire(conn, "mailbox:Văn phòng Sở", 90, now) is None
        leases.release(conn, "mailbox:Phòng Quản lý xây dựng")  # not ours: stays
    later = now + timedelta(days=90, seconds=1)
    with database.begin() as conn:
        assert leases.acquire(conn, "mailbox:Phòng Quản lý xây dựng", 90, later) is None
        owners = dict(conn.execute(select(lease_rows.c.name, lease_rows.c.owner)).all())
    assert set(owners.values()) == {str(leases.me())}


RACER = """
import sys, time, pathlib
from daemon import leases
from daemon.db import make_engine
engine = make_engine(sys.argv[1])
folder = pathlib.Path(sys.argv[2])
names = sys.argv[3:]
(folder / f"ready-{leases.me().pid}").touch()
while not (folder / "go").exists():
    time.sleep(0.001)
won = set()
for _ in range(20):
    for name in names:
        with engine.begin() as conn:
            if leases.acquire(conn, name, 60) is None:
                won.add(name)
print("\\n".join(sorted(won)))
"""


def test_lease_exclusive_across_daemons(pg_url: str, tmp_path: Path) -> None:
    """Three processes (three owners) race for eight new mailbox leases on PostgreSQL,
    released at the same instant, twenty rounds each: every lease is won by exactly one,
    and none meets an error (a key violation of two inserts, a deadlock)."""
    engine = make_engine(pg_url)
    upgrade(engine)
    names = [f"mailbox:Hộp thư số {n} — Phòng Quản lý" for n in range(8)]
    procs = [subprocess.Popen([sys.executable, "-c", RACER, pg_url, str(tmp_path), *names],
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(3)]
    wait_for(lambda: len(list(tmp_path.glob("ready-*"))) == 3, 120, "the racers' start")
    (tmp_path / "go").touch()
    results = [p.communicate(timeout=120) for p in procs]
    for proc, (_, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err
    winners = Counter(name for out, _ in results for name in out.split("\n") if name)
    assert winners == Counter({name: 1 for name in names})
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(lease_rows)) == 8
    engine.dispose()


@pytest.mark.db
def test_standby_daemons_report_one_fault_at_once(database: Engine) -> None:
    """Standby daemons note at once that a mailbox is fetched elsewhere: one row a mailbox,
    no error (a look-then-insert failed on the key on PostgreSQL)."""
    problem = "do một tiến trình vanthu khác lấy thư"
    names = [f"mailbox:Hộp thư Phòng số {k}" for k in range(20)]

    def note(i: int) -> None:
        for name in names:
            report_fault(database, name, f"{name} {problem} ({i})")

    race(note)
    with database.connect() as conn:
        rows = conn.execute(select(health.c.component, health.c.problem)).all()
    assert sorted(r.component for r in rows) == sorted(names)
    assert all(problem in r.problem for r in rows)
