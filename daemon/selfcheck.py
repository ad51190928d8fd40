"""Prove a configuration before it is trusted, at `vanthu check` and at every start of the daemon.

Every problem of config.toml, of the rules folder and of the trust roots is collected in one run.
Then one of each email vanthu sends is composed with the configured identity and templates from a
built-in sample mail, serialised as SMTP would carry it and read back; a failure is located at the
configuration key that causes it (found by composing again with that key alone set). Nothing is
sent and nothing is kept: the letters are written into a throwaway in-memory database. A crash
inside only loses that check; the daemon does not start without it passing.
"""

from __future__ import annotations

import email.header
import email.policy
import email.utils
import functools
import hashlib
import os
import pickle
import re
import selectors
import signal
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from email.message import EmailMessage, Message
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, insert, select
from sqlalchemy.pool import StaticPool

from daemon import config
from daemon.config import Config
from daemon.db import cases, metadata, outbox_bodies
from daemon.errors import ConfigError, Problem
from daemon.log import rehearsal
from daemon.models import (
    Action,
    Address,
    Applicant,
    Attachment,
    Document,
    Kind,
    ParsedMail,
    Understanding,
)
from daemon.office import digest, letters, receipt
from daemon.outbound import compose
from daemon.routing import rules as rules_module
from daemon.routing.route import resolve
from daemon.routing.rules import ROLES, Absence, Procedure, RuleSet, Targets
from daemon.understand import ocr

# A Monday, 14:05 in Hà Nội: inside working hours, outside any holiday.
SAMPLE_AT = datetime(2026, 11, 23, 7, 5, tzinfo=UTC)
SAMPLE_PDF = (b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n"
              b"trailer\n<< /Root 1 0 R >>\n%%EOF\n")
_SAMPLE_APPLICANT = Applicant("Nguyễn Thị Hoa", "hoa.nguyen@example.com", "0912 345 678")
_SAMPLE_LEADER = "lanhdao@example.gov.vn"
_MAX_LINE = 998  # octets, RFC 5322 §2.1.1


@dataclass(frozen=True)
class Report:
    """What `check` found: problems (each `file:line: message`) and notes that are not errors."""

    problems: tuple[Problem, ...]
    notes: tuple[str, ...]
    config: Config | None
    rules: RuleSet | None


def check(path: Path | None) -> Report:
    """Everything `vanthu check` reports: config.toml, the rules folder it names (or the default
    one, even when config.toml is wrong), the trust roots, and the emails composed with them."""
    examined = config.examine(path)
    problems = list(examined.problems)
    ruleset: RuleSet | None = None
    try:
        ruleset = rules_module.load(examined.rules_dir)
    except ConfigError as err:
        problems += err.problems
    cfg = examined.config
    if cfg is None:
        return Report(tuple(problems), (), None, ruleset)
    problems += prove(cfg, ruleset)
    return Report(tuple(problems), tuple(notes(cfg)), cfg, ruleset)


def load(path: Path | None) -> tuple[Config, RuleSet]:
    """The config and the rules, or a ConfigError listing the problems of both."""
    examined = config.examine(path)
    problems = list(examined.problems)
    ruleset: RuleSet | None = None
    try:
        ruleset = rules_module.load(examined.rules_dir)
    except ConfigError as err:
        problems += err.problems
    if problems or examined.config is None or ruleset is None:
        raise ConfigError(problems)
    return examined.config, ruleset


def prove(cfg: Config, ruleset: RuleSet | None, aside: bool = False) -> list[Problem]:
    """The checks that need config and rules together: trust roots, `[digest] to`, the glyphs
    of the receipt's font and one of each email. An empty list means the daemon may start.
    `aside`: see `Proving`."""
    return Proving(cfg, ruleset, aside).problems()


class Proving:
    """`prove`, begun. With `aside` (the daemon's start), the checks that draw a PDF (the
    receipt's fonts and the dossier receipt) begin at once in a forked copy of this process,
    while this one goes on with its start and then does the others in `problems`. The
    daemon's process then neither waits for them alone nor imports the PDF maker (fpdf2,
    33 MB), which only its workers use. The problems are the same, in the same order. Only
    while this process has one thread (a fork copies one): otherwise, all in `problems`."""

    def __init__(self, cfg: Config, ruleset: RuleSet | None, aside: bool = False) -> None:
        self.cfg = cfg
        self.ruleset = ruleset
        self.rules = ruleset or RuleSet({}, {}, (), ())
        # The case letters address the rules' people and read the rules on disk to know whom
        # they may write to: with rules that do not load they are checked once they are mended.
        self.with_letters = ruleset is not None and bool(ruleset.people or ruleset.departments)
        self._aside = _Aside(self._drawn, ASIDE_SECONDS) \
            if aside and threading.active_count() == 1 and hasattr(os, "fork") else None

    def _drawn(self) -> tuple[list[Problem], list[_Failure]]:
        return (_glyphs(self.cfg, self.rules),
                _failures(self.cfg, self.rules, self.with_letters, drawing=True))

    def problems(self) -> list[Problem]:
        """Every problem found, once the copy (if any) has answered."""
        problems = _trust_roots(self.cfg)
        if self.ruleset is not None:
            problems += _digest_recipients(self.cfg, self.ruleset)
        if self._aside is None:
            lacking, drawn = self._drawn()
            return problems + lacking + _grouped(
                drawn + _failures(self.cfg, self.rules, self.with_letters, drawing=False))
        found = _failures(self.cfg, self.rules, self.with_letters, drawing=False)
        glyphs: list[Problem]
        found_there: list[_Failure]
        try:
            glyphs, found_there = self._aside.result()
        except _AsideFailed as err:
            where = str(self.cfg.path) if self.cfg.path else "<defaults>"
            glyphs, found_there = [Problem(where, None, f"the check of the emails that draw "
                                                        f"a PDF (the dossier receipt) failed: "
                                                        f"{err}")], []
        return problems + glyphs + _grouped(found + found_there)


def notes(cfg: Config) -> list[str]:
    """Settings that are allowed but probably not meant, as `file:line: message`."""
    found = []
    if not cfg.security.authserv_id:
        file, line = config.locate(cfg.path, "security.authserv_id")
        where = f"{file}:{line}" if line else file
        found.append(f"{where}: security.authserv_id is empty: no sender can be "
                     "authenticated, so no acknowledgement is sent")
    if why := ocr.unavailable(cfg.limits.ocr):
        file, line = config.locate(cfg.path, "ocr")
        where = f"{file}:{line}" if line else file
        found.append(f"{where}: {why} (scanned documents are not read; their fields come "
                     "from the mail)")
    if cfg.intake.since is not None and cfg.intake.since > datetime.now(UTC):
        file, line = config.locate(cfg.path, "intake.start")
        where = f"{file}:{line}" if line else file
        found.append(f"{where}: intake.start {cfg.intake.start} is in the future: until then "
                     "every mail is kept as old mail, not processed")
    return found


# ---------------------------------------------------------------------------------------------
# Checks across files.


def _at(cfg: Config, key: str, message: str) -> Problem:
    file, line = config.locate(cfg.path, key)
    return Problem(file, line, f"{key}: {message}")


def _trust_roots(cfg: Config) -> list[Problem]:
    if not cfg.results.trust_roots:
        return []
    from daemon.office.results import load_roots  # pyHanko is slow to import: only when needed

    try:
        load_roots(cfg.results.trust_roots)
    except ConfigError as err:
        return list(err.problems)
    return []


def _digest_recipients(cfg: Config, rules: RuleSet) -> list[Problem]:
    """Each `[digest] to` entry must reach someone: an address, or a role, person or department
    that the digest resolves (absences left aside: they change from day to day)."""
    problems = []
    present = replace(rules, absences=())
    for entry in cfg.digest.to:
        if "@" in entry:
            continue
        if entry not in ROLES and entry not in rules.people and entry not in rules.departments:
            problems.append(_at(cfg, "digest.to", f"{entry!r} is not a role "
                                f"({', '.join(ROLES)}), nor a person or department of "
                                "people.yaml, nor an address"))
            continue
        alone = replace(cfg, digest=replace(cfg.digest, to=(entry,)))
        if digest.recipients(alone, present, SAMPLE_AT):
            continue
        problems.append(_at(cfg, "digest.to",
                            f"{entry!r} reaches nobody: nobody in people.yaml has this role"))
    return problems


@functools.lru_cache(maxsize=1)
def _font_letters() -> frozenset[int]:
    """Code points every font of vanthu's PDFs can draw: the receipt slip's serif faces and
    the registers' sans faces, regular and bold. Only each face's character map is read (the
    map fpdf2 draws with), not the whole face: this runs at every start."""
    from fontTools.ttLib import TTFont  # type: ignore[import-untyped]  # fpdf2's reader

    maps = []
    for path in receipt.face_files(receipt.FONT_DIR):
        with TTFont(str(path), lazy=True) as font:
            maps.append(set(font.getBestCmap() or ()))
    return frozenset(set.intersection(*maps)) if maps else frozenset()


def _glyphs(cfg: Config, rules: RuleSet) -> list[Problem]:
    """Names printed on the receipt PDF must be drawable: a letter the font lacks is silently
    left out of the slip the applicant prints."""
    try:
        drawable = _font_letters()
    except Exception as err:  # bulkhead: fpdf2 raises its own types for a broken font file
        return [Problem(str(receipt.FONT_DIR), None, f"the receipt's fonts cannot be loaded: "
                                                     f"{err}")]

    def missing(text: str) -> str:
        lacking = dict.fromkeys(c for c in text if not c.isspace() and ord(c) not in drawable)
        return ", ".join(f"{c!r} (U+{ord(c):04X})" for c in lacking)

    problems = []
    for key, text in (("agency.name", cfg.agency.name),
                      ("agency.result_place", cfg.agency.result_place)):
        if lacking := missing(text):
            problems.append(_at(cfg, key, f"the receipt's font has no letter for {lacking}: "
                                          "it would be missing from the printed slip"))
    for procedure in rules.procedures:
        if lacking := missing(procedure.name):
            file, line = _procedure_line(cfg, procedure)
            problems.append(Problem(file, line, f"procedure {procedure.id!r}: the receipt's font "
                                                f"has no letter for {lacking} in its name"))
    return problems


def _procedure_line(cfg: Config, procedure: Procedure) -> tuple[str, int | None]:
    path = cfg.rules.dir / "procedures.yaml"
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return str(path), None
    pattern = re.compile(rf"^\s*-?\s*id:\s*['\"]?{re.escape(procedure.id)}['\"]?\s*(#.*)?$")
    return str(path), next((n for n, line in enumerate(lines, 1) if pattern.match(line)), None)


# ---------------------------------------------------------------------------------------------
# The sample mail and one of each email.


def _sample_mail() -> ParsedMail:
    pdf = Attachment("Đơn đề nghị cấp giấy phép xây dựng.pdf", "application/pdf",
                     len(SAMPLE_PDF), hashlib.sha256(SAMPLE_PDF).hexdigest(), SAMPLE_PDF)
    macro = Attachment("Bảng kê «mẫu».docm", "application/vnd.ms-word.document.macroEnabled.12",
                       3, "0" * 64, b"PK\x03", withheld="tệp có macro")
    return ParsedMail(
        message_id="<mau-kiem-tra.1@example.com>",
        subject="Đơn đề nghị cấp giấy phép xây dựng nhà ở riêng lẻ — “Khẩn”, Lô A/12",
        sender=Address(_SAMPLE_APPLICANT.name or "", _SAMPLE_APPLICANT.email or ""),
        to=(), reply_to=(), date=SAMPLE_AT, headers={},
        body="Kính gửi Sở Xây dựng,\nTôi xin gửi hồ sơ đề nghị cấp giấy phép xây dựng nhà ở.\n"
             "Trân trọng, Nguyễn Thị Hoa — ĐT 0912 345 678",
        attachments=(pdf, macro), content_types=("multipart/mixed", "text/plain",
                                                 "application/pdf"))


def _understanding(kind: Kind, confidentiality: str | None = None) -> Understanding:
    document = Document(number="15", symbol="KH-UBND", type="Kế hoạch",
                        issuer="Ủy ban nhân dân tỉnh Tây Ninh", place="Tây Ninh",
                        date=date(2026, 11, 20), summary="Về việc kiểm tra công trình, "
                        "nhà ở riêng lẻ năm 2027", urgency="Hỏa tốc",
                        confidentiality=confidentiality)
    if kind is Kind.DOSSIER:
        return Understanding(kind, "mẫu", None, None, _SAMPLE_APPLICANT, authenticated=True)
    return Understanding(kind, "mẫu", None, document, None, authenticated=True)


def sample_case_code(cfg: Config) -> str:
    """A dossier code as the configured format makes it."""
    try:
        return cfg.agency.case_code_format.format(code=cfg.agency.code, yymmdd="261123",
                                                  yyyy=2026, seq=1)
    except (KeyError, IndexError, ValueError, TypeError, AttributeError):
        return "HS-2026-000001"


def _procedure(rules: RuleSet) -> Procedure:
    if rules.procedures:  # the longest name: the one most likely to break a layout
        return max(rules.procedures, key=lambda p: len(p.name))
    return Procedure("mau", "Cấp giấy phép xây dựng nhà ở riêng lẻ", ("giấy phép",), 15,
                     ("Đơn đề nghị",))


def _leaders(rules: RuleSet) -> tuple[tuple[str, ...], str]:
    """Every person's address, and the note of a stand-in written with real names."""
    people = list(rules.people.values())
    to = tuple(dict.fromkeys(p.email for p in people)) or (_SAMPLE_LEADER,)
    if len(people) < 2:
        return to, ""
    day = SAMPLE_AT.date()
    away = Absence(people[0].id, day, day, "công tác", people[1].id)
    _, notes = resolve(replace(rules, absences=(away,)), Targets(people=(people[0].id,)),
                       day, "")
    return to, "; ".join(notes)


# An email as a function of the configuration: the message, or the bytes already queued.
Builder = Callable[[Config], EmailMessage | bytes]


def _builders(rules: RuleSet, scratch: Engine, with_letters: bool) -> list[tuple[str, Builder]]:
    """One of each email vanthu sends, as functions of the configuration."""
    mail = _sample_mail()
    sha = hashlib.sha256(b"vanthu self-check").hexdigest()
    to, note = _leaders(rules)
    units = list(rules.departments.values())
    sender = (mail.sender.email,)

    def ctx(book: str | None = "incoming", **more: Any) -> compose.Context:
        return compose.Context(sha256=sha, received_at=SAMPLE_AT, book=book, number=15,
                               year=2026, **more)

    def receipt_mail(cfg: Config) -> EmailMessage:
        context = compose.Context(sha256=sha, received_at=SAMPLE_AT,
                                  case_code=sample_case_code(cfg), procedure=_procedure(rules),
                                  appointment=date(2026, 12, 14),
                                  queue="số thứ tự 3, buổi chiều ngày 23/11/2026")
        return compose.acknowledge(cfg, context, Action("acknowledge", sender), mail,
                                   _understanding(Kind.DOSSIER))

    def assign_forward(cfg: Config) -> EmailMessage:
        names = ", ".join(u.name for u in units) or "Phòng Quản lý xây dựng"
        return compose.forward(cfg, ctx(), Action("assign", to, f"Giao {names} giải quyết"),
                               mail, _understanding(Kind.DOCUMENT))

    def result_mail(cfg: Config) -> EmailMessage:
        return compose.result(cfg, pdf_sha256=sha, pdf_name="Giấy phép xây dựng số 123.pdf",
                              pdf=SAMPLE_PDF, to=mail.sender.email,
                              case_code=sample_case_code(cfg), in_reply_to=mail.message_id,
                              outgoing="123/GPXD-SXD ngày 04/12/2026",
                              summary="Cấp giấy phép xây dựng nhà ở riêng lẻ", sent_at=SAMPLE_AT)

    def digest_mail(cfg: Config) -> EmailMessage:
        report = digest.build(scratch, cfg, rules, SAMPLE_AT - timedelta(hours=6), SAMPLE_AT)
        recipients = digest.recipients(cfg, rules, SAMPLE_AT) or [cfg.smtp.from_address]
        return digest.compose(cfg, report, recipients, "2026-11-23T14:00", SAMPLE_AT)

    def letter(kind: str) -> Builder:
        return lambda cfg: _letter(cfg, scratch, kind, mail, [u.email for u in units] or list(to),
                                   units[0].name if units else "Phòng Quản lý xây dựng")

    emails: list[tuple[str, Builder]] = [
        ("forward", lambda cfg: compose.forward(
            cfg, ctx(), Action("forward", to, note), mail, _understanding(Kind.DOCUMENT))),
        ("confidential notice", lambda cfg: compose.notify(
            cfg, ctx("confidential"), Action("notify", to), mail,
            _understanding(Kind.DOCUMENT, "Tối mật"))),
        ("acknowledgement", lambda cfg: compose.acknowledge(
            cfg, ctx(), Action("acknowledge", sender), mail, _understanding(Kind.DOCUMENT))),
        ("dossier receipt", receipt_mail),
        ("assignment forward", assign_forward),
        ("signed-result mail", result_mail),
        ("digest", digest_mail),
    ]
    if with_letters:
        emails += [("supplement request", letter("supplement")), ("apology", letter("apology")),
                   ("deadline reminder", letter("reminder")),
                   ("assignment notice", letter("assign"))]
    return emails


def _letter(cfg: Config, scratch: Engine, kind: str, mail: ParsedMail, to: list[str],
            lead: str) -> bytes:
    """A case letter as `daemon.letters` queues it, read back from the scratch outbox; the
    transaction is rolled back, so the scratch database stays empty."""
    with scratch.connect() as conn:
        try:
            conn.execute(insert(cases).values(
                code=sample_case_code(cfg), opened_at=SAMPLE_AT, status="in_progress",
                applicant_name=_SAMPLE_APPLICANT.name, applicant_email=mail.sender.email,
                applicant_phone=_SAMPLE_APPLICANT.phone, procedure="Cấp giấy phép xây dựng",
                deadline=date(2026, 12, 14)))
            case = conn.execute(select(cases)).one()
            today = SAMPLE_AT.date()
            if kind == "supplement":
                letters.supplement_request(conn, cfg, case, [
                    "Bản vẽ mặt bằng có chữ ký của chủ đầu tư", "Giấy tờ về quyền sử dụng đất "
                    "(bản sao có chứng thực)"], today, mail.message_id)
            elif kind == "apology":
                letters.apology(conn, cfg, case, date(2026, 12, 21), "hồ sơ cần thêm thời gian "
                                "thẩm định thực địa", mail.message_id)
            elif kind == "reminder":
                letters.reminder(conn, cfg, case, to, 2, today)
            else:
                letters.assignment(conn, cfg, case, to, lead, date(2026, 12, 14), SAMPLE_AT)
            raw = conn.scalar(select(outbox_bodies.c.raw)
                              .order_by(outbox_bodies.c.outbox_id.desc()).limit(1))
        finally:
            conn.rollback()
    if raw is None:
        raise LookupError(f"letters wrote no {kind} into the outbox")
    return bytes(raw)  # exactly what the sender would hand to the SMTP server


@functools.lru_cache(maxsize=1)
def _neutral() -> Config:
    """A configuration every email is known to compose with: the reference the configured
    values are swapped into, one at a time, to find which one breaks an email."""
    return config.parse({"smtp": {"from": "Văn thư <vanthu@example.invalid>"},
                         "rules": {"dir": str(receipt.SHIPPED.parent)}},
                        file="<self-check>", text="", base=Path("/"))


@dataclass(frozen=True)
class _Suspect:
    """A configuration key that feeds the emails, and how to copy its value between configs."""

    key: str
    copy: Callable[[Config, Config], Config]  # (source, into) -> into with source's value


_SUSPECTS = (
    _Suspect("smtp.from", lambda s, c: replace(c, smtp=replace(
        c.smtp, from_=s.smtp.from_, from_name=s.smtp.from_name,
        from_address=s.smtp.from_address))),
    _Suspect("agency.name", lambda s, c: replace(c, agency=replace(c.agency, name=s.agency.name))),
    _Suspect("agency.message_id_domain", lambda s, c: replace(c, agency=replace(
        c.agency, message_id_domain=s.agency.message_id_domain))),
    _Suspect("agency.result_place", lambda s, c: replace(c, agency=replace(
        c.agency, result_place=s.agency.result_place))),
    _Suspect("agency.case_code_format", lambda s, c: replace(c, agency=replace(
        c.agency, code=s.agency.code, case_code_format=s.agency.case_code_format))),
    _Suspect("agency.timezone", lambda s, c: replace(c, agency=replace(
        c.agency, timezone=s.agency.timezone))),
)


@contextmanager
def _scratch() -> Iterator[Engine]:
    """An empty database in memory with the schema, for composing the sample emails (the
    schema as the code declares it: no migration history to read at every start); what the
    samples do there is a rehearsal, not logged as news."""
    engine = create_engine("sqlite://", poolclass=StaticPool)
    try:
        metadata.create_all(engine)
        with rehearsal():
            yield engine
    finally:
        engine.dispose()


def emails(cfg: Config, ruleset: RuleSet) -> list[tuple[str, bytes]]:
    """One of each email vanthu sends, composed with `cfg` and `ruleset`, as the bytes the SMTP
    server would receive; whatever composing raises is raised."""
    with _scratch() as scratch:
        made = [(label, build(cfg)) for label, build in _builders(ruleset, scratch, True)]
    return [(label, m if isinstance(m, bytes) else m.as_bytes(policy=email.policy.SMTP))
            for label, m in made]


# The emails whose composing draws a PDF (fpdf2): checked aside at the daemon's start.
DRAWING = frozenset({"dossier receipt"})
# How long the check aside may take: minutes, where it takes a fraction of a second (an
# agency's receipt template that the PDF maker lays out forever is reported, not waited for).
ASIDE_SECONDS = 120.0

_Located = tuple[str, int | None, str]  # file, line, message
# A failure of one email: its place in the list of emails, where its cause is, and its label.
_Failure = tuple[int, _Located, str]


def _failures(cfg: Config, rules: RuleSet, with_letters: bool,
              drawing: bool) -> list[_Failure]:
    """Compose the emails that draw a PDF (`drawing`) or the others, read each back, and
    locate every failure at its cause."""
    found: list[_Failure] = []
    blamed: dict[str, list[_Located]] = {}  # a reason seen before has the same cause
    with _scratch() as scratch:
        for n, (label, build) in enumerate(_builders(rules, scratch, with_letters)):
            if (label in DRAWING) != drawing:
                continue
            reasons, error = _attempt(build, cfg)
            if not reasons:
                continue
            if not all(r in blamed for r in reasons):
                for reason, located in zip(reasons, _blame(cfg, build, reasons, error),
                                           strict=True):
                    blamed[reason] = located
            found += [(n, place, label) for reason in reasons for place in blamed[reason]]
    return found


def _grouped(found: list[_Failure]) -> list[Problem]:
    """One problem per cause, naming the emails it breaks, in the order of the emails."""
    failures: dict[_Located, list[str]] = {}
    for _, place, label in sorted(found, key=lambda failure: failure[0]):
        labels = failures.setdefault(place, [])
        if label not in labels:
            labels.append(label)
    return [Problem(file, line, f"{message} (in the {', '.join(labels)})")
            for (file, line, message), labels in failures.items()]


class _AsideFailed(Exception):
    """The check aside gave no answer: it raised, was killed, or took too long."""


class _Aside:
    """`work()` run in a forked copy of this process; `result()` waits for its answer (pickled
    through a pipe) at most `seconds` from the start, then kills it."""

    def __init__(self, work: Callable[[], Any], seconds: float) -> None:
        self.seconds = seconds
        self.started = time.monotonic()
        self._read, write = os.pipe()
        self._pid = os.fork()
        if self._pid == 0:  # the copy: answers, and ends without running anything of ours
            code = 0
            try:
                os.close(self._read)
                try:
                    answer: tuple[str, Any] = ("done", work())
                except Exception as err:  # bulkhead: the parent reports it
                    answer = ("raised", f"{type(err).__name__}: {err}")
                with os.fdopen(write, "wb") as out:
                    pickle.dump(answer, out)
            except BaseException:  # nothing may escape a forked copy
                code = 70
            finally:
                os._exit(code)
        os.close(write)

    def result(self) -> Any:
        chunks: list[bytes] = []
        waiting = selectors.DefaultSelector()
        waiting.register(self._read, selectors.EVENT_READ)
        try:
            while True:
                left = self.started + self.seconds - time.monotonic()
                if left <= 0 or not waiting.select(left):
                    os.kill(self._pid, signal.SIGKILL)
                    raise _AsideFailed(f"it did not end within {self.seconds:g} s")
                chunk = os.read(self._read, 1 << 16)
                if not chunk:
                    break
                chunks.append(chunk)
        finally:
            waiting.close()
            os.close(self._read)
            _, status = os.waitpid(self._pid, 0)
        if not chunks:
            raise _AsideFailed(f"it ended without an answer ({_ended(status)})")
        try:
            kind, value = pickle.loads(b"".join(chunks))  # our own copy's answer
        except Exception as err:  # cut short: it died while writing it
            raise _AsideFailed(f"its answer is incomplete ({_ended(status)}): "
                               f"{type(err).__name__}") from err
        if kind != "done":
            raise _AsideFailed(f"it raised {value}")
        return value


def _ended(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"


def _attempt(build: Builder, cfg: Config) -> tuple[list[str], Exception | None]:
    """Why the email made by `build` with `cfg` could not be sent as written ([] when it can),
    and the exception composing raised, if it did."""
    try:
        made = build(cfg)
        raw = made if isinstance(made, bytes) else made.as_bytes(policy=email.policy.SMTP)
    except Exception as err:  # bulkhead: any failure to compose is what this check reports
        return [f"cannot be composed: {type(err).__name__}: {err}"], err
    return read_back(cfg, raw), None


def _blame(cfg: Config, build: Builder, reasons: list[str],
           error: Exception | None) -> list[list[_Located]]:
    """Where each reason comes from: the line of the agency's template that raised, or each
    configuration key that alone, in an otherwise neutral configuration, reproduces the
    failure; else the config file, saying that vanthu itself fails."""
    template = _template_frame(cfg, error) if error else None
    if template:
        return [[(*template, f"this template breaks the email: it {r}")] for r in reasons]
    file = str(cfg.path) if cfg.path else "<defaults>"
    neutral = _neutral()
    base = cfg
    for suspect in _SUSPECTS:
        base = suspect.copy(neutral, base)
    if _attempt(build, base)[0]:
        return [[(file, None, "vanthu cannot compose this email even with a neutral identity "
                              f"(a fault of vanthu or of its installation): {r}")]
                for r in reasons]
    found: dict[str, list[_Located]] = {r: [] for r in reasons}
    for suspect in _SUSPECTS:
        alone = suspect.copy(cfg, base)
        if alone == base:  # configured as the neutral value: cannot be the cause
            continue
        _, line = config.locate(cfg.path, suspect.key)
        for reason in _attempt(build, alone)[0]:
            if reason in found:
                found[reason].append((file, line, f"{suspect.key}: the email {reason}"))
    keys = ", ".join(s.key for s in _SUSPECTS)
    return [found[r] or [(file, None, f"the combination of {keys}: the email {r}")]
            for r in reasons]


def _template_frame(cfg: Config, error: Exception) -> tuple[str, int | None] | None:
    """The agency's own template (and its line) in which composing raised, if any."""
    folder = cfg.rules.dir / "templates"
    name = getattr(error, "filename", None)
    if name and Path(name).parent == folder:
        return str(name), getattr(error, "lineno", None)
    for frame in reversed(traceback.extract_tb(error.__traceback__)):
        if Path(frame.filename).parent == folder:
            return frame.filename, frame.lineno
    return None


# ---------------------------------------------------------------------------------------------
# Reading an email back as a receiver would.


def shown_name(raw_from: str) -> str:
    """The display name of a raw From header as RFC 2047 §6.2 decodes it: white space between
    two encoded words is dropped. (The modern parser of Python 3.11 keeps it inside address
    headers, CPython gh-128110, so its `display_name` of a long folded name gains spaces that
    no mail client shows.)"""
    unfolded = re.sub(r"\r?\n(?=[ \t])", "", raw_from)
    pairs = email.utils.getaddresses([unfolded])
    name = pairs[0][0] if len(pairs) == 1 else ""
    return str(email.header.make_header(email.header.decode_header(name)))


def read_back(cfg: Config, raw: bytes) -> list[str]:
    """Why `raw`, as vanthu would hand it to the SMTP server, is not what was meant: over-long
    lines, non-ASCII headers, parse defects, a From other than `[smtp] from` (address and
    shown name), a Message-ID outside `message_id_domain`. [] when it is sound."""
    reasons: list[str] = []
    head, _, _ = raw.partition(b"\r\n\r\n")
    if any(len(line) > _MAX_LINE for line in raw.split(b"\r\n")):
        reasons.append(f"has a line longer than {_MAX_LINE} octets")
    if not head.isascii():
        reasons.append("has a header that is not ASCII (would need SMTPUTF8)")
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    for part in msg.walk():
        reasons += [f"does not read back cleanly: {type(d).__name__}: {d}" for d in part.defects]
    for name, value in msg.items():
        reasons += [f"header {name} does not read back cleanly: {type(d).__name__}: {d}"
                    for d in getattr(value, "defects", ())]
    reasons += _from_problems(cfg, msg)
    message_id = str(msg.get("Message-ID", "")).strip()
    domain = cfg.agency.message_id_domain
    if not re.fullmatch(rf"<[^<>@\s\"]+@{re.escape(domain)}>", message_id, re.IGNORECASE):
        reasons.append(f"has a Message-ID {message_id!r} that is not <…@{domain}>")
    subject = msg.get("Subject")
    if subject is None or not str(subject).strip() or "\n" in str(subject):
        reasons.append("has no one-line Subject")
    for name in ("To", "Reply-To"):
        for address in getattr(msg.get(name), "addresses", ()):
            if config.address_problem(address.addr_spec, dotted_domain=False):
                reasons.append(f"has a {name} address that cannot be delivered: "
                               f"{address.addr_spec!r}")
    if getattr(msg.get("Date"), "datetime", None) is None:
        reasons.append("has no valid Date")
    for part in msg.iter_attachments():
        try:
            part.get_content()
        except (LookupError, ValueError) as err:
            reasons.append(f"has an attachment that cannot be decoded: {err}")
    return list(dict.fromkeys(reasons))


def _from_problems(cfg: Config, msg: Message) -> list[str]:
    header = msg.get("From")
    addresses: tuple[Any, ...] = getattr(header, "addresses", ())
    if len(addresses) != 1:
        return [f"has {len(addresses)} From addresses instead of one"]
    reasons = []
    if addresses[0].addr_spec != cfg.smtp.from_address:
        reasons.append(f"is From {addresses[0].addr_spec!r}, not {cfg.smtp.from_address!r}")
    raw_from = next((v for k, v in msg.raw_items() if k.lower() == "from"), "")
    want = cfg.smtp.from_name or cfg.agency.name
    if (got := shown_name(str(raw_from))) != want:
        reasons.append(f"shows the sender as {got!r}, not {want!r}")
    return reasons
