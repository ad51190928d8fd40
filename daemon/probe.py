"""`vanthu check --connect`: log in to every mailbox and to the SMTP server as the daemon would,
and say what each server offers (IDLE, MOVE, the SASL mechanisms) and what vanthu will use.
A failure is named by its kind (login refused, TLS, timeout, no connection, no token) so the
admin knows where to look. Nothing is read, moved or sent.
"""

from __future__ import annotations

import asyncio
import dataclasses
import imaplib
import socket
import ssl
from dataclasses import dataclass, field
from typing import Any

import aiosmtplib

from daemon import oauth
from daemon.config import Config, MailboxConfig, SmtpConfig
from daemon.errors import MailboxAuthError, SendDeferred, VanthuError
from daemon.intake import fetch
from daemon.outbound.send import smtp_client, smtp_open

PROBE_SECONDS = 20.0  # at most this long for each socket operation of a probe

# What a failure was, by kind, in the words printed to the admin.
KINDS = {
    "login_refused": "máy chủ từ chối đăng nhập",
    "token": "không lấy được token OAuth2",
    "tls": "lỗi TLS (chứng chỉ hoặc bắt tay mã hóa)",
    "timeout": "quá thời gian chờ máy chủ trả lời",
    "unreachable": "không kết nối được tới máy chủ",
    "error": "lỗi",
}


@dataclass
class Probe:
    """One server as seen from here."""

    name: str
    kind: str  # imap | smtp
    host: str
    port: int
    security: str
    auth: str
    ok: bool = False
    error_kind: str | None = None
    error: str | None = None
    idle: bool | None = None
    move: bool | None = None
    mechanisms: list[str] = field(default_factory=list)
    uses: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _kind(err: BaseException) -> str:
    """The kind of a failure, from the error and the errors that caused it."""
    found = "error"
    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, oauth.TokenError):
            return "token" if seen.refused else _kind_of_text(str(seen), "unreachable")
        if isinstance(seen, MailboxAuthError | aiosmtplib.SMTPAuthenticationError):
            found = "login_refused"
        elif isinstance(seen, ssl.SSLError | ssl.CertificateError):
            return "tls"
        elif isinstance(seen, TimeoutError | aiosmtplib.SMTPTimeoutError):
            return "timeout"
        elif isinstance(seen, ConnectionError | socket.gaierror | aiosmtplib.SMTPConnectError):
            found = _kind_of_text(str(seen), "unreachable")
        seen = seen.__cause__ or seen.__context__
    return found


def _kind_of_text(text: str, default: str) -> str:
    """TLS and timeouts that a library reported as text only."""
    if "CERTIFICATE_VERIFY_FAILED" in text or "SSL" in text:
        return "tls"
    return "timeout" if "timed out" in text.lower() else default


def _failed(probe: Probe, err: BaseException) -> Probe:
    probe.ok, probe.error_kind, probe.error = False, _kind(err), str(err) or type(err).__name__
    return probe


def probe_mailbox(cfg: MailboxConfig) -> Probe:
    cfg = dataclasses.replace(cfg, timeout_seconds=min(cfg.timeout_seconds, PROBE_SECONDS))
    probe = Probe(cfg.name, "imap", cfg.host, cfg.port, cfg.security, cfg.auth)
    try:
        client = fetch.open_client(cfg)
        before = {c.decode().upper() for c in client.capabilities()}
    except (VanthuError, OSError, imaplib.IMAP4.error) as err:
        return _failed(probe, err)
    probe.mechanisms = sorted(c[5:] for c in before if c.startswith("AUTH="))
    try:
        mechanism = fetch.login(client, cfg)
    except VanthuError as err:
        return _failed(probe, err)
    try:
        after = {c.decode().upper() for c in client.capabilities()}
        client.logout()
    except (OSError, imaplib.IMAP4.error) as err:
        return _failed(probe, err)
    probe.ok, probe.idle, probe.move = True, "IDLE" in after, "MOVE" in after
    probe.uses = {
        "login": mechanism,
        "wait": "idle" if cfg.idle and probe.idle else "poll",
        "poll_seconds": cfg.poll_seconds,
        "after": cfg.after if not cfg.after.startswith("move:") or probe.move
        else f"{cfg.after} (COPY + EXPUNGE)",
        "folders": list(cfg.folders),
    }
    return probe


async def _smtp(cfg: SmtpConfig, probe: Probe) -> Probe:
    client = smtp_client(cfg)
    try:
        await smtp_open(client, cfg)
        if client.is_ehlo_or_helo_needed:
            await client.ehlo()
        probe.mechanisms = sorted(m.upper() for m in client.server_auth_methods)
        extensions = sorted(client.esmtp_extensions)
    except (SendDeferred, aiosmtplib.SMTPException, OSError, TimeoutError) as err:
        return _failed(probe, err)
    finally:  # connected, then refused (EHLO answered 421): the socket is closed too
        client.close()
    probe.ok = True
    login = ("XOAUTH2" if cfg.auth == "oauth2" else
             "password" if cfg.username else "none")
    probe.uses = {"login": login, "extensions": extensions,
                  "smtputf8": "smtputf8" in extensions}
    return probe


def probe_smtp(cfg: SmtpConfig) -> Probe:
    cfg = dataclasses.replace(cfg, timeout_seconds=min(cfg.timeout_seconds, PROBE_SECONDS))
    probe = Probe("smtp", "smtp", cfg.host, cfg.port, cfg.security, cfg.auth)
    return asyncio.run(_smtp(cfg, probe))


def probe_all(cfg: Config) -> list[Probe]:
    return [*(probe_mailbox(box) for box in cfg.mailboxes), probe_smtp(cfg.smtp)]


def _yes(value: bool | None) -> str:
    return "có" if value else "không"


def describe(probe: Probe) -> list[str]:
    """The lines a person reads about one probe, in Vietnamese."""
    what = f'Hộp thư "{probe.name}"' if probe.kind == "imap" else "Máy chủ gửi thư (SMTP)"
    where = f"{probe.host}:{probe.port}, {probe.security}, đăng nhập bằng {probe.auth}"
    if not probe.ok:
        return [f"LỖI  {what} ({where}): {KINDS[probe.error_kind or 'error']}",
                f"     chi tiết: {probe.error}"]
    lines = [f"ĐƯỢC {what} ({where}): đăng nhập được bằng {probe.uses['login']}"]
    mechanisms = ", ".join(probe.mechanisms) or "không công bố"
    if probe.kind == "imap":
        lines.append(f"     máy chủ có: IDLE {_yes(probe.idle)}, MOVE {_yes(probe.move)}; "
                     f"cơ chế đăng nhập: {mechanisms}")
        wait = ("IDLE (thư mới đến được báo ngay)" if probe.uses["wait"] == "idle"
                else f"hỏi lại mỗi {probe.uses['poll_seconds']:g} giây")
        lines.append(f"     vanthu sẽ dùng: {wait}; sau khi lưu thư: {probe.uses['after']}; "
                     f"thư mục: {', '.join(probe.uses['folders'])}")
    else:
        lines.append(f"     máy chủ có: cơ chế đăng nhập: {mechanisms}; "
                     f"SMTPUTF8 {_yes(probe.uses['smtputf8'])}")
    return lines


__all__ = ["KINDS", "Probe", "describe", "probe_all", "probe_mailbox", "probe_smtp"]
