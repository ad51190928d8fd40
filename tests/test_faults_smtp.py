"""The fault suite, SMTP side (issue 12, item 9): a server that answers 421 at the greeting,
451 to RCPT or DATA, 550 for one chosen recipient, hangs or resets after DATA, or crawls; and
the fault proxy on the link to it (cut or stalled after the data, accept-and-close).

Each case lets the real daemon (a subprocess) meet the fault, looks at `vanthu status` while
the fault lasts, ends the fault, lets the daemon finish, and then checks the invariants from
the database and the server's record: every mail stored and registered once, numbers 1..n,
every email delivered at least once and at most twice per recipient. The status verdict is
asserted last, so a status that is still untruthful does not hide a broken invariant.
The cases run at once (tests/faults/scenarios.py); each test reports its own.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.faults.invariants import check, settled
from tests.faults.mails import documents
from tests.faults.proxy import FaultProxy
from tests.faults.rig import Rig, Status, wait_for
from tests.faults.scenarios import outcome, register
from tests.faults.smtp import FaultySmtp
from tests.servers import Dovecot

DIRECTOR = "giamdoc.sxd@example.gov.vn"
# Status may call SMTP failing after 3 s and an email overdue after 3 s: the cases are short.
STATUS = """[status]
smtp_failing_minutes = 0.05
outbox_overdue_minutes = 0.05
min_free_mb = 0
"""


def status_during_fault(rig: Rig, timeout: float = 40.0) -> Status:
    """`vanthu status` while the fault lasts: the first unhealthy answer, or the last one when
    it never said so within `timeout` (event-driven: the verdict needs the configured few
    seconds of failure to pass first)."""
    deadline = time.monotonic() + timeout
    while True:
        found = rig.status()
        if found.code != 0 or time.monotonic() > deadline:
            return found
        time.sleep(1.0)


def recover(rig: Rig, smtp: FaultySmtp, mails: int) -> float:
    """End the fault and wait until everything is sent; return the seconds it took."""
    started = time.monotonic()
    smtp.set_mode("accept")
    engine = rig.engine()

    def done() -> bool:
        if settled(engine, mails):
            return True
        rig.retry_now()  # also a row whose failed try was recorded after the fault ended
        return False

    wait_for(done, 180, "everything sent after the fault")
    engine.dispose()
    return time.monotonic() - started


def refused_for_now(dovecot: Dovecot, directory: Path, mode: str) -> str:
    """Refused for now: nothing is lost or failed, each email arrives once the server takes
    mail again (a 451 after the data is a refusal, not a copy), and status says SMTP is
    failing while it is."""
    with FaultySmtp(mode) as smtp, Rig(dovecot, directory, smtp.port, extra=STATUS) as rig:
        rig.deliver(documents(2, f"smtp-{mode}"))
        proc = rig.start()
        rig.database()
        wait_for(lambda: rig.tried() >= 1, 180, "an email tried and refused")
        during = status_during_fault(rig)
        took = recover(rig, smtp, 2)
        rig.stop(proc)
        figures = check(rig.engine(), smtp, mails=2, registered=2)
        assert during.code == 1 and during.names("smtp", "421", "451"), during.output
        return figures.line(f"smtp {mode}", status=during.code, recover_s=f"{took:.1f}",
                            sessions=smtp.sessions)


def one_refused_for_good(dovecot: Dovecot, directory: Path) -> str:
    """A 550 for the Director alone: the others get the forward once, the Director's refusal
    is recorded on the row by address, and status is unhealthy and names the address."""
    with FaultySmtp("550-one", refuse=DIRECTOR) as smtp, \
            Rig(dovecot, directory, smtp.port, extra=STATUS) as rig:
        rig.deliver(documents(2, "smtp-550"))
        proc = rig.start()
        engine = rig.database()
        wait_for(lambda: settled(engine, 2), 180, "everything sent or refused")
        rig.stop(proc)
        figures = check(engine, smtp, mails=2, registered=2)
        got = smtp.accepted()
        assert not [pair for pair in got if pair[1] == DIRECTOR]
        assert sum(1 for pair in got if pair[1] != DIRECTOR) >= 2 * 3  # 3 others per forward
        found = rig.status()
        assert DIRECTOR in found.output, found.output
        assert found.code == 1, found.output
        return figures.line("smtp 550 one recipient", status=found.code,
                            refused=DIRECTOR.split("@")[0])


def lost_after_data(dovecot: Dovecot, directory: Path, mode: str) -> str:
    """The server read the whole message and then hung (past the 10 s socket timeout) or
    reset: it may have delivered it, so a retry may make a second copy — never a third (a
    row whose tries were lost twice may fail 'in doubt' instead, with its copy delivered)."""
    with FaultySmtp(mode) as smtp, Rig(dovecot, directory, smtp.port, extra=STATUS) as rig:
        rig.deliver(documents(2, f"smtp-{mode}"))
        proc = rig.start()
        rig.database()
        wait_for(lambda: rig.tried() >= 1, 180, "an email lost after its DATA")
        during = status_during_fault(rig)
        took = recover(rig, smtp, 2)
        rig.stop(proc)
        figures = check(rig.engine(), smtp, mails=2, registered=2, in_doubt_ok=True)
        assert figures.copies_max >= 1
        assert during.code == 1 and during.names("smtp"), during.output
        return figures.line(f"smtp {mode}", status=during.code, recover_s=f"{took:.1f}")


def crawling(dovecot: Dovecot, directory: Path) -> str:
    """Every answer 1 s late (under the 10 s timeout, so each email gets through, slowly):
    SIGTERM stops the drain between emails, well within systemd's 90 s TimeoutStopSec and far
    below the time the whole queue would take (about a minute); after a restart, with the
    server well again, everything is sent, no email more than twice."""
    with FaultySmtp("crawl", crawl_seconds=1.0) as smtp, \
            Rig(dovecot, directory, smtp.port, extra=STATUS) as rig:
        rig.deliver(documents(4, "smtp-crawl"))  # 8 emails of about 7 s each
        proc = rig.start()
        rig.database()
        wait_for(lambda: len(smtp.deliveries()) >= 1, 180, "a first email through")
        stop_s = rig.stop(proc)
        proc = rig.start()
        took = recover(rig, smtp, 4)
        rig.stop(proc)
        figures = check(rig.engine(), smtp, mails=4, registered=4, in_doubt_ok=True)
        assert stop_s < 30, f"SIGTERM took {stop_s:.0f} s with a crawling server"
        return figures.line("smtp crawl 1 s + SIGTERM", stop_s=f"{stop_s:.1f}",
                            finish_s=f"{took:.1f}")


def link_fault(dovecot: Dovecot, directory: Path, mode: str) -> str:
    """The fault proxy between vanthu and the SMTP server: `accept-close` from the start (no
    session at all), or `cut` / `stall` the moment the first message's data has arrived (its
    answer never reaches vanthu, so it may be a copy). Once the link is healed everything is
    sent, at most twice."""
    with FaultySmtp() as smtp, FaultProxy(smtp.port) as proxy, \
            Rig(dovecot, directory, proxy.port, extra=STATUS) as rig:
        if mode == "accept-close":
            proxy.set_mode(mode)
        else:
            smtp.on_data = lambda _: proxy.set_mode(mode) if proxy.mode == "pass" else None
        rig.deliver(documents(2, f"smtp-link-{mode}"))
        proc = rig.start()
        rig.database()
        wait_for(lambda: rig.tried() >= 1, 180, f"an email tried through the {mode}")
        during = status_during_fault(rig)
        smtp.on_data = None
        proxy.set_mode("pass")
        took = recover(rig, smtp, 2)
        rig.stop(proc)
        figures = check(rig.engine(), smtp, mails=2, registered=2, in_doubt_ok=True)
        assert during.code == 1 and during.names("smtp"), during.output
        return figures.line(f"smtp proxy {mode}", status=during.code, recover_s=f"{took:.1f}",
                            connections=proxy.accepted)


REFUSED = [register(f"smtp {m}", refused_for_now, mode=m)
           for m in ("421-greeting", "451-rcpt", "451-data")]
LOST = [register(f"smtp {m}", lost_after_data, mode=m)
        for m in ("hang-after-data", "reset-after-data")]
ONE_REFUSED = register("smtp 550 one recipient", one_refused_for_good)
CRAWL = register("smtp crawl + SIGTERM", crawling)
LINK = [register(f"smtp link {m}", link_fault, mode=m) for m in ("cut", "stall", "accept-close")]


@pytest.mark.parametrize("case", REFUSED)
def test_a_server_answering_4xx(request: pytest.FixtureRequest, dovecot: Dovecot,
                                tmp_path_factory: pytest.TempPathFactory, case: str) -> None:
    outcome(request, dovecot, tmp_path_factory, case)


@pytest.mark.parametrize("case", [ONE_REFUSED])
def test_a_recipient_refused_for_good(request: pytest.FixtureRequest, dovecot: Dovecot,
                                      tmp_path_factory: pytest.TempPathFactory,
                                      case: str) -> None:
    outcome(request, dovecot, tmp_path_factory, case)


@pytest.mark.parametrize("case", LOST)
def test_a_server_lost_after_data(request: pytest.FixtureRequest, dovecot: Dovecot,
                                  tmp_path_factory: pytest.TempPathFactory, case: str) -> None:
    outcome(request, dovecot, tmp_path_factory, case)


@pytest.mark.parametrize("case", [CRAWL])
def test_a_crawling_server_and_sigterm(request: pytest.FixtureRequest, dovecot: Dovecot,
                                       tmp_path_factory: pytest.TempPathFactory,
                                       case: str) -> None:
    outcome(request, dovecot, tmp_path_factory, case)


@pytest.mark.parametrize("case", LINK)
def test_a_faulty_link_to_the_smtp_server(request: pytest.FixtureRequest, dovecot: Dovecot,
                                          tmp_path_factory: pytest.TempPathFactory,
                                          case: str) -> None:
    outcome(request, dovecot, tmp_path_factory, case)
