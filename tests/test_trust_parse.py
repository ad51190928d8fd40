"""vanthu reads Authentication-Results with authres's own parser, each pattern compiled once
(daemon/understand/trust.py `_Header`). It must read every header exactly as the library
does: the same structure when the library parses it, the same error when it does not.
Headers are drawn from the RFC 8601 grammar (methods, results, comments, reasons, quoted
strings, local@domain values, several results, `none`) and from its pieces in any order,
with junk: what a forger writes as much as what a server writes."""

from __future__ import annotations

from typing import Any

import authres
from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.understand import trust
from daemon.understand.trust import _Header

TOKEN = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.",
                min_size=1, max_size=12)
DOMAIN = st.lists(TOKEN.map(lambda t: t.strip(".") or "x"), min_size=1, max_size=4).map(
    ".".join)
COMMENT_TEXT = st.text(alphabet=st.sampled_from([*"abc XYZ 0123;=:/.-@\"\\()\t", "ả", "Đ",
                                                 "\u200b"]), max_size=20)
COMMENT = st.one_of(st.just(""), COMMENT_TEXT.map(lambda t: f" ({t})"),
                    COMMENT_TEXT.map(lambda t: f" (a (b {t}) c)"))
QUOTED = COMMENT_TEXT.map(lambda t: '"' + t.replace('"', '\\"') + '"')
VALUE = st.one_of(DOMAIN, QUOTED, DOMAIN.map(lambda d: "@" + d),
                  st.tuples(TOKEN, DOMAIN).map(lambda p: f"{p[0]}@{p[1]}"), st.just(""))
METHOD = st.sampled_from(["dkim", "spf", "dmarc", "arc", "iprev", "auth", "x-vanthu", "DKIM"])
RESULT = st.sampled_from(["pass", "fail", "none", "neutral", "temperror", "permerror",
                          "policy", "softfail", "hardfail", "PASS", "bogus"])
PROPERTY = st.tuples(st.sampled_from(["header", "smtp", "policy", "body", "x"]),
                     st.sampled_from(["d", "i", "from", "mailfrom", "b", "a", "s", "helo"]),
                     VALUE, COMMENT).map(lambda p: f" {p[0]}.{p[1]}={p[2]}{p[3]}")
REASON = st.tuples(st.sampled_from(["reason", "Reason", "REASON"]), VALUE).map(
    lambda p: f" {p[0]}={p[1]}")
RESINFO = st.tuples(METHOD, st.sampled_from(["", "/1", "/2"]), RESULT, COMMENT,
                    st.one_of(st.just(""), REASON),
                    st.lists(PROPERTY, max_size=4)).map(
    lambda r: f"{r[0]}{r[1]}={r[2]}{r[3]}{r[4]}{''.join(r[5])}")
WELL_FORMED = st.tuples(DOMAIN, COMMENT, st.sampled_from(["", " 1"]),
                        st.one_of(st.sampled_from([["none"], ["NONE"], ["None"]]),
                                  st.lists(RESINFO, min_size=1,
                                                              max_size=4))).map(
    lambda h: f"{h[0]}{h[1]}{h[2]}; " + "; ".join(h[3]))
PIECES = st.lists(st.one_of(TOKEN, COMMENT, QUOTED, RESINFO,
                            st.sampled_from([";", "=", " ", "\t", "\r\n ", "(", ")", '"', "\\",
                                             "/", "@", ".", "ả", "=?utf-8?q?x?="])),
                  max_size=14).map("".join)
HEADER = st.one_of(WELL_FORMED, PIECES, st.tuples(WELL_FORMED, PIECES).map("".join),
                   st.text(max_size=60))


def _shape(header: Any) -> Any:
    """Everything the parser found, as plain values."""
    return (header.authserv_id, header.authserv_id_comment, header.version, str(header),
            [(r.method, r.version, r.result, r.result_comment, r.reason, r.reason_comment,
              [(p.type, p.name, p.value, p.comment) for p in r.properties])
             for r in header.results])


def _outcome(parse: Any, value: str) -> Any:
    try:
        return "parsed", _shape(parse(value))
    except Exception as err:  # the library raises its own SyntaxError and assorted others
        return "raised", type(err).__name__, str(err)


@settings(max_examples=1500)
@given(value=HEADER)
def test_each_header_is_read_as_the_library_reads_it(value: str) -> None:
    features = authres.core_features()
    library = _outcome(features.parse_value, value)
    ours = _outcome(lambda v: _Header.parse_value(features, v), value)
    assert ours == library


def test_the_grammar_draws_parsed_headers_and_refused_ones() -> None:
    """The strategies reach both sides: a header the library parses, and one it refuses."""
    features = authres.core_features()
    value = ('mx.tayninh.gov.vn (Postfix) 1; dkim=pass (2048-bit key) reason="ok" '
             'header.d=tayninh.gov.vn header.i=@tayninh.gov.vn header.b="Ab/Cd+"; '
             "dmarc=fail (p=reject) header.from=tayninh.gov.vn; spf=pass smtp.mailfrom=a@b.vn")
    parsed = features.parse_value(value)
    assert len(parsed.results) == 3
    assert _shape(_Header.parse_value(features, value)) == _shape(parsed)
    for broken in ["mx.tayninh.gov.vn; dkim=", "mx.tayninh.gov.vn; (unclosed", "; dkim=pass",
                   "mx.tayninh.gov.vn;;"]:
        assert _outcome(features.parse_value, broken)[0] == "raised"
        assert _outcome(lambda v: _Header.parse_value(features, v), broken) == \
            _outcome(features.parse_value, broken)


def test_vanthu_reads_its_own_header_through_this_parser(monkeypatch: Any) -> None:
    """`trust._parse` goes through `_Header`: the library's slower parser is never asked."""
    def refuse(*_: Any) -> Any:
        raise AssertionError("the library's own parser was called")

    monkeypatch.setattr(authres.core.AuthenticationResultsHeader, "_parse_pattern", refuse)
    found = trust._parse("mx.tayninh.gov.vn; dmarc=pass header.from=tayninh.gov.vn",
                         "mx.tayninh.gov.vn")
    assert [(r.method, r.result, r.properties) for r in found] == \
        [("dmarc", "pass", (("header.from", "tayninh.gov.vn"),))]
