"""Understanding the corpus: kind, document fields and applicants against the labels."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from daemon import config
from daemon.models import Kind
from daemon.understand import understand
from daemon.understand.extract import from_text
from tests.conftest import AUTHSERV_ID, CORPUS, corpus_context, corpus_labels


class CorpusCases:
    """The cases of corpus/context.json, as the database would know them."""

    def __init__(self) -> None:
        cases = corpus_context()["cases"]
        self.codes = {c["case_ref"] for c in cases}
        self.threads = {m: c["case_ref"] for c in cases for m in c["message_ids"]}

    def case_exists(self, code: str) -> bool:
        return code in self.codes

    def case_of_message_id(self, message_id: str) -> str | None:
        return self.threads.get(message_id)

    def is_our_message(self, message_id: str) -> bool:
        return False

    def case_secrecy(self, code: str) -> str | None:
        return None


CFG = config.parse({"security": {"authserv_id": AUTHSERV_ID}}, file="test", text="",
                   base=Path("."))


def _understood(name: str) -> Any:
    return understand((CORPUS / name).read_bytes(), CFG, CorpusCases())[1]


@pytest.mark.parametrize("label", corpus_labels(), ids=lambda label: label["file"])
def test_corpus_mail_understood_as_labelled(label: dict[str, Any]) -> None:
    """Kind, case, document fields, applicant and quarantine match the label."""
    und = _understood(label["file"])

    assert und.kind.value in {label["kind"], *(label.get("kind_also_ok") or [])}, und.why
    assert und.case_ref == label["case_ref"]
    assert und.quarantine == ("quarantine" in label["must"]), und.quarantine_reasons
    if label["document"] and und.kind is Kind.DOCUMENT:
        got = und.document.as_json()
        for key, want in label["document"].items():
            if key == "number" and want and got[key]:
                assert got[key].lstrip("0") == want.lstrip("0")
            else:
                assert got[key] == want, key
    if label["applicant"]:
        assert und.applicant is not None and und.applicant.as_json() == label["applicant"]


@pytest.mark.parametrize("label", corpus_labels(), ids=lambda label: label["file"])
def test_corpus_sender_verdict(label: dict[str, Any]) -> None:
    """Our server's verdict on each From domain: the three forgeries fail, the bounce made by
    our own server has none, every other sender is authenticated."""
    want = {"015.eml": False, "019.eml": False, "023.eml": False, "033.eml": None}

    und = _understood(label["file"])

    assert und.authenticated is want.get(label["file"], True)


def test_auto_reply_reason_names_the_header() -> None:
    """The kind comes with the reason, e.g. the RFC 3834 header that made it automatic."""
    assert _understood("009.eml").why == "Auto-Submitted: auto-replied"


def test_citations_in_prose_are_not_the_document() -> None:
    """A document cited in the body ('Căn cứ Quyết định số …') never becomes the header."""
    text = ("Kính gửi Sở Xây dựng\nCăn cứ Quyết định số 15/QĐ-UBND ngày 01/02/2026;\n"
            "Đề nghị Sở khẩn trương thực hiện.")

    assert from_text(text, "body") is None


def test_stamps_need_a_line_of_their_own() -> None:
    """'khẩn trương' in prose is no urgency; a stamp line without diacritics still counts."""
    text = ("UBND TỈNH TÂY NINH\nSỞ TÀI CHÍNH\nSố: 05/STC-VP\nTHUONG KHAN\n"
            "Tây Ninh, ngày 02 tháng 3 năm 2026\nV/v đề nghị khẩn trương báo cáo\n"
            "Kính gửi: Sở Xây dựng")

    doc = from_text(text, "body")

    assert doc is not None
    assert doc.urgency == "Thượng khẩn"
    assert doc.summary == "đề nghị khẩn trương báo cáo"
    assert doc.type == "Công văn"
    assert doc.issuer == "Sở Tài chính tỉnh Tây Ninh"


def test_blank_number_and_date_before_signing() -> None:
    """A draft ('Số:   /KH-SXD', 'ngày  tháng  năm') has a null number and date."""
    text = ("SỞ XÂY DỰNG\nSố:     /KH-SXD\nThái Bình, ngày    tháng    năm 2026\nKẾ HOẠCH\n"
            "Phòng chống lụt bão\nCăn cứ ...")

    doc = from_text(text, "body")

    assert doc is not None and doc.number is None and doc.date is None
    assert doc.symbol == "KH-SXD" and doc.type == "Kế hoạch"
    assert doc.summary == "Phòng chống lụt bão"


def test_type_abbreviations_are_case_sensitive() -> None:
    """QyĐ is a Quy định, QĐ a Quyết định; a symbol without type code is a công văn."""
    assert from_text("Số: 3/QyĐ-UBND", "body").type == "Quy định"  # type: ignore[union-attr]
    assert from_text("Số: 3/QĐ-UBND", "body").type == "Quyết định"  # type: ignore[union-attr]
    assert from_text("Số: 3/UBND-VP", "body").type == "Công văn"  # type: ignore[union-attr]


def test_right_column_first_and_legal_document_year() -> None:
    """Place and date are found even when the PDF puts the right column first; a legal
    normative document's symbol keeps its year."""
    text = ("CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM\nĐộc lập - Tự do - Hạnh phúc\n"
            "TP. Hồ Chí Minh, ngày 05 tháng 01 năm 2026\nỦY BAN NHÂN DÂN\n"
            "THÀNH PHỐ HỒ CHÍ MINH\nSố: 45/2026/QĐ-UBND\nQUYẾT ĐỊNH\n"
            "Ban hành Quy định về quản lý\ntrật tự xây dựng\nCăn cứ Luật …")

    doc = from_text(text, "x.pdf")

    assert doc is not None
    assert (doc.number, doc.symbol, doc.type) == ("45", "2026/QĐ-UBND", "Quyết định")
    assert doc.place == "TP. Hồ Chí Minh" and str(doc.date) == "2026-01-05"
    assert doc.issuer == "Ủy ban nhân dân Thành phố Hồ Chí Minh"  # written so by the decree
    assert doc.summary == "Ban hành Quy định về quản lý trật tự xây dựng"


def test_abbreviated_bodies_are_spelled_out() -> None:
    """HĐND/UBND in the header block become the bodies' full names."""
    text = ("HĐND TỈNH ĐỒNG NAI\nTHƯỜNG TRỰC HĐND\n"
            "Số: 12/TB-HĐND    Đồng Nai, ngày 3 tháng 4 năm 2026\nTHÔNG BÁO\nKết luận phiên họp\n")

    doc = from_text(text, "body")

    assert doc is not None and doc.issuer == "Thường trực Hội đồng nhân dân tỉnh Đồng Nai"
    assert doc.place == "Đồng Nai"


def test_each_field_says_where_it_came_from() -> None:
    """inspect shows the source of every field: the attachment's name or the body."""
    und = _understood("006.eml")

    sources = und.document.sources()

    assert sources["number"] == "245-TB-VP.pdf" and sources["urgency"] == "245-TB-VP.pdf"
