"""The registers as an inspection of the mailroom would check them: typed, frozen, printable
xlsx; numbered PDF pages, whole codes, flowing rows, a cover after the decree; the
confidential register's own columns; `register list` withholding confidential summaries; the
year-end closing, once, and entries added after it."""

from __future__ import annotations

import json
import math
import re
import threading
from datetime import UTC, datetime
from pathlib import Path

import pypdf
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from openpyxl import load_workbook
from sqlalchemy import Engine, func, insert, select, update

from daemon import config
from daemon.cli import main
from daemon.db import (
    cases,
    make_engine,
    messages,
    new_id,
    outgoing_entries,
    register_closings,
    register_entries,
    upgrade,
)
from daemon.office import export
from daemon.office.closing import YearNotEnded, close_year
from daemon.textnorm import nfc

YEAR = 2025
LONG = ("Về việc triển khai thực hiện Đề án vị trí việc làm, cơ cấu ngạch công chức và "
        "điều chỉnh, bổ sung danh mục thủ tục hành chính trong lĩnh vực xây dựng, ") * 8
SECRET = "Phương án bảo vệ mục tiêu trọng điểm dịp Tết Nguyên đán"
CODES = ("1104/SNV-CCHC&VTTL", "000.17.22.H56-251120-0001", "2345/QĐ-UBND-KTTC")
AGENCY = "Sở Nội vụ tỉnh Tây Ninh"
PARENT = "Ủy ban nhân dân tỉnh Tây Ninh"


def _config(directory: Path, rules: Path | None = None) -> Path:
    path = directory / "config.toml"
    path.write_text(f"""
[agency]
name = "{AGENCY}"
code = "000.17.22.H56"
timezone = "Asia/Ho_Chi_Minh"

[storage]
data_dir = "{directory / 'data'}"

[[mailboxes]]
name = "agency"
host = "127.0.0.1"
port = 993
security = "tls"
username = "vanthu"
password = "pw"

[smtp]
host = "127.0.0.1"
port = 25
security = "none"
from = "vanthu.snv@tayninh.gov.vn"

[rules]
dir = "{rules or Path(__file__).resolve().parent.parent / 'rules'}"
""", encoding="utf-8")
    return path


def _engine(path: Path) -> Engine:
    engine = make_engine(config.load(path).storage.url)
    upgrade(engine)
    return engine


def _entry(engine: Engine, book: str, number: int, at: datetime, document: dict[str, object],
           note: str | None = None, case_id: int | None = None) -> None:
    with engine.begin() as conn:
        mail = conn.execute(insert(messages).values(
            sha256=f"{book}{number}{at.year}".ljust(64, "0"), size=1, mailbox="agency",
            stored_at=at, state="done", updated_at=at, header_message_id=f"<{book}{number}@x>"))
        conn.execute(insert(register_entries).values(
            book=book, year=at.year, number=number, message_id=new_id(mail),
            received_at=at, registered_at=at, sender="Văn thư <vt@tayninh.gov.vn>",
            kind="dossier" if case_id else "document", document=document, note=note,
            case_id=case_id, recipients=["Phòng Công chức, viên chức"], forwarded_at=at))


def _fill(engine: Engine) -> None:
    """Year 2025: three incoming entries (one a dossier, one with a long summary), one Tối mật
    document, a case and a result sent."""
    at = datetime(YEAR, 3, 2, 1, 30, tzinfo=UTC)  # 08:30 in Tây Ninh
    with engine.begin() as conn:
        case_id = new_id(conn.execute(insert(cases).values(
            code=CODES[1], opened_at=at, status="in_progress", applicant_name="Nguyễn Thị Hòa",
            procedure="Cấp chứng chỉ hành nghề")))
    _entry(engine, "incoming", 1, at, {
        "number": "1104", "symbol": "SNV-CCHC&VTTL", "type": "Công văn",
        "issuer": "Sở Nội vụ tỉnh Bình Dương", "date": "2025-02-27", "summary": LONG})
    _entry(engine, "incoming", 2, at.replace(month=6), {}, case_id=case_id)
    _entry(engine, "incoming", 3, datetime(YEAR, 12, 31, 16, 0, tzinfo=UTC), {
        "number": "2345", "symbol": "QĐ-UBND-KTTC", "type": "Quyết định",
        "issuer": "Ủy ban nhân dân tỉnh Tây Ninh", "date": "2025-12-30",
        "summary": "Về việc giao chỉ tiêu biên chế năm 2026"})
    _entry(engine, "confidential", 1, at, {
        "number": "15", "symbol": "QĐ-BCH", "type": "Quyết định", "issuer": "Bộ Chỉ huy",
        "date": "2025-03-01", "summary": SECRET, "confidentiality": "TỐI MẬT",
        "urgency": "THƯỢNG KHẨN"})
    with engine.begin() as conn:
        conn.execute(insert(outgoing_entries).values(
            year=YEAR, number=1, pdf_sha256="f" * 64, file_name="kq.pdf", case_id=case_id,
            document={"number": "12", "symbol": "GP-SNV", "date": "2025-06-20"},
            recipients=["hoa@example.vn"], sent_at=at.replace(month=6, day=21)))


@pytest.fixture()
def office(tmp_path: Path) -> Path:
    path = _config(tmp_path)
    engine = _engine(path)
    _fill(engine)
    engine.dispose()
    return path


def _export(path: Path, book: str, fmt: str, year: int = YEAR, *extra: str) -> Path:
    output = path.parent / f"{book}-{year}.{fmt}"
    assert main(["register", "export", "--book", book, "--format", fmt, "--year", str(year),
                 "--output", str(output), "--config", str(path), *extra]) == 0
    return output


def _pages(pdf: Path) -> list[str]:
    return [nfc(page.extract_text()) for page in pypdf.PdfReader(pdf).pages]


def test_xlsx_cells_are_typed_wrapped_frozen_and_printable(office: Path) -> None:
    sheet = load_workbook(_export(office, "incoming", "xlsx")).active
    assert sheet is not None

    assert sheet.title == "Sổ văn bản đến 2025"
    assert sheet["B3"].value == 1 and sheet["B5"].value == 3  # numbers sort as numbers
    assert sheet["A3"].value == datetime(YEAR, 3, 2) and sheet["A3"].number_format == "dd/mm/yyyy"
    assert sheet["E3"].value == datetime(YEAR, 2, 27)
    assert sheet["A5"].value == datetime(YEAR, 12, 31)  # 23:00 in Tây Ninh
    assert sheet["F3"].value.startswith("Công văn Về việc") and sheet["F3"].alignment.wrap_text
    assert sheet.row_dimensions[3].height > 5 * sheet.row_dimensions[5].height / 2
    assert sheet.column_dimensions["F"].width > 2 * sheet.column_dimensions["B"].width
    assert sheet.freeze_panes == "A3"
    assert sheet.print_title_rows == "$2:$2"
    setup = sheet.page_setup
    assert (setup.orientation, setup.paperSize, setup.fitToWidth, setup.fitToHeight) == (
        "landscape", 9, 1, 0)  # 9: A4
    assert sheet.sheet_properties.pageSetUpPr.fitToPage
    assert sheet.page_margins.left < 0.7 and "&P" in sheet.oddFooter.center.text


def test_pdf_cover_page_numbers_and_whole_codes(office: Path) -> None:
    pages = _pages(_export(office, "incoming", "pdf", YEAR, "--parent", PARENT, "--volume",
                           "2"))
    cases_pages = _pages(_export(office, "cases", "pdf"))
    outgoing = _pages(_export(office, "outgoing", "pdf"))

    cover = pages[0]
    assert nfc(PARENT.upper()) in cover and nfc(AGENCY.upper()) in cover
    assert "Từ ngày 02/03/2025 đến ngày 31/12/2025" in cover
    assert "Từ số 1 đến số 3" in cover and "Quyển số: 2" in cover
    assert "Từ số 1 đến số 1" in outgoing[0] and "Gồm 1 hồ sơ" in cases_pages[0]
    for number, text in enumerate(pages, 1):
        assert f"Trang {number}/{len(pages)}" in text
    table = "\n".join(pages[1:] + cases_pages[1:])
    for code in CODES:
        # A line may end after '/' or '-' inside a code, nowhere else.
        pattern = "".join(re.escape(c) + ("\n?" if c in "/-" else "") for c in code)
        assert re.search(pattern, table), code


def test_long_rows_flow_and_split_only_when_taller_than_a_page(office: Path) -> None:
    """The long summary takes a dozen lines and the next rows follow it on the same page; a
    summary longer than a page continues on the next page, with the header again."""
    pages = _pages(_export(office, "incoming", "pdf"))
    assert len(pages) == 2 and re.search(r"2345/\n?QĐ-", pages[1])
    assert "Cấp chứng chỉ hành nghề" in " ".join(pages[1].split())

    engine = _engine(office)
    _entry(engine, "incoming", 4, datetime(YEAR, 12, 1, tzinfo=UTC), {
        "number": "7", "symbol": "BC-UBND", "type": "Báo cáo", "issuer": "UBND",
        "date": "2025-11-30", "summary": LONG * 3})
    engine.dispose()
    pages = _pages(_export(office, "incoming", "pdf"))
    starts = next(i for i, page in enumerate(pages) if "7/BC-UBND" in page)
    assert 0 < starts < len(pages) - 1  # a row taller than a page: it goes on after
    after = pages[starts + 1]
    assert "Ngày đến" in after  # the header again
    assert after.count("Về việc triển khai") >= 2  # the rest of the row, not a blank page


def test_empty_book_says_it_has_no_entry(office: Path) -> None:
    pages = _pages(_export(office, "incoming", "pdf", 2024))
    sheet = load_workbook(_export(office, "incoming", "xlsx", 2024)).active
    assert sheet is not None

    assert "Sổ chưa có văn bản nào" in pages[0] and "Đến số" not in pages[0]
    assert "số 0" not in pages[0]
    assert sheet.max_row == 2 and sheet.title == "Sổ văn bản đến 2024"


def test_confidential_register_has_secrecy_urgency_and_summary(office: Path) -> None:
    sheet = load_workbook(_export(office, "confidential", "xlsx")).active
    pages = _pages(_export(office, "confidential", "pdf"))
    assert sheet is not None

    headers = [c.value for c in sheet[2]]
    assert headers[:6] == export.HEADERS["incoming"][:6]
    assert headers[6:8] == ["Độ mật", "Độ khẩn"] and headers[8:] == export.HEADERS[
        "incoming"][6:]
    row = {h: c.value for h, c in zip(headers, sheet[3], strict=True)}
    assert row["Độ mật"] == "Tối mật" and row["Độ khẩn"] == "Thượng khẩn"
    assert SECRET in row["Tên loại và trích yếu nội dung"]
    assert sheet.title == "Sổ văn bản mật đến 2025"
    text = " ".join(pages[1].split())  # the PDF wraps cells at its column widths
    assert "Tối mật" in text and "Phương án bảo vệ" in text


def test_register_list_withholds_confidential_summaries(
        office: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["register", "list", "--year", str(YEAR), "--config", str(office)]) == 0
    text = capsys.readouterr().out
    assert main(["register", "list", "--year", str(YEAR), "--json", "--config",
                 str(office)]) == 0
    entries = json.loads(capsys.readouterr().out)

    assert "Sổ đăng ký văn bản đến năm 2025" in text
    assert "Sổ đăng ký văn bản mật đến năm 2025" in text and "Độ mật: Tối mật" in text
    assert "Phương án" not in text and not re.search(r"\b(conf|inco)\b", text)
    secret = next(e for e in entries if e["book"] == "confidential")
    assert secret["document"]["summary"] is None and secret["summary_withheld"] is True
    assert "Phương án" not in json.dumps(entries, ensure_ascii=False)
    plain = next(e for e in entries if e["book"] == "incoming" and e["number"] == 3)
    assert plain["summary_withheld"] is False and plain["document"]["summary"]


def test_close_refuses_a_year_not_ended(office: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    now = datetime.now(UTC).year + 1
    assert main(["register", "close", "--year", str(now - 1), "--config", str(office)]) == 1
    assert "chưa kết thúc" in capsys.readouterr().err
    cfg = config.load(office)
    engine = _engine(office)
    # 31/12/2025 20:00 in Tây Ninh is still 2025 there, though 13:00 UTC.
    with pytest.raises(YearNotEnded):
        close_year(engine, cfg.agency, YEAR, "x", now=datetime(YEAR, 12, 31, 13, tzinfo=UTC))
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(register_closings)) == 0
    engine.dispose()


def test_close_once_then_late_entries_are_marked(office: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["register", "close", "--year", str(YEAR), "--actor", "Trần Thị Ánh",
                 "--config", str(office)]) == 0
    assert main(["register", "close", "--year", str(YEAR), "--actor", "Lê Văn Bình",
                 "--config", str(office)]) == 0
    out = capsys.readouterr().out
    assert "đã được khóa sổ trước đó" in out and "Lê Văn Bình" not in out
    engine = _engine(office)
    _entry(engine, "incoming", 4, datetime(YEAR, 12, 31, 9, tzinfo=UTC), {
        "number": "9", "symbol": "TB-VP", "type": "Thông báo", "issuer": "Văn phòng",
        "date": "2025-12-31", "summary": "Lịch nghỉ Tết"})
    engine.dispose()
    pages = _pages(_export(office, "incoming", "pdf"))
    sheet = load_workbook(_export(office, "incoming", "xlsx")).active
    assert sheet is not None

    statement = "Sổ này gồm 3 văn bản, từ số 1 đến số 3, khóa sổ ngày"
    text = " ".join(pages).replace("\n", " ")
    assert statement in text and "bởi Trần Thị Ánh" in text
    assert "Vào sổ sau khi khóa sổ: 1 văn bản, từ số 4 đến số 4." in text
    cells = [str(c.value) for row in sheet.iter_rows() for c in row if c.value]
    assert any(c.startswith(statement) for c in cells)
    notes = export.HEADERS["incoming"].index("Ghi chú") + 1
    assert sheet.cell(6, notes).value == "Vào sổ sau khi khóa sổ"
    assert sheet.cell(5, notes).value in (None, "")


def test_concurrent_closings_record_once(office: Path) -> None:
    cfg = config.load(office)
    engine = _engine(office)
    done: list[int] = []

    def clerk(name: str) -> None:
        made = close_year(engine, cfg.agency, YEAR, name)
        done.append(sum(new for _, new in made))

    threads = [threading.Thread(target=clerk, args=(f"Văn thư {i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with engine.connect() as conn:
        rows = conn.execute(select(register_closings)).all()
    engine.dispose()

    assert sorted(done) == [0, 0, 0, 4] and len(rows) == 4
    assert len({r.closed_by for r in rows}) == 1
    by_book = {r.book: (r._mapping["count"], r.first_number, r.last_number) for r in rows}
    assert by_book == {"incoming": (3, 1, 3), "confidential": (1, 1, 1),
                       "outgoing": (1, 1, 1), "cases": (1, None, None)}


def test_empty_closed_book_statement(office: Path) -> None:
    engine = _engine(office)
    close_year(engine, config.load(office).agency, 2024, "Trần Thị Ánh")
    engine.dispose()
    pages = _pages(_export(office, "outgoing", "pdf", 2024))
    assert "Sổ này không có văn bản nào, khóa sổ ngày" in " ".join(pages).replace("\n", " ")


SEGMENT = st.text(alphabet="ABCĐQHUBNDKTSVXY0123456789&.", min_size=1, max_size=8)


@settings(max_examples=200, deadline=None)
@given(st.lists(SEGMENT, min_size=1, max_size=6), st.lists(st.sampled_from("/-"), min_size=5,
                                                          max_size=5), st.integers(0, 30))
def test_codes_wrap_only_after_slash_or_hyphen(segments: list[str], seps: list[str],
                                               extra: int) -> None:
    """Any code in a column at least as wide as its widest piece: the lines join back to the
    code, and each line but the last ends with '/' or '-'."""
    code = "".join(s + (seps[i] if i < len(segments) - 1 else "")
                   for i, s in enumerate(segments))
    width = max(len(s) + 1 for s in segments) + extra
    lines = export.wrap(code, width, len)

    assert "".join(lines) == code
    assert all(line[-1] in "/-" for line in lines[:-1])
    assert all(len(line) <= width for line in lines)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(["Về", "việc", "Quyết", "định", "1104/SNV-CCHC&VTTL", "ủy",
                                 "ban", "nhân", "dân", "tỉnh"]), max_size=40),
       st.integers(18, 60))
def test_words_wrap_at_spaces(words: list[str], width: int) -> None:
    lines = export.wrap(" ".join(words), width, len)
    assert " ".join(line for line in lines if line).split() == words or \
        "".join("".join(lines).split()) == "".join(words)
    assert all(len(line) <= width for line in lines)


def test_sheet_names_are_valid_everywhere() -> None:
    for book in export.TITLES:
        register = export.Register(book, 2026, export.TITLES[book], export.HEADERS[book], [])
        name = export.sheet_name(register)
        assert len(name) <= 31 and not set(name) & set("[]:*?/\\") and name == nfc(name)


def test_hostile_cells_stay_bounded(office: Path) -> None:
    """A 20,000-character run with no space and no '/' becomes lines of the column's width,
    in bounded time, and the register renders."""
    engine = _engine(office)
    _entry(engine, "incoming", 4, datetime(YEAR, 12, 1, tzinfo=UTC), {
        "number": "1" * 5000, "symbol": "Đ" * 5000, "issuer": "X" * 20000,
        "summary": "\u0301\x0b\x00\u202e" * 3000 + "a" * 20000})
    engine.dispose()
    pages = _pages(_export(office, "incoming", "pdf"))
    sheet = load_workbook(_export(office, "incoming", "xlsx")).active
    assert sheet is not None and len(sheet["F6"].value) <= 2000
    assert not re.search("[\x00-\x1f\u202e]", sheet["F6"].value)

    assert len(pages) >= 3 and "Trang 3/" in pages[2]
    lines = export.wrap("x" * 20000, 30, len)
    assert len(lines) == math.ceil(20000 / 30) and all(len(line) <= 30 for line in lines)


def test_a_closed_book_never_changes(tmp_path: Path) -> None:
    """A mail received in a year whose book is closed goes to the next open year's book, its
    note saying when it was received; the closed book keeps its count."""
    from tests.desk import DOCUMENT, Desk
    from tests.desk import mail as desk_mail

    desk = Desk(tmp_path)
    desk.receive(desk_mail("vanthu@tayninh.gov.vn", "Công văn 1", DOCUMENT))
    desk.process()
    year = datetime.now(desk.cfg.agency.tz).year
    close_year(desk.engine, desk.cfg.agency, year, "Trần Thị Ánh", force=True)

    desk.receive(desk_mail("vanthu@tayninh.gov.vn", "Công văn 2",
                           DOCUMENT.replace("1000/UBND-KT", "1001/UBND-KT")))
    desk.process()

    first, late = desk.entries()
    assert (first.year, first.number) == (year, 1)  # type: ignore[attr-defined]
    assert (late.year, late.number) == (year + 1, 1)  # type: ignore[attr-defined]
    assert f"sổ năm {year} đã khóa nên vào sổ năm {year + 1}" in late.note  # type: ignore[attr-defined]
    with desk.engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(register_entries).where(
            register_entries.c.year == year)) == 1


def test_the_leaders_directives_have_their_column(office: Path) -> None:
    """Column 'Ý kiến phân phối, chỉ đạo': each directive with who, when in local time and the
    leader's own words; one that could not be read says where it went."""
    engine = _engine(office)
    directives = [
        {"role": "Giám đốc", "by_name": "Nguyễn Văn An", "at": "2025-03-02T02:00:00+00:00",
         "text": "Giao phòng QLXD chủ trì, Văn phòng phối hợp, hạn 10/3", "read": True},
        {"role": "Phó Giám đốc", "by_name": "Trần Thị Bình", "at": "2025-03-03T09:30:00+00:00",
         "text": "Xem lại", "read": False},
        {"at": "not a time", "text": "ignored"}]
    with engine.begin() as conn:
        conn.execute(update(register_entries).where(register_entries.c.number == 1)
                     .values(directives=directives))
    engine.dispose()
    sheet = load_workbook(_export(office, "incoming", "xlsx")).active
    assert sheet is not None
    column = export.HEADERS["incoming"].index("Ý kiến phân phối, chỉ đạo") + 1
    assert sheet.cell(2, column).value == "Ý kiến phân phối, chỉ đạo"
    assert sheet.cell(3, column).value == (
        "Giám đốc Nguyễn Văn An (02/03/2025 09:00): Giao phòng QLXD chủ trì, Văn phòng phối "
        "hợp, hạn 10/3\nPhó Giám đốc Trần Thị Bình (03/03/2025 16:30): Xem lại (chưa đọc được, "
        "đã chuyển Chánh Văn phòng)")
    assert "Giao phòng QLXD chủ trì" in " ".join(" ".join(_pages(
        _export(office, "incoming", "pdf"))).split())


def test_the_cover_takes_the_parent_authority_from_the_config(office: Path) -> None:
    office.write_text(office.read_text(encoding="utf-8").replace(
        "[agency]\n", '[agency]\nparent = "Ủy ban nhân dân tỉnh Tây Ninh"\n', 1),
        encoding="utf-8")
    cover = _pages(_export(office, "incoming", "pdf"))[0]
    assert "ỦY BAN NHÂN DÂN TỈNH TÂY NINH" in cover.upper()
    given = _pages(_export(office, "incoming", "pdf", YEAR, "--parent", "Bộ Xây dựng"))[0]
    assert "BỘ XÂY DỰNG" in given.upper() and "ỦY BAN NHÂN DÂN" not in given.upper()
