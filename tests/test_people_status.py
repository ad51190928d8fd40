"""`vanthu status`, `register list` and the explanations of machine mail, as people read them:
Vietnamese, times in the agency's zone (dd/mm/yyyy HH:MM), each cause's key in brackets; the
--json report keeps its English keys and ISO times. Extends tests/test_people_text.py."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import insert, update

from daemon import config
from daemon.cli import main
from daemon.db import checkpoints, health, outbox, trusted_senders
from daemon.models import Kind, OutboxState
from daemon.understand import NoCases, understand
from tests.conftest import CORPUS
from tests.desk import Desk
from tests.test_completeness import _config
from tests.test_people_text import UTC_ISO, _office, english

# The English words `vanthu status` and the machine-mail explanations used to show people.
REMOVED = re.compile(
    r"\b(version|next_jobs|digest|reminders|messages|outbox|trusted_senders|folder|last_uid|"
    r"last_fetch_at|last_error|outbox_pending|outbox_failed|outbox_refused|faults|ocr|"
    r"enabled|why|problems|warnings|attempts|since|pending|sent|failed|quarantined|routed|"
    r"stored|done|dropped|True|False|None|our|own|email|came|back|carries|answer|answers|"
    r"answering|original|attached|names|null|return|path|machine|looks|automatic|part|"
    r"delivery|failure|report|mailer|daemon|text|case|code|belongs|quoted|forwarded|body)\b")
# What the mail itself says, quoted by vanthu as evidence: a Python-quoted subject or phrase,
# a header's name and value ("Auto-Submitted: auto-replied", "message/delivery-status"), a
# cause's key in brackets, an address or a Message-ID.
_EVIDENCE = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|\[[a-z_]+\]|<[^>]*>|\S+@\S+|"
                       r"\S*[-/=_]\S*")


def foreign(text: str) -> list[str]:
    """The English words in what vanthu wrote (evidence quoted from the mail aside)."""
    bare = _EVIDENCE.sub(" ", text)
    return english(bare) + REMOVED.findall(bare)


FETCHED = datetime(2026, 3, 5, 1, 2, tzinfo=UTC)  # 08:02 on 5 March in Hồ Chí Minh City
FAULT = datetime(2026, 3, 4, 17, 30, tzinfo=UTC)  # 00:30 on 5 March: the local day differs
QUEUED = datetime(2026, 3, 4, 23, 59, tzinfo=UTC)
TRUSTED = datetime(2026, 3, 5, 16, 45, tzinfo=UTC)


def _troubles(desk: Desk) -> None:
    """A mailbox with an error, a fault, an email that failed, one retrying, one refused for a
    recipient, and a trusted sender: every list of `vanthu status` has a row."""
    def row(n: int, state: OutboxState, error: str, **more: Any) -> Any:
        return insert(outbox).values(**{
            "header_message_id": f"<{n}.forward@sxd.example.gov.vn>", "action": "forward",
            "recipients": ["giamdoc.sxd@tayninh.gov.vn"],
            "state": state, "attempts": 2, "tries_begun": 2, "last_error": error,
            "next_attempt_at": QUEUED, "created_at": QUEUED, **more})

    with desk.engine.begin() as conn:
        conn.execute(update(checkpoints).values(
            last_fetch_at=FETCHED, last_error="Mất kết nối tới máy chủ thư", last_error_at=FETCHED))
        conn.execute(insert(health).values(component="smtp", problem="421 Hệ thống đang bảo trì",
                                           since=FAULT, updated_at=FETCHED))
        conn.execute(row(1, OutboxState.FAILED, "550 5.1.1 Hộp thư không tồn tại"))
        conn.execute(row(2, OutboxState.PENDING, "451 Tạm thời chưa nhận thư"))
        conn.execute(row(3, OutboxState.SENT, "", refused={"pho.gd@tayninh.gov.vn":
                                                           "550 Người nhận bị từ chối"},
                         recipients=["giamdoc.sxd@tayninh.gov.vn", "pho.gd@tayninh.gov.vn"]))
        conn.execute(insert(trusted_senders).values(
            domain="xatanchau.tayninh.gov.vn", address="vanthu@xatanchau.tayninh.gov.vn",
            trusted_by="Nguyễn Thị Ánh", trusted_at=TRUSTED, reason="Máy chủ xã chưa ký DKIM"))


def test_status_for_people_is_vietnamese_in_local_time_json_unchanged(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    desk = Desk(tmp_path)
    _office(desk)
    _troubles(desk)
    path = _config(desk, tmp_path)

    code = main(["status", "--config", path])
    text = capsys.readouterr().out
    assert main(["status", "--json", "--config", path]) == code == 1
    report = json.loads(capsys.readouterr().out)

    assert not UTC_ISO.search(text), text
    for line in text.splitlines():
        assert not foreign(line), (line, foreign(line))
    for shown in ("Thư đến: 3 đang giữ lại chờ văn thư xem, 1 đã vào sổ và chuyển đi",
                  "Thư đang giữ lại chờ văn thư: 3",
                  "m/INBOX: lấy thư lần cuối lúc 05/03/2026 08:02, UID cuối 4; "
                  "lỗi kỹ thuật: Mất kết nối tới máy chủ thư",
                  "421 Hệ thống đang bảo trì (từ 05/03/2026 00:30) [smtp]",
                  " chuyển văn bản → giamdoc.sxd@tayninh.gov.vn (đã thử 2 lần, tạo lúc "
                  "05/03/2026 06:59): 550 5.1.1 Hộp thư không tồn tại",
                  " chuyển văn bản → giamdoc.sxd@tayninh.gov.vn (đã thử 2 lần, tạo lúc "
                  "05/03/2026 06:59): 451 Tạm thời chưa nhận thư",
                  "pho.gd@tayninh.gov.vn: 550 Người nhận bị từ chối",
                  "xatanchau.tayninh.gov.vn (bởi Nguyễn Thị Ánh, 05/03/2026 23:45)",
                  "Vấn đề cần xử lý:", "[outbox_failed]", "Tình trạng: CÓ"):
        assert shown in text, (shown, text)
    assert text.count("\n  #") == 3  # the failed, the retrying and the refused email

    # --json is what tools read: English keys and states, ISO times in UTC, as before.
    assert set(report) >= {"version", "next_jobs", "messages", "outbox", "quarantine",
                           "trusted_senders", "mailboxes", "outbox_pending", "outbox_failed",
                           "outbox_refused", "faults", "ocr", "problems", "causes",
                           "warnings", "healthy"}
    assert report["messages"] == {"quarantined": 3, "routed": 1}
    assert report["outbox"]["failed"] == 1 and report["outbox"]["pending"] >= 1
    assert report["mailboxes"][0]["last_fetch_at"] == FETCHED.isoformat()
    assert report["faults"] == [{"component": "smtp", "problem": "421 Hệ thống đang bảo trì",
                                 "since": FAULT.isoformat()}]
    assert report["outbox_failed"][0]["created_at"] == QUEUED.isoformat()
    assert report["trusted_senders"][0]["domain"] == "xatanchau.tayninh.gov.vn"
    assert datetime.fromisoformat(report["next_jobs"]["digest"]).utcoffset() is not None


def test_register_list_in_local_time(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    desk = Desk(tmp_path)
    _office(desk)
    path = _config(desk, tmp_path)
    (entry,) = desk.entries()
    received = entry.received_at  # type: ignore[attr-defined]

    assert main(["register", "list", "--year", str(received.year), "--config", path]) == 0
    text = capsys.readouterr().out
    assert f"{received.astimezone(desk.cfg.agency.tz):%d/%m/%Y %H:%M}" in text
    assert not UTC_ISO.search(text)
    for line in text.splitlines():
        assert not foreign(line), (line, foreign(line))


def test_inspect_explains_machine_mail_in_vietnamese(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The corpus's auto-replies, bounces and mailing-list mail through `vanthu inspect`."""
    desk = Desk(tmp_path)
    path = _config(desk, tmp_path)
    for name, kind in (("009", "Thư trả lời tự động"), ("024", "Thư báo lỗi"),
                       ("031", "Thư trả lời tự động"), ("033", "Thư báo lỗi"),
                       ("020", "Thư hàng loạt"), ("043", "Thư hàng loạt"),
                       ("008", "Văn bản đến")):
        assert main(["inspect", str(CORPUS / f"{name}.eml"), "--config", path]) == 0
        text = capsys.readouterr().out
        first = text.splitlines()[0]
        assert first.startswith(f"Loại thư:  {kind}  ("), (name, first)
        ours = [line for line in text.splitlines()
                if not line.lstrip().startswith(("Tiêu đề", "Người gửi", "Quy tắc", "Trích yếu"))]
        for line in ours:
            assert not foreign(line), (name, line, foreign(line))
    assert "trong nội dung thư" in first and "Đọc từ             nội dung thư" in text


CFG = config.parse({}, file="t", text="", base=Path("."))
OWN = min(CFG.own_addresses)
OURS = f"<7f3a.acknowledge@{CFG.agency.message_id_domain}>"
# Every mark of machine mail vanthu knows, as headers (and a sender where one counts).
_MARKS = st.sampled_from([
    ("Auto-Submitted: auto-replied (vacation)",), ("Precedence: auto_reply",),
    ("X-Auto-Response-Suppress: All",), ("X-Autoreply: yes",), ("X-Autogenerated: Reply",),
    ("Return-Path: <>",), ("X-Failed-Recipients: ong.a@gmail.com",),
    ("List-Id: Bản tin Sở <bantin.tayninh.gov.vn>",), ("List-Unsubscribe: <mailto:x@y.vn>",),
    ("Precedence: bulk",), (f"X-Loop: {OWN.upper()}",),
    (f"Message-ID: {OURS}",), (f"In-Reply-To: {OURS}", "X-Loop: responder@x.vn"),
    ("From: MAILER-DAEMON@mx.tayninh.gov.vn", "Return-Path: <>"),
    ("Content-Type: multipart/report; report-type=delivery-status; boundary=x",),
])
_SUBJECTS = st.sampled_from([
    "Trả lời tự động: Công văn 1000/UBND-KT", "Undelivered Mail Returned to Sender",
    "Thư không gửi được: Hồ sơ HS-2026-000123", "Re: [HS-2026-000123] Giấy tiếp nhận",
    "Out of office", "Bản tin tuần 12 \"Sở Xây dựng\" 'mới'", "Vắng mặt đến 20/3",
    "Delivery Status Notification (Failure)",
]) | st.text(alphabet="àáảãạăằắẳẵặâầấẩẫậđèéẻẽẹêềếểễệ ÀĐƯơư'\"\\\t", max_size=40)
_BODIES = st.sampled_from([
    "Tôi đang đi công tác, sẽ trả lời sau.",
    "This is the mail system at host mx.tayninh.gov.vn. Your message could not be delivered.",
    "Thư của bạn không gửi được tới người nhận.", "",
])


@settings(max_examples=80, deadline=None)
@given(marks=st.lists(_MARKS, min_size=1, max_size=3), subject=_SUBJECTS, body=_BODIES)
def test_machine_mail_is_explained_in_vietnamese(marks: list[tuple[str, ...]], subject: str,
                                                 body: str) -> None:
    headers = {line.partition(":")[0]: line for mark in marks for line in mark}
    headers.setdefault("From", "From: Văn thư UBND <vanthu@ubnd.tayninh.gov.vn>")
    headers.setdefault("Message-ID", "Message-ID: <1@ubnd.tayninh.gov.vn>")
    plain = "Content-Type" not in headers
    raw = ("\r\n".join([*headers.values(), "To: vanthu.sxd@tayninh.gov.vn",
                        "Subject: " + " ".join(subject.split()), "MIME-Version: 1.0",
                        *(["Content-Type: text/plain; charset=utf-8"] if plain else []), "",
                        body if plain else f"--x\r\nContent-Type: text/plain; charset=utf-8"
                        f"\r\n\r\n{body}\r\n--x--", ""])).encode("utf-8")
    _, und = understand(raw, CFG, NoCases())
    assert und.kind in (Kind.AUTO, Kind.BOUNCE, Kind.BULK), (marks, und.kind, und.why)
    assert und.why and not foreign(und.why), (marks, subject, und.why, foreign(und.why))
