"""The private PostgreSQL of the tests (tests/pg.py) and the two-store runs of `db` tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select, text

from daemon.db import make_engine, next_number, upgrade
from tests.desk import DOCUMENT, Desk, mail
from tests.pg import Postgres


def test_fresh_database_per_test(postgres: Postgres, pg_url: str) -> None:
    engine = make_engine(pg_url)
    with engine.begin() as conn:
        assert conn.scalar(text("SELECT count(*) FROM pg_tables WHERE schemaname='public'")) == 0
        assert conn.scalar(text("SHOW fsync")) == "off"
        assert conn.scalar(text("SHOW server_encoding")) == "UTF8"
        assert conn.scalar(text("SELECT lower('ĐỒNG NAI')")) == "đồng nai"
    engine.dispose()
    name = pg_url.rsplit("/", 1)[1]
    assert postgres.execute(f"SELECT count(*) FROM pg_database WHERE datname = '{name}'") == [(1,)]


def test_password_is_checked_over_tcp(postgres: Postgres, pg_url: str) -> None:
    engine = make_engine(pg_url.replace(":vanthu@", ":wrong@"))
    with pytest.raises(Exception, match="password authentication failed"):
        engine.connect()
    engine.dispose()


@pytest.mark.db
def test_db_mark_runs_on_both(store: str, database: Engine) -> None:
    assert database.dialect.name == {"sqlite": "sqlite", "postgresql": "postgresql"}[store]
    with database.begin() as conn:
        assert [next_number(conn, "incoming:2026") for _ in range(3)] == [1, 2, 3]


@pytest.mark.db
def test_desk_uses_the_store(store: str, tmp_path: Path) -> None:
    desk = Desk(tmp_path)
    assert desk.engine.dialect.name == store
    desk.receive(mail("vanphong@tayninh.gov.vn", "Công văn 1000/UBND-KT", DOCUMENT))
    desk.process()
    assert [entry.number for entry in desk.entries()] == [1]  # type: ignore[attr-defined]
    upgrade(desk.engine)  # a second upgrade keeps the row
    with desk.engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(text("register_entries"))) == 1
    desk.engine.dispose()
