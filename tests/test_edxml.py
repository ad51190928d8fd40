"""edXML packages (QCVN 102:2016): the header's fields prevail with source "edxml", the
embedded files are judged like files in an archive, and hostile XML is refused, never
crashing and never read (billion laughs, external entities, depth, bad base64, a foreign
namespace). Packages are built here from the standard's public structure."""

from __future__ import annotations

import base64
import json
import time
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import date
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daemon import config
from daemon.cli import main
from daemon.config import LimitsConfig
from daemon.models import Attachment, Document, Understanding
from daemon.textnorm import header_safe, nfc
from daemon.understand import NoCases, attachments, edxml, understand
from tests.conftest import AUTHSERV_ID, ROOT
from tests.desk import Desk

NS = edxml.NAMESPACE
LIMITS = LimitsConfig()

HEADER: dict[str, Any] = {
    "from_id": "000.00.00.H56", "from_name": "Ủy ban nhân dân tỉnh Tây Ninh",
    "to": [("000.00.22.H56", "Sở Xây dựng tỉnh Tây Ninh"),
           ("000.00.12.H56", "Sở Tài chính tỉnh Tây Ninh")],
    "number": "1234", "notation": "QĐ-UBND", "place": "Tây Ninh",
    "date": "2026/11/09", "type": "1", "type_name": "Quyết định",
    "subject": "Về việc phê duyệt kế hoạch xây dựng nông thôn mới năm 2027",
    "priority": "2", "steering": "0", "document_id": "000.00.00.H56,2026/11/09,1234/QĐ-UBND",
}

# The text of the decision the package carries: its own header says another number, so a
# test can tell which source won.
DECISION = """ỦY BAN NHÂN DÂN
TỈNH TÂY NINH
Số: 999/QĐ-UBND
QUYẾT ĐỊNH
Về việc phê duyệt kế hoạch
Tây Ninh, ngày 01 tháng 11 năm 2026

Căn cứ Luật Tổ chức chính quyền địa phương;
"""


def _el(parent: ET.Element, name: str, text: str | None = None, *, ns: str = NS) -> ET.Element:
    element = ET.SubElement(parent, f"{{{ns}}}{name}" if ns else name)
    if text is not None:
        element.text = text
    return element


def package(header: Mapping[str, object] | None = HEADER,
            files: Sequence[tuple[str, str, bytes | str]] | None = None, *,
            ns: str = NS) -> bytes:
    """An edXML package as the standard lays it out: edXML > edXMLEnvelope > edXMLHeader >
    MessageHeader, edXMLBody > edXMLManifest > Reference, AttachmentEncoded > Attachment.
    A file given as str is put in as its (possibly broken) base64 text."""
    if ns:
        ET.register_namespace("edXML", ns)
    root = ET.Element(f"{{{ns}}}edXML" if ns else "edXML")
    envelope = _el(root, "edXMLEnvelope", ns=ns)
    head = _el(envelope, "edXMLHeader", ns=ns)
    if header is not None:
        h: Mapping[str, Any] = header
        message = _el(head, "MessageHeader", ns=ns)
        sender = _el(message, "From", ns=ns)
        _el(sender, "OrganId", str(h["from_id"]), ns=ns)
        _el(sender, "OrganizationInCharge", str(h["from_name"]), ns=ns)
        _el(sender, "OrganName", str(h["from_name"]), ns=ns)
        for organ_id, name in h.get("to") or []:
            to = _el(message, "To", ns=ns)
            _el(to, "OrganId", organ_id, ns=ns)
            _el(to, "OrganName", name, ns=ns)
        code = _el(message, "Code", ns=ns)
        for key, tag in (("number", "CodeNumber"), ("notation", "CodeNotation")):
            if key in h:
                _el(code, tag, str(h[key]), ns=ns)
        info = _el(message, "PromulgationInfo", ns=ns)
        for key, tag in (("place", "Place"), ("date", "PromulgationDate")):
            if key in h:
                _el(info, tag, str(h[key]), ns=ns)
        kind = _el(message, "DocumentType", ns=ns)
        for key, tag in (("type", "Type"), ("type_name", "TypeName")):
            if key in h:
                _el(kind, tag, str(h[key]), ns=ns)
        if "subject" in h:
            _el(message, "Subject", str(h["subject"]), ns=ns)
        other = _el(message, "OtherInfo", ns=ns)
        if "priority" in h:
            _el(other, "Priority", str(h["priority"]), ns=ns)
        _el(other, "PageAmount", "1", ns=ns)
        if "steering" in h:
            _el(message, "SteeringType", str(h["steering"]), ns=ns)
        if "document_id" in h:
            _el(message, "DocumentId", str(h["document_id"]), ns=ns)
    manifest = _el(_el(envelope, "edXMLBody", ns=ns), "edXMLManifest", ns=ns)
    encoded = _el(root, "AttachmentEncoded", ns=ns)
    for index, (name, content_type, data) in enumerate(files or [], 1):
        reference = _el(manifest, "Reference", ns=ns)
        _el(reference, "AttachmentName", name, ns=ns)
        _el(reference, "ContentId", f"cid:file{index}", ns=ns)
        part = _el(encoded, "Attachment", ns=ns)
        _el(part, "ContentType", content_type, ns=ns)
        _el(part, "ContentId", f"file{index}", ns=ns)
        _el(part, "ContentTransferEncoded",
            data if isinstance(data, str) else base64.b64encode(data).decode(), ns=ns)
        _el(part, "AttachmentName", name, ns=ns)
    body: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=False)
    return b'<?xml version="1.0" encoding="utf-8"?>\n' + body


FILES: list[tuple[str, str, bytes | str]] = [
    ("Quyết định 1234.txt", "text/plain", DECISION.encode()),
    ("Phụ lục kế hoạch.txt", "text/plain", "Phụ lục: danh mục công trình".encode()),
]


def test_the_header_is_read_with_vietnamese_names() -> None:
    found, files = edxml.read(package(files=FILES))
    doc = found.document
    assert doc is not None
    assert (doc.number, doc.symbol, doc.type) == ("1234", "QĐ-UBND", "Quyết định")
    assert doc.issuer == "Ủy ban nhân dân tỉnh Tây Ninh"
    assert (doc.place, doc.date) == ("Tây Ninh", date(2026, 11, 9))
    assert doc.summary == HEADER["subject"]
    assert doc.urgency == "Thượng khẩn" and doc.confidentiality is None
    assert doc.sources() == {name: "edxml" for name in doc.sources()}
    assert found.sender_id == "000.00.00.H56"
    assert found.recipients == tuple(HEADER["to"])
    assert found.document_id == HEADER["document_id"] and found.priority == "2"
    assert [(f.name, f.data) for f in files] == [(n, d) for n, _, d in FILES]
    assert found.files == ("Quyết định 1234.txt", "Phụ lục kế hoạch.txt")


@pytest.mark.parametrize(("code", "mark"), [("0", None), ("1", "Khẩn"), ("2", "Thượng khẩn"),
                                            ("3", "Hỏa tốc"), ("4", "Hỏa tốc"),
                                            ("Thượng khẩn", "Thượng khẩn"), ("9", None)])
def test_priority_codes_become_the_decree_marks(code: str, mark: str | None) -> None:
    found, _ = edxml.read(package({**HEADER, "priority": code}))
    assert found.document is not None and found.document.urgency == mark


@pytest.mark.parametrize(("fields", "field", "expected"), [
    ({"number": "1234/QĐ-UBND", "notation": ""}, "code", ("1234", "QĐ-UBND")),
    ({"number": "", "notation": "1234/QĐ-UBND"}, "code", ("1234", "QĐ-UBND")),
    ({"notation": " QĐ - UBND "}, "code", ("1234", "QĐ-UBND")),
    ({"date": "09/11/2026"}, "date", date(2026, 11, 9)),
    ({"date": "2026-11-09T08:30:00"}, "date", date(2026, 11, 9)),
    ({"date": "2026/02/30"}, "date", None),
    ({"type_name": "", "notation": "KH-UBND"}, "type", "Kế hoạch"),
    ({"type_name": "CÔNG VĂN"}, "type", "Công văn"),
    ({"type_name": "quyết định"}, "type", "Quyết định"),
    ({"place": "N/A"}, "place", None),
])
def test_the_ways_systems_fill_the_fields(fields: dict[str, str], field: str,
                                          expected: object) -> None:
    found, _ = edxml.read(package({**HEADER, **fields}))
    doc = found.document
    assert doc is not None
    got = {"code": (doc.number, doc.symbol), "date": doc.date, "type": doc.type,
           "place": doc.place}
    assert got[field] == expected


def test_embedded_files_are_judged_like_archive_entries() -> None:
    """A program inside the package withholds it; the texts of its files are read."""
    files = [*FILES, ("cai-dat.exe", "application/octet-stream", b"MZ\x90\x00program")]
    reading = attachments.read("van-ban.edxml", "application/octet-stream",
                               package(files=files), LIMITS)
    assert reading.withheld and "cai-dat.exe" in reading.withheld
    labels = [label for label, _ in reading.pieces]
    assert "van-ban.edxml/Quyết định 1234.txt" in labels
    assert "van-ban.edxml/Phụ lục kế hoạch.txt" in labels
    assert reading.package is not None and reading.package.document is not None
    clean = attachments.read("van-ban.edxml", "application/xml", package(files=FILES), LIMITS)
    assert clean.withheld is None and clean.package is not None
    assert clean.package.document == reading.package.document


def test_entries_and_depth_limits_count_the_package() -> None:
    many = [(f"tep-{i}.txt", "text/plain", b"x") for i in range(12)]
    few = replace(LIMITS, archive_entries=10)
    reading = attachments.read("goi.edxml", "application/xml", package(files=many), few)
    assert reading.withheld and "archive_entries" in reading.withheld
    inner = package(files=FILES)
    nested = package(files=[("trong.edxml", "application/xml", inner)])
    shallow = replace(LIMITS, archive_depth=1)
    reading = attachments.read("ngoai.edxml", "application/xml", nested, shallow)
    assert reading.withheld and "archive_depth" in reading.withheld


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE edXML [<!ENTITY a "hahahahahahahahahaha">
<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">
<!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;"><!ENTITY e "&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;">
<!ENTITY f "&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;"><!ENTITY g "&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;">]>
<edXML xmlns="http://www.mic.gov.vn/TBT/QCVN_102_2016"><edXMLEnvelope><edXMLHeader>
<MessageHeader><Subject>&g;</Subject></MessageHeader></edXMLHeader></edXMLEnvelope></edXML>"""
EXTERNAL = b"""<?xml version="1.0"?>
<!DOCTYPE edXML [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<edXML xmlns="http://www.mic.gov.vn/TBT/QCVN_102_2016"><edXMLEnvelope><edXMLHeader>
<MessageHeader><From><OrganName>&secret;</OrganName></From></MessageHeader></edXMLHeader>
</edXMLEnvelope></edXML>"""
# A DTD without an entity declaration, which the markup scan alone would not catch.
DOCTYPE = (b'<!DOCTYPE edXML SYSTEM "http://127.0.0.1:1/edxml.dtd">'
           + package(files=FILES).split(b"\n", 1)[1])
DEEP = (b'<edXML xmlns="http://www.mic.gov.vn/TBT/QCVN_102_2016">' + b"<a>" * 100_000
        + b"</a>" * 100_000 + b"</edXML>")
WIDE = (b'<edXML xmlns="http://www.mic.gov.vn/TBT/QCVN_102_2016">' + b"<a/>" * 100_000
        + b"</edXML>")


@pytest.mark.parametrize(("data", "why"), [
    (BILLION_LAUGHS, "DTD"), (EXTERNAL, "DTD"), (DOCTYPE, "DTD"),
    (DEEP, "lồng sâu"), (WIDE, "phần tử"),
    (package(files=[("a.txt", "text/plain", "không phải base64!!")]), "base64"),
    (package(ns="http://www.mic.gov.vn/TBT/khac"), "không gian tên"),
    (package(ns=""), "không gian tên"),
    (package(files=FILES)[:300], "XML hợp lệ"),
    (b'<edXML xmlns="http://www.mic.gov.vn/TBT/QCVN_102_2016"/>', "edXMLEnvelope"),
])
def test_hostile_packages_are_withheld_unread(data: bytes, why: str) -> None:
    started = time.monotonic()
    reading = attachments.read("goi.edxml", "application/octet-stream", data, LIMITS)
    assert time.monotonic() - started < 10  # bounded work, not a precise timing
    assert reading.withheld and why in reading.withheld, reading.withheld
    assert "root:" not in "".join(text for _, text in reading.pieces)  # /etc/passwd unread
    assert "hahahahaha" * 10 not in "".join(text for _, text in reading.pieces)


def test_a_package_without_its_header_leaves_the_fields_to_the_text() -> None:
    found, files = edxml.read(package(None, FILES))
    assert found.document is None and "MessageHeader" in found.problems[0]
    assert len(files) == 2


def test_missing_fields_are_filled_from_the_carried_document(tmp_path: Path) -> None:
    sparse = {"from_id": "000.00.00.H56", "from_name": "Ủy ban nhân dân tỉnh Tây Ninh",
              "number": "1234", "notation": "QĐ-UBND"}
    raw = _mail(package(sparse, FILES))
    doc = _understand(tmp_path, raw).document
    assert doc is not None and doc.source == "edxml"
    assert (doc.number, doc.issuer) == ("1234", "Ủy ban nhân dân tỉnh Tây Ninh")
    # The place, the date and the summary come from the decision's own header.
    assert doc.place == "Tây Ninh" and doc.date == date(2026, 11, 1)
    sources = doc.sources()
    assert sources["number"] == sources["issuer"] == "edxml"
    assert sources["date"] == "goi-van-ban.edxml/Quyết định 1234.txt"


def test_fields_filled_from_a_scan_keep_their_confidence_and_doubts() -> None:
    """A package without place and date, carrying a scan OCR read: the two fields come from
    the scan with their scores, the clerk is asked to check the unsure one; the package's
    own fields are never marked unsure."""
    found, _ = edxml.read(package({k: v for k, v in HEADER.items()
                                   if k not in ("place", "date")}))
    carrier = Attachment("goi.edxml", "application/xml", 1, "0" * 64, b"x", package=found)
    scanned = Document(number="1234", symbol="QĐ-UBND", place="Tây Ninh",
                       date=date(2026, 11, 9), issuer="UBND TỈNH TÂY NINH", source="ocr",
                       file="goi.edxml/quet.pdf",
                       confidence=(("number", 0.9), ("place", 0.97), ("date", 0.41)),
                       unsure=("date", "number"))
    doc = edxml.prevail(scanned, (carrier,))
    assert doc is not None and doc.issuer == "Ủy ban nhân dân tỉnh Tây Ninh"
    assert doc.sources()["place"] == doc.sources()["date"] == "ocr"
    assert doc.sources()["number"] == "edxml"
    assert doc.checks() == ("date",)
    assert doc.as_json()["confidence"] == {"place": 0.97, "date": 0.41}
    other = replace(scanned, symbol="KH-UBND")  # another document: nothing taken from it
    assert edxml.prevail(other, (carrier,)) == found.document


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(f"""[agency]
name = "Sở Xây dựng tỉnh Tây Ninh"
code = "000.00.22.H56"
[[mailboxes]]
host = "127.0.0.1"
username = "vanthu"
password = "không dùng"
[smtp]
host = "127.0.0.1"
from = "Văn thư <vanthu.sxd@tayninh.gov.vn>"
[security]
authserv_id = "{AUTHSERV_ID}"
[rules]
dir = "{ROOT / 'rules'}"
""", encoding="utf-8")
    return path


def _understand(tmp_path: Path, raw: bytes) -> Understanding:
    return understand(raw, config.load(_config(tmp_path)), NoCases())[1]


def _mail(data: bytes, sender: str = "vanthu@tayninh.gov.vn",
          name: str = "goi-van-ban.edxml") -> bytes:
    msg = EmailMessage(policy=SMTP)
    msg["Authentication-Results"] = (f"{AUTHSERV_ID}; dkim=pass header.d=tayninh.gov.vn; "
                                     "dmarc=pass header.from=tayninh.gov.vn")
    msg["From"] = f"Văn thư UBND tỉnh <{sender}>"
    msg["To"] = "vanthu.sxd@tayninh.gov.vn"
    msg["Subject"] = "Gửi văn bản điện tử"
    msg["Date"] = "Tue, 10 Nov 2026 09:00:00 +0700"
    msg["Message-ID"] = f"<{abs(hash(data))}@tayninh.gov.vn>"
    msg.set_content("Kính gửi Sở Xây dựng, gửi kèm gói văn bản điện tử.")
    msg.add_attachment(data, maintype="application", subtype="octet-stream", filename=name)
    return msg.as_bytes()


def test_the_package_prevails_through_the_pipeline(tmp_path: Path) -> None:
    """End to end: the header's number (1234), not the text's (999), is registered, with
    the issuer the package names and every field's source "edxml"."""
    desk = Desk(tmp_path)
    desk.receive(_mail(package(files=FILES)))
    desk.process()
    row: Any = desk.rows()[0]
    assert row.state == "routed", row
    document = row.understanding["document"]
    assert document["source"] == "edxml"
    assert set(document["sources"].values()) == {"edxml"}
    assert (document["number"], document["symbol"]) == ("1234", "QĐ-UBND")
    assert document["issuer"] == "Ủy ban nhân dân tỉnh Tây Ninh"
    assert document["urgency"] == "Thượng khẩn" and document["date"] == "2026-11-09"
    entry: Any = desk.entries()[0]
    assert entry.document["number"] == "1234" and entry.kind == "document"


def test_inspect_shows_what_the_package_said(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    eml = tmp_path / "goi.eml"
    eml.write_bytes(_mail(package(files=FILES)))
    assert main(["inspect", str(eml), "--json", "--config", str(_config(tmp_path))]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["document"]["source"] == "edxml"
    said = out["attachments"][0]["edxml"]
    assert said["sender_id"] == "000.00.00.H56"
    assert said["recipients"][0] == {"id": "000.00.22.H56", "name": "Sở Xây dựng tỉnh Tây Ninh"}
    assert said["document"]["summary"] == HEADER["subject"]
    assert said["files"] == ["Quyết định 1234.txt", "Phụ lục kế hoạch.txt"]
    assert main(["inspect", str(eml), "--config", str(_config(tmp_path))]) == 0
    assert "edXML goi-van-ban.edxml" in capsys.readouterr().out


# Field values as hostile senders and careless systems write them: Vietnamese names in any
# normal form, XML's special characters, controls, direction marks, line breaks, long text.
_XML_CHARS = st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00\ufffe\uffff",
                           max_codepoint=0x2FFFF).filter(
    lambda c: c in "\t\n\r" or ord(c) >= 0x20)
_VALUES = st.one_of(
    st.text(_XML_CHARS, max_size=60),
    st.sampled_from(["Ủy ban nhân dân tỉnh Tây Ninh", "Sở Tài nguyên và Môi trường",
                     "UBND xã Phước Vĩnh Tây", "<script>alert(1)</script>", "&amp; ]]>",
                     "Nguyễn\u202eThị Hoà", "Hoa\u0300", "x" * 5000]))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=_VALUES, subject=_VALUES, number=_VALUES, notation=_VALUES, place=_VALUES)
def test_any_field_value_is_read_as_one_safe_line(name: str, subject: str, number: str,
                                                  notation: str, place: str) -> None:
    header = {**HEADER, "from_name": name, "subject": subject, "number": number,
              "notation": notation, "place": place}
    found, _ = edxml.read(package(header))
    doc = found.document
    assert doc is not None
    for value in (doc.issuer, doc.summary, doc.number, doc.symbol, doc.place):
        assert value is None or (value == header_safe(value, edxml.MAX_VALUE)
                                 and value == nfc(value) and "\n" not in value)
    expected = header_safe(nfc(name), edxml.MAX_VALUE)
    assert doc.issuer == (expected if expected.casefold() not in edxml._EMPTY else None)
