"""Who sent a dossier: a company or a person's name, the sender address, a phone number.

Pure functions over a ParsedMail's text, linear in its length whatever it holds: each text
is read once for its name cues and once for the places where a company name may start, and
every cue then looks up the next company name instead of searching the rest of the text
again (20,000 repetitions of "tên tổ chức" would otherwise mean 20,000 searches).
"""

from __future__ import annotations

import bisect
import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass

from daemon.models import Applicant, ParsedMail
from daemon.textnorm import fold

_PHONE = re.compile(r"(?<![\d/])(?:\+84|0084|0)[\s.\-]?(?:\d[\s.\-]?){8,10}(?!\d)")
_NAME_CUES = re.compile(
    r"(?:tôi\s+tên\s+là|tên\s+tôi\s+là|tôi\s+là|em\s+là|họ\s+và\s+tên|họ\s+tên|tên\s+tổ\s+chức|"
    r"tên\s+doanh\s+nghiệp|người\s+đề\s+nghị|tôi|em)\s*[:：]?\s*", re.I)
# Where a company name may start, and the name itself: "Công ty", an optional form, then the
# shortest 2 to 80 characters followed by punctuation, a line end, the end of the text or a
# salutation. The check of what follows reads the spaces after the name possessively, and
# those spaces are a single one (see `_flat`): trying 80 name lengths costs 80 short looks.
_COMPANY_START = re.compile(r"\bCông\s+ty", re.I)
_COMPANY = re.compile(
    r"\b(Công\s+ty\s+(?:TNHH|CP|cổ\s+phần|trách\s+nhiệm\s+hữu\s+hạn)?[^,.;:()\n]{2,80}?)"
    r"(?=[^\S\n]*+(?:[(,.;:\n]|$)|[^\S\n]++(?:kính|xin|gửi|trân|đề)\b)", re.I)
_SPACES = re.compile(r"[^\S\n]+")


def _flat(text: str) -> str:
    """`text` with every run of spaces and tabs (not line ends) made one space: names are
    read word by word, and no regex then meets a long run of spaces."""
    return _SPACES.sub(" ", text)


@dataclass(frozen=True)
class _Companies:
    """The company names of one text, by where they start, to find the first one at or
    after any position with a binary search."""

    starts: list[int]
    names: list[str]

    @classmethod
    def of(cls, text: str) -> _Companies:
        starts: list[int] = []
        names: list[str] = []
        for candidate in _COMPANY_START.finditer(text):
            if found := _COMPANY.match(text, candidate.start()):
                starts.append(found.start())
                names.append(" ".join(found.group(1).split()))
        return cls(starts, names)

    def first_from(self, position: int) -> tuple[int, str] | None:
        """The first company name starting at or after `position`."""
        i = bisect.bisect_left(self.starts, position)
        return (self.starts[i], self.names[i]) if i < len(self.starts) else None


def _clean_name(candidate: str) -> str | None:
    words: list[str] = []
    for word in candidate.split():
        word = word.strip(",.;:()")
        if not word or not (word[0].isupper() or word.isupper()):
            break
        words.append(word)
        if len(words) == 6:
            break
    return " ".join(words) if len(words) >= 2 else None


def _cues(texts: list[str]) -> Iterator[tuple[int, re.Match[str]]]:
    """Every name cue, text by text (the index of its text, the cue)."""
    for index, text in enumerate(texts):
        for cue in _NAME_CUES.finditer(text):
            yield index, cue


def _name(texts: list[str]) -> str | None:
    """The applicant's name: a company named before any cue in the body, else the first cue
    followed by a name (a company after "tên tổ chức", capitalised words after the others)."""
    companies = [_Companies.of(text) for text in texts]
    company = companies[0].first_from(0)
    cues = _cues(texts)
    first = next(cues, None)
    if company and (first is None or company[0] < first[1].start()):
        return company[1]
    if first is None:
        return None
    for index, cue in itertools.chain([first], cues):
        if fold(cue.group(0)).startswith("tên tổ chức") and (
                found := companies[index].first_from(cue.start())):
            return found[1]
        if name := _clean_name(texts[index][cue.end(): cue.end() + 80].split("\n")[0]):
            return name
    return None


def applicant(mail: ParsedMail) -> Applicant:
    """Who sent a dossier: a company or a person's name, the sender address, a phone number."""
    texts = [_flat(mail.body), *(_flat(a.text) for a in mail.attachments if a.text)]
    name = _name(texts) or mail.sender.name or None
    phone = None
    if match := _PHONE.search(mail.body):
        digits = re.sub(r"\D", "", match.group(0))
        if digits.startswith("84"):
            digits = "0" + digits[2:]
        elif digits.startswith("0084"):
            digits = "0" + digits[4:]
        phone = digits
    return Applicant(name=name, email=mail.sender.email or None, phone=phone)
