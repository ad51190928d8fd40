"""The sender's identity, from the raw header bytes: the strict parser decides, and every doubt
is named so the mail is held."""

from __future__ import annotations

import base64
import dataclasses
from email import policy
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daemon import config
from daemon.understand import NoCases, understand
from daemon.understand import identity as identity_module
from daemon.understand.identity import (
    MAX_ADDRESSES,
    MAX_PARSE,
    addresses,
    addresses_in_text,
    identity,
    raw_headers,
)
from daemon.understand.parse import parse
from tests.conftest import AUTHSERV_ID, CORPUS, corpus_labels

CFG = config.parse({"security": {"authserv_id": AUTHSERV_ID}}, file="test", text="",
                   base=Path("."))
BREAKS = "\r\n\x00\u2028\u2029\x85"
DOCUMENT = ("ỦY BAN NHÂN DÂN\nTỈNH TÂY NINH\nSố: 1000/UBND-KT\nTây Ninh, ngày 09 tháng 11 năm "
            "2026\nV/v triển khai kế hoạch\nKính gửi: Sở Xây dựng.\n")


def _raw(*headers: str | bytes, body: str = "Xin chào.\r\n") -> bytes:
    lines = [h.encode("utf-8") if isinstance(h, str) else h for h in headers]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body.encode("utf-8")


def _who(*headers: str | bytes) -> Any:
    return identity(raw_headers(_raw(*headers)))


def _b(text: str) -> str:
    return f"=?utf-8?b?{base64.b64encode(text.encode()).decode()}?="


def _q(text: str) -> str:
    safe = "".join(chr(b) if chr(b).isalnum() else f"={b:02X}" for b in text.encode())
    return f"=?utf-8?q?{safe}?="


def _mail_with(from_value: str, body: str = DOCUMENT) -> bytes:
    return _raw(f"Authentication-Results: {AUTHSERV_ID}; dkim=pass header.d=gmail.com; "
                "dmarc=pass header.from=gmail.com",
                f"From: {from_value}", "To: vanthu.sxd@tayninh.gov.vn",
                "Subject: Cong van 1000/UBND-KT", "Content-Type: text/plain; charset=utf-8",
                body=body)


# --- named attacks -------------------------------------------------------------------------

@pytest.mark.parametrize("encode", [_b, _q])
def test_encoded_display_name_never_becomes_the_address(encode: Any) -> None:
    """An encoded word decoding to ubnd@tayninh.gov.vn is display text: the address stays the
    real one and the impersonation is named."""
    who = _who(f"From: {encode('ubnd@tayninh.gov.vn')} <evil@gmail.com>")

    assert who.address == "evil@gmail.com"
    assert any("ubnd@tayninh.gov.vn" in p for p in who.problems)


@pytest.mark.parametrize("encode", [_b, _q])
def test_encoded_display_name_with_crlf_yields_no_address(encode: Any) -> None:
    """An encoded display name hiding CR LF and a gov.vn address gives no address, and says
    why."""
    name = encode("UBND tỉnh\r\nubnd@tayninh.gov.vn")

    who = _who(f"From: {name} <evil@gmail.com>")

    assert who.address in ("", "evil@gmail.com")
    assert who.address != "ubnd@tayninh.gov.vn"
    assert any("xuống dòng" in p for p in who.problems)
    assert any("ubnd@tayninh.gov.vn" in p for p in who.problems)
    assert not any(c in who.name for c in BREAKS)


def test_unquoted_address_as_display_name_is_doubtful() -> None:
    """`ubnd@tayninh.gov.vn <evil@gmail.com>` is not a valid mailbox: no address is believed."""
    who = _who("From: ubnd@tayninh.gov.vn <evil@gmail.com>")

    assert who.address == ""
    assert who.problems


def test_two_from_headers_are_doubtful() -> None:
    """Two From headers: which one a reader sees depends on the program, so none is believed."""
    who = _who("From: ubnd@tayninh.gov.vn", "From: evil@gmail.com")

    assert who.address == ""
    assert "2 tiêu đề From" in who.problems


def test_a_from_list_is_doubtful() -> None:
    """Several mailboxes in From: none is believed."""
    who = _who("From: ubnd@tayninh.gov.vn, evil@gmail.com")

    assert who.address == ""
    assert "From có 2 hộp thư" in who.problems


def test_a_source_route_is_named() -> None:
    """`<@tayninh.gov.vn:evil@gmail.com>` is from gmail.com, and the route is a problem."""
    who = _who("From: <@tayninh.gov.vn:evil@gmail.com>")

    assert who.address == "evil@gmail.com"
    assert any("source route" in p for p in who.problems)


def test_a_sender_other_than_from_is_named() -> None:
    """A Sender header with another address than From is a problem."""
    who = _who("From: ubnd@tayninh.gov.vn", "Sender: evil@gmail.com")

    assert who.address == "ubnd@tayninh.gov.vn"
    assert any("Sender evil@gmail.com khác với From" in p for p in who.problems)


def test_the_same_sender_as_from_is_fine() -> None:
    """A Sender equal to From raises no doubt."""
    assert _who("From: A <a@x.gov.vn>", "Sender: a@x.gov.vn").problems == ()


def test_a_non_ascii_address_is_named() -> None:
    """A raw UTF-8 addr-spec is an internationalised address, named as such."""
    who = _who("From: <nguyễn@tayninh.gov.vn>")

    assert any("ngoài ASCII" in p for p in who.problems)


def test_a_raw_utf8_display_name_is_fine() -> None:
    """A raw UTF-8 display name (RFC 6532) is legitimate and read as NFC."""
    who = _who("From: Nguye\u0302\u0303n Văn An <an@example.vn>")

    assert (who.address, who.name, who.problems) == ("an@example.vn", "Nguyễn Văn An", ())


@pytest.mark.parametrize("value", [
    "=?utf-8?q?ubnd?=@tayninh.gov.vn",
    "a@=?utf-8?q?tayninh.gov.vn?=",
    "=?utf-8?q?ubnd?= @tayninh.gov.vn",
    "UBND <=?utf-8?q?ubnd?=@tayninh.gov.vn>",
])
def test_an_encoded_word_never_builds_an_address(value: str) -> None:
    """The standard parser decodes encoded words even inside an addr-spec; identity refuses
    such an address."""
    who = _who(f"From: {value}")

    assert who.address == ""
    assert any("encoded word" in p for p in who.problems)


def test_a_comment_is_display_text() -> None:
    """`evil@gmail.com (ubnd@tayninh.gov.vn)` is from gmail.com; the comment is named."""
    who = _who("From: evil@gmail.com (ubnd@tayninh.gov.vn)")

    assert who.address == "evil@gmail.com"
    assert any("ubnd@tayninh.gov.vn" in p for p in who.problems)


def test_spaced_and_full_width_addresses_in_the_name_are_found() -> None:
    """An address in the name split by spaces or written with a full-width ＠ still counts."""
    who = _who(f"From: {_q('ubnd ＠ tayninh . gov . vn')} <evil@gmail.com>")

    assert any("ubnd@tayninh.gov.vn" in p for p in who.problems)


def test_a_quoted_local_part_with_an_at_is_named() -> None:
    """`"ubnd@tayninh.gov.vn"@evil.example` is from evil.example, and is doubtful."""
    who = _who('From: "ubnd@tayninh.gov.vn"@evil.example')

    assert who.domain == "evil.example"
    assert any("đặt trong ngoặc kép" in p for p in who.problems)


def test_group_syntax_is_doubtful() -> None:
    """From is a mailbox list, never a group."""
    who = _who("From: UBND: ubnd@tayninh.gov.vn;")

    assert who.address == ""
    assert "From dùng cú pháp nhóm (group)" in who.problems


def test_no_from_is_a_problem() -> None:
    """A mail without From has no sender, and says so."""
    assert _who("Subject: x").problems == ("không có tiêu đề From",)


def test_white_space_before_the_colon_is_named() -> None:
    """`From : x` is obsolete syntax some programs read and others skip."""
    assert any("trước dấu hai chấm" in p for p in _who("From : ubnd@tayninh.gov.vn").problems)


def test_a_lone_cr_splitting_the_header_is_named() -> None:
    """A bare CR inside From (Python's parser splits the line there) is a problem."""
    who = _who(b"From: ubnd@tayninh.gov.vn\rFrom: evil@gmail.com")

    assert who.address == ""
    assert who.problems


def test_a_legacy_8bit_display_name_is_read_not_held() -> None:
    """A raw windows-1258 display name, as old Vietnamese mail programs wrote it, is read as
    such and noted as a fact, not a problem; the name holds no lone surrogate."""
    who = _who(b"From: UBND xa\xde T\xe2n Ch\xe2u <ubnd@b.vn>")  # windows-1258 bytes

    assert (who.address, who.name, who.problems) == ("ubnd@b.vn", "UBND xã Tân Châu", ())
    assert any("không phải UTF-8" in f for f in who.facts)
    _who(b"From: \x81\x8d\xff <a@b.vn>").name.encode("utf-8")


def test_bidi_override_in_the_name_is_named_and_dropped() -> None:
    """A right-to-left override in the raw display name is a problem and is not kept."""
    who = _who("From: \"UBND\u202egnp.exe\" <a@b.vn>")

    assert who.problems and "\u202e" not in who.name


def test_deep_comments_are_not_parsed() -> None:
    """Comments nested deeper than the parser should recurse are refused, not parsed."""
    who = _who("From: " + "(" * 100 + "a@b.vn")

    assert who.address == "" and any("lồng chú thích" in p for p in who.problems)


def test_a_huge_from_is_not_parsed() -> None:
    """A From longer than the cap is refused with a problem instead of being parsed."""
    who = _who("From: " + "a" * (MAX_PARSE + 10) + "@b.vn")

    assert who.address == "" and any("dài quá" in p for p in who.problems)


def test_reply_to_on_another_domain_is_a_fact_not_a_problem() -> None:
    """A Reply-To elsewhere is common: shown as a fact, never a problem by itself."""
    who = _who("From: vanthu@tayninh.gov.vn", "Reply-To: vanphong.ubnd@gmail.com")

    assert who.problems == ()
    assert who.facts == ("Reply-To thuộc tên miền khác: gmail.com",)


def test_the_header_block_ends_where_python_ends_it() -> None:
    """A From after the blank line, or after body text with no blank line, is not a header."""
    raw = b"From: a@b.vn\r\nSubject: x\r\nnot a header line\r\nFrom: evil@gmail.com\r\n\r\n"

    assert identity(raw_headers(raw)).problems == ()
    assert _who("From: a@b.vn").address == "a@b.vn"


def test_an_mbox_envelope_line_is_skipped() -> None:
    """An mbox `From ` line before the headers is not a From header."""
    raw = b"From evil@gmail.com Mon Jan  1 00:00:00 2026\r\nFrom: a@b.vn\r\n\r\nx"

    assert identity(raw_headers(raw)).address == "a@b.vn"


def test_folded_from_is_unfolded() -> None:
    """A From folded over lines reads as one value."""
    who = _who("From: =?utf-8?q?S=E1=BB=9F?=\r\n =?utf-8?q?_T=C3=A0i_ch=C3=ADnh?=\r\n"
               "\t<stc@x.gov.vn>")

    assert (who.address, who.name, who.problems) == ("stc@x.gov.vn", "Sở Tài chính", ())


def test_a_name_split_across_encoded_words_reads_whole() -> None:
    """White space between two encoded words is no text (RFC 2047 §6.2): "Tr" + "ần" reads
    "Trần"."""
    who = _who("From: =?UTF-8?B?VHI=?= =?UTF-8?B?4bqnbg==?=\r\n =?UTF-8?Q?_Th=E1=BB=8B?= <a@b.vn>")

    assert who.name == "Trần Thị"


def test_addresses_skip_untrustworthy_entries_and_cap_the_count() -> None:
    """To/Cc keep strictly parsed mailboxes only, at most the cap per header."""
    many = ", ".join(f"u{i}@x.vn" for i in range(MAX_ADDRESSES + 20))
    headers = raw_headers(_raw("From: a@b.vn", f"To: {many}",
                               "Cc: =?utf-8?q?boss?=@tayninh.gov.vn, B <b@c.vn>"))

    assert len(addresses(headers, "to")) == MAX_ADDRESSES
    assert [a.email for a in addresses(headers, "cc")] == ["b@c.vn"]


def test_address_shapes_in_text() -> None:
    """Address-shaped text is found across spaces and line breaks, and plain words are not."""
    assert addresses_in_text("x ubnd@\r\n tayninh.gov.vn y") == ("ubnd@tayninh.gov.vn",)
    assert addresses_in_text("Ủy ban nhân dân @ tỉnh") == ()


# --- ParsedMail and the pipeline's view -----------------------------------------------------

def test_parsed_mail_takes_sender_and_recipients_from_the_raw_headers() -> None:
    """ParsedMail's sender, To/Cc and Reply-To are the strict parse, with its problems."""
    raw = _raw(f"From: {_b('ubnd@tayninh.gov.vn')} <evil@gmail.com>",
               "To: =?utf-8?q?x?= <vanthu.sxd@tayninh.gov.vn>", "Cc: c@d.vn",
               "Reply-To: r@e.vn", "Subject: s")

    mail = parse(raw, CFG.limits)

    assert mail.sender.email == "evil@gmail.com"
    assert [a.email for a in mail.to] == ["vanthu.sxd@tayninh.gov.vn", "c@d.vn"]
    assert [a.email for a in mail.reply_to] == ["r@e.vn"]
    assert mail.sender_problems


def test_decoded_headers_and_subject_are_one_safe_line() -> None:
    """Decoded header values and the subject carry no CR, LF, NUL, C1, separator or bidi
    character, yet keep what classification reads."""
    evil = "Hồ sơ\r\nBcc: x@evil.example\x00\u2028\x85\u202e end"
    raw = _raw("From: a@b.vn", f"Subject: {_b(evil)}", "Auto-Submitted: auto-replied",
               f"X-Note: {_q(evil)}")

    mail = parse(raw, CFG.limits)

    for value in [mail.subject, *(v for vs in mail.headers.values() for v in vs)]:
        assert not any(c in value for c in BREAKS + "\u202e"), value
    assert mail.header("auto-submitted") == "auto-replied"
    assert mail.subject.startswith("Hồ sơ Bcc: x@evil.example")


def test_forged_identity_is_held_whatever_it_claims() -> None:
    """A document whose From hides a gov.vn address in an encoded name is held for the clerk,
    even though the free-mail sender itself is authenticated."""
    raw = _mail_with(f"{_b('ubnd@tayninh.gov.vn')} <evil@gmail.com>")

    _, und = understand(raw, CFG, NoCases())

    assert und.quarantine
    assert "ubnd@tayninh.gov.vn" in und.quarantine_reasons[0]


def test_own_mail_uses_the_strict_identity() -> None:
    """A name that decodes to the agency's own address does not make the mail our own."""
    cfg = config.parse({"security": {"authserv_id": AUTHSERV_ID},
                        "agency": {"addresses": ["vanthu.sxd@tayninh.gov.vn"]}},
                       file="test", text="", base=Path("."))
    raw = _mail_with(f"{_q('vanthu.sxd@tayninh.gov.vn')} <evil@gmail.com>")

    _, und = understand(raw, cfg, NoCases())

    assert und.why != "gửi từ địa chỉ của chính cơ quan"
    assert und.quarantine


@pytest.mark.parametrize("label", corpus_labels(), ids=lambda label: label["file"])
def test_corpus_identities_are_clean(label: dict[str, Any]) -> None:
    """Every corpus sender parses without problems: the spoofed ones (015, 019) forge with
    valid syntax and are caught by authentication, 032 injects into the subject only."""
    raw = (CORPUS / label["file"]).read_bytes()

    who = identity(raw_headers(raw))

    assert who.problems == ()
    assert who.address and who.address.isascii()


# --- properties -----------------------------------------------------------------------------

_ATOM = st.from_regex(r"[A-Za-z0-9._-]{1,8}", fullmatch=True)
_DOMAIN = st.sampled_from(["gmail.com", "tayninh.gov.vn", "xn--nguyn-cwa.vn", "nguyễn.vn",
                           "b.c", "[1.2.3.4]"])
_ADDRESS = st.builds(lambda a, d: f"{a}@{d}", _ATOM, _DOMAIN)
_TEXT = st.lists(st.sampled_from([*"aăđ xyz.@<>,;:()\"\\", *BREAKS, "ubnd@tayninh.gov.vn"]),
                max_size=12).map("".join)
_FRAGMENT = st.one_of(
    _ATOM, _ADDRESS, _ADDRESS.map(lambda a: f"<{a}>"), _ADDRESS.map(lambda a: f"<@relay.vn:{a}>"),
    _TEXT.map(_b), _TEXT.map(_q), _TEXT.map(lambda t: '"' + t.replace("\r", "").replace(
        "\n", "") + '"'),
    _TEXT.map(lambda t: "(" + t.replace("\r", "").replace("\n", "") + ")"),
    st.sampled_from([",", "<", ">", ":", ";", "@", "\"", "\\", " ", "(", ")", "Nguyễn"]),
)
_VALUE = st.lists(_FRAGMENT, max_size=8).map(" ".join)
HIDDEN = "secret@hidden.example"


def _expected(value: str) -> str | None:
    """What `email.policy.default` makes of the value: the one address, or None."""
    try:
        parsed = policy.default.header_factory("from", value)
    except Exception:  # the property only needs "no single address" here
        return None
    found = [a for g in parsed.groups for a in g.addresses]
    if len(found) == 1 and found[0].username and found[0].domain:
        return str(found[0].addr_spec).lower()
    return None


@settings(max_examples=300, deadline=None)
@given(_VALUE)
def test_the_address_is_what_the_standard_parser_says(value: str) -> None:
    """The identity's address is the standard parser's single address of the raw value, or
    '' with a problem that says why."""
    value = value.replace("\r", " ").replace("\n", " ").strip(" \t")

    who = _who(f"From: {value}")

    assert who.address in {_expected(value), ""}
    if not who.address:
        assert who.problems


@settings(max_examples=300, deadline=None)
@given(_VALUE, st.lists(st.sampled_from(["b", "q", "comment"]), min_size=1, max_size=3),
       st.randoms(use_true_random=False))
def test_an_address_only_in_encoded_words_or_comments_is_never_the_sender(
        value: str, places: list[str], rnd: Any) -> None:
    """An address that appears only inside encoded words or comments never becomes the
    sender."""
    value = value.replace("\r", " ").replace("\n", " ")
    words = value.split(" ")
    for place in places:
        hidden = {"b": _b(HIDDEN), "q": _q(HIDDEN), "comment": f"({HIDDEN})"}[place]
        words.insert(rnd.randint(0, len(words)), hidden)

    who = _who("From: " + " ".join(words).strip())

    assert who.address != HIDDEN


@settings(max_examples=300, deadline=None)
@given(_VALUE, st.lists(st.sampled_from(["\r", "\x00", "\u2028", "\u2029", "\x85", "\u202e"]),
                        min_size=1, max_size=3))
def test_names_never_carry_line_breaks(value: str, breaks: list[str]) -> None:
    """Whatever encoded line breaks, or raw CR, NUL, separators or overrides a From holds,
    the name has none of them, and the raw ones are problems."""
    raw_value = value.replace("\r", " ").replace("\n", " ") + "".join(breaks) + "x"

    who = _who(b"From: " + raw_value.encode("utf-8"))

    assert not any(c in who.name for c in BREAKS + "\u202e")
    assert who.problems


@settings(max_examples=100, deadline=None)
@given(st.lists(_ADDRESS, min_size=2, max_size=4))
def test_several_from_headers_never_yield_an_address(froms: list[str]) -> None:
    """With more than one From header there is never a sender address."""
    who = _who(*(f"From: {a}" for a in froms))

    assert who.address == "" and f"{len(froms)} tiêu đề From" in who.problems


# --- the parse of a header is made once -------------------------------------------------------

HEADER_TEXT = st.text(alphabet=st.sampled_from(list('abđỦy "<>@.,;:()\\=?_\r\n\t')) |
                      st.characters(), max_size=80)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["from", "sender", "to", "cc", "reply-to"]), HEADER_TEXT,
       st.sampled_from(["from", "sender", "to", "cc", "reply-to"]))
def test_a_header_parsed_again_is_parsed_the_same(header: str, value: str, other: str) -> None:
    """The remembered parse of (header, value) is the parse itself, whatever was parsed
    before it: the same value under another header name keeps its own answer."""
    unremembered = identity_module._parse_short.__wrapped__
    identity_module._parse(other, value)
    assert identity_module._parse(header, value) == unremembered(header, value)
    assert identity_module._parse(header, value) == unremembered(header, value)


def test_a_remembered_parse_cannot_be_changed() -> None:
    parsed = identity_module._parse("to", '"Văn thư" <vanthu@soyte.gov.vn>, a@b.vn (Sở Y tế)')
    assert [box.address for box in parsed.mailboxes] == ["vanthu@soyte.gov.vn", "a@b.vn"]
    for value in (parsed, parsed.mailboxes[0]):
        with pytest.raises(dataclasses.FrozenInstanceError):
            value.problems = ("x",)  # type: ignore[misc]
    assert all(isinstance(getattr(parsed, f.name), tuple | bool)
               for f in dataclasses.fields(parsed))
    long = "a@b.vn, " * (MAX_PARSE // 8 + 1)
    assert identity_module._parse("to", long).problems  # too long: not parsed, not remembered
    assert identity_module._parse_short.cache_info().currsize <= 256
