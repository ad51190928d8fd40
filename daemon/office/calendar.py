"""Vietnamese working days: Monday to Friday, less public holidays and their substitute days
(the `holidays` package, country VN, computed on the Vietnamese lunar calendar), plus the
Saturdays the government swaps into working days, plus the agency's own overrides.

Pure. Deadline counting as the law has it: the day of receipt is not counted; a deadline
never lands on a rest day.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, timedelta
from functools import cached_property

import holidays


class WorkCalendar:
    def __init__(self, days_off: Iterable[date] = (), working_days: Iterable[date] = ()) -> None:
        self.days_off = frozenset(days_off)
        self.working_days = frozenset(working_days)

    @cached_property
    def _public(self) -> holidays.HolidayBase:
        return holidays.country_holidays("VN")

    def is_working_day(self, day: date) -> bool:
        if day in self.days_off:
            return False
        if day in self.working_days:
            return True
        return bool(self._public.is_working_day(day))

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
