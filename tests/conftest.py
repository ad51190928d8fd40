"""Fixtures: a real Dovecot and a real SMTP server on loopback, a real SQLite file; for tests
marked `@pytest.mark.db` a second run on a private PostgreSQL server (tests/pg.py)."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from imapclient import IMAPClient
from sqlalchemy import Engine, Table, func, insert, select

from daemon import config
from daemon.db import case_threads, cases, make_engine, upgrade, utcnow
from daemon.routing import rules as rules_module
from tests.servers import Dovecot, SmtpSink, dovecot_available, local_config

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT.parent / "shared" / "corpus"
RULES = ROOT / "rules"
AUTHSERV_ID = "mx1.tayninh.gov.vn"

_users = itertools.count(1)

# The fixtures postgres, pg_url, store and db_url, and the two-store runs of `db` tests.
pytest_plugins = ["tests.pg"]

# No property test may depend on the machine's speed: hypothesis's per-example deadline (200 ms)
# and its too-slow health check fail a correct test on a busy machine (four xdist workers on
# two cores). A test that needs a bound on time says so itself.
settings.register_profile("vanthu", deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("vanthu")


def pytest_configure(config: pytest.Config) -> None:
    # Python 3.13 warns when a garbage-collected sqlite3 connection was never closed (tests drop
    # SQLAlchemy engines without dispose()); under filterwarnings = error that warning fails
    # whichever test the collector happens to run in. Python 3.11 and 3.12 never emit it.
    config.addinivalue_line(
        "filterwarnings", "ignore:unclosed database in <sqlite3.Connection:ResourceWarning")


def corpus_labels() -> list[dict[str, Any]]:
    return list(json.loads((CORPUS / "labels.json").read_text(encoding="utf-8")))


def corpus_context() -> dict[str, Any]:
    return dict(json.loads((CORPUS / "context.json").read_text(encoding="utf-8")))


@pytest.fixture(scope="session")
def dovecot() -> Iterator[Dovecot]:
    if not dovecot_available():
        pytest.fail("Dovecot is not installed: apt-get install -y dovecot-imapd")
    # Users are made up front: Dovecot notices a rewritten passwd-file by its mtime, in whole
    # seconds, so a user added in the same second as the last login may not be seen.
    users = {f"agency{i}": f"pw-agency{i}" for i in range(1, 200)} | {
        "journey": "pw", "export": "pw"}
    with Dovecot(users) as server:
        yield server


@pytest.fixture()
def smtp() -> Iterator[SmtpSink]:
    sink = SmtpSink().start()
    yield sink
    sink.stop()


@dataclass
class Office:
    """One agency under test: its own IMAP user, data folder, config file and SMTP sink."""

    dovecot: Dovecot
    smtp: SmtpSink
    user: str
    password: str
    dir: Path
    config_path: Path

    @property
    def cfg(self) -> config.Config:
        return config.load(self.config_path)

    def imap(self) -> IMAPClient:
        client = IMAPClient("127.0.0.1", port=self.dovecot.imap_port, ssl=False)
        client.login(self.user, self.password)
        return client

    def deliver(self, *raws: bytes, folder: str = "INBOX") -> None:
        client = self.imap()
        for raw in raws:
            client.append(folder, raw)
        client.logout()

    def engine(self) -> Engine:
        engine = make_engine(self.cfg.storage.url)
        upgrade(engine)
        return engine

    def count(self, table: Table) -> int:
        """Rows in `table` of this office's database."""
        engine = self.engine()
        with engine.connect() as conn:
            value = int(conn.scalar(select(func.count()).select_from(table)) or 0)
        engine.dispose()
        return value

    def settled(self, count: int) -> bool:
        """All `count` mails stored and none left to process or send."""
        from daemon.pipeline import backlog

        engine = self.engine()
        total, busy = backlog(engine)
        engine.dispose()
        return total == count and busy == 0

    def seed_corpus_cases(self) -> None:
        """The cases that exist before the corpus mails arrive (corpus/context.json)."""
        engine = self.engine()
        with engine.begin() as conn:
            for case in corpus_context()["cases"]:
                case_id = conn.execute(insert(cases).values(
                    code=case["case_ref"], opened_at=utcnow(), status="in_progress",
                    applicant_name=case["applicant"], applicant_email=case["email"],
                    procedure=case["procedure"])).inserted_primary_key[0]  # type: ignore[index]
                for message_id in case["message_ids"]:
                    conn.execute(insert(case_threads).values(header_message_id=message_id,
                                                             case_id=case_id))
        engine.dispose()

    def run_daemon(self, until: Callable[[], bool], timeout: float = 60.0) -> None:
        """Run the real daemon in this process until `until()` holds (or fail at timeout)."""
        from daemon.service import Daemon

        cfg = self.cfg
        daemon = Daemon(cfg, rules_module.load(cfg.rules.dir))
        deadline = time.monotonic() + timeout
        timed_out = False

        def stop() -> bool:
            nonlocal timed_out
            if time.monotonic() > deadline:
                timed_out = True
                return True
            return until()

        asyncio.run(daemon.run(until=stop))
        assert not timed_out, "the daemon did not finish in time"


def write_config(directory: Path, dovecot: Dovecot, sink: SmtpSink, user: str, password: str,
                 extra: str = "") -> Path:
    path = directory / "config.toml"
    text = local_config(
        directory, dovecot, sink, user=user, password=password, rules_dir=RULES,
        mailbox_extra="poll_seconds = 1\n",
        # The tests deliver their mail before the daemon starts: all of it is processed.
        extra=f'\n[digest]\nto = []\n\n[intake]\nstart = "all"\n{extra}')
    from tests import pg  # a plugin (pytest_plugins): imported once pytest has registered it

    if pg.on_postgresql():  # the PostgreSQL run of a `db` test: a fresh database of its own
        text = text.replace("[storage]\n",
                            f'[storage]\ndatabase_url = "{pg.database_url(directory)}"\n', 1)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture()
def database(db_url: str) -> Iterator[Engine]:
    """A fresh database of this test's own (tmp_path/vanthu.db, or PostgreSQL on the PostgreSQL
    run of a `db` test), upgraded to the schema."""
    engine = make_engine(db_url)
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture()
def office(dovecot: Dovecot, smtp: SmtpSink, tmp_path: Path, store: str) -> Office:
    user = f"agency{next(_users)}"
    password = f"pw-{user}"
    return Office(dovecot, smtp, user, password, tmp_path,
                  write_config(tmp_path, dovecot, smtp, user, password))


def wait_for(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)
