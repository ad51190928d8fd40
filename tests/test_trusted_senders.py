"""`vanthu quarantine release ID --trust-sender`: a genuine government sender whose server adds
no authentication result is trusted for its exact domain, by a named clerk, revocably; later
mail of that domain held ONLY for lack of authentication goes on. Every forged variant (a
failed verdict, look-alike and homograph domains, a sub- or parent domain, doubtful sender
headers, a phishing Reply-To) is still held."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from daemon.cli import main
from daemon.db import trusted_senders
from daemon.models import HoldKind, State
from daemon.office import quarantine
from daemon.office.release import Refused
from daemon.understand import NoCases, understand
from daemon.understand.trust import domain_of
from tests.conftest import AUTHSERV_ID
from tests.desk import DOCUMENT, Desk, mail
from tests.test_quarantine_commands import _config_file

CLERK = "Trần Thị Bích Ngọc (văn thư)"
WHY = "Đã gọi điện Văn phòng UBND huyện: máy chủ thư của họ không có DKIM"
NOW = datetime(2026, 11, 26, 2, 0, tzinfo=UTC)  # 09:00 in Tây Ninh
DOMAIN = "ubnd.hoathanh.tayninh.gov.vn"


def unauthenticated(sender: str, subject: str = "Công văn 1000/UBND-KT", body: str = DOCUMENT,
                    **headers: str) -> bytes:
    """A mail whose only Authentication-Results is someone else's: no trusted verdict."""
    raw = mail(sender, subject, body, headers=headers or None,
               message_id=f"<{abs(hash((sender, subject, body)))}@test.invalid>")
    return raw.replace(f"{AUTHSERV_ID};".encode(), b"mx.elsewhere.example;", 1)


def _held(desk: Desk, raw: bytes) -> object:
    before = {r.id for r in desk.rows()}  # type: ignore[attr-defined]
    desk.receive(raw)
    desk.process()
    [row] = [r for r in desk.rows() if r.id not in before]  # type: ignore[attr-defined]
    return row


def _trusting_desk(tmp_path: Path) -> tuple[Desk, int]:
    desk = Desk(tmp_path)
    row = _held(desk, unauthenticated(f"vanthu@{DOMAIN}"))
    assert row.state == State.QUARANTINED  # type: ignore[attr-defined]
    assert row.hold_kinds == [HoldKind.AUTH.value]  # type: ignore[attr-defined]
    decision, trust = quarantine.release_trusting(desk.engine, desk.cfg, row.id,  # type: ignore[attr-defined]
                                                  actor=CLERK, reason=WHY, now=NOW)
    assert decision["trusted_domain"] == DOMAIN == trust.domain
    assert (trust.by, trust.at, trust.reason) == (CLERK, NOW, WHY)
    desk.process()
    return desk, int(row.id)  # type: ignore[attr-defined]


def test_a_trusted_domain_lets_later_unauthenticated_mail_go_on(tmp_path: Path) -> None:
    desk, first = _trusting_desk(tmp_path)
    later = _held(desk, unauthenticated(f"tonghop@{DOMAIN.upper()}", "Công văn 1001/UBND-KT",
                                        DOCUMENT.replace("1000", "1001")))
    assert later.state in (State.ROUTED, State.DONE)  # type: ignore[attr-defined]
    notes = later.understanding["trust_notes"]  # type: ignore[attr-defined]
    assert any(f"tên miền {DOMAIN} được văn thư {CLERK}" in n and "09:00 26/11/2026" in n
               for n in notes)
    assert len(desk.entries()) == 2
    [only] = quarantine.trusted(desk.engine)
    assert (only.domain, only.mail, only.by) == (DOMAIN, first, CLERK)


@pytest.mark.parametrize(("sender", "headers", "authenticated"), [
    # a failed verdict is a forgery's mark: never lifted
    (f"vanthu@{DOMAIN}", {}, False),
    # another domain: a parent, a child, look-alikes, a homograph (Cyrillic а)
    ("vanthu@hoathanh.tayninh.gov.vn", {}, None),
    (f"vanthu@a.{DOMAIN}", {}, None),
    ("vanthu@ubnd-hoathanh.tayninh.gov.vn", {}, None),
    ("vanthu@ubnd.hoathanh.tayninh.gov.vn.evil.vn", {}, None),
    ("vanthu@ubnd.hoathanh.t\u0430yninh.gov.vn", {}, None),
    # the trusted address in the display name of another domain's address
    (f'"vanthu@{DOMAIN}" <vanthu@tayninh.gov.vn>', {}, None),
    # doubtful sender headers: two addresses in From, a Sender of elsewhere
    (f"vanthu@{DOMAIN}, ke.gian@gmail.com", {}, None),
    # a Reply-To imitating the state's domain: phishing, whatever the From
    (f"vanthu@{DOMAIN}", {"Reply-To": "vanthu@tayninh-gov.vn"}, None),
])
def test_forged_variants_are_still_held(tmp_path: Path, sender: str,
                                        headers: dict[str, str],
                                        authenticated: bool | None) -> None:
    desk, _ = _trusting_desk(tmp_path)
    if authenticated is None:
        raw = unauthenticated(sender, "Công văn 1002/UBND-KT", DOCUMENT.replace("1000", "1002"),
                              **headers)
    else:
        raw = mail(sender, "Công văn 1002/UBND-KT", DOCUMENT.replace("1000", "1002"),
                   authenticated=False, headers=headers or None)
    row = _held(desk, raw)
    assert row.state in (State.QUARANTINED, State.DONE)  # type: ignore[attr-defined]
    notes = (row.understanding or {}).get("trust_notes") or []  # type: ignore[attr-defined]
    assert not any("người gửi tin cậy" in n for n in notes)
    assert len(desk.entries()) == 1  # only the released mail was registered


def test_untrust_holds_the_domain_again_and_keeps_the_record(tmp_path: Path) -> None:
    desk, _ = _trusting_desk(tmp_path)
    revoked = quarantine.untrust(desk.engine, f" {DOMAIN.upper()}. ", actor=CLERK, now=NOW)
    assert revoked.domain == DOMAIN
    assert quarantine.trusted(desk.engine) == []
    row = _held(desk, unauthenticated(f"vanthu@{DOMAIN}", "Công văn 1003/UBND-KT",
                                      DOCUMENT.replace("1000", "1003")))
    assert row.state == State.QUARANTINED  # type: ignore[attr-defined]
    with desk.engine.connect() as conn:
        [kept] = conn.execute(select(trusted_senders)).all()
    assert (kept.revoked_by, kept.revoked_at) == (CLERK, NOW)
    with pytest.raises(Refused, match="not a trusted sender domain"):
        quarantine.untrust(desk.engine, DOMAIN, actor=CLERK, now=NOW)


def _refused_trust(desk: Desk, raw: bytes, says: str) -> None:
    row = _held(desk, raw)
    assert row.state == State.QUARANTINED  # type: ignore[attr-defined]
    with pytest.raises(Refused, match=says):
        quarantine.release_trusting(desk.engine, desk.cfg, row.id,  # type: ignore[attr-defined]
                                    actor=CLERK, reason=WHY, now=NOW)
    assert desk.rows()[-1].state == State.QUARANTINED  # type: ignore[attr-defined]
    assert quarantine.trusted(desk.engine) == []  # nothing changed


def test_trust_is_refused_for_a_failed_verdict(tmp_path: Path) -> None:
    _refused_trust(Desk(tmp_path), mail(f"vanthu@{DOMAIN}", "Công văn 1000/UBND-KT", DOCUMENT,
                                        authenticated=False), "failed authentication")


def test_trust_is_refused_for_a_phishing_hold(tmp_path: Path) -> None:
    _refused_trust(Desk(tmp_path), unauthenticated(f"vanthu@{DOMAIN}",
                                                   **{"Reply-To": "x@tayninh-gov.vn"}),
                   "only for a mail held for authentication alone")


def test_trust_is_refused_for_the_agencys_own_domain(tmp_path: Path) -> None:
    desk = Desk(tmp_path)
    desk.cfg = dataclasses.replace(desk.cfg, agency=dataclasses.replace(
        desk.cfg.agency, addresses=("vanthu.sxd@sxd.tayninh.gov.vn",)))
    _refused_trust(desk, unauthenticated("giamdoc@sxd.tayninh.gov.vn"), "agency's own domain")


# Variants of the trusted domain an attacker can register or spoof: each is another domain.
_HOMOGLYPHS = {"a": "\u0430", "o": "\u043e", "e": "\u0435", "i": "\u0456", "n": "\u0578",
               "h": "\u04bb", "y": "\u0443", "t": "\u0442"}


@st.composite
def variants(draw: st.DrawFn) -> str:
    labels = DOMAIN.split(".")
    how = draw(st.sampled_from(["homoglyph", "hyphen", "prefix", "suffix", "drop", "tld",
                                "letter", "vietnamese"]))
    at = draw(st.integers(0, len(labels) - 1))
    label = labels[at]
    if how == "homoglyph":
        spots = [i for i, c in enumerate(label) if c in _HOMOGLYPHS]
        if not spots:
            return f"x{DOMAIN}"
        i = draw(st.sampled_from(spots))
        labels[at] = label[:i] + _HOMOGLYPHS[label[i]] + label[i + 1:]
    elif how == "hyphen" and at + 1 < len(labels):
        labels[at:at + 2] = [f"{label}-{labels[at + 1]}"]
    elif how == "prefix":
        labels.insert(0, draw(st.sampled_from(["www", "mail", "xn--ubnd", "ubnd"])))
    elif how == "suffix":
        labels.append(draw(st.sampled_from(["com", "vn", "evil.vn", "gov.vn"])))
    elif how == "drop" and len(labels) > 2:
        del labels[at if at < len(labels) - 2 else 0]
    elif how == "tld":
        labels[-1] = draw(st.sampled_from(["vm", "com", "net", "cn"]))
    elif how == "vietnamese":
        labels[at] = label.replace("o", "ơ", 1).replace("a", "ạ", 1) if label != "vn" else "vń"
    else:
        labels[at] = label + draw(st.sampled_from(["1", "s", "-vn", "x"]))
    return ".".join(labels)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(domain=variants())
def test_no_variant_of_a_trusted_domain_is_lifted(tmp_path_factory: pytest.TempPathFactory,
                                                  domain: str) -> None:
    if domain_of(f"x@{domain}") == DOMAIN:
        return  # the same domain written another way (not produced, but checked honestly)
    desk = _shared_desk(tmp_path_factory)
    raw = unauthenticated(f"vanthu@{domain}", "Công văn 1000/UBND-KT", DOCUMENT)
    parsed, und = understand(raw, desk.cfg, NoCases())
    with desk.engine.connect() as conn:
        assert quarantine.trusted_for(conn, und, parsed) is None
    # and the genuine one is lifted, so the check above is not vacuous
    parsed, und = understand(unauthenticated(f"vanthu@{DOMAIN}"), desk.cfg, NoCases())
    assert und.hold_kinds == (HoldKind.AUTH.value,)
    with desk.engine.connect() as conn:
        assert quarantine.trusted_for(conn, und, parsed) is not None


_DESKS: dict[int, Desk] = {}


def _shared_desk(factory: pytest.TempPathFactory) -> Desk:
    """One desk with the trust for the whole property test (each worker its own)."""
    key = id(factory)
    if key not in _DESKS:
        desk = Desk(factory.mktemp("trusted"))
        with desk.engine.begin() as conn:
            conn.execute(trusted_senders.insert().values(
                domain=DOMAIN, address=f"vanthu@{DOMAIN}", trusted_by=CLERK, trusted_at=NOW,
                reason=WHY))
        _DESKS[key] = desk
    return _DESKS[key]


def test_the_commands_for_people(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    desk = Desk(tmp_path)
    row = _held(desk, unauthenticated(f"vanthu@{DOMAIN}"))
    pk = str(row.id)  # type: ignore[attr-defined]
    cfg = str(_config_file(desk, tmp_path))

    assert main(["quarantine", "show", pk, "--config", cfg]) == 0
    out = capsys.readouterr().out
    assert "Loại lý do: người gửi thuộc tên miền cơ quan nhà nước nhưng không có xác thực" in out
    assert "--trust-sender" in out
    assert main(["quarantine", "trusted", "--config", cfg]) == 0
    assert "Chưa có tên miền nào" in capsys.readouterr().out

    assert main(["quarantine", "release", pk, "--config", cfg, "--actor", CLERK, "--reason",
                 WHY, "--trust-sender"]) == 0
    out = capsys.readouterr().out
    assert f"Tên miền {DOMAIN} được ghi nhận là người gửi tin cậy" in out
    assert f"vanthu quarantine untrust {DOMAIN}" in out
    assert main(["quarantine", "trusted", "--config", cfg]) == 0
    out = capsys.readouterr().out
    assert DOMAIN in out and CLERK in out
    assert main(["quarantine", "trusted", "--config", cfg, "--json"]) == 0
    [listed] = json.loads(capsys.readouterr().out)
    assert listed["domain"] == DOMAIN and listed["by"] == CLERK
    main(["status", "--config", cfg])
    assert f"{DOMAIN} (bởi {CLERK}," in capsys.readouterr().out

    assert main(["quarantine", "untrust", DOMAIN, "--config", cfg, "--actor", CLERK]) == 0
    assert "Đã thu hồi tin cậy" in capsys.readouterr().out
    assert main(["quarantine", "untrust", DOMAIN, "--config", cfg, "--actor", CLERK]) == 1
    assert "không có trong danh sách" in capsys.readouterr().err


def test_an_unreadable_hold_is_not_released_as_it_is(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A mail held because it could not be read or handled would fail again: the release is
    refused in plain words unless the clerk says what it is (--as), and then warned."""
    from daemon.pipeline import Failed, Stored, shunt

    desk = Desk(tmp_path)
    desk.receive(mail("nguoi.dan@gmail.com", "Đơn đề nghị", "Xin chào."))
    row = desk.rows()[0]
    with desk.engine.begin() as conn:
        shunt(conn, desk.cfg, Failed(Stored(row.id, row.sha256, row.stored_at, 0,  # type: ignore[attr-defined]
                                            row.stored_at),  # type: ignore[attr-defined]
                                     "BadMessage: unreadable", permanent=True))
    pk = str(row.id)  # type: ignore[attr-defined]
    cfg = str(_config_file(desk, tmp_path))

    with pytest.raises(Refused, match="could not be read or handled"):
        quarantine.release(desk.engine, int(pk), actor=CLERK, reason=WHY, now=NOW)
    assert main(["quarantine", "show", pk, "--config", cfg]) == 0
    assert "Không cho đi tiếp được như vậy" in capsys.readouterr().out
    assert main(["quarantine", "release", pk, "--config", cfg, "--actor", CLERK, "--reason",
                 WHY]) == 1
    assert "thư sẽ lỗi lại và bị giữ lại lần nữa" in capsys.readouterr().err
    assert desk.rows()[0].state == State.QUARANTINED  # type: ignore[attr-defined]
    assert main(["quarantine", "release", pk, "--config", cfg, "--actor", CLERK, "--reason",
                 WHY, "--as", "other"]) == 0
    assert "nếu thư vẫn không xử lý được, thư sẽ lại bị giữ lại" in capsys.readouterr().out
    assert desk.rows()[0].state == State.STORED  # type: ignore[attr-defined]
