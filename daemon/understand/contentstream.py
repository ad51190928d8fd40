"""pypdf's parse of a page's content stream, by one regular expression over the whole stream.

Reading the text of a page with pypdf first parses the page's content stream into operations
(operands and operator), reading it byte by byte in Python: about a third of the time pypdf
takes for a page's text (a document's first page: 1.0-1.3 ms of 3.7; this takes 0.3-0.6 ms).
`operations` parses the plain part of the language, what generators write
(numbers, names, literal and hex strings, arrays, dictionaries of marked content, operators),
and builds the very objects pypdf builds from the same bytes (its own classes and
constructors). Anything else, or anything at an edge where pypdf has its own ways (comments,
inline images, nested parentheses, unusual escapes or separators, `n g R` references, names
with `#`, limits), makes it answer None: pypdf then parses the stream itself, as always.
tests/test_contentstream.py holds it to pypdf's result on every stream it answers for.

`install` makes pypdf's `ContentStream` use it (the parsing workers, where PDFs are read).
"""

from __future__ import annotations

import re
from typing import Any

from pypdf import _configuration
from pypdf.generic import (
    ArrayObject,
    ByteStringObject,
    ContentStream,
    DictionaryObject,
    FloatObject,
    NameObject,
    NumberObject,
    create_string_object,
)

# Where pypdf ends an operator or a name: white space as `\s` sees it, or a delimiter.
_WORD = rb"[^\t\n\x0b\x0c\r ()<>\[\]{}/%]"
# Escapes pypdf maps to one byte (its __ESCAPE_DICT__); any other escape is left to pypdf.
_ESCAPES = {b"n": b"\n", b"r": b"\r", b"t": b"\t", b"b": b"\b", b"f": b"\f"}
_ESCAPES |= {c: c for c in (b"(", b")", b"/", b"\\", b" ", b"%", b"<", b">", b"[", b"]",
                            b"#", b"_", b"&", b"$")}
# An escape; octal digits taken greedily, three at most, as pypdf does (and never given back:
# a hostile string cannot make the expression try every split).
_ESCAPED = rb"\\(?:[nrtbf()/\\ %<>\[\]#_&$]|[0-7]{1,3}+)"
# One token after the separators both of pypdf's loops skip (not NUL, not VT), as a tuple of
# groups: the one that matched is not empty. The last group takes any other byte: then pypdf
# parses the stream. Every repetition is possessive: the expression runs in linear time.
_TOKENS = re.compile(
    rb"[\t\n\f\r ]*+(?:"
    rb"([+\-.0-9][+,\-.0-9]*+)"  # a number: pypdf's run of these, from one of its starts
    rb"|(\([^()\\]*+(?:" + _ESCAPED + rb"[^()\\]*+)*+\))"  # a string (nested: pypdf's)
    # An operator; not BI (an inline image follows), not R and no letter (pypdf reads the
    # numbers before it as a reference `n g R`, and fails in a content stream).
    rb"|((?!BI(?!" + _WORD + rb")|R(?![A-Za-z]))[A-Za-z'\"]" + _WORD + rb"*+)"
    rb"|(/[^\t\n\x0b\x0c\r ()<>\[\]{}/%#]*+(?!" + _WORD + rb"))"  # a name without #
    rb"|(<<|\[)|(>>|\])"
    rb"|(<[0-9A-Fa-f\x00\t\n\f\r ]*+>)"  # a hex string
    rb"|([^\t\n\f\r ]))")
_ESCAPE = re.compile(_ESCAPED)
_HEX_SPACE = re.compile(rb"[\x00\t\n\f\r ]")
# After a dictionary pypdf looks for the keyword `stream`: an s there, and pypdf parses.
_STREAM = re.compile(rb">>[\x00\t\n\f\r ]*+s")

# Bounds well inside pypdf's own: it reads a number from a peek of 20 bytes, refuses an
# operator past 128 bytes and a name past 4,096. A larger stream is pypdf's to parse (the
# tokens are held at once here).
_MAX_NUMBER = 18
_MAX_WORD = 64
_MAX_DEPTH = 32
MAX_BYTES = 256 * 1024


class _Fallback(Exception):
    """Something pypdf parses its own way: it parses the stream."""


def operations(data: bytes, forced_encoding: Any = None) -> list[tuple[Any, bytes]] | None:
    """The operations pypdf's `ContentStream` would parse from `data` (with strings decoded by
    `forced_encoding`, as pypdf's are), or None when pypdf must parse it itself."""
    if len(data) > MAX_BYTES or (b">>" in data and _STREAM.search(data)):
        return None
    tokens = _TOKENS.findall(data)
    config = _configuration.get_configuration()
    # pypdf spends at most 2 of its budget on a token: under half of it, it cannot run out.
    if 2 * len(tokens) >= config.stream_parsing_work_maximum_count:
        return None
    try:
        return _build(tokens, forced_encoding, min(config.array_maximum_element_count,
                                                   config.dictionary_maximum_element_count))
    except (_Fallback, UnicodeDecodeError):
        return None


def _build(tokens: list[tuple[bytes, ...]], encoding: Any,
           most: int) -> list[tuple[Any, bytes]]:
    result: list[tuple[Any, bytes]] = []
    operands: list[Any] = []
    # The open arrays and dictionaries, innermost last: an ArrayObject, or for a dictionary a
    # plain list of its keys and values in turn. `append` puts a value where it belongs.
    open_: list[list[Any]] = []
    append = operands.append
    # pypdf's create_string_object, without its questions when the answer is known.
    string_object: Any = ByteStringObject if encoding == "bytes" else (
        lambda raw: create_string_object(raw, encoding))
    for number, string, operator, name, opening, closing, hexa, _other in tokens:
        value: Any
        if number:
            if len(number) > _MAX_NUMBER:
                raise _Fallback
            try:
                value = _new_float(FloatObject, float(number)) if b"." in number \
                    else _new_int(NumberObject, int(number))
            except ValueError:  # pypdf's warning, and 0
                value = FloatObject(number) if b"." in number else NumberObject(number)
        elif string:
            body = string[1:-1]
            if b"\\" in body:
                body = _ESCAPE.sub(_one_escape, body)
            value = string_object(body)
        elif operator:
            if open_ or len(operator) > _MAX_WORD:
                raise _Fallback  # inside an array pypdf fails, or reads true, false, null
            result.append((operands, operator))
            operands = []
            append = operands.append
            continue
        elif name:
            if len(name) > _MAX_WORD:
                raise _Fallback
            value = NameObject(name.decode("utf-8"))
        elif opening:
            if len(open_) >= _MAX_DEPTH:
                raise _Fallback
            inner: list[Any] = ArrayObject() if opening == b"[" else []
            open_.append(inner)
            append = inner.append
            continue
        elif closing:
            if not open_:
                raise _Fallback
            value = open_.pop()
            if closing == b">>":
                value = _dictionary(value, most)
            elif type(value) is not ArrayObject or len(value) > most:
                raise _Fallback
            append = open_[-1].append if open_ else operands.append
        elif hexa:
            digits = _HEX_SPACE.sub(b"", hexa[1:-1])
            if len(digits) % 2:
                digits += b"0"
            value = string_object(bytes.fromhex(digits.decode("ascii")))
        else:
            raise _Fallback  # `_other`: a byte pypdf parses its own way
        append(value)
    if open_:
        raise _Fallback  # pypdf keeps an array open at the end
    return result


_new_float = float.__new__
_new_int = int.__new__


def _dictionary(flat: list[Any], most: int) -> DictionaryObject:
    """The dictionary of these keys and values in turn, as pypdf makes it when every key is
    a name, once, and has a value."""
    if type(flat) is not list or len(flat) % 2 or len(flat) > 2 * most:
        raise _Fallback  # closes an array; a key without its value; pypdf's limit
    keys = flat[0::2]
    if any(type(key) is not NameObject for key in keys) or len(set(keys)) < len(keys):
        raise _Fallback  # pypdf skips a key that is no name, keeps the first of two
    entries = dict(zip(keys, flat[1::2], strict=True))
    result = DictionaryObject()
    result.update(entries)
    return result


def _one_escape(found: re.Match[bytes]) -> bytes:
    code = found[0][1:]
    if code in _ESCAPES:
        return _ESCAPES[code]
    value = int(code, 8)
    if value > 255:
        raise _Fallback  # pypdf keeps the backslash and reads the digits again
    return bytes((value,))


_PYPDF_PARSE = ContentStream._parse_content_stream


def _parse(self: ContentStream, stream: Any) -> None:
    """`ContentStream._parse_content_stream`, by `operations` when it answers."""
    stream.seek(0)
    parsed = operations(stream.read(), self.forced_encoding)
    if parsed is None:
        _PYPDF_PARSE(self, stream)
    else:
        self._operations.extend(parsed)


def install() -> None:
    """Make pypdf parse content streams by `operations` in this process."""
    ContentStream._parse_content_stream = _parse  # type: ignore[method-assign]

