"""The working calendar against the Government's own announcements, day by day.

The expected tables below are written the way the notices state them (continuous periods of
rest, worked Saturdays), not copied from holidays_vn.yaml: every day of 2025 and 2026 is
compared.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from daemon import config, health
from daemon.office import calendar
from daemon.office.calendar import WorkCalendar, load_table

ROOT = Path(__file__).resolve().parent.parent

# (first day, last day) of each period of rest, as announced, weekends included.
RESTS = {
    2025: [
        ((2025, 1, 1), (2025, 1, 1)),  # Tết Dương lịch (Wednesday)
        ((2025, 1, 25), (2025, 2, 2)),  # Tết Ất Tỵ, 9 days: Thông báo 6150/TB-BLĐTBXH
        ((2025, 4, 5), (2025, 4, 7)),  # Giỗ Tổ Hùng Vương, Monday 7/4
        ((2025, 4, 30), (2025, 5, 4)),  # 30/4-1/5, 5 days, Friday 2/5 swapped with Sat 26/4
        ((2025, 8, 30), (2025, 9, 2)),  # Quốc khánh, 4 days
    ],
    2026: [
        ((2026, 1, 1), (2026, 1, 4)),  # Tết Dương lịch, 4 days: 12729/VPCP-KGVX
        ((2026, 2, 14), (2026, 2, 22)),  # Tết Bính Ngọ, 9 days: Thông báo 9441/TB-BNV
        ((2026, 4, 25), (2026, 4, 27)),  # Giỗ Tổ (Sunday 26/4) and its day off Monday 27/4
        ((2026, 4, 30), (2026, 5, 3)),  # 30/4-1/5, 4 days
        ((2026, 8, 29), (2026, 9, 2)),  # Quốc khánh, 5 days, Monday 31/8 swapped with Sat 22/8
    ],
}
WORKED_SATURDAYS = {2025: [date(2025, 4, 26)], 2026: [date(2026, 1, 10), date(2026, 8, 22)]}


def expected_off(year: int) -> set[date]:
    off = set()
    for start, end in RESTS[year]:
        day = date(*start)
        while day <= date(*end):
            off.add(day)
            day += timedelta(days=1)
    day = date(year, 1, 1)
    while day.year == year:
        if day.weekday() >= 5 and day not in WORKED_SATURDAYS[year]:
            off.add(day)
        day += timedelta(days=1)
    return off


@pytest.mark.parametrize("year", [2025, 2026])
def test_every_day_of_the_announced_years_matches_the_notices(year: int) -> None:
    cal = WorkCalendar()
    off = expected_off(year)
    wrong = [(d.day, d.working, d.reason) for d in cal.year(year)
             if d.working == (d.day in off)]
    assert wrong == []
    assert all(not d.provisional for d in cal.year(year) if d.day != date(2026, 11, 24))


def test_second_of_january_2026_is_off_and_the_tenth_is_worked() -> None:
    cal = WorkCalendar()
    assert not cal.is_working_day(date(2026, 1, 2))
    assert cal.is_working_day(date(2026, 1, 10))
    assert "12729/VPCP-KGVX" in cal.day(date(2026, 1, 2)).source
    # A dossier received on Wednesday 31/12/2025 with 3 working days: 5, 6, 7 January
    # (Thursday 1 to Sunday 4 are off); one with 6 days ends on Saturday 10 (worked).
    assert cal.add_working_days(date(2025, 12, 31), 3) == date(2026, 1, 7)
    assert cal.add_working_days(date(2025, 12, 31), 6) == date(2026, 1, 10)
    assert cal.add_working_days(date(2026, 1, 9), 1) == date(2026, 1, 10)


def test_a_proposed_holiday_is_worked_and_marked_provisional() -> None:
    day = WorkCalendar().day(date(2026, 11, 24))
    assert day.working and day.provisional
    assert "đề xuất" in day.reason


def test_a_year_not_announced_is_provisional_in_every_day() -> None:
    days = list(WorkCalendar().year(2027))
    assert len(days) == 365 and all(d.provisional for d in days)
    assert not calendar.announced(2027) and calendar.announced(2026)
    # The law's fixed days are still rest days, only marked as estimates.
    assert not WorkCalendar().is_working_day(date(2027, 1, 1))
    assert not WorkCalendar().is_working_day(date(2027, 4, 30))
    assert WorkCalendar().is_working_day(date(2027, 11, 24))  # a proposal, not a holiday


@given(st.dates(min_value=date(2025, 1, 1), max_value=date(2027, 12, 31)),
       st.booleans())
def test_the_agencys_overrides_win(day: date, rest: bool) -> None:
    cal = WorkCalendar(days_off=[day] if rest else [], working_days=[] if rest else [day])
    got = cal.day(day)
    assert got.working is not rest and not got.provisional
    assert "cơ quan" in got.reason.lower()


def test_the_table_is_checked_when_it_is_read(tmp_path: Path) -> None:
    def table(text: str) -> Path:
        path = tmp_path / "t.yaml"
        path.write_text(text, encoding="utf-8")
        return path

    good = ("years:\n  2030:\n    days_off:\n      - {date: 2030-01-01, reason: \"Tết\", "
            "source: \"BLLĐ\"}\n")
    assert date(2030, 1, 1) in load_table(table(good)).days_off
    for bad, says in [
        ("years: []\n", "years"),
        (good.replace('source: "BLLĐ"', 'source: ""'), "source"),
        (good.replace("2030-01-01", "2030-01-05"), "weekend"),  # a Saturday listed as off
        (good.replace("2030-01-01", "2031-01-01"), "not in 2030"),
        (good.replace("days_off", "working_days"), "weekday"),
    ]:
        with pytest.raises(ValueError, match=says):
            load_table(table(bad))


def test_every_entry_of_the_shipped_table_names_its_decision() -> None:
    known = calendar.table()
    assert {2025, 2026} <= known.years
    for entry in [*known.days_off.values(), *known.working_days.values(),
                  *known.proposed.values()]:
        assert entry.source and entry.reason


def _vanthu(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "daemon", *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=120)


def test_calendar_show_json_lists_every_day() -> None:
    done = _vanthu("calendar", "show", "2026", "--json")
    assert done.returncode == 0, done.stderr
    days = json.loads(done.stdout)
    assert len(days) == 365
    assert all(set(d) == {"date", "working", "reason", "provisional"} for d in days)
    by_date = {d["date"]: d for d in days}
    assert by_date["2026-01-02"]["working"] is False
    assert by_date["2026-01-10"]["working"] is True
    assert by_date["2026-11-24"]["provisional"] is True
    leap = json.loads(_vanthu("calendar", "show", "2028", "--json").stdout)
    assert len(leap) == 366 and all(d["provisional"] for d in leap)


def test_calendar_show_for_people_is_vietnamese() -> None:
    done = _vanthu("calendar", "show", "2027")
    assert done.returncode == 0
    assert "DỰ KIẾN" in done.stdout and "Tết Dương lịch" in done.stdout
    assert "Thông báo 9441/TB-BNV" in _vanthu("calendar", "show", "2026").stdout
    assert _vanthu("calendar", "show", "0").returncode == 2


def test_status_warns_in_december_when_next_year_is_provisional() -> None:
    cfg = config.load(None)
    december = datetime(2026, 12, 5, 3, tzinfo=UTC)
    [cause] = health.calendar_causes(cfg, december)
    assert cause.key == "calendar_provisional" and cause.facts == {"year": 2027}
    assert "2027" in cause.vi
    assert health.calendar_causes(cfg, datetime(2026, 11, 30, 3, tzinfo=UTC)) == []
    assert health.calendar_causes(cfg, datetime(2025, 12, 5, 3, tzinfo=UTC)) == []  # 2026 known
    # 31 December 17:30 UTC is already 1 January in Vietnam: no warning for the new year.
    assert health.calendar_causes(cfg, datetime(2026, 12, 31, 17, 30, tzinfo=UTC)) == []
