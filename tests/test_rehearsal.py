"""What vanthu rehearses and undoes (the self-check's sample emails, the canary's sample mail
rolled back) is not logged as news: its info lines are dropped, its warnings and errors kept
and marked, and only the thread or task that rehearses is quieted."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from pathlib import Path

import pytest
from sqlalchemy import func, select

from daemon import pipeline
from daemon.db import cases, outbox, register_entries
from daemon.log import rehearsal
from tests.desk import Desk


def _vanthu(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str, bool]]:
    return [(r.levelname, r.getMessage(), bool(getattr(r, "rehearsal", False)))
            for r in caplog.records if r.name.startswith("vanthu")]


def test_a_rehearsal_drops_its_info_lines_and_marks_its_warnings(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="vanthu")
    outbox_log = logging.getLogger("vanthu.outbox")

    def meanwhile() -> None:  # another thread of the daemon, logging during the rehearsal
        outbox_log.info("outbox.sent")

    with rehearsal():
        outbox_log.info("outbox.queued")
        outbox_log.debug("outbox.claimed")
        logging.getLogger("vanthu.made_during_the_rehearsal").info("case.opened")
        outbox_log.warning("receipt.fonts_not_reduced")
        outbox_log.error("pipeline.apply_failed")
        other = threading.Thread(target=meanwhile)
        other.start()
        other.join()
    outbox_log.info("outbox.queued")

    assert _vanthu(caplog) == [("WARNING", "receipt.fonts_not_reduced", True),
                               ("ERROR", "pipeline.apply_failed", True),
                               ("INFO", "outbox.sent", False),
                               ("INFO", "outbox.queued", False)]


def test_only_the_task_that_rehearses_is_quieted(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="vanthu")
    log = logging.getLogger("vanthu.pipeline")

    async def rehearsing(turn: asyncio.Event, back: asyncio.Event) -> None:
        with rehearsal():
            log.info("rehearsed.before")
            turn.set()
            await back.wait()  # the other task logs while this one is inside its rehearsal
            log.info("rehearsed.after")

    async def working(turn: asyncio.Event, back: asyncio.Event) -> None:
        await turn.wait()
        log.info("mail.registered")
        back.set()

    async def both() -> None:
        turn, back = asyncio.Event(), asyncio.Event()
        await asyncio.gather(rehearsing(turn, back), working(turn, back))

    asyncio.run(both())
    assert _vanthu(caplog) == [("INFO", "mail.registered", False)]


def test_the_canary_logs_nothing_of_the_sample_mail_it_rolls_back(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    desk = Desk(tmp_path)
    caplog.set_level(logging.DEBUG, logger="vanthu")

    with desk.engine.begin() as conn:
        fault = pipeline.canary(conn, desk.cfg, desk.rules, desk.store)

    assert fault is None
    assert [line for line in _vanthu(caplog) if line[0] in ("DEBUG", "INFO")] == []
    with desk.engine.connect() as conn:  # rolled back: nothing of it is left
        for table in (outbox, register_entries, cases):
            assert conn.scalar(select(func.count()).select_from(table)) == 0
    # Without the rehearsal the same sample logs its registration and emails: the test sees
    # what it says is hidden.
    caplog.clear()
    with pytest.MonkeyPatch.context() as patch, desk.engine.begin() as conn:
        patch.setattr(pipeline, "rehearsal", contextlib.nullcontext)
        assert pipeline.canary(conn, desk.cfg, desk.rules, desk.store) is None
    assert any(message == "outbox.queued" for _, message, _ in _vanthu(caplog))
