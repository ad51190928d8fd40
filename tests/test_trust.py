"""How far a sender is proven: our own Authentication-Results read as structures, our own
DKIM check with real signatures, and the issuer printed on a document against its sender."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import Engine, select

from daemon import config
from daemon.db import messages, outbox
from daemon.intake.store import Fetched, MailStore, checkpoint, store_batch
from daemon.models import Kind, State
from daemon.pipeline import process_pending
from daemon.routing import rules as rules_module
from daemon.understand import NoCases, understand
from daemon.understand.trust import (
    MAX_HEADER,
    DkimCheck,
    Verdict,
    aligned,
    authserv_id_of,
    check_dkim,
    combine,
    from_dkim,
    from_headers,
    is_state_body,
    issuer_note,
)
from tests.conftest import AUTHSERV_ID, CORPUS, RULES

GOV = "tayninh.gov.vn"
TRUSTED = ("gov.vn",)
DOCUMENT = ("ỦY BAN NHÂN DÂN\nTỈNH TÂY NINH\nSố: 1000/UBND-KT\nTây Ninh, ngày 09 tháng 11 năm "
            "2026\nV/v triển khai kế hoạch xây dựng\nKính gửi: Sở Xây dựng.\nNội dung.\n")


def _cfg(**security: Any) -> config.Config:
    return config.parse({"security": {"authserv_id": AUTHSERV_ID, **security},
                         "agency": {"addresses": ["vanthu.sxd@tayninh.gov.vn"]}},
                        file="test", text="", base=Path("."))


def _ours(results: str) -> str:
    return f"{AUTHSERV_ID}; {results}"


def _verdict(*values: str, domain: str = GOV, count: int = 1) -> Any:
    return from_headers(list(values), domain, AUTHSERV_ID, count)


# --- Authentication-Results ---------------------------------------------------------------

def test_dmarc_pass_for_the_from_domain_authenticates() -> None:
    """dmarc=pass with header.from equal to the From domain (any case) is proof."""
    assert _verdict(_ours("dmarc=pass header.from=TayNinh.gov.vn")).authenticated is True


def test_pass_only_in_the_envelope_sender_counts_for_nothing() -> None:
    """`smtp.mailfrom=dmarc=pass@evil` is a property value the attacker chose."""
    found = _verdict(_ours("spf=pass smtp.mailfrom=dmarc=pass@evil.example"))

    assert found.authenticated is None


def test_pass_in_a_comment_counts_for_nothing() -> None:
    """`(dmarc=pass header.from=tayninh.gov.vn)` is a comment, not a result."""
    found = _verdict(_ours("spf=none (dmarc=pass header.from=tayninh.gov.vn) "
                           "smtp.mailfrom=evil.example"))

    assert found.authenticated is None


def test_pass_in_a_property_value_counts_for_nothing() -> None:
    """A quoted envelope sender holding `;dmarc=pass header.from=…` stays one value."""
    found = _verdict(_ours('spf=pass smtp.mailfrom="x;dmarc=pass header.from=tayninh.gov.vn"'
                           "@evil.example; dkim=none header.b=dmarc=pass"))

    assert found.authenticated is None


def test_our_id_below_the_real_header_is_ignored() -> None:
    """A forged header with our authserv-id below the topmost of ours is never read."""
    real = _ours("dmarc=fail header.from=tayninh.gov.vn")
    forged = _ours("dmarc=pass header.from=tayninh.gov.vn")

    assert _verdict(real, forged).authenticated is False
    assert _verdict(_ours("none"), forged).authenticated is None


def test_more_of_our_headers_count_only_when_configured() -> None:
    """With authres_headers = 2 the second of ours counts too; a third never does."""
    first, second = _ours("spf=pass smtp.mailfrom=tayninh.gov.vn"), _ours(
        "dmarc=pass header.from=tayninh.gov.vn")

    assert _verdict(first, second).authenticated is None
    assert _verdict(first, second, count=2).authenticated is True
    assert _verdict(first, first, second, count=2).authenticated is None


def test_another_authserv_id_is_ignored() -> None:
    """A header from any other server, even one on the way, says nothing to us."""
    found = _verdict("mx.evil.example; dmarc=pass header.from=tayninh.gov.vn")

    assert found.authenticated is None
    assert "không có Authentication-Results của" in found.why


def test_an_id_that_only_starts_like_ours_is_not_ours() -> None:
    """`mx1.tayninh.gov.vn.evil.example` is another server."""
    found = _verdict(f"{AUTHSERV_ID}.evil.example; dmarc=pass header.from=tayninh.gov.vn")

    assert found.authenticated is None


def test_a_pass_for_another_domain_does_not_count() -> None:
    """dmarc=pass for gmail.com says nothing about a tayninh.gov.vn From."""
    assert _verdict(_ours("dmarc=pass header.from=gmail.com")).authenticated is None


def test_dkim_pass_for_free_mail_does_not_prove_a_gov_from() -> None:
    """dkim=pass with header.d=gmail.com is not aligned with a gov.vn From."""
    found = _verdict(_ours("dkim=pass header.d=gmail.com header.i=@gmail.com"))

    assert found.authenticated is None


def test_dkim_pass_by_a_parent_domain_is_aligned() -> None:
    """dkim=pass by tayninh.gov.vn proves snv.tayninh.gov.vn (relaxed alignment)."""
    found = _verdict(_ours("dkim=pass header.d=tayninh.gov.vn"), domain="snv.tayninh.gov.vn")

    assert found.authenticated is True


def test_a_one_label_parent_never_aligns() -> None:
    """`vn` signs for nobody; a child never signs for its parent."""
    assert not aligned("vn", "tayninh.gov.vn")
    assert not aligned("snv.tayninh.gov.vn", "tayninh.gov.vn")
    assert aligned("@Tayninh.gov.vn", "tayninh.gov.vn")


def test_dkim_identity_may_prove_the_domain() -> None:
    """dkim=pass with only header.i=@tayninh.gov.vn counts."""
    assert _verdict(_ours("dkim=pass header.i=@tayninh.gov.vn")).authenticated is True


def test_dmarc_pass_without_header_from_does_not_count() -> None:
    """A dmarc=pass that does not say for which From proves nothing."""
    assert _verdict(_ours("dmarc=pass")).authenticated is None


def test_dmarc_fail_wins_over_any_pass() -> None:
    """An explicit dmarc=fail for the domain is False even beside an aligned dkim=pass."""
    found = _verdict(_ours("dkim=pass header.d=tayninh.gov.vn; "
                           "dmarc=fail header.from=tayninh.gov.vn"))

    assert found.authenticated is False


def test_aligned_dkim_fail_without_pass_is_false() -> None:
    """A broken signature of the From domain, with nothing aligned passing, is False."""
    found = _verdict(_ours("dkim=fail header.d=tayninh.gov.vn; dkim=pass header.d=evil.example"))

    assert found.authenticated is False


def test_a_huge_header_is_not_parsed() -> None:
    """A 300 KB Authentication-Results of ours is refused unparsed, with the reason."""
    huge = _ours("dkim=pass " + "(" * 300_000 + " header.d=tayninh.gov.vn")

    found = _verdict(huge)

    assert found.authenticated is None
    assert f"dài quá {MAX_HEADER}" in found.why


def test_a_garbled_header_gives_no_verdict() -> None:
    """An unparseable header of ours gives no verdict and says why; none below replaces it."""
    found = _verdict(_ours("=;=;("), _ours("dmarc=pass header.from=tayninh.gov.vn"))

    assert found.authenticated is None
    assert "sai cú pháp" in found.why


def test_deeply_nested_comments_give_no_verdict() -> None:
    """Comments nested past the parser's recursion limit are a reason, not a crash."""
    assert _verdict(_ours("dkim=pass " + "(" * 3000)).authenticated is None


def test_without_authserv_id_nothing_is_trusted() -> None:
    """Without a configured authserv-id no header is believed, not even the topmost."""
    found = from_headers([_ours("dmarc=pass header.from=tayninh.gov.vn")], GOV, "")

    assert found.authenticated is None


def test_authserv_id_is_read_after_comments() -> None:
    """The authserv-id may follow comments and is compared in lower case."""
    assert authserv_id_of("(x (y)) MX1.TayNinh.gov.vn 1; none") == AUTHSERV_ID


# --- our own DKIM check, with real signatures ---------------------------------------------

@dataclass(frozen=True)
class Signer:
    """A test signing key and the DNS that publishes it, nowhere but here."""

    pem: bytes
    txt: bytes

    def dns(self, name: bytes, timeout: float = 5.0) -> bytes | None:
        return self.txt if name.endswith(b"._domainkey.tayninh.gov.vn.") or name.endswith(
            b"._domainkey.gmail.com.") else None

    def sign(self, raw: bytes, domain: bytes = b"tayninh.gov.vn", length: bool = False) -> bytes:
        header = dkim.sign(raw, b"mail", domain, self.pem, length=length,
                           include_headers=[b"from", b"to", b"subject"])
        return bytes(header) + raw


@pytest.fixture(scope="module")
def signer() -> Signer:
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    pem = key.private_bytes(serialization.Encoding.PEM,
                            serialization.PrivateFormat.TraditionalOpenSSL,
                            serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.DER,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    return Signer(pem, b"v=DKIM1; k=rsa; p=" + base64.b64encode(public))


def _letter(sender: str = "UBND <ubnd@tayninh.gov.vn>", body: str = DOCUMENT) -> bytes:
    return (f"From: {sender}\r\nTo: vanthu.sxd@tayninh.gov.vn\r\nSubject: Cong van 1000\r\n"
            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
            "Content-Transfer-Encoding: 8bit\r\n\r\n" + body.replace("\n", "\r\n")).encode()


def test_a_good_signature_authenticates(signer: Signer) -> None:
    """A signature by the From domain, verified with its published key, is proof."""
    results = check_dkim(signer.sign(_letter()), DkimCheck(dnsfunc=signer.dns))

    assert from_dkim(results, GOV).authenticated is True


def test_a_tampered_body_fails(signer: Signer) -> None:
    """A body changed after signing makes the aligned signature fail."""
    signed = signer.sign(_letter()).replace(b"1000/UBND-KT", b"1001/UBND-KT")

    results = check_dkim(signed, DkimCheck(dnsfunc=signer.dns))

    assert from_dkim(results, GOV).authenticated is False


def test_an_unaligned_signature_proves_nothing(signer: Signer) -> None:
    """A valid signature by gmail.com on a tayninh.gov.vn From proves nothing about it."""
    results = check_dkim(signer.sign(_letter(), domain=b"gmail.com"),
                         DkimCheck(dnsfunc=signer.dns))

    assert results[0].passed
    assert from_dkim(results, GOV).authenticated is None


def test_a_partial_body_signature_does_not_count(signer: Signer) -> None:
    """With l= anything appended after the signed part would pass: it is not proof."""
    signed = signer.sign(_letter(), length=True) + b"Chuyen tien vao tai khoan 123.\r\n"

    results = check_dkim(signed, DkimCheck(dnsfunc=signer.dns))

    assert from_dkim(results, GOV).authenticated is not True


def test_a_dns_failure_is_no_verdict(signer: Signer) -> None:
    """A key lookup that times out is neither pass nor fail."""
    def unreachable(name: bytes, timeout: float = 5.0) -> bytes | None:
        raise dkim.DnsTimeoutError("no answer")

    results = check_dkim(signer.sign(_letter()), DkimCheck(dnsfunc=unreachable))

    assert results[0].temporary
    assert from_dkim(results, GOV).authenticated is None


def test_own_dkim_check_feeds_understanding(signer: Signer) -> None:
    """With verify_dkim on, a signed gov.vn document without any Authentication-Results is
    authenticated and registered, not held."""
    raw = signer.sign(_letter())

    _, und = understand(raw, _cfg(verify_dkim=True), NoCases(), DkimCheck(dnsfunc=signer.dns))

    assert und.authenticated is True
    assert und.kind is Kind.DOCUMENT and not und.quarantine


def test_without_own_check_the_same_mail_is_held(signer: Signer) -> None:
    """Without our own check and without Authentication-Results, a gov.vn document is held."""
    _, und = understand(signer.sign(_letter()), _cfg(), NoCases())

    assert und.authenticated is None and und.quarantine


def test_a_proof_wins_over_silence_and_failure() -> None:
    """Combining verdicts: any proof wins, then any failure, else nothing."""
    yes, no, none = Verdict(True, "a"), Verdict(False, "b"), Verdict(None, "c")

    assert combine(none, no, yes).authenticated is True
    assert combine(none, no).authenticated is False
    assert combine(none, none).authenticated is None


# --- the issuer against the sender ----------------------------------------------------------

@pytest.mark.parametrize("issuer", [
    "Ủy ban nhân dân tỉnh Tây Ninh", "UBND XÃ TÂN HƯNG", "Uỷ ban nhân dân phường Hoà Thành",
    "Sở Tài chính", "Bộ Xây dựng", "Công an tỉnh Tây Ninh", "Thường trực Hội đồng nhân dân tỉnh",
    "Tòa án nhân dân huyện", "Viện kiểm sát nhân dân tỉnh", "Cục Thuế", "Chi cục Thuế",
    "Tổng cục Thống kê", "Thanh tra tỉnh", "Kho bạc Nhà nước", "Bảo hiểm xã hội tỉnh",
    "Tỉnh ủy Tây Ninh", "Đảng ủy xã", "Ban Quản lý dự án", "Văn phòng UBND tỉnh",
])
def test_state_bodies_are_recognised(issuer: str) -> None:
    """Names of state bodies are recognised on folded text, whatever case or tone placement."""
    assert is_state_body(issuer)


@pytest.mark.parametrize("issuer", ["Công ty TNHH Tư vấn Ánh Dương", "Nguyễn Văn An",
                                    "Bản tin Luật Xây dựng"])
def test_other_issuers_are_not_state_bodies(issuer: str) -> None:
    """Companies and people are not state bodies."""
    assert not is_state_body(issuer)


def test_a_state_issuer_on_free_mail_gets_a_note() -> None:
    """«Sở Tài chính» from gmail.com: the note names the issuer and the domain."""
    note = issuer_note("Sở Tài chính", "stc.vp@gmail.com", True, TRUSTED)

    assert note == ("Văn bản ghi cơ quan ban hành «Sở Tài chính» nhưng gửi từ địa chỉ ngoài "
                    "tên miền cơ quan nhà nước (gmail.com)")


def test_a_state_issuer_from_an_unauthenticated_gov_address_gets_a_note() -> None:
    """A gov.vn sender that is not authenticated is named in the note."""
    note = issuer_note("Sở Tài chính", "vanthu@stc.tayninh.gov.vn", None, TRUSTED)

    assert note is not None and "không được xác thực" in note


def test_an_authenticated_gov_sender_gets_no_note() -> None:
    """A state body from its own authenticated gov.vn domain needs no note."""
    assert issuer_note("Sở Tài chính", "vanthu@stc.tayninh.gov.vn", True, TRUSTED) is None
    assert issuer_note("Công ty ABC", "abc@gmail.com", None, TRUSTED) is None


@pytest.mark.parametrize("name", ["010.eml", "014.eml", "018.eml", "028.eml"])
def test_communes_on_free_mail_are_registered_with_a_note(name: str) -> None:
    """Real agencies on gmail/yahoo stay documents, not held, with a note on the domain."""
    _, und = understand((CORPUS / name).read_bytes(), _cfg(), NoCases())

    assert und.kind is Kind.DOCUMENT and not und.quarantine
    assert und.authenticated is True
    assert len(und.trust_notes) == 1 and "ngoài tên miền cơ quan nhà nước" in und.trust_notes[0]


def test_a_genuine_gov_document_has_no_note() -> None:
    """003 comes from its authenticated gov.vn domain: no note, not held."""
    _, und = understand((CORPUS / "003.eml").read_bytes(), _cfg(), NoCases())

    assert und.authenticated is True and und.trust_notes == () and not und.quarantine


def test_the_spoofed_document_is_held_and_noted() -> None:
    """015 fails DMARC for tayninh.gov.vn: held, False, and its gmail Reply-To is noted."""
    _, und = understand((CORPUS / "015.eml").read_bytes(), _cfg(), NoCases())

    assert und.quarantine and und.authenticated is False
    assert any("Reply-To" in note and "gmail.com" in note for note in und.trust_notes)


# --- judge: who is held ---------------------------------------------------------------------

def _mail(sender: str, results: str | None, body: str = DOCUMENT) -> bytes:
    head = f"Authentication-Results: {_ours(results)}\r\n" if results else ""
    return head.encode() + _letter(sender, body)


def test_an_unauthenticated_gov_document_is_held() -> None:
    """A gov.vn document whose domain is not proven is held, with the verdict's reason."""
    _, und = understand(_mail("ubnd@tayninh.gov.vn", "spf=pass smtp.mailfrom=tayninh.gov.vn"),
                        _cfg(), NoCases())

    assert und.quarantine and "chưa coi là thư chính thức" in und.quarantine_reasons[0]


def test_forged_own_address_is_held() -> None:
    """Mail claiming the agency's own address without proof is held, never routed."""
    _, und = understand(_mail("vanthu.sxd@tayninh.gov.vn", None, "Xin chao."), _cfg(),
                        NoCases())

    assert und.kind is Kind.OTHER and und.quarantine


def test_authenticated_own_address_is_not_held() -> None:
    """Our own authenticated mail is only 'other', never held."""
    raw = _mail("vanthu.sxd@tayninh.gov.vn", "dmarc=pass header.from=tayninh.gov.vn",
                "Xin chao.")

    _, und = understand(raw, _cfg(), NoCases())

    assert und.kind is Kind.OTHER and not und.quarantine


def test_forged_identity_goes_nowhere_in_the_pipeline(tmp_path: Path, database: Engine) -> None:
    """Through the real pipeline a document whose From hides a gov.vn address in its encoded
    name is quarantined with the reason, and no email at all is queued for it."""
    cfg = config.parse({"storage": {"data_dir": str(tmp_path)},
                        "security": {"authserv_id": AUTHSERV_ID}},
                       file="t", text="", base=tmp_path)
    engine = database  # the file cfg.storage.url names: data_dir/vanthu.db
    store = MailStore(cfg.storage.data_dir)
    checkpoint(engine, "m", "INBOX", 1)
    name = base64.b64encode(b"ubnd@tayninh.gov.vn").decode()
    raw = _mail(f"=?utf-8?b?{name}?= <evil@gmail.com>",
                "dkim=pass header.d=gmail.com; dmarc=pass header.from=gmail.com")
    store_batch(engine, store, mailbox="m", folder="INBOX", uidvalidity=1,
                batch=[Fetched(1, raw)])

    process_pending(engine, cfg, store, rules_module.load(RULES))

    with engine.connect() as conn:
        row = conn.execute(select(messages)).one()
        emails = conn.execute(select(outbox)).all()
    assert row.state == State.QUARANTINED
    assert "ubnd@tayninh.gov.vn" in row.last_error
    assert emails == []
