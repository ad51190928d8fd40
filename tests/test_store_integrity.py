"""Stored bytes are verified before every use: a stored mail whose file was damaged or replaced
after it was stored is quarantined with the reason, never registered as what it now says."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from daemon.db import messages, register_entries
from daemon.errors import DamagedMail
from daemon.intake.store import MailStore
from tests.desk import DOCUMENT, Desk, mail


def _stored_path(desk: Desk) -> Path:
    with desk.engine.connect() as conn:
        sha256 = conn.scalar(select(messages.c.sha256))
    return desk.store.path(str(sha256))


@pytest.mark.parametrize("damage", ["flip-a-byte", "truncate", "replace-with-another-mail",
                                    "empty"])
def test_a_damaged_stored_file_is_quarantined_not_registered(tmp_path: Path, damage: str) -> None:
    desk = Desk(tmp_path)
    desk.receive(mail("vpubnd@tayninh.gov.vn", "Công văn 1000/UBND-KT", DOCUMENT))
    path = _stored_path(desk)
    data = path.read_bytes()
    path.write_bytes({
        "flip-a-byte": data[:-40] + bytes([data[-40] ^ 0x01]) + data[-39:],
        "truncate": data[: len(data) // 2],
        "replace-with-another-mail": mail("ubnd@tayninh.gov.vn", "Hồ sơ khác",
                                          DOCUMENT.replace("1000/", "2000/")),
        "empty": b"",
    }[damage])

    desk.process()

    (row,) = desk.rows()
    assert row.state == "quarantined"  # type: ignore[attr-defined]
    assert "damaged" in row.last_error and "fetch it again" in row.last_error  # type: ignore[attr-defined]
    with desk.engine.connect() as conn:
        assert conn.execute(select(register_entries)).all() == []
    assert desk.emails_for(row.id) == []  # type: ignore[attr-defined]


def test_an_intact_file_is_read_as_stored(tmp_path: Path) -> None:
    store = MailStore(tmp_path)
    (digest,) = store.write_many([b"From: a@b.vn\r\n\r\nhello"])
    assert store.read(digest) == b"From: a@b.vn\r\n\r\nhello"


@settings(max_examples=50, deadline=None)
@given(blob=st.binary(min_size=1, max_size=2000), at=st.integers(min_value=0),
       bit=st.integers(min_value=0, max_value=7))
def test_any_single_bit_flip_is_caught(tmp_path_factory: pytest.TempPathFactory, blob: bytes,
                                       at: int, bit: int) -> None:
    store = MailStore(tmp_path_factory.mktemp("store"))
    (digest,) = store.write_many([blob])
    position = at % len(blob)
    damaged = bytearray(blob)
    damaged[position] ^= 1 << bit
    store.path(digest).write_bytes(bytes(damaged))
    with pytest.raises(DamagedMail):
        store.read(digest)
