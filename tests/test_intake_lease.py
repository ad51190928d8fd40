"""Two daemons on one database and one mailbox (issue 12, item 2, the mailbox's part): one of
them fetches it (it holds the lease "mailbox:NAME"), the other stands by, says so in its log
and for `vanthu status`, and takes over when the first is killed. Every mail is stored once.

The daemons are real processes (a lease's owner is a process), started by `DAEMON`: the real
`vanthu run`, renewing its leases every second instead of every 30 s, so the standby notices
the dead holder within seconds.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import Engine, Table, func, select

from daemon.db import health, leases, locations, messages, register_entries
from tests.conftest import ROOT, Office, wait_for
from tests.test_intake_crashloop import document

DAEMON = ("import sys; from daemon import cli; from daemon.intake.fetch import MailboxLease; "
          "MailboxLease.RENEW_SECONDS = 1.0; sys.exit(cli.main(sys.argv[1:]))")


@contextmanager
def daemon(office: Office, name: str) -> Iterator[subprocess.Popen[bytes]]:
    """One daemon process, its log in `office.dir/NAME.log`; killed when the block ends."""
    with open(office.dir / f"{name}.log", "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-c", DAEMON, "run", "--config", str(office.config_path)],
            cwd=ROOT, env={**os.environ}, stdout=out, stderr=out)
        try:
            yield process
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
            process.wait(30)


def log_of(office: Office, name: str) -> str:
    return (office.dir / f"{name}.log").read_text(errors="replace")


def holder(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return conn.scalar(select(leases.c.owner).where(leases.c.name == "mailbox:agency"))


def standby_note(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return conn.scalar(select(health.c.problem)
                           .where(health.c.component == "mailbox:agency"))


def count(engine: Engine, table: Table) -> int:
    with engine.connect() as conn:
        return int(conn.scalar(select(func.count()).select_from(table)) or 0)


@pytest.mark.db
def test_one_daemon_fetches_the_other_stands_by_and_takes_over(office: Office) -> None:
    office.config_path.write_text(office.config_path.read_text() + "\n[limits]\nworkers = 1\n")
    office.deliver(*[document(i, "lease") for i in range(4)])
    engine = office.engine()
    with daemon(office, "first") as first:
        wait_for(lambda: f"/{first.pid}/" in (holder(engine) or ""), timeout=60)
        with daemon(office, "second") as second:
            wait_for(lambda: standby_note(engine) is not None, timeout=60)
            wait_for(lambda: count(engine, messages) == 4, timeout=60)
            note = standby_note(engine)
            assert note is not None and f"/{first.pid}/" in note
            assert "mailbox.held_elsewhere" in log_of(office, "second")
            assert "mailbox.connected" not in log_of(office, "second")

            first.send_signal(signal.SIGKILL)
            first.wait(30)
            office.deliver(*[document(i, "lease") for i in range(4, 7)])

            wait_for(lambda: f"/{second.pid}/" in (holder(engine) or ""), timeout=60)
            wait_for(lambda: office.settled(7), timeout=60)
            assert "mailbox.connected" in log_of(office, "second")
            assert standby_note(engine) is None  # the standby took over: nothing to report
    assert count(engine, messages) == 7
    assert count(engine, locations) == 7
    with engine.connect() as conn:
        numbers = sorted(conn.scalars(select(register_entries.c.number)))
    engine.dispose()
    assert numbers == list(range(1, 8))

