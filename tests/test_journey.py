"""The whole journey on real servers: APPEND → store → register → forward received by SMTP."""

from __future__ import annotations

import json
from collections import defaultdict
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest
from sqlalchemy import func, select

from daemon.cli import main
from daemon.db import cases, locations, messages, outbox, register_entries
from daemon.models import State
from tests.conftest import CORPUS, Office, corpus_labels


def _message_id(raw: bytes) -> str:
    return str(message_from_bytes(raw, policy=policy.compat32)["Message-ID"]).strip()


@pytest.fixture(scope="module")
def journey(tmp_path_factory: pytest.TempPathFactory, dovecot: Any) -> dict[str, Any]:
    """Deliver the whole corpus to a fresh mailbox and let the daemon handle it."""
    from tests.conftest import write_config
    from tests.servers import SmtpSink

    sink = SmtpSink().start()
    directory = tmp_path_factory.mktemp("journey")
    office = Office(dovecot, sink, "journey", "pw", directory,
                    write_config(directory, dovecot, sink, "journey", "pw"))
    labels = corpus_labels()
    office.seed_corpus_cases()
    office.deliver(*[(CORPUS / label["file"]).read_bytes() for label in labels])
    office.run_daemon(until=lambda: office.settled(len(labels)), timeout=120)
    sink.stop()
    engine = office.engine()
    with engine.connect() as conn:
        rows = conn.execute(select(messages, cases.c.code.label("case_code"))
                            .outerjoin(cases, cases.c.id == messages.c.case_id)).all()
        entries = {e.message_id: e for e in conn.execute(select(register_entries)).all()}
        out = conn.execute(select(outbox)).all()
        located = conn.scalar(select(func.count()).select_from(locations))
    engine.dispose()
    by_header = {r.header_message_id: r for r in rows}
    sent: dict[int, list[EmailMessage]] = defaultdict(list)
    for item in sink.received:
        parsed = message_from_bytes(item.data, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        row = next(o for o in out if o.header_message_id == parsed["Message-ID"])
        sent[row.message_id].append(parsed)
    return {"office": office, "labels": labels, "rows": rows, "by_header": by_header,
            "entries": entries, "outbox": out, "sent": sent, "located": located,
            "received": sink.received}


def test_every_mail_stored_once_and_everything_sent(journey: dict[str, Any]) -> None:
    """Each corpus mail has one row and one location; every outbox row reached the server."""
    assert len(journey["rows"]) == len(journey["labels"]) == journey["located"]
    assert all(o.state == "sent" for o in journey["outbox"])
    assert len(journey["received"]) == len(journey["outbox"])


def test_incoming_numbers_are_consecutive(journey: dict[str, Any]) -> None:
    """Số đến run 1, 2, 3 … in each register book, without gap or repeat."""
    books: dict[str, list[int]] = defaultdict(list)
    for entry in journey["entries"].values():
        books[entry.book].append(entry.number)
    for numbers in books.values():
        assert sorted(numbers) == list(range(1, len(numbers) + 1))


@pytest.mark.parametrize("label", corpus_labels(), ids=lambda label: label["file"])
def test_mail_handled_as_labelled(journey: dict[str, Any], label: dict[str, Any]) -> None:
    """The corpus label's kind and every `must` behaviour hold for this mail."""
    raw = (CORPUS / label["file"]).read_bytes()
    row = journey["by_header"][_message_id(raw)]
    entry = journey["entries"].get(row.id)
    sent: list[EmailMessage] = journey["sent"].get(row.id, [])
    actions = {str(m["X-Vanthu-Action"]): m for m in sent}

    assert row.kind in {label["kind"], *(label.get("kind_also_ok") or [])}
    for must in label["must"]:
        if must == "register":
            assert entry is not None, "registered"
        elif must == "do-not-register":
            assert entry is None
        elif must == "quarantine":
            assert row.state == State.QUARANTINED and not sent
        elif must == "ack":
            assert "acknowledge" in actions
            assert actions["acknowledge"]["Auto-Submitted"] == "auto-replied"
        elif must == "no-auto-reply":
            assert "acknowledge" not in actions
        elif must == "flag-urgent":
            leaders = actions.get("forward") or actions["notify"]
            assert any(tag in str(leaders["Subject"])
                       for tag in ("KHẨN", "HỎA TỐC", "THƯỢNG KHẨN"))
        elif must == "do-not-forward-by-email":
            assert "forward" not in actions
            assert not list(actions["notify"].iter_attachments())
            assert entry is not None and entry.book == "confidential"
            summary = label["document"]["summary"]
            assert all(summary not in m.get_body(("plain",)).get_content()  # type: ignore[union-attr]
                       for m in sent)
        elif must.startswith("link-to-case:"):
            assert row.case_code == must.split(":", 1)[1]
        elif must == "no-new-case":
            assert entry is None or entry.case_id is None
        elif must.startswith(("quarantine-attachment:", "reject-attachment:")):
            name = must.split(":", 1)[1]
            for message in sent:
                names = [a.get_filename() for a in message.iter_attachments()]
                assert name not in names and name.split("/")[-1] not in names
        elif must == "no-header-injection":
            for message in sent:
                assert message["Bcc"] is None and message["X-Injected"] is None
    if label["kind"] == "document" and "quarantine" not in label["must"]:
        document = entry.document if entry is not None else None
        if document is not None:  # a duplicate has no entry of its own
            assert document["symbol"] == label["document"]["symbol"]


def test_register_list_json(journey: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    """`vanthu register list --json` lists every entry with the contract's keys."""
    config_path = journey["office"].config_path

    assert main(["register", "list", "--json", "--config", str(config_path)]) == 0

    listed = json.loads(capsys.readouterr().out)
    assert len(listed) == len(journey["entries"])
    for entry in listed:
        assert {"book", "year", "number", "received_at", "message_id", "sender", "kind",
                "document", "case"} <= set(entry)
        assert (entry["case"] is not None) == (entry["kind"] == "dossier")
