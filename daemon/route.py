"""Routing: evaluate the ordered rules against an understood mail and resolve who gets what.

Pure: the same mail, rules and date always give the same Decision, with a trace of every
rule. The safety rules at the end are applied whatever the rule files say.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import Any

from daemon.models import Action, Decision, Kind, ParsedMail, RuleTrace, Understanding
from daemon.rules import ESCALATION, ActionSpec, Person, RuleSet, Targets
from daemon.textnorm import fold

NO_AUTO_REPLY = {Kind.AUTO, Kind.BOUNCE, Kind.BULK, Kind.SPAM}


@dataclass(frozen=True)
class Facts:
    """What conditions can look at."""

    kind: str
    type: str
    urgent: bool
    confidential: bool
    sender: str
    subject: str
    text: str

    @classmethod
    def of(cls, understanding: Understanding, mail: ParsedMail) -> Facts:
        doc = understanding.document
        return cls(
            kind=understanding.kind.value,
            type=(doc.type or "") if doc else "",
            urgent=understanding.urgent,
            confidential=understanding.confidential,
            sender=mail.sender.email,
            subject=mail.subject,
            text=f"{mail.subject}\n{mail.body}",
        )


def _text_matches(value: Any, text: str) -> bool:
    if isinstance(value, dict):
        if "regex" in value and not re.search(str(value["regex"]), text, re.I):
            return False
        return not ("contains" in value and fold(str(value["contains"]), accents=False)
                    not in fold(text, accents=False))
    values = [value] if isinstance(value, str) else list(value)
    return any(fold(v, accents=False) in fold(text, accents=False) for v in values)


def evaluate(when: dict[str, Any], facts: Facts) -> tuple[bool, str]:
    """Whether every condition in `when` holds, and each condition's outcome as the reason."""
    reasons: list[str] = []
    result = True
    for key, value in when.items():
        if key == "all":
            outcomes = [evaluate(c, facts) for c in value]
            ok = all(o for o, _ in outcomes)
            why = "all(" + "; ".join(w for _, w in outcomes) + ")"
        elif key == "any":
            outcomes = [evaluate(c, facts) for c in value]
            ok = any(o for o, _ in outcomes)
            why = "any(" + "; ".join(w for _, w in outcomes) + ")"
        elif key == "not":
            inner, inner_why = evaluate(value, facts)
            ok, why = not inner, f"not({inner_why})"
        elif key in ("urgent", "confidential"):
            actual = getattr(facts, key)
            ok, why = actual == value, f"{key}={actual}"
        elif key in ("kind", "type"):
            allowed = [value] if isinstance(value, str) else list(value)
            actual = getattr(facts, key)
            ok = fold(actual) in {fold(a) for a in allowed}
            why = f"{key}={actual or 'none'}"
        elif key == "sender":
            allowed = [value] if isinstance(value, str) else list(value)
            ok = facts.sender in {a.lower() for a in allowed}
            why = f"sender={facts.sender}"
        elif key == "sender_domain":
            allowed = [value] if isinstance(value, str) else list(value)
            domain = facts.sender.rpartition("@")[2]
            ok = any(domain == d.lower() or domain.endswith("." + d.lower()) for d in allowed)
            why = f"sender_domain={domain}"
        elif key in ("subject", "text"):
            ok = _text_matches(value, getattr(facts, key))
            why = f"{key} {'matches' if ok else 'does not match'} {value!r}"
        else:  # validated at load; unreachable for a loaded RuleSet
            ok, why = False, f"unknown condition {key}"
        reasons.append(("✓ " if ok else "✗ ") + why)
        result = result and ok
    return result, "; ".join(reasons) or "no condition: always"


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


def decide(understanding: Understanding, mail: ParsedMail, rules: RuleSet, on: date,
           own_addresses: frozenset[str] = frozenset()) -> Decision:
    """Run the rules in order (until a matching rule says stop) and apply the safety rules."""
    facts = Facts.of(understanding, mail)
    traces: list[RuleTrace] = []
    specs: list[ActionSpec] = []
    stopped_by = ""
    for rule in rules.rules:
        if stopped_by:
            traces.append(RuleTrace(rule.id, False, f"not evaluated: stopped by {stopped_by}"))
            continue
        matched, why = evaluate(rule.when, facts)
        traces.append(RuleTrace(rule.id, matched, why))
        if matched:
            specs.extend(rule.then)
            if rule.stop:
                stopped_by = rule.id
    actions: list[Action] = []
    for spec in specs:
        targets = spec.targets
        if spec.action == "acknowledge" and not (targets.roles or targets.people
                                                 or targets.addresses or targets.departments):
            targets = Targets(sender=True)
        to, notes = resolve(rules, targets, on, mail.sender.email)
        if to:
            actions.append(Action(spec.action, tuple(to), "; ".join(notes)))
    return Decision(tuple(traces), tuple(apply_safety(actions, understanding, mail,
                                                      own_addresses)))


def apply_safety(actions: list[Action], understanding: Understanding, mail: ParsedMail,
                 own_addresses: frozenset[str]) -> list[Action]:
    """The rules no rule file can override (DESIGN invariants 5 and 6)."""
    if understanding.quarantine:
        return []  # held for a human: nothing leaves
    safe: list[Action] = []
    for action in actions:
        if action.action == "acknowledge":
            if (understanding.kind in NO_AUTO_REPLY or mail.sender.email in own_addresses
                    or not mail.sender.email or mail.header("auto-submitted").lower()
                    not in ("", "no")):
                continue  # RFC 3834: never answer machines, lists or ourselves
            action = Action("acknowledge", (mail.sender.email,), action.note)
        if understanding.confidential and action.action == "forward":
            # A confidential document never travels by email: a notice without content.
            action = Action("notify", action.to, action.note)
        safe.append(action)
    merged: dict[str, Action] = {}
    for action in safe:  # one mail per action kind, recipients merged in order
        if action.action in merged:
            old = merged[action.action]
            to = old.to + tuple(a for a in action.to if a not in old.to)
            note = "; ".join(n for n in (old.note, action.note) if n)
            merged[action.action] = Action(action.action, to, note)
        else:
            merged[action.action] = action
    return list(merged.values())
