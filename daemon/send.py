"""Drain the outbox over SMTP. A row is marked sent only after the server's 250.

A crash between the 250 and the commit sends that one message again on restart: SMTP cannot
be exactly-once, and the stable Message-ID lets receivers drop the copy. 4xx and connection
failures are retried with exponential backoff; 5xx marks the row failed for a human.
"""

from __future__ import annotations

import logging
import ssl
from datetime import timedelta
from typing import Any

import aiosmtplib
from sqlalchemy import Engine, func, select, update

from daemon import faults
from daemon.config import SmtpConfig
from daemon.db import messages, outbox, reading, utcnow
from daemon.errors import SendDeferred, SendRejected
from daemon.models import OutboxState, State

log = logging.getLogger("vanthu.send")


def tls_context(ca_file: str | None, verify: bool) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=ca_file)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def backoff(attempts: int) -> timedelta:
    """1, 2, 4 … minutes, at most 6 hours between tries."""
    return timedelta(minutes=min(2 ** max(attempts - 1, 0), 360))


class Sender:
    """Sends pending outbox rows with one SMTP connection per drain."""

    def __init__(self, engine: Engine, cfg: SmtpConfig) -> None:
        self.engine = engine
        self.cfg = cfg

    def _client(self) -> aiosmtplib.SMTP:
        context = tls_context(self.cfg.ca_file, self.cfg.tls_verify)
        return aiosmtplib.SMTP(
            hostname=self.cfg.host, port=self.cfg.port, timeout=self.cfg.timeout_seconds,
            use_tls=self.cfg.security == "tls",
            # Explicit: never "STARTTLS if offered", which an attacker can strip.
            start_tls=self.cfg.security == "starttls",
            tls_context=context, local_hostname="vanthu.localdomain",
        )

    def _due(self, limit: int, only: str | None = None) -> list[Any]:
        query = (select(outbox.c.id, outbox.c.recipients, outbox.c.raw, outbox.c.attempts,
                        outbox.c.message_id, outbox.c.header_message_id)
                 .where(outbox.c.state == OutboxState.PENDING,
                        outbox.c.next_attempt_at <= utcnow())
                 .order_by(outbox.c.id).limit(limit))
        if only is not None:
            query = query.where(outbox.c.header_message_id == only)
        with reading(self.engine) as conn:
            rows = conn.execute(query).all()
            conn.rollback()
        return list(rows)

    def _finish(self, row: Any, state: OutboxState, error: str | None = None) -> None:
        now = utcnow()
        values: dict[str, Any] = {"state": state, "last_error": error}
        if state is OutboxState.SENT:
            values["sent_at"] = now
        elif state is OutboxState.PENDING:
            values["attempts"] = row.attempts + 1
            values["next_attempt_at"] = now + backoff(row.attempts + 1)
        else:
            values["attempts"] = row.attempts + 1
        with self.engine.begin() as conn:
            conn.execute(update(outbox).where(outbox.c.id == row.id).values(**values))
            if state is not OutboxState.PENDING and row.message_id is not None:
                left = conn.scalar(select(func.count()).select_from(outbox).where(
                    outbox.c.message_id == row.message_id,
                    outbox.c.state == OutboxState.PENDING))
                if not left:
                    conn.execute(update(messages).where(
                        messages.c.id == row.message_id, messages.c.state == State.ROUTED,
                    ).values(state=State.DONE, updated_at=now))

    async def _send_one(self, client: aiosmtplib.SMTP, row: Any) -> None:
        sender = self.cfg.from_address
        try:
            errors, _ = await client.sendmail(sender, list(row.recipients), row.raw)
        except aiosmtplib.SMTPRecipientsRefused as err:
            codes = [r.code for r in err.recipients]
            message = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in err.recipients)
            if all(code >= 500 for code in codes):
                raise SendRejected(message) from err
            raise SendDeferred(message) from err
        except aiosmtplib.SMTPResponseException as err:
            if err.code >= 500:
                raise SendRejected(f"{err.code} {err.message}") from err
            raise SendDeferred(f"{err.code} {err.message}") from err
        if errors:  # some recipients refused, the others accepted: report, do not resend
            log.warning("outbox.partly_refused", extra={"outbox": row.id,
                                                        "refused": sorted(errors)})

    async def drain(self, limit: int = 50, only: str | None = None) -> int:
        """Send what is due (or only the row with Message-ID `only`); return how many."""
        sent = 0
        rows = self._due(limit, only)
        if not rows:
            return 0
        client = self._client()
        try:
            await client.connect()
            if self.cfg.username and self.cfg.password:
                await client.login(self.cfg.username, self.cfg.password.reveal())
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as err:
            log.warning("outbox.deferred", extra={"error": f"connect: {err}", "rows": len(rows)})
            for row in rows:
                self._finish(row, OutboxState.PENDING, f"connect: {err}")
            return 0
        try:
            for row in rows:
                faults.crashpoint("before_send")
                try:
                    await self._send_one(client, row)
                except SendRejected as err:
                    log.error("outbox.failed", extra={"outbox": row.id, "error": str(err)})
                    self._finish(row, OutboxState.FAILED, str(err))
                    continue
                except (SendDeferred, aiosmtplib.SMTPException, OSError, TimeoutError) as err:
                    log.warning("outbox.deferred", extra={"outbox": row.id, "error": str(err)})
                    self._finish(row, OutboxState.PENDING, str(err))
                    if not client.is_connected:
                        break
                    continue
                faults.crashpoint("after_send")
                self._finish(row, OutboxState.SENT)
                sent += 1
                log.info("outbox.sent", extra={"outbox": row.id,
                                               "message_id": row.header_message_id})
        finally:
            if client.is_connected:
                try:
                    await client.quit()
                except (aiosmtplib.SMTPException, OSError, TimeoutError):
                    client.close()
        return sent
