"""The header of any Decree-30 document is read the same whatever shape text extraction gave
it: the two header columns one after the other (either first), side by side on the same lines
(a gap of spaces or a tab between them, or none at all), or their lines interleaved; numbers,
symbols and dates in every spacing; place names with hyphens and prefixes; summaries wrapped
anywhere; stamps in their legal positions, and look-alike words in the prose that are not
stamps. Built from parts here (hypothesis), never from the generated set's strings."""

from __future__ import annotations

import datetime as dt
import io
from dataclasses import dataclass
from typing import Literal

import pypdf
import pytest
from fpdf import FPDF
from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.understand.extract import _place_start, best, from_text
from tests.generated.make import FONT
from tests.test_bounded import BOUND, timed

NBSP = "\u00a0"
STATE_MOTTO = ["CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM", "Độc lập - Tự do - Hạnh phúc"]
PARTY_MOTTO = ["ĐẢNG CỘNG SẢN VIỆT NAM"]
BODIES = [["UBND TỈNH QUẢNG NINH", "SỞ Y TẾ"], ["BỘ TÀI CHÍNH"],
          ["ỦY BAN NHÂN DÂN", "XÃ ĐÔNG HƯNG"],
          ["CÔNG AN TỈNH ĐẮK LẮK", "PHÒNG CẢNH SÁT GIAO THÔNG"],
          ["HỘI ĐỒNG NHÂN DÂN", "THÀNH PHỐ CẦN THƠ"]]
PARTY_BODIES = [["ĐẢNG BỘ TỈNH NINH BÌNH", "BAN TUYÊN GIÁO VÀ DÂN VẬN TỈNH ỦY"],
                ["ĐẢNG BỘ THÀNH PHỐ HẢI PHÒNG", "VĂN PHÒNG THÀNH ỦY"]]
# Place names of every shape a date line has: hyphens spaced or not, unit prefixes, an
# apostrophe, one to four words.
PLACES = ["Hà Nội", "Huế", "TP. Hồ Chí Minh", "TP Hồ Chí Minh", "Thành phố Hồ Chí Minh",
          "Bà Rịa - Vũng Tàu", "Phan Rang - Tháp Chàm", "Phan Rang-Tháp Chàm", "Thừa Thiên Huế",
          "Đắk Lắk", "Buôn Ma Thuột", "Ea H'leo", "Hạ Long", "Tp. Cần Thơ", "Thị xã Sơn Tây",
          "Điện Biên Phủ"]
SYLLABLES = ["Quảng", "Ninh", "Bình", "Định", "Tây", "Giang", "Lạng", "Sơn", "Đồng", "Tháp",
             "Ý", "Yên", "Kon", "Tum", "Phước", "Long", "Ân", "Ơn"]
WORDS = ["triển", "khai", "thực", "hiện", "kế", "hoạch", "chuyển", "đổi", "số", "năm", "2026",
         "theo", "quy", "định", "của", "tỉnh", "về", "công", "tác", "phòng,", "chống", "thiên",
         "tai", "giai", "đoạn", "2025", "-", "kinh", "phí", "hỗ", "trợ", "Chương", "trình",
         "mục", "tiêu", "quốc", "gia", "ngày", "khẩn", "trương", "mật", "để", "qua", "Phan",
         "Rang", "Tháp", "Chàm"]
TYPES = [("QUYẾT ĐỊNH", "Quyết định", "QĐ"), ("KẾ HOẠCH", "Kế hoạch", "KH"),
         ("THÔNG BÁO", "Thông báo", "TB"), ("BÁO CÁO", "Báo cáo", "BC"),
         ("TỜ TRÌNH", "Tờ trình", "TTr"), ("NGHỊ QUYẾT", "Nghị quyết", "NQ")]
URGENCY = [("KHẨN", "Khẩn"), ("THƯỢNG KHẨN", "Thượng khẩn"), ("HỎA TỐC", "Hỏa tốc"),
           ("HOẢ TỐC", "Hỏa tốc"), ("THUONG KHAN", "Thượng khẩn")]
SECRECY = [("MẬT", "Mật"), ("TỐI MẬT", "Tối mật"), ("TUYỆT MẬT", "Tuyệt mật")]
# Prose that names the same words as the stamps and is no stamp.
LOOKALIKES = ["Đề nghị các đơn vị khẩn trương báo cáo trước ngày 15.",
              "Tài liệu mật gửi theo đường bưu chính.", "Việc này cần làm hỏa tốc.",
              "KHẨN TRƯƠNG TRIỂN KHAI", "Bảo mật thông tin cá nhân."]


@dataclass
class Header:
    left: list[str]
    right: list[str]
    rest: list[str]
    want: dict[str, object]


def _gap(draw: st.DrawFn) -> str:
    return draw(st.sampled_from([" ", " ", "  ", NBSP, " " + NBSP, "\t"]))


@st.composite
def place_names(draw: st.DrawFn) -> str:
    if draw(st.booleans()):
        return draw(st.sampled_from(PLACES))
    words = draw(st.lists(st.sampled_from(SYLLABLES), min_size=1, max_size=4))
    cut = draw(st.integers(0, len(words)))
    if 0 < cut < len(words) and draw(st.booleans()):
        return " ".join(words[:cut]) + " - " + " ".join(words[cut:])
    return draw(st.sampled_from(["", "TP. ", "Thành phố "])) + " ".join(words)


@st.composite
def summaries(draw: st.DrawFn) -> tuple[str, list[str]]:
    """A summary and its lines, wrapped anywhere (also inside "2025 - 2026")."""
    words = draw(st.lists(st.sampled_from(WORDS), min_size=3, max_size=18))
    if words[0] in ("-", "2025", "2026", "ngày"):
        words[0] = "về"
    words = [w for i, w in enumerate(words) if not (w == "-" == words[i - 1])]  # one dash
    text = " ".join(words)
    cuts = sorted(draw(st.sets(st.integers(1, len(words) - 1), max_size=3)))
    lines = [" ".join(words[a:b]) for a, b in zip([0, *cuts], [*cuts, len(words)], strict=True)]
    return text, lines


@st.composite
def headers(draw: st.DrawFn) -> Header:
    party = draw(st.booleans()) and draw(st.booleans())
    body = draw(st.sampled_from(PARTY_BODIES if party else BODIES))
    typed = draw(st.sampled_from([None, *TYPES]))
    abbr = typed[2] if typed else "UBND"
    number = draw(st.sampled_from(["", "5", "05", "12", "1234", "0007"]))
    year = draw(st.integers(2015, 2030))
    symbol = (f"{abbr}/TU" if party else
              draw(st.sampled_from([f"{abbr}-UBND", f"{abbr}-SYT", f"{year}/{abbr}-UBND"])))
    if not typed and not party:
        symbol = draw(st.sampled_from(["UBND-VP", "SYT-NVY", "BTC-KHTC", "UBND"]))
    head = "Số" if party else draw(st.sampled_from(["Số:", "Số :", "Số", "SỐ:", "Số."]))
    sep = "-" if party else "/"
    number_part = number or draw(st.sampled_from(["", "    ", NBSP * 3]))
    numline = (f"{head}{_gap(draw) if number else ''}{number_part}"
               f"{draw(st.sampled_from(['', ' ', NBSP]))}{sep}"
               f"{draw(st.sampled_from(['', ' ']))}{symbol}")
    place = draw(place_names())
    day = draw(st.dates(dt.date(2015, 1, 1), dt.date(2030, 12, 31)))
    blank_date = draw(st.integers(0, 9)) == 0
    if blank_date:
        dline = f"{place}, ngày{' ' * 6}tháng{' ' * 6}năm {day.year}"
    else:
        d = str(day.day).zfill(draw(st.sampled_from([1, 2])))
        m = str(day.month).zfill(draw(st.sampled_from([1, 2])))
        g = draw(st.sampled_from([" ", "  ", NBSP]))
        dline = f"{place}, ngày{g}{d}{g}tháng{g}{m}{g}năm{g}{day.year}"
    summary, lines = draw(summaries())
    urgency = draw(st.sampled_from([None, *URGENCY]))
    secrecy = draw(st.sampled_from([None, None, *SECRECY]))
    stamps = [s[0] for s in (urgency, secrecy) if s]
    under_number = draw(st.booleans())  # stamps under the number, or above the type
    left = [*body, "", numline, *(stamps if under_number else [])]
    right = [*(PARTY_MOTTO if party else STATE_MOTTO), "", dline]
    rest = ["", *([] if under_number else stamps), ""]
    if typed:
        rest += [typed[0], *lines, ""]
        rest += ["Căn cứ Quyết định số 15/QĐ-UBND ngày 01 tháng 02 năm 2026 của UBND tỉnh;"]
    else:
        left += [f"V/v {lines[0]}", *lines[1:]]
        rest += ["Kính gửi: Sở Xây dựng."]
    rest += ["", *draw(st.lists(st.sampled_from(LOOKALIKES), max_size=3)),
             "Hà Nội, ngày 3 tháng 4 năm 2020 Bộ Tài chính có Công văn số 9/BTC-KHTC.",
             "", "Nơi nhận:", "- Như trên;", "- Lưu: VT."]
    want: dict[str, object] = {"number": number or None, "symbol": symbol, "place": place or None,
            "date": None if blank_date else day, "summary": summary,
            "type": typed[1] if typed else "Công văn",
            "urgency": urgency[1] if urgency else None,
            "confidentiality": secrecy[1] if secrecy else None}
    return Header(left, right, rest, want)


def _side(left: list[str], right: list[str], gap: str, width: int) -> list[str]:
    rows = max(len(left), len(right))
    left, right = left + [""] * (rows - len(left)), right + [""] * (rows - len(right))
    return [(a.ljust(width) + gap + b if b else a) for a, b in zip(left, right, strict=True)]


def layout(header: Header, shape: str) -> str:
    left, right = header.left, header.right
    if shape == "stacked":
        top = [*left, "", *right]
    elif shape == "right-first":
        top = [*right, "", *left]
    elif shape == "pdf":  # a PDF reader: the columns one after the other, no blank lines
        top = [line for line in [*left, *right] if line]
    elif shape == "side":
        top = _side(left, right, "  ", 44)
    elif shape == "side-tab":
        top = _side(left, right, "\t", 0)
    elif shape == "centred":  # pdftotext -layout: both columns centred in their halves
        top = _side([line.center(40) for line in left], right, "   ", 40)
    elif shape == "cells":  # pdftotext: each cell of a row apart, the right one set off by blanks
        rows = max(len(left), len(right))
        top = []
        for a, b in zip(left + [""] * (rows - len(left)), right + [""] * (rows - len(right)),
                        strict=True):
            top += [a] if a else []
            top += ["", b, ""] if b else []
    else:  # interleaved: one line of each column in turn
        rows = max(len(left), len(right))
        pairs = zip(left + [""] * (rows - len(left)), right + [""] * (rows - len(right)),
                    strict=True)
        top = [x for a, b in pairs for x in (a, b) if x]
    return "\n".join([*top, *header.rest])


SHAPES = ["stacked", "right-first", "pdf", "side", "side-tab", "centred", "interleaved", "cells"]


def _capital_after_a_cell(header: Header) -> bool:
    """Whether a summary line opening with a capital follows a right-column cell set apart."""
    at = header.left.index(next(x for x in header.left if x.startswith("V/v")))
    return any(line[:1].isupper() for i, line in enumerate(header.left[at + 1 :], at + 1)
               if i < len(header.right) + 1)


def _fields(text: str) -> dict[str, object]:
    doc = from_text(text, "body")
    assert doc is not None, text
    return {"number": doc.number, "symbol": doc.symbol, "place": doc.place, "date": doc.date,
            "summary": doc.summary, "type": doc.type, "urgency": doc.urgency,
            "confidentiality": doc.confidentiality}


@settings(max_examples=300, deadline=None)
@given(headers(), st.sampled_from(SHAPES))
def test_every_field_is_read_in_every_column_arrangement(header: Header, shape: str) -> None:
    text = layout(header, shape)
    got = _fields(text)

    if shape == "cells" and got["type"] == "Công văn" and _capital_after_a_cell(header):
        # Set apart by blank lines from the date line, a summary line opening with a capital
        # cannot be told from a paragraph of the body (the extractor lost what told them
        # apart): the summary may stop before it.
        assert str(header.want["summary"]).startswith(str(got.pop("summary")))
        assert got == {k: v for k, v in header.want.items() if k != "summary"}, text
    else:
        assert got == header.want, text


@settings(max_examples=100, deadline=None)
@given(headers(), st.sampled_from(SHAPES))
def test_a_mail_text_before_the_header_changes_nothing(header: Header, shape: str) -> None:
    """The header pasted into a mail body below a greeting (and above a signature)."""
    text = ("Kính gửi Quý cơ quan,\n\nVăn phòng xin gửi văn bản dưới đây.\nTrân trọng.\n\n"
            + layout(header, shape))

    assert _fields(text) == header.want, text


@settings(max_examples=100, deadline=None)
@given(headers())
def test_the_issuer_block_is_read_in_every_arrangement(header: Header) -> None:
    """The same issuer, whatever the arrangement (its naming is issuer.py's)."""
    issuers = {from_text(layout(header, shape), "body").issuer  # type: ignore[union-attr]
               for shape in SHAPES}

    assert len(issuers) == 1 and None not in issuers


@settings(max_examples=200, deadline=None)
@given(headers())
def test_columns_glued_without_a_space_still_part_the_summary_from_the_place(
        header: Header) -> None:
    """A summary line reaching the right column with no space between: "… 2030Hà Nội, …"."""
    if not header.want["place"] or header.want["type"] != "Công văn":
        return
    left = [*header.left[:-1], header.left[-1].ljust(44)[:44].rstrip() or "x"]
    glued = _side(left, header.right, "", 44)
    text = "\n".join([*glued, *header.rest])
    got = _fields(text)

    assert got["place"] == header.want["place"] and got["date"] == header.want["date"]


def test_prose_look_alikes_are_no_stamps() -> None:
    """Stamps count only standing alone in the header, never words of a sentence."""
    text = ("BỘ Y TẾ\n\nSố: 12/BYT-KH\nV/v khẩn trương rà soát tài liệu mật\n\n"
            + "\n".join(STATE_MOTTO) + "\n\nHà Nội, ngày 3 tháng 4 năm 2026\n\n"
            "Kính gửi: Sở Y tế.\n\n" + "\n".join(LOOKALIKES) + "\nKHẨN\nMẬT\n")

    doc = from_text(text, "body")

    assert doc is not None and doc.urgency is None and doc.confidentiality is None
    assert doc.summary == "khẩn trương rà soát tài liệu mật"


def test_a_party_document_reads_its_own_number_form() -> None:
    text = ("ĐẢNG BỘ TỈNH NINH BÌNH        ĐẢNG CỘNG SẢN VIỆT NAM\nTỈNH ỦY\n"
            "Số 12-QĐi/TU                  Ninh Bình, ngày 5 tháng 3 năm 2026\n\nQUY ĐỊNH\n"
            "về công tác văn thư\n\nCăn cứ Điều lệ Đảng;")

    doc = from_text(text, "x.pdf")

    assert doc is not None
    assert (doc.number, doc.symbol, doc.type) == ("12", "QĐi/TU", "Quy định")
    assert (doc.place, str(doc.date)) == ("Ninh Bình", "2026-03-05")
    assert doc.summary == "về công tác văn thư"


def test_a_summary_line_that_opens_like_the_body_is_still_the_summary() -> None:
    """The line right below the type line is its summary, whatever word opens it."""
    text = ("UBND TỈNH LAI CHÂU\nSỞ NỘI VỤ\nSố: 7/KH-SNV\nLai Châu, ngày 9 tháng 9 năm 2026\n"
            "KẾ HOẠCH\nThực hiện Đề án phát triển nguồn nhân lực\nnăm 2026\n\nThực hiện …")

    doc = from_text(text, "body")

    assert doc is not None and doc.summary == "Thực hiện Đề án phát triển nguồn nhân lực năm 2026"


def test_the_whole_header_wins_over_a_lone_number_line() -> None:
    lone = from_text("Bảng kê\nSố: 3/BK-X\nmột hai ba", "bang-ke.pdf")
    whole = from_text("UBND TỈNH AN GIANG\nSố: 9/UBND-VP\nAn Giang, ngày 2 tháng 1 năm 2026\n"
                      "V/v họp\n", "body")

    chosen = best([lone, whole])

    assert chosen is whole


# --- hostile sizes: bounded work ----------------------------------------------------------

HOSTILE = [
    "Tây " * 250_000 + ", ngày 1 tháng 2 năm 2026",
    "A" * 1_000_000 + ", ngày 1 tháng 2 năm 2026",
    "  Số" * 250_000,
    "Số:" + NBSP * 1_000_000 + "/",
    "ngày tháng năm " * 70_000,
    "Hà - " * 200_000 + "Nội, ngày 1 tháng 2 năm 2026",
    "aB" * 500_000,
    "\t" * 1_000_000 + "x",
]


def test_hostile_lines_are_read_in_bounded_time() -> None:
    for line in HOSTILE:
        text = f"SỞ Y TẾ\nSố: 1/SYT-VP\n{line}\nV/v x\n"
        document, seconds = timed(lambda text=text: from_text(text, "body"))  # type: ignore[misc]

        assert seconds < BOUND
        assert document is not None and document.symbol == "SYT-VP"


def test_many_header_like_lines_are_read_in_bounded_time() -> None:
    text = "\n".join(["QUYẾT ĐỊNH", "V/v x", "KHẨN", "Hà Nội, ngày 1 tháng 2 năm 2026"]
                     * 100_000)

    document, seconds = timed(lambda: from_text("Số: 1/QĐ-X\n" + text, "body"))

    assert seconds < BOUND and document is not None


# --- a real PDF, as pypdf reads it ---------------------------------------------------------

def _pdf_rows(rows: list[tuple[str, str]], rest: list[str]) -> bytes:
    """A header drawn as a table of two columns, row by row, as word processors export it."""
    doc = FPDF(format="A4")
    doc.add_font("DejaVu", "", str(FONT))
    doc.set_font("DejaVu", size=11)
    doc.add_page()
    for left, right in rows:
        y = doc.get_y()
        doc.set_xy(10, y)
        doc.cell(80, 6, left, align="C")
        doc.set_xy(95, y)
        doc.cell(105, 6, right, align="C")
        doc.set_y(y + 6)
    for line in rest:
        doc.multi_cell(0, 6, line or " ", new_x="LMARGIN", new_y="NEXT")
    return bytes(doc.output())


@pytest.mark.parametrize("place", ["Bà Rịa - Vũng Tàu", "TP. Hồ Chí Minh",
                                   "Thành phố Hồ Chí Minh", "Phan Rang - Tháp Chàm"])
@pytest.mark.parametrize("mode", ["plain", "layout"])
def test_a_pdf_table_header_reads_the_same_in_both_pypdf_modes(
        place: str, mode: Literal["plain", "layout"]) -> None:
    rows = [("ỦY BAN NHÂN DÂN", "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM"),
            ("TỈNH NINH THUẬN", "Độc lập - Tự do - Hạnh phúc"), ("", ""),
            ("Số: 05 /UBND-VP", f"{place}, ngày 05 tháng 3 năm 2024"),
            ("V/v triển khai kế hoạch chuyển đổi số", ""), ("năm 2024 trên địa bàn tỉnh", ""),
            ("HỎA TỐC", "")]
    pdf = _pdf_rows(rows, ["", "Kính gửi: Các sở, ban, ngành tỉnh.", "",
                           "Đề nghị các đơn vị khẩn trương thực hiện."])
    text = pypdf.PdfReader(io.BytesIO(pdf)).pages[0].extract_text(extraction_mode=mode)

    doc = from_text(text, "cong-van.pdf")

    assert doc is not None
    assert (doc.number, doc.symbol, doc.type, doc.place, str(doc.date)) == (
        "05", "UBND-VP", "Công văn", place, "2024-03-05")
    assert doc.summary == "triển khai kế hoạch chuyển đổi số năm 2024 trên địa bàn tỉnh"
    assert (doc.urgency, doc.confidentiality) == ("Hỏa tốc", None)


def test_the_names_of_the_motto_inside_a_summary_stay_in_it() -> None:
    text = ("ĐẢNG BỘ TỈNH AN GIANG\nBAN TUYÊN GIÁO VÀ DÂN VẬN TỈNH ỦY\nSố 41-CV/BTGDVTU\n"
            "V/v kỷ niệm ngày thành lập Đảng Cộng sản Việt Nam\n\nĐẢNG CỘNG SẢN VIỆT NAM\n\n"
            "An Giang, ngày 20 tháng 1 năm 2026\n\nKính gửi: Các chi bộ.")

    doc = from_text(text, "body")

    assert doc is not None and doc.summary == "kỷ niệm ngày thành lập Đảng Cộng sản Việt Nam"
    assert (doc.number, doc.symbol, doc.type, doc.place) == ("41", "CV/BTGDVTU", "Công văn",
                                                             "An Giang")


@pytest.mark.parametrize("head", ["Tây " * 250_000, "A" * 1_000_000, "aB" * 500_000,
                                  " -" * 500_000, "Hà  " * 250_000, "phố " * 250_000])
def test_the_place_walk_is_bounded_on_any_head(head: str) -> None:
    """The walk back from the comma, alone, without the line cap before it."""
    start, seconds = timed(lambda: _place_start(head))

    assert seconds < BOUND and 0 <= start <= len(head)
