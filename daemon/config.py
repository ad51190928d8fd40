"""Load and validate `config.toml` whole: every problem is collected and reported at once.

Unknown keys and wrong types are errors. Every key but the agency's identity has a default, so a
short file runs. The result is a frozen `Config` passed explicitly; there is no global settings
object. Secrets are `Secret` values that never print.
"""

from __future__ import annotations

import email.policy
import functools
import os
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from daemon.calendar import WorkCalendar
from daemon.errors import ConfigError, Problem

T = TypeVar("T")

SECURITY_MODES = ("tls", "starttls", "none")


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
    # Format of a dossier code (DOMAIN.md §2): fields code, yymmdd, yyyy, seq.
    case_code_format: str = "{code}-{yymmdd}-{seq:04d}"
    # How a case code is recognised in a subject: ours, and codes of earlier systems.
    case_ref_pattern: str = r"HS-\d{4}-\d{6}|[0-9A-Z.]+-\d{6}-\d{4}"
    # Domain of the Message-IDs vanthu writes.
    message_id_domain: str = "vanthu.invalid"
    # Where applicants receive results, as printed on the receipt slip.
    result_place: str = "Bộ phận Tiếp nhận và Trả kết quả"

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
    timeout_seconds: float = 60.0
    max_attempts: int = 10
    # `from` parsed as one RFC 5322 mailbox: the display name (any Unicode) and the ASCII
    # addr-spec that goes into the SMTP envelope and the From header.
    from_name: str = ""
    from_address: str = "vanthu@localhost"


@dataclass(frozen=True)
class RulesConfig:
    dir: Path = Path("rules")


@dataclass(frozen=True)
class LimitsConfig:
    max_message_bytes: int = 50 * 1024 * 1024
    max_attachment_bytes: int = 30 * 1024 * 1024
    max_parts: int = 200
    max_depth: int = 10
    pdf_max_pages: int = 1  # pages read for text: the header is on page one
    max_attempts: int = 3  # a message failing this often is quarantined (the "shunt")
    parse_seconds: int = 60  # a mail taking longer to read is quarantined
    worker_memory_mb: int = 2048  # address-space cap of each parsing worker process
    workers: int = 0  # parsing worker processes; 0: one per core


@dataclass(frozen=True)
class SecurityConfig:
    # Only an Authentication-Results header with this authserv-id is trusted (RFC 8601 §5).
    authserv_id: str = ""
    # Domains whose senders must pass authentication to be treated as official.
    trusted_domains: tuple[str, ...] = ("gov.vn",)


@dataclass(frozen=True)
class ResultsConfig:
    inbox_dir: Path = Path("data/results")
    trust_roots: tuple[str, ...] = ()


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

    @property
    def own_addresses(self) -> frozenset[str]:
        """Every address of the agency itself: mail from them is never answered (no loops)."""
        return frozenset({*self.agency.addresses, self.smtp.from_address.lower()})


class _Reader:
    """Reads typed keys from TOML tables, collecting problems instead of stopping at the first."""

    def __init__(self, file: str, text: str, base: Path) -> None:
        self.file = file
        self.base = base
        self.lines = text.splitlines()
        self.problems: list[Problem] = []

    def line_of(self, key: str) -> int | None:
        pattern = re.compile(rf"^\s*{re.escape(key.split('.')[-1])}\s*=")
        for number, line in enumerate(self.lines, 1):
            if pattern.match(line):
                return number
        return None

    def error(self, path: str, message: str) -> None:
        self.problems.append(Problem(self.file, self.line_of(path), f"{path}: {message}"))

    def table(self, data: dict[str, Any], key: str) -> dict[str, Any]:
        value = data.get(key, {})
        if not isinstance(value, dict):
            self.error(key, "must be a table")
            return {}
        return value

    def take(
        self,
        table: dict[str, Any],
        path: str,
        key: str,
        kind: type[T],
        default: T,
        check: Callable[[T], str | None] | None = None,
    ) -> T:
        full = f"{path}.{key}"
        if key not in table:
            return default
        value = table[key]
        ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value, ok = float(value), True
        if not ok:
            self.error(full, f"expected {kind.__name__}, got {type(value).__name__}")
            return default
        if check and (message := check(value)):
            self.error(full, message)
            return default
        return value  # type: ignore[no-any-return]

    def strings(
        self, table: dict[str, Any], path: str, key: str, default: tuple[str, ...]
    ) -> tuple[str, ...]:
        value = self.take(table, path, key, list, list(default))
        if not all(isinstance(v, str) for v in value):
            self.error(f"{path}.{key}", "expected a list of strings")
            return default
        return tuple(value)

    def unknown(self, table: dict[str, Any], path: str, known: set[str]) -> None:
        for key in sorted(set(table) - known):
            self.error(f"{path}.{key}" if path else key, "unknown key")

    def secret(self, table: dict[str, Any], path: str, required: bool) -> Secret | None:
        """Read a password given as `password`, `password_file`, `password_env` or
        `password_credential` (a systemd credential named in LoadCredential=)."""
        given = [k for k in ("password", "password_file", "password_env", "password_credential")
                 if k in table]
        if len(given) > 1:
            self.error(path, f"give one of {', '.join(given)}, not several")
            return None
        if not given:
            if required:
                self.error(f"{path}.password", "missing (or password_file / password_env)")
            return None
        key = given[0]
        value = self.take(table, path, key, str, "")
        if key == "password":
            return Secret(value)
        if key == "password_env":
            if value not in os.environ:
                self.error(f"{path}.{key}", f"environment variable {value} is not set")
                return None
            return Secret(os.environ[value])
        if key == "password_credential":
            directory = os.environ.get("CREDENTIALS_DIRECTORY")
            if not directory:
                self.error(f"{path}.{key}", "CREDENTIALS_DIRECTORY is not set (not under systemd?)")
                return None
            value = str(Path(directory) / value)
        try:
            return Secret((self.base / value).read_text(encoding="utf-8").strip())
        except OSError as err:
            self.error(f"{path}.{key}", f"cannot read {value}: {err.strerror}")
            return None


def _security(value: str) -> str | None:
    return None if value in SECURITY_MODES else f"must be one of {', '.join(SECURITY_MODES)}"


def _after(value: str) -> str | None:
    if value in ("flag", "none") or (value.startswith("move:") and len(value) > 5):
        return None
    return "must be flag, none or move:FOLDER"


def _positive(value: int) -> str | None:
    return None if value > 0 else "must be positive"


def _timezone(value: str) -> str | None:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        return f"unknown time zone {value!r}"
    return None


def _regex(value: str) -> str | None:
    try:
        re.compile(value)
    except re.error as err:
        return f"not a valid regular expression: {err}"
    return None


def mailbox(value: str) -> tuple[str, str] | str:
    """Parse `value` as one mailbox ("Văn thư <vanthu@so.gov.vn>" or a bare address) with the
    standard library's strict RFC 5322 parser. Returns (display name, addr-spec), or the
    reason it cannot be used as the sender of vanthu's mail."""
    if any(c in value for c in "\r\n\x00"):
        return "must not contain line breaks or NUL"
    try:
        header = email.policy.default.header_factory("from", value)
    except (ValueError, IndexError, TypeError) as err:
        return f"not a mailbox: {err}"
    groups = getattr(header, "groups", ())
    found = [a for g in groups for a in g.addresses]
    if len(found) != 1 or any(g.display_name is not None for g in groups):
        return f"must be exactly one mailbox, found {len(found)}"
    if header.defects:
        return f"not a well-formed mailbox: {header.defects[0]}"
    address = found[0]
    if not address.username or not address.domain:
        return "the address needs a local part and a domain"
    if not address.addr_spec.isascii():
        return "the address must be ASCII (vanthu does not send with SMTPUTF8)"
    return address.display_name, address.addr_spec


def _mailbox_check(value: str) -> str | None:
    parsed = mailbox(value)
    return parsed if isinstance(parsed, str) else None


def _hhmm(value: str) -> bool:
    return re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", value) is not None


def load(path: Path | None) -> Config:
    """Load `path` (or the embedded defaults when None); raise ConfigError with every problem."""
    if path is None:
        return parse({}, file="<defaults>", text="", base=Path.cwd())
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError([Problem(str(path), None, f"cannot read: {err.strerror}")]) from err
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        line = getattr(err, "lineno", None)
        raise ConfigError([Problem(str(path), line, f"not valid TOML: {err}")]) from err
    return parse(data, file=str(path), text=text, base=path.parent, path=path)


def parse(
    data: dict[str, Any], *, file: str, text: str, base: Path, path: Path | None = None
) -> Config:
    """Validate a decoded TOML document. Relative paths are taken from `base`."""
    r = _Reader(file, text, base)
    r.unknown(data, "", {"agency", "storage", "mailboxes", "smtp", "rules", "limits",
                         "security", "results", "digest", "calendar"})

    t = r.table(data, "agency")
    r.unknown(t, "agency", {"name", "code", "timezone", "addresses", "case_code_format",
                            "case_ref_pattern", "message_id_domain", "result_place"})
    default_agency = AgencyConfig()
    agency = AgencyConfig(
        name=r.take(t, "agency", "name", str, default_agency.name),
        code=r.take(t, "agency", "code", str, default_agency.code),
        timezone=r.take(t, "agency", "timezone", str, default_agency.timezone, _timezone),
        addresses=tuple(a.lower() for a in r.strings(t, "agency", "addresses", ())),
        case_code_format=r.take(t, "agency", "case_code_format", str,
                                default_agency.case_code_format),
        case_ref_pattern=r.take(t, "agency", "case_ref_pattern", str,
                                default_agency.case_ref_pattern, _regex),
        message_id_domain=r.take(t, "agency", "message_id_domain", str,
                                 default_agency.message_id_domain),
        result_place=r.take(t, "agency", "result_place", str, default_agency.result_place),
    )

    t = r.table(data, "storage")
    r.unknown(t, "storage", {"data_dir", "database_url"})
    storage = StorageConfig(
        data_dir=base / r.take(t, "storage", "data_dir", str, "data"),
        database_url=r.take(t, "storage", "database_url", str, ""),
    )

    boxes = data.get("mailboxes", [])
    mailboxes: list[MailboxConfig] = []
    if not isinstance(boxes, list):
        r.error("mailboxes", "must be an array of tables ([[mailboxes]])")
        boxes = []
    for i, t in enumerate(boxes):
        p = f"mailboxes[{i}]"
        if not isinstance(t, dict):
            r.error(p, "must be a table")
            continue
        r.unknown(t, p, {"name", "host", "port", "security", "username", "password",
                         "password_file", "password_env", "password_credential", "folders",
                         "after", "keyword", "idle", "poll_seconds", "batch_size", "ca_file",
                         "tls_verify"})
        for required in ("host", "username"):
            if required not in t:
                r.error(f"{p}.{required}", "missing")
        security = r.take(t, p, "security", str, "tls", _security)
        password = r.secret(t, p, required=True)
        ca_file = r.take(t, p, "ca_file", str, "")
        mailboxes.append(MailboxConfig(
            name=r.take(t, p, "name", str, f"mailbox{i + 1}"),
            host=r.take(t, p, "host", str, ""),
            port=r.take(t, p, "port", int, 993 if security == "tls" else 143, _positive),
            security=security,
            username=r.take(t, p, "username", str, ""),
            password=password or Secret(""),
            folders=r.strings(t, p, "folders", ("INBOX",)),
            after=r.take(t, p, "after", str, "flag", _after),
            keyword=r.take(t, p, "keyword", str, "$VanthuStored"),
            idle=r.take(t, p, "idle", bool, True),
            poll_seconds=r.take(t, p, "poll_seconds", float, 60.0),
            batch_size=r.take(t, p, "batch_size", int, 50, _positive),
            ca_file=str(base / ca_file) if ca_file else None,
            tls_verify=r.take(t, p, "tls_verify", bool, True),
        ))
    names = [m.name for m in mailboxes]
    for name in sorted({n for n in names if names.count(n) > 1}):
        r.error("mailboxes", f"two mailboxes are named {name!r}")

    t = r.table(data, "smtp")
    r.unknown(t, "smtp", {"host", "port", "security", "username", "password", "password_file",
                          "password_env", "password_credential", "from", "ca_file",
                          "tls_verify", "timeout_seconds", "max_attempts"})
    security = r.take(t, "smtp", "security", str, "none", _security)
    ca_file = r.take(t, "smtp", "ca_file", str, "")
    from_ = r.take(t, "smtp", "from", str, "vanthu@localhost", _mailbox_check)
    from_parsed = mailbox(from_)
    smtp = SmtpConfig(
        host=r.take(t, "smtp", "host", str, "127.0.0.1"),
        port=r.take(t, "smtp", "port", int, {"tls": 465, "starttls": 587}.get(security, 25),
                    _positive),
        security=security,
        username=r.take(t, "smtp", "username", str, "") or None,
        password=r.secret(t, "smtp", required=False),
        from_=from_,
        from_name=from_parsed[0] if isinstance(from_parsed, tuple) else "",
        from_address=from_parsed[1] if isinstance(from_parsed, tuple) else "vanthu@localhost",
        ca_file=str(base / ca_file) if ca_file else None,
        tls_verify=r.take(t, "smtp", "tls_verify", bool, True),
        timeout_seconds=r.take(t, "smtp", "timeout_seconds", float, 60.0),
        max_attempts=r.take(t, "smtp", "max_attempts", int, 10, _positive),
    )

    t = r.table(data, "rules")
    r.unknown(t, "rules", {"dir"})
    rules = RulesConfig(dir=base / r.take(t, "rules", "dir", str, "rules"))

    t = r.table(data, "limits")
    d = LimitsConfig()
    r.unknown(t, "limits", set(d.__dataclass_fields__))
    limits = LimitsConfig(**{
        name: r.take(t, "limits", name, int, getattr(d, name),
                     None if name == "workers" else _positive)
        for name in d.__dataclass_fields__
    })

    t = r.table(data, "security")
    r.unknown(t, "security", {"authserv_id", "trusted_domains"})
    security_cfg = SecurityConfig(
        authserv_id=r.take(t, "security", "authserv_id", str, ""),
        trusted_domains=tuple(
            x.lower() for x in r.strings(t, "security", "trusted_domains", ("gov.vn",))
        ),
    )

    t = r.table(data, "results")
    r.unknown(t, "results", {"inbox_dir", "trust_roots"})
    results = ResultsConfig(
        inbox_dir=base / r.take(t, "results", "inbox_dir", str, str(storage.data_dir / "results")),
        trust_roots=tuple(str(base / x) for x in r.strings(t, "results", "trust_roots", ())),
    )

    t = r.table(data, "digest")
    r.unknown(t, "digest", {"times", "to"})
    times = r.strings(t, "digest", "times", DigestConfig.times)
    for value in times:
        if not _hhmm(value):
            r.error("digest.times", f"{value!r} is not HH:MM")
    digest = DigestConfig(times=times, to=r.strings(t, "digest", "to", DigestConfig.to))

    t = r.table(data, "calendar")
    r.unknown(t, "calendar", {"days_off", "working_days", "cutoff", "result_weekday",
                              "remind_days", "capacity_per_half_day"})
    days: dict[str, tuple[date, ...]] = {}
    for key in ("days_off", "working_days"):
        values = r.take(t, "calendar", key, list, [])
        if not all(isinstance(v, date) and not isinstance(v, datetime) for v in values):
            r.error(f"calendar.{key}", "expected a list of dates (YYYY-MM-DD, unquoted)")
            values = []
        days[key] = tuple(values)
    cutoff = r.take(t, "calendar", "cutoff", str, "16:00",
                    lambda v: None if _hhmm(v) else "must be HH:MM")
    weekday = r.take(t, "calendar", "result_weekday", int, -1,
                     lambda v: None if 0 <= v <= 6 else "must be 0 (Monday) to 6 (Sunday)")
    calendar = CalendarConfig(days["days_off"], days["working_days"], cutoff,
                              None if weekday < 0 else weekday,
                              r.take(t, "calendar", "remind_days", int, 2, _positive),
                              r.take(t, "calendar", "capacity_per_half_day", int, 0))

    if r.problems:
        raise ConfigError(r.problems)
    return Config(path=path, agency=agency, storage=storage, mailboxes=tuple(mailboxes),
                  smtp=smtp, rules=rules, limits=limits, security=security_cfg,
                  results=results, digest=digest, calendar=calendar)
