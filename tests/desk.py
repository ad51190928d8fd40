"""A desk for tests: a real database (SQLite; PostgreSQL on the PostgreSQL run of a `db` test),
a mail store and the shipped rules, driven through `process_pending` exactly as the daemon
drives them, without IMAP or SMTP."""

from __future__ import annotations

from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path

from sqlalchemy import Engine, func, select

from daemon import config
from daemon.config import Config
from daemon.db import make_engine, messages, outbox, outbox_bodies, register_entries, upgrade
from daemon.intake.store import Fetched, MailStore, checkpoint, store_batch
from daemon.pipeline import process_pending
from daemon.routing import rules as rules_module
from daemon.routing.rules import RuleSet
from tests.conftest import AUTHSERV_ID, RULES
from tests.pg import database_url

FORM = b"%PDF-1.4\n% the province's blank application form, the same bytes for everyone\n" * 40


def mail(sender: str, subject: str, body: str, *, authenticated: bool = True,
         attachment: bytes | None = None, message_id: str | None = None,
         in_reply_to: str = "", headers: dict[str, str] | None = None) -> bytes:
    """A mail as the agency's receiving server hands it over, with its verdict on the sender;
    `in_reply_to` sets In-Reply-To and References, `headers` adds any others."""
    domain = sender.rpartition("@")[2]
    verdict = "pass" if authenticated else "fail"
    msg = EmailMessage(policy=SMTP)
    msg["Authentication-Results"] = (f"{AUTHSERV_ID}; dkim={verdict} header.d={domain}; "
                                     f"dmarc={verdict} header.from={domain}")
    msg["From"] = sender
    msg["To"] = "vanthu.sxd@tayninh.gov.vn"
    msg["Subject"] = subject
    msg["Date"] = "Tue, 10 Nov 2026 09:00:00 +0700"
    msg["Message-ID"] = message_id or f"<{abs(hash((sender, subject, body)))}@{domain}>"
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
        msg["References"] = in_reply_to
    for name, value in (headers or {}).items():
        msg[name] = value
    msg.set_content(body)
    if attachment is not None:
        msg.add_attachment(attachment, maintype="application", subtype="pdf",
                           filename="Mau don de nghi.pdf")
    return msg.as_bytes()


DOCUMENT = """ỦY BAN NHÂN DÂN
TỈNH TÂY NINH
Số: 1000/UBND-KT
V/v triển khai kế hoạch xây dựng nông thôn mới năm 2027
Tây Ninh, ngày 09 tháng 11 năm 2026

Kính gửi: Sở Xây dựng tỉnh Tây Ninh.
Ủy ban nhân dân tỉnh đề nghị Sở Xây dựng triển khai kế hoạch.
"""


class Desk:
    """A database, a mail store and the shipped rules, driven through `process_pending`."""

    def __init__(self, tmp_path: Path, rules_dir: Path = RULES) -> None:
        self.cfg: Config = config.parse(
            {"storage": {"data_dir": str(tmp_path), "database_url": database_url(tmp_path)},
             "rules": {"dir": str(rules_dir)},
             "security": {"authserv_id": AUTHSERV_ID}},
            file="t", text="", base=tmp_path)
        self.engine: Engine = make_engine(self.cfg.storage.url)
        upgrade(self.engine)
        self.store = MailStore(self.cfg.storage.data_dir)
        self.rules: RuleSet = rules_module.load(rules_dir)
        self.uid = 0
        checkpoint(self.engine, "m", "INBOX", 1)

    @property
    def storage_toml(self) -> str:
        """The [storage] table of a config file for commands run against this desk."""
        return (f'\n[storage]\ndata_dir = "{self.cfg.storage.data_dir}"\n'
                f'database_url = "{self.cfg.storage.url}"\n')

    def receive(self, *raws: bytes) -> None:
        batch = []
        for raw in raws:
            self.uid += 1
            batch.append(Fetched(self.uid, raw))
        store_batch(self.engine, self.store, mailbox="m", folder="INBOX", uidvalidity=1,
                    batch=batch)

    def process(self) -> None:
        process_pending(self.engine, self.cfg, self.store, self.rules)

    def rows(self) -> list[object]:
        with self.engine.connect() as conn:
            return list(conn.execute(select(messages).order_by(messages.c.id)).all())

    def entries(self) -> list[object]:
        with self.engine.connect() as conn:
            return list(conn.execute(select(register_entries)
                                     .order_by(register_entries.c.id)).all())

    def emails_for(self, pk: int) -> list[object]:
        with self.engine.connect() as conn:
            return list(conn.execute(
                select(outbox, func.coalesce(outbox_bodies.c.raw, b"").label("raw"))
                .join_from(outbox, outbox_bodies, isouter=True)
                .where(outbox.c.message_id == pk)).all())


