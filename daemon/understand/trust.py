"""How far a sender is proven: Authentication-Results read as RFC 8601 structures, our own
DKIM check, and whether a document's printed issuer fits the address it came from.

Pure but for `check_dkim`, which asks DNS for keys (with a timeout) and runs where mail is
read, in a worker. Nothing here matches text with a regex to decide trust: a comment, a
property value or the envelope sender an attacker chose is never a result.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import authres
import authres.core
import dkim

from daemon.textnorm import fold, header_safe

MAX_HEADER = 8 * 1024  # a longer Authentication-Results is not parsed (its parser is quadratic)
MAX_SIGNATURES = 5  # DKIM signatures verified per mail
DNS_TIMEOUT = 5.0  # seconds per key lookup

# dkimpy logs every failed signature at ERROR; the verdict carries the reason instead.
_DKIM_LOG = logging.getLogger("vanthu.dkimpy")
_DKIM_LOG.setLevel(logging.CRITICAL)

# (name, timeout) -> the TXT record, or None when there is none; dkimpy's own shape.
DnsFunc = Callable[..., bytes | None]


NO_FROM = "không có địa chỉ From để xác thực"


@dataclass(frozen=True)
class Verdict:
    """Did the From domain pass DMARC or aligned DKIM? None: nothing trusted could tell."""

    authenticated: bool | None
    why: str


def in_domains(domain: str, domains: Iterable[str]) -> bool:
    """`domain` is one of `domains` or below one of them (a.tayninh.gov.vn is in gov.vn)."""
    domain = domain.lower().rstrip(".")
    return bool(domain) and any(domain == d or domain.endswith("." + d)
                                for d in (x.lower().strip(".") for x in domains) if d)


def _host(value: str) -> str:
    """The domain of a property value: `@d`, `user@d` or `d`, lower case, A-labels."""
    host = value.strip().strip('"').rpartition("@")[2].strip().lower().rstrip(".")
    return _ascii(host)


def domain_of(address: str) -> str:
    """The domain of an address as one exact key: lower case, no final dot, A-labels (an IDN
    homograph keeps its own xn-- form, so it never equals the domain it imitates)."""
    return _ascii(address.rpartition("@")[2].strip().lower().rstrip("."))


def _ascii(domain: str) -> str:
    if domain.isascii():
        return domain
    try:
        return domain.encode("idna").decode("ascii")
    except UnicodeError:
        return domain


def aligned(signer: str, domain: str) -> bool:
    """A DKIM signing domain speaks for `domain`: the same, or a parent of it with at least
    two labels (relaxed alignment: tayninh.gov.vn signs for snv.tayninh.gov.vn; vn never)."""
    signer, domain = _host(signer), _ascii(domain.lower().rstrip("."))
    if not signer or not domain:
        return False
    return signer == domain or (domain.endswith("." + signer) and "." in signer)


def authserv_id_of(value: str) -> str:
    """The authserv-id an Authentication-Results value starts with (after any comments),
    lower case; '' when there is none. Linear and cheap, so any header can be sorted out
    before the costly parse."""
    i, depth, n = 0, 0, min(len(value), MAX_HEADER)
    while i < n:  # skip white space and (nested) comments
        char = value[i]
        if depth:
            if char == "\\":
                i += 1
            elif char == "(":
                depth += 1
            elif char == ")":
                depth -= 1
        elif char == "(":
            depth = 1
        elif not char.isspace():
            break
        i += 1
    if i < n and value[i] == '"':
        end = value.find('"', i + 1, n)
        return value[i + 1:end].lower() if end > 0 else ""
    start = i
    while i < n and not value[i].isspace() and value[i] not in ";(":
        i += 1
    return value[start:i].lower()


@dataclass(frozen=True)
class _Result:
    method: str
    result: str
    properties: tuple[tuple[str, str], ...]  # ("header.from", "tayninh.gov.vn"), …

    def values(self, *names: str) -> list[str]:
        return [value for name, value in self.properties if name in names]


class _Header(authres.core.AuthenticationResultsHeader):  # type: ignore[misc]
    """authres's parser (authres 1.2), each of its patterns compiled once. The library's
    `_parse_pattern` compiles most of them again at every token, through `re`'s cache, and
    takes the token off with `sub` (0.4-0.6 ms for a usual header, in the daemon's process,
    for every mail). Every pattern it is given is a string matched from the start of the
    text left, with no alternative at its top: `sub(..., 1)` of "^" + pattern then takes off
    exactly what `match` finds, as here. tests/test_trust_parse.py holds this parser to the
    library's own results, and errors, on every header it draws."""

    _compiled: ClassVar[dict[str, re.Pattern[str]]] = {}
    _parse_text: str  # the text left to parse (the library's)

    def _parse_pattern(self, pattern: str) -> re.Match[str] | None:
        regexp = self._compiled.get(pattern)
        if regexp is None:
            regexp = self._compiled.setdefault(pattern, re.compile(r"^" + pattern, re.I))
        match = regexp.match(self._parse_text)
        if match:
            self._parse_text = self._parse_text[match.end():]
        return match


def _parse(value: str, authserv_id: str) -> list[_Result]:
    """The resinfo of one header, structurally; raises ValueError with the parser's reason."""
    try:
        header = _Header.parse_value(authres.core_features(), value)
    except Exception as err:  # bulkhead: authres raises its own SyntaxError, RecursionError
        # on nested comments, and assorted built-in errors on junk
        raise ValueError(f"{type(err).__name__}: {header_safe(str(err), 120)}") from err
    if str(getattr(header, "authserv_id", "")).lower() != authserv_id:
        raise ValueError("the parser reads another authserv-id")
    results = []
    for item in getattr(header, "results", ()):
        props = tuple((f"{p.type}.{p.name}".lower(), str(p.value or ""))
                      for p in getattr(item, "properties", ()) or ())
        results.append(_Result(str(item.method or "").lower(), str(item.result or "").lower(),
                               props))
    return results


def from_headers(values: Sequence[str], domain: str, authserv_id: str,
                 count: int = 1) -> Verdict:
    """Judge the From domain `domain` by our own Authentication-Results among `values`
    (top-down, unfolded).

    Only the first `count` headers carrying `authserv_id` count, from the top: our servers
    add theirs above whatever came with the mail, so one of ours further down is forged. In
    them a dmarc=fail for the domain (or without header.from) is False; then dmarc=pass with
    header.from equal to the domain, or dkim=pass with header.d/header.i aligned, is True; an
    aligned dkim=fail without an aligned pass is False; anything else says nothing (None).
    """
    ours = authserv_id.strip().lower()
    if not ours:
        return Verdict(None, "chưa cấu hình [security] authserv_id: không tin kết quả "
                             "Authentication-Results nào")
    if not domain:
        return Verdict(None, NO_FROM)
    domain = _ascii(domain.lower())
    counted: list[_Result] = []
    notes: list[str] = []
    taken = 0
    for value in values:
        if taken == max(1, count):
            break  # below the topmost of ours: whatever else claims to be ours is forged
        if authserv_id_of(value) != ours:
            continue
        taken += 1
        if len(value) > MAX_HEADER:
            notes.append(f"Authentication-Results của {ours} dài quá {MAX_HEADER} ký tự: "
                         "không phân tích")
            continue
        try:
            counted.extend(_parse(value, ours))
        except ValueError as err:
            notes.append(f"Authentication-Results của {ours} sai cú pháp (lỗi kỹ thuật: {err})")
    if not counted and not notes:
        return Verdict(None, f"không có Authentication-Results của {ours}")
    verdict = _judge(counted, domain, ours)
    if verdict.authenticated is None and notes:
        return Verdict(None, "; ".join([*notes, verdict.why]))
    return verdict


def _judge(results: list[_Result], domain: str, ours: str) -> Verdict:
    dmarc = [r for r in results if r.method == "dmarc"]
    for r in dmarc:
        froms = [_host(v) for v in r.values("header.from")]
        if r.result == "fail" and (not froms or domain in froms):
            return Verdict(False, f"dmarc=fail cho {domain} tại {ours}")
    for r in dmarc:
        froms = [_host(v) for v in r.values("header.from")]
        if r.result == "pass" and froms and all(f == domain for f in froms):
            return Verdict(True, f"dmarc=pass cho {domain} tại {ours}")
    dkim_results = [r for r in results if r.method == "dkim"]
    for r in dkim_results:
        signers = r.values("header.d", "header.i")
        if r.result == "pass" and signers and all(aligned(s, domain) for s in signers):
            return Verdict(True, f"dkim=pass do {_host(signers[0])} ký, khớp với {domain}, "
                                 f"tại {ours}")
    for r in dkim_results:
        signers = r.values("header.d", "header.i")
        if r.result == "fail" and signers and all(aligned(s, domain) for s in signers):
            return Verdict(False, f"dkim=fail do {_host(signers[0])} ký cho {domain} tại {ours}")
    return Verdict(None, f"Authentication-Results của {ours} không có kết quả pass hay fail "
                         f"khớp với {domain}")


@dataclass(frozen=True)
class DkimResult:
    """One DKIM signature as our own check found it."""

    domain: str  # its d=, lower case
    passed: bool
    why: str
    temporary: bool = False  # a DNS timeout: neither pass nor fail


@dataclass(frozen=True)
class DkimCheck:
    """How to verify DKIM while reading a mail: the DNS lookup (dkimpy's resolver when None;
    tests give their own) and its timeout. Picklable when `dnsfunc` is a module function."""

    timeout: float = DNS_TIMEOUT
    dnsfunc: DnsFunc | None = field(default=None, compare=False)


def check_dkim(raw: bytes, check: DkimCheck) -> tuple[DkimResult, ...]:
    """Verify the first `MAX_SIGNATURES` DKIM signatures of `raw`. A signature limited to
    part of the body (l=) does not count as a pass: anything could follow the signed part."""
    try:
        verifier = dkim.DKIM(raw, logger=_DKIM_LOG, timeout=check.timeout)
        total = sum(1 for name, _ in verifier.headers if name.lower() == b"dkim-signature")
    except Exception as err:  # bulkhead: dkimpy raises its own and built-in errors on junk
        return (DkimResult("", False, f"message unreadable for DKIM ({_short(err)})"),)
    results = []
    for index in range(min(total, MAX_SIGNATURES)):
        timed_out: list[bool] = []
        lookup = _recording(check.dnsfunc, timed_out)
        verifier.signature_fields = {}  # not the previous signature's, should this one fail
        try:
            ok = bool(verifier.verify(index, dnsfunc=lookup))
            why = "chữ ký hợp lệ" if ok else "chữ ký không hợp lệ"
        except dkim.DKIMException as err:
            ok, why = False, f"chữ ký không hợp lệ (lỗi kỹ thuật: {_short(err)})"
        except Exception as err:  # bulkhead: dkimpy meets junk with built-in errors too
            ok, why = False, f"chữ ký không dùng được (lỗi kỹ thuật: {_short(err)})"
        fields: dict[bytes, Any] = getattr(verifier, "signature_fields", None) or {}
        signer = _text(fields.get(b"d", b"")).lower()
        if ok and b"l" in fields:
            ok, why = False, "chữ ký chỉ phủ một phần nội dung thư (l=)"
        if timed_out:
            ok, why = False, "không tra được khóa qua DNS (lỗi hoặc quá thời gian)"
        results.append(DkimResult(signer, ok, why, temporary=bool(timed_out)))
    return tuple(results)


def _recording(dnsfunc: DnsFunc | None, timed_out: list[bool]) -> DnsFunc:
    inner: DnsFunc = dnsfunc or dkim.get_txt

    def lookup(name: bytes, timeout: float = DNS_TIMEOUT) -> bytes | None:
        try:
            return inner(name, timeout=timeout)
        except Exception as err:  # any failure to ask DNS is temporary, never a verdict
            timed_out.append(True)
            raise dkim.DnsTimeoutError(_short(err)) from err
    return lookup


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("ascii", "replace")
    return str(value)


def _short(err: BaseException) -> str:
    return header_safe(f"{type(err).__name__}: {err}", 160)


def from_dkim(results: Sequence[DkimResult], domain: str) -> Verdict:
    """Judge the From domain by our own DKIM check: an aligned, verified signature is True;
    an aligned one that fails (no timeout) without any aligned pass is False."""
    if not domain:
        return Verdict(None, NO_FROM)
    mine = [r for r in results if aligned(r.domain, domain)]
    if passed := [r for r in mine if r.passed]:
        return Verdict(True, f"vanthu tự kiểm tra DKIM: chữ ký của {passed[0].domain} hợp lệ, "
                             f"khớp với {domain}")
    if failed := [r for r in mine if not r.temporary]:
        return Verdict(False, f"vanthu tự kiểm tra DKIM: chữ ký của {failed[0].domain} cho "
                              f"{domain}: {failed[0].why}")
    return Verdict(None, f"vanthu tự kiểm tra DKIM: không có chữ ký hợp lệ khớp với {domain}")


def combine(*verdicts: Verdict) -> Verdict:
    """Any proof wins (an aligned DKIM pass is a DMARC pass); then any failure; else None."""
    for wanted in (True, False):
        if found := [v for v in verdicts if v.authenticated is wanted]:
            return Verdict(wanted, found[0].why)
    return Verdict(None, "; ".join(v.why for v in verdicts))


# Names of state bodies (folded, without accents) found anywhere in the issuer, and generic
# words that name one only at the start ("Sở Tài chính", "Bộ Xây dựng", "Ban Quản lý …").
_STATE_WORDS = (
    "uy ban nhan dan", "ubnd", "hoi dong nhan dan", "hdnd", "toa an", "vien kiem sat",
    "cong an", "thanh tra", "kho bac", "bao hiem xa hoi", "tong cuc", "chi cuc", "dang uy",
    "tinh uy", "huyen uy", "thanh uy", "quan uy", "thi uy", "dang bo", "mat tran to quoc",
    "chi huy quan su", "chqs", "bo doi bien phong", "van phong",
)
_STATE_PREFIXES = ("sở", "bộ", "ban", "cục", "văn phòng", "tổng cục", "chi cục")
_WORDS = re.compile(r"[^\w]+")


def is_state_body(issuer: str) -> bool:
    """Does the issuer name a state body (People's Committee, Department, Ministry, Police,
    Court, Party committee …)? Compared on folded text."""
    bare = f" {_WORDS.sub(' ', fold(issuer, accents=False))} "
    accented = f" {_WORDS.sub(' ', fold(issuer))} "
    return (any(f" {word} " in bare for word in _STATE_WORDS)
            or any(accented.startswith(f" {word} ") for word in _STATE_PREFIXES))


def issuer_note(issuer: str | None, address: str, authenticated: bool | None,
                trusted_domains: Iterable[str]) -> str | None:
    """A note in Vietnamese when a document printed as a state body's comes from an address
    outside the state's domains or from one that is not authenticated; else None.

    Small communes do send from free mail: such a document is still registered, with the
    note, so that the people reading it know what to check.
    """
    if not issuer or not is_state_body(issuer):
        return None
    name = header_safe(issuer, 200)
    domain = address.rpartition("@")[2]
    if not domain:
        return f"Văn bản ghi cơ quan ban hành «{name}» nhưng không rõ địa chỉ gửi"
    if not in_domains(domain, trusted_domains):
        unproven = "" if authenticated is True else ", và địa chỉ gửi không được xác thực"
        return (f"Văn bản ghi cơ quan ban hành «{name}» nhưng gửi từ địa chỉ ngoài tên miền "
                f"cơ quan nhà nước ({header_safe(domain, 100)}){unproven}")
    if authenticated is not True:
        return (f"Văn bản ghi cơ quan ban hành «{name}» nhưng địa chỉ gửi "
                f"{header_safe(address, 120)} không được xác thực (DKIM/DMARC)")
    return None
