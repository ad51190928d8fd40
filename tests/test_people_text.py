"""What a clerk reads is Vietnamese, in local time: every human-facing command run on real data
(held mail of each kind, a dossier held for review, a corpus mail) shows no English hold reason
and no UTC time; and the sender-header doubts of any hostile From are Vietnamese."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from daemon.cli import main
from daemon.db import cases, messages
from daemon.models import State
from daemon.office import digest
from daemon.pipeline import Failed, Stored, shunt
from daemon.understand.identity import identity, raw_headers
from tests.conftest import CORPUS
from tests.desk import DOCUMENT, Desk, mail
from tests.test_completeness import _config

# Words of the English reasons vanthu used to show people (function words and the nouns of
# header defects, authentication verdicts and case events); header names such as From,
# Reply-To, DKIM or Authentication-Results are names, not English.
ENGLISH = re.compile(
    r"\b(the|of|for|at|by|with|not|is|has|and|no|domain|header|headers|mailbox|mailboxes|"
    r"address|parsed|imitates|imitating|leads|differs|signature|verified|aligned|received|"
    r"acknowledged|forwarded|held_for_review|needs_review|quarantine|status|kind|rule|match|"
    r"applicant|subject|from)\b")
UTC_ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d")


def english(text: str) -> list[str]:
    """The English words of `text`, e-mail addresses, URLs and a technical error quoted as
    such ("lỗi kỹ thuật: …", what a program said) and the commands to type aside."""
    bare = re.sub(r"\S+@\S+|https?://\S+|<[^>]*>|lỗi kỹ thuật: [^)]*|vanthu( [a-z-]+)+|"
                  r"case [a-z-]+|--[a-z-]+", " ", text)
    return ENGLISH.findall(bare)


def _office(desk: Desk) -> dict[str, int]:
    """Held mail of each class, and a dossier held for review."""
    desk.receive(
        mail("vanthu@tayninh.gov.vn", "Công văn 1000/UBND-KT", DOCUMENT, authenticated=False),
        mail("vanthu@sxd-tayninh-gov.vn", "Công văn 1001/UBND-KT",
             DOCUMENT.replace("1000", "1001")),
        mail("Văn thư UBND <vanthu@ubnd.tayninh.gov.vn>, ke.gian@gmail.com",
             "Công văn 1002/UBND-KT", DOCUMENT.replace("1000", "1002")),
        (CORPUS / "039.eml").read_bytes())
    desk.process()
    rows = desk.rows()
    held = {str(r.subject): int(r.id) for r in rows  # type: ignore[attr-defined]
            if r.state == State.QUARANTINED}  # type: ignore[attr-defined]
    first = rows[0]
    with desk.engine.begin() as conn:  # one more that could not be read at all
        shunt(conn, desk.cfg, Failed(Stored(first.id, first.sha256,  # type: ignore[attr-defined]
                                            first.stored_at, 0,  # type: ignore[attr-defined]
                                            first.stored_at),  # type: ignore[attr-defined]
                                     "BadMessage: the message has no header section",
                                     permanent=True))
    return held


def test_every_command_for_people_speaks_vietnamese_in_local_time(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    desk = Desk(tmp_path)
    held = _office(desk)
    config = _config(desk, tmp_path)
    tz = desk.cfg.agency.tz
    with desk.engine.connect() as conn:
        code = conn.execute(select(cases.c.code)).scalar()
        stored = conn.execute(select(messages.c.id, messages.c.stored_at)
                              .where(messages.c.state == State.QUARANTINED)).all()
    assert len(stored) >= 3 and code

    shown: dict[str, str] = {}
    assert main(["quarantine", "list", "--config", config]) == 0
    shown["quarantine list"] = capsys.readouterr().out
    for pk in sorted({pk for pk, _ in stored}):
        assert main(["quarantine", "show", str(pk), "--config", config]) == 0
        shown[f"quarantine show {pk}"] = capsys.readouterr().out
    assert main(["case", "show", str(code), "--config", config]) == 0
    shown["case show"] = capsys.readouterr().out
    now = datetime.now(UTC)
    report = digest.build(desk.engine, desk.cfg, desk.rules, now - timedelta(days=1), now).text
    shown["digest"] = report
    raw = tmp_path / "gia-mao.eml"
    raw.write_bytes(mail("vanthu@sxd-tayninh-gov.vn", "Công văn 9/UBND", DOCUMENT))
    assert main(["inspect", str(raw), "--config", config]) == 0
    shown["inspect"] = capsys.readouterr().out

    for command, text in shown.items():
        assert not UTC_ISO.search(text), (command, text)
        # Only what vanthu writes is checked: the mail's own subject and text are the mail's.
        ours = [line for line in text.splitlines()
                if not line.lstrip().startswith(("|", "Tiêu đề", "Người gửi", "Quy tắc"))]
        for line in ours:
            assert not english(line), (command, line, english(line))
    for _, at in stored:
        local = f"{at.astimezone(tz):%H:%M %d/%m/%Y}"
        assert local in shown["quarantine list"], local
    assert "không đọc hoặc không xử lý được thư" in shown["quarantine list"]
    assert any("Không cho đi tiếp được như vậy" in t for t in shown.values())
    assert "Lịch sử:" in shown["case show"] and "Chờ văn thư kiểm tra" in shown["case show"]
    assert "Loại thư:  Thư rác" in shown["inspect"]
    assert "GIỮ LẠI CHỜ VĂN THƯ: Thư giả danh cơ quan nhà nước (lừa đảo): tên miền người gửi " \
        "giả" in shown["inspect"]
    assert held  # the fixtures held what they should


# Hostile From and Sender headers: every doubt identity names is in Vietnamese.
_PIECES = st.sampled_from([
    "From: a@x.gov.vn", "From: A <a@x.gov.vn>, B <b@gmail.com>", "From: nhóm: a@x.gov.vn;",
    "From: \"ubnd@tayninh.gov.vn\" <ke@gmail.com>", "From: <@tayninh.gov.vn:ke@gmail.com>",
    "From: =?utf-8?b?dWJuZEB0YXluaW5oLmdvdi52bg==?= <ke@gmail.com>",
    "From: \"a@b\"@gmail.com", "From : a@x.gov.vn", "From: ((((((((a))))))))) a@x.vn",
    "From: Nguyễn Văn Á <á@x.vn>", "Sender: other@gmail.com", "Sender: a@x.gov.vn, b@y.vn",
    "From: \u202eUBND <a@x.gov.vn>", "From:", "From: <>", "Reply-To: ke@gmail.com",
    "From: " + "a" * 5000 + "@x.vn",
])


@settings(max_examples=60, deadline=None)
@given(st.lists(_PIECES, min_size=1, max_size=4))
def test_sender_doubts_are_vietnamese(headers: list[str]) -> None:
    raw = ("\r\n".join(headers) + "\r\nSubject: x\r\n\r\nXin chào.\r\n").encode("utf-8")
    who = identity(raw_headers(raw))
    for problem in (*who.problems, *who.facts):
        assert not english(problem), (headers, problem)
