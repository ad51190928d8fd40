"""Routing: evaluate the ordered rules against an understood mail and resolve who gets what.

Pure: the same mail, rules and date always give the same Decision, with a trace of every
rule. The safety rules at the end are applied whatever the rule files say.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, assert_never

from daemon.models import (
    Action,
    Assignment,
    Decision,
    Effect,
    Hold,
    Kind,
    Move,
    ParsedMail,
    RuleTrace,
    Tagging,
    Understanding,
)
from daemon.office.calendar import WorkCalendar
from daemon.routing.rules import (
    ESCALATION,
    Acknowledge,
    ActionKind,
    ActionSpec,
    Assign,
    Forward,
    MoveTo,
    Notify,
    Person,
    Procedure,
    Quarantine,
    RuleSet,
    Tag,
    Targets,
)
from daemon.textnorm import fold

NO_AUTO_REPLY = {Kind.AUTO, Kind.BOUNCE, Kind.BULK, Kind.SPAM}


@dataclass(frozen=True)
class Facts:
    """What conditions can look at."""

    kind: str
    type: str
    urgency: str
    confidential: bool
    issuer: str
    sender: str
    subject: str
    body: str
    attachment_names: tuple[str, ...]
    attachment_types: tuple[str, ...]
    at: datetime  # when the mail arrived, in the agency's time zone
    working_day: bool
    procedure: str = ""  # the catalogue's id, for a dossier
    # A document claiming to come from a government body carries a broken or untrusted
    # digital signature (Understanding.signature_warning).
    signature_doubt: bool = False
    _folded: dict[str, str] = field(default_factory=dict, init=False, repr=False,
                                    compare=False)

    @property
    def urgent(self) -> bool:
        return bool(self.urgency)

    @property
    def text(self) -> str:
        return f"{self.subject}\n{self.body}"

    @property
    def attachment_name(self) -> str:
        return "\n".join(self.attachment_names)

    def folded(self, text: str) -> str:
        """`text` folded without accents: once per mail, however many conditions read it."""
        if text not in self._folded:
            self._folded[text] = fold(text, accents=False)
        return self._folded[text]

    @classmethod
    def of(cls, understanding: Understanding, mail: ParsedMail, at: datetime,
           calendar: WorkCalendar | None = None,
           procedures: tuple[Procedure, ...] = ()) -> Facts:
        doc = understanding.document
        found = match_procedure(procedures, mail) if understanding.kind is Kind.DOSSIER \
            else None
        return cls(
            kind=understanding.kind.value,
            type=(doc.type or "") if doc else "",
            urgency=(doc.urgency or "") if doc else "",
            confidential=understanding.confidential,
            issuer=(doc.issuer or "") if doc else "",
            sender=mail.sender.email,
            subject=mail.subject,
            body=mail.body,
            attachment_names=tuple(a.name for a in mail.attachments),
            attachment_types=tuple(a.content_type for a in mail.attachments),
            at=at,
            working_day=(calendar or WorkCalendar()).is_working_day(at.date()),
            procedure=found.id if found else "",
            signature_doubt=bool(understanding.signature_warning),
        )


def match_procedure(procedures: tuple[Procedure, ...], mail: ParsedMail) -> Procedure | None:
    """The catalogue procedure whose longest keyword appears in the mail, if any."""
    text = fold(" ".join([mail.subject, mail.body, *(a.name for a in mail.attachments)]),
                accents=False)
    best: tuple[int, Procedure] | None = None
    for procedure in procedures:
        for keyword in procedure.keywords:
            key = fold(keyword, accents=False)
            if key in text and (best is None or len(key) > best[0]):
                best = (len(key), procedure)
    return best[1] if best else None


def _absence(rules: RuleSet, person: str, on: date) -> Any:
    return next((a for a in rules.absences if a.person == person and a.start <= on <= a.end),
                None)


def _present(rules: RuleSet, role: str, on: date) -> list[Person]:
    return [p for p in rules.people.values()
            if role in p.roles and _absence(rules, p.id, on) is None]


def resolve(rules: RuleSet, targets: Targets, on: date, sender: str) -> tuple[list[str], list[str]]:
    """Addresses for `targets` on day `on`, stand-ins applied; and notes on who replaces whom."""
    addresses: list[str] = []
    notes: list[str] = []

    def add(address: str) -> None:
        if address and address not in addresses:
            addresses.append(address)

    def person(pid: str) -> None:
        who = rules.people[pid]
        away = _absence(rules, pid, on)
        if away is None:
            add(who.email)
            return
        stand_in = rules.people.get(away.stand_in) if away.stand_in else None
        if stand_in is None:
            for role in who.roles:
                present = _present(rules, role, on) or _present(rules, ESCALATION.get(role, ""),
                                                                 on)
                if present:
                    stand_in = present[0]
                    break
        if stand_in is not None:
            add(stand_in.email)
            notes.append(f"{stand_in.name} thay đồng chí {who.name} đang vắng mặt "
                         f"({away.reason}, đến hết ngày {away.end:%d/%m/%Y})")
        else:
            for address in rules.higher_authority:
                add(address)
            notes.append(f"đồng chí {who.name} vắng mặt, không có người thay: chuyển cấp trên")

    for role in targets.roles:
        members = [p.id for p in rules.people.values() if role in p.roles]
        for pid in members:
            person(pid)
    for pid in targets.people:
        person(pid)
    for did in targets.departments:
        add(rules.departments[did].email)
    for address in targets.addresses:
        add(address)
    if targets.sender:
        add(sender)
    return addresses, notes


def decide(understanding: Understanding, mail: ParsedMail, rules: RuleSet, at: datetime,
           own_addresses: frozenset[str] = frozenset(),
           calendar: WorkCalendar | None = None) -> Decision:
    """Run the rules in order (until a matching rule says stop) and apply the safety rules.

    `at` is when the mail arrived, in the agency's time zone: absences and deadlines are
    taken on that day.
    """
    calendar = calendar or WorkCalendar()
    facts = Facts.of(understanding, mail, at, calendar, rules.procedures)
    traces: list[RuleTrace] = []
    specs: list[ActionSpec] = []
    stopped_by = ""
    for rule in rules.rules:
        if stopped_by:
            traces.append(RuleTrace(rule.id, False, f"not evaluated: stopped by {stopped_by}"))
            continue
        matched, why = rule.when.check(facts)
        traces.append(RuleTrace(rule.id, matched, why))
        if matched:
            specs.extend(rule.then)
            if rule.stop:
                stopped_by = rule.id
    on = at.date()
    actions: list[Action] = []
    effects: list[Effect] = []
    for spec in specs:
        match spec:
            case Assign(lead=lead, cooperate=cooperate, deadline_days=days):
                deadline = calendar.add_working_days(on, days) if days else None
                effects.append(Assignment(lead, cooperate, deadline))
                units = [rules.departments[d] for d in (lead, *cooperate)]
                note = f"Đơn vị chủ trì: {units[0].name}"
                if cooperate:
                    note += "; đơn vị phối hợp: " + ", ".join(u.name for u in units[1:])
                if deadline:
                    note += f"; hạn giải quyết: {deadline:%d/%m/%Y}"
                actions.append(Action(spec.kind.value,
                                      tuple(dict.fromkeys(u.email for u in units)), note))
            case Tag(tags=tags):
                effects.append(Tagging(tags))
            case MoveTo(folder=folder):
                effects.append(Move(folder))
            case Quarantine(reason=reason):
                effects.append(Hold(reason))
            case Forward() | Notify() | Acknowledge():
                to, notes = resolve(rules, spec.targets, on, mail.sender.email)
                if to:
                    actions.append(Action(spec.kind.value, tuple(to), "; ".join(notes)))
            case _:
                assert_never(spec)
    if any(isinstance(e, Hold) for e in effects):
        actions = []  # a rule held the mail for a human: nothing leaves
    return Decision(tuple(traces), tuple(apply_safety(actions, understanding, mail,
                                                      own_addresses)), tuple(effects),
                    facts.procedure or None)


def announced(action: Action, understanding: Understanding) -> Action:
    """A forward or assignment of a mail whose content must not travel by email (marked
    confidential, or possibly so) becomes a notice without content to the same people."""
    if understanding.withhold_content and action.action in (ActionKind.FORWARD,
                                                            ActionKind.ASSIGN):
        return Action(ActionKind.NOTIFY.value, action.to, action.note)
    return action


def apply_safety(actions: list[Action], understanding: Understanding, mail: ParsedMail,
                 own_addresses: frozenset[str]) -> list[Action]:
    """The rules no rule file can override: a quarantined mail sends nothing, machines and
    ourselves are never answered, a confidential document is only announced (`announced`)."""
    if understanding.quarantine:
        return []  # held for a human: nothing leaves
    safe: list[Action] = []
    for action in actions:
        if action.action == ActionKind.ACKNOWLEDGE:
            if (understanding.kind in NO_AUTO_REPLY or mail.sender.email in own_addresses
                    or not mail.sender.email or mail.header("auto-submitted").lower()
                    not in ("", "no")):
                continue  # RFC 3834: never answer machines, lists or ourselves
            action = Action(ActionKind.ACKNOWLEDGE.value, (mail.sender.email,), action.note)
        action = announced(action, understanding)
        safe.append(action)
    return merge(safe)


def merge(actions: list[Action]) -> list[Action]:
    """One email per action kind (its Message-ID is the mail's hash and the kind): the
    recipients and notes of several actions of a kind merged, in order."""
    merged: dict[str, Action] = {}
    for action in actions:
        if action.action in merged:
            old = merged[action.action]
            to = old.to + tuple(a for a in action.to if a not in old.to)
            note = "; ".join(n for n in (old.note, action.note) if n)
            merged[action.action] = Action(action.action, to, note)
        else:
            merged[action.action] = action
    return list(merged.values())
