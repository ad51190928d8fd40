"""A reply fetched in the same batch as the dossier it answers joins the dossier's case: the
pipeline judges each mail before any of the batch is recorded, so it looks again for the
thread of a mail judged outside any case once earlier mails of the batch are recorded, and
takes a reply after the mail it answers whatever order they came in. Real SQLite file, real
pipeline, the public corpus's dossier 017."""

from __future__ import annotations

from email.message import EmailMessage
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import ColumnElement, Engine, Table, func, select

from daemon import config
from daemon.config import Config
from daemon.db import cases, make_engine, messages, outbox, outbox_bodies, register_entries, upgrade
from daemon.intake.store import Fetched, MailStore, checkpoint, store_batch
from daemon.models import State
from daemon.pipeline import process_pending
from daemon.routing import rules as rules_module
from tests.conftest import AUTHSERV_ID, CORPUS, RULES
from tests.hostile.secrecy import pdf

DOSSIER = (CORPUS / "017.eml").read_bytes()
DOSSIER_ID = "<3c39cd5e-7821-1112-3781-4e0bdc029bb0@kientrucnamviet.vn>"
APPLICANT = "tuan.pm@kientrucnamviet.vn"
SCAN = pdf("BẢN SAO BẰNG TỐT NGHIỆP\nPhạm Minh Tuấn")


def supplement(number: int, answers: list[str]) -> bytes:
    """The applicant's supplement `number`, answering the mails `answers` (the last one in
    In-Reply-To, all in References), with the scan of a certificate: "bổ sung hồ sơ" with an
    attachment, a dossier of its own if its thread were not known."""
    msg = EmailMessage()
    msg["Authentication-Results"] = (f"{AUTHSERV_ID}; dkim=pass header.d=kientrucnamviet.vn; "
                                     "dmarc=pass header.from=kientrucnamviet.vn")
    msg["From"] = f"Phạm Minh Tuấn <{APPLICANT}>"
    msg["To"] = "vanthu.sxd@tayninh.gov.vn"
    msg["Subject"] = "Re: Đề nghị cấp chứng chỉ hành nghề - bổ sung hồ sơ"
    msg["Message-ID"] = supplement_id(number)
    msg["In-Reply-To"] = answers[-1]
    msg["References"] = " ".join(answers)
    msg["Date"] = f"Thu, 19 Mar 2026 16:{number:02d}:00 +0700"
    msg.set_content(f"Tôi xin bổ sung hồ sơ (lần {number}): bản sao bằng tốt nghiệp.")
    msg.add_attachment(SCAN, maintype="application", subtype="pdf",
                       filename=f"bo-sung-{number}.pdf")
    return msg.as_bytes()


def supplement_id(number: int) -> str:
    return f"<bo-sung-{number}@kientrucnamviet.vn>"


def thread(count: int) -> list[bytes]:
    """The dossier and `count` supplements, each answering the one before (References
    growing as mail programs write it)."""
    mails = [DOSSIER]
    ids = [DOSSIER_ID]
    for number in range(1, count + 1):
        mails.append(supplement(number, list(ids)))
        ids.append(supplement_id(number))
    return mails


def setting(folder: Path) -> Config:
    return config.parse({"storage": {"data_dir": str(folder)},
                         "security": {"authserv_id": AUTHSERV_ID}},
                        file="t", text="", base=folder)


def run_batch(engine: Engine, cfg: Config, mails: list[bytes]) -> None:
    """Store `mails` as one fetch, in this order, and process them in one pass."""
    store = MailStore(cfg.storage.data_dir)
    checkpoint(engine, "m", "INBOX", 1)
    store_batch(engine, store, mailbox="m", folder="INBOX", uidvalidity=1,
                batch=[Fetched(uid, raw) for uid, raw in enumerate(mails, 1)])
    assert process_pending(engine, cfg, store, rules_module.load(RULES)) == len(mails)


def count(engine: Engine, table: Table, *where: ColumnElement[bool]) -> int:
    with engine.connect() as conn:
        return int(conn.scalar(select(func.count()).select_from(table).where(*where)) or 0)


@pytest.mark.db
def test_a_supplement_in_the_batch_of_its_dossier_joins_its_case(tmp_path: Path,
                                                                 database: Engine) -> None:
    cfg = setting(tmp_path)
    run_batch(database, cfg, thread(1))

    with database.connect() as conn:
        rows = {r.header_message_id: r for r in conn.execute(select(messages)).all()}
        case = conn.execute(select(cases)).one()
    dossier, added = rows[DOSSIER_ID], rows[supplement_id(1)]
    assert count(database, cases) == 1
    assert count(database, register_entries) == 1  # one số đến, one receipt number
    assert dossier.kind == "dossier" and dossier.case_id == case.id
    assert added.kind == "reply" and added.case_id == case.id
    assert added.state != State.QUARANTINED, added.last_error
    # One receipt (biên nhận) for the dossier; the supplement's acknowledgement names the
    # same case, it opens none.
    with database.connect() as conn:
        acks = conn.execute(select(outbox.c.message_id, outbox_bodies.c.raw)
                            .join_from(outbox, outbox_bodies)
                            .where(outbox.c.action == "acknowledge")).all()
    by_mail = {ack.message_id: ack.raw for ack in acks}
    assert len([a for a in acks if a.message_id == dossier.id]) == 1
    assert set(by_mail) <= {dossier.id, added.id}
    if added.id in by_mail:
        assert case.code.encode() in by_mail[added.id]


@settings(max_examples=8, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.integers(1, 4).flatmap(lambda n: st.permutations(range(n + 1))))
def test_any_order_of_one_thread_in_a_batch_makes_one_case(tmp_path_factory: object,
                                                           order: list[int]) -> None:
    folder: Path = tmp_path_factory.mktemp("batch")  # type: ignore[attr-defined]
    engine = make_engine(f"sqlite:///{folder / 'vanthu.db'}")
    upgrade(engine)
    try:
        mails = thread(len(order) - 1)
        run_batch(engine, setting(folder), [mails[at] for at in order])

        assert count(engine, cases) == 1
        assert count(engine, register_entries) == 1
        assert count(engine, messages, messages.c.kind == "reply") == len(order) - 1
        assert count(engine, messages, messages.c.case_id.is_(None)) == 0
    finally:
        engine.dispose()
