"""One attachment read and judged: its text, every piece of text in it (for the
confidentiality scan), what in it could not be read, and whether it must be withheld from the
forward to the agency's leaders (with the reason, in Vietnamese).

The judgement runs in layers, each in its own module:
- `filetype`: the name, the declared content type and the magic bytes against the policy
  table (an allowlist: programs, scripts, macro documents, shortcuts, disk images, web pages,
  polyglots and files whose bytes contradict their name are withheld);
- `pdfscan`: a PDF's objects parsed for scripts, actions and embedded files;
- `archives`: ZIP (and DOCX/XLSX/ODT, which are ZIPs), gzip, bzip2, xz and tar opened
  recursively, every entry judged like an attachment of its own, within `[limits]`
  `archive_depth`, `archive_entries` and `archive_bytes` counted on the bytes actually
  decompressed, never on the sizes an archive declares.
What cannot be checked (an encrypted archive, a PDF pypdf cannot read, a limit reached) is
withheld too: the raw mail stays in the store for the clerk, the forward names the file.

This is the boundary of the file readers: every failure of pypdf, zipfile or a decompressor
becomes a reason or a defect, never an exception; only running out of memory goes on, to make
the whole mail a BadMessage in `workers.read_guarded`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from daemon.config import LimitsConfig, OcrConfig
from daemon.models import Document, Package
from daemon.textnorm import nfc
from daemon.understand import archives, edxml, filetype, legacy, ocr, signatures

if TYPE_CHECKING:
    from PIL.Image import Image


@dataclass(frozen=True)
class AttachmentReading:
    """What reading one attachment found. `text` is what the document header is read from
    (a PDF's first `pdf_max_pages` pages, a DOCX's body); `pieces` is every text read in it,
    labelled by where ("body", "header1.xml", "hoso.zip/to-trinh.pdf"); `unread` says what
    could not be read and why; `withheld` why it must never be forwarded (None: it may be)."""

    text: str
    pieces: tuple[tuple[str, str], ...] = ()
    unread: tuple[str, ...] = ()
    defects: tuple[str, ...] = ()
    withheld: str | None = None
    package: Package | None = None  # what an edXML package's header says
    scanned: Document | None = None  # the header read by OCR off a scanned page
    # The signed PDFs carried inside it (an edXML package's, an archive's), by their path
    # ("goi.edxml/van-ban.pdf"): their signatures are validated like a direct attachment's.
    carried: tuple[tuple[str, bytes], ...] = ()


@dataclass
class Inspection:
    """The state of one attachment's inspection, shared by every file nested in it: what was
    found so far and what is left of the limits."""

    limits: LimitsConfig
    name: str = ""  # the attachment's, as shown
    entries_left: int = 0
    bytes_left: int = 0
    chars_left: int = 0
    objects_left: int = 0
    pages_left: int = 0
    pieces: list[tuple[str, str]] = field(default_factory=list)
    unread: list[str] = field(default_factory=list)
    defects: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    package: Package | None = None  # the first edXML package found
    scanned: Document | None = None  # the first document header OCR found
    ocr_pages_left: int = 0
    carried: list[tuple[str, bytes]] = field(default_factory=list)  # signed PDFs inside it

    def __post_init__(self) -> None:
        self.entries_left = self.limits.archive_entries
        self.bytes_left = self.limits.archive_bytes
        self.chars_left = self.limits.scan_chars
        self.objects_left = self.limits.pdf_max_objects
        self.pages_left = max(self.limits.pdf_max_pages, self.limits.pdf_scan_pages)
        self.ocr_pages_left = self.limits.ocr.max_pages

    def withhold(self, where: str, why: str) -> None:
        """Record a reason to withhold; `where` is the path of a nested file ("" at the top)."""
        where = where.removeprefix(f"{self.name}/")
        reason = f"chứa {where}: {why}" if where else why
        if reason not in self.reasons:
            self.reasons.append(reason)

    def cannot_read(self, file: File, what: str) -> None:
        """Note what in the attachment could not be read: "image, a possible scan" or, for a
        file inside it, "hoso.zip/anh.jpg: image, a possible scan"."""
        self.unread.append(f"{file.path}: {what}" if file.path else what)

    def piece(self, label: str, text: str) -> None:
        """Keep a piece of text for the confidentiality scan, within `scan_chars` in all."""
        text, font = legacy.to_unicode(nfc(text))
        if font:
            self.defects.append(f"{label!r} typed in the legacy {font.upper()} encoding; "
                                "converted")
        if not text.strip():
            return
        if len(text) > self.chars_left:
            self.unread.append(f"{label}: phần chữ sau {self.limits.scan_chars} ký tự chưa đọc "
                               "(limits.scan_chars)")
            text = text[: self.chars_left]
        self.chars_left -= len(text)
        if text:
            self.pieces.append((label, text))


@dataclass(frozen=True)
class File:
    """One file being inspected: the attachment itself (`path` "" and depth 0) or a file
    inside it ("hoso.zip/ho-so/don.pdf" at the depth of its archive nesting)."""

    name: str  # as given, judged with its invisible characters
    content_type: str
    data: bytes
    path: str = ""
    depth: int = 0
    shown: str = ""  # the attachment's name as shown, which begins the paths inside it

    def label(self, part: str = "body") -> str:
        """Where a piece of text was found: "body" or "header1.xml" in the attachment itself,
        "hoso.zip/don.docx" or "hoso.zip/don.docx/header1.xml" in a file inside it."""
        if not self.path:
            return part
        return self.path if part == "body" else f"{self.path}/{part}"


def read(name: str, content_type: str, payload: bytes, limits: LimitsConfig,
         raw_name: str | None = None) -> AttachmentReading:
    """Read and judge one attachment. `name` is the name shown; `raw_name` the name as the
    mail gave it (judged with its invisible characters), `name` when not given."""
    inspection = Inspection(limits)
    text = ""
    try:
        inspection.name = name
        text = inspect(File(raw_name if raw_name is not None else name, content_type,
                            payload, shown=name), inspection)
    except archives.LimitReached as limit:
        inspection.withhold("", limit.reason)
        inspection.unread.append(f"phần còn lại chưa đọc (vượt limits.{limit.key})")
    text, font = legacy.to_unicode(nfc(text))
    defects = list(inspection.defects)
    if font:
        defects.append(f"{name!r} typed in the legacy {font.upper()} encoding; converted")
    reasons = inspection.reasons
    if len(reasons) > 3:
        reasons = [*reasons[:3], f"và {len(reasons) - 3} lý do khác"]
    withheld = "; ".join(reasons)[:600] or None
    if withheld:
        defects.append(f"attachment {name!r} withheld: {withheld}")
    return AttachmentReading(text=text, pieces=tuple(inspection.pieces),
                             unread=tuple(dict.fromkeys(inspection.unread)),
                             defects=tuple(defects), withheld=withheld,
                             package=inspection.package, scanned=inspection.scanned,
                             carried=tuple(inspection.carried))


def inspect(file: File, inspection: Inspection) -> str:
    """Judge one file (the attachment or a file inside it), keep its pieces of text, and
    return its header text (for the attachment itself: what the document header is read
    from)."""
    verdict = filetype.judge(file.name, file.content_type, file.data)
    if verdict.withheld:
        inspection.withhold(file.path, verdict.withheld)
        inspection.cannot_read(file, f"bị giữ lại, không đọc ({verdict.withheld})")
        return ""
    reader = _READERS.get(verdict.kind)
    if reader is None:
        inspection.cannot_read(file, "định dạng không đọc được")
        return ""
    return reader(file, verdict.kind, inspection)


def _pdf(file: File, kind: str, inspection: Inspection) -> str:
    # pypdf is imported where a PDF is read (the workers, whose fork server preloads it):
    # the daemon's own process reads none.
    from daemon.understand import pdfscan

    limits = inspection.limits
    _carry_signed(file, inspection)
    scan = pdfscan.scan(file.data, inspection.objects_left, inspection.pages_left,
                        limits.pdf_max_pages, inspection.chars_left)
    inspection.objects_left -= scan.visited
    inspection.pages_left -= len(scan.pages)
    if inspection.objects_left < 0:
        raise archives.LimitReached("pdf_max_objects", "PDF có hơn "
                                    f"{limits.pdf_max_objects} đối tượng")
    if scan.unchecked:
        inspection.withhold(file.path, f"không kiểm tra được: {scan.unchecked}")
        inspection.cannot_read(file, f"không đọc được PDF ({scan.unchecked})")
        return ""
    if scan.active:
        inspection.withhold(file.path, "PDF có nội dung tự chạy: " + ", ".join(scan.active))
    whole = "\n".join(scan.pages)
    inspection.piece(file.label(), whole)
    scanned = ""
    if scan.pages and not whole.strip():
        scanned = _scanned(file, inspection, "PDF không có lớp chữ (bản quét)", lambda cfg: (
            ocr.pdf_pages(file.data, cfg, 1, ocr.HEADER_SHARE),
            ocr.pdf_pages(file.data, cfg, min(cfg.max_pages, scan.page_count))))
    if scan.page_count > len(scan.pages):
        inspection.cannot_read(file, f"các trang sau trang {len(scan.pages)}/{scan.page_count} "
                                     "chưa đọc (limits.pdf_scan_pages)")
    return scanned or "\n".join(scan.pages[: limits.pdf_max_pages])


def _carry_signed(file: File, inspection: Inspection) -> None:
    """Keep a signed PDF found inside the attachment (a package's or an archive's file), at
    most MAX_PDFS of them: its signatures are validated with the attachment's own."""
    if (file.path and len(inspection.carried) < signatures.MAX_PDFS
            and signatures.looks_signed(file.data, named_pdf=True)):
        inspection.carried.append((file.path, file.data))


def _text(file: File, kind: str, inspection: Inspection) -> str:
    data = file.data
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        text = data.decode("utf-16", "replace")
    else:
        text = data.decode("utf-8", "replace")
    if file.name.casefold().rstrip(". ").endswith(".csv") and _DDE.search(text):
        inspection.withhold(file.path, "bảng CSV có công thức gọi chương trình (DDE)")
    inspection.piece(file.label(), text)
    return text


# A spreadsheet cell that runs a program when the CSV is opened in Excel: =cmd|' /C calc'!A0
_DDE = re.compile(r"(^|[,;\t])\s*\"?[=+\-@]\s*\w+(\.\w+)?\s*\|[^\n]*!", re.M)


def _xml(file: File, kind: str, inspection: Inspection) -> str:
    if edxml.looks_like(file.data):
        return _package(file, inspection)
    if why := filetype.markup_active(file.data):
        inspection.withhold(file.path, why)
    text = archives.xml_text(file.data.decode("utf-8", "replace"))
    inspection.piece(file.label(), text)
    return text


def _package(file: File, inspection: Inspection) -> str:
    """An edXML package: its header kept (the first package's), every embedded file judged
    like a file inside an archive, within the same limits. Returns the header text of its
    first file that has one. A package that cannot be read is withheld."""
    if why := filetype.markup_active(file.data):
        inspection.withhold(file.path, why)
    try:
        package, files = edxml.read(file.data)
    except edxml.PackageError as err:
        inspection.withhold(file.path, err.reason)
        inspection.cannot_read(file, err.reason)
        return ""
    if file.depth >= inspection.limits.archive_depth and files:
        raise archives.LimitReached("archive_depth", "tệp nén lồng nhau quá "
                                    f"{inspection.limits.archive_depth} lớp")
    inspection.package = inspection.package or package
    inspection.piece(file.label(), edxml.header_text(package))
    for problem in package.problems:
        inspection.withhold(file.path, problem)
        inspection.cannot_read(file, problem)
    texts = []
    for embedded in files:
        archives.spend_entry(inspection)
        archives.spend_bytes(inspection, len(embedded.data))
        if why := archives.entry_name_problem(embedded.name):
            inspection.withhold(file.path, f"{embedded.name!r}: {why}")
            continue
        inner = File(embedded.name, embedded.content_type, embedded.data,
                     f"{file.path or file.shown or file.name}/{embedded.name}", file.depth + 1)
        texts.append(inspect(inner, inspection))
    return next((text for text in texts if text.strip()), "")


def _ole(file: File, kind: str, inspection: Inspection) -> str:
    if why := filetype.ole_active(file.data):
        inspection.withhold(file.path, why)
    inspection.cannot_read(file, "tài liệu Office 97-2003, chưa đọc được chữ")
    return ""


def _image(file: File, kind: str, inspection: Inspection) -> str:
    def pages(cfg: OcrConfig) -> tuple[Iterator[Image], Iterator[Image]]:
        return (map(ocr.header_zone, ocr.image_pages(file.data, cfg, 1)),
                ocr.image_pages(file.data, cfg, cfg.max_pages))

    return _scanned(file, inspection, "ảnh, có thể là bản quét, chưa đọc", pages)


def _scanned(file: File, inspection: Inspection, unread: str,
             pages: Callable[[OcrConfig], tuple[Iterator[Image], Iterator[Image]]]) -> str:
    """Read a scanned file by OCR (`pages` gives its header zone and its whole pages) and
    return its text. What could not be read, or was read unsurely, stays `unread` (with why):
    the confidentiality scan could not rely on it."""
    cfg = inspection.limits.ocr
    shown = file.path or file.shown or file.name
    why = ocr.unavailable(cfg) if inspection.ocr_pages_left > 0 else \
        f"đã đọc OCR {cfg.max_pages} trang của tệp (ocr.max_pages)"
    found, damaged = None, ""
    if why is None:
        try:
            zone, whole = pages(cfg)
            found = ocr.read_pages(zone, whole, cfg, shown)
        except ocr.OcrStopped as stop:
            why = str(stop)
        except MemoryError:
            raise  # past the worker's memory cap: the mail is the problem
        except Exception as err:  # Pillow's and PDFium's boundary: a damaged file raises anything
            damaged = f" ({type(err).__name__})"
    if found is None or not found.words:
        inspection.cannot_read(file, f"{unread} (OCR: {why})" if why else unread)
        inspection.defects.append(f"{shown!r}: a scan without text, not read"
                                  + (f" (OCR: {why})" if why else damaged))
        return ""
    inspection.ocr_pages_left -= found.pages
    inspection.piece(file.label(), found.text)
    if inspection.scanned is None and found.document is not None:
        inspection.scanned = found.document
    if found.confidence < cfg.min_confidence:
        inspection.cannot_read(file, f"{unread}: đọc bằng OCR với độ tin cậy thấp "
                                     f"({found.confidence:.0%})")
    return found.text


def _nothing(file: File, kind: str, inspection: Inspection) -> str:
    return ""


def _archive(file: File, kind: str, inspection: Inspection) -> str:
    return archives.open_archive(file, kind, inspection, inspect)


_READERS: dict[str, Callable[[File, str, Inspection], str]] = {
    "pdf": _pdf, "text": _text, "xml": _xml, "ole": _ole, "image": _image,
    "signature": _nothing, "zip": _archive, "ooxml": _archive, "odf": _archive,
    "gzip": _archive, "bzip2": _archive, "xz": _archive, "tar": _archive,
}
