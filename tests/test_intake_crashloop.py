"""A crash loop makes progress (issue 12, item 6): the real daemon, started with 100 mails
waiting and killed with SIGKILL as soon as a mail is registered, registers something in each
life, because a life's first transaction takes one mail; a normal run then finishes them all
with the numbers 1..n, no gap and no double."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import Engine, func, select

from daemon.db import register_entries
from tests.conftest import ROOT, Office, wait_for

MAILS = 100
LIVES = 3

ISSUERS = [("snv.tayninh.gov.vn", "SỞ NỘI VỤ", "SNV"),
           ("stc.tayninh.gov.vn", "SỞ TÀI CHÍNH", "STC"),
           ("sgtvt.tayninh.gov.vn", "SỞ GIAO THÔNG VẬN TẢI", "SGTVT")]


def document(number: int, tag: str) -> bytes:
    """Official document `number`: its own number, so its own register entry."""
    domain, name, code = ISSUERS[number % len(ISSUERS)]
    auth = f"dkim=pass header.d={domain}; dmarc=pass header.from={domain}"
    text = f"""Authentication-Results: mx1.tayninh.gov.vn; {auth}
From: {name.title()} <vanthu@{domain}>
To: vanthu.sxd@tayninh.gov.vn
Subject: Thông báo {number}/TB-{code}
Message-ID: <{tag}-{number}@{domain}>
Date: Mon, 11 May 2026 14:20:00 +0700
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: 8bit

UBND TỈNH TÂY NINH
{name}
Số: {number}/TB-{code}
Tây Ninh, ngày 11 tháng 5 năm 2026
THÔNG BÁO
Về việc tập huấn nghiệp vụ văn thư đợt {number} ({tag})
Kính gửi: Sở Xây dựng tỉnh Tây Ninh.
Người ký: Trần Thị Ánh Nguyệt
"""
    return text.replace("\n", "\r\n").encode()


def registered(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.scalar(select(func.count()).select_from(register_entries)) or 0)


def first_commit(log_file: Path) -> int | None:
    """How many mails the first transaction of a life's pipeline took (from its JSON log)."""
    for line in log_file.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("event") == "pipeline.committed" and entry.get("mails"):
            return int(entry["mails"])
    return None


def test_each_short_life_registers_and_a_normal_run_finishes(office: Office) -> None:
    client = office.imap()
    client.multiappend("INBOX", [document(2000 + i, "loop") for i in range(MAILS)])
    client.logout()
    engine = office.engine()  # one engine for the whole test: polling must stay light
    before = 0
    for life in range(LIVES):
        log_file = office.dir / f"life{life}.log"
        born = time.monotonic()
        with open(log_file, "wb") as out:
            daemon = subprocess.Popen(
                [sys.executable, "-m", "daemon", "run", "--config", str(office.config_path)],
                cwd=ROOT, env={**os.environ}, stdout=out, stderr=out)
            try:
                # Registered, and the first commit logged (just after it): then killed.
                wait_for(lambda d=daemon, b=before, f=log_file: (  # type: ignore[misc]
                    registered(engine) > b and first_commit(f) is not None)
                    or d.poll() is not None, timeout=90)
            finally:
                daemon.send_signal(signal.SIGKILL)
                daemon.wait(30)
        assert daemon.returncode == -signal.SIGKILL, log_file.read_text()[-3000:]
        now = registered(engine)
        print(f"life {life}: {time.monotonic() - born:.1f} s, registered {now - before}, "
              f"first commit {first_commit(log_file)} mail(s)")
        assert now > before, f"life {life} registered nothing"
        # The group of a life's first commit is one mail, not the normal batch: a life that
        # ends at once still registers.
        assert first_commit(log_file) == 1
        assert now < MAILS
        before = now

    started = time.monotonic()
    office.run_daemon(until=lambda: registered(engine) == MAILS, timeout=120)
    print(f"normal run: {time.monotonic() - started:.1f} s to register the rest")

    with engine.connect() as conn:
        numbers = sorted(conn.scalars(select(register_entries.c.number)
                                      .where(register_entries.c.book == "incoming")))
    engine.dispose()
    assert numbers == list(range(1, MAILS + 1))
