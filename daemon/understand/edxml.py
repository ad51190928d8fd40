"""edXML packages: the national document-exchange format of e-office systems (QCVN
102:2016/BTTTT, namespace http://www.mic.gov.vn/TBT/QCVN_102_2016).

A package is one XML file. `edXMLEnvelope/edXMLHeader/MessageHeader` states the document's
metadata as the sending system registered it: `From` (OrganId, OrganName …), one or more `To`,
`Code` (CodeNumber, CodeNotation), `PromulgationInfo` (Place, PromulgationDate),
`DocumentType` (Type, TypeName), `Subject`, `SteeringType`, `OtherInfo` (Priority …),
`DocumentId`. The files travel base64-encoded in `AttachmentEncoded/Attachment`
(ContentType, ContentId, AttachmentName, ContentTransferEncoded), beside the envelope, named
by the envelope's `edXMLBody/edXMLManifest/Reference` entries. The standard's header carries
urgency (Priority) but no confidentiality level: a mark is found by the confidentiality scan
over the subject and every embedded file, like anywhere else.

Read safely: defusedxml refuses any DTD, entity or external reference; the parse is
incremental and stops past `MAX_DEPTH` levels or `MAX_ELEMENTS` elements; each header value is
one line of at most `MAX_VALUE` characters; the package's size is bounded by the attachment's
(`[limits] max_attachment_bytes`). A package that cannot be read raises `PackageError` with a
reason in Vietnamese: the attachment is then withheld, like any file that cannot be checked.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
import xml.etree.ElementTree as ET  # types and ParseError only: parsing is defused
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import date

from defusedxml import ElementTree as SafeTree
from defusedxml.common import DefusedXmlException

from daemon.models import Attachment, Document, Package
from daemon.textnorm import fold, header_safe, nfc
from daemon.understand.extract import ABBREVIATIONS, LEGAL_TYPES, TYPES, URGENCY

NAMESPACE = "http://www.mic.gov.vn/TBT/QCVN_102_2016"
MAX_DEPTH = 32  # element levels: the standard's deepest path has 6
MAX_ELEMENTS = 20_000  # elements in one package: a header has about 60, each file 6
MAX_VALUE = 500  # characters of one header value
MAX_FILES = 200  # embedded files read

# OtherInfo/Priority, the urgency code of QCVN 102:2016: 0 ordinary, 1 Khẩn, 2 Thượng khẩn,
# 3 Hỏa tốc, 4 Hỏa tốc hẹn giờ (Decree 30's marks: the appointed hour is no mark of its own).
PRIORITY = {"0": None, "1": "Khẩn", "2": "Thượng khẩn", "3": "Hỏa tốc", "4": "Hỏa tốc"}
_TYPE_BY_FOLD = {fold(name): name for name in (*TYPES, *LEGAL_TYPES, "Công văn")}
# What a sending system writes in a field it has no value for.
_EMPTY = {"", "n/a", "na", "null", "none", "-"}
# How the root element opens: sniffed before parsing (the first 4 KiB).
_ROOT = re.compile(rb"<(?:[\w.-]+:)?edXML(?:Envelope)?[\s>/]")
_DATE = re.compile(r"^(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})(?:[T ].*)?$|"
                   r"^(\d{1,2})[-/.](\d{1,2})[-/.](\d{4})(?:[T ].*)?$")
_NUMBERED = re.compile(r"^\s*(\d+)\s*/\s*(.+)$")  # "12/QĐ-UBND" in one field


class PackageError(Exception):
    """The package cannot be read; `reason` says why, in Vietnamese, for the forward."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Embedded:
    """One file carried in the package."""

    name: str
    content_type: str
    data: bytes


def looks_like(data: bytes) -> bool:
    """Whether `data` opens as an edXML package (its root element is edXML or
    edXMLEnvelope), whatever namespace it claims."""
    return bool(_ROOT.search(data[:4096]))


def _name(tag: str) -> tuple[str, str]:
    """(namespace, local name) of an element's tag."""
    if tag.startswith("{"):
        space, _, local = tag[1:].partition("}")
        return space, local
    return "", tag


def _children(element: ET.Element | None, name: str) -> Iterator[ET.Element]:
    """The children of `element` called `name`, in the edXML namespace or in none (some
    systems write the attachments' part without one)."""
    if element is None:
        return
    for child in element:
        if isinstance(child.tag, str) and _name(child.tag) in ((NAMESPACE, name), ("", name)):
            yield child


def _child(element: ET.Element | None, *path: str) -> ET.Element | None:
    for name in path:
        element = next(_children(element, name), None)
    return element


def _value(element: ET.Element | None, *path: str) -> str | None:
    """The text at `path` below `element` as one safe line, None when absent or a filler."""
    found = _child(element, *path)
    if found is None or found.text is None:
        return None
    text = header_safe(nfc(found.text), MAX_VALUE)
    return None if text.casefold() in _EMPTY else text


def _tree(data: bytes) -> ET.Element:
    """Parse `data` incrementally, refusing DTDs and entities, within the depth and element
    bounds. Raises PackageError."""
    depth = count = 0
    root: ET.Element | None = None
    try:
        for event, element in SafeTree.iterparse(io.BytesIO(data), events=("start", "end"),
                                                 forbid_dtd=True):
            if event == "end":
                depth -= 1
                continue
            root = root if root is not None else element
            depth, count = depth + 1, count + 1
            if depth > MAX_DEPTH:
                raise PackageError(f"gói edXML lồng sâu quá {MAX_DEPTH} cấp")
            if count > MAX_ELEMENTS:
                raise PackageError(f"gói edXML có hơn {MAX_ELEMENTS} phần tử")
    except DefusedXmlException as err:
        raise PackageError("gói edXML có khai báo DTD, thực thể (entity) hoặc tham chiếu "
                           f"ngoài, không đọc ({type(err).__name__})") from err
    except ET.ParseError as err:
        raise PackageError(f"gói edXML không phải XML hợp lệ ({err})") from err
    except (ValueError, LookupError) as err:  # an encoding expat cannot decode
        raise PackageError(f"gói edXML không đọc được ({type(err).__name__})") from err
    if root is None:
        raise PackageError("gói edXML rỗng")
    return root


def _envelope(root: ET.Element) -> ET.Element:
    space, local = _name(root.tag)
    if space != NAMESPACE:
        raise PackageError(f"gói {local} không thuộc không gian tên edXML của QCVN 102:2016 "
                           f"({header_safe(space, 80) or 'không có'})")
    envelope = root if local == "edXMLEnvelope" else _child(root, "edXMLEnvelope")
    if envelope is None:
        raise PackageError("gói edXML không có edXMLEnvelope")
    return envelope


def _date(text: str | None) -> date | None:
    match = _DATE.match(text or "")
    if not match:
        return None
    y, m, d = (match[1], match[2], match[3]) if match[1] else (match[6], match[5], match[4])
    try:
        return date(int(y), int(m), int(d))
    except ValueError:
        return None


def _type(name: str | None, symbol: str | None) -> str | None:
    """The document type by the name the package gives, as Decree 30 spells it; without a
    name, the one its symbol's code stands for ("QĐ-UBND": Quyết định)."""
    if name:
        return _TYPE_BY_FOLD.get(fold(name), name if not name.isupper() else name.capitalize())
    if symbol:
        return ABBREVIATIONS.get(symbol.split("-")[0].split("/")[-1])
    return None


def _urgency(code: str | None) -> str | None:
    """The urgency mark of a Priority code, or of its name when a system writes the name."""
    if code is None:
        return None
    if code.strip() in PRIORITY:
        return PRIORITY[code.strip()]
    bare = fold(code, accents=False)
    return next((name for key, name in URGENCY if bare == key), None)


def _code(header: ET.Element) -> tuple[str | None, str | None]:
    """(number, symbol): CodeNumber "12" and CodeNotation "QĐ-UBND"; a number written into the
    notation ("12/QĐ-UBND") is taken out of it."""
    number, symbol = _value(header, "Code", "CodeNumber"), _value(header, "Code", "CodeNotation")
    if symbol and (match := _NUMBERED.match(symbol)):
        number, symbol = number or match[1], match[2]
    if number and not symbol and (match := _NUMBERED.match(number)):
        number, symbol = match[1], match[2]
    if symbol:
        symbol = symbol.replace(" ", "").strip(".-/") or None
    return number, symbol


def _document(header: ET.Element) -> Document:
    number, symbol = _code(header)
    return Document(
        number=number, symbol=symbol,
        type=_type(_value(header, "DocumentType", "TypeName"), symbol),
        issuer=_value(header, "From", "OrganName"),
        place=_value(header, "PromulgationInfo", "Place"),
        date=_date(_value(header, "PromulgationInfo", "PromulgationDate")),
        summary=_value(header, "Subject"),
        urgency=_urgency(_value(header, "OtherInfo", "Priority")),
        source="edxml",
    )


def _files(root: ET.Element, envelope: ET.Element) -> tuple[list[Embedded], list[str]]:
    """The embedded files and what was wrong with any of them (bad base64, no content)."""
    named = {(_value(ref, "ContentId") or "").removeprefix("cid:"): _value(ref, "AttachmentName")
             for ref in _children(_child(envelope, "edXMLBody", "edXMLManifest"), "Reference")}
    parts = [part for holder in (*_children(root, "AttachmentEncoded"),
                                 *_children(envelope, "AttachmentEncoded"))
             for part in _children(holder, "Attachment")]
    files: list[Embedded] = []
    problems: list[str] = []
    if len(parts) > MAX_FILES:
        problems.append(f"gói có {len(parts)} tệp đính kèm, chỉ đọc {MAX_FILES} tệp đầu")
    for index, part in enumerate(parts[:MAX_FILES], 1):
        cid = (_value(part, "ContentId") or "").removeprefix("cid:")
        name = _value(part, "AttachmentName") or named.get(cid) or f"tep-dinh-kem-{index}"
        encoded = _child(part, "ContentTransferEncoded")
        try:
            data = base64.b64decode(re.sub(r"\s+", "", encoded.text or "") if encoded is not None
                                    else "", validate=True)
        except (binascii.Error, ValueError):
            problems.append(f"tệp {name} trong gói edXML hỏng mã base64")
            continue
        if not data:
            problems.append(f"tệp {name} trong gói edXML không có nội dung")
            continue
        files.append(Embedded(name, _value(part, "ContentType") or "application/octet-stream",
                              data))
    return files, problems


def read(data: bytes) -> tuple[Package, list[Embedded]]:
    """What the package `data` says, and the files it carries. Raises PackageError."""
    root = _tree(data)
    envelope = _envelope(root)
    header = _child(envelope, "edXMLHeader", "MessageHeader")
    files, problems = _files(root, envelope)
    if header is None:
        problems.insert(0, "gói edXML không có MessageHeader")
        return Package(document=None, files=tuple(f.name for f in files),
                       problems=tuple(problems)), files
    recipients = tuple((_value(to, "OrganId") or "", _value(to, "OrganName") or "")
                       for to in list(_children(header, "To"))[:50])
    return Package(
        document=_document(header),
        sender_id=_value(header, "From", "OrganId"),
        recipients=recipients,
        document_id=_value(header, "DocumentId"),
        type_code=_value(header, "DocumentType", "Type"),
        priority=_value(header, "OtherInfo", "Priority"),
        steering_type=_value(header, "SteeringType"),
        files=tuple(f.name for f in files),
        problems=tuple(problems),
    ), files


def header_text(package: Package) -> str:
    """The package's header as lines of text, for the confidentiality scan and the search of
    the applicant's details: what a person would read on the exchange system's screen."""
    doc = package.document
    if doc is None:
        return ""
    lines = [doc.issuer, *(name for _, name in package.recipients),
             f"Số: {doc.number or ''}/{doc.symbol}" if doc.symbol else None, doc.type,
             doc.summary]
    return "\n".join(line for line in lines if line)


def prevail(found: Document | None, attachments: tuple[Attachment, ...]) -> Document | None:
    """The document as the first edXML package among `attachments` states it (source
    "edxml"), its missing fields filled from `found` (what was read off the text, or by OCR
    off a scan: their confidence and doubts go with them) when that is the same document;
    `found` itself when no package states one."""
    stated = next((a.package.document for a in attachments
                   if a.package is not None and a.package.document is not None), None)
    if stated is None:
        return found
    if found is None or (found.symbol and stated.symbol and found.symbol != stated.symbol):
        return stated
    origins = dict(found.filled_from)
    gaps = {name: getattr(found, name) for name in Document.FIELDS
            if getattr(stated, name) is None and getattr(found, name) is not None}
    return replace(stated, **gaps, filled_from=tuple(
        (name, origins.get(name, found.source)) for name in gaps),
        file=found.file if gaps else None,
        confidence=tuple((name, score) for name, score in found.confidence if name in gaps),
        unsure=tuple(name for name in found.unsure if name in gaps))
