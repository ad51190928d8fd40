"""Test rules before they go live: expectations (`vanthu rules test DIR`) and a replay of
stored mail against the current rules (`vanthu rules replay --since DATE`). Nothing is sent
and nothing is written.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select

from daemon.config import Config
from daemon.db import messages, reading
from daemon.errors import BadMessage
from daemon.intake.store import MailStore
from daemon.models import Decision, Hold
from daemon.office.register import DbCases
from daemon.routing import ruleyaml
from daemon.routing.route import decide
from daemon.routing.rules import ActionKind, RuleSet
from daemon.understand import NoCases, understand

# The actions that become emails, in the order results are printed.
EMAIL_ACTIONS: tuple[str, ...] = tuple(kind.value for kind in (
    ActionKind.FORWARD, ActionKind.ACKNOWLEDGE, ActionKind.NOTIFY, ActionKind.ASSIGN))


@dataclass(frozen=True)
class Outcome:
    name: str
    passed: bool
    problems: tuple[str, ...]


def _summary(decision: Decision) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {name: [] for name in EMAIL_ACTIONS}
    for action in decision.actions:
        out[action.action] = sorted(action.to)
    return out


def _decide(cfg: Config, rules: RuleSet, raw: bytes, at: datetime,
            cases: Any) -> tuple[str, Decision]:
    mail, und = understand(raw, cfg, cases)
    own = cfg.own_addresses
    decision = decide(und, mail, rules, at.astimezone(cfg.agency.tz), own,
                      cfg.calendar.work_calendar())
    return und.kind.value, decision


def run_expectations(cfg: Config, rules: RuleSet, directory: Path) -> Iterator[Outcome]:
    """Check every case of every YAML file in `directory`."""
    for file in sorted(directory.glob("*.yaml")):
        data = ruleyaml.safe_load(file.read_text(encoding="utf-8")) or {}
        for i, case in enumerate(data.get("cases") or []):
            mail_path = (file.parent / str(case.get("mail", ""))).resolve()
            name = f"{file.name}#{i + 1} {mail_path.name}"
            when = case.get("at")
            if isinstance(when, date) and not isinstance(when, datetime):
                when = datetime.combine(when, datetime.min.time().replace(hour=9))
            at = datetime.fromisoformat(str(when)) if isinstance(when, str) else when
            at = at or datetime.now(UTC)
            if at.tzinfo is None:
                at = at.replace(tzinfo=cfg.agency.tz)
            try:
                kind, decision = _decide(cfg, rules, mail_path.read_bytes(), at, NoCases())
            except (OSError, BadMessage) as err:
                yield Outcome(name, False, (f"cannot read the mail: {err}",))
                continue
            got = _summary(decision)
            problems: list[str] = []
            expect = case.get("expect") or {}
            if "kind" in expect and expect["kind"] != kind:
                problems.append(f"kind: expected {expect['kind']}, got {kind}")
            for action in EMAIL_ACTIONS:
                if action in expect and sorted(a.lower() for a in expect[action]) != got[action]:
                    problems.append(f"{action}: expected {sorted(expect[action])}, "
                                    f"got {got[action]}")
            if "quarantine" in expect:
                held = any(isinstance(e, Hold) for e in decision.effects)
                if bool(expect["quarantine"]) != held:
                    problems.append(f"quarantine: expected {expect['quarantine']}, got {held}")
            yield Outcome(name, not problems, tuple(problems))


def replay(cfg: Config, rules: RuleSet, engine: Engine, since: date) -> Iterator[str]:
    """Re-evaluate mail stored since `since`; yield a line for each that would go otherwise."""
    store = MailStore(cfg.storage.data_dir)
    start = datetime.combine(since, datetime.min.time(), cfg.agency.tz)
    with reading(engine) as conn:
        rows = conn.execute(select(messages.c.id, messages.c.sha256, messages.c.stored_at,
                                   messages.c.subject, messages.c.decision)
                            .where(messages.c.stored_at >= start,
                                   messages.c.decision.is_not(None))
                            .order_by(messages.c.id)).all()
        for row in rows:
            try:
                _, decision = _decide(cfg, rules, store.read(row.sha256), row.stored_at,
                                      DbCases(conn))
            except (OSError, BadMessage) as err:
                yield f"{row.id}: cannot be replayed: {err}"
                continue
            before = {a["action"]: sorted(a.get("to", [])) for a in row.decision["actions"]
                      if a["action"] in EMAIL_ACTIONS}
            after = {k: v for k, v in _summary(decision).items() if v}
            if before != after:
                changes = []
                for action in sorted(set(before) | set(after)):
                    if before.get(action) != after.get(action):
                        changes.append(f"{action}: {before.get(action, [])} → "
                                       f"{after.get(action, [])}")
                yield f"{row.id} «{row.subject[:60]}»: " + "; ".join(changes)
        conn.rollback()
