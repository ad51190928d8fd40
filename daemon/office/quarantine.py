"""Mail held for the clerk (state `quarantined`): look at one, release it, or drop it.

- `show`: what vanthu knows of the mail and why it is held, and its text read again from the
  store in a worker process with the daemon's limits (a held mail is exactly the one built to
  hurt a parser). A confidential or possibly confidential mail's text is never printed.
- `release`: the clerk vouches for the mail (e.g. a genuine government sender whose server
  adds no authentication header). It goes back to `stored` with the clerk's decision; the
  running daemon processes it again within seconds, and this time the hold is lifted. All
  else still applies: dangerous attachments stay withheld, a confidential document is only
  announced, a duplicate is still a duplicate.
- `drop`: the clerk decides it needs nothing (spam, a test): state `dropped`, with the reason.

Each decision is kept on the mail (`messages.clerk`: action, who, when, why) and logged; a
decision is taken once per hold, in a transaction that checks the mail is still held, so two
clerks at two terminals cannot both act.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, select, update

from daemon.config import Config
from daemon.db import messages, reading
from daemon.models import State
from daemon.office.release import Refused, StoredMail, find, read_again
from daemon.routing.rules import RuleSet
from daemon.textnorm import nfc
from daemon.understand import Reading

log = logging.getLogger("vanthu.quarantine")

ACTOR_MAX = 100  # characters of the clerk's name kept
REASON_MAX = 500  # characters of the reason kept
BODY_LINES = 60  # lines of text `show` prints
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069]")
_BREAKS = re.compile(r"[\t\n\v\f\r\x1c-\x1e\x85\u2028\u2029]+")


@dataclass(frozen=True)
class Held:
    """One held mail as the clerk sees it."""

    mail: StoredMail
    state: str
    reasons: str
    kind: str | None
    authenticated: bool | None
    trust_notes: tuple[str, ...]
    clerk: dict[str, Any] | None
    attachments: tuple[tuple[str, int, str], ...]  # name, size, why withheld ("" if not)
    text: tuple[str, ...]  # the first lines of the text; empty when withheld
    text_withheld: str  # why the text is not shown ("" when it is)
    # What a release would do now: (action, recipients) of the routing, or why it cannot say.
    would: tuple[tuple[str, tuple[str, ...]], ...] = ()
    would_fail: str = ""

    def as_json(self) -> dict[str, Any]:
        return {"id": self.mail.pk, "state": self.state, "sender": self.mail.sender,
                "subject": self.mail.subject,
                "received_at": self.mail.context.received_at.isoformat(),
                "reasons": self.reasons, "kind": self.kind,
                "authenticated": self.authenticated, "trust_notes": list(self.trust_notes),
                "clerk": self.clerk,
                "attachments": [{"name": n, "size": s, "withheld": w or None}
                                for n, s, w in self.attachments],
                "text": list(self.text), "text_withheld": self.text_withheld or None,
                "if_released": {"actions": [{"action": a, "to": list(to)}
                                            for a, to in self.would],
                                "error": self.would_fail or None}}


def clean(text: str, limit: int) -> str:
    """One line fit for a terminal: breaks and tabs become a space; control, zero-width and
    direction-override characters go; NFC; at most `limit` characters."""
    return nfc(_CONTROL.sub("", _BREAKS.sub(" ", text)))[:limit]


def show(engine: Engine, cfg: Config, pk: int, rules: RuleSet | None = None,
         as_kind: str | None = None) -> Held:
    """The held mail `pk`; with `rules`, also what releasing it (`as_kind`) would do now."""
    with reading(engine) as conn:
        mail = find(conn, pk)
        row = conn.execute(select(messages.c.state, messages.c.last_error, messages.c.kind,
                                  messages.c.understanding, messages.c.clerk,
                                  messages.c.attempts)
                           .where(messages.c.id == pk)).one()
    und = row.understanding if isinstance(row.understanding, dict) else {}
    secrecy = und.get("secrecy") or {}
    found = read_again(cfg, mail)
    would: tuple[tuple[str, tuple[str, ...]], ...] = ()
    would_fail = ""
    if rules is not None:
        would, would_fail = _would(engine, cfg, rules, mail, row.attempts, found, as_kind)
    attachments = tuple((clean(a.name, 200), a.size, a.withheld or "")
                        for a in found.mail.attachments)
    withheld = ""
    if mail.confidential or secrecy.get("level") or secrecy.get("doubts"):
        withheld = ("văn bản mật hoặc có thể mật: nội dung không hiển thị trên màn hình; "
                    f"xem bản gốc bằng: vanthu attachments {pk} --save STT --to THƯ_MỤC")
    lines = () if withheld else tuple(
        clean(line, 300) for line in found.mail.body.splitlines()[:BODY_LINES])
    return Held(mail, row.state, clean(row.last_error or "", 2000), row.kind,
                und.get("authenticated"), tuple(und.get("trust_notes") or ()),
                row.clerk, attachments, lines, withheld, would, would_fail)


def _would(engine: Engine, cfg: Config, rules: RuleSet, mail: StoredMail, attempts: int,
           found: Reading, as_kind: str | None
           ) -> tuple[tuple[tuple[str, tuple[str, ...]], ...], str]:
    """The routing of the mail as if released now: read-only, nothing is written or sent."""
    from daemon.pipeline import Failed, Stored, think  # the pipeline imports this module

    assumed = {"action": "release", "by": "?", "at": datetime.now(cfg.agency.tz).isoformat(),
               "reason": "?", **({"as": as_kind} if as_kind else {})}
    stored = Stored(mail.pk, mail.sha256, mail.context.stored_at or mail.context.received_at,
                    attempts,
                    mail.context.received_at)
    with reading(engine) as conn:
        item = think(cfg, rules, conn, stored, found, clerk=assumed)
        conn.rollback()
    if isinstance(item, Failed):
        return (), item.error
    return tuple((a.action, a.to) for a in item.decision.actions), ""


def _decide(engine: Engine, pk: int, action: str, actor: str, reason: str, now: datetime,
            values: dict[str, Any], extra: dict[str, Any] | None = None) -> dict[str, Any]:
    actor, reason = clean(actor.strip(), ACTOR_MAX), clean(reason.strip(), REASON_MAX)
    if not actor:
        raise Refused("cần tên người quyết định (--actor).", "--actor is required.")
    if not reason:
        raise Refused("cần nêu lý do (--reason).", "--reason is required.")
    decision = {"action": action, "by": actor, "at": now.isoformat(), "reason": reason,
                **(extra or {})}
    with engine.begin() as conn:
        _held(conn, pk)
        done = conn.execute(update(messages)
                            .where(messages.c.id == pk, messages.c.state == State.QUARANTINED)
                            .values(clerk=decision, updated_at=now, **values))
        if done.rowcount != 1:  # another clerk acted in between
            raise Refused(f"thư số {pk} không còn bị giữ lại.", f"mail {pk} is no longer held.")
    log.warning("quarantine.decided", extra={"mail": pk, "action": action, "actor": actor,
                                             "reason": reason})
    return decision


def _held(conn: Connection, pk: int) -> None:
    state = conn.scalar(select(messages.c.state).where(messages.c.id == pk))
    if state is None:
        raise Refused(f"không có thư số {pk}.", f"no stored mail with id {pk}.")
    if state != State.QUARANTINED:
        raise Refused(f"thư số {pk} không bị giữ lại (trạng thái: {state}).",
                      f"mail {pk} is not held (state: {state}).")


RELEASE_KINDS = ("document", "dossier", "reply", "other")  # what a clerk may say a mail is


def release(engine: Engine, pk: int, *, actor: str, reason: str, now: datetime,
            as_kind: str | None = None) -> dict[str, Any]:
    """Send a held mail back to the pipeline with the hold lifted (see the module's text);
    `as_kind`: the clerk says what it is (a genuine document taken for spam)."""
    if as_kind is not None and as_kind not in RELEASE_KINDS:
        raise Refused(f"loại thư không hợp lệ: {as_kind} (chọn: {', '.join(RELEASE_KINDS)}).",
                      f"kind must be one of {', '.join(RELEASE_KINDS)}: {as_kind}")
    return _decide(engine, pk, "release", actor, reason, now,
                   {"state": State.STORED, "attempts": 0, "last_error": None},
                   {"as": as_kind} if as_kind else {})


def drop(engine: Engine, pk: int, *, actor: str, reason: str, now: datetime) -> dict[str, Any]:
    """Close a held mail without handling it."""
    return _decide(engine, pk, "drop", actor, reason, now, {"state": State.DROPPED})


def released(conn: Connection, pk: int) -> dict[str, Any] | None:
    """The clerk's release of mail `pk`, if its hold was lifted; None otherwise."""
    clerk = conn.scalar(select(messages.c.clerk).where(messages.c.id == pk))
    return clerk if isinstance(clerk, dict) and clerk.get("action") == "release" else None
