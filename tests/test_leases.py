"""Leases across daemons: one holder at a time; an expired lease, or one whose owner on this
machine has ended, is taken over; an owner on another machine is never guessed dead."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta

import pytest
from sqlalchemy import Engine, insert, select

from daemon import leases as leases_module
from daemon.db import leases, utcnow
from daemon.leases import Owner, acquire, me, release

pytestmark = pytest.mark.db


def _hold(engine, owner: str, seconds: float) -> None:  # type: ignore[no-untyped-def]
    now = utcnow()
    with engine.begin() as conn:
        conn.execute(insert(leases).values(name="mailbox:Hộp thư chính", owner=owner,
                                           expires_at=now + timedelta(seconds=seconds),
                                           acquired_at=now))


def test_owner_names_round_trip_and_this_process_is_alive() -> None:
    owner = me()
    assert Owner.parse(str(owner)) == owner
    assert not owner.gone()
    assert Owner.parse("no-slashes") is None and Owner.parse("h/x/1") is None
    # A host name may itself hold slashes or Vietnamese letters: the last two fields count.
    assert Owner.parse("máy/chủ/12/345") == Owner("máy/chủ", 12, "345")


@pytest.mark.db
def test_a_live_owner_keeps_its_lease_until_it_expires(database: Engine) -> None:
    engine = database
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        alive = Owner(me().host, child.pid, leases_module._start_time(child.pid) or "?")
        _hold(engine, str(alive), 600)
        with engine.begin() as conn:
            assert acquire(conn, "mailbox:Hộp thư chính", 60) == str(alive)
        child.kill()
        child.wait()
        # Its process ended: the lease is free at once, long before the expiry.
        with engine.begin() as conn:
            assert acquire(conn, "mailbox:Hộp thư chính", 60) is None
            assert conn.scalar(select(leases.c.owner)) == str(me())
    finally:
        child.kill()
        child.wait()


@pytest.mark.db
def test_an_owner_elsewhere_is_waited_for_until_the_expiry(database: Engine) -> None:
    engine = database
    _hold(engine, "may-khac.so-xd.gov.vn/1/1", 600)
    with engine.begin() as conn:
        assert acquire(conn, "mailbox:Hộp thư chính", 60) == "may-khac.so-xd.gov.vn/1/1"
    with engine.begin() as conn:
        later = utcnow() + timedelta(seconds=601)
        assert acquire(conn, "mailbox:Hộp thư chính", 60, now=later) is None


@pytest.mark.db
def test_a_pid_reused_by_another_process_is_not_the_owner(database: Engine) -> None:
    engine = database
    mine = me()
    _hold(engine, str(Owner(mine.host, mine.pid, "1")), 600)  # same pid, other start time
    with engine.begin() as conn:
        assert acquire(conn, "mailbox:Hộp thư chính", 60) is None


@pytest.mark.db
def test_renew_and_release(database: Engine) -> None:
    engine = database
    with engine.begin() as conn:
        assert acquire(conn, "x", 1) is None
        first = conn.scalar(select(leases.c.expires_at))
    with engine.begin() as conn:
        assert acquire(conn, "x", 600) is None
        renewed = conn.scalar(select(leases.c.expires_at))
        assert renewed is not None and first is not None and renewed > first
        release(conn, "x")
        assert conn.scalar(select(leases.c.name)) is None
