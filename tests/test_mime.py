"""`mime.message_from_bytes` against the standard library's parse of the same bytes: the same
tree of parts (class, envelope line, raw headers, text, preamble and epilogue, defects,
default type), for mails drawn from MIME's grammar with runs of base64 lines in every place
a line can be (a part's text and its end, headers, preamble, epilogue, a forwarded mail's
headers, the blocks of a delivery report), with LF or CRLF, lines a little shorter or longer
than the encoders', parts left open, and for every mail of the corpus and of the benchmark's
backlog. The short parse is used where it can be (the gain is real), and its markers cannot
be forged."""

from __future__ import annotations

import base64
import email
import random
import secrets
from email.message import Message
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daemon.understand import mime
from tests.conftest import CORPUS


def dump(message: Message) -> list[Any]:
    """Everything the parser made, part by part."""
    return [(type(part).__name__, part.get_unixfrom(), list(part.raw_items()),
             _text(part),
             part.preamble, part.epilogue,
             [(type(defect).__name__, str(defect)) for defect in part.defects],
             part.get_default_type()) for part in message.walk()]


def _text(part: Message) -> str | int:
    """A part's text as the parser keeps it (8-bit bytes as surrogates; `get_payload()`
    would decode them), or how many parts it holds."""
    payload = getattr(part, "_payload", None)
    return payload if isinstance(payload, str) else len(payload or [])


def check(raw: bytes) -> Message | None:
    """The short parse of `raw` (always tried: no size bound) is None or the standard one."""
    expected = dump(email.message_from_bytes(raw))
    assert dump(mime.message_from_bytes(raw)) == expected
    short = mime.short_parse(raw)
    if short is not None:
        assert dump(short) == expected
    return short


@pytest.fixture(autouse=True)
def every_size(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mime, "_WORTH", 0)


# ----- the grammar --------------------------------------------------------------------------

B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


@st.composite
def base64_lines(draw: st.DrawFn) -> str:
    """Lines as encoders write them (76 characters), sometimes one of another length, with LF
    or CRLF; the last sometimes without its line ending."""
    rnd = random.Random(draw(st.integers(0, 2**32)))
    count = draw(st.integers(1, 6))
    eol = draw(st.sampled_from(["\r\n", "\n", "mixed"]))
    out = ""
    for at in range(count):
        width = draw(st.sampled_from([76, 76, 76, 72, 75, 77, 4])) if at else 76
        ending = rnd.choice(["\r\n", "\n"]) if eol == "mixed" else eol
        out += "".join(rnd.choice(B64) for _ in range(width)) + ending
    if draw(st.booleans()):
        out += "".join(rnd.choice(B64) for _ in range(draw(st.integers(0, 80)))) + "=="
    return out


HEADERS = st.sampled_from([
    "Subject: hồ sơ\n", "Subject: =?utf-8?b?SOG7kyBzxqE=?=\n", "X-A: b\n", " folded\n",
    "From: a@b.vn\n", "From a@b.vn Mon Jan  1 00:00:00 2026\n", ":no name\n", "no colon\n",
    "Content-Transfer-Encoding: base64\n", "Content-Disposition: attachment; filename=a.pdf\n",
])


@st.composite
def bodies(draw: st.DrawFn) -> str:
    """A part's text: base64 runs and other lines in any order."""
    pieces = draw(st.lists(st.one_of(base64_lines(), st.sampled_from(
        ["text\n", "\n", "\r\n", "--not-a-boundary\n", "From x\n", "a: b\n", "\t\n",
         "văn bản có dấu\n"])),
        max_size=5))
    return "".join(pieces)


@st.composite
def parts(draw: st.DrawFn, depth: int = 0) -> str:
    """A MIME part: headers (with base64 lines among them, sometimes), a blank line or not,
    then a leaf, a multipart (preamble, children, epilogue; the close sometimes missing), a
    forwarded mail, or a delivery report."""
    kind = draw(st.sampled_from(["leaf", "leaf", "multipart", "rfc822", "report"]
                                if depth < 3 else ["leaf"]))
    head = "".join(draw(st.lists(HEADERS, max_size=3)))
    if draw(st.integers(0, 9)) == 0:
        head += draw(base64_lines())  # among the headers: the body starts there
    if kind == "leaf":
        return head + "Content-Type: application/pdf\n\n" + draw(bodies())
    if kind == "rfc822":
        return head + "Content-Type: message/rfc822\n\n" + draw(parts(depth + 1))
    if kind == "report":
        blocks = draw(st.lists(st.one_of(base64_lines(), st.just("Status: 5.0.0\n"),
                                         st.just("Action: failed\n")), max_size=4))
        return head + "Content-Type: message/delivery-status\n\n" + "\n".join(blocks)
    boundary = draw(st.sampled_from(["b1", "b-2", "=_x"])) + str(depth)
    out = head + f'Content-Type: multipart/mixed; boundary="{boundary}"\n\n' + draw(bodies())
    for child in draw(st.lists(parts(depth + 1), max_size=3)):
        out += f"\n--{boundary}\n" + child
    if draw(st.booleans()):
        out += f"\n--{boundary}--\n" + draw(bodies())
    return out


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(parts(), st.booleans())
def test_any_mail_parses_as_the_standard_parse(text: str, crlf: bool) -> None:
    raw = text.encode("utf-8")
    check(raw.replace(b"\n", b"\r\n").replace(b"\r\r\n", b"\r\n") if crlf else raw)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(min_size=120, max_size=4000), min_size=1, max_size=4),
       st.sampled_from(["\n", "\r\n"]))
def test_attachments_are_parsed_short(files: list[bytes], eol: str) -> None:
    """A mail of attachments as mail programs write it is parsed short, not line by line."""
    parts_ = "".join(
        f"--b{eol}Content-Type: application/pdf{eol}Content-Transfer-Encoding: base64{eol}"
        f"{eol}{base64.encodebytes(data).decode().replace(chr(10), eol)}" for data in files)
    raw = (f"From: a@b.vn{eol}Subject: x{eol}Content-Type: multipart/mixed; "
           f'boundary="b"{eol}{eol}{parts_}--b--{eol}').encode()
    short = check(raw)
    assert short is not None
    payloads = [part.get_payload(decode=True) for part in short.walk()][1:]
    assert payloads == files


def _edges(eol: str) -> bytes:
    run = ("A" * 76 + eol) * 3
    return (f"Content-Type: multipart/mixed; boundary=b{eol}{eol}{run}--b{eol}{eol}x{eol}"
            f"--b--{eol}{run}").encode()


@pytest.mark.parametrize("eol", ["\n", "\r\n"])
def test_preamble_and_epilogue_are_put_back(eol: str) -> None:
    short = check(_edges(eol))
    assert short is not None
    assert short.preamble is not None and short.epilogue is not None


def test_a_marker_not_put_back_means_the_whole_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    """Were the parser to leave text where this module does not look (here: it forgets
    epilogues), the marker there is not found: the whole parse is taken, nothing is lost."""
    monkeypatch.setattr(mime, "_EDGES", ("preamble",))
    assert check(_edges("\n")) is None


# ----- real mails, forged markers -----------------------------------------------------------

def test_the_corpus_and_the_backlog_parse_the_same() -> None:
    from tests.bench_intake import backlog

    mails = [path.read_bytes() for path in sorted(CORPUS.glob("*.eml"))]
    mails += backlog(40, 17)[0]
    short = [check(raw) for raw in mails]
    assert sum(found is not None for found in short) >= 40


def test_a_forged_marker_is_only_text(monkeypatch: pytest.MonkeyPatch) -> None:
    """A marker that lands where the parser reads more than text (here a Subject that holds
    the very word, made not random for the test) makes the whole mail parsed line by line;
    text that looks like a marker but is not this mail's (a random word for every mail) is
    left as it is."""
    body = ("A" * 76 + "\n") * 3
    monkeypatch.setattr(secrets, "token_hex", lambda _: "0" * 32)
    forged = f"Subject: V{'0' * 32}x0x\n\n{body}".encode()
    assert check(forged) is None  # the marker in the Subject: the whole parse
    quoted = f"Subject: x\n\nV{'1' * 32}x0x\n{body}".encode()
    assert check(quoted) is not None
