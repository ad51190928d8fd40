"""The registers to print and export (Decree 30/2020, Appendix IV): the incoming register,
the confidential register, the outgoing register and the case tracking register, in
Vietnamese, as CSV, XLSX or a printable A4-landscape PDF with a title page. Read-only.

Cells are typed (dates, numbers, text) so that a spreadsheet sorts them as such; the PDF
numbers its pages, keeps document symbols and case codes whole, lets a long row flow onto the
next page, and ends a closed year with its closing statement. The confidential register is
the clerk's controlled copy: it alone carries the summary of a confidential document, with its
secrecy and urgency levels.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from fpdf import FPDF
from openpyxl import Workbook
from openpyxl.styles import Alignment, Border, Font, PatternFill, Side
from openpyxl.worksheet.page import PageMargins
from openpyxl.worksheet.worksheet import Worksheet
from sqlalchemy import Engine, select

from daemon.config import Config
from daemon.db import cases, messages, outgoing_entries, reading, register_entries
from daemon.office.cases import STATUS_NAMES
from daemon.office.closing import Closing, closing_of, year_bounds
from daemon.office.receipt import FONT_DIR, new_document
from daemon.textnorm import nfc
from daemon.understand import signatures

Cell = str | int | date | None

TITLES = {
    "incoming": "SỔ ĐĂNG KÝ VĂN BẢN ĐẾN",
    "confidential": "SỔ ĐĂNG KÝ VĂN BẢN MẬT ĐẾN",
    "outgoing": "SỔ ĐĂNG KÝ VĂN BẢN ĐI",
    "cases": "SỔ THEO DÕI GIẢI QUYẾT HỒ SƠ",
}
# Sheet names: at most 31 characters, none of []:*?/\ (the year is added).
SHEETS = {"incoming": "Sổ văn bản đến", "confidential": "Sổ văn bản mật đến",
          "outgoing": "Sổ văn bản đi", "cases": "Sổ theo dõi hồ sơ"}
NOUNS = {"incoming": "văn bản", "confidential": "văn bản", "outgoing": "văn bản",
         "cases": "hồ sơ"}
HEADERS = {
    "incoming": ["Ngày đến", "Số đến", "Tác giả", "Số, ký hiệu", "Ngày tháng văn bản",
                 "Tên loại và trích yếu nội dung", "Ý kiến phân phối, chỉ đạo",
                 "Đơn vị hoặc người nhận", "Ngày chuyển", "Ký nhận", "Chữ ký số", "Ghi chú"],
    "outgoing": ["Số, ký hiệu văn bản", "Ngày tháng văn bản", "Tên loại và trích yếu nội dung",
                 "Người ký", "Nơi nhận văn bản", "Đơn vị, người nhận bản lưu",
                 "Số lượng bản", "Ngày chuyển", "Ký nhận", "Ghi chú"],
    "cases": ["Mã hồ sơ", "Số đến", "Người nộp", "Thủ tục", "Đơn vị chủ trì", "Ngày nhận",
              "Hạn giải quyết", "Tình trạng", "Ngày trả kết quả", "Ghi chú"],
}
# The confidential register: the incoming register's columns with the secrecy and urgency
# levels after the summary.
HEADERS["confidential"] = [*HEADERS["incoming"][:6], "Độ mật", "Độ khẩn",
                           *HEADERS["incoming"][6:]]
WIDTHS = {  # PDF column widths in mm, A4 landscape (277 mm between margins)
    "incoming": [19, 13, 27, 24, 19, 54, 27, 24, 19, 12, 22, 17],
    "confidential": [19, 12, 24, 23, 19, 34, 14, 14, 28, 22, 19, 12, 20, 17],
    "outgoing": [30, 19, 62, 30, 40, 28, 13, 19, 15, 21],
    "cases": [40, 14, 32, 50, 24, 19, 19, 26, 19, 34],
}
# The column whose date is the entry's date (for the cover's "from ... to ...").
DATE_COLUMN = {"incoming": 0, "confidential": 0, "outgoing": 7, "cases": 5}
LATE_NOTE = "Vào sổ sau khi khóa sổ"
CELL_CHARS = 2000  # a longer cell is cut: the register is not the document
# Control characters (xlsx cannot hold them) and direction overrides, out of every cell.
CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u202a-\u202e\u2066-\u2069]")


@dataclass(frozen=True)
class Register:
    book: str
    year: int
    title: str
    headers: list[str]
    rows: list[list[Cell]]
    closing: Closing | None = None
    agency: str = ""
    parent: str = ""  # the parent authority (cơ quan chủ quản), on the cover
    volume: int = 1  # quyển số
    tz: Any = None
    entry_dates: list[date] = field(default_factory=list)
    numbers: list[int] = field(default_factory=list)  # each row's number (số đến, số đi)

    @property
    def noun(self) -> str:
        return NOUNS[self.book]

    @property
    def late(self) -> int:
        """How many rows (the last ones) were entered after the closing."""
        return max(0, len(self.rows) - self.closing.count) if self.closing else 0

    def statements(self) -> list[str]:
        """The closing statement of a closed year, and what was entered after it."""
        if self.closing is None:
            return []
        c = self.closing
        day = c.closed_at.astimezone(self.tz).strftime("%d/%m/%Y") if self.tz else \
            c.closed_at.strftime("%d/%m/%Y")
        by = f" bởi {c.closed_by}" if c.closed_by else ""
        if c.count == 0:
            held = f"Sổ này không có {self.noun} nào"
        elif c.first_number is None:
            held = f"Sổ này gồm {c.count} {self.noun}"
        else:
            held = (f"Sổ này gồm {c.count} {self.noun}, từ số {c.first_number} đến số "
                    f"{c.last_number}")
        lines = [f"{held}, khóa sổ ngày {day}{by}."]
        if self.late:
            numbers = self.numbers[-self.late:]
            span = f", từ số {numbers[0]} đến số {numbers[-1]}" if numbers else ""
            lines.append(f"{LATE_NOTE}: {self.late} {self.noun}{span}.")
        return [nfc(line) for line in lines]

    def cover_lines(self) -> list[str]:
        """Year, date range, number range and volume, as on the decree's cover."""
        lines = [f"Năm: {self.year}"]
        if not self.rows:
            lines.append(f"Sổ chưa có {self.noun} nào")
        else:
            if self.entry_dates:
                lines.append(f"Từ ngày {min(self.entry_dates):%d/%m/%Y} đến ngày "
                             f"{max(self.entry_dates):%d/%m/%Y}")
            if self.numbers:
                lines.append(f"Từ số {self.numbers[0]} đến số {self.numbers[-1]}")
            else:
                lines.append(f"Gồm {len(self.rows)} {self.noun}")
        lines.append(f"Quyển số: {self.volume}")
        return [nfc(line) for line in lines]


def _local_day(value: datetime | None, cfg: Config) -> date | None:
    return value.astimezone(cfg.agency.tz).date() if value is not None else None


def _doc_day(doc: dict[str, Any]) -> date | None:
    value = doc.get("date")
    try:
        return date.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


def level_name(value: Any) -> str:
    """A secrecy or urgency mark as written in a register: "Tối mật", "Thượng khẩn"."""
    return nfc(str(value)).strip().capitalize() if value else ""


def _joined(*parts: Any) -> str:
    return " ".join(str(p) for p in parts if p)


def _entry_rows(conn: Any, cfg: Config, book: str, year: int,
                names: dict[str, str]) -> list[list[Cell]]:
    dossiers = {c.id: c for c in conn.execute(
        select(cases.c.id, cases.c.code, cases.c.procedure, cases.c.applicant_name)).all()}
    rows: list[list[Cell]] = []
    for e in conn.execute(select(register_entries, messages.c.understanding)
                          .join(messages, messages.c.id == register_entries.c.message_id)
                          .where(register_entries.c.book == book,
                                 register_entries.c.year == year)
                          .order_by(register_entries.c.number)).all():
        doc = e.document or {}
        symbol = f"{doc.get('number') or ''}/{doc.get('symbol')}" if doc.get("symbol") else ""
        kind_summary = _joined(doc.get("type"), doc.get("summary"))
        author = doc.get("issuer") or e.sender
        if (case := dossiers.get(e.case_id)) is not None:
            kind_summary = f"Hồ sơ {case.code}: {case.procedure or 'thủ tục hành chính'}"
            author = case.applicant_name or author
        row: list[Cell] = [
            _local_day(e.received_at, cfg), int(e.number), author,
            symbol, _doc_day(doc), kind_summary or e.kind,
            directives_text(e.directives, cfg),
            ", ".join(names.get(a, a) for a in e.recipients or []),
            _local_day(e.forwarded_at, cfg), "",
            signatures.summary((e.understanding or {}).get("signatures") or [], cfg.agency.tz),
            e.note or ""]
        if book == "confidential":
            row[6:6] = [level_name(doc.get("confidentiality")) or "Mật",
                        level_name(doc.get("urgency"))]
        rows.append(row)
    return rows


def directives_text(directives: Any, cfg: Config) -> str:
    """The leaders' directives on an entry, one line each: who, when (local time), their words;
    one that could not be read says so (it went to the Chief of Office)."""
    lines = []
    for item in directives if isinstance(directives, list) else []:
        try:
            at = datetime.fromisoformat(str(item.get("at"))).astimezone(cfg.agency.tz)
        except ValueError:
            continue
        unread = "" if item.get("read") else " (chưa đọc được, đã chuyển Chánh Văn phòng)"
        lines.append(f"{item.get('role') or ''} {item.get('by_name') or item.get('by')} "
                     f"({at:%d/%m/%Y %H:%M}): {item.get('text') or ''}{unread}".strip())
    return "\n".join(lines)


def _outgoing_rows(conn: Any, cfg: Config, year: int) -> tuple[list[list[Cell]], list[int]]:
    rows: list[list[Cell]] = []
    numbers: list[int] = []
    for o in conn.execute(select(outgoing_entries).where(
            outgoing_entries.c.year == year).order_by(outgoing_entries.c.number)).all():
        doc = o.document or {}
        symbol = f"{doc.get('number') or o.number}/{doc.get('symbol')}" \
            if doc.get("symbol") else f"{o.number}"
        rows.append([
            symbol, _doc_day(doc) or _local_day(o.sent_at, cfg),
            _joined(doc.get("type"), doc.get("summary")) or o.file_name, o.signer or "",
            ", ".join(o.recipients), "Văn thư", 1, _local_day(o.sent_at, cfg), "",
            "gửi qua thư điện tử"])
        numbers.append(int(o.number))
    return rows, numbers


def _case_rows(conn: Any, cfg: Config, year: int) -> list[list[Cell]]:
    entries = {e.case_id: e.number for e in conn.execute(
        select(register_entries.c.case_id, register_entries.c.number)
        .where(register_entries.c.case_id.is_not(None))).all()}
    returned = {o.case_id: o.sent_at for o in conn.execute(
        select(outgoing_entries.c.case_id, outgoing_entries.c.sent_at)).all()}
    start, end = year_bounds(cfg.agency, year)
    rows: list[list[Cell]] = []
    for c in conn.execute(select(cases).where(cases.c.opened_at >= start, cases.c.opened_at < end)
                          .order_by(cases.c.id)).all():
        rows.append([
            c.code, entries.get(c.id), c.applicant_name or "", c.procedure or "",
            c.lead_department or "", _local_day(c.opened_at, cfg), c.deadline,
            STATUS_NAMES.get(c.status, c.status), _local_day(returned.get(c.id), cfg), ""])
    return rows


def _clean(cell: Cell) -> Cell:
    if not isinstance(cell, str):
        return cell
    text = CONTROL.sub(" ", nfc(cell))
    return text if len(text) <= CELL_CHARS else text[:CELL_CHARS - 1].rstrip() + "…"


def load(engine: Engine, cfg: Config, book: str, year: int,
         names: dict[str, str] | None = None, parent: str = "", volume: int = 1) -> Register:
    """The rows of one register for one calendar year, in order, with its closing if the year
    is closed. `names` maps addresses to the people and units they belong to, for the
    "received by" column; `parent` is the parent authority named on the cover."""
    names = names or {}
    with reading(engine) as conn:
        numbers: list[int] = []
        if book in ("incoming", "confidential"):
            rows = _entry_rows(conn, cfg, book, year, names)
            numbers = [int(str(row[1])) for row in rows]
        elif book == "outgoing":
            rows, numbers = _outgoing_rows(conn, cfg, year)
        else:
            rows = _case_rows(conn, cfg, year)
        closing = closing_of(conn, book, year)
    rows = [[_clean(cell) for cell in row] for row in rows]
    if closing is not None:
        for row in rows[closing.count:]:
            row[-1] = "; ".join(x for x in (LATE_NOTE, str(row[-1] or "")) if x)
    dates = [d for row in rows if isinstance(d := row[DATE_COLUMN[book]], date)]
    return Register(book, year, TITLES[book], HEADERS[book], rows, closing,
                    nfc(cfg.agency.name), nfc(parent), volume, cfg.agency.tz, dates, numbers)


def _text(cell: Cell) -> str:
    if cell is None:
        return ""
    if isinstance(cell, date):
        return cell.strftime("%d/%m/%Y")
    return str(cell)


def to_csv(register: Register) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(register.headers)
    writer.writerows([[_text(c) for c in row] for row in register.rows])
    return out.getvalue().encode("utf-8-sig")  # the BOM lets spreadsheet programs see UTF-8


# ---- XLSX --------------------------------------------------------------------------------

MM_PER_CHAR = 1.9  # one unit of an Excel column width is about 1.9 mm of 11 pt text
LINE_POINTS = 15.0  # the height of one line of 11 pt text
THIN = Side(style="thin", color="808080")
BOX = Border(left=THIN, right=THIN, top=THIN, bottom=THIN)


def sheet_name(register: Register) -> str:
    """A Vietnamese sheet name Excel accepts: at most 31 characters, none of []:*?/\\."""
    return re.sub(r"[\[\]:*?/\\]", " ", f"{SHEETS[register.book]} {register.year}")[:31]


def _row_height(row: Sequence[Cell], widths: Sequence[float]) -> float:
    lines = 1
    for cell, width in zip(row, widths, strict=True):
        for part in _text(cell).split("\n"):
            lines = max(lines, math.ceil(len(part) * 1.1 / max(width - 1, 1)) or 1)
    return min(LINE_POINTS * lines, 409)  # Excel's highest row


def _style_table(sheet: Worksheet, register: Register, widths: list[float]) -> None:
    header_fill = PatternFill("solid", fgColor="D9D9D9")
    for cell in sheet[2]:
        cell.font = Font(bold=True)
        cell.fill = header_fill
        cell.border = BOX
        cell.alignment = Alignment(wrap_text=True, vertical="center", horizontal="center")
    sheet.row_dimensions[2].height = _row_height(register.headers, widths)
    for index, row in enumerate(register.rows, 3):
        for cell in sheet[index]:
            cell.border = BOX
            cell.alignment = Alignment(wrap_text=True, vertical="top")
            if isinstance(cell.value, (date, datetime)):
                cell.number_format = "dd/mm/yyyy"
            elif isinstance(cell.value, int):
                cell.number_format = "0"
        sheet.row_dimensions[index].height = _row_height(row, widths)


def _print_setup(sheet: Worksheet, register: Register) -> None:
    """A4 landscape, fitted to the page's width, the header row on every page, page numbers."""
    sheet.page_setup.orientation = "landscape"
    sheet.page_setup.paperSize = sheet.PAPERSIZE_A4
    sheet.page_setup.fitToWidth = 1
    sheet.page_setup.fitToHeight = 0
    sheet.sheet_properties.pageSetUpPr.fitToPage = True
    sheet.page_margins = PageMargins(left=0.4, right=0.4, top=0.6, bottom=0.6, header=0.3,
                                     footer=0.3)
    sheet.print_options.horizontalCentered = True
    sheet.print_title_rows = "2:2"
    sheet.freeze_panes = "A3"
    sheet.oddHeader.left.text = register.agency
    sheet.oddFooter.center.text = "Trang &P/&N"


def to_xlsx(register: Register) -> bytes:
    """One sheet: the title, the header row (frozen, printed on every page), a typed row per
    entry, then the closing statement of a closed year."""
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = sheet_name(register)
    sheet.append([f"{register.title} NĂM {register.year}"])
    sheet["A1"].font = Font(bold=True, size=14)
    sheet.append(register.headers)
    for row in register.rows:
        sheet.append(row)
    widths = [mm / MM_PER_CHAR for mm in WIDTHS[register.book]]
    for index, width in enumerate(widths, 1):
        sheet.column_dimensions[sheet.cell(2, index).column_letter].width = round(width, 1)
    _style_table(sheet, register, widths)
    last = len(register.headers)
    for text in register.statements():
        sheet.append([])
        sheet.append([text])
        at = sheet.max_row
        sheet.merge_cells(start_row=at, start_column=1, end_row=at, end_column=last)
        sheet.cell(at, 1).font = Font(bold=True, italic=True)
        sheet.cell(at, 1).alignment = Alignment(wrap_text=True, vertical="top")
    _print_setup(sheet, register)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


# ---- PDF ---------------------------------------------------------------------------------

FONT_SIZE = 8
LINE = 3.8  # mm per line of 8 pt text
PAD = 1.0  # mm inside a cell
PAGE_BOTTOM = 210 - 12  # A4 landscape: where the table stops; the page number goes below
BREAK_AFTER = re.compile(r"(?<=[/\-])")  # a code may wrap after '/' or '-', never elsewhere


def _pieces(word: str, fits: Callable[[str], bool]) -> list[str]:
    """A word too wide for its column, cut after '/' or '-' (the longest head that fits each
    time); only a piece with no such place that still does not fit is cut where it must."""
    out: list[str] = []
    parts = [p for p in BREAK_AFTER.split(word) if p]
    current = ""
    for part in parts:
        if fits(current + part):
            current += part
            continue
        if current:
            out.append(current)
        current = part
        while not fits(current) and len(current) > 1:  # no place to wrap: cut at the edge
            cut = 1  # grown from the left: the work stays linear in the piece's length
            while cut < len(current) and fits(current[:cut + 1]):
                cut += 1
            out.append(current[:cut])
            current = current[cut:]
    return [*out, current] if current else out


def wrap(text: str, width: float, measure: Callable[[str], float]) -> list[str]:
    """The lines of a cell of `width` mm: words wrap at spaces; a code wider than the column
    wraps after '/' or '-'."""
    def fits(s: str) -> bool:
        return measure(s) <= width

    lines: list[str] = []
    for paragraph in text.split("\n"):
        line = ""
        for word in paragraph.split():
            candidate = f"{line} {word}" if line else word
            if fits(candidate):
                line = candidate
                continue
            if line:
                lines.append(line)
            pieces = _pieces(word, fits) if not fits(word) else [word]
            lines.extend(pieces[:-1])
            line = pieces[-1] if pieces else ""
        lines.append(line)
    return lines or [""]


class _Table:
    """Draws rows of wrapped cells, the header again at the top of every page; a row that does
    not fit goes to the next page whole unless it is taller than a page, then it is split."""

    def __init__(self, doc: FPDF, headers: list[str], widths: list[int]) -> None:
        self.doc, self.widths = doc, widths
        doc.set_font("DejaVu", "B", FONT_SIZE)
        self.header = self._lines(headers)
        self.header_height = len(self.header[0]) * LINE + 2 * PAD

    def _lines(self, row: Sequence[str]) -> list[list[str]]:
        cells = [wrap(text, width - 2 * PAD, self.doc.get_string_width)
                 for text, width in zip(row, self.widths, strict=True)]
        height = max(len(c) for c in cells)
        return [c + [""] * (height - len(c)) for c in cells]

    def _draw(self, cells: list[list[str]], bold: bool = False) -> None:
        doc = self.doc
        doc.set_font("DejaVu", "B" if bold else "", FONT_SIZE)
        height = len(cells[0]) * LINE + 2 * PAD
        x, y = doc.l_margin, doc.get_y()
        for lines, width in zip(cells, self.widths, strict=True):
            if bold:
                doc.set_fill_color(230, 230, 230)
            doc.rect(x, y, width, height, style="DF" if bold else "D")
            for index, text in enumerate(lines):
                doc.set_xy(x + PAD, y + PAD + index * LINE)
                doc.cell(width - 2 * PAD, LINE, text, align="C" if bold else "L")
            x += width
        doc.set_xy(doc.l_margin, y + height)

    def new_page(self) -> None:
        _page(self.doc)
        self._draw(self.header, bold=True)

    def add(self, row: Sequence[str]) -> None:
        self.doc.set_font("DejaVu", "", FONT_SIZE)
        cells = self._lines(row)
        page_lines = int((PAGE_BOTTOM - self.doc.t_margin - self.header_height - 2 * PAD)
                         // LINE)
        while cells[0]:
            room = int((PAGE_BOTTOM - self.doc.get_y() - 2 * PAD) // LINE)
            if room < len(cells[0]) and (room < 1 or len(cells[0]) <= page_lines):
                self.new_page()
                continue
            take = min(room, len(cells[0]))
            self._draw([c[:take] for c in cells])
            cells = [c[take:] for c in cells]


def _page(doc: FPDF) -> None:
    """A new landscape page with its number at the foot ("{nb}" becomes the page count)."""
    doc.add_page(orientation="L")
    doc.set_font("DejaVu", "", FONT_SIZE)
    doc.set_xy(doc.l_margin, PAGE_BOTTOM + 3)
    doc.cell(doc.epw, 5, f"Trang {doc.page_no()}/{{nb}}", align="C")
    doc.set_xy(doc.l_margin, doc.t_margin)


def _cover(doc: FPDF, register: Register) -> None:
    """The decree's title page: parent authority and agency, title, year, dates, numbers,
    volume; and the closing of a closed year."""
    _page(doc)
    doc.set_font("DejaVu", "", 12)
    block = 130
    if register.parent:
        doc.multi_cell(block, 6, register.parent.upper(), align="C", new_x="LMARGIN",
                       new_y="NEXT")
    doc.set_font("DejaVu", "B", 12)
    doc.multi_cell(block, 6, register.agency.upper(), align="C", new_x="LMARGIN", new_y="NEXT")
    doc.ln(32)
    doc.set_font("DejaVu", "B", 26)
    doc.multi_cell(0, 14, register.title, align="C", new_x="LMARGIN", new_y="NEXT")
    doc.ln(6)
    doc.set_font("DejaVu", "", 14)
    for line in register.cover_lines():
        doc.cell(0, 10, line, align="C", new_x="LMARGIN", new_y="NEXT")
    if register.closing is not None:
        doc.ln(4)
        doc.set_font("DejaVu", "", 11)
        doc.multi_cell(0, 7, register.statements()[0], align="C", new_x="LMARGIN",
                       new_y="NEXT")


def to_pdf(register: Register, cfg: Config, font_dir: Path = FONT_DIR) -> bytes:
    """A4 landscape: a title page, then the table with its header on every page, the page
    number "Trang x/y" at the foot of each, and the closing statement of a closed year."""
    doc = new_document(font_dir)
    doc.set_margins(10, 12, 10)
    doc.set_auto_page_break(False)  # the table breaks its pages itself
    _cover(doc, register)
    table = _Table(doc, register.headers, WIDTHS[register.book])
    table.new_page()
    if not register.rows:
        doc.set_font("DejaVu", "", 10)
        doc.cell(0, 8, f"Sổ chưa có {register.noun} nào.", new_x="LMARGIN", new_y="NEXT")
    for row in register.rows:
        table.add([_text(cell) for cell in row])
    doc.set_font("DejaVu", "B", 10)
    for text in register.statements():
        lines = wrap(text, doc.epw, doc.get_string_width)
        if doc.get_y() + 4 + len(lines) * 6 > PAGE_BOTTOM:
            _page(doc)
        doc.ln(4)
        for line in lines:
            doc.cell(0, 6, line, new_x="LMARGIN", new_y="NEXT")
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
