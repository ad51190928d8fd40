"""The results folder under attack, on a real database: whatever the clerk's folder holds (a
named pipe, a folder, symbolic links, hostile names, a huge file), only regular PDFs are
read, every bad entry is set aside once with its reason, and the valid result dropped beside
it is still queued in the same scan. Verification runs in a worker process, so the event
loop keeps serving while a PDF is verified, and a worker that hangs or dies is killed and
its PDF refused."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import os
import shutil
import socket
import stat
import time
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection as PipeEnd
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import insert, select

from daemon import config
from daemon.config import Config, ResultsConfig
from daemon.db import (
    cases,
    messages,
    new_id,
    outbox,
    outgoing_entries,
    register_entries,
    rejected_results,
    utcnow,
)
from daemon.errors import ConfigError
from daemon.models import CaseStatus, Kind, State
from daemon.office import results
from tests.conftest import CORPUS
from tests.desk import Desk

OUTBOUND = CORPUS / "outbound"
VALID = OUTBOUND / "result_01.pdf"  # signed by the test CA, issued to PDF_APPLICANT
PDF_APPLICANT = "Bùi Văn Toàn"
GATE_SECONDS = 120.0  # how long a gated worker waits for the event loop's tick


class ScanClock:
    """The monotonic clock the scans measure settling with, moved by the test by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclasses.dataclass
class Office:
    """A desk whose case can receive the signed test result, and its results folder."""

    desk: Desk
    cfg: Config
    inbox: Path
    code: str
    clock: ScanClock = dataclasses.field(default_factory=ScanClock)

    def scan(self) -> int:
        return asyncio.run(results.scan_inbox(self.cfg, self.desk.engine, self.clock))

    def queued(self) -> list[str]:
        """The file names of the results queued for sending."""
        with self.desk.engine.connect() as conn:
            emails = conn.execute(select(outbox).where(outbox.c.action == "result")).all()
            names = list(conn.scalars(select(outgoing_entries.c.file_name)).all())
        assert len(emails) == len(names)
        return names

    def refusals(self) -> list[tuple[str, str]]:
        with self.desk.engine.connect() as conn:
            return [(r.file_name, r.reason) for r in conn.execute(select(rejected_results))]

    def valid_name(self) -> str:
        """Sorted after every bad entry of these tests (they all begin with "a" or lower)."""
        return f"zz {self.code} ket qua.pdf"

    def drop_valid(self) -> Path:
        path = self.inbox / self.valid_name()
        shutil.copy(VALID, path)
        return path


CODE = "000.00.00.H00-261126-0001"


def _open_case(desk: Desk) -> None:
    """The case the test PDFs answer, as the pipeline records an authenticated dossier: its
    mail, the case (applicant named as in the PDFs) and its incoming register entry. Written
    directly, so these tests do not depend on reading a mail."""
    now = utcnow()
    with desk.engine.begin() as conn:
        mail = new_id(conn.execute(insert(messages).values(
            sha256="1" * 64, size=1, mailbox="m", stored_at=now, state=State.DONE,
            updated_at=now, header_message_id="<dossier@kientrucnamviet.vn>",
            kind=Kind.DOSSIER, understanding={"authenticated": True})))
        case = new_id(conn.execute(insert(cases).values(
            code=CODE, opened_at=now, status=CaseStatus.RECEIVED, applicant_name=PDF_APPLICANT,
            applicant_email="tuan.pm@kientrucnamviet.vn", message_id=mail)))
        conn.execute(insert(register_entries).values(
            book="incoming", year=2026, number=1, message_id=mail, received_at=now,
            sender="tuan.pm@kientrucnamviet.vn", sender_email="tuan.pm@kientrucnamviet.vn",
            trust=2, kind=Kind.DOSSIER, case_id=case))


def _office(tmp_path: Path, max_pdf_bytes: int = ResultsConfig.max_pdf_bytes) -> Office:
    desk = Desk(tmp_path / "desk")
    _open_case(desk)
    code = CODE
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    cfg = dataclasses.replace(desk.cfg, results=ResultsConfig(
        inbox_dir=inbox, trust_roots=(str(OUTBOUND / "trust_root.pem"),),
        max_pdf_bytes=max_pdf_bytes))
    return Office(desk, cfg, inbox, code)


@pytest.fixture
def office(tmp_path: Path) -> Iterator[Office]:
    built = _office(tmp_path)
    yield built
    built.desk.engine.dispose()


def _settle(office: Office) -> None:
    """Let every entry of the results folder stand still past the settling time: a scan sees
    them (and takes none, they are new to it), then the scans' clock moves on."""
    assert office.scan() == 0
    office.clock.now += results.SETTLE_SECONDS


def _events(caplog: pytest.LogCaptureFixture, *names: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage() in names]


# Each bad entry: how to make it in the inbox (and elsewhere), the name it gets in rejected/,
# and words of its reason.
Maker = Callable[[Office, Path], None]


def _fifo(o: Office, elsewhere: Path) -> None:
    os.mkfifo(o.inbox / "a.pdf")


def _directory(o: Office, elsewhere: Path) -> None:
    (o.inbox / "a.pdf").mkdir()
    shutil.copy(VALID, o.inbox / "a.pdf" / f"{o.code}.pdf")


def _link_to_a_valid_result(o: Office, elsewhere: Path) -> None:
    # Named after the case: followed, it would be sent.
    shutil.copy(VALID, elsewhere / "another case.pdf")
    os.symlink(elsewhere / "another case.pdf", o.inbox / f"a {o.code}.pdf")


def _link_to_a_secret(o: Office, elsewhere: Path) -> None:
    (elsewhere / "shadow").write_text("root:$6$secret:19000:0:99999:7:::\n")
    os.symlink(elsewhere / "shadow", o.inbox / "a.pdf")


def _socket(o: Office, elsewhere: Path) -> None:
    server = socket.socket(socket.AF_UNIX)
    cwd = os.getcwd()
    os.chdir(o.inbox)  # a socket's path is limited to 107 bytes: bind it by a short name
    try:
        server.bind("a.pdf")
    finally:
        os.chdir(cwd)
        server.close()  # the socket file stays


def _named(raw: bytes) -> Maker:
    def make(o: Office, elsewhere: Path) -> None:
        # The valid result under a name naming the case: refused for its name alone.
        name = raw.replace(b"{code}", o.code.encode())
        with open(os.path.join(os.fsencode(o.inbox), name), "wb") as out:
            out.write(VALID.read_bytes())
    return make


def _sparse(size: int) -> Maker:
    def make(o: Office, elsewhere: Path) -> None:
        with open(o.inbox / f"a {o.code}.pdf", "wb") as out:
            out.truncate(size)  # no disk used
    return make


BAD_ENTRIES: dict[str, tuple[Maker, str, str]] = {
    "fifo": (_fifo, "a.pdf", "named pipe"),
    "directory": (_directory, "a.pdf", "a folder named like a PDF"),
    "link to a valid result": (_link_to_a_valid_result, "a {code}.pdf", "symbolic link"),
    "link to a secret": (_link_to_a_secret, "a.pdf", "symbolic link"),
    "socket": (_socket, "a.pdf", "a socket"),
    "newline in the name": (_named(b"a {code}\nx.pdf"), "a {code}_x.pdf", "line break"),
    "carriage return": (_named(b"a {code}\r.pdf"), "a {code}_.pdf", "control character"),
    "invalid utf-8": (_named(b"a {code} \xff\xfe.pdf"), "a {code} __.pdf", "not valid UTF-8"),
    "right-to-left override": (_named("a {code}\u202efdp.exe.pdf".encode()),
                               "a {code}_fdp.exe.pdf", "right-to-left override"),
    "leading dash": (_named(b"-a {code}.pdf"), "a {code}.pdf", "begins with a dash"),
    "very long name": (_named(b"a {code} " + b"x" * 220 + b".pdf"), "", "longer than 200"),
    "huge sparse file": (_sparse(8 << 30), "a {code}.pdf", "above the limit"),
    "one byte past the limit": (_sparse(ResultsConfig.max_pdf_bytes + 1), "a {code}.pdf",
                                "above the limit"),
}


@pytest.mark.parametrize("kind", BAD_ENTRIES)
def test_a_bad_entry_is_set_aside_once_and_the_valid_result_still_goes(
        office: Office, tmp_path: Path, kind: str, caplog: pytest.LogCaptureFixture) -> None:
    """Placed before a valid result, the bad entry is moved to rejected/ with its reason
    (never followed, never read, never waited on), the valid result is queued in the same
    scan, and the next scan neither reports nor records the bad entry again."""
    make, rejected_as, words = BAD_ENTRIES[kind]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    make(office, elsewhere)
    office.drop_valid()
    _settle(office)
    caplog.set_level(logging.INFO, logger="vanthu.results")

    first = office.scan()

    assert first == 2
    assert office.queued() == [office.valid_name()]
    assert (office.inbox / "sent" / office.valid_name()).is_file()
    rejected = office.inbox / "rejected"
    names = sorted(n for n in os.listdir(rejected) if not n.endswith(".reason.txt"))
    assert len(names) == 1
    if rejected_as:
        assert names == [rejected_as.format(code=office.code)]
    assert results.name_problem(names[0].encode()) is None and len(names[0].encode()) <= 200
    reason = (rejected / f"{names[0]}.reason.txt").read_text(encoding="utf-8")
    assert reason.startswith("Không gửi: ") and "\nNot sent: " in reason and words in reason
    assert [r for r in os.listdir(office.inbox) if r not in ("sent", "rejected")] == []
    [(file_name, why)] = office.refusals()
    assert file_name == names[0] and words in why
    assert len(_events(caplog, "result.skipped", "result.rejected")) == 1
    # Only the entry itself moved: a link's target stays where it was, untouched.
    for target in elsewhere.iterdir():
        assert stat.S_ISREG(os.lstat(target).st_mode)
        assert os.path.islink(rejected / names[0])
    if kind == "link to a secret":
        assert (elsewhere / "shadow").read_text().startswith("root:")
    if kind == "fifo":
        assert stat.S_ISFIFO(os.lstat(rejected / names[0]).st_mode)

    caplog.clear()
    assert office.scan() == 0
    assert _events(caplog, "result.skipped", "result.rejected") == []
    assert len(office.refusals()) == 1 and office.queued() == [office.valid_name()]


@pytest.mark.parametrize("spare", [0, -1])
def test_the_size_limit_is_exact(tmp_path: Path, spare: int) -> None:
    """A PDF of exactly `max_pdf_bytes` is sent; one byte less of limit and it is refused."""
    office = _office(tmp_path, max_pdf_bytes=VALID.stat().st_size + spare)
    office.drop_valid()
    _settle(office)

    assert office.scan() == 1

    if spare == 0:
        assert office.queued() == [office.valid_name()]
    else:
        assert office.queued() == []
        reason = (office.inbox / "rejected" / f"{office.valid_name()}.reason.txt").read_text()
        assert "above the limit" in reason and "vượt giới hạn" in reason
    office.desk.engine.dispose()


def test_young_files_wait_until_settled(office: Office) -> None:
    """A file is taken only once it has looked the same for the settling time by the scans'
    monotonic clock: not at first sight, not a moment too early."""
    office.drop_valid()

    assert office.scan() == 0 and office.queued() == []
    assert office.scan() == 0
    office.clock.now += results.SETTLE_SECONDS / 2
    assert office.scan() == 0 and office.queued() == []
    office.clock.now += results.SETTLE_SECONDS / 2
    assert office.scan() == 1 and office.queued() == [office.valid_name()]


@pytest.mark.parametrize("wall_clock_step", [-86_400.0, -60.0, 60.0, 86_400.0])
def test_settling_ignores_the_wall_clock(office: Office, wall_clock_step: float) -> None:
    """The file's modification time as a stepped wall clock would stamp it (a day or a
    minute behind or ahead of now) changes nothing: an mtime in the future no longer holds
    the file back, an old mtime no longer lets it through at first sight."""
    office.drop_valid()
    path = office.inbox / office.valid_name()
    stamp = time.time() + wall_clock_step
    os.utime(path, (stamp, stamp))

    assert office.scan() == 0
    office.clock.now += results.SETTLE_SECONDS
    assert office.scan() == 1 and office.queued() == [office.valid_name()]


def test_a_file_still_growing_waits_whatever_its_mtime(office: Office) -> None:
    """A copy in progress with an old mtime (a copier that sets the original's times early):
    each change starts the count again, so the file is taken only after it stood still."""
    name = office.valid_name()
    data = VALID.read_bytes()
    path = office.inbox / name
    old = time.time() - 3600
    for end in (len(data) // 3, 2 * len(data) // 3):
        path.write_bytes(data[:end])
        os.utime(path, (old, old))
        assert office.scan() == 0
        office.clock.now += results.SETTLE_SECONDS  # the copier is slow: a long pause
    path.write_bytes(data)
    os.utime(path, (old, old))

    assert office.scan() == 0 and office.queued() == []
    office.clock.now += results.SETTLE_SECONDS
    assert office.scan() == 1 and office.queued() == [name]


def _gated_worker(gate: Path, pipe: PipeEnd) -> None:
    """The real worker, once the event loop has ticked *while* this worker runs: it says it
    started, then waits for the tick. Run on the event loop's thread, it would wait in vain
    (the loop cannot tick) and say so."""
    (gate / "started").touch()
    deadline = time.monotonic() + GATE_SECONDS
    while not (gate / "ticked").exists():
        if time.monotonic() > deadline:
            (gate / "gave up").touch()
            break
        time.sleep(0.01)
    results._verify_in_worker(pipe)


def test_the_event_loop_keeps_serving_while_a_pdf_is_verified(
        office: Office, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A task of the same event loop ticks while the verification is under way: the
    verification waits for that tick, so a scan that blocked the loop could never finish
    with the tick seen (it would give up after GATE_SECONDS and the test fails)."""
    gate = tmp_path / "gate"
    gate.mkdir()
    monkeypatch.setattr(results, "_WORKER", functools.partial(_gated_worker, gate))
    office.drop_valid()
    _settle(office)

    async def scenario() -> tuple[int, bool]:
        scan = asyncio.create_task(results.scan_inbox(office.cfg, office.desk.engine,
                                                        office.clock))
        ticked_during_scan = False
        while not scan.done():
            if (gate / "started").exists() and not (gate / "ticked").exists():
                (gate / "ticked").touch()  # the tick: this loop is running
                ticked_during_scan = not scan.done()
            await asyncio.sleep(0.01)
        return await scan, ticked_during_scan

    handled, ticked_during_scan = asyncio.run(scenario())

    assert ticked_during_scan and not (gate / "gave up").exists()
    assert handled == 1 and office.queued() == [office.valid_name()]


def _hanging_worker(gate: Path, pipe: PipeEnd) -> None:
    # Written whole, then renamed: the test polls for the file and reads it at once.
    (gate / "pid.tmp").write_text(str(os.getpid()))
    (gate / "pid.tmp").rename(gate / "pid")
    time.sleep(3600)  # a PDF built to make the verifier spin


def _dying_worker(pipe: PipeEnd) -> None:
    os._exit(3)  # killed by the kernel for its memory, or a crash in native code


def test_a_hanging_verification_is_killed_and_the_pdf_refused(
        office: Office, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker is killed at the deadline (its process is gone) and the PDF is refused with
    the reason; a worker that dies is a refusal too, never a crash of the scan."""
    gate = tmp_path / "gate"
    gate.mkdir()
    monkeypatch.setattr(results, "VERIFY_SECONDS", 1.0)
    monkeypatch.setattr(results, "_WORKER", functools.partial(_hanging_worker, gate))
    office.drop_valid()
    _settle(office)

    assert office.scan() == 1

    reason = (office.inbox / "rejected" / f"{office.valid_name()}.reason.txt").read_text()
    assert "took longer than 1 s" in reason and "quá 1 giây" in reason
    with pytest.raises(ProcessLookupError):
        os.kill(int((gate / "pid").read_text()), 0)
    assert office.queued() == []

    monkeypatch.setattr(results, "_WORKER", _dying_worker)
    shutil.copy(VALID, office.inbox / f"{office.code}.pdf")
    _settle(office)
    assert office.scan() == 1
    reason = (office.inbox / "rejected" / f"{office.code}.pdf.reason.txt").read_text()
    assert "stopped without an answer (exit code 3)" in reason
    assert office.queued() == []


def test_a_cancelled_scan_kills_its_worker(
        office: Office, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Cancelling the scan (the daemon stopping) kills the worker at once, whatever the
    deadline: nothing keeps running behind the daemon's back."""
    gate = tmp_path / "gate"
    gate.mkdir()
    monkeypatch.setattr(results, "_WORKER", functools.partial(_hanging_worker, gate))
    office.drop_valid()
    _settle(office)

    async def scenario() -> None:
        scan = asyncio.create_task(results.scan_inbox(office.cfg, office.desk.engine,
                                                        office.clock))
        while not (gate / "pid").exists():
            await asyncio.sleep(0.01)
        scan.cancel()
        with pytest.raises(asyncio.CancelledError):
            await scan

    asyncio.run(scenario())  # returns only once the worker's thread has ended

    with pytest.raises(ProcessLookupError):
        os.kill(int((gate / "pid").read_text()), 0)
    assert (office.inbox / office.valid_name()).exists()  # left for the next start


def test_a_planted_reason_file_is_never_written_through(office: Office,
                                                       tmp_path: Path) -> None:
    """A link planted in rejected/ under the reason file's name is neither followed nor
    replaced: the refused file and its reason get a free name beside it."""
    target = tmp_path / "victim.txt"
    target.write_text("untouched")
    rejected = office.inbox / "rejected"
    rejected.mkdir()
    os.symlink(target, rejected / f"{office.code}.pdf.reason.txt")
    shutil.copy(OUTBOUND / "result_03.pdf", office.inbox / f"{office.code}.pdf")  # unsigned
    _settle(office)

    assert office.scan() == 1

    assert target.read_text() == "untouched"
    reason = (rejected / f"{office.code} (2).pdf.reason.txt").read_text(encoding="utf-8")
    assert "unsigned" in reason and (rejected / f"{office.code} (2).pdf").is_file()


def test_an_entry_that_cannot_be_moved_is_reported_once(
        office: Office, caplog: pytest.LogCaptureFixture) -> None:
    """When rejected/ cannot be made (a file is in its way), the bad entry is logged and
    recorded once, not at every scan, and the valid result still goes."""
    (office.inbox / "rejected").write_text("in the way")
    os.mkfifo(office.inbox / "a.pdf")
    office.drop_valid()
    _settle(office)
    caplog.set_level(logging.INFO, logger="vanthu.results")

    assert office.scan() == 2
    assert office.scan() == 0

    assert len(_events(caplog, "result.skipped")) == 1
    assert len(_events(caplog, "result.cannot_move")) == 1
    assert len(office.refusals()) == 1 and office.queued() == [office.valid_name()]


def test_send_result_refuses_what_is_not_a_regular_file(office: Office, tmp_path: Path) -> None:
    """`vanthu send-result` reads through the same gate: a named pipe is refused at once
    (not waited on), and so is a file past the limit; a valid PDF still goes."""
    fifo = tmp_path / "result.pdf"
    os.mkfifo(fifo)
    huge = tmp_path / "huge.pdf"
    with open(huge, "wb") as out:
        out.truncate(ResultsConfig.max_pdf_bytes + 1)

    def send(path: Path) -> results.Outcome:
        return asyncio.run(results.send_result(office.cfg, office.desk.engine, path,
                                               office.code, move=False))

    assert "named pipe" in send(fifo).reason_en
    assert "above the limit" in send(huge).reason_en
    assert send(VALID).sent and office.queued() == [VALID.name]


NAMES = st.binary(max_size=300).map(lambda b: b.replace(b"/", b"").replace(b"\0", b"") + b".pdf")


@given(NAMES)
def test_a_cleaned_name_is_always_acceptable(raw: bytes) -> None:
    """Whatever the bytes, the name an entry gets in rejected/ passes the name check, keeps
    the extension and is not hidden; a name that passes is kept as it is."""
    cleaned = results.safe_name(raw)

    assert results.name_problem(cleaned.encode()) is None
    assert cleaned.endswith(".pdf") and not cleaned.startswith((".", "-"))
    if results.name_problem(raw) is None and not raw.startswith(b"."):
        assert cleaned == raw.decode()


@given(st.text(alphabet=st.characters(categories=("L", "M", "N", "P", "Zs"),
                                           exclude_characters="/"), max_size=60))
def test_vietnamese_names_pass(stem: str) -> None:
    """Names in any script, with accents and punctuation, are accepted (when short enough
    and not starting with a dash)."""
    raw = f"{stem}.pdf".encode()
    problem = results.name_problem(raw)

    assert (problem is None) == (not stem.startswith("-") and len(raw) <= 200), problem
    assert results.name_problem("Kết quả HS-2026-000123 – Bùi Văn Toàn.pdf".encode()) is None


@pytest.mark.parametrize("value", [0, -1, True, 1.5, "50MB"])
def test_a_wrong_size_limit_is_a_configuration_error(value: object) -> None:
    """[results] max_pdf_bytes must be a positive whole number of bytes."""
    with pytest.raises(ConfigError, match="max_pdf_bytes"):
        config.parse({"results": {"max_pdf_bytes": value}}, file="t", text="", base=Path("."))


def test_the_size_limit_is_read() -> None:
    parsed = config.parse({"results": {"max_pdf_bytes": 1}}, file="t", text="", base=Path("."))
    default = config.parse({}, file="t", text="", base=Path("."))

    assert parsed.results.max_pdf_bytes == 1
    assert default.results.max_pdf_bytes == 50 * 1024 * 1024
