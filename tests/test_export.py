"""Registers to print and export: the files open and hold the right rows; statistics."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pypdf
import pytest
from openpyxl import load_workbook
from sqlalchemy import func, select, update

from daemon.cli import main
from daemon.db import messages, outgoing_entries
from daemon.models import State
from tests.conftest import CORPUS, Office, write_config
from tests.servers import Dovecot, SmtpSink

OUTBOUND = CORPUS / "outbound"
YEAR = str(datetime.now(ZoneInfo("Asia/Ho_Chi_Minh")).year)


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory, dovecot: Dovecot) -> Iterator[Office]:
    """Three documents (one confidential), a dossier and its signed result."""
    sink = SmtpSink().start()
    directory = tmp_path_factory.mktemp("export")
    office = Office(dovecot, sink, "export", "pw", directory,
                    write_config(directory, dovecot, sink, "export", "pw"))
    inbox = office.dir / "results"
    inbox.mkdir()
    office.config_path.write_text(office.config_path.read_text() + (
        f'\n[results]\ninbox_dir = "{inbox}"\ntrust_roots = ["{OUTBOUND / "trust_root.pem"}"]\n'))
    office.deliver(*[(CORPUS / n).read_bytes() for n in ("003.eml", "006.eml", "012.eml",
                                                          "017.eml")])

    def settled() -> bool:
        engine = office.engine()
        with engine.connect() as conn:
            busy = conn.scalar(select(func.count()).select_from(messages).where(
                messages.c.state.in_([State.STORED, State.ROUTED])))
            total = conn.scalar(select(func.count()).select_from(messages))
            sent = conn.scalar(select(func.count()).select_from(outgoing_entries))
        engine.dispose()
        if total == 4 and not busy and not any(inbox.glob("*.pdf")) and not sent:
            from daemon.db import cases
            engine = office.engine()
            with engine.begin() as conn:
                code = conn.scalar(select(cases.c.code))
                # The signed test PDF is issued to this applicant: the result names its case.
                conn.execute(update(cases).values(applicant_name="Bùi Văn Toàn"))
            engine.dispose()
            shutil.copy(OUTBOUND / "result_01.pdf", inbox / f"{code}.pdf")
        return bool(sent)

    office.run_daemon(until=settled, timeout=60)
    yield office
    sink.stop()


def _export(office: Office, tmp_path: Path, book: str, fmt: str) -> Path:
    output = tmp_path / f"{book}.{fmt}"
    assert main(["register", "export", "--book", book, "--format", fmt, "--year", YEAR,
                 "--output", str(output), "--config", str(office.config_path)]) == 0
    return output


def test_incoming_register_as_xlsx_csv_and_pdf(filled: Office, tmp_path: Path) -> None:
    """The incoming register has the decree's columns and one row per số đến, in every format."""
    sheet = load_workbook(_export(filled, tmp_path, "incoming", "xlsx")).active
    rows = list(csv.reader(io.StringIO(
        _export(filled, tmp_path, "incoming", "csv").read_bytes().decode("utf-8-sig"))))
    pdf = pypdf.PdfReader(_export(filled, tmp_path, "incoming", "pdf"))

    assert sheet["A1"].value == f"SỔ ĐĂNG KÝ VĂN BẢN ĐẾN NĂM {YEAR}"
    assert [c.value for c in sheet[2]][:3] == ["Ngày đến", "Số đến", "Tác giả"]
    assert [sheet.cell(r, 2).value for r in range(3, sheet.max_row + 1)] == [1, 2, 3]
    assert rows[0][5] == "Tên loại và trích yếu nội dung" and len(rows) == 4
    assert any("57/TTr-UBND" in row[3] for row in rows)
    assert "SỔ ĐĂNG KÝ VĂN BẢN ĐẾN" in pdf.pages[0].extract_text()
    table = pdf.pages[1].extract_text()
    assert "Số đến" in table and "245/TB-VP" in table
    assert pdf.pages[0].mediabox.width > pdf.pages[0].mediabox.height  # landscape


def test_confidential_register_is_the_controlled_copy(filled: Office, tmp_path: Path) -> None:
    """The confidential register's own export (the clerk's controlled copy) holds the summary
    and the secrecy level of the document."""
    rows = list(csv.reader(io.StringIO(
        _export(filled, tmp_path, "confidential", "csv").read_bytes().decode("utf-8-sig"))))

    assert len(rows) == 2 and rows[1][3] == "15/QĐ-BCH"
    assert rows[0][6] == "Độ mật" and rows[1][6] in ("Mật", "Tối mật", "Tuyệt mật")
    assert "Phương án" in rows[1][5]


def test_outgoing_and_case_registers(filled: Office, tmp_path: Path) -> None:
    """The outgoing register holds the result sent; the case register its dossier."""
    outgoing = list(csv.reader(io.StringIO(
        _export(filled, tmp_path, "outgoing", "csv").read_bytes().decode("utf-8-sig"))))
    case_rows = list(csv.reader(io.StringIO(
        _export(filled, tmp_path, "cases", "csv").read_bytes().decode("utf-8-sig"))))

    assert outgoing[0][:4] == ["Số, ký hiệu văn bản", "Ngày tháng văn bản",
                               "Tên loại và trích yếu nội dung", "Người ký"]
    assert len(outgoing) == 2 and "tuan.pm@kientrucnamviet.vn" in outgoing[1][4]
    assert len(case_rows) == 2 and case_rows[1][2] == "Bùi Văn Toàn"  # as set for the signed PDF
    assert case_rows[1][7] == "Đã trả kết quả"


@pytest.mark.skipif(shutil.which("pdftoppm") is None, reason="poppler-utils not installed")
def test_pdf_page_renders(filled: Office, tmp_path: Path) -> None:
    """The printable register renders to an image (pdftoppm), as a person would see it."""
    pdf = _export(filled, tmp_path, "incoming", "pdf")

    subprocess.run(["pdftoppm", "-png", "-r", "40", "-f", "2", "-l", "2", str(pdf),
                    str(tmp_path / "page")], check=True)

    assert list(tmp_path.glob("page*.png"))


def test_stats(filled: Office, capsys: pytest.CaptureFixture[str]) -> None:
    """Dossiers received and returned on time, by procedure."""
    assert main(["stats", "--json", "--config", str(filled.config_path)]) == 0

    report = json.loads(capsys.readouterr().out)
    assert report["total"]["received"] == 1 and report["total"]["returned_on_time"] == 1
    assert report["by_procedure"]["Cấp chứng chỉ hành nghề hoạt động xây dựng"]["received"] == 1
