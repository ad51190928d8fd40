"""The pipeline's bulkhead: a mail that fails while being applied is retried and then
quarantined for a human, and the other mails of its batch go on."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from daemon import config
from daemon.db import messages
from daemon.errors import RecipientRefused
from daemon.intake.store import Fetched, MailStore, checkpoint, store_batch
from daemon.models import State
from daemon.outbound import compose, outbox
from daemon.pipeline import process_pending
from daemon.routing import rules as rules_module
from tests.conftest import AUTHSERV_ID, CORPUS, RULES


@pytest.mark.db
def test_a_failing_mail_is_shunted_and_the_batch_goes_on(tmp_path: Path, database: Engine,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Composing one mail's forward raises every time: after max_attempts it is quarantined
    with the error; the other mail is routed at the first pass."""
    cfg = config.parse({"storage": {"data_dir": str(tmp_path)},
                        "security": {"authserv_id": AUTHSERV_ID}},
                       file="t", text="", base=tmp_path)
    engine = database  # the file cfg.storage.url names: data_dir/vanthu.db
    store = MailStore(cfg.storage.data_dir)
    checkpoint(engine, "m", "INBOX", 1)
    store_batch(engine, store, mailbox="m", folder="INBOX", uidvalidity=1, batch=[
        Fetched(1, (CORPUS / "008.eml").read_bytes()),
        Fetched(2, (CORPUS / "017.eml").read_bytes())])
    ruleset = rules_module.load(RULES)
    real_forward = compose.COMPOSERS["forward"]

    def broken_for_documents(*args: object) -> object:
        if "402/TB-SNV" in str(args[3].subject):  # type: ignore[attr-defined]
            raise RuntimeError("disk full while composing")
        return real_forward(*args)  # type: ignore[arg-type]

    monkeypatch.setitem(compose.COMPOSERS, "forward", broken_for_documents)

    for _ in range(cfg.limits.max_attempts):
        process_pending(engine, cfg, store, ruleset)

    with engine.connect() as conn:
        rows = {r.id: r for r in conn.execute(select(messages)).all()}
    assert rows[1].state == State.QUARANTINED
    assert "disk full while composing" in rows[1].last_error
    assert rows[1].attempts == cfg.limits.max_attempts
    assert rows[2].state == State.ROUTED


@pytest.mark.db
def test_an_email_that_can_never_be_sent_quarantines_its_mail_at_once(
        tmp_path: Path, database: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """A permanent refusal while queueing one mail's emails quarantines that mail on the
    first pass (no retries, no pause of the pipeline); the other mail is routed."""
    cfg = config.parse({"storage": {"data_dir": str(tmp_path)},
                        "security": {"authserv_id": AUTHSERV_ID}},
                       file="t", text="", base=tmp_path)
    engine = database  # the file cfg.storage.url names: data_dir/vanthu.db
    store = MailStore(cfg.storage.data_dir)
    checkpoint(engine, "m", "INBOX", 1)
    store_batch(engine, store, mailbox="m", folder="INBOX", uidvalidity=1, batch=[
        Fetched(1, (CORPUS / "008.eml").read_bytes()),
        Fetched(2, (CORPUS / "017.eml").read_bytes())])
    real_enqueue = outbox.enqueue

    def refusing(conn: object, cfg: object, **kwargs: object) -> int:
        if "402/TB-SNV" in str(kwargs["email"]["Subject"]):  # type: ignore[index]
            raise RecipientRefused("giamdoc@x", "not ASCII")
        return real_enqueue(conn, cfg, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr("daemon.pipeline.enqueue", refusing)

    process_pending(engine, cfg, store, rules_module.load(RULES))

    with engine.connect() as conn:
        rows = {r.id: r for r in conn.execute(select(messages)).all()}
    assert rows[1].state == State.QUARANTINED and rows[1].attempts == 1
    assert "not ASCII" in rows[1].last_error
    assert rows[2].state == State.ROUTED
