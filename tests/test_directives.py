"""The leader's directive by reply (bút phê): reading the instruction (pure, property-tested)
and what it does on the real pipeline (Desk) and on the real servers (Office)."""

from __future__ import annotations

import email
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from daemon.db import cases, messages, outbox, register_entries
from daemon.intake.store import Fetched, store_batch
from daemon.office.directives import own_text, read_directive
from daemon.routing.rules import Department
from daemon.textnorm import strip_accents
from tests.conftest import CORPUS, Office
from tests.desk import DOCUMENT, Desk
from tests.desk import mail as desk_mail

VN = ZoneInfo("Asia/Ho_Chi_Minh")
DIRECTOR = "giamdoc.sxd@example.gov.vn"
DEPUTY = "pgd.cuong.sxd@example.gov.vn"
CHIEF = "cvp.sxd@example.gov.vn"
QLXD = "qlxd.sxd@example.gov.vn"
VP = "vanphong.sxd@example.gov.vn"
ARRIVED = datetime(2026, 11, 10, 9, 0, tzinfo=VN)  # Tuesday

# Departments as an agency lists them (the shipped two and two more of a Sở Xây dựng).
UNITS = {d.id: d for d in (
    Department("qlxd", "Phòng Quản lý xây dựng", QLXD, None),
    Department("van_phong", "Văn phòng Sở", VP, None),
    Department("khtc", "Phòng Kế hoạch - Tài chính", "khtc.sxd@example.gov.vn", None),
    Department("thanh_tra", "Thanh tra Sở", "thanhtra.sxd@example.gov.vn", None),
)}


def calendar() -> Any:
    from daemon import config

    return config.parse({}, file="t", text="", base=Path(".")).calendar.work_calendar()


WORK = calendar()
TODAY = date(2026, 11, 26)

# ---------------------------------------------------------------------------------------------
# Reading (pure).

EXAMPLES = [
    ("Giao phòng QLXD chủ trì, Văn phòng phối hợp, hạn 10/12", "qlxd", ("van_phong",),
     date(2026, 12, 10), None),
    ("Chuyển P.KHTC xử lý, báo cáo trước ngày 15/12/2026", "khtc", (), date(2026, 12, 15), None),
    ("Đồng ý. Giao Phòng Quản lý xây dựng tham mưu, thời hạn 5 ngày làm việc", "qlxd", (),
     WORK.add_working_days(TODAY, 5), 5),
    ("giao p. qlxd chu tri, VP phoi hop, han ngay 10 thang 12 nam 2026", "qlxd", ("van_phong",),
     date(2026, 12, 10), None),
    ("Giao QLXD chủ trì, phối hợp với Văn phòng và Thanh tra Sở; hạn 05/01", "qlxd",
     ("van_phong", "thanh_tra"), date(2027, 1, 5), None),
    ("Văn phòng phối hợp, Phòng QLXD chủ trì giải quyết trong 7 ngày", "qlxd", ("van_phong",),
     TODAY + timedelta(days=7), None),
    ("PQLXD chủ trì, theo công văn ngày 09/11/2026", "qlxd", (), None, None),
]


@pytest.mark.parametrize("text,lead,cooperate,deadline,days", EXAMPLES)
def test_the_examples_are_read(text: str, lead: str, cooperate: tuple[str, ...],
                               deadline: date | None, days: int | None) -> None:
    found = read_directive(text, UNITS, TODAY, WORK)
    assert found.readable, found.problems
    assert (found.lead, found.cooperate, found.deadline, found.days) == (
        lead, cooperate, deadline, days)
    assert found.text == text


@pytest.mark.parametrize("text,problem", [
    ("Đã xem.", "không nhận ra phòng"),
    ("Giao QLXD chủ trì, hạn 10/12, báo cáo trước 15/12", "nhiều thời hạn khác nhau"),
    ("Giao QLXD chủ trì, Văn phòng chủ trì", "nhiều đơn vị cùng được giao chủ trì"),
    ("Văn phòng phối hợp", "không rõ đơn vị chủ trì"),
    ("Giao QLXD chủ trì, hạn 31/02", "không có ngày 31/02"),
    ("Giao QLXD chủ trì, hạn 20/11/2026", "đã qua"),
    ("Giao QLXD chủ trì trong 999999 ngày làm việc", "không hợp lệ"),
    ("Giao phòng Kế toán chủ trì", "không nhận ra phòng"),
])
def test_what_cannot_be_read_says_why(text: str, problem: str) -> None:
    found = read_directive(text, UNITS, TODAY, WORK)
    assert not found.readable and any(problem in p for p in found.problems), found


def _variants(unit: Department) -> list[str]:
    """Ways people write a department: the name, lower case, without accents, 'P.' and
    'Phòng' with the short name, the short name alone."""
    short = {"qlxd": "QLXD", "khtc": "KHTC"}.get(unit.id)
    names = [unit.name, unit.name.lower(), unit.name.upper(), strip_accents(unit.name)]
    if short:
        names += [short, short.lower(), f"P.{short}", f"P. {short}", f"phòng {short}",
                  f"Phòng {short}", f"P{short}"]
    if unit.id == "van_phong":
        names += ["VP", "Văn phòng", "văn phòng", "VP Sở", "Van phong"]
    if unit.id == "thanh_tra":
        names += ["Thanh tra", "thanh tra sở"]
    return names


@st.composite
def said_date(draw: st.DrawFn) -> tuple[str, date]:
    day = draw(st.dates(min_value=TODAY, max_value=TODAY + timedelta(days=150)))
    shape = draw(st.sampled_from(["{d}/{m}", "{dd}/{mm}", "{d}/{m}/{y}", "{dd}-{mm}-{y}",
                                  "{dd}.{mm}.{y}", "ngày {d} tháng {m}",
                                  "ngày {dd} tháng {mm} năm {y}", "{dd}/{mm}/{yy}"]))
    return shape.format(d=day.day, m=day.month, dd=f"{day.day:02d}", mm=f"{day.month:02d}",
                        y=day.year, yy=f"{day.year % 100:02d}"), day


FREE = st.text(alphabet="aăâbcdđeêghiklmnoôơpqrstuưvxyáàảãạấầẩẫậếềểễệíìỉĩịóòỏõọốồổỗộớờởỡợ"
                        "úùủũụứừửữựýỳỷỹỵ ", max_size=40)


@settings(max_examples=150, deadline=None)
@given(lead=st.sampled_from(sorted(UNITS)), data=st.data(), when=said_date(),
       opening=st.sampled_from(["Giao", "Chuyển", "Đồng ý. Giao", "Đề nghị", ""]),
       role=st.sampled_from(["chủ trì", "xử lý", "tham mưu", "chu tri", "CHỦ TRÌ"]),
       cue=st.sampled_from(["hạn", "thời hạn", "báo cáo trước", "hoàn thành trước ngày",
                            "HẠN", "han"]),
       spaces=st.sampled_from([" ", "  ", "\t"]), free=FREE)
def test_any_way_of_writing_is_read(lead: str, data: st.DataObject, when: tuple[str, date],
                                    opening: str, role: str, cue: str, spaces: str,
                                    free: str) -> None:
    """Names, short names, accents or not, case, spacing, date shapes: the same directive."""
    others = sorted(set(UNITS) - {lead})
    helpers = data.draw(st.lists(st.sampled_from(others), max_size=2, unique=True))
    lead_name = data.draw(st.sampled_from(_variants(UNITS[lead])))
    helper_names = [data.draw(st.sampled_from(_variants(UNITS[h]))) for h in helpers]
    text = f"{opening} {lead_name}{spaces}{role}"
    if helper_names:
        text += f", {' và '.join(helper_names)} phối hợp"
    said, day = when
    text += f", {cue} {said}.\n{free}"
    alone = read_directive(free, UNITS, TODAY, WORK)
    assume(alone.lead is None and not alone.cooperate)  # free words naming no department
    found = read_directive(text, UNITS, TODAY, WORK)
    assert found.readable, (text, found.problems)
    assert found.lead == lead and found.cooperate == tuple(helpers), text
    assert found.deadline == day, text
    assert found.text == text.strip()


@settings(max_examples=100, deadline=None)
@given(count=st.integers(min_value=1, max_value=120), unit=st.sampled_from(sorted(UNITS)),
       shape=st.sampled_from(["thời hạn {n} ngày làm việc", "trong {n} ngày làm việc",
                              "hạn {n} ngày làm việc", "TRONG VÒNG {n} NGÀY LÀM VIỆC",
                              "hoàn thành trong {n:02d} ngày làm việc"]),
       today=st.dates(min_value=date(2025, 1, 1), max_value=date(2026, 12, 31)))
def test_working_days_are_counted_on_the_agency_calendar(count: int, unit: str, shape: str,
                                                         today: date) -> None:
    text = f"Giao {UNITS[unit].name} chủ trì, {shape.format(n=count)}"
    found = read_directive(text, UNITS, today, WORK)
    assert found.readable, found.problems
    assert found.deadline == WORK.add_working_days(today, count) and found.days == count


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=20_000))
def test_hostile_text_is_bounded(text: str) -> None:
    """Anything at all: no exception, the kept text at most 2000 characters."""
    found = read_directive(text * 5, UNITS, TODAY, WORK)
    assert len(found.text) <= 2000
    assert len(own_text(text * 5)) <= 2000


def test_a_huge_reply_is_read_quickly() -> None:
    hostile = ("Giao QLXD chủ trì phối hợp 1/1/1 " * 20_000) + "\n> " * 50_000
    found = read_directive(own_text(hostile), UNITS, TODAY, WORK)
    assert found.lead == "qlxd" and len(found.text) <= 2000


@pytest.mark.parametrize("body", [
    "Giao QLXD chủ trì, hạn 10/12\n\nVào lúc 10:00 ngày 10/11/2026, Văn thư đã viết:\n"
    "> Phiếu chuyển văn bản\n> hạn 11/12, giao Văn phòng chủ trì",
    "Giao QLXD chủ trì, hạn 10/12\n\nVào Th 3, 10 thg 11, 2026 lúc 10:00 Văn thư <\n"
    "vanthu.sxd@tayninh.gov.vn> đã viết:\n> Ngày đến: 09:00 10/11/2026",
    "Giao QLXD chủ trì, hạn 10/12\r\n\r\nFrom: Văn thư <vanthu@x>\r\nSent: Tuesday\r\n"
    "Subject: x\r\n\r\nPhiếu chuyển văn bản\r\nNgày đến: 09:00 10/11/2026",
    "Giao QLXD chủ trì, hạn 10/12\n\n---------- Forwarded message ---------\nVăn phòng chủ trì",
    "Giao QLXD chủ trì, hạn 10/12\nPhiếu chuyển văn bản\nNgày đến: 09:00 10/11/2026",
    "Giao QLXD chủ trì, hạn 10/12\n-- \nNguyễn Văn An\nĐT 0912.345.678, hạn mức 12/11",
])
def test_only_the_replys_own_text_is_read(body: str) -> None:
    assert own_text(body) == "Giao QLXD chủ trì, hạn 10/12"


# ---------------------------------------------------------------------------------------------
# On the real pipeline.


def _mail(sender: str, body: str, *, authenticated: bool = True, in_reply_to: str = "",
          message_id: str = "", subject: str = "Re: V/v triển khai kế hoạch",
          extra: dict[str, str] | None = None) -> bytes:
    return desk_mail(sender, subject, body, authenticated=authenticated,
                     message_id=message_id or f"<{abs(hash((sender, body)))}@"
                                              f"{sender.rpartition('@')[2]}>",
                     in_reply_to=in_reply_to, headers=extra)


def _entries(desk: Desk) -> list[Any]:
    return list(desk.entries())


def _out(desk: Desk, pk: int) -> list[Any]:
    return list(desk.emails_for(pk))


def _rows(desk: Desk) -> list[Any]:
    return list(desk.rows())


def _receive(desk: Desk, raw: bytes, at: datetime) -> None:
    desk.uid += 1
    store_batch(desk.engine, desk.store, mailbox="m", folder="INBOX", uidvalidity=1,
                batch=[Fetched(desk.uid, raw, internaldate=at)])


def _quoted(text: str) -> str:
    return "\n".join(f"> {line}" for line in text.splitlines())


def _reply(directive: str, document: str = DOCUMENT) -> str:
    return (f"{directive}\n\nVào lúc 09:05 ngày 10/11/2026, Sở Xây dựng đã viết:\n"
            f"{_quoted(document)}")


def _emails(desk: Desk, pk: int) -> list[tuple[str, list[str], EmailMessage]]:
    return [(r.action, r.recipients, email.message_from_bytes(r.raw, policy=policy.default))
            for r in _out(desk, pk)]


def _text(msg: EmailMessage) -> str:
    body = msg.get_body(("plain",))
    assert body is not None
    return str(body.get_content())


@pytest.fixture()
def desk(tmp_path: Path) -> Iterator[Desk]:
    desk = Desk(tmp_path)
    yield desk
    desk.engine.dispose()


def _forwarded(desk: Desk, body: str = DOCUMENT, subject: str = "V/v triển khai kế hoạch"
               ) -> str:
    """A document arrives and is forwarded to the leaders: the forward's Message-ID."""
    _receive(desk, _mail("vanphong@tayninh.gov.vn", body, subject=subject), ARRIVED)
    desk.process()
    forward = next(r for r in _out(desk, 1) if r.action in ("forward", "notify"))
    assert DIRECTOR in forward.recipients
    return str(forward.header_message_id)


def test_the_directors_directive_assigns_and_is_confirmed(desk: Desk) -> None:
    forward = _forwarded(desk)
    _receive(desk, _mail(DIRECTOR, _reply("Giao phòng QLXD chủ trì, Văn phòng phối hợp, "
                                          "hạn 10/12"), in_reply_to=forward,
                         message_id="<answer1@example.gov.vn>"), ARRIVED + timedelta(hours=2))
    desk.process()

    entry = _entries(desk)[0]
    assert len(_entries(desk)) == 1  # the answer is no new document
    assert entry.lead_department == "qlxd" and entry.cooperating == ["van_phong"]
    assert entry.deadline == date(2026, 12, 10)
    [said] = entry.directives
    assert said["by"] == DIRECTOR and said["role"] == "Giám đốc" and said["read"] is True
    assert said["text"] == "Giao phòng QLXD chủ trì, Văn phòng phối hợp, hạn 10/12"
    assert datetime.fromisoformat(said["at"]) == ARRIVED + timedelta(hours=2)
    assert {QLXD, VP} <= set(entry.recipients)
    sent = _emails(desk, 2)
    assert [(a, r) for a, r, _ in sent] == [("assign", [QLXD, VP]), ("notify", [DIRECTOR])]
    units, confirmation = sent[0][2], sent[1][2]
    assert str(units["Subject"]).startswith("[Giao xử lý] [Số đến 1/2026]")
    assert "Đơn vị chủ trì: Phòng Quản lý xây dựng" in _text(units)
    assert "hạn giải quyết: 10/12/2026" in _text(units)
    assert "Nội dung thư gốc" in _text(units)  # the document itself goes to the units
    assert str(confirmation["In-Reply-To"]) == "<answer1@example.gov.vn>"
    assert forward in str(confirmation["References"])
    body = _text(confirmation)
    assert "Đơn vị chủ trì: Phòng Quản lý xây dựng (qlxd.sxd@example.gov.vn)" in body
    assert "Đơn vị phối hợp: Văn phòng Sở" in body and "Hạn giải quyết: 10/12/2026" in body
    assert "Số, ký hiệu: 1000/UBND-KT" in body
    assert _rows(desk)[1].state == "routed"


def test_working_days_from_the_day_of_the_answer(desk: Desk) -> None:
    forward = _forwarded(desk)
    answered = datetime(2026, 11, 13, 16, 0, tzinfo=VN)  # a Friday
    _receive(desk, _mail(DEPUTY, _reply("Đồng ý. Giao Phòng Quản lý xây dựng tham mưu, thời "
                                        "hạn 5 ngày làm việc"), in_reply_to=forward), answered)
    desk.process()
    entry = _entries(desk)[0]
    assert entry.lead_department == "qlxd"
    assert entry.deadline == desk.cfg.calendar.work_calendar().add_working_days(
        date(2026, 11, 13), 5) == date(2026, 11, 20)
    assert entry.directives[0]["role"] == "Phó Giám đốc"
    assert "(5 ngày làm việc)" in _text(_emails(desk, 2)[1][2])


@pytest.mark.parametrize("authenticated_but_other_domain", [False, True])
def test_a_forged_director_assigns_nothing(desk: Desk,
                                           authenticated_but_other_domain: bool) -> None:
    """From: the Director, failing his domain's authentication (or passing another's): not
    a directive. Quoted with '>' it is other mail and ignored (done, nothing sent); quoted
    without it reads as a document from a government domain and is held for the clerk."""
    forward = _forwarded(desk)
    raw = _mail(DIRECTOR, _reply("Giao phòng QLXD chủ trì, hạn 10/12"),
                authenticated=False, in_reply_to=forward)
    if authenticated_but_other_domain:
        raw = raw.replace(b"dkim=fail header.d=example.gov.vn; dmarc=fail",
                          b"dkim=pass header.d=evil.example; dmarc=fail")
    _receive(desk, raw, ARRIVED + timedelta(hours=1))
    unquoted = _mail(DIRECTOR, "Giao phòng QLXD chủ trì, hạn 10/12\n\nFrom: Sở Xây dựng\n"
                     f"Sent: Tuesday\n\n{DOCUMENT}", authenticated=False, in_reply_to=forward)
    _receive(desk, unquoted, ARRIVED + timedelta(hours=1))
    desk.process()

    entry = _entries(desk)[0]
    assert entry.lead_department is None and entry.deadline is None
    assert entry.directives is None
    assert _out(desk, 2) == [] and _out(desk, 3) == []
    states = [r.state for r in _rows(desk)]
    assert states[1:] == ["done", "quarantined"]
    assert len(_entries(desk)) == 1


def test_an_unreadable_directive_goes_to_the_chief_of_office(desk: Desk) -> None:
    forward = _forwarded(desk)
    _receive(desk, _mail(DIRECTOR, _reply("Anh xem, trao đổi với chị Dung rồi báo lại."),
                         in_reply_to=forward), ARRIVED + timedelta(hours=1))
    desk.process()

    entry = _entries(desk)[0]
    assert entry.lead_department is None
    [said] = entry.directives
    assert said["read"] is False and said["sent_to"] == [CHIEF]
    sent = _emails(desk, 2)
    assert [(a, r) for a, r, _ in sent] == [("notify", [CHIEF]), ("notify", [DIRECTOR])]
    chief, leader = _text(sent[0][2]), _text(sent[1][2])
    assert "Anh xem, trao đổi với chị Dung rồi báo lại." in chief
    assert "không nhận ra phòng, đơn vị nào được giao" in chief
    assert "đã được chuyển đồng chí Chánh Văn phòng Phạm Thị Dung" in leader

    # The Chief of Office answers that notice with a directive: it is read on the same entry.
    notice = str(sent[0][2]["Message-ID"])
    references = f"{sent[0][2]['References']} {notice}"
    _receive(desk, _mail(CHIEF, "Giao QLXD chủ trì, hạn 20/11\n\n> ...",
                         extra={"In-Reply-To": notice, "References": references}),
             ARRIVED + timedelta(hours=3))
    desk.process()
    entry = _entries(desk)[0]
    assert entry.lead_department == "qlxd" and entry.deadline == date(2026, 11, 20)
    assert [d["by"] for d in entry.directives] == [DIRECTOR, CHIEF]


def test_the_same_answer_twice_counts_once_and_a_new_one_wins(desk: Desk) -> None:
    forward = _forwarded(desk)
    first = _reply("Giao QLXD chủ trì, hạn 10/12")
    for copy in ("a", "b"):  # delivered twice: the same Message-ID, other trace headers
        _receive(desk, _mail(DIRECTOR, first, in_reply_to=forward, message_id="<d1@example.gov.vn>",
                             extra={"X-Copy": copy}), ARRIVED + timedelta(hours=1))
    desk.process()
    assert len(_entries(desk)[0].directives) == 1
    assert len(_out(desk, 2)) == 2 and _out(desk, 3) == []

    _receive(desk, _mail(DIRECTOR, _reply("Sửa lại: giao Văn phòng chủ trì, QLXD phối hợp, "
                                          "hạn 15/12"), in_reply_to=forward,
                         message_id="<d2@example.gov.vn>"), ARRIVED + timedelta(hours=4))
    desk.process()
    entry = _entries(desk)[0]
    assert [d["lead"] for d in entry.directives] == ["qlxd", "van_phong"]
    assert entry.lead_department == "van_phong" and entry.cooperating == ["qlxd"]
    assert entry.deadline == date(2026, 12, 15)


def test_an_out_of_office_answer_is_no_directive(desk: Desk) -> None:
    forward = _forwarded(desk)
    _receive(desk, _mail(DIRECTOR, "Tôi vắng mặt đến 10/12, giao QLXD chủ trì.",
                         subject="Trả lời tự động: V/v triển khai kế hoạch",
                         in_reply_to=forward, extra={"Auto-Submitted": "auto-replied"}),
             ARRIVED + timedelta(hours=1))
    desk.process()
    assert _entries(desk)[0].directives is None
    assert _out(desk, 2) == []


def test_a_confidential_document_is_only_announced_to_the_units(desk: Desk) -> None:
    secret = DOCUMENT.replace("Số: 1000/UBND-KT", "MẬT\nSố: 1000/UBND-KT")
    forward = _forwarded(desk, secret)
    _receive(desk, _mail(DIRECTOR, "Giao QLXD chủ trì, hạn 10/12", in_reply_to=forward),
             ARRIVED + timedelta(hours=1))
    desk.process()
    entry = _entries(desk)[0]
    assert entry.book == "confidential" and entry.lead_department == "qlxd"
    sent = _emails(desk, 2)
    assert [(a, r) for a, r, _ in sent] == [("notify", [QLXD]), ("notify", [DIRECTOR])]
    units = sent[0][2]
    assert not list(units.iter_attachments())
    text = _text(units) + _text(sent[1][2])
    assert "nông thôn mới" not in text and "Giao QLXD chủ trì" not in _text(units)
    assert "hạn giải quyết: 10/12/2026" in _text(units)


def test_a_directive_on_a_dossier_sets_its_case_handler(desk: Desk) -> None:
    _receive(desk, (CORPUS / "017.eml").read_bytes(), ARRIVED)
    desk.process()
    forward = next(r.header_message_id for r in _out(desk, 1)
                   if r.action == "forward")
    _receive(desk, _mail(CHIEF, "Chuyển P.QLXD xử lý, hạn 01/12", in_reply_to=forward),
             ARRIVED + timedelta(hours=1))
    desk.process()
    assert _rows(desk)[1].state == "routed"  # not held
    with desk.engine.connect() as conn:
        case = conn.execute(select(cases)).one()
    assert case.lead_department == "qlxd" and case.deadline == date(2026, 12, 1)
    assert _entries(desk)[0].lead_department == "qlxd"


# ---------------------------------------------------------------------------------------------
# On the real servers.


def test_a_directive_by_reply_on_the_real_servers(office: Office) -> None:
    client = office.imap()
    client.append("INBOX", _mail("vanphong@tayninh.gov.vn", DOCUMENT,
                                 subject="V/v triển khai kế hoạch"), msg_time=ARRIVED)
    client.logout()
    office.run_daemon(until=lambda: office.settled(1))
    forward = next(email.message_from_bytes(m.data, policy=policy.default)
                   for m in office.smtp.messages() if DIRECTOR in m.rcpt_tos)
    assert str(forward["X-Vanthu-Action"]) == "forward"

    client = office.imap()
    client.append("INBOX", _mail(DIRECTOR, _reply("Giao phòng QLXD chủ trì, Văn phòng phối "
                                                  "hợp, hạn 10/12"),
                                 in_reply_to=str(forward["Message-ID"])),
                  msg_time=ARRIVED + timedelta(hours=2))
    client.logout()
    office.run_daemon(until=lambda: office.settled(2))

    engine = office.engine()
    with engine.connect() as conn:
        entry = conn.execute(select(register_entries)).one()
        states = conn.scalars(select(messages.c.state)).all()
        assert conn.scalar(select(outbox.c.id).where(outbox.c.state != "sent")) is None
    engine.dispose()
    assert states == ["done", "done"]
    assert entry.lead_department == "qlxd" and entry.deadline == date(2026, 12, 10)
    assert entry.directives[0]["by"] == DIRECTOR
    to_units = [m for m in office.smtp.messages() if set(m.rcpt_tos) == {QLXD, VP}]
    to_director = [m for m in office.smtp.messages() if m.rcpt_tos == [DIRECTOR]]
    assert len(to_units) == 1 and len(to_director) == 1
    confirmation = email.message_from_bytes(to_director[0].data, policy=policy.default)
    assert "Hạn giải quyết: 10/12/2026" in _text(confirmation)
    assert str(confirmation["In-Reply-To"]).endswith("@example.gov.vn>")
    units = email.message_from_bytes(to_units[0].data, policy=policy.default)
    assert str(units["X-Vanthu-Action"]) == "assign"
