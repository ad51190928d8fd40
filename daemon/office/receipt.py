"""The receipt slip (Giấy tiếp nhận hồ sơ và hẹn trả kết quả), laid out as the official form:
the national header beside the agency, the slip's number, place and date, the applicant, the
procedure, the documents received, the appointment, the tracking-book entry and the receiving
officer's signature block.

One HTML template draws both the email's HTML and the A4 PDF (fpdf2 reads the same HTML), so
an agency's `<rules dir>/templates/receipt.html.j2` reaches both; `receipt.txt.j2` is the
plain-text part, from the same fields. Pure: fields in, text and bytes out.
"""

from __future__ import annotations

import atexit
import functools
import html
import logging
import os
import re
import shutil
import tempfile
import threading
from dataclasses import asdict, dataclass
from datetime import date
from multiprocessing.util import Finalize
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2

from daemon.textnorm import collapse_spaces, nfc, visible

if TYPE_CHECKING:
    # fpdf2 (with Pillow and fontTools) is imported where a PDF is drawn, not with this
    # module: the daemon's own process composes no PDF (its workers do) and is 33 MB lighter
    # and starts faster without it.
    from fpdf import FPDF

log = logging.getLogger(__name__)

SHIPPED = Path(__file__).parent / "templates"
FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
FIELD_CAP = 300  # characters of a value taken from a mail (a name, an address, a file name)
MAX_DOCUMENTS = 60  # lines of the documents table; more are summed up in one line
# A line on the form for a value the mail did not give, to be filled in by hand.
BLANK = "…………………………………………"

# The serif faces of the slip (a form is printed in a serif face), each with the sans face as
# the fallback of a host that has only the core DejaVu fonts.
_FACES = {"": ("DejaVuSerif.ttf", "DejaVuSans.ttf"),
          "B": ("DejaVuSerif-Bold.ttf", "DejaVuSans-Bold.ttf"),
          "I": ("DejaVuSerif-Italic.ttf", "DejaVuSans-Oblique.ttf", "DejaVuSerif.ttf"),
          "BI": ("DejaVuSerif-BoldItalic.ttf", "DejaVuSans-BoldOblique.ttf",
                 "DejaVuSerif-Bold.ttf")}
_HEAD = re.compile(r"<head\b.*?</head\s*>|<(style|script)\b.*?</\1\s*>", re.I | re.S)


@dataclass(frozen=True)
class ReceivedDocument:
    """One line of the documents received: its name, form and count."""

    name: str
    form: str = "Bản điện tử"
    count: str = "01 tệp"


@dataclass(frozen=True)
class DossierHeading:
    """What every letter about a dossier names first: the agency, where results are returned,
    the case, the applicant and the procedure."""

    agency: str
    result_place: str
    code: str
    applicant: str | None
    email: str | None
    phone: str | None
    procedure: str | None


@dataclass(frozen=True)
class ReceiptFields(DossierHeading):
    """The fields of the official receipt slip (Giấy tiếp nhận hồ sơ và hẹn trả kết quả)."""

    days: int | None
    documents: tuple[ReceivedDocument, ...]
    received: str  # "14 giờ 05 phút, ngày 22/11/2026"
    appointment: str | None  # "14 giờ 00 phút, ngày 04/12/2026"
    queue: str | None = None  # "số thứ tự 3, buổi sáng ngày 23/11/2026"
    parent: str = ""  # the parent authority (cơ quan chủ quản)
    number: str = ""  # the slip's number, "261122-0001/GTN"
    dated: str = ""  # "Tây Ninh, ngày 22 tháng 11 năm 2026"
    address: str | None = None
    sets: int = 1
    book_volume: str | None = None  # the tracking book's volume, "01/2026"
    book_number: int | None = None  # the dossier's number in it
    officer: str = "Người tiếp nhận hồ sơ"
    officer_name: str = ""


@dataclass(frozen=True)
class Slip:
    """The slip as the email carries it: plain text, HTML and the PDF drawn from that HTML."""

    text: str
    html: str
    pdf: bytes


def clean(value: str | None, cap: int = FIELD_CAP) -> str | None:
    """A value from a mail, fit for the form: NFC, no control or direction-override
    characters, one line, at most `cap` characters."""
    if value is None:
        return None
    text = collapse_spaces(visible(nfc(value[:cap * 2])).strip())
    if len(text) > cap:
        text = text[:cap - 1].rstrip() + "…"
    return text or None


def slip_number(code: str, agency_code: str) -> str:
    """The slip's number, from the dossier code (unique, and the same on every resend): the
    code without the agency's own prefix, "000.00.22.H56-261122-0001" -> "261122-0001/GTN"."""
    short = code.removeprefix(f"{agency_code}-") if agency_code else code
    return f"{short or code}/GTN"


def dated_line(place: str, day: date) -> str:
    """ "Tây Ninh, ngày 26 tháng 11 năm 2026" (place left out when there is none)."""
    when = f"ngày {day:%d} tháng {day:%m} năm {day:%Y}"
    return f"{place}, {when}" if place else when.capitalize()


def _values(fields: ReceiptFields) -> dict[str, Any]:
    values = asdict(fields)
    values["blank"] = BLANK
    return values


def templates(rules_dir: Path | None) -> jinja2.Environment:
    """The letters' templates: the agency's `<rules dir>/templates/` first, then the shipped
    ones (HTML autoescaped, an undefined value an error).

    One environment per rules directory keeps the compiled templates (compiling both of the
    slip's took 13 ms a slip); jinja2 compiles a template again when its file changes, and a
    new environment is made when a file is added to or removed from the agency's folder
    (its modification time), so an agency's edit is seen at the next letter, as before."""
    if rules_dir is None:
        return _environment(None, None)
    try:
        stamp: int | None = (rules_dir / "templates").stat().st_mtime_ns
    except OSError:
        stamp = None
    return _environment(rules_dir, stamp)


@functools.lru_cache(maxsize=16)
def _environment(rules_dir: Path | None, stamp: int | None) -> jinja2.Environment:
    paths = [str(rules_dir / "templates")] if rules_dir else []
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader([*paths, str(SHIPPED)]),
        autoescape=lambda name: bool(name and name.endswith(".html.j2")),
        undefined=jinja2.StrictUndefined, keep_trailing_newline=True)


def render(fields: ReceiptFields, rules_dir: Path | None = None) -> tuple[str, str]:
    """The slip as plain text and HTML (mail-supplied values are escaped in the HTML)."""
    env = templates(rules_dir)
    values = _values(fields)
    return (nfc(env.get_template("receipt.txt.j2").render(values)),
            nfc(env.get_template("receipt.html.j2").render(values)))


def new_document(font_dir: Path = FONT_DIR) -> FPDF:
    """An empty A4 document with the Vietnamese fonts loaded (about 50 ms: fonts are parsed
    per document, because fpdf2's font objects keep per-document subsetting state)."""
    from fpdf import FPDF

    doc = FPDF(format="A4")
    doc.add_font("DejaVu", "", str(font_dir / "DejaVuSans.ttf"))
    doc.add_font("DejaVu", "B", str(font_dir / "DejaVuSans-Bold.ttf"))
    return doc


def face_files(font_dir: Path) -> list[Path]:
    """Every font file vanthu's PDFs draw with: the registers' sans faces and the form's."""
    return [font_dir / "DejaVuSans.ttf", font_dir / "DejaVuSans-Bold.ttf",
            *_face_paths(font_dir).values()]


def _face_paths(font_dir: Path) -> dict[str, Path]:
    """The file of each style of the form: the first of its faces the directory holds."""
    return {style: next((font_dir / n for n in names if (font_dir / n).exists()),
                        font_dir / names[0]) for style, names in _FACES.items()}


def form_document(font_dir: Path) -> FPDF:
    """An A4 portrait page with the serif faces of the form, margins as on a printed form."""
    from fpdf import FPDF

    doc = FPDF(orientation="portrait", format="A4")
    for style, path in _face_paths(font_dir).items():
        doc.add_font("Form", style, str(path))
    doc.set_margins(20, 15, 20)  # even: fpdf2 centres tables on the page
    doc.set_auto_page_break(True, 15)
    doc.add_page()
    doc.set_font("Form", "", 10)  # the tables' size: the header fits the form's two columns
    return doc


@functools.cache
def _tag_styles() -> dict[str, Any]:
    """The form's headings and paragraphs, as fpdf2's HTML layout takes them."""
    from fpdf.fonts import TextStyle

    return {
        "h1": TextStyle(font_family="Form", font_style="B", font_size_pt=13.5, color=0,
                        t_margin=5, b_margin=1),
        "h2": TextStyle(font_family="Form", font_style="B", font_size_pt=11.5, color=0,
                        t_margin=3, b_margin=2),
        "p": TextStyle(font_family="Form", font_size_pt=11.5, t_margin=2, b_margin=0),
    }


# The characters of nearly every slip: Latin with the Vietnamese letters, combining marks,
# punctuation, currency, letter-like symbols, arrows, mathematical operators, shapes and
# ballot boxes. A slip drawn only from these is laid out with the faces cut down to them.
COMMON_CHARACTERS = ((0x20, 0x24F), (0x300, 0x36F), (0x1E00, 0x1EFF), (0x2000, 0x206F),
                     (0x20A0, 0x20CF), (0x2100, 0x215F), (0x2190, 0x21FF), (0x2200, 0x22FF),
                     (0x25A0, 0x25FF), (0x2610, 0x2612))
_COMMON = frozenset(c for low, high in COMMON_CHARACTERS for c in range(low, high + 1))


class ReducedFaces:
    """The form's faces cut down to COMMON_CHARACTERS, made once per process (about 0.2 s a
    face) in a private temporary directory, again when the fonts on disk change or the
    directory is gone. fpdf2 parses each face for every document and subsets it on output:
    on a third of the glyphs both take about a third less time, and the PDF looks the same
    (the glyphs, their metrics and hinting are the original's; the tables cut are those
    fpdf2 leaves out of the PDF). Only a process that draws more than `after` slips (the
    daemon) cuts them: a command drawing one does not pay for it. The daemon's workers find
    them cut: the fork server cuts them before it forks any (daemon.intake.preloaded)."""

    def __init__(self, after: int = 2) -> None:
        self._lock = threading.Lock()
        self._made: dict[Path, tuple[tuple[tuple[int, int], ...], Path]] = {}
        self._asked = 0
        self.after = after

    def directory(self, font_dir: Path, now: bool = False) -> Path | None:
        """A directory holding the reduced faces under the names `form_document` picks in
        `font_dir`; None when they cannot be made (the original faces are used), or not yet
        (`now`: made at once, whatever `after` says, and used from then on)."""
        self._asked = max(self._asked + 1, self.after + 1 if now else 0)
        if self._asked <= self.after and not now:
            return None
        faces = _face_paths(font_dir)
        try:
            stamp = tuple((f.stat().st_mtime_ns, f.stat().st_size) for f in faces.values())
        except OSError:
            return None
        with self._lock:
            made = self._made.get(font_dir)
            if made is not None and made[0] == stamp and all(
                    (made[1] / f.name).exists() for f in faces.values()):
                return made[1]
            try:
                _sweep()
                folder = Path(tempfile.mkdtemp(prefix=f"{_PREFIX}{os.getpid()}-"))
                # Removed when the process ends: atexit for the daemon and commands, the
                # finalizers of multiprocessing for a worker (which never runs atexit).
                atexit.register(shutil.rmtree, folder, ignore_errors=True)
                Finalize(None, shutil.rmtree, args=(folder,), kwargs={"ignore_errors": True},
                         exitpriority=0)
                for face in faces.values():
                    _reduce(face, folder / face.name)
            except Exception as err:  # fontTools raises many kinds; the full faces still work
                log.error("receipt.fonts_not_reduced", extra={"error": str(err)[:300]})
                return None
            self._made[font_dir] = (stamp, folder)
            return folder


_PREFIX = "vanthu-fonts-"


def _sweep() -> None:
    """Remove the reduced faces of processes that are gone without removing theirs (a worker
    terminated by the pool): the name holds the process id."""
    base = Path(tempfile.gettempdir())
    for folder in base.glob(f"{_PREFIX}*-*"):
        try:
            pid = int(folder.name[len(_PREFIX):].split("-", 1)[0])
            if folder.stat().st_uid != os.getuid():
                continue
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except (ValueError, OSError):  # not ours, or not a process we may see
            continue


# The tables fpdf2 (2.8) drops when it embeds a face: cut here too, the rest kept.
_DROPPED_BY_FPDF = ["FFTM", "GDEF", "GPOS", "GSUB", "MATH", "hdmx", "meta", "sbix", "CBDT",
                    "CBLC", "EBDT", "EBLC", "EBSC", "SVG ", "CPAL", "COLR"]


def _reduce(face: Path, to: Path) -> None:
    """`face` with only the glyphs of COMMON_CHARACTERS (and what they need), the hinting and
    every table fpdf2 embeds kept."""
    from fontTools import subset, ttLib  # type: ignore[import-untyped]  # fpdf2's own

    options = subset.Options(layout_features=[], name_IDs=["*"], name_languages=["*"],
                             glyph_names=True, notdef_outline=True, recommended_glyphs=True,
                             legacy_kern=True, passthrough_tables=True)
    options.drop_tables = list(_DROPPED_BY_FPDF)
    font = ttLib.TTFont(str(face), recalcTimestamp=False)
    try:
        cutter = subset.Subsetter(options)
        cutter.populate(unicodes=sorted(_COMMON))
        cutter.subset(font)
        font.save(str(to))
    finally:
        font.close()


REDUCED = ReducedFaces()


def html_pdf(markup: str, font_dir: Path = FONT_DIR,
             reduced: ReducedFaces | None = REDUCED) -> bytes:
    """The PDF of the slip's HTML: what `<head>`, `<style>` and `<script>` hold is for the
    mail reader and is left out. Drawn with the `reduced` faces when every character of it
    is a common one."""
    from fpdf.fonts import TTFFont

    markup = _HEAD.sub("", markup)
    if reduced and all(ord(c) in _COMMON or c.isspace() for c in html.unescape(markup)):
        font_dir = reduced.directory(font_dir) or font_dir
    doc = form_document(font_dir)
    try:
        doc.write_html(markup, tag_styles=_tag_styles(),
                       table_line_separators=True, warn_on_tags_not_matching=False)
        return bytes(doc.output())
    finally:  # fpdf2 closes only the font files it used, and none when the layout failed
        for font in doc.fonts.values():
            if isinstance(font, TTFFont):
                font.close()


def make(fields: ReceiptFields, rules_dir: Path | None = None,
         font_dir: Path = FONT_DIR) -> Slip:
    """The slip: text and HTML from the templates (the agency's first), the PDF from that
    HTML. An agency template the PDF maker cannot lay out (a construct fpdf2 does not
    support) still goes into the mail; the PDF is then drawn from the shipped template."""
    text, markup = render(fields, rules_dir)
    try:
        document = html_pdf(markup, font_dir)
    except Exception as err:  # fpdf2 raises several kinds on HTML it cannot lay out
        if rules_dir is None or not (rules_dir / "templates" / "receipt.html.j2").exists():
            raise
        log.error("receipt.template_unusable_for_pdf", extra={"error": str(err)[:300]})
        document = html_pdf(render(fields, None)[1], font_dir)
    return Slip(text, markup, document)


def pdf(fields: ReceiptFields, rules_dir: Path | None = None,
        font_dir: Path = FONT_DIR) -> bytes:
    """The slip as an A4 PDF, drawn from the HTML template (the agency's, when it has one)."""
    return make(fields, rules_dir, font_dir).pdf
