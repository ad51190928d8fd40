"""The agency's people and routing rules, loaded from `rules/*.yaml` and validated whole.

`people.yaml` says who is who (people, roles, departments, absences with stand-ins); every
other YAML file holds an ordered list of `rules`, files taken in name order. Every problem of
every file is reported as `file:line: message` (the line of the key itself where it is known);
a set with any problem is rejected whole, so a bad edit never half-applies. Pure but for
reading the files.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, ClassVar, assert_never

from daemon.config import address_problem, as_date, hhmm, name_problem, normal_name
from daemon.errors import ConfigError, Problem
from daemon.routing import ruleyaml
from daemon.routing.conditions import Place, When
from daemon.routing.ruleyaml import Node, line_of, strings

ROLES = ("giam_doc", "pho_giam_doc", "chanh_van_phong", "van_thu", "truong_phong")
# Who takes over when nobody in a role is present: a Deputy's work goes to the Director.
ESCALATION = {"pho_giam_doc": "giam_doc", "chanh_van_phong": "pho_giam_doc"}
_ID = re.compile(r"^[a-z0-9_\-]+$")
# Keys people write for what vanthu calls otherwise: the hint goes with "unknown key".
_HINTS = {"start": "from", "end": "to", "until": "to", "standin": "stand_in",
          "stand-in": "stand_in", "mail": "email", "role": "roles"}


@dataclass(frozen=True)
class Person:
    id: str
    name: str
    email: str
    roles: tuple[str, ...]


@dataclass(frozen=True)
class Department:
    id: str
    name: str
    email: str
    head: str | None


@dataclass(frozen=True)
class Absence:
    person: str
    start: date
    end: date  # inclusive
    reason: str
    stand_in: str | None


@dataclass(frozen=True)
class Targets:
    """Who an action is addressed to, before stand-ins are applied."""

    roles: tuple[str, ...] = ()
    people: tuple[str, ...] = ()
    departments: tuple[str, ...] = ()
    addresses: tuple[str, ...] = ()
    sender: bool = False  # the mail's sender (acknowledgements)


class ActionKind(enum.StrEnum):
    """What a rule's action does: the key it is written with in `then:`."""

    FORWARD = "forward"
    ACKNOWLEDGE = "acknowledge"
    NOTIFY = "notify"
    ASSIGN = "assign"
    TAG = "tag"
    MOVE = "move"
    QUARANTINE = "quarantine"


# Each action kind is its own type, with its own fields; `targets` is whom it names (empty for
# the actions that email nobody by name).


@dataclass(frozen=True)
class Forward:
    """Send the mail on (a content-free notice instead when it is confidential)."""

    kind: ClassVar[ActionKind] = ActionKind.FORWARD
    targets: Targets


@dataclass(frozen=True)
class Notify:
    """Tell the targets that the mail arrived, without its content."""

    kind: ClassVar[ActionKind] = ActionKind.NOTIFY
    targets: Targets


@dataclass(frozen=True)
class Acknowledge:
    """Acknowledge receipt: always to the sender, whatever a rule file wrote."""

    kind: ClassVar[ActionKind] = ActionKind.ACKNOWLEDGE
    targets: ClassVar[Targets] = Targets(sender=True)
    template: str = ""


@dataclass(frozen=True)
class Assign:
    """Give the mail to a lead department (chủ trì), with cooperating ones (phối hợp) and a
    deadline in working days."""

    kind: ClassVar[ActionKind] = ActionKind.ASSIGN
    targets: ClassVar[Targets] = Targets()
    lead: str
    cooperate: tuple[str, ...] = ()
    deadline_days: int | None = None


@dataclass(frozen=True)
class Tag:
    kind: ClassVar[ActionKind] = ActionKind.TAG
    targets: ClassVar[Targets] = Targets()
    tags: tuple[str, ...]


@dataclass(frozen=True)
class MoveTo:
    """Move the mail to this IMAP folder once it is routed."""

    kind: ClassVar[ActionKind] = ActionKind.MOVE
    targets: ClassVar[Targets] = Targets()
    folder: str


@dataclass(frozen=True)
class Quarantine:
    """Hold the mail for the clerk, with this reason; nothing leaves."""

    kind: ClassVar[ActionKind] = ActionKind.QUARANTINE
    targets: ClassVar[Targets] = Targets()
    reason: str


ActionSpec = Forward | Notify | Acknowledge | Assign | Tag | MoveTo | Quarantine


@dataclass(frozen=True)
class Rule:
    id: str
    when: When
    then: tuple[ActionSpec, ...]
    stop: bool
    file: str
    line: int


@dataclass(frozen=True)
class Requirement:
    """One document of a procedure's dossier and the words that recognise it in a file's
    name or title (its name is always one of them)."""

    name: str
    match: tuple[str, ...] = ()
    optional: bool = False  # recognised and listed, but its absence does not stop the dossier


@dataclass(frozen=True)
class Procedure:
    """An administrative procedure of the catalogue (rules/procedures.yaml)."""

    id: str
    name: str
    keywords: tuple[str, ...]
    days: int  # legal processing time, in working days
    documents: tuple[str, ...]  # the name of every document of its dossier
    cutoff: str | None = None  # HH:MM: its own cut-off hour, instead of [calendar] cutoff
    requirements: tuple[Requirement, ...] = ()  # the same documents, with their recognisers


@dataclass(frozen=True)
class RuleSet:
    people: dict[str, Person]
    departments: dict[str, Department]
    absences: tuple[Absence, ...]
    rules: tuple[Rule, ...]
    higher_authority: tuple[str, ...] = field(default=())  # addresses past the Director
    procedures: tuple[Procedure, ...] = ()


_TARGET_KEYS = {"roles", "people", "departments", "addresses"}
_ACTION_KEYS = {
    ActionKind.FORWARD: _TARGET_KEYS, ActionKind.NOTIFY: _TARGET_KEYS,
    ActionKind.ACKNOWLEDGE: {"template"},
    ActionKind.ASSIGN: {"lead", "cooperate", "deadline_days"},
    ActionKind.TAG: {"tags"}, ActionKind.MOVE: {"folder"}, ActionKind.QUARANTINE: {"reason"},
}


class _Checker:
    def __init__(self) -> None:
        self.problems: list[Problem] = []
        # False while people.yaml could not be read: references to people and departments
        # cannot be judged then, and reporting each one would bury the real problem.
        self.people_known = True

    def error(self, file: str, node: Any, message: str, key: str | None = None) -> None:
        """A problem at `node`'s `key` when that line is known, else at the node."""
        self.problems.append(Problem(file, line_of(node, key), message))

    def keys(self, file: str, node: Node, allowed: set[str], what: str) -> None:
        for key in node:
            if key not in allowed:
                hint = _HINTS.get(key)
                hint_text = f" (did you mean {hint!r}?)" if hint in allowed else ""
                self.error(file, node, f"unknown key {key!r} in {what}{hint_text}", key)

    def name(self, file: str, node: Node, default: str, what: str) -> str:
        """The `name` of a person, department or procedure: one line of text, NFC."""
        value = node.get("name", default)
        if not isinstance(value, str):
            self.error(file, node, f"{what}: name must be text", "name")
            return default
        if problem := name_problem(value):
            self.error(file, node, f"{what}: name {problem}", "name")
            return default
        return normal_name(value)

    def email(self, file: str, node: Node, what: str) -> str:
        value = node.get("email")
        problem = address_problem(value) if isinstance(value, str) else "missing or not text"
        if problem:
            self.error(file, node, f"{what} has no valid email: {problem}", "email")
        return str(value or "").lower()

    def strings(self, file: str, node: Node, key: str, what: str) -> tuple[str, ...]:
        value = node.get(key, [])
        found = strings(value)
        if found is None:
            self.error(file, node, f"{what}: {key} takes a string or a list of strings", key)
        return found or ()


def _list(file: str, data: Node, key: str, c: _Checker) -> list[Any]:
    value = data.get(key) or []
    if not isinstance(value, list):
        c.error(file, data, f"{key} must be a list", key)
        return []
    return value


def _people(file: str, data: Any, c: _Checker) -> tuple[dict[str, Person],
                                                        dict[str, Department],
                                                        list[Absence], tuple[str, ...]]:
    people: dict[str, Person] = {}
    departments: dict[str, Department] = {}
    absences: list[Absence] = []
    if not isinstance(data, Node):
        c.error(file, data, "must be a mapping with people, departments, absences")
        c.people_known = False
        return people, departments, absences, ()
    c.keys(file, data, {"people", "departments", "absences", "higher_authority"}, "people file")
    for node in _list(file, data, "people", c):
        if not isinstance(node, Node):
            c.error(file, data, "each person must be a mapping", "people")
            continue
        c.keys(file, node, {"id", "name", "email", "roles", "note"}, "person")
        pid = str(node.get("id", ""))
        roles = c.strings(file, node, "roles", f"person {pid!r}")
        if not _ID.match(pid):
            c.error(file, node, f"person id {pid!r} must be lower-case letters, digits, _ or -",
                    "id")
        if pid in people:
            c.error(file, node, f"person {pid!r} defined twice", "id")
        email = c.email(file, node, f"person {pid!r}")
        for role in roles:
            if role not in ROLES:
                c.error(file, node, f"unknown role {role!r} (known: {', '.join(ROLES)})",
                        "roles")
        people[pid] = Person(pid, c.name(file, node, pid, f"person {pid!r}"), email, roles)
    for node in _list(file, data, "departments", c):
        if not isinstance(node, Node):
            c.error(file, data, "each department must be a mapping", "departments")
            continue
        c.keys(file, node, {"id", "name", "email", "head", "note"}, "department")
        did = str(node.get("id", ""))
        head = node.get("head")
        if not _ID.match(did):
            c.error(file, node, f"department id {did!r} must be lower-case letters, digits, _ "
                                "or -", "id")
        if did in departments:
            c.error(file, node, f"department {did!r} defined twice", "id")
        email = c.email(file, node, f"department {did!r}")
        if head is not None and head not in people:
            c.error(file, node, f"department {did!r}: unknown head {head!r}", "head")
        departments[did] = Department(did, c.name(file, node, did, f"department {did!r}"),
                                      email, head)
    for node in _list(file, data, "absences", c):
        if not isinstance(node, Node):
            c.error(file, data, "each absence must be a mapping", "absences")
            continue
        c.keys(file, node, {"person", "from", "to", "reason", "stand_in"}, "absence")
        who, stand_in = node.get("person"), node.get("stand_in")
        if who not in people:
            c.error(file, node, f"absence of unknown person {who!r}", "person")
        if stand_in is not None and stand_in not in people:
            c.error(file, node, f"unknown stand-in {stand_in!r}", "stand_in")
        if stand_in is not None and stand_in == who:
            c.error(file, node, f"{who} cannot stand in for themself", "stand_in")
        reason = node.get("reason", "")
        if not isinstance(reason, str) or (reason and name_problem(reason)):
            c.error(file, node, "reason must be one line of text", "reason")
            reason = ""
        dates: list[date] = []
        for key in ("from", "to"):
            if key not in node:
                c.error(file, node, f"absence needs {key!r}: a date (YYYY-MM-DD)")
                continue
            parsed = as_date(node[key])
            if isinstance(parsed, str):
                c.error(file, node, f"absence {key!r}: {parsed}", key)
            else:
                dates.append(parsed)
        if len(dates) != 2:
            continue
        start, end = dates
        if end < start:
            c.error(file, node, f"absence ends ({end}) before it starts ({start})", "to")
        absences.append(Absence(str(who), start, end, normal_name(reason),
                                str(stand_in) if stand_in else None))
    for i, a in enumerate(absences):
        for b in absences[i + 1:]:
            if a.person == b.person and a.start <= b.end and b.start <= a.end:
                c.error(file, data, f"absences of {a.person} overlap ({a.start}..{a.end} and "
                                    f"{b.start}..{b.end})", "absences")
        for b in absences:
            if a.stand_in == b.person and a.start <= b.end and b.start <= a.end:
                c.error(file, data, f"stand-in {a.stand_in} for {a.person} is absent too "
                                    f"({b.start}..{b.end})", "absences")
    higher = c.strings(file, data, "higher_authority", "people file")
    for address in higher:
        if problem := address_problem(address):
            c.error(file, data, f"higher_authority: {problem}", "higher_authority")
    return people, departments, absences, tuple(a.lower() for a in higher)


def _procedures(file: str, data: Any, c: _Checker) -> tuple[Procedure, ...]:
    if not isinstance(data, Node) or not isinstance(data.get("procedures"), list):
        c.error(file, data, "the catalogue needs a 'procedures:' list")
        return ()
    c.keys(file, data, {"procedures"}, "procedure catalogue")
    found: list[Procedure] = []
    seen: set[str] = set()
    for node in data["procedures"]:
        if not isinstance(node, Node):
            c.error(file, data, "each procedure must be a mapping", "procedures")
            continue
        c.keys(file, node, {"id", "name", "keywords", "days", "documents", "note", "cutoff"},
               "procedure")
        pid, days = str(node.get("id", "")), node.get("days")
        keywords = strings(node.get("keywords", []))
        if not _ID.match(pid):
            c.error(file, node, f"procedure id {pid!r} must be lower-case letters, digits, _ or "
                                "-", "id")
        if pid in seen:
            c.error(file, node, f"procedure {pid!r} defined twice", "id")
        seen.add(pid)
        if not keywords:
            c.error(file, node, f"procedure {pid!r} needs keywords", "keywords")
        if not isinstance(days, int) or isinstance(days, bool) or days < 1:
            c.error(file, node, f"procedure {pid!r}: days takes a positive whole number", "days")
            days = 1
        requirements = _requirements(file, node, f"procedure {pid!r}", c)
        documents = tuple(r.name for r in requirements)
        cutoff = node.get("cutoff")
        if cutoff is not None and not hhmm(cutoff):
            c.error(file, node, f"procedure {pid!r}: cutoff takes a time \"HH:MM\" "
                                "(e.g. \"15:00\")", "cutoff")
            cutoff = None
        found.append(Procedure(pid, c.name(file, node, pid, f"procedure {pid!r}"),
                               keywords or (), days, documents, cutoff, requirements))
    return tuple(found)


def _requirements(file: str, node: Node, what: str, c: _Checker) -> tuple[Requirement, ...]:
    """A procedure's `documents`: each a name, or a mapping {name, match: [...], optional}."""
    value = node.get("documents", [])
    if not isinstance(value, list):
        c.error(file, node, f"{what}: documents takes a list of names or of mappings "
                            "{name, match, optional}", "documents")
        return ()
    found: list[Requirement] = []
    for item in value:
        if isinstance(item, str) and item.strip():
            found.append(Requirement(normal_name(item), (normal_name(item),)))
            continue
        if not isinstance(item, Node):
            c.error(file, node, f"{what}: each document is a name or a mapping {{name, match, "
                                "optional}", "documents")
            continue
        c.keys(file, item, {"name", "match", "optional"}, f"{what} document")
        name = item.get("name")
        if not isinstance(name, str) or not name.strip():
            c.error(file, item, f"{what}: a document needs a name", "name")
            continue
        match = strings(item.get("match", []))
        if match is None or not all(m.strip() for m in match):
            c.error(file, item, f"{what}: document {name!r}: match takes a list of words or "
                                "phrases (e.g. [\"GCN QSDĐ\", \"sổ đỏ\"])", "match")
            match = ()
        optional = item.get("optional", False)
        if not isinstance(optional, bool):
            c.error(file, item, f"{what}: document {name!r}: optional takes true or false",
                    "optional")
            optional = False
        name = normal_name(name)
        found.append(Requirement(name, (name, *(normal_name(m) for m in match)), optional))
    return tuple(found)


def _targets(file: str, node: Node, c: _Checker, people: dict[str, Person],
             departments: dict[str, Department]) -> Targets:
    roles = strings(node.get("roles", [])) or ()
    who = strings(node.get("people", [])) or ()
    units = strings(node.get("departments", [])) or ()
    addresses = strings(node.get("addresses", [])) or ()
    for role in roles:
        if role not in ROLES:
            c.error(file, node, f"unknown role {role!r}", "roles")
    for pid in who:
        if pid not in people and c.people_known:
            c.error(file, node, f"unknown person {pid!r}", "people")
    for did in units:
        if did not in departments and c.people_known:
            c.error(file, node, f"unknown department {did!r}", "departments")
    for address in addresses:
        if problem := address_problem(address):
            c.error(file, node, f"not an email address: {problem}", "addresses")
    return Targets(roles, who, units, tuple(a.lower() for a in addresses))


def _action(file: str, kind: ActionKind, spec: Node, c: _Checker, people: dict[str, Person],
            departments: dict[str, Department]) -> ActionSpec:
    """Validate one action's own fields and build it."""
    c.keys(file, spec, _ACTION_KEYS[kind], f"{kind} action")
    match kind:
        case ActionKind.FORWARD | ActionKind.NOTIFY:
            targets = _targets(file, spec, c, people, departments)
            if not (targets.roles or targets.people or targets.departments
                    or targets.addresses):
                c.error(file, spec, f"{kind} needs roles, people, departments or addresses")
            return Forward(targets) if kind is ActionKind.FORWARD else Notify(targets)
        case ActionKind.ACKNOWLEDGE:
            return Acknowledge(template=str(spec.get("template", "")))
        case ActionKind.ASSIGN:
            lead = spec.get("lead")
            cooperate = strings(spec.get("cooperate", [])) or ()
            days = spec.get("deadline_days")
            for unit in (lead, *cooperate):
                if unit not in departments and c.people_known:
                    c.error(file, spec, f"unknown department {unit!r}")
            if days is not None and (not isinstance(days, int) or isinstance(days, bool)
                                     or days < 1):
                c.error(file, spec, "deadline_days takes a positive whole number")
                days = None
            return Assign(str(lead), cooperate, days)
        case ActionKind.TAG:
            tags = strings(spec.get("tags", []))
            if not tags:
                c.error(file, spec, "tag needs tags: a list of words")
            return Tag(tags or ())
        case ActionKind.MOVE:
            folder = spec.get("folder")
            if not isinstance(folder, str) or not folder:
                c.error(file, spec, "move needs folder: the IMAP folder name")
            return MoveTo(str(folder or ""))
        case ActionKind.QUARANTINE:
            reason = spec.get("reason")
            if not isinstance(reason, str) or not reason:
                c.error(file, spec, "quarantine needs reason: words for the clerk")
            return Quarantine(str(reason or ""))
    assert_never(kind)


def load(directory: Path) -> RuleSet:
    """Load every YAML file of `directory`; raise ConfigError listing every problem of every
    file (a missing or broken people.yaml does not stop the rule files being checked)."""
    c = _Checker()
    people_file = directory / "people.yaml"
    people: dict[str, Person] = {}
    departments: dict[str, Department] = {}
    absences: list[Absence] = []
    higher: tuple[str, ...] = ()
    if not directory.is_dir():
        raise ConfigError([Problem(str(directory), None, "the rules folder does not exist")])
    if people_file.exists():
        before = len(c.problems)
        data = ruleyaml.read(people_file, c.problems)
        if data is None and len(c.problems) > before:  # not YAML: said once, not twice
            c.people_known = False
        else:
            people, departments, absences, higher = _people(str(people_file), data, c)
    else:
        c.problems.append(Problem(str(people_file), None, "missing: who is who must be said"))
        c.people_known = False
    catalogue = directory / "procedures.yaml"
    procedures: tuple[Procedure, ...] = ()
    catalogue_known = True
    if catalogue.exists():
        before = len(c.problems)
        data = ruleyaml.read(catalogue, c.problems)
        catalogue_known = not (data is None and len(c.problems) > before)
        procedures = _procedures(str(catalogue), data, c) if catalogue_known else ()
    known_procedures = frozenset(p.id for p in procedures) if catalogue_known else None
    rules: list[Rule] = []
    seen: dict[str, str] = {}
    for path in sorted(directory.glob("*.yaml")):
        if path.name in ("people.yaml", "procedures.yaml") or path.name.startswith("."):
            continue
        before = len(c.problems)
        data = ruleyaml.read(path, c.problems)
        file = str(path)
        if data is None:
            if len(c.problems) == before:  # empty: an emptied file must not drop its rules
                c.problems.append(Problem(file, None, "the file is empty: give it a 'rules:' "
                                                      "list or remove it"))
            continue
        if not isinstance(data, Node) or not isinstance(data.get("rules"), list):
            c.error(file, data, "a rules file must have a 'rules:' list")
            continue
        c.keys(file, data, {"rules"}, "rules file")
        for node in data["rules"]:
            if not isinstance(node, Node):
                c.error(file, data, "each rule must be a mapping", "rules")
                continue
            c.keys(file, node, {"id", "description", "when", "then", "stop"}, "rule")
            rid = str(node.get("id", ""))
            if not _ID.match(rid):
                c.error(file, node, f"rule id {rid!r} must be lower-case letters, digits, _ or -",
                        "id")
            if rid in seen:
                c.error(file, node, f"rule id {rid!r} already used at {seen[rid]}", "id")
            seen[rid] = f"{file}:{node.line}"
            when = When()
            if not isinstance(node.get("when", Node()), Node):
                c.error(file, node, "when takes a mapping of conditions", "when")
            elif "when" in node:
                when = When.build(node["when"], Place(file, node, "when", c.problems,
                                                      known_procedures))
            actions: list[ActionSpec] = []
            then = node.get("then") or []
            if not isinstance(then, list):
                c.error(file, node, "then takes a list of actions", "then")
                then = []
            for item in then:
                if not isinstance(item, Node) or len(item) != 1:
                    c.error(file, item if isinstance(item, Node) else node,
                            "each action is a mapping with one key: "
                            + ", ".join(sorted(ActionKind)),
                            None if isinstance(item, Node) else "then")
                    continue
                (name, spec), = item.items()
                try:
                    kind = ActionKind(name)
                except ValueError:
                    c.error(file, item, f"unknown action {name!r}")
                    continue
                if spec is None:
                    spec = Node()
                    spec.line = item.line
                if not isinstance(spec, Node):
                    c.error(file, item, f"{name} takes a mapping of its fields")
                    continue
                actions.append(_action(file, kind, spec, c, people, departments))
            stop = node.get("stop", False)
            if not isinstance(stop, bool):
                c.error(file, node, "stop takes true or false", "stop")
            if rules and rules[-1].stop and not rules[-1].when.conditions:
                c.error(file, node, f"rule {rid!r} can never run: rule {rules[-1].id!r} "
                                    "above it stops every mail")
            rules.append(Rule(rid, when, tuple(actions), stop is True, file, node.line))
    if c.problems:
        raise ConfigError(c.problems)
    return RuleSet(people, departments, tuple(absences), tuple(rules), higher, procedures)
