"""The clerk's commands on held mail: show one, release it (the hold is lifted, everything else
still applies), drop it with a reason; once per hold, by name, in Vietnamese."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from daemon.cli import main
from daemon.db import make_engine, messages, outbox, register_entries
from daemon.models import State
from daemon.office import quarantine
from daemon.office.release import Refused
from tests.conftest import AUTHSERV_ID, RULES, Office
from tests.desk import DOCUMENT, Desk, mail
from tests.test_inspect import AGENCY_CONFIG

CLERK = "Nguyễn Thị Thu Hà (văn thư)"
WHY = "Đã gọi điện xác nhận với Văn phòng UBND tỉnh: máy chủ của họ không ký DKIM"
NOW = datetime(2026, 11, 26, 3, 0, tzinfo=UTC)


def _held_document(desk: Desk, body: str = DOCUMENT) -> int:
    """The committee's document, not authenticated by our server: held for the clerk."""
    desk.receive(mail("vanthu@tayninh.gov.vn", "Công văn 1000/UBND-KT", body,
                      authenticated=False))
    desk.process()
    [row] = [r for r in desk.rows() if r.state == State.QUARANTINED]  # type: ignore[attr-defined]
    return int(row.id)  # type: ignore[attr-defined]


def _config_file(desk: Desk, tmp_path: Path) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(AGENCY_CONFIG.format(authserv_id=AUTHSERV_ID, rules=RULES)
                    + desk.storage_toml,
                    encoding="utf-8")
    return path


def test_release_lifts_the_hold_and_the_mail_is_registered_once(tmp_path: Path) -> None:
    desk = Desk(tmp_path)
    pk = _held_document(desk)
    assert desk.entries() == []

    decision = quarantine.release(desk.engine, pk, actor=CLERK, reason=WHY, now=NOW)
    desk.process()

    [row] = desk.rows()
    assert row.state in (State.ROUTED, State.DONE)  # type: ignore[attr-defined]
    assert row.clerk == decision == {"action": "release", "by": CLERK,  # type: ignore[attr-defined]
                                     "at": NOW.isoformat(), "reason": WHY}
    [entry] = desk.entries()
    assert entry.number == 1  # type: ignore[attr-defined]
    assert desk.emails_for(pk)  # forwarded to the leaders now
    with pytest.raises(Refused, match="not held"):  # once per hold
        quarantine.release(desk.engine, pk, actor=CLERK, reason=WHY, now=NOW)
    desk.process()
    assert len(desk.entries()) == 1


def test_drop_closes_the_mail_with_its_reason_and_nothing_is_sent(tmp_path: Path) -> None:
    desk = Desk(tmp_path)
    pk = _held_document(desk)

    quarantine.drop(desk.engine, pk, actor=CLERK, reason="Thư giả mạo", now=NOW)
    desk.process()

    [row] = desk.rows()
    assert row.state == State.DROPPED  # type: ignore[attr-defined]
    assert row.clerk["reason"] == "Thư giả mạo"  # type: ignore[attr-defined]
    assert desk.entries() == [] and desk.emails_for(pk) == []
    with pytest.raises(Refused, match="not held"):
        quarantine.release(desk.engine, pk, actor=CLERK, reason=WHY, now=NOW)


@pytest.mark.parametrize(("actor", "reason", "says"), [
    ("", WHY, "--actor"), ("   ", WHY, "--actor"), (CLERK, "", "--reason"),
    (CLERK, "\u202e\u200b ", "--reason"),  # only invisible characters: no reason
])
def test_a_decision_needs_a_name_and_a_reason(tmp_path: Path, actor: str, reason: str,
                                              says: str) -> None:
    desk = Desk(tmp_path)
    pk = _held_document(desk)
    with pytest.raises(Refused, match=says):
        quarantine.release(desk.engine, pk, actor=actor, reason=reason, now=NOW)
    assert desk.rows()[0].state == State.QUARANTINED  # type: ignore[attr-defined]


def test_two_clerks_at_once_one_decision(tmp_path: Path) -> None:
    desk = Desk(tmp_path)
    pk = _held_document(desk)
    engines = [make_engine(desk.cfg.storage.url) for _ in range(4)]
    start = threading.Barrier(len(engines))
    results: list[str] = []

    def decide(index: int) -> None:
        start.wait()
        act = quarantine.release if index % 2 else quarantine.drop
        try:
            act(engines[index], pk, actor=f"Văn thư {index}", reason=WHY, now=NOW)
            results.append("done")
        except Refused:
            results.append("refused")

    threads = [threading.Thread(target=decide, args=(i,)) for i in range(len(engines))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for engine in engines:
        engine.dispose()
    assert sorted(results) == ["done", "refused", "refused", "refused"]


def test_show_reads_the_mail_again_and_cleans_what_it_prints(tmp_path: Path) -> None:
    desk = Desk(tmp_path)
    hostile = DOCUMENT + "Dòng có ký tự điều khiển \x1b[31mĐỎ\x1b[0m và đảo chiều \u202egnp.exe\n"
    pk = _held_document(desk, hostile)

    held = quarantine.show(desk.engine, desk.cfg, pk)

    assert held.state == State.QUARANTINED and "xác thực" in held.reasons
    assert held.authenticated is False
    text = "\n".join(held.text)
    assert "Số: 1000/UBND-KT" in text
    assert "\x1b" not in text and "\u202e" not in text and "ĐỎ" in text
    assert held.as_json()["id"] == pk


def test_show_never_prints_a_confidential_text(tmp_path: Path) -> None:
    desk = Desk(tmp_path)
    pk = _held_document(desk, DOCUMENT.replace("Số: 1000/UBND-KT", "MẬT\nSố: 1000/UBND-KT")
                        + "Nội dung bí mật nhà nước: phương án A.\n")

    held = quarantine.show(desk.engine, desk.cfg, pk)

    assert held.text == () and "mật" in held.text_withheld
    assert "phương án A" not in str(held.as_json())


def test_the_commands_for_people(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    desk = Desk(tmp_path)
    pk = _held_document(desk)
    cfg = str(_config_file(desk, tmp_path))

    assert main(["quarantine", "show", str(pk), "--config", cfg]) == 0
    out = capsys.readouterr().out
    assert f"Thư số {pk}: đang giữ lại chờ văn thư xem" in out
    assert "KHÔNG xác thực được" in out and f"vanthu quarantine release {pk}" in out

    assert main(["quarantine", "release", str(pk), "--config", cfg, "--actor", CLERK]) == 1
    assert "cần nêu lý do" in capsys.readouterr().err
    assert main(["quarantine", "release", "--config", cfg]) == 2
    assert main(["quarantine", "drop", "999", "--config", cfg, "--actor", CLERK,
                 "--reason", "x"]) == 1
    assert "không có thư số 999" in capsys.readouterr().err

    assert main(["quarantine", "release", str(pk), "--config", cfg, "--actor", CLERK,
                 "--reason", WHY]) == 0
    assert f"Đã cho thư số {pk} đi tiếp" in capsys.readouterr().out
    assert main(["quarantine", "list", "--config", cfg, "--json"]) == 0
    assert capsys.readouterr().out.strip() == "[]"


@settings(max_examples=40, deadline=None)
@given(st.text(min_size=1, max_size=300))
def test_any_name_and_reason_is_kept_clean_and_bounded(text: str) -> None:
    cleaned = quarantine.clean(text, quarantine.REASON_MAX)
    assert len(cleaned) <= quarantine.REASON_MAX
    assert not any(ord(c) < 32 or 0x7f <= ord(c) <= 0x9f for c in cleaned)
    assert not any(c in cleaned for c in "\u202a\u202b\u202c\u202d\u202e\u2066\u2069\x7f")


def test_release_on_the_real_servers(office: Office, tmp_path: Path) -> None:
    """Delivered through Dovecot, held, released by the command while no daemon runs, then
    the daemon registers and forwards it; the forward goes out once."""
    raw = mail("vanthu@tayninh.gov.vn", "Công văn 1000/UBND-KT", DOCUMENT, authenticated=False)
    office.deliver(raw)
    office.run_daemon(until=lambda: office.settled(1))
    engine = office.engine()
    with engine.connect() as conn:
        pk, state = conn.execute(select(messages.c.id, messages.c.state)).one()
    assert state == State.QUARANTINED

    assert main(["quarantine", "release", str(pk), "--config", str(office.config_path),
                 "--actor", CLERK, "--reason", WHY]) == 0
    office.run_daemon(until=lambda: office.settled(1))  # registered, forward sent

    with engine.connect() as conn:
        entries = conn.execute(select(register_entries.c.number)).scalars().all()
        sent = conn.execute(select(outbox.c.state).where(outbox.c.message_id == pk)).all()
    engine.dispose()
    assert entries == [1] and sent


def test_show_says_what_a_release_would_do_and_writes_nothing(tmp_path: Path) -> None:
    desk = Desk(tmp_path)
    pk = _held_document(desk)

    held = quarantine.show(desk.engine, desk.cfg, pk, desk.rules)

    actions = dict(held.would)
    assert "forward" in actions and "giamdoc.sxd@example.gov.vn" in actions["forward"]
    assert held.as_json()["if_released"]["actions"][0]["action"] in ("forward", "acknowledge")
    [row] = desk.rows()
    assert row.state == State.QUARANTINED and desk.emails_for(pk) == []  # type: ignore[attr-defined]
    assert desk.entries() == []


def test_release_as_another_kind(tmp_path: Path) -> None:
    """The clerk says what the mail is: released as 'other', it is not registered as a
    document, and the note on its way says who decided so."""
    desk = Desk(tmp_path)
    pk = _held_document(desk)
    with pytest.raises(Refused, match="kind must be one of"):
        quarantine.release(desk.engine, pk, actor=CLERK, reason=WHY, now=NOW, as_kind="spam")

    quarantine.release(desk.engine, pk, actor=CLERK, reason=WHY, now=NOW, as_kind="other")
    desk.process()

    [row] = desk.rows()
    assert row.kind == "other" and row.clerk["as"] == "other"  # type: ignore[attr-defined]
    assert desk.entries() == []
    notes = row.understanding["trust_notes"]  # type: ignore[attr-defined]
    assert any("xác định là thư khác" in n and CLERK in n for n in notes)
