"""Rules: validation with file and line, stand-ins, order and stop, the safety rules."""

from __future__ import annotations

import unicodedata
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from daemon.cli import main
from daemon.errors import ConfigError
from daemon.models import Address, Document, Kind, ParsedMail, Understanding
from daemon.routing import rules as rules_module
from daemon.routing.conditions import When, parse
from daemon.routing.route import Facts, decide
from daemon.routing.rules import Acknowledge, Forward, Notify, Rule, RuleSet, Targets
from tests.conftest import RULES


def _mail(sender: str = "someone@example.com", subject: str = "Hồ sơ") -> ParsedMail:
    return ParsedMail(message_id="<m@x>", subject=subject, sender=Address("", sender), to=(),
                      reply_to=(), date=None, headers={}, body="", attachments=(),
                      content_types=("text/plain",))


def _und(kind: Kind, confidentiality: str | None = None) -> Understanding:
    doc = Document(number="1", symbol="QĐ-UBND", type="Quyết định",
                   confidentiality=confidentiality) if kind is Kind.DOCUMENT else None
    return Understanding(kind=kind, why="test", case_ref=None, document=doc, applicant=None)


VN = ZoneInfo("Asia/Ho_Chi_Minh")


def _at(year: int, month: int, day: int, hour: int = 9) -> datetime:
    return datetime(year, month, day, hour, tzinfo=VN)


def _copy_rules(tmp_path: Path) -> Path:
    target = tmp_path / "rules"
    target.mkdir()
    for path in RULES.glob("*.yaml"):
        (target / path.name).write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    return target


def test_shipped_rules_are_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    """`vanthu check` accepts the shipped rules with the embedded default config."""
    monkeypatch.chdir(RULES.parent)

    assert main(["check"]) == 0


def test_errors_name_file_and_line(tmp_path: Path) -> None:
    """Unknown keys, roles, people and bad regexes are each reported at the line of the key."""
    directory = _copy_rules(tmp_path)
    (directory / "20-bad.yaml").write_text(
        "rules:\n"
        "  - id: bad-one\n"
        "    when: {kind: letter, subject: {regex: '(unclosed'}}\n"
        "    then:\n"
        "      - forward: {roles: [thu_truong]}\n"
        "      - forward: {people: [nobody]}\n"
        "    colour: red\n", encoding="utf-8")

    with pytest.raises(ConfigError) as caught:
        rules_module.load(directory)

    text = str(caught.value)
    bad = directory / "20-bad.yaml"
    assert f"{bad}:3: unknown kind 'letter'" in text
    assert f"{bad}:3: bad regex '(unclosed'" in text
    assert f"{bad}:5: unknown role 'thu_truong'" in text
    assert f"{bad}:6: unknown person 'nobody'" in text
    assert f"{bad}:7: unknown key 'colour' in rule" in text


def test_rule_after_an_unconditional_stop_is_unreachable(tmp_path: Path) -> None:
    """A rule below a rule that stops every mail can never run: an error."""
    directory = _copy_rules(tmp_path)
    (directory / "05-stop.yaml").write_text(
        "rules:\n  - id: swallow-all\n    then: []\n    stop: true\n", encoding="utf-8")

    with pytest.raises(ConfigError, match="can never run"):
        rules_module.load(directory)


def test_overlapping_absences_and_absent_stand_in(tmp_path: Path) -> None:
    """Two absences of one person that overlap, or a stand-in away at the time, are errors."""
    directory = _copy_rules(tmp_path)
    people = (directory / "people.yaml").read_text(encoding="utf-8")
    people += ("  - person: tran_thi_binh\n    from: 2026-04-01\n    to: 2026-04-10\n"
               "    reason: phép\n"
               "  - person: nguyen_van_an\n    from: 2026-03-20\n    to: 2026-03-25\n"
               "    reason: công tác\n")
    (directory / "people.yaml").write_text(people, encoding="utf-8")

    with pytest.raises(ConfigError) as caught:
        rules_module.load(directory)

    assert "absences of tran_thi_binh overlap" in str(caught.value)
    assert "stand-in nguyen_van_an for tran_thi_binh is absent too" in str(caught.value)


def test_check_command_prints_every_error(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """`vanthu check` exits 1 and prints each problem as file:line: message."""
    directory = _copy_rules(tmp_path)
    (directory / "20-bad.yaml").write_text("rules:\n  - id: Bad Id\n    then: []\n",
                                           encoding="utf-8")
    config_path = tmp_path / "config.toml"
    config_path.write_text(f'[rules]\ndir = "{directory}"\n', encoding="utf-8")

    assert main(["check", "--config", str(config_path)]) == 1

    assert f"{directory / '20-bad.yaml'}:2: rule id 'Bad Id'" in capsys.readouterr().out


def test_absent_deputy_goes_to_her_stand_in_then_back() -> None:
    """During her absence a Deputy's forward goes to the stand-in, with a note; after, to her."""
    ruleset = rules_module.load(RULES)
    und, mail = _und(Kind.DOCUMENT), _mail()

    during = decide(und, mail, ruleset, _at(2026, 4, 5))
    after = decide(und, mail, ruleset, _at(2026, 4, 6))

    forward_during = next(a for a in during.actions if a.action == "forward")
    forward_after = next(a for a in after.actions if a.action == "forward")
    assert "pgd.binh.sxd@example.gov.vn" not in forward_during.to
    assert "giamdoc.sxd@example.gov.vn" in forward_during.to
    assert "thay đồng chí Trần Thị Bình đang vắng mặt" in forward_during.note
    assert "pgd.binh.sxd@example.gov.vn" in forward_after.to
    assert forward_after.note == ""


def test_safety_rules_override_a_hostile_rule_file() -> None:
    """Forward-everything-outside rules still never email a confidential document or answer
    a machine."""
    ruleset = rules_module.load(RULES)
    hostile = RuleSet(ruleset.people, ruleset.departments, ruleset.absences, (
        Rule("leak", When(), (Forward(Targets(addresses=("spy@evil.example",))),
                              Acknowledge()), False, "x.yaml", 1),))

    secret = decide(_und(Kind.DOCUMENT, "Tối mật"), _mail(), hostile, _at(2026, 5, 1))
    auto = decide(_und(Kind.AUTO), _mail(), hostile, _at(2026, 5, 1))
    own = decide(_und(Kind.DOSSIER), _mail("vanthu@us.gov.vn"), hostile, _at(2026, 5, 1),
                 frozenset({"vanthu@us.gov.vn"}))

    assert [a.action for a in secret.actions] == ["notify", "acknowledge"]
    assert [a.action for a in auto.actions] == ["forward"]
    assert [a.action for a in own.actions] == ["forward"]


KINDS = st.sampled_from([k.value for k in Kind])


@given(kinds=st.lists(KINDS, min_size=1, max_size=6), stops=st.lists(st.booleans(), min_size=6,
                                                                     max_size=6),
       kind=KINDS)
def test_evaluation_is_deterministic_ordered_and_stops(kinds: list[str], stops: list[bool],
                                                       kind: str) -> None:
    """Rules run in order; after a matching rule with stop nothing else runs; same input, same
    output."""
    ruleset = rules_module.load(RULES)
    rules = tuple(
        Rule(f"r{i}", parse({"kind": k}),
             (Notify(Targets(addresses=(f"r{i}@x.vn",))),),
             stops[i], "t.yaml", i) for i, k in enumerate(kinds))
    rs = RuleSet(ruleset.people, ruleset.departments, (), rules)
    und = Understanding(kind=Kind(kind), why="", case_ref=None, document=None, applicant=None)

    first = decide(und, _mail(), rs, _at(2026, 1, 5))
    second = decide(und, _mail(), rs, _at(2026, 1, 5))

    assert first == second
    expected: list[str] = []
    for i, k in enumerate(kinds):
        if k == kind:
            expected.append(f"r{i}@x.vn")
            if stops[i]:
                break
    got = [a for action in first.actions for a in action.to]
    assert got == expected


def test_conditions_explain_themselves() -> None:
    """Each condition's outcome is part of the reason."""
    facts = Facts(kind="document", type="Quyết định", urgency="Hỏa tốc", confidential=False,
                  issuer="", sender="a@b.gov.vn", subject="HỎA TỐC", body="",
                  attachment_names=(), attachment_types=(), at=_at(2026, 5, 4),
                  working_day=True)

    matched, why = parse({"all": [{"kind": "document"}, {"urgent": True}],
                          "sender_domain": "gov.vn", "subject": {"contains": "hoa toc"}}
                         ).check(facts)

    assert matched
    assert "✓ sender_domain=b.gov.vn" in why and "✓ urgent=True" in why


def test_director_away_without_stand_in_escalates_to_the_higher_authority() -> None:
    """With nobody left in the role, the Director's mail goes to the configured higher
    authority, and the note says so (the digest lists it)."""
    ruleset = rules_module.load(RULES)
    away = rules_module.Absence("nguyen_van_an", _at(2026, 6, 1).date(), _at(2026, 6, 30).date(),
                                "công tác", None)
    rs = RuleSet(ruleset.people, ruleset.departments, (away,), (
        Rule("giam-doc", When(), (Forward(Targets(roles=("giam_doc",))),), False,
             "x.yaml", 1),), higher_authority=("vanphong@ubnd.example.gov.vn",))

    decision = decide(_und(Kind.DOCUMENT), _mail(), rs, _at(2026, 6, 10))

    forward = decision.actions[0]
    assert forward.to == ("vanphong@ubnd.example.gov.vn",)
    assert "vắng mặt, không có người thay: chuyển cấp trên" in forward.note


def _people_with(directory: Path, extra: str) -> Path:
    """people.yaml of the shipped rules with `extra` appended to its absences."""
    path = directory / "people.yaml"
    path.write_text(path.read_text(encoding="utf-8") + extra, encoding="utf-8")
    return path


def test_absence_dates_may_be_quoted(tmp_path: Path) -> None:
    """An absence written with quoted ISO dates is read like one with YAML dates."""
    directory = _copy_rules(tmp_path)
    _people_with(directory, '  - person: le_van_cuong\n    from: "2026-12-01"\n'
                            "    to: '2026-12-05'\n    reason: phép năm\n")

    ruleset = rules_module.load(directory)

    away = [a for a in ruleset.absences if a.person == "le_van_cuong"]
    assert [(a.start, a.end) for a in away] == [(date(2026, 12, 1), date(2026, 12, 5))]


def test_a_wrong_absence_date_is_reported_at_its_key(tmp_path: Path) -> None:
    """A date that is not one, or a key people write for 'from', is an error at that line."""
    directory = _copy_rules(tmp_path)
    path = _people_with(directory, '  - person: le_van_cuong\n    from: "2026-02-30"\n'
                                   "    to: 2026-03-02\n"
                                   "  - person: le_van_cuong\n    start: 2026-05-01\n"
                                   "    to: 2026-05-02\n")
    lines = path.read_text(encoding="utf-8").splitlines()

    with pytest.raises(ConfigError) as caught:
        rules_module.load(directory)

    start = lines.index("    start: 2026-05-01") + 1
    wrong = lines.index('    from: "2026-02-30"') + 1
    assert [str(p) for p in caught.value.problems] == [
        f"{path}:{wrong}: absence 'from': '2026-02-30' is not a date: day is out of range for "
        "month",
        f"{path}:{start}: unknown key 'start' in absence (did you mean 'from'?)",
        f"{path}:{start - 1}: absence needs 'from': a date (YYYY-MM-DD)",
    ]


def test_every_rule_file_is_checked_even_without_people(tmp_path: Path) -> None:
    """Without people.yaml the missing file is reported and every rule file is still checked,
    without a flood of 'unknown person' errors."""
    directory = _copy_rules(tmp_path)
    (directory / "people.yaml").unlink()
    (directory / "20-a.yaml").write_text("rules:\n  - id: a\n    when: [kind: document]\n",
                                         encoding="utf-8")
    (directory / "30-b.yaml").write_text("rules:\n  - id: b\n    then: forward\n",
                                         encoding="utf-8")

    with pytest.raises(ConfigError) as caught:
        rules_module.load(directory)

    assert [str(p) for p in caught.value.problems] == [
        f"{directory / 'people.yaml'}: missing: who is who must be said",
        f"{directory / '20-a.yaml'}:3: when takes a mapping of conditions",
        f"{directory / '30-b.yaml'}:3: then takes a list of actions",
    ]


@pytest.mark.parametrize(("person", "message"), [
    ("    email: văn.thư@sxd.gov.vn\n", "has no valid email: 'văn.thư@sxd.gov.vn' is not an "
                                        "ASCII address"),
    ('    email: "a@b.gov.vn, c@d.gov.vn"\n', "has no valid email"),
    ('    email: x@sxd.gov.vn\n    name: "Nguyễn\\nVăn"\n', "name must be one line"),
    ("    email: x@sxd.gov.vn\n    email: y@sxd.gov.vn\n", "key 'email' written twice"),
])
def test_a_careless_person_entry_is_an_error_at_its_line(tmp_path: Path, person: str,
                                                         message: str) -> None:
    """A non-ASCII or double address, a name with a line break or a key written twice is
    reported at the line of the offending key."""
    directory = _copy_rules(tmp_path)
    path = directory / "people.yaml"
    text = path.read_text(encoding="utf-8").replace(
        "people:\n", f"people:\n  - id: moi\n    roles: [van_thu]\n{person}", 1)
    path.write_text(text, encoding="utf-8")
    expected_line = text.splitlines().index(person.splitlines()[-1]) + 1

    with pytest.raises(ConfigError) as caught:
        rules_module.load(directory)

    assert [(p.line, message in p.message) for p in caught.value.problems] == [
        (expected_line, True)], caught.value.problems


def test_names_are_kept_in_nfc_with_single_spaces(tmp_path: Path) -> None:
    """A name typed decomposed (as macOS does) or with doubled spaces is kept in NFC with
    single spaces."""
    directory = _copy_rules(tmp_path)
    path = directory / "people.yaml"
    decomposed = unicodedata.normalize("NFD", "Nguyễn  Văn An")
    path.write_text(path.read_text(encoding="utf-8").replace("Nguyễn Văn An", decomposed),
                    encoding="utf-8")

    ruleset = rules_module.load(directory)

    assert ruleset.people["nguyen_van_an"].name == "Nguyễn Văn An"
