"""The hostile corpus: every attack on vanthu's reading of mail, as code that builds the mail
(so no bomb is ever committed as a file) and the behaviour vanthu must show with it.

Each module of this package lists its attacks in `ATTACKS`. `tests/test_hostile_corpus.py`
runs every one through a real database and the shipped rules (`tests.desk.Desk`) and calls
its check on what came out; `python -m tests.hostile.table` prints the table of attacks and
what vanthu does now; `python -m tests.hostile.write DIR` writes the mails as .eml files, to
try them by hand with `vanthu inspect`.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from sqlalchemy import select

from daemon.db import messages, outbox, outbox_bodies
from tests.desk import Desk


@dataclass(frozen=True)
class Outcome:
    """What the pipeline made of one hostile mail: its `messages` row and every email it
    caused, by purpose ("forward", "notify", "acknowledge", …), parsed back from the outbox."""

    row: Any
    emails: list[tuple[str, EmailMessage]] = field(default_factory=list)

    @property
    def state(self) -> str:
        return str(self.row.state)

    def purposes(self) -> list[str]:
        return [purpose for purpose, _ in self.emails]

    def sent(self, purpose: str) -> list[EmailMessage]:
        return [email for p, email in self.emails if p == purpose]

    def attachment_names(self, purpose: str = "forward") -> list[str]:
        """The file names attached to every email of `purpose`."""
        return [part.get_filename() or "" for email in self.sent(purpose)
                for part in email.iter_attachments()]

    def text(self, purpose: str) -> str:
        """Everything the emails of `purpose` say (text, html and attachments' bytes, decoded
        loosely): what must never carry a confidential document's content."""
        chunks: list[str] = []
        for email in self.sent(purpose):
            for part in email.walk():
                payload = part.get_payload(decode=True)
                if isinstance(payload, bytes):
                    chunks.append(payload.decode("utf-8", "replace"))
            chunks.append(str(email["Subject"] or ""))
        return "\n".join(chunks)


@dataclass(frozen=True)
class Attack:
    """One hostile or careless mail and the behaviour it must show."""

    name: str  # short and unique: "pdf-javascript-hex-escaped-name"
    tries: str  # what the sender does, one line (English)
    shows: str  # what vanthu must do with it, one line (English)
    build: Callable[[], bytes]  # the raw mail
    check: Callable[[Outcome], None]  # asserts the behaviour on what the pipeline did


def run(desk: Desk, raw: bytes) -> Outcome:
    """Deliver `raw` to `desk`, run the pipeline, and collect what it did."""
    desk.receive(raw)
    desk.process()
    with desk.engine.connect() as conn:
        row = conn.execute(select(messages).order_by(messages.c.id.desc())).first()
        assert row is not None
        emails = conn.execute(select(outbox.c.action, outbox_bodies.c.raw)
                              .join_from(outbox, outbox_bodies)
                              .where(outbox.c.message_id == row.id)
                              .order_by(outbox.c.id)).all()
    parsed = [(str(action), message_from_bytes(bytes(raw_email), policy=policy.default))
              for action, raw_email in emails]
    return Outcome(row, parsed)


def attacks() -> list[Attack]:
    """Every attack of every module of this package, in module then list order."""
    found: list[Attack] = []
    for info in sorted(pkgutil.iter_modules([str(Path(__file__).parent)]), key=lambda i: i.name):
        if info.name in ("table", "write"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        found.extend(getattr(module, "ATTACKS", []))
    names = [a.name for a in found]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    assert not duplicates, f"attack names used twice: {duplicates}"
    return found
