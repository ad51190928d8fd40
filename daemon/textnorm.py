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


# What may break a header line or a stored one-line value: the C0 and C1 controls (CR, LF,
# NUL, NEL U+0085 …), DEL, and the Unicode line and paragraph separators. Each becomes a space.
_BREAKS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# Invisible marks that reorder what a reader sees ("fdp.exe" shown as "exe.pdf"): the
# left-to-right/right-to-left and Arabic letter marks, embeddings, overrides and isolates.
# They carry no meaning in Vietnamese text and are dropped.
_BIDI = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
# Lone surrogates come from bytes decoded with surrogateescape; they cannot be encoded.
_SURROGATES = re.compile("[\ud800-\udfff]")


def visible(text: str) -> str:
    """`text` without line breaks, controls and direction marks (dropped, not replaced), and
    with undecodable bytes as U+FFFD. For names shown to people, e.g. an attachment's."""
    return _BREAKS.sub("", _BIDI.sub("", _SURROGATES.sub("\ufffd", text)))


def header_safe(text: str, limit: int = 300) -> str:
    """Make mail-supplied text safe to place in a header or store as one line: no CR, LF,
    NUL, C0/C1 control, line or paragraph separator, or direction mark; runs of white space
    become one space; at most `limit` characters."""
    text = _BREAKS.sub(" ", _BIDI.sub("", _SURROGATES.sub("\ufffd", text)))
    return collapse_spaces(text)[:limit].rstrip()
