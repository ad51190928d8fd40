"""The mailbox's connection keeps imaplib's protocol trace off: IMAPClient turns it on for its
DEBUG logger, and imaplib then formats the repr of every mail fetched (and of each batch
again), whatever the logging level. IMAPClient's loggers are let through at DEBUG here, so a
trace made would be seen; neither the password nor the mail reaches the log. Real Dovecot on
loopback."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from daemon.intake.fetch import connect
from tests.conftest import Office


def test_fetching_traces_nothing_and_logs_no_password(
        office: Office, caplog: pytest.LogCaptureFixture) -> None:
    mail = (b"From: =?utf-8?b?Tmd1eeG7hW4gVsSDbiBBbg==?= <an@gmail.com>\r\n"
            b"To: vanthu.sxd@tayninh.gov.vn\r\nSubject: Hoi\r\nMessage-ID: <t@x>\r\n\r\n"
            + b"Noi dung thu.\r\n" * 2000)
    office.deliver(mail, mail)
    # Whatever `log.setup` of another test in this process set for IMAPClient's loggers.
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="imapclient")
    with connect(office.cfg.mailboxes[0]) as client:
        client.select_folder("INBOX")
        uids = client.search(["ALL"])
        fetched: dict[Any, Any] = client.fetch(uids, ["BODY.PEEK[]", "INTERNALDATE"])
    assert [bytes(data[b"BODY[]"]) for data in fetched.values()] == [mail, mail]
    # imaplib's trace (which IMAPClient sends to this logger) is not made at all.
    assert [r.getMessage()[:80] for r in caplog.records if r.name == "imapclient.imaplib"] == []
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert office.password not in logged
    assert "Noi dung thu" not in logged
