"""A mail judged on an older snapshot is judged again in the writing transaction only when a
question it asked about cases (a case code, a thread's Message-ID, an email of ours, a case's
secrecy) gets another answer now: a judgement is a function of the reading, the configuration
and those answers. Real SQLite file, the real pipeline, the public corpus's dossier 017."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Engine, func, insert, select

from daemon import pipeline
from daemon.config import Config
from daemon.db import cases, make_engine, messages, trusted_senders, upgrade
from daemon.intake.store import Fetched, MailStore, checkpoint, store_batch
from daemon.models import State
from daemon.pipeline import process_pending
from daemon.routing import rules as rules_module
from daemon.routing.route import decide
from daemon.understand import Asked, judge
from tests.conftest import RULES
from tests.desk import DOCUMENT, Desk
from tests.test_same_batch import setting, thread
from tests.test_trusted_senders import CLERK, DOMAIN, WHY, unauthenticated


class Answers:
    """A CaseLookup answering from a table: (question, about) -> answer."""

    def __init__(self, table: dict[tuple[str, str], Any]) -> None:
        self.table = table
        self.asked = 0

    def _answer(self, question: str, about: str) -> Any:
        self.asked += 1
        return self.table.get((question, about))

    def case_exists(self, code: str) -> bool:
        return bool(self._answer("case_exists", code))

    def case_of_message_id(self, message_id: str) -> str | None:
        return self._answer("case_of_message_id", message_id)  # type: ignore[no-any-return]

    def is_our_message(self, message_id: str) -> bool:
        return bool(self._answer("is_our_message", message_id))

    def case_secrecy(self, code: str) -> str | None:
        return self._answer("case_secrecy", code)  # type: ignore[no-any-return]


QUESTIONS = ["case_exists", "case_of_message_id", "is_our_message", "case_secrecy"]
# Vietnamese codes and ids, empty ones, and ones that differ only in case or tone marks.
ABOUT = st.sampled_from(["HS-2026-0001", "hs-2026-0001", "", "<a@b>", "<A@b>", "Hồ sơ 1",
                         "Hồ sơ 1\u0301", "<bổ-sung@x.vn>"])
ANSWER = st.one_of(st.none(), st.booleans(), st.sampled_from(["HS-2026-0001", "Mật", "Tối mật"]))


@given(before=st.dictionaries(st.tuples(st.sampled_from(QUESTIONS), ABOUT), ANSWER),
       asked=st.lists(st.tuples(st.sampled_from(QUESTIONS), ABOUT), max_size=12),
       changed=st.tuples(st.sampled_from(QUESTIONS), ABOUT), answer=ANSWER)
def test_the_same_answers_to_the_questions_asked_and_only_those(
        before: dict[tuple[str, str], Any], asked: list[tuple[str, str]],
        changed: tuple[str, str], answer: Any) -> None:
    lookup = Asked(Answers(before))
    for question, about in asked:
        getattr(lookup, question)(about)
    assert lookup.same(Answers(dict(before)))
    table = {**before, changed: answer}
    now = Answers(table)
    # It differs when the changed question was asked and now gets another answer.
    differs = changed in lookup.answers and \
        getattr(Answers(table), changed[0])(changed[1]) != lookup.answers[changed]
    assert lookup.same(now) is not differs
    assert now.asked <= len(lookup.answers)  # never more questions than were asked


def other_mail(number: int) -> bytes:
    """A person's question: no case code, no thread, nothing recorded can change its kind."""
    msg = EmailMessage()
    msg["From"] = f"Nguyễn Thị Hoà {number} <hoa{number}@gmail.com>"
    msg["To"] = "vanthu.sxd@tayninh.gov.vn"
    msg["Subject"] = f"Hỏi về giờ làm việc của bộ phận một cửa ({number})"
    msg["Message-ID"] = f"<hoi-{number}@gmail.com>"
    msg["Date"] = f"Thu, 19 Mar 2026 09:{number:02d}:00 +0700"
    msg.set_content("Xin hỏi bộ phận một cửa làm việc đến mấy giờ chiều thứ Bảy?")
    return msg.as_bytes()


def stored(folder: Path, mails: list[bytes], cfg: Config | None = None
           ) -> tuple[Engine, Config, MailStore]:
    """A new SQLite database in `folder` with `mails` stored as one fetch."""
    cfg = cfg or setting(folder)
    engine = make_engine(f"sqlite:///{folder / 'vanthu.db'}")
    upgrade(engine)
    store = MailStore(cfg.storage.data_dir)
    checkpoint(engine, "m", "INBOX", 1)
    store_batch(engine, store, mailbox="m", folder="INBOX", uidvalidity=1,
                batch=[Fetched(uid, raw) for uid, raw in enumerate(mails, 1)])
    return engine, cfg, store


def counting(monkeypatch: pytest.MonkeyPatch, name: str,
             original: Callable[..., Any]) -> list[int]:
    """Count the pipeline's calls of its `name` (the function `original`): [calls so far]."""
    calls = [0]

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(pipeline, name, counted)
    return calls


def run(tmp_path: Path, mails: list[bytes],
        monkeypatch: pytest.MonkeyPatch) -> tuple[int, int]:
    """Process `mails` stored as one batch; return how many times a mail was judged, and how
    many cases there are after."""
    engine, cfg, store = stored(tmp_path, mails)
    judged = counting(monkeypatch, "judge", judge)
    assert process_pending(engine, cfg, store, rules_module.load(RULES)) == len(mails)
    with engine.connect() as conn:
        left = conn.scalar(select(func.count()).select_from(messages)
                           .where(messages.c.state == State.STORED))
        made = conn.scalar(select(func.count()).select_from(cases))
    engine.dispose()
    assert left == 0
    return judged[0], int(made or 0)


def test_mails_nothing_recorded_can_change_are_judged_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mails = [other_mail(n) for n in range(1, 7)]
    judged, made = run(tmp_path, mails, monkeypatch)
    assert (judged, made) == (len(mails), 0)


def test_a_supplement_whose_thread_was_recorded_meanwhile_is_judged_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mails = thread(3)  # the dossier, then three supplements each answering the one before
    judged, made = run(tmp_path, mails, monkeypatch)
    # Each supplement asked about a thread the dossier's recording answered: judged again,
    # and it joined the one case instead of opening one of its own.
    assert made == 1
    assert len(mails) < judged <= 2 * len(mails)


def test_mails_judged_the_same_and_not_held_are_routed_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A mail judged again with the same answers, and not held, keeps what was made of it: its
    routing is a function of the judgement, the mail and the call's rules, so it is not
    routed a second time in the writing transaction."""
    mails = [other_mail(n) for n in range(1, 7)]
    engine, cfg, store = stored(tmp_path, mails)
    routed = counting(monkeypatch, "decide", decide)
    assert process_pending(engine, cfg, store, rules_module.load(RULES)) == len(mails)
    engine.dispose()
    assert routed == [len(mails)]


def test_a_held_mail_judged_the_same_still_meets_a_domain_trusted_meanwhile(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Held mails are looked at again in the writing transaction even when judged the same:
    a clerk may have trusted their domain since they were judged. The first of the batch is
    recorded on what it was judged (nothing was recorded before it); the ones after it go on."""
    desk = Desk(tmp_path)
    desk.receive(*[unauthenticated(f"vanthu@{DOMAIN}", f"Công văn {n}/UBND-KT",
                                   DOCUMENT.replace("1000", str(n)))
                  for n in range(1001, 1005)])
    original = pipeline.prepare

    def then_trusted(*args: Any, **kwargs: Any) -> Any:
        found = original(*args, **kwargs)
        with desk.engine.begin() as conn:  # the clerk, between judging and recording
            conn.execute(insert(trusted_senders).values(
                domain=DOMAIN, address=f"vanthu@{DOMAIN}", trusted_by=CLERK,
                trusted_at=datetime(2026, 11, 26, 2, 0, tzinfo=UTC), reason=WHY))
        return found

    monkeypatch.setattr(pipeline, "prepare", then_trusted)
    desk.process()
    states = [row.state for row in desk.rows()]  # type: ignore[attr-defined]
    assert states[0] == State.QUARANTINED
    assert all(state in (State.ROUTED, State.DONE) for state in states[1:]), states
