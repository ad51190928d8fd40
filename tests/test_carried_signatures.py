"""Signatures of the PDFs carried in edXML packages and ZIP archives (issue 15): an e-office
system's package carries the signed PDF of the document, and that signature is the one that
matters. Each carried signed PDF is validated like a direct attachment (at most MAX_PDFS signed
PDFs per mail in all), reported under the carrying attachment with the file it signs, and
reaches the register's "Chữ ký số" column and the forward's note. Certificates are made by the
tests (tests/signing.py), never real keys; packages are built by tests/test_edxml.py."""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daemon.cli import main
from daemon.config import LimitsConfig
from daemon.intake.workers import read_guarded
from daemon.models import Attachment
from daemon.office import export
from daemon.understand import NoCases, Reading, attachments, judge
from daemon.understand.signatures import MAX_PDFS, check_attachments
from tests import signing
from tests.conftest import AUTHSERV_ID, ROOT
from tests.test_edxml import FILES, HEADER, package
from tests.test_edxml import _mail as edxml_mail
from tests.test_inspect import AGENCY_CONFIG
from tests.test_signatures import (
    BASE,
    CA,
    ROOTS,
    STRANGER,
    VALID,
    _desk,
    _forward_text,
    _signed_hole,
)

LIMITS = LimitsConfig()
FORGED = signing.sign(BASE, STRANGER.issue("Trần Giả Danh", "Sở Tài chính"))  # untrusted CA
INNER = "Quyết định 1234 đã ký.pdf"  # a Vietnamese name, NFC


def _package(pdf: bytes, number: str = "1234") -> bytes:
    return package({**HEADER, "number": number},
                   files=[(INNER, "application/pdf", pdf), *FILES])


def _zip(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return out.getvalue()


def _read(raw: bytes) -> Reading:
    reading = read_guarded(raw, LIMITS, roots=ROOTS)
    assert isinstance(reading, Reading)
    return reading


def _checks(reading: Reading) -> list[tuple[str, bool, str | None]]:
    return [(item.attachment, check.valid, check.signer)
            for item in reading.signatures for check in item.checks]


def test_a_package_carrying_a_validly_signed_pdf(tmp_path: Path) -> None:
    reading = _read(edxml_mail(_package(VALID)))
    [attachment] = reading.mail.attachments
    assert _checks(reading) == [(f"goi-van-ban.edxml/{INNER}", True, "Nguyễn Thị Hồng Nhung")]
    # Reported under the carrying attachment, which its sha256 names.
    assert reading.signatures[0].sha256 == attachment.sha256
    und = judge(reading, _desk(tmp_path).cfg, NoCases())
    assert und.signature_warning == ""
    assert und.document is not None and und.document.number == "1234"  # the header still wins


@pytest.mark.parametrize(("damage", "why"), [
    ("tampered", "nội dung đã bị sửa sau khi ký"),
    ("untrusted", "chứng thư số không thuộc tổ chức chứng thực tin cậy")])
def test_a_package_with_a_bad_signed_pdf_from_a_government_sender_is_flagged(
        tmp_path: Path, damage: str, why: str) -> None:
    pdf = signing.tampered(VALID) if damage == "tampered" else FORGED
    desk = _desk(tmp_path)
    reading = read_guarded(edxml_mail(_package(pdf)), desk.cfg.limits, roots=ROOTS)
    assert isinstance(reading, Reading)
    und = judge(reading, desk.cfg, NoCases())
    assert [c.valid for s in und.signatures for c in s.checks] == [False]
    assert f"goi-van-ban.edxml/{INNER}: chữ ký số thứ 1: {why}" in und.signature_warning
    assert und.signature_warning in und.trust_notes


def test_a_zip_with_signed_pdfs_nested_and_unsigned() -> None:
    inner = _zip({"ho-so/to-trinh.pdf": VALID})
    raw = edxml_mail(_zip({"văn bản ký số.pdf": signing.tampered(VALID), "bản nháp.pdf": BASE,
                           "lồng.zip": inner}), name="hồ sơ.zip")
    reading = _read(raw)
    assert sorted(_checks(reading)) == [
        ("hồ sơ.zip/lồng.zip/ho-so/to-trinh.pdf", True, "Nguyễn Thị Hồng Nhung"),
        ("hồ sơ.zip/văn bản ký số.pdf", False, "Nguyễn Thị Hồng Nhung")]


def test_at_most_max_pdfs_signed_pdfs_per_mail_direct_ones_first() -> None:
    many = _zip({f"van-ban-{i:02}.pdf": VALID for i in range(MAX_PDFS + 5)})
    raw = edxml_mail(many, name="nhieu.zip")
    reading = _read(raw)
    [attachment] = reading.mail.attachments
    assert len(attachment.carried) == MAX_PDFS  # not even kept past the bound
    assert len(reading.signatures) == MAX_PDFS
    direct = replace(attachment, name="x.pdf", payload=VALID, sha256="1" * 64, carried=())
    both = check_attachments([attachment, direct], ROOTS)
    assert len(both) == MAX_PDFS and both[0].attachment == "x.pdf"
    assert [b.attachment for b in both[1:]] == [f"nhieu.zip/van-ban-{i:02}.pdf"
                                                for i in range(MAX_PDFS - 1)]


def test_the_archive_limits_still_hold_over_signed_pdfs() -> None:
    """Past `archive_entries` the rest is not read: its signed PDFs are not kept either, and
    the attachment is withheld as before."""
    limits = replace(LIMITS, archive_entries=3)
    data = _zip({f"{i}.pdf": VALID for i in range(6)})
    found = attachments.read("goi.zip", "application/zip", data, limits)
    assert found.withheld and "archive_entries" in " ".join(found.unread)
    assert len(found.carried) <= 3


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_any_change_to_a_carried_pdfs_signed_bytes_is_never_valid(data: st.DataObject) -> None:
    """A forged variant of the trust signal, carried in a package: bytes changed anywhere the
    signature covers never give a valid signature, and never pass for unsigned."""
    start, end = _signed_hole(VALID)
    at = data.draw(st.one_of(st.integers(0, start - 1), st.integers(end, len(VALID) - 1)))
    size = min(data.draw(st.integers(1, 16)), (start if at < start else len(VALID)) - at)
    noise = data.draw(st.binary(min_size=size, max_size=size))
    changed = VALID[:at] + bytes(a ^ (b or 1) for a, b in zip(VALID[at:at + size], noise,
                                                              strict=True)) \
        + VALID[at + size:]
    found = attachments.read("goi.edxml", "application/xml", _package(changed), LIMITS)
    item = Attachment("goi.edxml", "application/xml", 1, "0" * 64, b"", carried=found.carried)
    checks = [c for result in check_attachments([item], ROOTS) for c in result.checks]
    assert not any(c.valid for c in checks)
    # Kept as carried only while it still looks like a PDF (its header is among the signed
    # bytes): a PDF whose header is broken is withheld from the forward instead.
    assert checks or b"/ByteRange" not in changed or (not found.carried and found.withheld)


def test_inspect_json_and_text_name_the_carried_file(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    root = CA.write(tmp_path, "gốc.pem")
    cfg = tmp_path / "config.toml"
    cfg.write_text(AGENCY_CONFIG.format(authserv_id=AUTHSERV_ID, rules=ROOT / "rules").replace(
        "[security]\n", f'[security]\ndocument_trust_roots = ["{root.name}"]\n'),
        encoding="utf-8")
    mail = tmp_path / "m.eml"
    mail.write_bytes(edxml_mail(_package(VALID), name="goi.edxml"))
    assert main(["inspect", str(mail), "--json", "--config", str(cfg)]) == 0
    [attachment] = json.loads(capsys.readouterr().out)["attachments"]
    [found] = attachment["signatures"]
    assert found["file"] == f"goi.edxml/{INNER}"
    assert found["valid"] and found["intact"] and found["trusted"]
    assert (found["signer"], found["organisation"]) == ("Nguyễn Thị Hồng Nhung",
                                                        "Sở Tài chính tỉnh Tây Ninh")
    assert main(["inspect", str(mail), "--config", str(cfg)]) == 0
    assert f"Chữ ký số: goi.edxml/{INNER}: hợp lệ — Nguyễn Thị Hồng Nhung" \
        in capsys.readouterr().out


def test_register_column_and_forward_note_name_the_carried_file(tmp_path: Path) -> None:
    desk = _desk(tmp_path)
    desk.receive(edxml_mail(_package(VALID)),
                 edxml_mail(_package(FORGED, "1235")))
    desk.process()
    rows: list[Any] = desk.rows()
    assert [r.state for r in rows] == ["routed"] * 2
    register = export.load(desk.engine, desk.cfg, "incoming", 2026)
    column = export.HEADERS["incoming"].index("Chữ ký số")
    cells = sorted(str(row[column]) for row in register.rows)
    assert cells[0].startswith(f"goi-van-ban.edxml/{INNER}: KHÔNG HỢP LỆ (chữ ký số thứ 1: "
                               "chứng thư số không thuộc tổ chức chứng thực tin cậy"), cells
    assert cells[1].startswith(f"goi-van-ban.edxml/{INNER}: hợp lệ — Nguyễn Thị Hồng Nhung")
    entries: list[Any] = desk.entries()
    notes = {e.document["number"]: e.note or "" for e in entries}
    assert "Chữ ký số không hợp lệ" in notes["1235"] and "Chữ ký số" not in notes["1234"]
    forwards = [_forward_text(desk, r.id) for r in rows]
    assert any(f"Chữ ký số: goi-van-ban.edxml/{INNER}: hợp lệ" in f for f in forwards)
    assert any("Lưu ý: Chữ ký số không hợp lệ trên văn bản của cơ quan nhà nước" in f
               and f"goi-van-ban.edxml/{INNER}: KHÔNG HỢP LỆ" in f for f in forwards)
