"""`contentstream.operations` against pypdf's own parse of a content stream: on every stream it
answers for, the very operations pypdf makes (the same classes, values, order, and keys in
the same order), and no answer where pypdf fails. Streams are drawn from the language's
grammar, from its pieces in any order with junk between them, from each edge where pypdf has
its own ways, and from real PDFs of two generators (fpdf2, and the same documents written
again by cairo). The plain part of the language is answered (the gain is real), and once
installed pypdf's text of every page is the same as without it."""

from __future__ import annotations

import email
import io
import subprocess
from pathlib import Path
from typing import Any

import pypdf
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pypdf.generic import ContentStream

from daemon.understand import contentstream
from tests.conftest import CORPUS
from tests.generated import make
from tests.hostile.secrecy import document, pdf

# The encodings pypdf parses content streams with: "bytes" when it extracts text, none when
# a caller asks for a page's contents, and what `forced_encoding` may otherwise be.
ENCODINGS = ["bytes", None, "charmap", {65: "Ă", 97: "ă"}, ["x", "y", "z"]]


def pypdf_parse(data: bytes, encoding: Any) -> list[Any] | Exception:
    """pypdf's own parse (not the installed one): its operations, or what it raised."""
    stream = ContentStream(None, None, encoding)
    try:
        contentstream._PYPDF_PARSE(stream, io.BytesIO(data))
    except Exception as err:  # pypdf raises many kinds on a broken stream
        return err
    return stream._operations


def same(ours: Any, theirs: Any) -> bool:
    """The same objects: class for class, value for value, keys in the same order, and the
    same attributes (a string decoded by an encoding keeps its original bytes)."""
    if type(ours) is not type(theirs):
        return False
    if isinstance(ours, (list, tuple)):
        return len(ours) == len(theirs) and all(map(same, ours, theirs))
    if isinstance(ours, dict):
        return list(ours) == list(theirs) and all(same(ours[k], theirs[k]) for k in ours)
    if getattr(ours, "__dict__", {}) != getattr(theirs, "__dict__", {}):
        return False
    return bool(ours == theirs)


def check(data: bytes, encoding: Any = "bytes") -> list[Any] | None:
    """`operations` of `data`: None, or exactly pypdf's operations (and pypdf did not fail)."""
    ours = contentstream.operations(data, encoding)
    if ours is not None:
        theirs = pypdf_parse(data, encoding)
        assert not isinstance(theirs, Exception), (data, theirs)
        assert same(ours, theirs), (data, ours, theirs)
    return ours


# ----- the grammar --------------------------------------------------------------------------

SEPARATORS = st.sampled_from([b" ", b"\n", b"\r\n", b"\r", b"\t", b"\x0c", b"  \n"])
ODD_SEPARATORS = st.sampled_from([b"", b"\x00", b"\x0b", b" \x00 ", b"\n\x0b"])

_digits = st.text("0123456789", min_size=1, max_size=8)
NUMBERS = st.one_of(
    st.integers(-10**6, 10**6).map(str),
    st.builds(lambda a, b: f"{a}.{b}", st.integers(-999, 999), _digits),
    st.builds(lambda a: f".{a}", _digits),
    st.builds(lambda a: f"-.{a}", _digits),
    st.builds(lambda a: f"{a}.", st.integers(0, 999)),
    st.builds(lambda a: f"+{a}", st.integers(0, 999)),
    st.sampled_from(["-0", "0.0", "-0.0", "00012", "1.2.3", "1,5", "12-3", "--1", ".", "+",
                     "-", "+-1", "1e5", "12345678901234567", "123456789012345678901234",
                     "0.123456789012345678"]),
).map(str.encode)

NAME_CHARS = st.sampled_from([b"a", b"Z", b"0", b"-", b"_", b".", b"+", b"*", b"#", b"#20",
                              b"#4", b"\xc3\xa1", b"\xff", b"\x00", b"'", b'"', b"!"])
NAMES = st.builds(lambda parts: b"/" + b"".join(parts), st.lists(NAME_CHARS, max_size=8))

STRING_PIECES = st.sampled_from([
    b"a", b"Hello", b" ", b"\x00\x01", b"\x00(", b"\xff\xfe", b"\xc4\x90", b"\n", b"\r\n", b"\r",
    b"%", b"<>", b"[]", b"/", b"\\n", b"\\r", b"\\t", b"\\b", b"\\f", b"\\(", b"\\)",
    b"\\\\", b"\\/", b"\\ ", b"\\%", b"\\<", b"\\>", b"\\[", b"\\]", b"\\#", b"\\_", b"\\&",
    b"\\$", b"\\q", b"\\{", b"\\'", b"\\0", b"\\7", b"\\12", b"\\123", b"\\1234", b"\\377",
    b"\\400", b"\\777", b"\\8", b"\\\n", b"\\\r\n", b"\\\r", b"\\\n\n", b"\\\r\r", b"(", b")",
    b"(x)", b"((y))"])
STRINGS = st.builds(lambda parts: b"(" + b"".join(parts) + b")",
                    st.lists(STRING_PIECES, max_size=10))
HEX_PIECES = st.sampled_from([b"0", b"9", b"a", b"F", b"00", b"4e", b"0 0", b"\n", b"\x00",
                              b" ", b"g", b"<", b"\t", b"ff"])
HEXES = st.builds(lambda parts: b"<" + b"".join(parts) + b">", st.lists(HEX_PIECES, max_size=8))

OPERATORS = st.sampled_from([
    b"Tj", b"TJ", b"Td", b"TD", b"Tf", b"Tm", b"T*", b"BT", b"ET", b"cm", b"re", b"f", b"f*",
    b"q", b"Q", b"w", b"J", b"g", b"rg", b"RG", b"k", b"K", b"gs", b"Do", b"BDC", b"BMC",
    b"EMC", b"'", b'"', b"Tc", b"Tw", b"Tz", b"TL", b"Ts", b"sh", b"W", b"n", b"S", b"s",
    b"ID", b"EI", b"BI", b"R", b"Ra", b"R1", b"true", b"false", b"null", b"endobj", b"stream",
    b"Tj\x00", b"x" * 70, b"a#b", b"\xe1"])

COMMENTS = st.sampled_from([b"%comment\n", b"% c\r", b"%\n", b"%x"])
JUNK = st.sampled_from([b")", b">", b"]", b"}", b"{", b">>", b",", b"1 0 R", b"0 0 R]",
                        b"BI /W 1 /H 1 /CS /G /BPC 8 ID \x80 EI", b"stream\n", b"endstream",
                        b"\x80\x81", b"<<", b"[", b"(", b"<"])


def _values(children: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    """Arrays and dictionaries of values, sometimes missing a key, a value or a bracket."""
    joined = st.lists(st.tuples(children, SEPARATORS), max_size=6).map(
        lambda items: b"".join(value + gap for value, gap in items))
    entries = st.lists(st.tuples(st.one_of(NAMES, NAMES, children), SEPARATORS, children),
                       max_size=4).map(
        lambda items: b" ".join(key + gap + value for key, gap, value in items))
    return st.one_of(
        joined.map(lambda body: b"[" + body + b"]"),
        entries.map(lambda body: b"<<" + body + b">>"),
        st.sampled_from([b"[1 2", b"<</A>>", b"<</A 1 /A 2>>", b"<<1 2>>", b"<</A [1]>>",
                         b"[true false null]", b"[/A#20]", b"<</A 1>", b"<< /P (x) >>"]))


SCALARS = st.one_of(NUMBERS, NAMES, STRINGS, HEXES)
VALUES = st.recursive(SCALARS, _values, max_leaves=12)
TOKENS = st.one_of(VALUES, OPERATORS, OPERATORS, COMMENTS, JUNK)
ANY_GAP = st.one_of(SEPARATORS, ODD_SEPARATORS)


@st.composite
def streams(draw: st.DrawFn, tokens: st.SearchStrategy[bytes] = TOKENS,
            gaps: st.SearchStrategy[bytes] = ANY_GAP,
            ends: tuple[bytes, ...] = (b"", b"\n", b" ", b"\x00")) -> bytes:
    items = draw(st.lists(tokens, max_size=25))
    out = b""
    for item in items:
        out += draw(gaps) + item
    return out + draw(st.sampled_from(ends))


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(streams(), st.sampled_from(ENCODINGS))
def test_any_stream_is_pypdfs_or_left_to_pypdf(data: bytes, encoding: Any) -> None:
    check(data, encoding)


# What generators write: operators after well-formed operands, plain separators.
PLAIN_NAMES = st.builds(lambda s: b"/" + s.encode(), st.text("abcdefXYZ0129-_.", min_size=1,
                                                             max_size=10))
PLAIN_STRINGS = st.builds(
    lambda parts: b"(" + b"".join(parts) + b")",
    st.lists(st.sampled_from([b"a", b"Hello", b" ", b"\x00\x01", b"\\(", b"\\)", b"\\\\",
                              b"\\n", b"\\r", b"\\303", b"\\12", b"\xc4\x90"]), max_size=8))
PLAIN_HEX = st.builds(lambda b, odd, gap: b"<" + gap.join([b.hex().encode(), odd]) + b">",
                      st.binary(max_size=6), st.sampled_from([b"", b"7", b"c"]),
                      st.sampled_from([b"", b" ", b"\n"]))
PLAIN_SCALARS = st.one_of(st.integers(-9999, 9999).map(lambda n: str(n).encode()),
                          st.floats(-9999, 9999).map(lambda x: f"{x:.3f}".encode()),
                          PLAIN_NAMES, PLAIN_STRINGS, PLAIN_HEX)
PLAIN_OPERATORS = st.sampled_from([b"Tj", b"TJ", b"Td", b"Tf", b"Tm", b"BT", b"ET", b"cm",
                                   b"re", b"f", b"q", b"Q", b"rg", b"RG", b"gs", b"BDC",
                                   b"EMC", b"'", b'"', b"T*"])


@st.composite
def plain_operation(draw: st.DrawFn) -> bytes:
    operands = draw(st.lists(PLAIN_SCALARS, max_size=5))
    if draw(st.booleans()):  # a TJ array, or the marked content's properties
        operands.append(b"[" + b" ".join(draw(st.lists(PLAIN_SCALARS, max_size=8))) + b"]")
    if draw(st.booleans()):
        keys = draw(st.lists(PLAIN_NAMES, max_size=3, unique=True))
        operands.append(b"<<" + b" ".join(k + b" " + draw(PLAIN_SCALARS) for k in keys)
                        + b">>")
    return b" ".join([*operands, draw(PLAIN_OPERATORS)])


@settings(max_examples=800, deadline=None)
@given(streams(plain_operation(), SEPARATORS, (b"", b"\n", b"\r\n")), st.sampled_from(ENCODINGS))
def test_plain_streams_are_answered(data: bytes, encoding: Any) -> None:
    """The part of the language generators write is parsed here, not left to pypdf."""
    assert check(data, encoding) is not None, data


# ----- each edge, one by one ---------------------------------------------------------------

EDGES = [
    b"1 0 R 5 Tj",  # a reference: pypdf reads it (and fails: no PDF in a content stream)
    b"[1 0 R] TJ",
    b"1 0 R",
    b"BI /W 1 /H 1 /CS /G /BPC 8 ID \x80 EI Q",  # an inline image
    b"(a(b)c) Tj",  # nested parentheses
    b"(\\777) Tj",  # an octal escape over 255
    b"(\\q) Tj",  # an escape pypdf keeps with its backslash
    b"(a\\\nb) Tj",  # an escaped line break
    b"(a\\\r\nb) Tj",
    b"/A#20B gs",  # a name with #
    b"/\xff gs",  # a name that is no UTF-8
    b"% a comment\n1 w",
    b"<</A 1>>stream\nxx",  # the keyword stream after a dictionary
    b"/P <</A 1>> s",
    b"[1 2",  # an array open at the end
    b"/P <</A 1 /A 2>> BDC",  # a key twice
    b"/P <</A>> BDC",  # a key without a value
    b"/P <<1 2>> BDC",  # a key that is no name
    b"1\x002 m",  # NUL and VT between tokens
    b"1\x0b2 m",
    b"1 w \x00",
    b"123456789012345678901 w",  # a number longer than pypdf's peek
    b",5 w",
    b"[true] TJ",  # operators inside an array
    b"[null] TJ",
    b"<</A true>> BDC",
    b"(unclosed Tj",
    b"<4e6 Tj",
    b"<4g> Tj",
    b") Tj",
    b"] TJ",
    b">> BDC",
    b"{ }",
    b"/" + b"a" * 100 + b" gs",
    b"a" * 100,
    b"[" * 40 + b"]" * 40 + b" TJ",  # deeper than the bound
    b"<< /A [" * 40 + b"] >>" * 40 + b" BDC",
]


@pytest.mark.parametrize("data", EDGES, ids=range(len(EDGES)))
def test_each_edge_is_left_to_pypdf(data: bytes) -> None:
    """Each edge where pypdf has its own ways goes to pypdf, and the installed parse gives
    pypdf's answer (its operations, or the same exception)."""
    assert contentstream.operations(data, "bytes") is None
    theirs = pypdf_parse(data, "bytes")
    installed = ContentStream(None, None, "bytes")
    installed.set_data(data)
    try:
        ours: Any = installed.operations
    except Exception as err:  # the same failure as pypdf's
        ours = err
    if isinstance(theirs, Exception):
        assert type(ours) is type(theirs) and str(ours) == str(theirs)
    else:
        assert same(ours, theirs)


def test_large_and_hostile_streams_end_at_once() -> None:
    """Hostile strings cannot make the expression try every split (its repetitions never give
    back): these return at once, not after the age of the universe. Past the size bound, the
    stream is pypdf's."""
    for data in (b"(" + b"\\111" * 20_000, b"(" + b"\\1a" * 20_000, b"[" + b"1 " * 50_000,
                 b"/a" * 60_000 + b"#", b"x" * 200_000 + b"(",
                 b"(" + b"a" * 200_000 + b"\\"):
        assert contentstream.operations(data, "bytes") is None
    big = b"1 0 0 1 0 0 cm\n" * (contentstream.MAX_BYTES // 15 + 1)
    assert contentstream.operations(big, "bytes") is None
    assert check(big[: contentstream.MAX_BYTES - 15], "bytes") is not None


# ----- real PDFs ------------------------------------------------------------------------------

def _pdfs(tmp: Path) -> list[bytes]:
    """PDFs of two generators: fpdf2 (the generated documents, the corpus's), and
    the same documents written again by cairo (pdftocairo), which writes its strings and
    arrays its own way."""
    found = [make.pdf_of(document(mark, where)) for mark, where in
             (("", "stamp"), ("MẬT", "stamp"), ("TUYỆT MẬT", "footer"))]
    found.append(pdf(document("TỐI MẬT", "body"), pages=3))
    found += [path.read_bytes() for path in sorted(CORPUS.rglob("*.pdf"))]
    for path in sorted(CORPUS.glob("*.eml")):
        for part in email.message_from_bytes(path.read_bytes()).walk():
            payload = part.get_payload(decode=True)
            if part.get_content_type() == "application/pdf" and isinstance(payload, bytes):
                found.append(payload)
    for at, data in enumerate(list(found)):
        source, written = tmp / f"{at}.pdf", tmp / f"{at}-cairo.pdf"
        source.write_bytes(data)
        subprocess.run(["pdftocairo", "-pdf", str(source), str(written)], check=True)
        found.append(written.read_bytes())
    return found


def test_real_pdfs_are_parsed_here_and_read_the_same(tmp_path: Path) -> None:
    pdfs = _pdfs(tmp_path)
    assert len(pdfs) >= 10
    streams_seen = 0
    for data in pdfs:
        reader = pypdf.PdfReader(io.BytesIO(data))
        for page in reader.pages:
            contents = page.get_contents()
            if contents is None:
                continue
            raw = contents.get_data()
            for encoding in ENCODINGS:
                assert check(raw, encoding) is not None
            streams_seen += 1
    assert streams_seen >= 10


def test_installed_text_is_pypdfs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where PDFs are read, pypdf parses by `operations`; every page's text is what pypdf
    alone extracts."""
    import daemon.understand.pdfscan  # noqa: F401 - installs it

    assert ContentStream._parse_content_stream is contentstream._parse
    pdfs = _pdfs(tmp_path)

    def texts() -> list[str]:
        return [page.extract_text() for data in pdfs
                for page in pypdf.PdfReader(io.BytesIO(data)).pages]

    ours = texts()
    monkeypatch.setattr(ContentStream, "_parse_content_stream", contentstream._PYPDF_PARSE)
    assert ours == texts()
    assert any("MẬT" in text for text in ours)
