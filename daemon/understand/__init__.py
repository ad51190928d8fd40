"""Understand a stored mail: parse it, find the document and the applicant, decide its kind
and whether it must be held for a human. Pure: no I/O but the `CaseLookup` it is given, so
`vanthu inspect` and the pipeline run the very same code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

from daemon.config import Config, LimitsConfig
from daemon.models import Document, Kind, ParsedMail, Understanding
from daemon.understand import extract
from daemon.understand.classify import Signals, applicant, classify
from daemon.understand.parse import parse


class CaseLookup(Protocol):
    """What understanding needs to know about cases and mail vanthu already handled."""

    def case_exists(self, code: str) -> bool: ...

    def case_of_message_id(self, message_id: str) -> str | None: ...


class NoCases:
    """No database: a well-formed case code in the subject is taken at its word."""

    def case_exists(self, code: str) -> bool:
        return True

    def case_of_message_id(self, message_id: str) -> str | None:
        return None


def _domain(address: str) -> str:
    return address.rpartition("@")[2].lower()


def authenticated(mail: ParsedMail, authserv_id: str) -> bool | None:
    """Did the sender pass DKIM or DMARC, per our own server's Authentication-Results?

    Only headers carrying our authserv-id count (RFC 8601 §5): anyone can add one. Without a
    configured id, the topmost header — the one our receiving server added last — is taken
    as ours; that is weaker (a server that adds none lets a forged one through), so
    production configs set `[security] authserv_id`. None: nothing can be said.
    """
    headers = mail.headers.get("authentication-results", ())
    if not authserv_id and headers:
        authserv_id = (headers[0].partition(";")[0].split() or [""])[0]
    if not authserv_id:
        return None
    verdict: bool | None = None
    domain = _domain(mail.sender.email)
    for value in headers:
        serv, _, results = value.partition(";")
        if serv.strip().split()[0:1] != [authserv_id]:
            continue
        verdict = False
        if re.search(r"\bdmarc=pass\b", results):
            return True
        for signer in re.findall(r"\bdkim=pass\b[^;]*?header\.d=([\w.\-]+)", results):
            if domain == signer.lower() or domain.endswith("." + signer.lower()):
                return True
    return verdict


def _case_signal(mail: ParsedMail, cfg: Config, cases: CaseLookup) -> tuple[str | None, str]:
    for match in re.finditer(rf"\b({cfg.agency.case_ref_pattern})\b", mail.subject):
        if cases.case_exists(match.group(1)):
            return match.group(1), f"case code {match.group(1)} in the subject"
    thread = [mail.header("in-reply-to"), *mail.headers.get("references", ())]
    for message_id in re.findall(r"<[^<>\s]+>", " ".join(thread)):
        if code := cases.case_of_message_id(message_id):
            return code, f"In-Reply-To/References {message_id} belongs to case {code}"
    return None, ""


@dataclass(frozen=True)
class Reading:
    """The heavy, lookup-free part of understanding: the parsed mail and its document."""

    mail: ParsedMail
    document: Document | None


def read(raw: bytes, limits: LimitsConfig) -> Reading:
    """Parse a raw mail and read its document header. Pure and picklable, so it can run in a
    worker process. Raises BadMessage when the mail cannot be parsed at all."""
    mail = parse(raw, limits)
    candidates = [extract.from_text(a.text, a.name) for a in mail.attachments if a.text]
    return Reading(mail, extract.best([*candidates, extract.from_text(mail.body, "body")]))


def judge(reading: Reading, cfg: Config, cases: CaseLookup) -> Understanding:
    """Decide the kind, the case and whether to hold the mail, from a Reading."""
    mail, document = reading.mail, reading.document
    case_ref, case_why = _case_signal(mail, cfg, cases)
    own = cfg.own_addresses
    auth = authenticated(mail, cfg.security.authserv_id)
    signals = Signals(case_ref=case_ref, case_why=case_why, own_mail=mail.sender.email in own,
                      authenticated=auth)
    kind, why = classify(mail, signals, document)

    reasons: list[str] = []
    domain = _domain(mail.sender.email)
    claims_trusted = any(domain == d or domain.endswith("." + d)
                         for d in cfg.security.trusted_domains)
    if kind in (Kind.DOCUMENT, Kind.DOSSIER, Kind.REPLY) and claims_trusted and auth is not True:
        state = "failed" if auth is False else "has no trusted Authentication-Results for"
        reasons.append(f"sender {mail.sender.email} {state} authentication of {domain}; "
                       "not treated as official")
    return Understanding(
        kind=kind,
        why=why,
        case_ref=case_ref if kind is Kind.REPLY else None,
        document=document if kind in (Kind.DOCUMENT,) else None,
        applicant=applicant(mail) if kind is Kind.DOSSIER else None,
        quarantine_reasons=tuple(reasons),
        defects=mail.defects + tuple(d for a in mail.attachments for d in a.defects),
    )


def understand(raw: bytes, cfg: Config, cases: CaseLookup) -> tuple[ParsedMail, Understanding]:
    """Parse and understand one raw mail. Raises BadMessage when it cannot be parsed at all."""
    reading = read(raw, cfg.limits)
    return reading.mail, judge(reading, cfg, cases)
