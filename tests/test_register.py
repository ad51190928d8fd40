"""The register: số đến consecutive per year with no gap or repeat, also under racing writers;
duplicates linked, not numbered."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, insert, select

from daemon import config
from daemon.db import make_engine, messages, next_number, register_entries, upgrade
from daemon.models import Address, Attachment, Document, Kind, ParsedMail, State, Understanding
from daemon.office.register import register

AGENCY = config.AgencyConfig(code="000.00.22.H56")


def _message(conn: object, n: int) -> int:
    now = datetime.now(UTC)
    result = conn.execute(insert(messages).values(  # type: ignore[attr-defined]
        sha256=f"{n:064d}", size=1, mailbox="m", stored_at=now, state=State.STORED,
        updated_at=now))
    return int(result.inserted_primary_key[0])


def _doc(number: str, attachment: bytes = b"") -> tuple[ParsedMail, Understanding]:
    files = (Attachment(name="a.pdf", content_type="application/pdf", size=len(attachment),
                        sha256=str(hash(attachment)), payload=attachment),) if attachment else ()
    mail = ParsedMail(message_id=f"<{number}@x>", subject="", sender=Address("", "a@b.vn"),
                      to=(), reply_to=(), date=None, headers={}, body="", attachments=files,
                      content_types=())
    doc = Document(number=number, symbol="QĐ-UBND", type="Quyết định", issuer="UBND tỉnh",
                   date=datetime(2026, 3, 1).date())
    return mail, Understanding(Kind.DOCUMENT, "", None, doc, None)


@pytest.mark.db
def test_racing_threads_take_consecutive_numbers(database: Engine) -> None:
    """Eight threads registering 50 mails each get 1..400, no gap and no repeat."""
    engine = database
    taken: list[int] = []
    lock = threading.Lock()

    def worker(offset: int) -> None:
        for i in range(50):
            with engine.begin() as conn:
                value = next_number(conn, "incoming:2026")
                _message(conn, offset * 1000 + i)
            with lock:
                taken.append(value)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(taken) == list(range(1, 401))


@settings(max_examples=25, deadline=None)
@given(st.lists(st.sampled_from(["commit", "rollback"]), min_size=1, max_size=20))
def test_rolled_back_registrations_leave_no_gap(outcomes: list[str]) -> None:
    """A registration that rolls back gives its number back: committed numbers stay 1..n."""
    engine = make_engine("sqlite://")
    upgrade(engine)
    committed: list[int] = []
    for outcome in outcomes:
        conn = engine.connect()
        transaction = conn.begin()
        value = next_number(conn, "incoming:2026")
        if outcome == "commit":
            transaction.commit()
            committed.append(value)
        else:
            transaction.rollback()
        conn.close()

    assert committed == list(range(1, len(committed) + 1))


@pytest.mark.db
def test_same_document_twice_is_linked_not_numbered(database: Engine) -> None:
    """The same issuer/number/symbol/date by a second route links to the first entry."""
    engine = database
    now = datetime.now(UTC)
    with engine.begin() as conn:
        first = register(conn, AGENCY, _message(conn, 1), *_doc("15"), now)
        again = register(conn, AGENCY, _message(conn, 2), *_doc("015"), now)
        other = register(conn, AGENCY, _message(conn, 3), *_doc("16"), now)
        entries = conn.execute(select(register_entries.c.number)).scalars().all()

    assert (first.number, other.number) == (1, 2)
    assert again.number is None and again.duplicate_of == first.entry_id
    assert sorted(entries) == [1, 2]


@pytest.mark.db
def test_dossier_opens_a_case_with_a_daily_code(database: Engine) -> None:
    """A dossier gets a case code agency-yymmdd-sequence in the agency's time zone."""
    engine = database
    mail, _ = _doc("1")
    und = Understanding(Kind.DOSSIER, "", None, None, None)
    late_evening_utc = datetime(2026, 5, 30, 18, 30, tzinfo=UTC)  # 01:30 on 31/5 in Vietnam

    with engine.begin() as conn:
        first = register(conn, AGENCY, _message(conn, 1), mail, und, late_evening_utc)
        second = register(conn, AGENCY, _message(conn, 2), mail.__class__(
            **{**mail.__dict__, "message_id": "<other@x>"}), und, late_evening_utc)

    assert first.case_code == "000.00.22.H56-260531-0001"
    assert second.case_code == "000.00.22.H56-260531-0002"


def _take_numbers(url: str, count: int) -> list[int]:
    engine = make_engine(url)
    taken = []
    for _ in range(count):
        with engine.begin() as conn:
            taken.append(next_number(conn, "incoming:2026"))
    engine.dispose()
    return taken


@pytest.mark.db
def test_two_daemon_processes_take_consecutive_numbers(db_url: str) -> None:
    """Two processes numbering on one database get 1..2n between them, no gap, no repeat."""
    import multiprocessing

    url = db_url
    setup = make_engine(url)
    upgrade(setup)
    setup.dispose()
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        results = pool.starmap(_take_numbers, [(url, 150), (url, 150)])

    assert sorted(results[0] + results[1]) == list(range(1, 301))
    assert results[0] and results[1]
