"""The text of some pages of a PDF, by PDFium (pypdfium2): the engine of a browser, in C,
many times faster than pypdf's extraction in Python, for pages read only to be searched (the
confidentiality scan).

It runs on hostile PDFs inside the parsing worker, whose memory cap and time limit bound it;
it is handed only the pages asked for and gives back at most the characters asked for. Any
failure is an answer too: the page is not read (None), and the caller reads it another way.
Nothing here raises but MemoryError.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def pages(data: bytes, indexes: Sequence[int], page_count: int,
          max_chars: int) -> list[str | None]:
    """The text of the pages `indexes` (0-based) of the PDF `data`, one per index. None for a
    page PDFium could not stand in for, to be read another way: every page when PDFium cannot
    open the file or counts other than `page_count` pages (it would not be reading the
    document the caller read), a page it fails on or finds no text on. Once `max_chars`
    characters are read, the pages left are "" (the last page read keeps one character more,
    so the caller sees the budget reached)."""
    texts: list[str | None] = [None] * len(indexes)
    if not indexes:
        return texts
    import pypdfium2  # here: the daemon's own process need not load PDFium to start

    try:
        document = pypdfium2.PdfDocument(data)
    except MemoryError:
        raise
    except Exception:  # PDFium's boundary: a damaged or locked file raises PdfiumError or more
        return texts
    try:
        if len(document) != page_count:
            return texts
        left = max_chars + 1
        for at, index in enumerate(indexes):
            text = _page(document, index, left) if left > 0 else ""
            texts[at] = text
            left -= len(text or "")
    finally:
        document.close()
    return texts


def _page(document: Any, index: int, limit: int) -> str | None:
    """The text of one page of a `pypdfium2.PdfDocument`, at most `limit` characters; None
    when PDFium fails on it or finds no text."""
    try:
        page = document[index]
        try:
            text_page = page.get_textpage()
            try:
                count = min(text_page.count_chars(), limit)
                text: str = text_page.get_text_range(0, count) if count > 0 else ""
                return text if text.strip() else None
            finally:
                text_page.close()
        finally:
            page.close()
    except MemoryError:
        raise
    except Exception:  # a damaged page: its text is read another way
        return None
