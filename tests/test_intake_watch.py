"""The watcher under a changing server (issue 12, item 7), on a real Dovecot: a folder deleted
and created again while the daemon IDLEs; the same seen through a proxy that points the
watched name at another real folder, so the session is never dropped and only the watcher's
own check can notice; backoff after sessions that each store mail; a store that cannot write
reported as the store's fault, not the mailbox's."""

from __future__ import annotations

import logging
import socket
import subprocess
import threading
from contextlib import suppress

import pytest
from sqlalchemy import select

from daemon.db import checkpoints, health, locations, messages
from daemon.intake import fetch, store
from tests.conftest import Office, wait_for
from tests.test_intake_crashloop import document
from tests.test_watch import Running


def plain_imap(office: Office, port: int, folder: str) -> None:
    """Watch `folder` over plain IMAP on `port` (a proxy can only rewrite what it can read)."""
    text = office.config_path.read_text()
    text = text.replace(f"port = {office.dovecot.imaps_port}\nsecurity = \"tls\"",
                        f"port = {port}\nsecurity = \"none\"")
    text = text.replace("poll_seconds = 1\n", f"poll_seconds = 1\nfolders = [\"{folder}\"]\n")
    office.config_path.write_text(text)


def stored(office: Office) -> int:
    return office.count(messages)


class RenamingProxy:
    """A TCP proxy to Dovecot that sends the folder name `alias` to the real folder `target`
    (client commands are whole lines: the watcher sends no literals). Pointing it at another
    folder is, for the watcher, a folder recreated under its name, while Dovecot sees nothing
    change on the folder the session has selected and keeps the session."""

    def __init__(self, upstream_port: int, alias: str, target: str) -> None:
        self.upstream_port = upstream_port
        self.alias = f'"{alias}"'.encode()
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.sockets: list[socket.socket] = []
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.upstream_port))
            self.sockets += [client, server]
            self.connections += 1
            threading.Thread(target=self._up, args=(client, server), daemon=True).start()
            threading.Thread(target=self._down, args=(server, client), daemon=True).start()

    def _up(self, client: socket.socket, server: socket.socket) -> None:
        pending = b""
        with suppress(OSError):
            while data := client.recv(65536):
                pending += data
                *lines, pending = pending.split(b"\r\n")
                for line in lines:
                    server.sendall(line.replace(self.alias, f'"{self.target}"'.encode())
                                   + b"\r\n")
        with suppress(OSError):
            server.shutdown(socket.SHUT_WR)

    def _down(self, server: socket.socket, client: socket.socket) -> None:
        with suppress(OSError):
            while data := server.recv(65536):
                client.sendall(data)
        with suppress(OSError):
            client.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.listener.close()
        for sock in self.sockets:
            with suppress(OSError):
                sock.close()


@pytest.fixture()
def quick_renewal(monkeypatch: pytest.MonkeyPatch) -> None:
    """IDLE renewed every 2 s instead of every minute, so the test waits seconds."""
    monkeypatch.setattr(fetch, "IDLE_RENEW_SECONDS", 2)


def test_a_folder_recreated_behind_a_live_session_is_noticed(
        office: Office, quick_renewal: None, caplog: pytest.LogCaptureFixture) -> None:
    """The watched name now leads to another folder (new UIDVALIDITY) while the session stays
    up: at the next IDLE renewal the watcher selects it again, stores the new mail and gives
    the old one only a new location; it never reconnected."""
    client = office.imap()
    for name in ("Old", "New"):
        client.create_folder(name)
    client.append("Old", document(1, "uv"))
    client.append("New", document(1, "uv"))  # the same mail, in the folder made again
    client.append("New", document(2, "uv"))
    client.logout()
    proxy = RenamingProxy(office.dovecot.imap_port, "Watched", "Old")
    plain_imap(office, proxy.port, "Watched")
    try:
        with caplog.at_level(logging.INFO, logger="vanthu.fetch"), Running(office):
            wait_for(lambda: stored(office) == 1)
            proxy.target = "New"

            wait_for(lambda: stored(office) == 2 and office.count(locations) == 3)
            assert office.count(messages) == 2
    finally:
        proxy.close()
    events = [r.getMessage() for r in caplog.records]
    assert "mailbox.uidvalidity_changed" in events
    assert events.count("mailbox.connected") == 1 and proxy.connections == 1
    assert not any(e in events for e in ("mailbox.error", "mailbox.failed"))


def test_a_folder_deleted_and_created_again_while_idling(
        office: Office, quick_renewal: None) -> None:
    """Dovecot itself: the watched folder is deleted and created again while the daemon
    IDLEs; the new folder's mail is stored, the old one never twice."""
    client = office.imap()
    client.create_folder("Dossiers")
    client.append("Dossiers", document(1, "re"))
    client.logout()
    text = office.config_path.read_text().replace(
        "poll_seconds = 1\n", 'poll_seconds = 1\nfolders = ["Dossiers"]\n')
    office.config_path.write_text(text)
    with Running(office):
        wait_for(lambda: stored(office) == 1)
        client = office.imap()
        client.delete_folder("Dossiers")
        client.create_folder("Dossiers")
        client.append("Dossiers", document(1, "re"))
        client.append("Dossiers", document(2, "re"))
        client.logout()

        wait_for(lambda: stored(office) == 2 and office.count(locations) == 3)
    assert office.count(messages) == 2
    engine = office.engine()
    with engine.connect() as conn:
        assert conn.scalar(select(checkpoints.c.last_uid)) == 2
    engine.dispose()


def test_backoff_stays_short_while_each_session_stores_mail(
        office: Office, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """Every session is dropped by the server right after it stored one mail: the watcher
    comes back after 1 s each time instead of 1, 2, 4, 8 s."""
    text = office.config_path.read_text().replace(
        "poll_seconds = 1\n", "poll_seconds = 1\nbatch_size = 1\n")
    office.config_path.write_text(text)
    office.deliver(*[document(i, "bo") for i in range(5)])
    real = store.store_batch

    def store_then_drop(*args: object, **kwargs: object) -> list[int]:
        ids = real(*args, **kwargs)  # type: ignore[arg-type]
        office.dovecot.kick(office.user)  # the session ends before its catch-up is done
        return ids

    monkeypatch.setattr("daemon.intake.fetch.store_batch", store_then_drop)
    with caplog.at_level(logging.INFO, logger="vanthu.fetch"), Running(office):
        wait_for(lambda: stored(office) == 5, timeout=60)
    waits = [getattr(r, "retry_in", None) for r in caplog.records
             if r.getMessage() in ("mailbox.error", "mailbox.failed")]
    assert len(waits) >= 3
    assert set(waits) == {1.0}


def store_fault(office: Office) -> str | None:
    engine = office.engine()
    with engine.connect() as conn:
        found = conn.scalar(select(health.c.problem).where(health.c.component.like("store %")))
    engine.dispose()
    return found


def test_a_store_that_cannot_write_is_a_store_fault(office: Office,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    """The store's temporary folder is replaced by a file (no mail can be written, as with a
    read-only store, also for root): the mail stays on the server and the checkpoint does not
    move; the fault is the store's (under `vanthu status`'s store component) and the mailbox
    shows no error. Once the store can write again the mail is stored and the fault is gone."""
    temp = office.cfg.storage.data_dir / "tmp"
    with caplog.at_level(logging.INFO, logger="vanthu.fetch"), Running(office):
        wait_for(lambda: office.count(checkpoints) == 1)
        temp.rmdir()
        temp.write_text("not a folder")
        office.deliver(document(7, "ro"))

        wait_for(lambda: store_fault(office) is not None)
        assert office.count(messages) == 0
        engine = office.engine()
        with engine.connect() as conn:
            row = conn.execute(select(checkpoints)).one()
        engine.dispose()
        assert row.last_uid == 0 and row.last_error is None
        events = [r.getMessage() for r in caplog.records]
        assert "store.failed" in events and "mailbox.error" not in events

        temp.unlink()
        temp.mkdir()
        wait_for(lambda: stored(office) == 1 and store_fault(office) is None, timeout=60)


def test_a_full_disk_is_a_store_fault(office: Office) -> None:
    """The store on a full file system (a 256 KB tmpfs filled up; the database elsewhere):
    a store fault, not a mailbox error; the mail is stored once there is room again."""
    data = office.cfg.storage.data_dir
    data.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(data)],
                             capture_output=True)
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        text = office.config_path.read_text()
        office.config_path.write_text(text.replace(
            f"data_dir = \"{data}\"",
            f"data_dir = \"{data}\"\ndatabase_url = \"sqlite:///{office.dir / 'vanthu.db'}\""))
        filler = data / "filler"
        with Running(office):
            wait_for(lambda: office.count(checkpoints) == 1)
            with suppress(OSError), open(filler, "wb") as out:
                while True:
                    out.write(b"\0" * 4096)
                    out.flush()
            office.deliver(document(8, "full"))

            wait_for(lambda: store_fault(office) is not None)
            assert office.count(messages) == 0
            engine = office.engine()
            with engine.connect() as conn:
                assert conn.scalar(select(checkpoints.c.last_error)) is None
            engine.dispose()

            filler.unlink()
            wait_for(lambda: stored(office) == 1 and store_fault(office) is None, timeout=60)
    finally:
        subprocess.run(["umount", "-l", str(data)], check=False)
