"""Text normalisation for Vietnamese: every text is NFC before it is matched or stored.

Pure functions. Matching compares *folded* text: NFC, lower case, one tone placement
("hoà" = "hòa", "thuỷ" = "thủy"), and optionally without diacritics (scanned stamps lose them).
"""

from __future__ import annotations

import re
import unicodedata

# Old-style tone placement puts the mark on the second vowel of oa/oe/uy ("hoà", "thuỷ");
# new style on the first ("hòa", "thủy"). Both are correct Vietnamese; for matching we move
# the mark to the first vowel when the cluster ends the syllable.
_TONES = "\u0300\u0301\u0303\u0309\u0323"  # grave, acute, tilde, hook above, dot below
_OLD_TONE = re.compile(rf"([oOuU])([aAeEyY])([{_TONES}])(?![a-zA-Z])")

_SPACES = re.compile(r"[ \t\u00a0\u2000-\u200b\u202f\u205f\u3000]+")


def nfc(text: str) -> str:
    """Return `text` in Unicode NFC (windows-1258 and Mac/PDF text arrive decomposed)."""
    return unicodedata.normalize("NFC", text)


def _canonical_tone(text: str) -> str:
    decomposed = unicodedata.normalize("NFD", text)
    return unicodedata.normalize("NFC", _OLD_TONE.sub(r"\1\3\2", decomposed))


def fold(text: str, *, accents: bool = True) -> str:
    """Fold `text` for comparison: NFC, lower case, one tone placement, single spaces.

    With `accents=False` every diacritic is dropped too and đ becomes d.
    """
    folded = _canonical_tone(text).lower()
    if not accents:
        folded = strip_accents(folded)
    return _SPACES.sub(" ", folded).strip()


def strip_accents(text: str) -> str:
    """Remove every combining mark and map đ/Đ to d/D."""
    decomposed = unicodedata.normalize("NFD", text)
    bare = "".join(c for c in decomposed if not unicodedata.combining(c))
    return bare.replace("đ", "d").replace("Đ", "D")


def collapse_spaces(text: str) -> str:
    """Collapse runs of white space (including line breaks) to single spaces."""
    return re.sub(r"\s+", " ", text).strip()


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def header_safe(text: str, limit: int = 300) -> str:
    """Make mail-supplied text safe to place in an outgoing header: no CR/LF or controls."""
    return collapse_spaces(_CONTROL.sub(" ", text))[:limit]
