"""The invariants every fault case ends with, computed from the daemon's SQLite database and
the SMTP server's record (never from the daemon's own idea of what it did):

- every mail stored once: one `messages` row per distinct mail, each with a location, no
  location twice;
- every document registered once, and the numbers of each book and year are 1..n;
- nothing left half-done: no mail still stored or routed;
- every outbox email delivered at least once and at most twice to each of its recipients
  (a recipient refused for good excepted: it got none), as counted by the SMTP server.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from sqlalchemy import Engine, func, select

from daemon.db import locations, messages, outbox, register_entries
from daemon.models import OutboxState, State
from tests.faults.smtp import FaultySmtp


@dataclass
class Figures:
    """What one case measured, for its line of the table."""

    stored: int
    registered: int
    emails: int
    copies_max: int  # the most copies one recipient got of one email
    copies_min: int  # the fewest (0 when someone was refused for good)
    twice: int  # (email, recipient) pairs delivered twice
    failed: int  # outbox rows failed

    def line(self, case: str, **more: object) -> str:
        extra = " ".join(f"{k}={v}" for k, v in more.items())
        return (f"FAULT-TABLE | {case:34} | stored={self.stored} registered={self.registered} "
                f"emails={self.emails} copies={self.copies_min}..{self.copies_max} "
                f"twice={self.twice} failed={self.failed} | {extra}")


def settled(engine: Engine, mails: int) -> bool:
    """All `mails` stored, none left to process, no email left to send."""
    with engine.connect() as conn:
        total = conn.scalar(select(func.count()).select_from(messages)) or 0
        busy = conn.scalar(select(func.count()).select_from(messages).where(
            messages.c.state.in_([State.STORED, State.ROUTED]))) or 0
        sending = conn.scalar(select(func.count()).select_from(outbox).where(
            outbox.c.state == OutboxState.PENDING)) or 0
    return total == mails and busy == 0 and sending == 0


def check(engine: Engine, smtp: FaultySmtp, *, mails: int, registered: int,
          failed_ok: bool = False, in_doubt_ok: bool = False) -> Figures:
    """Assert every invariant; return the figures. `failed_ok`: outbox rows may have failed
    (a case where the server refused on purpose). `in_doubt_ok`: a row may have failed because
    its tries may have delivered it without an answer (the server lost the answer twice); the
    server must then hold a full copy for each of its recipients."""
    with engine.connect() as conn:
        shas = list(conn.scalars(select(messages.c.sha256)))
        states = Counter(conn.scalars(select(messages.c.state)))
        places = conn.execute(select(locations.c.message_id, locations.c.mailbox,
                                     locations.c.folder, locations.c.uidvalidity,
                                     locations.c.uid)).all()
        entries = conn.execute(select(register_entries.c.book, register_entries.c.year,
                                      register_entries.c.number,
                                      register_entries.c.message_id)).all()
        rows = conn.execute(select(outbox.c.header_message_id, outbox.c.recipients,
                                   outbox.c.state, outbox.c.refused)).all()
    # Every mail stored once.
    assert len(shas) == mails, f"{len(shas)} mails stored, {mails} delivered"
    assert len(set(shas)) == len(shas), "a mail stored twice"
    places_of = Counter(p.message_id for p in places)
    assert len(places_of) == mails, "a stored mail without its IMAP location"
    where = Counter(tuple(p)[1:] for p in places)
    assert max(where.values(), default=1) == 1, "one IMAP message recorded twice"
    # Nothing left half-done.
    assert states[State.STORED] == 0 and states[State.ROUTED] == 0, dict(states)
    # Every document registered once; numbers 1..n per book and year.
    by_mail = Counter(e.message_id for e in entries)
    assert max(by_mail.values(), default=1) == 1, "a mail registered twice"
    assert len(entries) == registered, f"{len(entries)} register entries, {registered} expected"
    books: dict[tuple[str, int], list[int]] = {}
    for e in entries:
        books.setdefault((e.book, e.year), []).append(e.number)
    for book, numbers in books.items():
        assert sorted(numbers) == list(range(1, len(numbers) + 1)), \
            f"register {book}: numbers {sorted(numbers)[:10]}… are not 1..{len(numbers)}"
    # Every email at least once and at most twice per recipient.
    copies = smtp.copies()
    accepted = smtp.accepted()
    counts = []
    failed = 0
    for row in rows:
        refused = set(row.refused or {})
        if row.state == OutboxState.FAILED:
            failed += 1
            lost_answer = in_doubt_ok and all(
                copies[(row.header_message_id, str(r).lower())] >= 1 for r in row.recipients)
            assert failed_ok or lost_answer, f"email {row.header_message_id} failed"
        else:
            assert row.state == OutboxState.SENT, f"{row.header_message_id} is {row.state}"
        for recipient in row.recipients:
            pair = (row.header_message_id, str(recipient).lower())
            assert copies[pair] <= 2, f"{pair} received {copies[pair]} times"
            if row.state == OutboxState.SENT and recipient not in refused:
                assert accepted[pair] >= 1, f"{pair} never acknowledged by the server"
            counts.append(copies[pair])
    ours = {r.header_message_id for r in rows}
    strays = [m for m, _ in copies if m not in ours]
    assert not strays, f"the server got emails the outbox does not hold: {strays[:3]}"
    return Figures(stored=len(shas), registered=len(entries), emails=len(rows),
                   copies_max=max(counts, default=0), copies_min=min(counts, default=0),
                   twice=sum(1 for c in counts if c == 2), failed=failed)
