"""What a registered dossier's completeness check leads to, and the clerk's decision on a
dossier held for review.

- complete: nothing changes; the acknowledgement is the receipt slip.
- missing: the case waits for supplements from the day of receipt (the clock has not started:
  it counts from the day the complete dossier arrives, and the applicant's supplement restarts
  it), and the acknowledgement is the request to complete the dossier.
- uncertain: the case is held for the clerk ("Chờ văn thư kiểm tra"); the Chief of Office and
  the clerks are told, on the dossier's forward, why and what to do. Nothing goes to the
  applicant when a document may hide in a file that could not be read; when no procedure of
  the catalogue was identified (nothing could be checked, and the dossier may belong to
  another agency) the applicant gets the plain acknowledgement that the mail arrived, with the
  case code, and neither slip nor date. `vanthu case accept CODE` then sends the receipt
  slip, or `vanthu case request-supplement CODE --items …` the request to complete it.

A held dossier the clerk accepts was complete when it arrived: its processing time counts from
the original time of receipt (the law counts it from the receipt of a complete, valid
dossier), so the appointment is the one computed at registration, whatever day the clerk
decides; the time the agency took to check is its own.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import replace

from sqlalchemy import Connection, Engine

from daemon.config import Config
from daemon.db import reading, utcnow
from daemon.models import Action, CaseStatus, Kind, ParsedMail
from daemon.office import cases, completeness, release
from daemon.office.cases import CaseEvent
from daemon.office.completeness import State, Verdict
from daemon.office.register import DbCases
from daemon.outbound import compose
from daemon.outbound.outbox import enqueue
from daemon.outbound.recipients import Allowed, Answering, Purpose
from daemon.routing.rules import RuleSet
from daemon.understand import judge

# Who is told of a dossier held for review, besides the dossier's forward.
REVIEWERS = ("van_thu", "chanh_van_phong")


def check_dossier(conn: Connection, cfg: Config, rules: RuleSet, mail: ParsedMail,
                  ctx: compose.Context, case_id: int,
                  actions: Sequence[Action]) -> tuple[compose.Context, tuple[Action, ...]]:
    """The pipeline's step after a dossier is registered: judge its completeness, move its
    case, and adjust the emails (see the module's docstring)."""
    verdict = completeness.check(ctx.procedure, mail.attachments, mail.body)
    out = tuple(actions)
    if verdict.state is State.MISSING:
        received = ctx.received_at.astimezone(cfg.agency.tz).date()
        cases.pause(conn, case_id, received, "vanthu", list(verdict.missing))
        out = _noted(out, "hồ sơ chưa đủ thành phần, thiếu: " + "; ".join(verdict.missing)
                     + ". Đã gửi người nộp phiếu yêu cầu bổ sung, hoàn thiện hồ sơ")
    elif verdict.state is State.UNCERTAIN:
        cases.set_status(conn, case_id, CaseStatus.NEEDS_REVIEW, "vanthu")
        cases.event(conn, case_id, CaseEvent.HELD_FOR_REVIEW, "vanthu", verdict.as_json())
        out = _held(rules, out, ctx.case_code or "", verdict)
    return replace(ctx, completeness=verdict), out


def review_note(code: str, verdict: Verdict) -> str:
    """What the Chief of Office and the clerk read about a dossier held for review."""
    parts = ["HỒ SƠ CHỜ VĂN THƯ KIỂM TRA TÍNH ĐẦY ĐỦ; chưa gửi giấy tiếp nhận hay yêu cầu bổ "
             "sung cho người nộp. Lý do: " + "; ".join(verdict.reasons)]
    if verdict.missing:
        parts.append("Chưa nhận ra: " + "; ".join(verdict.missing))
    parts.append(f"Văn thư quyết định bằng lệnh «vanthu case accept {code}» (gửi giấy tiếp "
                 "nhận, hẹn trả tính từ lúc nhận hồ sơ) hoặc «vanthu case request-supplement "
                 f"{code} --items …» (gửi phiếu yêu cầu bổ sung)")
    return ". ".join(p.rstrip(".") for p in parts)


def _noted(actions: tuple[Action, ...], note: str) -> tuple[Action, ...]:
    """The forwards carry `note` in their cover (after any note they had)."""
    return tuple(replace(a, note="; ".join(n for n in (a.note, note) if n))
                 if a.action == Purpose.FORWARD else a for a in actions)


def _held(rules: RuleSet, actions: tuple[Action, ...], code: str,
          verdict: Verdict) -> tuple[Action, ...]:
    """No acknowledgement (but the plain one when no procedure was identified); the forward
    tells why and reaches the clerks and the Chief of
    Office too (a forward of its own when the rules made none)."""
    reviewers = tuple(dict.fromkeys(p.email for p in rules.people.values()
                                    if set(p.roles) & set(REVIEWERS)))
    kept = actions if verdict.unknown_procedure else tuple(
        a for a in actions if a.action != Purpose.ACKNOWLEDGE)
    out = _noted(kept, review_note(code, verdict))
    first = next((i for i, a in enumerate(out) if a.action == Purpose.FORWARD), None)
    if first is None:
        return (*out, Action(Purpose.FORWARD, reviewers, review_note(code, verdict))) \
            if reviewers else out
    widened = replace(out[first], to=tuple(dict.fromkeys((*out[first].to, *reviewers))))
    return (*out[:first], widened, *out[first + 1:])


def accept(engine: Engine, cfg: Config, rules: RuleSet, code: str,
           actor: str, procedure_id: str | None = None) -> tuple[bool, str]:
    """The clerk finds a held dossier complete: the receipt slip goes to the applicant, with
    the appointment counted from the original time of receipt, and the case is received.
    `procedure_id`: the procedure of the catalogue the clerk names (one vanthu did not
    recognise, or another): the case takes it, and its appointment is counted from the time
    of receipt with that procedure's days and cut-off hour. Once only: a case not held
    (already accepted, or never held) is left as it is. Returns whether it was done and what
    to tell the clerk, in Vietnamese."""
    named = next((p for p in rules.procedures if p.id == procedure_id), None)
    if procedure_id is not None and named is None:
        known = ", ".join(p.id for p in rules.procedures) or "(chưa có thủ tục nào)"
        return False, (f"không có thủ tục «{procedure_id}» trong danh mục thủ tục "
                       f"(procedures.yaml); các mã có: {known}.")
    with reading(engine) as conn:
        case = cases.find(conn, code)
    if case is None:
        return False, f"không có hồ sơ {code}."
    if case.status != CaseStatus.NEEDS_REVIEW:
        return _not_held(case)
    try:
        stored = release.load(engine, case.message_id)
        read = release.read_again(cfg, stored)
    except release.Refused as err:
        return False, err.vi
    with engine.begin() as conn:
        case = cases.find(conn, code)  # again, inside the write transaction
        if case.status != CaseStatus.NEEDS_REVIEW:
            return _not_held(case)
        und = replace(judge(read, cfg, DbCases(conn)), kind=Kind.DOSSIER)
        procedure = named or next((p for p in rules.procedures if p.id == case.procedure_id),
                                  None)
        deadline = case.deadline
        if named is not None:  # the clerk's procedure: its days, from the time of receipt
            received = stored.context.received_at.astimezone(cfg.agency.tz)
            settings = replace(cfg.calendar, cutoff=named.cutoff) if named.cutoff \
                else cfg.calendar
            deadline = cases.appointment(settings, cfg.calendar.work_calendar(), received,
                                         named.days)
        # Its own Message-ID: the plain acknowledgement of a held dossier took the mail's.
        sha = hashlib.sha256(f"{stored.sha256}.accepted".encode()).hexdigest()
        ctx = replace(stored.context, sha256=sha, case_code=case.code, procedure=procedure,
                      appointment=deadline, queue=case.queue, stored_at=utcnow())
        to = case.applicant_email or read.mail.sender.email
        email = compose.acknowledge(cfg, ctx, Action(Purpose.ACKNOWLEDGE, (to,)), read.mail,
                                    und)
        enqueue(conn, cfg, email=email, purpose=Purpose.ACKNOWLEDGE, recipients=(to,),
                allowed=Allowed.of(rules, cfg), message_pk=case.message_id,
                # Not counted as the case's automatic email of the day (a held dossier of no
                # known procedure had its plain acknowledgement): the clerk's decision, taken
                # once per case (the status guards it), answers no round of mail. The
                # sender's daily limits still hold.
                answering=Answering.of_mail(read.mail, und, stored.context.stored_at
                                            or stored.context.received_at))
        cases.link_thread(conn, str(email["Message-ID"]), case.id)
        cases.set_status(conn, case.id, CaseStatus.RECEIVED, actor, deadline=deadline,
                         **({"procedure": named.name, "procedure_id": named.id} if named
                            else {}))
        cases.event(conn, case.id, CaseEvent.ACCEPTED, actor, {
            "to": [to], "appointment": deadline.isoformat() if deadline else None,
            **({"procedure": named.id} if named else {})})
    when = f"; hẹn trả kết quả ngày {deadline:%d/%m/%Y}" if deadline else ""
    return True, f"{code}: đã tiếp nhận, giấy tiếp nhận gửi cho {to}{when}."


def _not_held(case: object) -> tuple[bool, str]:
    status = getattr(case, "status", "")
    name = cases.STATUS_NAMES.get(CaseStatus(status), status) if status in set(CaseStatus) \
        else status
    if status == CaseStatus.RECEIVED:
        return True, f"{getattr(case, 'code', '')}: đã tiếp nhận từ trước, không gửi lại."
    return False, (f"{getattr(case, 'code', '')} không chờ văn thư kiểm tra (trạng thái: "
                   f"{name}); không có thay đổi nào.")
