"""Scanned documents read by OCR (Tesseract `vie`, pages rendered by PDFium): the fields of a
clean and of a skewed scan end to end through the pipeline, their source and confidence, the
clerk asked to check an unsure field, OCR off when Tesseract is missing, and hostile images."""

from __future__ import annotations

import functools
import io
import json
import random
import struct
import zlib
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from daemon import config, selfcheck
from daemon.config import LimitsConfig, OcrConfig
from daemon.errors import ConfigError
from daemon.models import Document
from daemon.understand import attachments, ocr, read
from tests.bench_ocr import CLEAN, Spoil, mail_with, page_and_label, scanned
from tests.conftest import AUTHSERV_ID
from tests.desk import Desk
from tests.generated.make import Gen, pdf_of_page

MISSING = "/nonexistent/bin/tesseract"
FIELDS = ("number", "symbol", "type", "issuer", "place", "date", "summary", "urgency",
          "confidentiality")


@functools.lru_cache(maxsize=4)
def _scan(seed: int, spoil: Spoil) -> tuple[bytes, dict[str, Any]]:
    """A generated Decree-30 first page, printed and scanned, and its labels (made once)."""
    page, label = page_and_label(Gen(random.Random(seed)))
    return scanned(pdf_of_page(page), random.Random(seed), spoil), label


def _fields(document: Any) -> dict[str, Any]:
    return {name: document.get(name) for name in FIELDS}


def _label(label: dict[str, Any]) -> dict[str, Any]:
    return {name: label[name] for name in FIELDS}


@pytest.mark.parametrize("spoil", [CLEAN, replace(CLEAN, skew=2.0)], ids=["clean", "skewed"])
def test_scanned_document_is_registered_with_its_fields(tmp_path: Path, spoil: Spoil) -> None:
    """A document that arrives only as a scan (no text layer): registered with every field of
    its header, each read by OCR with its confidence; the forward names the scan."""
    pdf, label = _scan(11, spoil)
    desk = Desk(tmp_path)
    desk.receive(mail_with(pdf, "Công văn quét.pdf", AUTHSERV_ID))
    desk.process()
    (entry,) = desk.entries()
    document = entry.document  # type: ignore[attr-defined]
    assert _fields(document) == _label(label)
    assert document["file"] == "Công văn quét.pdf"
    assert set(document["sources"].values()) == {"ocr"}
    assert set(document["confidence"]) == {k for k, v in _label(label).items() if v}
    assert all(0.5 < c <= 1 for c in document["confidence"].values())


def test_fields_of_a_scan_in_inspect_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                          ) -> None:
    """`inspect --json`: the document's sources say "ocr" and the attachment carries what OCR
    read with its confidences; the human output names each field's confidence."""
    from daemon.cli import main

    pdf, label = _scan(11, CLEAN)
    mail = tmp_path / "scan.eml"
    mail.write_bytes(mail_with(pdf))
    assert main(["inspect", str(mail), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["document"]["sources"]["symbol"] == "ocr"
    assert out["document"]["symbol"] == label["symbol"]
    assert set(out["attachments"][0]["ocr"]["confidence"]) >= {"number", "symbol", "date"}
    assert main(["inspect", str(mail)]) == 0
    assert "OCR van-ban-scan.pdf: số " in capsys.readouterr().out


def test_unsure_field_is_flagged_for_the_clerk() -> None:
    """A field whose words Tesseract read unsurely is named to the clerk, in the cover note's
    words; a field filled from the mail's text is never flagged."""
    words = [ocr.Word("Số:", 0.96, 0, 0, 10, 10, (1, 1, 1)),
             ocr.Word("12/QĐ-UBND", 0.41, 12, 0, 40, 10, (1, 1, 1)),
             ocr.Word("Tây", 0.95, 60, 0, 10, 10, (1, 1, 2)),
             ocr.Word("Ninh,", 0.95, 72, 0, 10, 10, (1, 1, 2))]
    found = Document(number="12", symbol="QĐ-UBND", place="Tây Ninh", source="ocr")
    scores = ocr.confidences(found, words)
    assert scores == {"number": 0.41, "symbol": 0.41, "place": 0.95}
    unsure = Document(number="12", symbol="QĐ-UBND", place="Tây Ninh", source="body",
                      filled_from=(("number", "ocr"),), unsure=("number", "symbol"))
    assert unsure.checks() == ("number",)  # the symbol came from the text, not the scan
    assert "số" in ocr.check_note(unsure.checks()) and "đối chiếu" in ocr.check_note(["date"])


def test_without_tesseract_the_scan_is_unread_and_ocr_is_said_off(tmp_path: Path) -> None:
    """Tesseract missing: the mail is still read (the scan named as unread, why included),
    `vanthu check` and the start-up log say OCR is off, and status warns."""
    off = replace(LimitsConfig(), ocr=OcrConfig(tesseract_cmd=MISSING))
    pdf, _ = _scan(11, CLEAN)
    reading = read(mail_with(pdf), off)
    (attachment,) = reading.mail.attachments
    assert attachment.scanned is None
    assert any("không tìm thấy chương trình Tesseract" in u for u in attachment.unread)
    assert reading.document is None or "ocr" not in reading.document.sources().values()

    toml = tmp_path / "config.toml"
    toml.write_text(f'[ocr]\ntesseract_cmd = "{MISSING}"\n', encoding="utf-8")
    cfg = config.parse({"ocr": {"tesseract_cmd": MISSING}}, file=str(toml), text=toml.read_text(),
                       base=tmp_path, path=toml)
    (note,) = [n for n in selfcheck.notes(cfg) if "OCR" in n]
    assert note.startswith(f"{toml}:1: ") and MISSING in note
    from daemon.cli import ocr_off

    cause = ocr_off(cfg)
    assert cause is not None and cause.key == "ocr_off"
    disabled = config.parse({"ocr": {"enabled": False}}, file="t", text="", base=tmp_path)
    assert ocr.unavailable(disabled.limits.ocr) == "OCR đang tắt ([ocr] enabled = false)"
    assert ocr_off(config.parse({}, file="t", text="", base=tmp_path)) is None


@pytest.mark.parametrize(("table", "message"), [
    ({"dpi": 5}, "must be 72 to 600"),
    ({"min_confidence": 85}, "must be 0 to 1"),
    ({"max_pixels": 10}, "must be 1000000 to 100000000"),
    ({"enabled": "có"}, "expected bool"),
    ({"timeout_seconds": 0}, "must be positive"),
    ({"memory_mb": 64}, "must be 256 or more"),
    ({"language": "vie; rm -rf /"}, "Tesseract language names"),
    ({"tesseract_cmd": ""}, "must not be empty"),
    ({"mail_seconds": 90}, "must be less than [limits] parse_seconds"),
    ({"tesseract": "/usr/bin/tesseract"}, "tesseract"),
])
def test_careless_ocr_config_is_refused(tmp_path: Path, table: dict[str, Any],
                                        message: str) -> None:
    with pytest.raises(ConfigError) as err:
        config.parse({"ocr": table}, file="t", text="", base=tmp_path)
    assert message in str(err.value)


def test_ocr_config_with_vietnamese_path_loads(tmp_path: Path) -> None:
    cfg = config.parse({"ocr": {"tesseract_cmd": "/opt/Văn thư/tesseract", "dpi": 200,
                                "min_confidence": 0.9, "max_pages": 1}},
                       file="t", text="", base=tmp_path)
    assert cfg.limits.ocr.tesseract_cmd == "/opt/Văn thư/tesseract"
    assert (cfg.limits.ocr.dpi, cfg.limits.ocr.max_pages) == (200, 1)


def _png(width: int, height: int, colour: int = 255) -> bytes:
    out = io.BytesIO()
    Image.new("L", (width, height), colour).save(out, "PNG")
    return out.getvalue()


def _png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims `width`×`height` pixels, with almost no data behind it."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


def test_images_that_are_not_pages_are_not_read() -> None:
    """A photo (landscape, dark), an ID-card sized image and a logo are not sent to Tesseract;
    an image claiming 40 gigapixels is refused before it is decoded."""
    limits = LimitsConfig()
    for image in (_png(1600, 1200, 90), _png(860, 540), _png(120, 120)):
        found = attachments.read("anh.png", "image/png", image, limits)
        assert found.scanned is None and found.text == ""
    huge = attachments.read("scan.png", "image/png", _png_claiming(200_000, 200_000), limits)
    assert huge.scanned is None
    assert any("max_pixels" in u or "không đọc được" in u for u in huge.unread)


def test_a_photographed_page_is_read() -> None:
    """A JPEG of the page (as a phone or a scanner sends it) is read like a scanned PDF."""
    page, label = page_and_label(Gen(random.Random(11)))
    import pypdfium2

    document = pypdfium2.PdfDocument(pdf_of_page(page))
    image = document[0].render(scale=200 / 72).to_pil().convert("RGB")
    document.close()
    out = io.BytesIO()
    image.save(out, "JPEG", quality=75)
    found = attachments.read("trang1.jpg", "image/jpeg", out.getvalue(), LimitsConfig())
    assert found.scanned is not None
    assert (found.scanned.symbol, found.scanned.date) == (
        label["symbol"], date.fromisoformat(label["date"]) if label["date"] else None)


def test_tesseract_past_its_timeout_is_stopped(tmp_path: Path) -> None:
    """A Tesseract that never answers is killed after `timeout_seconds`; the mail goes on."""
    stuck = tmp_path / "tesseract"
    stuck.write_text("#!/bin/sh\nexec sleep 600\n", encoding="utf-8")
    stuck.chmod(0o755)
    cfg = OcrConfig(tesseract_cmd=str(stuck), timeout_seconds=1)
    with pytest.raises(ocr.OcrStopped, match="quá 1 giây"):
        ocr.tesseract(_png(800, 1100), cfg)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=4096), kind=st.sampled_from(
    ["image/png", "image/jpeg", "image/tiff", "application/pdf"]),
    head=st.sampled_from([b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"II*\x00", b"%PDF-1.4\n"]))
def test_hostile_bytes_never_crash_the_reader(data: bytes, kind: str, head: bytes) -> None:
    """Any bytes under an image or PDF name and type: read or noted, never an exception."""
    name = {"image/png": "a.png", "image/jpeg": "a.jpg", "image/tiff": "a.tif"}.get(kind,
                                                                                   "a.pdf")
    found = attachments.read(name, kind, head + data, LimitsConfig())
    assert found.scanned is None or found.scanned.source == "ocr"


def test_layout_sets_columns_apart() -> None:
    """Words of one line far apart (two columns) are joined by a gap, as text extraction does:
    the header reader then finds the date line beside the number line."""
    line = (1, 1, 1)
    words = [ocr.Word("Số:", 0.9, 0, 0, 30, 20, line), ocr.Word("5/TB-UBND", 0.9, 35, 0, 90, 20,
                                                                 line),
             ocr.Word("Huế,", 0.9, 600, 0, 40, 20, line),
             ocr.Word("ngày", 0.9, 645, 0, 40, 20, line)]
    assert ocr.layout(words) == "Số: 5/TB-UBND    Huế, ngày"


def test_layout_mends_the_case_of_s() -> None:
    """Tesseract reads "số" and "sở" inside a sentence with a capital S at times; a name that
    goes on with a capital keeps it."""
    def line(*texts: str) -> list[ocr.Word]:
        return [ocr.Word(t, 0.9, 20 * i, 0, 15, 20, (1, 1, 1)) for i, t in enumerate(texts)]

    assert ocr.layout(line("chuyển", "đổi", "Số", "trong")) == "chuyển đổi số trong"
    assert ocr.layout(line("cơ", "SỞ", "sản", "xuất")) == "cơ sở sản xuất"
    assert ocr.layout(line("của", "Sở", "Tài", "chính")) == "của Sở Tài chính"
    assert ocr.layout(line("Số:", "12/QĐ-UBND")) == "Số: 12/QĐ-UBND"
    wrapped = [*line("chuyển", "đổi"), *(replace(w, line=(1, 1, 2)) for w in line("Số", "trong"))]
    assert ocr.layout(wrapped) == "chuyển đổi\nsố trong"
    opening = [*line("THÔNG", "BÁO"), *(replace(w, line=(1, 1, 2)) for w in line("Số", "lượng"))]
    assert ocr.layout(opening) == "THÔNG BÁO\nSố lượng"
    ending = [*line("và", "cơ", "SỞ"), *(replace(w, line=(1, 1, 2)) for w in line("sản", "xuất"))]
    assert ocr.layout(ending) == "và cơ sở\nsản xuất"
