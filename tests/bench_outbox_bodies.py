"""Benchmark: where an email's bytes live in SQLite, side by side in one run (prints figures,
asserts none): in the outbox row (before revision 0007) or in `outbox_bodies`, written once.

    uv run python -m tests.bench_outbox_bodies [--emails 1910]

Each email goes through the writes the outbox makes of it: queued as a draft, filled with its
bytes, claimed, read for sending, then its outcome folded in with the mail's settling count
(one transaction each, as vanthu commits them). SQLite writes a row whole at every UPDATE, so
bytes kept in the row are written again at each claim and outcome. The sizes are the
benchmark backlog's: about half forwards carrying a document's files (100 KB), half short
acknowledgements and receipts (8 KB), one in 190 with a 1.5 MB scan.
"""

from __future__ import annotations

import argparse
import os
import random
import sqlite3
import tempfile
import time
from pathlib import Path

SCHEMA = """
create table outbox(id integer primary key, header_message_id text, message_id int,
    action text, recipients text, raw blob, state text, draft blob, attempts int,
    next_attempt_at text, claimed_by text, claim_expires_at text, tries_begun int,
    journal_seq int, sent_at text);
create index ix_outbox_message_id on outbox(message_id);
create index ix_outbox_state on outbox(state);
create table outbox_bodies(outbox_id integer primary key, raw blob not null);
"""


def run(sizes: list[int], apart: bool) -> tuple[float, float, int]:
    """CPU seconds, wall seconds and bytes written to the write-ahead log for every email's
    writes; `apart`: the bytes in outbox_bodies."""
    folder = Path(tempfile.mkdtemp())
    conn = sqlite3.connect(folder / "vanthu.db", isolation_level=None)
    conn.execute("pragma journal_mode=wal")
    conn.execute("pragma synchronous=normal")
    conn.execute("pragma wal_autocheckpoint=0")  # the log's growth is the figure
    conn.executescript(SCHEMA)
    blob = os.urandom(max(sizes))
    cpu, wall = time.process_time(), time.perf_counter()

    def commit(*statements: tuple[str, tuple[object, ...]]) -> list[tuple[object, ...]]:
        conn.execute("begin")
        found: list[tuple[object, ...]] = []
        for sql, args in statements:
            found += conn.execute(sql, args).fetchall()
        conn.execute("commit")
        return found

    for n in range(len(sizes)):
        commit(("insert into outbox values(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (n + 1, f"<{n}@x>", n // 2, "forward", "[]", None if apart else b"", "draft",
                 b"x" * 300, 0, "t", None, None, 0, None, None)))
    for n, size in enumerate(sizes):
        if apart:
            commit(("insert into outbox_bodies values(?,?)", (n + 1, blob[:size])),
                   ("update outbox set state='pending', draft=null where id=?", (n + 1,)))
        else:
            commit(("update outbox set raw=?, state='pending', draft=null where id=?",
                    (blob[:size], n + 1)))
    for n in range(len(sizes)):
        commit(("update outbox set claimed_by='me', claim_expires_at='x' where id=?", (n + 1,)))
        read = ("select raw from outbox_bodies where outbox_id=?" if apart
                else "select raw from outbox where id=?")
        conn.execute(read, (n + 1,)).fetchone()
        commit(("update outbox set state='sent', tries_begun=1, journal_seq=?, sent_at='t', "
                "claimed_by=null where id=?", (n, n + 1)),
               ("select count(*) from outbox where message_id=? and state in "
                "('draft','pending')", (n // 2,)))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    logged = (folder / "vanthu.db-wal").stat().st_size
    conn.close()
    return cpu, wall, logged


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--emails", type=int, default=1910)
    args = parser.parse_args()
    rng = random.Random(17)
    sizes = [1_500_000 if n % 190 == 0 else rng.choice((100_000, 8_000))
             for n in range(args.emails)]
    print(f"{args.emails} emails, {sum(sizes) / 1e6:.0f} MB")
    print(f"{'the bytes':>22} {'CPU':>8} {'wall':>8} {'written to the log':>20}")
    for apart in (False, True, False, True):
        cpu, wall, logged = run(sizes, apart)
        where = "in outbox_bodies" if apart else "in the outbox row"
        print(f"{where:>22} {cpu:7.2f}s {wall:7.2f}s {logged / 1e6:17.0f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
