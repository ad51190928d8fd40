"""Read scanned pages: a PDF page without usable text, or an image that looks like a page,
rendered and read by Tesseract with its Vietnamese data, as far as the document header needs.

Runs where every attachment is read: in a worker process (`intake/workers.py`), under its
address-space cap and time limit. On top of those:
- pages are rendered by PDFium (pypdfium2) at `[ocr] dpi`, lowered so no image has more than
  `max_pixels` pixels (a hostile page size cannot ask for a gigapixel bitmap); an image
  attachment larger than that is decoded reduced (JPEG) or not read;
- Tesseract runs as a child process (`tesseract_cmd`) fed over stdin, one thread, killed
  after `timeout_seconds`, its address space capped at `memory_mb` and its CPU time at the
  timeout (so a child left behind by a killed worker ends by itself);
- one mail spends at most `mail_seconds` on OCR in all (`start_mail` begins its budget);
- only as far as needed: the header zone of page one first (the top of the page, where
  number, symbol, issuer, place, date, type, summary and the stamps stand), the whole page
  when a field is still missing, further pages (up to `max_pages`) when no header was found.

The text is rebuilt from Tesseract's words and their boxes (TSV output) in the shape text
extraction gives for a PDF with a text layer (columns set apart by a gap of spaces), so the
same header reader (`extract.from_text`) reads it. Each field read gets a confidence: the
lowest of Tesseract's word confidences among the words that make it up.
"""

from __future__ import annotations

import contextvars
import functools
import io
import itertools
import os
import re
import resource
import shutil
import subprocess
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from daemon.config import LimitsConfig, OcrConfig
from daemon.models import Document
from daemon.textnorm import fold, nfc
from daemon.understand import extract

if TYPE_CHECKING:
    from PIL import Image

HEADER_SHARE = 0.42  # the top of page one that holds the header block
# What Tesseract reads: a page, one column of text per block, words with their boxes.
PSM = "3"
# An image attachment that looks like a scanned page: portrait, about A4 or a phone's 3:4,
# large enough to hold text, and mostly paper.
PAGE_RATIO = (1.15, 1.8)
PAGE_MIN_SIDE = 600
PAPER_SHARE = 0.5  # of the pixels at least this light (200 of 255)


def unavailable(cfg: OcrConfig) -> str | None:
    """Why OCR cannot run (in Vietnamese, for status and the start-up log), None when it can."""
    if not cfg.enabled:
        return "OCR đang tắt ([ocr] enabled = false)"
    if shutil.which(cfg.tesseract_cmd) is None:
        return f"không tìm thấy chương trình Tesseract ({cfg.tesseract_cmd}): OCR tắt"
    data = tessdata_languages(cfg.tesseract_cmd, cfg.timeout_seconds)
    missing = [name for name in cfg.language.split("+") if data is not None and name not in data]
    if missing:
        return f"Tesseract thiếu dữ liệu ngôn ngữ {'+'.join(missing)!r}: OCR tắt"
    return None


@functools.lru_cache(maxsize=4)
def tessdata_languages(command: str, timeout: float) -> frozenset[str] | None:
    """The languages Tesseract has data for (None when it cannot say); asked once per
    process."""
    try:
        done = subprocess.run([command, "--list-langs"], capture_output=True, timeout=timeout,
                              check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    lines = done.stdout.decode("utf-8", "replace").splitlines()
    return frozenset(line.strip() for line in lines[1:] if line.strip()) or None


# ---------------------------------------------------------------------------------------------
# The budget of one mail: OCR stops when it is spent; the rest of the mail is still read.

@dataclass
class _Budget:
    left: float


_BUDGET: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar("ocr_budget",
                                                                         default=None)


def start_mail(limits: LimitsConfig) -> None:
    """Begin the OCR budget of one mail: `[ocr] mail_seconds`, and never more than 60% of
    `[limits] parse_seconds` (the rest of the mail must still be read in time)."""
    _BUDGET.set(_Budget(min(limits.ocr.mail_seconds, 0.6 * limits.parse_seconds)))


def _budget(cfg: OcrConfig) -> _Budget:
    """The budget of the mail being read; an attachment read on its own (not through
    `understand.read`) gets a fresh one for each run, never a budget left from another."""
    return _BUDGET.get() or _Budget(cfg.mail_seconds)


class OcrStopped(Exception):
    """OCR could not go on (no time left, Tesseract failed or is missing); the reason is in
    Vietnamese."""


# ---------------------------------------------------------------------------------------------
# Tesseract

@dataclass(frozen=True)
class Word:
    text: str
    conf: float  # 0..1
    left: int
    top: int
    width: int
    height: int
    line: tuple[int, int, int]  # Tesseract's block, paragraph and line


def _limit_child(pid: int, cfg: OcrConfig) -> None:
    """Cap the child's address space and CPU time (the worker's own limits are its own)."""
    memory = cfg.memory_mb * 1024 * 1024
    cpu = int(cfg.timeout_seconds) + 1
    try:
        resource.prlimit(pid, resource.RLIMIT_AS, (memory, memory))
        resource.prlimit(pid, resource.RLIMIT_CPU, (cpu, cpu + 1))
    except (OSError, ValueError):
        pass  # already gone, or a limit above the one we run under: ours still holds


def tesseract(png: bytes, cfg: OcrConfig) -> list[Word]:
    """Tesseract's words of one image (PNG bytes), with their boxes and confidences."""
    budget = _budget(cfg)
    timeout = min(cfg.timeout_seconds, budget.left)
    if timeout < 1:
        raise OcrStopped(f"hết thời gian dành cho OCR của thư ({cfg.mail_seconds:g} giây)")
    command = [cfg.tesseract_cmd, "stdin", "stdout", "-l", cfg.language, "--psm", PSM,
               "-c", "tessedit_create_tsv=1"]
    env = {"OMP_THREAD_LIMIT": "1", "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
           "LC_ALL": "C"}
    if "TESSDATA_PREFIX" in os.environ:  # language data installed elsewhere by the admin
        env["TESSDATA_PREFIX"] = os.environ["TESSDATA_PREFIX"]
    began = time.monotonic()
    try:
        child = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, env=env, start_new_session=True)
    except OSError as err:
        raise OcrStopped(f"không chạy được Tesseract ({cfg.tesseract_cmd}): "
                         f"{err.strerror}") from err
    _limit_child(child.pid, cfg)
    try:
        out, _ = child.communicate(png, timeout=timeout)
    except subprocess.TimeoutExpired as err:
        child.kill()
        child.communicate()
        raise OcrStopped(f"Tesseract đọc một trang quá {timeout:.0f} giây") from err
    finally:
        budget.left -= time.monotonic() - began
    if child.returncode != 0:
        raise OcrStopped(f"Tesseract dừng với mã {child.returncode}")
    return parse_tsv(out.decode("utf-8", "replace"))


def parse_tsv(tsv: str) -> list[Word]:
    """The words of Tesseract's TSV output (level 5 rows with text)."""
    words: list[Word] = []
    for row in tsv.splitlines()[1:]:
        cells = row.split("\t")
        if len(cells) != 12 or cells[0] != "5" or not cells[11].strip():
            continue
        try:
            block, par, line, left, top, width, height = (int(cells[i]) for i in
                                                           (2, 3, 4, 6, 7, 8, 9))
            conf = float(cells[10])
        except ValueError:
            continue
        words.append(Word(_vietnamese(cells[11].strip()), max(0.0, min(conf, 100.0)) / 100, left,
                          top, width, height, (block, par, line)))
    return words


def _vietnamese(word: str) -> str:
    """A word as Vietnamese writes it: Tesseract reads Đ as the Icelandic Ð at times."""
    return nfc(word).replace("Ð", "Đ").replace("ð", "đ")


# Tesseract mistakes the case of an s, whose capital has the same shape: "chuyển đổi Số
# trong", "cơ SỞ sản xuất". Such a two-letter word between two words in lower case is set in
# lower case, on one line or across a line break; a name goes on with a capital ("Sở Tài
# chính") and is left alone.
_MISCASED = re.compile(r"(?<=[a-zà-ỹđ,;][ \n])S[a-zà-ỹđA-ZÀ-ỸĐ](?=[ \n][a-zà-ỹđ])")


def layout(words: list[Word]) -> str:
    """The words as lines of text, in Tesseract's reading order; within a line, words far
    apart (another column) are set apart by a gap of spaces, as text extraction does."""
    lines: dict[tuple[int, int, int], list[Word]] = {}
    for word in words:
        lines.setdefault(word.line, []).append(word)
    out: list[str] = []
    last_block = None
    for key, line in lines.items():
        if last_block is not None and key[0] != last_block:
            out.append("")
        last_block = key[0]
        line.sort(key=lambda w: w.left)
        height = max(1, max(w.height for w in line))
        text = line[0].text
        for before, word in itertools.pairwise(line):
            gap = word.left - (before.left + before.width)
            text += ("    " if gap > 1.5 * height else " ") + word.text
        out.append(text)
    return _MISCASED.sub(lambda m: m.group().lower(), "\n".join(out))


# ---------------------------------------------------------------------------------------------
# Pages as images

def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def pdf_pages(data: bytes, cfg: OcrConfig, pages: int, share: float = 1.0
              ) -> Iterator[Image.Image]:
    """The first `pages` pages of a PDF as grey images, each the top `share` of its page,
    at `dpi` or less so no image has more than `max_pixels` pixels."""
    import pypdfium2

    document = pypdfium2.PdfDocument(data)
    try:
        for index in range(min(pages, len(document))):
            page = document[index]
            width, height = page.get_size()
            if width <= 0 or height <= 0:
                continue
            kept = height * share
            scale = min(cfg.dpi / 72, (cfg.max_pixels / (width * kept)) ** 0.5)
            bitmap = page.render(scale=scale, crop=(0, height - kept, 0, 0), grayscale=True)
            yield bitmap.to_pil().convert("L")
    finally:
        document.close()


def image_pages(data: bytes, cfg: OcrConfig, pages: int) -> Iterator[Image.Image]:
    """The frames of an image attachment (a TIFF may hold several pages) that look like
    scanned pages, as grey images of at most `max_pixels` pixels."""
    from PIL import Image as PILImage

    with warnings.catch_warnings():  # Pillow warns of every odd file (bad EXIF, big images)
        warnings.simplefilter("ignore")
        try:
            with PILImage.open(io.BytesIO(data), formats=("JPEG", "PNG", "TIFF")) as image:
                frames = _frames(image, cfg, pages)
        except PILImage.DecompressionBombError as err:
            raise OcrStopped("ảnh quá lớn để đọc bằng OCR ([ocr] max_pixels)") from err
    yield from frames


def _frames(image: Image.Image, cfg: OcrConfig, pages: int) -> list[Image.Image]:
    """The first `pages` frames that look like pages, decoded within `max_pixels`."""
    frames: list[Image.Image] = []
    for index in range(pages):
        try:
            image.seek(index)
        except EOFError:
            break
        width, height = image.size
        if width * height > cfg.max_pixels:
            if image.format != "JPEG":
                raise OcrStopped(f"ảnh {width}×{height} điểm, quá giới hạn [ocr] max_pixels "
                                 f"({cfg.max_pixels})")
            ratio = (cfg.max_pixels / (width * height)) ** 0.5
            image.draft("L", (int(width * ratio), int(height * ratio)))  # decoded reduced
            if image.size[0] * image.size[1] > cfg.max_pixels * 4:
                raise OcrStopped("ảnh quá lớn để đọc bằng OCR ([ocr] max_pixels)")
        grey = image.convert("L")
        if grey.size[0] * grey.size[1] > cfg.max_pixels:
            ratio = (cfg.max_pixels / (grey.size[0] * grey.size[1])) ** 0.5
            grey = grey.resize((int(grey.size[0] * ratio), int(grey.size[1] * ratio)))
        if not looks_like_page(grey):
            break
        frames.append(grey)
    return frames


def looks_like_page(image: Image.Image) -> bool:
    """A scanned or photographed page: portrait, about A4 or 3:4, large enough to hold text,
    mostly paper. A photo of a person, an ID card or a logo is not."""
    width, height = image.size
    if min(width, height) < PAGE_MIN_SIDE or not PAGE_RATIO[0] <= height / width <= PAGE_RATIO[1]:
        return False
    small = image.resize((100, int(100 * height / width)))
    histogram = small.histogram()
    return sum(histogram[200:]) >= PAPER_SHARE * sum(histogram)


def header_zone(image: Image.Image) -> Image.Image:
    width, height = image.size
    return image.crop((0, 0, width, int(height * HEADER_SHARE)))


# ---------------------------------------------------------------------------------------------
# The document read off scanned pages

@dataclass(frozen=True)
class Scanned:
    """What OCR read in one file: its text (as far as it was read), the document header found
    in it (source "ocr"), the mean confidence of its words, and the pages read."""

    text: str
    document: Document | None
    confidence: float
    pages: int
    words: int  # 0: no text found (a blank or pictorial page, or no image that is a page)


def _tokens(text: str) -> list[str]:
    """The words and numbers of `text`, folded for comparison (case; leading zeros)."""
    found = []
    for token in re.findall(r"\w+", fold(text, accents=True)):
        found.append(token.lstrip("0") or "0" if token.isdigit() else token)
    return found


def _field_text(document: Document, name: str) -> str:
    value = getattr(document, name)
    if name == "date" and value is not None:
        return f"{value.day} {value.month} {value.year}"
    return str(value)


def confidences(document: Document, words: list[Word]) -> dict[str, float]:
    """Each field's confidence: the lowest among its words' best readings. A word the page
    does not show (an issuer's name spelt out from "UBND") does not count; a field none of
    whose words is on the page (a type told by the symbol) takes the page's mean."""
    best: dict[str, float] = {}
    for word in words:
        for token in _tokens(word.text):
            best[token] = max(best.get(token, 0.0), word.conf)
    mean = sum(w.conf for w in words) / len(words) if words else 0.0
    out: dict[str, float] = {}
    for name in Document.FIELDS:
        if getattr(document, name) is None:
            continue
        seen = [best[t] for t in _tokens(_field_text(document, name)) if t in best]
        out[name] = round(min(seen) if seen else mean, 3)
    return out


def _complete(document: Document | None) -> bool:
    return document is not None and all(getattr(document, name) is not None for name in (
        "symbol", "issuer", "date", "summary"))


def blank(image: Image.Image) -> bool:
    """A page without ink: fewer than 0.2% of its pixels dark (nothing to read)."""
    histogram = image.histogram()
    return sum(histogram[:128]) < 0.002 * sum(histogram)


def _read(image: Image.Image, cfg: OcrConfig, name: str
          ) -> tuple[str, list[Word], Document | None]:
    if blank(image):
        return "", [], None
    words = tesseract(_png(image), cfg)
    text = layout(words)
    found = extract.from_text(text, "ocr")
    if found is None:
        return text, words, None
    scores = confidences(found, words)
    return text, words, replace(found, file=name, confidence=tuple(scores.items()),
                                unsure=tuple(n for n, c in scores.items()
                                             if c < cfg.min_confidence))


def read_pages(zone: Iterator[Image.Image], pages: Iterator[Image.Image], cfg: OcrConfig,
               name: str) -> Scanned:
    """Read the header zone of page one (`zone`), then whole pages (`pages`, page one first)
    while the header is not complete. Raises OcrStopped only when nothing was read."""
    texts: list[str] = []
    every: list[Word] = []
    document: Document | None = None
    read = 0
    try:
        for image in zone:
            text, every, document = _read(image, cfg, name)
            texts = [text]
        if not _complete(document):
            for index, image in enumerate(pages):
                read += 1
                text, words, found = _read(image, cfg, name)
                if index == 0:  # the whole of page one replaces its top
                    texts, every = [], []
                texts.append(text)
                every += words
                if found is not None:
                    document = found
                    break
    except OcrStopped:
        if not texts:
            raise
    confidence = sum(w.conf for w in every) / len(every) if every else 0.0
    return Scanned("\n".join(texts).strip(), document, round(confidence, 3), max(read, 1),
                   len(every))


# What people read about a document read by OCR: the forward's cover note and the digest.
FIELD_NAMES = {"number": "số", "symbol": "ký hiệu", "type": "loại văn bản",
               "issuer": "cơ quan ban hành", "place": "địa danh", "date": "ngày văn bản",
               "summary": "trích yếu", "urgency": "độ khẩn", "confidentiality": "độ mật"}


def check_note(unsure: list[str] | tuple[str, ...]) -> str:
    """In Vietnamese: which fields read off a scan the clerk should check against it."""
    names = ", ".join(FIELD_NAMES.get(name, name) for name in unsure)
    return (f"đọc từ bản quét bằng OCR, độ tin cậy thấp ({names}): đề nghị văn thư đối chiếu "
            "với văn bản gốc")
