"""The fault suite, IMAP side (issue 12, item 9): the fault proxy between vanthu and Dovecot
cuts, stalls, resets or accepts-and-closes the connection in the middle of the fetching.

For accept-close the session in progress is cut first, so that the watcher meets a server
that accepts and closes each new connection. The mails are fetched in small batches
(batch_size = 5) so the fault lands while most of them are still on the server; the fault
lasts until the daemon has noticed it (it came back to the proxy at least twice, or for a
stall its socket timed out and it came back once), then the link is healed and every
invariant must hold: each mail stored once with its location, each document registered
once, numbers 1..n, every email at least once and at most twice.
The cases run at once (tests/faults/scenarios.py); each test reports its own.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from daemon.db import messages
from tests.faults.invariants import check, settled
from tests.faults.mails import documents
from tests.faults.proxy import FaultProxy
from tests.faults.rig import Rig, wait_for
from tests.faults.scenarios import outcome, register
from tests.faults.smtp import FaultySmtp
from tests.servers import Dovecot

MAILS = 60
MAILBOX = "batch_size = 5\ntimeout_seconds = 5\n"
STATUS = "[status]\nmin_free_mb = 0\n"


def stored(rig: Rig) -> int:
    engine = rig.engine()
    with engine.connect() as conn:
        value = int(conn.scalar(select(func.count()).select_from(messages)) or 0)
    engine.dispose()
    return value


def link_fault(dovecot: Dovecot, directory: Path, mode: str) -> str:
    """The link to Dovecot fails (`mode`) while the folder is being fetched; the daemon
    notices, comes back once the link is healed, and nothing is lost or done twice; status
    names the mailbox while the fault lasts."""
    with FaultySmtp() as smtp, FaultProxy(dovecot.imaps_port) as proxy, \
            Rig(dovecot, directory, smtp.port, imap_port=proxy.port, mailbox_extra=MAILBOX,
                extra=STATUS) as rig:
        rig.deliver(documents(MAILS, f"imap-{mode}", padding=20_000))
        proc = rig.start()
        rig.database()
        wait_for(lambda: stored(rig) >= 1, 120, "the first mails stored")
        if mode == "accept-close":  # the live session ends first, then every new one at once
            proxy.set_mode("cut")
        proxy.set_mode(mode)
        before = stored(rig)
        faulted = time.monotonic()
        comebacks = 1 if mode == "stall" else 2
        seen = proxy.accepted
        wait_for(lambda: proxy.accepted >= seen + comebacks, 120,
                 f"the watcher noticed the {mode} and came back")
        noticed = time.monotonic() - faulted
        during = rig.status()
        proxy.set_mode("pass")
        healed = time.monotonic()
        engine = rig.engine()
        wait_for(lambda: settled(engine, MAILS), 240, "every mail stored and sent after the fault")
        recovered = time.monotonic() - healed
        rig.stop(proc)
        figures = check(engine, smtp, mails=MAILS, registered=MAILS)
        assert during.code == 1 and during.names("mailbox", "agency"), during.output
        return figures.line(f"imap proxy {mode}", stored_before=before,
                            noticed_s=f"{noticed:.1f}", recover_s=f"{recovered:.1f}",
                            status=during.code, connections=proxy.accepted)


LINK = [register(f"imap {m}", link_fault, mode=m) for m in ("cut", "stall", "reset",
                                                              "accept-close")]


@pytest.mark.parametrize("case", LINK)
def test_imap_link_fault_while_fetching(request: pytest.FixtureRequest, dovecot: Dovecot,
                                        tmp_path_factory: pytest.TempPathFactory,
                                        case: str) -> None:
    outcome(request, dovecot, tmp_path_factory, case)
