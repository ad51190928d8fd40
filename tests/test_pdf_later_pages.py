"""The pages of a PDF after the header's are scanned for a confidentiality mark by PDFium, not
pypdf: a mark on a later page is still found however the PDF is written (fpdf2, hand-written
content streams, compressed object streams, a rotated page, text in a Form XObject), and no
hostile PDF (truncated, broken cross-reference table, a page tree that loops, a page count
that lies, a file PDFium refuses) gets a milder verdict than pypdf alone gave it, but one:
a later page pypdf cannot extract, that PDFium reads and finds no letters of a mark on.

The oracle is the scan as it was: every page read by pypdf (`exact_pages=None`)."""

from __future__ import annotations

import io
import zlib
from collections.abc import Callable

import pypdf
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daemon.config import LimitsConfig
from daemon.understand import attachments, pdftext
from daemon.understand.pdfscan import Scan, scan
from daemon.understand.secrecy import highest, marks_in, may_hold_mark
from tests.hostile.secrecy import document, pdf

LIMITS = LimitsConfig()
OBJECTS, PAGES = LIMITS.pdf_max_objects, LIMITS.pdf_scan_pages
LEVELS = {"MAT": "Mật", "TOI MAT": "Tối mật", "TUYET MAT": "Tuyệt mật"}


def _new(data: bytes, chars: int = LIMITS.scan_chars) -> Scan:
    return scan(data, OBJECTS, PAGES, LIMITS.pdf_max_pages, chars)


def _old(data: bytes) -> Scan:
    return scan(data, OBJECTS, PAGES)  # every page by pypdf: the scan before PDFium


def _mark(found: Scan) -> str | None:
    return marks_in("\n".join(found.pages))


def assert_no_milder(data: bytes) -> Scan:
    """The scan of `data` as it is now gives the same verdict as pypdf alone, or a stricter
    one: not checked whenever pypdf alone could not check it, the same active content, and
    a mark at least as high."""
    old, new = _old(data), _new(data)
    if old.unchecked and new.unchecked is None:
        # The one accepted change: a later page whose content pypdf's extraction failed on
        # (the objects were all read and checked) is read by PDFium when its letters could
        # not spell a mark; the other pages are read as before.
        assert old.unchecked.startswith("PDF không đọc được"), old.unchecked
        assert len(new.pages) == min(new.page_count, PAGES)
    elif old.unchecked:
        assert new.unchecked == old.unchecked
    assert new.active == old.active
    assert new.page_count == old.page_count
    if old.unchecked is None:
        assert new.pages[: LIMITS.pdf_max_pages] == old.pages[: LIMITS.pdf_max_pages]
    if (level := _mark(old)) is not None:
        assert highest(level, _mark(new)) == _mark(new), (level, new.pages)
    return new


# ----- PDFs written by hand: content streams, object streams, rotation, Form XObjects -----------


def _stream(header: bytes, data: bytes, compress: bool = True) -> bytes:
    if compress:
        data = zlib.compress(data)
        header += b" /Filter /FlateDecode"
    return b"<<" + header + b" /Length %d >>\nstream\n" % len(data) + data + b"\nendstream"


def _content(lines: list[bytes]) -> bytes:
    """A page's text, one line under the other, in Helvetica."""
    ops = [b"BT /F1 12 Tf 72 760 Td 16 TL"] + [line + b" T*" for line in lines] + [b"ET"]
    return b"\n".join(ops)


def _write(objects: list[bytes], object_stream: bool) -> bytes:
    """A PDF of `objects` (object 1 the catalog): a classic cross-reference table, or every
    object that is no stream inside one compressed object stream with a cross-reference
    stream (PDF 1.5)."""
    out = io.BytesIO()
    out.write(b"%PDF-1.5\n%\xe2\xe3\xcf\xd3\n")
    count = len(objects) + 1
    if not object_stream:
        offsets = []
        for number, body in enumerate(objects, start=1):
            offsets.append(out.tell())
            out.write(b"%d 0 obj\n" % number + body + b"\nendobj\n")
        xref = out.tell()
        out.write(b"xref\n0 %d\n0000000000 65535 f \n" % count)
        out.writelines(b"%010d 00000 n \n" % at for at in offsets)
        out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n"
                  % (count, xref))
        return out.getvalue()
    packed = [n for n, body in enumerate(objects, start=1) if b"stream\n" not in body]
    head, body = [], b""
    for number in packed:
        head.append(b"%d %d" % (number, len(body)))
        body += objects[number - 1] + b"\n"
    first = b" ".join(head) + b"\n"
    holder = count  # the object stream's own number; the xref stream is count + 1
    entries: dict[int, bytes] = {}
    for number, obj in enumerate(objects, start=1):
        if number in packed:
            entries[number] = bytes([2]) + holder.to_bytes(4, "big") + \
                packed.index(number).to_bytes(2, "big")
        else:
            entries[number] = bytes([1]) + out.tell().to_bytes(4, "big") + bytes(2)
            out.write(b"%d 0 obj\n" % number + obj + b"\nendobj\n")
    entries[holder] = bytes([1]) + out.tell().to_bytes(4, "big") + bytes(2)
    out.write(b"%d 0 obj\n" % holder + _stream(
        b" /Type /ObjStm /N %d /First %d" % (len(packed), len(first)), first + body)
        + b"\nendobj\n")
    xref = out.tell()
    entries[holder + 1] = bytes([1]) + xref.to_bytes(4, "big") + bytes(2)
    rows = bytes([0]) + bytes(4) + b"\xff\xff" + b"".join(
        entries[n] for n in range(1, holder + 2))
    out.write(b"%d 0 obj\n" % (holder + 1) + _stream(
        b" /Type /XRef /Size %d /W [1 4 2] /Root 1 0 R" % (holder + 2), rows) + b"\nendobj\n")
    out.write(b"startxref\n%d\n%%%%EOF\n" % xref)
    return out.getvalue()


WAYS: dict[str, Callable[[bytes], bytes]] = {  # how a line of text is written in a content stream
    "Tj": lambda text: b"(" + text + b") Tj",
    "two Tj": lambda text: b"(" + text[:2] + b") Tj (" + text[2:] + b") Tj",
    "TJ kerned": lambda text: b"[" + b" 15 ".join(b"(" + bytes([c]) + b")" for c in text) + b"] TJ",
    "heading": lambda text: b"(UBND TINH TAY NINH        " + text + b") Tj",
}


def hand_pdf(pages: int, mark_page: int, mark: bytes, way: str = "Tj",
             object_stream: bool = False, rotate: int = 0, form: bool = False) -> bytes:
    """A PDF of `pages` pages of filler, `mark` written `way` on page `mark_page` (1-based),
    each page turned by `rotate` degrees; with `form`, the marked page draws its text from a
    Form XObject."""
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"", b"<< /Type /Font /Subtype /Type1 "
               b"/BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"]
    kids = []
    for page in range(1, pages + 1):
        lines = [b"(PHU LUC TRANG %d) Tj" % page, b"(So lieu thong ke cua huyen.) Tj"]
        if page == 1:
            lines = [b"(UY BAN NHAN DAN) Tj", b"(So: 12/UBND-VP) Tj", b"(Kinh gui: So Xay dung) Tj"]
        extra = b""
        if page == mark_page:
            text = _content([*lines, WAYS[way](mark)])
            if form:
                form_number = len(objects) + 1
                objects.append(_stream(b" /Type /XObject /Subtype /Form /BBox [0 0 595 842] "
                                       b"/Resources << /Font << /F1 3 0 R >> >>", text))
                text = b"q /Fm1 Do Q"
                extra = b" /XObject << /Fm1 %d 0 R >>" % form_number
        else:
            text = _content(lines)
        objects.append(_stream(b"", text))
        objects.append(b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Rotate %d "
                       b"/Contents %d 0 R /Resources << /Font << /F1 3 0 R >>%s >> >>"
                       % (rotate, len(objects), extra))
        kids.append(b"%d 0 R" % len(objects))
    objects[1] = b"<< /Type /Pages /Kids [" + b" ".join(kids) + b"] /Count %d >>" % pages
    return _write(objects, object_stream)


@pytest.mark.parametrize("way", sorted(WAYS))
@pytest.mark.parametrize("shape", ["plain", "object stream", "rotated", "form xobject"])
def test_a_mark_on_page_seven_of_a_hand_written_pdf_is_found(way: str, shape: str) -> None:
    data = hand_pdf(9, 7, b"TOI MAT", way, object_stream=shape == "object stream",
                    rotate=90 if shape == "rotated" else 0, form=shape == "form xobject")
    new = assert_no_milder(data)
    assert new.unchecked is None and new.page_count == 9 and len(new.pages) == 9
    assert "TOI MAT" not in new.pages[0]
    assert _mark(new) == "Tối mật" == _mark(_old(data))
    assert marks_in(new.pages[6]) == "Tối mật"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pages=st.integers(2, 8), data=st.data(), level=st.sampled_from(sorted(LEVELS)),
       way=st.sampled_from(sorted(WAYS)), object_stream=st.booleans(),
       rotate=st.sampled_from([0, 90, 180, 270]), form=st.booleans())
def test_wherever_a_mark_sits_and_however_it_is_written_it_is_found(
        pages: int, data: st.DataObject, level: str, way: str, object_stream: bool,
        rotate: int, form: bool) -> None:
    mark_page = data.draw(st.integers(2, pages), label="mark_page")
    found = assert_no_milder(hand_pdf(pages, mark_page, level.encode(), way, object_stream,
                                      rotate, form))
    assert _mark(found) == LEVELS[level]


# ----- PDFs as agencies make them (fpdf2, a Unicode font) --------------------------------------


@pytest.mark.parametrize("where", ["stamp", "issuer-line-wide", "issuer-line-tight",
                                   "labelled", "spaced"])
@pytest.mark.parametrize("page", [2, 7, 20])
def test_a_mark_on_a_later_page_of_an_fpdf2_document_is_found(where: str, page: int) -> None:
    data = pdf(document("TỐI MẬT", where), pages=max(page, 8), page_of_text=page)
    new = assert_no_milder(data)
    assert _mark(new) == "Tối mật" == _mark(_old(data))
    reading = attachments.read("cong-van.pdf", "application/pdf", data, LIMITS)
    assert reading.withheld is None
    assert marks_in("\n".join(text for _, text in reading.pieces)) == "Tối mật"
    # The header is read off pypdf's page one, as before.
    assert reading.text == pypdf.PdfReader(io.BytesIO(data)).pages[0].extract_text()


def test_a_mark_past_the_scanned_pages_is_still_named_unread() -> None:
    data = pdf(document("TỐI MẬT"), pages=PAGES + 2, page_of_text=PAGES + 1)
    reading = attachments.read("dai.pdf", "application/pdf", data, LIMITS)
    assert marks_in("\n".join(text for _, text in reading.pieces)) is None
    assert any("limits.pdf_scan_pages" in why for why in reading.unread)


def test_pdfium_reads_no_more_than_the_characters_left() -> None:
    data = hand_pdf(6, 6, b"TOI MAT")
    whole = _new(data)
    short = _new(data, chars=40)
    read = sum(len(text) for text in short.pages[LIMITS.pdf_max_pages:])
    assert read == 41  # one more than allowed: the caller sees its budget reached
    assert len("\n".join(whole.pages)) > len("\n".join(short.pages))
    limits = LimitsConfig(scan_chars=200)
    reading = attachments.read("x.pdf", "application/pdf", data, limits)
    assert any("limits.scan_chars" in why for why in reading.unread)


# ----- hostile PDFs: never a milder verdict than pypdf alone gave -------------------------------


def _loop() -> bytes:
    """A page tree whose Kids lead back to itself."""
    page = _stream(b"", _content([b"(TOI MAT) Tj"]))
    return _write([b"<< /Type /Catalog /Pages 2 0 R >>",
                   b"<< /Type /Pages /Kids [4 0 R 5 0 R] /Count 2 >>", page,
                   b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 3 0 R >>",
                   b"<< /Type /Pages /Parent 2 0 R /Kids [2 0 R] /Count 1 >>"], False)


def _huge_count() -> bytes:
    """Three pages under a page tree that claims a million."""
    data = hand_pdf(3, 3, b"TOI MAT")
    return data.replace(b"/Count 3 >>", b"/Count 1000000 >>")


def _broken_xref() -> bytes:
    data = hand_pdf(4, 3, b"TOI MAT")
    at = data.index(b"xref\n")
    return data[:at] + data[at:].replace(b" 00000 n", b" 00000 f").replace(b"00000000", b"99")


def _truncated(share: float) -> bytes:
    data = hand_pdf(5, 4, b"TOI MAT")
    return data[: int(len(data) * share)]


def _junk_before_header() -> bytes:
    """Bytes before `%PDF-` whose offsets still point right: pypdf reads it, PDFium refuses
    (it looks for the header in the first kilobyte only)."""
    data = hand_pdf(4, 3, b"TOI MAT")
    junk = b"%" + b"x" * 3000 + b"\n"
    at = data.index(b"xref\n")
    offsets = data[at:].split(b"trailer")[0]
    moved = b"\n".join(
        b"%010d 00000 n " % (int(row[:10]) + len(junk)) if row.endswith(b" n ") else row
        for row in offsets.split(b"\n"))
    tail = data[at:].replace(offsets, moved)
    tail = tail.replace(b"startxref\n%d" % at, b"startxref\n%d" % (at + len(junk)))
    return junk + data[:at] + tail


@pytest.mark.parametrize("make", [_loop, _huge_count, _broken_xref, _junk_before_header,
                                  lambda: _truncated(0.5), lambda: _truncated(0.9),
                                  lambda: _truncated(0.99)],
                         ids=["loop", "huge count", "broken xref", "junk before header",
                              "truncated 50%", "truncated 90%", "truncated 99%"])
def test_a_hostile_pdf_gets_no_milder_verdict(make: object) -> None:
    assert callable(make)
    data = make()
    new = assert_no_milder(data)
    if new.unchecked is None and new.page_count >= 3:
        assert _mark(new) == "Tối mật"


def test_a_pdf_pdfium_refuses_is_read_by_pypdf_as_before() -> None:
    data = _junk_before_header()
    assert pdftext.pages(data, [1, 2], 4, 10_000) == [None, None]
    new = assert_no_milder(data)
    assert new.unchecked is None and _mark(new) == "Tối mật"


def test_pdfium_stands_aside_when_it_counts_other_pages() -> None:
    data = hand_pdf(4, 3, b"TOI MAT")
    assert pdftext.pages(data, [1, 2], 5, 10_000) == [None, None]
    assert marks_in(pdftext.pages(data, [1, 2], 4, 10_000)[1] or "") == "Tối mật"


@settings(max_examples=40, deadline=None)
@given(cut=st.integers(0, 4000), junk=st.binary(max_size=64))
def test_any_damage_to_a_marked_pdf_gets_no_milder_verdict(cut: int, junk: bytes) -> None:
    data = hand_pdf(4, 3, b"TOI MAT", "TJ kerned", object_stream=cut % 2 == 1)
    at = cut % len(data)
    assert_no_milder(data[:at] + junk + data[at + len(junk):])


MARK_TEXT = st.lists(st.one_of(
    st.sampled_from(["MẬT", "Tối mật", "TUYỆT MẬT", "TOI MAT", "T Ố I  M Ậ T", "Độ mật: Mật",
                     "UBND TỈNH TÂY NINH", "   ", "\n", "Số: 12/UBND", " | ", "Mặt bằng"]),
    st.text(max_size=12)), max_size=12).map("".join)


@settings(max_examples=300, deadline=None)
@given(text=MARK_TEXT)
def test_every_text_with_a_mark_is_sent_back_to_pypdf(text: str) -> None:
    """The filter is a wider net than the scan: whatever holds a mark may hold one."""
    if marks_in(text) is not None:
        assert may_hold_mark(text)
