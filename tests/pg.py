"""A private PostgreSQL server for the tests, from Debian's package (postgresql-15), on loopback.

Interface (for any test or fixture that needs PostgreSQL):

- `Postgres()` is one throwaway cluster: `initdb` in a fresh temporary folder, `postgres`
  listening on 127.0.0.1 at a free port (`.port`) with its unix socket in a folder of its own
  (`.socket_dir`), `fsync=off` (test data need not survive power loss). As root it runs as the
  `postgres` user (PostgreSQL refuses to run as root), as Dovecot runs as `dovecot`. Use it as a
  context manager, or `start()` / `stop()`; `stop()` ends the server (fast shutdown) and deletes
  its folder. The superuser is `vanthu` with password `vanthu` (scram-sha-256 over TCP, trust
  on the socket).
  - `.url(database)`: a SQLAlchemy URL, `postgresql+psycopg://vanthu:vanthu@127.0.0.1:PORT/DB`.
  - `.create_database()`: a new, empty database (CREATE DATABASE from template0, a few ms);
    returns its name. `.drop_database(name)` drops it, ending its sessions.
  - `.execute(sql, database="postgres")`: one statement in autocommit, for fixtures (e.g. to
    look at `pg_stat_activity` or to kill a backend with `pg_terminate_backend`).
- Fixtures (registered in tests/conftest.py):
  - `postgres` (session): the server of this pytest process; each xdist worker has its own.
  - `pg_url` (function): a fresh, empty database's URL for this test, dropped after it.
  - `db_url` (function): parametrised over the two stores for tests marked
    `@pytest.mark.db`: a SQLite file in tmp_path, or a fresh PostgreSQL database. Test ids end
    in `[sqlite]` / `[postgresql]`; `-m db` selects them, `-k postgresql` the PostgreSQL runs.
    Desk, Office and the `database` fixture use it when the test is marked.
  - `VANTHU_TEST_STORE=postgresql` in the environment runs the unmarked tests on PostgreSQL
    too (a look for dialect trouble; tests that open a SQLite file themselves fail then).
"""

from __future__ import annotations

import gc
import itertools
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import psycopg
import pytest

from tests.servers import free_port

USER = "vanthu"
PASSWORD = "vanthu"


def bin_dir() -> Path | None:
    """The newest installed PostgreSQL's programs (Debian: /usr/lib/postgresql/N/bin)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"),
                   key=lambda path: int(path.parent.parent.name)
                   if path.parent.parent.name.isdigit() else 0)
    return found[-1].parent if found else None


def postgres_available() -> bool:
    return bin_dir() is not None


class Postgres:
    """A throwaway PostgreSQL cluster on 127.0.0.1 (see the module's docstring)."""

    def __init__(self) -> None:
        programs = bin_dir()
        if programs is None:
            raise RuntimeError("PostgreSQL is not installed: apt-get install -y postgresql")
        self.bin = programs
        self.dir = Path(tempfile.mkdtemp(prefix="vanthu-pg-"))
        self.data = self.dir / "data"
        self.socket_dir = self.dir / "run"
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self._names = itertools.count(1)
        self.run_as = "postgres" if os.geteuid() == 0 else None

    def _own(self, *paths: Path) -> None:
        if self.run_as is None:
            return
        entry = pwd.getpwnam(self.run_as)
        for path in paths:
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def _run(self, *args: str) -> None:
        result = subprocess.run([*args], capture_output=True, text=True, user=self.run_as,
                                cwd=self.dir, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"{Path(args[0]).name} failed: {result.stderr or result.stdout}")

    def start(self) -> Postgres:
        self.dir.chmod(0o755)
        self.socket_dir.mkdir()
        pwfile = self.dir / "pwfile"
        pwfile.write_text(PASSWORD + "\n")
        self._own(self.dir, self.socket_dir, pwfile)
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", USER,
                  f"--pwfile={pwfile}", "--auth-host=scram-sha-256", "--auth-local=trust",
                  "--encoding=UTF8", "--locale=C.UTF-8", "--no-sync")
        log = self.dir / "postgres.log"
        settings = {
            "listen_addresses": "127.0.0.1", "port": str(self.port),
            "unix_socket_directories": str(self.socket_dir),
            "fsync": "off", "synchronous_commit": "off", "full_page_writes": "off",
            "max_connections": "300", "shared_buffers": "32MB",
            "timezone": "UTC", "log_timezone": "UTC",
        }
        args = [str(self.bin / "postgres"), "-D", str(self.data)]
        for key, value in settings.items():
            args += ["-c", f"{key}={value}"]
        with log.open("wb") as out:
            self.process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT,
                                            user=self.run_as, cwd=self.dir)
        self._wait_ready(log)
        return self

    def _wait_ready(self, log: Path) -> None:
        deadline = time.monotonic() + 60  # generous: a loaded machine starts it slowly
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError("postgres exited: " + log.read_text(errors="replace"))
            try:
                self.execute("SELECT 1")
                return
            except psycopg.OperationalError:
                time.sleep(0.05)
        raise RuntimeError("postgres did not start accepting connections")

    def execute(self, sql: str, database: str = "postgres") -> list[tuple[Any, ...]]:
        """One statement in autocommit; the rows it returned (none for a command)."""
        with psycopg.connect(host="127.0.0.1", port=self.port, user=USER, password=PASSWORD,
                             dbname=database, autocommit=True, connect_timeout=5) as conn:
            cursor = conn.execute(sql.encode())
            return list(cursor.fetchall()) if cursor.description else []

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://{USER}:{PASSWORD}@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        name = f"t{os.getpid()}_{next(self._names)}"
        self.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
        return name

    def drop_database(self, name: str) -> None:
        self.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # fast shutdown: sessions are ended
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Postgres:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()


# The store of the test running in this process (pytest runs one test at a time per process):
# set by the `store` fixture, read by `database_url`.
_current: _Store | None = None


class _Store:
    """PostgreSQL for one test: every database it made, dropped when the test ends."""

    def __init__(self, server: Postgres) -> None:
        self.server = server
        self.made: list[str] = []

    def fresh_url(self) -> str:
        name = self.server.create_database()
        self.made.append(name)
        return self.server.url(name)

    def drop_all(self) -> None:
        # Engines a test made and left (a Desk's) go now, quietly: their connections would
        # otherwise warn when collected during a later test. The drop ends their sessions.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()
        for name in self.made:
            self.server.drop_database(name)


def database_url(folder: Path) -> str:
    """The database URL a test's helper should use: when the running test is the PostgreSQL run
    of a `@pytest.mark.db` test, a fresh empty database (each call a new one, as each folder
    would be a new SQLite file); otherwise the SQLite file `folder/vanthu.db`."""
    if _current is not None:
        return _current.fresh_url()
    return f"sqlite:///{folder / 'vanthu.db'}"


def on_postgresql() -> bool:
    """True while the running test is the PostgreSQL run of a `@pytest.mark.db` test."""
    return _current is not None


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "db: exercises the store; runs once on SQLite and once on PostgreSQL")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if metafunc.definition.get_closest_marker("db") is not None:
        metafunc.parametrize("store", STORES, indirect=True, ids=STORES)


STORES = ["sqlite", "postgresql"]


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """The PostgreSQL server of this pytest process (one per xdist worker)."""
    if not postgres_available():
        pytest.fail("PostgreSQL is not installed: apt-get install -y postgresql")
    with Postgres() as server:
        yield server


@pytest.fixture()
def pg_url(postgres: Postgres) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for this test; dropped after it."""
    name = postgres.create_database()
    yield postgres.url(name)
    postgres.drop_database(name)


@pytest.fixture(autouse=True)
def store(request: pytest.FixtureRequest) -> Iterator[str]:
    """"sqlite" or "postgresql": the store of this run. Tests marked `db` run once with each;
    every other test runs on SQLite. On PostgreSQL, `database_url` gives fresh databases."""
    global _current
    kind = str(getattr(request, "param", os.environ.get("VANTHU_TEST_STORE", "sqlite")))
    if kind != "postgresql":
        yield kind
        return
    _current = _Store(request.getfixturevalue("postgres"))
    try:
        yield kind
    finally:
        made, _current = _current, None
        made.drop_all()


@pytest.fixture()
def db_url(store: str, tmp_path: Path) -> str:
    """This test's database: tmp_path/vanthu.db, or a fresh PostgreSQL database on the
    PostgreSQL run of a `@pytest.mark.db` test."""
    return database_url(tmp_path)


__all__ = ["PASSWORD", "STORES", "USER", "Postgres", "bin_dir", "database_url", "db_url",
           "on_postgresql", "pg_url", "postgres", "postgres_available", "pytest_configure",
           "pytest_generate_tests", "store"]
