"""Digital signatures of incoming documents (issue 15 item 2): every signed PDF attached to a
mail is validated with pyHanko against `[security] document_trust_roots`, and what was found
reaches the register, its export, `inspect`, the forward and the digest. The certificates are
made by the tests (tests/signing.py), never real keys."""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daemon import config
from daemon.cli import main
from daemon.errors import ConfigError
from daemon.intake.workers import ReadPool, read_guarded
from daemon.models import Kind
from daemon.office import digest, export
from daemon.office.register import Trust
from daemon.routing import rules as rules_module
from daemon.understand import NoCases, Reading, judge
from daemon.understand.signatures import Roots, SignatureCheck, check_pdf, digest_note
from tests import signing
from tests.conftest import AUTHSERV_ID, ROOT, RULES
from tests.desk import DOCUMENT, Desk
from tests.test_inspect import AGENCY_CONFIG

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
CA = signing.authority()
STRANGER = signing.authority("CA không được tin cậy")
ROOTS = Roots((CA.der(),))
SIGNER = CA.issue("Nguyễn Thị Hồng Nhung", "Sở Tài chính tỉnh Tây Ninh")
BASE = signing.document_pdf()
VALID = signing.sign(BASE, SIGNER)


def _expired() -> signing.Signer:
    now = datetime.now(UTC)
    return CA.issue("Lê Văn Hết Hạn", "Ủy ban nhân dân huyện Châu Thành",
                    not_before=now - timedelta(days=400), not_after=now - timedelta(days=1))


def _corrupt_contents(pdf: bytes) -> bytes:
    """The signature's CMS blob overwritten with zeros: the dictionary no longer parses."""
    at = pdf.index(b"/Contents <") + len(b"/Contents <")
    return pdf[:at] + b"00" * 64 + pdf[at + 128:]


# name -> (PDF, valid, intact, trusted, coverage of the first signature, its signer, count)
CASES = {
    "valid": (VALID, True, True, True, "entire_file", "Nguyễn Thị Hồng Nhung", 1),
    "untrusted CA": (signing.sign(BASE, STRANGER.issue("Trần Giả Danh", "Sở Tài chính")),
                     False, True, False, "entire_file", "Trần Giả Danh", 1),
    "tampered bytes": (signing.tampered(VALID), False, False, False, "entire_file",
                       "Nguyễn Thị Hồng Nhung", 1),
    "page changed later": (signing.with_page_changed(VALID), False, True, True,
                           "changed_after", "Nguyễn Thị Hồng Nhung", 1),
    "covers part": (signing.partly_signed(BASE, SIGNER), False, True, True, "partial",
                    "Nguyễn Thị Hồng Nhung", 1),
    "two signatures": (signing.sign(VALID, CA.issue("Phạm Đức Ánh", "UBND tỉnh Tây Ninh"),
                                    field="Signature2"),
                       True, True, True, "allowed_changes", "Nguyễn Thị Hồng Nhung", 2),
    "expired signer": (signing.sign(BASE, _expired()), False, True, False, "entire_file",
                       "Lê Văn Hết Hạn", 1),
    "corrupt dictionary": (_corrupt_contents(VALID), False, False, False, "unknown", None, 1),
}


@pytest.mark.parametrize("name", list(CASES))
def test_each_kind_of_signed_pdf(name: str) -> None:
    """What the check shows for each test document (the table of the note)."""
    data, valid, intact, trusted, coverage, signer, count = CASES[name]
    checks = check_pdf(data, ROOTS)
    assert len(checks) == count
    first = checks[0]
    assert (first.valid, first.intact, first.trusted, first.coverage, first.signer) == (
        valid, intact, trusted, coverage, signer)
    assert all(c.valid for c in checks) is valid
    assert first.reason == "hợp lệ" if valid else first.reason.startswith(
        ("chữ ký số thứ 1", "tệp PDF có dấu hiệu ký số"))
    if signer is not None:
        assert first.signed_at is not None
        assert abs(first.signed_at - datetime.now(UTC)) < timedelta(hours=1)
    line = first.line(TZ)
    assert line.startswith("hợp lệ — " if valid else "KHÔNG HỢP LỆ (")


def test_reasons_name_what_is_wrong() -> None:
    reasons = {name: check_pdf(case[0], ROOTS)[0].reason for name, case in CASES.items()}
    assert "không thuộc tổ chức chứng thực tin cậy" in reasons["untrusted CA"]
    assert "đã bị sửa sau khi ký" in reasons["tampered bytes"]
    assert "sửa đổi sau khi ký" in reasons["page changed later"]
    assert "một phần tệp" in reasons["covers part"]
    assert "hết hạn" in reasons["expired signer"]
    assert "không đọc được" in reasons["corrupt dictionary"]


def test_vietnamese_names_and_organisation_come_from_the_certificate() -> None:
    [check] = check_pdf(VALID, ROOTS)
    assert check.signer == "Nguyễn Thị Hồng Nhung"
    assert check.organisation == "Sở Tài chính tỉnh Tây Ninh"
    assert check.as_json()["signed_at"].endswith("+00:00")
    assert set(check.as_json()) >= {"valid", "intact", "trusted", "signer", "organisation",
                                    "signed_at", "coverage", "reason"}


def test_unsigned_and_not_pdf_have_no_signatures() -> None:
    assert check_pdf(BASE, ROOTS) == ()
    assert check_pdf(b"not a pdf /ByteRange", ROOTS) == ()


def test_without_roots_nothing_is_trusted() -> None:
    [check] = check_pdf(VALID, Roots())
    assert check.intact and not check.trusted and not check.valid
    assert "chưa cấu hình chứng thư gốc" in check.reason


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_damaged_bytes_never_raise(data: st.DataObject) -> None:
    """Flipped, cut or inserted bytes anywhere in a signed PDF give checks, never an
    exception; whatever is reported valid still has its signature intact."""
    pdf = data.draw(st.sampled_from([VALID, CASES["two signatures"][0]]))
    at = data.draw(st.integers(0, len(pdf) - 1))
    how = data.draw(st.sampled_from(["flip", "cut", "insert", "zero"]))
    size = data.draw(st.integers(1, 64))
    if how == "flip":
        damaged = pdf[:at] + bytes(b ^ 0xFF for b in pdf[at:at + size]) + pdf[at + size:]
    elif how == "cut":
        damaged = pdf[:at]
    elif how == "insert":
        damaged = pdf[:at] + data.draw(st.binary(min_size=1, max_size=size)) + pdf[at:]
    else:
        damaged = pdf[:at] + b"\0" * size + pdf[at + size:]
    checks = check_pdf(damaged, ROOTS)
    assert isinstance(checks, tuple)
    assert all(isinstance(c, SignatureCheck) for c in checks)
    assert all(c.intact and c.trusted for c in checks if c.valid)


def _signed_hole(pdf: bytes) -> tuple[int, int]:
    """Where the signature's own /Contents string is: the bytes its /ByteRange leaves out."""
    found = re.search(rb"/ByteRange\s*\[\s*(\d+)\s+(\d+)\s+(\d+)", pdf)
    assert found is not None
    return int(found.group(1)) + int(found.group(2)), int(found.group(3))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_any_change_to_the_signed_bytes_is_never_valid(data: st.DataObject) -> None:
    """A forged variant of the trust signal: bytes changed anywhere the signature covers (all
    but its own /Contents string, the PDF header included) never give a valid signature."""
    start, end = _signed_hole(VALID)
    at = data.draw(st.one_of(st.integers(0, start - 1), st.integers(end, len(VALID) - 1)))
    size = data.draw(st.integers(1, 16))
    size = min(size, (start if at < start else len(VALID)) - at)
    noise = data.draw(st.binary(min_size=size, max_size=size))
    changed = VALID[:at] + bytes(a ^ (b or 1) for a, b in zip(VALID[at:at + size], noise,
                                                              strict=True)) \
        + VALID[at + size:]
    checks = check_pdf(changed, ROOTS, named_pdf=True)  # as an attachment named *.pdf
    assert not any(c.valid for c in checks)
    # Still signed, however damaged, unless the signature's own keyword went (then it is as
    # if unsigned, which a forger gets by removing it anyway: unsigned is never "valid").
    assert checks or b"/ByteRange" not in changed


# --- the configuration key ----------------------------------------------------------------


def _parse(tmp_path: Path, roots: object) -> config.Config:
    return config.parse({"security": {"document_trust_roots": roots}}, file="t", text="",
                        base=tmp_path)


def test_roots_config_accepts_pem_bundles_with_vietnamese_names(tmp_path: Path) -> None:
    bundle = tmp_path / "chứng thư gốc Chính phủ.pem"
    bundle.write_bytes(CA.pem() + STRANGER.pem())
    cfg = _parse(tmp_path, ["chứng thư gốc Chính phủ.pem"])
    assert cfg.security.document_trust_roots == (str(bundle),)
    assert len(Roots.read(cfg.security.document_trust_roots, "k").ders) == 2


@pytest.mark.parametrize(("content", "message"), [
    (None, "cannot read"),
    (b"", "not an X.509 certificate"),
    (b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "no CERTIFICATE"),
    (BASE, "not an X.509 certificate"),
    (b"-----BEGIN CERTIFICATE-----\nSGVsbG8=\n-----END CERTIFICATE-----\n",
     "not an X.509 certificate"),
])
def test_careless_roots_are_one_line_errors(tmp_path: Path, content: bytes | None,
                                            message: str) -> None:
    if content is not None:
        (tmp_path / "goc.pem").write_bytes(content)
    with pytest.raises(ConfigError) as raised:
        _parse(tmp_path, ["goc.pem"])
    text = str(raised.value)
    assert "document_trust_roots" in text and message in text and "\n" not in text.strip()


def test_roots_must_be_a_list_of_strings(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="document_trust_roots"):
        _parse(tmp_path, "goc.pem")
    with pytest.raises(ConfigError, match="document_trust_roots"):
        _parse(tmp_path, [""])


# --- through the worker, the pipeline, the register, the forward and the digest -------------


def _mail(pdf: bytes | None, sender: str = "vanthu@stc.tayninh.gov.vn",
          name: str = "1000-UBND-KT.pdf", number: int = 1000, body: str = DOCUMENT) -> bytes:
    """An authenticated mail carrying document `number`/UBND-KT, `pdf` attached as `name`."""
    msg = EmailMessage(policy=policy.SMTP)
    domain = sender.rpartition("@")[2]
    msg["Authentication-Results"] = (f"{AUTHSERV_ID}; dkim=pass header.d={domain}; "
                                     f"dmarc=pass header.from={domain}")
    msg["From"] = sender
    msg["To"] = "vanthu.sxd@tayninh.gov.vn"
    msg["Subject"] = f"Công văn {number}/UBND-KT về kế hoạch nông thôn mới"
    msg["Date"] = "Tue, 10 Nov 2026 09:00:00 +0700"
    msg["Message-ID"] = f"<{abs(hash((pdf, sender)))}@{domain}>"
    msg.set_content(body.replace("1000/UBND-KT", f"{number}/UBND-KT"))
    if pdf is not None:
        msg.add_attachment(pdf, maintype="application", subtype="pdf", filename=name)
    return msg.as_bytes()


def test_the_worker_pool_validates_with_the_configured_roots() -> None:
    """The roots travel to a real worker process; a damaged signed PDF costs it nothing."""
    pool = ReadPool(config.LimitsConfig(workers=1), roots=ROOTS)
    try:
        good, broken = pool.read_all([_mail(VALID), _mail(_corrupt_contents(VALID))])
    finally:
        pool.close()
    assert isinstance(good, Reading) and isinstance(broken, Reading)
    assert [c.valid for s in good.signatures for c in s.checks] == [True]
    assert [c.valid for s in broken.signatures for c in s.checks] == [False]


def _desk(tmp_path: Path) -> Desk:
    desk = Desk(tmp_path)
    root = CA.write(tmp_path, "chứng thư gốc.pem")
    desk.cfg = replace(desk.cfg, security=replace(desk.cfg.security,
                                                  document_trust_roots=(str(root),)))
    return desk


def _forward_text(desk: Desk, pk: int) -> str:
    sent: list[Any] = desk.emails_for(pk)
    forward = next(r for r in sent if r.action == "forward")
    text = message_from_bytes(forward.raw, policy=policy.default).get_body(("plain",))
    assert text is not None
    return str(text.get_content())


def test_end_to_end_register_export_forward_and_digest(tmp_path: Path) -> None:
    desk = _desk(tmp_path)
    other = signing.document_pdf(DOCUMENT.replace("1000/UBND-KT", "1001/UBND-KT"))
    desk.receive(_mail(VALID),
                 _mail(signing.with_page_changed(signing.sign(other, SIGNER)), number=1001),
                 _mail(signing.document_pdf(DOCUMENT.replace("1000/UBND-KT", "1002/UBND-KT")),
                       number=1002))
    desk.process()
    rows: list[Any] = desk.rows()
    assert [r.state for r in rows] == ["routed"] * 3
    entries: list[Any] = desk.entries()
    assert len(entries) == 3
    # The stored understanding carries every signature; the register's trust follows it.
    stored = [r.understanding["signatures"] for r in rows]
    assert [c["valid"] for item in stored[0] for c in item["signatures"]] == [True]
    assert [c["coverage"] for item in stored[1] for c in item["signatures"]] == ["changed_after"]
    assert stored[2] == []
    assert [e.trust for e in entries] == [Trust.OFFICIAL, Trust.AUTHENTICATED, Trust.OFFICIAL]
    assert "Chữ ký số không hợp lệ" in (entries[1].note or "")

    register = export.load(desk.engine, desk.cfg, "incoming", 2026)
    column = export.HEADERS["incoming"].index("Chữ ký số")
    cells = [row[column] for row in register.rows]
    assert str(cells[0]).startswith("1000-UBND-KT.pdf: hợp lệ — Nguyễn Thị Hồng Nhung, Sở Tài "
                                    "chính tỉnh Tây Ninh, ký lúc ")
    assert "KHÔNG HỢP LỆ (chữ ký số thứ 1: tệp bị sửa đổi sau khi ký" in str(cells[1])
    assert cells[2] == "chưa ký số"
    assert "Chữ ký số" in export.to_csv(register).decode("utf-8-sig")

    forwards = [_forward_text(desk, r.id) for r in rows]
    assert "Chữ ký số: 1000-UBND-KT.pdf: hợp lệ — Nguyễn Thị Hồng Nhung" in forwards[0]
    assert "Lưu ý: Chữ ký số không hợp lệ trên văn bản của cơ quan nhà nước" in forwards[1]
    assert "Chữ ký số: 1000-UBND-KT.pdf: KHÔNG HỢP LỆ" in forwards[1]
    assert "Chữ ký số: 1000-UBND-KT.pdf: chưa ký số" in forwards[2]

    rules = rules_module.load(desk.cfg.rules.dir)
    built = digest.build(desk.engine, desk.cfg, rules, datetime(2000, 1, 1, tzinfo=UTC),
                         datetime.now(UTC) + timedelta(days=1))
    assert built.text.count("Chữ ký số không hợp lệ") == 1


def test_a_citizen_with_an_untrusted_signature_is_only_shown(tmp_path: Path) -> None:
    """Not a government body: an untrusted (personal) signature is shown, not flagged. The
    same signature on a document printed with a government issuer is flagged, whoever sent
    it."""
    desk = _desk(tmp_path)
    citizen = STRANGER.issue("Nguyễn Văn An")
    letter = signing.document_pdf("ĐƠN ĐỀ NGHỊ\nKính gửi: Sở Xây dựng tỉnh Tây Ninh\n"
                                  "Tôi là Nguyễn Văn An, đề nghị cấp phép xây dựng.")
    for pdf, flagged in ((signing.sign(letter, citizen), False),
                         (signing.sign(BASE, citizen), True)):
        raw = _mail(pdf, sender="nguyen.van.an@gmail.com", name="don.pdf", body="Kính gửi Sở.")
        reading = read_guarded(raw, desk.cfg.limits, roots=ROOTS)
        assert isinstance(reading, Reading)
        und = judge(reading, desk.cfg, NoCases())
        assert [c.signer for s in und.signatures for c in s.checks] == ["Nguyễn Văn An"]
        assert bool(und.signature_warning) is flagged
        assert any("Chữ ký số" in n for n in und.trust_notes) is flagged


def test_an_official_document_with_a_bad_signature_is_flagged_for_routing(
        tmp_path: Path) -> None:
    desk = _desk(tmp_path)
    reading = read_guarded(_mail(signing.tampered(VALID)), desk.cfg.limits, roots=ROOTS)
    assert isinstance(reading, Reading)
    und = judge(reading, desk.cfg, NoCases())
    assert und.kind is Kind.DOCUMENT and "nội dung đã bị sửa sau khi ký" in und.signature_warning
    rules_dir = tmp_path / "rules"
    shutil.copytree(RULES, rules_dir, ignore=shutil.ignore_patterns("tests"))
    (rules_dir / "05-chu-ky-so.yaml").write_text(
        "rules:\n  - id: chu-ky-so\n    when: {signature_doubt: true}\n"
        "    then: [{tag: {tags: [chu-ky-so-khong-hop-le]}}]\n", encoding="utf-8")
    from daemon.routing.route import decide

    decision = decide(und, reading.mail, rules_module.load(rules_dir),
                      datetime.now(TZ), frozenset())
    assert decision.rules[0].matched
    valid = read_guarded(_mail(VALID), desk.cfg.limits, roots=ROOTS)
    assert isinstance(valid, Reading)
    assert not decide(judge(valid, desk.cfg, NoCases()), valid.mail,
                      rules_module.load(rules_dir), datetime.now(TZ), frozenset()).rules[0].matched


def test_inspect_json_and_text_show_each_signature(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    root = CA.write(tmp_path, "gốc.pem")
    cfg = tmp_path / "config.toml"
    cfg.write_text(AGENCY_CONFIG.format(authserv_id=AUTHSERV_ID, rules=ROOT / "rules").replace(
        "[security]\n", f'[security]\ndocument_trust_roots = ["{root.name}"]\n'),
        encoding="utf-8")
    mail = tmp_path / "m.eml"
    mail.write_bytes(_mail(CASES["two signatures"][0]))
    assert main(["inspect", str(mail), "--json", "--config", str(cfg)]) == 0
    out = json.loads(capsys.readouterr().out)
    [attachment] = out["attachments"]
    assert [s["signer"] for s in attachment["signatures"]] == ["Nguyễn Thị Hồng Nhung",
                                                               "Phạm Đức Ánh"]
    assert all(s["valid"] and s["intact"] and s["trusted"] for s in attachment["signatures"])
    assert datetime.fromisoformat(attachment["signatures"][0]["signed_at"]).tzinfo is not None
    mail.write_bytes(_mail(None))
    main(["inspect", str(mail), "--json", "--config", str(cfg)])
    assert json.loads(capsys.readouterr().out)["attachments"] == []
    mail.write_bytes(_mail(BASE))
    main(["inspect", str(mail), "--json", "--config", str(cfg)])
    assert json.loads(capsys.readouterr().out)["attachments"][0]["signatures"] == []
    mail.write_bytes(_mail(signing.tampered(VALID)))
    main(["inspect", str(mail), "--config", str(cfg)])
    text = capsys.readouterr().out
    assert "Chữ ký số: 1000-UBND-KT.pdf: KHÔNG HỢP LỆ (chữ ký số thứ 1: nội dung đã bị sửa" \
        in text



def test_digest_note_names_only_what_the_register_note_does_not() -> None:
    """The digest warns of invalid signatures the register's note does not already carry."""
    valid, broken = check_pdf(VALID, ROOTS)[0], check_pdf(signing.tampered(VALID), ROOTS)[0]
    stored = {"signatures": [{"attachment": "a.pdf", "sha256": "1",
                              "signatures": [valid.as_json()]},
                             {"attachment": "b.pdf", "sha256": "2",
                              "signatures": [broken.as_json()]}],
              "signature_warning": ""}
    note = digest_note(stored, TZ)
    assert note.startswith("b.pdf: KHÔNG HỢP LỆ (chữ ký số thứ 1: nội dung đã bị sửa")
    assert "a.pdf" not in note
    assert digest_note({**stored, "signature_warning": "Chữ ký số không hợp lệ …"}, TZ) == ""
    assert digest_note({"signatures": stored["signatures"][:1]}, TZ) == ""
    assert digest_note(None, TZ) == digest_note({"signatures": "x"}, TZ) == ""
