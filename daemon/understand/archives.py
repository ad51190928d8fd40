"""Archives opened and every file in them judged: ZIP, the Office documents that are ZIPs (DOCX,
XLSX, PPTX, ODT …), gzip, bzip2, xz and tar.

Bounded by construction. Every byte is counted as it comes out of a decompressor, read in
chunks, against `[limits] archive_bytes` for the whole attachment (the sizes an archive
declares are never trusted: a header that lies only makes the entry fail its CRC); every entry
of every nested archive counts against `archive_entries`; an archive lies at most
`archive_depth` archives deep. Past a limit the whole attachment is withheld (`LimitReached`).
ZIP entries are read only when stored or deflated (Python decompresses those a bounded chunk
at a time); anything else, like an encrypted entry, 7z or RAR, cannot be inspected and is
withheld as such.

In an Office document the parts are not judged as attachments (a .rels part is no file type a
person opens); what is looked for instead is code: VBA macros (vbaProject.bin), ActiveX
controls, embedded OLE objects, Excel 4.0 macro sheets, DDE fields, links that fetch a
template or object from elsewhere, LibreOffice Basic and scripts. Documents embedded in it (a
chart's .xlsx) are judged as files of their own.
"""

from __future__ import annotations

import bz2
import html
import io
import lzma
import re
import stat
import struct
import tarfile
import zipfile
import zlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from daemon.understand import filetype

if TYPE_CHECKING:
    from daemon.understand.attachments import File, Inspection

Inspect = Callable[["File", "Inspection"], str]  # judges one file, returns its header text
_CHUNK = 64 * 1024
# What zipfile raises on a broken or hostile archive, besides BadZipFile: an unknown
# compression method (NotImplementedError), corrupt deflate data (zlib.error), a truncated
# file (EOFError), a malformed header (struct.error, ValueError), a missing member (KeyError).
_ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, RuntimeError, NotImplementedError,
               zlib.error, EOFError, struct.error, OSError, ValueError, KeyError)
_READABLE_METHODS = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED}


class LimitReached(Exception):
    """The `[limits]` key `key` was reached; `reason` says so in Vietnamese, for the forward."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(reason)
        self.key = key
        self.reason = f"{reason} (giới hạn {key})"


def spend_bytes(inspection: Inspection, count: int) -> None:
    inspection.bytes_left -= count
    if inspection.bytes_left < 0:
        raise LimitReached("archive_bytes", "giải nén vượt quá "
                           f"{inspection.limits.archive_bytes} byte")


def spend_entry(inspection: Inspection) -> None:
    inspection.entries_left -= 1
    if inspection.entries_left < 0:
        raise LimitReached("archive_entries", "tệp nén có hơn "
                           f"{inspection.limits.archive_entries} mục")


class _Readable(Protocol):
    def read(self, size: int = ..., /) -> bytes: ...


def _read_bounded(stream: _Readable, inspection: Inspection,
                  claims: int | None = None) -> bytes:
    """Everything a decompressing stream gives, a chunk at a time, each chunk counted.
    `claims`: the size a zip member's header declares. A member that fails while it claims
    more than is left of `archive_bytes` is over the limit, whatever else is wrong with it
    (zipfile reads ahead and checks the CRC at the declared end before handing out the bytes
    that would have shown it); the claim is never used otherwise."""
    out = bytearray()
    while True:
        left = inspection.bytes_left
        try:
            chunk = stream.read(_CHUNK)
        except MemoryError:
            raise
        except Exception:
            if claims is not None and claims - len(out) > left:
                spend_bytes(inspection, left + 1)  # raises LimitReached
            raise
        if not chunk:
            return bytes(out)
        spend_bytes(inspection, len(chunk))
        out += chunk


def open_archive(file: File, kind: str, inspection: Inspection, inspect: Inspect) -> str:
    """Open the archive `file` of `kind` ("zip", "ooxml", "gzip" …) and judge what is in it
    with `inspect`. Returns the header text of an Office document (its body), else ""."""
    if file.depth >= inspection.limits.archive_depth:
        raise LimitReached("archive_depth", "tệp nén lồng nhau quá "
                           f"{inspection.limits.archive_depth} lớp")
    if kind in ("gzip", "bzip2", "xz"):
        _unpack_stream(file, kind, inspection, inspect)
        return ""
    if kind == "tar":
        _walk_tar(file, inspection, inspect)
        return ""
    return _walk_zip(file, kind, inspection, inspect)


def _inner(file: File, name: str, data: bytes) -> File:
    from daemon.understand.attachments import File  # the type, at run time (import cycle)

    return File(name, "application/octet-stream", data, _where(file, name), file.depth + 1)


def _where(file: File, name: str) -> str:
    """The path of a file inside `file`: "hoso.zip/ho-so/don.pdf"."""
    return f"{file.path or file.shown or file.name}/{name}"


# --- ZIP and the Office documents that are ZIPs ------------------------------------------

def entry_name_problem(name: str) -> str | None:
    """Why an entry's name is unsafe to extract (it climbs out of the folder, is absolute,
    names a drive or a network share, holds control characters), or None."""
    if any(ord(c) < 32 for c in name):
        return "tên mục có ký tự điều khiển"
    if re.match(r"^([\\/]|[a-zA-Z]:)", name):
        return "tên mục là đường dẫn tuyệt đối (ghi ra ngoài thư mục giải nén)"
    if ".." in re.split(r"[\\/]", name):
        return "tên mục leo ra ngoài thư mục giải nén (..)"
    return None


def _walk_zip(file: File, kind: str, inspection: Inspection, inspect: Inspect) -> str:
    try:
        archive = zipfile.ZipFile(io.BytesIO(file.data))
    except _ZIP_ERRORS as err:
        inspection.withhold(file.path, f"tệp nén hỏng, không kiểm tra được ({_error(err)})")
        return ""
    office = kind if kind in ("ooxml", "odf") else None
    texts: dict[str, str] = {}
    with archive:
        for info in archive.infolist():
            spend_entry(inspection)
            entry = _inner(file, info.filename, b"")
            if why := entry_name_problem(info.filename):
                inspection.withhold(entry.path, why)
                continue
            if info.is_dir():
                continue
            if cannot := _cannot_read(info):
                inspection.withhold(file.path, f"không kiểm tra được: {cannot[1]}")
                inspection.cannot_read(file, cannot[1])
                return ""
            try:
                with archive.open(info) as stream:
                    data = _read_bounded(stream, inspection, claims=info.file_size)
            except _ZIP_ERRORS as err:
                inspection.withhold(file.path, f"tệp nén hỏng, không kiểm tra được "
                                               f"({_error(err)})")
                return ""
            entry = _inner(file, info.filename, data)
            if office is None:
                inspect(entry, inspection)
            else:
                _office_part(entry, info.filename, inspection, inspect, texts)
    return _office_text(file, office, texts, inspection) if office else ""


def _cannot_read(info: zipfile.ZipInfo) -> tuple[str, str] | None:
    """Why an entry cannot be inspected: in English (what was not read) and in Vietnamese."""
    if info.flag_bits & 0x1:
        return "encrypted", "tệp nén có mật khẩu"
    if info.compress_type not in _READABLE_METHODS:
        return (f"compression method {info.compress_type}",
                f"phương thức nén {info.compress_type} không hỗ trợ")
    if stat.S_ISLNK(info.external_attr >> 16):
        return "symbolic link", "mục là liên kết tượng trưng"
    return None


def _error(err: Exception) -> str:
    module = type(err).__module__.partition(".")[0]
    return type(err).__name__ if module == "builtins" else f"{module}.{type(err).__name__}"


# Parts of an Office document that are code, by their path in the ZIP.
_OFFICE_CODE: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"vbaproject\.bin$|vbadata\.xml$", re.I), "macro VBA"),
    (re.compile(r"(^|/)activex/", re.I), "điều khiển ActiveX"),
    (re.compile(r"(^|/)embeddings/.*\.bin$", re.I), "đối tượng OLE nhúng"),
    (re.compile(r"(^|/)macrosheets/", re.I), "macro Excel 4.0"),
    (re.compile(r"^(basic|scripts)/", re.I), "macro LibreOffice"),
)
_MACRO_TYPE = re.compile(r"macroenabled|vbaproject|ms-office\.activex", re.I)
_EXTERNAL = re.compile(r"<Relationship\b[^>]*>", re.I)
_DDE_FIELD = re.compile(r"instr(Text)?[^>]*>\s*DDE|instr=\"\s*DDE|<ddeLink\b", re.I)
_ODF_SCRIPT = re.compile(r"vnd\.sun\.star\.script|<script:|encryption-data", re.I)
# Parts whose text is kept: what is read as the body, and the other pieces by their file name.
_BODY_PARTS = ("word/document.xml", "content.xml")
_PIECE_PARTS = re.compile(r"^(word/(header|footer)\d*\.xml|word/(footnotes|endnotes)\.xml|"
                          r"xl/sharedStrings\.xml|ppt/slides/slide\d+\.xml|styles\.xml)$")


def _office_part(entry: File, part: str, inspection: Inspection, inspect: Inspect,
                 texts: dict[str, str]) -> None:
    """Judge one part of an Office document and keep the text of the parts that carry it."""
    for pattern, code in _OFFICE_CODE:
        if pattern.search(part):
            inspection.withhold(entry.path, code)
            return
    if problem := _office_xml_problem(part, entry.data):
        inspection.withhold(entry.path, problem)
        return
    found = filetype.magic(entry.data)
    if found == "ole":
        inspection.withhold(entry.path, "đối tượng OLE nhúng")
        return
    if re.search(r"(^|/)(embeddings|Object \d+)/", part) and found not in ("markup", "text"):
        inspect(entry, inspection)  # a document embedded in this one: judged on its own
        return
    if danger := filetype.judge_dangerous(part, entry.data):
        inspection.withhold(entry.path, danger)
        return
    if part in _BODY_PARTS or _PIECE_PARTS.match(part):
        texts[part] = entry.data.decode("utf-8", "replace")


def _office_xml_problem(part: str, data: bytes) -> str | None:
    lower = part.lower()
    if lower == "[content_types].xml" and _MACRO_TYPE.search(data.decode("utf-8", "replace")):
        return "tài liệu khai báo có macro"
    if lower.endswith(".rels"):
        for relation in _EXTERNAL.findall(data.decode("utf-8", "replace")):
            if re.search(r"TargetMode\s*=\s*[\"']External", relation, re.I) and not re.search(
                    r"Type\s*=\s*[\"'][^\"']*/hyperlink[\"']", relation, re.I):
                return "tải mẫu hoặc đối tượng từ bên ngoài khi mở tệp"
    if lower.endswith(".xml") and _DDE_FIELD.search(data.decode("utf-8", "replace")):
        return "trường DDE chạy lệnh"
    if (lower in ("content.xml", "styles.xml", "meta-inf/manifest.xml")
            and _ODF_SCRIPT.search(data.decode("utf-8", "replace"))):
        return "macro/script LibreOffice hoặc tệp có mật khẩu"
    return None


def _office_text(file: File, office: str, texts: dict[str, str],
                 inspection: Inspection) -> str:
    """Keep the text of an Office document's parts as pieces; return the body's text."""
    body = ""
    for part, xml in texts.items():
        text = xml_text(xml)
        if part in _BODY_PARTS:
            body = text
            inspection.piece(file.label(), text)
        else:
            inspection.piece(file.label(part.rpartition("/")[2]), text)
    if office and not texts:
        inspection.cannot_read(file, "tài liệu Office không có chữ đọc được")
    return body


_PARAGRAPH_END = re.compile(r"</(w:p|a:p|text:p|text:h|si|row)>", re.I)
_BREAK = re.compile(r"<(w:tab|w:br|text:tab|text:line-break|text:s)\b[^>]*/>", re.I)
_TAG = re.compile(r"<[^>]+>")


def xml_text(xml: str) -> str:
    """The text of an XML part: one line per paragraph, tags dropped, entities decoded."""
    xml = _PARAGRAPH_END.sub("\n", xml)
    xml = _BREAK.sub(" ", xml)
    return html.unescape(_TAG.sub("", xml))


# --- gzip, bzip2, xz and tar ------------------------------------------------------------

def _decompressor(kind: str) -> Any:
    if kind == "gzip":
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if kind == "bzip2":
        return bz2.BZ2Decompressor()
    return lzma.LZMADecompressor()


def _unpack(data: bytes, kind: str, inspection: Inspection) -> bytes:
    """Decompress every stream of a gzip, bzip2 or xz file a chunk at a time, each chunk
    counted. Raises ValueError when the data is truncated or corrupt."""
    out = bytearray()
    rest = data
    while rest.strip(b"\x00"):  # more than one stream may follow; zeros pad the end
        engine = _decompressor(kind)
        pending = rest
        while not engine.eof:
            chunk = engine.decompress(pending, _CHUNK)
            if isinstance(engine, (bz2.BZ2Decompressor, lzma.LZMADecompressor)):
                pending = b""  # they keep the input they have not used yet
                stuck = not chunk and engine.needs_input
            else:
                pending = engine.unconsumed_tail
                stuck = not chunk and not pending
            if stuck:
                raise ValueError("truncated")
            spend_bytes(inspection, len(chunk))
            out += chunk
        rest = engine.unused_data
    return bytes(out)


def _unpack_stream(file: File, kind: str, inspection: Inspection, inspect: Inspect) -> None:
    spend_entry(inspection)
    try:
        data = _unpack(file.data, kind, inspection)
    except (ValueError, EOFError, OSError, zlib.error, lzma.LZMAError) as err:
        inspection.withhold(file.path, f"tệp nén hỏng, không kiểm tra được ({_error(err)})")
        return
    name = filetype.judged_name(file.name)
    inner = re.sub(r"\.(gz|bz2|xz)$", "", name)
    inner = re.sub(r"\.(tgz|tbz2|txz)$", ".tar", inner)
    inspect(_inner(file, inner if inner != name else "data", data), inspection)


def _walk_tar(file: File, inspection: Inspection, inspect: Inspect) -> None:
    try:
        with tarfile.open(fileobj=io.BytesIO(file.data), mode="r:") as archive:
            for member in archive:
                spend_entry(inspection)
                path = _where(file, member.name)
                if why := entry_name_problem(member.name):
                    inspection.withhold(path, why)
                elif member.issym() or member.islnk():
                    inspection.withhold(path, "liên kết tới tệp khác trong tệp nén")
                elif member.isfile():
                    stream = archive.extractfile(member)
                    data = _read_bounded(stream, inspection) if stream else b""
                    inspect(_inner(file, member.name, data), inspection)
                elif not member.isdir():
                    inspection.withhold(path, "mục đặc biệt (thiết bị, FIFO) trong tệp nén")
    except (tarfile.TarError, EOFError, OSError, ValueError) as err:
        inspection.withhold(file.path, f"tệp nén hỏng, không kiểm tra được ({_error(err)})")
