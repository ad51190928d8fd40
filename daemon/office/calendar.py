"""Vietnamese working days for a state body: Monday to Friday, less public holidays and the
days off the Government gives each year, plus the Saturdays it swaps into working days, plus
the agency's own overrides.

Three sources, first match wins for a day:
1. the agency's `[calendar]` days_off / working_days (config.toml);
2. `holidays_vn.yaml`: the years whose schedule the Government has announced, every day off
   and every worked weekend day with the decision it comes from, and the holidays that are
   only proposed (working days until the law passes, marked provisional);
3. any other year: the Labour Code's holidays computed on the lunar calendar (the `holidays`
   package, country VN). A year after the last announced one is provisional: its Tết days,
   the day next to 2 September and any swap are not decided yet.

Pure. Deadline counting as the law has it: the day of receipt is not counted; a deadline
never lands on a rest day.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    import holidays

TABLE_FILE = Path(__file__).with_name("holidays_vn.yaml")
_WEEKEND = {5: "Thứ Bảy", 6: "Chủ nhật"}


@dataclass(frozen=True)
class Day:
    """One day of the calendar as a clerk reads it."""

    day: date
    working: bool
    reason: str  # Vietnamese: why the day is (not) worked
    provisional: bool  # not fixed by a decision yet: may change
    source: str = ""  # the decision or law, when there is one

    def as_json(self) -> dict[str, Any]:
        return {"date": self.day.isoformat(), "working": self.working, "reason": self.reason,
                "provisional": self.provisional}


@dataclass(frozen=True)
class _Entry:
    reason: str
    source: str


@dataclass(frozen=True)
class Table:
    """The announced years of holidays_vn.yaml."""

    days_off: dict[date, _Entry]
    working_days: dict[date, _Entry]
    proposed: dict[date, _Entry]
    years: frozenset[int]

    @property
    def last_year(self) -> int:
        return max(self.years, default=0)

    @property
    def first_year(self) -> int:
        return min(self.years, default=0)


def _entries(items: Any, where: str) -> dict[date, _Entry]:
    found: dict[date, _Entry] = {}
    for item in items or []:
        day, reason, source = item.get("date"), item.get("reason"), item.get("source")
        if not isinstance(day, date) or not reason or not source:
            raise ValueError(f"{where}: every entry needs date, reason, source: {item!r}")
        found[day] = _Entry(str(reason), str(source))
    return found


@functools.cache
def table() -> Table:
    return load_table(TABLE_FILE)


def load_table(path: Path) -> Table:
    """Read and check a table of announced years; a wrong entry is a ValueError naming it."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not isinstance(data.get("years"), dict):
        raise ValueError(f"{path.name}: needs a mapping 'years'")
    days_off: dict[date, _Entry] = {}
    working: dict[date, _Entry] = {}
    proposed: dict[date, _Entry] = {}
    for year, entry in data["years"].items():
        where = f"{path.name}: {year}"
        off = _entries(entry.get("days_off"), f"{where} days_off")
        worked = _entries(entry.get("working_days"), f"{where} working_days")
        maybe = _entries(entry.get("proposed"), f"{where} proposed")
        for day in [*off, *worked, *maybe]:
            if day.year != year:
                raise ValueError(f"{where}: {day} is not in {year}")
        for day in off:
            if day.weekday() in _WEEKEND:
                raise ValueError(f"{where}: {day} is a weekend day: list only weekdays off")
        for day in worked:
            if day.weekday() not in _WEEKEND:
                raise ValueError(f"{where}: {day} is a weekday: list only weekend days worked")
        days_off |= off
        working |= worked
        proposed |= maybe
    return Table(days_off, working, proposed, frozenset(int(y) for y in data["years"]))


@functools.cache
def _computed(year: int) -> holidays.HolidayBase:
    import holidays  # 50 ms of the start: imported when a year beyond the table is asked

    return holidays.country_holidays("VN", years=year, language="vi")


class WorkCalendar:
    def __init__(self, days_off: Iterable[date] = (), working_days: Iterable[date] = ()) -> None:
        self.days_off = frozenset(days_off)
        self.working_days = frozenset(working_days)

    def day(self, day: date) -> Day:
        if day in self.days_off:
            return Day(day, False, "Cơ quan cho nghỉ (cấu hình của cơ quan)", False)
        if day in self.working_days:
            return Day(day, True, "Cơ quan làm việc (cấu hình của cơ quan)", False)
        known = table()
        if day.year in known.years:
            return _announced(known, day)
        return _computed_day(known, day)

    def is_working_day(self, day: date) -> bool:
        return self.day(day).working

    def year(self, year: int) -> Iterator[Day]:
        day = date(year, 1, 1)
        while day.year == year:
            yield self.day(day)
            day += timedelta(days=1)

    def add_working_days(self, start: date, count: int) -> date:
        """The day `count` working days after `start` (which itself is not counted)."""
        day = start
        left = count
        while left > 0:
            day += timedelta(days=1)
            if self.is_working_day(day):
                left -= 1
        while not self.is_working_day(day):
            day += timedelta(days=1)
        return day


def announced(year: int) -> bool:
    """Whether the Government's schedule of `year` is in the table (not provisional)."""
    return year in table().years or year < table().first_year


def _announced(known: Table, day: date) -> Day:
    if entry := known.days_off.get(day):
        return Day(day, False, entry.reason, False, entry.source)
    if entry := known.working_days.get(day):
        return Day(day, True, entry.reason, False, entry.source)
    if entry := known.proposed.get(day):
        return Day(day, day.weekday() not in _WEEKEND, entry.reason, True, entry.source)
    if day.weekday() in _WEEKEND:
        return Day(day, False, _WEEKEND[day.weekday()], False)
    return Day(day, True, "Ngày làm việc", False)


def _computed_day(known: Table, day: date) -> Day:
    provisional = day.year > known.last_year
    computed = _computed(day.year)
    name = computed.get(day)
    proposed_names = {entry.reason.split(":")[0] for entry in known.proposed.values()}
    if name and any(str(name).startswith(p) for p in proposed_names):
        return Day(day, day.weekday() not in _WEEKEND, f"{name}: đề xuất ngày nghỉ lễ, chưa "
                   "có trong Bộ luật Lao động", True)
    suffix = " (dự kiến)" if provisional else ""
    if name and day.weekday() not in _WEEKEND:
        return Day(day, False, f"{name}{suffix}", provisional, "Bộ luật Lao động 2019, Điều 112")
    if day.weekday() in _WEEKEND:
        if computed.is_working_day(day):
            return Day(day, True, f"Làm bù (hoán đổi ngày làm việc){suffix}", provisional)
        return Day(day, False, _WEEKEND[day.weekday()], provisional)
    return Day(day, True, "Ngày làm việc", provisional)
