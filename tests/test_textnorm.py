"""Text normalisation: NFC everywhere, folding for comparison."""

from __future__ import annotations

import unicodedata

from hypothesis import given
from hypothesis import strategies as st

from daemon.textnorm import fold, header_safe, nfc, strip_accents, visible

TONE_MARKS = ["\u0300", "\u0301", "\u0303", "\u0309", "\u0323"]
VIETNAMESE = st.text(alphabet=st.sampled_from(
    [*"aăâbcdđeêghiklmnoôơpqrstuưvxyAĂÂĐÊÔƠƯ ", *TONE_MARKS]), max_size=40)


@given(VIETNAMESE)
def test_fold_is_idempotent(text: str) -> None:
    """Folding folded text changes nothing."""
    assert fold(fold(text)) == fold(text)


@given(VIETNAMESE)
def test_nfd_and_nfc_fold_alike(text: str) -> None:
    """Decomposed input (windows-1258, Mac, PDFs) folds to the same as composed input."""
    assert fold(unicodedata.normalize("NFD", text)) == fold(nfc(text))


def test_old_and_new_tone_placement_are_equal() -> None:
    """'Hoà'/'Hòa' and 'Thuỷ'/'Thủy' compare equal."""
    assert fold("Hoà Thành") == fold("Hòa Thành")
    assert fold("Thuỷ lợi") == fold("Thủy lợi")
    assert fold("ỦY BAN") == fold("Uỷ ban")


def test_fold_never_moves_a_mark_out_of_its_syllable() -> None:
    """Only the oa/oe/uy clusters at the end of a syllable move their mark; 'thuận' (u + ậ)
    and the qu of 'quả', 'quý' keep theirs: folded text stays correct Vietnamese."""
    words = ["thuận", "kỹ thuật", "quả", "quý", "quỹ", "quảng", "khoảng", "thuyết", "hoằng",
             "nguyễn", "huệ", "quyết", "khuyến"]
    assert [fold(w) for w in words] == words
    assert [fold(w.upper()) for w in words] == words
    assert fold("Thuỵ Khuê, hoà, khoẻ, tuỳ") == "thụy khuê, hòa, khỏe, tùy"


@given(VIETNAMESE)
def test_folding_keeps_the_letters_and_their_marks(text: str) -> None:
    """Folding only lowers case, moves a tone within its cluster and squeezes spaces: the
    same letters, the same marks."""
    def marks(value: str) -> list[str]:
        return sorted(unicodedata.normalize("NFD", value.lower()).replace(" ", ""))

    assert marks(fold(text)) == marks(text)


def test_accentless_fold_matches_stamps() -> None:
    """Without accents, THƯỢNG KHẨN and THUONG KHAN fold alike, and đ becomes d."""
    assert fold("THƯỢNG KHẨN", accents=False) == fold("THUONG KHAN", accents=False)
    assert strip_accents("Đồng") == "Dong"


UNSAFE = {*map(chr, range(0x20)), *map(chr, range(0x7F, 0xA0)), "\u2028", "\u2029",
          "\u061c", "\u200e", "\u200f", *map(chr, range(0x202A, 0x202F)),
          *map(chr, range(0x2066, 0x206A))}
NASTY = st.text(st.one_of(st.characters(), st.sampled_from(sorted(UNSAFE)),
                          st.sampled_from([chr(c) for c in range(0xDC80, 0xDD00)])), max_size=200)


@given(NASTY, st.integers(min_value=1, max_value=400))
def test_header_safe_never_keeps_line_breaks(text: str, limit: int) -> None:
    """Mail-supplied text made safe for a header has no CR, LF, NUL, C0/C1 control, NEL,
    line or paragraph separator, direction mark or lone surrogate, and fits the limit."""
    safe = header_safe(text, limit)

    assert not UNSAFE & set(safe)
    assert len(safe) <= limit
    safe.encode("utf-8")


@given(NASTY)
def test_header_safe_is_idempotent(text: str) -> None:
    """Making safe text safe again changes nothing."""
    assert header_safe(header_safe(text, 500), 500) == header_safe(text, 500)


def test_header_safe_keeps_ordinary_text() -> None:
    """Vietnamese text and ordinary punctuation pass unchanged; breaks become single spaces."""
    assert header_safe("Công văn 15/UBND-KT: V/v «khẩn»") == "Công văn 15/UBND-KT: V/v «khẩn»"
    assert header_safe("a\r\nBcc: x\u2028y\x85z\x00") == "a Bcc: x y z"


def test_visible_drops_what_cannot_be_seen() -> None:
    """A file name loses its right-to-left override and line breaks, and keeps its letters."""
    assert visible("Hồ sơ\u202egpj.exe\r\n") == "Hồ sơgpj.exe"
    assert visible("a\udcff") == "a\ufffd"
