"""Text out of attachments (PDF, DOCX, plain text) and the defects that make one unsafe.

Bounded: PDFs are read for the first pages only and pypdf's own decompression limits apply;
archives are listed, never extracted; a DOCX is read only when its XML is of sane size.
This is the boundary of the file readers: every failure of pypdf or zipfile becomes a defect
string ("… unreadable: KeyError"), never an exception; only running out of memory goes on,
to make the whole mail a BadMessage in `workers.read_guarded`.
"""

from __future__ import annotations

import io
import logging
import re
import struct
import zipfile
import zlib

import pypdf

from daemon.config import LimitsConfig
from daemon.textnorm import nfc
from daemon.understand import legacy

logging.getLogger("pypdf").setLevel(logging.CRITICAL)  # it warns about every odd PDF

ACTIVE_CONTENT = "active content"  # prefix of the defect that quarantines an attachment
_PDF_ACTIVE = re.compile(rb"/(JavaScript|JS|Launch|EmbeddedFile|RichMedia)\b")
UNSAFE_MARKS = (ACTIVE_CONTENT, "path traversal", "decompression bomb", "invalid base64")
_ZIP_MAX_RATIO = 100  # a real scan compresses 1-3x; a ratio past this is a bomb
_XML_TAG = re.compile(r"<[^>]+>")
# What zipfile raises on a broken or hostile archive, besides BadZipFile: an encrypted entry
# (RuntimeError), an unknown compression method (NotImplementedError), corrupt deflate data
# (zlib.error), a truncated file (EOFError), a malformed header (struct.error, ValueError), a
# missing member (KeyError).
_ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, RuntimeError, NotImplementedError,
               zlib.error, EOFError, struct.error, OSError, ValueError, KeyError)


def _unreadable(kind: str, name: str, err: Exception) -> str:
    """The defect of a file its reader failed on, naming the error (`zlib.error`, `KeyError`)."""
    module = type(err).__module__.partition(".")[0]
    what = type(err).__name__ if module == "builtins" else f"{module}.{type(err).__name__}"
    return f"{kind} {name!r} unreadable: {what}"


def is_unsafe(defect: str) -> bool:
    """Whether a defect means the attachment must never be forwarded as it is."""
    return any(mark in defect for mark in UNSAFE_MARKS)


def read(
    name: str, content_type: str, payload: bytes, limits: LimitsConfig
) -> tuple[str, list[str]]:
    """Return the text of one attachment (NFC, legacy fonts converted) and its defects."""
    text, defects = _read(name, content_type, payload, limits)
    text, legacy_font = legacy.to_unicode(text)
    if legacy_font:
        defects.append(f"{name!r} typed in the legacy {legacy_font.upper()} encoding; converted")
    return text, defects


def _read(
    name: str, content_type: str, payload: bytes, limits: LimitsConfig
) -> tuple[str, list[str]]:
    lower = name.lower()
    if content_type == "application/pdf" or lower.endswith(".pdf") or payload[:5] == b"%PDF-":
        return _pdf(name, payload, limits)
    if lower.endswith(".docx") or "wordprocessingml" in content_type:
        return _docx(name, payload, limits)
    if lower.endswith(".zip") or "zip" in content_type:
        return "", _zip(name, payload, limits)
    if content_type.startswith("text/") and len(payload) < 1_000_000:
        return nfc(payload.decode("utf-8", "replace")), []
    return "", []


def _pdf(name: str, payload: bytes, limits: LimitsConfig) -> tuple[str, list[str]]:
    defects: list[str] = []
    if match := _PDF_ACTIVE.search(payload):
        defects.append(f"{ACTIVE_CONTENT}: PDF {name!r} contains /{match.group(1).decode()}")
    try:
        reader = pypdf.PdfReader(io.BytesIO(payload))
        pages = [page.extract_text() or "" for page in reader.pages[: limits.pdf_max_pages]]
    except MemoryError:
        raise  # past the worker's memory cap: the mail, not this attachment, is the problem
    except Exception as err:  # pypdf's boundary: on a hostile PDF it raises anything at all
        defects.append(_unreadable("PDF", name, err))
        return "", defects
    text = nfc("\n".join(pages))
    if not text.strip():
        defects.append(f"PDF {name!r} has no text layer (a scan); not read")
    return text, defects


def _docx(name: str, payload: bytes, limits: LimitsConfig) -> tuple[str, list[str]]:
    try:
        with zipfile.ZipFile(io.BytesIO(payload)) as archive:
            info = archive.getinfo("word/document.xml")
            if info.file_size > limits.max_attachment_bytes or (
                info.compress_size and info.file_size / info.compress_size > _ZIP_MAX_RATIO
            ):
                return "", [f"DOCX {name!r} expands too far; not read"]
            xml = archive.read(info).decode("utf-8", "replace")
    except _ZIP_ERRORS as err:
        return "", [_unreadable("DOCX", name, err)]
    xml = re.sub(r"</w:p>", "\n", xml)
    xml = re.sub(r"<w:(tab|br)\b[^>]*/>", " ", xml)
    text = _XML_TAG.sub("", xml)
    text = text.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", '"')
    return nfc(text.replace("&amp;", "&")), []


def _zip(name: str, payload: bytes, limits: LimitsConfig) -> list[str]:
    """List an archive without extracting it: flag bombs and entries with unsafe names."""
    defects: list[str] = []
    try:
        with zipfile.ZipFile(io.BytesIO(payload)) as archive:
            entries = archive.infolist()
    except _ZIP_ERRORS as err:
        return [_unreadable("archive", name, err)]
    total = sum(e.file_size for e in entries)
    packed = sum(e.compress_size for e in entries) or 1
    if total > limits.max_attachment_bytes * 10 or total / packed > _ZIP_MAX_RATIO:
        defects.append(
            f"archive {name!r} would expand to {total} bytes (ratio {total // packed}): "
            "a decompression bomb; not extracted")
    for entry in entries[:1000]:
        if entry.filename.startswith(("/", "\\")) or ".." in re.split(r"[\\/]", entry.filename):
            defects.append(f"archive {name!r} entry tries path traversal: {entry.filename[:120]!r}")
    return defects
