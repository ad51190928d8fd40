"""Letters about a case, in Vietnamese: the request for supplements (Phiếu yêu cầu bổ sung,
hoàn thiện hồ sơ), the apology with a new date (Văn bản xin lỗi và hẹn lại ngày trả kết quả),
the deadline reminder to the handler, and the assignment notice. Each is queued in the outbox
in the caller's transaction and its Message-ID returned; `daemon.office.cases`, which sends
them, records the case event and threads the Message-ID to the case in the same transaction.
A letter the outbox refuses (a recipient that cannot be sent or may not be written to) raises
RecipientRefused or EmailRefused, with the reason for the clerk; nothing is queued.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import Connection

from daemon.config import Config
from daemon.db import utcnow
from daemon.models import CaseStatus
from daemon.office import completeness
from daemon.outbound.compose import envelope, render
from daemon.outbound.outbox import enqueue
from daemon.outbound.recipients import Allowed, Answering, Purpose


def _queue(conn: Connection, cfg: Config, case: Any, purpose: Purpose, to: list[str],
           subject: str, title: str, intro: list[str], rows: list[tuple[str, str]],
           outro: list[str], key: str, in_reply_to: str | None = None,
           allowed: Allowed | None = None, rendered: tuple[str, str] | None = None) -> str:
    # Deterministic: the same letter queued again (a replayed transaction) has the same id.
    header_id = f"<{case.code}.{purpose}.{key}@{cfg.agency.message_id_domain}>"
    msg = envelope(cfg, purpose=purpose, to=to, subject=subject, date=utcnow(),
                   message_id=header_id, in_reply_to=in_reply_to)
    text, markup = rendered or render(title, intro, rows, outro)
    msg.set_content(text)
    msg.add_alternative(markup, subtype="html")
    if allowed is None:  # not handed the running rules: an answer needs only the case's record
        allowed = Allowed.nobody() if purpose.answers else Allowed.load(cfg)
    enqueue(conn, cfg, email=msg, purpose=purpose, recipients=to, allowed=allowed,
            answering=Answering.of_record(conn, case_id=case.id) if purpose.answers else None)
    return header_id


def supplement_request(conn: Connection, cfg: Config, case: Any, items: list[str],
                       on: date, origin: str | None, allowed: Allowed | None = None) -> str:
    """Every missing item at once (the decree allows one request, not a drip), in the
    agency's template of the request (`supplement_request.{txt,html}.j2`)."""
    received = case.opened_at.astimezone(cfg.agency.tz)
    fields = completeness.SupplementFields(
        agency=cfg.agency.name, result_place=cfg.agency.result_place, code=case.code,
        applicant=case.applicant_name, email=case.applicant_email, phone=case.applicant_phone,
        procedure=case.procedure,
        received=f"{received:%H} giờ {received:%M} phút, ngày {received:%d/%m/%Y}",
        requested=f"{on:%d/%m/%Y}", missing=tuple(items), documents=(),
        intake=case.status == CaseStatus.NEEDS_REVIEW)  # held: no receipt was given
    return _queue(
        conn, cfg, case, Purpose.SUPPLEMENT, [case.applicant_email or ""],
        f"[{case.code}] Yêu cầu bổ sung, hoàn thiện hồ sơ", "", [], [], [],
        key=utcnow().strftime("%Y%m%d%H%M%S%f"), in_reply_to=origin, allowed=allowed,
        rendered=completeness.render(fields, cfg.rules.dir))


def apology(conn: Connection, cfg: Config, case: Any, new_date: date, reason: str,
            origin: str | None, allowed: Allowed | None = None) -> str:
    return _queue(
        conn, cfg, case, Purpose.APOLOGY, [case.applicant_email or ""],
        f"[{case.code}] Thư xin lỗi và hẹn lại ngày trả kết quả",
        "Văn bản xin lỗi và hẹn lại ngày trả kết quả",
        [f"{cfg.agency.name} xin lỗi ông/bà vì chưa thể trả kết quả hồ sơ mã {case.code} "
         f"đúng hẹn ngày {case.deadline:%d/%m/%Y}.", f"Lý do: {reason}."],
        [("Mã hồ sơ", case.code), ("Ngày hẹn trả kết quả mới", f"{new_date:%d/%m/%Y}")],
        ["Rất mong ông/bà thông cảm. Xin trân trọng cảm ơn."],
        key="once", in_reply_to=origin, allowed=allowed)


def reminder(conn: Connection, cfg: Config, case: Any, to: list[str], left: int,
             today: date, allowed: Allowed | None = None) -> str:
    return _queue(
        conn, cfg, case, Purpose.REMINDER, to,
        f"[{case.code}] Nhắc hạn giải quyết hồ sơ: còn {left} ngày làm việc",
        "Nhắc hạn giải quyết hồ sơ",
        [f"Hồ sơ mã {case.code} đến hạn trả kết quả ngày {case.deadline:%d/%m/%Y}, còn "
         f"{left} ngày làm việc."],
        [("Mã hồ sơ", case.code), ("Thủ tục", case.procedure or ""),
         ("Người nộp", case.applicant_name or ""), ("Trạng thái", _status(case.status))],
        ["Đề nghị đơn vị chủ trì khẩn trương giải quyết; nếu không kịp, báo Văn phòng để gửi "
         "văn bản xin lỗi và hẹn lại trước khi hết hạn."],
        key=today.isoformat(), allowed=allowed)


def review_reminder(conn: Connection, cfg: Config, case: Any, to: list[str],
                    left: int | None, today: date, allowed: Allowed | None = None) -> str:
    """A dossier held for the clerk's decision still waits (no receipt slip or request to
    complete it went to the applicant): each working day, to the clerks and the Chief of
    Office. `left`: working days to its appointment, None when it has none yet."""
    due = (f"Hạn trả kết quả ngày {case.deadline:%d/%m/%Y}, còn {left} ngày làm việc "
           "(tính từ lúc nhận hồ sơ)." if case.deadline is not None and left is not None
           else "Chưa xác định được thủ tục nên chưa có ngày hẹn trả kết quả.")
    opened = case.opened_at.astimezone(cfg.agency.tz)
    return _queue(
        conn, cfg, case, Purpose.REMINDER, to,
        f"[{case.code}] Hồ sơ chờ văn thư kiểm tra từ ngày {opened:%d/%m/%Y}",
        "Hồ sơ chờ văn thư kiểm tra",
        [f"Hồ sơ mã {case.code} nhận lúc {opened:%H:%M %d/%m/%Y} đang chờ văn thư kiểm tra "
         "tính đầy đủ; người nộp chưa nhận được giấy tiếp nhận hay phiếu yêu cầu bổ sung.", due],
        [("Mã hồ sơ", case.code), ("Thủ tục", case.procedure or "chưa xác định"),
         ("Người nộp", case.applicant_name or ""), ("Trạng thái", _status(case.status))],
        [f"Văn thư quyết định bằng lệnh «vanthu case accept {case.code}» (thêm «--procedure "
         f"MÃ_THỦ_TỤC» khi chưa xác định thủ tục) hoặc «vanthu case request-supplement "
         f"{case.code} --items …»."],
        key=f"review-{today.isoformat()}", allowed=allowed)


def _status(status: str) -> str:
    """A case status as the clerk reads it."""
    from daemon.office.cases import STATUS_NAMES  # cases sends these letters

    return STATUS_NAMES.get(CaseStatus(status), status) if status in set(CaseStatus) \
        else status


def assignment(conn: Connection, cfg: Config, case: Any, to: list[str], lead_name: str,
               deadline: date | None, at: datetime, allowed: Allowed | None = None) -> str:
    rows = [("Mã hồ sơ", case.code), ("Thủ tục", case.procedure or ""),
            ("Người nộp", case.applicant_name or ""), ("Đơn vị chủ trì", lead_name)]
    if deadline:
        rows.append(("Hạn giải quyết", f"{deadline:%d/%m/%Y}"))
    return _queue(conn, cfg, case, Purpose.ASSIGN, to, f"[Giao xử lý] [{case.code}] "
                  f"{case.procedure or 'Hồ sơ'}", "Phiếu giao xử lý hồ sơ",
                  ["Văn phòng chuyển hồ sơ để đơn vị giải quyết."], rows, [],
                  key=at.strftime("%Y%m%d%H%M%S"), allowed=allowed)
