"""`vanthu refetch MAIL_ID` (issue 12, item 3): a mail whose stored copy was damaged is
quarantined (DamagedMail); the clerk fetches its IMAP copy again, it is checked against the
sha256 it was stored under, written again, and the mail is registered, once. A folder made
again (another UIDVALIDITY) or a UID gone is refused with the reason, nothing changed."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from daemon.cli import main
from daemon.db import messages, register_entries
from daemon.intake.store import DAMAGED, Fetched, MailStore, store_batch
from daemon.pipeline import process_pending
from daemon.routing import rules as rules_module
from tests.conftest import Office
from tests.test_intake_crashloop import document


def the_mail(office: Office) -> tuple[int, str, str, str | None]:
    engine = office.engine()
    with engine.connect() as conn:
        row = conn.execute(select(messages.c.id, messages.c.sha256, messages.c.state,
                                  messages.c.last_error)).one()
    engine.dispose()
    return int(row.id), str(row.sha256), str(row.state), row.last_error


def process(office: Office) -> None:
    """The pipeline's pass over stored mail, as the daemon runs it (in this process)."""
    cfg = office.cfg
    engine = office.engine()
    process_pending(engine, cfg, MailStore(cfg.storage.data_dir), rules_module.load(cfg.rules.dir))
    engine.dispose()


@pytest.fixture()
def quarantined(office: Office) -> tuple[int, str]:
    """A mail stored as the watcher stores it (same folder, UIDVALIDITY and UID), whose file
    is then damaged, and which is then processed: quarantined as damaged, never registered."""
    office.deliver(document(42, "refetch"))
    client = office.imap()
    info = client.select_folder("INBOX")
    uid = client.search(["ALL"])[0]
    raw = client.fetch([uid], ["BODY.PEEK[]"])[uid][b"BODY[]"]
    client.logout()
    engine = office.engine()
    store = MailStore(office.cfg.storage.data_dir)
    store_batch(engine, store, mailbox="agency", folder="INBOX",
                uidvalidity=int(info[b"UIDVALIDITY"]), batch=[Fetched(uid, bytes(raw))])
    engine.dispose()
    mail_id, sha256, _, _ = the_mail(office)
    path = store.path(sha256)
    data = path.read_bytes()
    path.write_bytes(data.replace("tập huấn".encode(), "tập huấm".encode(), 1))
    process(office)
    _, _, state, reason = the_mail(office)
    assert state == "quarantined" and reason is not None and reason.startswith(DAMAGED)
    assert office.count(register_entries) == 0
    return mail_id, sha256


def test_refetch_restores_a_damaged_mail_and_it_is_registered_once(
        office: Office, quarantined: tuple[int, str], capsys: pytest.CaptureFixture[str]) -> None:
    mail_id, sha256 = quarantined

    code = main(["refetch", str(mail_id), "--json", "--config", str(office.config_path)])

    out = json.loads(capsys.readouterr().out)
    assert code == 0, out
    assert out == {"mail_id": mail_id, "refetched": True, "mailbox": "agency",
                   "folder": "INBOX", "uid": 1, "requeued": True}
    assert MailStore(office.cfg.storage.data_dir).read(sha256)  # whole again
    process(office)
    assert office.count(register_entries) == 1
    assert the_mail(office)[2] in ("routed", "done")
    # Again: the copy is whole and the mail registered; nothing is put back or numbered twice.
    assert main(["refetch", str(mail_id), "--config", str(office.config_path)]) == 0
    assert "trạng thái giữ nguyên" in capsys.readouterr().out
    assert the_mail(office)[2] in ("routed", "done")
    assert office.count(register_entries) == 1


def test_refetch_refuses_when_the_folder_was_made_again(
        office: Office, quarantined: tuple[int, str], capsys: pytest.CaptureFixture[str]) -> None:
    mail_id, _ = quarantined
    office.dovecot.set_uidvalidity(office.user, "INBOX", 4242)

    code = main(["refetch", str(mail_id), "--config", str(office.config_path)])

    err = capsys.readouterr().err
    assert code == 1
    assert f"Không lấy lại được thư #{mail_id}" in err and "UIDVALIDITY nay là 4242" in err
    assert the_mail(office)[2] == "quarantined"


def test_refetch_refuses_when_the_uid_is_gone(
        office: Office, quarantined: tuple[int, str], capsys: pytest.CaptureFixture[str]) -> None:
    mail_id, _ = quarantined
    client = office.imap()
    client.select_folder("INBOX")
    client.delete_messages(client.search(["ALL"]))
    client.expunge()
    client.logout()

    code = main(["refetch", str(mail_id), "--json", "--config", str(office.config_path)])

    out = json.loads(capsys.readouterr().out)
    assert code == 1 and out["refetched"] is False
    assert "thư không còn trong thư mục" in out["reasons"][0]
    assert the_mail(office)[2] == "quarantined"
    assert main(["refetch", "999", "--config", str(office.config_path)]) == 1
    assert "không có thư #999" in capsys.readouterr().err
