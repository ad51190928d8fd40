"""The outbox's last gate made cheaper keeps every verdict: `check` with header classes made
once and header objects remembered refuses exactly what the modern policy's plain parse
refused, for hostile values of every kind going through the composers; the caches of the
sending side (addresses, TLS contexts, aiosmtplib's line ends) change no result."""

from __future__ import annotations

import asyncio
import re
import ssl
import subprocess
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from email import message_from_bytes
from email import policy as email_policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiosmtplib.protocol
import pytest
from aiosmtpd.controller import Controller
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine

from daemon import config
from daemon.config import SmtpConfig
from daemon.db import make_engine, upgrade, utcnow
from daemon.errors import EmailRefused, RecipientRefused
from daemon.models import Action, Address, Attachment, Kind, OutboxState, ParsedMail
from daemon.outbound import compose, headers, outbox
from daemon.outbound import send as send_module
from daemon.outbound.outbox import (
    _OUTPUT,
    AT_MOST_ONCE,
    FIELD,
    NEVER,
    ONCE,
    _bytes,
    check,
    skeleton,
)
from daemon.outbound.recipients import Purpose, _address_problem, mailbox_problem
from daemon.outbound.send import Sender, TlsContexts, line_endings, smtp_client
from tests.queued import queue_raw
from tests.servers import SmtpSink, free_port
from tests.test_outbox import CHIEF, DIRECTOR, SENDER, make_config, understanding

WHEN = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)


def oracle(cfg: config.Config, email: EmailMessage, purpose: Purpose,
           recipients: list[str]) -> bytes:
    """`check` as it was before the caches (commit e8c3f3c), verbatim but for the name: the
    bytes parsed back with the standard library's modern policy as it comes."""
    raw = _bytes(email)
    head = raw.split(b"\r\n\r\n", 1)[0]
    if not head.isascii():
        raise EmailRefused("a header is not ASCII (RFC 2047 encoding missing)")
    if any(len(line) > 998 for line in head.split(b"\r\n")):
        raise EmailRefused("a header line is longer than 998 octets")
    # Added after e8c3f3c: a line holding a CR or LF but its CRLF end is refused.
    if any(b"\r" in line or b"\n" in line for line in head.split(b"\r\n")):
        raise EmailRefused("a header line holds a bare CR or LF")
    # Added after e8c3f3c: a field without a name (": x") is refused (RFC 5322 field-name).
    if not all(FIELD.match(line) or (at and line[:1] in (b" ", b"\t"))
               for at, line in enumerate(head.split(b"\r\n"))):
        raise EmailRefused("a header line is neither a field (name: value) nor its folding")
    parsed = message_from_bytes(raw, policy=email_policy.default)
    for part in parsed.walk():
        if part.defects:
            raise EmailRefused(f"malformed MIME part: {part.defects[0]!r}")
        for name, value in part.items():
            if any(c in str(value) for c in "\r\n\x00"):
                raise EmailRefused(f"header {name} holds a line break or NUL")
            if defects := getattr(value, "defects", ()):
                raise EmailRefused(f"header {name} is malformed: {defects[0]}")
    for name in ONCE:
        if len(parsed.get_all(name) or []) != 1:
            raise EmailRefused(f"needs exactly one {name} header, "
                               f"has {len(parsed.get_all(name) or [])}")
    for name in AT_MOST_ONCE:
        if len(parsed.get_all(name) or []) > 1:
            raise EmailRefused(f"has {len(parsed.get_all(name) or [])} {name} headers")
    for name in NEVER:
        if name in parsed:
            raise EmailRefused(f"has a {name} header")
    senders = [a.addr_spec for a in getattr(parsed["From"], "addresses", ())]
    if senders != [cfg.smtp.from_address]:
        raise EmailRefused(f"From must be {cfg.smtp.from_address}, is {senders}")
    to = {a.addr_spec.lower() for a in getattr(parsed["To"], "addresses", ())}
    if to != {r.lower() for r in recipients}:
        raise EmailRefused(f"To {sorted(to)} is not the recipients {sorted(recipients)}")
    if str(parsed["X-Vanthu-Action"]) != purpose.value:
        raise EmailRefused(f"X-Vanthu-Action {parsed['X-Vanthu-Action']} is not {purpose}")
    if not compose.MSG_ID.fullmatch(str(parsed["Message-ID"]).strip()):
        raise EmailRefused(f"not a Message-ID: {parsed['Message-ID']}")
    return raw


def verdict(gate: Callable[..., bytes], *args: Any) -> tuple[str, str | bytes]:
    try:
        return "queued", gate(*args)
    except EmailRefused as err:
        return "refused", str(err)
    except Exception as err:  # the oracle's parser failing: `check` refuses so instead
        return "refused", f"unreadable headers: {type(err).__name__}: {err}"


# --- hostile values ----------------------------------------------------------------------

_PIECES = ["\r", "\n", "\r\n", "\x00", "\u2028", "\x85", "\t", " ", "=?", "?=", ":", ";", ",",
           "<", ">", "@", '"', "\\", "(", ")", "=?utf-8?q?=0D=0ABcc:_spy@evil.example?=",
           "=?utf-8?b?DQpCY2M6IHNweUBldmlsLmV4YW1wbGU=?=", "\r\nBcc: spy@evil.example",
           "\nCc: spy@evil.example", "=?iso-8859-1?q?=00?=", "x" * 200, "Đ" * 90,
           "Nguyễn Thị Hồng Nhung", "Sở Xây dựng", "Bcc: spy@evil.example", "\ud800"]
_TEXT = st.lists(st.one_of(st.sampled_from(_PIECES),
                           st.text(alphabet=st.characters(codec="utf-8"), max_size=8)),
                 max_size=12).map("".join)
_LONG = st.integers(min_value=900, max_value=1200).map(lambda n: "w" * n)
_HOSTILE = st.one_of(_TEXT, _LONG)
_HEADER_NAMES = ["Subject", "To", "Cc", "Bcc", "From", "X-Vanthu-Action", "Reply-To",
                 "Content-Type", "Content-Disposition", "Content-Transfer-Encoding",
                 "Message-ID", "In-Reply-To", "Resent-Bcc", "X-Note", "Date"]


def _forward(cfg: config.Config, subject: str, name: str, body: str, filename: str,
             content_type: str) -> EmailMessage:
    pdf = Attachment(filename, content_type, 9, "0" * 64, b"%PDF-1.4\n")
    mail = ParsedMail(
        message_id=f"<{name[:20]}@gmail.com>", subject=subject, sender=Address(name, SENDER),
        to=(), reply_to=(), date=WHEN, headers={}, body=body, attachments=(pdf,),
        content_types=("multipart/mixed",))
    ctx = compose.Context(sha256="a" * 64, received_at=WHEN, book="incoming", number=7,
                          year=2026)
    return compose.forward(cfg, ctx, Action("forward", (DIRECTOR, CHIEF), name), mail,
                           understanding(Kind.DOCUMENT))


def _compose(cfg: config.Config, which: str, text: str, other: str) -> EmailMessage:
    if which == "forward":
        return _forward(cfg, text, other, text, other, "application/pdf")
    if which == "attachment type":
        return _forward(cfg, "Công văn", "Toàn", "", "a.pdf", text)
    if which == "acknowledge":
        mail = ParsedMail(
            message_id=other, subject=text, sender=Address(other, SENDER), to=(), reply_to=(),
            date=WHEN, headers={}, body=text, attachments=(), content_types=())
        ctx = compose.Context(sha256="b" * 64, received_at=WHEN)
        return compose.acknowledge(cfg, ctx, Action("acknowledge", (SENDER,)), mail,
                                   understanding(Kind.REPLY))
    return compose.result(cfg, pdf_sha256="d" * 64, pdf_name=f"{other}.pdf", pdf=b"%PDF",
                          to=SENDER, case_code=None, in_reply_to=other, outgoing=text,
                          summary=text, sent_at=WHEN)


_PURPOSES = {"forward": (Purpose.FORWARD, [DIRECTOR, CHIEF]),
             "attachment type": (Purpose.FORWARD, [DIRECTOR, CHIEF]),
             "acknowledge": (Purpose.ACKNOWLEDGE, [SENDER]),
             "result": (Purpose.RESULT, [SENDER])}


def _mangle(email: EmailMessage, how: str, name: str, value: str, part: int) -> None:
    """What a bug in a composer could leave: a header set raw on the email or on one of its
    parts, a header added, or another recipient in To."""
    target = list(email.walk())[part % len(list(email.walk()))]
    if how == "set raw":
        del target[name]
        target.set_raw(name, value)
    elif how == "add raw":
        target.set_raw(name, value)
    elif how == "another recipient":
        email.replace_header("To", f"{email['To']}, {value}")


def test_check_gives_the_verdicts_of_the_plain_parse_whatever_the_input(
        tmp_path: Path) -> None:
    """Hostile subjects, names, bodies, file names and content types (CR, LF, NUL, U+2028,
    lone surrogates, words past 998 octets, encoded words hiding a line break or a Bcc,
    Vietnamese), through the composers, then maybe a header set raw, added or smuggled into
    To: the cheaper check queues the same bytes or refuses with the same reason as the plain
    parse, the first time and again with its caches warm."""
    base = make_config(tmp_path)

    @settings(max_examples=100, deadline=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(which=st.sampled_from(sorted(_PURPOSES)), text=_HOSTILE, other=_HOSTILE,
           from_name=st.one_of(st.just(""), _TEXT),
           how=st.sampled_from(["none", "set raw", "add raw", "another recipient"]),
           name=st.sampled_from(_HEADER_NAMES), value=_HOSTILE, part=st.integers(0, 5))
    # Found by this test: a line break hidden in an encoded word of To, which the standard
    # parser's address class refuses with a ValueError of its own.
    @example(which="acknowledge", text="", other="", from_name="", how="set raw", name="To",
             value="=?utf-8?q?=0D=0ABcc:_spy@evil.example?=", part=0)
    def compare(which: str, text: str, other: str, from_name: str, how: str, name: str,
                value: str, part: int) -> None:
        cfg = replace(base, smtp=replace(base.smtp, from_name=from_name))
        try:
            email = _compose(cfg, which, text, other)
            if how != "none":
                _mangle(email, how, name, value, part)
        except (EmailRefused, RecipientRefused, ValueError, TypeError, UnicodeError,
                IndexError):  # the standard library's own parser, as a header is set
            return  # refused while composing: the gate is never reached
        purpose, recipients = _PURPOSES[which]
        expected = verdict(oracle, cfg, email, purpose, recipients)
        event(f"{how}: {expected[0]}")
        assert verdict(check, cfg, email, purpose, recipients) == expected
        assert verdict(check, cfg, email, purpose, recipients) == expected  # caches warm
        if expected[0] == "queued":
            assert isinstance(expected[1], bytes)
            head = expected[1].split(b"\r\n\r\n", 1)[0].lower()
            assert b"\nbcc:" not in head and b"\ncc:" not in head

    compare()


@pytest.mark.parametrize("name, value, reason", [
    ("Subject", "=?utf-8?q?Hi=0D=0ABcc:_spy@evil.example?=", "line break"),
    ("Subject", "Hi\r\nBcc: spy@evil.example", "Bcc"),
    ("X-Note", "a\x00b", "NUL"),
    ("Cc", "spy@evil.example", "Cc"),
    ("To", f"{DIRECTOR}, {CHIEF}, spy@evil.example", "not the recipients"),
    ("Content-Disposition", 'attachment; filename="a\r\nBcc: spy@evil.example"', "malformed"),
])
def test_header_injection_is_refused_with_caches_warm(tmp_path: Path, name: str, value: str,
                                                      reason: str) -> None:
    """The same injected header refused the first time is refused every time after, however
    many clean emails warmed the caches in between."""
    cfg = make_config(tmp_path)
    for _ in range(2):
        clean = _forward(cfg, "Công văn số 15", "Toàn", "Kính gửi", "a.pdf", "application/pdf")
        check(cfg, clean, Purpose.FORWARD, [DIRECTOR, CHIEF])
        email = _forward(cfg, "Công văn số 15", "Toàn", "Kính gửi", "a.pdf", "application/pdf")
        target = email if name != "Content-Disposition" else list(email.walk())[-1]
        del target[name]
        target.set_raw(name, value)
        with pytest.raises(EmailRefused, match=reason):
            check(cfg, email, Purpose.FORWARD, [DIRECTOR, CHIEF])


# --- the header classes made once ------------------------------------------------------------


@given(name=st.sampled_from([*_HEADER_NAMES, "x-other", "SUBJECT", "to"]), value=_HOSTILE)
@settings(max_examples=200, deadline=None)
def test_remembered_headers_are_the_standard_ones(name: str, value: str) -> None:
    """A header made by the registry of classes made once, remembered or not, has the
    standard factory's text, kind, defects and parse."""
    value = "".join(value.splitlines())

    def made(factory: Callable[[str, str], Any]) -> Any:
        try:
            header = factory(name, value)
        except Exception as err:  # the standard factory raises on some values: so must ours
            return type(err)
        return (str(header), header.name, type(header).__mro__[1:],
                [type(d) for d in header.defects], getattr(header, "addresses", None),
                getattr(header, "params", None))

    standard = made(email_policy.default.header_factory)
    assert made(headers.remembered_header) == standard
    assert made(headers.remembered_header) == standard
    assert made(headers.SMTP.header_factory) == standard


@given(subject=_HOSTILE, name=_HOSTILE, filename=_HOSTILE, text=st.text(max_size=200))
@settings(max_examples=150, deadline=None)
def test_an_email_composed_with_remembered_headers_is_the_standard_policys(
        subject: str, name: str, filename: str, text: str) -> None:
    """Composing with `headers.SMTP` (header objects remembered, so shared between emails,
    and folded again in each) writes the bytes the standard SMTP policy writes, the first
    time and every time after; or fails the same way."""
    def written(policy: Any) -> bytes | type:
        try:
            msg = EmailMessage(policy=policy)
            msg["Subject"] = "".join(subject.splitlines())
            msg["From"] = compose.mailbox("".join(name.splitlines()), "vanthu@sxd.gov.vn")
            msg["To"] = "giamdoc.sxd@tayninh.gov.vn, cvp.sxd@tayninh.gov.vn"
            msg["X-Vanthu-Action"] = "forward"
            msg.set_content(text or "x")
            msg.add_alternative(f"<p>{text}</p>", subtype="html")
            msg.add_attachment(b"%PDF-1.4", maintype="application", subtype="pdf",
                               filename=filename)
            return _bytes(msg)
        except Exception as err:  # the same failure, if any
            return type(err)

    standard = written(email_policy.SMTP)
    assert written(headers.SMTP) == standard
    assert written(headers.SMTP) == standard


def test_registry_makes_each_class_once_and_forgets_on_a_new_mapping() -> None:
    """One class per header name (any case), made again after a name is mapped anew."""
    registry = headers.Registry()
    assert registry["Subject"] is registry["subject"] is registry["SUBJECT"]
    assert registry["To"] is not registry["Subject"]
    before = registry["X-Vanthu-Action"]
    registry.map_to_type("x-vanthu-action", registry["subject"].__mro__[1])
    assert registry["X-Vanthu-Action"] is not before


@given(address=_HOSTILE)
@settings(max_examples=200, deadline=None)
# Found by this test: an empty group, which the standard parser fails on with AttributeError.
@example(address=":; ")
def test_address_verdicts_are_the_same_asked_twice(address: str) -> None:
    """The remembered verdict on an address is the one worked out afresh."""
    fresh = _address_problem.__wrapped__(address)
    assert mailbox_problem(address) == fresh
    assert mailbox_problem(address) == fresh


# --- sending ---------------------------------------------------------------------------------


@given(st.lists(st.sampled_from([b"a", b"\r", b"\n", b"\r\n", b".", b"\r\n.", b"\n\r", b""]),
                max_size=30).map(b"".join))
@settings(max_examples=300, deadline=None)
def test_line_endings_are_the_librarys(message: bytes) -> None:
    """aiosmtplib's normalisation with the shortcut gives the library's own bytes for any
    mix of lone CR, lone LF and CRLF, and is what aiosmtplib calls."""
    library = aiosmtplib.protocol.LINE_ENDINGS_REGEX.sub(b"\r\n", message)
    if not library.endswith(b"\r\n"):
        library += b"\r\n"
    assert line_endings(message) == library
    assert aiosmtplib.protocol.normalize_message_line_endings is line_endings
    assert aiosmtplib.smtp.normalize_message_line_endings is line_endings  # type: ignore[attr-defined]


@given(st.lists(st.sampled_from([b"a", b".", b"..", b"\r", b"\n", b"\r\n", b"\r\n.", b"\n.",
                                 b"\r.", b" ."]), max_size=30).map(b"".join))
@settings(max_examples=300, deadline=None)
def test_dot_stuffing_is_the_librarys(message: bytes) -> None:
    """aiosmtplib's dot-stuffing with the search first gives the library's own bytes for any
    placing of dots and line ends, and is what aiosmtplib calls."""
    library = re.compile(rb"(?m)^\.").sub(b"..", message)
    assert aiosmtplib.protocol.PERIOD_REGEX.sub(b"..", message) == library
    assert isinstance(aiosmtplib.protocol.PERIOD_REGEX, send_module._Periods)


def _certificate(directory: Path, name: str) -> tuple[Path, Path]:
    key, cert = directory / f"{name}.key", directory / f"{name}.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert),
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True)
    return key, cert


def test_tls_context_none_for_plain_smtp() -> None:
    """security = "none": no TLS context is made at all (not even the system's)."""
    contexts = TlsContexts(SmtpConfig(security="none", ca_file="/nonexistent.pem"))
    assert contexts.get() is None
    assert smtp_client(SmtpConfig(security="none")).tls_context is None


def test_tls_context_made_once_and_again_when_the_ca_file_changes(tmp_path: Path) -> None:
    """One context per configuration while its CA file stays the same; a CA file replaced
    (a renewed certificate) gives a new one; another configuration has its own; a CA file
    gone is an error each time it is asked for, not a context kept from before."""
    _, cert = _certificate(tmp_path, "one")
    cfg = SmtpConfig(security="starttls", ca_file=str(cert))
    contexts = TlsContexts(cfg)
    first = contexts.get()
    assert first is not None and first is contexts.get() is contexts.get()
    assert first.verify_mode is ssl.CERT_REQUIRED

    _, other = _certificate(tmp_path, "two")
    other.replace(cert)  # renewed in place, as a deployment tool does
    renewed = contexts.get()
    assert renewed is not first and renewed is contexts.get()

    lax = TlsContexts(replace(cfg, tls_verify=False)).get()
    assert lax is not None and lax is not renewed and lax.verify_mode is ssl.CERT_NONE
    cert.unlink()
    for _ in range(2):
        with pytest.raises(OSError):
            contexts.get()


def test_starttls_drains_reuse_one_context(tmp_path: Path, engine_path: Engine) -> None:
    """Two drains over STARTTLS to a real server verifying its certificate with the CA file:
    both deliver, with the one context the sender made for its configuration."""
    key, cert = _certificate(tmp_path, "server")
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    sink = SmtpSink()
    controller = Controller(sink, hostname="127.0.0.1", port=free_port(),
                            server_hostname="localhost", tls_context=server_context,
                            require_starttls=True, decode_data=False, ready_timeout=10)
    controller.start()
    try:
        sender = Sender(engine_path, SmtpConfig(host="localhost", port=controller.port,
                                                security="starttls", ca_file=str(cert)))
        contexts = []
        for n in range(2):
            _row(engine_path, n)
            assert asyncio.run(sender.drain()) == 1
            contexts.append(sender.tls.get())
    finally:
        controller.stop()
    assert contexts[0] is not None and contexts[0] is contexts[1]
    assert [m.rcpt_tos for m in sink.messages()] == [[DIRECTOR], [DIRECTOR]]


def _row(engine: Engine, n: int) -> None:
    raw = (f"From: vanthu@example.gov.vn\r\nTo: {DIRECTOR}\r\nSubject: {n}\r\n"
           f"Message-ID: <{n}.tls@example.gov.vn>\r\n\r\nrow {n}\r\n").encode()
    now = utcnow()
    with engine.begin() as conn:
        queue_raw(conn, raw, header_message_id=f"<{n}.tls@example.gov.vn>", action="forward",
                  recipients=[DIRECTOR], state=OutboxState.PENDING, attempts=0,
                  tries_begun=0, next_attempt_at=now, created_at=now)


@pytest.fixture()
def engine_path(tmp_path: Path) -> Any:
    engine = make_engine(f"sqlite:///{tmp_path / 'vanthu.db'}")
    upgrade(engine)
    yield engine
    engine.dispose()


# --- attachments encoded once ------------------------------------------------------------------


def _attachment(add: Callable[[EmailMessage], None]) -> bytes | type:
    """The attachment part a composer makes, as bytes (or the exception it raises)."""
    msg = EmailMessage(policy=headers.SMTP)
    msg.set_content("Phiếu chuyển văn bản")
    try:
        add(msg)
        *_, part = msg.iter_parts()
        return part.as_bytes(policy=email_policy.SMTP)
    except Exception as err:
        return type(err)


@given(data=st.one_of(st.binary(max_size=400),
                      st.integers(0, 4).map(lambda n: bytes(range(256)) * n + b"\x00" * 57)),
       filename=_HOSTILE, maintype=st.sampled_from(["application", "image", "text", "x"]),
       subtype=st.sampled_from(["pdf", "octet-stream", "vnd.ms-word", "plain", "x\r\ny"]))
@settings(max_examples=200, deadline=None)
def test_attachments_are_the_standard_librarys(data: bytes, filename: str, maintype: str,
                                               subtype: str) -> None:
    """Any bytes (empty, a line's 57 bytes, several lines) under any file name and type: the
    attachment part has the same headers and bytes as `add_attachment` makes, or fails the
    same way."""
    standard = _attachment(lambda m: m.add_attachment(data, maintype=maintype,
                                                      subtype=subtype, filename=filename))
    assert _attachment(lambda m: compose.attach_bytes(m, data, maintype, subtype,
                                                      filename)) == standard


@given(name=_HOSTILE)
@settings(max_examples=100, deadline=None)
def test_the_from_header_remembered_is_the_one_made_afresh(name: str) -> None:
    """The remembered `From` of any display name is the one worked out afresh."""
    address = "vanthu.sxd@sxd.example.gov.vn"

    def made(make: Callable[[str, str], str]) -> str | type:
        try:
            return make(name, address)
        except Exception as err:  # the same failure, if any
            return type(err)

    fresh = made(compose.mailbox.__wrapped__)
    assert made(compose.mailbox) == fresh
    assert made(compose.mailbox) == fresh


def test_a_changed_configuration_gets_its_own_from(tmp_path: Path) -> None:
    """Two configurations (a display name changed and the daemon restarted, or two agencies
    in one test run), their emails made in turn: each email is from its own configuration."""
    first = make_config(tmp_path, from_="Văn thư Sở Xây dựng <vanthu.sxd@sxd.example.gov.vn>")
    second = make_config(tmp_path, from_="Phòng Hành chính <hanhchinh@sxd.example.gov.vn>")
    for _ in range(2):
        for cfg, name in ((first, "Văn thư Sở Xây dựng"), (second, "Phòng Hành chính")):
            email = _forward(cfg, "Công văn", "Toàn", "", "a.pdf", "application/pdf")
            raw = check(cfg, email, Purpose.FORWARD, [DIRECTOR, CHIEF])
            sender = message_from_bytes(raw, policy=email_policy.default)["From"].addresses[0]
            assert (sender.display_name, sender.addr_spec) == (name, cfg.smtp.from_address)


def test_a_value_the_standard_parser_itself_refuses_is_a_refusal(tmp_path: Path) -> None:
    """A line break hidden in an encoded word of To makes the standard library's address
    class raise ValueError while the bytes are read back: `check` refuses the email
    (EmailRefused, with why) instead of letting that escape."""
    cfg = make_config(tmp_path)
    email = _compose(cfg, "acknowledge", "", "")
    _mangle(email, "set raw", "To", "=?utf-8?q?=0D=0ABcc:_spy@evil.example?=", 0)
    purpose, recipients = _PURPOSES["acknowledge"]
    with pytest.raises(EmailRefused, match="unreadable headers: ValueError"):
        check(cfg, email, purpose, recipients)


# Python's own, ours (this process's, or the prefix of every one we draw) and look-alikes.
_BOUNDARY_LIKE = st.sampled_from(["--=_", "--" + "=" * 15, "--=_0123456789abcdef", "--", "=_",
                                  f"--{outbox._BOUNDARY}0_", f"--{outbox._BOUNDARY}1_",
                                  f"--{outbox._BOUNDARY}", f"--{outbox._BOUNDARY}2_--"])


@given(texts=st.lists(st.tuples(_BOUNDARY_LIKE, st.text(max_size=40)), max_size=6)
       .map(lambda pairs: "\n".join(a + b for a, b in pairs)),
       data=st.binary(max_size=300), nested=st.booleans())
@settings(max_examples=150, deadline=None)
def test_the_boundaries_drawn_for_an_email_keep_its_parts_whatever_they_hold(
        texts: str, data: bytes, nested: bool) -> None:
    """Boundaries are the process's own (the same for every email, so the parser compiles
    each once) unless a part holds one of them: then 128 fresh secret bits. Text and
    attachments holding lines like boundaries, Python's and ours included, come back from
    the standard parser as the same parts with the same content as the standard generator
    writes them; each multipart has its own boundary."""
    def build() -> EmailMessage:
        msg = EmailMessage(policy=email_policy.SMTP)
        msg["Subject"] = "x"
        msg.set_content(texts or "x")
        msg.add_alternative(f"<pre>{texts}</pre>", subtype="html")
        if nested:
            inner = EmailMessage(policy=email_policy.SMTP)
            inner.set_content(texts or "y")
            inner.add_attachment(data, maintype="application", subtype="pdf",
                                 filename="a.pdf")
            msg.add_attachment(inner)
        msg.add_attachment(data, maintype="application", subtype="octet-stream",
                           filename="b")
        return msg

    def leaves(raw: bytes) -> list[tuple[str, Any]]:
        parsed = message_from_bytes(raw, policy=email_policy.default)
        assert not any(part.defects for part in parsed.walk())
        return [(p.get_content_type(), p.get_payload(decode=True)) for p in parsed.walk()
                if not p.is_multipart()]

    raw = _bytes(build())
    boundaries = [part.get_boundary() for part in
                  message_from_bytes(raw, policy=email_policy.default).walk()
                  if part.get_content_maintype() == "multipart"]
    assert len(boundaries) >= 2 + nested  # mixed(alternative, …), and the inner ones
    assert len(set(boundaries)) == len(boundaries)
    ours = [f"{outbox._BOUNDARY}{n}_" for n in range(len(boundaries))]
    fresh = all(b is not None and b.startswith("=_") and len(b) == 34 for b in boundaries)
    assert (fresh and not set(boundaries) & set(ours)) or sorted(map(str, boundaries)) == ours
    if f"--{outbox._BOUNDARY}" not in texts:
        assert sorted(map(str, boundaries)) == ours
        assert _bytes(build()) == raw
    assert leaves(raw) == leaves(build().as_bytes(policy=email_policy.SMTP))


@pytest.mark.parametrize("tail", ["0_", "1_--", "1_ "])
def test_a_part_holding_one_of_the_process_boundaries_gets_fresh_ones(tail: str) -> None:
    """Whoever read an email vanthu sent knows this process's boundaries and may write one
    into a mail that vanthu forwards: that email is written with fresh ones, and reads as
    the same parts."""
    line = f"--{outbox._BOUNDARY}{tail}"
    msg = EmailMessage(policy=email_policy.SMTP)
    msg["Subject"] = "x"
    msg.set_content(f"Kính gửi,\n{line}\nContent-Type: text/html\n\n<b>giả</b>\n")
    msg.add_alternative("<p>x</p>", subtype="html")
    msg.add_attachment(b"%PDF-1.4", maintype="application", subtype="pdf", filename="a.pdf")
    raw = _bytes(msg)
    assert line.encode() in raw  # written as it is (8bit), where a parser meets it
    parsed = message_from_bytes(raw, policy=email_policy.default)
    boundaries = [p.get_boundary() for p in parsed.walk() if p.is_multipart()]
    assert len(boundaries) == 2
    assert not any(str(b).startswith(outbox._BOUNDARY) for b in boundaries)
    assert [p.get_content_type() for p in parsed.walk()] == [
        "multipart/mixed", "multipart/alternative", "text/plain", "text/html",
        "application/pdf"]
    plain = parsed.get_body(("plain",))
    assert plain is not None and line in plain.get_content()


# --- the parse of `check` skips the attachments' base64 ------------------------------------

_B64_LINE = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
                    min_size=76, max_size=76)


def _reading(raw: bytes) -> list[tuple[Any, ...]]:
    """Everything `check` looks at in a parse of `raw`: each part's type, boundary, defects
    and headers (their values, or what reading them raised), in order."""
    def value(name: str, raw_value: str) -> str:
        try:
            v = email_policy.default.header_fetch_parse(name, raw_value)
            return f"{v} {[type(d).__name__ for d in getattr(v, 'defects', ())]}"
        except Exception as err:  # what the parser raises on a hostile value is the verdict
            return f"raised {type(err).__name__}"

    parsed = message_from_bytes(raw, policy=email_policy.default)
    return [(part.get_content_type(), part.get_boundary(), part.is_multipart(),
             [type(d).__name__ for d in part.defects],
             [(n, value(n, v)) for n, v in part.raw_items()]) for part in parsed.walk()]


@given(text=st.lists(st.one_of(_B64_LINE, _BOUNDARY_LIKE, st.text(max_size=80)), max_size=8)
       .map("\n".join),
       data=st.lists(st.binary(max_size=4000), min_size=1, max_size=3), nested=st.booleans(),
       how=st.sampled_from(["none", "drop a line", "repeat a line", "base64 line",
                            "bare LF", "cut"]),
       at=st.integers(0, 10_000), line=_B64_LINE)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# Found by this test: the email cut just after "To: giamdoc.sxd@" (the header parser raises
# IndexError on reading that value: the reading records it, as `check` refuses it).
@example(text="x", data=[b""], nested=False, how="cut", at=67, line="A" * 76)
def test_check_parses_the_same_parts_headers_and_defects_without_the_base64(
        text: str, data: list[bytes], nested: bool, how: str, at: int, line: str) -> None:
    """`check` parses the email with its runs of base64 lines cut to one (`skeleton`). For
    emails with attachments of every size, text holding base64-like and boundary-like lines,
    nested messages, and then bytes damaged as a composer's bug could leave them (a line
    dropped or repeated, a base64 line put anywhere, the header section included, a bare LF,
    the email cut short): the parse finds the same parts, boundaries, headers and defects."""
    msg = EmailMessage(policy=email_policy.SMTP)
    msg["Subject"] = "Công văn số 12/UBND"
    msg["To"] = DIRECTOR
    msg.set_content(text or "x")
    if nested:
        inner = EmailMessage(policy=email_policy.SMTP)
        inner["Subject"] = "inner"
        inner.set_content(text or "y")
        inner.add_attachment(data[0], maintype="application", subtype="pdf", filename="a.pdf")
        msg.add_attachment(inner)
    for n, payload in enumerate(data):
        msg.add_attachment(payload, maintype="application", subtype="octet-stream",
                           filename=f"tệp-{n}.bin")
    raw = _bytes(msg)
    lines = raw.split(b"\r\n")
    where = at % len(lines)
    if how == "drop a line":
        del lines[where]
    elif how == "repeat a line":
        lines.insert(where, lines[where])
    elif how == "base64 line":
        lines.insert(where, line.encode())
    raw = b"\r\n".join(lines)
    if how == "bare LF":
        raw = raw[:at % len(raw)] + raw[at % len(raw):].replace(b"\r\n", b"\n", 1)
    elif how == "cut":
        raw = raw[:at % len(raw)]
    event(f"{how}: {'shorter' if len(skeleton(raw)) < len(raw) else 'same'}")
    assert _reading(skeleton(raw)) == _reading(raw)


def test_skeleton_cuts_a_large_attachment_to_a_line() -> None:
    """The point of it: a 300 KB attachment is parsed as one line of base64, and a text
    part's lines are left alone."""
    msg = EmailMessage(policy=email_policy.SMTP)
    msg["Subject"] = "x"
    msg.set_content("Kính gửi Giám đốc Sở,\n" * 50)
    msg.add_attachment(bytes(range(256)) * 1200, maintype="application", subtype="pdf",
                       filename="van-ban.pdf")
    raw = _bytes(msg)
    cut = skeleton(raw)
    assert len(raw) > 400_000 and len(cut) < 6_000
    assert cut.count("Kính gửi".encode()) == 50
    assert cut.split(b"\r\n\r\n", 1)[0] == raw.split(b"\r\n\r\n", 1)[0]


_LINES = st.lists(st.one_of(st.sampled_from(["\r", "\n", "\r\n", "\n\r", ".", "From x", " ",
                                             "Kính gửi Sở Xây dựng"]),
                            st.text(max_size=30)), max_size=20).map("".join)


@given(text=_LINES, html=_LINES, data=st.lists(st.binary(max_size=3000), max_size=3),
       nested=st.booleans(), subject=_LINES)
@settings(max_examples=200, deadline=None)
def test_the_outbox_writes_the_bytes_of_the_standard_generator(
        text: str, html: str, data: list[bytes], nested: bool, subject: str) -> None:
    """`_bytes` writes each body at once: for text with every mix of CR, LF and CRLF (lone
    ones, reversed pairs), dots and "From " lines, Vietnamese, attachments of any size and a
    nested email, the bytes are those of the standard generator (`as_bytes`), boundary for
    boundary."""
    msg = EmailMessage(policy=email_policy.SMTP)
    try:
        msg["Subject"] = subject
    except (ValueError, TypeError, IndexError):
        msg["Subject"] = "x"
    msg.set_content(text or "x")
    msg.add_alternative(html or "<p>x</p>", subtype="html")
    if nested:
        inner = EmailMessage(policy=email_policy.SMTP)
        inner.set_content(text or "y", cte="quoted-printable")
        msg.add_attachment(inner)
    for n, payload in enumerate(data):
        msg.add_attachment(payload, maintype="application", subtype="pdf", filename=f"{n}.pdf")
    try:
        ours = _bytes(msg)
    except EmailRefused:
        with pytest.raises(Exception):  # noqa: B017  the standard generator fails as well
            msg.as_bytes(policy=_OUTPUT)
        return
    assert ours == msg.as_bytes(policy=_OUTPUT)  # the boundaries drawn by `_bytes`, kept
