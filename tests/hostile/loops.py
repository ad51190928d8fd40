"""Mail loops (RFC 3834): machines that answer vanthu's answers. Each of these mails, answered,
would start or feed a loop: a portal that returns every mail with the original attached, a
delivery failure report written as plain text, a responder marked only by X-Loop or by a second
Auto-Submitted header. None may be registered or answered. The last attack is the other side:
a citizen's dossier that merely talks about undelivered mail is still a dossier.

The portal's full round trip (our receipt really sent, then returned five times) needs a prior
state and is in tests/test_loops.py; here the returned receipt carries a Message-ID of the form
vanthu writes, which vanthu must know as its own without looking it up.
"""

from __future__ import annotations

from collections.abc import Callable
from email.message import EmailMessage
from email.policy import SMTP

from tests.conftest import AUTHSERV_ID
from tests.desk import FORM
from tests.hostile import Attack, Outcome

AGENCY = "vanthu.sxd@tayninh.gov.vn"
OURS = "vanthu@localhost"  # [smtp] from of the test desk
OUR_ID_DOMAIN = "vanthu.invalid"  # [agency] message_id_domain of the test desk
DOSSIER_SUBJECT = "Hồ sơ đề nghị cấp giấy phép xây dựng"
DOSSIER_BODY = ("Kính gửi Sở Xây dựng,\nTôi xin nộp hồ sơ đề nghị cấp giấy phép xây dựng "
                "nhà ở riêng lẻ, đơn đề nghị đính kèm.\nTrân trọng.")


def letter(sender: str, subject: str, body: str, *, headers: tuple[tuple[str, str], ...] = (),
           pdf: bool = True, carry: EmailMessage | None = None, message_id: str | None = None,
           authenticated: bool = True) -> EmailMessage:
    """A mail as the agency's receiving server hands it over, its sender authenticated (so
    that only its kind can stop an answer), with `headers` added after the usual ones, the
    blank application form attached and `carry` attached as a message/rfc822 part."""
    domain = sender.rpartition("@")[2].rstrip(">")
    verdict = "pass" if authenticated else "fail"
    msg = EmailMessage(policy=SMTP)
    msg["Authentication-Results"] = (f"{AUTHSERV_ID}; dkim={verdict} header.d={domain}; "
                                     f"dmarc={verdict} header.from={domain}")
    msg["From"] = sender
    msg["To"] = AGENCY
    msg["Subject"] = subject
    msg["Date"] = "Tue, 10 Nov 2026 09:00:00 +0700"
    msg["Message-ID"] = message_id or f"<{abs(hash((sender, subject, body, headers)))}@{domain}>"
    for name, value in headers:
        msg[name] = value
    msg.set_content(body)
    if pdf:
        msg.add_attachment(FORM, maintype="application", subtype="pdf",
                           filename="Don de nghi cap giay phep.pdf")
    if carry is not None:
        msg.add_attachment(carry)
    return msg


def our_receipt(message_id: str = f"<{'7' * 32}.acknowledge@{OUR_ID_DOMAIN}>") -> EmailMessage:
    """vanthu's receipt slip as a responder would return it: dossier words and a PDF, so read
    as a mail of its own it would look like a new dossier."""
    msg = EmailMessage(policy=SMTP)
    msg["From"] = f"Văn thư <{OURS}>"
    msg["To"] = "cong.dvc@dichvucong.tayninh.gov.vn"
    msg["Subject"] = "[STC-261110-0001] Giấy tiếp nhận hồ sơ và hẹn trả kết quả"
    msg["Date"] = "Tue, 10 Nov 2026 09:01:00 +0700"
    msg["Message-ID"] = message_id
    msg["Auto-Submitted"] = "auto-replied"
    msg.set_content("Sở Xây dựng đã tiếp nhận hồ sơ đề nghị cấp giấy phép xây dựng của ông/bà.")
    msg.add_attachment(FORM, maintype="application", subtype="pdf",
                       filename="Giay tiep nhan ho so.pdf")
    return msg


def _bytes(msg: EmailMessage) -> Callable[[], bytes]:
    return lambda: msg.as_bytes()


def _machine(*kinds: str) -> Callable[[Outcome], None]:
    """Machine mail: of one of `kinds`, in no case, and nothing at all sent."""
    def check(outcome: Outcome) -> None:
        assert outcome.row.kind in kinds, (outcome.row.kind, outcome.row.understanding)
        assert outcome.row.case_id is None
        assert outcome.purposes() == []
    return check


def _answered_dossier(outcome: Outcome) -> None:
    assert outcome.row.kind == "dossier", outcome.row.understanding
    assert "acknowledge" in outcome.purposes()


PORTAL = "Cổng Dịch vụ công <cong.dvc@dichvucong.tayninh.gov.vn>"
PORTAL_BODY = ("Hệ thống đã nhận thư của quý vị về hồ sơ thủ tục hành chính. "
               "Thư gốc được đính kèm.")
NDR_BODY = ("This is the mail system at host mx.example.vn.\n\nI'm sorry to have to inform you "
            "that your message could not be delivered.\n\n--- original message ---\n"
            + DOSSIER_BODY)


ATTACKS = [
    Attack(
        name="loop-portal-returns-our-receipt-attached",
        tries="a portal answers vanthu's receipt with the receipt attached (message/rfc822), "
              "marking nothing",
        shows="vanthu knows its own Message-ID inside: machine mail, no case, no new receipt",
        build=_bytes(letter(PORTAL, "Thông báo tiếp nhận thư", PORTAL_BODY, pdf=False,
                            carry=our_receipt())),
        check=_machine("auto"),
    ),
    Attack(
        name="loop-our-own-forward-comes-back",
        tries="vanthu's own forward comes back to its mailbox (a redirect), its Message-ID ours",
        shows="our own email is machine mail: not registered, not answered",
        build=_bytes(letter("nguoi.dan@gmail.com", DOSSIER_SUBJECT, DOSSIER_BODY,
                            message_id=f"<{'a' * 32}.forward@{OUR_ID_DOMAIN}>")),
        check=_machine("auto"),
    ),
    Attack(
        name="loop-report-quotes-our-headers",
        tries="a relay reports on our receipt in a text/rfc822-headers part, in plain "
              "multipart/mixed, from an ordinary address",
        shows="the quoted Message-ID is ours: machine mail, nothing sent",
        build=lambda: _quoting_headers().as_bytes(),
        check=_machine("auto", "bounce"),
    ),
    Attack(
        name="ndr-plain-text-postfix",
        tries="a plain-text 'Undelivered Mail Returned to Sender' from MAILER-DAEMON, without "
              "DSN parts, quoting a dossier and carrying its PDF",
        shows="a bounce: not registered, not answered",
        build=_bytes(letter("MAILER-DAEMON@mx.example.vn", "Undelivered Mail Returned to Sender",
                            NDR_BODY)),
        check=_machine("bounce"),
    ),
    Attack(
        name="ndr-plain-text-gmail",
        tries="'Delivery Status Notification (Failure)' from mailer-daemon@googlemail.com as "
              "plain text",
        shows="a bounce: nothing sent",
        build=_bytes(letter("Mail Delivery Subsystem <mailer-daemon@googlemail.com>",
                            "Delivery Status Notification (Failure)", NDR_BODY)),
        check=_machine("bounce"),
    ),
    Attack(
        name="ndr-vietnamese-null-return-path",
        tries="'Thư không gửi được' from an ordinary-looking address with Return-Path: <>",
        shows="a bounce: nothing sent",
        build=_bytes(letter("Hệ thống thư <thongbao@mail.tayninh.gov.vn>", "Thư không gửi được",
                            "Thư của bạn không gửi được tới người nhận.\n" + DOSSIER_BODY,
                            headers=(("Return-Path", "<>"),))),
        check=_machine("bounce"),
    ),
    Attack(
        name="ndr-exim-failed-recipients",
        tries="Exim's 'Mail delivery failed: returning message to sender' with "
              "X-Failed-Recipients, sent from the mail host's own name",
        shows="a bounce: nothing sent",
        build=_bytes(letter("Mail Delivery System <Mailer-Daemon@mx2.example.vn>",
                            "Mail delivery failed: returning message to sender", NDR_BODY,
                            headers=(("X-Failed-Recipients", "a@example.vn"),))),
        check=_machine("bounce"),
    ),
    Attack(
        name="auto-submitted-no-then-auto-replied",
        tries="a first Auto-Submitted: no, then a second Auto-Submitted: auto-replied",
        shows="any instance other than 'no' makes it automatic: nothing sent",
        build=_bytes(letter("nguoi.dan@gmail.com", DOSSIER_SUBJECT, DOSSIER_BODY,
                            headers=(("Auto-Submitted", "no"),
                                     ("Auto-Submitted", "auto-replied")))),
        check=_machine("auto"),
    ),
    Attack(
        name="auto-submitted-uppercase-with-comment",
        tries="Auto-Submitted: AUTO-REPLIED (vacation); owner=\"x\"",
        shows="the keyword counts whatever its case, comments and parameters",
        build=_bytes(letter("nguoi.dan@gmail.com", DOSSIER_SUBJECT, DOSSIER_BODY,
                            headers=(("Auto-Submitted",
                                      'AUTO-REPLIED (vacation); owner="a@b.vn"'),))),
        check=_machine("auto"),
    ),
    Attack(
        name="auto-x-loop-only",
        tries="a responder marked only by X-Loop",
        shows="machine mail: nothing sent",
        build=_bytes(letter(PORTAL, DOSSIER_SUBJECT, DOSSIER_BODY,
                            headers=(("X-Loop", "cong.dvc@dichvucong.tayninh.gov.vn"),))),
        check=_machine("auto"),
    ),
    Attack(
        name="auto-x-loop-names-us",
        tries="a mail whose X-Loop names vanthu's own address",
        shows="certainly our own mail coming back: nothing sent",
        build=_bytes(letter(PORTAL, DOSSIER_SUBJECT, DOSSIER_BODY,
                            headers=(("X-Loop", OURS),))),
        check=_machine("auto"),
    ),
    Attack(
        name="auto-x-autogenerated-only",
        tries="a responder marked only by X-Autogenerated: Reply",
        shows="machine mail: nothing sent",
        build=_bytes(letter(PORTAL, DOSSIER_SUBJECT, DOSSIER_BODY,
                            headers=(("X-Autogenerated", "Reply"),))),
        check=_machine("auto"),
    ),
    Attack(
        name="auto-microsoft-suppress-oof",
        tries="Exchange's X-Auto-Response-Suppress: DR, OOF, AutoReply and nothing else",
        shows="machine mail: nothing sent",
        build=_bytes(letter(PORTAL, DOSSIER_SUBJECT, DOSSIER_BODY,
                            headers=(("X-Auto-Response-Suppress", "DR, OOF, AutoReply"),))),
        check=_machine("auto"),
    ),
    Attack(
        name="auto-precedence-second-instance",
        tries="Precedence: normal, then Precedence: auto_reply",
        shows="machine mail: nothing sent",
        build=_bytes(letter(PORTAL, DOSSIER_SUBJECT, DOSSIER_BODY,
                            headers=(("Precedence", "normal"), ("Precedence", "auto_reply")))),
        check=_machine("auto"),
    ),
    Attack(
        name="bulk-list-post-only",
        tries="a list message marked only by List-Post",
        shows="bulk mail: nothing sent",
        build=_bytes(letter(PORTAL, DOSSIER_SUBJECT, DOSSIER_BODY,
                            headers=(("List-Post", "<mailto:ds@lists.example.vn>"),))),
        check=_machine("bulk"),
    ),
    Attack(
        name="citizen-writes-about-undelivered-mail",
        tries="a citizen's dossier whose subject and body say the portal could not send it "
              "('Thư không gửi được …', 'could not be delivered')",
        shows="words are no machine mark: a dossier, registered and acknowledged",
        build=_bytes(letter("nguoi.dan@gmail.com",
                            "Re: Thư không gửi được qua cổng, xin nộp hồ sơ qua thư điện tử",
                            "Thư không gửi được qua cổng dịch vụ công (could not be delivered), "
                            "nên tôi gửi qua thư điện tử.\n" + DOSSIER_BODY)),
        check=_answered_dossier,
    ),
]


def _quoting_headers() -> EmailMessage:
    msg = letter("Hệ thống chuyển thư <relay@mail.partner.vn>", "Thông báo về thư của quý vị",
                 "Thư dưới đây đã được chuyển tiếp.\n" + DOSSIER_BODY)
    head = (f"From: {OURS}\r\nTo: cong.dvc@dichvucong.tayninh.gov.vn\r\n"
            f"Subject: [STC-261110-0001] receipt\r\n"
            f"Message-ID: <{'5' * 32}.acknowledge@{OUR_ID_DOMAIN}>\r\n")
    msg.add_attachment(head.encode(), maintype="text", subtype="rfc822-headers",
                       filename="headers.txt")
    return msg
