"""Rule conditions: one class per `when:` key, built from its YAML value when the rules load.

Building a condition is its validation: a wrong value is reported at its file and line, and
what is kept is what `check` needs, prepared once (folded words, compiled regexes).
`check(facts)` is all routing calls: whether the condition holds, and why, in the words
kept with every decision ("✓ kind=document"). Pure. Rule regexes run on RE2, in time linear
in the mail's text whatever the pattern: a rule can never stall the pipeline on a hostile mail.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, ClassVar, Self

import re2

from daemon.errors import ConfigError, Problem
from daemon.models import Kind
from daemon.routing.ruleyaml import Node, line_of, strings
from daemon.textnorm import fold

if TYPE_CHECKING:
    from daemon.routing.route import Facts

URGENCY_LEVELS = ("Hỏa tốc", "Thượng khẩn", "Khẩn")


def _caseless() -> re2.Options:
    options = re2.Options()
    options.case_sensitive = False
    options.log_errors = False  # a bad pattern is reported at its line, not on stderr
    return options


_CASELESS = _caseless()
_HOURS = re.compile(r"([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-3]):[0-5]\d")


@dataclass(frozen=True)
class Place:
    """Where a condition is written: the mapping holding its key, in a rule file. Problems
    found while building it are added to `problems`, at the line of the key or of a key
    inside its value."""

    file: str
    node: Any
    key: str
    problems: list[Problem]
    procedures: frozenset[str] | None = None  # the catalogue's ids; None while unknown

    def error(self, message: str, inner: Any = None, inner_key: str | None = None) -> None:
        line = line_of(inner, inner_key) if isinstance(inner, Node) else None
        self.problems.append(Problem(self.file, line or line_of(self.node, self.key), message))

    def at(self, node: Any, key: str) -> Place:
        return replace(self, node=node, key=key)


def _told(ok: bool, why: str) -> tuple[bool, str]:
    return ok, ("✓ " if ok else "✗ ") + why


class Condition(ABC):
    """One `key: value` of a `when:` mapping."""

    key: ClassVar[str]

    @classmethod
    @abstractmethod
    def build(cls, value: Any, at: Place) -> Self:
        """The condition `value` says, its problems reported at `at`."""

    @abstractmethod
    def check(self, facts: Facts) -> tuple[bool, str]:
        """Whether the condition holds for `facts`, and why (✓/✗ and what was seen)."""


@dataclass(frozen=True)
class When:
    """The conditions of one mapping (a rule's `when`, an item of all/any, the body of not):
    every one must hold; none at all means always."""

    conditions: tuple[Condition, ...] = ()

    @classmethod
    def build(cls, node: Any, at: Place) -> When:
        if not isinstance(node, dict):
            at.error("a condition must be a mapping")
            return cls()
        found: list[Condition] = []
        for key, value in node.items():
            kind = CONDITIONS.get(key)
            if kind is None:
                at.error(f"unknown key {key!r} in condition", node, key)
                continue
            found.append(kind.build(value, at.at(node, key)))
        return cls(tuple(found))

    def check(self, facts: Facts) -> tuple[bool, str]:
        # Every condition is checked, not only up to the first miss: the trace shows them all.
        outcomes = [condition.check(facts) for condition in self.conditions]
        return (all(ok for ok, _ in outcomes),
                "; ".join(why for _, why in outcomes) or "no condition: always")


def parse(data: Any, file: str = "<when>",
          procedures: frozenset[str] | None = None) -> When:
    """The conditions of a `when` mapping given as plain data (tools and tests); ConfigError
    with every problem if it is not valid."""
    problems: list[Problem] = []
    when = When.build(data, Place(file, {"when": data}, "when", problems, procedures))
    if problems:
        raise ConfigError(problems)
    return when


# --- combinators ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Group(Condition):
    groups: tuple[When, ...]

    @classmethod
    def build(cls, value: Any, at: Place) -> Self:
        if not isinstance(value, list):
            at.error(f"{cls.key} takes a list of conditions")
            return cls(())
        return cls(tuple(When.build(item, at) for item in value))

    def _outcomes(self, facts: Facts) -> tuple[list[bool], str]:
        outcomes = [group.check(facts) for group in self.groups]
        return ([ok for ok, _ in outcomes],
                f"{self.key}(" + "; ".join(why for _, why in outcomes) + ")")


@dataclass(frozen=True)
class AllOf(_Group):
    """`all: [...]`: every item holds."""

    key: ClassVar[str] = "all"

    def check(self, facts: Facts) -> tuple[bool, str]:
        oks, why = self._outcomes(facts)
        return _told(all(oks), why)


@dataclass(frozen=True)
class AnyOf(_Group):
    """`any: [...]`: at least one item holds."""

    key: ClassVar[str] = "any"

    def check(self, facts: Facts) -> tuple[bool, str]:
        oks, why = self._outcomes(facts)
        return _told(any(oks), why)


@dataclass(frozen=True)
class Not(Condition):
    """`not: {...}`: the mapping does not hold."""

    key: ClassVar[str] = "not"
    inner: When

    @classmethod
    def build(cls, value: Any, at: Place) -> Self:
        return cls(When.build(value, at))

    def check(self, facts: Facts) -> tuple[bool, str]:
        ok, why = self.inner.check(facts)
        return _told(not ok, f"not({why})")


# --- true or false --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Flag(Condition):
    wanted: bool

    @classmethod
    def build(cls, value: Any, at: Place) -> Self:
        if not isinstance(value, bool):
            at.error(f"{cls.key} takes true or false")
            return cls(False)
        return cls(value)

    @staticmethod
    @abstractmethod
    def actual(facts: Facts) -> bool: ...

    def check(self, facts: Facts) -> tuple[bool, str]:
        actual = self.actual(facts)
        return _told(actual == self.wanted, f"{self.key}={actual}")


@dataclass(frozen=True)
class Urgent(_Flag):
    """`urgent: true`: the document carries any urgency level."""

    key: ClassVar[str] = "urgent"

    @staticmethod
    def actual(facts: Facts) -> bool:
        return facts.urgent


@dataclass(frozen=True)
class Confidential(_Flag):
    """`confidential: true`: the document is Mật, Tối mật or Tuyệt mật."""

    key: ClassVar[str] = "confidential"

    @staticmethod
    def actual(facts: Facts) -> bool:
        return facts.confidential


@dataclass(frozen=True)
class WorkingDay(_Flag):
    """`working_day: true`: the mail arrived on a working day of the Vietnamese calendar."""

    key: ClassVar[str] = "working_day"

    @staticmethod
    def actual(facts: Facts) -> bool:
        return facts.working_day


@dataclass(frozen=True)
class SignatureDoubt(_Flag):
    """`signature_doubt: true`: a document that claims to come from a government body carries
    a digital signature that is broken or not trusted."""

    key: ClassVar[str] = "signature_doubt"

    @staticmethod
    def actual(facts: Facts) -> bool:
        return facts.signature_doubt


# --- one of a list of values ----------------------------------------------------------------


@dataclass(frozen=True)
class _OneOf(Condition):
    """The fact, folded, is one of the values written, folded."""

    values: frozenset[str]

    @classmethod
    def build(cls, value: Any, at: Place) -> Self:
        written = strings(value)
        if written is None:
            at.error(f"{cls.key} takes a string or a list of strings")
            return cls(frozenset())
        for item in written:
            if problem := cls.problem(item, at):
                at.error(problem)
        return cls(frozenset(fold(item) for item in written))

    @classmethod
    def problem(cls, value: str, at: Place) -> str | None:
        """What is wrong with one value written, if anything."""
        return None

    @staticmethod
    @abstractmethod
    def actual(facts: Facts) -> str: ...

    def check(self, facts: Facts) -> tuple[bool, str]:
        actual = self.actual(facts)
        return _told(fold(actual) in self.values, f"{self.key}={actual or 'none'}")


@dataclass(frozen=True)
class KindIs(_OneOf):
    """`kind: [document, dossier]`: what the mail is."""

    key: ClassVar[str] = "kind"

    @classmethod
    def problem(cls, value: str, at: Place) -> str | None:
        return None if value in {k.value for k in Kind} else f"unknown kind {value!r}"

    @staticmethod
    def actual(facts: Facts) -> str:
        return facts.kind


@dataclass(frozen=True)
class TypeIs(_OneOf):
    """`type: [Quyết định, Công văn]`: the document's type as printed."""

    key: ClassVar[str] = "type"

    @staticmethod
    def actual(facts: Facts) -> str:
        return facts.type


@dataclass(frozen=True)
class UrgencyIs(_OneOf):
    """`urgency: [Hỏa tốc, Thượng khẩn]`: the document's urgency level."""

    key: ClassVar[str] = "urgency"

    @classmethod
    def problem(cls, value: str, at: Place) -> str | None:
        if value in URGENCY_LEVELS:
            return None
        return f"unknown urgency {value!r} (known: {', '.join(URGENCY_LEVELS)})"

    @staticmethod
    def actual(facts: Facts) -> str:
        return facts.urgency


@dataclass(frozen=True)
class ProcedureIs(_OneOf):
    """`procedure: [cchn]`: the catalogue procedure a dossier was matched to."""

    key: ClassVar[str] = "procedure"

    @classmethod
    def problem(cls, value: str, at: Place) -> str | None:
        if at.procedures is None or value in at.procedures:
            return None
        return f"unknown procedure {value!r} (rules/procedures.yaml)"

    @staticmethod
    def actual(facts: Facts) -> str:
        return facts.procedure


# --- the sender and the attachments ---------------------------------------------------------


def _listed(cls: type[Condition], value: Any, at: Place) -> tuple[str, ...]:
    written = strings(value)
    if written is None:
        at.error(f"{cls.key} takes a string or a list of strings")
    return written or ()


@dataclass(frozen=True)
class SenderIs(Condition):
    """`sender: [a@b.vn]`: the sender's address is one of these."""

    key: ClassVar[str] = "sender"
    addresses: frozenset[str]

    @classmethod
    def build(cls, value: Any, at: Place) -> Self:
        return cls(frozenset(a.lower() for a in _listed(cls, value, at)))

    def check(self, facts: Facts) -> tuple[bool, str]:
        return _told(facts.sender in self.addresses, f"sender={facts.sender}")


@dataclass(frozen=True)
class SenderDomain(Condition):
    """`sender_domain: [gov.vn]`: the sender's domain is one of these or below one."""

    key: ClassVar[str] = "sender_domain"
    domains: tuple[str, ...]

    @classmethod
    def build(cls, value: Any, at: Place) -> Self:
        return cls(tuple(d.lower() for d in _listed(cls, value, at)))

    def check(self, facts: Facts) -> tuple[bool, str]:
        domain = facts.sender.rpartition("@")[2]
        ok = any(domain == d or domain.endswith("." + d) for d in self.domains)
        return _told(ok, f"sender_domain={domain}")


@dataclass(frozen=True)
class AttachmentType(Condition):
    """`attachment_type: [pdf, application/zip]`: an attachment has this extension (`pdf`
    matches a name ending .pdf) or MIME type."""

    key: ClassVar[str] = "attachment_type"
    wanted: tuple[str, ...]

    @classmethod
    def build(cls, value: Any, at: Place) -> Self:
        return cls(tuple(w.lower().lstrip(".") for w in _listed(cls, value, at)))

    def check(self, facts: Facts) -> tuple[bool, str]:
        names = [name.lower() for name in facts.attachment_names]
        ok = any(("/" in want and want in facts.attachment_types)
                 or any(name.endswith("." + want) for name in names) for want in self.wanted)
        return _told(ok, f"attachment types {', '.join(facts.attachment_types) or 'none'}")


# --- the time of arrival --------------------------------------------------------------------


@dataclass(frozen=True)
class Hours(Condition):
    """`hours: "07:30-17:00"`: the mail arrived in this span (it may pass midnight)."""

    key: ClassVar[str] = "hours"
    start: str  # "HH:MM", compared as text
    end: str

    @classmethod
    def build(cls, value: Any, at: Place) -> Self:
        if not (isinstance(value, str) and _HOURS.fullmatch(value)):
            at.error("hours takes 'HH:MM-HH:MM'")
            return cls("00:00", "00:00")
        start, _, end = value.partition("-")
        return cls(start, end)

    def check(self, facts: Facts) -> tuple[bool, str]:
        now = f"{facts.at:%H:%M}"
        ok = (self.start <= now < self.end if self.start <= self.end
              else (now >= self.start or now < self.end))
        return _told(ok, f"arrived {now}")


# --- text -----------------------------------------------------------------------------------


def _compile(regex: str, spec: dict[str, Any], at: Place) -> re2._Regexp[str] | None:
    """`regex` compiled for RE2, case ignored; None with the reason reported if it cannot be.
    RE2 guarantees time linear in the text; the price is that a pattern needing
    backtracking (a backreference, lookaround) is refused here, at load, not on a mail."""
    try:
        return re2.compile(regex, _CASELESS)
    except re2.error as err:
        detail = err.args[0].decode(errors="replace") if err.args and isinstance(
            err.args[0], bytes) else str(err)
    try:
        re.compile(regex)
    except re.error as err:  # no regex in any dialect: Python's message names the place
        at.error(f"bad regex {regex!r}: {err}", spec, "regex")
        return None
    if "too large" in detail:
        at.error(f"regex {regex!r} is too large to run in linear time ({detail})", spec,
                 "regex")
    else:
        at.error(f"regex {regex!r} cannot run in linear time ({detail}): rule regexes run on "
                 "RE2, which has no backreferences and no lookaround", spec, "regex")
    return None


@dataclass(frozen=True)
class _Text(Condition):
    """A text of the mail contains one of the words (accents and case ignored), or, written
    as a mapping, matches `regex` (case ignored) and contains `contains`."""

    words: tuple[str, ...] | None  # folded without accents; None: no words to contain
    pattern: re2._Regexp[str] | None  # compiled case-insensitive
    written: str  # the value as written, shown in the reason

    @classmethod
    def build(cls, value: Any, at: Place) -> Self:
        if isinstance(value, dict):
            return cls._spec(value, at)
        written = strings(value)
        if written is None:
            at.error(f"{cls.key} takes a string or a list of strings")
        return cls(tuple(fold(w, accents=False) for w in written or ()), None, repr(value))

    @classmethod
    def _spec(cls, value: dict[str, Any], at: Place) -> Self:
        for key in value:
            if key not in ("contains", "regex"):
                at.error(f"unknown key {key!r} in {cls.key}", value, key)
        if "contains" not in value and "regex" not in value:
            at.error(f"{cls.key} needs contains or regex, or a list of words")
        words: tuple[str, ...] | None = None
        if "contains" in value:
            contains = value["contains"]
            if isinstance(contains, str | int | float):
                words = (fold(str(contains), accents=False),)
            else:
                at.error(f"{cls.key}: contains takes text", value, "contains")
        pattern = None
        if "regex" in value:
            regex = value["regex"]
            if isinstance(regex, str | int | float):
                pattern = _compile(str(regex), value, at)
            else:
                at.error(f"{cls.key}: regex takes text", value, "regex")
        return cls(words, pattern, repr(value))

    @staticmethod
    @abstractmethod
    def text(facts: Facts) -> str: ...

    def check(self, facts: Facts) -> tuple[bool, str]:
        text = self.text(facts)
        ok = ((self.pattern is None or self.pattern.search(text) is not None)
              and (self.words is None
                   or any(word in facts.folded(text) for word in self.words)))
        return _told(ok, f"{self.key} {'matches' if ok else 'does not match'} {self.written}")


@dataclass(frozen=True)
class Subject(_Text):
    key: ClassVar[str] = "subject"

    @staticmethod
    def text(facts: Facts) -> str:
        return facts.subject


@dataclass(frozen=True)
class Body(_Text):
    key: ClassVar[str] = "body"

    @staticmethod
    def text(facts: Facts) -> str:
        return facts.body


@dataclass(frozen=True)
class Text(_Text):
    """The subject and the body."""

    key: ClassVar[str] = "text"

    @staticmethod
    def text(facts: Facts) -> str:
        return facts.text


@dataclass(frozen=True)
class Issuer(_Text):
    """The issuing body printed on the document."""

    key: ClassVar[str] = "issuer"

    @staticmethod
    def text(facts: Facts) -> str:
        return facts.issuer


@dataclass(frozen=True)
class AttachmentName(_Text):
    """The attachments' file names, one a line."""

    key: ClassVar[str] = "attachment_name"

    @staticmethod
    def text(facts: Facts) -> str:
        return facts.attachment_name


# Every `when:` key and the class that reads it. A new condition is a class above, its line
# here and its test.
CONDITIONS: dict[str, type[Condition]] = {cls.key: cls for cls in (
    AllOf, AnyOf, Not,
    KindIs, TypeIs, UrgencyIs, ProcedureIs, Urgent, Confidential, WorkingDay, SignatureDoubt,
    SenderIs, SenderDomain, AttachmentType, Hours,
    Subject, Body, Text, Issuer, AttachmentName,
)}
