"""Read a document's metadata off its own header, per Decree 30/2020 Appendix I.

Pure functions over text. The header is a table of two columns: on the left the issuing
body, the number line (`Số: 12/QĐ-UBND`, for the Party `Số 12-KH/TU`), the urgency and
confidentiality stamps and, for a công văn, its summary (`V/v …`); on the right the motto and
the place-date line. Text extraction returns that table in any of three shapes: one column
after the other, both side by side on the same lines (separated by a run of spaces, or by
one space), or their lines interleaved. So each line is first cut into its pieces — the
right column's motto and place-date line are recognised wherever they stand, the rest is cut
at runs of two spaces or more — and the fields are read from the pieces, not from line
positions. Only the header zone is read (up to the first line of the body), so documents
cited in the prose ("Căn cứ Quyết định số 2105/QĐ-UBND …") never leak in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
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
# Legal normative documents (Law 80/2015, art. 4) that come by mail: their symbols carry the
# year ("12/2026/NĐ-CP"), and their title line names the type like any other.
LEGAL_TYPES: dict[str, str] = {
    "Nghị định": "NĐ", "Thông tư": "TT", "Thông tư liên tịch": "TTLT",
    "Nghị quyết liên tịch": "NQLT",
}
# Party documents (Hướng dẫn 36-HD/VPTW) abbreviate some types their own way: "Số 12-QĐi/TU"
# is a rule, "Số 5-TT/TU" a circular of the Party, "Số 8-CV/TU" a letter.
PARTY_TYPES: dict[str, str] = {
    "QĐi": "Quy định", "TT": "Thông tri", "KL": "Kết luận", "CV": "Công văn",
}
ABBREVIATIONS = {abbr: name for name, abbr in (TYPES | LEGAL_TYPES).items()}
_TYPE_BY_FOLD = {fold(name): name for name in (*TYPES, *LEGAL_TYPES, *PARTY_TYPES.values())}

# Marks, most specific first: THƯỢNG KHẨN is not KHẨN, TỐI MẬT is not MẬT.
URGENCY = [("thuong khan", "Thượng khẩn"), ("hoa toc", "Hỏa tốc"), ("khan", "Khẩn")]
SECRECY = [("tuyet mat", "Tuyệt mật"), ("toi mat", "Tối mật"), ("mat", "Mật")]

HEADER_LINES = 80  # lines of a text in which a header is looked for
NUMBER_LINES = 60  # lines in which its number line may stand
LINE_CHARS = 1000  # characters of one line read: no header line is longer
ABOVE = 25  # lines above the number line that may still belong to the header
BELOW = 30  # lines below it
SUMMARY_LINES = 6  # lines a summary may be wrapped over

# The state's motto and the Party's heading, tolerant of lost diacritics. The names are in
# capitals, as printed: "Đảng Cộng sản Việt Nam" in a summary is part of it.
_MOTTO = [
    re.compile(r"C[ỘO]NG\s+H[ÒOÓ]A\s+X[ÃA]\s+H[ỘO]I\s+CH[ỦU]\s+NGH[ĨI]A\s+VI[ỆE]T\s+NAM"),
    re.compile(r"Đ[ộo]c\s+l[ậa]p\s*[-–]\s*T[ựu]\s+do\s*[-–]\s*H[ạa]nh\s+ph[úu]c", re.I),
    re.compile(r"Đ[ẢA]NG\s+C[ỘO]NG\s+S[ẢA]N\s+VI[ỆE]T\s+NAM"),
]
# Every pattern run over a document's text is linear in its length. Python's regex engine
# backtracks, so two rules keep it linear here: a run (of white space, letters, digits) is
# matched possessively (`*+`, `++`: never given back, as no shorter run could lead to a
# match), and a search that could start anywhere inside a run may only start where the run
# starts (a lookbehind), since a match starting later would be a suffix of that one. Without
# them a line of 10,000 letters before "ngày" costs seconds, and "Số" followed by 4,000 spaces
# a minute and a half.
#
# The number line opens a piece of a line (the line's start, or after a gap of two spaces):
# `Số: 12/QĐ-UBND`, `Số 12-KH/TU` (Party), `Số:    /KH-UBND` (not yet numbered), `Số: 12/
# 2026/NĐ-CP` (a legal document's symbol keeps its year).
_NUMBER_LINE = re.compile(
    r"(?:^|(?<=\s\s))S(?i:[ốo])\s*+[:.]?\s*+(?P<number>\d*+)\s*+(?P<sep>[/-])\s*+"
    r"(?P<symbol>[\w&.\-/]*+(?:\ ?[-/]\ ?[\w&.]++|(?<=[-/])\ [\w&.]++)*+)")
# `ngày 05 tháng 3 năm 2026`, any spacing, day and month blank before signing.
_DATE = re.compile(
    r"(?<!\w)ngày\s*+(?P<d>\d{1,2})?\s*+tháng\s*+(?P<m>\d{1,2})?\s*+năm\s*+(?P<y>\d{4})?"
    r"(?!\d)", re.I)
_GAP = re.compile(r"\s{2,}")  # between two columns standing side by side
_VV = re.compile(r"^V/v\b\s*+[:.]?\s*+(?P<rest>.*)$", re.I)
# The first line of the body. Capitalised as written: a summary wrapped over lines goes on
# in lower case ("… theo" / "quy định"), and "- 2026" ends a range, not a list.
_BODY_START = re.compile(
    r"^(?:(?i:Kính\s+gửi)|Căn\s+cứ|Thực\s+hiện|Theo\b|Xét\b|Ngày\s+\d|Để\b|Nhằm\b|"
    r"Trên\s+cơ\s+sở|Điều\s+\d|Qua\b|Thời\s+gian|Nơi\s+nhận|[IVX]+\.|\d+\.|[-–+•]\s*+(?!\d))")
# What never opens a summary.
_SURE_BODY_START = re.compile(r"^(?:(?i:Kính\s+gửi)|Căn\s+cứ|Điều\s+\d|Nơi\s+nhận)")

# A place on the date line: capitalised words, spaced or joined hyphens ("Bà Rịa - Vũng Tàu",
# "Phan Rang-Tháp Chàm") and a unit prefix ("TP. Hồ Chí Minh", "Thành phố Hồ Chí Minh").
_DASHES = ("-", "–", "—")
_PREFIXES = ("TP.", "TP", "Tp.", "Tp", "TX.", "TX", "Tx.", "Tx")
_PREFIX_HEADS = {"phố": "Thành", "xã": "Thị", "trấn": "Thị"}
PLACE_WORDS = 8


def without_motto(line: str) -> str:
    for pattern in _MOTTO:
        line = pattern.sub(" ", line)
    return collapse_spaces(line.replace("_", " "))


def _mark(cell: str, table: list[tuple[str, str]]) -> str | None:
    """A stamp standing alone in its piece, in capitals as stamped, tolerant of lost
    diacritics; longest match first. "khẩn" in a line of its own is a wrapped summary's."""
    if len(cell) > 40 or not is_upper(cell):
        return None
    bare = collapse_spaces(re.sub(r"[^a-z ]", " ", fold(cell, accents=False)))
    return next((name for key, name in table if bare == key), None)


def _name_word(word: str) -> bool:
    parts = word.replace("'", "").replace("’", "").split("-")
    return all(p.isalpha() and p[:1].isupper() and (p[1:].islower() or len(p) == 1)
               for p in parts)


def _glued_start(word: str) -> int:
    """Where a capitalised word glued to the end of `word` starts ("2030Hà": 4; 0: none)."""
    for i in range(len(word) - 1, 0, -1):
        if word[i].isupper() and (word[i - 1].islower() or word[i - 1].isdigit()):
            return i
    return 0


def _last_words(head: str) -> list[tuple[int, str]]:
    """The last words of `head` with where each starts, back to a gap of two spaces (what
    stands before it is another column) or the start of the line."""
    words: list[tuple[int, str]] = []
    end = len(head)
    while end > 0 and len(words) <= PLACE_WORDS:
        space = head.rfind(" ", 0, end)
        words.insert(0, (space + 1, head[space + 1 : end]))
        if space <= 0 or head[space - 1] == " ":
            break
        end = space
    return words


def _place_start(head: str) -> int:
    """Where the place name that ends `head` starts (len(head): none). The words are walked
    from the right, so text glued before the place ("… công nghiệp Hà Nội") stops it."""
    words = _last_words(head)
    start = len(head)
    i = len(words) - 1
    while i >= 0:
        at, word = words[i]
        before = words[i - 1] if i else (0, "")
        if _name_word(word):
            start, i = at, i - 1
        elif word in _DASHES and start < len(head) and _name_word(before[1]):
            start, i = before[0], i - 2
        elif word in _PREFIXES and start < len(head):
            return at
        elif _PREFIX_HEADS.get(word) == before[1] and start < len(head):
            return before[0]
        else:
            # Columns extracted with no space between them: "… 2026 - 2030Hà Nội".
            glued = _glued_start(word)
            tail = word[glued:]
            if glued and (_name_word(tail) or (tail in _PREFIXES and start < len(head))):
                return at + glued
            break
    return start


@dataclass
class _Line:
    """One line of the header cut into its pieces."""

    blank: bool  # nothing at all on the line
    indent: int = 0  # spaces it opens with (a paragraph's first line, or centred text)
    right: bool = False  # it held a piece of the right column (motto or place-date line)
    place: str | None = None
    dated: bool = False
    day: date | None = None
    number: re.Match[str] | None = None
    cells: list[str] = field(default_factory=list)


def _date(match: re.Match[str]) -> date | None:
    if not (match.group("d") and match.group("m") and match.group("y")):
        return None
    try:
        return date(int(match.group("y")), int(match.group("m")), int(match.group("d")))
    except ValueError:
        return None


def _take_date(line: str, cut: _Line) -> str:
    """Find the place-date line among the pieces of `line`, record it in `cut` and return the
    line without it. A date counts after a place and its comma, or opening a piece; one in the
    middle of a sentence ("… báo cáo ngày 5 tháng 3 năm 2026") is prose."""
    for match in _DATE.finditer(line):
        before = line[: match.start()].rstrip()
        if before.endswith(","):
            head = before[:-1].rstrip()
            start = _place_start(head)
            cut.place = collapse_spaces(head[start:]) or None
        elif (not before or line[: match.start()].endswith("  ")) and match.group(0)[0] == "n":
            start = len(before)
        else:
            continue
        cut.dated, cut.day, cut.right = True, _date(match), True
        return f"{line[:start]}  {line[match.end():]}"
    return line


def _cut(raw: str) -> _Line:
    """The pieces of one line: the right column's pieces taken out, the rest cut at gaps."""
    # A tab stands between two cells (a table converted to text), like a gap of spaces.
    line = re.sub(r"\s", " ", nfc(raw[:LINE_CHARS]).replace("\t", "  ")).replace("_", " ")
    cut = _Line(blank=not line.strip(), indent=len(line) - len(line.lstrip(" ")))
    for pattern in _MOTTO:
        line, count = pattern.subn("  ", line)
        cut.right = cut.right or count > 0
    line = _take_date(line, cut)
    line = line.strip()
    # A symbol is made of abbreviations in capitals ("QĐ-UBND", "QĐi/TU"): "số - triển" is prose.
    if (number := _NUMBER_LINE.search(line)) and any(c.isupper() for c in number["symbol"]):
        cut.number = number
        line = f"{line[: number.start()]}  {line[number.end():]}"
    # Rules drawn with dashes go; a dash alone may be a wrapped summary's ("2025" / "-").
    cut.cells = [c for c in _GAP.split(line.strip())
                 if re.search(r"\w", c) or c in _DASHES]
    return cut


@dataclass
class _Header:
    """What the zone below the number line says, read piece by piece."""

    type: str | None = None
    summary: list[str] = field(default_factory=list)
    reading_summary: bool = False  # the summary has begun and goes on
    summary_done: bool = False
    vv: bool = False
    indent: int = 0  # spaces the line being read opens with
    summary_span: tuple[int, int] = (0, 0)  # the columns of the summary's last line
    bridged: bool = False  # a blank line around a piece of the right column was stepped over
    urgency: str | None = None
    secrecy: str | None = None
    place: str | None = None
    dated: bool = False
    day: date | None = None

    def stamp(self, cell: str) -> bool:
        """Record `cell` if it is an urgency or confidentiality stamp."""
        if mark := _mark(cell, URGENCY):
            self.urgency = self.urgency or mark
        elif mark := _mark(cell, SECRECY):
            self.secrecy = self.secrecy or mark
        else:
            return False
        return True

    def awaiting_summary(self) -> bool:
        """The type line was read and its summary not yet: the next line is the summary,
        whatever word opens it ("Thực hiện Đề án …")."""
        return self.reading_summary and not self.summary

    def _paragraph(self, cell: str) -> bool:
        """Whether `cell` opens an indented paragraph of the body below the summary ("      Ủy
        ban nhân dân … trân trọng kính mời: …"): further in than the summary's last line,
        capitalised, and reaching further right. A centred summary's next line is further in
        too, but ends further left; a wrapped one goes on in lower case."""
        start, end = self.summary_span
        return (self.indent >= start + 2 and cell[:1].isupper()
                and self.indent + len(cell) > end)

    def end_summary(self) -> None:
        if self.summary:
            self.reading_summary, self.summary_done = False, True

    def read(self, cell: str) -> None:
        """One piece of the left column below the number line."""
        if self.stamp(cell):
            self.end_summary()
            return
        if self.summary_done:
            return
        if vv := _VV.match(cell):
            if self.type is None:
                self.type, self.vv, self.reading_summary = "Công văn", True, True
                self.summary = [vv["rest"]] if vv["rest"] else []
                self.summary_span = (self.indent, self.indent + len(cell))
            return
        upper = is_upper(cell)
        if upper and self.type is None and fold(cell) in _TYPE_BY_FOLD:
            self.type, self.reading_summary = _TYPE_BY_FOLD[fold(cell)], True
            return
        if not self.reading_summary:
            return
        bridged, self.bridged = self.bridged, False
        if self.summary and (self._paragraph(cell) or (bridged and not cell[:1].islower())):
            self.end_summary()
            return
        if upper or cell.endswith(":") or len(self.summary) >= SUMMARY_LINES:
            self.end_summary()
            return
        self.summary.append(cell)
        self.summary_span = (self.indent, self.indent + len(cell))


def _block(cuts: list[_Line], at: int, header: _Header) -> list[str]:
    """The upper-case lines of the top-left block, above the number line: blank lines (some
    extractors put one between every two lines), stamps (recorded) and the right column's
    pieces are stepped over; any other text ends it."""
    block: list[str] = []
    for cut in reversed(cuts[max(0, at - ABOVE) : at]):
        cells = [c for c in cut.cells if not header.stamp(c) and re.search(r"[^\W\d_]", c)]
        if not cells:
            continue
        if not all(is_upper(c) for c in cells):
            break
        block.insert(0, " ".join(cells))
    return block


def _opens_body(cell: str, header: _Header) -> bool:
    """Whether `cell` opens the body. Right below the type line only a sure opening does;
    within a summary a dash goes on with it ("Phan Rang" / "- Tháp Chàm"): lists come after
    "Kính gửi:" or a line ending with a colon, not straight after a summary line."""
    if header.awaiting_summary():
        return bool(_SURE_BODY_START.match(cell))
    if header.reading_summary and cell[:1] in _DASHES:
        return False
    return bool(_BODY_START.match(cell))


def _right_only(cut: _Line | None) -> bool:
    return cut is not None and cut.right and not cut.cells


def _below(cuts: list[_Line], at: int, header: _Header) -> None:
    """Read the zone from the number line down to the first line of the body."""
    zone = cuts[at : at + BELOW]
    for i, cut in enumerate(zone):
        if i and cut.cells and _opens_body(cut.cells[0], header):
            return
        if cut.dated and not header.dated:
            header.place, header.dated, header.day = cut.place, True, cut.day
        if cut.blank and not header.vv and not header.summary:
            continue  # between a type line and its summary
        if cut.blank and header.reading_summary and (
                _right_only(zone[i - 1]) or _right_only(zone[i + 1] if i + 1 < len(zone)
                                                        else None)):
            # An extractor that sets each cell of a row apart ("V/v …", "", "Hà Nội, ngày
            # …", "", "… năm 2026"): the summary may go on below the right column's piece.
            header.bridged = True
            continue
        if cut.blank:
            header.end_summary()
        header.indent = cut.indent
        for cell in cut.cells:
            header.read(cell)


def _date_above(cuts: list[_Line], at: int, header: _Header) -> None:
    """The place-date line above the number line, when extraction put the right column
    first (the nearest one)."""
    for cut in reversed(cuts[max(0, at - ABOVE) : at]):
        if cut.dated:
            header.place, header.dated, header.day = cut.place, True, cut.day
            return


def _type_of(symbol: str, *, party: bool) -> str:
    """The type a symbol names: its code before the issuer's ("QĐ-UBND", "2026/NĐ-CP"), or
    for the Party before the slash ("KH/TU"); none names a công văn ("UBND-VP")."""
    if party:
        code = symbol.split("/")[0]
        return PARTY_TYPES.get(code) or ABBREVIATIONS.get(code, "Công văn")
    return ABBREVIATIONS.get(symbol.split("-")[0].split("/")[-1], "Công văn")


def from_text(text: str, source: str) -> Document | None:
    """Extract a Document from the text of one document; None when it has no `Số:` header."""
    cuts = [_cut(line) for line in text[: HEADER_LINES * LINE_CHARS].splitlines()[:HEADER_LINES]]
    at = next((i for i, cut in enumerate(cuts[:NUMBER_LINES]) if cut.number), None)
    if at is None:
        return None
    match = cuts[at].number
    assert match is not None
    number = match["number"] or None
    symbol = match["symbol"].replace(" ", "").strip(".-/")

    header = _Header()
    block = _block(cuts, at, header)
    _below(cuts, at, header)
    if not header.dated:
        _date_above(cuts, at, header)
    doc_type = header.type
    if doc_type is None:
        doc_type = _type_of(symbol, party=match["sep"] == "-")
    summary = collapse_spaces(" ".join(header.summary)) or None
    return Document(
        number=number, symbol=symbol, type=doc_type, issuer=issuer_of(block),
        place=header.place, date=header.day, summary=summary, urgency=header.urgency,
        confidentiality=header.secrecy, source=source,
    )


def best(candidates: list[Document | None]) -> Document | None:
    """Pick the document: attachments (listed first) win over the body, a whole header (its
    symbol with the issuer block or the date line) over a lone `Số:` line; fill gaps from the
    others of the same symbol."""
    found = [c for c in candidates if c is not None]
    if not found:
        return None
    chosen = next((c for c in found if c.symbol and (c.issuer or c.date)), found[0])
    for other in found:
        if other is chosen or other.symbol != chosen.symbol:
            continue
        for name in ("issuer", "place", "date", "summary", "urgency", "confidentiality"):
            if getattr(chosen, name) is None and getattr(other, name) is not None:
                chosen = replace(chosen, **{name: getattr(other, name)},
                                 filled_from=(*chosen.filled_from, (name, other.source)))
    return chosen
