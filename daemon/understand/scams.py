"""Scam and malware mail recognised by its class, never by one campaign's words.

Two kinds of evidence, each with a Vietnamese reason for the clerk:

- The attachments. A name that disguises a program, a script, a shortcut, a disk image or a
  web page as a document ("VanBanDen.pdf.html", "hoadon.doc   .exe", a bidi control, a
  program's bytes under a document's name) is malware whoever sends it. A web page or SVG
  with a script, a form or a redirect, a program, script, shortcut or disk image, or an
  encrypted archive whose password the mail gives (how malware slips past mail scanners) is
  malware from anyone but an official sender (a trusted or the agency's own domain), for
  whom it is only one signal: its attachment is withheld anyway.
- The families of `scams.yaml` (fake e-invoice, fake e-office "văn bản đến", impersonation
  of the tax authority, social security or police): the mail speaks of the family's topic,
  comes from none of the domains that may send it, and shows at least two marks of a scam
  (a risky attachment, a link to another site, a throw-away domain, haste or threats, failed
  sender authentication, a domain imitating a legitimate sender). A real invoice from a
  provider, or an official mail from gov.vn, is never judged by its topic.

Bounded: at most `MAX_ATTACHMENTS` attachments, `MAX_ENTRIES` names of an archive,
`MAX_MARKUP` bytes of a web page, `MAX_TEXT` characters of the body, `MAX_HOSTS` links.
"""

from __future__ import annotations

import functools
import io
import itertools
import re
import zipfile
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from daemon.models import Attachment, ParsedMail
from daemon.textnorm import fold
from daemon.understand import filetype, lookalike, trust

DATA_FILE = Path(__file__).with_name("scams.yaml")
MAX_ATTACHMENTS = 50
MAX_ENTRIES = 200
MAX_MARKUP = 256 * 1024
MAX_TEXT = 20_000
MAX_HOSTS = 100

# Kinds of the attachment policy that run, or open what runs, when double-clicked.
_RUNNABLE = frozenset({"program", "script", "shortcut", "disk", "installer"})
# Kinds a document's name may be made to hide: the runnable ones and web pages.
_DISGUISABLE = _RUNNABLE | {"markup"}
_RUNNABLE_MAGIC = frozenset({"exe", "elf", "macho", "lnk", "iso", "vhd", "dmg"})
_ARCHIVES = frozenset({"zip", "archive", "gzip", "bzip2", "xz", "tar"})
# What makes a web page act when opened: scripts, forms, frames, event handlers, redirects.
_ACTIVE_MARKUP = re.compile(
    r"<\s*(script|form|iframe|embed|object)\b|\bon[a-z]{3,20}\s*=|javascript\s*:|"
    r"http-equiv\s*=\s*[\"']?refresh|type\s*=\s*[\"']?password|"
    r"\b(window|document)\.location\b|\blocation\.(href|replace|assign)\b|"
    r"\b(atob|eval|unescape)\s*\(", re.I)
_MARKUP_TYPES = frozenset({"text/html", "application/xhtml+xml", "image/svg+xml"})
_URL = re.compile(r"https?://([^\s/<>\"'?#\\]{1,255})", re.I)


@dataclass(frozen=True)
class Family:
    """One family of scam mail: what it speaks of, and who may really send that."""

    id: str
    label: str  # Vietnamese, shown to the clerk
    topic: re.Pattern[str]
    legit: tuple[str, ...] = ()


@dataclass(frozen=True)
class Data:
    throwaway: frozenset[str]
    families: tuple[Family, ...]
    pressure: re.Pattern[str]
    password: re.Pattern[str]


def _any(patterns: list[str]) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{p})" for p in patterns))


@functools.cache
def load(path: Path = DATA_FILE) -> Data:
    """The families and word lists of `scams.yaml`."""
    raw: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    families = tuple(Family(f["id"], f["label"], _any(f["topic"]),
                            tuple(raw[f["legit"]]) if f.get("legit") else ())
                     for f in raw["families"])
    return Data(frozenset(raw["throwaway_tlds"]), families, _any(raw["pressure"]),
                _any(raw["password_given"]))


@dataclass(frozen=True)
class ScamCheck:
    """`verdict`: why the mail is a scam or carries malware, whatever else it looks like
    (None: nothing decisive); `hints`: weaker signals, one spam signal each."""

    verdict: str | None = None
    hints: tuple[str, ...] = ()


@dataclass
class _Found:
    decisive: list[str] = field(default_factory=list)
    hints: list[str] = field(default_factory=list)
    risky: bool = False  # an attachment a scam would send: withheld, archive, web page


def check(mail: ParsedMail, official_domains: Collection[str],
          authenticated: bool | None) -> ScamCheck:
    """Judge `mail`. `official_domains`: the trusted and the agency's own domains, whose mail
    (unless it failed authentication) is never judged by its topic nor by an attachment that
    is only dangerous."""
    data = load()
    sender = mail.sender.email.rpartition("@")[2].lower()
    # A trusted domain that failed authentication is forged: its mail is judged as anyone's.
    official = trust.in_domains(sender, official_domains) and authenticated is not False
    text = fold(f"{mail.subject}\n{mail.body[:MAX_TEXT]}", accents=False)
    found = _Found()
    for attachment in mail.attachments[:MAX_ATTACHMENTS]:
        _judge_attachment(attachment, official, bool(data.password.search(text)), found)
    if found.decisive:
        return ScamCheck("; ".join(found.decisive[:3]), tuple(found.hints))
    if throwaway(sender, data):
        found.hints.append(f"địa chỉ gửi thuộc tên miền hay dùng để lừa đảo ({sender})")
    if not official and (why := _family(mail, text, sender, found, official_domains,
                                        authenticated, data)):
        return ScamCheck(why, tuple(found.hints))
    return ScamCheck(None, tuple(found.hints))


def throwaway(host: str, data: Data | None = None) -> bool:
    """Whether `host` is under a top-level domain most used for throw-away phishing sites."""
    return host.partition(":")[0].rstrip(".").rpartition(".")[2].lower() in (
        data or load()).throwaway


def disguise(name: str) -> str | None:
    """Why a file's name disguises a program, a script, a shortcut, a disk image or a web
    page as a document ("VanBanDen.pdf.html", "hoadon.doc   .exe"), or None."""
    parts = filetype.judged_name(name).split(".")
    if len(parts) < 3:
        return None
    final, inner = parts[-1], parts[-2].strip(" \t\u00a0\u3000")
    kind, _ = filetype.KIND_OF_EXTENSION.get(final, ("", None))
    if kind not in _DISGUISABLE or filetype.KIND_OF_EXTENSION.get(inner, ("", "no"))[1]:
        return None
    return f"tệp {name} giả dạng tài liệu .{inner} nhưng là tệp .{final}"


def _judge_attachment(attachment: Attachment, official: bool, password_given: bool,
                      found: _Found) -> None:
    name, data = attachment.name, attachment.payload
    kind, _ = filetype.KIND_OF_EXTENSION.get(
        filetype.judged_name(name).rpartition(".")[2], ("", None))
    magic = filetype.magic(data)
    if attachment.withheld and filetype.BIDI_NAME in attachment.withheld:
        found.decisive.append(f"tên tệp {name} dùng ký tự đảo chiều để giấu đuôi thật")
    elif why := disguise(name):
        found.decisive.append(why)
    elif magic in _RUNNABLE_MAGIC and filetype.KIND_OF_EXTENSION.get(
            filetype.judged_name(name).rpartition(".")[2], ("", "no"))[1] is None:
        found.decisive.append(f"tệp {name} mang tên tài liệu nhưng là chương trình")
    elif kind in _RUNNABLE or magic in _RUNNABLE_MAGIC:
        _dangerous(found, official, f"tệp chạy được đính kèm ({name})")
    elif kind == "markup" or attachment.content_type.lower() in _MARKUP_TYPES:
        page = data[:MAX_MARKUP].decode("utf-8", "replace")
        if active := _ACTIVE_MARKUP.search(page):
            _dangerous(found, official, f"trang web đính kèm ({name}) có mã chạy, biểu mẫu "
                                        f"hoặc lệnh chuyển trang ({active.group(0)[:20]})")
        else:
            found.hints.append(f"trang web đính kèm ({name})")
    elif kind in _ARCHIVES or magic in ("zip", "rar", "7z"):
        _archive(attachment, official, password_given, found)
    found.risky = found.risky or bool(attachment.withheld) or kind in _ARCHIVES | {"markup"} \
        or bool(found.decisive)


def _dangerous(found: _Found, official: bool, why: str) -> None:
    """Malware from anyone but an official sender; one signal from an official one."""
    (found.hints if official else found.decisive).append(why)


def _archive(attachment: Attachment, official: bool, password_given: bool,
             found: _Found) -> None:
    """The names inside a ZIP (a disguised or runnable file), and whether it is encrypted;
    a RAR or 7z cannot be looked into and counts as encrypted."""
    encrypted = filetype.magic(attachment.payload) in ("rar", "7z")
    try:
        with zipfile.ZipFile(io.BytesIO(attachment.payload)) as archive:
            entries = archive.infolist()[:MAX_ENTRIES]
    except Exception:  # zipfile's boundary: a hostile archive raises anything
        entries = []
    for entry in entries:
        encrypted = encrypted or bool(entry.flag_bits & 0x1)
        if why := disguise(entry.filename):
            found.decisive.append(f"{attachment.name} chứa {why}")
            return
        if filetype.judge_name(entry.filename).kind in _RUNNABLE:
            _dangerous(found, official, f"{attachment.name} chứa tệp chạy được "
                                        f"({entry.filename[:80]})")
            return
    if encrypted and password_given:
        _dangerous(found, official, f"tệp nén có mật khẩu ({attachment.name}) và mật khẩu "
                                    "ghi ngay trong thư (cách né quét mã độc)")
    elif encrypted:
        found.hints.append(f"tệp nén có mật khẩu ({attachment.name})")


def link_hosts(mail: ParsedMail) -> list[str]:
    """The hosts of the links of the mail: HTML links and URLs written in the body."""
    hosts = [lookalike.host_of(href) for _, href in mail.links[:MAX_HOSTS]]
    hosts += hosts_in(mail.body[:MAX_TEXT])
    return [h for h in dict.fromkeys(hosts) if h][:MAX_HOSTS]


def hosts_in(text: str) -> list[str]:
    """The hosts of the first `MAX_HOSTS` http(s) URLs written in `text`, lower case."""
    return [m.group(1).lower() for m in itertools.islice(_URL.finditer(text), MAX_HOSTS)]


def _family(mail: ParsedMail, text: str, sender: str, found: _Found,
            official_domains: Collection[str], authenticated: bool | None,
            data: Data) -> str | None:
    """The family this mail belongs to, with the marks that show it, or None."""
    hosts = link_hosts(mail)
    for family in data.families:
        if not family.topic.search(text) or trust.in_domains(sender, family.legit):
            continue
        legit = (*family.legit, *official_domains)
        marks = []
        if found.risky:
            marks.append("tệp đính kèm là tệp nén, trang web hoặc tệp bị giữ lại")
        if other := next((h for h in hosts if not trust.in_domains(h, legit)), None):
            marks.append(f"liên kết tới {other}")
        if throwaway(sender, data) or any(throwaway(h, data) for h in hosts):
            marks.append("tên miền hay dùng để lừa đảo")
        if pressed := data.pressure.search(text):
            marks.append(f"lời hối thúc, đe dọa ({pressed.group(0)!r})")
        if authenticated is False:
            marks.append("địa chỉ gửi không xác thực được")
        if family.legit and (imitated := next(
                (f for h in (sender, *hosts) if (f := lookalike.lookalike(h, family.legit))),
                None)):
            marks.append(f"tên miền {imitated.domain} giả {imitated.target}")
        if len(marks) >= 2:
            return f"{family.label}: " + ", ".join(marks[:4])
    return None
