"""The registers to print and export (Decree 30/2020, Appendix IV): the incoming register,
the confidential register, the outgoing register and the case tracking register, in
Vietnamese, as CSV, XLSX or a printable A4-landscape PDF with a title page. Read-only.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

from openpyxl import Workbook
from openpyxl.styles import Alignment, Font
from sqlalchemy import Engine, select

from daemon.config import Config
from daemon.db import cases, outgoing_entries, reading, register_entries
from daemon.office.cases import STATUS_NAMES
from daemon.office.receipt import FONT_DIR, new_document
from daemon.textnorm import nfc

BOOKS = ("incoming", "confidential", "outgoing", "cases")
TITLES = {
    "incoming": "SỔ ĐĂNG KÝ VĂN BẢN ĐẾN",
    "confidential": "SỔ ĐĂNG KÝ VĂN BẢN MẬT ĐẾN",
    "outgoing": "SỔ ĐĂNG KÝ VĂN BẢN ĐI",
    "cases": "SỔ THEO DÕI GIẢI QUYẾT HỒ SƠ",
}
HEADERS = {
    "incoming": ["Ngày đến", "Số đến", "Tác giả", "Số, ký hiệu", "Ngày tháng văn bản",
                 "Tên loại và trích yếu nội dung", "Đơn vị hoặc người nhận", "Ngày chuyển",
                 "Ký nhận", "Ghi chú"],
    "outgoing": ["Số, ký hiệu văn bản", "Ngày tháng văn bản", "Tên loại và trích yếu nội dung",
                 "Người ký", "Nơi nhận văn bản", "Đơn vị, người nhận bản lưu",
                 "Số lượng bản", "Ngày chuyển", "Ký nhận", "Ghi chú"],
    "cases": ["Mã hồ sơ", "Số đến", "Người nộp", "Thủ tục", "Đơn vị chủ trì", "Ngày nhận",
              "Hạn giải quyết", "Tình trạng", "Ngày trả kết quả", "Ghi chú"],
}
HEADERS["confidential"] = HEADERS["incoming"]
WIDTHS = {  # PDF column widths in mm, A4 landscape (277 mm between margins)
    "incoming": [20, 14, 38, 28, 20, 62, 35, 20, 20, 20],
    "outgoing": [28, 20, 62, 30, 40, 30, 14, 20, 15, 18],
    "cases": [38, 14, 34, 48, 22, 20, 20, 26, 20, 35],
}
WIDTHS["confidential"] = WIDTHS["incoming"]


@dataclass(frozen=True)
class Register:
    book: str
    year: int
    title: str
    headers: list[str]
    rows: list[list[str]]


def _day(value: Any, cfg: Config) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.astimezone(cfg.agency.tz).strftime("%d/%m/%Y")
    if isinstance(value, date):
        return value.strftime("%d/%m/%Y")
    return str(value)


def _doc_day(doc: dict[str, Any]) -> str:
    value = doc.get("date")
    return date.fromisoformat(value).strftime("%d/%m/%Y") if value else ""


def load(engine: Engine, cfg: Config, book: str, year: int,
         names: dict[str, str] | None = None) -> Register:
    """The rows of one register for one calendar year, in order. `names` maps addresses to
    the people and units they belong to, for the "received by" column."""
    names = names or {}
    rows: list[list[str]] = []
    with reading(engine) as conn:
        procedures = dict(conn.execute(select(cases.c.id, cases.c.procedure)).all())
        if book in ("incoming", "confidential"):
            for e in conn.execute(select(register_entries).where(
                    register_entries.c.book == book, register_entries.c.year == year)
                    .order_by(register_entries.c.number)).all():
                doc = e.document or {}
                symbol = f"{doc.get('number') or ''}/{doc.get('symbol')}" if doc.get("symbol") \
                    else ""
                kind_summary = " ".join(x for x in (doc.get("type"), doc.get("summary")) if x)
                if book == "confidential":
                    kind_summary = doc.get("type") or ""  # the content stays on paper
                if e.case_id:
                    kind_summary = f"Hồ sơ: {procedures.get(e.case_id) or 'thủ tục hành chính'}"
                rows.append([
                    _day(e.received_at, cfg), str(e.number), doc.get("issuer") or e.sender,
                    symbol, _doc_day(doc), kind_summary or e.kind,
                    ", ".join(names.get(a, a) for a in e.recipients or []),
                    _day(e.forwarded_at, cfg), "", ""])
        elif book == "outgoing":
            for o in conn.execute(select(outgoing_entries).where(
                    outgoing_entries.c.year == year).order_by(outgoing_entries.c.number)).all():
                doc = o.document or {}
                symbol = f"{doc.get('number') or o.number}/{doc.get('symbol')}" \
                    if doc.get("symbol") else f"{o.number}"
                rows.append([
                    symbol, _doc_day(doc) or _day(o.sent_at, cfg),
                    " ".join(x for x in (doc.get("type"), doc.get("summary")) if x)
                    or o.file_name, o.signer or "", ", ".join(o.recipients), "Văn thư", "1",
                    _day(o.sent_at, cfg), "", "gửi qua thư điện tử"])
        else:
            entries = {e.case_id: e.number for e in conn.execute(
                select(register_entries.c.case_id, register_entries.c.number)
                .where(register_entries.c.case_id.is_not(None))).all()}
            returned = {o.case_id: o.sent_at for o in conn.execute(
                select(outgoing_entries.c.case_id, outgoing_entries.c.sent_at)).all()}
            for c in conn.execute(select(cases).order_by(cases.c.id)).all():
                if c.opened_at.astimezone(cfg.agency.tz).year != year:
                    continue
                rows.append([
                    c.code, str(entries.get(c.id, "")), c.applicant_name or "",
                    c.procedure or "", c.lead_department or "", _day(c.opened_at, cfg),
                    _day(c.deadline, cfg), STATUS_NAMES.get(c.status, c.status),
                    _day(returned.get(c.id), cfg), ""])
    return Register(book, year, TITLES[book], HEADERS[book],
                    [[nfc(cell) for cell in row] for row in rows])


def to_csv(register: Register) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(register.headers)
    writer.writerows(register.rows)
    return out.getvalue().encode("utf-8-sig")  # the BOM lets spreadsheet programs see UTF-8


def to_xlsx(register: Register) -> bytes:
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = f"{register.book} {register.year}"
    sheet.append([f"{register.title} NĂM {register.year}"])
    sheet["A1"].font = Font(bold=True, size=14)
    sheet.append(register.headers)
    for cell in sheet[2]:
        cell.font = Font(bold=True)
        cell.alignment = Alignment(wrap_text=True, vertical="center")
    for row in register.rows:
        sheet.append(row)
    for index, width in enumerate(WIDTHS[register.book], 1):
        sheet.column_dimensions[sheet.cell(2, index).column_letter].width = width / 2.2 + 4
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def to_pdf(register: Register, cfg: Config, font_dir: Path = FONT_DIR) -> bytes:
    """A4 landscape: a title page, then the table with its header on every page."""
    doc = new_document(font_dir)
    doc.set_margins(10, 12, 10)
    doc.set_auto_page_break(True, 12)
    doc.add_page(orientation="L")
    doc.set_font("DejaVu", "B", 14)
    doc.cell(0, 8, nfc(cfg.agency.name.upper()), new_x="LMARGIN", new_y="NEXT")
    doc.ln(45)
    doc.set_font("DejaVu", "B", 26)
    doc.cell(0, 14, nfc(register.title), align="C", new_x="LMARGIN", new_y="NEXT")
    doc.set_font("DejaVu", "", 16)
    doc.cell(0, 10, f"Năm {register.year}", align="C", new_x="LMARGIN", new_y="NEXT")
    doc.ln(30)
    doc.set_font("DejaVu", "", 11)
    doc.cell(0, 7, nfc(f"Từ số: 1   Đến số: {len(register.rows)}"), align="C",
             new_x="LMARGIN", new_y="NEXT")
    doc.add_page(orientation="L")
    doc.set_font("DejaVu", "", 8)
    widths = WIDTHS[register.book]
    with doc.table(col_widths=widths, text_align="LEFT", line_height=4.5,
                   repeat_headings=1) as table:
        header = table.row()
        for title in register.headers:
            header.cell(title)
        for row in register.rows:
            line = table.row()
            for cell in row:
                line.cell(cell)
    return bytes(doc.output())


def stats(engine: Engine, cfg: Config, start: date, end: date) -> dict[str, Any]:
    """Dossiers received, results returned on time or late, by procedure, in [start, end]."""
    by_procedure: dict[str, dict[str, int]] = {}
    with reading(engine) as conn:
        returned = {o.case_id: o.sent_at for o in conn.execute(
            select(outgoing_entries.c.case_id, outgoing_entries.c.sent_at)).all()}
        for c in conn.execute(select(cases)).all():
            opened = c.opened_at.astimezone(cfg.agency.tz).date()
            if not start <= opened <= end:
                continue
            row = by_procedure.setdefault(c.procedure or "(chưa xác định)", {
                "received": 0, "returned_on_time": 0, "returned_late": 0, "open": 0,
                "overdue": 0})
            row["received"] += 1
            sent = returned.get(c.id)
            if sent is not None:
                on_time = c.deadline is None or sent.astimezone(cfg.agency.tz).date() \
                    <= c.deadline
                row["returned_on_time" if on_time else "returned_late"] += 1
            else:
                row["open"] += 1
                if c.deadline is not None and c.deadline < datetime.now(cfg.agency.tz).date():
                    row["overdue"] += 1
    totals = {k: sum(r[k] for r in by_procedure.values())
              for k in ("received", "returned_on_time", "returned_late", "open", "overdue")}
    return {"from": start.isoformat(), "to": end.isoformat(), "total": totals,
            "by_procedure": by_procedure}
