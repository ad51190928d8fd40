"""The real daemon under mail built to be slow to read: it keeps feeding the systemd watchdog
while it reads the hostile mails, and a normal official document delivered after them is
forwarded."""

from __future__ import annotations

import itertools
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from email import message_from_bytes, policy
from pathlib import Path

from daemon.db import messages
from tests.conftest import ROOT, Office, wait_for
from tests.desk import DOCUMENT, mail
from tests.hostile.bounded import ATTACKS

WATCHDOG_SECONDS = 2.0  # WATCHDOG_USEC as systemd would set it: the daemon pings every 1 s
PING = WATCHDOG_SECONDS / 2
MAX_GAP = 10 * PING
NORMAL_SUBJECT = "Công văn bình thường gửi sau các thư độc hại"


class NotifySocket:
    """A unix datagram socket standing in for systemd's: it records each message with the
    time it arrived."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.received: list[tuple[float, str]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._listen, daemon=True)
        self.thread.start()

    def _listen(self) -> None:
        while not self.stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            self.received.append((time.monotonic(), data.decode()))

    def pings(self) -> list[float]:
        return [at for at, text in list(self.received) if "WATCHDOG=1" in text]

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        self.sock.close()


def _folded_subject_10mb() -> bytes:
    """The measured case: a 10 MB folded Subject, read by the fetch thread for the row's
    display column (123 s before)."""
    raw = mail("vanthu@ubnd.tayninh.gov.vn", "Công văn", DOCUMENT)
    head, _, rest = raw.partition(b"Subject: ")
    return head + b"Subject: x\r\n" + b" =?utf-8?q?a?=\r\n" * 650_000 + b"X-Was: " + rest


def _forwarded(office: Office) -> bool:
    for item in office.smtp.messages():
        subject = str(message_from_bytes(item.data, policy=policy.default)["Subject"] or "")
        if NORMAL_SUBJECT in subject:
            return True
    return False


def test_the_watchdog_is_fed_while_hostile_mail_is_read(office: Office, tmp_path: Path) -> None:
    """Each hostile mail of tests/hostile/bounded.py and a 10 MB folded Subject, then a normal
    document: the document is forwarded, and WATCHDOG=1 kept arriving all the while.

    The bound on the gap between two pings is ten ping intervals (10 s). What it catches is
    a blocked event loop: the bug it guards against held the interpreter in one regex for
    85 s (a quadratic pattern on a header, in the main process), and any such work at these
    sizes runs for minutes, so it breaks the bound by far on any machine. What it tolerates is
    a slow machine: the loop only wakes, pings and sleeps, so even on two cores shared by
    several test runs a 1 s timer is late by a second or two, not ten. Between the two the
    margin is wide on both sides, so the verdict does not depend on the machine's speed.
    (systemd itself would allow 60 s: WatchdogSec in systemd/vanthu.service.)
    """
    hostile = [attack.build() for attack in ATTACKS] + [_folded_subject_10mb()]
    # Its own number: the same number as a hostile document would make it a duplicate.
    normal = mail("vanthu@ubnd.tayninh.gov.vn", NORMAL_SUBJECT,
                  DOCUMENT.replace("1000/UBND-KT", "2001/UBND-VP"),
                  message_id="<binh-thuong@ubnd.tayninh.gov.vn>")
    office.deliver(*hostile, normal)
    notify = NotifySocket(tmp_path / "notify.sock")
    process = subprocess.Popen(
        [sys.executable, "-m", "daemon", "run", "--config", str(office.config_path)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "NOTIFY_SOCKET": str(notify.path),
             "WATCHDOG_USEC": str(int(WATCHDOG_SECONDS * 1_000_000))})
    failure: AssertionError | None = None
    try:
        wait_for(lambda: office.count(messages) > 0, timeout=120)
        stored_at = time.monotonic()
        wait_for(lambda: _forwarded(office), timeout=600)
        forwarded_at = time.monotonic()
        wait_for(lambda: office.settled(len(hostile) + 1), timeout=300)
    except AssertionError as err:
        failure = err
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
        notify.close()
    assert failure is None, f"{failure}; the daemon said: {output[-4000:]}"

    assert process.returncode == 0, output[-3000:]
    assert any("READY=1" in text for _, text in notify.received)
    pings = notify.pings()
    before = [at for at in pings if at <= stored_at]
    during = [at for at in pings if stored_at < at <= forwarded_at]
    assert before, "no watchdog ping before the first mail was stored"
    times = [before[-1], *during, forwarded_at]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert max(gaps) < MAX_GAP, f"the event loop stalled {max(gaps):.1f} s"
    engine = office.engine()
    with engine.connect() as conn:
        states = {str(row.state) for row in conn.execute(messages.select())}
    engine.dispose()
    assert states <= {"routed", "done", "quarantined"}, states
