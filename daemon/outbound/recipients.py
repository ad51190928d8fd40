"""Whom vanthu may write to: the one recipient policy, applied to every outgoing email when it
is queued (daemon/outbox.py) and asked beforehand by the pipeline whether to acknowledge.

Internal mail goes only to addresses the rules name. An outside address receives only an
answer, and only when the mail or case answered vouches for it. Pure, but for the count of
today's automatic replies, read in the caller's transaction (so a crash changes nothing), and
the log line of an acknowledgement a daily limit suppresses (`reply.suppressed`).
"""

from __future__ import annotations

import email.policy
import enum
import functools
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, func, select

from daemon.config import Config
from daemon.db import case_threads, cases, messages, outbox, register_entries, utcnow
from daemon.models import Kind, ParsedMail, Understanding
from daemon.routing.rules import RuleSet

# Never answered automatically (RFC 3834, and no help to a spammer): machines, lists, spam.
NEVER_ANSWERED = frozenset({Kind.AUTO, Kind.BOUNCE, Kind.BULK, Kind.SPAM})
# Registered mail is owed its receipt (Decree 30, Art. 21), so it may get several replies a
# day, up to the configured limits; any other automatic reply goes once per sender a day,
# which also breaks a loop with a responder that marks nothing.
REGISTERED = frozenset({Kind.DOCUMENT, Kind.DOSSIER})

log = logging.getLogger("vanthu.recipients")


class Purpose(enum.StrEnum):
    """Why an email is sent; stored as the outbox row's action and its X-Vanthu-Action."""

    FORWARD = "forward"  # a document or dossier to the people who handle it
    NOTIFY = "notify"  # a notice without content (confidential documents)
    ASSIGN = "assign"  # a forward naming the lead and cooperating departments
    REMINDER = "reminder"  # a deadline reminder to the handler
    DIGEST = "digest"  # the report to the leaders
    ACKNOWLEDGE = "acknowledge"  # the automatic acknowledgement or receipt slip to a sender
    RESULT = "result"  # the signed result of a case
    SUPPLEMENT = "supplement"  # the request for supplements to an applicant
    APOLOGY = "apology"  # the apology with a new date to an applicant
    # A withheld attachment the clerk checked and let go, to whom the mail was forwarded:
    # internal only, like the forward itself (not an answer).
    RELEASE = "release"

    @property
    def answers(self) -> bool:
        """An answer to a mail or a case: the only kind of email an outside address gets."""
        return self in _ANSWERS


_ANSWERS = frozenset({Purpose.ACKNOWLEDGE, Purpose.RESULT, Purpose.SUPPLEMENT, Purpose.APOLOGY})


@dataclass(frozen=True)
class Allowed:
    """The agency's own recipients: every address the loaded rules and the digest name."""

    addresses: frozenset[str]

    @classmethod
    def of(cls, rules: RuleSet, cfg: Config) -> Allowed:
        named: list[str] = [p.email for p in rules.people.values()]
        named += [d.email for d in rules.departments.values()]
        named += [a for rule in rules.rules for spec in rule.then
                  for a in spec.targets.addresses]
        named += list(rules.higher_authority)
        named += [a for a in cfg.digest.to if "@" in a]
        return cls(frozenset(a.strip().lower() for a in named if a.strip()))

    @classmethod
    def nobody(cls) -> Allowed:
        """For answers only: whoever receives them is vouched for by the case or mail."""
        return cls(frozenset())

    @classmethod
    def load(cls, cfg: Config) -> Allowed:
        """From the rules on disk: for callers not handed the running rule set."""
        from daemon.routing import rules as rules_module

        return cls.of(rules_module.load(cfg.rules.dir), cfg)

    def __contains__(self, address: object) -> bool:
        return isinstance(address, str) and address.lower() in self.addresses


@dataclass(frozen=True)
class Answering:
    """What an answer replies to: the evidence that lets an outside address receive it.

    `sender` is the addr-spec of the answered mail's From (taken by the strict parser) and
    counts only when `authenticated` is True; `registered` holds addresses on record (the
    case's applicant, the sender written in the register), which count as they are.
    """

    sender: str = ""
    authenticated: bool | None = None
    kind: Kind | None = None
    registered: tuple[str, ...] = ()
    received_at: datetime | None = None  # the day automatic replies are counted on
    case_id: int | None = None  # the case answered: one automatic email a day per case

    @classmethod
    def of_mail(cls, mail: ParsedMail, understanding: Understanding,
                received_at: datetime, case_id: int | None = None) -> Answering:
        return cls(sender=mail.sender.email.lower(), authenticated=understanding.authenticated,
                   kind=understanding.kind, received_at=received_at, case_id=case_id)

    @classmethod
    def of_record(cls, conn: Connection, *, case_id: int | None = None,
                  entry_id: int | None = None) -> Answering:
        """The addresses on record, read from the database: the case's applicant and the
        register entry's sender (the strict parse of its From); with the original mail's
        stored authentication verdict and kind."""
        registered: list[str] = []
        message_pk = None
        if case_id is not None:
            case = conn.execute(select(cases.c.applicant_email, cases.c.message_id)
                                .where(cases.c.id == case_id)).first()
            if case is not None:
                registered.append(case.applicant_email or "")
                message_pk = case.message_id
            if entry_id is None:
                entry_id = conn.scalar(select(register_entries.c.id)
                                       .where(register_entries.c.case_id == case_id))
        if entry_id is not None:
            entry = conn.execute(select(register_entries.c.sender_email,
                                        register_entries.c.message_id)
                                 .where(register_entries.c.id == entry_id)).first()
            if entry is not None:
                registered.append(entry.sender_email or "")
                message_pk = message_pk or entry.message_id
        verdict: Any = None
        kind = None
        if message_pk is not None:
            row = conn.execute(select(messages.c.understanding, messages.c.kind)
                               .where(messages.c.id == message_pk)).first()
            if row is not None:
                verdict = (row.understanding or {}).get("authenticated")
                kind = Kind(row.kind) if row.kind in {k.value for k in Kind} else None
        return cls(authenticated=verdict if isinstance(verdict, bool) else None, kind=kind,
                   registered=tuple(dict.fromkeys(a.lower() for a in registered if a)),
                   case_id=case_id)


def mailbox_problem(address: object) -> str | None:
    """Why `address` cannot go into an SMTP envelope and a To header, or None.

    Exactly one bare ASCII addr-spec, as the standard library's strict parser reads it:
    vanthu does not send with SMTPUTF8, and an entry holding a display name, a group or two
    addresses is someone's text, not a recipient.
    """
    if not isinstance(address, str):
        return "empty"
    return _address_problem(address)


@functools.lru_cache(maxsize=4096)  # a pure function of the text, asked several times an email
def _address_problem(address: str) -> str | None:
    if not address.strip():
        return "empty"
    if any(ord(c) < 0x20 or c == "\x7f" for c in address):
        return "contains a line break or a control character"
    if not address.isascii():
        return "not ASCII (an internationalised address needs SMTPUTF8, which vanthu does not use)"
    try:
        header = email.policy.default.header_factory("to", address)
    except Exception as err:  # the standard parser raises many kinds on hostile text
        # (AttributeError for ":;", an empty group, in Python 3.11)
        return f"not an address: {type(err).__name__}: {err}"
    groups = getattr(header, "groups", ())
    found = [a for g in groups for a in g.addresses]
    if len(found) != 1 or any(g.display_name is not None for g in groups):
        return f"must be exactly one mailbox, found {len(found)}"
    if header.defects:
        return f"not well-formed: {header.defects[0]}"
    mailbox = found[0]
    if not mailbox.username or not mailbox.domain:
        return "needs a local part and a domain"
    if mailbox.addr_spec != address.strip() or mailbox.display_name:
        return "must be a bare address, without a display name"
    return None


def _day(cfg: Config, answering: Answering) -> str:
    return (answering.received_at or utcnow()).astimezone(cfg.agency.tz).date().isoformat()


def reply_key(cfg: Config, address: str, answering: Answering) -> str:
    """"address|YYYY-MM-DD": how automatic replies are counted, on the outbox row."""
    return f"{address.lower()}|{_day(cfg, answering)}"


def domain_key(key: str) -> str:
    """"domain|YYYY-MM-DD" of a `reply_key`: how they are counted per domain."""
    address, _, day = key.rpartition("|")
    return f"{address.rpartition('@')[2]}|{day}"


# Built once (daemon/db.py says why): the automatic replies of a day to a sender, to a domain.
_TO_SENDER = select(func.count()).select_from(outbox).where(
    outbox.c.ack_key == bindparam("key"))
_TO_DOMAIN = select(func.count()).select_from(outbox).where(
    outbox.c.ack_domain == bindparam("key"))


def _reply_limit(conn: Connection, cfg: Config, address: str,
                 answering: Answering) -> str | None:
    """Automatic replies today to this sender and to its domain, against the limits."""
    key = reply_key(cfg, address, answering)
    to_sender = conn.scalar(_TO_SENDER, {"key": key}) or 0
    per_sender = cfg.limits.replies_per_sender_per_day if answering.kind in REGISTERED else 1
    if to_sender >= per_sender:
        return f"already {to_sender} automatic replies to this sender today (limit {per_sender})"
    domain = domain_key(key)
    to_domain = conn.scalar(_TO_DOMAIN, {"key": domain}) or 0
    per_domain = cfg.limits.replies_per_domain_per_day
    if to_domain >= per_domain:
        return (f"already {to_domain} automatic replies to {domain.rpartition('|')[0]} today "
                f"(limit {per_domain})")
    return None


# The emails to an applicant about a case that vanthu writes by itself or on a clerk's one
# command; each counts towards the one automatic email a day per case.
CASE_LETTERS = ("acknowledge", "supplement", "apology")
_CASE_LETTERS_QUEUED = (
    select(outbox.c.action, outbox.c.recipients, outbox.c.ack_key, outbox.c.created_at)
    .join(case_threads, case_threads.c.header_message_id == outbox.c.header_message_id)
    .where(case_threads.c.case_id == bindparam("case_pk"), outbox.c.action.in_(CASE_LETTERS)))


def _case_limit(conn: Connection, cfg: Config, address: str,
                answering: Answering) -> str | None:
    """One automatic email a day to a sender about one case: a responder answering each of
    our emails in a case gets one acknowledgement, not one per round. Counts what was queued
    for the case (threaded to it) to this address on the local day of the mail answered."""
    if answering.case_id is None:
        return None
    day = _day(cfg, answering)
    found = conn.execute(_CASE_LETTERS_QUEUED, {"case_pk": answering.case_id}).all()
    for row in found:
        row_day = (row.ack_key.rpartition("|")[2] if row.ack_key
                   else row.created_at.astimezone(cfg.agency.tz).date().isoformat())
        if row_day == day and address in {str(r).lower() for r in row.recipients}:
            return f"already an automatic email ({row.action}) to this sender for this case today"
    return None


def _suppressed(conn: Connection, cfg: Config, address: str,
                answering: Answering) -> str | None:
    """Why an acknowledgement to `address` is over a daily limit (per case, per sender, per
    domain), logged for the clerk as `reply.suppressed`; None when it may go."""
    why = _case_limit(conn, cfg, address, answering) or _reply_limit(conn, cfg, address,
                                                                      answering)
    if why is not None:
        log.info("reply.suppressed", extra={"to": address, "case_id": answering.case_id,
                                            "why": why})
    return why


def refusal(conn: Connection, cfg: Config, *, purpose: Purpose, address: str, allowed: Allowed,
            answering: Answering | None = None) -> str | None:
    """Why `address` may not receive an email for `purpose`, or None: the recipient policy.

    - every recipient is one bare ASCII mailbox;
    - an acknowledgement goes only to the authenticated sender of the mail it answers, never
      to mail that looks like spam or a machine, within the daily reply limits (one a day
      per case answered);
    - a result, supplement request or apology goes to the agency's own recipients, to an
      address on record for the case (the applicant, the registered sender), or to the
      authenticated sender of the mail answered;
    - anything else goes to the agency's own recipients only.
    """
    if problem := mailbox_problem(address):
        return problem
    address = address.lower()
    if purpose is Purpose.ACKNOWLEDGE:
        if answering is None or address != answering.sender:
            return "an acknowledgement goes only to the sender of the mail it answers"
        if answering.kind in NEVER_ANSWERED:
            return f"mail of kind {answering.kind} is never answered"
        if answering.authenticated is not True:
            return ("the sender is not authenticated" if answering.authenticated is False
                    else "the sender's authentication is unknown")
        return _suppressed(conn, cfg, address, answering)
    if address in allowed:
        return None
    if not purpose.answers or answering is None:
        return "not one of the agency's recipients (people, departments, rule addresses)"
    if answering.kind in NEVER_ANSWERED:
        return f"mail of kind {answering.kind} is never answered"
    if address in answering.registered:
        return None
    if address == answering.sender and answering.authenticated is True:
        return None
    return "neither on record for the case nor the authenticated sender of the mail answered"


def refusals(conn: Connection, cfg: Config, *, purpose: Purpose, recipients: Iterable[str],
             allowed: Allowed, answering: Answering | None = None) -> list[tuple[str, str]]:
    """(address, reason) for every recipient the policy refuses; empty when all may receive."""
    out = []
    for address in recipients:
        reason = refusal(conn, cfg, purpose=purpose, address=address, allowed=allowed,
                         answering=answering)
        if reason is not None:
            out.append((address, reason))
    return out


def unsendable(recipients: Sequence[object]) -> list[tuple[str, str]]:
    """(address, reason) for every entry that cannot go into an SMTP envelope at all."""
    return [(repr(a) if not isinstance(a, str) else a, problem)
            for a in recipients if (problem := mailbox_problem(a)) is not None]
