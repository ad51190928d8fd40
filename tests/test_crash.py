"""The crash suite: SIGKILL the daemon at each named point, restart it, and prove that every
mail is registered exactly once and every forward is sent at least once and at most twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from email import message_from_bytes, policy

import pytest
from sqlalchemy import func, select

from daemon.db import messages, outbox, register_entries
from tests.conftest import CORPUS, ROOT, Office

MAILS = ["003.eml", "006.eml", "008.eml", "012.eml", "017.eml", "009.eml"]
REGISTERED = 5  # all but the auto-reply 009
POINTS = ["after_fetch", "after_file", "after_commit", "after_register", "after_drafts",
          "before_send", "after_send"]


# The points where the pipeline's and the sender's transactions are cut run on both stores
# (drafts are the daemon's on SQLite only).
@pytest.mark.parametrize("point", [pytest.param(point, marks=pytest.mark.db)
                                   if point in ("after_register", "after_send") else point
                                   for point in POINTS])
def test_killed_at_point_loses_nothing_and_registers_once(office: Office, point: str) -> None:
    """Killed with SIGKILL at `point`, the restarted daemon finishes the job exactly once."""
    office.deliver(*[(CORPUS / name).read_bytes() for name in MAILS])
    env = {**os.environ, "VANTHU_CRASH_AT": point}

    crashed = subprocess.run(
        [sys.executable, "-m", "tests.crashing", "run", "--config", str(office.config_path)],
        cwd=ROOT, env=env, capture_output=True, timeout=60)

    assert crashed.returncode == -signal.SIGKILL, crashed.stdout[-2000:] + crashed.stderr[-2000:]
    if point == "after_drafts":  # killed between the two transactions: drafts on disk
        engine = office.engine()
        with engine.connect() as conn:
            drafts = conn.scalar(select(func.count()).select_from(outbox)
                                 .where(outbox.c.state == "draft"))
        engine.dispose()
        assert drafts
    office.run_daemon(until=lambda: office.settled(len(MAILS)))
    engine = office.engine()
    with engine.connect() as conn:
        numbers = sorted(conn.scalars(select(register_entries.c.number)
                                      .where(register_entries.c.book == "incoming")))
        entries = conn.scalar(select(func.count()).select_from(register_entries))
        rows = conn.execute(select(outbox.c.header_message_id, outbox.c.state)).all()
        stored = conn.scalar(select(func.count()).select_from(messages))
    engine.dispose()
    assert stored == len(MAILS)
    assert entries == REGISTERED
    assert numbers == list(range(1, len(numbers) + 1))
    assert all(state == "sent" for _, state in rows)
    copies = Counter(str(message_from_bytes(m.data, policy=policy.default)["Message-ID"])
                     for m in office.smtp.messages())
    for header_id, _ in rows:
        assert 1 <= copies[header_id] <= 2, f"{header_id} sent {copies[header_id]} times"
    assert sum(copies.values()) <= len(rows) + 1, "at most the one mail in flight is repeated"
