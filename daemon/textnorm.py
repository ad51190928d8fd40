"""Text normalisation for Vietnamese: every text is NFC before it is matched or stored.

Pure functions. Matching compares *folded* text: NFC, lower case, one tone placement
("hoà" = "hòa", "thuỷ" = "thủy"), and optionally without diacritics (scanned stamps lose them).
"""

from __future__ import annotations

import binascii
import codecs
import functools
import re
import unicodedata

# Old-style tone placement puts the mark on the second vowel of oa/oe/uy ("hoà", "thuỷ");
# new style on the first ("hòa", "thủy"). Both are correct Vietnamese; for matching we move
# the mark to the first vowel when the cluster ends the syllable.
_TONES = "\u0300\u0301\u0303\u0309\u0323"  # grave, acute, tilde, hook above, dot below
# Not after q ("quả", "quý": qu is a consonant), and only when nothing follows the mark but
# the end of the syllable (not another mark: "thuận" is u + ậ, no cluster at all).
_OLD_TONE = re.compile(rf"(?<![qQ])([oOuU])([aAeEyY])([{_TONES}])(?![a-zA-Z\u0300-\u036f])")

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


# An RFC 2047 encoded word: =?charset?B|Q?text?=. Neither the charset nor the text may hold
# "?" or white space, so looking for one from any "=?" stops at the next "?": finding every
# word is linear. (The standard library's pattern reads the text lazily up to the next "?=";
# on a line of unclosed words each one reads to the line's end: quadratic, and so is the way
# it joins words.)
_ENCODED_WORD = re.compile(r"=\?([^?\s]{1,64})\?([bBqQ])\?([^?\s]*)\?=")
_Q_ESCAPE = re.compile(rb"=([0-9A-Fa-f]{2})")


def _word_bytes(encoding: str, text: str) -> bytes | None:
    """The bytes of one encoded word's text, or None when they cannot be decoded."""
    if not text.isascii():
        return None
    data = text.encode("ascii")
    if encoding in "qQ":
        return _Q_ESCAPE.sub(lambda m: bytes([int(m.group(1), 16)]), data.replace(b"_", b" "))
    try:
        return binascii.a2b_base64(data + b"=" * (-len(data) % 4))  # padding may be missing
    except (binascii.Error, ValueError):
        return None


@functools.lru_cache(maxsize=64)
def _charset(name: str) -> str | None:
    """The Python codec of an encoded word's charset (RFC 2231 language suffix dropped)."""
    try:
        codec = codecs.lookup(name.partition("*")[0]).name
        b"a".decode(codec, "replace")  # a text encoding, not bytes to bytes (zlib, base64 …)
    except (LookupError, ValueError):
        return None
    return codec


def decode_words(value: str) -> str:
    """A header value with its RFC 2047 encoded words decoded, in one pass.

    As mail programs read it: white space between two encoded words is dropped, adjacent
    words in the same charset are joined before decoding (a letter split across two words
    survives), an encoded word touching plain text is set apart by a space, and a word that
    cannot be decoded (unknown charset, bad base64) stays as written. Bytes that are not
    valid in their charset become U+FFFD. Line breaks of a folded value are left in place
    (`header_safe` makes the value one line).
    """
    out: list[str] = []
    pending: list[bytes] = []  # the bytes of adjacent encoded words in `codec`
    codec: str | None = None

    def flush() -> None:
        if pending:
            out.append(b"".join(pending).decode(codec or "ascii", "replace"))
            pending.clear()

    end = 0
    after_word = False  # the last thing written was an encoded word
    for match in _ENCODED_WORD.finditer(value):
        between = value[end:match.start()]
        data = _word_bytes(match.group(2), match.group(3))
        found = _charset(match.group(1))
        if data is None or found is None:
            flush()
            out.append(between + match.group(0))
            end, after_word = match.end(), False
            continue
        if not (after_word and between.isspace()) and between:
            flush()
            if after_word and not between[0].isspace():
                out.append(" ")
            out.append(between)
            if not between[-1].isspace():
                out.append(" ")
        elif found != codec:
            flush()
        pending.append(data)
        codec = found
        end, after_word = match.end(), True
    flush()
    rest = value[end:]
    if after_word and rest and not rest[0].isspace():
        out.append(" ")
    out.append(rest)
    return "".join(out)
