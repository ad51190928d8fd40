"""The steps of the pipeline's `apply`, each on its own: shunt, hold, register_mail, assign,
join_case, context, queue_emails, record_handover and finish, against a real SQLite file."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path

from sqlalchemy import Connection, select, update

from daemon.db import case_events, cases, messages, outbox, register_entries
from daemon.intake.workers import read_guarded
from daemon.models import Action, Assignment, CaseStatus, Hold, Kind, State
from daemon.office.cases import CaseEvent
from daemon.office.register import Book
from daemon.pipeline import (
    Duplicate,
    Failed,
    Filed,
    Joined,
    Ready,
    Stored,
    assign,
    context,
    findings,
    finish,
    hold,
    join_case,
    queue_emails,
    record_handover,
    register_mail,
    shunt,
    think,
)
from tests.desk import DOCUMENT, FORM, Desk
from tests.desk import mail as _mail

DOSSIER = ("an.nguyen@gmail.com", "Hồ sơ xin cấp giấy phép xây dựng",
           "Tôi tên là Nguyễn Văn An, xin nộp hồ sơ đề nghị cấp giấy phép xây dựng nhà ở "
           "riêng lẻ.")


def _ready(desk: Desk, raw: bytes) -> Ready:
    """Store `raw` and take it through the pure stages, as `process_pending` does."""
    desk.receive(raw)
    with desk.engine.connect() as conn:
        row = conn.execute(select(messages).order_by(messages.c.id.desc())).first()
        assert row is not None
        item = think(desk.cfg, desk.rules, conn,
                     Stored(row.id, row.sha256, row.stored_at, row.attempts,
                            row.received_at or row.stored_at),
                     read_guarded(raw, desk.cfg.limits))
    assert isinstance(item, Ready), item
    return item


def _document(desk: Desk, sender: str = "vpubnd@tayninh.gov.vn") -> Ready:
    return _ready(desk, _mail(sender, "Công văn 1000/UBND-KT", DOCUMENT))


def _dossier(desk: Desk) -> Ready:
    return _ready(desk, _mail(*DOSSIER, attachment=FORM))


def _file(conn: Connection, desk: Desk, item: Ready) -> Filed:
    filed = register_mail(conn, desk.cfg, desk.rules, item)
    assert isinstance(filed, Filed)
    return filed


def _row(desk: Desk, pk: int) -> object:
    with desk.engine.connect() as conn:
        return conn.execute(select(messages).where(messages.c.id == pk)).one()


def test_shunt_retries_then_quarantines(tmp_path: Path) -> None:
    """A transient failure goes back to `stored` with one more attempt; the last allowed
    attempt, or a permanent failure at once, quarantines the mail with the error."""
    desk = Desk(tmp_path)
    item = _document(desk)
    limit = desk.cfg.limits.max_attempts

    with desk.engine.begin() as conn:
        shunt(conn, desk.cfg, Failed(item.stored, "disk full"))
    first = _row(desk, item.stored.pk)
    with desk.engine.begin() as conn:
        shunt(conn, desk.cfg, Failed(replace(item.stored, attempts=limit - 1), "disk full"))
    last = _row(desk, item.stored.pk)
    with desk.engine.begin() as conn:
        shunt(conn, desk.cfg, Failed(item.stored, "unreadable", permanent=True))
    permanent = _row(desk, item.stored.pk)

    assert (first.state, first.attempts, first.last_error) == (  # type: ignore[attr-defined]
        State.STORED, 1, "disk full")
    assert (last.state, last.attempts) == (State.QUARANTINED, limit)  # type: ignore[attr-defined]
    assert (permanent.state, permanent.attempts) == (  # type: ignore[attr-defined]
        State.QUARANTINED, 1)


def test_hold_names_a_rules_quarantine_and_lets_a_document_pass(tmp_path: Path) -> None:
    """A rule's `quarantine` effect is a reason to hold the mail; a plain document has none."""
    desk = Desk(tmp_path)
    item = _document(desk)
    held = replace(item, decision=replace(item.decision, effects=(Hold("cần văn thư xem"),)))

    with desk.engine.connect() as conn:
        plain, reasons = hold(conn, item), hold(conn, held)

    assert (plain, reasons) == ([], ["cần văn thư xem"])


def test_hold_keeps_a_stranger_out_of_a_case(tmp_path: Path) -> None:
    """A reply carrying a case's code from someone who is not its applicant is held, naming
    the case."""
    desk = Desk(tmp_path)
    desk.receive(_mail(*DOSSIER, attachment=FORM))
    desk.process()
    with desk.engine.connect() as conn:
        code = str(conn.scalar(select(cases.c.code)))
    reply = _ready(desk, _mail("ke.la@gmail.com", f"[{code}] Bổ sung hồ sơ", "Xin bổ sung."))

    with desk.engine.connect() as conn:
        reasons = hold(conn, reply)

    assert len(reasons) == 1 and code in reasons[0] and "ke.la@gmail.com" in reasons[0]


def test_register_mail_numbers_a_document_once(tmp_path: Path) -> None:
    """A document takes the next số đến; the same document again is a Duplicate of it; a
    mail of another kind is not registered."""
    desk = Desk(tmp_path)
    first, again = _document(desk), _document(desk, "vanthu@tayninh.gov.vn")
    spam = _ready(desk, _mail("quang.cao@gmail.com", "Khuyến mãi", "Chúc mừng bạn trúng "
                              "thưởng! Bấm vào đây để nhận thưởng: http://qua.top/x"))

    with desk.engine.begin() as conn:
        filed = register_mail(conn, desk.cfg, desk.rules, first)
        duplicate = register_mail(conn, desk.cfg, desk.rules, again)
        nothing = register_mail(conn, desk.cfg, desk.rules, spam)

    assert isinstance(filed, Filed) and (filed.book, filed.number) == (Book.INCOMING, 1)
    assert filed.case_id is None and filed.queue is None
    assert duplicate == Duplicate(filed.entry_id, "same issuer, number, symbol and date")
    assert nothing is None


def test_register_mail_opens_a_dossiers_case_with_its_slot(tmp_path: Path) -> None:
    """A dossier gets a case with its procedure, appointment date and queue number, on the
    case row and in what its receipt will say."""
    desk = Desk(tmp_path)
    item = _dossier(desk)

    with desk.engine.begin() as conn:
        filed = _file(conn, desk, item)
        case = conn.execute(select(cases)).one()

    assert filed.case_id == case.id and filed.case_code == case.code
    assert filed.procedure is not None and filed.appointment == case.deadline
    assert filed.queue is not None and filed.queue.startswith("số thứ tự 1")
    assert case.queue == filed.queue


def test_assign_writes_the_lead_on_the_entry_and_the_case(tmp_path: Path) -> None:
    """A rule's assignment sets the lead, cooperating units and deadline of the register
    entry, and the lead and deadline of the case."""
    desk = Desk(tmp_path)
    item = _dossier(desk)
    due = date(2026, 12, 1)
    decision = replace(item.decision, effects=(Assignment("qlxd", ("van_phong",), due),))

    with desk.engine.begin() as conn:
        filed = _file(conn, desk, item)
        assign(conn, filed, decision)
        entry = conn.execute(select(register_entries)).one()
        case = conn.execute(select(cases)).one()

    assert (entry.lead_department, entry.cooperating, entry.deadline) == (
        "qlxd", ["van_phong"], due)
    assert (case.lead_department, case.deadline) == ("qlxd", due)


def test_join_case_restarts_the_clock_and_forwards_to_the_handler(tmp_path: Path) -> None:
    """The applicant's supplement resumes a paused case and its forward goes to the lead
    department too."""
    desk = Desk(tmp_path)
    desk.receive(_mail(*DOSSIER, attachment=FORM))
    desk.process()
    with desk.engine.begin() as conn:
        conn.execute(update(cases).values(status=CaseStatus.SUPPLEMENTS_REQUESTED,
                                          lead_department="qlxd",
                                          paused_at=date.today() - timedelta(days=1)))
        code = str(conn.scalar(select(cases.c.code)))
    reply = _ready(desk, _mail(DOSSIER[0], f"[{code}] Bổ sung hồ sơ", "Xin gửi bổ sung."))

    with desk.engine.begin() as conn:
        joined = join_case(conn, desk.cfg, desk.rules, reply)
        status = conn.scalar(select(cases.c.status))

    assert joined is not None and joined.code == code and joined.case_id is not None
    forwards = [a for a in joined.actions if a.action == "forward"]
    assert any("qlxd.sxd@example.gov.vn" in a.to for a in forwards)
    assert status == CaseStatus.IN_PROGRESS


def test_join_case_ignores_a_mail_that_is_no_reply(tmp_path: Path) -> None:
    """A document is not a reply in a case: nothing joins, nothing changes."""
    desk = Desk(tmp_path)
    item = _document(desk)

    with desk.engine.begin() as conn:
        joined = join_case(conn, desk.cfg, desk.rules, item)

    assert joined is None


def test_context_tells_the_entry_or_the_case(tmp_path: Path) -> None:
    """A registered mail's emails carry its book, number and slot; a reply's carry only the
    case code."""
    desk = Desk(tmp_path)
    item = _dossier(desk)
    with desk.engine.begin() as conn:
        filed = _file(conn, desk, item)

    registered = context(item, filed, None)
    reply = context(item, None, Joined(1, "CODE-1", ()))

    assert (registered.book, registered.number, registered.case_code, registered.queue) == (
        Book.INCOMING, 1, filed.case_code, filed.queue)
    assert registered.sha256 == item.stored.sha256
    assert (reply.book, reply.number, reply.case_code) == (None, None, "CODE-1")


def test_queue_emails_skips_an_acknowledgement_to_an_unproven_sender(tmp_path: Path) -> None:
    """An unauthenticated sender gets no acknowledgement; the leaders' forward is queued."""
    desk = Desk(tmp_path)
    item = _ready(desk, _mail("vpubnd@tayninh.gov.vn", "Công văn 1000/UBND-KT", DOCUMENT,
                              authenticated=False))
    actions = (Action("forward", ("giamdoc.sxd@example.gov.vn",)),
               Action("acknowledge", ("vpubnd@tayninh.gov.vn",)))

    with desk.engine.begin() as conn:
        ctx = context(item, _file(conn, desk, item), None)
        queued = queue_emails(conn, desk.cfg, desk.rules, item, ctx, None, actions)
        rows = conn.execute(select(outbox.c.action, outbox.c.recipients)).all()

    assert queued == 1
    assert [tuple(r) for r in rows] == [("forward", ["giamdoc.sxd@example.gov.vn"])]


def test_queue_emails_in_a_case_records_each_email_as_an_event(tmp_path: Path) -> None:
    """Each email queued for a mail of a case is recorded in the case's history."""
    desk = Desk(tmp_path)
    item = _dossier(desk)
    actions = (Action("forward", ("cvp.sxd@example.gov.vn",)),)

    with desk.engine.begin() as conn:
        filed = _file(conn, desk, item)
        queue_emails(conn, desk.cfg, desk.rules, item, context(item, filed, None),
                     filed.case_id, actions)
        events = conn.scalars(select(case_events.c.event).order_by(case_events.c.id)).all()

    assert events == [CaseEvent.RECEIVED, CaseEvent.FORWARDED]


def test_record_handover_fills_columns_7_and_8(tmp_path: Path) -> None:
    """Whoever received the mail, acknowledgement excepted, is written once in the register
    entry, with the time."""
    desk = Desk(tmp_path)
    item = _document(desk)
    actions = (Action("forward", ("a@example.gov.vn", "b@example.gov.vn")),
               Action("notify", ("a@example.gov.vn",)),
               Action("acknowledge", ("vpubnd@tayninh.gov.vn",)))

    with desk.engine.begin() as conn:
        _file(conn, desk, item)
        record_handover(conn, item.stored.pk, actions)
        entry = conn.execute(select(register_entries)).one()

    assert entry.recipients == ["a@example.gov.vn", "b@example.gov.vn"]
    assert entry.forwarded_at is not None


def test_finish_keeps_the_findings_with_the_state(tmp_path: Path) -> None:
    """The state moves with the kind, understanding, rule traces and tags of the mail."""
    desk = Desk(tmp_path)
    item = _document(desk)

    with desk.engine.begin() as conn:
        finish(conn, item.stored.pk, State.DONE, **findings(item))
    row = _row(desk, item.stored.pk)

    assert row.state == State.DONE and row.kind == Kind.DOCUMENT  # type: ignore[attr-defined]
    assert row.decision["actions"] == item.decision.as_json()  # type: ignore[attr-defined]
