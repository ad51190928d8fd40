"""Completeness of a dossier (issue 14, item 2): each procedure's required documents are
recognised in attachment names (accents, case, separators, abbreviations, words written
together), in the titles of their text and in the mail's "kèm theo" list; a complete dossier
gets the receipt slip, one missing documents the request to complete it (exactly what is
missing, no return date, the case waiting for supplements), an uncertain one is held for the
clerk, who accepts it (`vanthu case accept`, once) or asks for supplements.

Real inputs: the shipped rules/procedures.yaml, the public corpus's dossiers, the real
pipeline on a real SQLite database (tests/desk.py) and the real `vanthu` command line."""

from __future__ import annotations

import shutil
import unicodedata
from collections.abc import Callable
from datetime import timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, update

from daemon.cli import main
from daemon.db import case_events, cases, outbox, outbox_bodies
from daemon.errors import ConfigError
from daemon.models import Attachment
from daemon.office import cases as cases_module
from daemon.office.completeness import State, check, recognises, words
from daemon.routing import rules as rules_module
from daemon.routing.rules import Procedure, Requirement
from daemon.textnorm import strip_accents
from tests.conftest import AUTHSERV_ID, CORPUS, RULES
from tests.desk import FORM, Desk, mail
from tests.test_inspect import AGENCY_CONFIG

CATALOGUE = {p.id: p for p in rules_module.load(RULES).procedures}
REQUIREMENTS = [(p.id, r) for p in CATALOGUE.values() for r in p.requirements]


# --- the recogniser ------------------------------------------------------------------------


def _file(name: str, text: str = "", unread: tuple[str, ...] = (),
          withheld: str | None = None) -> Attachment:
    return Attachment(name=name, content_type="application/pdf", size=1, sha256="0" * 64,
                      payload=b"", text=text, unread=unread, withheld=withheld)


SCAN = ("ảnh, có thể là bản quét, chưa đọc",)


def _written(phrase: str, accents: bool, case: str, separator: str) -> str:
    """A phrase as people write it in a file name."""
    text = phrase if accents else strip_accents(phrase)
    parts = text.split()
    if case == "camel":
        return "".join(p[:1].upper() + p[1:].lower() for p in parts)
    shapes: dict[str, Callable[[str], str]] = {
        "upper": str.upper, "lower": str.lower, "title": str.title, "as": lambda p: p}
    return separator.join(shapes[case](p) for p in parts)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(entry=st.sampled_from(REQUIREMENTS), data=st.data(), accents=st.booleans(),
       case=st.sampled_from(["upper", "lower", "title", "as", "camel"]),
       separator=st.sampled_from([" ", "_", "-", ".", "  ", " - "]),
       prefix=st.sampled_from(["", "01_", "Scan ", "2. ", "ban sao "]),
       suffix=st.sampled_from([".pdf", ".jpg", " (1).pdf", "_trang 1.png", " có xác nhận.docx"]),
       decomposed=st.booleans())
def test_every_recogniser_matches_its_name_however_written(
        entry: tuple[str, Requirement], data: st.DataObject, accents: bool, case: str,
        separator: str, prefix: str, suffix: str, decomposed: bool) -> None:
    """A document's name and each of its words, with or without accents, in any case, words
    apart by spaces, _ - . or written together (CamelCase), NFC or NFD, numbered, with an
    extension: recognised."""
    _, requirement = entry
    phrase = data.draw(st.sampled_from([requirement.name, *requirement.match]))
    name = prefix + _written(phrase, accents, case, separator) + suffix
    if decomposed:
        name = unicodedata.normalize("NFD", name)
    assert recognises(requirement, name), name


@settings(max_examples=200, deadline=None)
@given(entry=st.sampled_from(REQUIREMENTS), data=st.data())
def test_no_recogniser_matches_words_it_does_not_contain(
        entry: tuple[str, Requirement], data: st.DataObject) -> None:
    """Names made of words none of which is part of a recogniser never match it, however
    they are joined."""
    _, requirement = entry
    compact = {"".join(w.bare for w in words(p)) for p in (requirement.name,
                                                            *requirement.match)}
    vocabulary = [w for w in ("ảnh", "hộ khẩu", "sơ yếu lý lịch", "giấy khai sinh", "tờ trình",
                              "biên lai", "phí", "lệ phí", "hợp đồng", "bảo hiểm", "hóa đơn",
                              "thư", "mẫu", "số", "trang", "công văn", "scan", "IMG", "tệp")
                  if not any(x.bare in c for x in words(w) for c in compact)]
    picked = data.draw(st.lists(st.sampled_from(vocabulary), min_size=1, max_size=6))
    joiner = data.draw(st.sampled_from([" ", "_", "-", ""]))
    assert not recognises(requirement, joiner.join(picked) + ".pdf")


@pytest.mark.parametrize("name,document", [
    ("GCN QSDĐ trang 1.jpg", "Giấy tờ về quyền sử dụng đất"),
    ("gcn_qsdd.pdf", "Giấy tờ về quyền sử dụng đất"),
    ("GCNQSDĐ.pdf", "Giấy tờ về quyền sử dụng đất"),
    ("So do nha dat.jpg", "Giấy tờ về quyền sử dụng đất"),  # no accents: cannot tell
    ("don-de-nghi.pdf", "Đơn đề nghị cấp giấy phép xây dựng"),
    ("DonDeNghiCapPhep.pdf", "Đơn đề nghị cấp giấy phép xây dựng"),
    ("CCCD Nguyễn Văn Hùng.jpg", "Căn cước công dân"),
    ("BẢN VẼ MẶT BẰNG.PNG", "Bản vẽ thiết kế xây dựng"),
])
def test_names_of_the_catalogue(name: str, document: str) -> None:
    requirement = next(r for r in CATALOGUE["gpxd-nha-o"].requirements if r.name == document)
    assert recognises(requirement, name)


def test_accents_written_on_both_sides_must_agree() -> None:
    """"Sơ đồ vị trí" (a site plan) is not "sổ đỏ" (the land-use certificate); "Bảng lương"
    is not a degree ("bằng")."""
    land = next(r for r in CATALOGUE["gpxd-nha-o"].requirements if "đất" in r.name)
    degree = next(r for r in CATALOGUE["cchn"].requirements if r.name == "Văn bằng chuyên môn")
    assert not recognises(land, "Sơ đồ vị trí.pdf")
    assert recognises(land, "Sổ đỏ.pdf")
    assert not recognises(degree, "Bảng tốt nghiệp.pdf")
    assert recognises(degree, "Bằng tốt nghiệp.pdf")


def test_titles_of_the_text_count_and_the_form_does_not_name_what_it_asks_for() -> None:
    """A file called scan.pdf whose text opens with the certificate's title carries it; the
    application form's own body (which mentions the plot of land) names only the form."""
    procedure = CATALOGUE["gpxd-nha-o"]
    form = ("CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM\nĐộc lập - Tự do - Hạnh phúc\n"
            "ĐƠN ĐỀ NGHỊ CẤP GIẤY PHÉP XÂY DỰNG\n- Địa điểm: thửa đất số 123, giấy chứng nhận "
            "quyền sử dụng đất số CS 0123\n")
    certificate = ("GIẤY CHỨNG NHẬN\nQUYỀN SỬ DỤNG ĐẤT, QUYỀN SỞ HỮU NHÀ Ở\nThửa đất số 123\n")
    verdict = check(procedure, [_file("a.pdf", form), _file("scan.pdf", certificate)])
    assert verdict.state is State.MISSING
    assert verdict.missing == ("Bản vẽ thiết kế xây dựng",)
    assert dict(verdict.received)["Giấy tờ về quyền sử dụng đất"] == ("scan.pdf",)


def test_missing_uncertain_and_complete() -> None:
    procedure = CATALOGUE["cchn"]
    form = _file("Đơn đề nghị cấp CCHN.pdf")
    degree = _file("Bang tot nghiep.jpg", unread=SCAN)
    # Nothing unread or unnamed: exactly the missing document.
    missing = check(procedure, [form, degree])
    assert (missing.state, missing.missing) == (State.MISSING, ("Bản khai kinh nghiệm",))
    # A scan whose name says nothing may be the missing document: the clerk looks.
    held = check(procedure, [form, degree, _file("IMG_2031.jpg", unread=SCAN)])
    assert held.state is State.UNCERTAIN and "IMG_2031.jpg" in held.reasons[0]
    assert held.missing == ("Bản khai kinh nghiệm",)
    # The mail says it encloses the experience statement, a readable file shows nothing.
    claimed = check(procedure, [form, degree, _file("tai lieu.docx", "Nội dung khác")],
                    "Kính gửi Sở,\nHồ sơ gồm:\n1. Đơn\n2. Bằng\n3. Bản khai kinh nghiệm\n\nCảm ơn")
    assert claimed.state is State.UNCERTAIN and "Bản khai kinh nghiệm" in claimed.reasons[0]
    complete = check(procedure, [form, degree, _file("ban-khai-kinh-nghiem.pdf"),
                                 _file("IMG_2031.jpg", unread=SCAN)])
    assert complete.state is State.COMPLETE and complete.others == ("IMG_2031.jpg",)
    assert check(None, [form]).state is State.UNCERTAIN  # no procedure identified
    nothing = check(procedure, [])
    assert nothing.missing == tuple(r.name for r in procedure.requirements if not r.optional)


def test_an_archive_that_could_not_be_opened_may_hold_anything() -> None:
    procedure = CATALOGUE["gpxd-cong-trinh"]
    closed = _file("Ho so thiet ke.zip", withheld="giải nén vượt quá giới hạn",
                   unread=("phần còn lại chưa đọc",))
    verdict = check(procedure, [_file("Don de nghi cap GPXD.pdf"), closed])
    assert verdict.state is State.UNCERTAIN and "Ho so thiet ke.zip" in verdict.reasons[0]


@settings(max_examples=50, deadline=None)
@given(names=st.lists(st.text(max_size=400), max_size=30), body=st.text(max_size=3000))
def test_any_input_gives_a_verdict(names: list[str], body: str) -> None:
    """Hostile names and bodies: a verdict, never an exception."""
    verdict = check(CATALOGUE["gpxd-nha-o"], [_file(n, n, SCAN) for n in names], body)
    assert verdict.state in set(State)


def test_a_huge_body_and_name_are_bounded() -> None:
    body = "kèm theo " + "đơn đề nghị " * 200_000
    verdict = check(CATALOGUE["cchn"], [_file("x" * 1_000_000, "A" * 1_000_000)], body)
    # The mail says a form is enclosed, and a file shows nothing known: the clerk looks.
    assert verdict.state is State.UNCERTAIN
    assert sum(len(r) for r in verdict.reasons) < 2_000


# --- the catalogue's schema ----------------------------------------------------------------


def _catalogue(tmp_path: Path, documents: str) -> Path:
    directory = tmp_path / "rules"
    shutil.copytree(RULES, directory)
    (directory / "procedures.yaml").write_text(
        "procedures:\n  - id: thu-tuc\n    name: Thủ tục thử\n    keywords: [thủ tục thử]\n"
        f"    days: 5\n    documents:\n{documents}", encoding="utf-8")
    return directory


def test_plain_names_and_mappings_load(tmp_path: Path) -> None:
    directory = _catalogue(tmp_path, "      - Đơn đề nghị\n"
                                     "      - name: Giấy chứng nhận\n"
                                     "        match: [GCN, giấy CN]\n"
                                     "        optional: true\n")
    [procedure] = rules_module.load(directory).procedures
    assert procedure.documents == ("Đơn đề nghị", "Giấy chứng nhận")
    assert procedure.requirements == (
        Requirement("Đơn đề nghị", ("Đơn đề nghị",)),
        Requirement("Giấy chứng nhận", ("Giấy chứng nhận", "GCN", "giấy CN"), True))


@pytest.mark.parametrize("documents,message", [
    ("      - name: A\n        match: GCN\n        optional: yes please\n",
     "procedure 'thu-tuc': document 'A': optional takes true or false"),
    ("      - name: A\n        match: [1, 2]\n",
     "procedure 'thu-tuc': document 'A': match takes a list of words or phrases"),
    ("      - match: [GCN]\n", "procedure 'thu-tuc': a document needs a name"),
    ("      - name: A\n        matches: [GCN]\n",
     "unknown key 'matches' in procedure 'thu-tuc' document"),
    ("      - [A, B]\n", "procedure 'thu-tuc': each document is a name or a mapping"),
])
def test_a_wrong_document_entry_is_named(tmp_path: Path, documents: str, message: str) -> None:
    directory = _catalogue(tmp_path, documents)
    with pytest.raises(ConfigError) as caught:
        rules_module.load(directory)
    found = [str(p) for p in caught.value.problems]
    assert any(message in p and "procedures.yaml:" in p for p in found), found


# --- the pipeline and the clerk -------------------------------------------------------------


def _config(desk: Desk, tmp_path: Path, rules: Path = RULES) -> str:
    path = tmp_path / "config.toml"
    path.write_text(AGENCY_CONFIG.format(authserv_id=AUTHSERV_ID, rules=rules)
                    + desk.storage_toml,
                    encoding="utf-8")
    return str(path)


def _dossier(desk: Desk, number: str) -> Any:
    desk.receive((CORPUS / f"{number}.eml").read_bytes())
    desk.process()
    with desk.engine.connect() as conn:
        return conn.execute(select(cases)).one()


def _emails(desk: Desk, action: str | None = None) -> list[EmailMessage]:
    with desk.engine.connect() as conn:
        rows = conn.execute(select(outbox.c.action, outbox_bodies.c.raw)
                            .join_from(outbox, outbox_bodies).order_by(outbox.c.id)).all()
    return [message_from_bytes(r.raw, policy=policy.default) for r in rows
            if action is None or r.action == action]


def _text(message: EmailMessage) -> str:
    text: str = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    return text.replace("\r\n", "\n")


def _events(desk: Desk) -> list[Any]:
    with desk.engine.connect() as conn:
        return list(conn.execute(select(case_events).order_by(case_events.c.id)).all())


@pytest.mark.parametrize("number", ["005", "017", "021", "040", "002"])
def test_a_complete_corpus_dossier_gets_the_receipt_with_its_appointment(
        tmp_path: Path, number: str) -> None:
    desk = Desk(tmp_path)
    case = _dossier(desk, number)
    [receipt] = _emails(desk, "acknowledge")
    assert "Giấy tiếp nhận hồ sơ và hẹn trả kết quả" in str(receipt["Subject"])
    assert case.status == "received" and case.deadline is not None
    assert f"{case.deadline:%d/%m/%Y}" in _text(receipt)


@pytest.mark.parametrize("number,missing", [
    ("032", ["Giấy tờ về quyền sử dụng đất", "Bản vẽ thiết kế xây dựng"]),
    ("041", ["Giấy tờ về quyền sử dụng đất"]),
    ("042", ["Bản khai kinh nghiệm"]),
])
def test_a_dossier_missing_documents_gets_the_request_to_complete_it(
        tmp_path: Path, number: str, missing: list[str]) -> None:
    desk = Desk(tmp_path)
    case = _dossier(desk, number)
    [letter] = _emails(desk, "acknowledge")
    text = _text(letter)
    assert str(letter["Subject"]) == f"[{case.code}] Phiếu yêu cầu bổ sung, hoàn thiện hồ sơ"
    assert letter["Auto-Submitted"] == "auto-replied" and letter["In-Reply-To"]
    listed = text.split("những nội dung sau:\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert [line.strip() for line in listed] == [f"{i}. {m}" for i, m in enumerate(missing, 1)]
    assert "Giấy tờ đã nhận:" in text and "chưa có ngày hẹn trả kết quả" in text
    assert "Thời gian trả kết quả" not in text  # no appointment, no slip, no PDF
    assert not [part for part in letter.iter_attachments()]
    assert case.status == "supplements_requested"
    [asked] = [e for e in _events(desk) if e.event == "supplement_requested"]
    assert asked.detail == {"items": missing}
    [forward] = _emails(desk, "forward")
    assert "thiếu: " + "; ".join(missing) in _text(forward)


def test_the_supplement_that_completes_the_dossier_restarts_the_clock(tmp_path: Path) -> None:
    """The applicant answers the request with the missing papers: the reply joins the case,
    which is in progress again, its deadline moved by the working days it stood still."""
    desk = Desk(tmp_path)
    case = _dossier(desk, "032")
    paused_on = case.paused_at - timedelta(days=7)
    with desk.engine.begin() as conn:  # the request went out a week ago
        conn.execute(update(cases).values(paused_at=paused_on))
    reply = EmailMessage()
    reply["Authentication-Results"] = (f"{AUTHSERV_ID}; dkim=pass header.d=gmail.com; "
                                       "dmarc=pass header.from=gmail.com")
    reply["From"] = "Lý Thị Kim <kimly.tn@gmail.com>"
    reply["To"] = "vanthu.sxd@tayninh.gov.vn"
    reply["Subject"] = f"Re: [{case.code}] Phiếu yêu cầu bổ sung, hoàn thiện hồ sơ"
    reply["Message-ID"] = "<bo-sung.032@gmail.com>"
    reply.set_content("Em gửi bổ sung giấy chứng nhận quyền sử dụng đất và bản vẽ ạ.")
    for name in ("GCN QSDĐ.jpg", "Ban ve thiet ke.pdf"):
        reply.add_attachment(b"\xff\xd8scan", maintype="image", subtype="jpeg", filename=name)
    desk.receive(reply.as_bytes())
    desk.process()

    with desk.engine.connect() as conn:
        [after] = conn.execute(select(cases)).all()
    calendar = desk.cfg.calendar.work_calendar()
    stood = cases_module.working_days_between(calendar, paused_on, case.paused_at)
    assert after.status == "in_progress" and after.paused_at is None
    assert after.deadline == calendar.add_working_days(case.deadline, stood)
    assert [e.event for e in _events(desk)].count("supplement_received") == 1


def test_an_uncertain_dossier_is_held_and_the_clerk_accepts_it_once(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """039 carries two files withheld for their names: nothing goes to the applicant, the
    Chief of Office and the clerk are told; `case accept` sends the receipt slip with the
    appointment counted from the original receipt, once however often it is given."""
    desk = Desk(tmp_path)
    case = _dossier(desk, "039")
    config = _config(desk, tmp_path)
    assert case.status == "needs_review" and _emails(desk, "acknowledge") == []
    [forward] = _emails(desk, "forward")
    assert {"cvp.sxd@example.gov.vn", "vanthu1.sxd@example.gov.vn"} <= {
        a.strip() for a in str(forward["To"]).split(",")}
    assert f"vanthu case accept {case.code}" in _text(forward)
    assert "HỒ SƠ CHỜ VĂN THƯ KIỂM TRA" in _text(forward)
    assert "held_for_review" in [e.event for e in _events(desk)]
    assert main(["case", "list", "--status", "needs_review", "--config", config]) == 0
    assert "Chờ văn thư kiểm tra" in capsys.readouterr().out

    assert main(["case", "accept", case.code, "--config", config, "--actor", "Lê Thị Thu"]) == 0
    assert main(["case", "accept", case.code, "--config", config]) == 0  # again: nothing new
    assert "đã tiếp nhận từ trước" in capsys.readouterr().out

    [receipt] = _emails(desk, "acknowledge")
    assert str(receipt["Subject"]) == f"[{case.code}] Giấy tiếp nhận hồ sơ và hẹn trả kết quả"
    assert f"{case.deadline:%d/%m/%Y}" in _text(receipt)  # the appointment of the receipt day
    assert receipt["To"] == "taidv.xaydung@gmail.com"
    with desk.engine.connect() as conn:
        after = conn.execute(select(cases)).one()
    assert after.status == "received" and after.deadline == case.deadline
    accepted = [e for e in _events(desk) if e.event == "accepted"]
    assert len(accepted) == 1 and accepted[0].actor == "Lê Thị Thu"
    # Accept is for held dossiers only.
    assert main(["case", "accept", "KHÔNG-CÓ", "--config", config]) == 1


def test_the_clerk_asks_a_held_dossier_for_supplements_in_the_agency_template(
        tmp_path: Path) -> None:
    """`case request-supplement` on a held dossier: the agency's own template of the request
    (rules/templates/), the items listed, no appointment, the case waiting."""
    rules = tmp_path / "rules"
    shutil.copytree(RULES, rules)
    (rules / "templates").mkdir(exist_ok=True)
    (rules / "templates" / "supplement_request.txt.j2").write_text(
        "MẪU CỦA SỞ {{ code }}\n{% for item in missing %}- {{ item }}\n{% endfor %}"
        "{% if intake %}chưa hẹn{% endif %}\n", encoding="utf-8")
    desk = Desk(tmp_path, rules)
    case = _dossier(desk, "039")
    config = _config(desk, tmp_path, rules)

    assert main(["case", "request-supplement", case.code, "--items",
                 "Giấy chứng nhận quyền sử dụng đất", "Bản vẽ thiết kế", "--config",
                 config]) == 0

    [letter] = _emails(desk, "supplement")
    assert _text(letter) == (f"MẪU CỦA SỞ {case.code}\n- Giấy chứng nhận quyền sử dụng đất\n"
                             "- Bản vẽ thiết kế\nchưa hẹn\n")
    assert "Bản vẽ thiết kế" in letter.get_body(("html",)).get_content()  # type: ignore[union-attr]
    with desk.engine.connect() as conn:
        after = conn.execute(select(cases)).one()
    assert after.status == "supplements_requested" and after.paused_at is not None
    assert _emails(desk, "acknowledge") == []
    # Accepting it now is refused: it is no longer held.
    assert main(["case", "accept", case.code, "--config", config]) == 1


def test_a_procedure_that_lists_no_documents_has_nothing_missing() -> None:
    procedure = Procedure("x", "Thủ tục không kê thành phần", ("x",), 1, ())
    assert check(procedure, []).state is State.COMPLETE


def test_a_broken_supplement_template_is_reported_by_the_self_check(tmp_path: Path) -> None:
    """The agency's request template is checked at start like the receipt's: the problem at
    the template's line, named as the request."""
    from daemon import selfcheck
    from tests.test_config import _config as config_file
    from tests.test_config import _copy_rules

    rules = _copy_rules(tmp_path)
    (rules / "templates").mkdir()
    (rules / "templates" / "supplement_request.txt.j2").write_text(
        "PHIẾU YÊU CẦU BỔ SUNG\n{{ thieu }}\n", encoding="utf-8")

    problems = selfcheck.check(config_file(tmp_path, rules=rules)).problems

    assert [(p.file, p.line) for p in problems][:1] == [
        (str(rules / "templates" / "supplement_request.txt.j2"), 2)]
    assert "'thieu' is undefined (in the supplement request)" in problems[0].message


def test_a_dossier_of_no_known_procedure_is_held_and_its_applicant_told_it_arrived(
        tmp_path: Path) -> None:
    """Nothing could be checked: the case waits for the clerk, the applicant gets the plain
    acknowledgement with the case code (no slip, no date); `case accept` then sends the slip
    under a Message-ID of its own."""
    desk = Desk(tmp_path)
    desk.receive(mail("hoanganh.le@gmail.com", "Nộp hồ sơ công nhận văn bằng nước ngoài",
                      "Kính gửi Sở, tôi tên là Lê Hoàng Anh, xin nộp hồ sơ đề nghị công nhận "
                      "văn bằng do cơ sở giáo dục nước ngoài cấp. Hồ sơ đính kèm.",
                      attachment=FORM))
    desk.process()
    with desk.engine.connect() as conn:
        case = conn.execute(select(cases)).one()
    assert case.status == "needs_review" and case.procedure_id is None
    [plain] = _emails(desk, "acknowledge")
    assert str(plain["Subject"]).startswith(f"[{case.code}] Xác nhận đã nhận")
    assert "Giấy tiếp nhận" not in _text(plain) and not list(plain.iter_attachments())

    assert main(["case", "accept", case.code, "--config", _config(desk, tmp_path)]) == 0

    first, receipt = _emails(desk, "acknowledge")
    assert "Giấy tiếp nhận hồ sơ và hẹn trả kết quả" in str(receipt["Subject"])
    assert receipt["Message-ID"] != first["Message-ID"]
