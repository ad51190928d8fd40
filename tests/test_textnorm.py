"""Text normalisation: NFC everywhere, folding for comparison."""

from __future__ import annotations

import unicodedata

from hypothesis import given
from hypothesis import strategies as st

from daemon.textnorm import fold, header_safe, nfc, strip_accents

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


def test_accentless_fold_matches_stamps() -> None:
    """Without accents, THƯỢNG KHẨN and THUONG KHAN fold alike, and đ becomes d."""
    assert fold("THƯỢNG KHẨN", accents=False) == fold("THUONG KHAN", accents=False)
    assert strip_accents("Đồng") == "Dong"


@given(st.text(max_size=200))
def test_header_safe_never_keeps_line_breaks(text: str) -> None:
    """Mail-supplied text made safe for a header has no CR, LF or other control characters."""
    safe = header_safe(text)

    assert not any(ord(c) < 32 or ord(c) == 127 for c in safe)
