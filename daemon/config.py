"""Load and validate `config.toml` whole: every problem is collected and reported at once.

Unknown keys, wrong types and values vanthu could not use (a sender that is not one mailbox, a
Message-ID domain that is not an ASCII domain, a case-code format that cannot be formatted) are
errors located as `file:line`. In a file the agency's identity, a mailbox and `[smtp] from` are
required; every other key has a default. The result is a frozen `Config` passed explicitly;
there is no global settings object. Secrets are `Secret` values that never print. Pure: reading
the file (and password files) is the only I/O.
"""

from __future__ import annotations

import bisect
import dataclasses
import email.policy
import functools
import importlib.util
import json
import os
import re
import string
import tomllib
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from daemon import trustroots
from daemon.errors import ConfigError, Problem
from daemon.office.calendar import WorkCalendar

T = TypeVar("T")

SECURITY_MODES = ("tls", "starttls", "none")
AUTH_MODES = ("password", "oauth2")
OAUTH_PROVIDERS = ("microsoft", "google")


class Secret:
    """A password: its value is reachable through `reveal()` only, never through str/repr."""

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class AgencyConfig:
    name: str = "Sở Xây dựng"
    code: str = "000.00.00.H00"
    timezone: str = "Asia/Ho_Chi_Minh"
    # Our own addresses: mail from them is never answered automatically (no loops).
    addresses: tuple[str, ...] = ()
    # Format of a dossier code, fields code, yymmdd, yyyy, seq: by default the national form
    # <agency code>-<yymmdd>-<4-digit daily sequence> (Decree 118/2025), e.g.
    # 000.17.22.H56-210531-0001.
    case_code_format: str = "{code}-{yymmdd}-{seq:04d}"
    # How a case code is recognised in a subject: ours, and codes of earlier systems.
    case_ref_pattern: str = r"HS-\d{4}-\d{6}|[0-9A-Z.]+-\d{6}-\d{4}"
    # Domain of the Message-IDs vanthu writes.
    message_id_domain: str = "vanthu.invalid"
    # Where applicants receive results, as printed on the receipt slip.
    result_place: str = "Bộ phận Tiếp nhận và Trả kết quả"
    # The receipt slip's heading and signature: the parent authority (cơ quan chủ quản, printed
    # above the agency's name; "" for none), the place of the date line ("Tây Ninh, ngày …";
    # "" for the date alone), the hour results are returned on the appointment day, and the
    # title (and name, "" for none) of the receiving officer who signs.
    parent: str = ""
    place: str = ""
    result_time: str = "14:00"
    receiving_officer: str = "Người tiếp nhận hồ sơ"
    receiving_officer_name: str = ""
    # The volume (Quyển số) of this year's registers, printed on their cover and on the receipt
    # slip's tracking-book entry ("Quyển số: 01/2026").
    volume: int = 1

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


@dataclass(frozen=True)
class StorageConfig:
    data_dir: Path = Path("data")
    database_url: str = ""  # default: a SQLite file in data_dir

    @property
    def url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'vanthu.db'}"


@dataclass(frozen=True)
class OAuthConfig:
    """How to obtain OAuth2 access tokens for one login (a mailbox or the SMTP server):
    Microsoft 365 (client credentials: a secret or a certificate) or Google (a service account
    with domain-wide delegation, or a stored refresh token). Read by daemon/oauth.py."""

    provider: str  # microsoft | google
    client_id: str = ""
    client_secret: Secret | None = field(default=None, repr=False)
    tenant: str = ""
    # Microsoft: the authority URL; default https://login.microsoftonline.com/<tenant>.
    authority: str = ""
    # Microsoft: a PEM holding the private key and the certificate registered with the app.
    client_certificate: Secret | None = field(default=None, repr=False)
    # Google: a service account's JSON key, or a refresh token (with client_id/client_secret).
    service_account: Secret | None = field(default=None, repr=False)
    refresh_token: Secret | None = field(default=None, repr=False)
    token_url: str = "https://oauth2.googleapis.com/token"
    scope: str = ""  # default: the provider's scope for IMAP and SMTP
    ca_file: str | None = None  # a CA bundle for a private token endpoint
    timeout_seconds: float = 30.0


@dataclass(frozen=True)
class MailboxConfig:
    name: str
    host: str
    port: int
    security: str
    username: str
    password: Secret = field(repr=False)
    folders: tuple[str, ...] = ("INBOX",)
    after: str = "flag"  # flag | move:FOLDER | none
    keyword: str = "$VanthuStored"
    idle: bool = True
    poll_seconds: float = 60.0
    batch_size: int = 50
    ca_file: str | None = None  # a CA bundle for a private or self-signed server certificate
    tls_verify: bool = True
    timeout_seconds: float = 60.0  # each socket operation (connect, a command, a fetch)
    auth: str = "password"  # password | oauth2 (then `oauth` says how to get tokens)
    oauth: OAuthConfig | None = None


@dataclass(frozen=True)
class SmtpConfig:
    host: str = "127.0.0.1"
    port: int = 25
    security: str = "none"
    username: str | None = None
    password: Secret | None = field(default=None, repr=False)
    from_: str = "vanthu@localhost"  # as written: an address or a whole mailbox
    ca_file: str | None = None
    tls_verify: bool = True
    timeout_seconds: float = 60.0  # each socket operation (connect, a command, DATA)
    max_attempts: int = 10
    # A row still not sent this long after it was queued fails (reported in status and the
    # digest) instead of waiting for its remaining attempts.
    max_age_hours: float = 48.0
    auth: str = "password"  # password | oauth2 (then `oauth` says how to get tokens)
    oauth: OAuthConfig | None = None
    # `from` parsed as one RFC 5322 mailbox: the display name (any Unicode) and the ASCII
    # addr-spec that goes into the SMTP envelope and the From header.
    from_name: str = ""
    from_address: str = "vanthu@localhost"


@dataclass(frozen=True)
class RulesConfig:
    dir: Path = Path("rules")


@dataclass(frozen=True)
class OcrConfig:
    """Reading scanned pages with Tesseract (`[ocr]`): the document header of a PDF page
    without text, or of an image that looks like a page."""

    enabled: bool = True
    tesseract_cmd: str = "tesseract"  # a name on PATH or a path
    language: str = "vie"  # Tesseract's language data (Debian: tesseract-ocr-vie)
    timeout_seconds: float = 20.0  # one run of Tesseract (one image)
    mail_seconds: float = 40.0  # OCR of one mail in all, within [limits] parse_seconds
    max_pages: int = 2  # pages of one file read when the header is not found sooner
    dpi: int = 300  # pages are rendered at this resolution, or lower to stay in max_pixels
    max_pixels: int = 12_000_000  # pixels of one image given to Tesseract
    memory_mb: int = 1024  # address-space cap of Tesseract
    min_confidence: float = 0.85  # a field read less surely is shown to the clerk to check


@dataclass(frozen=True)
class LimitsConfig:
    max_message_bytes: int = 50 * 1024 * 1024
    max_attachment_bytes: int = 30 * 1024 * 1024
    max_parts: int = 200
    # MIME levels read: each multipart, and each mail forwarded inside one, is one level down;
    # parts deeper than this are not read (a defect says so).
    max_depth: int = 10
    pdf_max_pages: int = 1  # pages read for text: the header is on page one
    # Attachments are inspected before they may be forwarded, each within these budgets
    # (shared by every file inside one attachment): PDF objects visited, PDF pages and
    # characters read for the confidentiality scan, archives (ZIP, DOCX …) opened this many
    # levels deep, entries and bytes actually decompressed. Past the object, depth, entry or
    # byte budget the attachment is withheld; past pages or characters, the rest is unread.
    pdf_max_objects: int = 200_000
    pdf_scan_pages: int = 20
    scan_chars: int = 500_000
    archive_depth: int = 3
    archive_entries: int = 1000
    archive_bytes: int = 100 * 1024 * 1024
    max_attempts: int = 3  # a message failing this often is quarantined (the "shunt")
    parse_seconds: int = 60  # a mail taking longer to read is quarantined
    worker_memory_mb: int = 2048  # address-space cap of each parsing worker process
    workers: int = 0  # parsing worker processes; 0: one per core
    # Automatic replies to registered mail, at most this many a day per sender address and per
    # sender domain: a forged flood must not turn vanthu into a mail cannon.
    replies_per_sender_per_day: int = 5
    replies_per_domain_per_day: int = 50
    # [ocr], carried here because the readers in the worker processes get the limits.
    ocr: OcrConfig = OcrConfig()


@dataclass(frozen=True)
class SecurityConfig:
    # Only an Authentication-Results header with this authserv-id is trusted (RFC 8601 §5).
    authserv_id: str = ""
    # Domains whose senders must pass authentication to be treated as official.
    trusted_domains: tuple[str, ...] = ("gov.vn",)
    # How many of the topmost Authentication-Results headers carrying our authserv-id count:
    # the ones our own servers added (a forged one further down is never believed).
    authres_headers: int = 1
    # Verify DKIM signatures ourselves (dkimpy) instead of trusting the server's verdict only.
    verify_dkim: bool = False
    # PEM or DER files of the certification authorities whose signatures on incoming PDFs are
    # trusted (daemon/understand/signatures.py); none: no signature is trusted.
    document_trust_roots: tuple[str, ...] = ()


@dataclass(frozen=True)
class ResultsConfig:
    inbox_dir: Path = Path("data/results")
    trust_roots: tuple[str, ...] = ()
    # A larger file in the results folder is refused unread: a result is a few pages, and the
    # email that carries it must stay within what mail servers accept.
    max_pdf_bytes: int = 50 * 1024 * 1024


@dataclass(frozen=True)
class StatusConfig:
    """When `vanthu status` calls the system unhealthy (exit 1)."""

    smtp_failing_minutes: float = 30.0  # the SMTP server has failed every try for this long
    outbox_overdue_minutes: float = 15.0  # an email tried and still waiting after this long
    min_free_mb: int = 200  # free space left on the data folder's (or database's) disk


@dataclass(frozen=True)
class DigestConfig:
    times: tuple[str, ...] = ("06:00", "12:00", "18:00")
    to: tuple[str, ...] = ("chanh_van_phong",)


@functools.lru_cache(maxsize=8)
def _calendar(days_off: tuple[date, ...], working_days: tuple[date, ...]) -> WorkCalendar:
    return WorkCalendar(days_off, working_days)  # built once: the holiday tables are costly


@dataclass(frozen=True)
class CalendarConfig:
    """Agency overrides of the national calendar of working days."""

    days_off: tuple[date, ...] = ()  # extra days off
    working_days: tuple[date, ...] = ()  # swapped Saturdays that are worked
    cutoff: str = "16:00"  # a dossier received after this counts from the next working day
    result_weekday: int | None = None  # results returned on this weekday only (0 = Monday)
    remind_days: int = 2  # remind the lead department this many working days before
    capacity_per_half_day: int = 0  # dossiers taken per half-day; 0 = no limit

    def work_calendar(self) -> WorkCalendar:
        return _calendar(self.days_off, self.working_days)


@dataclass(frozen=True)
class MetricsConfig:
    """Prometheus metrics: an HTTP endpoint (`listen`, "" off) and/or a file for
    node_exporter's textfile collector (`textfile`, "" off), written every `interval_seconds`."""

    listen: str = ""  # "127.0.0.1:9464"; an address off the machine needs allow_remote
    allow_remote: bool = False
    textfile: str = ""  # ".../textfile_collector/vanthu.prom"
    interval_seconds: float = 15.0

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) of `listen`."""
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]"), int(port)


@dataclass(frozen=True)
class IntakeConfig:
    """Which mail of a watched folder is processed in full: `start` is "now" (mail the server
    received before the first start on this database is kept as old mail, not processed),
    "all", or a date "YYYY-MM-DD" (mail received before that local day is old). `since` is that
    date's start in the agency's timezone, None otherwise."""

    start: str = "now"
    since: datetime | None = None


@dataclass(frozen=True)
class Config:
    path: Path | None
    agency: AgencyConfig
    storage: StorageConfig
    mailboxes: tuple[MailboxConfig, ...]
    smtp: SmtpConfig
    rules: RulesConfig
    limits: LimitsConfig
    security: SecurityConfig
    results: ResultsConfig
    digest: DigestConfig
    calendar: CalendarConfig = CalendarConfig()
    status: StatusConfig = StatusConfig()
    metrics: MetricsConfig = MetricsConfig()
    intake: IntakeConfig = IntakeConfig()

    @property
    def own_addresses(self) -> frozenset[str]:
        """Every address of the agency itself: mail from them is never answered (no loops)."""
        return frozenset({*self.agency.addresses, self.smtp.from_address.lower()})


# ---------------------------------------------------------------------------------------------
# Where a key is written. tomllib gives values, not positions; this scanner walks the same text
# and records the line of every table header, key and array element, so a problem points at the
# key inside its own table (`smtp.port`, not the first `port =` of the file).

Key = tuple[str | int, ...]

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_SCALAR = re.compile(r"[^,\]}#\r\n]*")
_PATH_PART = re.compile(r"([^.\[\]]+)((?:\[\d+\])*)")


def dotted(key: Key) -> str:
    """`("mailboxes", 1, "port")` as `mailboxes[1].port`."""
    out = ""
    for part in key:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def parse_key(text: str) -> Key:
    """`mailboxes[1].port` as `("mailboxes", 1, "port")`; the inverse of `dotted`."""
    key: list[str | int] = []
    for match in _PATH_PART.finditer(text):
        key.append(match.group(1))
        key += [int(i) for i in re.findall(r"\[(\d+)\]", match.group(2))]
    return tuple(key)


class _Stop(Exception):
    """The scanner met text it does not understand (only possible in a file tomllib refused)."""


class _Locator:
    """Lines of the keys of a TOML text: table and array-of-tables headers, dotted keys,
    inline tables and array elements. Strings, comments and multi-line values are skipped, so a
    `port =` inside a string or a comment is never taken for a key."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.lines: dict[Key, int] = {}
        self.values: dict[Key, str] = {}  # the raw text of each scalar value
        self._newlines = [i for i, c in enumerate(text) if c == "\n"]
        self._arrays: dict[Key, int] = {}
        self._pos = 0
        self._document()

    def line(self, key: Key) -> int | None:
        """The line of `key`, else of its nearest enclosing table or key that is written."""
        for end in range(len(key), 0, -1):
            if key[:end] in self.lines:
                return self.lines[key[:end]]
        return None

    # -- scanning ---------------------------------------------------------------------------

    def _line_at(self, pos: int) -> int:
        return bisect.bisect_right(self._newlines, pos - 1) + 1

    def _peek(self, count: int = 1) -> str:
        return self.text[self._pos:self._pos + count]

    def _record(self, key: Key, pos: int) -> None:
        line = self._line_at(pos)
        self.lines[key] = line
        for end in range(1, len(key)):
            self.lines.setdefault(key[:end], line)

    def _blank(self, newlines: bool) -> None:
        while self._pos < len(self.text):
            c = self.text[self._pos]
            if c in " \t" or (newlines and c in "\r\n"):
                self._pos += 1
            elif c == "#" and newlines:
                end = self.text.find("\n", self._pos)
                self._pos = len(self.text) if end < 0 else end
            else:
                return

    def _document(self) -> None:
        table: Key = ()
        while True:
            self._blank(newlines=True)
            if self._pos >= len(self.text):
                return
            start = self._pos
            try:
                if self._peek() == "[":
                    table = self._header()
                else:
                    self._keyval(table)
                self._blank(newlines=False)
                if self._peek() == "#":
                    self._blank(newlines=True)
                elif self._pos < len(self.text) and self._peek() not in "\r\n":
                    raise _Stop
            except _Stop:  # a file tomllib refused: skip to the next line and go on
                end = self.text.find("\n", max(self._pos, start + 1))
                self._pos = len(self.text) if end < 0 else end + 1

    def _header(self) -> Key:
        start = self._pos
        array = self._peek(2) == "[["
        self._pos += 2 if array else 1
        parts = self._key()
        self._blank(newlines=False)
        close = "]]" if array else "]"
        if self._peek(len(close)) != close:
            raise _Stop
        self._pos += len(close)
        prefix = self._resolve(parts[:-1])
        if array:
            base = (*prefix, parts[-1])
            index = self._arrays.get(base, 0)
            self._arrays[base] = index + 1
            self.lines.setdefault(base, self._line_at(start))
            table: Key = (*base, index)
        else:
            table = self._resolve(parts)
        self._record(table, start)
        return table

    def _resolve(self, parts: list[str]) -> Key:
        """A header's dotted name, with each array of tables taken at its latest element."""
        key: Key = ()
        for part in parts:
            key = (*key, part)
            if key in self._arrays:
                key = (*key, self._arrays[key] - 1)
        return key

    def _key(self) -> list[str]:
        parts: list[str] = []
        while True:
            self._blank(newlines=False)
            parts.append(self._key_part())
            self._blank(newlines=False)
            if self._peek() != ".":
                return parts
            self._pos += 1

    def _key_part(self) -> str:
        c = self._peek()
        if c in "\"'":
            start = self._pos
            self._string()
            try:
                return str(tomllib.loads(f"k = {self.text[start:self._pos]}")["k"])
            except tomllib.TOMLDecodeError as err:
                raise _Stop from err
        match = _BARE_KEY.match(self.text, self._pos)
        if not match:
            raise _Stop
        self._pos = match.end()
        return match.group()

    def _keyval(self, table: Key) -> None:
        start = self._pos
        key = (*table, *self._key())
        if self._peek() != "=":
            raise _Stop
        self._pos += 1
        self._blank(newlines=False)
        self._record(key, start)
        self._value(key)

    def _value(self, key: Key) -> None:
        start = self._pos
        c = self._peek()
        if c in "\"'":
            self._string()
        elif c == "[":
            self._pos += 1
            index = 0
            while True:
                self._blank(newlines=True)
                if self._peek() in ("]", ""):
                    self._pos += 1
                    break
                self._record((*key, index), self._pos)
                self._value((*key, index))
                index += 1
                self._blank(newlines=True)
                if self._peek() == ",":
                    self._pos += 1
                elif self._peek() != "]":
                    raise _Stop
            return
        elif c == "{":
            self._pos += 1
            while True:
                self._blank(newlines=True)
                if self._peek() in ("}", ""):
                    self._pos += 1
                    break
                self._keyval(key)
                self._blank(newlines=True)
                if self._peek() == ",":
                    self._pos += 1
            return
        else:
            match = _SCALAR.match(self.text, self._pos)
            self._pos = match.end() if match else self._pos
            if self._pos == start:
                raise _Stop
        self.values[key] = self.text[start:self._pos].strip()

    def _string(self) -> None:
        quote = self._peek()
        if self._peek(3) == quote * 3:
            self._pos += 3
            while self._pos < len(self.text):
                if quote == '"' and self._peek() == "\\":
                    self._pos += 2
                elif self._peek(3) == quote * 3:
                    run = 3
                    while run < 5 and self.text[self._pos + run:self._pos + run + 1] == quote:
                        run += 1
                    self._pos += run
                    return
                else:
                    self._pos += 1
            raise _Stop
        self._pos += 1
        while self._pos < len(self.text):
            c = self._peek()
            if quote == '"' and c == "\\":
                self._pos += 2
            elif c == quote:
                self._pos += 1
                return
            elif c == "\n":
                raise _Stop
            else:
                self._pos += 1
        raise _Stop


# ---------------------------------------------------------------------------------------------
# Checks of single values. Each returns None when the value is good, else the reason.

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_ATEXT = re.escape(string.ascii_letters + string.digits + "!#$%&'*+-/=?^_`{|}~")
_DOT_ATOM = re.compile(rf"[{_ATEXT}]+(?:\.[{_ATEXT}]+)*")
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
CASE_CODE_FIELDS = ("code", "yymmdd", "yyyy", "seq")


def _security(value: str) -> str | None:
    return None if value in SECURITY_MODES else f"must be one of {', '.join(SECURITY_MODES)}"


def _after(value: str) -> str | None:
    if value in ("flag", "none"):
        return None
    if value.startswith("move:") and len(value) > 5:
        return _imap_name(value[5:])
    return "must be flag, none or move:FOLDER"


def _imap_name(value: str) -> str | None:
    """Why `value` cannot name a mailbox or an IMAP folder, or None: a control character
    (C0, DEL, C1) would end or forge an IMAP command line or a log line."""
    if not value.strip():
        return "must not be empty"
    if _CONTROL.search(value):
        return "must not contain control characters"
    return None


def _positive(value: int | float) -> str | None:
    return None if value > 0 else "must be positive"


# A parsing worker's address space before it reads any mail (its interpreter, the parsers,
# PDFium, the thread stacks) is about 250 MB: a cap below this floor would make every mail
# fail for want of memory, and be quarantined.
MIN_WORKER_MEMORY_MB = 512
# The largest cap the system can be asked for: its bytes must fit a signed 64-bit number
# (setrlimit); a larger one would stop every worker from starting.
MAX_WORKER_MEMORY_MB = (2**63 - 1) // 2**20


def _worker_memory(value: int) -> str | None:
    if value < MIN_WORKER_MEMORY_MB:
        return (f"must be at least {MIN_WORKER_MEMORY_MB} (MB): a worker takes about 250 MB "
                "before it reads a mail, and every mail needing more is quarantined")
    if value > MAX_WORKER_MEMORY_MB:
        return f"must be at most {MAX_WORKER_MEMORY_MB} (MB): no larger cap can be set"
    return None


def _not_negative(value: int) -> str | None:
    return None if value >= 0 else "must be 0 or more"


def _port(value: int) -> str | None:
    return None if 0 < value < 65536 else "must be a TCP port (1 to 65535)"


def _timezone(value: str) -> str | None:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        return f"unknown time zone {value!r}"
    return None


def _regex(value: str) -> str | None:
    try:
        pattern = re.compile(value)
        re.compile(rf"\b({value})\b")  # as the subject matcher uses it
    except re.error as err:
        return f"not a valid regular expression: {err}"
    if pattern.fullmatch(""):
        return "matches an empty text, so every subject would carry a case code"
    return None


def _not_empty(value: str) -> str | None:
    return None if value.strip() else "must not be empty"


def domain_problem(value: str) -> str | None:
    """Why `value` is not an ASCII domain name (LDH labels joined by dots), or None."""
    if not value.isascii():
        return f"{value!r} is not an ASCII domain (write an internationalised name as xn--…)"
    labels = value.split(".")
    if len(value) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        return f"{value!r} is not a domain name (letters, digits and '-' between dots)"
    return None


def address_problem(value: str, *, dotted_domain: bool = True) -> str | None:
    """Why `value` is not an ASCII addr-spec vanthu can send to or from (local@domain), or None.

    vanthu does not send with SMTPUTF8, so a non-ASCII address could never be delivered. A
    domain without a dot (`localhost`) is refused unless `dotted_domain` is False."""
    if not value.isascii():
        return f"{value!r} is not an ASCII address (vanthu does not send with SMTPUTF8)"
    local, at, domain = value.rpartition("@")
    if not at or not local:
        return f"{value!r} is not an address (local@domain)"
    if not _DOT_ATOM.fullmatch(local) or len(local) > 64:
        return f"{value!r}: the part before '@' is not a plain local part"
    if problem := domain_problem(domain):
        return f"{value!r}: {problem}"
    if dotted_domain and "." not in domain:
        return f"{value!r}: the domain has no dot"
    return None


def mailbox(value: str) -> tuple[str, str] | str:
    """Parse `value` as one mailbox ("Văn thư <vanthu@so.gov.vn>" or a bare address) with the
    standard library's strict RFC 5322 parser. Returns (display name, addr-spec), or the
    reason it cannot be used as the sender of vanthu's mail. The display name comes back in
    NFC with its white space collapsed, as it will be written."""
    if any(c in value for c in "\r\n\x00"):
        return "must not contain line breaks or NUL"
    try:
        header = email.policy.default.header_factory("from", value)
    except (ValueError, IndexError, TypeError) as err:
        return f"not a mailbox: {err}"
    groups = getattr(header, "groups", ())
    found = [a for g in groups for a in g.addresses]
    if len(found) != 1 or any(g.display_name is not None for g in groups):
        if value.count("@") == 1:  # one address, and a name the parser split at a , or ;
            return ("must be exactly one mailbox: quote a display name holding , ; : or "
                    'another special character, as \'"Văn thư, Sở Xây dựng" <vanthu@…>\'')
        return f"must be exactly one mailbox, found {len(found)}"
    address = found[0]
    if not address.addr_spec.isascii():
        return "the address must be ASCII (vanthu does not send with SMTPUTF8)"
    if header.defects:
        return f"not a well-formed mailbox: {header.defects[0]}"
    if not address.username or not address.domain:
        return "the address needs a local part and a domain"
    if problem := address_problem(address.addr_spec, dotted_domain=False):
        return problem
    name = address.display_name
    if _CONTROL.search(name.replace("\t", " ")):
        return "the display name must not contain control characters"
    return normal_name(name), address.addr_spec


def _mailbox_check(value: str) -> str | None:
    parsed = mailbox(value)
    return parsed if isinstance(parsed, str) else None


def normal_name(value: str) -> str:
    """A name as vanthu writes it: NFC (Vietnamese typed on a Mac arrives decomposed), runs of
    white space as one space, no space at either end."""
    return " ".join(unicodedata.normalize("NFC", value).split())


def name_problem(value: str) -> str | None:
    """Why `value` cannot be a name printed in headers, letters and the receipt, or None."""
    if not value.strip():
        return "must not be empty"
    if _CONTROL.search(value.replace("\t", " ")):
        return "must be one line without control characters"
    return None


def as_date(value: Any) -> date | str:
    """A date written as a TOML/YAML date or as an ISO string "2026-12-01"; else the reason."""
    if isinstance(value, datetime):
        return f"{value.isoformat()!r} has a time of day; write the date alone (YYYY-MM-DD)"
    if isinstance(value, date):
        return value
    if isinstance(value, str) and _ISO_DATE.fullmatch(value.strip()):
        try:
            return date.fromisoformat(value.strip())
        except ValueError as err:
            return f"{value!r} is not a date: {err}"
    return f"{value!r} is not a date (YYYY-MM-DD)"


def case_code_problem(fmt: str, code: str) -> str | None:
    """Why dossier codes made from `fmt` cannot be used, or None. Codes go into subjects and
    Message-IDs and must differ from day to day and from dossier to dossier."""
    samples = []
    for yymmdd, yyyy, seq in (("261122", 2026, 1), ("261122", 2026, 2), ("270105", 2027, 1)):
        try:
            samples.append(fmt.format(code=code, yymmdd=yymmdd, yyyy=yyyy, seq=seq))
        except KeyError as err:
            return (f"unknown field {{{err.args[0]}}} (known: "
                    + ", ".join(f"{{{f}}}" for f in CASE_CODE_FIELDS) + ")")
        except (IndexError, ValueError, TypeError, AttributeError) as err:
            return f"cannot be formatted: {err}"
    sample = samples[0]
    if not _DOT_ATOM.fullmatch(sample) or len(sample) > 100:
        return (f"makes codes like {sample!r}, which cannot go into a Message-ID: use ASCII "
                "letters, digits, '.', '-' and '_' (at most 100)")
    if len(set(samples)) < 3:
        return (f"makes the same code twice ({', '.join(samples)}): use {{seq}} with "
                "{yymmdd} or {yyyy}")
    return None


def hhmm(value: object) -> bool:
    """A time of day written HH:MM in ASCII digits (a full-width or other script digit is
    not one: the times are compared as text)."""
    return isinstance(value, str) and \
        re.fullmatch(r"(?:[01][0-9]|2[0-3]):[0-5][0-9]", value) is not None


def _toml_error_line(err: tomllib.TOMLDecodeError) -> tuple[int | None, str]:
    """tomllib (3.11) puts the position in the message only: "... (at line 3, column 9)"."""
    text = str(err)
    match = re.search(r"\s*\(at line (\d+), column \d+\)|\s*\(at end of document\)", text)
    if not match:
        return None, text
    return (int(match.group(1)) if match.group(1) else None), text[:match.start()]


# ---------------------------------------------------------------------------------------------
# Reading typed keys, collecting problems instead of stopping at the first.


class _Reader:
    """The problems of one file, located by its `_Locator`."""

    def __init__(self, file: str, text: str, base: Path) -> None:
        self.file = file
        self.base = base
        self.locator = _Locator(text)
        self.problems: list[Problem] = []

    def line_of(self, path: str | Key) -> int | None:
        """The line of `path` (`smtp.port`, `mailboxes[1].port` or a key tuple) in its own
        table; a missing key is located at its table's header."""
        return self.locator.line(parse_key(path) if isinstance(path, str) else path)

    def error(self, path: Key, message: str) -> None:
        self.problems.append(Problem(self.file, self.line_of(path), f"{dotted(path)}: {message}"))

    def table(self, data: dict[str, Any], key: Key, required: bool = False) -> _Table:
        value = data.get(str(key[-1]), {}) if key else data
        if required and not value:
            self.error(key, "missing: this section is required")
        if not isinstance(value, dict):
            self.error(key, "must be a table")
            value = {}
        return _Table(self, key, value)


class _Table:
    """One TOML table and its path: typed reads whose problems are located at the key."""

    def __init__(self, reader: _Reader, path: Key, data: dict[str, Any]) -> None:
        self.r = reader
        self.path = path
        self.data = data

    def error(self, key: str | int | None, message: str) -> None:
        self.r.error(self.path if key is None else (*self.path, key), message)

    def unknown(self, known: set[str]) -> None:
        for key in sorted(set(self.data) - known):
            self.error(key, "unknown key")

    def require(self, *keys: str) -> None:
        for key in keys:
            if key not in self.data:
                self.error(key, "missing: this key is required")

    def take(self, key: str, kind: type[T], default: T,
             check: Callable[[T], str | None] | None = None) -> T:
        if key not in self.data:
            return default
        value = self.data[key]
        ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value, ok = float(value), True
        if not ok:
            self.error(key, f"expected {kind.__name__}, got {type(value).__name__}")
            return default
        if isinstance(value, str) and any(c in value for c in "\r\n\x00"):
            self.error(key, "must be one line (no line breaks or NUL)")
            return default
        if check and (message := check(value)):
            self.error(key, message)
            return default
        return value  # type: ignore[no-any-return]

    def name(self, key: str, default: str, *, optional: bool = False) -> str:
        """A name printed in headers, letters and the receipt: one line, NFC; "" (none) too
        when `optional`."""
        if optional and self.data.get(key) == "":
            return ""
        return normal_name(self.take(key, str, default, name_problem))

    def strings(self, key: str, default: tuple[str, ...],
                check: Callable[[str], str | None] | None = None) -> tuple[str, ...]:
        value = self.take(key, list, list(default))
        good: list[str] = []
        for i, item in enumerate(value):
            if not isinstance(item, str):
                self.r.error((*self.path, key, i), f"expected a string, got {type(item).__name__}")
            elif any(c in item for c in "\r\n\x00"):
                self.r.error((*self.path, key, i), "must be one line (no line breaks or NUL)")
            elif check and (message := check(item)):
                self.r.error((*self.path, key, i), message)
            else:
                good.append(item)
        return tuple(good)

    def dates(self, key: str) -> tuple[date, ...]:
        value = self.take(key, list, [])
        found: list[date] = []
        for i, item in enumerate(value):
            parsed = as_date(item)
            if isinstance(parsed, str):
                self.r.error((*self.path, key, i), parsed)
            else:
                found.append(parsed)
        return tuple(found)

    def secret(self, required: bool, name: str = "password") -> Secret | None:
        """Read a secret given as `password`, `password_file`, `password_env` or
        `password_credential` (a systemd credential named in LoadCredential=); `name` instead
        of `password` for other secrets (`client_secret_file` …)."""
        given = [k for k in (name, f"{name}_file", f"{name}_env", f"{name}_credential")
                 if k in self.data]
        if len(given) > 1:
            self.error(given[1], f"give one of {', '.join(given)}, not several")
            return None
        if not given:
            if required:
                self.error(name, f"missing (or {name}_file / {name}_env / {name}_credential)")
            return None
        key = given[0]
        value = self.take(key, str, "")
        if key == name:
            return Secret(value)
        if key == f"{name}_env":
            if value not in os.environ:
                self.error(key, f"environment variable {value} is not set")
                return None
            return Secret(os.environ[value])
        if key == f"{name}_credential":
            directory = os.environ.get("CREDENTIALS_DIRECTORY")
            if not directory:
                self.error(key, "CREDENTIALS_DIRECTORY is not set (not under systemd?)")
                return None
            value = str(Path(directory) / value)
        try:
            return Secret((self.r.base / value).read_text(encoding="utf-8").strip())
        except OSError as err:
            self.error(key, f"cannot read {value}: {err.strerror}")
        except UnicodeDecodeError:
            self.error(key, f"{value} is not UTF-8 text")
        return None


# ---------------------------------------------------------------------------------------------
# Loading.


@dataclass(frozen=True)
class Examined:
    """A config file as far as it could be read: the problems, and the config with defaults in
    place of every wrong value (None when the file is not TOML), so that `vanthu check` can
    still check the rules and trust roots it names."""

    file: str
    problems: tuple[Problem, ...]
    config: Config | None
    rules_dir: Path


def examine(path: Path | None) -> Examined:
    """Read `path` (or the embedded defaults when None) and collect every problem."""
    if path is None:
        cfg = _build({}, _Reader("<defaults>", "", Path.cwd()), Path.cwd(), None, required=False)
        return Examined("<defaults>", (), cfg, cfg.rules.dir)
    file, base = str(path), path.parent
    try:
        text = path.read_text(encoding="utf-8-sig")  # Notepad saves UTF-8 with a BOM
    except OSError as err:
        return Examined(file, (Problem(file, None, f"cannot read: {err.strerror}"),), None,
                        base / "rules")
    except UnicodeDecodeError as err:
        line = path.read_bytes()[:err.start].count(b"\n") + 1
        return Examined(file, (Problem(file, line, "not UTF-8 text"),), None, base / "rules")
    reader = _Reader(file, text, base)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        at, message = _toml_error_line(err)
        return Examined(file, (Problem(file, at, f"not valid TOML: {message}"),), None,
                        _rules_dir_hint(reader.locator, base))
    cfg = _build(data, reader, base, path, required=True)
    problems = sorted(reader.problems, key=lambda p: p.line if p.line is not None else 1 << 30)
    return Examined(file, tuple(problems), cfg, cfg.rules.dir)


def load(path: Path | None) -> Config:
    """Load `path` (or the embedded defaults when None); raise ConfigError with every problem."""
    found = examine(path)
    if found.problems or found.config is None:
        raise ConfigError(list(found.problems))
    return found.config


def parse(
    data: dict[str, Any], *, file: str, text: str, base: Path, path: Path | None = None
) -> Config:
    """Validate a decoded TOML document. Relative paths are taken from `base`. Sections may be
    left out (defaults); `load` of a file also requires the agency's identity and a mailbox."""
    reader = _Reader(file, text, base)
    cfg = _build(data, reader, base, path, required=False)
    if reader.problems:
        raise ConfigError(reader.problems)
    return cfg


def locate(path: Path | None, key: str) -> tuple[str, int | None]:
    """Where `key` (`smtp.from`, `mailboxes[1].port`) is written: (file, line). A key left out
    is located at its table's header; a file that cannot be read, nowhere."""
    if path is None:
        return "<defaults>", None
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError):
        return str(path), None
    return str(path), _Locator(text).line(parse_key(key))


def _rules_dir_hint(locator: _Locator, base: Path) -> Path:
    """The `[rules] dir` of a file tomllib refused, if that one line can be read on its own."""
    raw = locator.values.get(("rules", "dir"))
    if raw:
        try:
            value = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = None
        if isinstance(value, str) and value:
            return base / value
    return base / "rules"


def _https(value: str) -> str | None:
    return None if re.fullmatch(r"https://[^\s/]+/\S*", value) else "must be an https:// URL"


_OAUTH_SECRETS = ("client_secret", "client_certificate", "service_account", "refresh_token")


def _auth(t: _Table, base: Path) -> tuple[str, OAuthConfig | None]:
    """`auth` of a mailbox or of [smtp], and its `oauth2` sub-table when it is "oauth2"."""
    auth = t.take("auth", str, "password",
                  lambda v: None if v in AUTH_MODES else f"must be one of {', '.join(AUTH_MODES)}")
    if auth == "password":
        if "oauth2" in t.data:
            t.error("oauth2", 'is given but auth is not "oauth2"')
        return auth, None
    for key in [k for k in t.data if k.startswith("password")]:
        t.error(key, 'auth = "oauth2" logs in with tokens: remove the password')
    if not isinstance(t.data.get("oauth2"), dict):
        t.error("oauth2" if "oauth2" in t.data else "auth",
                "oauth2 needs an oauth2 table (provider, client_id …)")
        return auth, None
    o = _Table(t.r, (*t.path, "oauth2"), t.data["oauth2"])
    o.unknown({"provider", "client_id", "tenant", "authority", "token_url", "scope", "ca_file",
               "timeout_seconds"} | {f"{name}{end}" for name in _OAUTH_SECRETS
                                     for end in ("", "_file", "_env", "_credential")})
    provider = o.take("provider", str, "",
                      lambda v: None if v in OAUTH_PROVIDERS
                      else f"must be one of {', '.join(OAUTH_PROVIDERS)}")
    if not provider:
        o.require("provider")
        return auth, None
    secrets = {name: o.secret(False, name) for name in _OAUTH_SECRETS}
    ca_file = o.take("ca_file", str, "")
    cfg = OAuthConfig(
        provider=provider,
        client_id=o.take("client_id", str, "", _not_empty),
        tenant=o.take("tenant", str, "", _not_empty),
        authority=o.take("authority", str, "", _https).rstrip("/"),
        token_url=o.take("token_url", str, OAuthConfig.token_url, _https),
        scope=o.take("scope", str, "", _not_empty),
        ca_file=str(base / ca_file) if ca_file else None,
        timeout_seconds=o.take("timeout_seconds", float, 30.0, _positive),
        client_secret=secrets["client_secret"],
        client_certificate=secrets["client_certificate"],
        service_account=secrets["service_account"],
        refresh_token=secrets["refresh_token"])
    for problem, where in _oauth_problems(cfg, o.data):
        o.error(where, problem)
    return auth, cfg


def _oauth_problems(cfg: OAuthConfig, data: dict[str, Any]) -> list[tuple[str, str | None]]:
    """What a provider needs and what it cannot use, as (message, key)."""
    given = {name for name in _OAUTH_SECRETS if any(k.startswith(name) for k in data)}
    found: list[tuple[str, str | None]] = []
    if cfg.provider == "microsoft":
        wanted, needs = {"client_secret", "client_certificate"}, ["client_id"]
        if not cfg.authority:
            needs.append("tenant")
        found += [(f"missing: this key is required for {cfg.provider}", key)
                  for key in needs if key not in data]
        if len(given & wanted) != 1:
            found.append(("give client_secret or client_certificate (one of them)", None))
    else:
        wanted = {"service_account", "refresh_token"}
        if len(given & wanted) != 1:
            found.append(("give service_account (domain-wide delegation) or refresh_token "
                          "(one of them)", None))
        if "refresh_token" in given and ("client_id" not in data
                                         or "client_secret" not in given):
            found.append(("refresh_token needs client_id and client_secret", "refresh_token"))
        wanted |= {"client_secret"} if "refresh_token" in given else set()
    found += [(f"is not used by provider {cfg.provider}", key) for key in sorted(given - wanted)]
    if cfg.service_account is not None and (why := _service_account_problem(cfg)):
        found.append((why, "service_account"))
    return found


def _service_account_problem(cfg: OAuthConfig) -> str | None:
    try:
        key = json.loads(cfg.service_account.reveal() if cfg.service_account else "")
    except ValueError:
        return "is not a JSON key file"
    if not isinstance(key, dict) or key.get("type") != "service_account":
        return 'is not a service account key (type is not "service_account")'
    missing = [k for k in ("client_email", "private_key", "token_uri") if not key.get(k)]
    return f"lacks {', '.join(missing)}" if missing else None


def _ocr_table(data: dict[str, Any]) -> dict[str, Any]:
    ocr = data.get("ocr")
    return ocr if isinstance(ocr, dict) else {}


def _ocr(t: _Table) -> OcrConfig:
    """`[ocr]`: each value checked, a wrong one reported and replaced by its default."""
    d = OcrConfig()
    t.unknown(set(d.__dataclass_fields__))
    return OcrConfig(
        enabled=t.take("enabled", bool, d.enabled),
        tesseract_cmd=t.take("tesseract_cmd", str, d.tesseract_cmd, _not_empty),
        language=t.take("language", str, d.language,
                        lambda v: None if re.fullmatch(r"[A-Za-z_]+(\+[A-Za-z_]+)*", v)
                        else "must be Tesseract language names, as vie or vie+eng"),
        timeout_seconds=t.take("timeout_seconds", float, d.timeout_seconds, _positive),
        mail_seconds=t.take("mail_seconds", float, d.mail_seconds, _positive),
        max_pages=t.take("max_pages", int, d.max_pages, _positive),
        dpi=t.take("dpi", int, d.dpi,
                   lambda v: None if 72 <= v <= 600 else "must be 72 to 600"),
        max_pixels=t.take("max_pixels", int, d.max_pixels,
                          lambda v: None if 1_000_000 <= v <= 100_000_000
                          else "must be 1000000 to 100000000"),
        memory_mb=t.take("memory_mb", int, d.memory_mb,
                         lambda v: None if v >= 256 else "must be 256 or more"),
        min_confidence=t.take("min_confidence", float, d.min_confidence,
                              lambda v: None if 0 <= v <= 1 else "must be 0 to 1"),
    )


def _listen_problem(value: str, remote: bool) -> str | None:
    """Why `[metrics] listen` cannot be used: not HOST:PORT, not an IP address or localhost,
    or an address reachable from other machines while `allow_remote` is off."""
    import ipaddress

    host, colon, port = value.rpartition(":")
    host = host.strip("[]")
    if not colon or not port.isdigit() or not 0 < int(port) < 65536:
        return f"{value!r} must be HOST:PORT with a port from 1 to 65535 (127.0.0.1:9464)"
    if host == "localhost":
        return None
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        return f"{host!r} must be an IP address or localhost"
    if not loopback and not remote:
        return (f"{host} is reachable from other machines and the metrics need no login: "
                "listen on 127.0.0.1, or set allow_remote = true behind a firewall")
    return None


def _unwritable(folder: Path) -> str | None:
    """Why no file can be written in `folder` (tried: a read-only mount or a folder of
    another user answers only to a real write), or None."""
    import tempfile

    if not folder.is_dir():
        return "is not a folder" if folder.exists() else "does not exist"
    try:
        with tempfile.TemporaryFile(dir=folder):
            return None
    except OSError as err:
        return f"is not writable by this user ({err.strerror})"


def intake_start(value: str) -> date | str | None:
    """`[intake] start` read: None for "now" and "all", the date for "YYYY-MM-DD", else why
    it is not a start."""
    if value in ("now", "all"):
        return None
    if not _ISO_DATE.fullmatch(value):
        return (f'{value!r} is not "now", "all" or a date YYYY-MM-DD (a local date, no time '
                "or zone)")
    return as_date(value)


def _intake(t: _Table, tz: ZoneInfo) -> IntakeConfig:
    t.unknown({"start"})
    if "start" in t.data and isinstance(t.data["start"], date):  # a TOML date, unquoted
        t.data = {**t.data, "start": t.data["start"].isoformat()
                  if not isinstance(t.data["start"], datetime) else str(t.data["start"])}
    start = t.take("start", str, "now", lambda v: s if isinstance(s := intake_start(v), str)
                   else None)
    day = intake_start(start)
    since = datetime.combine(day, datetime.min.time(), tz) if isinstance(day, date) else None
    return IntakeConfig(start, since)


def _metrics(t: _Table, base: Path) -> MetricsConfig:
    t.unknown({"listen", "allow_remote", "textfile", "interval_seconds"})
    d = MetricsConfig()
    remote = t.take("allow_remote", bool, d.allow_remote)
    listen = t.take("listen", str, d.listen,
                    lambda v: _listen_problem(v, remote) if v else None)
    textfile = t.take("textfile", str, d.textfile)
    if textfile:
        path = base / textfile
        folder = path.parent
        if not textfile.endswith(".prom"):
            t.error("textfile", "must end with .prom (node_exporter reads only *.prom)")
            textfile = ""
        elif why := _unwritable(folder):
            t.error("textfile", f"folder {folder} {why}")
            textfile = ""
        else:
            textfile = str(path)
    interval = t.take("interval_seconds", float, d.interval_seconds,
                      lambda v: None if 1 <= v <= 3600 else "must be 1 to 3600")
    return MetricsConfig(listen, remote, textfile, interval)


def _build(data: dict[str, Any], r: _Reader, base: Path, path: Path | None, *,
           required: bool) -> Config:
    """Every section, each wrong value reported and replaced by its default."""
    root = r.table(data, ())
    root.unknown({"agency", "storage", "mailboxes", "smtp", "rules", "limits", "security",
                  "results", "digest", "calendar", "status", "ocr",
                  "metrics", "intake"})

    t = r.table(data, ("agency",), required=required)
    t.unknown({"name", "code", "timezone", "addresses", "case_code_format", "case_ref_pattern",
               "message_id_domain", "result_place", "parent", "place", "result_time",
               "receiving_officer", "receiving_officer_name", "volume"})
    if required and t.data:
        t.require("name", "code")
    d = AgencyConfig()
    agency = AgencyConfig(
        name=t.name("name", d.name),
        code=t.take("code", str, d.code, _not_empty),
        timezone=t.take("timezone", str, d.timezone, _timezone),
        addresses=tuple(a.lower() for a in t.strings("addresses", (), address_problem)),
        case_code_format=t.take("case_code_format", str, d.case_code_format, _not_empty),
        case_ref_pattern=t.take("case_ref_pattern", str, d.case_ref_pattern, _regex),
        message_id_domain=t.take("message_id_domain", str, d.message_id_domain,
                                 domain_problem).lower(),
        result_place=t.name("result_place", d.result_place),
        parent=t.name("parent", d.parent, optional=True),
        place=t.name("place", d.place, optional=True),
        result_time=t.take("result_time", str, d.result_time,
                           lambda v: None if hhmm(v) else "must be HH:MM"),
        receiving_officer=t.name("receiving_officer", d.receiving_officer),
        receiving_officer_name=t.name("receiving_officer_name", d.receiving_officer_name,
                                      optional=True),
        volume=t.take("volume", int, d.volume,
                      lambda v: None if 1 <= v <= 99 else "must be a number from 1 to 99"),
    )
    if problem := case_code_problem(agency.case_code_format, agency.code):
        t.error("case_code_format" if "case_code_format" in t.data else "code", problem)
        agency = dataclasses.replace(agency, case_code_format=d.case_code_format)
    sample = agency.case_code_format.format(code=agency.code, yymmdd="261122", yyyy=2026, seq=1)
    found = [m.group(1) for m in re.finditer(rf"\b({agency.case_ref_pattern})\b",
                                             f"Re: [{sample}] Giấy tiếp nhận hồ sơ")]
    if sample not in found:
        t.error("case_ref_pattern" if "case_ref_pattern" in t.data else "case_code_format",
                f"does not recognise the dossier codes vanthu makes (e.g. {sample!r}): replies "
                "would not join their case")

    t = r.table(data, ("storage",))
    t.unknown({"data_dir", "database_url"})
    storage = StorageConfig(
        data_dir=base / t.take("data_dir", str, "data", _not_empty),
        database_url=t.take("database_url", str, ""),
    )

    boxes = data.get("mailboxes", [])
    mailboxes: list[MailboxConfig] = []
    if not isinstance(boxes, list):
        r.error(("mailboxes",), "must be an array of tables ([[mailboxes]])")
        boxes = []
    if required and not boxes:
        r.error(("mailboxes",), "missing: at least one [[mailboxes]] table to watch")
    names: dict[str, int] = {}
    for i, box in enumerate(boxes):
        if not isinstance(box, dict):
            r.error(("mailboxes", i), "must be a table")
            continue
        t = _Table(r, ("mailboxes", i), box)
        t.unknown({"name", "host", "port", "security", "username", "password", "password_file",
                   "password_env", "password_credential", "folders", "after", "keyword", "idle",
                   "poll_seconds", "batch_size", "ca_file", "tls_verify", "timeout_seconds",
                   "auth", "oauth2"})
        t.require("host", "username")
        security = t.take("security", str, "tls", _security)
        auth, oauth = _auth(t, base)
        password = t.secret(required=auth == "password")
        ca_file = t.take("ca_file", str, "")
        name = t.take("name", str, f"mailbox{i + 1}", _imap_name)
        if name in names:
            t.error("name", f"two mailboxes are named {name!r} (the other is mailboxes"
                            f"[{names[name]}])")
        names.setdefault(name, i)
        folders = t.strings("folders", ("INBOX",), _imap_name)
        for folder in sorted({f for f in folders if folders.count(f) > 1}):
            t.error("folders", f"folder {folder!r} is listed twice")
        if "folders" in box and not folders:
            t.error("folders", "must name at least one folder")
        mailboxes.append(MailboxConfig(
            name=name,
            host=t.take("host", str, "", _not_empty),
            port=t.take("port", int, 993 if security == "tls" else 143, _port),
            security=security,
            username=t.take("username", str, "", _not_empty),
            password=password or Secret(""),
            folders=folders or ("INBOX",),
            after=t.take("after", str, "flag", _after),
            keyword=t.take("keyword", str, "$VanthuStored",
                           lambda v: None if re.fullmatch(r"[!#$&'+\-.0-9:<>?@A-Z^-z|~]+", v)
                           else "must be one IMAP keyword (no spaces, brackets or quotes)"),
            idle=t.take("idle", bool, True),
            poll_seconds=t.take("poll_seconds", float, 60.0, _positive),
            batch_size=t.take("batch_size", int, 50, _positive),
            ca_file=str(base / ca_file) if ca_file else None,
            tls_verify=t.take("tls_verify", bool, True),
            timeout_seconds=t.take("timeout_seconds", float, 60.0, _positive),
            auth=auth,
            oauth=oauth,
        ))

    t = r.table(data, ("smtp",), required=required)
    t.unknown({"host", "port", "security", "username", "password", "password_file",
               "password_env", "password_credential", "from", "ca_file", "tls_verify",
               "timeout_seconds", "max_attempts", "max_age_hours", "auth", "oauth2"})
    if required and t.data:
        t.require("from")
    security = t.take("security", str, "none", _security)
    smtp_auth, smtp_oauth = _auth(t, base)
    ca_file = t.take("ca_file", str, "")
    from_ = t.take("from", str, "vanthu@localhost", _mailbox_check)
    from_parsed = mailbox(from_)
    username = t.take("username", str, "") or None
    password = t.secret(required=False)
    if smtp_auth == "oauth2" and not username:
        t.error("auth", "oauth2 needs username: the mailbox vanthu sends as")
    if (smtp_auth == "password" and username and password is None
            and not any(k.startswith("password") for k in t.data)):
        t.error("username", "is set but no password is given (password, password_file, "
                            "password_env or password_credential)")
    if password is not None and not username:
        key = next(k for k in t.data if k.startswith("password"))
        t.error(key, "is given but no username: vanthu logs in to the SMTP server only with "
                     "both (leave both out to send without a login)")
    smtp = SmtpConfig(
        host=t.take("host", str, "127.0.0.1", _not_empty),
        port=t.take("port", int, {"tls": 465, "starttls": 587}.get(security, 25), _port),
        security=security,
        username=username,
        password=password,
        from_=from_,
        from_name=from_parsed[0] if isinstance(from_parsed, tuple) else "",
        from_address=from_parsed[1] if isinstance(from_parsed, tuple) else "vanthu@localhost",
        ca_file=str(base / ca_file) if ca_file else None,
        tls_verify=t.take("tls_verify", bool, True),
        timeout_seconds=t.take("timeout_seconds", float, 60.0, _positive),
        max_attempts=t.take("max_attempts", int, 10, _positive),
        max_age_hours=t.take("max_age_hours", float, 48.0, _positive),
        auth=smtp_auth,
        oauth=smtp_oauth,
    )

    t = r.table(data, ("rules",))
    t.unknown({"dir"})
    rules = RulesConfig(dir=base / t.take("dir", str, "rules", _not_empty))

    t = r.table(data, ("limits",))
    limits_default = LimitsConfig()
    numbers = set(limits_default.__dataclass_fields__) - {"ocr"}
    t.unknown(numbers)
    limits = LimitsConfig(**{
        name: t.take(name, int, getattr(limits_default, name),
                     _not_negative if name == "workers" else
                     _worker_memory if name == "worker_memory_mb" else _positive)
        for name in sorted(numbers)
    }, ocr=_ocr(r.table(data, ("ocr",))))
    if "mail_seconds" in _ocr_table(data) and limits.ocr.mail_seconds >= limits.parse_seconds:
        r.error(("ocr", "mail_seconds"), f"must be less than [limits] parse_seconds "
                                         f"({limits.parse_seconds}): a mail past that is held")

    t = r.table(data, ("security",))
    t.unknown({"authserv_id", "trusted_domains", "authres_headers", "verify_dkim",
               "document_trust_roots"})
    verify_dkim = t.take("verify_dkim", bool, False)
    if verify_dkim and importlib.util.find_spec("dkim") is None:
        t.error("verify_dkim", "is true but the dkimpy package is not installed")
    security_cfg = SecurityConfig(
        authserv_id=t.take("authserv_id", str, "",
                           lambda v: "must be one word: the authserv-id, without ';' or spaces"
                           if re.search(r"[\s;]", v) else None),
        trusted_domains=tuple(x.lower() for x in t.strings("trusted_domains", ("gov.vn",),
                                                            domain_problem)),
        authres_headers=t.take("authres_headers", int, 1, _positive),
        verify_dkim=verify_dkim,
        document_trust_roots=tuple(str(base / x) for x in t.strings(
            "document_trust_roots", (), lambda v: _not_empty(v) or trustroots.problem(
                str(base / v)))),
    )

    t = r.table(data, ("results",))
    t.unknown({"inbox_dir", "trust_roots", "max_pdf_bytes"})
    results = ResultsConfig(
        inbox_dir=base / t.take("inbox_dir", str, str(storage.data_dir / "results"), _not_empty),
        trust_roots=tuple(str(base / x) for x in t.strings("trust_roots", (), _not_empty)),
        max_pdf_bytes=t.take("max_pdf_bytes", int, ResultsConfig.max_pdf_bytes, _positive),
    )

    t = r.table(data, ("digest",))
    t.unknown({"times", "to"})
    times = t.strings("times", DigestConfig.times,
                      lambda v: None if hhmm(v) else f"{v!r} is not HH:MM")
    for moment in sorted({m for m in times if times.count(m) > 1}):
        t.error("times", f"{moment} is listed twice")

    def recipient(value: str) -> str | None:
        if "@" in value:
            return address_problem(value)
        if not re.fullmatch(r"[a-z0-9_\-]+", value):
            return f"{value!r} is neither an address nor a role, person or department id"
        return None

    digest = DigestConfig(times=tuple(dict.fromkeys(times)) if "times" in t.data
                          else DigestConfig.times,
                          to=tuple(v.lower() if "@" in v else v
                                   for v in t.strings("to", DigestConfig.to, recipient)))

    t = r.table(data, ("calendar",))
    t.unknown({"days_off", "working_days", "cutoff", "result_weekday", "remind_days",
               "capacity_per_half_day"})
    days_off, working_days = t.dates("days_off"), t.dates("working_days")
    for day in sorted(set(days_off) & set(working_days)):
        t.error("working_days", f"{day} is also in days_off")
    cutoff = t.take("cutoff", str, "16:00", lambda v: None if hhmm(v) else "must be HH:MM")
    weekday = t.take("result_weekday", int, -1,
                     lambda v: None if 0 <= v <= 6 else "must be 0 (Monday) to 6 (Sunday)")
    calendar = CalendarConfig(days_off, working_days, cutoff, None if weekday < 0 else weekday,
                              t.take("remind_days", int, 2, _positive),
                              t.take("capacity_per_half_day", int, 0, _not_negative))

    t = r.table(data, ("status",))
    t.unknown({"smtp_failing_minutes", "outbox_overdue_minutes", "min_free_mb"})
    status = StatusConfig(
        smtp_failing_minutes=t.take("smtp_failing_minutes", float,
                                    StatusConfig.smtp_failing_minutes, _positive),
        outbox_overdue_minutes=t.take("outbox_overdue_minutes", float,
                                      StatusConfig.outbox_overdue_minutes, _positive),
        min_free_mb=t.take("min_free_mb", int, StatusConfig.min_free_mb, _not_negative),
    )

    return Config(path=path, agency=agency, storage=storage, mailboxes=tuple(mailboxes),
                  smtp=smtp, rules=rules, limits=limits, security=security_cfg,
                  results=results, digest=digest, calendar=calendar, status=status,
                  metrics=_metrics(r.table(data, ("metrics",)), base),
                  intake=_intake(r.table(data, ("intake",)), agency.tz))
