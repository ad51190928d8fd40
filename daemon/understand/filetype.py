"""What an attachment is, judged from its name, its declared content type and its bytes, and
whether that alone is enough to withhold it from the forward to the agency's leaders.

The policy is an allowlist (`_POLICY`): a file is forwarded only when its name says a type the
agency reads every day (PDF, Word, Excel, images, plain text, ZIP …), its first bytes (its
magic) say the same type, its content type does not claim another, and no second magic hides
another format in it (a PDF that is also a ZIP). The content checks of each type (PDF actions,
archive entries, macros in Office files) come after, in `attachments`, `pdfscan`, `archives`.

Names are judged as the recipient's computer will see them: NFC, case-insensitive, the final
extension after Windows drops trailing dots and spaces ("hoso.pdf.exe ." runs as .exe). A name
with a bidi control (U+202E makes "hoso\u202efdp.exe" show as "hosoexe.pdf") is withheld
for that alone; zero-width and other invisible characters are dropped before judging.

Every reason is Vietnamese: the forward shows it to the leader beside the file's name.
"""

from __future__ import annotations

import re
import struct
import unicodedata
from dataclasses import dataclass

from daemon.textnorm import nfc

# --- the policy table ---------------------------------------------------------------------
# extensions                               kind          withheld because (None: allowed,
#                                                        after the content checks of its kind)
_POLICY: tuple[tuple[str, str, str | None], ...] = (
    ("pdf",                                  "pdf",        None),
    ("docx xlsx pptx",                       "ooxml",      None),
    ("odt ods odp",                          "odf",        None),
    ("doc xls ppt",                          "ole",        None),
    ("txt csv",                              "text",       None),
    ("xml edxml",                            "xml",        None),
    ("jpg jpeg png gif tif tiff bmp webp",   "image",      None),
    ("zip",                                  "zip",        None),
    ("gz tgz",                               "gzip",       None),
    ("bz2 tbz2",                             "bzip2",      None),
    ("xz txz",                               "xz",         None),
    ("tar",                                  "tar",        None),
    ("p7s",                                  "signature",  None),  # a detached signature
    ("exe scr pif com cpl dll ocx sys drv efi msi msp mst run elf gadget",
     "program",    "tệp chương trình chạy được"),
    ("bat cmd ps1 ps1xml psm1 psd1 vbs vbe js jse mjs wsf wsh wsc sct hta sh bash zsh "
     "py pyw pl rb php jar class ahk au3 scf inf ins isp vb vba applescript command",
     "script",     "tệp mã lệnh (script) chạy được"),
    ("docm dotm xlsm xltm xlsb xlam xla pptm potm ppsm ppam sldm dot xlt pot pps ppsx",
     "macro",      "tài liệu Office có thể chứa macro"),
    ("lnk url desktop website webloc library-ms searchconnector-ms settingcontent-ms",
     "shortcut",   "tệp lối tắt (shortcut) trỏ tới chương trình hoặc trang web"),
    ("iso img vhd vhdx dmg udf vmdk wim",    "disk",       "ảnh đĩa (chứa tệp không kiểm tra)"),
    ("apk appx appxbundle msix msixbundle deb rpm pkg mpkg xpi crx vsix",
     "installer",  "gói cài đặt phần mềm"),
    ("reg chm hlp cab cer crt der p7m p7c pfx p12 msc diagcab theme themepack xbap "
     "application appref-ms cpl grp",
     "system",     "tệp cấu hình/hệ thống mở bằng công cụ của Windows"),
    ("html htm xhtml xht shtml mht mhtml svg svgz hta xsl xslt",
     "markup",     "trang HTML/SVG mở trong trình duyệt (có thể giả trang đăng nhập, chạy mã)"),
    ("rar 7z arj ace lzh lha zipx z lz lzma zst cpio sit sitx",
     "archive",    "tệp nén định dạng không kiểm tra được"),
    ("eml msg rtf one onepkg pub xps oxps ics vcf",
     "other",      "loại tệp không được phép chuyển tiếp"),
)
KIND_OF_EXTENSION: dict[str, tuple[str, str | None]] = {
    ext: (kind, why) for exts, kind, why in _POLICY for ext in exts.split()}
NOT_ALLOWED = "loại tệp không nằm trong danh sách được phép chuyển tiếp"

# What the first bytes of each allowed kind must be (see `magic`): a .pdf must start as a
# PDF, a .docx as a ZIP; "text" is any file without NUL bytes and without another magic.
_EXPECTED_MAGIC: dict[str, frozenset[str]] = {
    "pdf": frozenset({"pdf"}), "ooxml": frozenset({"zip"}), "odf": frozenset({"zip"}),
    "ole": frozenset({"ole"}), "text": frozenset({"text", "markup"}),
    "xml": frozenset({"markup"}),
    "image": frozenset({"jpeg", "png", "gif", "tiff", "bmp", "webp"}),
    "zip": frozenset({"zip"}), "gzip": frozenset({"gzip"}), "bzip2": frozenset({"bzip2"}),
    "xz": frozenset({"xz"}), "tar": frozenset({"tar"}), "signature": frozenset({"der", "text"}),
}

# Magic kinds that are dangerous whatever the name says.
_DANGEROUS_MAGIC: dict[str, str] = {
    "exe": "tệp chương trình Windows (nội dung bắt đầu bằng MZ)",
    "elf": "tệp chương trình Linux (ELF)", "macho": "tệp chương trình macOS (Mach-O)",
    "lnk": "tệp lối tắt Windows (.lnk)", "chm": "tệp trợ giúp HTML biên dịch (.chm)",
    "iso": "ảnh đĩa ISO", "vhd": "ảnh đĩa ảo (VHD)", "dmg": "ảnh đĩa macOS (DMG)",
    "cab": "tệp nén CAB của Windows", "shebang": "tệp mã lệnh (bắt đầu bằng #!)",
    "rar": "tệp nén RAR (không kiểm tra được)", "7z": "tệp nén 7z (không kiểm tra được)",
}

# Declared content types by the family they claim. A declared type that claims a family the
# bytes are not is withheld (a "text/plain" that is a PDF, an "image/jpeg" that is a ZIP);
# application/octet-stream and friends claim nothing.
_OFFICE = frozenset({"zip", "ole", "text"})  # mailers label .csv and .docx "application/msword"…
_CONTENT_TYPE_FAMILY: tuple[tuple[str, frozenset[str] | str], ...] = (
    ("application/pdf application/x-pdf application/acrobat", frozenset({"pdf"})),
    ("application/zip application/x-zip-compressed application/x-zip multipart/x-zip",
     frozenset({"zip"})),
    ("application/msword application/vnd.ms-excel application/vnd.ms-powerpoint "
     "application/vnd.openxmlformats-officedocument.wordprocessingml.document "
     "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet "
     "application/vnd.openxmlformats-officedocument.presentationml.presentation "
     "application/vnd.oasis.opendocument.text application/vnd.oasis.opendocument.spreadsheet "
     "application/vnd.oasis.opendocument.presentation", _OFFICE),
    ("text/plain text/csv text/x-csv text/comma-separated-values application/csv",
     frozenset({"text"})),
    ("text/xml application/xml", frozenset({"markup"})),
    ("application/gzip application/x-gzip", frozenset({"gzip"})),
    ("application/x-bzip2", frozenset({"bzip2"})),
    ("application/x-xz", frozenset({"xz"})),
    ("application/x-tar", frozenset({"tar"})),
    ("application/pkcs7-signature application/x-pkcs7-signature", frozenset({"der", "text"})),
    ("application/x-msdownload application/x-msdos-program application/x-executable "
     "application/x-dosexec application/vnd.microsoft.portable-executable application/x-sh "
     "application/javascript text/javascript application/x-javascript application/hta "
     "application/x-ms-shortcut application/x-ms-installer application/x-msi "
     "application/java-archive application/x-java-archive application/vnd.android.package-archive "
     "application/x-iso9660-image application/x-apple-diskimage application/x-bat "
     "application/x-powershell text/vbscript application/x-vbscript text/html "
     "application/xhtml+xml image/svg+xml application/x-shockwave-flash "
     "application/vnd.ms-word.document.macroenabled.12 "
     "application/vnd.ms-excel.sheet.macroenabled.12 "
     "application/vnd.ms-powerpoint.presentation.macroenabled.12",
     "kiểu nội dung khai báo là tệp chạy được, trang web hoặc tài liệu có macro"),
)
_FAMILY: dict[str, frozenset[str] | str] = {
    ct: family for cts, family in _CONTENT_TYPE_FAMILY for ct in cts.split()}

_BIDI = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
BIDI_NAME = "tên tệp chứa ký tự đảo chiều chữ (ngụy trang đuôi tệp)"
_TRAVERSAL = re.compile(r"(^|[\\/])\.\.([\\/]|$)|^[\\/]|^[a-zA-Z]:")
_TRAILING = " .\t\u00a0\u3000"


@dataclass(frozen=True)
class Verdict:
    """What a file is (`kind`: a kind of `_POLICY`, or "" when unknown) and why it must be
    withheld (None: nothing in its name, type or magic forbids it)."""

    kind: str
    withheld: str | None = None


def judged_name(name: str) -> str:
    """The name as the recipient's system acts on it: NFC, no invisible characters, no trailing
    dots or spaces, lower case, the last path component."""
    name = nfc(name)
    name = "".join(c for c in name if unicodedata.category(c) not in ("Cc", "Cf"))
    name = re.split(r"[\\/]", name)[-1]
    while name and (name[-1] in _TRAILING or unicodedata.category(name[-1]) == "Zs"):
        name = name[:-1]
    return name.casefold()


def _extension(name: str) -> str:
    """The last extension; Windows gives ".exe" (nothing before the dot) one too."""
    _, dot, ext = name.rpartition(".")
    return ext if dot else ""


def judge_name(name: str) -> Verdict:
    """The verdict on a file's name alone (its kind by extension), before its bytes are read."""
    if _BIDI.search(name):
        return Verdict("", BIDI_NAME)
    if _TRAVERSAL.search(nfc(name).strip()):
        return Verdict("", "tên tệp chứa đường dẫn thư mục (có thể ghi đè tệp khác)")
    judged = judged_name(name)
    ext = _extension(judged)
    if not ext:
        return Verdict("")  # no claim: judged by its bytes alone
    kind, why = KIND_OF_EXTENSION.get(ext, ("", NOT_ALLOWED))
    if why is None:
        return Verdict(kind)
    inner = _extension(judged[: -len(ext) - 1])
    disguise = f", giả dạng .{inner}" if KIND_OF_EXTENSION.get(inner, ("", "x"))[1] is None \
        else ""
    return Verdict(kind, f"{why} (.{ext}{disguise})")


# --- magic bytes ------------------------------------------------------------------------------

_MAGIC_AT_START: tuple[tuple[bytes, str], ...] = (
    (b"MZ", "exe"), (b"\x7fELF", "elf"), (b"\xfe\xed\xfa\xce", "macho"),
    (b"\xfe\xed\xfa\xcf", "macho"), (b"\xce\xfa\xed\xfe", "macho"), (b"\xcf\xfa\xed\xfe", "macho"),
    (b"\xca\xfe\xba\xbe", "macho"),  # also a Java class: dangerous either way
    (b"L\x00\x00\x00\x01\x14\x02\x00", "lnk"), (b"ITSF", "chm"), (b"MSCF", "cab"),
    (b"conectix", "vhd"), (b"vhdxfile", "vhd"), (b"#!", "shebang"),
    (b"PK\x03\x04", "zip"), (b"PK\x05\x06", "zip"), (b"PK\x07\x08", "zip"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "ole"), (b"Rar!\x1a\x07", "rar"),
    (b"7z\xbc\xaf\x27\x1c", "7z"), (b"\x1f\x8b", "gzip"), (b"BZh", "bzip2"),
    (b"\xfd7zXZ\x00", "xz"), (b"\xff\xd8\xff", "jpeg"), (b"\x89PNG\r\n\x1a\n", "png"),
    (b"GIF87a", "gif"), (b"GIF89a", "gif"), (b"II*\x00", "tiff"), (b"MM\x00*", "tiff"),
    (b"BM", "bmp"), (b"{\\rtf", "rtf"), (b"%!PS", "postscript"),
)
_BOMS = (b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")


def magic(data: bytes) -> str:
    """The format the first bytes say ("pdf", "zip", "exe" …), "text" for bytes without NUL and
    without a known signature, "" when unknown."""
    for signature, kind in _MAGIC_AT_START:
        if data.startswith(signature):
            return kind
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[257:262] == b"ustar":
        return "tar"
    if any(data[at:at + 5] == b"CD001" for at in (0x8001, 0x8801, 0x9001)):
        return "iso"
    if data[-512:-508] == b"koly":
        return "dmg"
    if data[-512:-504] == b"conectix":
        return "vhd"
    if b"%PDF-" in data[:1024]:
        return "pdf"  # readers accept junk before the header; `second_magic` judges it
    if data[:1] == b"\x30" and data[1:2] in (b"\x80", b"\x81", b"\x82", b"\x83"):
        return "der"
    text = _as_text(data[:65536])
    if text is None:
        return ""
    if text.lstrip("\ufeff \t\r\n").startswith("<"):
        return "markup"
    return "text"


def _as_text(head: bytes) -> str | None:
    """The start of a file as text, or None when it is binary."""
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return head.decode("utf-16", "replace")
    if b"\x00" in head:
        return None
    return head.decode("utf-8", "replace")


_HTML_SNIFF = re.compile(rb"<(script|html|svg|iframe|body|!doctype\s+html)\b", re.I)
_ARCHIVE_KINDS = frozenset({"zip", "gzip", "bzip2", "xz", "tar"})


def second_magic(data: bytes, kind: str) -> str | None:
    """Another format hidden in a file whose first bytes say `kind` (a polyglot): a ZIP
    directory at its end, a PDF header after other bytes, HTML a browser would sniff, a RAR
    or 7z archive appended. Returns the hidden format's name."""
    if kind != "zip" and _zip_end(data):
        return "ZIP"
    if kind not in ("pdf", *_ARCHIVE_KINDS) and b"%PDF-" in data[:1024]:
        return "PDF"
    if kind not in ("text", "markup", *_ARCHIVE_KINDS) and _HTML_SNIFF.search(data[:1024]):
        return "HTML"
    if kind not in ("rar", "7z", *_ARCHIVE_KINDS):
        for signature, name in ((b"Rar!\x1a\x07", "RAR"), (b"7z\xbc\xaf\x27\x1c", "7z")):
            if data.find(signature, 1) != -1:
                return name
    return None


def _zip_end(data: bytes) -> bool:
    """Whether a ZIP end-of-central-directory record that a ZIP reader would accept lies in the
    last 64 KiB (ZIP readers read a file from its end, so anything may come before)."""
    start = max(0, len(data) - 65_557)
    at = data.rfind(b"PK\x05\x06", start)
    while at != -1:
        record = data[at:at + 22]
        if len(record) == 22:
            _, _, entries, total, size, _, _ = struct.unpack("<4HIIH", record[4:])
            if entries <= total and size <= at:
                return True
        at = data.rfind(b"PK\x05\x06", start, at)
    return False


def judge(name: str, content_type: str, data: bytes) -> Verdict:
    """The verdict on one file from its name, its declared content type and its bytes."""
    verdict = judge_name(name)
    if verdict.withheld:
        return verdict
    found = magic(data)
    if found in _DANGEROUS_MAGIC:
        return Verdict(found, _DANGEROUS_MAGIC[found])
    if found == "ole" and _ole_has(data, "EncryptedPackage"):
        return Verdict("ole", "tài liệu có mật khẩu: không kiểm tra được")
    if hidden := second_magic(data, found):
        return Verdict(found, f"tệp đa định dạng: vừa là {_shown(found)} vừa là {hidden}")
    kind = verdict.kind or _kind_of_magic(found)
    if not kind:
        return Verdict("", NOT_ALLOWED if found else "không nhận ra định dạng tệp")
    if found not in _EXPECTED_MAGIC.get(kind, frozenset()):
        return Verdict(kind, f"nội dung ({_shown(found)}) không khớp với đuôi tên tệp")
    family = _FAMILY.get(content_type.lower().strip())
    if isinstance(family, str):
        return Verdict(kind, f"{family} ({content_type})")
    if family is not None and found not in family:
        return Verdict(kind, f"kiểu nội dung khai báo ({content_type}) không khớp với nội dung "
                             f"thực ({_shown(found)})")
    return Verdict(kind)


def judge_dangerous(name: str, data: bytes) -> str | None:
    """Why a part of a container (not a file a person opens by itself) is dangerous: a name of
    a dangerous kind or the magic of a program, or None. Unknown kinds are not judged here."""
    verdict = judge_name(name)
    if verdict.withheld and verdict.kind not in ("", "archive", "other"):
        return verdict.withheld
    found = magic(data)
    return _DANGEROUS_MAGIC.get(found) if found not in ("rar", "7z") else None


def _kind_of_magic(found: str) -> str:
    """The kind of a file without an extension, from its bytes (only allowed kinds)."""
    for kind, expected in _EXPECTED_MAGIC.items():
        if found in expected and kind not in ("ooxml", "odf", "signature"):
            return kind
    return ""


def _shown(found: str) -> str:
    return {"": "không rõ", "text": "văn bản thuần", "markup": "XML/HTML"}.get(
        found, found.upper())


def _ole_has(data: bytes, stream: str) -> bool:
    """Whether an OLE compound file (Word/Excel 97-2003) has a stream or storage of this name.
    Its directory is a run of 128-byte entries, each starting with the name in UTF-16LE and
    keeping the name's byte length (with its terminator) at offset 64: the name's bytes at
    such a place are a directory entry, not the same word in the document's text."""
    name = stream.encode("utf-16-le") + b"\x00\x00"
    length = struct.pack("<H", len(name))
    at = data.find(name)
    while at != -1:
        if at % 128 == 0 and data[at + 64:at + 66] == length:
            return True
        at = data.find(name, at + 1)
    return False


# Streams of an OLE file that mean code or a hidden file: VBA macros (Word keeps them in
# "Macros", Excel in "_VBA_PROJECT_CUR"), a packaged file (Ole10Native), an Equation Editor
# object (the classic exploit of old Office).
_OLE_ACTIVE = (("_VBA_PROJECT", "macro VBA"), ("Macros", "macro VBA"),
               ("\x01Ole10Native", "tệp đóng gói nhúng (OLE Package)"),
               ("Equation Native", "đối tượng Equation Editor (lỗ hổng đã biết)"))


def ole_active(data: bytes) -> str | None:
    """Why a Word/Excel/PowerPoint 97-2003 file must be withheld, or None."""
    for stream, why in _OLE_ACTIVE:
        if _ole_has(data, stream):
            return f"tài liệu Office 97-2003 có {why}"
    return None


_SCRIPT_IN_MARKUP = re.compile(
    r"<\s*([\w.-]+:)?script\b|\bon[a-z]+\s*=|javascript\s*:|vbscript\s*:|<!ENTITY|"
    r"<\?xml-stylesheet|<\s*([\w.-]+:)?(iframe|object|embed|foreignObject|handler)\b|"
    r"data\s*:\s*text/html", re.I)


def markup_active(data: bytes) -> str | None:
    """Why an XML file must be withheld (a script, an event handler, a stylesheet that runs,
    an entity declaration), or None. Text it cannot decode is withheld too: a check it
    cannot read proves nothing."""
    head = data.lstrip(b"\xef\xbb\xbf \t\r\n")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        text = data.decode("utf-16", "replace")
    elif b"\x00" in data:
        return "tệp XML mã hóa không đọc được"
    else:
        text = data.decode("utf-8", "replace")
        declared = re.match(rb"<\?xml[^>]*encoding\s*=\s*[\"']([\w.:-]+)", head)
        if declared and declared.group(1).lower() not in (
                b"utf-8", b"utf8", b"us-ascii", b"ascii", b"iso-8859-1", b"windows-1258",
                b"windows-1252", b"latin-1"):
            return "tệp XML mã hóa không kiểm tra được"
    if match := _SCRIPT_IN_MARKUP.search(text):
        return f"tệp XML có mã chạy được hoặc tham chiếu ngoài ({match.group(0)[:20].strip()})"
    return None
