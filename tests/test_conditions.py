"""Rule conditions, one class per `when:` key: each is built (and so validated) from its YAML
value, and says whether it holds and why."""

from __future__ import annotations

import inspect
import re
import shutil
import tempfile
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daemon.errors import ConfigError
from daemon.models import Address, Attachment, Document, Kind, ParsedMail, Understanding
from daemon.routing import conditions
from daemon.routing import rules as rules_module
from daemon.routing.conditions import CONDITIONS, URGENCY_LEVELS, Body, Condition, parse
from daemon.routing.route import Facts, decide
from daemon.textnorm import fold
from tests.conftest import RULES

VN = ZoneInfo("Asia/Ho_Chi_Minh")

FACTS = Facts(kind="document", type="Quyết định", urgency="Thượng khẩn", confidential=False,
              issuer="Ủy ban nhân dân tỉnh Tây Ninh", sender="vanthu@ubnd.tayninh.gov.vn",
              subject="V/v triển khai Kế hoạch số 12", body="Kính gửi Sở Xây dựng",
              attachment_names=("QD-12.pdf", "phu-luc.docx"),
              attachment_types=("application/pdf", "application/msword"),
              at=datetime(2026, 5, 4, 9, 30, tzinfo=VN), working_day=True, procedure="")


def test_every_condition_class_is_registered_under_its_key() -> None:
    """The registry holds every concrete condition class of the module, each under its key."""
    concrete = {cls for _, cls in inspect.getmembers(conditions, inspect.isclass)
                if issubclass(cls, Condition) and not inspect.isabstract(cls)}

    assert set(CONDITIONS.values()) == concrete
    assert all(CONDITIONS[cls.key] is cls for cls in concrete)
    assert set(CONDITIONS) == {
        "all", "any", "not", "kind", "type", "urgency", "procedure", "urgent", "confidential",
        "working_day", "signature_doubt", "sender", "sender_domain", "attachment_type", "hours",
        "subject", "body", "text", "issuer", "attachment_name"}


@pytest.mark.parametrize(("when", "changes", "matched", "why"), [
    ({"kind": "document"}, {}, True, "✓ kind=document"),
    ({"kind": ["dossier", "reply"]}, {}, False, "✗ kind=document"),
    ({"type": "quyết định"}, {}, True, "✓ type=Quyết định"),
    ({"type": ["Công văn"]}, {"type": ""}, False, "✗ type=none"),
    ({"urgency": ["Hỏa tốc", "Thượng khẩn"]}, {}, True, "✓ urgency=Thượng khẩn"),
    ({"procedure": "cchn"}, {"procedure": "cchn"}, True, "✓ procedure=cchn"),
    ({"urgent": True}, {}, True, "✓ urgent=True"),
    ({"urgent": True}, {"urgency": ""}, False, "✗ urgent=False"),
    ({"confidential": False}, {}, True, "✓ confidential=False"),
    ({"working_day": True}, {"working_day": False}, False, "✗ working_day=False"),
    ({"sender": ["VanThu@ubnd.tayninh.gov.vn"]}, {}, True,
     "✓ sender=vanthu@ubnd.tayninh.gov.vn"),
    ({"sender_domain": "gov.vn"}, {}, True, "✓ sender_domain=ubnd.tayninh.gov.vn"),
    ({"sender_domain": "tayninh.gov.vn"}, {"sender": "a@xtayninh.gov.vn"}, False,
     "✗ sender_domain=xtayninh.gov.vn"),
    ({"attachment_type": [".PDF"]}, {}, True,
     "✓ attachment types application/pdf, application/msword"),
    ({"attachment_type": "application/msword"}, {"attachment_names": ()}, True,
     "✓ attachment types application/pdf, application/msword"),
    ({"attachment_type": "zip"}, {"attachment_types": ()}, False, "✗ attachment types none"),
    ({"hours": "07:30-17:00"}, {}, True, "✓ arrived 09:30"),
    ({"hours": "22:00-06:00"}, {}, False, "✗ arrived 09:30"),
    ({"hours": "22:00-06:00"}, {"at": datetime(2026, 5, 4, 5, 59, tzinfo=VN)}, True,
     "✓ arrived 05:59"),
    ({"subject": "KẾ HOẠCH"}, {}, True, "✓ subject matches 'KẾ HOẠCH'"),
    ({"subject": ["ke hoach so 13", "trien khai"]}, {}, True,
     "✓ subject matches ['ke hoach so 13', 'trien khai']"),
    ({"body": {"contains": "sở xây dựng"}}, {}, True,
     "✓ body matches {'contains': 'sở xây dựng'}"),
    ({"text": {"regex": "^v/v.*\\n.*sở", "contains": "kính gửi"}}, {}, True,
     "✓ text matches {'regex': '^v/v.*\\\\n.*sở', 'contains': 'kính gửi'}"),
    ({"issuer": {"contains": "uy ban nhan dan tinh"}}, {}, True,
     "✓ issuer matches {'contains': 'uy ban nhan dan tinh'}"),
    ({"attachment_name": {"regex": "^phu"}}, {}, False,
     "✗ attachment_name does not match {'regex': '^phu'}"),
    ({"attachment_name": {"regex": "(?m)^phu"}}, {}, True,
     "✓ attachment_name matches {'regex': '(?m)^phu'}"),
    ({"all": [{"kind": "document"}, {"urgent": True}]}, {}, True,
     "✓ all(✓ kind=document; ✓ urgent=True)"),
    ({"any": [{"kind": "spam"}, {"sender_domain": "gov.vn", "urgent": False}]}, {}, False,
     "✗ any(✗ kind=document; ✓ sender_domain=ubnd.tayninh.gov.vn; ✗ urgent=True)"),
    ({"not": {"kind": "spam"}}, {}, True, "✓ not(✗ kind=document)"),
    ({"not": {}}, {}, False, "✗ not(no condition: always)"),
    ({"kind": "document", "confidential": True}, {}, False,
     "✓ kind=document; ✗ confidential=False"),
    ({}, {}, True, "no condition: always"),
])
def test_each_condition_says_whether_it_holds_and_why(when: dict[str, Any],
                                                      changes: dict[str, Any], matched: bool,
                                                      why: str) -> None:
    """Every condition key matches as documented and explains itself as persisted traces do."""
    condition = parse(when)

    outcome = condition.check(replace(FACTS, **changes))

    assert outcome == (matched, why)


def test_text_conditions_ignore_case_and_tone_placement() -> None:
    """`contains` ignores case, accents and old/new tone placement; a regex ignores case."""
    facts = replace(FACTS, subject="HOÀ TỐC: Quyết định về thuỷ lợi")

    assert parse({"subject": {"contains": "hỏa tốc"}}).check(facts)[0]
    assert parse({"subject": "THUY LOI"}).check(facts)[0]
    assert parse({"subject": {"regex": "^hoà tốc"}}).check(facts)[0]
    assert not parse({"subject": {"regex": "^hòa tốc"}}).check(facts)[0]  # regex: as written


def _load(tmp_path: Path, text: str) -> rules_module.RuleSet:
    shutil.copy(RULES / "people.yaml", tmp_path / "people.yaml")
    shutil.copy(RULES / "procedures.yaml", tmp_path / "procedures.yaml")
    (tmp_path / "10-test.yaml").write_text(text, encoding="utf-8")
    return rules_module.load(tmp_path)


def test_building_a_condition_validates_it_at_its_line(tmp_path: Path) -> None:
    """Each condition class reports a wrong value at the line of its key (or of the key
    inside its value), and every problem of the file is listed."""
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, """rules:
  - id: sai
    when:
      kind: [document, letter]
      urgency: Gấp
      urgent: "yes"
      type: 5
      sender: {a: b}
      hours: "7:30-17:00"
      procedure: nope
      colour: red
      all: {kind: document}
      any:
        - kind: spam
        - [kind: bulk]
      not:
        subject:
          contains: [a, b]
          regex: "(unclosed"
          colour: red
        body: {}
    then: []
""")

    file = tmp_path / "10-test.yaml"
    assert [str(p) for p in caught.value.problems] == [f"{file}:{line}: {message}" for line,
                                                       message in [
        (4, "unknown kind 'letter'"),
        (5, "unknown urgency 'Gấp' (known: Hỏa tốc, Thượng khẩn, Khẩn)"),
        (6, "urgent takes true or false"),
        (7, "type takes a string or a list of strings"),
        (8, "sender takes a string or a list of strings"),
        (9, "hours takes 'HH:MM-HH:MM'"),
        (10, "unknown procedure 'nope' (rules/procedures.yaml)"),
        (11, "unknown key 'colour' in condition"),
        (12, "all takes a list of conditions"),
        (13, "a condition must be a mapping"),
        (20, "unknown key 'colour' in subject"),
        (18, "subject: contains takes text"),
        (19, "bad regex '(unclosed': missing ), unterminated subpattern at position 0"),
        (21, "body needs contains or regex, or a list of words"),
    ]]


def test_a_loaded_rule_holds_typed_conditions(tmp_path: Path) -> None:
    """`Rule.when` is the built condition tree, checked directly against the facts."""
    ruleset = _load(tmp_path, """rules:
  - id: khan
    when:
      kind: document
      any: [{urgent: true}, {subject: {regex: "^khẩn"}}]
    then: []
""")

    when = ruleset.rules[0].when

    assert [type(c).__name__ for c in when.conditions] == ["KindIs", "AnyOf"]
    assert when.check(FACTS) == (True, "✓ kind=document; ✓ any(✓ urgent=True; ✗ subject "
                                       "does not match {'regex': '^khẩn'})")


def test_a_catastrophic_regex_runs_in_linear_time() -> None:
    """`(a+)+$`, which backtracks exponentially in Python's engine on 'a'*34 + 'b', compiles
    for RE2 and is evaluated (and fails to match) without backtracking."""
    condition = parse({"body": {"regex": "(a+)+$"}})
    hostile = replace(FACTS, body="a" * 34 + "b")

    matched, why = condition.check(hostile)

    body = condition.conditions[0]
    assert isinstance(body, Body) and type(body.pattern).__module__ == "re2"
    assert (matched, why) == (False, "✗ body does not match {'regex': '(a+)+$'}")
    assert condition.check(replace(FACTS, body="a" * 100_000))[0]


@pytest.mark.parametrize(("regex", "detail"), [
    ("(a)\\1", "invalid escape sequence: \\1"),
    ("(?=x)", "invalid perl operator: (?="),
    ("(?<!x)y", "invalid perl operator: (?<!"),
])
def test_a_regex_that_needs_backtracking_is_refused_at_its_line(tmp_path: Path, regex: str,
                                                                detail: str) -> None:
    """A backreference or lookaround is refused at load, at the line of its `regex`, saying
    that rule regexes run in linear time."""
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, f"""rules:
  - id: lui
    when:
      subject:
        regex: '{regex}'
    then: []
""")

    assert [str(p) for p in caught.value.problems] == [
        f"{tmp_path / '10-test.yaml'}:5: regex {regex!r} cannot run in linear time ({detail}): "
        "rule regexes run on RE2, which has no backreferences and no lookaround"]


def test_yaml_aliases_are_refused_so_a_billion_laughs_cannot_explode(tmp_path: Path) -> None:
    """A rule file of nested aliases (each level ten of the one before) is refused at the
    first alias, before anything is built from it."""
    levels = ["  - &l0 {kind: spam}\n"] + [
        f"  - &l{i} [" + ", ".join([f"*l{i - 1}"] * 10) + "]\n" for i in range(1, 10)]
    text = "anchors:\n" + "".join(levels) + "rules:\n  - id: cuoi\n    when: {any: *l9}\n"

    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, text)

    assert [str(p) for p in caught.value.problems] == [
        f"{tmp_path / '10-test.yaml'}:3: an alias (*l0) is not allowed in rule files: "
        "write the value out"]


def test_nesting_past_the_bound_is_refused_at_its_line(tmp_path: Path) -> None:
    """A `not:` nested deeper than the reader allows is refused at the line where the bound
    is crossed, not with a RecursionError."""
    text = "rules:\n  - id: sau\n    when:\n" + "".join(
        "      " + "  " * i + "not:\n" for i in range(60)) + "      " + "  " * 60 + "kind: spam\n"

    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, text)

    assert len(caught.value.problems) == 1
    assert caught.value.problems[0].message == "nested deeper than 50 levels"



# --- properties: the typed engine against a straightforward reference ---------------------

def reference(when: dict[str, Any], facts: Facts) -> tuple[bool, str]:
    """The rule language evaluated directly on plain data, as the documentation reads: the
    specification the condition classes are held to, reasons included."""
    reasons: list[str] = []
    result = True
    for key, value in when.items():
        listed = [value] if isinstance(value, str) else list(value) \
            if isinstance(value, list) else []
        if key in ("all", "any"):
            outcomes = [reference(item, facts) for item in value]
            ok = (all if key == "all" else any)(o for o, _ in outcomes)
            why = f"{key}(" + "; ".join(w for _, w in outcomes) + ")"
        elif key == "not":
            inner, inner_why = reference(value, facts)
            ok, why = not inner, f"not({inner_why})"
        elif key in ("urgent", "confidential", "working_day"):
            actual = {"urgent": bool(facts.urgency), "confidential": facts.confidential,
                      "working_day": facts.working_day}[key]
            ok, why = actual == value, f"{key}={actual}"
        elif key in ("kind", "type", "urgency", "procedure"):
            actual = getattr(facts, key)
            ok = fold(actual) in {fold(a) for a in listed}
            why = f"{key}={actual or 'none'}"
        elif key == "sender":
            ok, why = facts.sender in {a.lower() for a in listed}, f"sender={facts.sender}"
        elif key == "sender_domain":
            domain = facts.sender.rpartition("@")[2]
            ok = any(domain == d.lower() or domain.endswith("." + d.lower()) for d in listed)
            why = f"sender_domain={domain}"
        elif key == "attachment_type":
            wanted = [w.lower().lstrip(".") for w in listed]
            ok = any(("/" in w and w in facts.attachment_types)
                     or any(n.lower().endswith("." + w) for n in facts.attachment_names)
                     for w in wanted)
            why = f"attachment types {', '.join(facts.attachment_types) or 'none'}"
        elif key == "hours":
            start, _, end = value.partition("-")
            now = facts.at.strftime("%H:%M")
            ok = start <= now < end if start <= end else (now >= start or now < end)
            why = f"arrived {now}"
        else:
            text = {"subject": facts.subject, "body": facts.body, "issuer": facts.issuer,
                    "text": f"{facts.subject}\n{facts.body}",
                    "attachment_name": "\n".join(facts.attachment_names)}[key]

            def has(word: str, text: str = text) -> bool:
                return fold(word, accents=False) in fold(text, accents=False)

            if isinstance(value, dict):
                ok = (("regex" not in value or re.search(value["regex"], text, re.I) is not None)
                      and ("contains" not in value or has(value["contains"])))
            else:
                ok = any(has(word) for word in listed)
            why = f"{key} {'matches' if ok else 'does not match'} {value!r}"
        reasons.append(("✓ " if ok else "✗ ") + why)
        result = result and ok
    return result, "; ".join(reasons) or "no condition: always"


WORDS = ["Quyết định", "quyết định", "QUYẾT ĐỊNH", "Công văn", "hỏa tốc", "HOÀ TỐC", "khẩn",
         "Thượng khẩn", "thuỷ lợi", "thủy lợi", "Ủy ban nhân dân tỉnh", "uy ban nhan dan",
         "đất đai", "Đất Đai", "xây dựng", "Kế hoạch", "V/v", "số 12", "Sở", "giấy phép", "a"]
LETTERS = ("aăâbcdđeêghiklmnoôơpqrstuưvxy"
           "àáảãạằắẳẵặầấẩẫậèéẻẽẹềếểễệìíỉĩịòóỏõọồốổỗộờớởỡợùúủũụừứửữựỳýỷỹỵ")
ALPHABET = LETTERS + LETTERS.upper() + " \n0123456789/-."
PROCEDURES = ["gpxd-nha-o", "gpxd-cong-trinh", "cchn", "ccnl"]
DOMAINS = ["gov.vn", "tayninh.gov.vn", "GOV.VN", "example.com", "vn", "xtayninh.gov.vn"]
NAMES = ["QD-12.pdf", "phu luc.DOCX", "hồ sơ.zip", "ảnh.jpg", "khong-duoi"]
TYPES = ["application/pdf", "application/zip", "image/jpeg", "application/msword"]

word = st.sampled_from(WORDS)
texts = st.one_of(st.lists(word, max_size=5).flatmap(
    lambda ws: st.sampled_from([" ", "\n", ", "]).map(lambda sep: sep.join(ws))),
    st.text(ALPHABET, max_size=40))
clock = st.tuples(st.integers(0, 23), st.integers(0, 59)).map(lambda hm: f"{hm[0]:02}:{hm[1]:02}")
# Patterns on which Python's engine and RE2 agree (no \w, \b or $, whose Unicode and newline
# rules differ), so that Python's re can stand as the reference.
piece = st.one_of(word.map(re.escape), st.sampled_from([".", ".*", "\\s", "[aăâ]", "[đd]", "\\d"]),
                  st.tuples(word, word).map(lambda ab: f"({re.escape(ab[0])}|{re.escape(ab[1])})?"))
regexes = st.tuples(st.sampled_from(["", "^"]), st.lists(piece, min_size=1, max_size=3)).map(
    lambda parts: parts[0] + "".join(parts[1]))


def one_or_more(values: st.SearchStrategy[str]) -> st.SearchStrategy[Any]:
    return st.one_of(values, st.lists(values, min_size=1, max_size=3))


TEXT_VALUES = st.one_of(
    one_or_more(word),
    st.fixed_dictionaries({"contains": word}),
    st.fixed_dictionaries({"regex": regexes}),
    st.fixed_dictionaries({"regex": regexes, "contains": word}))
LEAVES = st.one_of(
    st.tuples(st.just("kind"), one_or_more(st.sampled_from([k.value for k in Kind]))),
    st.tuples(st.just("type"), one_or_more(word)),
    st.tuples(st.just("urgency"), one_or_more(st.sampled_from(URGENCY_LEVELS))),
    st.tuples(st.just("procedure"), one_or_more(st.sampled_from(PROCEDURES))),
    st.tuples(st.sampled_from(["urgent", "confidential", "working_day"]), st.booleans()),
    st.tuples(st.just("sender"), one_or_more(st.sampled_from(
        ["vanthu@tayninh.gov.vn", "VanThu@TayNinh.gov.vn", "a@example.com"]))),
    st.tuples(st.just("sender_domain"), one_or_more(st.sampled_from(DOMAINS))),
    st.tuples(st.just("attachment_type"), one_or_more(st.sampled_from(
        ["pdf", ".PDF", "docx", "zip", "jpg", *TYPES]))),
    st.tuples(st.just("hours"), st.tuples(clock, clock).map("-".join)),
    st.tuples(st.sampled_from(["subject", "body", "text", "issuer", "attachment_name"]),
              TEXT_VALUES),
)


def mappings(pairs: st.SearchStrategy[tuple[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    return st.lists(pairs, max_size=3, unique_by=lambda pair: pair[0]).map(dict)




@st.composite
def leaves(draw: st.DrawFn) -> tuple[str, Any]:
    """One `key: value` condition that is not a combinator."""
    leaf: tuple[str, Any] = draw(LEAVES)
    return leaf


TREES = st.recursive(leaves(), lambda inner: st.one_of(
    st.tuples(st.sampled_from(["all", "any"]), st.lists(mappings(inner), max_size=3)),
    st.tuples(st.just("not"), mappings(inner))), max_leaves=12)


# Composites are named in hypothesis's messages by their function, where the strategies above
# would be spelled out over tens of kilobytes (a warning, so an error here).
@st.composite
def whens(draw: st.DrawFn) -> dict[str, Any]:
    """A `when:` mapping: up to three keys, all/any/not nested up to a dozen leaves."""
    return draw(mappings(TREES))


@st.composite
def facts_of_a_mail(draw: st.DrawFn) -> Facts:
    """What conditions look at, with Vietnamese text in every text field."""
    return draw(FACTS_)


FACTS_ = st.builds(
    Facts, kind=st.sampled_from([k.value for k in Kind]), type=st.one_of(st.just(""), word),
    urgency=st.sampled_from(["", *URGENCY_LEVELS]), confidential=st.booleans(),
    issuer=texts, sender=st.tuples(st.sampled_from(["vanthu", "a", "x.y"]),
                                   st.sampled_from(DOMAINS)).map(lambda p: f"{p[0]}@{p[1]}"),
    subject=texts, body=texts, attachment_names=st.lists(st.sampled_from(NAMES),
                                                         max_size=3).map(tuple),
    attachment_types=st.lists(st.sampled_from(TYPES), max_size=3).map(tuple),
    at=st.datetimes(datetime(2026, 1, 1), datetime(2027, 12, 31)).map(
        lambda d: d.replace(tzinfo=VN)),
    working_day=st.booleans(), procedure=st.sampled_from(["", *PROCEDURES]))


@settings(deadline=None)
@given(when=whens(), facts=facts_of_a_mail())
def test_check_agrees_with_the_reference_evaluation(when: dict[str, Any], facts: Facts) -> None:
    """For any condition tree and any facts, the built conditions say what the reference
    evaluation of the plain data says: the same outcome and the same reason."""
    condition = parse(when, procedures=frozenset(PROCEDURES))

    assert condition.check(facts) == reference(when, facts)


class _NoAliases(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True


THEN = st.lists(st.sampled_from([
    {"forward": {"roles": ["giam_doc", "pho_giam_doc"]}},
    {"notify": {"people": ["nguyen_van_an"], "addresses": ["Ban.Giam.Doc@example.gov.vn"]}},
    {"acknowledge": {"template": "document"}},
    {"assign": {"lead": "qlxd", "cooperate": ["van_phong"], "deadline_days": 3}},
    {"tag": {"tags": ["khẩn", "đất-đai"]}},
    {"move": {"folder": "Văn bản đến"}},
    {"quarantine": {"reason": "cần văn thư kiểm tra"}},
]), max_size=3)


@settings(deadline=None, max_examples=50,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(rules=st.lists(st.tuples(whens(), THEN, st.booleans()), min_size=1, max_size=4),
       facts=facts_of_a_mail())
def test_any_valid_rule_file_loads_and_checks_without_raising(
        rules: list[tuple[dict[str, Any], list[dict[str, Any]], bool]], facts: Facts) -> None:
    """Any valid rule file, written as YAML with Vietnamese values, loads; every rule checks
    any facts as the reference does; and routing a mail with it never raises."""
    data = {"rules": [{"id": f"r{i}", "when": when, "then": then, "stop": stop and bool(when)}
                      for i, (when, then, stop) in enumerate(rules)]}
    with tempfile.TemporaryDirectory() as folder:
        directory = Path(folder)
        shutil.copy(RULES / "people.yaml", directory / "people.yaml")
        shutil.copy(RULES / "procedures.yaml", directory / "procedures.yaml")
        (directory / "10-sinh.yaml").write_text(yaml.dump(
            data, Dumper=_NoAliases, allow_unicode=True, sort_keys=False), encoding="utf-8")

        ruleset = rules_module.load(directory)

    assert [rule.when.check(facts) for rule in ruleset.rules] == [
        reference(when, facts) for when, _, _ in rules]
    document = Document(type=facts.type, issuer=facts.issuer, urgency=facts.urgency or None)
    kind = Kind(facts.kind)
    mail = ParsedMail(message_id="<m@x>", subject=facts.subject,
                      sender=Address("", facts.sender), to=(), reply_to=(), date=None,
                      headers={}, body=facts.body, attachments=tuple(
                          Attachment(name, "application/pdf", 1, "0" * 64, b"")
                          for name in facts.attachment_names), content_types=())
    understanding = Understanding(kind, "", None, document if kind is Kind.DOCUMENT else None,
                                  None)
    decision = decide(understanding, mail, ruleset, facts.at)
    assert [trace.id for trace in decision.rules] == [f"r{i}" for i in range(len(rules))]
