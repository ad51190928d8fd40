"""The applicant's postal address in a dossier mail, for the receipt slip: a labelled line
("Địa chỉ: …", "Nơi cư trú: …", "Trụ sở chính: …") or a phrase ("thường trú tại …", "có trụ
sở tại …"), in the body first, then in the text of the attachments. Bounded work: each text is
read up to a cap, and an address is at most one line of 200 characters.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from daemon.textnorm import collapse_spaces, nfc, visible

TEXT_CAP = 20_000  # characters of each text read
MAX_ADDRESS = 200

# "Địa chỉ email:" or "Địa chỉ công trình:" (the building site) do not match: the label must
# end at the colon.
_LABELLED = re.compile(
    r"(?im)^[ \t>*\-•]*(?:\d{1,2}[.)][ \t]*)?"
    r"(?:địa chỉ(?: (?:thường trú|tạm trú|liên hệ|liên lạc|cư trú|trụ sở(?: chính)?))?"
    r"|trụ sở(?: chính)?|nơi (?:cư trú|thường trú|ở hiện (?:nay|tại))|chỗ ở hiện (?:nay|tại))"
    rf"[ \t]*:[ \t]*(?P<value>[^\n]{{1,{MAX_ADDRESS}}})")
_PHRASE = re.compile(
    r"(?i)\b(?:thường trú|tạm trú|cư trú|có trụ sở|trụ sở chính|địa chỉ)[ \t]+tại[ \t:]+"
    rf"(?P<value>[^\n]{{1,{MAX_ADDRESS}}})")
# Where an address ends inside its line: the phone or mail that follows it, a semicolon.
_TAIL = re.compile(r"(?i)[,;\-–]?[ \t]*(?:\(?(?:số )?điện thoại|đt|sđt|đtdđ|e-?mail|thư điện tử|"
                   r"mã số thuế|cmnd|cccd|căn cước)\b|;")
# A full stop ends the address, unless it closes an abbreviation ("TP. Tây Ninh", "P. 3").
_STOP = re.compile(r"(?P<word>\w*)\.(?=\s|$)")
_ABBREVIATION = re.compile(r"[^\W\d_]{1,3}")


def _trim(value: str) -> str | None:
    if tail := _TAIL.search(value):
        value = value[:tail.start()]
    for stop in _STOP.finditer(value):
        if not _ABBREVIATION.fullmatch(stop.group("word")):
            value = value[:stop.start("word") + len(stop.group("word"))]
            break
    value = collapse_spaces(visible(value)).strip(" ,.:-–")
    letters = sum(c.isalpha() for c in value)
    return value if letters >= 4 and len(value) >= 6 else None


def find_address(texts: Iterable[str]) -> str | None:
    """The first address found in `texts` (the mail's body, then its attachments' text)."""
    for text in texts:
        text = nfc(text[:TEXT_CAP])
        for pattern in (_LABELLED, _PHRASE):
            for match in pattern.finditer(text):
                if found := _trim(match.group("value")):
                    return found
    return None
