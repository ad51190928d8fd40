"""Typed data passed between the stages. Frozen dataclasses; states and kinds are enums."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # (signatures imports this module)
    from daemon.understand.signatures import AttachmentSignatures


class State(enum.StrEnum):
    """Where a stored message is in its journey; each change is committed with its effects."""

    STORED = "stored"
    ROUTED = "routed"  # understood, registered and routed: its outbox rows exist
    DONE = "done"
    QUARANTINED = "quarantined"
    DROPPED = "dropped"  # held, then closed by the clerk without handling (messages.clerk)
    # Old mail (`[intake] start`): stored like any other, never taken by the pipeline; `vanthu
    # backlog import` puts it back to `stored`, quiet (registered without any email).
    ARCHIVED = "archived"


class HoldKind(enum.StrEnum):
    """Why a mail is held for the clerk, as a class: only an AUTH hold (an official domain's
    mail without a trusted authentication result) may be lifted by a sender the clerk trusts."""

    AUTH = "auth"  # a trusted or the agency's own domain, not authenticated
    PHISHING = "phishing"  # the sender or Reply-To imitates the state's domains
    MALWARE = "malware"  # a scam family or a dangerous attachment
    SENDER = "sender"  # the sender's headers are doubtful (two From, a name hiding an address)
    RULE = "rule"  # an agency rule's `quarantine`
    STRANGER = "stranger"  # someone else writing in a case
    UNREADABLE = "unreadable"  # the mail could not be read or handled at all
    OTHER = "other"  # a reason of no known class


class Kind(enum.StrEnum):
    """What a mail is, in the vocabulary of the corpus labels."""

    DOCUMENT = "document"
    DOSSIER = "dossier"
    REPLY = "reply"
    AUTO = "auto"
    BOUNCE = "bounce"
    BULK = "bulk"
    SPAM = "spam"
    OTHER = "other"


class CaseStatus(enum.StrEnum):
    """Where a case (hồ sơ) stands, in the national public-service portal's statuses."""

    RECEIVED = "received"
    # A dossier whose completeness vanthu could not judge: held for the clerk, nothing sent
    # to the applicant yet (`vanthu case accept` or `vanthu case request-supplement`).
    NEEDS_REVIEW = "needs_review"
    NOT_ACCEPTED = "not_accepted"
    IN_PROGRESS = "in_progress"
    SUPPLEMENTS_REQUESTED = "supplements_requested"  # the clock stands still
    FINANCIAL_OBLIGATION = "financial_obligation"
    WITHDRAWN = "withdrawn"
    STOPPED = "stopped"
    DONE = "done"
    RESULT_RETURNED = "result_returned"


class OutboxState(enum.StrEnum):
    # Queued by the pipeline, its bytes being composed outside the recording transaction
    # (daemon/outbound/drafts.py): never sent until they are in and it is pending.
    DRAFT = "draft"
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"


@dataclass(frozen=True)
class MessageKey:
    """Where a message was seen on the IMAP side: unique per mailbox, folder and UIDVALIDITY."""

    mailbox: str
    folder: str
    uidvalidity: int
    uid: int


@dataclass(frozen=True)
class Attachment:
    """One attachment: a sanitised name (metadata only), its bytes' hash and any text in it."""

    name: str
    content_type: str
    size: int
    sha256: str
    payload: bytes = field(repr=False)
    text: str = ""
    defects: tuple[str, ...] = ()
    withheld: str | None = None  # why it must never be forwarded (active content, bad name…)
    # Every piece of text read in it, by where it was found: ("body", …), ("header1.xml", …),
    # ("hoso.zip/to-trinh.pdf", …); the confidentiality scan reads them all.
    pieces: tuple[tuple[str, str], ...] = ()
    # What in it could not be read, and why (a scan without text, an encrypted or unknown
    # archive, a file past a limit): it might carry a mark no one has seen.
    unread: tuple[str, ...] = ()
    # The document header read off its scanned pages by OCR (source "ocr"), if any.
    scanned: Document | None = None
    # What an edXML package (QCVN 102:2016) says of the document it carries (None: no package).
    package: Package | None = None
    # The signed PDFs carried inside it (an edXML package's, an archive's), by their path
    # ("goi.edxml/van-ban.pdf"): their signatures are checked like a direct attachment's.
    carried: tuple[tuple[str, bytes], ...] = field(default=(), repr=False)


@dataclass(frozen=True)
class Address:
    name: str
    email: str


@dataclass(frozen=True)
class ParsedMail:
    """A mail as the rest of vanthu sees it, whatever parser produced it. All text is NFC."""

    message_id: str
    subject: str
    sender: Address
    to: tuple[Address, ...]
    reply_to: tuple[Address, ...]
    date: datetime | None
    headers: dict[str, tuple[str, ...]]  # lower-case name -> every value, in order
    body: str
    attachments: tuple[Attachment, ...]
    content_types: tuple[str, ...]  # every MIME part's type, in order
    defects: tuple[str, ...] = ()
    # What is doubtful about `sender` as the strict parser of the raw From/Sender headers saw
    # it (two From, an address in the display name, a source route…); any holds the mail.
    sender_problems: tuple[str, ...] = ()
    # Message-IDs of the mails carried inside this one (message/rfc822 parts and the
    # text/rfc822-headers of bounces): an answer that quotes vanthu's own mail back.
    carried_ids: tuple[str, ...] = ()
    carried_subjects: tuple[str, ...] = ()  # the subjects of the mails forwarded inside it
    # (visible text, href) of the <a href> links of the HTML body parts, for phishing checks.
    links: tuple[tuple[str, str], ...] = ()

    def header(self, name: str) -> str:
        """The first value of header `name`, or ''."""
        values = self.headers.get(name.lower(), ())
        return values[0] if values else ""


@dataclass(frozen=True)
class Document:
    """The metadata of an official document (Decree 30/2020, Appendix I)."""

    number: str | None = None
    symbol: str | None = None
    type: str | None = None
    issuer: str | None = None
    place: str | None = None
    date: date | None = None
    summary: str | None = None
    urgency: str | None = None
    confidentiality: str | None = None
    source: str = "body"  # "body", or the attachment name the header was read from
    # Fields filled from another source than `source` (body vs attachment), field -> source.
    filled_from: tuple[tuple[str, str], ...] = ()
    # Read by OCR (source "ocr"): the file scanned, each field's confidence (0..1, from
    # Tesseract's word confidences) and the fields read too unsurely: the clerk checks them.
    file: str | None = None
    confidence: tuple[tuple[str, float], ...] = ()
    unsure: tuple[str, ...] = ()

    FIELDS = ("number", "symbol", "type", "issuer", "place", "date", "summary", "urgency",
              "confidentiality")

    def sources(self) -> dict[str, str]:
        """Where each known field was read: the attachment's name or "body"."""
        other = dict(self.filled_from)
        return {name: other.get(name, self.source) for name in self.FIELDS
                if getattr(self, name) is not None}

    def as_json(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "symbol": self.symbol,
            "type": self.type,
            "issuer": self.issuer,
            "place": self.place,
            "date": self.date.isoformat() if self.date else None,
            "summary": self.summary,
            "urgency": self.urgency,
            "confidentiality": self.confidentiality,
            "source": self.source,
            "sources": self.sources(),
            "file": self.file,
            "confidence": {name: score for name, score in self.confidence
                           if self.sources().get(name) == "ocr"},
            "unsure": list(self.checks()),
        }

    def checks(self) -> tuple[str, ...]:
        """The fields read by OCR too unsurely, that the clerk should check."""
        sources = self.sources()
        return tuple(name for name in self.unsure if sources.get(name) == "ocr")


@dataclass(frozen=True)
class Package:
    """What an edXML package states in its header: the document (source "edxml"; None when
    the package has no MessageHeader), the codes of the exchange and the files it carries."""

    document: Document | None
    sender_id: str | None = None  # From/OrganId, the sending body's code on the exchange
    recipients: tuple[tuple[str, str], ...] = ()  # (OrganId, OrganName) of each To
    document_id: str | None = None
    type_code: str | None = None  # DocumentType/Type, as written
    priority: str | None = None  # OtherInfo/Priority, as written
    steering_type: str | None = None
    files: tuple[str, ...] = ()  # the names of the embedded files
    problems: tuple[str, ...] = ()  # what in it could not be read, in Vietnamese

    def as_json(self) -> dict[str, Any]:
        return {
            "document": self.document.as_json() if self.document else None,
            "sender_id": self.sender_id,
            "recipients": [{"id": i, "name": n} for i, n in self.recipients],
            "document_id": self.document_id, "type_code": self.type_code,
            "priority": self.priority, "steering_type": self.steering_type,
            "files": list(self.files), "problems": list(self.problems),
        }


@dataclass(frozen=True)
class Applicant:
    name: str | None
    email: str | None
    phone: str | None

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "email": self.email, "phone": self.phone}


@dataclass(frozen=True)
class Understanding:
    """What a mail is: the result of the pure `understand` stage."""

    kind: Kind
    why: str
    case_ref: str | None
    document: Document | None
    applicant: Applicant | None
    quarantine_reasons: tuple[str, ...] = ()
    # The HoldKind of each of quarantine_reasons, in the same order.
    hold_kinds: tuple[str, ...] = ()
    defects: tuple[str, ...] = ()
    # Did the From address's domain pass DMARC or aligned DKIM, per our own server's
    # Authentication-Results (or our own DKIM check)? None: nothing trusted could tell.
    authenticated: bool | None = None
    # Doubts about the sender shown to people on the forward and in the digest (e.g. the
    # issuer printed in the document does not match the sender's domain), in Vietnamese.
    trust_notes: tuple[str, ...] = ()
    # The digital signatures of its signed PDF attachments, and why they make a document that
    # claims to come from a government body doubtful ("" when they do not): shown with the
    # trust notes, and its register entry is not counted as official.
    signatures: tuple[AttachmentSignatures, ...] = ()
    signature_warning: str = ""
    # A confidentiality mark found anywhere in the mail (the subject, the body, any piece of
    # any attachment) and where, in Vietnamese; and why a mail without a mark may still be
    # confidential (a scan no one could read on an official mail): it is then announced
    # without content, like a marked one, and the clerk decides.
    secrecy: str | None = None
    secrecy_where: str = ""
    secrecy_doubts: tuple[str, ...] = ()

    @property
    def quarantine(self) -> bool:
        return bool(self.quarantine_reasons)

    @property
    def confidential(self) -> bool:
        """Marked Mật, Tối mật or Tuyệt mật, wherever the mark was."""
        return bool(self.secrecy or (self.document and self.document.confidentiality))

    @property
    def withhold_content(self) -> bool:
        """Its content must never travel by email: marked, or possibly confidential."""
        return self.confidential or bool(self.secrecy_doubts)

    @property
    def holds(self) -> tuple[tuple[HoldKind, str], ...]:
        """Each reason to hold the mail with its class (OTHER where none was given)."""
        kinds = (*self.hold_kinds, *[HoldKind.OTHER] * len(self.quarantine_reasons))
        return tuple((HoldKind(k), r) for k, r in zip(kinds, self.quarantine_reasons,
                                                      strict=False))

    @property
    def urgent(self) -> bool:
        return bool(self.document and self.document.urgency)

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "why": self.why,
            "case_ref": self.case_ref,
            "document": self.document.as_json() if self.document else None,
            "applicant": self.applicant.as_json() if self.applicant else None,
            "safety": {"quarantine": self.quarantine, "reasons": list(self.quarantine_reasons),
                       "kinds": list(self.hold_kinds)},
            "authenticated": self.authenticated,
            "trust_notes": list(self.trust_notes),
            "signatures": [s.as_json() for s in self.signatures],
            "signature_warning": self.signature_warning,
            "secrecy": {"level": self.secrecy, "where": self.secrecy_where,
                        "doubts": list(self.secrecy_doubts)},
            "defects": list(self.defects),
        }


@dataclass(frozen=True)
class RuleTrace:
    """Whether one rule matched, and why: kept so every decision can be explained later."""

    id: str
    matched: bool
    why: str


@dataclass(frozen=True)
class Action:
    """One thing routing decided to do. `to` holds resolved addresses, stand-ins applied."""

    action: str  # forward | acknowledge | notify
    to: tuple[str, ...]
    note: str = ""  # e.g. who a stand-in replaces

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"action": self.action, "to": list(self.to)}
        if self.note:
            out["note"] = self.note
        return out


@dataclass(frozen=True)
class Assignment:
    """The lead department (chủ trì), cooperating ones (phối hợp) and the deadline."""

    lead: str
    cooperate: tuple[str, ...]
    deadline: date | None

    def as_json(self) -> dict[str, Any]:
        return {"action": "assign", "lead": self.lead, "cooperate": list(self.cooperate),
                "deadline": self.deadline.isoformat() if self.deadline else None}


@dataclass(frozen=True)
class Tagging:
    tags: tuple[str, ...]

    def as_json(self) -> dict[str, Any]:
        return {"action": "tag", "tags": list(self.tags)}


@dataclass(frozen=True)
class Move:
    """Move the mail to another IMAP folder once it is routed."""

    folder: str

    def as_json(self) -> dict[str, Any]:
        return {"action": "move", "folder": self.folder}


@dataclass(frozen=True)
class Hold:
    """Quarantine the mail for a human, with the rule's reason."""

    reason: str

    def as_json(self) -> dict[str, Any]:
        return {"action": "quarantine", "reason": self.reason}


Effect = Assignment | Tagging | Move | Hold


@dataclass(frozen=True)
class Decision:
    """The output of routing: every rule's trace, the emails to send and the other effects."""

    rules: tuple[RuleTrace, ...]
    actions: tuple[Action, ...]
    effects: tuple[Effect, ...] = ()
    procedure: str | None = None  # a dossier's procedure, from the catalogue

    def as_json(self) -> list[dict[str, Any]]:
        return [a.as_json() for a in self.actions] + [e.as_json() for e in self.effects]
