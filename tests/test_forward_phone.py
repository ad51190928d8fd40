"""Forwards are read on phones: one urgency mark in the subject, the page at the screen's
width, the original mail with its line breaks, every field on its own line."""

from __future__ import annotations

import re
import tempfile
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from daemon.outbound.compose import paragraphs, render, tagged
from tests.desk import DOCUMENT, Desk, mail


@pytest.mark.parametrize(("subject", "tag", "expected"), [
    ("THƯỢNG KHẨN: Công văn 5", "THƯỢNG KHẨN", "[THƯỢNG KHẨN] Công văn 5"),
    ("[Thượng khẩn] Công văn 5", "THƯỢNG KHẨN", "[THƯỢNG KHẨN] Công văn 5"),
    ("(THUONG KHAN) - Công văn 5", "THƯỢNG KHẨN", "[THƯỢNG KHẨN] Công văn 5"),
    ("Hỏa tốc – Họp khẩn", "HỎA TỐC", "[HỎA TỐC] Họp khẩn"),
    ("Hoả tốc: Họp", "HỎA TỐC", "[HỎA TỐC] Họp"),  # the old tone placement
    ("KHẨN: Công văn 5", "THƯỢNG KHẨN", "[THƯỢNG KHẨN] KHẨN: Công văn 5"),  # another mark
    ("Khẩn trương triển khai", "KHẨN", "[KHẨN] Khẩn trương triển khai"),  # a word, not a mark
    ("Công văn 5", "", "Công văn 5"),
])
def test_one_urgency_mark_in_the_subject(subject: str, tag: str, expected: str) -> None:
    assert tagged(subject, tag) == expected


@given(st.text(max_size=200), st.sampled_from(["HỎA TỐC", "THƯỢNG KHẨN", "KHẨN"]))
def test_the_tag_is_always_first_and_nothing_else_is_lost(subject: str, tag: str) -> None:
    result = tagged(subject, tag)
    assert result.startswith(f"[{tag}] ")
    assert subject.endswith(result[len(tag) + 3:])  # at most a leading mark was taken


def test_text_keeps_its_lines_and_is_escaped() -> None:
    markup = paragraphs("Dòng 1\nDòng 2 <script>alert(1)</script>\n\n\nĐoạn 2")
    assert markup == ("<p>Dòng 1<br>Dòng 2 &lt;script&gt;alert(1)&lt;/script&gt;</p>"
                      "<p>Đoạn 2</p>")


def test_a_cover_note_fits_a_phone() -> None:
    _, markup = render("Phiếu chuyển văn bản", ["Văn thư kính chuyển."],
                       [("Trích yếu", "Về việc " + "rất dài " * 40)],
                       ["Nội dung thư gốc:", "Dòng một\nDòng hai"])
    assert "width=device-width" in markup and "<table" not in markup
    assert "Dòng một<br>Dòng hai" in markup
    assert "<b>Trích yếu:</b> Về việc" in markup


def test_the_forward_of_an_urgent_document() -> None:
    desk = Desk(Path(tempfile.mkdtemp()))
    body = DOCUMENT.replace("Số: 1000/UBND-KT", "THƯỢNG KHẨN\nSố: 1000/UBND-KT")
    desk.receive(mail("vanthu@tayninh.gov.vn", "THƯỢNG KHẨN: Công văn 1000/UBND-KT", body))
    desk.process()

    [forward] = [e for e in desk.emails_for(desk.rows()[0].id)  # type: ignore[attr-defined]
                 if e.action == "forward"]  # type: ignore[attr-defined]
    message = message_from_bytes(forward.raw, policy=policy.default)  # type: ignore[attr-defined]
    assert message["Subject"] == "[Số đến 1/2026] [THƯỢNG KHẨN] Công văn 1000/UBND-KT"
    markup = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "ỦY BAN NHÂN DÂN<br>TỈNH TÂY NINH<br>THƯỢNG KHẨN<br>Số: 1000/UBND-KT" in markup
    assert not re.search(r"<p>[^<]*\n[^<]*</p>", markup)  # no paragraph with raw breaks
