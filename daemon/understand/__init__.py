"""Understand a stored mail: parse it, find the document and the applicant, decide its kind,
how far its sender is proven, and whether it must be held for a human. `judge` is pure: no I/O
but the `CaseLookup` it is given, so `vanthu inspect` and the pipeline run the very same code;
`read` (in a worker) may ask DNS for DKIM keys when told to.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, cast

from daemon.config import Config, LimitsConfig
from daemon.models import Applicant, Document, HoldKind, Kind, ParsedMail, Understanding
from daemon.textnorm import header_safe
from daemon.understand import edxml, extract, lookalike, ocr, scams, secrecy, signatures, trust
from daemon.understand.applicant import applicant
from daemon.understand.classify import (
    Signals,
    classify,
    made_by_vanthu,
    own_trail,
    thread_ids,
)
from daemon.understand.identity import raw_headers
from daemon.understand.parse import parse
from daemon.understand.secrecy import Finding
from daemon.understand.signatures import AttachmentSignatures, Roots
from daemon.understand.trust import DkimCheck, DkimResult, Verdict


class CaseLookup(Protocol):
    """What understanding needs to know about cases and mail vanthu already handled."""

    def case_exists(self, code: str) -> bool: ...

    def case_of_message_id(self, message_id: str) -> str | None: ...

    def is_our_message(self, message_id: str) -> bool:
        """Whether vanthu itself sent an email with this Message-ID."""
        ...

    def case_secrecy(self, code: str) -> str | None:
        """The confidentiality level of a case's registered dossier (None: not confidential):
        every later mail in the case carries it too."""
        ...


class NoCases:
    """No database: a well-formed case code in the subject is taken at its word."""

    def case_exists(self, code: str) -> bool:
        return True

    def case_of_message_id(self, message_id: str) -> str | None:
        return None

    def is_our_message(self, message_id: str) -> bool:
        return False  # vanthu's own Message-IDs are still known by their form (classify)

    def case_secrecy(self, code: str) -> str | None:
        return None


class Asked:
    """A CaseLookup that keeps every question put to `cases` with its answer. A judgement is
    a function of the reading, the configuration and these answers alone, so one made on an
    older snapshot still holds when every question gets the same answer now (`same`)."""

    def __init__(self, cases: CaseLookup) -> None:
        self.cases = cases
        self.answers: dict[tuple[str, str], object] = {}

    def _ask(self, question: str, about: str) -> Any:
        answer = getattr(self.cases, question)(about)
        self.answers[(question, about)] = answer
        return answer

    def case_exists(self, code: str) -> bool:
        return bool(self._ask("case_exists", code))

    def case_of_message_id(self, message_id: str) -> str | None:
        return cast("str | None", self._ask("case_of_message_id", message_id))

    def is_our_message(self, message_id: str) -> bool:
        return bool(self._ask("is_our_message", message_id))

    def case_secrecy(self, code: str) -> str | None:
        return cast("str | None", self._ask("case_secrecy", code))

    def same(self, cases: CaseLookup) -> bool:
        """Whether `cases` answers every question asked so far as it was answered then."""
        return all(getattr(cases, question)(about) == answer
                   for (question, about), answer in self.answers.items())


def _domain(address: str) -> str:
    return address.rpartition("@")[2].lower()


THREAD_LOOKUPS = 100  # Message-IDs of In-Reply-To/References looked up, at most
CODE_LOOKUPS = 5  # case codes of a forwarded or quoted text looked up, at most
QUOTED_TEXT = 64 * 1024  # characters of the body searched for quoted or forwarded text
# Where a forwarded or quoted mail begins in a body, as mail programs write it (Gmail,
# Outlook, Thunderbird, Apple Mail, Zimbra, in English and Vietnamese).
_FORWARD_MARK = re.compile(
    r"^[ \t>]*(?:-{2,}[ \t]*(?:forwarded message|original message|thư chuyển tiếp|"
    r"thư được chuyển tiếp|tin nhắn gốc|thư gốc|nội dung thư gốc)|begin forwarded message|"
    r"(?:from|từ|người gửi)[ \t]*:.{0,300}$\n^[ \t>]*(?:sent|date|ngày|gửi lúc|đã gửi)[ \t]*:|"
    r"(?:on|vào)\b[^\n]{0,300}\b(?:wrote|đã viết|viết)[ \t]*:)", re.I | re.M)


def quoted_text(body: str) -> str:
    """The parts of `body` that repeat an earlier mail: lines quoted with ">" and everything
    from the first forward or reply header on ("---------- Forwarded message ---------",
    "Vào … đã viết:", "From: … / Sent: …"). Linear; looks at `QUOTED_TEXT` characters."""
    text = body[:QUOTED_TEXT]
    mark = _FORWARD_MARK.search(text)
    head = text[:mark.start()] if mark else text
    quoted = [line for line in head.splitlines() if line.lstrip().startswith(">")]
    return "\n".join([*quoted, text[mark.start():] if mark else ""])


def answered_ids(mail: ParsedMail) -> list[str]:
    """The Message-IDs of the mails `mail` answers: its In-Reply-To, then its References, in
    order and without repeats (at most 200 + 1000)."""
    return list(dict.fromkeys(
        [i for v in mail.headers.get("in-reply-to", ())[:3] for i in thread_ids(v)]
        + [i for v in mail.headers.get("references", ())[:3] for i in thread_ids(v, 1000)]))


def _case_signal(mail: ParsedMail, cfg: Config, cases: CaseLookup) -> tuple[str | None, str]:
    """The case a mail belongs to, and why: a case code in its subject; any Message-ID of its
    In-Reply-To or References that belongs to a case; a case code in the subject of a mail
    forwarded inside it, or in the quoted or forwarded text of its body. Only a case that
    exists counts. Bounded: `THREAD_LOOKUPS` ids (the first and the last ones of a hostile
    References), `CODE_LOOKUPS` codes of quoted text."""
    code_re = re.compile(rf"\b({cfg.agency.case_ref_pattern})\b")
    for match in code_re.finditer(mail.subject):
        if cases.case_exists(match.group(1)):
            return match.group(1), f"mã hồ sơ {match.group(1)} trong tiêu đề thư"
    # In-Reply-To names the mail answered; References every mail of the thread, of which
    # only one, anywhere, may be known (a program that trims References keeps the first).
    ids = answered_ids(mail)
    half = THREAD_LOOKUPS // 2
    chosen = ids if len(ids) <= THREAD_LOOKUPS else ids[:half] + ids[-half:]
    for message_id in chosen:
        if code := cases.case_of_message_id(message_id):
            return code, f"In-Reply-To/References {message_id} thuộc hồ sơ {code}"
    tried = 0
    for where, text in (*(("tiêu đề thư được chuyển tiếp", s) for s in mail.carried_subjects),
                        ("phần trích dẫn hoặc chuyển tiếp của nội dung thư",
                         quoted_text(mail.body))):
        for match in code_re.finditer(text):
            if tried >= CODE_LOOKUPS:
                return None, ""
            tried += 1
            if cases.case_exists(match.group(1)):
                return match.group(1), f"mã hồ sơ {match.group(1)} trong {where}"
    return None, ""


_IMPERSONATION = ("tên miền người gửi", "tên miền Reply-To")


def phishing_signals(mail: ParsedMail, protected: Collection[str]) -> tuple[str | None,
                                                                            str | None]:
    """(phishing, link_mismatch) for `Signals`: why the mail is phishing — its sender's or
    Reply-To's domain, or a link's host, imitates one of the `protected` domains, or a link
    shows a protected domain and leads elsewhere — and the first other link whose text shows
    one site and that leads to another (one spam signal)."""
    for label, address in (("người gửi", mail.sender.email),
                           *(("Reply-To", a.email) for a in mail.reply_to[:5])):
        if found := lookalike.lookalike(_domain(address), protected):
            return (f"tên miền {label} giả {found.target}: {found.why}", None)
    for _, href in mail.links[:lookalike.MAX_LINKS]:
        host = lookalike.host_of(href)
        if host and (found := lookalike.lookalike(host, protected)):
            return (f"liên kết tới tên miền giả {found.target}: {found.why}", None)
    other = None
    for bad in lookalike.mismatches(mail.links):
        if trust.in_domains(bad.shown, protected) or lookalike.lookalike(bad.shown, protected):
            return (f"liên kết hiện {bad.shown} nhưng dẫn tới {header_safe(bad.target, 120)}",
                    None)
        other = other or (f"liên kết hiện {header_safe(bad.shown, 120)} nhưng dẫn tới "
                          f"{header_safe(bad.target, 120)}")
    return None, other


@dataclass(frozen=True)
class Reading:
    """The heavy, lookup-free part of understanding: the parsed mail and its document, the
    raw Authentication-Results values (unfolded, top-down) and, when asked for, our own DKIM
    check of every signature (None: not checked)."""

    mail: ParsedMail
    document: Document | None
    auth_results: tuple[str, ...] = ()
    dkim: tuple[DkimResult, ...] | None = None
    # The highest confidentiality mark, wherever it is in the mail.
    secrecy: Finding = field(default_factory=Finding)
    # Who sent it, should it be a dossier: read here, in the worker, as it reads all the text.
    applicant: Applicant | None = None
    # The signatures of its signed PDF attachments, validated here against the trust roots.
    signatures: tuple[AttachmentSignatures, ...] = ()


def read(raw: bytes, limits: LimitsConfig, dkim: DkimCheck | None = None,
         roots: Roots | None = None) -> Reading:
    """Parse a raw mail and read its document header; with `dkim`, verify its DKIM
    signatures too (DNS lookups with a timeout); validate the signatures of its PDFs against
    `roots` (None: no roots, so none is trusted). Picklable in and out, so it can run in a
    worker process. Raises BadMessage when the mail cannot be parsed at all."""
    ocr.start_mail(limits)
    mail = parse(raw, limits)
    # Every text of every attachment may be the document: its first pages, a page further on,
    # a file inside an archive ("ho-so.zip/cong-van.pdf"); what OCR read off a scan comes
    # after any text (it may be misread).
    candidates = [extract.from_text(text, a.name if label == "body" else label)
                  for a in mail.attachments if a.scanned is None
                  for label, text in (a.pieces or (("body", a.text),)) if text]
    document = extract.best([*candidates, extract.from_text(mail.body, "body"),
                             *(a.scanned for a in mail.attachments if a.scanned)])
    document = edxml.prevail(document, mail.attachments)  # a package's header wins
    found = raw_headers(raw, frozenset({"authentication-results"}))
    return Reading(mail, document, found.get("authentication-results"),
                   trust.check_dkim(raw, dkim) if dkim is not None else None,
                   secrecy.find(mail), applicant=applicant(mail),
                   signatures=signatures.check_attachments(mail.attachments, roots or Roots()))


def dkim_check(cfg: Config) -> DkimCheck | None:
    """What `read` needs to verify DKIM itself, when `[security] verify_dkim` asks for it."""
    if not cfg.security.verify_dkim:
        return None
    return DkimCheck(timeout=trust.DNS_TIMEOUT)


def verdict(reading: Reading, cfg: Config) -> Verdict:
    """How far the From domain is proven: our own servers' Authentication-Results, and our
    own DKIM check when the reading carries one."""
    domain = _domain(reading.mail.sender.email)
    found = trust.from_headers(reading.auth_results, domain, cfg.security.authserv_id,
                               cfg.security.authres_headers)
    if reading.dkim is None:
        return found
    return trust.combine(trust.from_dkim(reading.dkim, domain), found)


# Mail vanthu registers, answers or joins to a case: its sender must be who it claims.
_ACTED_ON = (Kind.DOCUMENT, Kind.DOSSIER, Kind.REPLY)


def judge(reading: Reading, cfg: Config, cases: CaseLookup) -> Understanding:
    """Decide the kind, the case, how far the sender is proven and whether to hold the mail.

    Held for the clerk: any doubt about the sender's identity (`sender_problems`), whatever
    it claims; a document, dossier or reply from a trusted domain (gov.vn) or the agency's own
    domain that is not authenticated; mail from one of the agency's own addresses that is
    not authenticated (a forged "from ourselves" is never routed).
    """
    mail, document = reading.mail, reading.document
    case_ref, case_why = _case_signal(mail, cfg, cases)
    own = cfg.own_addresses
    proof = verdict(reading, cfg)
    auth = proof.authenticated
    address = mail.sender.email
    own_mail = bool(address) and address in own
    returned, answers = own_trail(mail, lambda i: cases.is_our_message(i) or made_by_vanthu(
        i, cfg.agency.message_id_domain), own)
    own_domains = {_domain(a) for a in own if "@" in a}
    phishing, link_mismatch = phishing_signals(
        mail, (*cfg.security.trusted_domains, *sorted(own_domains)))
    scam = scams.check(mail, (*cfg.security.trusted_domains, *own_domains), auth)
    signals = Signals(case_ref=case_ref, case_why=case_why, own_mail=own_mail,
                      authenticated=auth, returned=returned, answers=answers,
                      phishing=phishing, link_mismatch=link_mismatch, scam=scam.verdict,
                      scam_hints=scam.hints)
    kind, why = classify(mail, signals, document)

    reasons: list[str] = []
    kinds: list[HoldKind] = []  # the class of each reason, in the same order
    if phishing and phishing.startswith(_IMPERSONATION):
        # A sender imitating the state is held for the clerk with the reason; phishing by its
        # links alone is spam like any other (never answered, registered or forwarded).
        reasons.append(f"Thư giả danh cơ quan nhà nước (lừa đảo): {phishing}")
        kinds.append(HoldKind.PHISHING)
    if kind is Kind.SPAM and scam.verdict and why == scam.verdict:
        reasons.append(f"thư lừa đảo hoặc có mã độc: {scam.verdict}")
        kinds.append(HoldKind.MALWARE)
    if mail.sender_problems:
        reasons.append("Không xác định chắc chắn được người gửi (tiêu đề người gửi bất "
                       "thường: " + "; ".join(mail.sender_problems) + ")")
        kinds.append(HoldKind.SENDER)
    domain = _domain(address)
    claims_trusted = trust.in_domains(domain, cfg.security.trusted_domains)
    claims_own = trust.in_domains(domain, own_domains)
    if auth is not True and ((kind in _ACTED_ON and (claims_trusted or claims_own))
                             or (own_mail and kind is Kind.OTHER)):
        state = "không qua được kiểm tra xác thực" if auth is False else \
            "không có kết quả xác thực đáng tin cậy"
        reasons.append(f"Người gửi {address} {state} của tên miền {domain} ({proof.why}): "
                       "chưa coi là thư chính thức")
        kinds.append(HoldKind.AUTH)
    notes: list[str] = []
    warning = signatures.warning(
        reading.signatures, claims_trusted or claims_own or bool(document and document.issuer),
        bool(cfg.security.document_trust_roots))
    if warning:
        notes.append(warning)
    if kind is Kind.DOCUMENT and document is not None and (note := trust.issuer_note(
            document.issuer, address, auth, cfg.security.trusted_domains)):
        notes.append(note)
    if claims_trusted or claims_own:
        others = sorted({_domain(a.email) for a in mail.reply_to} - {domain, ""})
        if others:
            notes.append(f"Địa chỉ trả lời (Reply-To) thuộc tên miền khác ({', '.join(others)}) "
                         f"với địa chỉ gửi ({domain})")
    if link_mismatch and kind is not Kind.SPAM:
        # One such link alone is a doubt for the reader, not a verdict: newsletters and mail
        # programs rewrite links through their trackers.
        notes.append(f"Thư có liên kết hiển thị một địa chỉ nhưng dẫn tới trang khác "
                     f"({link_mismatch})")
    mark = reading.secrecy
    # A supplement to a confidential case is as confidential as the case, marked or not.
    inherited = cases.case_secrecy(case_ref) if kind is Kind.REPLY and case_ref else None
    if inherited and secrecy.highest(inherited, mark.level) == inherited:
        mark = replace(mark, level=inherited, where=f"hồ sơ {case_ref}")
    if document is not None and mark.level and secrecy.highest(
            mark.level, document.confidentiality) != document.confidentiality:
        document = replace(document, confidentiality=mark.level, filled_from=(
            *document.filled_from, ("confidentiality", mark.where)))
    # What could not be read may hide a mark only where an official document may be: a
    # document, or anything from a trusted or the agency's own domain. A citizen's scans are
    # the ordinary content of a dossier, not a doubt.
    official = kind is Kind.DOCUMENT or claims_trusted or claims_own
    level = secrecy.highest(mark.level, document.confidentiality if document else None)
    doubts = mark.doubts + (secrecy.doubts(mail) if official else ())
    return Understanding(
        kind=kind,
        why=why,
        case_ref=case_ref if kind is Kind.REPLY else None,
        document=document if kind in (Kind.DOCUMENT,) else None,
        applicant=(reading.applicant or applicant(mail)) if kind is Kind.DOSSIER else None,
        quarantine_reasons=tuple(reasons),
        hold_kinds=tuple(kinds),
        defects=mail.defects + tuple(d for a in mail.attachments for d in a.defects),
        authenticated=auth,
        trust_notes=tuple(notes),
        signatures=reading.signatures,
        signature_warning=warning,
        secrecy=level,
        secrecy_where=mark.where or (document.source if document and level else ""),
        secrecy_doubts=doubts if not level else (),
    )


def understand(raw: bytes, cfg: Config, cases: CaseLookup,
               dkim: DkimCheck | None = None) -> tuple[ParsedMail, Understanding]:
    """Parse and understand one raw mail (verifying DKIM as `dkim` or the config says).
    Raises BadMessage when it cannot be parsed at all."""
    reading = read(raw, cfg.limits, dkim or dkim_check(cfg), signatures.document_roots(cfg))
    return reading.mail, judge(reading, cfg, cases)
