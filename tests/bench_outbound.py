"""Benchmark: the daemon's own CPU per email it sends: composing, queueing (the outbox's
check included) and draining over SMTP, on a real SQLite file and a real SMTP server on
loopback (prints figures, asserts none).

    .venv/bin/python tests/bench_outbound.py [--n 200] [--baseline DIR] [--json]

Timed per email, in this order, in a process of its own for each checkout:

1. compose: the forward of a document with a 60 KB PDF; the acknowledgement of a document;
   the acknowledgement of a complete dossier (the receipt slip, its PDF drawn);
2. enqueue: each composed email queued by `outbox.enqueue` (recipient policy and `check`),
   ten to a transaction, on a SQLite file;
3. drain: `Sender.drain` (50 rows a drain, as the daemon) of every queued row to an SMTP sink
   (aiosmtpd) running in another process, so that it does not share the measured process's
   GIL.

`--baseline DIR` (a git worktree of an earlier commit, e.g. `git worktree add --detach
/tmp/base <commit>`) runs the same measurement with DIR first on sys.path and prints both
side by side: wall and CPU milliseconds per email.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
WHEN = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)
PDF_SIZE = 60_000
BATCH = 10  # emails queued per transaction


def _timed(work: Callable[[], Any]) -> tuple[Any, float, float]:
    """`work()`, its wall and CPU seconds."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = work()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def measure(root: Path, port: int, n: int) -> dict[str, Any]:
    """Everything timed, in this process, importing vanthu from `root`."""
    sys.path.insert(0, str(root))
    import daemon
    from daemon import config
    from daemon.db import make_engine, upgrade
    from daemon.models import (
        Action,
        Address,
        Applicant,
        Attachment,
        Document,
        Kind,
        ParsedMail,
        Understanding,
    )
    from daemon.outbound import compose
    from daemon.outbound.outbox import enqueue
    from daemon.outbound.recipients import Allowed, Answering, Purpose
    from daemon.outbound.send import Sender
    from daemon.routing import rules as rules_module

    assert Path(daemon.__file__).resolve().is_relative_to(root.resolve()), daemon.__file__
    work = Path(tempfile.mkdtemp(prefix="bench-outbound-"))
    cfg = config.parse({
        "agency": {"name": "Sở Xây dựng tỉnh Tây Ninh", "code": "000.00.22.H56",
                   "message_id_domain": "sxd.example.gov.vn"},
        "storage": {"data_dir": str(work / "data")},
        "smtp": {"host": "127.0.0.1", "port": port, "security": "none",
                 "from": "Văn thư <vanthu.sxd@sxd.example.gov.vn>", "timeout_seconds": 30.0},
        "rules": {"dir": str(root / "rules")},
        "limits": {"replies_per_sender_per_day": 1000, "replies_per_domain_per_day": 100000},
    }, file="bench.toml", text="", base=work)
    engine = make_engine(cfg.storage.url)
    upgrade(engine)
    allowed = Allowed.of(rules_module.load(cfg.rules.dir), cfg)
    leaders = tuple(sorted(a for a in allowed.addresses if "giamdoc" in a or "cvp" in a)[:2])
    noise = random.Random(17)
    pdf = b"%PDF-1.4\n" + noise.randbytes(PDF_SIZE - 9)

    def mail(i: int) -> ParsedMail:
        sender = Address(f"Nguyễn Văn Toàn {i}", f"nguoi{i}@dan{i}.example.vn")
        attachment = Attachment(f"Quyết định {i}.pdf", "application/pdf", len(pdf),
                                f"{i:064x}", pdf, text="QUYẾT ĐỊNH")
        return ParsedMail(
            message_id=f"<m{i}@dan{i}.example.vn>", subject=f"Văn bản số {i}/QĐ-UBND",
            sender=sender, to=(Address("", cfg.smtp.from_address),), reply_to=(), date=WHEN,
            headers={}, body="Kính gửi Sở Xây dựng.\n" * 20, attachments=(attachment,),
            content_types=("multipart/mixed", "text/plain", "application/pdf"))

    def understood(i: int, kind: Kind) -> Understanding:
        document = Document(number=str(i), symbol="QĐ-UBND", issuer="UBND tỉnh Tây Ninh",
                            summary="Về việc cấp phép xây dựng", urgency="Khẩn")
        return Understanding(kind=kind, why="bench", case_ref=None,
                             document=document if kind is Kind.DOCUMENT else None,
                             applicant=Applicant(f"Bùi Văn Toàn {i}",
                                                 f"nguoi{i}@dan{i}.example.vn", "0912345678"),
                             authenticated=True)

    def context(i: int, kind: str) -> compose.Context:
        return compose.Context(
            sha256=f"{i:031x}{kind[0]}{0:032x}", received_at=WHEN, book="incoming", number=i,
            year=2026, case_code=f"000.00.22.H56-261123-{i:04d}" if kind == "receipt" else None,
            appointment=(WHEN + timedelta(days=10)).date() if kind == "receipt" else None)

    def forward(i: int) -> Any:
        return compose.forward(cfg, context(i, "forward"), Action("forward", leaders),
                               mail(i), understood(i, Kind.DOCUMENT))

    def acknowledge(i: int) -> Any:
        return compose.acknowledge(cfg, context(i, "ack"), Action("acknowledge", (
            mail(i).sender.email,)), mail(i), understood(i, Kind.DOCUMENT))

    def receipt(i: int) -> Any:
        return compose.acknowledge(cfg, context(i, "receipt"), Action("acknowledge", (
            mail(i).sender.email,)), mail(i), understood(i, Kind.DOSSIER))

    counts = {"forward": n, "acknowledge": n, "receipt": max(n // 4, 10)}
    makers = {"forward": forward, "acknowledge": acknowledge, "receipt": receipt}
    figures: dict[str, Any] = {"root": str(root), "n": counts}
    composed: dict[str, list[Any]] = {}
    for kind, make in makers.items():
        for warm in range(3):  # warm up: imports, templates, the cut faces (third slip)
            make(10_000 + warm)
        emails, wall, cpu = _timed(partial(lambda make, count: [make(i) for i in range(count)],
                                           make, counts[kind]))
        composed[kind] = emails
        figures[f"compose {kind}"] = (wall, cpu, counts[kind])

    def queue(kind: str) -> None:
        emails = composed[kind]
        for start in range(0, len(emails), BATCH):
            with engine.begin() as conn:
                for i in range(start, min(start + BATCH, len(emails))):
                    recipients = leaders if kind == "forward" else (mail(i).sender.email,)
                    purpose = Purpose.FORWARD if kind == "forward" else Purpose.ACKNOWLEDGE
                    answering = Answering.of_mail(mail(i), understood(i, Kind.DOCUMENT), WHEN)
                    enqueue(conn, cfg, email=emails[i], purpose=purpose,
                            recipients=recipients, allowed=allowed, answering=answering)

    for kind in makers:
        _, wall, cpu = _timed(partial(queue, kind))
        figures[f"enqueue {kind}"] = (wall, cpu, counts[kind])

    total = sum(counts.values())
    sender = Sender(engine, cfg.smtp)
    async def drain_all() -> int:
        sent = 0
        while sent < total and (got := await sender.drain()):  # 50 a drain, as the daemon
            sent += got
        return sent

    sent, wall, cpu = _timed(lambda: asyncio.run(drain_all()))
    assert sent == total, f"drained {sent} of {total}"
    figures["drain (SMTP)"] = (wall, cpu, total)
    engine.dispose()
    return figures


def _sink() -> tuple[subprocess.Popen[str], int]:
    """The SMTP sink in a process of its own; its port."""
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from tests.servers import SmtpSink; "
            "s = SmtpSink().start(); print(s.port, flush=True); sys.stdin.read(); s.stop()")
    proc = subprocess.Popen([PYTHON, "-c", code, str(ROOT)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    return proc, int(proc.stdout.readline())


def _run(root: Path, port: int, n: int) -> dict[str, Any]:
    out = subprocess.run([PYTHON, str(Path(__file__).resolve()), "--measure", str(root),
                          "--port", str(port), "--n", str(n)],
                         check=True, stdout=subprocess.PIPE, text=True, cwd=root)
    found: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return found


def _ms(figure: list[float]) -> tuple[float, float]:
    wall, cpu, count = figure
    return 1000 * wall / count, 1000 * cpu / count


def report(runs: dict[str, dict[str, Any]]) -> str:
    names = list(runs)
    lines = [f"{'ms per email (wall / CPU)':28}" + "".join(f"{name:>24}" for name in names)]
    for step in [k for k in runs[names[0]] if k not in ("root", "n")]:
        row = f"{step:28}"
        for name in names:
            wall, cpu = _ms(runs[name][step])
            row += f"{wall:>14.2f} / {cpu:7.2f}"
        if len(names) == 2:
            before, after = _ms(runs[names[0]][step])[1], _ms(runs[names[1]][step])[1]
            row += f"   CPU x{before / after:.2f}" if after else ""
        lines.append(row)
    counts = runs[names[0]]["n"]
    lines.append("emails: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=200, help="forwards and acknowledgements")
    parser.add_argument("--baseline", type=Path, help="a checkout to compare with")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.port, args.n)))
        return
    sink, port = _sink()
    try:
        runs = {}
        if args.baseline:
            runs["baseline"] = _run(args.baseline, port, args.n)
        runs["this checkout"] = _run(ROOT, port, args.n)
    finally:
        assert sink.stdin is not None
        sink.stdin.close()
        sink.wait(timeout=30)
    print(json.dumps(runs, indent=1) if args.json else report(runs))


if __name__ == "__main__":
    main()
