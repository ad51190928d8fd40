"""The applicant's cues are compiled without re.IGNORECASE and matched on `_folded` text
(lower case, letter for letter): they must find exactly what they found with the flag on the
accent-free text, at the same places, whatever the text."""

from __future__ import annotations

import importlib
import re

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

applicant = importlib.import_module("daemon.understand.applicant")

CUES = ("_ORG_FORM", "_ORG_ACTS", "_LABELS", "_ACTS", "_KIN", "_AUTHORISED", "_SELF", "_OF",
        "_OURS", "_SIGN_OFF", "_EMAIL_LABEL", "_FORWARDED_FROM", "_FORWARDED",
        "_NUMBER_LABEL")
# Matched on the text as written (or on digits, spaces): not cues.
NOT_CUES = ("_INTERMEDIARY_BOXES", "_SPACES", "_TOKEN", "_LINE", "_UNITS_OWN", "_EMAIL",
            "_DIGITS", "_GROUP")


def test_every_pattern_of_the_module_is_known_as_a_cue_or_not() -> None:
    patterns = {name for name, value in vars(applicant).items()
                if isinstance(value, re.Pattern)}
    assert patterns == set(CUES) | set(NOT_CUES)
    for name in CUES:
        assert not getattr(applicant, name).flags & re.I, name


def test_the_letters_ignorecase_matches_with_ascii_letters_are_all_folded() -> None:
    everything = "".join(chr(c) for c in range(0x80, 0x110000) if not 0xD800 <= c < 0xE000)
    matched = {m.group(0) for m in re.finditer("[a-z]", everything, re.I)}
    assert matched == set(applicant._ALSO_ASCII)
    for char, letter in applicant._ALSO_ASCII.items():
        assert re.fullmatch(letter, char, re.I)
        assert applicant._folded(char) == letter
    assert applicant._folded("ABCXYZ abc") == "abcxyz abc"


def _words_of_the_cues() -> list[str]:
    words: set[str] = set()
    for name in CUES:
        words.update(re.findall(r"[a-z]+(?: [a-z]+)*", getattr(applicant, name).pattern))
    return sorted(words)


WORDS = _words_of_the_cues()
# Letters that fold, or look as if they might: every case of the cues' letters, accented
# Vietnamese, the four non-ASCII letters IGNORECASE matches with ASCII ones, and some that
# it does not (Greek, fullwidth, the Turkish dotted capital's lower case).
LETTERS = "aAđĐoÔơƠuƯkKsSiIyÝeÊ" + "".join(applicant._ALSO_ASCII) + "ΣσςｋＫǅǆ"
PIECES = st.one_of(
    st.sampled_from(WORDS),
    st.sampled_from(WORDS).map(str.upper),
    st.sampled_from(WORDS).map(str.title),
    st.text(alphabet=LETTERS, min_size=1, max_size=4),
    st.sampled_from([" ", "  ", "\n", "\t", ": ", "：", "(", ")", "/", ",", ".", "@", "--",
                     "> ", "|", "-", "0912 345 678", "x@y.vn", "Ông", "Công ty", "HTX",
                     "Hồ sơ của ", "TÔI LÀ ", "Từ: A <A@B.VN>"]),
)


def _found(pattern: re.Pattern[str], text: str) -> list[tuple[tuple[int, int], ...]]:
    return [(m.span(), *(m.span(g) for g in range(1, (pattern.groups or 0) + 1)))
            for m in pattern.finditer(text)]


@settings(max_examples=400, deadline=None)
@given(pieces=st.lists(PIECES, max_size=40))
@example(pieces=["ı", "HTX", " ", "Công ty"])
@example(pieces=["Từ: A <A@B.VN>", "\n", "ſo dien thoai", " 0912 345 678"])
def test_every_cue_finds_on_folded_text_what_ignorecase_found_on_bare_text(
        pieces: list[str]) -> None:
    text = "".join(pieces)
    bare = applicant._bare(text)
    folded = applicant._folded(bare)
    assert len(folded) == len(bare) == len(text)
    for name in CUES:
        cue = getattr(applicant, name)
        with_the_flag = re.compile(cue.pattern, cue.flags | re.I)
        assert _found(cue, folded) == _found(with_the_flag, bare), name


@pytest.mark.parametrize("pattern", ["Công ty", "(?:ông|Bà)", "ω", "hộ kinh doanh Σ"])
def test_a_cue_with_an_upper_case_or_non_ascii_letter_is_refused(pattern: str) -> None:
    with pytest.raises(ValueError, match="lower-case ASCII"):
        applicant._cue(pattern)


def test_group_names_and_escapes_are_not_letters_to_match() -> None:
    cue = applicant._cue(r"\b(?P<Who>công ty)\b\S?")
    assert cue.search("cong ty")


def test_the_forwarded_sender_keeps_the_case_of_its_address() -> None:
    body = "Kính chuyển hồ sơ.\n---------- Forwarded message ---------\nTừ: Lê Thị Hà " \
           "<Le.ThiHa@Gmail.COM>\nNgày: 1/12/2026\n"
    texts = [applicant._Text.of(applicant._flat(body), 0, True)]
    assert applicant._forwarded_sender(texts, "motcua.tayninh.gov.vn") == "Le.ThiHa@Gmail.COM"
    assert applicant._forwarded_sender(texts, "gmail.com") is None
