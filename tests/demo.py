"""`vanthu demo`: a throwaway Dovecot and SMTP server on loopback, sample mail delivered to the
agency mailbox, the real daemon run until the mail is handled, and a report of what happened.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path

from imapclient import IMAPClient
from sqlalchemy import func, select

from daemon import config, log
from daemon.db import outbox, reading
from daemon.models import OutboxState
from daemon.pipeline import backlog
from daemon.routing import rules as rules_module
from tests.servers import Dovecot, SmtpSink, dovecot_available, local_config

SAMPLES = Path(__file__).resolve().parent.parent / "daemon" / "samples"
RULES = Path(__file__).resolve().parent.parent / "rules"


def run_demo(directory: Path | None, mails: list[str] | None) -> int:
    if not dovecot_available():
        print("vanthu demo needs Dovecot: apt-get install -y dovecot-imapd", file=sys.stderr)
        return 1
    if not RULES.is_dir():
        print(f"rules folder not found at {RULES}", file=sys.stderr)
        return 1
    directory = directory or Path(tempfile.mkdtemp(prefix="vanthu-demo-"))
    directory.mkdir(parents=True, exist_ok=True)
    files = [Path(m) for m in mails] if mails else sorted(SAMPLES.glob("*.eml"))
    log.setup("INFO", json_output=False)
    with Dovecot() as dovecot:
        sink = SmtpSink(save_dir=directory / "sent").start()
        try:
            path = directory / "config.toml"
            path.write_text(local_config(directory, dovecot, sink, user="vanthu",
                                         password="secret", rules_dir=RULES.resolve(),
                                         mailbox="vanthu",
                                         extra='[intake]\nstart = "all"\n'),
                            encoding="utf-8")
            cfg = config.load(path)
            ruleset = rules_module.load(cfg.rules.dir)
            client = IMAPClient("127.0.0.1", port=dovecot.imap_port, ssl=False)
            client.login("vanthu", "secret")
            for file in files:
                client.append("INBOX", file.read_bytes())
            client.logout()
            print(f"\n== {len(files)} mails delivered to the agency mailbox (Dovecot, "
                  f"127.0.0.1:{dovecot.imaps_port}); starting the daemon\n")
            from daemon.service import Daemon

            daemon = Daemon(cfg, ruleset)
            deadline = time.monotonic() + 120

            def finished() -> bool:
                total, busy = backlog(daemon.engine)
                with reading(daemon.engine) as conn:
                    pending = conn.scalar(select(func.count()).select_from(outbox).where(
                        outbox.c.state == OutboxState.PENDING))
                return (total == len(files) and not busy and not pending) \
                    or time.monotonic() > deadline

            asyncio.run(daemon.run(until=finished))
        finally:
            sink.stop()
    from daemon.cli import main

    print("\n== The incoming register\n")
    main(["register", "list", "--config", str(path)])
    print("\n== Held for a human (quarantine)\n")
    main(["quarantine", "list", "--config", str(path)])
    print(f"\n== {len(sink.received)} emails sent by vanthu (saved in {directory / 'sent'})\n")
    for item in sink.received:
        message = item.message
        print(f"  {message['X-Vanthu-Action']:12} → {', '.join(item.rcpt_tos)[:60]:60} "
              f"{str(message['Subject'])[:70]}")
    print(f"\nData, config and logs of this demo: {directory}")
    return 0
