"""Benchmark: the daily count of automatic replies to a domain, asked once for every
acknowledgement, as the outbox grows: matching the end of `ack_key` (what vanthu did before
outbox.ack_domain) against the indexed `ack_domain`, side by side in one run on a SQLite file
(prints figures, asserts none).

    uv run python -m tests.bench_reply_limits [--rows 10000 100000]

The outbox is never pruned: an agency that acknowledges 100 mails a day holds about 36,000
replies a year.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine, func, insert, select

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from daemon.db import make_engine, outbox, upgrade  # noqa: E402
from daemon.outbound.recipients import domain_key  # noqa: E402


def filled(rows: int) -> Engine:
    engine = make_engine(f"sqlite:///{Path(tempfile.mkdtemp()) / 'vanthu.db'}")
    upgrade(engine)
    now = datetime.now(UTC)
    keys = [f"nguoi{i % 5000}@xa{i % 700}.tayninh.gov.vn|2026-{1 + i % 12:02d}-{1 + i % 28:02d}"
            for i in range(rows)]
    with engine.begin() as conn:
        conn.execute(insert(outbox), [
            {"header_message_id": f"<ack.{i}@sxd.tayninh.gov.vn>", "action": "acknowledge",
             "recipients": [key.partition("|")[0]], "raw": b"", "state": "sent",
             "attempts": 1, "next_attempt_at": now, "created_at": now, "ack_key": key,
             "ack_domain": domain_key(key)} for i, key in enumerate(keys)])
    return engine


def timed(engine: Engine, query: object, repeat: int = 50) -> float:
    """Median milliseconds of one count."""
    times = []
    with engine.connect() as conn:
        for _ in range(repeat):
            started = time.perf_counter()
            conn.scalar(query)  # type: ignore[call-overload]
            times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000])
    args = parser.parse_args()
    domain, day = "xa5.tayninh.gov.vn", "2026-06-06"
    before = select(func.count()).select_from(outbox).where(
        outbox.c.ack_key.like(f"%@{domain}|{day}", escape="\\"))
    after = select(func.count()).select_from(outbox).where(
        outbox.c.ack_domain == f"{domain}|{day}")
    print(f"{'replies in the outbox':>22} {'end of ack_key':>15} {'ack_domain':>11}")
    for rows in args.rows:
        engine = filled(rows)
        print(f"{rows:22,} {timed(engine, before):12.2f} ms {timed(engine, after):8.2f} ms")
        engine.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
