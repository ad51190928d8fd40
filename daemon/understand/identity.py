"""Who sent a mail, read from the raw header bytes with the standard library's strict parser.

Decoded text is never parsed for addresses: an RFC 2047 encoded word or a comment is display
text and never yields an address, and every doubt (two From, a list, a group, a source route,
a parser defect, an address in the display name…) is named in `Identity.problems` so the mail
can be held for the clerk. Pure; linear in the size of the header block, and the standard
parser (quadratic on hostile input) is only ever given capped pieces.
"""

from __future__ import annotations

import binascii
import functools
import re
import unicodedata
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from email import policy
from email.errors import HeaderParseError
from email.header import decode_header, make_header
from typing import Any

from daemon.models import Address
from daemon.textnorm import header_safe, nfc

# The headers read here; everything else is left to the MIME parser.
NAMES = frozenset({"from", "sender", "reply-to", "to", "cc", "return-path",
                   "authentication-results"})
MAX_VALUE = 16 * 1024  # one header's value is kept and scanned up to about this length
# The standard parser is quadratic on hostile input (16 KB of quotes: 5 s), so it is never
# given more than this at once: a From or Sender longer than it is refused, a long To or Cc
# is split at its top-level commas and each mailbox parsed alone, within a budget.
MAX_PARSE = 2048
MAX_MAILBOX = 1024  # one mailbox of a long list
MAX_LIST_PARSE = 8 * 1024  # characters of all the mailboxes of one header name parsed
MAX_ADDRESSES = 100  # per header name
MAX_VALUES = 50  # kept per header name; more are only counted
_MAX_COMMENT_DEPTH = 32  # the parser recurses per nested comment

# A header line: a field name of printable ASCII but ":", then the colon. White space before
# the colon is obsolete syntax (RFC 5322 §4.5) that some programs accept and others do not.
_FIELD = re.compile(rb"([\x21-\x39\x3b-\x7e]+)([ \t]*):")
# Characters in a raw From/Sender value that no honest mail program writes there.
_RAW_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029\u061c\u200e\u200f"
                          "\u202a-\u202e\u2066-\u2069]")
# An RFC 2047 encoded word, found anywhere in a raw value to decode it as display text.
_ENCODED_WORD = re.compile(r"=\?[^?\s]{1,64}\?[bBqQ]\?[^?\s]{0,2048}\?=")
# What ends the local part or the domain of something shaped like an address in display text.
_ADDRESS_ENDS = frozenset(' <>()[]{},;:"\'`|\\/@')
_WHITE = re.compile(r"\s+")
_AROUND_MARKS = re.compile(r" ?([@.]) ?")
# Parser defects of legitimate everyday mail: "Nguyen V. An <an@example.vn>".
_BENIGN_DEFECTS = frozenset({"period in 'phrase'"})


@dataclass(frozen=True)
class RawHeaders:
    """Unfolded values of the headers in `NAMES`, top-down, as the raw bytes had them.

    8-bit bytes are decoded as UTF-8 when they are (RFC 6532 allows raw UTF-8), else as
    windows-1258 (what old Vietnamese mail programs wrote), else as Latin-1; `legacy` names
    the headers that were not UTF-8. `counts` says how many of each name there were (values
    keep at most `MAX_VALUES`); `obsolete` names the headers written with white space
    before the colon.
    """

    values: Mapping[str, tuple[str, ...]]
    counts: Mapping[str, int]
    obsolete: frozenset[str] = frozenset()
    legacy: frozenset[str] = frozenset()

    def get(self, name: str) -> tuple[str, ...]:
        return self.values.get(name.lower(), ())


@dataclass(frozen=True)
class Identity:
    """The sender as the strict parser of the raw From header sees it.

    `address` is the lower-case addr-spec of the one mailbox in the one From header, or ''
    when there is no single trustworthy one. `name` is its display name (NFC, one line, no
    control or direction characters). `problems` name each suspicious fact, short and in
    Vietnamese (they reach the clerk in hold reasons); empty means nothing is doubtful.
    `facts` are worth showing but not suspicious by themselves (e.g. a Reply-To on another
    domain).
    """

    address: str
    name: str
    problems: tuple[str, ...] = ()
    facts: tuple[str, ...] = ()

    @property
    def domain(self) -> str:
        return self.address.rpartition("@")[2]


def _header_block(raw: bytes) -> Iterator[bytes]:
    """The lines of the header block, without their line ends, up to the first line that is
    neither a header nor a continuation (the blank line, or body text a broken mail started
    without one — where Python's parser and MTAs stop too)."""
    start = 0
    first = True
    while start < len(raw):
        end = raw.find(b"\n", start)
        if end < 0:
            end = len(raw)
        line = raw[start:end]
        start = end + 1
        if line.endswith(b"\r"):
            line = line[:-1]
        if first and line.startswith(b"From ") and not _FIELD.match(line):
            first = False  # an mbox envelope line, not a header
            continue
        first = False
        # A line of white space only continues the header above, as Python's parser reads it.
        if not line or not (line[:1] in (b" ", b"\t") or _FIELD.match(line)):
            return
        yield line


def _text(value: bytes) -> tuple[str, bool]:
    """`value` as text, and whether it had to be read as a legacy 8-bit code page."""
    for codec in ("utf-8", "cp1258"):
        try:
            return value.decode(codec), codec != "utf-8"
        except UnicodeDecodeError:
            continue
    return value.decode("latin-1"), True


def raw_headers(raw: bytes, names: frozenset[str] = NAMES) -> RawHeaders:
    """Collect and unfold the headers `names` from the header block of the raw mail `raw`."""
    values: dict[str, list[str]] = {}
    counts: dict[str, int] = {}
    obsolete: set[str] = set()
    legacy: set[str] = set()
    current: list[bytes] | None = None
    size = 0

    def keep(name: str, parts: list[bytes]) -> None:
        if len(values.setdefault(name, [])) < MAX_VALUES:
            text, old = _text(b"".join(parts))
            values[name].append(text)
            if old:
                legacy.add(name)

    name = ""
    for line in _header_block(raw):
        if line[:1] in (b" ", b"\t"):
            if current is not None and size <= MAX_VALUE:
                # Unfolding: the line break goes, the white space stays.
                current.append(line[:MAX_VALUE + 1 - size])
                size += len(current[-1])
            continue
        if current is not None:
            keep(name, current)
        field = _FIELD.match(line)
        assert field is not None  # _header_block yields headers and continuations only
        name = field.group(1).decode("ascii").lower()
        if name not in names:
            current = None
            continue
        counts[name] = counts.get(name, 0) + 1
        if field.group(2):
            obsolete.add(name)
        current = [line[field.end():field.end() + MAX_VALUE + 1].lstrip(b" \t")]
        size = len(current[0])
    if current is not None:
        keep(name, current)
    return RawHeaders({k: tuple(v) for k, v in values.items()}, counts, frozenset(obsolete),
                      frozenset(legacy))


def _decoded_words(value: str) -> str:
    """Every RFC 2047 encoded word in `value`, decoded, wherever it stands."""
    words = []
    for match in _ENCODED_WORD.finditer(value[:MAX_VALUE]):
        try:
            words.append(str(make_header(decode_header(match.group(0)))))
        except (UnicodeError, LookupError, ValueError, binascii.Error, HeaderParseError):
            continue
    return " ".join(words)


def addresses_in_text(text: str) -> tuple[str, ...]:
    """Anything shaped like local@domain.tld in display text, lower case.

    Compatibility forms are folded first (NFKC: a full-width ＠ is an @), invisible and control
    characters dropped, and white space around "@" and "." removed, so "ubnd @ tayninh.gov.vn"
    split by spaces or line breaks still counts. Linear: each character is looked at a
    bounded number of times.
    """
    visible_text = "".join(c for c in unicodedata.normalize("NFKC", text[:MAX_VALUE])
                           if c.isspace() or unicodedata.category(c) not in ("Cc", "Cf"))
    flat = _AROUND_MARKS.sub(r"\1", _WHITE.sub(" ", visible_text))
    found: list[str] = []
    at = flat.find("@")
    while at >= 0 and len(found) < MAX_ADDRESSES:
        left = at
        while left > 0 and flat[left - 1] not in _ADDRESS_ENDS:
            left -= 1
        right = at + 1
        while right < len(flat) and flat[right] not in _ADDRESS_ENDS:
            right += 1
        local, domain = flat[left:at], flat[at + 1:right].strip(".")
        labels = domain.split(".")
        if local and len(labels) >= 2 and all(labels):
            found.append(f"{local}@{domain}".lower())
        at = flat.find("@", at + 1)
    return tuple(found)


def _comment_depth(value: str) -> int:
    depth = deepest = 0
    escaped = False
    for char in value:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "(":
            depth += 1
            deepest = max(deepest, depth)
        elif char == ")":
            depth = max(0, depth - 1)
    return deepest


def _tokens(tree: Any) -> Iterator[tuple[Any, tuple[str, ...]]]:
    """Every token of a parse tree with the token types of its ancestors (iterative)."""
    stack: list[tuple[Any, tuple[str, ...]]] = [(tree, ())]
    while stack:
        token, above = stack.pop()
        yield token, above
        if isinstance(token, list):
            inner = (*above, str(getattr(token, "token_type", "")))
            stack.extend((child, inner) for child in reversed(token))


@dataclass(frozen=True)
class _Mailbox:
    address: str  # lower-case addr-spec, or '' when it must not be trusted
    name: str  # display name or, for "addr (Name)", the comment
    problems: tuple[str, ...]


@dataclass(frozen=True)
class _Parsed:
    mailboxes: tuple[_Mailbox, ...]
    display: tuple[str, ...]  # every piece of display text: names, comments, encoded words
    problems: tuple[str, ...]
    grouped: bool


def _parse(header: str, value: str) -> _Parsed:
    """Parse one raw address header value with `email.policy.default`'s header registry."""
    if len(value) > MAX_PARSE:
        return _Parsed((), (_decoded_words(value),),
                       (f"{header.title()} dài quá {MAX_PARSE} ký tự: không phân tích",), False)
    return _parse_short(header, value)


# The same From and To come again and again (an agency's own address in every To; the
# offices that write to it): the registry's parse takes 0.2-0.3 ms a header. The answer is a
# function of the two strings, and nothing in it can be changed (frozen, tuples).
@functools.lru_cache(maxsize=256)
def _parse_short(header: str, value: str) -> _Parsed:
    label = header.title()
    display = [_decoded_words(value)]
    if _comment_depth(value) > _MAX_COMMENT_DEPTH:
        return _Parsed((), tuple(display), (f"{label} lồng chú thích quá sâu: không phân tích",),
                       False)
    try:
        parsed = policy.default.header_factory(header, value)
    except Exception as err:  # bulkhead: the parser raises ValueError, IndexError, … on junk
        return _Parsed((), tuple(display), (f"không phân tích được {label} (lỗi kỹ thuật: "
                                            f"{_short(err)})",), False)
    problems = [f"{label} sai cú pháp (lỗi kỹ thuật: {_short(defect)})" for defect in parsed.defects
                if str(defect) not in _BENIGN_DEFECTS]
    # The header object keeps the tree it was built from; its addresses follow the tree's
    # mailboxes one for one, so each address can be checked against its own tokens.
    tree = getattr(parsed, "_parse_tree", None)
    tree_boxes = list(tree.all_mailboxes) if tree is not None else []
    grouped = any(group.display_name is not None for group in parsed.groups)
    boxes: list[_Mailbox] = []
    for group in parsed.groups:
        if group.display_name:
            display.append(group.display_name)
        for found in group.addresses:
            if len(boxes) == MAX_ADDRESSES:
                problems.append(f"{label} có hơn {MAX_ADDRESSES} địa chỉ")
                break
            token = tree_boxes[len(boxes)] if len(boxes) < len(tree_boxes) else None
            boxes.append(_mailbox(label, found, token, display))
    problems.extend(p for box in boxes for p in box.problems)
    return _Parsed(tuple(boxes), tuple(display), tuple(dict.fromkeys(problems)), grouped)


def _mailbox(label: str, found: Any, token: Any, display: list[str]) -> _Mailbox:
    problems: list[str] = []
    comments: list[str] = []
    address = found.addr_spec.lower() if found.username and found.domain else ""
    if token is None:
        return _Mailbox("", "", (f"không phân tích được cấu trúc của {label}",))
    if token.token_type == "invalid-mailbox":
        problems.append(f"{label} có hộp thư không hợp lệ")
        address = ""
    for part, above in _tokens(token):
        kind = getattr(part, "token_type", "")
        if kind == "encoded-word" and ("addr-spec" in above or "angle-addr" in above):
            problems.append(f"địa chỉ trong {label} được ghép từ từ mã hóa (encoded word)")
            address = ""
        elif kind == "obs-route":
            problems.append(f"{label} có đường chuyển tiếp (source route)")
        elif kind == "comment":
            comments.append(str(getattr(part, "content", "")))
    if found.display_name:
        display.append(found.display_name)
    display.extend(comments)
    if address and not address.isascii():
        problems.append(f"{label} có địa chỉ chứa ký tự ngoài ASCII (địa chỉ quốc tế hóa)")
    if address.count("@") > 1 or '"' in address:
        # `"ubnd@tayninh.gov.vn"@evil.example` is valid, and means evil.example; a program
        # that splits at the first "@" reads it otherwise.
        problems.append(f"địa chỉ trong {label} có phần trước @ đặt trong ngoặc kép")
    elif not address and not problems:
        problems.append(f"{label} không có địa chỉ")
    name = found.display_name or " ".join(c for c in comments if c)
    return _Mailbox(address, header_safe(nfc(name), 200), tuple(problems))


def _short(thing: object) -> str:
    return header_safe(str(thing), 120)


def _raw_checks(label: str, value: str) -> list[str]:
    if _RAW_CONTROL.search(value[:MAX_VALUE]):
        return [f"tiêu đề {label} có ký tự điều khiển hoặc ký tự đổi chiều chữ"]
    return []


def _shown_addresses(parsed: _Parsed, address: str, label: str) -> list[str]:
    others = dict.fromkeys(a for text in parsed.display for a in addresses_in_text(text)
                           if a != address)
    return [f"tên hiển thị trong {label} chứa một địa chỉ khác: {header_safe(a, 100)}"
            for a in list(others)[:3]]


def _line_breaks(parsed: _Parsed, label: str) -> list[str]:
    if any(_RAW_CONTROL.search(text) for text in parsed.display):
        return [f"tên hiển thị trong {label} giải mã ra ký tự xuống dòng hoặc ký tự điều khiển"]
    return []


def identity(headers: RawHeaders) -> Identity:
    """The sender identity of a mail, and everything doubtful about it."""
    problems: list[str] = []
    facts: list[str] = []
    froms = headers.get("from")
    count = headers.counts.get("from", 0)
    if count == 0:
        return Identity("", "", ("không có tiêu đề From",))
    if count > 1:
        problems.append(f"{count} tiêu đề From")
    if "from" in headers.obsolete:
        problems.append("khoảng trắng trước dấu hai chấm của tiêu đề From")
    value = froms[0]
    problems.extend(_raw_checks("From", value))
    parsed = _parse("from", value)
    problems.extend(parsed.problems)
    if parsed.grouped:
        problems.append("From dùng cú pháp nhóm (group)")
    if len(parsed.mailboxes) > 1:
        problems.append(f"From có {len(parsed.mailboxes)} hộp thư")
    if not parsed.mailboxes and not parsed.problems:
        problems.append("From không có địa chỉ")
    single = parsed.mailboxes[0] if len(parsed.mailboxes) == 1 else None
    address = single.address if single and count == 1 and not parsed.grouped else ""
    name = header_safe(nfc(_shown_name(value, single.name)), 200) if single else ""
    problems.extend(_line_breaks(parsed, "From"))
    problems.extend(_shown_addresses(parsed, address, "From"))

    if headers.counts.get("sender", 0):
        problems.extend(_sender_problems(headers, address))
    domain = address.rpartition("@")[2]
    replies = {a.email.rpartition("@")[2] for a in addresses(headers, "reply-to")}
    for other in sorted(replies - {domain}):
        if domain:
            facts.append(f"Reply-To thuộc tên miền khác: {other}")
    if "from" in headers.legacy:
        facts.append("From có byte 8 bit không phải UTF-8 (đọc theo windows-1258)")
    if address == "" and not problems:
        problems.append("không có địa chỉ From dùng được")
    return Identity(address, name, tuple(dict.fromkeys(problems)), tuple(facts))


def _sender_problems(headers: RawHeaders, address: str) -> list[str]:
    problems: list[str] = []
    if headers.counts.get("sender", 0) > 1:
        problems.append(f"{headers.counts['sender']} tiêu đề Sender")
    value = headers.get("sender")[0]
    problems.extend(_raw_checks("Sender", value))
    parsed = _parse("sender", value)
    problems.extend(parsed.problems)
    problems.extend(_line_breaks(parsed, "Sender"))
    senders = [box.address for box in parsed.mailboxes]
    if len(senders) != 1 or parsed.grouped:
        problems.append("Sender không phải đúng một hộp thư")
    elif senders[0] != address:
        problems.append(f"Sender {header_safe(senders[0], 100) or '(trống)'} khác với From")
    return problems


def _angle_at(value: str) -> int:
    """Where the first angle address of `value` starts, outside quotes and comments; -1."""
    depth, quoted, escaped = 0, False, False
    for i, char in enumerate(value):
        if escaped:
            escaped = False
        elif char == "\\" and (quoted or depth):
            escaped = True
        elif quoted:
            quoted = char != '"'
        elif char == "(":
            depth += 1
        elif char == ")" and depth:
            depth -= 1
        elif not depth and char == '"':
            quoted = True
        elif not depth and char == "<":
            return i
    return -1


def _shown_name(value: str, parsed_name: str) -> str:
    """The display name as RFC 2047 §6.2 reads it: the white space between two encoded words
    is no text. (Python 3.11's address parser keeps it, so "=?…?Tr?= =?…?ần?=" would read
    "Tr ần".) Only for a plain phrase of words before the angle address; otherwise, and on
    any doubt, the parser's own name."""
    angle = _angle_at(value)
    phrase = value[:angle].strip() if angle > 0 else ""
    if "=?" not in phrase or any(c in phrase for c in '"()\\'):
        return parsed_name
    try:
        return str(make_header(decode_header(phrase)))
    except (UnicodeError, LookupError, ValueError, binascii.Error, HeaderParseError):
        return parsed_name


def _top_level(value: str) -> Iterator[str]:
    """`value` cut at the commas that separate mailboxes: not in a quoted string, a comment
    or an angle address. One pass."""
    start, depth, quoted, angle, escaped = 0, 0, False, False, False
    for i, char in enumerate(value):
        if escaped:
            escaped = False
        elif char == "\\" and (quoted or depth):
            escaped = True
        elif quoted:
            quoted = char != '"'
        elif char == "(":
            depth += 1
        elif char == ")" and depth:
            depth -= 1
        elif depth:
            continue
        elif char == '"':
            quoted = True
        elif char in "<>":
            angle = char == "<"
        elif char == "," and not angle:
            yield value[start:i]
            start = i + 1
    yield value[start:]


def addresses(headers: RawHeaders, name: str) -> tuple[Address, ...]:
    """The mailboxes of every `name` header (To, Cc, Reply-To…), strictly parsed.

    A mailbox whose address cannot be trusted (invalid, built from an encoded word, no
    domain) is left out; so is one longer than `MAX_MAILBOX` in a long list, and everything past
    `MAX_ADDRESSES` or `MAX_LIST_PARSE` characters per header name.
    """
    found: list[Address] = []
    budget, count = MAX_LIST_PARSE, 0
    for value in headers.get(name):
        for piece in [value] if len(value) <= MAX_PARSE else _top_level(value):
            budget -= len(piece)
            if budget < 0 or count >= MAX_ADDRESSES:
                return tuple(found)
            if len(piece) > MAX_MAILBOX and len(value) > MAX_PARSE:
                continue
            for box in _parse(name.lower(), piece).mailboxes[:MAX_ADDRESSES - count]:
                count += 1
                if box.address:
                    found.append(Address(box.name, box.address))
    return tuple(found)
