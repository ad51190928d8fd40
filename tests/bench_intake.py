"""Benchmark: intake throughput and IDLE latency on real servers (prints figures, asserts none).

    uv run python tests/bench_intake.py [--mails 1000] [--corpus DIR]

1. baseline: a plain loop of batched FETCH BODY.PEEK[] + mail-parser + pypdf text, the ceiling
   for any intake on this machine;
2. vanthu's whole intake: the daemon from start until every mail is stored, understood,
   registered and routed (outbox rows written), and until the outbox is drained over SMTP;
3. IDLE latency: with the daemon waiting, APPEND one document and time until its forward
   reaches the SMTP server.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import re
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import mailparser
import pypdf
from imapclient import IMAPClient
from sqlalchemy import func, select

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from daemon import config, log  # noqa: E402
from daemon.db import messages, outbox  # noqa: E402
from daemon.models import State  # noqa: E402
from daemon.routing import rules as rules_module  # noqa: E402
from daemon.service import Daemon  # noqa: E402
from tests.conftest import write_config  # noqa: E402
from tests.servers import Dovecot, SmtpSink  # noqa: E402


def corpus_mails(folder: Path, count: int) -> list[bytes]:
    """`count` distinct mails made from the corpus (a new Message-ID on each copy)."""
    originals = [p.read_bytes() for p in sorted(folder.glob("*.eml"))]
    out = []
    for i in range(count):
        raw = originals[i % len(originals)]
        raw = re.sub(rb"(?im)^Message-ID:[^\r\n]*(\r?\n[ \t][^\r\n]*)*",
                     f"Message-ID: <bench-{i}@bench.invalid>".encode(), raw, count=1)
        if b"bench-" not in raw[:20000]:
            raw = f"Message-ID: <bench-{i}@bench.invalid>\r\n".encode() + raw
        out.append(raw)
    return out


def fresh_document(number: int) -> bytes:
    """A new official document (a number never seen before), as an agency would send it."""
    return f"""Authentication-Results: mx1.tayninh.gov.vn; dkim=pass header.d=snv.tayninh.gov.vn
From: So Noi vu <vanthu@snv.tayninh.gov.vn>
To: vanthu.sxd@tayninh.gov.vn
Subject: Thong bao {number}/TB-SNV
Message-ID: <idle-{number}@snv.tayninh.gov.vn>
Date: Mon, 11 May 2026 14:20:00 +0700
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: 8bit

UBND TỈNH TÂY NINH
SỞ NỘI VỤ
Số: {number}/TB-SNV
Tây Ninh, ngày 11 tháng 5 năm 2026
THÔNG BÁO
Về việc tập huấn số {number}
Nội dung tập huấn.
""".replace("\n", "\r\n").encode()


def append_all(server: Dovecot, user: str, password: str, mails: list[bytes]) -> None:
    client = IMAPClient("127.0.0.1", port=server.imap_port, ssl=False)
    client.login(user, password)
    for start in range(0, len(mails), 100):
        client.multiappend("INBOX", mails[start:start + 100])
    client.logout()


def baseline(server: Dovecot, user: str, password: str) -> tuple[int, float]:
    client = IMAPClient("127.0.0.1", port=server.imap_port, ssl=False)
    client.login(user, password)
    client.select_folder("INBOX", readonly=True)
    uids = client.search(["ALL"])
    started = time.perf_counter()
    for start in range(0, len(uids), 100):
        for data in client.fetch(uids[start:start + 100], ["BODY.PEEK[]"]).values():
            mail = mailparser.parse_from_bytes(data[b"BODY[]"])
            for part in mail.attachments:
                if part["mail_content_type"] == "application/pdf":
                    try:
                        reader = pypdf.PdfReader(io.BytesIO(base64.b64decode(part["payload"])))
                        reader.pages[0].extract_text()
                    except Exception:  # bench: hostile PDFs are skipped, as any loop would
                        pass
    elapsed = time.perf_counter() - started
    client.logout()
    return len(uids), elapsed


def counts(daemon: Daemon) -> tuple[int, int, int]:
    with daemon.engine.connect() as conn:
        total = conn.scalar(select(func.count()).select_from(messages)) or 0
        waiting = conn.scalar(select(func.count()).select_from(messages).where(
            messages.c.state == State.STORED)) or 0
        pending = conn.scalar(select(func.count()).select_from(outbox).where(
            outbox.c.state == "pending")) or 0
    return total, waiting, pending


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mails", type=int, default=1000)
    parser.add_argument("--corpus", type=Path, default=ROOT.parent / "shared" / "corpus")
    parser.add_argument("--latency-samples", type=int, default=10)
    args = parser.parse_args()
    log.setup("WARNING", json_output=False)
    mails = corpus_mails(args.corpus, args.mails)
    size = sum(len(m) for m in mails)
    users = {"base": "pw", "intake": "pw", "idle": "pw"}
    with Dovecot(users) as server:
        sink = SmtpSink().start()
        work = Path(tempfile.mkdtemp(prefix="vanthu-bench-"))
        print(f"{len(mails)} mails, {size / 1e6:.1f} MB, from {args.corpus}")

        append_all(server, "base", "pw", mails)
        n, elapsed = baseline(server, "base", "pw")
        print(f"baseline  FETCH+mail-parser+pypdf loop: {n / elapsed:7.0f} mails/s "
              f"({elapsed:.2f} s)")

        append_all(server, "intake", "pw", mails)
        (work / "intake").mkdir()
        cfg = config.load(write_config(work / "intake", server, sink, "intake", "pw"))
        daemon = Daemon(cfg, rules_module.load(cfg.rules.dir))
        marks: dict[str, float] = {}
        started = time.perf_counter()

        def until() -> bool:
            total, waiting, pending = counts(daemon)
            now = time.perf_counter() - started
            if total == len(mails) and "stored" not in marks:
                marks["stored"] = now
            if total == len(mails) and not waiting and "routed" not in marks:
                marks["routed"] = now
            if total == len(mails) and not waiting and not pending:
                marks["sent"] = now
                return True
            return now > 600

        asyncio.run(daemon.run(until=until, signals=False))
        sent = len(sink.received)
        print(f"vanthu    stored (fetch+fsync+commit):  {len(mails) / marks['stored']:7.0f} "
              f"mails/s ({marks['stored']:.2f} s)")
        print(f"vanthu    whole intake to routed:       {len(mails) / marks['routed']:7.0f} "
              f"mails/s ({marks['routed']:.2f} s)")
        print(f"vanthu    ... and outbox drained:       {len(mails) / marks['sent']:7.0f} "
              f"mails/s ({marks['sent']:.2f} s, {sent} emails sent)")

        (work / "idle").mkdir()
        cfg = config.load(write_config(work / "idle", server, sink, "idle", "pw"))
        daemon = Daemon(cfg, rules_module.load(cfg.rules.dir))
        stop = threading.Event()
        thread = threading.Thread(target=asyncio.run, args=(daemon.run(
            until=stop.is_set, signals=False),), daemon=True)
        thread.start()
        time.sleep(2)
        latencies = []
        for i in range(args.latency_samples):
            before = len(sink.received)
            raw = fresh_document(500 + i)
            client = IMAPClient("127.0.0.1", port=server.imap_port, ssl=False)
            client.login("idle", "pw")
            t0 = time.perf_counter()
            client.append("INBOX", raw)
            while not any(b"X-Vanthu-Action: forward" in m.data
                          for m in sink.messages()[before:]):
                if time.perf_counter() - t0 > 30:
                    break
                time.sleep(0.005)
            latencies.append(time.perf_counter() - t0)
            client.logout()
            time.sleep(0.3)
        stop.set()
        thread.join(30)
        sink.stop()
        print(f"IDLE      APPEND → forward at SMTP:     median {statistics.median(latencies):.2f}"
              f" s, max {max(latencies):.2f} s over {len(latencies)} mails")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
