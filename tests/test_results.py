"""Signed results out, on the real servers: a valid result reaches the case's sender and the
outgoing register; every kind of bad PDF is refused with its reason and nothing is sent."""

from __future__ import annotations

import json
import shutil
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from sqlalchemy import insert, select, update

from daemon import config
from daemon.cli import main
from daemon.db import cases, messages, new_id, outgoing_entries, register_entries, utcnow
from daemon.models import State
from daemon.office.results import Target, match, mismatch
from tests.conftest import CORPUS, Office

OUTBOUND = CORPUS / "outbound"
LABELS = {item["file"]: item for item in
          json.loads((OUTBOUND / "labels.json").read_text(encoding="utf-8"))["outbound"]}


def _with_results(office: Office) -> Path:
    inbox = office.dir / "results"
    inbox.mkdir()
    office.config_path.write_text(office.config_path.read_text() + (
        f'\n[results]\ninbox_dir = "{inbox}"\ntrust_roots = ["{OUTBOUND / "trust_root.pem"}"]\n'))
    return inbox


# The applicant the signed test PDFs are issued to ("Cấp cho: Ông Bùi Văn Toàn").
PDF_APPLICANT = "Bùi Văn Toàn"


def _dossier_case(office: Office, applicant: str | None = PDF_APPLICANT) -> tuple[str, str]:
    """Deliver the dossier 017.eml and return its case code and its Message-ID; the case's
    applicant is then recorded as `applicant` (the person the test PDFs name), unless None."""
    office.deliver((CORPUS / "017.eml").read_bytes())

    def routed() -> bool:
        engine = office.engine()
        with engine.connect() as conn:
            state = conn.scalar(select(messages.c.state))
        engine.dispose()
        return state == State.DONE

    office.run_daemon(until=routed)
    engine = office.engine()
    with engine.begin() as conn:
        code = conn.scalar(select(cases.c.code))
        origin = conn.scalar(select(messages.c.header_message_id))
        if applicant is not None:
            conn.execute(update(cases).values(applicant_name=applicant))
    engine.dispose()
    return str(code), str(origin)


def _results_sent(office: Office) -> list[object]:
    return [message_from_bytes(m.data, policy=policy.default) for m in office.smtp.messages()
            if b"X-Vanthu-Action: result" in m.data]


def test_valid_result_reaches_the_applicant_and_the_register(office: Office) -> None:
    """A valid signed PDF named after the case goes to the applicant, threaded, and is
    written in the outgoing register; the case is marked result returned."""
    inbox = _with_results(office)
    code, origin = _dossier_case(office)
    shutil.copy(OUTBOUND / "result_01.pdf", inbox / f"{code} ket qua.pdf")

    office.run_daemon(until=lambda: bool(_results_sent(office)), timeout=30)

    sent = _results_sent(office)[0]
    assert sent["To"] == "tuan.pm@kientrucnamviet.vn"  # type: ignore[index]
    assert sent["In-Reply-To"] == origin  # type: ignore[index]
    assert code in str(sent["Subject"])  # type: ignore[index]
    names = [a.get_filename() for a in sent.iter_attachments()]  # type: ignore[attr-defined]
    assert names == [f"{code} ket qua.pdf"]
    assert (inbox / "sent" / f"{code} ket qua.pdf").exists()
    engine = office.engine()
    with engine.connect() as conn:
        entry = conn.execute(select(outgoing_entries)).one()
        status = conn.scalar(select(cases.c.status))
    engine.dispose()
    assert entry.number == 1 and entry.recipients == ["tuan.pm@kientrucnamviet.vn"]
    assert "Sở Xây dựng tỉnh Tây Ninh" in entry.signer
    assert status == "result_returned"


@pytest.mark.parametrize("name", ["result_02.pdf", "result_03.pdf", "result_04.pdf",
                                  "result_05.pdf"])
def test_bad_result_is_refused_with_its_reason(office: Office, name: str) -> None:
    """Tampered, unsigned, untrusted or later-modified PDFs go to rejected/ with a reason."""
    inbox = _with_results(office)
    code, _ = _dossier_case(office)
    shutil.copy(OUTBOUND / name, inbox / f"{code}.pdf")

    office.run_daemon(until=lambda: (inbox / "rejected" / f"{code}.pdf").exists(), timeout=30)

    reason = (inbox / "rejected" / f"{code}.pdf.reason.txt").read_text(encoding="utf-8")
    assert reason.startswith("Không gửi: ") and "\nNot sent: " in reason
    expected = {"result_02.pdf": "changed after signing", "result_03.pdf": "unsigned",
                "result_04.pdf": "trust root", "result_05.pdf": "added after the last"}[name]
    assert expected in reason, LABELS[name]["reason"]
    assert not _results_sent(office)


def test_cli_refuses_with_the_reason_and_exit_code(office: Office,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """`vanthu send-result` exits 1 with the reason for an unsigned PDF, 0 for a valid one."""
    _with_results(office)
    code, _ = _dossier_case(office)
    config = str(office.config_path)

    refused = main(["send-result", str(OUTBOUND / "result_03.pdf"), "--case", code,
                    "--config", config])
    accepted = main(["send-result", str(OUTBOUND / "result_01.pdf"), "--case", code,
                     "--config", config])
    again = main(["send-result", str(OUTBOUND / "result_01.pdf"), "--case", code,
                  "--config", config])

    assert (refused, accepted, again) == (1, 0, 0)
    err = capsys.readouterr().err
    assert "Not sent: unsigned" in err and "Không gửi: chưa ký số" in err
    engine = office.engine()
    with engine.connect() as conn:
        assert len(conn.execute(select(outgoing_entries)).all()) == 1  # the same PDF, once
    engine.dispose()


def test_confidential_case_never_gets_its_result_by_email(office: Office) -> None:
    """A case registered in the confidential register is refused, whatever the signature."""
    inbox = _with_results(office)
    code, _ = _dossier_case(office)
    engine = office.engine()
    with engine.begin() as conn:
        conn.execute(update(register_entries).values(book="confidential"))
    engine.dispose()
    shutil.copy(OUTBOUND / "result_01.pdf", inbox / f"{code}.pdf")

    office.run_daemon(until=lambda: (inbox / "rejected" / f"{code}.pdf").exists(), timeout=30)

    assert "confidential" in (inbox / "rejected" / f"{code}.pdf.reason.txt").read_text()
    assert not _results_sent(office)


def test_a_result_issued_to_someone_else_is_refused(office: Office) -> None:
    """A valid PDF named after case B but issued to another applicant is not sent to B."""
    inbox = _with_results(office)
    code, _ = _dossier_case(office, applicant=None)  # the real applicant of 017.eml
    shutil.copy(OUTBOUND / "result_01.pdf", inbox / f"{code} ket qua.pdf")

    office.run_daemon(until=lambda: (inbox / "rejected" / f"{code} ket qua.pdf").exists(),
                      timeout=30)

    reason = (inbox / "rejected" / f"{code} ket qua.pdf.reason.txt").read_text()
    assert "names neither the case nor its applicant" in reason
    assert not _results_sent(office)


def test_the_pdf_naming_another_case_is_refused() -> None:
    """A result whose text quotes another case code is refused even if the name matches."""
    cfg = config.parse({}, file="t", text="", base=Path("."))
    target = Target("a@example.vn", 1, "HS-2026-000123", None, None, False,
                    ("HS-2026-000123", "Bùi Văn Toàn"))

    other = mismatch(cfg, target, "Cấp cho: Ông Bùi Văn Toàn\nHồ sơ HS-2026-000999")
    spaced = mismatch(cfg, target, "Cấp cho: Ông BÙI VĂN  TOÀN")
    nothing = mismatch(cfg, target, "Cấp cho: Bà Ngô Thị Thanh Hương")

    assert other is not None and "HS-2026-000999" in other[0]
    assert spaced is None
    assert nothing is not None


def test_a_register_entry_answer_goes_to_the_strictly_parsed_sender(office: Office) -> None:
    """An answer to SD<n>-<year> goes to the entry's parsed address, never to an address
    shown in the sender's display name, and only when that sender was authenticated."""
    engine = office.engine()
    now = utcnow()
    with engine.begin() as conn:
        for n, trust in ((1, 2), (2, 0)):
            pk = new_id(conn.execute(insert(messages).values(
                sha256=str(n) * 64, size=1, mailbox="m", stored_at=now, state=State.DONE,
                updated_at=now, header_message_id=f"<m{n}@x>")))
            conn.execute(insert(register_entries).values(
                book="incoming", year=2026, number=n, message_id=pk, received_at=now,
                sender="ubnd@tayninh.gov.vn <kethu@gmail.com>", sender_email="kethu@gmail.com",
                trust=trust, kind="document",
                document={"number": "5", "symbol": "UBND-KT", "issuer": "UBND tỉnh"}))
        proven = match(conn, office.cfg, "SD1-2026 tra loi.pdf", None)
        claimed = match(conn, office.cfg, "SD2-2026 tra loi.pdf", None)
    engine.dispose()

    assert proven is not None and proven.to == "kethu@gmail.com" and not proven.unproven
    assert "5/UBND-KT" in proven.names
    assert claimed is not None and claimed.unproven
