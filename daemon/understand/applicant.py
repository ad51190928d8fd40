"""Who sent a dossier: a company or a person's name, the sender address, a phone number.

Pure functions over a ParsedMail's text.
"""

from __future__ import annotations

import re

from daemon.models import Applicant, ParsedMail
from daemon.textnorm import fold

_PHONE = re.compile(r"(?<![\d/])(?:\+84|0084|0)[\s.\-]?(?:\d[\s.\-]?){8,10}(?!\d)")
_NAME_CUES = re.compile(
    r"(?:tôi\s+tên\s+là|tên\s+tôi\s+là|tôi\s+là|em\s+là|họ\s+và\s+tên|họ\s+tên|tên\s+tổ\s+chức|"
    r"tên\s+doanh\s+nghiệp|người\s+đề\s+nghị|tôi|em)\s*[:：]?\s*", re.I)
_COMPANY = re.compile(
    r"\b(Công\s+ty\s+(?:TNHH|CP|cổ\s+phần|trách\s+nhiệm\s+hữu\s+hạn)?[^,.;:()\n]{2,80}?)"
    r"(?=\s*(?:\(|,|\.|;|:|\n|$|\s+(?:kính|xin|gửi|trân|đề)\b))", re.I)


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


def applicant(mail: ParsedMail) -> Applicant:
    """Who sent a dossier: a company or a person's name, the sender address, a phone number."""
    body = mail.body
    name = None
    company = _COMPANY.search(body)
    texts = [body, *(a.text for a in mail.attachments if a.text)]
    cues = [(text, cue) for text in texts for cue in _NAME_CUES.finditer(text)]
    if company and (not cues or company.start() < cues[0][1].start()):
        name = " ".join(company.group(1).split())
    for text, cue in cues:
        if name:
            break
        if fold(cue.group(0)).startswith("tên tổ chức") and (found := _COMPANY.search(
                text[cue.start():])):
            name = " ".join(found.group(1).split())
        else:
            name = _clean_name(text[cue.end(): cue.end() + 80].split("\n")[0])
    if name is None:
        name = mail.sender.name or None
    phone = None
    if match := _PHONE.search(body):
        digits = re.sub(r"\D", "", match.group(0))
        if digits.startswith("84"):
            digits = "0" + digits[2:]
        elif digits.startswith("0084"):
            digits = "0" + digits[4:]
        phone = digits
    return Applicant(name=name, email=mail.sender.email or None, phone=phone)
