"""pdfscan makes each of pypdf's named encoding tables once (`named_encoding`): the same table
as pypdf's, a copy of its own to each caller, and the same text of every page."""

from __future__ import annotations

import encodings.aliases
import io

import pypdf
import pypdf._codecs
import pypdf._text_extraction._text_extractor
import pypdf.generic._font
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject

from daemon.understand import pdfscan

PYPDF = pypdf._codecs.encoding_dict_from_named_encoding
CODECS = sorted(set(encodings.aliases.aliases.values()))


def test_installed_in_pypdf() -> None:
    for module in (pypdf._text_extraction._text_extractor, pypdf.generic._font):
        assert module.encoding_dict_from_named_encoding is pdfscan.named_encoding


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(CODECS) | st.text(max_size=12))
def test_same_table_or_same_error(name: str) -> None:
    try:
        expected: object = PYPDF(name)
    except Exception as err:  # whatever pypdf raises, ours raises too
        with pytest.raises(type(err)):
            pdfscan.named_encoding(name)
        return
    assert pdfscan.named_encoding(name) == expected
    assert pdfscan.named_encoding(name) == expected  # made once, still the same
    assert len(pdfscan._ENCODINGS) <= pdfscan._MAX_ENCODINGS


def test_each_caller_has_its_own_copy() -> None:
    first = pdfscan.named_encoding("cp1252")
    first[0x41] = "Ă"
    first.clear()
    second = pdfscan.named_encoding("cp1252")
    assert second is not first
    assert second == PYPDF("cp1252")
    assert second[0x80] == "€" and second[0x81] == "\x81"  # defined, and not (chr of the byte)


def test_past_the_bound_still_right() -> None:
    for name in CODECS[: pdfscan._MAX_ENCODINGS + 10]:
        try:
            expected = PYPDF(name)
        except LookupError:
            continue
        assert pdfscan.named_encoding(name) == expected
    assert len(pdfscan._ENCODINGS) <= pdfscan._MAX_ENCODINGS


def _text_before_a_font() -> bytes:
    """A page that shows text before choosing a font (Tf): pypdf reads those bytes by the
    Windows table (its placeholder font's), whose characters 0x80-0x9F differ from Latin-1."""
    writer = pypdf.PdfWriter()
    page = writer.add_blank_page(200, 200)
    stream = DecodedStreamObject()
    stream.set_data(b"BT 10 100 Td (\x80 caf\xe9 \x93c\xf4ng v\xe3n\x94 \x96) Tj ET "
                    b"BT /F1 12 Tf 10 50 Td (SO Y TE) Tj ET")
    page[NameObject("/Contents")] = writer._add_object(stream)
    helvetica = DictionaryObject({NameObject("/Type"): NameObject("/Font"),
                                  NameObject("/Subtype"): NameObject("/Type1"),
                                  NameObject("/BaseFont"): NameObject("/Helvetica")})
    page[NameObject("/Resources")] = DictionaryObject(
        {NameObject("/Font"): DictionaryObject({NameObject("/F1"): helvetica})})
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def test_text_is_pypdfs(monkeypatch: pytest.MonkeyPatch) -> None:
    data = _text_before_a_font()

    def text() -> str:
        return pypdf.PdfReader(io.BytesIO(data)).pages[0].extract_text()

    ours = text()
    assert ours == "€ café “công vãn” –\nSO Y TE"
    for module in (pypdf._text_extraction._text_extractor, pypdf.generic._font):
        monkeypatch.setattr(module, "encoding_dict_from_named_encoding", PYPDF)
    assert text() == ours
