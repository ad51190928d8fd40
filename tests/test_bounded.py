"""Every piece of work that depends on what a sender wrote is bounded: each pathological input
an attacker would send, at a size where quadratic work takes minutes, finishes within a bound
ten to a hundred times what linear code needs (so the verdict does not depend on the
machine's speed); and no reader raises on arbitrary text."""

from __future__ import annotations

import html
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from email.header import decode_header, make_header
from pathlib import Path
from typing import TypeVar
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daemon import config
from daemon.config import Config
from daemon.errors import ConfigError
from daemon.intake.store import COLUMN, HEADER_SCAN, _header_field
from daemon.models import Address, Attachment, ParsedMail
from daemon.routing import rules as rules_module
from daemon.routing.conditions import parse as parse_condition
from daemon.routing.route import Facts
from daemon.textnorm import decode_words
from daemon.understand import THREAD_LOOKUPS, NoCases, extract, judge, read, trust, verdict
from daemon.understand.applicant import applicant
from daemon.understand.identity import MAX_VALUE, raw_headers
from daemon.understand.parse import _TextOfHtml
from tests.conftest import AUTHSERV_ID, RULES
from tests.desk import DOCUMENT, mail

# Linear code does each of these in well under a second; quadratic code needs minutes.
BOUND = 10.0

T = TypeVar("T")


def timed(work: Callable[[], T]) -> tuple[T, float]:
    start = time.monotonic()
    result = work()
    return result, time.monotonic() - start


def _cfg(tmp_path: Path) -> Config:
    return config.parse({"storage": {"data_dir": str(tmp_path)},
                         "security": {"authserv_id": AUTHSERV_ID}},
                        file="t", text="", base=tmp_path)


def _mail_of(body: str, attachments: tuple[str, ...] = ()) -> ParsedMail:
    return ParsedMail(
        message_id="<x@y.vn>", subject="Hồ sơ", sender=Address("Người Gửi", "a@b.vn"), to=(),
        reply_to=(), date=None, headers={}, body=body,
        attachments=tuple(Attachment(name=f"{i}.txt", content_type="text/plain", size=1,
                                     sha256="", payload=b"", text=text)
                          for i, text in enumerate(attachments)),
        content_types=(), defects=(), sender_problems=(), carried_ids=())


# --- the pathological inputs, one by one -------------------------------------------------

def test_an_authentication_results_header_of_300_kb_is_judged_at_once(tmp_path: Path) -> None:
    """Our own authserv-id, then 300 KB of results and comments: the mail is read and its
    verdict given without parsing the monster, which is named as not parsed; the sender is
    not authenticated by it."""
    cfg = _cfg(tmp_path)
    monster = (f"Authentication-Results: {AUTHSERV_ID}; "
               + "dkim=pass header.d=ubnd.tayninh.gov.vn (" + "a(" * 75_000 + "; " * 50_000
               + ")\r\n").encode()
    raw = monster + mail("vanthu@ubnd.tayninh.gov.vn", "Công văn", DOCUMENT,
                         authenticated=False)

    (reading, proof), seconds = timed(lambda: (r := read(raw, cfg.limits), verdict(r, cfg)))

    assert seconds < BOUND
    assert proof.authenticated is None
    assert f"dài quá {trust.MAX_HEADER} ký tự: không phân tích" in proof.why
    assert len(reading.auth_results[0]) <= MAX_VALUE + 1


def test_the_authentication_results_parser_is_never_given_more_than_its_bound() -> None:
    """Just under the bound, the worst shapes of results the parser meets stay cheap; at
    the bound plus one the value is refused before parsing."""
    head = f"{AUTHSERV_ID}; "
    worst = [head + "dkim=pass header.d=a.vn; " * ((trust.MAX_HEADER - len(head)) // 25),
             head + "dkim=pass reason=" + "a b " * ((trust.MAX_HEADER - 40) // 4),
             head + "dkim=pass " + "(" * ((trust.MAX_HEADER - 40) // 2)]
    for value in worst:
        assert len(value) <= trust.MAX_HEADER
        start = time.monotonic()
        trust.from_headers([value], "a.vn", AUTHSERV_ID)
        assert time.monotonic() - start < BOUND / 10
    over = head + "x" * (trust.MAX_HEADER + 1 - len(head))
    assert "không phân tích" in trust.from_headers([over], "a.vn", AUTHSERV_ID).why


@pytest.mark.parametrize("cue", ["tôi tên là ", "tên tổ chức ", "Tên tổ chức: Công ty ",
                                 "em "])
def test_a_name_cue_repeated_20000_times_is_read_in_linear_time(cue: str) -> None:
    """Each cue used to search the rest of the text again (and slice it): 20,000 cues meant
    20,000 searches of up to 300 KB."""
    body = cue * 20_000 + "\nCông ty TNHH Xây Dựng Tây Ninh, kính gửi"

    found, seconds = timed(lambda: applicant(_mail_of(body, (body,))))

    assert seconds < BOUND
    assert found.email == "a@b.vn"


def test_a_company_name_followed_by_a_long_run_of_spaces_is_read_in_linear_time() -> None:
    """"Công ty ab", 4,000 spaces and a letter cost the old pattern a minute and a half (it
    looked for the end of the name again from every space); a megabyte is nothing now."""
    body = "Công ty ab" + " " * 1_000_000 + "x, kính gửi"

    found, seconds = timed(lambda: applicant(_mail_of(body)))

    assert seconds < BOUND
    assert found.name == "Công ty ab x"


def test_a_folded_subject_of_10_mb_is_read_for_the_display_column_in_linear_time() -> None:
    """The fetch thread reads the Subject for the messages row: 10 MB of continuation lines
    (joined by repeated concatenation: 123 s) are now read up to the scan bound."""
    raw = (b"From: a@b.vn\r\nSubject: =?utf-8?q?V=C4=83n_b=E1=BA=A3n?=\r\n"
           + b" =?utf-8?q?a?=\r\n" * 700_000 + b"\r\nbody")
    assert len(raw) > 10_000_000

    subject, seconds = timed(lambda: _header_field(raw, b"Subject"))

    assert seconds < BOUND
    assert subject.startswith("Văn bảnaaa") and len(subject) <= COLUMN


def test_a_header_beyond_the_scan_bound_leaves_its_column_empty() -> None:
    """The display columns look at the first `HEADER_SCAN` bytes only: a Subject pushed
    further down by a huge header above it is not read there (the parser still reads it)."""
    raw = (b"X-Filler: " + b"a" * HEADER_SCAN + b"\r\nSubject: hidden\r\n\r\nbody")
    near = b"X-Filler: " + b"a" * 1000 + b"\r\nSubject: shown\r\n\r\nbody"

    assert _header_field(raw, b"Subject") == ""
    assert _header_field(near, b"Subject") == "shown"


@pytest.mark.parametrize("value", [
    "=?a?q?b" * 150_000,  # words never closed: each one read to the line's end
    "=?utf-8?q?a?= " * 80_000,  # words separated by spaces: the standard one deletes each
    "=?utf-8?q?a?=" * 80_000,  # adjacent words: the standard one concatenates bytes
])
def test_encoded_words_are_decoded_in_linear_time(value: str) -> None:
    decoded, seconds = timed(lambda: decode_words(value))

    assert seconds < BOUND
    assert decoded


@pytest.mark.parametrize("markup", [
    "<script" * 50_000,  # never closed: each opening read to the end
    "<style>" * 50_000 + "</script>",
    "<" * 1_000_000,  # tags never closed
    "<br" * 300_000,
    "<p " + "x" * 1_000_000,
])
def test_broken_html_is_made_text_in_linear_time(markup: str) -> None:
    _, seconds = timed(lambda: _TextOfHtml.convert(markup))

    assert seconds < BOUND


@pytest.mark.parametrize("line", [
    "a" * 1_000_000 + " ngày 09 tháng 11 năm 2026",  # letters before the place's comma
    "Tây " * 250_000 + "Ninh, ngày 09 tháng 11 năm 2026",
    "ngày" + " " * 1_000_000,
    "," * 1_000_000 + "ngày",
])
def test_a_document_header_line_of_a_megabyte_is_read_in_linear_time(line: str) -> None:
    text = f"ỦY BAN NHÂN DÂN\nTỈNH TÂY NINH\nSố: 12/UBND-KT\n{line}\nV/v kế hoạch\n"

    document, seconds = timed(lambda: extract.from_text(text, "body"))

    assert seconds < BOUND
    assert document is not None and document.symbol == "UBND-KT"


@pytest.mark.parametrize(("pattern", "text"), [
    (extract._NUMBER_LINE, "Số" + " " * 1_000_000),  # 4,000 spaces took 93 s
    (extract._DATE, " " * 1_000_000),
    (extract._DATE, "ngày" + " " * 1_000_000 + "x"),
    (extract._NUMBER_LINE, "  Số" * 250_000),
    (extract._DATE, "ngày tháng " * 100_000),
    (extract._GAP, "a " * 500_000),
])
def test_each_document_pattern_is_linear_on_its_worst_run(pattern: re.Pattern[str],
                                                           text: str) -> None:
    """The patterns alone, without the line clean-up that happens to collapse runs of
    spaces before them today."""
    _, seconds = timed(lambda: pattern.search(text))

    assert seconds < BOUND


def test_rule_regexes_run_on_re2_and_stay_linear_on_a_megabyte() -> None:
    """The claim that rule regexes are RE2: the classic catastrophic pattern on a megabyte
    of body text is answered at once."""
    condition = parse_condition({"body": {"regex": "(a+)+$"}})
    facts = Facts(kind="document", type="", urgency="", confidential=False, issuer="",
                  sender="a@b.vn", subject="", body="a" * 1_000_000 + "b",
                  attachment_names=(), attachment_types=(),
                  at=datetime(2026, 11, 10, 9, tzinfo=ZoneInfo("Asia/Ho_Chi_Minh")),
                  working_day=True, procedure="")

    (matched, _), seconds = timed(lambda: condition.check(facts))

    assert seconds < BOUND and matched is False
    assert condition.check(replace(facts, body="a" * 1_000_000))[0] is True


def test_yaml_aliases_in_rule_files_are_refused(tmp_path: Path) -> None:
    """The claim that YAML aliases are refused: a billion laughs is refused at its first
    alias, at once."""
    shutil.copy(RULES / "people.yaml", tmp_path / "people.yaml")
    shutil.copy(RULES / "procedures.yaml", tmp_path / "procedures.yaml")
    levels = ["  - &l0 {kind: spam}\n"] + [
        f"  - &l{i} [" + ", ".join([f"*l{i - 1}"] * 10) + "]\n" for i in range(1, 10)]
    (tmp_path / "10-laughs.yaml").write_text(
        "anchors:\n" + "".join(levels) + "rules:\n  - id: x\n    when: {any: *l9}\n",
        encoding="utf-8")

    with pytest.raises(ConfigError) as caught:
        timed(lambda: rules_module.load(tmp_path))

    assert "an alias (*l0) is not allowed" in str(caught.value.problems[0])


def test_a_hostile_dossier_is_judged_in_the_main_process_without_reading_its_text(
        tmp_path: Path) -> None:
    """`judge` (the main process) takes the applicant the worker found: it does no work on
    the body itself."""
    cfg = _cfg(tmp_path)
    body = "Tôi tên là Nguyễn Văn An, xin cấp giấy phép xây dựng. Hồ sơ gửi kèm."
    raw = mail("an@gmail.com", "Hồ sơ xin cấp giấy phép", body, attachment=b"%PDF-1.4\n")
    reading = read(raw, cfg.limits)
    assert reading.applicant is not None and reading.applicant.name == "Nguyễn Văn An"

    understanding = judge(reading, cfg, NoCases())

    assert understanding.applicant == reading.applicant


def _old_html(markup: str) -> str:
    text = re.sub(r"<(script|style|head)\b.*?</\1\s*>", " ", markup, flags=re.S | re.I)
    text = re.sub(r"<\s*(br|/p|/div|/tr|/li|/h\d|p|div|tr|li|table)\b[^>]*>", "\n", text,
                  flags=re.I)
    text = html.unescape(re.sub(r"<[^>]+>", " ", text))
    lines = (re.sub(r"[ \t\u00a0]+", " ", line).strip() for line in text.splitlines())
    return "\n".join(line for line in lines if line)


_MARKUP = ["<script", "<SCRIPT>", "</script>", "</Script >", "<style>", "</style>", "<head>",
           "</head>", "<br>", "<br/", "<p>", "</p>", "<", ">", "< br >", "x", "Văn bản", "\n",
           " ", "&amp;", "<div class='a'>", "<scripts>", "</scriptx>", "<>"]


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from(_MARKUP), max_size=30).map("".join))
def test_html_to_text_is_what_it_was_on_any_markup(markup: str) -> None:
    assert _TextOfHtml.convert(markup) == _old_html(markup)


_WORDS = ["=?utf-8?q?Tr=E1=BA=A7n?=", "=?UTF-8?B?VsSDbiBi4bqjbg==?=", "=?utf-8?b?4bq=?=",
          "=?utf-8?b?pw==?=", "=?iso-8859-1?q?caf=E9?=", " ", "\r\n ", "Re:", "số", "abc",
          "=?utf-8?q?_x?="]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_WORDS), max_size=12).map("".join))
def test_encoded_words_read_as_the_standard_library_reads_them(value: str) -> None:
    """Where the standard library's decoder succeeds, ours gives the same text, up to white
    space (which `header_safe` collapses anyway)."""
    try:
        expected = str(make_header(decode_header(value)))
    except (UnicodeError, LookupError, ValueError):
        return
    if not value.isascii():
        return  # the standard one gives raw 8-bit text back escaped; ours keeps it
    assert decode_words(value).split() == expected.split()


# --- no reader raises on arbitrary text --------------------------------------------------

_any_text = st.text(max_size=300)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_any_text, _any_text)
def test_the_text_readers_never_raise(body: str, attachment: str) -> None:
    applicant(_mail_of(body, (attachment,)))
    extract.from_text(body, "body")
    _TextOfHtml.convert(body)
    decode_words(body)
    trust.from_headers([body], "a.vn", AUTHSERV_ID)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_the_header_readers_never_raise_on_arbitrary_bytes(raw: bytes) -> None:
    for name in (b"Subject", b"From", b"Message-ID"):
        assert len(_header_field(raw, name)) <= COLUMN
    raw_headers(raw)


class CountingCases(NoCases):
    """A case lookup that counts the Message-IDs it was asked about."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def case_of_message_id(self, message_id: str) -> str | None:
        self.asked.append(message_id)
        return None


def test_a_references_header_of_50000_ids_costs_a_bounded_number_of_lookups(
        tmp_path: Path) -> None:
    """Threading looks up the first and the last Message-IDs of a long thread only: a hostile
    References header cannot make the main process ask the database 50,000 times."""
    ids = " ".join(f"<id{i}@spam.example>" for i in range(50_000))
    raw = mail("dan@gmail.com", "Hỏi", "Xin hỏi.").replace(
        b"Subject:", f"In-Reply-To: <first@spam.example>\r\nReferences: {ids}\r\nSubject:"
        .encode(), 1)
    cases = CountingCases()

    _, took = timed(lambda: judge(read(raw, _cfg(tmp_path).limits), _cfg(tmp_path), cases))

    assert took < BOUND
    assert 0 < len(cases.asked) <= THREAD_LOOKUPS
    assert "<first@spam.example>" in cases.asked


def test_forty_thousand_headers_are_collected_in_one_pass(tmp_path: Path) -> None:
    """Many distinct and repeated header names: each value is kept, in order, in linear
    time (a lookup per name over all headers would be quadratic)."""
    extra = "".join(f"X-H{i % 20000}: v{i}\r\n" for i in range(40_000))
    raw = mail("dan@gmail.com", "Hỏi", "Xin hỏi.").replace(b"Subject:", extra.encode()
                                                         + b"Subject:", 1)

    reading, took = timed(lambda: read(raw, _cfg(tmp_path).limits))

    assert took < BOUND * 3
    assert reading.mail.headers["x-h5"] == ("v5", "v20005")
