"""Active content in a PDF, found by parsing its objects, and the text of its first pages.

pypdf reads the file (names with `#xx` escapes come out decoded, objects inside compressed
object streams are read like any other). Every indirect object the cross-reference tables
name is visited, and every dictionary inside it, up to `[limits] pdf_max_objects` values:
what an attacker hides in an unreferenced or deeply nested object is still seen (the budget is
shared by every PDF of one attachment, so a ZIP of PDFs costs no more). A PDF this
bounded parse cannot finish, or that pypdf cannot read, is reported as not checked (and is
withheld by the caller): what could not be checked is not forwarded.

Active content: JavaScript anywhere; actions that launch programs, submit forms, import data
or open remote files (Launch, SubmitForm, ImportData, GoToR, GoToE, RichMediaExecute);
actions that run without a click (OpenAction, AA) unless they only go to a page of the same
file; embedded files and file attachments; XFA forms; RichMedia and 3D content. A link the
reader clicks (/Link with /URI) is not active content: ordinary PDFs carry hyperlinks.

Text: the first `exact_pages` pages (those the document header is read from) are extracted by
pypdf, whose layout the header reader is tuned to; the pages after them, read only for the
confidentiality scan, by PDFium (pypdfium2, in C: many times faster). Every page's content is
still decoded by pypdf first, so a page past pypdf's decompression limits makes the PDF not
checked, as before. PDFium's text is a filter: a page whose letters could spell a mark, a
turned page, and every page PDFium cannot stand in for (it cannot open the file, it counts
other pages, it fails on a page, or finds no text on one) are read by pypdf as before.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass, field

import pypdf
import pypdf._codecs
import pypdf._text_extraction._text_extractor
import pypdf.generic._font
from pypdf import PasswordType
from pypdf.generic import (
    ArrayObject,
    DictionaryObject,
    IndirectObject,
    NameObject,
    PdfObject,
)

from daemon.understand import contentstream, pdftext, secrecy

logging.getLogger("pypdf").setLevel(logging.CRITICAL)  # it warns about every odd PDF
# pypdf parses page content streams by `contentstream` wherever PDFs are read: the same
# operations, in a third of the time.
contentstream.install()

# pypdf makes the 256-entry Windows table again for every page's text (the table of the
# placeholder font a page's text is read with until its first Tf), decoding each byte alone
# and catching the error of each undefined one: 0.28 ms each time. A table is a function of its
# name: it is made once here, and each caller is given a copy of its own (pypdf changes the
# table it is given).
_MAKE_ENCODING = pypdf._codecs.encoding_dict_from_named_encoding
_ENCODINGS: dict[str, dict[int, str]] = {}
_MAX_ENCODINGS = 32  # pypdf asks for cp1252 alone; a bound all the same


def named_encoding(encoding: str) -> dict[int, str]:
    """pypdf's `encoding_dict_from_named_encoding(encoding)`, its table made once."""
    table = _ENCODINGS.get(encoding)
    if table is None:
        table = _MAKE_ENCODING(encoding)
        if len(_ENCODINGS) < _MAX_ENCODINGS:
            _ENCODINGS[encoding] = table
    return dict(table)


for _module in (pypdf._text_extraction._text_extractor, pypdf.generic._font):
    _module.encoding_dict_from_named_encoding = named_encoding  # type: ignore[attr-defined]

# Action types (/S) that act outside the document whenever they run.
_ACTIONS = {"/JavaScript": "JavaScript", "/Launch": "Launch (chạy chương trình)",
            "/SubmitForm": "SubmitForm (gửi dữ liệu đi)", "/ImportData": "ImportData",
            "/GoToR": "GoToR (mở tệp bên ngoài)", "/GoToE": "GoToE (mở tệp nhúng)",
            "/RichMediaExecute": "RichMediaExecute", "/Rendition": "Rendition"}
# Keys whose mere presence means active content.
_KEYS = {"/JS": "JavaScript", "/JavaScript": "JavaScript", "/XFA": "biểu mẫu XFA",
         "/EmbeddedFiles": "tệp nhúng", "/EmbeddedFile": "tệp nhúng", "/EF": "tệp nhúng",
         "/RichMedia": "RichMedia", "/RichMediaContent": "RichMedia"}
# Annotation and object subtypes that carry files or programs.
_SUBTYPES = {"/FileAttachment": "tệp đính kèm trong PDF", "/RichMedia": "RichMedia",
             "/3D": "nội dung 3D", "/Movie": "phim nhúng", "/Sound": "âm thanh nhúng",
             "/Screen": "Screen (đa phương tiện)"}


@dataclass
class Scan:
    """What one PDF holds: its active content (Vietnamese names, in the order found), the text
    of its pages, and why it could not be checked (None when it was)."""

    active: list[str] = field(default_factory=list)
    pages: list[str] = field(default_factory=list)
    page_count: int = 0
    unchecked: str | None = None
    visited: int = 0  # values visited: what the parse cost, against the caller's budget


class _Budget(Exception):
    """The bounded parse ran out of objects to visit."""


def scan(data: bytes, max_objects: int, text_pages: int, exact_pages: int | None = None,
         max_chars: int = 10_000_000) -> Scan:
    """Parse `data`, visit at most `max_objects` values, and read the text of the first
    `text_pages` pages: the first `exact_pages` of them (all when None) by pypdf, the others
    by PDFium, at most `max_chars` characters of those (and one more, so the caller sees the
    budget was reached). Never raises on a hostile PDF (only MemoryError goes on)."""
    result = Scan()
    try:
        reader = pypdf.PdfReader(io.BytesIO(data))
        if reader.is_encrypted and reader.decrypt("") == PasswordType.NOT_DECRYPTED:
            result.unchecked = "PDF có mật khẩu"
            return result
        _walk(reader, max_objects, result)
        pages = reader.pages
        result.page_count = len(pages)
        wanted = min(text_pages, result.page_count)
        for index in range(wanted):
            pages[index].get_contents()  # raises past pypdf's decompression limits
        exact = wanted if exact_pages is None else min(max(exact_pages, 0), wanted)
        result.pages = [pages[index].extract_text() or "" for index in range(exact)]
        later = pdftext.pages(data, range(exact, wanted), result.page_count, max_chars)
        result.pages += [_later_page(pages[index], text)
                         for index, text in zip(range(exact, wanted), later, strict=True)]
    except MemoryError:
        raise  # past the worker's memory cap: the mail, not this attachment, is the problem
    except _Budget:
        result.visited = max_objects + 1
        result.unchecked = f"PDF có hơn {max_objects} đối tượng"
    except RecursionError:
        result.unchecked = "PDF lồng đối tượng quá sâu"
    except Exception as err:  # pypdf's boundary: on a hostile PDF it raises anything at all
        result.unchecked = f"PDF không đọc được ({type(err).__name__})"
    return result


def _later_page(page: pypdf.PageObject, text: str | None) -> str:
    """PDFium's `text` of `page` when it may stand for pypdf's in the confidentiality scan (it
    was read, and holds no letters that could be a mark), else pypdf's. PDFium joins a line's
    pieces with single spaces where pypdf keeps the gap that sets a stamp apart, and it orders
    the lines of a turned page its own way, so a page that may hold a mark, or is turned, is
    read by pypdf as before."""
    if text is not None and not page.rotation and not secrecy.may_hold_mark(text):
        return text
    return page.extract_text() or ""


def _object_ids(reader: pypdf.PdfReader) -> list[tuple[int, int]]:
    """Every indirect object the cross-reference tables name, in plain and compressed form."""
    ids = [(number, generation) for generation, table in reader.xref.items()
           for number in table]
    ids += [(number, 0) for number in reader.xref_objStm]
    return sorted(set(ids))


def _walk(reader: pypdf.PdfReader, max_objects: int, result: Scan) -> None:
    """Visit the trailer and every indirect object, and every value nested inside each, without
    following references (each referenced object is visited once, by its own id)."""
    roots: list[PdfObject] = [reader.trailer]
    ids = _object_ids(reader)
    if len(ids) > max_objects:
        raise _Budget
    for number, generation in ids:
        found = reader.get_object(IndirectObject(number, generation, reader))
        if found is not None:
            roots.append(found)
    for root in roots:
        stack: list[PdfObject] = [root]
        while stack:
            value = stack.pop()
            result.visited += 1
            if result.visited > max_objects:
                raise _Budget
            if isinstance(value, DictionaryObject):
                _check(value, result)
                stack.extend(v for v in value.values() if isinstance(
                    v, (DictionaryObject, ArrayObject)))
            elif isinstance(value, ArrayObject):
                stack.extend(v for v in value if isinstance(v, (DictionaryObject, ArrayObject)))


def _note(result: Scan, what: str) -> None:
    if what not in result.active:
        result.active.append(what)


def _check(entry: DictionaryObject, result: Scan) -> None:
    """Name the active content of one dictionary."""
    for key in entry:
        if key in _KEYS:
            _note(result, _KEYS[key])
    action = _name(entry.get("/S"))
    if action in _ACTIONS:
        _note(result, _ACTIONS[action])
    subtype = _name(entry.get("/Subtype"))
    if subtype in _SUBTYPES:
        _note(result, _SUBTYPES[subtype])
    if _name(entry.get("/Type")) == "/EmbeddedFile":
        _note(result, "tệp nhúng")
    if "/OpenAction" in entry and not _only_local(entry["/OpenAction"]):
        _note(result, "OpenAction (tự chạy khi mở tệp)")
    triggers = _resolved(entry.get("/AA"))
    if isinstance(triggers, DictionaryObject) and any(
            not _only_local(action) for action in triggers.values()):
        _note(result, "AA (hành động tự chạy)")


def _name(value: object) -> str:
    value = _resolved(value)
    return str(value) if isinstance(value, NameObject) else ""


def _resolved(value: object) -> object:
    return value.get_object() if isinstance(value, IndirectObject) else value


def _only_local(action: object, chain: int = 0) -> bool:
    """Whether an automatic action only shows a place in this same file: a destination, or a
    GoTo action (and each /Next action after it) whose destination is not in another file."""
    action = _resolved(action)
    if isinstance(action, ArrayObject) or chain > 20:
        return chain <= 20
    if not isinstance(action, DictionaryObject) or _name(action.get("/S")) != "/GoTo":
        return False
    following = _resolved(action.get("/Next"))
    if following is None:
        return True
    if isinstance(following, ArrayObject):
        return all(_only_local(a, chain + 1) for a in following[:20])
    return _only_local(following, chain + 1)
