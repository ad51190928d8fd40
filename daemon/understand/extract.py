"""Read a document's metadata off its own header, per Decree 30/2020 Appendix I.

Pure functions over text. Only the header zone is read (the lines up to the summary), so
documents cited in the prose ("Căn cứ Quyết định số 2105/QĐ-UBND …") never leak in.
"""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import date

from daemon.models import Document
from daemon.textnorm import collapse_spaces, fold, nfc
from daemon.understand.issuer import is_upper, issuer_of

# Appendix III: type name -> abbreviation. Abbreviations are case-sensitive (QyĐ is not QĐ).
TYPES: dict[str, str] = {
    "Nghị quyết": "NQ", "Quyết định": "QĐ", "Chỉ thị": "CT", "Quy chế": "QC", "Quy định": "QyĐ",
    "Thông cáo": "TC", "Thông báo": "TB", "Hướng dẫn": "HD", "Chương trình": "CTr",
    "Kế hoạch": "KH", "Phương án": "PA", "Đề án": "ĐA", "Dự án": "DA", "Báo cáo": "BC",
    "Biên bản": "BB", "Tờ trình": "TTr", "Hợp đồng": "HĐ", "Công điện": "CĐ",
    "Bản ghi nhớ": "BGN", "Bản thỏa thuận": "BTT", "Giấy ủy quyền": "GUQ", "Giấy mời": "GM",
    "Giấy giới thiệu": "GGT", "Giấy nghỉ phép": "GNP", "Phiếu gửi": "PG", "Phiếu chuyển": "PC",
    "Phiếu báo": "PB", "Bản sao y": "SY", "Bản trích sao": "TrS", "Bản sao lục": "SL",
}
ABBREVIATIONS = {abbr: name for name, abbr in TYPES.items()}
_TYPE_BY_FOLD = {fold(name): name for name in TYPES}

# Marks, most specific first: THƯỢNG KHẨN is not KHẨN, TỐI MẬT is not MẬT.
URGENCY = [("thuong khan", "Thượng khẩn"), ("hoa toc", "Hỏa tốc"), ("khan", "Khẩn")]
SECRECY = [("tuyet mat", "Tuyệt mật"), ("toi mat", "Tối mật"), ("mat", "Mật")]

_MOTTO = [
    re.compile(r"C[ỘO]NG\s+H[ÒOÓ]A\s+X[ÃA]\s+H[ỘO]I\s+CH[ỦU]\s+NGH[ĨI]A\s+VI[ỆE]T\s+NAM", re.I),
    re.compile(r"Đ[ộo]c\s+l[ậa]p\s*[-–]\s*T[ựu]\s+do\s*[-–]\s*H[ạa]nh\s+ph[úu]c", re.I),
]
# Every pattern run over a document's text is linear in its length. Python's regex engine
# backtracks, so two rules keep it linear here: a run (of white space, letters, digits) is
# matched possessively (`*+`, `++`: never given back, as no shorter run could lead to a
# match), and a search that could start anywhere inside a run may only start where the run
# starts (a lookbehind), since a match starting later would be a suffix of that one. Without
# them a line of 10,000 letters before "ngày" costs seconds, and "Số" followed by 4,000 spaces
# a minute and a half.
_LETTER = r"[^\W\d_]"
_SYMBOL_CHARS = r"[\w&.\-]"
_NUMBER_LINE = re.compile(
    r"^\s*+S[ốo]\s*+[:.]?\s*+(?P<number>\d*+)\s*+/\s*+"
    rf"(?P<symbol>(?:\d{{4}}/)?{_SYMBOL_CHARS}++)",
    re.I)
_DATE = re.compile(
    r"(?:,|(?<![,\s]))\s*+ngày\s*+(?P<d>\d{1,2})?\s*+tháng\s*+(?P<m>\d{1,2})?\s*+năm\s*+"
    r"(?P<y>\d{4})?", re.I)
_PLACE_DATE = re.compile(
    rf"(?<!{_LETTER})(?P<place>(?:{_LETTER}++\.?\s++){{0,4}}{_LETTER}++)\s*+,\s*+ngày\b",
    re.I)
_VV = re.compile(r"^\s*V/v\s*[:.]?\s*(?P<rest>.*)$", re.I)
_BODY_START = re.compile(
    r"^\s*(Kính\s+gửi|Căn\s+cứ|Thực\s+hiện|Theo|Xét|Ngày\s+\d|Để|Nhằm|Trên\s+cơ\s+sở|Điều\s+\d|"
    r"Qua|Thời\s+gian|[IVX]+\.|\d+\.|-\s)", re.I)
def without_motto(line: str) -> str:
    for pattern in _MOTTO:
        line = pattern.sub(" ", line)
    return collapse_spaces(line.replace("_", " "))


def _mark(line: str, table: list[tuple[str, str]]) -> str | None:
    """A stamp standing alone on a line, tolerant of lost diacritics; longest match first."""
    bare = re.sub(r"[^a-z ]", " ", fold(line, accents=False))
    bare = collapse_spaces(bare)
    for key, name in table:
        if bare == key:
            return name
    return None


def _date(match: re.Match[str]) -> date | None:
    if not (match.group("d") and match.group("m") and match.group("y")):
        return None
    try:
        return date(int(match.group("y")), int(match.group("m")), int(match.group("d")))
    except ValueError:
        return None


def from_text(text: str, source: str) -> Document | None:
    """Extract a Document from the text of one document; None when it has no `Số:` header."""
    lines = [nfc(line.rstrip()) for line in text.splitlines()]
    numbered = next(((i, m) for i, line in enumerate(lines[:60])
                     if (m := _NUMBER_LINE.match(without_motto(line)))), None)
    if numbered is None:
        return None
    at, match = numbered
    number = match.group("number") or None
    symbol = match.group("symbol").strip(".-")

    block: list[str] = []
    urgency = secrecy = None
    for line in lines[:at]:
        clean = without_motto(line)
        if (mark := _mark(clean, URGENCY)) or (mark := _mark(clean, SECRECY)):
            urgency = mark if mark in dict(URGENCY).values() else urgency
            secrecy = mark if mark in dict(SECRECY).values() else secrecy
            continue
        if clean:
            block.append(clean)

    place = None
    doc_date = None
    doc_type = None
    summary_lines: list[str] = []
    in_summary = False
    is_vv = False
    rest_of_number_line = without_motto(lines[at])[match.end():]
    tail = [rest_of_number_line, *lines[at + 1 : at + 30]]
    for raw_line in tail:
        line = without_motto(raw_line)
        indented = raw_line[:2].isspace() and raw_line.strip() != ""
        if mark := _mark(line, URGENCY):
            urgency = urgency or mark
            continue
        if mark := _mark(line, SECRECY):
            secrecy = secrecy or mark
            continue
        date_match = _DATE.search(line)
        if (date_match and doc_date is None and place is None and not in_summary) or (
            date_match and is_vv and in_summary
        ):
            before = line[: date_match.start()]
            found_place = _PLACE_DATE.search(line[: date_match.end()])
            if found_place:
                words = found_place.group("place").split()
                while words and not words[0][:1].isupper():
                    words.pop(0)
                place = " ".join(words) or None
            doc_date = _date(date_match)
            if is_vv and in_summary:
                in_summary = False
                summary_lines = summary_lines or []
                if before.strip() and place and before.strip().endswith(place):
                    extra = before.strip()[: -len(place)].strip()
                    if extra:
                        summary_lines.append(extra)
                if doc_type:
                    break
            continue
        if vv := _VV.match(line):
            doc_type, is_vv, in_summary = "Công văn", True, True
            summary_lines = [vv.group("rest")]
            continue
        if doc_type is None and is_upper(line) and fold(line) in _TYPE_BY_FOLD:
            doc_type = _TYPE_BY_FOLD[fold(line)]
            in_summary = True
            continue
        if in_summary:
            if (not line or indented or _BODY_START.match(line) or line.endswith(":")
                    or (is_upper(line) and not is_vv) or len(summary_lines) >= 5):
                if is_vv and doc_date is None:
                    in_summary = False
                    continue
                break
            summary_lines.append(line)
            continue
        if doc_type is not None and summary_lines:
            break

    if doc_date is None and place is None:
        # Some PDFs put the right column (motto, place and date) before the left one.
        for line in lines[:at]:
            line = without_motto(line)
            if (date_match := _DATE.search(line)) and (
                    found_place := _PLACE_DATE.search(line[: date_match.end()])):
                place = " ".join(w for w in found_place.group("place").split()
                                 if w[:1].isupper()) or None
                doc_date = _date(date_match)
                break
    if doc_type is None:
        code = symbol.split("-")[0].split("/")[-1]
        doc_type = ABBREVIATIONS.get(code, "Công văn")
    summary = collapse_spaces(" ".join(summary_lines)) or None
    return Document(
        number=number, symbol=symbol, type=doc_type, issuer=issuer_of(block), place=place,
        date=doc_date, summary=summary, urgency=urgency, confidentiality=secrecy, source=source,
    )


def best(candidates: list[Document | None]) -> Document | None:
    """Pick the document: attachments (listed first) win over the body; fill gaps from others."""
    found = [c for c in candidates if c is not None]
    if not found:
        return None
    chosen = found[0]
    for other in found[1:]:
        if other.symbol != chosen.symbol:
            continue
        for name in ("issuer", "place", "date", "summary", "urgency", "confidentiality"):
            if getattr(chosen, name) is None and getattr(other, name) is not None:
                chosen = replace(chosen, **{name: getattr(other, name)},
                                 filled_from=(*chosen.filled_from, (name, other.source)))
    return chosen
