"""The year-end closing of the registers (khóa sổ).

Once a calendar year has ended in the agency's time zone, the clerk closes its books: for each
register, who closed it, when, and what it held (the first and last number and the count) are
recorded once, in one transaction. A closed book never changes: a mail the server received in
that year but vanthu fetched after the closing (a server down on 31 December) is registered in
the next open year's book, its note saying when it was received (`open_year`). Should a row
still reach a closed book (another build, a race on another database), the exports mark it as
entered after the closing rather than hide it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, exc, func, insert, select

from daemon.config import AgencyConfig
from daemon.db import cases, outgoing_entries, reading, register_closings, register_entries

BOOKS = ("incoming", "confidential", "outgoing", "cases")


class YearNotEnded(ValueError):
    """The year asked to be closed has not ended yet in the agency's time zone."""


@dataclass(frozen=True)
class Closing:
    book: str
    year: int
    closed_at: datetime
    closed_by: str
    first_number: int | None
    last_number: int | None
    count: int


# Built once (daemon/db.py says why).
_CLOSED_FROM = select(register_closings.c.year).where(
    register_closings.c.book == bindparam("book"), register_closings.c.year >= bindparam("year"))


def open_year(conn: Connection, book: str, year: int) -> int:
    """The first year from `year` on whose `book` is not closed: where a new entry goes."""
    closed = set(conn.scalars(_CLOSED_FROM, {"book": book, "year": year}))
    while year in closed:
        year += 1
    return year


def year_bounds(agency: AgencyConfig, year: int) -> tuple[datetime, datetime]:
    """The first instant of `year` and of the next one, in the agency's time zone, as UTC."""
    start = datetime(year, 1, 1, tzinfo=agency.tz).astimezone(UTC)
    return start, datetime(year + 1, 1, 1, tzinfo=agency.tz).astimezone(UTC)


def contents(conn: Connection, agency: AgencyConfig, book: str,
             year: int) -> tuple[int, int | None, int | None]:
    """How many entries a book of a year holds, and its first and last number."""
    if book in ("incoming", "confidential"):
        table: Any = register_entries
        where: tuple[Any, ...] = (register_entries.c.book == book, register_entries.c.year == year)
    elif book == "outgoing":
        table, where = outgoing_entries, (outgoing_entries.c.year == year,)
    else:
        start, end = year_bounds(agency, year)
        count = conn.scalar(select(func.count()).select_from(cases).where(
            cases.c.opened_at >= start, cases.c.opened_at < end))
        return int(count or 0), None, None
    row = conn.execute(select(func.count(), func.min(table.c.number), func.max(table.c.number))
                       .where(*where)).one()
    return int(row[0]), row[1], row[2]


def _closing(row: Any) -> Closing:
    count = row._mapping["count"]  # not row.count: a row is a tuple, with a count() method
    return Closing(row.book, row.year, row.closed_at, row.closed_by or "", row.first_number,
                   row.last_number, int(count or 0))


def closing_of(conn: Connection, book: str, year: int) -> Closing | None:
    row = conn.execute(select(register_closings).where(
        register_closings.c.book == book, register_closings.c.year == year)).first()
    return None if row is None else _closing(row)


def close_year(engine: Engine, agency: AgencyConfig, year: int, actor: str,
               now: datetime | None = None, force: bool = False) -> list[tuple[Closing, bool]]:
    """Close every book of `year`; each closing with True when this call made it (False: it
    was closed before, and stays as it was). A year not yet ended is refused unless `force`
    (the current year only; a future one never)."""
    now = now or datetime.now(UTC)
    current = now.astimezone(agency.tz).year
    if year > current or (year == current and not force):
        raise YearNotEnded(f"năm {year} chưa kết thúc (hôm nay là "
                           f"{now.astimezone(agency.tz):%d/%m/%Y}): chỉ khóa sổ một năm đã "
                           "qua, hoặc dùng --force để khóa sổ năm hiện tại")
    try:
        with engine.begin() as conn:
            made = [book for book in BOOKS if closing_of(conn, book, year) is None]
            for book in made:
                count, first, last = contents(conn, agency, book, year)
                conn.execute(insert(register_closings).values(
                    book=book, year=year, closed_at=now, closed_by=actor, first_number=first,
                    last_number=last, count=count))
    except exc.IntegrityError:
        made = []  # another clerk closed the year at the same moment: theirs stands
    with reading(engine) as conn:
        found = [(closing_of(conn, book, year), book in made) for book in BOOKS]
    return [(c, new) for c, new in found if c is not None]
