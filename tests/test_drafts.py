"""The emails of recorded mails are queued as drafts in the recording transaction and
composed in the worker processes after its commit (daemon/outbound/drafts.py): every one is
made once, from what the transaction decided, and nothing is lost when the daemon dies
between the two transactions. Real SQLite files, a real worker pool, the real pipeline, the
public corpus's dossier 017."""

from __future__ import annotations

import email
import pickle
import re
from collections.abc import Iterator
from dataclasses import replace
from email import policy
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, func, select, update

from daemon.config import Config
from daemon.db import messages, outbox, outbox_bodies
from daemon.errors import EmailRefused
from daemon.intake.workers import ReadPool
from daemon.models import OutboxState, State
from daemon.outbound import outbox as outbox_module
from daemon.outbound.drafts import Drafting
from daemon.outbound.recipients import Purpose
from daemon.pipeline import process_pending
from daemon.routing import rules as rules_module
from tests.conftest import RULES
from tests.test_rethink import other_mail, stored
from tests.test_same_batch import DOSSIER, DOSSIER_ID, setting, thread


@pytest.fixture(scope="module")
def pool() -> Iterator[ReadPool]:
    made = ReadPool(setting(Path("/nonexistent")).limits)
    yield made
    made.close()


def rows(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(select(outbox, func.coalesce(outbox_bodies.c.raw, b"")
                                        .label("raw"))
                                 .join_from(outbox, outbox_bodies, isouter=True)
                                 .order_by(outbox.c.id)).all())


def shape(raw: bytes) -> tuple[str, str, str, list[str | None]]:
    """What an email says, whatever its MIME boundaries: who, what, and its files."""
    parsed = email.message_from_bytes(raw, policy=policy.default)
    return (str(parsed["To"]), str(parsed["Subject"]), str(parsed["Message-ID"]),
            [part.get_filename() for part in parsed.walk() if part.get_filename()])


class Dead(Drafting):
    """A daemon killed right after the commit that queued its drafts: nothing handed over."""

    def hand_over(self, jobs: Any) -> None:
        return None


MAILS = [*thread(2), other_mail(1), other_mail(2)]


def test_drafts_are_composed_in_the_workers_as_the_transaction_would_have(
        tmp_path: Path, pool: ReadPool) -> None:
    engine, cfg, store = stored(tmp_path / "drafts", MAILS)
    drafting = Drafting(cfg, pool, store)
    assert process_pending(engine, cfg, store, rules_module.load(RULES), pool,
                           drafting=drafting) == len(MAILS)
    inline_engine, inline_cfg, inline_store = stored(tmp_path / "inline", MAILS)
    process_pending(inline_engine, inline_cfg, inline_store, rules_module.load(RULES), pool)

    made, inline = rows(engine), rows(inline_engine)
    assert made and not drafting.in_hand and not drafting.busy()
    assert {r.state for r in made} == {OutboxState.PENDING}
    assert all(r.draft is None for r in made)
    # The same emails, to the same people, saying the same, with the same files (the
    # dossier's receipt slip among them).
    assert [(r.header_message_id, r.action, r.recipients, r.ack_key) for r in made] == \
        [(r.header_message_id, r.action, r.recipients, r.ack_key) for r in inline]
    assert [shape(r.raw) for r in made] == [shape(r.raw) for r in inline]
    assert any(name and name.endswith(".pdf") for r in made for name in shape(r.raw)[3])
    for row in made:
        outbox_module.check_head(cfg, row.raw, Purpose(row.action), row.recipients,
                                 row.header_message_id)
    engine.dispose()
    inline_engine.dispose()


def test_drafts_left_by_a_dead_daemon_are_composed_once_by_the_next(
        tmp_path: Path, pool: ReadPool) -> None:
    engine, cfg, store = stored(tmp_path, MAILS)
    process_pending(engine, cfg, store, rules_module.load(RULES), pool,
                    drafting=Dead(cfg, pool, store))
    left = rows(engine)
    assert left and {r.state for r in left} == {OutboxState.DRAFT}
    assert all(r.raw == b"" and r.draft for r in left)
    with engine.connect() as conn:  # registered, routed: the drafts are the mail's emails
        states = set(conn.scalars(select(messages.c.state)))
    assert State.STORED not in states

    after = Drafting(cfg, pool, store)  # the next life
    assert after.recover(engine) == len(left)
    assert after.recover(engine) == 0  # in hand: not handed over twice
    assert after.write(engine, wait=True) == len(left)
    assert after.recover(engine) == 0 and not after.in_hand
    done = rows(engine)
    assert {r.state for r in done} == {OutboxState.PENDING}
    assert [r.header_message_id for r in done] == [r.header_message_id for r in left]
    with engine.begin() as conn:  # a row is filled once: a filled row takes no other bytes
        assert not outbox_module.fill(conn, cfg, done[0].id, done[1].raw)
    assert rows(engine)[0].raw == done[0].raw
    engine.dispose()


def test_a_draft_that_cannot_be_composed_fails_with_the_reason_and_settles_its_mail(
        tmp_path: Path, pool: ReadPool) -> None:
    engine, cfg, store = stored(tmp_path, [DOSSIER])
    process_pending(engine, cfg, store, rules_module.load(RULES), pool,
                    drafting=Dead(cfg, pool, store))
    left = rows(engine)
    assert left
    with engine.begin() as conn:  # written by another version of vanthu
        conn.execute(update(outbox).values(draft=pickle.dumps((99, "?"))))
    after = Drafting(cfg, pool, store)
    after.recover(engine)
    after.write(engine, wait=True)
    failed = rows(engine)
    assert {r.state for r in failed} == {OutboxState.FAILED}
    assert all("could not be composed" in r.last_error and "another form" in r.last_error
               for r in failed)
    with engine.connect() as conn:
        state = conn.scalar(select(messages.c.state)
                            .where(messages.c.header_message_id == DOSSIER_ID))
    assert state == State.DONE  # nothing of it is left to send
    engine.dispose()


def test_reply_limits_count_the_drafts_of_the_same_transaction(
        tmp_path: Path, pool: ReadPool) -> None:
    base = setting(tmp_path)
    cfg = replace(base, limits=replace(base.limits, replies_per_sender_per_day=1))
    again = DOSSIER.replace(DOSSIER_ID.encode(), b"<lan-hai@kientrucnamviet.vn>")
    engine, cfg, store = stored(tmp_path, [DOSSIER, again], cfg)
    process_pending(engine, cfg, store, rules_module.load(RULES), pool,
                    drafting=Drafting(cfg, pool, store))
    acks = [r for r in rows(engine) if r.action == "acknowledge"]
    assert len(acks) == 1  # the second dossier's receipt is over the day's limit
    engine.dispose()


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory, pool: ReadPool) -> tuple[Config, Any]:
    folder = tmp_path_factory.mktemp("filled")
    engine, cfg, store = stored(folder, [DOSSIER])
    process_pending(engine, cfg, store, rules_module.load(RULES), pool,
                    drafting=Drafting(cfg, pool, store))
    row = next(r for r in rows(engine) if r.action == "acknowledge")
    engine.dispose()
    return cfg, row


def tamper(raw: bytes, how: str, value: str) -> bytes:
    """`raw` with its header section changed as a worker gone bad might change it."""
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    encoded = value.encode("utf-8", "surrogateescape")
    if how == "add":  # one more header: a Bcc, a second To, From or Message-ID
        name = value.split(":", 1)[0] if ":" in value else "Bcc"
        lines.insert(1, f"{name}: x@example.com".encode())
    elif how == "to":
        lines = [b"To: " + encoded if line.lower().startswith(b"to:") else line
                 for line in lines]
    elif how == "from":
        lines = [b"From: " + encoded if line.lower().startswith(b"from:") else line
                 for line in lines]
    elif how == "id":
        lines = [b"Message-ID: <" + encoded + b"@x.vn>"
                 if line.lower().startswith(b"message-id:") else line for line in lines]
    elif how == "long":
        lines.append(b"X-Note: " + b"a" * 1000)
    else:  # "eight": a raw non-ASCII header value
        lines.append(b"X-Note: " + "Văn thư".encode())
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(how=st.sampled_from(["add", "to", "from", "id", "long", "eight"]),
       value=st.one_of(st.sampled_from(["Bcc", "Cc", "To", "From", "Message-ID",
                                        "X-Vanthu-Action", "Resent-Bcc"]),
                       st.text(min_size=1, max_size=40)))
# Found by this test: a header added without a name (": x@example.com").
@example(how="add", value=":")
def test_bytes_that_do_not_say_what_their_row_says_are_refused(
        filled: tuple[Config, Any], how: str, value: str) -> None:
    cfg, row = filled
    args = (Purpose(row.action), row.recipients, row.header_message_id)
    outbox_module.check_head(cfg, row.raw, *args)  # as composed: accepted
    changed = tamper(row.raw, how, value)
    head = changed.partition(b"\r\n\r\n")[0].decode("utf-8", "replace")
    same = {
        "to": re.search(rf"(?im)^To: {re.escape(', '.join(row.recipients))}$", head),
        "from": re.search(rf"(?im)^From: .*<?{re.escape(cfg.smtp.from_address)}>?$", head),
        "id": re.search(rf"(?im)^Message-ID: {re.escape(row.header_message_id)}$", head),
    }.get(how)
    if same is not None:  # the tampering happened to write the very same value
        return
    with pytest.raises(EmailRefused):
        outbox_module.check_head(cfg, changed, *args)



@pytest.mark.parametrize("at", [0, 5, 40, 120])
@pytest.mark.parametrize("lone", [b"\r", b"\n", b"\r\r", b"\n\r", b"\rX-Other: y",
                                  b"\nBcc: z@x.vn"])
def test_a_lone_line_end_in_the_header_section_is_refused(
        filled: tuple[Config, Any], at: int, lone: bytes) -> None:
    """A CR or LF in a header line but its CRLF end: one receiver splits the line there and
    another does not, so what it says depends on who reads it. The standard parser splits
    it, and may find nothing wrong: `check_head` and `check` refuse it at once."""
    cfg, row = filled
    args = (Purpose(row.action), list(row.recipients), row.header_message_id)
    changed = row.raw[:at] + lone + row.raw[at:]
    assert at + len(lone) < row.raw.index(b"\r\n\r\n")
    with pytest.raises(EmailRefused, match="bare CR or LF"):
        outbox_module.check_head(cfg, changed, *args)
    with pytest.raises(EmailRefused, match="bare CR or LF"):
        outbox_module._head(changed)
