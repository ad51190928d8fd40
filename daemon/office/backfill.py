"""Old mail: `vanthu backlog import` takes archived mail into the register quietly, and the
progress of any backlog is read for `vanthu status`.

The import reuses the pipeline: a chunk of archived mail, oldest received first, is put back
to `stored` with `messages.quiet` set, and `pipeline.process_pending` takes exactly those mails
in the order they were received. A quiet mail is understood, registered (a dossier gets its
case) and its findings recorded, but no email is queued for it (no acknowledgement, forward,
notice or assignment) and its case is recorded as settled before vanthu (status `done`, by
the actor "vanthu backlog import" in its history), so no reminder, review reminder or overdue
line ever comes of it. The daemon's own pipeline leaves quiet mails to the import, so numbers
follow received time within a run. Killed anywhere, a rerun first finishes the chunk it had
begun; numbers are taken in the pipeline's transaction, so none is given twice or skipped.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, and_, func, or_, select, update

from daemon.config import Config, as_date
from daemon.db import checkpoints, messages, reading, register_entries, utcnow
from daemon.models import CaseStatus, State
from daemon.office import cases as cases_module

ACTOR = "vanthu backlog import"
CHUNK = 50  # mails put back to `stored` and processed at a time
# Mail that has left `stored` (processed) within this window gives the pipeline's rate.
RATE_WINDOW = timedelta(minutes=10)
PROCESSED = (State.ROUTED, State.DONE, State.QUARANTINED, State.DROPPED)


def imported(conn: Connection, case_id: int | None) -> None:
    """The pipeline's last step for a quiet mail: a dossier's case is recorded as settled
    before vanthu, so nothing reminds anyone of a deadline long past."""
    if case_id is None:
        return
    cases_module.set_status(conn, case_id, CaseStatus.DONE, ACTOR)


# ---------------------------------------------------------------------------------------------
# The import.


@dataclass(frozen=True)
class Selection:
    """Which archived mail to import: received on or after `since`, before the end of `until`
    (local dates), first seen in `mailbox`."""

    since: datetime | None = None
    until: datetime | None = None
    mailbox: str | None = None

    def where(self) -> Any:
        received = func.coalesce(messages.c.received_at, messages.c.stored_at)
        terms = [messages.c.state == State.ARCHIVED]
        if self.since is not None:
            terms.append(received >= self.since)
        if self.until is not None:
            terms.append(received < self.until)
        if self.mailbox is not None:
            terms.append(messages.c.mailbox == self.mailbox)
        return and_(*terms)


# Begun by an import that was stopped, or released from quarantine by the clerk: the
# daemon's pipeline leaves them to the import.
_BEGUN = and_(messages.c.state == State.STORED, messages.c.quiet.is_(True))
_ORDER = (func.coalesce(messages.c.received_at, messages.c.stored_at), messages.c.id)


@dataclass
class Imported:
    """What an import did (or, dry, would do)."""

    selected: int = 0
    ids: list[int] = field(default_factory=list)
    states: Counter[str] = field(default_factory=Counter)
    registered: list[dict[str, Any]] = field(default_factory=list)

    def as_json(self, dry_run: bool) -> dict[str, Any]:
        return {"dry_run": dry_run, "selected": self.selected, "imported": len(self.ids),
                "states": dict(self.states), "registered": self.registered}


def _next_chunk(engine: Engine, selection: Selection, size: int) -> list[int]:
    with reading(engine) as conn:
        begun = list(conn.scalars(select(messages.c.id).where(_BEGUN).order_by(*_ORDER)
                                  .limit(size)))
        return begun or list(conn.scalars(select(messages.c.id).where(selection.where())
                                          .order_by(*_ORDER).limit(size)))


def count(engine: Engine, selection: Selection) -> int:
    """Mails an import of `selection` would take (begun ones included)."""
    with reading(engine) as conn:
        return int(conn.scalar(select(func.count()).select_from(messages)
                               .where(or_(selection.where(), _BEGUN))) or 0)


def run(engine: Engine, cfg: Config, selection: Selection, *, chunk: int = CHUNK,
        limit: int | None = None) -> Imported:
    """Import the selected archived mail, chunk by chunk, oldest received first; `limit`: stop
    after about this many (in steps). Raises SystemicFault when the pipeline cannot work (the
    mails stay to be taken again by a rerun)."""
    from daemon import pipeline
    from daemon.intake.store import MailStore
    from daemon.intake.workers import ReadPool
    from daemon.routing import rules as rules_module
    from daemon.understand import dkim_check
    from daemon.understand.signatures import document_roots

    done = Imported(selected=count(engine, selection))
    rules = rules_module.load(cfg.rules.dir)
    store = MailStore(cfg.storage.data_dir)
    pool = ReadPool(cfg.limits, dkim_check(cfg), roots=document_roots(cfg))
    try:
        while limit is None or len(done.ids) < limit:
            ids = _next_chunk(engine, selection, chunk)
            if not ids:
                break
            with engine.begin() as conn:
                conn.execute(update(messages).where(messages.c.id.in_(ids),
                                                    messages.c.state == State.ARCHIVED)
                             .values(state=State.STORED, quiet=True, updated_at=utcnow()))
            # A mail that fails is retried up to max_attempts, then quarantined: bounded.
            for _ in range(cfg.limits.max_attempts + 1):
                if not pipeline.process_pending(engine, cfg, store, rules, pool, len(ids),
                                                only=ids):
                    break
            done.ids += ids
    finally:
        pool.close()
    _outcome(engine, done)
    return done


def _outcome(engine: Engine, done: Imported) -> None:
    with reading(engine) as conn:
        for start in range(0, len(done.ids), 500):
            part = done.ids[start:start + 500]
            done.states.update(str(s) for s in conn.scalars(
                select(messages.c.state).where(messages.c.id.in_(part))))
            done.registered += [
                {"mail": r.message_id, "book": r.book, "year": r.year, "number": r.number,
                 "received_at": r.received_at.isoformat()}
                for r in conn.execute(select(register_entries).where(
                    register_entries.c.message_id.in_(part))
                    .order_by(register_entries.c.book, register_entries.c.year,
                              register_entries.c.number))]


BOOK_NAMES = {"incoming": "Sổ văn bản đến", "confidential": "Sổ văn bản đến mật"}
STATE_NAMES = {"done": "đã xử lý xong (không gửi thư nào)",
               "quarantined": "giữ lại chờ văn thư xem",
               "stored": "chưa xử lý được, chạy lại lệnh để tiếp tục",
               "dropped": "đã loại bỏ", "routed": "đã vào sổ"}


def summary(done: Imported, dry_run: bool) -> str:
    """What the import did, for people (Vietnamese)."""
    if dry_run:
        return (f"Chạy thử: {done.selected} thư cũ sẽ được nhập vào sổ (không gửi thư nào). "
                "Bỏ --dry-run để nhập.")
    if not done.ids:
        return "Không có thư cũ nào cần nhập."
    lines = [f"Đã nhập {len(done.ids)} thư cũ (không gửi thư nào):",
             *(f"  {n} {STATE_NAMES.get(s, s)}" for s, n in sorted(done.states.items()))]
    numbers: dict[tuple[str, int], list[int]] = {}
    for entry in done.registered:
        numbers.setdefault((entry["book"], entry["year"]), []).append(entry["number"])
    lines += [f"  {BOOK_NAMES.get(book, book)} năm {year}: {len(got)} văn bản, số "
              f"{min(got)} đến {max(got)}" for (book, year), got in sorted(numbers.items())]
    return "\n".join(lines)


def _day(value: str | None, tz: Any, after: int) -> datetime | None:
    """The start of local day `value` (+`after` days), or None; ValueError when not a date."""
    if value is None:
        return None
    parsed = as_date(value)
    if isinstance(parsed, str):
        raise ValueError(parsed)
    return datetime.combine(parsed + timedelta(days=after), time(), tz).astimezone(UTC)


def command(args: argparse.Namespace, cfg: Config, engine_of: Callable[[Config], Any]) -> int:
    """`vanthu backlog import`: Vietnamese for people, English keys with --json."""
    tz = cfg.agency.tz
    try:
        selection = Selection(_day(args.since, tz, 0), _day(args.until, tz, 1), args.mailbox)
    except ValueError as err:
        print(f"vanthu backlog import: ngày không hợp lệ: {err}", file=sys.stderr)
        return 2
    engine = engine_of(cfg)
    done = Imported(selected=count(engine, selection)) if args.dry_run else \
        run(engine, cfg, selection)
    print(json.dumps(done.as_json(args.dry_run), ensure_ascii=False, indent=1) if args.json
          else summary(done, args.dry_run))
    return 0


# ---------------------------------------------------------------------------------------------
# Progress, for `vanthu status`.


def _rate(done: int, began: datetime | None, at: datetime | None) -> float | None:
    if began is None or at is None or at <= began:
        return None
    return done / (at - began).total_seconds()


def _left(remaining: int, rate: float | None) -> int | None:
    return None if not rate else round(remaining / rate)


def progress(conn: Connection, now: datetime) -> dict[str, Any]:
    """Every folder's last catch-up (fetched/total, rate in mails/s, seconds left) and the
    pipeline's backlog (mails stored not yet processed, rate, seconds left; archived mail)."""
    folders = []
    for row in conn.execute(select(checkpoints).where(checkpoints.c.backlog_total.is_not(None))
                            .order_by(checkpoints.c.mailbox, checkpoints.c.folder)):
        fetched, total = int(row.backlog_fetched or 0), int(row.backlog_total)
        rate = _rate(fetched, row.backlog_since, row.backlog_at)
        folders.append({
            "mailbox": row.mailbox, "folder": row.folder, "fetched": fetched, "total": total,
            "running": fetched < total, "rate": round(rate, 2) if rate else None,
            "left_seconds": _left(total - fetched, rate) if fetched < total else 0,
            "since": row.backlog_since.isoformat() if row.backlog_since else None,
            "updated_at": row.backlog_at.isoformat() if row.backlog_at else None})
    waiting = int(conn.scalar(select(func.count()).select_from(messages)
                              .where(messages.c.state == State.STORED)) or 0)
    archived = int(conn.scalar(select(func.count()).select_from(messages)
                               .where(messages.c.state == State.ARCHIVED)) or 0)
    recent, first = conn.execute(select(func.count(), func.min(messages.c.updated_at)).where(
        messages.c.state.in_(PROCESSED), messages.c.updated_at >= now - RATE_WINDOW)).one()
    rate = _rate(int(recent or 0), first, now) if recent else None
    return {"folders": folders,
            "pipeline": {"waiting": waiting, "rate": round(rate, 2) if rate else None,
                         "left_seconds": _left(waiting, rate) if waiting else 0},
            "archived": archived}


def _duration(seconds: int | None) -> str:
    if seconds is None:
        return "chưa ước lượng được"
    if seconds < 60:
        return f"khoảng {seconds} giây"
    if seconds < 3600:
        return f"khoảng {round(seconds / 60)} phút"
    return f"khoảng {seconds // 3600} giờ {round(seconds % 3600 / 60)} phút"


def _speed(rate: float | None) -> str:
    return "chưa rõ tốc độ" if rate is None else f"{rate:.1f} thư/giây".replace(".", ",")


def lines(report: dict[str, Any]) -> list[str]:
    """The backlog part of `vanthu status` for people (Vietnamese)."""
    out = [f"Đang lấy thư tồn {f['mailbox']}/{f['folder']}: {f['fetched']}/{f['total']} thư, "
           f"{_speed(f['rate'])}, còn {_duration(f['left_seconds'])}"
           for f in report["folders"] if f["running"]]
    pipe = report["pipeline"]
    if pipe["waiting"]:
        out.append(f"Thư chờ xử lý: {pipe['waiting']}, {_speed(pipe['rate'])}, còn "
                   f"{_duration(pipe['left_seconds'])}")
    if report["archived"]:
        out.append(f"Thư cũ đã lưu, chưa vào sổ: {report['archived']} (nhập vào sổ, không gửi "
                   "thư nào: vanthu backlog import)")
    return out

