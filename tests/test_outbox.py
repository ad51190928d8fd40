"""The outbox: one writer, the last gate of headers and recipients; a bad email is refused when
it is made, and a bad old row never holds up the emails behind it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.header import decode_header, make_header
from email.message import EmailMessage
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Connection, Engine, func, insert, select, update

from daemon import config
from daemon.cli import main
from daemon.db import cases, make_engine, messages, outbox, outbox_bodies, upgrade, utcnow
from daemon.errors import EmailRefused, PermanentError, RecipientRefused
from daemon.models import (
    Action,
    Address,
    Applicant,
    Attachment,
    Document,
    Kind,
    OutboxState,
    ParsedMail,
    State,
    Understanding,
)
from daemon.office import digest, letters
from daemon.outbound import compose
from daemon.outbound.outbox import enqueue, health
from daemon.outbound.recipients import Allowed, Answering, Purpose, mailbox_problem, refusal
from daemon.outbound.send import Sender
from daemon.routing import rules as rules_module
from daemon.textnorm import header_safe
from tests.conftest import RULES
from tests.queued import queue_raw
from tests.servers import SmtpSink

FROM = "vanthu.sxd@sxd.example.gov.vn"
SENDER = "nguyen.van.toan@gmail.com"  # an applicant outside the agency
DIRECTOR = "giamdoc.sxd@example.gov.vn"
CHIEF = "cvp.sxd@example.gov.vn"
WHEN = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)


def make_config(directory: Path, *, port: int = 25, from_: str = f"Văn thư <{FROM}>",
                agency: str = "Sở Xây dựng tỉnh Tây Ninh", max_attempts: int = 3,
                write: bool = False) -> config.Config:
    """A configuration on loopback, built the way `config.load` builds one."""
    data: dict[str, Any] = {
        "agency": {"name": agency, "code": "000.00.22.H56",
                   "message_id_domain": "sxd.example.gov.vn"},
        "storage": {"data_dir": str(directory / "data")},
        "smtp": {"host": "127.0.0.1", "port": port, "security": "none", "from": from_,
                 "max_attempts": max_attempts, "timeout_seconds": 10.0},
        "rules": {"dir": str(RULES)},
        "digest": {"to": ["chanh_van_phong"]},
    }
    if write:
        (directory / "config.toml").write_text(
            f'[agency]\nname = "{agency}"\ncode = "000.00.22.H56"\n'
            f'message_id_domain = "sxd.example.gov.vn"\n'
            f'[storage]\ndata_dir = "{directory / "data"}"\n'
            f'[[mailboxes]]\nhost = "127.0.0.1"\nusername = "vanthu"\npassword = "x"\n'
            f'[smtp]\nhost = "127.0.0.1"\nport = {port}\nsecurity = "none"\n'
            f'from = "{from_}"\nmax_attempts = {max_attempts}\n'
            f'[rules]\ndir = "{RULES}"\n', encoding="utf-8")
    return config.parse(data, file="test.toml", text="", base=directory)


@pytest.fixture()
def cfg(tmp_path: Path) -> config.Config:
    return make_config(tmp_path)


@pytest.fixture()
def engine(cfg: config.Config) -> Iterator[Engine]:
    engine = make_engine(cfg.storage.url)
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def allowed() -> Allowed:
    cfg = make_config(Path("/nonexistent"))
    return Allowed.of(rules_module.load(RULES), cfg)


def mail(subject: str = "Hồ sơ cấp giấy phép xây dựng", sender: str = SENDER,
         name: str = "Bùi Văn Toàn") -> ParsedMail:
    """A parsed mail as the understand stage hands it on."""
    pdf = Attachment("Don de nghi.pdf", "application/pdf", 9, "0" * 64, b"%PDF-1.4\n")
    return ParsedMail(
        message_id="<abc.123@gmail.com>", subject=subject, sender=Address(name, sender),
        to=(Address("", FROM),), reply_to=(), date=WHEN, headers={}, body="Kính gửi Sở.",
        attachments=(pdf,), content_types=("multipart/mixed", "text/plain", "application/pdf"))


def understanding(kind: Kind = Kind.DOSSIER, authenticated: bool | None = True) -> Understanding:
    document = Document(number="15", symbol="QĐ-UBND", issuer="UBND tỉnh Tây Ninh",
                        summary="Về việc cấp phép", urgency="Khẩn")
    return Understanding(kind=kind, why="test", case_ref=None,
                         document=document if kind is Kind.DOCUMENT else None,
                         applicant=Applicant("Bùi Văn Toàn", SENDER, "0912345678"),
                         authenticated=authenticated)


def forward(cfg: config.Config, to: tuple[str, ...] = (DIRECTOR,),
            sha: str = "a" * 64) -> EmailMessage:
    ctx = compose.Context(sha256=sha, received_at=WHEN, book="incoming", number=7, year=2026)
    return compose.forward(cfg, ctx, Action("forward", to), mail(), understanding(Kind.DOCUMENT))


def raw_row(conn: Connection, recipients: list[Any], n: int) -> None:
    """A row as an earlier build may have left it: written straight into the table."""
    raw = (f"From: {FROM}\r\nTo: x@example.gov.vn\r\nSubject: row {n}\r\n"
           f"Message-ID: <{n}.old@sxd.example.gov.vn>\r\n\r\nrow {n}\r\n").encode()
    now = utcnow()
    queue_raw(conn, raw, header_message_id=f"<{n}.old@sxd.example.gov.vn>", action="forward",
              recipients=recipients, state=OutboxState.PENDING, attempts=0,
              next_attempt_at=now, created_at=now)


def rows(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(select(outbox, func.coalesce(outbox_bodies.c.raw, b"")
                                        .label("raw"))
                                 .join_from(outbox, outbox_bodies, isouter=True)
                                 .order_by(outbox.c.id)).all())


# --- refused at creation -------------------------------------------------------------------


@pytest.mark.parametrize("address", [
    "người.dân@ví-dụ.vn", "nguoi@ví-dụ.vn", "a@b.vn\r\nBcc: c@d.vn", "a@b.vn\x00", "", "   ",
    "a@b.vn, c@d.vn", "Toàn <a@b.vn>", "\"A\" <a@b.vn>", "undisclosed:;", "no-at-sign", ":;",
    ":; ", " :;", "a:;",
])
def test_unsendable_recipient_is_refused_at_creation(cfg: config.Config, engine: Engine,
                                                     allowed: Allowed, address: str) -> None:
    """A recipient that is not exactly one bare ASCII mailbox raises RecipientRefused with the
    reason, and nothing is queued."""
    email = forward(cfg)

    with engine.begin() as conn, pytest.raises(RecipientRefused) as refused:
        enqueue(conn, cfg, email=email, purpose=Purpose.FORWARD, recipients=[address],
                allowed=allowed)

    assert isinstance(refused.value, PermanentError)
    assert refused.value.reason and refused.value.address == address
    assert mailbox_problem(address) is not None
    assert rows(engine) == []


def test_composing_for_an_unsendable_recipient_fails_the_same_way(cfg: config.Config) -> None:
    """The envelope builder refuses an internationalised address with the same error."""
    with pytest.raises(RecipientRefused, match="ASCII"):
        forward(cfg, to=("giám.đốc@ví-dụ.vn",))


def test_outsider_never_gets_internal_mail(cfg: config.Config, engine: Engine,
                                           allowed: Allowed) -> None:
    """A forward to an address no rule names is refused, even when it is a sender's."""
    email = forward(cfg, to=(DIRECTOR, SENDER))

    with engine.begin() as conn, pytest.raises(RecipientRefused, match="agency's recipients"):
        enqueue(conn, cfg, email=email, purpose=Purpose.FORWARD,
                recipients=[DIRECTOR, SENDER], allowed=allowed,
                answering=Answering(sender=SENDER, authenticated=True, kind=Kind.DOCUMENT))


@pytest.mark.parametrize("mangle, reason", [
    (lambda m: m.__setitem__("Auto-Submitted", "no"), "Auto-Submitted"),
    (lambda m: m.set_raw("Subject", "again"), "Subject"),
    (lambda m: m.__setitem__("Bcc", "spy@example.com"), "Bcc"),
    (lambda m: m.replace_header("From", "other@example.com"), "From must be"),
    (lambda m: m.replace_header("To", CHIEF), "To"),
    (lambda m: m.replace_header("X-Vanthu-Action", "notify"), "X-Vanthu-Action"),
])
def test_malformed_headers_are_refused(cfg: config.Config, engine: Engine, allowed: Allowed,
                                       mangle: Any, reason: str) -> None:
    """Two Auto-Submitted or Subject headers, a Bcc, a From not ours, a To that is not the
    recipients or a wrong action: refused, nothing queued."""
    email = forward(cfg)
    mangle(email)

    with engine.begin() as conn, pytest.raises(EmailRefused, match=reason):
        enqueue(conn, cfg, email=email, purpose=Purpose.FORWARD, recipients=[DIRECTOR],
                allowed=allowed)

    assert rows(engine) == []


# --- the recipient policy ------------------------------------------------------------------


def _ack_refusal(conn: Connection, cfg: config.Config, allowed: Allowed,
                 answering: Answering, address: str = SENDER) -> str | None:
    return refusal(conn, cfg, purpose=Purpose.ACKNOWLEDGE, address=address, allowed=allowed,
                   answering=answering)


@pytest.mark.parametrize("authenticated, kind, why", [
    (False, Kind.DOCUMENT, "not authenticated"),
    (None, Kind.DOCUMENT, "unknown"),
    (True, Kind.SPAM, "never answered"),
    (True, Kind.BULK, "never answered"),
])
def test_acknowledgement_needs_an_authenticated_sender_and_no_spam(
        cfg: config.Config, engine: Engine, allowed: Allowed, authenticated: bool | None,
        kind: Kind, why: str) -> None:
    """No acknowledgement to a sender whose authentication failed or is unknown, nor to
    anything that looks like spam or a list."""
    answering = Answering(sender=SENDER, authenticated=authenticated, kind=kind,
                          received_at=WHEN)

    with engine.connect() as conn:
        reason = _ack_refusal(conn, cfg, allowed, answering)

    assert reason is not None and why in reason


def test_acknowledgement_goes_only_to_the_sender(cfg: config.Config, engine: Engine,
                                                 allowed: Allowed) -> None:
    """An acknowledgement addressed to anyone but the answered mail's sender is refused, even
    to a person of the agency."""
    answering = Answering(sender=SENDER, authenticated=True, kind=Kind.DOCUMENT)

    with engine.connect() as conn:
        assert _ack_refusal(conn, cfg, allowed, answering) is None
        assert _ack_refusal(conn, cfg, allowed, answering, DIRECTOR) is not None
        assert _ack_refusal(conn, cfg, allowed, answering, "other@gmail.com") is not None


def _acknowledge(conn: Connection, cfg: config.Config, allowed: Allowed, sender: str,
                 kind: Kind, n: int) -> None:
    who = mail(sender=sender)
    und = understanding(kind)
    ctx = compose.Context(sha256=f"{n:032x}" * 2, received_at=WHEN)
    email = compose.acknowledge(cfg, ctx, Action("acknowledge", (sender,)), who, und)
    enqueue(conn, cfg, email=email, purpose=Purpose.ACKNOWLEDGE, recipients=[sender],
            allowed=allowed, answering=Answering.of_mail(who, und, WHEN))


def test_automatic_replies_are_limited_per_sender_and_per_domain(
        tmp_path: Path, engine: Engine, allowed: Allowed) -> None:
    """Registered mail gets up to the per-sender limit of replies a day, other mail one; a
    domain gets no more than its limit whoever writes from it."""
    cfg = make_config(tmp_path)
    limits = replace(cfg.limits)  # a copy; the keys are set whether or not config has them
    object.__setattr__(limits, "replies_per_sender_per_day", 3)
    object.__setattr__(limits, "replies_per_domain_per_day", 4)
    cfg = replace(cfg, limits=limits)

    with engine.begin() as conn:
        for n in range(3):
            _acknowledge(conn, cfg, allowed, SENDER, Kind.DOCUMENT, n)
        with pytest.raises(RecipientRefused, match="limit 3"):
            _acknowledge(conn, cfg, allowed, SENDER, Kind.DOCUMENT, 3)
        _acknowledge(conn, cfg, allowed, "tran.thi.b@gmail.com", Kind.REPLY, 4)
        with pytest.raises(RecipientRefused, match="limit 1"):
            _acknowledge(conn, cfg, allowed, "tran.thi.b@gmail.com", Kind.REPLY, 5)
        with pytest.raises(RecipientRefused, match=r"gmail\.com today"):
            _acknowledge(conn, cfg, allowed, "le.van.c@gmail.com", Kind.DOCUMENT, 6)
        _acknowledge(conn, cfg, allowed, "vanthu@snv.tayninh.gov.vn", Kind.DOCUMENT, 7)

    assert len(rows(engine)) == 5


def test_default_reply_limits_apply_without_the_config_keys(cfg: config.Config,
                                                            engine: Engine,
                                                            allowed: Allowed) -> None:
    """Without the limits in the configuration, five replies a sender and day are allowed."""
    with engine.begin() as conn:
        for n in range(5):
            _acknowledge(conn, cfg, allowed, SENDER, Kind.DOSSIER, n)
        with pytest.raises(RecipientRefused, match="limit 5"):
            _acknowledge(conn, cfg, allowed, SENDER, Kind.DOSSIER, 5)


def _case(conn: Connection, applicant: str | None = SENDER, authenticated: bool = False) -> Any:
    now = utcnow()
    pk = conn.execute(insert(messages).values(
        sha256="f" * 64, size=1, mailbox="agency", header_message_id="<abc.123@gmail.com>",
        subject="Hồ sơ", sender=f"Bùi Văn Toàn <{SENDER}>", stored_at=now, state=State.DONE,
        kind="dossier", understanding={"authenticated": authenticated},
        updated_at=now)).inserted_primary_key[0]  # type: ignore[index]
    case_id = conn.execute(insert(cases).values(
        code="000.00.22.H56-261123-0001", opened_at=now, status="received",
        applicant_name="Bùi Văn Toàn", applicant_email=applicant, procedure="Cấp phép",
        message_id=pk, deadline=WHEN.date() + timedelta(days=10),
    )).inserted_primary_key[0]  # type: ignore[index]
    return conn.execute(select(cases).where(cases.c.id == case_id)).one()


def test_answers_go_to_the_address_on_record(cfg: config.Config, engine: Engine,
                                             allowed: Allowed) -> None:
    """A result or supplement request may go to the case's registered applicant, and to no
    one else outside the agency."""
    with engine.begin() as conn:
        case = _case(conn)
        answering = Answering.of_record(conn, case_id=case.id)
        for purpose in (Purpose.RESULT, Purpose.SUPPLEMENT, Purpose.APOLOGY):
            assert refusal(conn, cfg, purpose=purpose, address=SENDER, allowed=allowed,
                           answering=answering) is None
            assert refusal(conn, cfg, purpose=purpose, address="thief@gmail.com",
                           allowed=allowed, answering=answering) is not None
        assert refusal(conn, cfg, purpose=Purpose.REMINDER, address=SENDER, allowed=allowed,
                       answering=answering) is not None


def test_a_letter_to_a_case_without_applicant_is_an_error_for_the_clerk(
        cfg: config.Config, engine: Engine) -> None:
    """A supplement request for a case without an applicant address raises RecipientRefused
    and queues nothing."""
    with engine.begin() as conn:
        case = _case(conn, applicant=None)
        with pytest.raises(RecipientRefused, match="empty"):
            letters.supplement_request(conn, cfg, case, ["Bản vẽ"], WHEN.date(), None)

    assert rows(engine) == []


def test_allowed_holds_every_address_the_rules_name(cfg: config.Config) -> None:
    """People, departments, rule addresses, higher authority and the digest's addresses."""
    ruleset = rules_module.load(RULES)
    cfg = replace(cfg, digest=replace(cfg.digest, to=("chanh_van_phong", "BAOCAO@example.vn")))

    allowed = Allowed.of(ruleset, cfg)

    assert {p.email for p in ruleset.people.values()} <= allowed.addresses
    assert {d.email for d in ruleset.departments.values()} <= allowed.addresses
    assert {a.lower() for a in ruleset.higher_authority} <= allowed.addresses
    assert {a for r in ruleset.rules for s in r.then for a in s.targets.addresses} \
        <= allowed.addresses
    assert "baocao@example.vn" in allowed and SENDER not in allowed


# --- a poisoned row does not block the others ---------------------------------------------


def test_poisoned_row_never_blocks_the_rows_behind_it(tmp_path: Path, smtp: SmtpSink) -> None:
    """An old row for an internationalised address (and one with a CR/LF) fails with its
    reason; every email behind it reaches the real SMTP server in the same drain."""
    cfg = make_config(tmp_path, port=smtp.port)
    engine = make_engine(cfg.storage.url)
    upgrade(engine)
    with engine.begin() as conn:
        raw_row(conn, ["người.dân@ví-dụ.vn"], 1)
        raw_row(conn, ["a@example.gov.vn\r\nRCPT TO:<x@evil.example>"], 2)
        for n in range(3, 6):
            raw_row(conn, [f"user{n}@example.gov.vn"], n)

    sent = asyncio.run(Sender(engine, cfg.smtp).drain())

    assert sent == 3
    assert sorted(r for m in smtp.messages() for r in m.rcpt_tos) == [
        "user3@example.gov.vn", "user4@example.gov.vn", "user5@example.gov.vn"]
    first, second, *rest = rows(engine)
    assert first.state == second.state == OutboxState.FAILED
    assert "ASCII" in first.last_error and "line break" in second.last_error
    assert all(r.state == OutboxState.SENT for r in rest)
    assert asyncio.run(Sender(engine, cfg.smtp).drain()) == 0  # nothing retried forever
    engine.dispose()


def test_refused_at_creation_leaves_the_queue_flowing(tmp_path: Path, smtp: SmtpSink,
                                                      allowed: Allowed) -> None:
    """An email for an internationalised address is refused by enqueue; the emails queued
    before and after it are sent."""
    cfg = make_config(tmp_path, port=smtp.port)
    engine = make_engine(cfg.storage.url)
    upgrade(engine)
    with engine.begin() as conn:
        enqueue(conn, cfg, email=forward(cfg, sha="1" * 64), purpose=Purpose.FORWARD,
                recipients=[DIRECTOR], allowed=allowed)
    with engine.begin() as conn, pytest.raises(RecipientRefused):
        enqueue(conn, cfg, email=forward(cfg, sha="2" * 64), purpose=Purpose.FORWARD,
                recipients=["giám.đốc@ví-dụ.vn"], allowed=allowed)
    with engine.begin() as conn:
        enqueue(conn, cfg, email=forward(cfg, to=(CHIEF,), sha="3" * 64),
                purpose=Purpose.FORWARD, recipients=[CHIEF], allowed=allowed)

    assert asyncio.run(Sender(engine, cfg.smtp).drain()) == 2

    assert [m.rcpt_tos for m in smtp.messages()] == [[DIRECTOR], [CHIEF]]
    engine.dispose()


# --- every kind of email, one envelope ------------------------------------------------------


def every_kind(conn: Connection, cfg: config.Config, allowed: Allowed, subject: str,
               name: str) -> None:
    """Queue one email of every kind vanthu writes, in the caller's transaction."""
    case = _case(conn, authenticated=True)
    who = mail(subject=subject, name=name)
    answering = Answering.of_mail(who, understanding(), WHEN)
    # An acknowledgement of a reply first: other automatic replies go once a sender and day.
    document = compose.Context(sha256="c" * 64, received_at=WHEN)
    email = compose.acknowledge(cfg, document, Action("acknowledge", (SENDER,)), who,
                                understanding(Kind.REPLY))
    enqueue(conn, cfg, email=email, purpose=Purpose.ACKNOWLEDGE, recipients=[SENDER],
            allowed=allowed, answering=replace(answering, kind=Kind.REPLY))
    ctx = compose.Context(sha256="b" * 64, received_at=WHEN, book="incoming", number=3,
                          year=2026, case_code=case.code, appointment=WHEN.date())
    for action, kind in (("forward", Kind.DOCUMENT), ("notify", Kind.DOCUMENT),
                         ("assign", Kind.DOCUMENT), ("acknowledge", Kind.DOSSIER)):
        to = (SENDER,) if action == "acknowledge" else (DIRECTOR, CHIEF)
        email = compose.COMPOSERS[action](cfg, ctx, Action(action, to, name), who,
                                          understanding(kind))
        enqueue(conn, cfg, email=email, purpose=Purpose(action), recipients=to,
                allowed=allowed, answering=answering)
    email = compose.result(cfg, pdf_sha256="d" * 64, pdf_name=f"{name}.pdf", pdf=b"%PDF-1.4",
                           to=SENDER, case_code=case.code, in_reply_to=who.message_id,
                           outgoing=f"15/{name}", summary=subject, sent_at=WHEN)
    enqueue(conn, cfg, email=email, purpose=Purpose.RESULT, recipients=[SENDER],
            allowed=Allowed.nobody(), answering=Answering.of_record(conn, case_id=case.id))
    report = digest.Digest(subject=f"Báo cáo văn thư: {subject}", text=subject, html=subject)
    recipients = [DIRECTOR, CHIEF]
    enqueue(conn, cfg, email=digest.compose(cfg, report, recipients, "2026-11-23T06:00", WHEN),
            purpose=Purpose.DIGEST, recipients=recipients, allowed=allowed)
    case = replace_case(case, procedure=subject, applicant_name=name)
    letters.supplement_request(conn, cfg, case, [subject], WHEN.date(), who.message_id,
                               allowed=allowed)
    letters.apology(conn, cfg, case, WHEN.date() + timedelta(days=20), subject,
                    who.message_id, allowed=allowed)
    letters.reminder(conn, cfg, case, [CHIEF], 2, WHEN.date(), allowed=allowed)
    letters.assignment(conn, cfg, case, ["qlxd.sxd@example.gov.vn"], name, WHEN.date(), WHEN,
                       allowed=allowed)
    withheld = Attachment(f"{name}.pdf", "application/pdf", 8, "e" * 64, b"%PDF-1.4",
                          withheld="active content: PDF contains /JavaScript")
    email = compose.release(cfg, ctx, item=withheld, to=(DIRECTOR, CHIEF), subject=subject,
                            in_reply_to=compose.message_id(cfg, ctx.sha256, "forward"),
                            actor=name, released_at=WHEN)
    enqueue(conn, cfg, email=email, purpose=Purpose.RELEASE, recipients=[DIRECTOR, CHIEF],
            allowed=allowed)


def replace_case(case: Any, **values: Any) -> Any:
    """A copy of a case row with some columns changed, as the letters read them."""
    return SimpleNamespace(**{**case._asdict(), **values})


AUTO_SUBMITTED = {"acknowledge": "auto-replied", "result": "no"}


def assert_well_formed(cfg: config.Config, raw: bytes, allowed: Allowed) -> EmailMessage:
    """The checks a receiver's parser would make, on the stored bytes."""
    parsed = message_from_bytes(raw, policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    for part in parsed.walk():
        assert not part.defects
        for header, value in part.items():
            assert not getattr(value, "defects", ()), (header, value)
            assert not any(c in str(value) for c in "\r\n\x00\u2028\u2029\x85"), header
    for header in ("From", "To", "Subject", "Date", "Message-ID", "Auto-Submitted",
                   "X-Vanthu-Action"):
        assert len(parsed.get_all(header) or []) == 1, header
    action = str(parsed["X-Vanthu-Action"])
    assert str(parsed["Auto-Submitted"]) == AUTO_SUBMITTED.get(action, "auto-generated")
    senders = parsed["From"].addresses
    assert [a.addr_spec for a in senders] == [cfg.smtp.from_address]
    for address in parsed["To"].addresses:
        assert address.addr_spec in allowed or address.addr_spec == SENDER
    return parsed


def test_every_kind_of_email_has_one_envelope(cfg: config.Config, engine: Engine,
                                              allowed: Allowed) -> None:
    """Forward, notice, assignment, receipt, acknowledgement, result, digest, supplement
    request, apology and reminder each carry exactly one Auto-Submitted and well-formed
    headers; a result says `Auto-Submitted: no` and asks for replies to the agency."""
    with engine.begin() as conn:
        every_kind(conn, cfg, allowed, "Hồ sơ cấp phép", "Bùi Văn Toàn")

    found = {str(assert_well_formed(cfg, r.raw, allowed)["X-Vanthu-Action"]): r
             for r in rows(engine)}
    assert set(found) == {p.value for p in Purpose}
    result = message_from_bytes(found["result"].raw, policy=policy.default)
    assert found["result"].raw.count(b"Auto-Submitted:") == 1
    assert str(result["Reply-To"]) == FROM
    assert str(result["In-Reply-To"]) == "<abc.123@gmail.com>"


_VIETNAMESE = "ăâđêôơưáàảãạắằẳẵặấầẩẫậéèẻẽẹếềểễệíìỉĩịóòỏõọốồổỗộớờởỡợúùủũụứừửữựýỳỷỹỵ"
_NAMES = st.text(st.sampled_from(list(_VIETNAMESE + _VIETNAMESE.upper()
                                      + "abcdefghiklmnopqrstuvxy SXDVT\"',@<>;:()\\.=?_-")),
                 min_size=0, max_size=120)
_SUBJECTS = st.lists(st.one_of(st.sampled_from(list(_VIETNAMESE + " ABCxyz:[]\"=?")),
                               st.sampled_from(["\r", "\n", "\r\n", "\x00", "\u2028",
                                                "\u2029", "\x85", "\t",
                                                "=?utf-8?q?=0D=0ABcc:_a@b?="])),
                     max_size=300).map("".join)


def display_name(raw: bytes) -> str:
    """The From display name as an RFC 2047 reader shows it. (The modern policy's parser
    keeps the folding space between two encoded words of a phrase, which RFC 2047 §6.2 and
    mail readers drop; `email.header.decode_header` follows the RFC.)"""
    head = raw.split(b"\r\n\r\n", 1)[0].decode("ascii").replace("\r\n ", " ")
    value = next(line for line in head.split("\r\n") if line.startswith("From: "))[6:]
    phrase, _, _ = value.rpartition("<")
    return str(make_header(decode_header(phrase.strip())))


def test_headers_parse_back_well_formed_whatever_the_names_and_subjects(
        cfg: config.Config, engine: Engine, allowed: Allowed) -> None:
    """With any display name in `[smtp] from` and any agency name (Vietnamese, quotes,
    commas, '@', '<>', very long) and any mail subject (CR, LF, NUL, U+2028), every kind of
    email parses back without a defect, from our address, to allowed recipients only."""

    @settings(max_examples=25, deadline=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(from_name=_NAMES, agency=_NAMES, subject=_SUBJECTS, name=_NAMES)
    def check(from_name: str, agency: str, subject: str, name: str) -> None:
        named = replace(cfg, smtp=replace(cfg.smtp, from_name=from_name),
                        agency=replace(cfg.agency, name=agency or "Sở Xây dựng"))
        with engine.connect() as conn:
            transaction = conn.begin()
            every_kind(conn, named, allowed, subject, name)
            raws = list(conn.scalars(select(outbox_bodies.c.raw)))
            transaction.rollback()

        assert len(raws) == len(Purpose) + 2  # two acknowledgements, two assignments
        for raw in raws:
            assert_well_formed(named, raw, allowed)
            assert display_name(raw) == header_safe(from_name or named.agency.name)

    check()


def test_a_vietnamese_mailbox_in_the_config_is_encoded(tmp_path: Path) -> None:
    """`from = "Văn thư Sở Xây dựng, Tây Ninh <…>"` gives an RFC 2047 display name and our
    bare address, on lines a mail server accepts."""
    cfg = make_config(tmp_path, from_=f'"Văn thư Sở Xây dựng, Tây Ninh" <{FROM}>')

    raw = forward(cfg).as_bytes()

    head = raw.split(b"\r\n\r\n")[0]
    assert head.isascii() and max(len(line) for line in head.split(b"\r\n")) <= 78
    sender = message_from_bytes(raw, policy=policy.default)["From"].addresses[0]
    assert (sender.display_name, sender.addr_spec) == ("Văn thư Sở Xây dựng, Tây Ninh", FROM)


# --- status ------------------------------------------------------------------------------


def _status(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any]]:
    code = main(["--config", str(path), "status", "--json"])
    return code, json.loads(capsys.readouterr().out)


def test_status_is_unhealthy_with_the_cause(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """A failed row, a row stuck in retries and a refused recipient each make `vanthu status`
    exit 1 and say why; pending rows show their last error."""
    cfg = make_config(tmp_path, write=True)
    path = tmp_path / "config.toml"
    engine = make_engine(cfg.storage.url)
    upgrade(engine)
    with engine.begin() as conn:
        raw_row(conn, ["a@example.gov.vn"], 1)

    code, report = _status(path, capsys)
    assert code == 0 and report["healthy"] and report["problems"] == []

    old = utcnow() - timedelta(hours=1)
    with engine.begin() as conn:
        conn.execute(update(outbox).values(attempts=2, last_error="451 4.3.0 try later",
                                           created_at=old))
    code, report = _status(path, capsys)
    assert code == 1 and "waiting more than 15 minutes" in report["problems"][0]
    assert report["outbox_pending"][0]["last_error"] == "451 4.3.0 try later"

    with engine.begin() as conn:
        conn.execute(update(outbox).values(state=OutboxState.SENT, sent_at=utcnow(),
                                           refused={"b@example.gov.vn": "550 no such user"}))
        raw_row(conn, ["c@example.gov.vn"], 2)
        conn.execute(update(outbox).where(outbox.c.id == 2).values(
            state=OutboxState.FAILED, last_error="cannot be sent: not ASCII"))
    code, report = _status(path, capsys)
    assert code == 1 and not report["healthy"]
    assert any("1 outgoing email(s) failed" in p and "not ASCII" in p
               for p in report["problems"])
    assert any("b@example.gov.vn: 550 no such user" in p for p in report["problems"])
    assert report["outbox"] == {"failed": 1, "sent": 1}

    assert main(["--config", str(path), "status"]) == 1
    text = capsys.readouterr().out
    assert "Vấn đề cần xử lý:" in text and "cannot be sent: not ASCII" in text
    engine.dispose()


def test_health_reads_nothing_wrong_from_a_quiet_outbox(engine: Engine) -> None:
    """Rows just queued, or sent, are no problem."""
    with engine.begin() as conn:
        raw_row(conn, ["a@example.gov.vn"], 1)
        raw_row(conn, ["b@example.gov.vn"], 2)
        conn.execute(update(outbox).where(outbox.c.id == 2).values(
            state=OutboxState.SENT, attempts=1, tries_begun=1, delivered=["b@example.gov.vn"]))

    with engine.connect() as conn:
        found = health(conn, utcnow() + timedelta(minutes=14))

    assert found.problems == [] and found.pending == [] and found.stuck == []


@pytest.mark.parametrize("minutes", [5.0, 15.0, 90.0])
def test_health_overdue_after_the_configured_minutes(engine: Engine, minutes: float) -> None:
    """A row pending longer than [status] outbox_overdue_minutes is overdue, tried or not (an
    email nobody tried for that long has nobody sending it); not a moment before."""
    with engine.begin() as conn:
        raw_row(conn, ["a@example.gov.vn"], 1)
        created = conn.execute(select(outbox.c.created_at)).scalar_one()

    with engine.connect() as conn:
        before = health(conn, created + timedelta(minutes=minutes - 0.5), minutes)
        after = health(conn, created + timedelta(minutes=minutes + 0.5), minutes)

    assert before.stuck == [] and before.problems == []
    assert [r["id"] for r in after.stuck] == [1]
    assert after.problems == [f"1 outgoing email(s) waiting more than {minutes:g} minutes since "
                              f"{created.isoformat()}; last error: None"]


def test_health_names_rows_in_doubt_and_refusals_of_pending_rows(engine: Engine) -> None:
    """A row failed with tries that may have delivered it is named apart (check before
    resending); a recipient refused for good on a row still pending for the others is
    reported per recipient at once."""
    director = DIRECTOR
    with engine.begin() as conn:
        raw_row(conn, ["a@example.gov.vn"], 1)
        raw_row(conn, ["b@example.gov.vn", director], 2)
        conn.execute(update(outbox).where(outbox.c.id == 1).values(
            state=OutboxState.FAILED, attempts=0, tries_begun=2,
            last_error="in doubt: 2 tries may have delivered it"))
        conn.execute(update(outbox).where(outbox.c.id == 2).values(
            attempts=1, tries_begun=1, refused={director: "550 5.1.1 no such user"},
            last_error="b@example.gov.vn: 451 4.2.0 later"))

    with engine.connect() as conn:
        found = health(conn, utcnow())

    assert [(r["id"], r["doubts"]) for r in found.in_doubt] == [(1, 2)]
    assert any("may have been delivered" in p and "<1.old@sxd.example.gov.vn>" in p
               for p in found.problems)
    assert [r["id"] for r in found.refused] == [2]
    assert f"{director}: 550 5.1.1 no such user" in found.problems[-1]
    assert found.as_json()["in_doubt"][0]["message_id"] == "<1.old@sxd.example.gov.vn>"
