"""Confidentiality marks: found wherever they are put, never read into ordinary words, and once
found (or doubted) nothing but a notice leaves, whatever the rules or the case add."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daemon import config
from daemon.models import Attachment, Kind
from daemon.textnorm import nfc
from daemon.understand import NoCases, secrecy, understand
from daemon.understand.extract import without_motto
from daemon.understand.secrecy import MAX_SCAN_CHARS, doubts, find, highest, marks_in
from tests.conftest import AUTHSERV_ID
from tests.desk import FORM, Desk
from tests.desk import mail as plain_mail
from tests.hostile import run
from tests.hostile.secrecy import SECRET, document, mail, pdf

AGENCY = config.parse({"security": {"authserv_id": AUTHSERV_ID}}, file="t", text="",
                      base=Path("."))
LEVELS = {"MẬT": "Mật", "TỐI MẬT": "Tối mật", "TUYỆT MẬT": "Tuyệt mật"}

ISSUERS = st.sampled_from([
    "ỦY BAN NHÂN DÂN TỈNH ĐẮK LẮK", "SỞ TÀI CHÍNH", "CÔNG AN TỈNH QUẢNG TRỊ",
    "BỘ CHỈ HUY QUÂN SỰ TỈNH", "UBND HUYỆN CỦ CHI", "VĂN PHÒNG ĐOÀN ĐBQH VÀ HĐND",
])
GAPS = st.sampled_from(["  ", "   ", "\t", "      ", " | ", " - "])


@pytest.mark.parametrize("line,level", [
    ("MẬT", "Mật"), ("Tối mật", "Tối mật"), ("TUYỆT MẬT", "Tuyệt mật"), ("TOI MAT", "Tối mật"),
    ("(TỐI MẬT)", "Tối mật"), ("[Mật]", "Mật"), ("*** MẬT ***", "Mật"),
    ("T Ố I  M Ậ T", "Tối mật"), ("M Ậ T", "Mật"), ("T U Y Ệ T   M Ậ T", "Tuyệt mật"),
    ("Độ mật: Tối mật", "Tối mật"), ("Mức độ mật: MẬT", "Mật"), ("Độ mật - Tuyệt mật", "Tuyệt mật"),
    ("UBND TỈNH TÂY NINH          MẬT", "Mật"), ("UBND TỈNH TÂY NINH TỐI MẬT", "Tối mật"),
    ("MẬT     CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM", "Mật"),
    ("TỈNH TÂY NINH MẬT CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM", "Mật"),
    ("SỞ TÀI CHÍNH TỐI MẬT Độc lập - Tự do - Hạnh phúc", "Tối mật"),
])
def test_a_mark_is_found_in_every_usual_form(line: str, level: str) -> None:
    assert marks_in(f"Số: 12/UBND-NC\n{line}\nKính gửi: Sở Xây dựng") == level


@pytest.mark.parametrize("text", [
    "Hồ sơ gồm: tờ trình, tài liệu mật (nếu có).",
    "Các đơn vị thực hiện nghiêm việc bảo vệ bí mật nhà nước.",
    "BẢO VỆ BÍ MẬT NHÀ NƯỚC", "DANH MỤC TÀI LIỆU MẬT", "NGUYỄN THỊ MẬT",
    "MẬT KHẨU CỦA QUÝ VỊ SẮP HẾT HẠN", "Đổi mật khẩu", "Độ mật: không", "Độ mật: (nếu có)",
    "Quan hệ mật thiết giữa các đơn vị", "mật ong rừng U Minh", "mat", "Mat",
    "Mật độ xây dựng tối đa 60%", "Số: 12/MẬT-BCA",
])
def test_a_word_in_running_text_is_no_mark(text: str) -> None:
    assert marks_in(text) is None


@settings(max_examples=200, deadline=None)
@given(issuer=ISSUERS, gap=GAPS, mark=st.sampled_from(sorted(LEVELS)),
       before=st.lists(st.sampled_from(["Số: 12/UBND", "V/v triển khai kế hoạch", "",
                                        "Kính gửi: Sở Xây dựng",
                                        "Đà Lạt, ngày 1 tháng 2 năm 2026"]),
                       max_size=80),
       spaced=st.booleans(), side=st.sampled_from(["after", "before", "alone"]))
def test_a_mark_beside_any_issuer_anywhere_in_the_text(
        issuer: str, gap: str, mark: str, before: list[str], spaced: bool, side: str) -> None:
    """The stamp on the issuer's line (either side, any gap), or alone, spaced out or not,
    after any number of other lines: found at its level."""
    stamp = "  ".join(" ".join(word) for word in mark.split()) if spaced else mark
    line = {"after": f"{issuer}{gap}{stamp}", "before": f"{stamp}{gap}{issuer}",
            "alone": stamp}[side]
    assert marks_in("\n".join([*before, line, "Nội dung văn bản."])) == LEVELS[mark]


SENTENCE_WORDS = st.sampled_from([
    "các", "đơn", "vị", "bảo", "vệ", "bí", "mật", "nhà", "nước", "tài", "liệu", "khẩu",
    "thực", "hiện", "theo", "quy", "định", "mật", "thiết", "ong", "độ", "xây", "dựng",
])


@settings(max_examples=300, deadline=None)
@given(words=st.lists(SENTENCE_WORDS, min_size=4, max_size=30))
def test_lowercase_running_text_never_carries_a_mark(words: list[str]) -> None:
    """A sentence (four words or more, lower case, single spaces) is never a stamp, whatever
    words it is made of."""
    assert marks_in(" ".join(words) + ".") is None


@given(st.text(max_size=400))
def test_any_text_scans_without_error(text: str) -> None:
    assert marks_in(text) in (None, "Mật", "Tối mật", "Tuyệt mật")


def _marks_line_by_line(text: str) -> str | None:
    """What `marks_in` finds, without its search for lines that may hold a mark: every line
    split into fields, read as a heading and for labels."""
    best: str | None = None
    for raw in nfc(text[:MAX_SCAN_CHARS]).splitlines():
        line = secrecy._squeeze_spaced(raw.strip())
        found = [secrecy._level(f) for f in secrecy._FIELD_BREAK.split(line)]
        found.append(secrecy._heading_level(without_motto(line)))
        found += [secrecy._level(m.group("level")) for m in secrecy._LABEL.finditer(line)]
        best = highest(best, *found)
    return best


# Pieces of marks and of what is near them, with what splits or joins them: a line may be
# drawn with any of them in any order, and bytes of text besides.
MARK_PIECES = st.sampled_from([
    "M", "Ậ", "T", "m", "ậ", "t", "A", "a", "ạ", "\u0323", "\u0302", "\u0331", "Ố", "I", "TỐI",
    "TUYỆT", "MẬT", "mật", "MAT", "mat", " ", "  ", "\t", "\n", "-", " - ", ":", "_", "(", ")",
    "Độ mật:", "mức độ ", "UBND TỈNH TÂY NINH", "BÍ", "KHẨU", "THỊ", "1", ".", ", ", "«", "|",
    "\u2028", "\x1c", "\u00a0", "ＭＡＴ", "\nMẬT\n", "\nTỐI MẬT", "T Ố I  M Ậ T", "\nTUYỆT MẬT  ",
])


@settings(max_examples=500, deadline=None)
@given(st.lists(st.one_of(MARK_PIECES, MARK_PIECES, st.text(max_size=4)), max_size=40)
       .map("".join))
def test_passing_over_lines_without_the_letters_of_a_mark_misses_none(text: str) -> None:
    """`marks_in` reads only the lines holding m, a (or ậ) and t in a row apart from other
    characters than letters and digits: it finds what reading every line finds, on any text."""
    assert marks_in(text) == _marks_line_by_line(text)


def test_the_highest_level_wins_wherever_it_is() -> None:
    assert marks_in("MẬT\nnội dung\nTUYỆT MẬT\nTỐI MẬT") == "Tuyệt mật"
    assert highest("Mật", None, "Tối mật") == "Tối mật"
    assert highest(None, None) is None


def test_a_mark_far_below_a_long_text_is_found() -> None:
    text = "\n".join(f"Đoạn {i}: các đơn vị thực hiện theo quy định." for i in range(100_000))
    assert len(text) < MAX_SCAN_CHARS
    assert marks_in(text + "\nTỐI MẬT") == "Tối mật"


def test_text_past_the_scan_limit_is_a_doubt_not_silence() -> None:
    """A body longer than the scan's bound: what lies past it is named as unread, so the mail
    is announced without content."""
    body = "Nội dung.\n" * (MAX_SCAN_CHARS // 10 + 10) + "TỐI MẬT"
    reading = understand(mail("Công văn 1234/UBND-NC", document(where="none")), AGENCY,
                         NoCases())[0]
    long_mail = replace(reading, body=body)
    finding = find(long_mail)
    assert finding.level is None
    assert any("không được quét" in d for d in finding.doubts)


def _attachment(name: str, text: str = "", unread: tuple[str, ...] = (),
                content_type: str = "application/pdf", size: int = 200_000) -> Attachment:
    return Attachment(name=name, content_type=content_type, size=size, sha256="0" * 64,
                      payload=b"", text=text, pieces=(("body", text),) if text else (),
                      unread=unread)


def test_doubts_name_what_could_not_be_read_but_not_logos() -> None:
    reading = understand(mail("Công văn", document()), AGENCY, NoCases())[0]
    mail_with = replace(reading, attachments=(
        _attachment("scan.pdf", unread=("PDF không có lớp chữ (bản quét)",)),
        _attachment("logo.png", unread=("ảnh",), content_type="image/png", size=4_000)))
    assert doubts(mail_with) == ("tệp scan.pdf: PDF không có lớp chữ (bản quét)",)
    assert find(mail_with).level is None


def test_a_mark_found_anywhere_reaches_the_document_and_the_confidential_book(
        tmp_path: Path) -> None:
    """A mark only in the subject: the document's Độ mật says so, the register entry is in
    the confidential book, and only a notice leaves."""
    desk = Desk(tmp_path)
    outcome = run(desk, mail("Công văn 1234/UBND-NC (TỐI MẬT)", document()))
    _, und = understand(mail("Công văn 1234/UBND-NC (TỐI MẬT)", document()), AGENCY, NoCases())
    assert und.kind is Kind.DOCUMENT
    assert und.document is not None and und.document.confidentiality == "Tối mật"
    assert und.secrecy == "Tối mật" and und.secrecy_where == "tiêu đề thư"
    (entry,) = desk.entries()
    assert entry.book == "confidential"  # type: ignore[attr-defined]
    assert outcome.purposes() == ["notify", "acknowledge"] or "forward" not in outcome.purposes()
    notice = outcome.sent("notify")[0]
    assert "Tối mật" in str(notice["Subject"])
    assert SECRET not in outcome.text("notify")


def test_a_supplement_marked_secret_is_only_announced_to_the_case_handler(
        tmp_path: Path) -> None:
    """The applicant's supplement in a case carries a stamped PDF: the handler the case adds
    to the forward gets a notice, never the file."""
    desk = Desk(tmp_path)
    desk.receive(plain_mail("an.nguyen@gmail.com", "Hồ sơ xin cấp giấy phép xây dựng",
                            "Tôi tên là Nguyễn Văn An, xin nộp hồ sơ đề nghị cấp giấy phép xây "
                            "dựng nhà ở riêng lẻ.", attachment=FORM,
                            message_id="<ho-so-1@gmail.com>"))
    desk.process()
    (entry,) = desk.entries()
    code = entry.case_id and _case_code(desk)  # type: ignore[attr-defined]
    supplement = mail(f"Re: [{code}] Bổ sung hồ sơ", "Tôi gửi bổ sung giấy tờ.", [
        ("bo-sung.pdf", "application/pdf", pdf(document("MẬT")))],
        sender="an.nguyen@gmail.com")
    outcome = run(desk, supplement)
    assert outcome.row.kind == "reply", outcome.row.last_error
    assert "forward" not in outcome.purposes() and "notify" in outcome.purposes()
    assert SECRET not in outcome.text("notify")
    assert not outcome.attachment_names("notify")


def _case_code(desk: Desk) -> str:
    from sqlalchemy import select

    from daemon.db import cases
    with desk.engine.connect() as conn:
        return str(conn.scalar(select(cases.c.code)))


def test_a_supplement_to_a_confidential_case_is_confidential_without_a_mark(
        tmp_path: Path) -> None:
    """The dossier was marked, so its case sits in the confidential register: the applicant's
    later supplement, unmarked, is announced to the handler as confidential too."""
    desk = Desk(tmp_path)
    desk.receive(plain_mail("an.nguyen@gmail.com", "Hồ sơ xin cấp giấy phép xây dựng (MẬT)",
                            "Tôi tên là Nguyễn Văn An, xin nộp hồ sơ đề nghị cấp giấy phép xây "
                            "dựng nhà ở riêng lẻ.", attachment=FORM,
                            message_id="<ho-so-mat@gmail.com>"))
    desk.process()
    (entry,) = desk.entries()
    assert entry.book == "confidential"  # type: ignore[attr-defined]
    code = _case_code(desk)
    outcome = run(desk, mail(f"Re: [{code}] Bổ sung hồ sơ", f"Tôi gửi bổ sung: {SECRET}.",
                             [("bo-sung.pdf", "application/pdf", pdf("Bản vẽ mặt bằng"))],
                             sender="an.nguyen@gmail.com"))
    assert outcome.row.kind == "reply", outcome.row.last_error
    assert "forward" not in outcome.purposes() and "notify" in outcome.purposes()
    assert SECRET not in outcome.text("notify")
    assert "Mật" in str(outcome.sent("notify")[0]["Subject"])


@pytest.mark.parametrize("name,level,doubted", [
    ("QĐ 15 - Tối mật.pdf", "Tối mật", False), ("Tuyệt mật_Quyết định.docx", "Tuyệt mật", False),
    ("CV_1234_TOI_MAT.pdf", None, True), ("MAT.pdf", None, True),
    ("Ban ve mat cat bo sung.pdf", None, False), ("Matbang.pdf", None, False),
    ("bao-cao-mat-do-dan-so.xlsx", None, False),
])
def test_a_file_name_marks_with_accents_and_only_raises_a_doubt_without(
        name: str, level: str | None, doubted: bool) -> None:
    reading = understand(mail("Công văn", document(where="none")), AGENCY, NoCases())[0]
    finding = find(replace(reading, attachments=(_attachment(name, "nội dung"),)))
    assert finding.level == level
    assert any(name in d for d in finding.doubts) is doubted


def test_a_subject_that_speaks_of_a_secret_paper_is_a_doubt() -> None:
    reading = understand(mail("Gửi văn bản mật theo yêu cầu", "Kính gửi Văn thư."), AGENCY,
                         NoCases())[0]
    finding = find(reading)
    assert finding.level is None
    assert finding.doubts == ("tiêu đề thư nhắc đến «văn bản mật»",)
