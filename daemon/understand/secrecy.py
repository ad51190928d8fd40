"""Find a confidentiality mark (Mật, Tối mật, Tuyệt mật) wherever senders put it.

A confidential document must never travel by email, so a mark is looked for everywhere a
person or a template puts one: the stamp alone on its line, on the issuer's line beside the
body's name, spaced out ("T Ố I  M Ậ T"), labelled ("Độ mật: Tối mật"), in the subject, in any
attachment (PDF text, DOCX body, page headers and footers, files inside archives), in a
forwarded mail, in a reply to a case. And when part of a document could not be read (a scan,
an encrypted archive) on a mail that may carry an official document, the mail is *possibly*
confidential: announced without content, and the clerk decides.

What is a mark and what is only a word: a mark stands alone in its field of the line (fields
are separated by a line break, a wide gap, brackets, a bar or a dash between spaces), or ends
an upper-case heading line, or follows a label ("Độ mật:"). "Bảo vệ bí mật nhà nước" or "tài
liệu mật (nếu có)" in a sentence is never a mark: the word shares its field with others.

Linear in the text: each line is split once, and the scan stops at the first mark of the
highest level. Pure functions; `scan` runs in the parsing worker.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from daemon.models import ParsedMail
from daemon.textnorm import fold, nfc
from daemon.understand import legacy
from daemon.understand.extract import without_motto

# Levels, highest first. The key is the mark folded and without spaces.
LEVELS = (("tuyệtmật", "Tuyệt mật"), ("tốimật", "Tối mật"), ("mật", "Mật"))
_RANK = {name: rank for rank, (_, name) in enumerate(LEVELS)}
# The same marks typed without diacritics (old fonts, lossy PDF text): only in capitals, as a
# stamp is ("TOI MAT"); "mat" in lower case is too common a word to be believed.
_BARE = {"tuyetmat": "Tuyệt mật", "toimat": "Tối mật", "mat": "Mật"}

# Where one field of a line ends: a wide gap, a tab, brackets, a bar, a dash or colon between
# spaces, sentence punctuation followed by a space.
_FIELD_BREAK = re.compile(r"\s{2,}|\t|[()\[\]{}«»<>|*\"“”]|\s[-–—:]+\s|[-–—]{2,}|[,;]\s|\.\s")
# A label, then the level: "Độ mật: Tối mật", "Mức độ mật - MẬT", "Do mat: Mat".
_LABEL = re.compile(r"(?:mức\s+)?độ\s+mật\s*[:\-–]\s*(?P<level>[^\s,;.()\[\]]+(?:\s+mật)?)",
                    re.I)
# Words that make "mật" part of a phrase, not a mark, when they come just before it at the end
# of a heading ("BẢO VỆ BÍ MẬT", "DANH MỤC TÀI LIỆU MẬT").
# Given names are written in capitals too: "NGUYỄN THỊ MẬT" signs a letter, it is no stamp.
_PHRASE_BEFORE = {"bí", "bảo", "giữ", "liệu", "bản", "sơ", "độ", "mức", "mã", "khẩu"}
_NOT_BEFORE = _PHRASE_BEFORE | {"thị", "văn"}
# Words that make an opening "MẬT" part of a phrase: "MẬT KHẨU …", "MẬT MÃ …", "MẬT ONG …".
_NOT_AFTER = {"khẩu", "mã", "ong", "thiết", "độ", "báo", "thám", "danh", "phục"}
# Words in a subject that say a mail carries a confidential paper without being its mark.
_SUBJECT_HINT = re.compile(r"(văn\s+bản|tài\s+liệu|công\s+văn|hồ\s+sơ)\s+(tối\s+|tuyệt\s+)?mật\b",
                           re.I)

_NAME_BREAK = re.compile(r"[_.\-+]+")  # a file name's word separators, as field breaks

MAX_SCAN_CHARS = 5_000_000  # per piece of text: past this, the rest is a doubt, not scanned


@dataclass(frozen=True)
class Finding:
    """The highest mark found (None: none), where (for people, Vietnamese), and the doubts
    that make a mail possibly confidential even without a mark."""

    level: str | None = None
    where: str = ""
    doubts: tuple[str, ...] = ()


# Three or more letters each standing alone between single spaces: "T Ố I", "M Ậ T".
_SPACED = re.compile(r"(?<!\S)[^\W\d_](?: [^\W\d_]){2,}(?!\S)")
_JOINED_GAP = re.compile("\x00[ \t]+\x00")


def _squeeze_spaced(line: str) -> str:
    """Join letters typed one by one ("T Ố I  M Ậ T" -> "TỐI MẬT"): each run becomes one word,
    and two runs apart only by a gap become two words of one field."""
    if " " not in line:
        return line
    marked = _SPACED.sub(lambda m: "\x00" + m.group(0).replace(" ", "") + "\x00", line)
    return _JOINED_GAP.sub(" ", marked).replace("\x00", "")


def _level(field: str) -> str | None:
    """The level a field is, when the field is nothing but a mark."""
    letters = re.sub(r"[^\w]", "", field)
    if not letters or len(letters) > 12:
        return None
    folded = fold(letters)
    for key, name in LEVELS:
        if folded == key:
            return name
    if letters.isupper() and letters.isascii():
        return _BARE.get(letters.lower())
    return None


def _heading_level(line: str) -> str | None:
    """A mark closing or opening an upper-case line ("UBND TỈNH TÂY NINH MẬT"), as text
    extraction prints a stamp set beside the issuer's name."""
    letters = [c for c in line if c.isalpha()]
    if len(letters) < 6 or sum(c.isupper() for c in letters) < 0.9 * len(letters):
        return None
    words = re.sub(r"[^\w\s]", " ", line).split()
    for size in (2, 1):  # "TỐI MẬT" before "MẬT"
        if len(words) <= size:
            continue
        closing = _level("".join(words[-size:]))
        if closing and fold(words[-size - 1]) not in _NOT_BEFORE:
            return closing
        opening = _level("".join(words[:size]))
        if opening and fold(words[size]) not in _NOT_AFTER:
            return opening
    return None


# What every mark holds, as `_level` reads a field: the letters m, a (or ậ), t in a row, with
# nothing but characters other than letters, digits and "_" between them ("M Ậ T", "TỐI-MẬT").
# A line without it yields no level, however it is split or joined; most lines of most texts
# are passed over at this one search.
_MAY_MARK = re.compile(r"m\W*[aậ]\W*t", re.I)


def marks_in(text: str) -> str | None:
    """The highest confidentiality mark in `text`, or None."""
    best: str | None = None
    text = nfc(text[:MAX_SCAN_CHARS])
    if not _MAY_MARK.search(text):
        return None  # most texts: no line can hold a mark
    for raw in text.splitlines():
        if not _MAY_MARK.search(raw):
            continue  # most lines of a text that has one
        line = _squeeze_spaced(raw.strip())
        found = [_level(f) for f in _FIELD_BREAK.split(line)]
        # A table's row is one line of text: the motto beside the stamp must not hide it.
        found.append(_heading_level(without_motto(line)))
        for label in _LABEL.finditer(line):
            found.append(_level(label.group("level")))
        for name in found:
            if name and (best is None or _RANK[name] < _RANK[best]):
                best = name
        if best == LEVELS[0][1]:
            break
    return best


def may_hold_mark(text: str) -> bool:
    """Whether `text` could hold a mark however an extractor laid out its lines and gaps: its
    letters alone (legacy fonts converted), without diacritics, spell "mat" somewhere. A text
    that fails this holds no mark in any layout that keeps the letters of a stamp in order,
    so a fast extractor's text of it need not be read again by the layout-faithful one."""
    text, _ = legacy.to_unicode(nfc(text))
    # Compatibility-decomposed, every letter loses its marks; all but a-z goes, which may
    # join more letters than fold would (a wider net, never a narrower one).
    return "mat" in _NOT_LATIN.sub("", unicodedata.normalize("NFKD", text).lower())


_NOT_LATIN = re.compile(r"[^a-z]+")


def highest(*levels: str | None) -> str | None:
    """The highest of some levels ("Tối mật" over "Mật"), None when all are None."""
    known = [level for level in levels if level in _RANK]
    return min(known, key=_RANK.__getitem__) if known else None


def _subject_level(subject: str) -> tuple[str | None, str | None]:
    """The subject's mark, or a hint that the mail carries a confidential paper."""
    if level := marks_in(subject):
        return level, None
    words = subject.split()
    for i, word in enumerate(words):
        if word.isupper() and (name := _level(word)) and not (
                i and fold(words[i - 1]) in _PHRASE_BEFORE):
            return name, None
    if hint := _SUBJECT_HINT.search(subject):
        return None, f"tiêu đề thư nhắc đến «{hint.group(0)}»"
    return None, None


# Small images are logos and signatures in a mail's layout, not pages of a scan.
_LOGO_BYTES = 30_000


def find(mail: ParsedMail) -> Finding:
    """The highest mark in the subject, the body (forwarded mails included) and every piece
    of every attachment, and where it was found."""
    best: tuple[str, str] | None = None

    def consider(level: str | None, where: str) -> None:
        nonlocal best
        if level and (best is None or _RANK[level] < _RANK[best[0]]):
            best = (level, where)

    hints: list[str] = []
    subjects = [("tiêu đề thư", mail.subject)] + [
        ("tiêu đề thư được chuyển tiếp", subject) for subject in mail.carried_subjects]
    for where, subject in subjects:
        subject_level, hint = _subject_level(subject)
        consider(subject_level, where)
        hints += [hint] if hint else []
    for item in mail.attachments:
        # A file name is a subject of sorts: "QĐ 15 - Tối mật.pdf"; typed without accents
        # ("BC_TOI_MAT.pdf") it is only a doubt: "MAT" may be an abbreviation.
        stem = item.name.rpartition(".")[0] or item.name
        name_level = highest(marks_in(_NAME_BREAK.sub(" ", stem)),  # "BC_TOI_MAT"
                             marks_in(_NAME_BREAK.sub("  ", stem)))  # "Tuyệt mật_Quyết định"
        if name_level and "ậ" in item.name.lower():
            consider(name_level, f"tên tệp {item.name}")
        elif name_level:
            hints.append(f"tên tệp {item.name} có thể ghi độ mật «{name_level}»")
    texts = [("nội dung thư", mail.body)] + [
        (item.name if label == "body" else f"{item.name} ({label})", text)
        for item in mail.attachments for label, text in item.pieces or (("body", item.text),)]
    for where, text in texts:
        consider(marks_in(text), where)
        if len(text) > MAX_SCAN_CHARS:
            hints.append(f"{where}: phần sau {MAX_SCAN_CHARS:,} ký tự không được quét".replace(
                ",", "."))
    return Finding(best[0], best[1], tuple(hints)) if best else Finding(None, "", tuple(hints))


def doubts(mail: ParsedMail) -> tuple[str, ...]:
    """What could not be read in the attachments of a mail that may carry an official
    document: any of it could bear a mark no one has seen."""
    found: list[str] = []
    for item in mail.attachments:
        if item.withheld or (item.content_type.startswith("image/") and item.size < _LOGO_BYTES):
            continue  # a withheld file never travels by email; a logo is no page
        found += [f"tệp {item.name}: {why}" for why in item.unread]
    return tuple(found)
