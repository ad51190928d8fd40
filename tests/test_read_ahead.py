"""While a fetch thread stores a backlog, the workers read the mails already stored
(`pipeline.read_ahead`), in the batches the pipeline will take: each mail read ahead is then
recorded once, in the order it was stored, the first batch of a life still holds one mail,
mail stored meanwhile is taken after, and what is held stays within the budget. Real SQLite
file, a real worker pool, the real pipeline, mails of the public corpus."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from daemon.config import Config
from daemon.db import make_engine, messages, register_entries, upgrade
from daemon.errors import SystemicFault
from daemon.intake.store import Fetched, MailStore, checkpoint, store_batch
from daemon.intake.workers import ReadPool
from daemon.models import State
from daemon.pipeline import Ahead, Groups, process_pending, read_ahead
from daemon.routing import rules as rules_module
from tests.conftest import CORPUS, RULES
from tests.test_same_batch import setting

# Documents, dossiers and other mail of the corpus, each its own mail.
MAILS = [(CORPUS / f"{n:03d}.eml").read_bytes() for n in range(1, 16)]


@pytest.fixture(scope="module")
def pool() -> Iterator[ReadPool]:
    made = ReadPool(setting(Path("/nonexistent")).limits)
    yield made
    made.close()


def _stored(folder: Path, mails: list[bytes], first_uid: int = 1,
            engine: Engine | None = None) -> tuple[Engine, Config, MailStore]:
    cfg = setting(folder)
    if engine is None:
        engine = make_engine(f"sqlite:///{folder / 'vanthu.db'}")
        upgrade(engine)
        checkpoint(engine, "m", "INBOX", 1)
    store = MailStore(cfg.storage.data_dir)
    store_batch(engine, store, mailbox="m", folder="INBOX", uidvalidity=1,
                batch=[Fetched(uid, raw) for uid, raw in enumerate(mails, first_uid)])
    return engine, cfg, store


def _drain(engine: Engine, cfg: Config, store: MailStore, pool: ReadPool, ahead: Ahead,
           groups: Groups) -> list[int]:
    """The pipeline as the daemon runs it, until nothing is left: how many each call took."""
    rules = rules_module.load(RULES)
    taken: list[int] = []
    while done := process_pending(engine, cfg, store, rules, pool, groups.size, ahead=ahead):
        groups.done(done)
        taken.append(done)
    return taken


def _left(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.scalar(select(func.count()).select_from(messages)
                               .where(messages.c.state == State.STORED)) or 0)


def test_mails_read_ahead_are_recorded_once_each_in_the_pipelines_batches(
        tmp_path: Path, pool: ReadPool) -> None:
    engine, cfg, store = _stored(tmp_path, MAILS)
    ahead, groups = Ahead(), Groups()

    handed = read_ahead(engine, store, pool, ahead, groups, budget=10**9)

    assert handed == len(MAILS)
    assert [len(rows) for rows, _, _ in ahead.batches] == [1, 2, 4, 8]  # as groups grow
    ids = ahead.ids()
    assert ids == sorted(ids) and len(set(ids)) == len(MAILS)  # in stored order, once each
    # The bytes handed over are not held twice: the batch keeps only where each one was.
    assert all(raw == b"" or isinstance(raw, Exception)
               for _, raws, _ in ahead.batches for raw in raws)

    taken = _drain(engine, cfg, store, pool, ahead, groups)

    assert taken[:4] == [1, 2, 4, 8]  # a life's first batch is still one mail
    assert sum(taken) == len(MAILS) and _left(engine) == 0
    with engine.connect() as conn:
        entries = conn.execute(select(register_entries.c.message_id, register_entries.c.number)
                               .order_by(register_entries.c.id)).all()
    assert len({e.message_id for e in entries}) == len(entries)  # each registered once
    assert [e.message_id for e in entries] == sorted(e.message_id for e in entries)
    engine.dispose()


def test_read_ahead_stops_at_its_budget(tmp_path: Path, pool: ReadPool) -> None:
    engine, cfg, store = _stored(tmp_path, MAILS)
    with engine.connect() as conn:
        sizes = [s for (s,) in conn.execute(select(messages.c.size).order_by(messages.c.id))]
    budget = sum(sizes[:2])  # the first two mails: batches of one, then two
    ahead, groups = Ahead(), Groups()

    assert read_ahead(engine, store, pool, ahead, groups, budget=budget) == 3
    assert ahead.size() == sum(sizes[:3]) >= budget
    assert read_ahead(engine, store, pool, ahead, groups, budget=budget) == 0  # full: no more

    assert sum(_drain(engine, cfg, store, pool, ahead, groups)) == len(MAILS)
    assert _left(engine) == 0
    engine.dispose()


def test_mail_stored_after_reading_ahead_is_taken_after_the_mail_in_hand(
        tmp_path: Path, pool: ReadPool) -> None:
    engine, cfg, store = _stored(tmp_path, MAILS[:5])
    ahead, groups = Ahead(), Groups()
    assert read_ahead(engine, store, pool, ahead, groups, budget=10**9) == 5
    _stored(tmp_path, MAILS[5:], first_uid=6, engine=engine)  # the fetch thread goes on
    assert read_ahead(engine, store, pool, ahead, groups, budget=10**9) == len(MAILS) - 5

    assert sum(_drain(engine, cfg, store, pool, ahead, groups)) == len(MAILS)
    assert _left(engine) == 0
    with engine.connect() as conn:
        registered = conn.execute(select(register_entries.c.message_id)
                                  .order_by(register_entries.c.id)).scalars().all()
    assert list(registered) == sorted(registered)
    engine.dispose()


def test_a_pool_killed_while_it_reads_ahead_loses_no_mail(tmp_path: Path) -> None:
    """The workers die with the batches read ahead in hand: their mails come back as not
    read, and are read again, by a new pool, and recorded once."""
    engine, cfg, store = _stored(tmp_path, MAILS[:7])
    pool = ReadPool(cfg.limits)
    try:
        ahead, groups = Ahead(), Groups()
        assert read_ahead(engine, store, pool, ahead, groups, budget=10**9) == 7
        pool.close()  # what a stuck pool's replacement does to the batches in hand
        assert sum(_drain(engine, cfg, store, pool, ahead, groups)) >= 7
        assert _left(engine) == 0
        with engine.connect() as conn:
            assert conn.scalar(select(func.count(func.distinct(register_entries.c.message_id)))) \
                == conn.scalar(select(func.count()).select_from(register_entries))
    finally:
        pool.close()
        engine.dispose()


def test_workers_that_cannot_start_leave_the_mail_stored_and_pause_the_pipeline(
        tmp_path: Path) -> None:
    """A worker whose start fails (here: a memory cap past what the system can hold) stays,
    and answers every mail with why: nothing is read, nothing is quarantined, the pool does
    not fork new workers without end, and the pipeline pauses saying why (a systemic
    fault)."""
    engine, cfg, store = _stored(tmp_path, MAILS[:3])
    pool = ReadPool(replace(cfg.limits, worker_memory_mb=2**50, workers=1))
    try:
        assert pool.read_all([MAILS[0]]) == [None]
        assert pool.broken is not None and "Error" in pool.broken
        first = sorted(p.pid for p in pool._get()._pool)  # type: ignore[attr-defined]
        assert pool.read_all([MAILS[1]]) == [None]
        assert sorted(p.pid for p in pool._get()._pool) == first  # type: ignore[attr-defined]
        with pytest.raises(SystemicFault, match="the reading workers cannot start"):
            process_pending(engine, cfg, store, rules_module.load(RULES), pool, 3)
        assert _left(engine) == 3  # still stored: read when the system is mended
    finally:
        pool.close()
        engine.dispose()
