"""The receipt slip after the official form (Giấy tiếp nhận hồ sơ và hẹn trả kết quả): every
field in the PDF as well as in the mail, one HTML template for the email and the PDF (so the
agency's override reaches both), hostile values escaped and wrapped, the slip's number stable.
"""

from __future__ import annotations

import dataclasses
import email
import email.policy
import html
import io
import re
import shutil
import unicodedata
from datetime import UTC, date, datetime
from email.message import EmailMessage
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from markupsafe import escape
from pypdf import PdfReader

from daemon import config
from daemon.config import AgencyConfig
from daemon.errors import ConfigError
from daemon.models import Action, Applicant, Kind, Understanding
from daemon.office import receipt
from daemon.office.receipt import ReceiptFields, ReceivedDocument
from daemon.outbound import compose
from daemon.understand.parse import parse
from daemon.understand.postal import MAX_ADDRESS, find_address
from tests.conftest import CORPUS, RULES
from tests.desk import Desk

AGENCY = AgencyConfig(name="Sở Xây dựng tỉnh Tây Ninh", code="000.00.22.H56",
                      parent="UBND tỉnh Tây Ninh", place="Tây Ninh",
                      receiving_officer="Người tiếp nhận hồ sơ",
                      receiving_officer_name="Nguyễn Thị Thu Hà")
BIDI = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def flat(text: str) -> str:
    return " ".join(unicodedata.normalize("NFC", text).split())


def html_text(markup: str) -> str:
    """What a reader sees of the HTML: the body's text."""
    body = markup.partition("<body>")[2] or markup
    return flat(html.unescape(re.sub(r"<[^>]*>", " ", body)))


def pdf_text(data: bytes) -> str:
    return flat(" ".join(page.extract_text() for page in PdfReader(io.BytesIO(data)).pages))


def parts(raw: bytes) -> tuple[str, str, bytes, EmailMessage]:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    text = html_part = ""
    pdf = b""
    for part in msg.walk():
        if part.get_content_type() == "text/plain":
            text = part.get_content()
        elif part.get_content_type() == "text/html":
            html_part = part.get_content()
        elif part.get_content_type() == "application/pdf":
            pdf = part.get_content()
    return text, html_part, pdf, msg


def receipt_of(tmp_path: Path, corpus: str, rules_dir: Path = RULES) -> tuple[Desk, bytes]:
    """The receipt mail the real pipeline writes for a corpus dossier, agency configured."""
    desk = Desk(tmp_path, rules_dir)
    desk.cfg = dataclasses.replace(desk.cfg, agency=AGENCY)
    desk.receive((CORPUS / f"{corpus}.eml").read_bytes())
    desk.process()
    raws = [e.raw for row in desk.rows() for e in desk.emails_for(row.id)  # type: ignore[attr-defined]
            if e.action == "acknowledge"]  # type: ignore[attr-defined]
    assert len(raws) == 1
    return desk, raws[0]


def test_every_field_of_the_form_is_in_the_pdf_the_html_and_the_text(tmp_path: Path) -> None:
    desk, raw = receipt_of(tmp_path, "005")
    text, markup, pdf, msg = parts(raw)
    entry = desk.entries()[0]
    code = re.search(r"\[([^\]]+)\]", msg["Subject"]).group(1)  # type: ignore[union-attr]
    year = entry.year  # type: ignore[attr-defined]
    expected = [
        "UBND TỈNH TÂY NINH", "SỞ XÂY DỰNG TỈNH TÂY NINH",
        "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM", "Độc lập - Tự do - Hạnh phúc",
        f"Số: {code.removeprefix('000.00.22.H56-')}/GTN", "Tây Ninh, ngày ",
        "GIẤY TIẾP NHẬN HỒ SƠ VÀ HẸN TRẢ KẾT QUẢ", f"Mã hồ sơ: {code}",
        "Nguyễn Văn Hùng", "Địa chỉ: số 45 đường Trần Phú, khu phố 2, phường Tân Ninh",
        "0912345678", "hungnv.tn1985@gmail.com",
        "Cấp giấy phép xây dựng nhà ở riêng lẻ",
        "Đơn đề nghị cấp giấy phép xây dựng.pdf", "CCCD Nguyễn Văn Hùng.jpg", "01 tệp",
        "Số lượng hồ sơ: 01 bộ", "15 ngày làm việc", "Thời gian nhận hồ sơ:",
        "Thời gian trả kết quả giải quyết hồ sơ: 14 giờ 00 phút, ngày ",
        "Nơi trả kết quả: Bộ phận Tiếp nhận và Trả kết quả, Sở Xây dựng tỉnh Tây Ninh",
        f"Vào Sổ theo dõi hồ sơ, Quyển số: 01/{year}, "
        f"Số thứ tự: {entry.number}",  # type: ignore[attr-defined]
        "NGƯỜI TIẾP NHẬN HỒ SƠ", "Nguyễn Thị Thu Hà",
    ]
    in_pdf, in_html, in_text = pdf_text(pdf), html_text(markup), flat(text)
    for value in expected:
        assert value in in_pdf, value
        assert value in in_html, value
        assert value in in_text, value
    page = PdfReader(io.BytesIO(pdf)).pages[0]
    assert (round(float(page.mediabox.width)), round(float(page.mediabox.height))) == (595, 842)
    assert len(PdfReader(io.BytesIO(pdf)).pages) == 1
    assert re.search(r"Thời gian nhận hồ sơ: \d\d giờ \d\d phút, ngày \d\d/\d\d/\d{4}", in_pdf)
    assert re.search(r"14 giờ 00 phút, ngày \d\d/\d\d/\d{4}", in_pdf)


def test_a_dossier_without_an_address_gets_a_line_to_fill(tmp_path: Path) -> None:
    """Corpus 002 gives a name, a phone and an address-less body: the form keeps the line."""
    _, raw = receipt_of(tmp_path, "002")
    text, markup, pdf, _ = parts(raw)
    for shown in (pdf_text(pdf), flat(text), html_text(markup)):
        assert f"Địa chỉ: {receipt.BLANK}" in shown
        assert "Võ Thị Hồng Nhung" in shown


OVERRIDE = """<html><head><style>p { color: #123 }</style></head><body>
<p align="center"><b>MẪU RIÊNG CỦA SỞ: {{ agency | upper }}</b></p>
<p>Số: {{ number }} — {{ applicant or blank }}</p>
</body></html>
"""


def rules_with(tmp_path: Path, template: str) -> Path:
    rules_dir = tmp_path / "rules"
    shutil.copytree(RULES, rules_dir)
    (rules_dir / "templates").mkdir(exist_ok=True)
    (rules_dir / "templates" / "receipt.html.j2").write_text(template, encoding="utf-8")
    return rules_dir


def test_the_agency_template_reaches_the_email_and_the_pdf(tmp_path: Path) -> None:
    rules_dir = rules_with(tmp_path, OVERRIDE)
    _, raw = receipt_of(tmp_path / "desk", "005", rules_dir)
    text, markup, pdf, _ = parts(raw)
    shown = pdf_text(pdf)
    assert "MẪU RIÊNG CỦA SỞ: SỞ XÂY DỰNG TỈNH TÂY NINH" in markup
    assert "MẪU RIÊNG CỦA SỞ: SỞ XÂY DỰNG TỈNH TÂY NINH" in shown
    assert "Nguyễn Văn Hùng" in shown
    assert "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM" not in shown  # the shipped layout is gone
    assert "color" not in shown  # the <head> is the mail reader's, not printed
    assert "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM" in text  # the text part: shipped template


def test_a_template_the_pdf_cannot_lay_out_still_gives_a_pdf(tmp_path: Path) -> None:
    """Mixed markup in a table cell is beyond fpdf2: the mail keeps the agency's HTML, the
    PDF falls back to the shipped form instead of the receipt failing."""
    rules_dir = rules_with(tmp_path, "<table><tr><td><b>MẪU</b> RIÊNG</td></tr></table>")
    slip = receipt.make(sample(), rules_dir)
    assert "<b>MẪU</b> RIÊNG" in slip.html
    assert "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM" in pdf_text(slip.pdf)


def sample(**changes: object) -> ReceiptFields:
    fields = ReceiptFields(
        agency="Sở Xây dựng tỉnh Tây Ninh", result_place="Bộ phận Tiếp nhận và Trả kết quả",
        code="000.00.22.H56-261126-0007", applicant="Trần Thị Lan", email="lan@gmail.com",
        phone="0912345678", procedure="Cấp chứng chỉ hành nghề hoạt động xây dựng", days=20,
        documents=(ReceivedDocument("Đơn đề nghị.pdf"),), received="09 giờ 15 phút, ngày "
        "26/11/2026", appointment="14 giờ 00 phút, ngày 24/12/2026", parent="UBND tỉnh Tây Ninh",
        number=receipt.slip_number("000.00.22.H56-261126-0007", "000.00.22.H56"),
        dated="Tây Ninh, ngày 26 tháng 11 năm 2026", address="12 Lê Lợi, phường 3",
        book_volume="01/2026", book_number=412)
    return dataclasses.replace(fields, **changes)  # type: ignore[arg-type]


HOSTILE = st.one_of(
    st.text(min_size=1, max_size=400),
    st.sampled_from([
        "<script>alert(1)</script>", "</td></tr></table><h1>GIẢ MẠO</h1>",
        "\u202eNguyễn Văn An\u202c", "Lê\u2066Thị\u2069 Hoa\u200f", "&lt;b&gt;&amp;",
        "A" * 5000, "Nguyễn " * 400, "x\ny\r\nz\x00w", "{{ code }}{% raw %}",
        "Ngu\u0303yên", "\ud800"]),
    st.text(alphabet="ẠẢẤẦẨẪẬắằẳẵặđĐ <>&\"'\u202e\u200b/", min_size=1, max_size=600))


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=HOSTILE, address=HOSTILE, document=HOSTILE)
def test_hostile_names_and_addresses_are_escaped_and_wrapped(name: str, address: str,
                                                             document: str) -> None:
    check_hostile(name, address, document)


def test_markup_overrides_and_floods_stay_text() -> None:
    check_hostile("<script>alert(1)</script>\u202eNguyễn Văn An", "A" * 5000,
                  "</td></tr></table><h1>GIẢ MẠO</h1>")
    check_hostile("Nguyễn " * 400, "x\ny\r\nz\x00w {{ code }}", "Lê\u2066Thị\u2069 Hoa\u200f")


def check_hostile(name: str, address: str, document: str) -> None:
    fields = sample(applicant=receipt.clean(name), address=receipt.clean(address),
                    documents=(ReceivedDocument(receipt.clean(document) or "x"),) * 3)
    slip = receipt.make(fields)
    for value in (fields.applicant, fields.address, fields.documents[0].name):
        assert value is None or len(value) <= receipt.FIELD_CAP
        assert value is None or str(escape(value)) in slip.html
        assert value is None or not BIDI.search(value)
    assert "<script" not in slip.html and "<h1>GIẢ MẠO" not in slip.html
    reader = PdfReader(io.BytesIO(slip.pdf))
    assert 1 <= len(reader.pages) <= 2
    shown = pdf_text(slip.pdf)
    assert "NGƯỜI TIẾP NHẬN HỒ SƠ" in shown and "Quyển số: 01/2026, Số thứ tự: 412" in shown
    assert not BIDI.search(slip.text + slip.html)


def test_long_unbroken_names_wrap_inside_the_page() -> None:
    """A 300-letter word is broken across lines, on the page, not cut off at its edge."""
    long = "Đ" * 290
    slip = receipt.make(sample(applicant=long, documents=(ReceivedDocument(long),)))
    shown = pdf_text(slip.pdf).replace(" ", "")
    assert shown.count("Đ" * 290) == 2


def test_the_slip_number_is_stable_and_unique() -> None:
    first, again = receipt.make(sample()), receipt.make(sample())
    assert (first.text, first.html) == (again.text, again.html)
    assert pdf_text(first.pdf) == pdf_text(again.pdf)
    assert "Số: 261126-0007/GTN" in pdf_text(first.pdf)


@given(st.lists(st.tuples(st.dates(), st.integers(1, 9999)), min_size=2, max_size=30,
                unique=True))
def test_distinct_dossier_codes_give_distinct_slip_numbers(keys: list[tuple[date, int]]) -> None:
    codes = [f"000.00.22.H56-{day:%y%m%d}-{seq:04d}" for day, seq in keys]
    numbers = [receipt.slip_number(code, "000.00.22.H56") for code in codes]
    assert len(set(numbers)) == len(set(codes))
    assert numbers == [receipt.slip_number(code, "000.00.22.H56") for code in codes]


def test_a_resent_receipt_is_the_same_slip(tmp_path: Path) -> None:
    """The receipt composed again for the same registration (a resend) has the same number,
    date and text: nothing in it depends on when it is composed."""
    cfg = dataclasses.replace(Desk(tmp_path).cfg, agency=AGENCY)
    mail = parse((CORPUS / "017.eml").read_bytes(), cfg.limits)
    und = Understanding(Kind.DOSSIER, "", None, None,
                        Applicant("Trần Văn Bình", "binh@gmail.com", None))
    ctx = compose.Context(sha256="0" * 64, received_at=datetime(2026, 11, 26, 2, tzinfo=UTC),
                          case_code="000.00.22.H56-261126-0003", number=7, year=2026,
                          appointment=date(2026, 12, 24))
    sent = [parts(compose.acknowledge(cfg, ctx, Action("acknowledge", ("binh@gmail.com",)), mail,
                                      und).as_bytes()) for _ in range(2)]
    assert sent[0][:2] == sent[1][:2]
    assert pdf_text(sent[0][2]) == pdf_text(sent[1][2])
    shown = pdf_text(sent[0][2])
    assert "Số: 261126-0003/GTN" in shown and "Tây Ninh, ngày 26 tháng 11 năm 2026" in shown
    assert "Quyển số: 01/2026, Số thứ tự: 7" in shown
    assert "14 giờ 00 phút, ngày 24/12/2026" in shown


def test_find_address_reads_labels_and_phrases() -> None:
    assert find_address(["Địa chỉ: 12 Lê Lợi, P. 3, TP. Tây Ninh. Điện thoại: 0912"]) \
        == "12 Lê Lợi, P. 3, TP. Tây Ninh"
    assert find_address(["Địa chỉ email: a@b.vn\nĐịa chỉ công trình: thửa 5, tờ 12\n"
                         "Trụ sở chính: 45 Cách Mạng Tháng Tám, phường 3; MST 0312"]) \
        == "45 Cách Mạng Tháng Tám, phường 3"
    assert find_address(["Tôi thường trú tại ấp Bình Trung, xã Hòa Thành. Xin gửi hồ sơ"]) \
        == "ấp Bình Trung, xã Hòa Thành"
    assert find_address(["  2. Nơi cư trú :  khu phố 4, phường IV - ĐT 0909"]) \
        == "khu phố 4, phường IV"
    assert find_address(["không có", "ĐỊA CHỈ: 7 Trần Hưng Đạo"]) == "7 Trần Hưng Đạo"
    assert find_address(["Địa chỉ: ...", "Kính gửi Sở"]) is None


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet="Địa chỉ:trú tạiP. \n,;.-–\u202e0123", max_size=3000))
def test_find_address_is_bounded_on_any_text(text: str) -> None:
    found = find_address([text * 20])
    assert found is None or (len(found) <= MAX_ADDRESS and not BIDI.search(found))


def test_agency_keys_of_the_slip_are_read_and_checked(tmp_path: Path) -> None:
    agency = {"parent": "Ủy  ban nhân dân tỉnh Tây Ninh", "place": "Tây Ninh",
              "result_time": "08:30", "receiving_officer": "Công chức tiếp nhận",
              "receiving_officer_name": ""}
    cfg = config.parse({"agency": agency}, file="t", text="", base=tmp_path)
    assert (cfg.agency.parent, cfg.agency.place, cfg.agency.result_time) == \
        ("Ủy ban nhân dân tỉnh Tây Ninh", "Tây Ninh", "08:30")
    assert (cfg.agency.receiving_officer, cfg.agency.receiving_officer_name) == \
        ("Công chức tiếp nhận", "")
    defaults = config.parse({}, file="t", text="", base=tmp_path).agency
    assert (defaults.parent, defaults.place, defaults.result_time) == ("", "", "14:00")
    with pytest.raises(ConfigError) as caught:
        config.parse({"agency": {"result_time": "2 giờ chiều", "parent": "A\nB",
                                 "receiving_officer": " "}}, file="t", text="", base=tmp_path)
    problems = str(caught.value)
    assert "agency.result_time: must be HH:MM" in problems
    assert "agency.parent: must be one line" in problems
    assert "agency.receiving_officer: must not be empty" in problems


def test_the_example_configuration_documents_the_keys() -> None:
    example = (Path(__file__).parent.parent / "config.example.toml").read_text(encoding="utf-8")
    for key in ("parent", "place", "result_time", "receiving_officer",
                "receiving_officer_name"):
        assert re.search(rf"^{key} = ", example, re.M), key
