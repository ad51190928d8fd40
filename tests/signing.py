"""A test certification authority, certificates it issues and PDFs signed with them: made by
the tests, never real keys. Keys are EC P-256 (fast to make); names may carry Vietnamese
diacritics (UTF8String)."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import io
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from asn1crypto import keys as asn1_keys  # type: ignore[import-untyped]
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from fpdf import FPDF
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.sign import signers
from pyhanko_certvalidator.registry import SimpleCertificateStore

from tests.desk import DOCUMENT
from tests.generated.make import FONT


def _name(common: str, organisation: str | None = None) -> x509.Name:
    parts = [x509.NameAttribute(NameOID.COUNTRY_NAME, "VN")]
    if organisation:
        parts.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation))
    parts.append(x509.NameAttribute(NameOID.COMMON_NAME, common))
    return x509.Name(parts)


@dataclass(frozen=True)
class Signer:
    """A signer's key and certificate, and the authority's certificate that issued it."""

    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate
    issuer: x509.Certificate

    def pyhanko(self) -> signers.SimpleSigner:
        der = self.key.private_bytes(serialization.Encoding.DER,
                                     serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption())
        cert = asn1_x509.Certificate.load(self.cert.public_bytes(serialization.Encoding.DER))
        ca = asn1_x509.Certificate.load(self.issuer.public_bytes(serialization.Encoding.DER))
        return signers.SimpleSigner(cert, asn1_keys.PrivateKeyInfo.load(der),
                                    SimpleCertificateStore.from_certs([ca]))  # type: ignore[no-untyped-call]


@dataclass(frozen=True)
class Authority:
    """A root certification authority of the tests."""

    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)

    def write(self, folder: Path, name: str = "root.pem") -> Path:
        path = folder / name
        path.write_bytes(self.pem())
        return path

    def issue(self, common: str, organisation: str | None = None, *,
              not_before: datetime | None = None, not_after: datetime | None = None) -> Signer:
        """A signing certificate (non-repudiation) for `common` of `organisation`."""
        now = datetime.now(UTC)
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (x509.CertificateBuilder()
                .subject_name(_name(common, organisation)).issuer_name(self.cert.subject)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(not_before or now - timedelta(days=30))
                .not_valid_after(not_after or now + timedelta(days=365))
                .add_extension(x509.KeyUsage(True, True, False, False, False, False, False,
                                             False, False), critical=True)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None),
                               critical=True)
                .sign(self.key, hashes.SHA256()))
        return Signer(key, cert, self.cert)


def authority(common: str = "CA thử nghiệm của vanthu") -> Authority:
    """A new root CA (self-signed, valid from a year ago for ten years)."""
    now = datetime.now(UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name(common, "Phòng thử nghiệm")
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=365))
            .not_valid_after(now + timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False,
                                         False), critical=True)
            .sign(key, hashes.SHA256()))
    return Authority(key, cert)


@functools.cache
def document_pdf(text: str = DOCUMENT) -> bytes:
    """A one-page PDF with `text` as its text layer (DejaVu, so Vietnamese reads back)."""
    doc = FPDF(format="A4")
    doc.add_font("DejaVu", "", str(FONT))
    doc.set_font("DejaVu", size=12)
    doc.add_page()
    for line in text.splitlines():
        doc.multi_cell(0, 7, line or " ", new_x="LMARGIN", new_y="NEXT")
    return bytes(doc.output())


def sign(pdf: bytes, signer: Signer, field: str = "Signature1") -> bytes:
    """`pdf` signed by `signer` in a new signature field (an incremental update)."""
    out = signers.sign_pdf(IncrementalPdfFileWriter(io.BytesIO(pdf), strict=False),
                           signers.PdfSignatureMetadata(field_name=field),
                           signer=signer.pyhanko())
    return bytes(out.getvalue())


def with_page_changed(pdf: bytes) -> bytes:
    """An incremental update after the signatures that draws new content on page one (what
    a forger adds to a signed document)."""
    writer = IncrementalPdfFileWriter(io.BytesIO(pdf), strict=False)
    stream = generic.StreamObject(stream_data=b"BT /F1 24 Tf 100 700 Td (SO TIEN: 9.999.999) Tj ET")
    writer.add_stream_to_page(0, writer.add_object(stream))  # type: ignore[no-untyped-call]
    out = io.BytesIO()
    writer.write(out)  # type: ignore[no-untyped-call]
    return out.getvalue()


def tampered(pdf: bytes) -> bytes:
    """One byte changed inside what the first signature covers (its page content)."""
    at = pdf.index(b"stream", pdf.index(b"/Contents")) + 20
    return pdf[:at] + bytes([pdf[at] ^ 0x01]) + pdf[at + 1:]


_BYTE_RANGE = re.compile(rb"/ByteRange\s*\[\s*(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s*\]")


def partly_signed(pdf: bytes, signer: Signer) -> bytes:
    """`pdf` signed by `signer` with a /ByteRange that leaves out more than the signature
    itself: everything from page one's content stream to the signature is uncovered (a
    forger could rewrite it). The signature over the bytes that remain is genuine."""
    good = sign(pdf, signer)
    found = _BYTE_RANGE.search(good)
    assert found is not None
    start, length, after, rest = (int(x) for x in found.groups())
    hole = good.index(b"stream", good.index(b"/Contents")) + 7  # inside page one's content
    assert hole < start + length
    ranges = f"/ByteRange [0 {hole} {after} {rest}]".encode()
    ranged = good[:found.start()] + ranges.ljust(found.end() - found.start()) + good[found.end():]
    covered = ranged[:hole] + ranged[after:after + rest]
    cms: Any = asyncio.run(signer.pyhanko().async_sign(hashlib.sha256(covered).digest(), "sha256"))
    blob: bytes = cms.dump().hex().encode()
    contents = ranged.index(b"<", start + length)  # the hex string of /Contents
    room = after - contents - 2
    assert len(blob) <= room
    return ranged[:contents + 1] + blob.ljust(room, b"0") + ranged[after - 1:]
