"""Digital signatures of PDFs, validated with pyHanko against configured trust roots: the
signed results the clerk sends (office/results.py) and every signed PDF attached to an incoming
document (`check_attachments`, run in the worker pool while a mail is read).

Each signature is judged on its own:
- intact: the signed bytes hash to what was signed, and the signature verifies with the
  signer's key;
- trusted: the signer's certificate chains to one of the trust roots and was valid at the time
  of validation (an expired certificate is not trusted). Revocation is not checked: validation
  runs offline (no OCSP or CRL fetching), so a revoked certificate is only caught by removing
  its root;
- coverage: the whole file, or the signed revision followed only by changes pyHanko's
  modification analysis allows (another signature, form filling, timestamps and DSS updates
  under the document's DocMDP permissions). Anything else — page content changed in a later
  incremental update, bytes outside the signed range — is not covered.
A signature is valid when it is intact, trusted and covers what it must. Whatever pyHanko
raises on a broken signature dictionary becomes an invalid signature with the reason, never an
exception.

pyHanko is imported only when a PDF carries a signature: it is slow to import.
"""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any, TypeVar

from asn1crypto import x509  # type: ignore[import-untyped]

from daemon import trustroots
from daemon.config import Config
from daemon.errors import ConfigError
from daemon.models import Attachment

log = logging.getLogger("vanthu.signatures")

for _noisy in ("pyhanko", "pyhanko_certvalidator"):  # they log tracebacks for every refusal
    logging.getLogger(_noisy).setLevel(logging.CRITICAL)

MAX_SIGNATURES = 10  # signatures validated per PDF; the rest are reported as not checked
MAX_PDFS = 10  # signed PDFs validated per mail
NAME_CHARS = 200  # a signer's or organisation's name as kept

T = TypeVar("T")
COVERED = ("entire_file", "allowed_changes")  # the coverages a valid signature may have


@dataclass(frozen=True)
class Roots:
    """The trust roots as DER bytes (picklable: they travel to the worker processes).
    `key` names the configuration key they came from, for the reason when there are none."""

    ders: tuple[bytes, ...] = ()
    key: str = "[security] document_trust_roots"
    problem: str = ""  # why the configured roots could not be read

    @classmethod
    def read(cls, paths: tuple[str, ...], key: str) -> Roots:
        return cls(trustroots.read(paths), key)

    def certificates(self) -> list[x509.Certificate]:
        return [x509.Certificate.load(der) for der in self.ders]


@dataclass(frozen=True)
class SignatureCheck:
    """What the check of one signature found. `reason` (Vietnamese) and `reason_en` say why it
    is not valid ("hợp lệ"/"valid" when it is). `coverage`: entire_file, allowed_changes (the
    signed revision, then only permitted changes), changed_after (later changes that are not
    permitted), partial (a block of the file only) or unknown (not checked)."""

    valid: bool
    intact: bool
    trusted: bool
    coverage: str
    signer: str | None
    organisation: str | None
    signed_at: datetime | None
    reason: str
    reason_en: str
    subject: str | None = None  # the signer certificate's whole subject, for the records

    def as_json(self) -> dict[str, Any]:
        return {"valid": self.valid, "intact": self.intact, "trusted": self.trusted,
                "coverage": self.coverage, "signer": self.signer,
                "organisation": self.organisation,
                "signed_at": self.signed_at.isoformat() if self.signed_at else None,
                "reason": self.reason}

    @property
    def broken(self) -> bool:
        """Not intact, or not covering what it must: the file was changed or is corrupt."""
        return not self.intact or self.coverage not in COVERED

    def line(self, tz: tzinfo) -> str:
        """One Vietnamese line: "hợp lệ — Nguyễn Văn An, Sở Tài chính tỉnh Tây Ninh, ký lúc
        09:30 26/11/2026", or "KHÔNG HỢP LỆ (nội dung đã bị sửa sau khi ký) — …"."""
        return describe(self.as_json(), tz)


def describe(check: dict[str, Any], tz: tzinfo) -> str:
    """The Vietnamese line of one signature as stored (`SignatureCheck.as_json`)."""
    who = ", ".join(str(x) for x in (check.get("signer"), check.get("organisation")) if x)
    when = ""
    if isinstance(check.get("signed_at"), str):
        try:
            at = datetime.fromisoformat(check["signed_at"]).astimezone(tz)
            when = f"ký lúc {at:%H:%M %d/%m/%Y}"
        except ValueError:
            when = ""
    detail = " — " + ", ".join(x for x in (who or "không rõ người ký", when) if x)
    if check.get("valid") is True:
        return "hợp lệ" + detail
    return f"KHÔNG HỢP LỆ ({check.get('reason') or 'không rõ lý do'})" + detail


def summary(found: Sequence[dict[str, Any]], tz: tzinfo) -> str:
    """The register's "Chữ ký số" cell, the forward's and inspect's line for a mail's signed
    attachments as stored (`AttachmentSignatures.as_json`): "chưa ký số" when none is signed."""
    lines = [f"{item.get('attachment')}: {describe(check, tz)}"
             for item in found for check in item.get("signatures") or ()]
    return "; ".join(lines) if lines else "chưa ký số"


@dataclass(frozen=True)
class AttachmentSignatures:
    """The signatures of one attachment (`sha256` tells two of the same name apart), or of a
    PDF carried inside it: then `attachment` is the file's path ("goi.edxml/van-ban.pdf") and
    `sha256` the carrying attachment's."""

    attachment: str
    sha256: str
    checks: tuple[SignatureCheck, ...]

    def as_json(self) -> dict[str, Any]:
        return {"attachment": self.attachment, "sha256": self.sha256,
                "signatures": [c.as_json() for c in self.checks]}



def _name(subject: dict[str, Any], key: str) -> str | None:
    value = subject.get(key)
    if isinstance(value, list):  # a name with several values of one attribute
        value = ", ".join(str(v) for v in value)
    return str(value)[:NAME_CHARS] if value else None


def _failed(index: int, err: Exception, cert: Any = None) -> SignatureCheck:
    """A signature pyHanko could not even validate (a corrupt dictionary or CMS blob)."""
    what = f"{type(err).__name__}: {str(err)[:200]}"
    subject = _subject(cert)
    return SignatureCheck(
        False, False, False, "unknown", _name(subject, "common_name"),
        _name(subject, "organization_name"), None,
        f"chữ ký số thứ {index} hỏng, không kiểm tra được ({what})",
        f"signature {index} cannot be validated: {what}")


def _subject(cert: Any) -> dict[str, Any]:
    try:
        native = cert.subject.native if cert is not None else {}
        return native if isinstance(native, dict) else {}
    except Exception:  # a certificate whose subject does not parse
        return {}


_COVERAGE_EN = {"partial": "the signature covers only part of the file",
                "changed_after": "the file was changed after signing in a way the signature "
                                 "does not allow (an incremental update changing content)",
                "unknown": "what the signature covers cannot be determined"}
_COVERAGE_VI = {"partial": "chữ ký số chỉ bao phủ một phần tệp",
                "changed_after": "tệp bị sửa đổi sau khi ký (phần thêm vào không được phép)",
                "unknown": "không xác định được phạm vi chữ ký số"}


def _coverage(status: Any) -> str:
    from pyhanko.sign.diff_analysis import ModificationLevel
    from pyhanko.sign.validation.status import SignatureCoverageLevel

    if status.coverage == SignatureCoverageLevel.ENTIRE_FILE:
        return "entire_file"
    if status.coverage == SignatureCoverageLevel.ENTIRE_REVISION:
        level = status.modification_level
        allowed = status.docmdp_ok is True and level is not None \
            and level != ModificationLevel.OTHER
        return "allowed_changes" if allowed else "changed_after"
    return "partial"


def _untrusted_why(status: Any, roots: Roots) -> tuple[str, str]:
    """Why a signer is not trusted (Vietnamese, English)."""
    indication = str(getattr(status.trust_problem_indic, "name", "") or "")
    if roots.problem:
        return (f"không đọc được chứng thư gốc tin cậy ({roots.key})",
                f"the trust roots cannot be read: {roots.problem}")
    if not roots.ders:
        return ("chưa cấu hình chứng thư gốc tin cậy (" + roots.key + ")",
                f"no trust roots configured ({roots.key})")
    if "EXPIRED" in indication or "OUT_OF_BOUNDS" in indication:
        return ("chứng thư số của người ký đã hết hạn hoặc chưa có hiệu lực",
                "the signer's certificate has expired or is not yet valid")
    if "REVOKED" in indication:
        return "chứng thư số của người ký đã bị thu hồi", "the signer's certificate is revoked"
    return ("chứng thư số không thuộc tổ chức chứng thực tin cậy",
            "the signer does not chain to a configured trust root")


def _judged(index: int, status: Any, roots: Roots) -> SignatureCheck:
    cert = status.signing_cert
    subject = _subject(cert)
    intact = bool(status.intact and status.valid)
    trusted = bool(status.trusted)
    coverage = _coverage(status)
    if not intact:
        vi, en = ("nội dung đã bị sửa sau khi ký",
                  "the signed content was changed after signing (digest mismatch)")
    elif not trusted:
        vi, en = _untrusted_why(status, roots)
    elif coverage not in COVERED:
        vi, en = _COVERAGE_VI[coverage], _COVERAGE_EN[coverage]
    elif not status.bottom_line:
        vi, en = "chữ ký số không hợp lệ", "the signature is not valid"
    else:
        vi, en = "hợp lệ", "valid"
    valid = intact and trusted and coverage in COVERED \
        and bool(status.bottom_line)
    timestamp = getattr(status.timestamp_validity, "timestamp", None)
    signed_at = timestamp or status.signer_reported_dt
    if not valid:
        vi, en = f"chữ ký số thứ {index}: {vi}", f"signature {index}: {en}"
    try:
        whole = cert.subject.human_friendly[:NAME_CHARS * 2]
    except Exception:  # an unreadable subject: the parts above still say what they can
        whole = None
    return SignatureCheck(valid, intact, trusted, coverage, _name(subject, "common_name"),
                          _name(subject, "organization_name"),
                          signed_at if isinstance(signed_at, datetime) else None, vi, en,
                          whole)


async def validate(data: bytes, roots: Roots) -> list[SignatureCheck]:
    """Every signature of a PDF (empty: unsigned), at most MAX_SIGNATURES. Raises whatever the
    reader raises on a PDF it cannot read at all; a broken signature is an invalid check."""
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.validation import async_validate_pdf_signature
    from pyhanko_certvalidator import ValidationContext

    signatures = PdfFileReader(io.BytesIO(data), strict=False).embedded_signatures
    certificates = roots.certificates()
    checks: list[SignatureCheck] = []
    for index, signature in enumerate(signatures[:MAX_SIGNATURES], 1):
        try:
            context = ValidationContext(trust_roots=certificates, allow_fetching=False)
            status = await async_validate_pdf_signature(signature, context)
            checks.append(_judged(index, status, roots))
        except Exception as err:  # a corrupted signature blob raises instead of reporting
            try:
                cert = signature.signer_cert
            except Exception:  # the CMS blob itself does not parse
                cert = None
            checks.append(_failed(index, err, cert))
    if len(signatures) > MAX_SIGNATURES:
        checks.append(_unchecked(
            f"còn {len(signatures) - MAX_SIGNATURES} chữ ký số nữa chưa kiểm tra",
            f"{len(signatures) - MAX_SIGNATURES} more signatures not checked"))
    return checks


def _run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run `coroutine` to its end from synchronous code, also from a thread that already runs
    an event loop (then in a helper thread)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with ThreadPoolExecutor(1) as helper:
        return helper.submit(asyncio.run, coroutine).result()


def looks_signed(data: bytes, named_pdf: bool = False) -> bool:
    """Whether `data` is a PDF (by its header, or by its name or type: `named_pdf`, so that a
    damaged header does not pass for "unsigned") that may carry a signature. A signature's
    /ByteRange must stand in the file's own bytes (it excludes its /Contents by offset), so a
    PDF without one is unsigned; this spares importing pyHanko for every unsigned PDF."""
    return (named_pdf or b"%PDF-" in data[:1024]) and b"/ByteRange" in data


def check_pdf(data: bytes, roots: Roots, named_pdf: bool = False) -> tuple[SignatureCheck, ...]:
    """The signatures of one PDF, synchronously; a PDF pyHanko cannot read that still looks
    signed gives one invalid check with the reason. Never raises but MemoryError."""
    if not looks_signed(data, named_pdf):
        return ()
    try:
        checks = tuple(_run(validate(data, roots)))
    except MemoryError:
        raise
    except Exception as err:  # bulkhead: the reader raises anything on hostile bytes
        what = f"{type(err).__name__}: {str(err)[:200]}"
        return (_unchecked(f"tệp PDF có dấu hiệu ký số nhưng không đọc được ({what})",
                            f"a PDF that looks signed cannot be read: {what}"),)
    # A signature's byte range is there but the file's structure no longer leads to it (a
    # damaged trailer or form): broken, not "unsigned".
    return checks or (_unchecked("tệp PDF có dấu hiệu ký số nhưng không tìm thấy chữ ký số "
                                  "trong cấu trúc tệp (tệp đã bị hỏng hoặc bị sửa)",
                                  "a PDF with a signature's /ByteRange whose structure leads "
                                  "to no signature (damaged or altered)"),)


def _unchecked(vi: str, en: str) -> SignatureCheck:
    """A signature (or a file's signatures) that could not be checked: invalid, `vi`/`en`."""
    return SignatureCheck(False, False, False, "unknown", None, None, None, vi, en)


def check_attachments(attachments: Sequence[Attachment],
                      roots: Roots) -> tuple[AttachmentSignatures, ...]:
    """The signatures of a mail's PDF attachments, then of the signed PDFs carried in its
    edXML packages and archives (at most MAX_PDFS signed ones in all); unsigned attachments
    are left out."""
    direct = [(item.name, item.payload, item, item.name.lower().endswith(".pdf")
               or "pdf" in item.content_type) for item in attachments]
    carried = [(path, pdf, item, True) for item in attachments for path, pdf in item.carried]
    found: list[AttachmentSignatures] = []
    for name, data, item, named in (*direct, *carried):
        if len(found) >= MAX_PDFS:
            break
        if checks := check_pdf(data, roots, named):
            found.append(AttachmentSignatures(name, item.sha256, checks))
    return tuple(found)


def document_roots(cfg: Config) -> Roots:
    """What incoming PDFs' signatures are validated against: `[security]
    document_trust_roots` (checked when the configuration loaded; a file gone since is logged
    and then nothing is trusted)."""
    key = "[security] document_trust_roots"
    try:
        return Roots.read(cfg.security.document_trust_roots, key)
    except ConfigError as err:
        log.error("signatures.roots_unreadable", extra={"error": str(err)})
        return Roots(key=key, problem=str(err))


def warning(found: Sequence[AttachmentSignatures], official: bool,
            roots_configured: bool) -> str:
    """Why the signatures of a mail that claims to come from a government body (`official`)
    make it doubtful, in Vietnamese, or "": a signature that is broken (changed after signing,
    covering part of the file, corrupt) or, once trust roots are configured, one that is not
    trusted (an unknown authority, an expired certificate)."""
    if not official:
        return ""
    bad = [(item.attachment, check.reason) for item in found for check in item.checks
           if not check.valid and (check.broken or roots_configured)]
    if not bad:
        return ""
    shown = "; ".join(f"{name}: {why}" for name, why in bad[:3])
    return (f"Chữ ký số không hợp lệ trên văn bản của cơ quan nhà nước ({shown}): chưa coi là "
            "văn bản tin cậy, đề nghị kiểm tra lại với nơi gửi")


def signatures_of(found: Sequence[AttachmentSignatures],
                  attachment: Attachment) -> list[dict[str, Any]]:
    """The checks of one attachment as `inspect --json` shows them (empty: unsigned), each
    naming the file it signs: the attachment, or a PDF carried inside it
    ("goi.edxml/van-ban.pdf")."""
    return [{**check.as_json(), "file": item.attachment} for item in found
            if item.sha256 == attachment.sha256 for check in item.checks]


def is_pdf(attachment: Attachment) -> bool:
    return attachment.payload[:1024].find(b"%PDF-") >= 0


def signature_lines(found: Sequence[AttachmentSignatures], attachments: Sequence[Attachment],
                    tz: tzinfo) -> list[str]:
    """One Vietnamese line per signature of each PDF attachment and of each signed PDF carried
    in one ("goi.edxml/van-ban.pdf: hợp lệ — …"), "chưa ký số" for an unsigned PDF: what the
    clerk reads in `inspect` and the leaders in the forward."""
    lines = []
    for attachment in attachments:
        checks = [(item.attachment, c) for item in found if item.sha256 == attachment.sha256
                  for c in item.checks]
        if checks:
            lines += [f"{name}: {c.line(tz)}" for name, c in checks]
        elif is_pdf(attachment):
            lines.append(f"{attachment.name}: chưa ký số")
    return lines


def digest_note(understanding: Any, tz: tzinfo) -> str:
    """The digest's warning for a registered mail's invalid signatures, from its stored
    understanding; "" when all are valid, none is signed, or the register's note already
    carries the warning (`Understanding.signature_warning`)."""
    if not isinstance(understanding, dict) or understanding.get("signature_warning"):
        return ""
    bad = [{**item, "signatures": [c for c in item.get("signatures") or ()
                                   if isinstance(c, dict) and c.get("valid") is not True]}
           for item in understanding.get("signatures") or () if isinstance(item, dict)]
    bad = [item for item in bad if item["signatures"]]
    return summary(bad, tz) if bad else ""
