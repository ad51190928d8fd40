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

A hold has classes (`models.HoldKind`). Releasing with `--trust-sender` also remembers the
sender's domain as trusted (`trusted_senders`: who, when, why; revocable): later mail of that
exact domain held ONLY because no trusted authentication result came with it goes on, with a
note saying so. Nothing else is lifted by it: a failed DMARC/DKIM verdict (a forgery's mark), a
look-alike or IDN homograph of the domain (another domain), doubtful sender headers, phishing,
malware, a rule's hold or a stranger in a case all still hold the mail. The agency's own
domains are never trusted this way.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Engine, bindparam, insert, select, update

from daemon.config import Config
from daemon.db import messages, reading, trusted_senders
from daemon.models import HoldKind, ParsedMail, State, Understanding
from daemon.office.release import Refused, StoredMail, find, load, read_again
from daemon.routing.rules import RuleSet
from daemon.textnorm import nfc
from daemon.understand import Reading
from daemon.understand.trust import domain_of

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
    kinds: tuple[str, ...] = ()  # HoldKind values
    trusted: Trust | None = None  # the sender's domain as trusted by a clerk, if it is

    def as_json(self) -> dict[str, Any]:
        return {"id": self.mail.pk, "state": self.state, "sender": self.mail.sender,
                "subject": self.mail.subject,
                "received_at": self.mail.context.received_at.isoformat(),
                "reasons": self.reasons, "kind": self.kind,
                "authenticated": self.authenticated, "trust_notes": list(self.trust_notes),
                "clerk": self.clerk, "hold_kinds": list(self.kinds),
                "trusted_sender": self.trusted.as_json() if self.trusted else None,
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
                                  messages.c.attempts, messages.c.hold_kinds)
                           .where(messages.c.id == pk)).one()
    kinds = kinds_of(row.hold_kinds, row.understanding)
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
    with reading(engine) as conn:
        trust = trusted_domain(conn, domain_of(found.mail.sender.email))
    return Held(mail, row.state, clean(row.last_error or "", 2000), row.kind,
                und.get("authenticated"), tuple(und.get("trust_notes") or ()),
                row.clerk, attachments, lines, withheld, would, would_fail, kinds, trust)


def kinds_of(stored: Any, understanding: Any) -> tuple[str, ...]:
    """The classes of a held mail's hold: as recorded; for a row of an earlier build, from its
    understanding, or `unreadable` when it has none (it was never understood)."""
    if isinstance(stored, list) and stored:
        return tuple(str(k) for k in stored)
    if not isinstance(understanding, dict):
        return (HoldKind.UNREADABLE.value,)
    safety = understanding.get("safety") or {}
    return tuple(str(k) for k in safety.get("kinds") or ()) or (HoldKind.OTHER.value,)


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
            values: dict[str, Any], extra: dict[str, Any] | None = None,
            also: Callable[[Connection, dict[str, Any]], None] | None = None
            ) -> dict[str, Any]:
    actor, reason = clean(actor.strip(), ACTOR_MAX), clean(reason.strip(), REASON_MAX)
    if not actor:
        raise Refused("cần tên người quyết định (--actor).", "--actor is required.")
    if not reason:
        raise Refused("cần nêu lý do (--reason).", "--reason is required.")
    decision = {"action": action, "by": actor, "at": now.isoformat(), "reason": reason,
                **(extra or {})}
    with engine.begin() as conn:
        _held(conn, pk)
        if also is not None:  # in the same transaction: a Refused undoes everything
            also(conn, decision)
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
            as_kind: str | None = None,
            also: Callable[[Connection, dict[str, Any]], None] | None = None
            ) -> dict[str, Any]:
    """Send a held mail back to the pipeline with the hold lifted (see the module's text);
    `as_kind`: the clerk says what it is (a genuine document taken for spam). A mail held
    because it could not be read or handled would fail the same way again: refused unless
    the clerk says what it is (`as_kind`)."""
    if as_kind is not None and as_kind not in RELEASE_KINDS:
        raise Refused(f"loại thư không hợp lệ: {as_kind} (chọn: {', '.join(RELEASE_KINDS)}).",
                      f"kind must be one of {', '.join(RELEASE_KINDS)}: {as_kind}")

    def check(conn: Connection, decision: dict[str, Any]) -> None:
        if as_kind is None and HoldKind.UNREADABLE.value in _kinds(conn, pk):
            raise Refused(UNREADABLE_VI.format(pk=pk),
                          f"mail {pk} is held because it could not be read or handled: "
                          "released as it is, it fails again and is held again; say what it "
                          "is with --as KIND to try once more.")
        if also is not None:
            also(conn, decision)

    return _decide(engine, pk, "release", actor, reason, now,
                   {"state": State.STORED, "attempts": 0, "last_error": None},
                   {"as": as_kind} if as_kind else {}, check)


UNREADABLE_VI = ("thư số {pk} bị giữ lại vì không đọc hoặc không xử lý được: cho đi tiếp như "
                 "vậy thì thư sẽ lỗi lại và bị giữ lại lần nữa. Nếu văn thư biết đây là thư "
                 "gì, dùng --as LOẠI để thử lại một lần.")


def _kinds(conn: Connection, pk: int) -> tuple[str, ...]:
    row = conn.execute(select(messages.c.hold_kinds, messages.c.understanding)
                       .where(messages.c.id == pk)).one()
    return kinds_of(row.hold_kinds, row.understanding)


def drop(engine: Engine, pk: int, *, actor: str, reason: str, now: datetime) -> dict[str, Any]:
    """Close a held mail without handling it."""
    return _decide(engine, pk, "drop", actor, reason, now, {"state": State.DROPPED})


_CLERK = select(messages.c.clerk).where(messages.c.id == bindparam("mail_pk"))  # every mail's


def released(conn: Connection, pk: int) -> dict[str, Any] | None:
    """The clerk's release of mail `pk`, if its hold was lifted; None otherwise."""
    clerk = conn.scalar(_CLERK, {"mail_pk": pk})
    return clerk if isinstance(clerk, dict) and clerk.get("action") == "release" else None


# Trusted senders: `release --trust-sender`, `quarantine trusted`, `quarantine untrust`.


@dataclass(frozen=True)
class Trust:
    """An official domain a clerk vouched for, in force."""

    domain: str
    address: str
    by: str
    at: datetime
    reason: str
    mail: int | None

    def as_json(self) -> dict[str, Any]:
        return {"domain": self.domain, "address": self.address, "by": self.by,
                "at": self.at.isoformat(), "reason": self.reason, "mail": self.mail}


# Built once (daemon/db.py says why): the latest trust in force for a domain.
_TRUST_OF = (select(trusted_senders)
             .where(trusted_senders.c.domain == bindparam("domain"),
                    trusted_senders.c.revoked_at.is_(None))
             .order_by(trusted_senders.c.id.desc()).limit(1))


def trusted_domain(conn: Connection, domain: str) -> Trust | None:
    """The trust in force for exactly `domain` (see `domain_of`), if any."""
    row = conn.execute(_TRUST_OF, {"domain": domain}).first()
    if row is None or not domain:
        return None
    return Trust(row.domain, row.address, row.trusted_by, row.trusted_at, row.reason,
                 row.message_id)


def trusted(engine: Engine) -> list[Trust]:
    """Every trust in force, by domain."""
    with reading(engine) as conn:
        rows = conn.execute(select(trusted_senders.c.domain)
                            .where(trusted_senders.c.revoked_at.is_(None))
                            .distinct().order_by(trusted_senders.c.domain)).scalars().all()
        return [t for d in rows if (t := trusted_domain(conn, d)) is not None]


def trusted_for(conn: Connection, und: Understanding, mail: ParsedMail) -> Trust | None:
    """The trust that lifts this mail's hold: every reason is an AUTH hold, no trusted verdict
    came at all (a failed one is a forgery's mark, never lifted), the sender's headers are
    sound, and its exact domain is trusted. None otherwise."""
    if (not und.quarantine or any(kind is not HoldKind.AUTH for kind, _ in und.holds)
            or und.authenticated is not None or mail.sender_problems):
        return None
    return trusted_domain(conn, domain_of(mail.sender.email))


def lift_trusted(und: Understanding, trust: Trust, tz: ZoneInfo) -> Understanding:
    """The mail of a trusted domain goes on, the doubt it would have been held for told to
    everyone it reaches."""
    note = (f"Thư không có kết quả xác thực đáng tin cậy ({'; '.join(und.quarantine_reasons)}); "
            f"tên miền {trust.domain} được văn thư {trust.by} ghi nhận là người gửi tin cậy "
            f"lúc {trust.at.astimezone(tz):%H:%M %d/%m/%Y}: thư được cho đi tiếp")
    return replace(und, quarantine_reasons=(), hold_kinds=(),
                   trust_notes=(*und.trust_notes, note))


def release_trusting(engine: Engine, cfg: Config, pk: int, *, actor: str, reason: str,
                     now: datetime, as_kind: str | None = None) -> tuple[dict[str, Any], Trust]:
    """`release`, and remember the sender's domain as trusted (`--trust-sender`): only for a
    mail held for authentication alone, without a failed verdict, from a sound sender header
    of a domain that is not the agency's own. Refused (nothing changes) otherwise."""
    found = read_again(cfg, load(engine, pk)).mail
    domain = domain_of(found.sender.email)
    own = {domain_of(a) for a in cfg.own_addresses if "@" in a}
    made: list[Trust] = []

    def remember(conn: Connection, decision: dict[str, Any]) -> None:
        _check_trustable(conn, pk, domain, own, found)
        if (already := trusted_domain(conn, domain)) is not None:
            made.append(already)  # one trust in force per domain: the first stands
            return
        trust = Trust(domain, clean(found.sender.email, 300), decision["by"], now,
                      decision["reason"], pk)
        conn.execute(insert(trusted_senders).values(
            domain=domain, address=trust.address, message_id=pk, trusted_by=trust.by,
            trusted_at=now, reason=trust.reason))
        made.append(trust)

    decision = release(engine, pk, actor=actor, reason=reason, now=now, as_kind=as_kind,
                       also=remember)
    log.warning("quarantine.sender_trusted", extra={"mail": pk, "domain": domain,
                                                     "actor": decision["by"]})
    return {**decision, "trusted_domain": domain}, made[0]


HOLD_KIND_VI = {
    HoldKind.AUTH: "người gửi thuộc tên miền cơ quan nhà nước nhưng không có xác thực",
    HoldKind.PHISHING: "giả danh cơ quan nhà nước",
    HoldKind.MALWARE: "lừa đảo hoặc có mã độc",
    HoldKind.SENDER: "tiêu đề người gửi bất thường",
    HoldKind.RULE: "theo quy tắc của cơ quan",
    HoldKind.STRANGER: "người lạ viết vào hồ sơ",
    HoldKind.UNREADABLE: "không đọc hoặc không xử lý được",
    HoldKind.OTHER: "lý do khác",
}


def kinds_vi(kinds: Collection[str]) -> str:
    """The classes of a hold, for people."""
    known = {k.value: v for k, v in HOLD_KIND_VI.items()}
    return "; ".join(known.get(k, k) for k in kinds)


def held_reason(row: Any) -> str:
    """Why a held mail (a row with last_error, hold_kinds, understanding) is held, for people:
    the reasons as recorded (Vietnamese), or for a mail that could not be read or handled, that
    in Vietnamese with the technical error after it."""
    return explain(row.last_error or "", kinds_of(row.hold_kinds, row.understanding))


def explain(last_error: str, kinds: Collection[str]) -> str:
    """`held_reason` from the recorded reasons and the hold's classes."""
    error = clean(last_error, 500)
    if HoldKind.UNREADABLE.value in kinds:
        return f"không đọc hoặc không xử lý được thư (lỗi kỹ thuật: {error or 'không ghi'})"
    return error or kinds_vi(kinds)


def _check_trustable(conn: Connection, pk: int, domain: str, own: Collection[str],
                     found: ParsedMail) -> None:
    row = conn.execute(select(messages.c.hold_kinds, messages.c.understanding)
                       .where(messages.c.id == pk)).one()
    kinds = kinds_of(row.hold_kinds, row.understanding)
    und = row.understanding if isinstance(row.understanding, dict) else {}
    if set(kinds) != {HoldKind.AUTH.value}:
        raise Refused(f"chỉ ghi nhận người gửi tin cậy cho thư bị giữ lại vì thiếu xác thực; "
                      f"thư số {pk} bị giữ lại vì: {kinds_vi(kinds)}. Không thay đổi gì.",
                      f"--trust-sender is only for a mail held for authentication alone; "
                      f"mail {pk} is held for: {', '.join(kinds)}. Nothing changed.")
    if und.get("authenticated") is False:
        raise Refused(f"tên miền {domain} đã KHÔNG qua kiểm tra xác thực (DMARC/DKIM báo "
                      "sai): đó là dấu hiệu thư giả mạo, không thể ghi nhận là người gửi tin "
                      "cậy. Không thay đổi gì.",
                      f"{domain} failed authentication (a forgery's mark): it cannot be "
                      "trusted. Nothing changed.")
    if found.sender_problems or not domain:
        raise Refused("tiêu đề người gửi của thư bất thường: không thể ghi nhận người gửi tin "
                      "cậy. Không thay đổi gì.",
                      "the mail's sender headers are doubtful: no sender can be trusted. "
                      "Nothing changed.")
    if domain in own:
        raise Refused(f"{domain} là tên miền của chính cơ quan: thư từ đó luôn phải được xác "
                      "thực, không ghi nhận tin cậy. Không thay đổi gì.",
                      f"{domain} is the agency's own domain: never trusted this way. "
                      "Nothing changed.")


def untrust(engine: Engine, domain: str, *, actor: str, now: datetime) -> Trust:
    """Revoke the trust in force for `domain` (kept, marked revoked by `actor` at `now`);
    Refused when there is none."""
    who = clean(actor.strip(), ACTOR_MAX)
    if not who:
        raise Refused("cần tên người quyết định (--actor).", "--actor is required.")
    key = domain_of("@" + clean(domain.strip(), 300))
    with engine.begin() as conn:
        trust = trusted_domain(conn, key)
        if trust is None:
            raise Refused(f"tên miền {key or domain} không có trong danh sách người gửi tin "
                          "cậy (vanthu quarantine trusted).",
                          f"{key or domain} is not a trusted sender domain.")
        conn.execute(update(trusted_senders)
                     .where(trusted_senders.c.domain == key,
                            trusted_senders.c.revoked_at.is_(None))
                     .values(revoked_by=who, revoked_at=now))
    log.warning("quarantine.sender_untrusted", extra={"domain": key, "actor": who})
    return trust
