"""Rule conditions, one class per `when:` key: each is built (and so validated) from its YAML
value, and says whether it holds and why."""

from __future__ import annotations

import inspect
import shutil
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from daemon.errors import ConfigError
from daemon.routing import conditions
from daemon.routing import rules as rules_module
from daemon.routing.conditions import CONDITIONS, Body, Condition, parse
from daemon.routing.route import Facts
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
        "working_day", "sender", "sender_domain", "attachment_type", "hours", "subject", "body",
        "text", "issuer", "attachment_name"}


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
