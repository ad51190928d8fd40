"""Schema migrations (daemon/migrations, db.upgrade/prepare) and `vanthu db backup`.

A database made by the last release without migrations (tests/fixtures/schema_v0.py: its own
Table definitions, made with create_all, no version table) is filled with realistic rows in
every table, upgraded in place, and every row is read back unchanged, by the old definitions
and by the daemon's own commands; on SQLite and on PostgreSQL (`db` mark). The revisions must
describe exactly daemon.db.metadata (a schema change without its revision fails here), and a
database older or newer than the code is refused with what to do.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import warnings
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, MetaData, insert, inspect, select, text, update

from daemon import db, migrations
from daemon.cli import main
from daemon.config import load
from daemon.db import SchemaMismatch, make_engine, make_reader, prepare, upgrade
from daemon.errors import ConfigError, DatabaseError
from daemon.outbound.outbox import bodies
from tests.fixtures import schema_v0 as v0

ROOT = Path(__file__).resolve().parent.parent
AT = datetime(2026, 11, 25, 8, 30, tzinfo=UTC)
# Every byte value, then a Vietnamese mail as an SMTP server receives it.
RAW = bytes(range(256)) + ("From: Sở Xây dựng <vanthu@sxd.tayninh.gov.vn>\r\n"
                           "Subject: Phiếu tiếp nhận hồ sơ\r\n\r\nKính gửi bà Nguyễn Thị Ánh "
                           "Nguyệt,\r\n").encode()


def _config(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(f"""
[agency]
name = "Sở Xây dựng"
code = "000.00.22.H56"

[storage]
data_dir = "{tmp_path / 'data'}"
database_url = "{url}"

[[mailboxes]]
host = "127.0.0.1"
username = "vanthu"
password = "secret"

[smtp]
from = "vanthu@sxd.tayninh.gov.vn"

[rules]
dir = "{ROOT / 'rules'}"
""", encoding="utf-8")
    return path


@pytest.fixture()
def engine(db_url: str) -> Iterator[Engine]:
    made = make_engine(db_url)
    yield made
    made.dispose()


def _fill_v0(conn: Any, name: str = "Nguyễn Thị Ánh Nguyệt", raw: bytes = RAW) -> None:
    """Rows in every table of the previous release, as its code wrote them."""
    t = v0.metadata.tables
    understanding = {"kind": "dossier", "why": "đơn đề nghị cấp giấy phép xây dựng",
                     "applicant": {"name": name, "phone": "0912 345 678"}}
    for pk, sha, state, kind in ((1, "a" * 64, "done", "document"),
                                 (2, "b" * 64, "done", "dossier"),
                                 (3, "c" * 64, "quarantined", "spam")):
        conn.execute(insert(t["messages"]).values(
            id=pk, sha256=sha, size=len(raw), mailbox="vanthu@sxd.tayninh.gov.vn",
            header_message_id=f"<{pk}.{sha[:8]}@ubnd.tayninh.gov.vn>",
            subject=f"V/v góp ý dự thảo Quy hoạch chung đô thị Tây Ninh ({pk})",
            sender=f"{name} <nguyet.nta@gmail.com>", stored_at=AT,
            received_at=AT - timedelta(minutes=pk), state=state, attempts=pk - 1,
            last_error="Thư giả danh cơ quan nhà nước (lừa đảo)" if pk == 3 else None,
            kind=kind, understanding=understanding, decision={"actions": [["forward", ["gd"]]]},
            tags=["khẩn"], move_to="Đã xử lý/2026" if pk == 1 else None,
            clerk={"action": "release", "by": "Trần Văn Bình", "at": AT.isoformat(),
                   "reason": "thư thật của Sở"} if pk == 3 else None,
            updated_at=AT))
    conn.execute(insert(t["cases"]).values(
        id=1, code="000.00.22.H56-261125-0001", opened_at=AT, status="received",
        applicant_name=name, applicant_email="nguyet.nta@gmail.com",
        applicant_phone="0912 345 678", procedure="Cấp giấy phép xây dựng nhà ở riêng lẻ",
        procedure_id="1.009994", message_id=2, lead_department="qlxd",
        deadline=date(2026, 12, 9), paused_at=None, queue="07 (sáng)", apology_sent_at=None))
    conn.execute(update(t["messages"]).where(t["messages"].c.id == 2).values(case_id=1))
    for pk, mailbox, folder, uid in ((1, "vanthu@sxd.tayninh.gov.vn", "INBOX", 41),
                                     (2, "vanthu@sxd.tayninh.gov.vn", "INBOX", 42),
                                     (3, "mot-cua@sxd.tayninh.gov.vn", "Thư đến/Khẩn", 7)):
        conn.execute(insert(t["locations"]).values(id=pk, message_id=pk, mailbox=mailbox,
                                                   folder=folder, uidvalidity=1732500000,
                                                   uid=uid))
    conn.execute(insert(t["checkpoints"]).values(
        mailbox="vanthu@sxd.tayninh.gov.vn", folder="INBOX", uidvalidity=1732500000,
        last_uid=42, last_fetch_at=AT, last_error=None, last_error_at=None))
    conn.execute(insert(t["counters"]).values(name="incoming:2026", value=2))
    conn.execute(insert(t["counters"]).values(name="case:261125", value=1))
    conn.execute(insert(t["attachments"]).values(
        id=1, message_id=2, name="Đơn đề nghị cấp GPXD - Nguyễn Thị Ánh Nguyệt.pdf",
        content_type="application/pdf", size=183_442, sha256="d" * 64))
    conn.execute(insert(t["case_events"]).values(
        id=1, case_id=1, at=AT, event="received", actor="vanthu",
        detail={"ghi_chú": "Tiếp nhận qua thư điện tử"}))
    conn.execute(insert(t["reminders"]).values(case_id=1, day=date(2026, 12, 8)))
    conn.execute(insert(t["case_threads"]).values(
        header_message_id="<receipt.000.00.22.H56-261125-0001@sxd.tayninh.gov.vn>", case_id=1))
    for pk, book, number, message in ((1, "incoming", 1, 1), (2, "incoming", 2, 2),
                                      (3, "confidential", 1, 3)):
        conn.execute(insert(t["register_entries"]).values(
            id=pk, book=book, year=2026, number=number, message_id=message, received_at=AT,
            registered_at=AT + timedelta(seconds=5), sender=f"{name} <nguyet.nta@gmail.com>",
            sender_email="nguyet.nta@gmail.com", trust=2, kind="document",
            document={"number": "1234", "symbol": "UBND-KT", "issuer": "UBND tỉnh Tây Ninh",
                      "summary": "V/v triển khai Nghị định 30/2020/NĐ-CP"},
            doc_key=f"ubnd tỉnh tây ninh|1234|ubnd-kt|2026-11-20|{pk}",
            case_id=1 if pk == 2 else None, recipients=["Giám đốc", "Phòng QLXD"],
            forwarded_at=AT, lead_department="qlxd", cooperating=["vp"],
            deadline=date(2026, 12, 15), note="Độ mật: Mật" if book == "confidential" else None,
            directives=[{"by": "gd@sxd.tayninh.gov.vn", "by_name": "Lê Văn Đức",
                         "text": "Giao P.QLXD chủ trì, VP phối hợp, hạn 15/12."}]))
    conn.execute(update(t["messages"]).where(t["messages"].c.id == 3).values(duplicate_of=1))
    for pk, state in ((1, "sent"), (2, "pending"), (3, "failed")):
        conn.execute(insert(t["outbox"]).values(
            id=pk, header_message_id=f"<out{pk}@sxd.tayninh.gov.vn>", message_id=2,
            action="acknowledge", recipients=["nguyet.nta@gmail.com"],
            ack_key=f"nguyet.nta@gmail.com|2026-11-2{pk}", raw=raw + bytes([pk]), state=state,
            attempts=pk, next_attempt_at=AT, last_error="451 thử lại sau" if pk == 3 else None,
            created_at=AT, sent_at=AT if state == "sent" else None,
            delivered={"nguyet.nta@gmail.com": "250 2.0.0 Ok"} if pk == 1 else None,
            refused={"sai@example.vn": "550 không có hộp thư"} if pk == 3 else None,
            claimed_by="vanthu-1/4242/1732500000" if pk == 2 else None,
            claim_expires_at=AT if pk == 2 else None, tries_begun=pk))
    conn.execute(insert(t["leases"]).values(name="mailbox:Văn thư", owner="host/4242/1",
                                            expires_at=AT, acquired_at=AT))
    conn.execute(insert(t["outgoing_entries"]).values(
        id=1, year=2026, number=1, pdf_sha256="e" * 64, file_name="Giấy phép xây dựng.pdf",
        case_id=1, register_entry_id=2, document={"symbol": "GPXD"}, signer="Lê Văn Đức",
        recipients=["nguyet.nta@gmail.com"], sent_at=AT, outbox_message_id="<out1@sxd>"))
    conn.execute(insert(t["register_closings"]).values(
        id=1, book="incoming", year=2025, closed_at=AT, closed_by="Trần Văn Bình",
        first_number=1, last_number=318, count=318))
    conn.execute(insert(t["rejected_results"]).values(
        id=1, file_name="Kết quả chưa ký.pdf", reason="không có chữ ký số", rejected_at=AT))
    conn.execute(insert(t["digests"]).values(period="2026-11-25T06:00", sent_at=AT))
    conn.execute(insert(t["health"]).values(component="pipeline", problem="tạm dừng",
                                            since=AT, updated_at=AT))


def _rows(conn: Any, schema: MetaData) -> dict[str, list[dict[str, Any]]]:
    """Every row of every table of `schema`, by its primary key."""
    return {name: [dict(row._mapping) for row in
                   conn.execute(select(table).order_by(*table.primary_key.columns))]
            for name, table in schema.tables.items()}


def _as_v0(conn: Any) -> dict[str, list[dict[str, Any]]]:
    """Every row of every table of the last release, read from an upgraded database: the
    outbox's bytes, which revision 0007 moved to outbox_bodies, put back in their rows (b""
    for a row without any, as that release kept a draft)."""
    bodies = {row.outbox_id: bytes(row.raw) for row in conn.execute(select(db.outbox_bodies))}
    out: dict[str, list[dict[str, Any]]] = {}
    for name, table in v0.metadata.tables.items():
        columns = [c for c in table.columns if (name, c.name) != ("outbox", "raw")]
        rows = [dict(row._mapping) for row in
                conn.execute(select(*columns).order_by(*table.primary_key.columns))]
        if name == "outbox":
            rows = [{**row, "raw": bodies.get(row["id"], b"")} for row in rows]
        out[name] = rows
    return out


def _v0_database(engine: Engine, **fill: Any) -> dict[str, list[dict[str, Any]]]:
    v0.metadata.create_all(engine)
    with engine.begin() as conn:
        _fill_v0(conn, **fill)
    with engine.connect() as conn:
        return _rows(conn, v0.metadata)


def _revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return migrations.current(conn)


@pytest.mark.db
def test_the_migrations_describe_exactly_the_schema_of_the_code(engine: Engine) -> None:
    """Autogenerate finds no difference between a database made by the revisions and
    daemon.db.metadata: a schema change without its revision fails here. (A new database is
    made from metadata directly and stamped: this is what makes that the same schema.)"""
    with engine.begin() as conn:
        migrations.upgrade(conn)
    assert upgrade(engine) == (migrations.head(), migrations.head())
    with engine.connect() as conn, warnings.catch_warnings():
        # The cases/messages/register_entries foreign keys point both ways (by design).
        warnings.filterwarnings("ignore", "Cannot correctly sort tables")
        context = MigrationContext.configure(conn, opts={"compare_type": True,
                                                         "compare_server_default": True})
        assert compare_metadata(context, db.metadata) == []


@pytest.mark.db
def test_a_database_of_the_previous_release_is_upgraded_with_every_row(
        engine: Engine, db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """create_all of the last release, rows in every table, `vanthu db upgrade`: the same rows,
    the new columns empty, the version recorded, and the daemon's commands read them."""
    before = _v0_database(engine)
    assert _revision(engine) is None
    assert all(before[name] for name in v0.metadata.tables), "a table was left empty"
    config = str(_config(tmp_path, db_url))
    with pytest.raises(SchemaMismatch, match=r"older vanthu.*`vanthu db upgrade`"):
        make_reader(db_url)  # refused before the upgrade, and nothing changed
    assert _revision(engine) is None

    assert main(["db", "upgrade", "--config", config]) == 0
    assert f"→ {migrations.head()}" in capsys.readouterr().out

    assert _revision(engine) == migrations.head()
    with engine.connect() as conn:
        assert _as_v0(conn) == before
        after = _rows(conn, db.metadata)
    # What the revisions added is empty, but the per-domain key of the automatic replies,
    # which revision 0006 fills in from ack_key.
    assert [row["ack_domain"] for row in after["outbox"]] == [
        f"gmail.com|2026-11-2{pk}" for pk in (1, 2, 3)]
    for name, table in db.metadata.tables.items():
        if name == "outbox_bodies":  # the outbox's bytes, moved (below)
            continue
        new = [c.name for c in table.columns if (name not in v0.metadata.tables
               or c.name not in v0.metadata.tables[name].columns) and c.name != "ack_domain"]
        assert all(row[c] is None for row in after[name] for c in new), name
    with engine.connect() as conn:  # raw bytes of the outbox, to the byte
        raws = [bytes(r) for r in conn.execute(select(db.outbox_bodies.c.raw)
                                               .order_by(db.outbox_bodies.c.outbox_id)).scalars()]
    assert raws == [RAW + bytes([pk]) for pk in (1, 2, 3)]

    # The daemon's code reads them: the register, the quarantine, status; the counters go on.
    assert main(["register", "list", "--json", "--year", "2026", "--config", config]) == 0
    entries = json.loads(capsys.readouterr().out)
    assert [(e["book"], e["number"]) for e in entries] == [
        ("incoming", 1), ("incoming", 2), ("confidential", 1)]
    assert entries[1]["case"] == "000.00.22.H56-261125-0001"
    assert entries[0]["sender"] == "Nguyễn Thị Ánh Nguyệt <nguyet.nta@gmail.com>"
    assert main(["quarantine", "list", "--json", "--config", config]) == 0
    assert [m["id"] for m in json.loads(capsys.readouterr().out)] == [3]
    main(["status", "--json", "--config", config])
    status = json.loads(capsys.readouterr().out)
    assert status["outbox"] == {"sent": 1, "pending": 1, "failed": 1}
    prepare(engine)  # what the daemon checks at start
    with engine.begin() as conn:
        assert db.next_number(conn, "incoming:2026") == 3

    assert main(["db", "upgrade", "--config", config]) == 0  # again: nothing to do
    assert "không cần nâng cấp" in capsys.readouterr().out


_VIETNAMESE = st.text(alphabet=st.characters(blacklist_categories=["Cs"],
                                             blacklist_characters="\x00"), max_size=60) | \
    st.sampled_from(["Nguyễn Thị Ánh Nguyệt", "Đặng Hữu Phước", "Hồ Thị Thu Hà", "Ngô Bảo Châu",
                     "Lê Thị Mỹ Duyên", "'; DROP TABLE messages; --", "\u202eevil", "ﬃ"])


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=_VIETNAMESE, raw=st.binary(max_size=2048))
def test_any_names_and_bytes_survive_the_upgrade(tmp_path_factory: pytest.TempPathFactory,
                                                 name: str, raw: bytes) -> None:
    """Whatever text a citizen wrote and whatever bytes were queued: kept exactly (SQLite)."""
    folder = tmp_path_factory.mktemp("v0")
    engine = make_engine(f"sqlite:///{folder / 'vanthu.db'}")
    try:
        before = _v0_database(engine, name=name, raw=raw)
        upgrade(engine)
        with engine.connect() as conn:
            assert _as_v0(conn) == before
    finally:
        engine.dispose()


@pytest.mark.db
def test_an_earlier_build_lacking_a_table_and_columns_is_completed_then_upgraded(
        engine: Engine) -> None:
    """A database of a build before the last release (no digests table, no
    register_entries.directives nor outbox.tries_begun): what that release's upgrade did is
    done, then the revisions; rows kept."""
    v0.metadata.create_all(engine)
    with engine.begin() as conn:
        _fill_v0(conn)
        conn.execute(text("DROP TABLE digests"))
    with engine.begin() as conn:
        for table, column in (("register_entries", "directives"), ("outbox", "tries_begun")):
            conn.execute(text(f'ALTER TABLE {table} DROP COLUMN "{column}"'))
    with engine.connect() as conn:
        outbox_before = [dict(r._mapping) for r in conn.execute(text(
            "SELECT id, header_message_id, raw FROM outbox ORDER BY id"))]

    upgrade(engine)

    assert _revision(engine) == migrations.head()
    prepare(engine)
    with engine.connect() as conn:
        assert [dict(r._mapping) for r in conn.execute(text(
            "SELECT id, header_message_id, outbox_bodies.raw FROM outbox JOIN outbox_bodies "
            "ON outbox_bodies.outbox_id = outbox.id ORDER BY id"))] == outbox_before
        assert conn.execute(select(db.register_entries.c.directives)).scalars().all() == \
            [None, None, None]
        assert conn.execute(select(db.digests)).all() == []


@pytest.mark.db
@pytest.mark.parametrize("strange", ["table", "column"])
def test_a_database_that_is_not_vanthus_is_not_touched(engine: Engine, strange: str) -> None:
    """No version table and a table or column no vanthu made: refused, nothing changed."""
    v0.metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE ho_so_khac (id INTEGER PRIMARY KEY)") if strange == "table"
                     else text("ALTER TABLE cases ADD COLUMN ghi_chu TEXT"))
    with pytest.raises(SchemaMismatch, match="never made"):
        upgrade(engine)
    assert _revision(engine) is None
    with engine.connect() as conn:
        assert "alembic_version" not in inspect(conn).get_table_names()


@pytest.mark.db
def test_a_newer_database_is_refused_by_every_entry(engine: Engine, db_url: str,
                                                    tmp_path: Path) -> None:
    """A database at a revision this vanthu does not know (a newer vanthu upgraded it): the
    upgrade, the daemon (exit 78, as a configuration error: restarting cannot help), write and
    read-only commands all refuse in one line, and nothing is changed."""
    upgrade(engine)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(SchemaMismatch, match=r"newer vanthu \(schema 9999.*vanthu db upgrade"):
        upgrade(engine)
    with pytest.raises(SchemaMismatch, match="newer vanthu"):
        prepare(engine)
    with pytest.raises(SchemaMismatch, match="newer vanthu"):
        make_reader(db_url).dispose()
    from daemon import selfcheck
    from daemon.service import Daemon

    cfg, ruleset = selfcheck.load(_config(tmp_path, db_url))
    with pytest.raises(ConfigError) as refused:
        Daemon(cfg, ruleset)
    (problem,) = refused.value.problems
    assert "newer vanthu" in str(problem) and "\n" not in str(problem)
    assert _revision(engine) == "9999"


@pytest.mark.db
def test_an_older_version_is_refused_until_upgraded(engine: Engine, db_url: str) -> None:
    """A database at the first revision: when the code expects a later one, the daemon and
    the commands name `vanthu db upgrade`, which brings it there."""
    with engine.begin() as conn:
        migrations.upgrade(conn, migrations.BASE)
    if migrations.head() != migrations.BASE:
        with pytest.raises(SchemaMismatch, match=r"older than this vanthu.*vanthu db upgrade"):
            prepare(engine)
        with pytest.raises(SchemaMismatch, match="vanthu db upgrade"):
            make_reader(db_url).dispose()
    assert upgrade(engine)[1] == migrations.head()
    prepare(engine)
    make_reader(db_url).dispose()


@pytest.mark.db
def test_the_outbox_bytes_move_to_their_own_table_and_back(engine: Engine) -> None:
    """Revision 0007 on a database at 0006 with an email sent, one pending and a draft (whose
    row held b""): the two emails' bytes are in outbox_bodies, to the byte, the draft has
    none, and the daemon's sender reads them; going back to 0006 puts them in their rows."""
    with engine.begin() as conn:
        migrations.upgrade(conn, "0006")
        for pk, state, raw in ((1, "sent", RAW + b"\x00\xff"), (2, "pending", RAW * 3),
                               (3, "draft", b"")):
            conn.execute(text(
                "INSERT INTO outbox (id, header_message_id, action, recipients, raw, state, "
                "attempts, next_attempt_at, created_at) VALUES (:id, :hid, 'forward', "
                "'[\"giamdoc@sxd.tayninh.gov.vn\"]', :raw, :state, 0, :at, :at)"),
                {"id": pk, "hid": f"<{pk}.đi@sxd.tayninh.gov.vn>", "raw": raw, "state": state,
                 "at": AT})
    assert upgrade(engine) == ("0006", migrations.head())
    with engine.connect() as conn:
        assert {r.outbox_id: bytes(r.raw) for r in conn.execute(select(db.outbox_bodies))} \
            == {1: RAW + b"\x00\xff", 2: RAW * 3}
        assert "raw" not in {c["name"] for c in inspect(conn).get_columns("outbox")}
        assert bodies(conn, [1, 2, 3]) == {1: RAW + b"\x00\xff", 2: RAW * 3}
    with engine.begin() as conn:
        command.downgrade(migrations.config(conn), "0006")
    with engine.connect() as conn:
        assert [bytes(r) for r in conn.execute(text("SELECT raw FROM outbox ORDER BY id"))
                .scalars()] == [RAW + b"\x00\xff", RAW * 3, b""]
        assert "outbox_bodies" not in inspect(conn).get_table_names()


def _busy_error(path: Path) -> DatabaseError:
    """SQLite's own "busy" for the file at `path`, as `database_errors` reports it: another
    connection holds its write lock, and this one does not wait."""
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        engine = make_engine(f"sqlite:///{path}", busy_seconds=0)
        try:
            with db.database_errors("database"), engine.begin() as conn:
                conn.execute(text("SELECT 1"))
        except DatabaseError as err:
            return err
        finally:
            engine.dispose()
    finally:
        holder.rollback()
        holder.close()
    raise AssertionError("no busy answer")


def test_a_busy_answer_at_start_is_asked_again(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLite may answer "busy" at once while another daemon creates the schema: prepare asks
    again, and the database is made."""
    busy = _busy_error(tmp_path / "other.db")
    assert db._sqlite_busy(busy)
    real, tries = db._prepare, []

    def busy_twice(engine: Engine, where: str) -> None:
        tries.append(where)
        if len(tries) <= 2:
            raise busy
        real(engine, where)

    monkeypatch.setattr(db, "_prepare", busy_twice)
    engine = make_engine(f"sqlite:///{tmp_path / 'vanthu.db'}")
    prepare(engine)
    assert len(tries) == 3
    with engine.connect() as conn:
        assert migrations.current(conn) == migrations.head()


def test_other_trouble_at_start_is_not_asked_again(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A database that cannot be opened (here: a folder where its file should be) is
    reported at the first try."""
    (tmp_path / "vanthu.db").mkdir()
    real, tries = db._prepare, []

    def counted(engine: Engine, where: str) -> None:
        tries.append(where)
        real(engine, where)

    monkeypatch.setattr(db, "_prepare", counted)
    with pytest.raises(DatabaseError, match="unable to open") as raised:
        prepare(make_engine(f"sqlite:///{tmp_path / 'vanthu.db'}"))
    assert not db._sqlite_busy(raised.value)
    assert len(tries) == 1


def test_a_lock_held_past_the_wait_is_reported(tmp_path: Path) -> None:
    """A database another process keeps locked: prepare gives up after `busy_seconds` and says
    so, it does not wait for ever."""
    path = tmp_path / "vanthu.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(DatabaseError, match="locked"):
            prepare(make_engine(f"sqlite:///{path}", busy_seconds=0.2))
    finally:
        holder.rollback()
        holder.close()


@pytest.mark.db
def test_daemons_starting_together_on_a_new_database_create_it_once(db_url: str) -> None:
    """Four starts at once on one empty database: all succeed, one schema, one version row."""
    engines = [make_engine(db_url) for _ in range(4)]
    errors: list[BaseException] = []
    gate = threading.Barrier(len(engines))

    def start(engine: Engine) -> None:
        try:
            gate.wait()
            prepare(engine)
        except BaseException as err:  # reported below
            errors.append(err)

    threads = [threading.Thread(target=start, args=(e,)) for e in engines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with engines[0].connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM alembic_version")).scalar() == 1
    for engine in engines:
        engine.dispose()


def test_a_failed_migration_changes_nothing(tmp_path: Path) -> None:
    """The upgrade is one transaction: a database the adoption refuses midway (a required
    column missing) keeps its tables as they were."""
    engine = make_engine(f"sqlite:///{tmp_path / 'vanthu.db'}")
    v0.metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE digests"))
        conn.execute(text("ALTER TABLE leases DROP COLUMN owner"))
    with pytest.raises(SchemaMismatch, match=r"required column leases\.owner"):
        upgrade(engine)
    with engine.connect() as conn:
        assert "digests" not in inspect(conn).get_table_names()
    engine.dispose()


# --- vanthu db backup -------------------------------------------------------------------------


def test_backup_while_a_writer_writes_is_a_consistent_copy(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A writer adds register entries (each with its message, in one transaction) the whole
    time: the copy passes SQLite's check, every entry in it has its message, the counter
    matches the entries, and a second backup to the same path is refused, the file intact."""
    url = f"sqlite:///{tmp_path / 'data' / 'vanthu.db'}"
    config = str(_config(tmp_path, url))
    engine = make_engine(url)
    upgrade(engine)
    stop = threading.Event()
    written = threading.Event()

    def write() -> None:
        pk = 0
        while not stop.is_set():
            pk += 1
            with engine.begin() as conn:
                number = db.next_number(conn, "incoming:2026")
                conn.execute(insert(db.messages).values(
                    id=pk, sha256=f"{pk:064x}", size=1, mailbox="m", stored_at=AT,
                    state="done", updated_at=AT, subject=f"Công văn số {number}"))
                conn.execute(insert(db.register_entries).values(
                    book="incoming", year=2026, number=number, message_id=pk, received_at=AT,
                    sender="Hồ Thị Thu Hà", kind="document"))
            if pk >= 20:
                written.set()

    writer = threading.Thread(target=write)
    writer.start()
    try:
        assert written.wait(60)
        copy = tmp_path / "sao lưu" / "vanthu-2026-11-27.db"
        copy.parent.mkdir()
        assert main(["db", "backup", str(copy), "--config", config]) == 0
    finally:
        stop.set()
        writer.join()
    assert "Đã sao lưu" in capsys.readouterr().out
    with sqlite3.connect(copy) as saved:
        assert saved.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert saved.execute("PRAGMA journal_mode").fetchone() == ("delete",)
        entries = saved.execute("SELECT count(*) FROM register_entries").fetchone()[0]
        assert entries >= 20
        assert saved.execute("SELECT value FROM counters").fetchone() == (entries,)
        assert saved.execute("SELECT count(*) FROM register_entries r JOIN messages m "
                             "ON m.id = r.message_id").fetchone() == (entries,)
    first = copy.read_bytes()

    assert main(["db", "backup", str(copy), "--config", config]) == 1
    assert "never overwrites" in capsys.readouterr().err
    assert copy.read_bytes() == first
    assert [p.name for p in copy.parent.iterdir()] == [copy.name]  # no partial file left
    reader = make_reader(f"sqlite:///{copy}")  # the copy is a database vanthu can read
    with reader.connect() as conn:
        assert conn.execute(select(db.register_entries.c.sender)).scalars().first() == \
            "Hồ Thị Thu Hà"
    reader.dispose()
    engine.dispose()


def test_backup_of_postgresql_gives_the_pg_dump_advice(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = str(_config(tmp_path, "postgresql+psycopg://vanthu@127.0.0.1:1/vanthu"))
    assert main(["db", "backup", str(tmp_path / "x.dump"), "--config", config]) == 1
    assert "pg_dump" in capsys.readouterr().err
    assert not (tmp_path / "x.dump").exists()


def test_backup_without_a_database_or_a_path_says_so(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = str(_config(tmp_path, f"sqlite:///{tmp_path / 'none.db'}"))
    assert main(["db", "backup", str(tmp_path / "b.db"), "--config", config]) == 1
    assert "no database at" in capsys.readouterr().err
    assert main(["db", "backup", "--config", config]) == 2
    assert not (tmp_path / "b.db").exists() and not (tmp_path / "none.db").exists()
    load(Path(config))  # the config itself is valid
