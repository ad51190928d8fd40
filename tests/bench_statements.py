"""Benchmark: what SQLAlchemy costs per statement when the statement is built at each call
against built once with named placeholders, side by side in one run, on vanthu's tables in
a real SQLite file (prints figures, asserts none).

    uv run python -m tests.bench_statements [--n 3000]

The statements are those the pipeline runs for every mail: the state check before a mail is
recorded, moving a mail on (`pipeline.finish`, an UPDATE of nine columns, two of them JSON),
a case's event (an INSERT with JSON), the next number of a register (an UPDATE … RETURNING).
Each is run `n` times in one transaction, each way; the figure is the mean wall time per
statement, so SQLite's own work is in both columns and the difference is SQLAlchemy's.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Connection, bindparam, insert, select, update

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from daemon.db import case_events, cases, counters, make_engine, messages, upgrade  # noqa: E402

NOW = datetime.now(UTC)
FOUND: dict[str, object] = {
    "kind": "document", "understanding": {"kind": "document", "number": "12/UBND-KT"},
    "decision": {"rules": [], "actions": []}, "tags": None, "move_to": None}


def pairs(n: int) -> list[tuple[str, Callable[[Connection, int], object],
                                Callable[[Connection, int], object]]]:
    state = select(messages.c.state).where(messages.c.id == bindparam("mail_pk"))
    finish = update(messages).where(messages.c.id == bindparam("mail_pk"))
    event = insert(case_events)
    take = (update(counters).where(counters.c.name == bindparam("counter"))
            .values(value=counters.c.value + 1).returning(counters.c.value))
    return [
        ("SELECT a mail's state",
         lambda conn, i: conn.scalar(select(messages.c.state).where(messages.c.id == i)),
         lambda conn, i: conn.scalar(state, {"mail_pk": i})),
        ("UPDATE a mail (pipeline.finish)",
         lambda conn, i: conn.execute(update(messages).where(messages.c.id == i).values(
             state="done", updated_at=NOW, case_id=None, **FOUND)),
         lambda conn, i: conn.execute(finish, {"mail_pk": i, "state": "done",
                                               "updated_at": NOW, "case_id": None, **FOUND})),
        ("INSERT a case's event",
         lambda conn, i: conn.execute(insert(case_events).values(
             case_id=1, at=NOW, event="forwarded", actor="vanthu", detail={"to": ["a@b.vn"]})),
         lambda conn, i: conn.execute(event, {"case_id": 1, "at": NOW, "event": "forwarded",
                                              "actor": "vanthu",
                                              "detail": {"to": ["a@b.vn"]}})),
        ("UPDATE … RETURNING the next number",
         lambda conn, i: conn.execute(update(counters).where(counters.c.name == "so-den-2026")
                                      .values(value=counters.c.value + 1)
                                      .returning(counters.c.value)).first(),
         lambda conn, i: conn.execute(take, {"counter": "so-den-2026"}).first()),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=3000)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="vanthu-bench-statements-"))
    engine = make_engine(f"sqlite:///{folder / 'vanthu.db'}")
    upgrade(engine)
    with engine.begin() as conn:
        conn.execute(insert(messages), [
            {"sha256": f"{i:064x}", "size": 1, "mailbox": "agency", "state": "stored",
             "stored_at": NOW, "updated_at": NOW, "attempts": 0} for i in range(args.n)])
        conn.execute(insert(cases).values(id=1, code="000.00.22.H56-261127-0001",
                                          opened_at=NOW, status="received"))
        conn.execute(insert(counters).values(name="so-den-2026", value=0))
    print(f"{'statement (mean of ' + str(args.n) + ')':40} {'built each call':>16} "
          f"{'built once':>11} {'saved':>8}")
    for name, each, once in pairs(args.n):
        times = []
        for way in (each, once):
            with engine.begin() as conn:
                way(conn, 1)  # compiled and cached before timing, both ways
                started = time.perf_counter()
                for i in range(1, args.n + 1):
                    way(conn, i)
                times.append((time.perf_counter() - started) / args.n * 1e6)
        print(f"{name:40} {times[0]:13.0f} µs {times[1]:8.0f} µs {times[0] - times[1]:5.0f} µs")
    engine.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
