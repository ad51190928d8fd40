"""Signed results out: a PDF the clerk drops in the results folder (or gives to
`vanthu send-result`) is verified, matched to its case, queued for the case's sender and
written in the outgoing register, in one transaction; only then is the file moved to sent/.

A PDF is sent only if every signature validates against the configured trust roots, the last
signature covers the whole file, and its case is not confidential. Anything else moves to
rejected/ with a reason in Vietnamese and English. Killed after the commit, the restart finds
the PDF's sha256 already in the outgoing register and only moves the file: nothing twice.

The folder is shared with people, so whatever sits in it is untrusted:

- Only regular files are read. A symbolic link (to /etc/shadow, to another case's result), a
  named pipe (reading it would wait forever), a socket, a device or a folder named like a PDF
  is set aside: renamed into rejected/ (renaming a link moves the link, never what it points
  to) with a reason file, and logged once as `result.skipped`. The entry is classified with
  lstat without being opened (opening a device may act on it), and a regular file is then
  opened with O_NOFOLLOW | O_NONBLOCK and checked again with fstat on the open descriptor, so
  an entry swapped between the two looks is caught, never followed, never waited on.
- A name that cannot travel safely (not UTF-8, control characters such as a line break,
  invisible formatting characters such as the right-to-left override that disguises an
  extension, a leading dash, longer than MAX_NAME_BYTES) is set aside the same way under a
  cleaned name; its reason file shows the original name escaped. The scan goes on: one bad
  entry never holds up the others.
- A file above `[results] max_pdf_bytes` is refused unread, and the read itself stops at the
  limit plus one byte (a file that grows while being read is refused too).
- Signature validation and text extraction run in a separate worker process, started from a
  fork server that has this module preloaded (so it costs a fork, not a Python start), with an
  address-space cap (`[limits] worker_memory_mb`) and a time limit (VERIFY_SECONDS). A thread
  would keep the event loop free as well, but a thread cannot be stopped: a PDF built to make
  the parser spin or swallow memory would hold it, and the daemon's shutdown, forever. A
  process is killed at its deadline and the PDF refused. The worker answers in JSON, not
  pickle, since it is the process that handled the hostile bytes. Reading the file and the
  database work run in threads: the event loop (watchdog, digest, sender) never waits on them.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import io
import json
import logging
import multiprocessing
import os
import re
import resource
import stat
import threading
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection as PipeEnd
from multiprocessing.process import BaseProcess
from pathlib import Path

from sqlalchemy import Connection, Engine, insert, select

from daemon.config import Config
from daemon.db import (
    cases,
    messages,
    next_number,
    outgoing_entries,
    reading,
    register_entries,
    rejected_results,
    utcnow,
)
from daemon.errors import EmailRefused
from daemon.intake.workers import FORK_SERVER_PRELOAD
from daemon.office.cases import record_result
from daemon.office.closing import open_year
from daemon.office.register import Book
from daemon.outbound.compose import message_id, result
from daemon.outbound.outbox import enqueue
from daemon.outbound.recipients import Allowed, Answering, Purpose
from daemon.textnorm import fold
from daemon.understand import extract, signatures
from daemon.understand.signatures import Roots

log = logging.getLogger("vanthu.results")

# A file must have stood still (same size, times and inode) this long, by the monotonic clock,
# before it is taken: it may still be being copied in. Not its mtime's age: a step of the wall
# clock would then hold a file back (the clock set back) or take one half copied (set forward).
SETTLE_SECONDS = 2.0
VERIFY_SECONDS = 120.0  # a PDF whose verification takes longer is refused (its worker killed)
# Longer names are refused: this leaves room for " (2)" and ".reason.txt" within the 255 bytes
# a file name may have.
MAX_NAME_BYTES = 200
_REGISTER_NUMBER = re.compile(r"(?i)\bSD[-_ ]?(\d+)[-_/](\d{4})\b")


@dataclass(frozen=True)
class Verdict:
    valid: bool
    en: str
    vi: str
    signer: str | None = None


def load_roots(paths: tuple[str, ...]) -> Roots:
    """The trust roots of [results] trust_roots; an unreadable one is a configuration error."""
    return Roots.read(paths, "[results] trust_roots")


async def verify(data: bytes, roots: Roots) -> Verdict:
    """Validate every signature of a PDF (signatures.validate): all must be valid and the
    last must cover the entire file."""
    try:
        checks = await signatures.validate(data, roots)
    except Exception as err:  # a broken PDF may raise anything inside the reader
        return Verdict(False, f"not a readable PDF: {err}", f"không đọc được tệp PDF: {err}")
    if not checks:
        return Verdict(False, "unsigned: the PDF carries no digital signature",
                       "chưa ký số: tệp PDF không có chữ ký số")
    if not roots.ders:
        return Verdict(False, "no trust roots configured ([results] trust_roots)",
                       "chưa cấu hình chứng thư gốc tin cậy ([results] trust_roots)")
    signer = None
    for index, check in enumerate(checks, 1):
        signer = check.subject or signer
        # A result is the agency's own final document: nothing may follow its last signature,
        # not even changes a signature would allow.
        if (index == len(checks) and check.intact and check.trusted
                and check.coverage != "entire_file"):
            return Verdict(False, "content was added after the last signature (an incremental "
                                  "update not covered by any signature)",
                           "tệp có nội dung được thêm sau chữ ký số cuối cùng", signer)
        if not check.valid:
            return Verdict(False, check.reason_en, check.reason, signer)
    return Verdict(True, "valid", "hợp lệ", signer)


@dataclass(frozen=True)
class Target:
    """Whom a result goes to, what it answers, and what the PDF must name to be sent there."""

    to: str
    case_id: int | None
    case_code: str | None
    entry_id: int | None
    in_reply_to: str | None
    confidential: bool
    # The PDF's text must contain one of these (the case code, the applicant's name, the
    # answered document's number/symbol or its issuer): a result is sent only where the
    # document itself says it belongs.
    names: tuple[str, ...] = ()
    # The registered sender never passed authentication: its address is only a claim.
    unproven: bool = False


def match(conn: Connection, cfg: Config, file_name: str, case_code: str | None) -> Target | None:
    """Find the case (code in the name, or given) or register entry (SD<n>-<year>).

    The result goes to the address vanthu registered (the applicant of the case, or the
    strictly parsed sender of the entry), never to one read from a display name.
    """
    if case_code is None:
        found = re.search(rf"({cfg.agency.case_ref_pattern})", file_name)
        case_code = found.group(1) if found else None
    if case_code:
        case = conn.execute(select(cases).where(cases.c.code == case_code)).first()
        if case is None or not case.applicant_email:
            return None
        entry = conn.execute(select(register_entries.c.id, register_entries.c.book)
                             .where(register_entries.c.case_id == case.id)).first()
        origin = conn.scalar(select(messages.c.header_message_id)
                             .where(messages.c.id == case.message_id)) if case.message_id \
            else None
        return Target(case.applicant_email, case.id, case.code, entry.id if entry else None,
                      origin or None, bool(entry and entry.book == Book.CONFIDENTIAL),
                      tuple(n for n in (case.code, case.applicant_name) if n))
    if number := _REGISTER_NUMBER.search(file_name):
        row = conn.execute(
            select(register_entries.c.id, register_entries.c.book, register_entries.c.case_id,
                   register_entries.c.sender_email, register_entries.c.document,
                   register_entries.c.trust, messages.c.header_message_id)
            .join(messages, messages.c.id == register_entries.c.message_id)
            .where(register_entries.c.number == int(number.group(1)),
                   register_entries.c.year == int(number.group(2)),
                   register_entries.c.book == Book.INCOMING)).first()
        if row is None or not row.sender_email:
            return None
        document = row.document or {}
        names = [document.get("issuer")]
        if document.get("symbol"):
            names.append(f"{document.get('number') or ''}/{document['symbol']}".lstrip("/"))
        return Target(row.sender_email, row.case_id, None, row.id,
                      row.header_message_id or None, False, tuple(n for n in names if n),
                      unproven=not row.trust)
    return None


def _squeezed(text: str) -> str:
    """Folded without accents or spaces, so "HS-2026-000123" and "Bùi Văn Toàn" are found
    however the PDF's text extraction spaced them."""
    return re.sub(r"\s+", "", fold(text, accents=False))


def mismatch(cfg: Config, target: Target, text: str) -> tuple[str, str] | None:
    """Why the PDF's own text does not support sending it to `target` (English, Vietnamese),
    or None when it names the case, the applicant or the answered document, and no other
    case."""
    for found in re.finditer(rf"({cfg.agency.case_ref_pattern})", text):
        if found.group(1) != target.case_code:
            return (f"the PDF names case {found.group(1)}, not the one it was sent for",
                    f"văn bản ghi mã hồ sơ {found.group(1)}, không phải hồ sơ được gửi đến")
    squeezed = _squeezed(text)
    if not any(_squeezed(name) in squeezed for name in target.names):
        wanted = ", ".join(target.names) or "(nothing to compare)"
        return (f"the PDF names neither the case nor its applicant or document ({wanted}): "
                "it may belong to someone else",
                f"văn bản không ghi mã hồ sơ, tên người nộp hoặc văn bản được trả lời "
                f"({wanted}); có thể là kết quả của hồ sơ khác")
    return None


TEXT_PAGES = 10  # pages of a result read to check whom it names; the header is on page one


def _text(data: bytes) -> str:
    """The text of the first pages of a PDF that already passed signature validation (so it
    is the agency's own document, not attacker input)."""
    import pypdf  # here: the daemon's process imports it only when a result comes

    try:
        pages = pypdf.PdfReader(io.BytesIO(data)).pages
        return "\n".join(page.extract_text() or "" for page in pages[:TEXT_PAGES])
    except Exception:  # a reader error leaves no text: the name check then refuses
        return ""


# -- What may be taken from the folder ------------------------------------------------------


@dataclass(frozen=True)
class Refusal:
    """Why a file is not sent: in English for the log and the register, in Vietnamese for
    the clerk."""

    en: str
    vi: str


class Refused(Exception):
    """Reading stopped: the entry is not a regular file (`not_a_file`), or it is too large."""

    def __init__(self, refusal: Refusal, not_a_file: bool = False) -> None:
        super().__init__(refusal.en)
        self.refusal = refusal
        self.not_a_file = not_a_file


def _hidden_or_control(char: str) -> bool:
    """Control characters and line breaks, and the invisible formatting characters (the
    right-to-left override that shows "gpj.pdf" as "fdp.jpg", zero-width ones)."""
    return unicodedata.category(char) in ("Cc", "Zl", "Zp", "Cf", "Cs")


def name_problem(raw: bytes) -> Refusal | None:
    """Why a file name cannot be used as it is (in the register, the email, the clerk's
    folders), or None."""
    try:
        name = raw.decode("utf-8")
    except UnicodeDecodeError:
        return Refusal("the file name is not valid UTF-8 text (named on a system using another "
                       "encoding)",
                       "tên tệp không phải văn bản UTF-8 hợp lệ (tệp được đặt tên trên máy dùng "
                       "bảng mã khác)")
    if any(unicodedata.category(c) in ("Cc", "Zl", "Zp") for c in name):
        return Refusal("the file name contains a line break or another control character",
                       "tên tệp chứa ký tự xuống dòng hoặc ký tự điều khiển")
    if any(_hidden_or_control(c) for c in name):
        return Refusal("the file name contains invisible characters (such as a right-to-left "
                       "override, which disguises the real extension)",
                       "tên tệp chứa ký tự ẩn (ví dụ ký tự đảo chiều văn bản, dùng để che giấu "
                       "phần mở rộng thật của tệp)")
    if len(raw) > MAX_NAME_BYTES:
        return Refusal(f"the file name is longer than {MAX_NAME_BYTES} bytes",
                       f"tên tệp dài quá {MAX_NAME_BYTES} byte")
    if name.startswith("-"):
        return Refusal("the file name begins with a dash, which commands read as an option",
                       "tên tệp bắt đầu bằng dấu gạch ngang (-), dễ bị hiểu nhầm là tham số "
                       "lệnh")
    return None


def shown(raw: bytes) -> str:
    """A file name as logs and reason files show it: quoted, every invisible character and
    undecodable byte escaped."""
    return repr(raw.decode("utf-8", "backslashreplace"))


def safe_name(raw: bytes) -> str:
    """The name a badly named entry gets in rejected/: its visible characters kept, the others
    replaced by "_", no leading dash or dot, the .pdf extension kept, at most MAX_NAME_BYTES
    bytes."""
    text = "".join("_" if c in "\ufffd/" or _hidden_or_control(c) else c
                   for c in raw.decode("utf-8", "replace"))
    suffix = text[-4:] if text.lower().endswith(".pdf") else ""
    stem = text[:len(text) - len(suffix)].lstrip("-.") or "_"
    room = MAX_NAME_BYTES - len(suffix.encode())
    return stem.encode()[:room].decode("utf-8", "ignore") + suffix


_NOT_A_FILE = {
    stat.S_IFLNK: ("a symbolic link, not a file: copy the PDF itself into the folder",
                   "đây là lối tắt (liên kết tượng trưng), không phải tệp: hãy chép chính tệp "
                   "PDF vào thư mục"),
    stat.S_IFIFO: ("a named pipe (FIFO), not a file",
                   "đây là đường ống dữ liệu (FIFO), không phải tệp"),
    stat.S_IFDIR: ("a folder named like a PDF, not a file",
                   "đây là thư mục mang tên giống tệp PDF, không phải tệp"),
    stat.S_IFSOCK: ("a socket, not a file", "đây là socket, không phải tệp"),
    stat.S_IFCHR: ("a device, not a file", "đây là thiết bị, không phải tệp"),
    stat.S_IFBLK: ("a device, not a file", "đây là thiết bị, không phải tệp"),
}


def _not_a_file(mode: int) -> Refusal:
    en, vi = _NOT_A_FILE.get(stat.S_IFMT(mode), ("not a regular file",
                                                 "không phải tệp thông thường"))
    return Refusal(en, vi)


def kind_problem(mode: int) -> Refusal | None:
    """Why an entry of this mode (from lstat or fstat) is not taken, or None for a regular
    file."""
    return None if stat.S_ISREG(mode) else _not_a_file(mode)


def _megabytes(size: int) -> str:
    return f"{size / 1024 / 1024:.1f}".replace(".", ",")  # Vietnamese decimal comma


def _too_large(size: int, limit: int, more: str = "") -> Refusal:
    return Refusal(f"the file has {more}{size} bytes, above the limit of {limit} "
                   "([results] max_pdf_bytes)",
                   f"tệp quá lớn ({_megabytes(size)} MB), vượt giới hạn "
                   f"{_megabytes(limit)} MB")


def read_pdf(path: bytes, limit: int, follow_symlinks: bool = False) -> bytes:
    """The bytes of a regular file of at most `limit` bytes, or Refused.

    Opened without following a symbolic link (unless `follow_symlinks`) and without waiting on
    a named pipe, then judged by fstat on the open descriptor: what is read is what was
    checked. At most `limit` + 1 bytes are ever read."""
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC
    if not follow_symlinks:
        flags |= os.O_NOFOLLOW
    try:
        fd = os.open(path, flags)
    except OSError as err:
        if err.errno in (errno.ELOOP, errno.ENXIO):  # a symbolic link; a socket
            mode = stat.S_IFLNK if err.errno == errno.ELOOP else stat.S_IFSOCK
            raise Refused(_not_a_file(mode), not_a_file=True) from err
        raise
    try:
        info = os.fstat(fd)
        if problem := kind_problem(info.st_mode):
            raise Refused(problem, not_a_file=True)
        if info.st_size > limit:
            raise Refused(_too_large(info.st_size, limit))
        chunks: list[bytes] = []
        size = 0
        while size <= limit and (chunk := os.read(fd, min(1 << 20, limit + 1 - size))):
            chunks.append(chunk)
            size += len(chunk)
        if size > limit:  # it grew while being read
            raise Refused(_too_large(size, limit, more="more than "))
        return b"".join(chunks)
    finally:
        os.close(fd)


# -- Verification in a worker process -------------------------------------------------------

_FORK_SERVER = multiprocessing.get_context("forkserver")
# Workers fork from a server that has already imported this module, pyHanko and pypdf.
_FORK_SERVER.set_forkserver_preload(FORK_SERVER_PRELOAD)
MAX_ANSWER_BYTES = 16 * 1024 * 1024  # the worker's JSON answer: a verdict and some text
# A worker that has not started within this is the machine's trouble, not the PDF's: the scan
# fails (logged) and the file is tried again at the next one. Its time limit starts when it
# has started.
START_SECONDS = 60.0


def _verify_in_worker(pipe: PipeEnd) -> None:
    """The work: the trust roots' files and the PDF in, the verdict and the text of a valid
    PDF out (as JSON)."""
    roots = load_roots(pipe.recv())
    data = pipe.recv_bytes()
    verdict = asyncio.run(verify(data, roots))  # the worker's own event loop
    text = _text(data) if verdict.valid else ""
    pipe.send_bytes(json.dumps({"valid": verdict.valid, "en": verdict.en, "vi": verdict.vi,
                                "signer": verdict.signer, "text": text}).encode())


# The work a worker process does (a test puts a gate in front of it).
_WORKER: Callable[[PipeEnd], None] = _verify_in_worker


def _worker_main(pipe: PipeEnd, memory_mb: int, work: Callable[[PipeEnd], None]) -> None:
    """The worker process: capped in memory, it says it is ready (the clock starts then), then
    does `work`."""
    limit = memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    pipe.send_bytes(b"ready")
    work(pipe)


def _answer(raw: bytes) -> tuple[Verdict, str]:
    """The worker's answer, read as plain data."""
    try:
        answer = json.loads(raw)
        signer = answer["signer"]
        return (Verdict(answer["valid"] is True, str(answer["en"]), str(answer["vi"]),
                        signer if isinstance(signer, str) else None), str(answer["text"]))
    except (ValueError, KeyError, TypeError):
        return Verdict(False, "the verifier gave an unreadable answer",
                       "chương trình kiểm tra chữ ký số trả lời không hợp lệ"), ""


def _timed_out(seconds: float) -> Verdict:
    return Verdict(False, f"verification took longer than {seconds:g} s and was stopped (a PDF "
                          "built to exhaust the verifier?)",
                   f"việc kiểm tra chữ ký số kéo dài quá {seconds:g} giây nên đã bị dừng (tệp "
                   "PDF có thể được tạo ra để làm treo chương trình kiểm tra)")


def _crashed(code: int | None) -> Verdict:
    return Verdict(False, f"the verifier stopped without an answer (exit code {code}): the PDF "
                          "may be built to exhaust it",
                   f"chương trình kiểm tra chữ ký số dừng đột ngột (mã thoát {code}); tệp PDF "
                   "có thể được tạo ra để làm hỏng chương trình kiểm tra")


class _Verification:
    """One PDF verified in its own worker process, run from a thread; `cancel` (from the
    event loop) kills the worker, which ends the thread's wait."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._process: BaseProcess | None = None
        self._cancelled = False

    def run(self, data: bytes, roots: tuple[str, ...], memory_mb: int,
            seconds: float) -> tuple[Verdict, str]:
        ours, theirs = _FORK_SERVER.Pipe()
        with self._lock:
            if self._cancelled:
                return _crashed(None), ""
            process = self._process = _FORK_SERVER.Process(
                target=_worker_main, args=(theirs, memory_mb, _WORKER), name="vanthu-verify",
                daemon=True)
            process.start()
        theirs.close()
        answer: bytes | None = None
        try:
            if not ours.poll(START_SECONDS):
                raise RuntimeError(f"the verification worker did not start within "
                                   f"{START_SECONDS:g} s")
            ours.recv_bytes(16)  # ready
            ours.send(roots)
            ours.send_bytes(data)
            if not ours.poll(seconds):
                return _timed_out(seconds), ""
            answer = ours.recv_bytes(MAX_ANSWER_BYTES)
        except (EOFError, OSError):  # the worker died (killed, out of memory) or said too much
            pass
        finally:
            ours.close()
            with self._lock:
                self._process = None
            process.kill()  # nothing if it has already finished
            process.join()
        return _answer(answer) if answer is not None else (_crashed(process.exitcode), "")

    def cancel(self) -> None:
        with self._lock:
            self._cancelled = True
            if self._process is not None:
                self._process.kill()


async def check(data: bytes, roots: tuple[str, ...], memory_mb: int,
                seconds: float) -> tuple[Verdict, str]:
    """The verdict on a PDF (signatures checked against the trust roots in the files `roots`)
    and, when valid, its text: worked out in a worker process that is killed after `seconds`
    (or when this is cancelled) and may use `memory_mb` of address space. The event loop goes
    on meanwhile."""
    verification = _Verification()
    try:
        return await asyncio.to_thread(verification.run, data, roots, memory_mb, seconds)
    except asyncio.CancelledError:
        verification.cancel()
        raise


# -- Sending one result ---------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    sent: bool
    reason_en: str
    reason_vi: str
    outgoing_number: str | None = None


def _refuse(engine: Engine, name: str, refusal: Refusal, event: str = "result.rejected",
            **extra: str) -> Outcome:
    """Write the refusal where the digest finds it, and log it."""
    with engine.begin() as conn:
        conn.execute(insert(rejected_results).values(file_name=name, reason=refusal.en,
                                                     rejected_at=utcnow()))
    log.warning(event, extra={"file": name, "reason": refusal.en, **extra})
    return Outcome(False, refusal.en, refusal.vi)


def _already_sent(engine: Engine, digest: str) -> str | None:
    """The outgoing number a PDF with this sha256 was sent under, if it was."""
    with reading(engine) as conn:
        done = conn.execute(select(outgoing_entries.c.number, outgoing_entries.c.year)
                            .where(outgoing_entries.c.pdf_sha256 == digest)).first()
        conn.rollback()
    return f"{done.number}/{done.year}" if done else None


def _not_for(cfg: Config, target: Target | None, text: str) -> Refusal | None:
    """Why a verified PDF does not go to `target`, or None."""
    if target is None:
        return Refusal("no case or register entry matches the file name",
                       "không tìm thấy hồ sơ hoặc số đến khớp với tên tệp")
    if target.unproven:
        return Refusal("the registered sender never passed authentication: its address is only "
                       "a claim; send the answer by hand",
                       "người gửi văn bản đến chưa được xác thực; đề nghị gửi văn bản trả lời "
                       "theo cách khác")
    if reason := mismatch(cfg, target, text):
        return Refusal(*reason)
    if target.confidential:
        return Refusal("the case is confidential: its result never goes by email",
                       "hồ sơ mật: không gửi kết quả qua thư điện tử")
    return None


def _queue(conn: Connection, cfg: Config, target: Target, name: str, data: bytes, digest: str,
           signer: str | None, text: str) -> str:
    """Queue the result's email and write the outgoing register; the outgoing number."""
    now = utcnow()
    year = open_year(conn, "outgoing", now.astimezone(cfg.agency.tz).year)
    number = next_number(conn, f"outgoing:{year}")
    document = extract.from_text(text, name)
    outgoing = (f"{document.number or number}/{document.symbol}"
                if document and document.symbol else f"số đi {number}/{year}")
    email = result(cfg, pdf_sha256=digest, pdf_name=name, pdf=data, to=target.to,
                   case_code=target.case_code, in_reply_to=target.in_reply_to,
                   outgoing=outgoing, summary=document.summary if document else None,
                   sent_at=now)
    enqueue(conn, cfg, email=email, purpose=Purpose.RESULT, recipients=[target.to],
            allowed=Allowed.nobody(), now=now,
            answering=Answering.of_record(conn, case_id=target.case_id,
                                          entry_id=target.entry_id))
    conn.execute(insert(outgoing_entries).values(
        year=year, number=number, pdf_sha256=digest, file_name=name,
        case_id=target.case_id, register_entry_id=target.entry_id,
        document=document.as_json() if document else None, signer=signer,
        recipients=[target.to], sent_at=now,
        outbox_message_id=message_id(cfg, digest, "result")))
    if target.case_id is not None:
        record_result(conn, target.case_id, target.to, f"{number}/{year}", name)
    return f"{number}/{year}"


def _record(cfg: Config, engine: Engine, name: str, data: bytes, digest: str,
            verdict: Verdict, text: str, case_code: str | None) -> Outcome:
    """Match a verified PDF and queue it, in one transaction; or refuse it."""
    try:
        with engine.begin() as conn:
            target = match(conn, cfg, name, case_code)
            refusal = _not_for(cfg, target, text)
            if refusal is None and target is not None:  # (no refusal means a target)
                queued = _queue(conn, cfg, target, name, data, digest, verdict.signer, text)
    except EmailRefused as err:  # the registered address cannot be written to
        refusal = Refusal(f"the email cannot be sent: {err}", f"không gửi được thư: {err}")
    if refusal is not None or target is None:
        return _refuse(engine, name, refusal or Refusal("no target", "không có nơi nhận"))
    log.info("result.queued", extra={"file": name, "to": target.to, "outgoing": queued})
    return Outcome(True, "sent", "đã gửi", queued)


async def _send(cfg: Config, engine: Engine, name: str, data: bytes,
                case_code: str | None) -> Outcome:
    """Verify, match and queue a result already read; the file itself is not touched."""
    digest = await asyncio.to_thread(lambda: hashlib.sha256(data).hexdigest())
    if done := await asyncio.to_thread(_already_sent, engine, digest):
        return Outcome(True, "sent", "đã gửi", done)
    load_roots(cfg.results.trust_roots)  # an unreadable root is the operator's to fix: raised
    verdict, text = await check(data, cfg.results.trust_roots, cfg.limits.worker_memory_mb,
                                VERIFY_SECONDS)
    if not verdict.valid:
        return await asyncio.to_thread(_refuse, engine, name, Refusal(verdict.en, verdict.vi))
    return await asyncio.to_thread(_record, cfg, engine, name, data, digest, verdict, text,
                                   case_code)


# -- Filing away ----------------------------------------------------------------------------


def _free_name(folder: Path, name: str) -> str:
    """`name`, or "name (2).pdf" and so on when something of that name, or its reason file,
    is already there: nothing in sent/ or rejected/ is ever replaced."""
    stem, suffix = (name[:-4], name[-4:]) if name.lower().endswith(".pdf") else (name, "")
    candidate, n = name, 1
    while (os.path.lexists(folder / candidate)
           or os.path.lexists(folder / f"{candidate}.reason.txt")):
        n += 1
        candidate = f"{stem} ({n}){suffix}"
    return candidate


def _write_reason(path: Path, refusal: Refusal, original: str | None) -> None:
    """The reason file beside a refused entry, created new: never written through a link or
    into a pipe someone placed under its name."""
    text = f"Không gửi: {refusal.vi}\nNot sent: {refusal.en}\n"
    if original is not None:
        text += f"Tên tệp gốc / original name: {original}\n"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    with open(fd, "w", encoding="utf-8") as out:
        out.write(text)


def _file_away(cfg: Config, source: bytes, name: str, outcome: Outcome,
               original: str | None = None) -> None:
    """Rename `source` into sent/ or rejected/ (the reason file beside it) as `name`, or a
    free variant of it. A rename moves a link or a pipe itself, never what it points to."""
    folder = cfg.results.inbox_dir / ("sent" if outcome.sent else "rejected")
    folder.mkdir(parents=True, exist_ok=True)
    target = _free_name(folder, name)
    if not outcome.sent:
        _write_reason(folder / f"{target}.reason.txt",
                      Refusal(outcome.reason_en, outcome.reason_vi), original)
    os.rename(source, os.fsencode(folder / target))


async def send_result(cfg: Config, engine: Engine, path: Path, case_code: str | None = None,
                      move: bool = True) -> Outcome:
    """Verify, match and queue one result PDF; move it to sent/ or rejected/ (when `move`).

    The path is the operator's own choice (`vanthu send-result`), so a symbolic link is
    followed; anything but a regular file of at most `[results] max_pdf_bytes` is refused."""
    raw = os.fsencode(path.name)
    if problem := name_problem(raw):
        name, original = safe_name(raw), shown(raw)
        outcome = await asyncio.to_thread(_refuse, engine, name, problem)
    else:
        name, original = path.name, None
        try:
            data = await asyncio.to_thread(read_pdf, os.fsencode(path),
                                           cfg.results.max_pdf_bytes, True)
        except Refused as err:
            outcome = await asyncio.to_thread(_refuse, engine, name, err.refusal)
        else:
            outcome = await _send(cfg, engine, name, data, case_code)
    if move:
        await asyncio.to_thread(_file_away, cfg, os.fsencode(path), name, outcome, original)
    return outcome


# -- The folder -----------------------------------------------------------------------------

# Entries whose filing away failed (no room, no permission), as (name, device, inode, mtime):
# reported once, then left alone until they change or the daemon restarts.
_unmovable: set[tuple[bytes, int, int, int]] = set()

Clock = Callable[[], float]
# Each entry of a results folder as last seen: what it looked like (device, inode, size,
# mtime, ctime) and since when it has looked so, by the scan's monotonic clock.
_settling: dict[bytes, tuple[tuple[int, ...], float]] = {}


def _settled(path: bytes, info: os.stat_result, clock: Clock) -> bool:
    """Whether the entry at `path` has looked the same for SETTLE_SECONDS of `clock`: the
    first scan that sees it (or sees it changed) starts the count, a later one takes it."""
    looks = (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)
    now = clock()
    seen = _settling.get(path)
    if seen is None or seen[0] != looks:
        _settling[path] = (looks, now)
        return False
    return now - seen[1] >= SETTLE_SECONDS


def _forget_gone(folder: bytes, names: list[bytes]) -> None:
    """Drop what was remembered of entries of `folder` no longer in it."""
    present = {os.path.join(folder, raw) for raw in names}
    for path in [p for p in _settling if os.path.dirname(p) == folder and p not in present]:
        del _settling[path]


async def _take(cfg: Config, engine: Engine, path: bytes, raw: bytes,
                clock: Clock = time.monotonic) -> int:
    """Handle one entry of the results folder: 1 when it was handled, 0 when it waits (still
    settling, or already reported)."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:  # gone since the listing
        return 0
    key = (raw, info.st_dev, info.st_ino, info.st_mtime_ns)
    if key in _unmovable or not _settled(path, info, clock):
        return 0
    original = None
    if problem := name_problem(raw) or kind_problem(info.st_mode):
        name = safe_name(raw)
        if name.encode() != raw:
            original = shown(raw)  # the reason file says what it was called
        outcome = await asyncio.to_thread(_refuse, engine, name, problem, "result.skipped",
                                          original=shown(raw))
    else:
        name = raw.decode("utf-8")
        try:
            data = await asyncio.to_thread(read_pdf, path, cfg.results.max_pdf_bytes)
        except Refused as err:  # swapped for a link or a pipe since lstat; or too large
            event = "result.skipped" if err.not_a_file else "result.rejected"
            outcome = await asyncio.to_thread(_refuse, engine, name, err.refusal, event)
        except FileNotFoundError:  # gone since lstat
            return 0
        except OSError as err:  # unreadable (permissions): the clerk sees why in rejected/
            outcome = await asyncio.to_thread(
                _refuse, engine, name, Refusal(f"the file cannot be read: {err.strerror}",
                                               f"không đọc được tệp: {err.strerror}"))
        else:
            outcome = await _send(cfg, engine, name, data, None)
    try:
        await asyncio.to_thread(_file_away, cfg, path, name, outcome, original)
    except OSError as err:
        if len(_unmovable) > 10_000:
            _unmovable.clear()
        _unmovable.add(key)
        log.error("result.cannot_move", extra={"file": shown(raw), "error": str(err)})
    return 1


async def scan_inbox(cfg: Config, engine: Engine, clock: Clock = time.monotonic) -> int:
    """Handle every settled PDF in the results folder; return how many were handled.

    A PDF is settled once it looked the same for SETTLE_SECONDS of `clock` (the monotonic
    clock; a test gives its own), so it is taken at the earliest by the second scan that sees
    it. Names are listed as bytes, so a name that is not UTF-8 is seen (and set aside) rather
    than breaking the listing; one entry's failure is logged and the scan goes on."""
    folder = os.fsencode(cfg.results.inbox_dir)
    try:
        names = sorted(os.listdir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return 0
    _forget_gone(folder, names)
    handled = 0
    for raw in names:
        if raw.startswith(b".") or not raw.lower().endswith(b".pdf"):
            continue  # hidden files (copies in progress), sent/, rejected/, reason files
        try:
            handled += await _take(cfg, engine, os.path.join(folder, raw), raw, clock)
        except Exception:  # bulkhead: a busy database or a full disk must not stop the others
            log.exception("result.failed", extra={"file": shown(raw)})
    return handled
