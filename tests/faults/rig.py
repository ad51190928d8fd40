"""One agency under fault: a Dovecot user, a FaultySmtp, a config, and the real daemon run as
a subprocess (`python -m daemon run`, or `tests.crashing`), stopped or killed by its pid.

The IMAP and SMTP ports in the config may be those of a FaultProxy instead of the servers'.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import sqlite3
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from imapclient import IMAPClient
from sqlalchemy import Engine, func, select, update

from daemon import cli
from daemon.db import make_engine, outbox, utcnow
from daemon.errors import EX_CONFIG, ConfigError, VanthuError
from daemon.models import OutboxState
from tests.conftest import RULES
from tests.servers import Dovecot

ROOT = Path(__file__).resolve().parent.parent.parent
# Users of the session's Dovecot kept apart from those of tests/conftest.py (agency1…199 are
# shared with the `office` fixture, which counts up from 1).
_users = itertools.count(199, -1)


def group_members(pgid: int) -> list[int]:
    """The live processes of process group `pgid` (read from /proc)."""
    members = []
    # A list, not an iterator: an iterator over /proc left unfinished by an exception is a
    # ResourceWarning, which the suite takes as an error.
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            stat = Path("/proc", name, "stat").read_text()
        except OSError:
            continue
        fields = stat.rpartition(")")[2].split()
        if len(fields) > 2 and fields[2].lstrip("-").isdigit() and int(fields[2]) == pgid \
                and fields[0] != "Z":
            members.append(int(name))
    return members


def wait_for(predicate: Callable[[], bool], timeout: float = 120.0, what: str = "") -> float:
    """Wait until `predicate()` holds; return the seconds it took. Generous by default: a fault
    case must not depend on the machine's speed."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not reached within {timeout:.0f} s: {what or predicate}")
        time.sleep(0.1)
    return time.monotonic() - started


def config_text(directory: Path, data_dir: Path, *, imap_port: int, cert: Path, user: str,
                password: str, smtp_port: int, smtp_extra: str = "", mailbox_extra: str = "",
                extra: str = "") -> str:
    """The agency's config.toml (IMAPS with the throwaway certificate, plain SMTP)."""
    return f"""
[agency]
name = "Sở Xây dựng tỉnh Tây Ninh"
code = "000.00.22.H56"
timezone = "Asia/Ho_Chi_Minh"
addresses = ["vanthu.sxd@tayninh.gov.vn"]
message_id_domain = "sxd.tayninh.gov.vn"

[storage]
data_dir = "{data_dir}"

[[mailboxes]]
name = "agency"
host = "127.0.0.1"
port = {imap_port}
security = "tls"
ca_file = "{cert}"
username = "{user}"
password = "{password}"
poll_seconds = 1
{mailbox_extra}
[smtp]
host = "127.0.0.1"
port = {smtp_port}
security = "none"
from = "vanthu.sxd@tayninh.gov.vn"
{smtp_extra}
[rules]
dir = "{RULES}"

[security]
authserv_id = "mx1.tayninh.gov.vn"

[digest]
to = []

[limits]
workers = 1

[intake]
start = "all"  # the rigs deliver their mail before the daemon's first start
{extra}
"""


@dataclass
class Status:
    code: int
    output: str
    seconds: float

    def names(self, *words: str) -> bool:
        """Whether the status output names one of `words` (case-insensitive)."""
        text = self.output.lower()
        return any(w.lower() in text for w in words)


@dataclass
class Rig:
    dovecot: Dovecot
    dir: Path
    smtp_port: int
    imap_port: int = 0  # 0: Dovecot's own IMAPS port
    data_dir: Path = field(default=Path())
    smtp_extra: str = "timeout_seconds = 10\n"
    mailbox_extra: str = ""
    extra: str = ""
    user: str = ""
    password: str = ""
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    orphans: int = 0  # processes found alive in a daemon's group after it was killed
    left_after_stop: int = 0  # the same after a SIGTERM stop
    log_paths: dict[int, Path] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.user:
            self.user = f"agency{next(_users)}"
            self.password = f"pw-{self.user}"
        if self.data_dir == Path():
            self.data_dir = self.dir / "data"
        self.write_config()

    @property
    def config_path(self) -> Path:
        return self.dir / "config.toml"

    def write_config(self) -> None:
        self.config_path.write_text(config_text(
            self.dir, self.data_dir, imap_port=self.imap_port or self.dovecot.imaps_port,
            cert=self.dovecot.cert, user=self.user, password=self.password,
            smtp_port=self.smtp_port, smtp_extra=self.smtp_extra,
            mailbox_extra=self.mailbox_extra, extra=self.extra), encoding="utf-8")

    # -- the mailbox -----------------------------------------------------------------------

    def deliver(self, raws: list[bytes], folder: str = "INBOX") -> None:
        client = IMAPClient("127.0.0.1", port=self.dovecot.imap_port, ssl=False, timeout=60)
        client.login(self.user, self.password)
        for start in range(0, len(raws), 100):
            client.multiappend(folder, raws[start:start + 100])
        client.logout()

    # -- the database ----------------------------------------------------------------------

    def engine(self) -> Engine:
        """The daemon's database, without creating or upgrading it."""
        return make_engine(f"sqlite:///{self.data_dir / 'vanthu.db'}", busy_seconds=60)

    def has_database(self) -> bool:
        return (self.data_dir / "vanthu.db").exists()

    def database(self, timeout: float = 120.0) -> Engine:
        """The database, once the daemon has created it and the schema."""
        def ready() -> bool:
            for proc in self.procs:  # a daemon that refused to start: say so now
                if proc.poll() not in (None, 0, -signal.SIGKILL, -signal.SIGTERM):
                    raise AssertionError(f"the daemon exited with {proc.returncode}:\n"
                                         + self.logs()[-1500:])
            if not self.has_database():
                return False
            # Read-only, so the probe never takes a lock the daemon's first writes wait for
            # (make_engine's connection sets the journal mode, a write).
            try:
                with contextlib.closing(sqlite3.connect(
                        f"file:{self.data_dir / 'vanthu.db'}?mode=ro", uri=True)) as conn:
                    return bool(conn.execute("SELECT count(*) FROM sqlite_master "
                                             "WHERE name = 'outbox'").fetchone()[0])
            except sqlite3.Error:  # not made yet, or busy being made
                return False
        wait_for(ready, timeout, "the daemon created its database")
        return self.engine()

    def retry_now(self) -> None:
        """Make every pending email due now, as if its backoff had run out: the fault cases
        prove what is sent, not how long the backoff waits (minutes, by design)."""
        engine = self.engine()
        with engine.begin() as conn:
            conn.execute(update(outbox).where(outbox.c.state == OutboxState.PENDING)
                         .values(next_attempt_at=utcnow()))
        engine.dispose()

    def tried(self) -> int:
        """Outbox rows tried at least once without success (pending with an error)."""
        engine = self.engine()
        with engine.connect() as conn:
            value = conn.scalar(select(func.count()).select_from(outbox).where(
                outbox.c.state == OutboxState.PENDING, outbox.c.last_error.is_not(None)))
        engine.dispose()
        return int(value or 0)

    # -- the daemon ------------------------------------------------------------------------

    def start(self, *, crash_at: str | None = None,
              log_name: str = "daemon") -> subprocess.Popen[bytes]:
        """Start `vanthu run` as a subprocess (with `tests.crashing` when `crash_at` names
        a point); its output goes to DIR/<log_name>-<n>.log."""
        env = dict(os.environ)
        module = "daemon"
        if crash_at:
            env["VANTHU_CRASH_AT"] = crash_at
            module = "tests.crashing"
        path = self.dir / f"{log_name}-{len(self.procs)}.log"
        log = open(path, "wb")  # noqa: SIM115
        # A session of its own, as systemd gives the unit a control group: what the daemon
        # leaves behind when killed (its worker processes) is found by the group and ended.
        proc = subprocess.Popen([sys.executable, "-m", module, "run", "--config",
                                 str(self.config_path)], cwd=ROOT, env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        self.procs.append(proc)
        self.log_paths[proc.pid] = path
        return proc

    def logging(self, proc: subprocess.Popen[bytes]) -> bool:
        """Whether the daemon has written its first log line (its imports are behind it: they
        take seconds, and a kill before them tests nothing of vanthu's)."""
        path = self.log_paths[proc.pid]
        return path.exists() and path.stat().st_size > 0

    def stop(self, proc: subprocess.Popen[bytes], timeout: float = 120.0) -> float:
        """SIGTERM and wait for the exit; return how long the stop took."""
        started = time.monotonic()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                self._end_group(proc)
                raise AssertionError(f"the daemon did not stop within {timeout:.0f} s of "
                                     "SIGTERM") from None
        took = time.monotonic() - started
        self.left_after_stop += self._end_group(proc)
        return took

    def kill(self, proc: subprocess.Popen[bytes]) -> None:
        """SIGKILL the daemon's main process, as the OOM killer would; then end what it left
        behind (counted in `orphans`), as systemd does with the unit's control group."""
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        self.orphans += self._end_group(proc)

    @staticmethod
    def _end_group(proc: subprocess.Popen[bytes]) -> int:
        """SIGKILL every process left in `proc`'s process group; return how many there were."""
        left = group_members(proc.pid)
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return len(left)

    def close(self) -> None:
        """Kill whatever daemon of this rig still runs (a test that failed midway)."""
        for proc in self.procs:
            self.kill(proc)

    def __enter__(self) -> Rig:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-3000:]
                         for p in sorted(self.dir.glob("*.log")))

    def status(self) -> Status:
        """`vanthu status` as the admin runs it (the same code as `cli.main`), in this process:
        a subprocess would spend seconds of CPU on Python's imports for every look, and the
        cases running at once on two cores would wait minutes for them. Its text is returned,
        not printed: the cases run in threads, and pytest swaps sys.stdout between tests, so
        output redirected around a print could land elsewhere."""
        started = time.monotonic()
        try:
            code, out, err = cli.status_text(
                cli.build_parser().parse_args(["status", "--config", str(self.config_path)]))
        except ConfigError as problem:  # as cli.main answers them
            code, out, err = EX_CONFIG, "", str(problem)
        except VanthuError as problem:
            code, out, err = 1, "", f"vanthu status: {problem}"
        except Exception:  # a traceback is an answer too, and an untruthful one
            code, out, err = 2, "", traceback.format_exc()
        return Status(code, out + err, time.monotonic() - started)
