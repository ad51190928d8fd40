"""Mails built to make reading them slow: each shape once cost minutes of quadratic work (a
regex trying again from every character, a value rebuilt for every line). Read linearly,
each goes through the whole pipeline in well under a few seconds and ends stored and
processed: routed, or quarantined with a clear reason, never a crash.

Sizes are those that proved the quadratic cost, scaled down where the pipeline (run here
without the worker pool) would only spend linear time on bulk: tests/test_bounded.py runs
the same shapes at full size against the readers themselves.
"""

from __future__ import annotations

from email.message import EmailMessage
from email.policy import SMTP

from tests.conftest import AUTHSERV_ID
from tests.desk import DOCUMENT, FORM, mail
from tests.hostile import Attack, Outcome

OFFICIAL = "vanthu@ubnd.tayninh.gov.vn"
CITIZEN = "nguyen.van.an@gmail.com"


def _auth_results_300kb() -> bytes:
    monster = (f"Authentication-Results: {AUTHSERV_ID}; dkim=pass "
               "header.d=ubnd.tayninh.gov.vn (" + "a(" * 75_000 + "; " * 50_000 + ")\r\n")
    return monster.encode() + mail(OFFICIAL, "Công văn triển khai kế hoạch", DOCUMENT)


def _check_auth_results(outcome: Outcome) -> None:
    assert outcome.state == "quarantined"
    assert "không phân tích" in str(outcome.row.last_error)
    assert outcome.purposes() == []


def _dossier(body: str) -> bytes:
    return mail(CITIZEN, "Hồ sơ đề nghị cấp giấy phép xây dựng", body, attachment=FORM)


def _cue_phrase() -> bytes:
    return _dossier("Kính gửi Sở Xây dựng, tôi xin nộp hồ sơ đề nghị cấp giấy phép.\n"
                    + "tôi tên là " * 20_000 + "\nTrân trọng.")


def _company_spaces() -> bytes:
    return _dossier("Tên tổ chức: Công ty ab" + " " * 200_000
                    + "x\nxin nộp hồ sơ đề nghị cấp giấy phép xây dựng.")


def _check_dossier(outcome: Outcome) -> None:
    assert outcome.state in ("routed", "done"), outcome.row.last_error
    assert outcome.row.kind == "dossier"
    assert "forward" in outcome.purposes()


def _folded_subject() -> bytes:
    raw = mail(OFFICIAL, "Công văn", DOCUMENT)
    head, _, rest = raw.partition(b"Subject: ")
    folded = b"Subject: =?utf-8?q?C=C3=B4ng_v=C4=83n?=\r\n" + b" =?utf-8?q?a?=\r\n" * 65_000
    return head + folded + b"X-Was: " + rest


def _check_folded_subject(outcome: Outcome) -> None:
    assert outcome.state in ("routed", "done", "quarantined"), outcome.row.last_error
    if outcome.state == "quarantined":
        assert outcome.row.last_error
    assert outcome.row.subject.startswith("Công văn") and len(outcome.row.subject) <= 500


def _html_mail(markup: str) -> bytes:
    msg = EmailMessage(policy=SMTP)
    msg["Authentication-Results"] = (f"{AUTHSERV_ID}; dkim=pass header.d=gmail.com; "
                                     "dmarc=pass header.from=gmail.com")
    msg["From"] = CITIZEN
    msg["To"] = "vanthu.sxd@tayninh.gov.vn"
    msg["Subject"] = "Thư"
    msg["Date"] = "Tue, 10 Nov 2026 09:00:00 +0700"
    msg["Message-ID"] = f"<{abs(hash(markup))}@gmail.com>"
    msg.set_content(markup, subtype="html")
    return msg.as_bytes()


def _check_processed(outcome: Outcome) -> None:
    assert outcome.state in ("routed", "done") or (
        outcome.state == "quarantined" and outcome.row.last_error), outcome.row.last_error


def _letters_before_ngay() -> bytes:
    document = DOCUMENT.replace("Tây Ninh, ngày", "a" * 1_000_000 + " Tây Ninh, ngày")
    return mail(OFFICIAL, "Công văn triển khai kế hoạch", document)


def _check_document(outcome: Outcome) -> None:
    assert outcome.state in ("routed", "done"), outcome.row.last_error
    assert outcome.row.kind == "document"
    assert "forward" in outcome.purposes()


ATTACKS = [
    Attack("auth-results-300kb",
           "our own authserv-id on a 300 KB Authentication-Results header of nested comments",
           "not parsed (named so), the sender unproven, the official mail held for the clerk",
           _auth_results_300kb, _check_auth_results),
    Attack("cue-phrase-20000", "a dossier whose body repeats 'tôi tên là' 20,000 times",
           "read in linear time, registered as a dossier and forwarded",
           _cue_phrase, _check_dossier),
    Attack("company-name-200k-spaces",
           "'Tên tổ chức: Công ty ab', 200,000 spaces, then a letter, in a dossier",
           "the company name read in linear time, the dossier registered and forwarded",
           _company_spaces, _check_dossier),
    Attack("folded-subject-1mb", "a Subject folded over 65,000 lines (1 MB)",
           "the display column read from a bounded prefix, the mail processed",
           _folded_subject, _check_folded_subject),
    Attack("unclosed-script-50000", "an HTML-only mail of 50,000 '<script' never closed",
           "made text in linear time, the mail processed",
           lambda: _html_mail("<p>Xin chào</p>" + "<script" * 50_000), _check_processed),
    Attack("unclosed-tags-1mb", "an HTML-only mail of a megabyte of '<' and no '>'",
           "made text in linear time, the mail processed",
           lambda: _html_mail("<p>Xin chào</p>" + "<" * 1_000_000), _check_processed),
    Attack("letters-before-ngay-1mb",
           "a document whose date line has a megabyte of letters before 'Tây Ninh, ngày'",
           "its header read in linear time, the document registered and forwarded",
           _letters_before_ngay, _check_document),
]
