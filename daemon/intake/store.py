"""Store first: raw bytes on disk, content-addressed, and the message rows committed together
with the IMAP checkpoint, before anything else happens.

A crash before the commit leaves at most an orphan file, which the refetch after restart finds
already in place (same sha256); the checkpoint has not moved, so nothing is skipped. A crash
after the commit has the mail safe: the flag or move on the server is a convenience. A store
that cannot write (disk full, read-only) raises StoreError before anything is committed.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import Connection, Engine, insert, select, update

from daemon.db import (
    checkpoints,
    insert_new,
    insert_new_id,
    locations,
    messages,
    reading,
    utcnow,
)
from daemon.errors import DamagedMail, StoreError
from daemon.intake.backlog import is_old
from daemon.models import State
from daemon.textnorm import decode_words, header_safe, nfc

log = logging.getLogger("vanthu.store")


@dataclass(frozen=True)
class Fetched:
    """One message as fetched: its UID and raw bytes (or only its header, when too large)."""

    uid: int
    raw: bytes
    too_large: int | None = None  # the real size, when only the header was fetched
    # When the server accepted the mail (IMAP INTERNALDATE, timezone-aware), if it said.
    internaldate: datetime | None = None


# How the reason of a mail quarantined because its stored copy is damaged begins: `vanthu
# refetch` puts such a mail back to be processed once the copy is whole again.
DAMAGED = "the stored copy of the mail is damaged"


def _store_error(doing: str, err: OSError) -> StoreError:
    return StoreError(f"{doing}: {err.strerror or err}")


class MailStore:
    """The content-addressed file store under `data_dir/mail`."""

    def __init__(self, data_dir: Path) -> None:
        self.root = data_dir / "mail"
        self.tmp = data_dir / "tmp"
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            self.tmp.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise _store_error(f"cannot create the mail store in {data_dir}", err) from err

    def path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / f"{sha256}.eml"

    def read(self, sha256: str) -> bytes:
        """The stored bytes, verified: raise DamagedMail when they no longer hash to `sha256`
        (a damaged disk, a replaced file), OSError when they cannot be read."""
        data = self.path(sha256).read_bytes()
        if (actual := hashlib.sha256(data).hexdigest()) != sha256:
            raise DamagedMail(f"{DAMAGED}: its sha256 is now "
                              f"{actual[:16]}…, not {sha256[:16]}… as stored; fetch it again "
                              "from the mailbox")
        return data

    def write_many(self, blobs: Sequence[bytes]) -> list[str]:
        """Write each blob durably (temp file, fsync, rename, fsync of the directory); raise
        StoreError when the disk refuses."""
        try:
            return self._write_many(blobs)
        except OSError as err:
            raise _store_error(f"cannot write mail to {self.root}", err) from err

    def rewrite(self, blob: bytes) -> str:
        """Write `blob` again over its stored copy, whatever that copy holds now (a damaged
        file), durably and atomically: the old file stays until the new one is complete."""
        try:
            return self._write_many([blob], replace=True)[0]
        except OSError as err:
            raise _store_error(f"cannot write mail to {self.root}", err) from err

    def _write_many(self, blobs: Sequence[bytes], replace: bool = False) -> list[str]:
        """Write every new blob to a temp file, then make them durable together: each file's
        fsync comes after all are written (the journal commits once for most of them, not
        once per mail), then each is renamed into place and each directory synced. A crash
        anywhere leaves at most orphan temp files; no stored name ever holds partial bytes."""
        hashes = [hashlib.sha256(blob).hexdigest() for blob in blobs]
        todo: dict[str, bytes] = {}
        for digest, blob in zip(hashes, blobs, strict=True):
            if replace or not self.path(digest).exists():
                todo[digest] = blob
        # Named for the writing thread too: two fetch threads may write the same mail.
        temps = {digest: self.tmp / f"{digest}.{os.getpid()}.{threading.get_ident()}.tmp"
                 for digest in todo}
        handles = []
        try:
            for digest, blob in todo.items():
                handle = open(temps[digest], "wb")  # noqa: SIM115 -- closed below, together
                handles.append(handle)
                handle.write(blob)
                handle.flush()
            for handle in handles:
                os.fsync(handle.fileno())
        finally:
            for handle in handles:
                handle.close()
        dirs: set[Path] = set()
        for digest, temp in temps.items():
            target = self.path(digest)
            target.parent.mkdir(exist_ok=True)
            os.replace(temp, target)
            dirs.add(target.parent)
        for directory in dirs:
            fd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        return hashes


# The display columns of a message row (Message-ID, Subject, From) are read in the fetch
# thread, before any worker sees the mail: only this much of the mail's start is looked at
# for its header, and only this much of one header's value is decoded. Both bounds are far
# above what an honest mail needs for a 500-character column; the parser reads the whole
# mail later, in a worker.
HEADER_SCAN = 256 * 1024
VALUE_SCAN = 8 * 1024
COLUMN = 500  # characters of a display column


def _header_field(raw: bytes, name: bytes) -> str:
    """A cheap look at one header, for the row's display columns (the parser runs later):
    linear in at most `HEADER_SCAN` bytes, whatever the mail holds."""
    head = raw[:HEADER_SCAN]
    head = head.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    lines = head.replace(b"\r\n", b"\n").split(b"\n")
    wanted = name.lower() + b":"
    for i, line in enumerate(lines):
        if line[: len(wanted)].lower() == wanted:
            return _decoded(_unfolded(lines, i, len(wanted)))
    return ""


def _unfolded(lines: list[bytes], at: int, skip: int) -> str:
    """The value of the header on line `at` and its continuation lines, at most
    `VALUE_SCAN` bytes of it (a list joined once: no copy per line)."""
    parts = [lines[at][skip: skip + VALUE_SCAN]]
    size = len(parts[0])
    for line in lines[at + 1:]:
        if size >= VALUE_SCAN or line[:1] not in (b" ", b"\t"):
            break
        parts.append(line[: VALUE_SCAN - size])
        size += len(parts[-1])
    return b"".join(parts).decode("ascii", "replace")


def _decoded(value: str) -> str:
    return header_safe(nfc(decode_words(value)), COLUMN)


# An INTERNALDATE later than this past the fetch time, or before EARLIEST, is not the time a
# server accepted the mail (a wrong server clock, a mail copied in with a made-up date).
FUTURE_SLACK = timedelta(minutes=5)
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)


def received_time(fetched: Fetched, stored_at: datetime, ctx: dict[str, object]) -> datetime:
    """The legal time of receipt of a mail: the server's INTERNALDATE, or the fetch time
    `stored_at` (logged) when the server gave none or an absurd one."""
    date = fetched.internaldate
    if (date is not None and date.tzinfo is not None
            and EARLIEST <= date <= stored_at + FUTURE_SLACK):
        return date.astimezone(UTC)
    log.warning("mail.internaldate_ignored", extra={
        **ctx, "uid": fetched.uid, "internaldate": date.isoformat() if date else None,
        "using": "stored_at"})
    return stored_at


def store_batch(
    engine: Engine,
    store: MailStore,
    *,
    mailbox: str,
    folder: str,
    uidvalidity: int,
    batch: Sequence[Fetched],
    old_before: datetime | None = None,
    progress: Mapping[str, object] | None = None,
) -> list[int]:
    """Store `batch` and move the checkpoint to its highest UID, in one transaction.

    Returns the ids of messages new to vanthu (a copy seen before only gains a location).
    A new mail received before `old_before` is stored `archived` (daemon.intake.backlog);
    `progress`: the catch-up's progress columns, written with the checkpoint.
    """
    hashes = store.write_many([f.raw for f in batch])
    now = utcnow()
    where: dict[str, object] = {"mailbox": mailbox, "folder": folder}
    new_ids: list[int] = []
    with engine.begin() as conn:
        for fetched, digest in zip(batch, hashes, strict=True):
            message_pk = conn.scalar(select(messages.c.id).where(messages.c.sha256 == digest))
            if message_pk is None:
                message_pk = _insert_message(conn, fetched, digest, mailbox, now, where,
                                             old_before)
                if message_pk is not None:
                    new_ids.append(message_pk)
                else:  # another daemon stored the same mail meanwhile (from another mailbox)
                    message_pk = conn.scalar(select(messages.c.id)
                                             .where(messages.c.sha256 == digest))
            insert_new(conn, locations, message_id=message_pk, mailbox=mailbox, folder=folder,
                       uidvalidity=uidvalidity, uid=fetched.uid)
        if batch:
            _move_checkpoint(conn, mailbox, folder, uidvalidity, max(f.uid for f in batch),
                             **(progress or {}))
    return new_ids


def _insert_message(conn: Connection, fetched: Fetched, digest: str, mailbox: str,
                    now: datetime, where: dict[str, object],
                    old_before: datetime | None = None) -> int | None:
    """The new message row's id, or None when a row with this sha256 is there already: the
    insert does nothing then (on PostgreSQL it waits for a daemon storing the same mail to
    commit), so two daemons storing one mail at once make one row and neither fails."""
    state, error = State.STORED, None
    received = received_time(fetched, now, where)
    if fetched.too_large is not None:
        state = State.QUARANTINED
        error = f"message too large: {fetched.too_large} bytes; only its header kept"
    elif is_old(received, old_before):
        state = State.ARCHIVED
    return insert_new_id(
        conn, messages,
        sha256=digest, size=fetched.too_large or len(fetched.raw), mailbox=mailbox,
        header_message_id=_header_field(fetched.raw, b"Message-ID"),
        subject=_header_field(fetched.raw, b"Subject"),
        sender=_header_field(fetched.raw, b"From"),
        stored_at=now, received_at=received,
        state=state, attempts=0, last_error=error, updated_at=now)


def _move_checkpoint(conn: Connection, mailbox: str, folder: str, uidvalidity: int,
                     last_uid: int, **progress: object) -> None:
    conn.execute(update(checkpoints).where(
        checkpoints.c.mailbox == mailbox, checkpoints.c.folder == folder,
    ).values(uidvalidity=uidvalidity, last_uid=last_uid, last_fetch_at=utcnow(), **progress))


def checkpoint(engine: Engine, mailbox: str, folder: str, uidvalidity: int) -> int:
    """The last UID stored for this folder; 0 when new or when UIDVALIDITY changed.

    A changed UIDVALIDITY means every UID may now name another mail: fetch all again; the
    sha256 key makes the mails already stored gain only a location, never a second row.
    """
    with engine.begin() as conn:
        row = conn.execute(select(checkpoints).where(
            checkpoints.c.mailbox == mailbox, checkpoints.c.folder == folder)).first()
        if row is None:
            conn.execute(insert(checkpoints).values(
                mailbox=mailbox, folder=folder, uidvalidity=uidvalidity, last_uid=0,
                started_at=utcnow()))
            return 0
        if row.uidvalidity != uidvalidity:
            conn.execute(update(checkpoints).where(
                checkpoints.c.mailbox == mailbox, checkpoints.c.folder == folder,
            ).values(uidvalidity=uidvalidity, last_uid=0))
            return 0
        return int(row.last_uid)


def record_fetch(engine: Engine, mailbox: str, folder: str, error: str | None) -> None:
    """Note a successful fetch, or the error of a failed one, for `vanthu status`."""
    now = utcnow()
    values = ({"last_fetch_at": now, "last_error": None} if error is None
              else {"last_error": error[:1000], "last_error_at": now})
    with engine.begin() as conn:
        changed = conn.execute(update(checkpoints).where(
            checkpoints.c.mailbox == mailbox, checkpoints.c.folder == folder).values(**values))
        if changed.rowcount == 0:  # never fetched yet: a row to carry the error
            conn.execute(insert(checkpoints).values(mailbox=mailbox, folder=folder,
                                                    uidvalidity=0, last_uid=0,
                                                    started_at=now, **values))


def pending_moves(engine: Engine, mailbox: str, folder: str,
                  uidvalidity: int) -> dict[str, list[int]]:
    """UIDs in this folder whose routed mail a rule wants moved, by target folder."""
    with reading(engine) as conn:
        rows = conn.execute(
            select(messages.c.move_to, locations.c.uid)
            .join(locations, locations.c.message_id == messages.c.id)
            .where(messages.c.move_to.is_not(None), messages.c.state != State.STORED,
                   locations.c.mailbox == mailbox, locations.c.folder == folder,
                   locations.c.uidvalidity == uidvalidity)).all()
        conn.rollback()
    moves: dict[str, list[int]] = {}
    for target, uid in rows:
        moves.setdefault(target, []).append(int(uid))
    return moves


def done_moves(engine: Engine, mailbox: str, folder: str, uidvalidity: int,
               uids: list[int]) -> None:
    with engine.begin() as conn:
        ids = select(locations.c.message_id).where(
            locations.c.mailbox == mailbox, locations.c.folder == folder,
            locations.c.uidvalidity == uidvalidity, locations.c.uid.in_(uids))
        conn.execute(update(messages).where(messages.c.id.in_(ids)).values(move_to=None))
