"""The receipt slip (Giấy tiếp nhận hồ sơ và hẹn trả kết quả): text and HTML from Jinja2
templates the agency can edit (`<rules dir>/templates/receipt.{txt,html}.j2` override the
shipped ones in `daemon/office/templates/`), and a PDF of the same fields. Pure: fields in,
bytes out.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import jinja2
from fpdf import FPDF

from daemon.textnorm import nfc

SHIPPED = Path(__file__).parent / "templates"
FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")


@dataclass(frozen=True)
class ReceiptFields:
    """The fields of the receipt slip of Decree 118/2025/NĐ-CP (Giấy tiếp nhận hồ sơ và hẹn
    trả kết quả)."""

    agency: str
    result_place: str
    code: str
    applicant: str | None
    email: str | None
    phone: str | None
    procedure: str | None
    days: int | None
    documents: tuple[str, ...]
    received: str  # "14 giờ 05 phút, ngày 22/11/2026"
    appointment: str | None  # "04/12/2026"
    queue: str | None = None  # "số thứ tự 3, buổi sáng ngày 23/11/2026"


def _environment(rules_dir: Path | None) -> jinja2.Environment:
    paths = [str(rules_dir / "templates")] if rules_dir else []
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader([*paths, str(SHIPPED)]),
        autoescape=lambda name: bool(name and name.endswith(".html.j2")),
        undefined=jinja2.StrictUndefined, keep_trailing_newline=True)


def render(fields: ReceiptFields, rules_dir: Path | None = None) -> tuple[str, str]:
    """The slip as plain text and HTML (mail-supplied values are escaped in the HTML)."""
    env = _environment(rules_dir)
    values = asdict(fields)
    return (nfc(env.get_template("receipt.txt.j2").render(values)),
            nfc(env.get_template("receipt.html.j2").render(values)))


def new_document(font_dir: Path = FONT_DIR) -> FPDF:
    """An empty A4 document with the Vietnamese fonts loaded (about 50 ms: fonts are parsed
    per document, because fpdf2's font objects keep per-document subsetting state)."""
    doc = FPDF(format="A4")
    doc.add_font("DejaVu", "", str(font_dir / "DejaVuSans.ttf"))
    doc.add_font("DejaVu", "B", str(font_dir / "DejaVuSans-Bold.ttf"))
    return doc


def _line(doc: FPDF, height: float, text: str, align: str = "L") -> None:
    doc.multi_cell(0, height, nfc(text), align=align, new_x="LMARGIN", new_y="NEXT")


def pdf(fields: ReceiptFields, font_dir: Path = FONT_DIR) -> bytes:
    """The slip as an A4 PDF, in a font with every Vietnamese letter."""
    doc = new_document(font_dir)
    doc.set_margins(20, 18, 20)
    doc.add_page()
    doc.set_font("DejaVu", "B", 11)
    _line(doc, 6, f"{fields.agency.upper()}\n{fields.result_place}")
    doc.ln(6)
    doc.set_font("DejaVu", "B", 14)
    _line(doc, 8, "GIẤY TIẾP NHẬN HỒ SƠ VÀ HẸN TRẢ KẾT QUẢ", "C")
    doc.set_font("DejaVu", "", 11)
    _line(doc, 7, f"Mã hồ sơ: {fields.code}", "C")
    doc.ln(4)
    lines = [
        f"{fields.agency} đã tiếp nhận hồ sơ của:",
        f"  Ông/bà, tổ chức: {fields.applicant or '(chưa rõ)'}",
        f"  Thư điện tử: {fields.email or ''}",
        f"  Điện thoại: {fields.phone or ''}",
        f"Nội dung yêu cầu giải quyết: {fields.procedure or '(văn thư sẽ xác định thủ tục)'}",
        f"Thành phần hồ sơ nhận được ({len(fields.documents)} tệp):",
        *(f"  {i}. {name}" for i, name in enumerate(fields.documents, 1)),
        "Thời gian giải quyết theo quy định: "
        + (f"{fields.days} ngày làm việc" if fields.days else "theo quy định của thủ tục"),
        f"Thời gian nhận hồ sơ: {fields.received}",
    ]
    if fields.queue:
        lines.append(f"Thứ tự giải quyết: {fields.queue}")
    if fields.appointment:
        lines.append(f"Thời gian trả kết quả giải quyết hồ sơ: ngày {fields.appointment}")
    lines.append(f"Nơi trả kết quả: {fields.result_place}, {fields.agency}")
    for line in lines:
        _line(doc, 7, line)
    return bytes(doc.output())
