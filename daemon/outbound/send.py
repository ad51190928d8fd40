"""Drain the outbox over SMTP. A row is marked sent only after the server's 250.

A crash between the 250 and the commit sends that one message again on restart: SMTP cannot
be exactly-once, and the stable Message-ID lets receivers drop the copy. Whatever goes wrong
while sending one row is that row's failure, recorded on it, never the drain's: 4xx and
dropped connections are retried with exponential backoff up to `[smtp] max_attempts`, then
the row fails for a human; a 5xx or an address that can never be sent fails it at once.
A recipient refused for good is recorded on the row, and a retry goes only to the others.
`_open` and `_transmit` are the boundary of the SMTP server: what aiosmtplib, the socket and
TLS raise leaves them as SendDeferred, SendRejected or EmailRefused.
"""

from __future__ import annotations

import logging
import ssl
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import aiosmtplib
from sqlalchemy import Engine, func, select, update

from daemon.config import SmtpConfig
from daemon.db import database_errors, messages, outbox, reading, utcnow
from daemon.errors import EmailRefused, SendDeferred, SendRejected
from daemon.models import OutboxState, State
from daemon.outbound.recipients import mailbox_problem

log = logging.getLogger("vanthu.send")

# The connection is gone: the rest of this drain waits for the next one.
_CONNECTION_LOST = (aiosmtplib.SMTPServerDisconnected, ConnectionError, OSError, TimeoutError)
# Why a recipient did not get a message: refused for good (5xx) or for now.
Refusal = SendRejected | SendDeferred


def tls_context(ca_file: str | None, verify: bool) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=ca_file)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _reply(code: int, message: str) -> Refusal:
    """A server's refusal: for good on a 5xx, for now otherwise."""
    return (SendRejected if code >= 500 else SendDeferred)(f"{code} {message}")


async def _reset(client: aiosmtplib.SMTP) -> None:
    """Clear a half-sent envelope (MAIL FROM given, then an error of ours); close a connection
    that cannot even do that, so that the drain ends."""
    if not client.is_connected:
        return
    try:
        await client.rset()
    except (aiosmtplib.SMTPException, OSError, TimeoutError):
        client.close()


async def _transmit(client: aiosmtplib.SMTP, sender: str, targets: list[str],
                    raw: bytes) -> dict[str, Refusal]:
    """Send one message on an open connection; return the recipients it did not reach, each
    with why (all of them: nobody got it). Raises SendRejected (a 5xx to MAIL FROM or DATA),
    SendDeferred (a 4xx there, a dropped connection, any other SMTP trouble) or EmailRefused
    (aiosmtplib will not send an address or the bytes). Afterwards the connection is either
    clean for the next message or closed."""
    try:
        errors, _ = await client.sendmail(sender, targets, raw)
    except aiosmtplib.SMTPRecipientsRefused as err:
        return {r.recipient: _reply(r.code, r.message) for r in err.recipients}
    except aiosmtplib.SMTPResponseException as err:  # MAIL FROM or DATA refused
        raise _reply(err.code, err.message) from err
    except (ValueError, UnicodeError) as err:
        # aiosmtplib's own check of an address or the bytes: trying again cannot help.
        await _reset(client)
        raise EmailRefused(f"cannot be sent: {type(err).__name__}: {err}") from err
    except _CONNECTION_LOST as err:
        client.close()
        raise SendDeferred(f"connection lost: {type(err).__name__}: {err}") from err
    except aiosmtplib.SMTPException as err:
        await _reset(client)
        raise SendDeferred(f"{type(err).__name__}: {err}") from err
    return {address: _reply(r.code, r.message) for address, r in errors.items()}


def backoff(attempts: int) -> timedelta:
    """1, 2, 4 … minutes, at most 6 hours between tries."""
    return timedelta(minutes=min(2 ** max(attempts - 1, 0), 360))


@dataclass
class Attempt:
    """What one try at a row did: who got it, who was refused for good, what went wrong."""

    delivered: list[str] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)
    error: str | None = None  # the reason the others were not sent this time
    permanent: bool = False  # the row can never be sent: fail it now
    connection_lost: bool = False


class Sender:
    """Sends pending outbox rows with one SMTP connection per drain."""

    def __init__(self, engine: Engine, cfg: SmtpConfig) -> None:
        self.engine = engine
        self.cfg = cfg

    async def _open(self) -> aiosmtplib.SMTP:
        """A connected (and logged-in) client; SendDeferred when there is none to be had."""
        client: aiosmtplib.SMTP | None = None
        try:
            context = tls_context(self.cfg.ca_file, self.cfg.tls_verify)
            client = aiosmtplib.SMTP(
                hostname=self.cfg.host, port=self.cfg.port, timeout=self.cfg.timeout_seconds,
                use_tls=self.cfg.security == "tls",
                # Explicit: never "STARTTLS if offered", which an attacker can strip.
                start_tls=self.cfg.security == "starttls",
                tls_context=context, local_hostname="vanthu.localdomain",
            )
            await client.connect()
            if self.cfg.username and self.cfg.password:
                await client.login(self.cfg.username, self.cfg.password.reveal())
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as err:
            if client is not None:
                client.close()
            raise SendDeferred(f"connect: {err}") from err
        return client

    def _due(self, limit: int, only: str | None = None) -> list[Any]:
        query = (select(outbox.c.id, outbox.c.recipients, outbox.c.raw, outbox.c.attempts,
                        outbox.c.message_id, outbox.c.header_message_id, outbox.c.delivered,
                        outbox.c.refused)
                 .where(outbox.c.state == OutboxState.PENDING,
                        outbox.c.next_attempt_at <= utcnow())
                 .order_by(outbox.c.id).limit(limit))
        if only is not None:
            query = query.where(outbox.c.header_message_id == only)
        with reading(self.engine) as conn:
            rows = conn.execute(query).all()
            conn.rollback()
        return list(rows)

    def _record(self, row: Any, attempt: Attempt) -> OutboxState:
        """Write what the attempt did on the row; return the row's new state."""
        now = utcnow()
        delivered = [*(row.delivered or []), *attempt.delivered]
        refused = {**(row.refused or {}), **attempt.refused}
        left = [r for r in _targets(row) if r not in delivered and r not in refused]
        attempts = row.attempts + 1
        values: dict[str, Any] = {"attempts": attempts, "delivered": delivered or None,
                                  "refused": refused or None, "last_error": attempt.error}
        if left and not attempt.permanent and attempts < self.cfg.max_attempts:
            state = OutboxState.PENDING
            values["next_attempt_at"] = now + backoff(attempts)
            log.warning("outbox.deferred", extra={"outbox": row.id, "error": attempt.error,
                                                  "attempts": attempts})
        else:
            if left:  # given up: the others got it, these never will
                why = attempt.error if attempt.permanent else (
                    f"gave up after {attempts} attempts: {attempt.error}")
                values["last_error"] = why
                if delivered:
                    refused |= dict.fromkeys(left, why)
                    values["refused"] = refused
            state = OutboxState.SENT if delivered else OutboxState.FAILED
            if state is OutboxState.SENT:
                values["sent_at"] = now
                if refused:
                    values["last_error"] = "; ".join(f"{a}: {w}" for a, w in refused.items())
                    log.warning("outbox.partly_refused", extra={
                        "outbox": row.id, "refused": sorted(refused)})
            else:
                values["last_error"] = values["last_error"] or "; ".join(
                    f"{a}: {w}" for a, w in refused.items())
                log.error("outbox.failed", extra={"outbox": row.id,
                                                  "error": values["last_error"]})
        values["state"] = state
        with self.engine.begin() as conn:
            conn.execute(update(outbox).where(outbox.c.id == row.id).values(**values))
            if state is not OutboxState.PENDING and row.message_id is not None:
                pending = conn.scalar(select(func.count()).select_from(outbox).where(
                    outbox.c.message_id == row.message_id,
                    outbox.c.state == OutboxState.PENDING))
                if not pending:
                    conn.execute(update(messages).where(
                        messages.c.id == row.message_id, messages.c.state == State.ROUTED,
                    ).values(state=State.DONE, updated_at=now))
        return state

    async def _attempt(self, client: aiosmtplib.SMTP, row: Any) -> Attempt:
        """Try one row on an open connection. Never raises: every outcome is an Attempt."""
        attempt = Attempt()
        done = {*(row.delivered or []), *(row.refused or {})}
        targets = [r for r in _targets(row) if r not in done]
        for address in list(targets):  # an old row may hold what enqueue now refuses
            if problem := mailbox_problem(address):
                attempt.refused[address] = f"cannot be sent: {problem}"
                targets.remove(address)
        if not targets:
            attempt.permanent = True
            attempt.error = "; ".join(f"{a}: {why}" for a, why in attempt.refused.items()) \
                or None
            return attempt
        try:
            refusals = await _transmit(client, self.cfg.from_address, targets, row.raw)
        except (SendRejected, EmailRefused) as err:
            attempt.error, attempt.permanent = str(err), True
            attempt.connection_lost = not client.is_connected
            return attempt
        except SendDeferred as err:
            attempt.error = str(err)
            attempt.connection_lost = not client.is_connected
            return attempt
        except Exception as err:  # bulkhead: any other failure is this row's, recorded on it
            log.exception("outbox.send_error", extra={"outbox": row.id})
            attempt.error = f"{type(err).__name__}: {err}"
            await _reset(client)
            attempt.connection_lost = not client.is_connected
            return attempt
        attempt.delivered = [t for t in targets if t not in refusals]
        for address, why in refusals.items():
            if isinstance(why, SendRejected):
                attempt.refused[address] = str(why)
        if not attempt.delivered:  # the server took nobody: every refusal is the reason
            attempt.error = "; ".join(f"{a}: {why}" for a, why in refusals.items())
            return attempt
        for address, why in refusals.items():
            if isinstance(why, SendDeferred):
                attempt.error = f"{address}: {why}"
        return attempt

    async def drain(self, limit: int = 50, only: str | None = None) -> int:
        """Send what is due (or only the row with Message-ID `only`); return how many rows
        were sent (to at least one recipient). Raises DatabaseError when the outbox cannot be
        read or written: an email sent but not yet marked goes again (same Message-ID)."""
        with database_errors("outbox"):
            return await self._drain(limit, only)

    async def _drain(self, limit: int, only: str | None) -> int:
        rows = self._due(limit, only)
        if not rows:
            return 0
        try:
            client = await self._open()
        except SendDeferred as err:
            # Not the rows' fault: they keep their attempts, and wait like a first retry.
            log.warning("outbox.deferred", extra={"error": str(err), "rows": len(rows)})
            with self.engine.begin() as conn:
                conn.execute(update(outbox).where(outbox.c.id.in_([r.id for r in rows]))
                             .values(last_error=str(err),
                                     next_attempt_at=utcnow() + backoff(1)))
            return 0
        sent = 0
        try:
            for row in rows:
                attempt = await self._attempt(client, row)
                if self._record(row, attempt) is OutboxState.SENT:
                    sent += 1
                    log.info("outbox.sent", extra={"outbox": row.id,
                                                   "message_id": row.header_message_id})
                if attempt.connection_lost or not client.is_connected:
                    break
        finally:
            if client.is_connected:
                try:
                    await client.quit()
                except (aiosmtplib.SMTPException, OSError, TimeoutError):
                    client.close()
        return sent


def _targets(row: Any) -> list[str]:
    """The row's recipients as strings, whatever an old or hand-made row holds."""
    recipients = row.recipients
    return [str(r) for r in (recipients if isinstance(recipients, list) else [recipients])]

