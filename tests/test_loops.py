"""Loop safety (RFC 3834): vanthu never feeds a mail loop.

Machine mail is known by every mark a mail system leaves, in any instance of its header and
whatever its case, spacing, comments or parameters (property tests over `classify`), and by
vanthu's own Message-IDs coming back; a word in a citizen's mail never makes it a machine's.
On a real database: a portal that returns every receipt attached gets one case and one
receipt however many rounds it plays; a human reply quoting our acknowledgement is still a
reply; a sender gets at most one automatic email a day about one case.
"""

from __future__ import annotations

import logging
import time
from datetime import date, timedelta
from email import message_from_bytes
from email import policy as email_policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any, cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from daemon import config
from daemon.config import LimitsConfig
from daemon.db import cases, outbox, outbox_bodies, register_entries
from daemon.models import Kind, ParsedMail
from daemon.office import cases as cases_module
from daemon.outbound.recipients import Allowed, Answering, Purpose, domain_key, refusal
from daemon.understand import NoCases, understand
from daemon.understand.classify import (
    VANTHU_PURPOSES,
    Signals,
    classify,
    keyword,
    made_by_vanthu,
    own_trail,
)
from daemon.understand.parse import parse
from tests.desk import Desk
from tests.hostile.loops import (
    DOSSIER_BODY,
    DOSSIER_SUBJECT,
    OUR_ID_DOMAIN,
    PORTAL,
    PORTAL_BODY,
    letter,
    our_receipt,
)

LIMITS = LimitsConfig()
PLAIN = Signals(case_ref=None, case_why="", own_mail=False, authenticated=True)
CITIZEN = "nguoi.dan@gmail.com"
PORTAL_ADDRESS = "cong.dvc@dichvucong.tayninh.gov.vn"
BASE = letter(CITIZEN, DOSSIER_SUBJECT, DOSSIER_BODY).as_bytes()


def _with(lines: list[str], base: bytes = BASE) -> bytes:
    """`base` with raw header lines put on top, exactly as written (case, spacing, folds)."""
    return "".join(f"{line}\r\n" for line in lines).encode() + base


def _kind(raw: bytes, signals: Signals = PLAIN) -> tuple[Kind, str]:
    return classify(parse(raw, LIMITS), signals, None)


def test_the_base_mail_is_a_dossier() -> None:
    """Without any mark the mail the properties decorate is a citizen's dossier: every
    'machine' outcome below comes from the header added, nothing else."""
    assert _kind(BASE)[0] is Kind.DOSSIER
    assert _kind(_with(["Auto-Submitted: no", "Precedence: first-class"]))[0] is Kind.DOSSIER


# --- header variants ------------------------------------------------------------------------


def _cased(word: str) -> st.SearchStrategy[str]:
    """`word` in any mix of upper and lower case."""
    return st.lists(st.booleans(), min_size=len(word), max_size=len(word)).map(
        lambda flips: "".join(c.upper() if up else c.lower() for c, up in zip(word, flips,
                                                                              strict=True)))


SPACE = st.sampled_from(["", " ", "   ", "\t", "\r\n ", " \r\n\t"])
COMMENT = st.sampled_from(["", " (vacation)", "(x)", " (nested (comment) here)",
                           " (auto-replied)", " (no)"])
PARAMS = st.sampled_from(["", '; owner-email="a@b.vn"', ";x=y", " ; reason=vacation"])


@st.composite
def _instance(draw: st.DrawFn, name: str, word: str) -> str:
    """One header line: `name` in any case, `word` in any case, with spacing, a comment and
    parameters around it."""
    return (f"{draw(_cased(name))}:{draw(SPACE)}{draw(COMMENT)}{draw(_cased(word))}"
            f"{draw(COMMENT)}{draw(PARAMS)}{draw(SPACE).rstrip()}")


AUTO_WORDS = st.sampled_from(["auto-replied", "auto-generated", "auto-notified",
                              "auto-forwarded", "auto-anything"])


@settings(max_examples=150, deadline=None)
@given(data=st.data(), autos=st.integers(0, 2), nos=st.integers(0, 3))
def test_auto_submitted_in_any_instance(data: st.DataObject, autos: int, nos: int) -> None:
    """Any Auto-Submitted other than 'no', first or last of several, in any case, with
    comments (even one saying 'auto-replied' beside a 'no') and parameters: automatic."""
    lines = [data.draw(_instance("Auto-Submitted", data.draw(AUTO_WORDS))) for _ in range(autos)]
    lines += [data.draw(_instance("Auto-Submitted", "no")) for _ in range(nos)]
    lines = data.draw(st.permutations(lines))

    kind, why = _kind(_with(list(lines)))

    assert kind is (Kind.AUTO if autos else Kind.DOSSIER), (lines, why)


@settings(max_examples=100, deadline=None)
@given(data=st.data(), word=st.sampled_from(["bulk", "list", "junk", "auto_reply", "auto-reply",
                                             "normal", "first-class", "urgent"]),
       before=st.sampled_from(["", "normal", "first-class"]))
def test_precedence_in_any_instance(data: st.DataObject, word: str, before: str) -> None:
    """Precedence bulk/list/junk is bulk mail and auto_reply an automatic one, also as a
    second instance; any other value is no mark."""
    lines = [data.draw(_instance("Precedence", before))] if before else []
    lines.append(data.draw(_instance("Precedence", word)))

    kind, why = _kind(_with(lines))

    want = {"bulk": Kind.BULK, "list": Kind.BULK, "junk": Kind.BULK, "auto_reply": Kind.AUTO,
            "auto-reply": Kind.AUTO}.get(word, Kind.DOSSIER)
    assert kind is want, (lines, why)


@settings(max_examples=100, deadline=None)
@given(data=st.data(), tokens=st.lists(st.sampled_from(["All", "OOF", "AutoReply", "DR", "RN",
                                                        "NRN"]), min_size=1, max_size=4),
       separator=st.sampled_from([",", ", ", " , ", ",\r\n "]))
def test_microsoft_suppression(data: st.DataObject, tokens: list[str], separator: str) -> None:
    """X-Auto-Response-Suppress with All, OOF or AutoReply is Microsoft's automatic mail; DR,
    RN and NRN alone (receipts, which people's clients suppress too) are no mark."""
    value = separator.join(data.draw(_cased(t)) for t in tokens)
    line = f"{data.draw(_cased('X-Auto-Response-Suppress'))}: {value}"

    kind, why = _kind(_with([line]))

    machine = bool({t.lower() for t in tokens} & {"all", "oof", "autoreply"})
    assert kind is (Kind.AUTO if machine else Kind.DOSSIER), (line, why)


@settings(max_examples=100, deadline=None)
@given(data=st.data(),
       name=st.sampled_from(["X-Autoreply", "X-Autorespond", "X-Auto-Reply", "X-Autogenerated",
                             "X-Loop"]),
       value=st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7e), max_size=40))
def test_responder_flags_with_any_value(data: st.DataObject, name: str, value: str) -> None:
    """X-Autoreply, X-Autorespond, X-Autogenerated and X-Loop mark automatic mail whatever
    they say, in any case, placed anywhere in the header."""
    line = f"{data.draw(_cased(name))}: {value}"

    kind, why = _kind(_with([line]))

    assert kind is Kind.AUTO, (line, why)


@settings(max_examples=60, deadline=None)
@given(data=st.data(), name=st.sampled_from(["List-Id", "List-Unsubscribe", "List-Post",
                                             "List-Help", "List-Subscribe", "List-Owner",
                                             "List-Archive", "List-Unsubscribe-Post"]))
def test_list_headers(data: st.DataObject, name: str) -> None:
    """Every mailing-list header (RFC 2369, 2919, 8058) makes bulk mail on its own."""
    line = f"{data.draw(_cased(name))}: <mailto:list@lists.example.vn>"

    assert _kind(_with([line]))[0] is Kind.BULK


@pytest.mark.parametrize(("value", "want"), [
    ("auto-replied (vacation)", "auto-replied"),
    ('Auto-Generated; owner-email="x@y.vn"', "auto-generated"),
    ("no (but (nested) auto-replied)", "no"),
    ("(leading) No", "no"),
    ("no (unclosed", "no"),
    ("", ""),
])
def test_keyword(value: str, want: str) -> None:
    assert keyword(value) == want


def test_nested_comments_cost_one_pass() -> None:
    """Fifty Auto-Submitted headers, each 16 KB of nested comments around 'no': read in one
    pass each (a rescan per comment level took minutes), and still 'no'."""
    nest = 7000  # 14 KB: under the 16 KB kept of a header value
    lines = [f"Auto-Submitted: {'(' * nest}{')' * nest} no" for _ in range(50)]
    mail = parse(_with(lines), LIMITS)

    started = time.monotonic()
    kind, why = classify(mail, PLAIN, None)

    assert time.monotonic() - started < 5, "linear: about 50 ms on a slow machine"
    assert kind is Kind.DOSSIER, why


# --- delivery failure reports ----------------------------------------------------------------

NDR_SUBJECTS = [
    "Undelivered Mail Returned to Sender", "Delivery Status Notification (Failure)",
    "Delivery Status Notification (Delay)", "Mail delivery failed: returning message to sender",
    "Returned mail: see transcript for details", "Undeliverable: Hồ sơ đề nghị",
    "failure notice", "Thư không gửi được", "THU KHONG GUI DUOC", "Thư bị trả lại",
    "Gửi thư không thành công", "Message not delivered",
]
DAEMONS = ["MAILER-DAEMON@mx.example.vn", "mailer-daemon@googlemail.com",
           "postmaster@outlook.com", "Mail-Daemon@mx.example.vn",
           "MicrosoftExchange329e71ec88ae4615bbc36ab6ce41109e@example.vn"]


def _report(sender: str, subject: str, body: str = DOSSIER_BODY,
            headers: tuple[tuple[str, str], ...] = ()) -> bytes:
    return letter(sender, subject, body, headers=headers).as_bytes()


@pytest.mark.parametrize("subject", NDR_SUBJECTS)
@pytest.mark.parametrize("sender", DAEMONS[:3])
def test_plain_text_report_from_a_daemon(subject: str, sender: str) -> None:
    """A delivery failure report without DSN structure, quoting a dossier with its PDF."""
    assert _kind(_report(sender, subject))[0] is Kind.BOUNCE


@pytest.mark.parametrize("subject", NDR_SUBJECTS)
def test_plain_text_report_with_null_return_path(subject: str) -> None:
    raw = _report("thongbao@mail.example.vn", subject, headers=(("Return-Path", "<>"),))

    assert _kind(raw)[0] is Kind.BOUNCE


@pytest.mark.parametrize("sender", DAEMONS)
def test_daemon_text_without_report_subject(sender: str) -> None:
    """A daemon's report under a subject of its own is known by its first lines."""
    body = "This is the mail system at host mx.example.vn.\nYour message could not be delivered."

    assert _kind(_report(sender, "Thông báo", body))[0] is Kind.BOUNCE


def test_null_return_path_alone_is_a_machine() -> None:
    """Return-Path: <> means no one can be answered (RFC 3834): never answered."""
    for value in ("<>", "< >", " <> "):
        assert _kind(_with([f"Return-Path: {value}"]))[0] is Kind.AUTO
    assert _kind(_with(["Return-Path: <nguoi.dan@gmail.com>"]))[0] is Kind.DOSSIER


def test_report_subject_answering_our_email_is_a_bounce() -> None:
    """A report subject alone proves nothing, but answering our own email it does."""
    raw = _report("relay@mail.partner.vn", "Undeliverable: Giấy tiếp nhận hồ sơ")
    answering = Signals(None, "", False, True, answers=f"<{'1' * 32}.acknowledge@x.invalid>")

    assert _kind(raw)[0] is Kind.DOSSIER
    assert _kind(raw, answering)[0] is Kind.BOUNCE


REPORT_WORDS = ["Undelivered Mail Returned to Sender", "Thư không gửi được", "could not be "
                "delivered", "Delivery Status Notification", "Auto-Submitted: auto-replied",
                "This is the mail system at host", "Return-Path: <>", "X-Loop: x",
                "failure notice", "mailer-daemon@", "List-Id: x", "Precedence: bulk"]


@settings(max_examples=100, deadline=None)
@given(words=st.lists(st.sampled_from(REPORT_WORDS), min_size=1, max_size=4),
       in_subject=st.booleans())
def test_words_never_make_a_citizen_a_machine(words: list[str], in_subject: bool) -> None:
    """A citizen who writes about undelivered mail, or pastes header text in the body, or puts
    it in the subject after a word of their own, still sends a dossier."""
    said = "; ".join(words)
    subject = f"Xin nộp lại hồ sơ: {said}" if in_subject else DOSSIER_SUBJECT
    raw = letter(CITIZEN, subject, f"{said}\n{DOSSIER_BODY}\n{said}").as_bytes()

    kind, why = _kind(raw)

    assert kind is Kind.DOSSIER, why


def test_postmaster_phishing_is_not_a_bounce() -> None:
    """A forged 'postmaster' warning with no report in it is left to the spam check."""
    raw = _report("postmaster@tayninh.gov.vn", "Cảnh báo: hộp thư sắp đầy",
                  "Hộp thư của bạn sắp đầy. Các thư mới sẽ bị từ chối.")

    assert _kind(raw)[0] is not Kind.BOUNCE


# --- vanthu's own mail coming back -----------------------------------------------------------


def test_made_by_vanthu() -> None:
    """vanthu's Message-IDs are known by their form; the domain alone is not enough (an
    agency may share it with its staff's mail)."""
    assert made_by_vanthu(f"<{'a' * 32}.acknowledge@{OUR_ID_DOMAIN}>", OUR_ID_DOMAIN)
    assert made_by_vanthu("<HS-2026-000123.supplement.20261110@Vanthu.Invalid>", OUR_ID_DOMAIN)
    assert made_by_vanthu("<digest.2026-11-10T0600@vanthu.invalid>", OUR_ID_DOMAIN)
    assert not made_by_vanthu("<CAF=abc123@vanthu.invalid>", OUR_ID_DOMAIN)
    assert not made_by_vanthu(f"<{'a' * 32}.acknowledge@other.vn>", OUR_ID_DOMAIN)
    assert not made_by_vanthu("<acknowledge>", OUR_ID_DOMAIN)


def test_every_purpose_is_known_in_our_message_ids() -> None:
    """A purpose added to the outbox is known in the Message-IDs that come back."""
    assert {p.value for p in Purpose} <= VANTHU_PURPOSES


def _ours(message_id: str) -> bool:
    return message_id == "<ours@vanthu.invalid>"


def _parsed(msg: EmailMessage) -> ParsedMail:
    return parse(msg.as_bytes(), LIMITS)


def test_own_trail() -> None:
    """Our Message-ID as the mail's, carried inside it, or answered; X-Loop naming us."""
    own = ("vanthu@localhost",)
    as_ours = _parsed(letter(PORTAL, "x", "y", message_id="<ours@vanthu.invalid>"))
    carrying = _parsed(letter(PORTAL, "x", "y", carry=our_receipt("<ours@vanthu.invalid>")))
    x_loop = _parsed(letter(PORTAL, "x", "y", headers=(("X-Loop", "VANTHU@localhost"),)))
    answering = _parsed(letter(CITIZEN, "Re: x", "y", headers=(
        ("In-Reply-To", "<ours@vanthu.invalid>"),
        ("References", "<a@b.vn> <ours@vanthu.invalid>"))))
    plain = _parsed(letter(CITIZEN, "x", "y", headers=(("X-Loop", "list@lists.example.vn"),)))

    assert "của chính vanthu quay lại" in (own_trail(as_ours, _ours, own)[0] or "")
    assert "mang theo thư <ours@vanthu.invalid> của chính vanthu" in (
        own_trail(carrying, _ours, own)[0] or "")
    assert "X-Loop ghi địa chỉ của chính cơ quan" in (own_trail(x_loop, _ours, own)[0] or "")
    assert own_trail(answering, _ours, own) == (None, "<ours@vanthu.invalid>")
    assert own_trail(plain, _ours, own) == (None, None)


def test_human_reply_to_our_email_stays_a_reply() -> None:
    """Answering our email is no machine mark by itself; with one, it is machine mail."""
    reply = Signals("HS-2026-000123", "case code in the subject", False, True,
                    answers="<ours@vanthu.invalid>")
    raw = letter(CITIZEN, "Re: [HS-2026-000123] Giấy tiếp nhận", "Cảm ơn, tôi đã nhận.",
                 pdf=False).as_bytes()

    assert _kind(raw, reply)[0] is Kind.REPLY
    kind, why = _kind(_with(["X-Loop: responder@x.vn"], raw), reply)
    assert kind is Kind.AUTO and "trả lời thư <ours@vanthu.invalid> của vanthu" in why


def test_inspect_knows_our_returned_receipt() -> None:
    """Without a database (`vanthu inspect`), our Message-ID is still known by its form."""
    raw = letter(PORTAL, "Thông báo tiếp nhận thư", PORTAL_BODY, pdf=False,
                 carry=our_receipt()).as_bytes()
    cfg = config.parse({}, file="t", text="", base=Path("."))
    _, und = understand(raw, cfg, NoCases())

    assert und.kind is Kind.AUTO and "mang theo thư" in und.why


# --- on a real database ----------------------------------------------------------------------


def _count(desk: Desk, table: Any, *where: Any) -> int:
    with desk.engine.connect() as conn:
        return int(conn.scalar(select(func.count()).select_from(table).where(*where)) or 0)


def _sent_to(desk: Desk, address: str) -> list[EmailMessage]:
    """Every email queued to `address`, oldest first, parsed back."""
    with desk.engine.connect() as conn:
        rows = conn.execute(select(outbox.c.recipients, outbox_bodies.c.raw)
                            .join_from(outbox, outbox_bodies)
                            .order_by(outbox.c.id)).all()
    return [message_from_bytes(bytes(r.raw), policy=email_policy.default)
            for r in rows if address in r.recipients]


def _last_row(desk: Desk) -> Any:
    return desk.rows()[-1]


def test_portal_loop_five_rounds_one_case_one_receipt(tmp_path: Path) -> None:
    """A portal answers every mail with the original attached and marks nothing. Its first
    mail is a dossier: one case, one receipt. Then it returns our latest email to it, five
    times: still one case and one receipt, each return machine mail."""
    desk = Desk(tmp_path)
    desk.receive(letter(PORTAL, DOSSIER_SUBJECT, DOSSIER_BODY).as_bytes())
    desk.process()
    assert _count(desk, cases) == 1
    assert len(_sent_to(desk, PORTAL_ADDRESS)) == 1

    for round_ in range(5):
        latest = _sent_to(desk, PORTAL_ADDRESS)[-1]
        desk.receive(letter(PORTAL, f"Thông báo tiếp nhận thư (lần {round_ + 1})", PORTAL_BODY,
                            pdf=False, carry=latest).as_bytes())
        desk.process()
        row = _last_row(desk)
        assert row.kind == "auto", row.understanding
        assert "mang theo thư" in row.understanding["why"]

    assert _count(desk, cases) == 1
    assert _count(desk, register_entries) == 1
    assert len(_sent_to(desk, PORTAL_ADDRESS)) == 1
    assert _count(desk, outbox, outbox.c.action == "acknowledge") == 1


def test_portal_returning_under_the_case_code_is_not_answered(tmp_path: Path) -> None:
    """The same portal answering under 'Re: [CODE] …' would be a reply in the case: its
    returns still carry our receipt, so they join nothing and are not answered."""
    desk = Desk(tmp_path)
    desk.receive(letter(PORTAL, DOSSIER_SUBJECT, DOSSIER_BODY).as_bytes())
    desk.process()
    receipt = _sent_to(desk, PORTAL_ADDRESS)[-1]

    for _ in range(3):
        desk.receive(letter(PORTAL, f"Re: {receipt['Subject']}", PORTAL_BODY, pdf=False,
                            carry=receipt).as_bytes())
        desk.process()
        assert _last_row(desk).kind == "auto"

    assert len(_sent_to(desk, PORTAL_ADDRESS)) == 1


@pytest.mark.parametrize(("sender", "subject", "headers"), [
    ("MAILER-DAEMON@mx.example.vn", "Undelivered Mail Returned to Sender", ()),
    ("Mail Delivery Subsystem <mailer-daemon@googlemail.com>",
     "Delivery Status Notification (Failure)", ()),
    ("thongbao@mail.example.vn", "Thư không gửi được", (("Return-Path", "<>"),)),
])
def test_plain_text_report_is_not_registered(tmp_path: Path, sender: str, subject: str,
                                             headers: tuple[tuple[str, str], ...]) -> None:
    desk = Desk(tmp_path)
    body = "Your message could not be delivered.\n--- original ---\n" + DOSSIER_BODY
    desk.receive(letter(sender, subject, body, headers=headers).as_bytes())
    desk.process()

    assert _last_row(desk).kind == "bounce"
    assert desk.entries() == []
    assert _count(desk, outbox) == 0


@pytest.mark.parametrize("headers", [
    (("X-Loop", PORTAL_ADDRESS),),
    (("Auto-Submitted", "no"), ("Auto-Submitted", "auto-replied")),
    (("Auto-Submitted", "No (a person)"), ("AUTO-SUBMITTED", "Auto-Generated (portal)")),
], ids=["x-loop-only", "no-then-auto-replied", "no-then-auto-generated-comments"])
def test_marked_responder_is_not_registered(tmp_path: Path,
                                            headers: tuple[tuple[str, str], ...]) -> None:
    desk = Desk(tmp_path)
    desk.receive(letter(PORTAL, DOSSIER_SUBJECT, DOSSIER_BODY, headers=headers).as_bytes())
    desk.process()

    assert _last_row(desk).kind == "auto"
    assert desk.entries() == [] and _count(desk, outbox) == 0


def test_human_reply_quoting_our_ack_is_a_reply(tmp_path: Path) -> None:
    """A citizen replies to our receipt, quoting it (In-Reply-To our Message-ID, the receipt's
    words in the body, no machine mark): a reply in the case, sent on to the Chief of
    Office (its acknowledgement waits: the receipt was this sender's one reply today)."""
    desk = Desk(tmp_path)
    desk.receive(letter(CITIZEN, DOSSIER_SUBJECT, DOSSIER_BODY).as_bytes())
    desk.process()
    receipt = _sent_to(desk, CITIZEN)[-1]
    quoted = "\n".join(f"> {line}" for line in receipt.get_body(("plain",))
                       .get_content().splitlines())  # type: ignore[union-attr]
    desk.receive(letter(CITIZEN, f"Re: {receipt['Subject']}",
                        f"Tôi xin bổ sung bản vẽ.\n\n{quoted}",
                        headers=(("In-Reply-To", str(receipt["Message-ID"])),
                                 ("References", str(receipt["Message-ID"])))).as_bytes())
    desk.process()

    first, reply = cast(list[Any], desk.rows())
    assert reply.kind == "reply", reply.understanding
    assert reply.case_id == first.case_id is not None
    emails: list[Any] = desk.emails_for(reply.id)
    assert [e.recipients for e in emails] == [["cvp.sxd@example.gov.vn"]]


# --- one automatic email a day per case ------------------------------------------------------


def _dossier_with_receipt(desk: Desk) -> tuple[Any, Any]:
    desk.receive(letter(CITIZEN, DOSSIER_SUBJECT, DOSSIER_BODY).as_bytes())
    desk.process()
    row = _last_row(desk)
    assert row.case_id is not None and len(_sent_to(desk, CITIZEN)) == 1
    return row, row.stored_at


def _refusal(desk: Desk, answering: Answering) -> str | None:
    with desk.engine.connect() as conn:
        return refusal(conn, desk.cfg, purpose=Purpose.ACKNOWLEDGE, address=CITIZEN,
                       allowed=Allowed.nobody(), answering=answering)


def test_one_acknowledgement_a_day_per_case(tmp_path: Path,
                                            caplog: pytest.LogCaptureFixture) -> None:
    """With room under the per-sender limit (a registered kind may get five a day), a second
    acknowledgement for the same case the same local day is refused and logged; another
    case, or the next day, is not."""
    desk = Desk(tmp_path)
    row, received = _dossier_with_receipt(desk)

    def answering(case_id: int | None, at: Any = received) -> Answering:
        return Answering(sender=CITIZEN, authenticated=True, kind=Kind.DOSSIER,
                         received_at=at, case_id=case_id)

    with caplog.at_level(logging.INFO, logger="vanthu.recipients"):
        why = _refusal(desk, answering(row.case_id))
    assert why is not None and "for this case today" in why
    assert [r for r in caplog.records if r.getMessage() == "reply.suppressed"]
    assert _refusal(desk, answering(None)) is None
    assert _refusal(desk, answering(row.case_id + 1)) is None
    assert _refusal(desk, answering(row.case_id, received + timedelta(days=1))) is None


def _receipt_sent_yesterday(desk: Desk) -> None:
    """Move the receipt to the day before: what today may send is then decided by today's
    emails alone."""
    with desk.engine.begin() as conn:
        for row in conn.execute(select(outbox.c.id, outbox.c.ack_key,
                                       outbox.c.created_at)).all():
            key = _day_before(row.ack_key) if row.ack_key else None
            conn.execute(outbox.update().where(outbox.c.id == row.id).values(
                created_at=row.created_at - timedelta(days=1), ack_key=key,
                ack_domain=domain_key(key) if key else None))


def _day_before(ack_key: str) -> str:
    address, _, day = ack_key.rpartition("|")
    return f"{address}|{date.fromisoformat(day) - timedelta(days=1)}"


def _reply(desk: Desk, code: str, n: int) -> Any:
    desk.receive(letter(CITIZEN, f"Re: [{code}] bổ sung lần {n}", f"Tôi gửi bổ sung lần {n}.",
                        pdf=False).as_bytes())
    desk.process()
    return _last_row(desk)


def _acks(desk: Desk, row: Any) -> int:
    emails: list[Any] = desk.emails_for(row.id)
    return len([e for e in emails if e.action == "acknowledge"])


def test_answers_in_a_case_one_ack_a_day(tmp_path: Path,
                                         caplog: pytest.LogCaptureFixture) -> None:
    """The receipt went yesterday. Today the applicant answers in the case twice: the first
    answer is acknowledged, the second is not (logged as reply.suppressed)."""
    desk = Desk(tmp_path)
    dossier, _ = _dossier_with_receipt(desk)
    _receipt_sent_yesterday(desk)
    code = _case_code(desk)

    with caplog.at_level(logging.INFO, logger="vanthu.recipients"):
        first, second = _reply(desk, code, 1), _reply(desk, code, 2)

    assert first.kind == second.kind == "reply"
    assert first.case_id == second.case_id == dossier.case_id
    assert (_acks(desk, first), _acks(desk, second)) == (1, 0)
    assert [r for r in caplog.records if r.getMessage() == "reply.suppressed"]


def test_supplement_request_is_the_case_email_of_the_day(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The receipt went yesterday; today the clerk asks for supplements, and the applicant
    answers at once. The request was the case's automatic email of the day: the answer joins
    the case but is not acknowledged (the per-sender count alone would have let it go)."""
    desk = Desk(tmp_path)
    dossier, _ = _dossier_with_receipt(desk)
    _receipt_sent_yesterday(desk)
    code = _case_code(desk)
    with desk.engine.begin() as conn:
        case = cases_module.find(conn, code)
        cases_module.request_supplement(conn, desk.cfg, case, ["Bản vẽ mặt bằng"],
                                        date.today(), "test")
    assert "bổ sung" in str(_sent_to(desk, CITIZEN)[-1]["Subject"])

    with caplog.at_level(logging.INFO, logger="vanthu.recipients"):
        answer = _reply(desk, code, 1)

    assert answer.kind == "reply" and answer.case_id == dossier.case_id
    assert _acks(desk, answer) == 0
    suppressed = [r for r in caplog.records if r.getMessage() == "reply.suppressed"]
    assert suppressed and "supplement" in getattr(suppressed[0], "why", "")


def _case_code(desk: Desk) -> str:
    with desk.engine.connect() as conn:
        return str(conn.scalar(select(cases.c.code)))
