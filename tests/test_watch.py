"""Watching the mailbox on a real Dovecot: IDLE, reconnects, UIDVALIDITY changes, after-actions."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from sqlalchemy import select

from daemon.db import checkpoints, locations, messages, register_entries
from daemon.intake.fetch import IDLE_RENEW_SECONDS
from daemon.routing import rules as rules_module
from daemon.service import Daemon
from tests.conftest import CORPUS, Office, wait_for

DOCUMENT = CORPUS / "008.eml"  # a body-only official document
OTHER_DOCUMENT = CORPUS / "003.eml"


class Running:
    """The real daemon in a background thread, for tests that act on the server meanwhile."""

    def __init__(self, office: Office) -> None:
        cfg = office.cfg
        self.daemon = Daemon(cfg, rules_module.load(cfg.rules.dir))
        self.stop_flag = threading.Event()
        self.thread = threading.Thread(target=asyncio.run, args=(self.daemon.run(
            until=self.stop_flag.is_set, signals=False),), daemon=True)

    def __enter__(self) -> Running:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_flag.set()
        self.thread.join(30)
        assert not self.thread.is_alive()


def forwards(office: Office) -> int:
    return sum(1 for m in office.smtp.messages() if b"X-Vanthu-Action: forward" in m.data)


def test_idle_delivers_a_new_mail_without_waiting_for_a_poll(office: Office) -> None:
    """Under IDLE a mail appended while the daemon waits is forwarded long before any poll or
    IDLE renewal would fetch it. The verdict does not depend on the machine's speed: the poll
    interval is an hour and the renewal a minute, the wait for the forward half a minute
    (IDLE takes about a second); the latency itself is measured by tests/bench_intake.py."""
    office.config_path.write_text(office.config_path.read_text().replace(
        "poll_seconds = 1\n", "poll_seconds = 3600\n"))
    assert IDLE_RENEW_SECONDS >= 60
    with Running(office):
        wait_for(lambda: office.count(checkpoints) == 1)

        office.deliver(DOCUMENT.read_bytes())

        wait_for(lambda: forwards(office) == 1, timeout=30)


def test_reconnects_after_the_server_drops_the_session(office: Office) -> None:
    """After `doveadm kick` the watcher reconnects and mail keeps flowing."""
    with Running(office):
        office.deliver(DOCUMENT.read_bytes())
        wait_for(lambda: forwards(office) == 1)

        office.dovecot.kick(office.user)
        office.deliver(OTHER_DOCUMENT.read_bytes())

        wait_for(lambda: forwards(office) == 2, timeout=30)
    assert office.count(register_entries) == 2


def test_uidvalidity_change_registers_nothing_twice(office: Office) -> None:
    """A UIDVALIDITY reset refetches the folder but no mail gets a second row or số đến."""
    office.deliver(DOCUMENT.read_bytes(), OTHER_DOCUMENT.read_bytes())
    office.run_daemon(until=lambda: office.count(register_entries) == 2 and forwards(office) == 2)

    office.dovecot.set_uidvalidity(office.user, "INBOX", 4242)
    office.run_daemon(until=lambda: office.count(locations) == 4)

    assert office.count(messages) == 2
    assert office.count(register_entries) == 2
    assert forwards(office) == 2
    engine = office.engine()
    with engine.connect() as conn:
        assert conn.scalar(select(checkpoints.c.uidvalidity)) == 4242
    engine.dispose()


def test_stored_mail_is_flagged_on_the_server(office: Office) -> None:
    """After the commit the mail carries the configured keyword on the server."""
    office.deliver(DOCUMENT.read_bytes())

    office.run_daemon(until=lambda: forwards(office) == 1)

    client = office.imap()
    client.select_folder("INBOX")
    flags = client.get_flags(client.search(["ALL"]))
    client.logout()
    assert all(b"$VanthuStored" in f for f in flags.values())


def test_move_after_store(office: Office, tmp_path: Path) -> None:
    """With after = "move:Done" the stored mail leaves the watched folder."""
    text = office.config_path.read_text().replace('poll_seconds = 1',
                                                  'poll_seconds = 1\nafter = "move:Done"')
    office.config_path.write_text(text)
    client = office.imap()
    client.create_folder("Done")
    client.logout()
    office.deliver(DOCUMENT.read_bytes())

    office.run_daemon(until=lambda: forwards(office) == 1)

    client = office.imap()
    assert client.select_folder("INBOX")[b"EXISTS"] == 0
    assert client.select_folder("Done")[b"EXISTS"] == 1
    client.logout()


def test_several_folders_are_watched(office: Office) -> None:
    """Each configured folder is watched; a copy of the same mail in two folders is one mail."""
    text = office.config_path.read_text().replace(
        'poll_seconds = 1', 'poll_seconds = 1\nfolders = ["INBOX", "Dossiers"]')
    office.config_path.write_text(text)
    client = office.imap()
    client.create_folder("Dossiers")
    client.logout()
    office.deliver(DOCUMENT.read_bytes())
    office.deliver(DOCUMENT.read_bytes(), OTHER_DOCUMENT.read_bytes(), folder="Dossiers")

    office.run_daemon(until=lambda: office.count(locations) == 3 and forwards(office) == 2)

    assert office.count(messages) == 2
    assert office.count(register_entries) == 2


def test_polling_when_idle_is_off(office: Office) -> None:
    """With idle = false the watcher polls and still picks up a mail appended later."""
    text = office.config_path.read_text().replace('poll_seconds = 1',
                                                  'poll_seconds = 1\nidle = false')
    office.config_path.write_text(text)
    with Running(office):
        wait_for(lambda: office.count(checkpoints) == 1)

        office.deliver(DOCUMENT.read_bytes())

        wait_for(lambda: forwards(office) == 1, timeout=15)


def test_status_reports_health(office: Office, capsys: object) -> None:
    """`vanthu status --json` shows each folder's last fetch and the backlog; exit 0 when well."""
    import json

    from daemon.cli import main

    office.deliver(DOCUMENT.read_bytes())
    # Until both emails are out (the forward and the acknowledgement): the forward alone
    # reaching the server left the acknowledgement pending in one run of three.
    office.run_daemon(until=lambda: forwards(office) == 1 and office.settled(1))

    code = main(["status", "--json", "--config", str(office.config_path)])

    report = json.loads(capsys.readouterr().out)  # type: ignore[attr-defined]
    assert code == 0 and report["healthy"]
    assert report["mailboxes"][0]["folder"] == "INBOX"
    assert report["mailboxes"][0]["last_fetch_at"] is not None
    assert report["outbox"] == {"sent": 2}


def test_status_is_unhealthy_when_login_fails(office: Office) -> None:
    """A mailbox that cannot log in shows its error, and `vanthu status` exits 1."""
    from daemon.cli import main

    office.config_path.write_text(office.config_path.read_text().replace(
        f'password = "{office.password}"', 'password = "wrong"'))

    def refused() -> bool:
        engine = office.engine()
        with engine.connect() as conn:
            error = conn.scalar(select(checkpoints.c.last_error))
        engine.dispose()
        return bool(error)

    office.run_daemon(until=refused, timeout=60)

    assert main(["status", "--config", str(office.config_path)]) == 1
