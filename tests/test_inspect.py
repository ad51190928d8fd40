"""`vanthu inspect`: understand one mail with no server, database or secret."""

from __future__ import annotations

import json
from email import message_from_bytes, policy
from pathlib import Path

import pytest

from daemon import config
from daemon.cli import main
from daemon.models import Action
from daemon.outbound import compose
from daemon.understand import NoCases, understand
from tests.conftest import AUTHSERV_ID, CORPUS, ROOT

AGENCY_CONFIG = """\
[agency]
name = "Sở Xây dựng tỉnh Tây Ninh"
code = "000.00.22.H56"

[[mailboxes]]
host = "127.0.0.1"
username = "vanthu"
password = "không dùng"

[smtp]
host = "127.0.0.1"
from = "Văn thư Sở Xây dựng <vanthu.sxd@example.gov.vn>"

[security]
authserv_id = "{authserv_id}"

[rules]
dir = "{rules}"
"""


def _agency_config(tmp_path: Path) -> str:
    """The agency's config: its receiving server's authserv-id, the shipped rules."""
    path = tmp_path / "config.toml"
    path.write_text(AGENCY_CONFIG.format(authserv_id=AUTHSERV_ID, rules=ROOT / "rules"),
                    encoding="utf-8")
    return str(path)


def test_inspect_json_has_the_contract_keys(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """The JSON object carries kind, case_ref, document, applicant, rules, actions, safety."""
    assert main(["inspect", str(CORPUS / "006.eml"), "--json",
                 "--config", _agency_config(tmp_path)]) == 0

    out = json.loads(capsys.readouterr().out)
    assert {"kind", "case_ref", "document", "applicant", "rules", "actions",
            "safety"} <= set(out)
    assert out["kind"] == "document"
    assert out["document"]["number"] == "245" and out["document"]["urgency"] == "Thượng khẩn"
    forward = next(a for a in out["actions"] if a["action"] == "forward")
    assert "giamdoc.sxd@example.gov.vn" in forward["to"]
    assert out["rules"][0] == {"id": "van-ban-den", "matched": True, "why": "✓ kind=document"}


def test_inspect_at_a_date_applies_stand_ins(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """--at evaluates the rules as on that day: an absent Deputy's stand-in is named."""
    main(["inspect", str(CORPUS / "006.eml"), "--json", "--at", "2026-03-25T09:00",
          "--config", _agency_config(tmp_path)])

    out = json.loads(capsys.readouterr().out)
    forward = next(a for a in out["actions"] if a["action"] == "forward")
    assert "pgd.binh.sxd@example.gov.vn" not in forward["to"]
    assert "đang vắng mặt" in forward["note"]


def test_injected_subject_never_reaches_an_outgoing_header() -> None:
    """A subject decoding to CR LF + 'Bcc:' stays one harmless line in our acknowledgement."""
    cfg = config.parse({}, file="t", text="", base=Path("."))
    mail, und = understand((CORPUS / "032.eml").read_bytes(), cfg, NoCases())
    ctx = compose.Context(sha256="0" * 64, received_at=mail.date)  # type: ignore[arg-type]

    email = compose.acknowledge(cfg, ctx, Action("acknowledge", (mail.sender.email,)), mail, und)

    parsed = message_from_bytes(email.as_bytes(), policy=policy.default)
    assert parsed["Bcc"] is None and parsed["X-Injected"] is None
    assert "\n" not in str(parsed["Subject"])
    assert "Lý Thị Kim" in str(parsed["Subject"])


def test_vietnamese_subject_round_trips_with_its_spaces() -> None:
    """Encoded subjects keep the space between words across encoded-word boundaries."""
    cfg = config.parse({}, file="t", text="", base=Path("."))
    mail, und = understand((CORPUS / "006.eml").read_bytes(), cfg, NoCases())
    ctx = compose.Context(sha256="0" * 64, received_at=mail.date,  # type: ignore[arg-type]
                          number=7, year=2026)

    email = compose.forward(cfg, ctx, Action("forward", ("a@x.gov.vn",)), mail, und)

    parsed = message_from_bytes(email.as_bytes(), policy=policy.default)
    # The original subject opens with the same mark: the tag stands once.
    assert mail.subject.startswith("THƯỢNG KHẨN: ")
    assert str(parsed["Subject"]) == ("[Số đến 7/2026] [THƯỢNG KHẨN] "
                                      + mail.subject.removeprefix("THƯỢNG KHẨN: "))
    assert [a.get_filename() for a in parsed.iter_attachments()] == ["245-TB-VP.pdf"]


def test_inspect_without_an_authserv_id_believes_no_government_sender(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """On embedded defaults nothing can authenticate a sender: a gov.vn document is held and
    nothing would be sent, however genuine its Authentication-Results look."""
    monkeypatch.chdir(ROOT)

    main(["inspect", str(CORPUS / "006.eml"), "--json"])

    out = json.loads(capsys.readouterr().out)
    assert out["kind"] == "document" and out["authenticated"] is None
    assert out["safety"]["quarantine"] is True and out["actions"] == []
