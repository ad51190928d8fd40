"""What vanthu believes about a sender, as the register, cases and the pipeline use it: forged
copies never bury genuine documents, shared forms never merge dossiers, strangers never join a
case, and a fault of the system pauses the pipeline instead of quarantining every mail."""

from __future__ import annotations

import base64
import json
import shutil
from datetime import UTC, datetime
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from sqlalchemy import select

from daemon import config
from daemon.cli import main
from daemon.db import (
    cases,
    clear_fault,
    messages,
    register_entries,
    report_fault,
)
from daemon.errors import SystemicFault
from daemon.models import Kind, State
from daemon.office import digest
from daemon.routing import rules as rules_module
from daemon.understand import NoCases, understand
from tests.conftest import AUTHSERV_ID, RULES, Office
from tests.desk import DOCUMENT, FORM, Desk
from tests.desk import mail as _mail
from tests.test_inspect import AGENCY_CONFIG


def test_a_forged_free_mail_copy_never_buries_the_genuine_document(tmp_path: Path) -> None:
    """"1000/UBND-KT" sent first from free mail, then from the issuer's authenticated
    official domain: the genuine one gets its own number and is forwarded."""
    office = Desk(tmp_path)
    office.receive(_mail("ubnd.tayninh.vp@gmail.com", "Công văn 1000/UBND-KT", DOCUMENT))
    office.process()
    office.receive(_mail("vpubnd@tayninh.gov.vn", "Công văn 1000/UBND-KT", DOCUMENT))

    office.process()

    forged, genuine = office.entries()
    assert (forged.number, genuine.number) == (1, 2)  # type: ignore[attr-defined]
    assert (forged.trust, genuine.trust) == (1, 2)  # type: ignore[attr-defined]
    genuine_row = office.rows()[1]
    assert genuine_row.duplicate_of is None  # type: ignore[attr-defined]
    actions = {r.action for r in office.emails_for(genuine_row.id)}  # type: ignore[attr-defined]
    assert "forward" in actions


def test_a_copy_after_the_genuine_document_is_a_duplicate(tmp_path: Path) -> None:
    """The same document again, less proven than the registered one, takes no number."""
    office = Desk(tmp_path)
    office.receive(_mail("vpubnd@tayninh.gov.vn", "Công văn 1000/UBND-KT", DOCUMENT))
    office.process()
    office.receive(_mail("ubnd.tayninh.vp@gmail.com", "Fwd: Công văn 1000/UBND-KT", DOCUMENT))

    office.process()

    assert len(office.entries()) == 1
    copy = office.rows()[1]
    assert copy.duplicate_of == office.entries()[0].id  # type: ignore[attr-defined]
    assert office.emails_for(copy.id) == []  # type: ignore[attr-defined]


def test_a_shared_blank_form_never_merges_two_applicants(tmp_path: Path) -> None:
    """Two citizens attach the same public form: two dossiers, two cases, two receipts."""
    office = Desk(tmp_path)
    body = "Tôi tên là {}, xin nộp hồ sơ đề nghị cấp giấy phép xây dựng nhà ở riêng lẻ."
    office.receive(_mail("an.nguyen@gmail.com", "Hồ sơ xin cấp giấy phép xây dựng",
                         body.format("Nguyễn Văn An"), attachment=FORM))
    office.process()
    office.receive(_mail("binh.tran@yahoo.com", "Hồ sơ xin cấp giấy phép xây dựng",
                         body.format("Trần Thị Bình"), attachment=FORM))

    office.process()

    assert [e.kind for e in office.entries()] == ["dossier", "dossier"]  # type: ignore[attr-defined]
    with office.engine.connect() as conn:
        applicants = conn.scalars(select(cases.c.applicant_email).order_by(cases.c.id)).all()
    assert applicants == ["an.nguyen@gmail.com", "binh.tran@yahoo.com"]
    second = office.rows()[1]
    acks = [r for r in office.emails_for(second.id)  # type: ignore[attr-defined]
            if r.action == "acknowledge"]  # type: ignore[attr-defined]
    assert [r.recipients for r in acks] == [["binh.tran@yahoo.com"]]  # type: ignore[attr-defined]


def _open_case(office: Desk) -> str:
    office.receive(_mail("an.nguyen@gmail.com", "Hồ sơ xin cấp giấy phép xây dựng",
                         "Tôi tên là Nguyễn Văn An, xin nộp hồ sơ đề nghị cấp giấy phép "
                         "xây dựng nhà ở riêng lẻ.", attachment=FORM))
    office.process()
    with office.engine.connect() as conn:
        return str(conn.scalar(select(cases.c.code)))


@pytest.mark.parametrize(("sender", "authenticated", "joins"), [
    ("an.nguyen@gmail.com", True, True),  # the applicant
    ("ke.la@gmail.com", True, False),  # a stranger who copied the code
    ("an.nguyen@gmail.com", False, False),  # the applicant's address, forged
])
def test_only_the_applicant_joins_a_case(tmp_path: Path, sender: str, authenticated: bool,
                                         joins: bool) -> None:
    """"[CODE] bổ sung" joins the case only from the applicant's authenticated address;
    anyone else is held for the clerk and nothing is sent."""
    office = Desk(tmp_path)
    code = _open_case(office)
    office.receive(_mail(sender, f"[{code}] Bổ sung hồ sơ", "Xin gửi bổ sung bản vẽ.",
                         authenticated=authenticated, attachment=b"%PDF-1.4 ban ve" * 10))

    office.process()

    reply = office.rows()[1]
    if joins:
        assert reply.state in (State.ROUTED, State.DONE)  # type: ignore[attr-defined]
        assert reply.case_id is not None  # type: ignore[attr-defined]
    else:
        assert reply.state == State.QUARANTINED  # type: ignore[attr-defined]
        assert code in reply.last_error  # type: ignore[attr-defined]
        assert office.emails_for(reply.id) == []  # type: ignore[attr-defined]


def test_a_broken_template_pauses_the_pipeline_and_quarantines_nothing(tmp_path: Path) -> None:
    """The agency's receipt and request templates break every dossier (these lack documents,
    so they get the request to complete them): vanthu stops with the cause and keeps the
    mails stored with no attempt counted; once the templates are fixed, they go on."""
    rules_dir = tmp_path / "rules"
    shutil.copytree(RULES, rules_dir)
    (rules_dir / "templates").mkdir(exist_ok=True)
    templates = [rules_dir / "templates" / f"{name}.txt.j2"
                 for name in ("receipt", "supplement_request")]
    for template in templates:
        template.write_text("{% include 'khong-co.j2' %}", encoding="utf-8")
    office = Desk(tmp_path, rules_dir)
    body = "Tôi tên là {}, xin nộp hồ sơ đề nghị cấp giấy phép xây dựng nhà ở riêng lẻ."
    office.receive(*(_mail(f"nguoi{i}@gmail.com", "Hồ sơ xin cấp giấy phép xây dựng",
                           body.format(f"Nguyễn Văn {name}"), attachment=bytes([i]) * 2000)
                     for i, name in enumerate(["An", "Bình", "Cường"], 1)))

    for _ in range(office.cfg.limits.max_attempts + 1):
        with pytest.raises(SystemicFault, match=r"khong-co\.j2"):
            office.process()

    assert [(r.state, r.attempts) for r in office.rows()] == [  # type: ignore[attr-defined]
        (State.STORED, 0)] * 3
    assert office.entries() == []

    for template in templates:
        template.unlink()
    office.process()

    assert {r.state for r in office.rows()} == {State.ROUTED}  # type: ignore[attr-defined]
    assert [e.number for e in office.entries()] == [1, 2, 3]  # type: ignore[attr-defined]


def _raw(from_lines: list[str], body: str = DOCUMENT, verdict_for: str = "gmail.com") -> bytes:
    """A forged document: the attacker's own free-mail domain passes authentication (as a
    real free-mail account does); the From header is built to look like the committee."""
    head = [f"Authentication-Results: {AUTHSERV_ID}; dkim=pass header.d={verdict_for}; "
            f"dmarc=pass header.from={verdict_for}",
            *from_lines,
            "To: vanthu.sxd@tayninh.gov.vn",
            "Subject: =?utf-8?b?" + base64.b64encode("Công văn 1000/UBND-KT".encode()).decode()
            + "?=",
            f"Message-ID: <{abs(hash(tuple(from_lines)))}@attack.example>",
            "Date: Tue, 10 Nov 2026 09:00:00 +0700",
            "MIME-Version: 1.0",
            "Content-Type: text/plain; charset=utf-8",
            "Content-Transfer-Encoding: 8bit"]
    return ("\r\n".join(head) + "\r\n\r\n" + body.replace("\n", "\r\n")).encode()


def _encoded(text: str) -> str:
    return "=?utf-8?b?" + base64.b64encode(text.encode()).decode() + "?="


FORGED_FROM = {
    "encoded display name": [f"From: {_encoded('ubnd@tayninh.gov.vn')} <kethu@gmail.com>"],
    "encoded name with CRLF": [
        f"From: {_encoded('ubnd@tayninh.gov.vn' + chr(13) + chr(10))} <kethu@gmail.com>"],
    "encoded address": [f"From: {_encoded('UBND <ubnd@tayninh.gov.vn>')}"],
    "address as display name": ["From: ubnd@tayninh.gov.vn <kethu@gmail.com>"],
    "quoted address as name": ['From: "ubnd@tayninh.gov.vn" <kethu@gmail.com>'],
    "two From headers": ["From: UBND <ubnd@tayninh.gov.vn>", "From: <kethu@gmail.com>"],
    "From list": ["From: ubnd@tayninh.gov.vn, kethu@gmail.com"],
    "source route": ["From: UBND <@tayninh.gov.vn:kethu@gmail.com>"],
    "Sender differs": ["From: UBND <ubnd@tayninh.gov.vn>", "Sender: kethu@gmail.com"],
    "non-ASCII address": ["From: UBND <ủbnd@tayninh.gov.vn>"],
    "comment with address": ["From: (ubnd@tayninh.gov.vn) kethu@gmail.com"],
}


def test_forged_identities_are_held_and_nothing_reaches_an_injected_address(
        office: Office) -> None:
    """Every way of dressing free mail up as the committee, delivered through the real
    servers: each is held for the clerk (an address in a comment is as doubtful as one in a
    display name), none is registered as the committee's, and no email goes anywhere but to
    the agency's own people."""
    forged = {name: _raw(lines) for name, lines in FORGED_FROM.items()}
    office.deliver(*forged.values())

    office.run_daemon(until=lambda: office.settled(len(forged)), timeout=120)

    engine = office.engine()
    with engine.connect() as conn:
        state = dict(conn.execute(select(messages.c.header_message_id, messages.c.state)).all())
        senders = conn.scalars(select(register_entries.c.sender_email)).all()
    engine.dispose()
    for name, raw in forged.items():
        message_id = message_from_bytes(raw)["Message-ID"]
        assert state[message_id] == State.QUARANTINED, name
    assert "ubnd@tayninh.gov.vn" not in senders
    rules = rules_module.load(RULES)
    allowed = ({p.email for p in rules.people.values()}
               | {d.email for d in rules.departments.values()})
    for sent in office.smtp.messages():
        assert set(sent.rcpt_tos) <= allowed, sent.rcpt_tos


@pytest.mark.parametrize(("body", "kind"), [
    ("Chúc mừng bạn trúng thưởng!\nSố: 5/TB\nBấm vào đây để nhận thưởng: http://qua.top/x",
     Kind.SPAM),
    ("Kính gửi anh chị,\nSố: 5/TB\nXin cảm ơn.", Kind.OTHER),
])
def test_one_so_line_is_not_a_document(body: str, kind: Kind) -> None:
    """"Số: 5/TB" alone, without the issuer block or the date line of a real header, takes
    no number in the register; with spam words around it the mail is spam."""
    cfg = config.parse({"security": {"authserv_id": AUTHSERV_ID}}, file="t", text="",
                       base=Path("."))

    _, und = understand(_mail("nguoi.la@gmail.com", "Thông báo", body), cfg, NoCases())

    assert und.kind is kind


def test_doubts_reach_the_register_the_forward_and_the_digest(tmp_path: Path) -> None:
    """A committee's document from free mail is registered with the doubt in column 10
    (Ghi chú), on the leaders' forward and in the digest."""
    office = Desk(tmp_path)
    office.receive(_mail("ubnd.tayninh.vp@gmail.com", "Công văn 1000/UBND-KT", DOCUMENT))

    office.process()

    entry = office.entries()[0]
    assert "gmail.com" in entry.note  # type: ignore[attr-defined]
    forward = next(r for r in office.emails_for(office.rows()[0].id)  # type: ignore[attr-defined]
                   if r.action == "forward")  # type: ignore[attr-defined]
    body = message_from_bytes(forward.raw, policy=policy.default)  # type: ignore[attr-defined]
    text = body.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "Lưu ý" in text and "gmail.com" in text
    report = digest.build(office.engine, office.cfg, office.rules,
                          datetime(2000, 1, 1, tzinfo=UTC), datetime.now(UTC))
    assert "LƯU Ý" in report.text and "gmail.com" in report.text


def test_a_paused_pipeline_is_unhealthy_in_status_and_first_in_the_digest(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """While the pipeline is paused by a fault of the system, `status` exits 1 naming the
    cause and the digest opens with it; once cleared, both are quiet again."""
    office = Desk(tmp_path)
    config_path = tmp_path / "config.toml"
    config_path.write_text(AGENCY_CONFIG.format(authserv_id=AUTHSERV_ID, rules=RULES)
                           + f'\n[storage]\ndata_dir = "{tmp_path}"\n', encoding="utf-8")
    report_fault(office.engine, "pipeline", "TemplateNotFound: khong-co.j2")

    paused = main(["status", "--json", "--config", str(config_path)])
    status = json.loads(capsys.readouterr().out)
    report = digest.build(office.engine, office.cfg, office.rules,
                          datetime(2000, 1, 1, tzinfo=UTC), datetime.now(UTC))
    clear_fault(office.engine, "pipeline")
    resumed = main(["status", "--json", "--config", str(config_path)])

    assert paused == 1 and any("khong-co.j2" in p for p in status["problems"])
    assert report.text.splitlines()[3].startswith("SỰ CỐ")
    assert resumed == 0
