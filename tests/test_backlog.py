"""Backlogs (issue 17, item 4): `[intake] start`, archived old mail, `vanthu backlog import`
and the progress of a backlog in `vanthu status`.

Real Dovecot (old mail APPENDed with an old INTERNALDATE), real SMTP sink, real SQLite (the
`db` tests on PostgreSQL too)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, select, update

from daemon import config, selfcheck
from daemon.cli import main
from daemon.db import cases, checkpoints, messages, outbox, register_entries
from daemon.errors import ConfigError
from daemon.intake import backlog
from daemon.intake.store import Fetched, MailStore, checkpoint, store_batch
from daemon.models import State
from daemon.office import backfill, digest
from daemon.routing import rules as rules_module
from tests.conftest import CORPUS, Office, corpus_labels

# A config with every required section (timezone Asia/Ho_Chi_Minh by default).
BASE = ('[agency]\nname = "Sở Xây dựng"\ncode = "000.00.22.H56"\n'
        '[[mailboxes]]\nname = "Văn thư"\nhost = "127.0.0.1"\nusername = "vt"\n'
        'password = "x"\n[smtp]\nfrom = "vanthu@sxd.tayninh.gov.vn"\n')
OLD = datetime(2024, 3, 1, 9, 0, tzinfo=timezone(timedelta(hours=7)))


def _documents(count: int) -> list[bytes]:
    files = [label["file"] for label in corpus_labels() if label["kind"] == "document"]
    return [(CORPUS / name).read_bytes() for name in files[:count]]


def _start(office: Office, value: str) -> None:
    text = office.config_path.read_text(encoding="utf-8")
    office.config_path.write_text(text.replace('start = "all"', f"start = {value}"),
                                  encoding="utf-8")


def _append(office: Office, raw: bytes, when: datetime | None) -> None:
    client = office.imap()
    client.append("INBOX", raw, msg_time=when)
    client.logout()


def _states(office: Office) -> dict[int, str]:
    engine = office.engine()
    with engine.connect() as conn:
        found = {int(i): str(s) for i, s in conn.execute(select(messages.c.id, messages.c.state))}
    engine.dispose()
    return found


def _rows(office: Office, query: Any) -> list[Any]:
    engine = office.engine()
    with engine.connect() as conn:
        rows = list(conn.execute(query).all())
    engine.dispose()
    return rows


def test_a_first_start_keeps_old_mail_then_imports_it_quietly(
        office: Office, capsys: pytest.CaptureFixture[str]) -> None:
    """start = "now": mail received before the first start is archived (no email, no entry),
    mail received after it is processed in full, also after a restart over a "weekend"; then
    `backlog import` registers the old mail in received order without any email, in steps and
    again, each number once and none skipped."""
    _start(office, '"now"')
    docs = _documents(6)
    # Old mails, UIDs in the reverse order of their INTERNALDATE: numbers must follow the date.
    for n, raw in enumerate(docs[:4]):
        _append(office, raw, OLD - timedelta(days=n))
    _append(office, docs[4], datetime.now(UTC) + timedelta(minutes=2))  # after the start
    office.run_daemon(until=lambda: office.settled(5) and office.count(outbox) > 0
                      and all(s != "routed" for s in _states(office).values()))
    states = _states(office)
    assert sorted(states.values()).count("archived") == 4
    new_id = max(states)
    assert states[new_id] in ("done", "routed")
    caused = {r.message_id for r in _rows(office, select(outbox.c.message_id))}
    assert caused == {new_id}, "old mail must cause no email"
    assert {r.message_id for r in _rows(office, select(register_entries.c.message_id))} \
        == {new_id}
    started = _rows(office, select(checkpoints.c.started_at))[0].started_at
    assert started is not None

    # Stopped over a weekend: the mail that came meanwhile is new mail, processed in full.
    _append(office, docs[5], None)
    office.run_daemon(until=lambda: office.settled(6) and office.count(outbox) > 1)
    states = _states(office)
    assert sorted(states.values()).count("archived") == 4
    assert _rows(office, select(checkpoints.c.started_at))[0].started_at == started
    sent = len(office.smtp.messages())
    assert sent >= 2  # the two new mails' emails went out

    # Import in steps (as if killed after the first chunk), then the command finishes it.
    cfg = office.cfg
    engine = office.engine()
    outbox_before = office.count(outbox)
    first = backfill.run(engine, cfg, backfill.Selection(), chunk=1, limit=1)
    assert len(first.ids) == 1
    # Killed after putting a chunk back to `stored`, before it was processed.
    with engine.begin() as conn:
        pending = conn.scalar(select(messages.c.id).where(
            messages.c.state == State.ARCHIVED).order_by(messages.c.received_at).limit(1))
        conn.execute(update(messages).where(messages.c.id == pending)
                     .values(state=State.STORED, quiet=True))
    assert main(["backlog", "import", "--json", "--config", str(office.config_path)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["imported"] == 3 and not report["dry_run"]
    engine.dispose()

    entries = _rows(office, select(register_entries.c.number, register_entries.c.received_at,
                                   register_entries.c.message_id, register_entries.c.year,
                                   register_entries.c.book)
                    .order_by(register_entries.c.book, register_entries.c.year,
                              register_entries.c.number))
    old = [e for e in entries if e.message_id != new_id and e.year == 2024]
    assert len(old) == 4
    assert [e.number for e in old] == list(range(1, 5)), "each number once, no gap"
    assert [e.received_at for e in old] == sorted(e.received_at for e in old)
    assert office.count(outbox) == outbox_before, "an import queues no email"
    assert all(s != "archived" for s in _states(office).values())
    assert all(c.status == "done" for c in _rows(office, select(cases.c.status).where(
        cases.c.message_id.in_([e.message_id for e in old]))))

    # Again: nothing to do, nothing registered twice; the daemon sends nothing for them.
    assert main(["backlog", "import", "--config", str(office.config_path)]) == 0
    assert "Không có thư cũ nào cần nhập" in capsys.readouterr().out
    office.run_daemon(until=lambda: office.settled(6))
    assert len(office.smtp.messages()) == sent, "the SMTP sink received nothing for old mail"
    assert office.count(outbox) == outbox_before
    assert office.count(register_entries) == len(entries)
    # Nor does the digest: no line for an imported entry, no count of old mail.
    cfg = office.cfg
    engine = office.engine()
    told = digest.build(engine, cfg, rules_module.load(cfg.rules.dir),
                        datetime(2000, 1, 1, tzinfo=UTC), datetime.now(UTC) + timedelta(hours=1))
    engine.dispose()
    assert "/2024" not in told.text and "số đến 1/2026" in told.text


def test_a_start_date_and_all(office: Office, capsys: pytest.CaptureFixture[str]) -> None:
    """start = a date: mail received before that local day is archived, after it processed;
    `--dry-run` counts without changing anything; `status` names the archived mail."""
    _start(office, '"2024-03-01"')
    docs = _documents(2)
    _append(office, docs[0], OLD - timedelta(hours=9, seconds=1))  # 29/02 23:59:59 local
    _append(office, docs[1], OLD - timedelta(hours=9))  # 01/03 00:00:00 local: new
    office.run_daemon(until=lambda: office.settled(2))
    assert sorted(_states(office).values())[0] == "archived"
    assert list(_states(office).values()).count("archived") == 1
    assert main(["backlog", "import", "--dry-run", "--json", "--until", "2024-02-28",
                 "--config", str(office.config_path)]) == 0
    assert json.loads(capsys.readouterr().out)["selected"] == 0
    assert main(["backlog", "import", "--dry-run", "--since", "2024-02-29",
                 "--config", str(office.config_path)]) == 0
    assert "1 thư cũ" in capsys.readouterr().out
    main(["status", "--config", str(office.config_path)])
    assert "Thư cũ đã lưu, chưa vào sổ: 1" in capsys.readouterr().out
    assert list(_states(office).values()).count("archived") == 1


@pytest.mark.db
def test_status_shows_the_progress_of_a_backlog(database: Engine, tmp_path: Path,
                                                db_url: str,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """A catch-up of 10 mails that stored 4: status (another process's view: the database)
    gives fetched/total, a rate and time left, in Vietnamese and in --json."""
    store = MailStore(tmp_path / "data")
    checkpoint(database, "Văn thư", "INBOX", 7)
    progress = backlog.CatchUp({"mailbox": "Văn thư", "folder": "INBOX"}, 10,
                               since=datetime.now(UTC) - timedelta(seconds=4))
    batch = [Fetched(uid, f"Subject: thư {uid}\r\n\r\nNội dung {uid}\r\n".encode())
             for uid in range(1, 5)]
    store_batch(database, store, mailbox="Văn thư", folder="INBOX", uidvalidity=7,
                batch=batch, progress=progress.step(len(batch)))
    path = tmp_path / "config.toml"
    path.write_text(f'{BASE}[storage]\ndata_dir = "{tmp_path / "data"}"\n'
                    f'database_url = "{db_url}"\n[status]\nmin_free_mb = 0\n', encoding="utf-8")
    main(["status", "--json", "--config", str(path)])
    out = capsys.readouterr()
    report = json.loads(out.out or out.err)["backlog"]
    folder = report["folders"][0]
    assert (folder["fetched"], folder["total"], folder["running"]) == (4, 10, True)
    assert 0.5 < folder["rate"] < 1.5 and 4 <= folder["left_seconds"] <= 12
    assert report["pipeline"]["waiting"] == 4
    main(["status", "--config", str(path)])
    assert "Đang lấy thư tồn Văn thư/INBOX: 4/10 thư" in capsys.readouterr().out


@pytest.mark.db
def test_old_mail_is_stored_whole_in_its_own_state(database: Engine, tmp_path: Path) -> None:
    """Old mail keeps its bytes, row, location and checkpoint; "all" and a row of an earlier
    build (no started_at) make nothing old; "now" reads the moment recorded once."""
    store = MailStore(tmp_path / "data")
    checkpoint(database, "hop", "INBOX", 1)
    now_cfg = config.IntakeConfig("now")
    before = backlog.old_before(database, now_cfg, "hop", "INBOX")
    assert before is not None and before <= datetime.now(UTC)
    assert backlog.old_before(database, config.IntakeConfig("all"), "hop", "INBOX") is None
    old = Fetched(1, b"Subject: cu\r\n\r\nthu cu\r\n", internaldate=before - timedelta(days=1))
    new = Fetched(2, b"Subject: moi\r\n\r\nthu moi\r\n", internaldate=before)
    ids = store_batch(database, store, mailbox="hop", folder="INBOX", uidvalidity=1,
                      batch=[old, new], old_before=before)
    with database.connect() as conn:
        rows = conn.execute(select(messages.c.id, messages.c.state, messages.c.sha256)
                            .order_by(messages.c.id)).all()
        assert conn.scalar(select(checkpoints.c.last_uid)) == 2
        conn.execute(update(checkpoints).values(started_at=None))
        conn.commit()
    assert [r.state for r in rows] == ["archived", "stored"] and len(ids) == 2
    assert store.read(rows[0].sha256) == old.raw
    assert backlog.old_before(database, now_cfg, "hop", "INBOX") is None


CARELESS = ['"garbage"', '""', '"2026-02-30"', '"2026-11-01T00:00:00+07:00"',
            "2026-11-01T08:00:00+07:00", "2026-11-01T08:00:00", "20261101", '"01/11/2026"',
            '"Now"', '" now"', "true", '["now"]', '"2026-1-1"']


@pytest.mark.parametrize("value", CARELESS)
def test_a_careless_start_is_one_clear_line(tmp_path: Path, value: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(f"[intake]\nstart = {value}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        config.load(path)
    (problem,) = [p for p in caught.value.problems if "intake" in str(p)]
    assert "intake.start" in str(problem) and "\n" not in str(problem)
    assert problem.line == 2


def test_a_start_in_the_future_is_taken_with_a_note(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    later = date.today() + timedelta(days=30)
    path.write_text(f'{BASE}[intake]\nstart = "{later}"\n', encoding="utf-8")
    cfg = config.load(path)
    assert cfg.intake.since is not None and cfg.intake.since.date() == later
    assert any("intake.start" in note and "future" in note for note in selfcheck.notes(cfg))
    unquoted = tmp_path / "unquoted.toml"
    unquoted.write_text(f"{BASE}[intake]\nstart = 2026-11-01\n", encoding="utf-8")
    assert config.load(unquoted).intake.start == "2026-11-01"


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(day=st.dates(min_value=date(2001, 1, 2), max_value=date(2025, 12, 30)),
       offset=st.integers(min_value=-3 * 86400, max_value=3 * 86400)
       | st.sampled_from([-1, 0, 1]),
       zone=st.integers(min_value=-12 * 60, max_value=14 * 60))
def test_the_boundary_of_a_start_date(tmp_path_factory: pytest.TempPathFactory, day: date,
                                      offset: int, zone: int) -> None:
    """Whatever the date, the INTERNALDATE and the zone the server writes it in: a mail is old
    exactly when it was received before the start of that day in the agency's timezone."""
    folder = tmp_path_factory.mktemp("boundary")
    path = folder / "config.toml"
    path.write_text(f'{BASE}[intake]\nstart = "{day}"\n', encoding="utf-8")
    since = config.load(path).intake.since
    assert since is not None
    local_midnight = datetime(day.year, day.month, day.day,
                              tzinfo=timezone(timedelta(hours=7)))  # Vietnam: no DST
    assert since == local_midnight
    received = (local_midnight + timedelta(seconds=offset)).astimezone(
        timezone(timedelta(minutes=zone)))
    assert backlog.is_old(received, since) is (offset < 0)
