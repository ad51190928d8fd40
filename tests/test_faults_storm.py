"""The fault suite's long runs (issue 12, item 9): a SIGKILL storm — at least 30 SIGKILLs at
random moments while 300 mails are fetched, registered and forwarded — and two and three
daemons on one database (same config, same mailbox, same SMTP server).

The cases run at once with the other fault cases (tests/faults/scenarios.py). The kill
moments are random (seeded; the seed is printed, and VANTHU_STORM_SEED replays
one); what is asserted holds whatever the timing: every mail stored once, every document
registered once with numbers 1..n, every email delivered at least once and at most twice.
"""

from __future__ import annotations

import functools
import os
import random
import subprocess
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from daemon.db import register_entries
from tests.faults.invariants import check, settled
from tests.faults.mails import documents
from tests.faults.rig import Rig, wait_for
from tests.faults.scenarios import outcome, register
from tests.faults.smtp import FaultySmtp
from tests.servers import Dovecot

STORM_MAILS = 300
STORM_KILLS = 30
STATUS = "[status]\nmin_free_mb = 0\n"


def _under_way(rig: Rig, proc: subprocess.Popen[bytes]) -> bool:
    """The daemon has logged its first line (or already ended)."""
    return proc.poll() is not None or rig.logging(proc)


def registered(rig: Rig) -> int:
    if not rig.has_database():
        return 0
    engine = rig.engine()
    try:
        with engine.connect() as conn:
            return int(conn.scalar(select(func.count()).select_from(register_entries)) or 0)
    except Exception:  # a database the first life had not finished creating
        return 0
    finally:
        engine.dispose()


def sigkill_storm(dovecot: Dovecot, directory: Path) -> str:
    """30 lives, each ended by a SIGKILL at a random moment 0–3 s after its first log line
    (Python's imports take seconds before it, and a kill there tests nothing of vanthu's):
    in its start-up (schema, leases, workers), fetching, registering or sending; then one last
    life finishes the work."""
    seed = int(os.environ.get("VANTHU_STORM_SEED") or random.SystemRandom().randrange(2**32))
    print(f"\nSIGKILL storm: seed {seed} (VANTHU_STORM_SEED={seed} replays it)")
    chance = random.Random(seed)
    with FaultySmtp() as smtp, Rig(dovecot, directory, smtp.port, extra=STATUS) as rig:
        rig.deliver(documents(STORM_MAILS, "storm"))
        progress = []
        started = time.monotonic()
        for _ in range(STORM_KILLS):
            proc = rig.start(log_name="storm")
            wait_for(functools.partial(_under_way, rig, proc), 120, "the first log line")
            try:
                proc.wait(chance.uniform(0.0, 3.0))
            except subprocess.TimeoutExpired:
                rig.kill(proc)
            else:
                raise AssertionError(f"the daemon exited by itself ({proc.returncode}):\n"
                                     + rig.logs()[-3000:])
            progress.append(registered(rig))
        storm_s = time.monotonic() - started
        proc = rig.start(log_name="storm")
        engine = rig.database()
        finish_s = wait_for(lambda: settled(engine, STORM_MAILS), 600,
                            "all 300 mails done after the storm")
        rig.stop(proc)
        figures = check(engine, smtp, mails=STORM_MAILS, registered=STORM_MAILS)
        lives_with_progress = sum(1 for a, b in zip([0, *progress], progress, strict=False)
                                  if b > a)
        print(f"\nSIGKILL storm (seed {seed}): registered after each kill: {progress}")
        return figures.line("sigkill storm 30x / 300 mails", seed=seed, kills=STORM_KILLS,
                            storm_s=f"{storm_s:.0f}", finish_s=f"{finish_s:.0f}",
                            registered_during_storm=progress[-1],
                            lives_with_progress=lives_with_progress, orphans=rig.orphans)


def several_daemons(dovecot: Dovecot, directory: Path, daemons: int) -> str:
    """`daemons` daemons with the same config (database, mailbox, SMTP server) at once: every
    document registered exactly once, every email delivered at most twice — and, as claims
    promise, exactly once."""
    with FaultySmtp() as smtp, Rig(dovecot, directory, smtp.port, extra=STATUS) as rig:
        rig.deliver(documents(32, f"daemons{daemons}"))  # 64 emails, as in the issue
        procs = [rig.start(log_name="daemon") for _ in range(daemons)]
        engine = rig.database()
        took = wait_for(lambda: settled(engine, 32), 180, "all 32 mails done")
        alive = sum(1 for p in procs if p.poll() is None)
        for proc in procs:
            rig.stop(proc)
        figures = check(engine, smtp, mails=32, registered=32)
        assert figures.twice == 0, f"{figures.twice} (email, recipient) pairs got two copies"
        return figures.line(f"{daemons} daemons, one database", settle_s=f"{took:.1f}",
                            alive_at_end=alive, exit_codes=[p.returncode for p in procs])


STORM = register("sigkill storm", sigkill_storm)
SEVERAL = [register(f"{n} daemons one database", several_daemons, daemons=n) for n in (2, 3)]


@pytest.mark.slow
@pytest.mark.parametrize("case", [STORM])
def test_sigkill_storm(request: pytest.FixtureRequest, dovecot: Dovecot,
                       tmp_path_factory: pytest.TempPathFactory, case: str) -> None:
    outcome(request, dovecot, tmp_path_factory, case)


@pytest.mark.slow
@pytest.mark.parametrize("case", SEVERAL)
def test_several_daemons_on_one_database(request: pytest.FixtureRequest, dovecot: Dovecot,
                                         tmp_path_factory: pytest.TempPathFactory,
                                         case: str) -> None:
    outcome(request, dovecot, tmp_path_factory, case)
