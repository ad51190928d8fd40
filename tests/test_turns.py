"""SQLite has one writer: the pipeline's recording gives way to a writer that waits (a fetch
thread storing, the sender claiming), ending its transaction after the mail in hand, and goes
on with the rest afterwards, judged again where an earlier mail of the batch changed things
(a reply whose dossier was recorded in the transaction before). Real SQLite file, the real
pipeline, the public corpus's dossier 017 and its supplements."""

from __future__ import annotations

import threading
from pathlib import Path

from sqlalchemy import event, func, select

from daemon.db import Turns, cases, make_engine, messages, upgrade
from daemon.intake.store import Fetched, MailStore, checkpoint, store_batch
from daemon.models import State
from daemon.pipeline import process_pending
from daemon.routing import rules as rules_module
from tests.conftest import RULES
from tests.test_same_batch import setting, thread


def test_recording_gives_way_to_a_waiting_writer_and_finishes_after(tmp_path: Path) -> None:
    cfg = setting(tmp_path)
    engine = make_engine(f"sqlite:///{tmp_path / 'vanthu.db'}")
    upgrade(engine)
    mails = thread(4)  # the dossier, then four supplements each answering the one before
    store = MailStore(cfg.storage.data_dir)
    checkpoint(engine, "m", "INBOX", 1)
    store_batch(engine, store, mailbox="m", folder="INBOX", uidvalidity=1,
                batch=[Fetched(uid, raw) for uid, raw in enumerate(mails, 1)])

    turns = Turns()
    committed = threading.Event()
    event.listen(engine, "commit", lambda conn: committed.set())
    done: list[int] = []
    with turns.urgent():  # a store waits for the write lock from the start
        worker = threading.Thread(target=lambda: done.append(process_pending(
            engine, cfg, store, rules_module.load(RULES), turns=turns)))
        worker.start()
        assert committed.wait(120), "the pipeline never committed"
        with engine.connect() as conn:
            recorded = conn.scalar(select(func.count()).select_from(messages)
                                   .where(messages.c.state != State.STORED))
        # The first transaction ended after one mail: the waiting writer goes next.
        assert recorded == 1
    worker.join(120)
    assert done == [len(mails)]
    with engine.connect() as conn:
        states = conn.execute(select(messages.c.state, messages.c.case_id)
                              .order_by(messages.c.id)).all()
        codes = conn.scalar(select(func.count()).select_from(cases))
    assert all(state != State.STORED for state, _ in states)
    # Each supplement, recorded in a later transaction than its dossier, joined its case.
    assert codes == 1
    assert len({case for _, case in states}) == 1 and states[0][1] is not None
    engine.dispose()


def test_a_backlog_being_stored_is_seen_until_it_ends() -> None:
    turns = Turns()
    assert not turns.catching_up() and not turns.wanted()
    with turns.backlog():
        assert turns.catching_up() and not turns.wanted()
        with turns.urgent():
            assert turns.wanted()
        assert not turns.wanted()
    assert not turns.catching_up()
