"""The `vanthu` command line. Every command takes --config PATH (default: embedded defaults).

Exit codes, never with a traceback for an error vanthu knows:
  0   ok
  1   a check failed or something is unhealthy; or the command failed, with one line on stderr
      saying why (the database, a mailbox, the SMTP server, a mail that cannot be read, a file
      named on the command line that cannot be read or written)
  2   the command line itself is wrong (argparse's usage message)
  78  configuration error (EX_CONFIG): every problem of config.toml and the rules on stderr,
      one `file:line: message` a line; systemd does not restart the daemon on it
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pwd
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, func, select

from daemon import __version__, config, log
from daemon.db import (
    make_engine,
    make_reader,
    messages,
    outbox,
    prepare,
    reading,
    register_entries,
    upgrade,
)
from daemon.errors import EX_CONFIG, ConfigError, EmailRefused
from daemon.models import Attachment, CaseStatus, State
from daemon.routing import rules as rules_module

if TYPE_CHECKING:
    from daemon.health import Cause, Verdict
    from daemon.office.release import StoredMail


def _config(args: argparse.Namespace) -> config.Config:
    cfg = config.load(Path(args.config) if args.config else None)
    _as_data_owner(cfg)
    return cfg


def _as_data_owner(cfg: config.Config) -> None:
    """Go on as the owner of the data folder when run by root and someone else owns it (the
    service's user): a command run by root (`sudo vanthu digest`) would leave files there
    that only root may write (the sender's journal, the database's side files, stored mail),
    and the daemon could write there no more. The configuration's secrets are read by then."""
    if os.geteuid() != 0:
        return
    try:
        owner = cfg.storage.data_dir.stat()
    except OSError:
        return  # not made yet: it will be root's, as it would be without vanthu
    if owner.st_uid == 0:
        return
    try:
        name = pwd.getpwuid(owner.st_uid).pw_name
        os.initgroups(name, owner.st_gid)
    except KeyError:  # a user without a name (a folder restored from another machine)
        name = str(owner.st_uid)
        os.setgroups([owner.st_gid])
    os.setgid(owner.st_gid)
    os.setuid(owner.st_uid)
    print(f"vanthu: chạy với quyền của {name}, chủ thư mục dữ liệu {cfg.storage.data_dir}",
          file=sys.stderr)


def cmd_check(args: argparse.Namespace) -> int:
    """Every problem of config.toml, the rules folder and the trust roots, and of the emails
    composed with them (nothing is sent), as `file:line: message`; notes that are not errors."""
    from daemon import selfcheck

    if getattr(args, "connect", False):
        return _check_connect(args)
    report = selfcheck.check(Path(args.config) if args.config else None)
    for problem in report.problems:
        print(problem)
    for note in report.notes:
        print(f"note: {note}")
    if not report.problems:
        print("config and rules are valid; every email vanthu sends composes and reads back")
    return 1 if report.problems else 0


def _check_connect(args: argparse.Namespace) -> int:
    """Log in to every mailbox and the SMTP server; what each offers and what vanthu uses.
    Only the config is read (a wrong one is reported as by `check`): the rules and emails are
    `check` without --connect."""
    from daemon import probe

    probes = probe.probe_all(_config(args))
    if args.json:
        print(json.dumps([p.as_json() for p in probes], ensure_ascii=False, indent=1))
    else:
        for found in probes:
            print("\n".join(probe.describe(found)))
    return 0 if all(p.ok for p in probes) else 1


def cmd_inspect(args: argparse.Namespace) -> int:
    from daemon.routing.route import decide
    from daemon.understand import NoCases, ocr, understand
    from daemon.understand.signatures import signature_lines, signatures_of

    cfg = _config(args)
    ruleset = rules_module.load(cfg.rules.dir)
    raw = Path(args.mail).read_bytes()
    mail, und = understand(raw, cfg, NoCases())
    at = datetime.fromisoformat(args.at) if args.at else datetime.now(UTC)
    if at.tzinfo is None:
        at = at.replace(tzinfo=cfg.agency.tz)
    own = cfg.own_addresses
    decision = decide(und, mail, ruleset, at.astimezone(cfg.agency.tz), own,
                      cfg.calendar.work_calendar())
    out: dict[str, Any] = {
        **und.as_json(),
        "message_id": mail.message_id,
        "subject": mail.subject,
        "from": {"name": mail.sender.name, "email": mail.sender.email},
        "attachments": [{"name": a.name, "type": a.content_type, "size": a.size,
                         "withheld": a.withheld} for a in mail.attachments],
        "rules": [{"id": t.id, "matched": t.matched, "why": t.why} for t in decision.rules],
        "actions": decision.as_json(),
    }
    for entry, attachment in zip(out["attachments"], mail.attachments, strict=True):
        if attachment.package is not None:  # what an edXML package's header says
            entry["edxml"] = attachment.package.as_json()
        if attachment.scanned is not None:  # what OCR read off a scan, and how surely
            entry["ocr"] = {"confidence": dict(attachment.scanned.confidence),
                            "unsure": list(attachment.scanned.unsure)}
        entry["signatures"] = signatures_of(und.signatures, attachment)
    if args.json:
        print(json.dumps(out, ensure_ascii=False, indent=1))
        return 0
    from daemon.health import ACTION_NAMES
    from daemon.office.digest import KIND_NAMES

    print(f"Loại thư:  {KIND_NAMES.get(out['kind'], out['kind'])}  ({out['why']})")
    print(f"Tiêu đề:   {out['subject']}")
    print(f"Người gửi: {mail.sender.name} <{mail.sender.email}>")
    if und.document:
        for key, value in und.document.as_json().items():
            print(f"  {DOCUMENT_FIELDS.get(key, key):18} {_field_text(key, value)}")
        if scores := dict(und.document.confidence):
            print(f"OCR {und.document.file}: " + ", ".join(
                f"{ocr.FIELD_NAMES[k]} {v:.0%}" for k, v in scores.items()
                if und.document.sources().get(k) == "ocr"))
        if unsure := und.document.checks():
            print("CẦN KIỂM TRA: " + ocr.check_note(unsure))
    for attachment in mail.attachments:
        if attachment.package is not None:
            print(f"edXML {attachment.name}: "
                  + json.dumps(attachment.package.as_json(), ensure_ascii=False))
    for line in signature_lines(und.signatures, mail.attachments, cfg.agency.tz):
        print(f"Chữ ký số: {line}")
    if und.applicant:
        print("Người nộp: " + ", ".join(v for v in (und.applicant.name, und.applicant.email,
                                                    und.applicant.phone) if v))
    if und.quarantine:
        print("GIỮ LẠI CHỜ VĂN THƯ: " + "; ".join(und.quarantine_reasons))
    for note in und.trust_notes:
        print(f"Lưu ý: {note}")
    for rule in out["rules"]:
        print(f"Quy tắc {rule['id']}: {'KHỚP' if rule['matched'] else 'không khớp'} — "
              f"{rule['why']}")
    for action in out["actions"]:
        print(f"Sẽ {ACTION_NAMES.get(action['action'], action['action'])} → "
              f"{', '.join(action['to'])}")
    return 0


# The document's fields as `vanthu inspect` shows them to people.
DOCUMENT_FIELDS = {
    "number": "Số", "symbol": "Ký hiệu", "type": "Loại văn bản", "issuer": "Cơ quan ban hành",
    "place": "Địa danh", "date": "Ngày văn bản", "summary": "Trích yếu", "urgency": "Độ khẩn",
    "confidentiality": "Độ mật", "source": "Đọc từ", "sources": "Nguồn từng trường",
    "file": "Tệp", "confidence": "Độ tin cậy (OCR)", "unsure": "Cần kiểm tra",
}
# Where a field was read, when it is not an attachment's name.
_WHERE = {"body": "nội dung thư", "ocr": "bản quét (OCR)"}


def _field_text(key: str, value: Any) -> str:
    """One field of the document as `vanthu inspect` shows it: a date as dd/mm/yyyy, where it
    was read in Vietnamese, field names in Vietnamese, '—' for nothing."""
    from daemon.understand.ocr import FIELD_NAMES

    if value is None or value == [] or value == {}:
        return "—"
    if key == "date":
        return f"{datetime.fromisoformat(value):%d/%m/%Y}"
    if key == "sources":
        return "; ".join(f"{FIELD_NAMES.get(k, k)}: {_WHERE.get(v, v)}" for k, v in value.items())
    if key == "confidence":
        return "; ".join(f"{FIELD_NAMES.get(k, k)}: {v:.0%}" for k, v in value.items())
    if key == "unsure":
        return ", ".join(FIELD_NAMES.get(k, k) for k in value)
    return str(_WHERE.get(value, value)) if key == "source" else str(value)


def _engine(cfg: config.Config) -> Any:
    """The database for a command that writes: created when new, else at this vanthu's schema
    (an older or newer one is named with what to do, see `vanthu db upgrade`)."""
    engine = make_engine(cfg.storage.url)
    _opened.append(engine)
    prepare(engine)
    return engine


def _reader(cfg: config.Config) -> Any:
    """The database for a command that only looks: never created, upgraded or written, and a
    lock is reported within seconds instead of waited out."""
    engine = make_reader(cfg.storage.url)
    _opened.append(engine)
    return engine


# The engines a command opened, disposed of when it ends (main): nothing of the database stays
# open after it, also when main runs in a longer process (the tests, PostgreSQL's sessions).
_opened: list[Engine] = []


def cmd_register(args: argparse.Namespace) -> int:
    cfg = _config(args)
    year = args.year or datetime.now(cfg.agency.tz).year
    if args.action == "close":
        return _register_close(cfg, year, args)
    engine = _reader(cfg)
    if args.action == "export":
        return _register_export(cfg, engine, year, args)
    return _register_list(cfg, engine, year, args.json)


def _register_export(cfg: config.Config, engine: Any, year: int,
                     args: argparse.Namespace) -> int:
    from daemon.office import export

    ruleset = rules_module.load(cfg.rules.dir)
    names = {p.email: p.name for p in ruleset.people.values()}
    names |= {d.email: d.name for d in ruleset.departments.values()}
    register = export.load(engine, cfg, args.book, year, names,
                           parent=args.parent or cfg.agency.parent,
                           volume=args.volume or cfg.agency.volume)
    data = {"csv": export.to_csv, "xlsx": export.to_xlsx}.get(
        args.format, lambda r: export.to_pdf(r, cfg))(register)
    output = Path(args.output or f"so-{args.book}-{year}.{args.format}")
    output.write_bytes(data)
    print(f"{register.title} năm {year}: {len(register.rows)} dòng → {output}")
    return 0


def _register_close(cfg: config.Config, year: int, args: argparse.Namespace) -> int:
    """Close the registers of a year that has ended (khóa sổ); closing again changes nothing."""
    from daemon.office.closing import YearNotEnded, close_year
    from daemon.office.export import NOUNS, TITLES

    try:
        closed = close_year(_engine(cfg), cfg.agency, year, args.actor or "văn thư",
                            force=args.force)
    except YearNotEnded as err:
        print(f"vanthu: {err}", file=sys.stderr)
        return 1
    for closing, new in closed:
        held = f"{closing.count} {NOUNS[closing.book]}"
        if closing.first_number is not None:
            held += f", từ số {closing.first_number} đến số {closing.last_number}"
        when = closing.closed_at.astimezone(cfg.agency.tz)
        state = "đã khóa sổ" if new else "đã được khóa sổ trước đó"
        print(f"{TITLES[closing.book].capitalize()} năm {year}: {held}; {state} ngày "
              f"{when:%d/%m/%Y %H:%M} bởi {closing.closed_by}")
    return 0


# The register list names its books in Vietnamese; the summary of a confidential entry (or one
# that may be confidential) is never printed: its secrecy level is, instead.
BOOK_NAMES = {"incoming": "Sổ đăng ký văn bản đến", "confidential": "Sổ đăng ký văn bản mật đến"}


def _withheld(book: str, note: str | None, document: dict[str, Any] | None) -> str | None:
    """The secrecy level shown instead of an entry's summary, or None when it may be shown."""
    from daemon.office.export import level_name
    from daemon.office.register import DOUBT_NOTE

    if book == "confidential":
        return level_name((document or {}).get("confidentiality")) or "Mật"
    if note and note.startswith(DOUBT_NOTE):
        return DOUBT_NOTE
    return None


def _register_list(cfg: config.Config, engine: Any, year: int, as_json: bool) -> int:
    from daemon.db import cases
    query = (select(register_entries, messages.c.header_message_id, messages.c.stored_at,
                    cases.c.code)
             .join(messages, messages.c.id == register_entries.c.message_id)
             .outerjoin(cases, cases.c.id == register_entries.c.case_id)
             .where(register_entries.c.year == year)
             .order_by(register_entries.c.book.desc(), register_entries.c.number))
    with reading(engine) as conn:
        rows = conn.execute(query).all()
    entries = []
    for r in rows:
        level = _withheld(r.book, r.note, r.document)
        document = dict(r.document) if r.document else None
        if document is not None and level is not None:
            document["summary"] = None
        entries.append({
            "book": r.book, "year": r.year, "number": r.number, "mail_id": r.message_id,
            "received_at": r.received_at.isoformat(), "stored_at": r.stored_at.isoformat(),
            "message_id": r.header_message_id,
            "sender": r.sender, "kind": r.kind, "document": document, "case": r.code,
            "summary_withheld": level is not None,
            "recipients": r.recipients,
            "forwarded_at": r.forwarded_at.isoformat() if r.forwarded_at else None,
        })
    if as_json:
        print(json.dumps(entries, ensure_ascii=False, indent=1))
        return 0
    tz = cfg.agency.tz
    books = [b for b in BOOK_NAMES if any(r.book == b for r in rows)] or ["incoming"]
    for book in books:
        print(f"{BOOK_NAMES[book]} năm {year}")
        for e, r in zip(entries, rows, strict=True):
            if r.book != book:
                continue
            doc = e["document"] or {}
            number = f"{doc.get('number') or ''}/{doc.get('symbol') or ''}" if doc else e["case"]
            level = _withheld(r.book, r.note, r.document)
            what = (doc.get("summary") or r.sender)[:70] if level is None else \
                f"{'Độ mật: ' if book == 'confidential' else ''}{level} (trích yếu không hiển thị)"
            # The server's time of receipt; the fetch time too when vanthu took the mail later.
            late = (f" (lấy về {r.stored_at.astimezone(tz):%d/%m/%Y %H:%M})"
                    if r.stored_at - r.received_at > timedelta(minutes=5) else "")
            print(f"{e['number']:>5}  {r.received_at.astimezone(tz):%d/%m/%Y %H:%M}"
                  f"  {number or '':24} {what}  (thư #{r.message_id}){late}")
    return 0


def next_reminders(now: datetime, cfg: config.Config) -> datetime:
    """The next run of the 07:30 deadline-reminder job, in the agency's time zone."""
    local = now.astimezone(cfg.agency.tz)
    run = local.replace(hour=7, minute=30, second=0, microsecond=0)
    return run if run > local else run + timedelta(days=1)


# The states of a stored mail and of an outgoing email, as people read them.
MESSAGE_STATES = {"stored": "đã lưu, chờ xử lý", "routed": "đã vào sổ và chuyển đi",
                  "done": "đã xử lý xong", "quarantined": "đang giữ lại chờ văn thư xem",
                  "dropped": "đã loại bỏ",
                  "archived": "thư cũ đã lưu, chưa vào sổ (vanthu backlog import)"}
OUTBOX_STATES = {"draft": "đang soạn", "pending": "chờ gửi", "sent": "đã gửi",
                 "failed": "không gửi được"}


def _local_time(cfg: config.Config, moment: str | None) -> str:
    """An ISO time of the status report as people read it: dd/mm/yyyy HH:MM, local."""
    if not moment:
        return "chưa có"
    return f"{datetime.fromisoformat(moment).astimezone(cfg.agency.tz):%d/%m/%Y %H:%M}"


def _counts(counts: dict[str, int], names: dict[str, str]) -> str:
    return ", ".join(f"{n} {names.get(k, k)}" for k, n in sorted(counts.items())) or "không có"


def _section(title: str, rows: list[str]) -> list[str]:
    """A titled list of `vanthu status`, one indented line a row; 'không có' when empty."""
    return [f"{title}:", *(f"  {row}" for row in rows)] if rows else [f"{title}: không có"]


def _outbox_line(cfg: config.Config, item: dict[str, Any]) -> str:
    """One outgoing email of `vanthu status`: what, to whom, tries, and why it is not sent."""
    from daemon.health import ACTION_NAMES

    refused = "; ".join(f"{a}: {why}" for a, why in item.get("refused", {}).items())
    return (f"#{item['id']} {ACTION_NAMES.get(item['action'], item['action'])} → "
            f"{', '.join(item['recipients'])} (đã thử {item['attempts']} lần, tạo lúc "
            f"{_local_time(cfg, item['created_at'])}): "
            f"{refused or item['last_error'] or 'chưa rõ lỗi'}")


def _mailbox_line(cfg: config.Config, box: dict[str, Any]) -> str:
    error = f"; lỗi kỹ thuật: {box['last_error']}" if box["last_error"] else ""
    return (f"{box['mailbox']}/{box['folder']}: lấy thư lần cuối lúc "
            f"{_local_time(cfg, box['last_fetch_at'])}, UID cuối {box['last_uid']}{error}")


def _status_text(cfg: config.Config, report: dict[str, Any]) -> str:
    """`vanthu status` for people, from the report --json prints: Vietnamese, local times."""
    from daemon.office.backfill import lines as backlog_lines

    ocr = report["ocr"]
    lines = [f"Phiên bản vanthu: {report['version']}",
             f"Báo cáo văn thư kế tiếp: {_local_time(cfg, report['next_jobs']['digest'])}",
             f"Nhắc hạn xử lý kế tiếp: {_local_time(cfg, report['next_jobs']['reminders'])}",
             f"Thư đến: {_counts(report['messages'], MESSAGE_STATES)}",
             f"Thư gửi đi: {_counts(report['outbox'], OUTBOX_STATES)}",
             f"Thư đang giữ lại chờ văn thư: {report['quarantine']}",
             *_section("Người gửi tin cậy", report["trusted_senders"]),
             *_section("Hộp thư", [_mailbox_line(cfg, b) for b in report["mailboxes"]]),
             *_section("Thư tồn", backlog_lines(report["backlog"])),
             *_section("Thư gửi đi đã thử, đang chờ gửi lại",
                       [_outbox_line(cfg, r) for r in report["outbox_pending"]]),
             *_section("Thư gửi đi không gửi được",
                       [_outbox_line(cfg, r) for r in report["outbox_failed"]]),
             *_section("Người nhận bị từ chối",
                       [_outbox_line(cfg, r) for r in report["outbox_refused"]]),
             *_section("Sự cố hệ thống đang gặp", [
                 f"{f['problem']} (từ {_local_time(cfg, f['since'])}) [{f['component']}]"
                 for f in report["faults"]]),
             "Đọc chữ trên bản quét (OCR): " + ("bật" if ocr["enabled"] else f"tắt — {ocr['why']}")]
    return "\n".join(lines)


def cmd_status(args: argparse.Namespace) -> int:
    """Exit 1 naming each cause when something is wrong (health.assess decides); warnings are
    shown and leave the exit code 0. A database that cannot be read is one line on stderr, and
    a full or read-only disk found meanwhile is named after it."""
    code, out, err = status_text(args)
    if err:
        print(err, file=sys.stderr)
    if out:
        print(out)
    return code


def status_text(args: argparse.Namespace) -> tuple[int, str, str]:
    """`vanthu status` as its exit code, standard output and standard error (what
    `cmd_status` prints; a caller in another thread reads it without touching sys.stdout)."""
    from daemon import health as health_module
    from daemon.errors import DatabaseError
    from daemon.office import backfill, quarantine
    from daemon.outbound import outbox as outbox_module

    cfg = _config(args)
    try:
        engine = _reader(cfg)
    except DatabaseError as err:
        lines = [" ".join(f"vanthu status: {err}".split())]
        lines += [f"vanthu status: {cause.key}: {cause.vi}" for cause in health_module.disks(cfg)]
        return 1, "", "\n".join(lines)
    now = datetime.now(UTC)
    with reading(engine) as conn:
        states = {str(k): int(v) for k, v in conn.execute(
            select(messages.c.state, func.count()).group_by(messages.c.state)).all()}
        out_states = {str(k): int(v) for k, v in conn.execute(
            select(outbox.c.state, func.count()).group_by(outbox.c.state)).all()}
        boxes = health_module.mailboxes(conn)
        sending = outbox_module.health(conn, now, cfg.status.outbox_overdue_minutes)
        faults = health_module.faults(conn)
        verdict = health_module.assess(conn, cfg, now)
        backlogs = backfill.progress(conn, now)
    trusted = quarantine.trusted(engine)
    engine.dispose()  # nothing of the database stays open (a caller may unmount its disk)
    if locked := health_module.write_locked(cfg):
        verdict.problems.insert(0, locked)
    from daemon.office import digest as digest_module

    upcoming = [digest_module.latest_period(cfg, now + timedelta(hours=h))
                for h in range(1, 25)]
    next_digest = min(p for p in upcoming if p > now.astimezone(cfg.agency.tz))
    report = {
        "version": __version__,
        "next_jobs": {"digest": next_digest.isoformat(),
                      "reminders": next_reminders(now, cfg).isoformat()},
        "messages": states,
        "outbox": out_states,
        "quarantine": states.get(State.QUARANTINED, 0),
        # Domains a clerk trusts without authentication (quarantine release --trust-sender).
        "trusted_senders": [t.as_json() if args.json else
                            f"{t.domain} (bởi {t.by}, "
                            f"{t.at.astimezone(cfg.agency.tz):%d/%m/%Y %H:%M})"
                            for t in trusted],
        "mailboxes": [{"mailbox": b.mailbox, "folder": b.folder, "last_uid": b.last_uid,
                       "last_fetch_at": b.last_fetch_at.isoformat() if b.last_fetch_at else None,
                       "last_error": b.last_error} for b in boxes],
        # Pending emails already tried, each with its last error; failed ones; refusals.
        "outbox_pending": sending.pending,
        "outbox_failed": sending.failed,
        "outbox_refused": sending.refused,
        # Faults of the system the daemon is living with (e.g. the pipeline paused).
        "faults": [{"component": f.component, "problem": f.problem,
                    "since": f.since.isoformat()} for f in faults],
        # Backlogs: each folder's catch-up being fetched, the pipeline's queue, old mail.
        "backlog": backlogs,
    }
    if off := ocr_off(cfg):
        verdict.warnings.append(off)
    report["ocr"] = {"enabled": off is None, "why": off.vi if off else None}
    report["problems"] = [c.en for c in verdict.problems]
    if args.json:
        report |= {"causes": [c.as_json() for c in verdict.problems],
                   "warnings": [c.as_json() for c in verdict.warnings],
                   "healthy": verdict.healthy}
        out = json.dumps(report, ensure_ascii=False, indent=1)
    else:
        out = _status_text(cfg, report) + "\n" + _status_verdict(verdict)
    return (0 if verdict.healthy else 1), out, ""


def ocr_off(cfg: config.Config) -> Cause | None:
    """A warning Cause when scanned documents cannot be read (OCR off or Tesseract missing)."""
    from daemon.health import Cause
    from daemon.understand import ocr

    why = ocr.unavailable(cfg.limits.ocr)
    return None if why is None else Cause(
        "ocr_off", why, "OCR is off: scanned documents are not read", {})


def _status_verdict(verdict: Verdict) -> str:
    """The end of `vanthu status` for people: each problem and warning in Vietnamese with its
    key (what --json calls it), then the verdict."""
    lines = []
    if verdict.problems:
        lines.append("Vấn đề cần xử lý:")
        lines += [f"  - {c.vi} [{c.key}]" for c in verdict.problems]
    if verdict.warnings:
        lines.append("Cảnh báo:")
        lines += [f"  - {c.vi} [{c.key}]" for c in verdict.warnings]
    lines.append("Tình trạng: TỐT" if verdict.healthy else
                 f"Tình trạng: CÓ {len(verdict.problems)} VẤN ĐỀ CẦN XỬ LÝ")
    return "\n".join(lines)


def cmd_backlog(args: argparse.Namespace) -> int:
    """Old mail (archived by `[intake] start`): `import` takes it into the register quietly."""
    from daemon.office import backfill

    return backfill.command(args, _config(args), _engine)


def cmd_quarantine(args: argparse.Namespace) -> int:
    """Mail held for the clerk: list, show one, release one (the clerk vouches for it), drop
    one (with a reason)."""
    from daemon.office import quarantine
    from daemon.office.release import Refused

    cfg = _config(args)
    if args.action == "list":
        return _quarantine_list(args, cfg)
    if args.action in ("trusted", "untrust"):
        return _trusted_senders(args, cfg)
    if args.id is None or not str(args.id).isdigit():
        print(f"vanthu quarantine {args.action}: cần số thư (xem vanthu quarantine list)",
              file=sys.stderr)
        return 2
    args.id = int(args.id)
    trust = None
    try:
        if args.action == "show":
            rules = rules_module.load(cfg.rules.dir)
            held = quarantine.show(_reader(cfg), cfg, args.id, rules, args.as_kind)
            print(json.dumps(held.as_json(), ensure_ascii=False, indent=1) if args.json
                  else _held_text(cfg, held, rules))
            return 0
        if args.action == "release" and args.trust_sender:
            decision, trust = quarantine.release_trusting(
                _engine(cfg), cfg, args.id, actor=args.actor, reason=args.reason or "",
                now=datetime.now(UTC), as_kind=args.as_kind)
        elif args.action == "release":
            decision = quarantine.release(_engine(cfg), args.id, actor=args.actor,
                                          reason=args.reason or "", now=datetime.now(UTC),
                                          as_kind=args.as_kind)
        else:
            decision = quarantine.drop(_engine(cfg), args.id, actor=args.actor,
                                       reason=args.reason or "", now=datetime.now(UTC))
    except Refused as err:
        print(f"Không thực hiện: {err.vi}\nNot done: {err.en}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"id": args.id, **decision}, ensure_ascii=False, indent=1))
    elif args.action == "release":
        print(f"Đã cho thư số {args.id} đi tiếp (người quyết định: {decision['by']}); "
              "daemon đang chạy sẽ xử lý lại thư trong vài giây, không giữ lại nữa.")
        if decision.get("as"):
            print("Lưu ý: nếu thư vẫn không xử lý được, thư sẽ lại bị giữ lại "
                  f"(xem: vanthu quarantine show {args.id}).")
        if trust is not None:
            print(f"Tên miền {trust.domain} được ghi nhận là người gửi tin cậy (bởi {trust.by} "
                  f"lúc {trust.at.astimezone(cfg.agency.tz):%H:%M %d/%m/%Y}): thư sau này "
                  "của tên miền này chỉ thiếu xác thực sẽ không bị giữ lại nữa. Thu hồi: "
                  f"vanthu quarantine untrust {trust.domain}")
    else:
        print(f"Đã loại bỏ thư số {args.id} (người quyết định: {decision['by']}; lý do: "
              f"{decision['reason']}).")
    return 0


def _quarantine_list(args: argparse.Namespace, cfg: config.Config) -> int:
    from daemon.office import quarantine

    engine = _reader(cfg)
    with reading(engine) as conn:
        rows = conn.execute(select(messages.c.id, messages.c.stored_at, messages.c.sender,
                                   messages.c.subject, messages.c.last_error,
                                   messages.c.hold_kinds, messages.c.understanding)
                            .where(messages.c.state == State.QUARANTINED)
                            .order_by(messages.c.id)).all()
    items = [{"id": r.id, "stored_at": r.stored_at.isoformat(), "sender": r.sender,
              "subject": r.subject, "reason": r.last_error,
              "hold_kinds": list(quarantine.kinds_of(r.hold_kinds, r.understanding))}
             for r in rows]
    if args.json:
        print(json.dumps(items, ensure_ascii=False, indent=1))
    for row in [] if args.json else rows:
        print(f"{row.id:>6}  {row.stored_at.astimezone(cfg.agency.tz):%H:%M %d/%m/%Y}  "
              f"{row.sender[:40]:40}  {quarantine.held_reason(row)}")
    return 0


def _trusted_senders(args: argparse.Namespace, cfg: config.Config) -> int:
    """`quarantine trusted`: the domains clerks trust; `quarantine untrust DOMAIN`."""
    from daemon.office import quarantine
    from daemon.office.release import Refused

    if args.action == "untrust":
        if not args.id:
            print("vanthu quarantine untrust: cần TÊN_MIỀN (xem vanthu quarantine trusted)",
                  file=sys.stderr)
            return 2
        try:
            trust = quarantine.untrust(_engine(cfg), args.id, actor=args.actor,
                                       now=datetime.now(UTC))
        except Refused as err:
            print(f"Không thực hiện: {err.vi}\nNot done: {err.en}", file=sys.stderr)
            return 1
        print(json.dumps({"revoked": trust.as_json()}, ensure_ascii=False, indent=1)
              if args.json else f"Đã thu hồi tin cậy đối với tên miền {trust.domain}: thư "
              "sau này của tên miền này thiếu xác thực sẽ lại bị giữ lại chờ văn thư.")
        return 0
    found = quarantine.trusted(_reader(cfg))
    if args.json:
        print(json.dumps([t.as_json() for t in found], ensure_ascii=False, indent=1))
    elif not found:
        print("Chưa có tên miền nào được ghi nhận là người gửi tin cậy.")
    for t in found if not args.json else ():
        print(f"{t.domain}  (từ thư {t.mail} của {t.address}) — bởi {t.by} lúc "
              f"{t.at.astimezone(cfg.agency.tz):%H:%M %d/%m/%Y}: {t.reason}")
    return 0


def _held_text(cfg: config.Config, held: Any, rules: rules_module.RuleSet) -> str:
    from daemon.health import ACTION_NAMES
    from daemon.office import quarantine
    from daemon.office.digest import KIND_NAMES, names

    known = names(rules)
    mail = held.mail
    state = {**MESSAGE_STATES, "stored": "đã cho đi tiếp, chờ xử lý"}.get(held.state, held.state)
    proven = {True: "đã xác thực (DMARC/DKIM)", False: "KHÔNG xác thực được",
              None: "không có kết quả xác thực"}[held.authenticated]
    lines = [f"Thư số {mail.pk}: {state}",
             f"Nhận lúc: {mail.context.received_at.astimezone(cfg.agency.tz):%H:%M %d/%m/%Y}",
             f"Người gửi: {mail.sender} — {proven}",
             f"Tiêu đề: {mail.subject or '(không có tiêu đề)'}",
             f"Loại thư (vanthu nhận định): {KIND_NAMES.get(held.kind or '', 'chưa rõ')}",
             f"Lý do giữ lại: {quarantine.explain(held.reasons, held.kinds) or '(không ghi)'}",
             f"Loại lý do: {quarantine.kinds_vi(held.kinds)}"]
    lines += [f"Lưu ý: {note}" for note in held.trust_notes]
    if held.trusted:
        lines.append(f"Tên miền người gửi {held.trusted.domain} được {held.trusted.by} ghi nhận "
                     f"là người gửi tin cậy lúc "
                     f"{held.trusted.at.astimezone(cfg.agency.tz):%H:%M %d/%m/%Y}")
    if held.clerk:
        at = datetime.fromisoformat(held.clerk["at"]).astimezone(cfg.agency.tz)
        action = {"release": "cho đi tiếp", "drop": "loại bỏ"}.get(held.clerk["action"],
                                                                  held.clerk["action"])
        lines.append(f"Quyết định của văn thư: {action} bởi {held.clerk['by']} "
                     f"lúc {at:%H:%M %d/%m/%Y}: {held.clerk['reason']}")
    lines.append(f"Tệp đính kèm: {len(held.attachments)}")
    for index, (name, size, withheld) in enumerate(held.attachments, 1):
        lines.append(f"  {index}. {name} ({size:,} byte)".replace(",", ".")
                     + (f" — giữ lại: {withheld}" if withheld else ""))
    if held.text_withheld:
        lines.append(f"Nội dung: {held.text_withheld}")
    else:
        lines.append(f"Nội dung ({len(held.text)} dòng đầu):")
        lines += [f"  | {line}" for line in held.text]
    if held.state == "quarantined":
        lines.append("Nếu cho đi tiếp, văn thư điện tử sẽ:" if held.would else
                     f"Nếu cho đi tiếp: {held.would_fail or 'không gửi thư nào'}.")
        lines += [f"  - {ACTION_NAMES.get(action, action)} → "
                  f"{', '.join(known.get(a.lower(), a) for a in to)}"
                  for action, to in held.would]
        if "unreadable" in held.kinds:
            lines.append("Không cho đi tiếp được như vậy: "
                         + quarantine.UNREADABLE_VI.format(pk=mail.pk))
        lines.append(f"Cho đi tiếp: vanthu quarantine release {mail.pk} --actor TÊN "
                     "--reason \"LÝ DO\"; loại bỏ: vanthu quarantine drop "
                     f"{mail.pk} --actor TÊN --reason \"LÝ DO\"")
        if set(held.kinds) == {"auth"} and held.authenticated is None and not held.trusted:
            lines.append("Nếu đây là người gửi chính thức mà máy chủ thư của họ không có xác "
                         "thực, thêm --trust-sender để không giữ lại thư sau này của tên miền "
                         "đó (chỉ khi thiếu xác thực).")
    return "\n".join(lines)


def cmd_refetch(args: argparse.Namespace) -> int:
    """Fetch a mail's IMAP copy again (its stored copy damaged or lost), check it is the same
    mail, write it again, and put it back to be processed if it was quarantined for that."""
    from daemon.intake.fetch import RefetchRefused, refetch
    from daemon.intake.store import MailStore

    cfg = _config(args)
    engine = _engine(cfg)
    try:
        done = refetch(cfg.mailboxes, engine, MailStore(cfg.storage.data_dir), args.id)
    except RefetchRefused as err:
        if args.json:
            print(json.dumps({"mail_id": args.id, "refetched": False, "reasons": err.reasons},
                             ensure_ascii=False, indent=1))
        else:
            print(f"Không lấy lại được thư #{args.id}:", file=sys.stderr)
            for reason in err.reasons:
                print(f"  - {reason}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    if args.json:
        print(json.dumps({"mail_id": done.mail_id, "refetched": True, "mailbox": done.mailbox,
                          "folder": done.folder, "uid": done.uid, "requeued": done.requeued},
                         ensure_ascii=False, indent=1))
    else:
        print(f"Đã lấy lại thư #{done.mail_id} từ {done.mailbox}/{done.folder} (UID {done.uid}) "
              "và ghi lại bản lưu; đã kiểm tra đúng mã sha256.")
        print("Thư được đưa lại vào hàng xử lý." if done.requeued else
              "Thư không ở trong khu cách ly vì bản lưu hỏng: trạng thái giữ nguyên.")
    return 0


def cmd_attachments(args: argparse.Namespace) -> int:
    """A stored mail's attachments: list them, save one (--save N --to DIR), or release a
    withheld one to those the mail was forwarded to (--release N --actor NAME)."""
    from daemon.office import release as release_module

    cfg = _config(args)
    engine = _engine(cfg) if args.release is not None else _reader(cfg)
    try:
        if args.release is not None:
            return _release_attachment(args, cfg, engine)
        mail = release_module.load(engine, args.id)
        found = release_module.attachments(cfg, mail)
        if args.save is not None:
            item = release_module.pick(found, args.save, mail.pk)
            path = release_module.save(item, pk=mail.pk, index=args.save,
                                       directory=Path(args.to))
            print(json.dumps({"index": args.save, "name": item.name, "sha256": item.sha256,
                              "saved_to": str(path)}, ensure_ascii=False, indent=1)
                  if args.json else f"Đã lưu tệp {args.save} ({item.name}) vào {path} "
                  "(chỉ chủ sở hữu được đọc).")
            return 0
        _print_attachments(args, cfg, mail, found)
        return 0
    except release_module.Refused as err:
        print(f"Không thực hiện: {err.vi}\nNot done: {err.en}", file=sys.stderr)
        return 1


def _print_attachments(args: argparse.Namespace, cfg: config.Config, mail: StoredMail,
                       found: Sequence[Attachment]) -> None:
    rows = [{"index": i, "name": a.name, "content_type": a.content_type, "size": a.size,
             "sha256": a.sha256, "withheld": a.withheld,
             "released_at": at.isoformat() if (at := mail.released_at(cfg, a)) else None}
            for i, a in enumerate(found, 1)]
    if args.json:
        print(json.dumps({"id": mail.pk, "subject": mail.subject, "sender": mail.sender,
                          "confidential": mail.confidential,
                          "forwarded_to": list(mail.recipients), "attachments": rows},
                         ensure_ascii=False, indent=1))
        return
    print(f"Thư số {mail.pk}: {mail.subject or '(không có tiêu đề)'} — {mail.sender}")
    if mail.confidential:
        print("Văn bản mật: tệp đính kèm không bao giờ được gửi qua thư điện tử.")
    if not rows:
        print("Thư không có tệp đính kèm.")
        return
    print(f"{'STT':>3}  {'Kích thước (byte)':>17}  {'SHA-256':64}  Tên tệp")
    for index, item in enumerate(found, 1):
        size = f"{item.size:,}".replace(",", ".")
        print(f"{index:>3}  {size:>17}  {item.sha256:64}  {item.name}")
        if item.withheld:
            print(f"{'':5}Đã giữ lại, không chuyển tiếp vì: {item.withheld}")
        if at := mail.released_at(cfg, item):
            print(f"{'':5}Đã chuyển bổ sung lúc {at.astimezone(cfg.agency.tz):%H:%M %d/%m/%Y}")
    print(f"Lưu một tệp để kiểm tra: vanthu attachments {mail.pk} --save STT --to THƯ_MỤC; "
          f"chuyển tệp đã kiểm tra: vanthu attachments {mail.pk} --release STT --actor TÊN")


def _release_attachment(args: argparse.Namespace, cfg: config.Config, engine: Any) -> int:
    from daemon.office import release as release_module
    from daemon.outbound.recipients import Allowed

    allowed = Allowed.of(rules_module.load(cfg.rules.dir), cfg)
    done = release_module.release(engine, cfg, allowed, pk=args.id, index=args.release,
                                  actor=args.actor, now=datetime.now(UTC))
    when = f"{done.at.astimezone(cfg.agency.tz):%H:%M ngày %d/%m/%Y}"
    if args.json:
        print(json.dumps({"index": done.index, "name": done.item.name,
                          "sha256": done.item.sha256, "to": list(done.to),
                          "queued_at": done.at.isoformat(), "already": done.again},
                         ensure_ascii=False, indent=1))
    elif done.again:
        print(f"Tệp {done.index} ({done.item.name}) đã được chuyển bổ sung lúc {when}; "
              "không gửi lại.")
    else:
        print(f"Đã xếp thư chuyển bổ sung tệp {done.index} ({done.item.name}) cho "
              f"{', '.join(done.to)}; thư đi cùng daemon đang chạy.")
    return 0


def cmd_db(args: argparse.Namespace) -> int:
    """`db upgrade`: the schema migrated to this vanthu's (rows kept); `db backup PATH`: a
    consistent copy of a SQLite database, the daemon running or not."""
    cfg = _config(args)
    if args.action == "backup":
        return _db_backup(cfg, args.path)
    engine = make_engine(cfg.storage.url)
    where = engine.url.render_as_string(hide_password=True)
    try:
        before, after = upgrade(engine)
    finally:
        engine.dispose()
    if before == after:
        print(f"Cơ sở dữ liệu {where} đã ở phiên bản lược đồ {after}: không cần nâng cấp.")
    else:
        print(f"Đã nâng cấp cơ sở dữ liệu {where}: phiên bản lược đồ "
              f"{before or 'mới / trước khi có phiên bản'} → {after}.")
    return 0


def _db_backup(cfg: config.Config, path: str | None) -> int:
    from daemon import backup

    if not path:
        print("vanthu db backup: give the PATH of the copy to write", file=sys.stderr)
        return 2
    source = backup.sqlite_path(cfg.storage.url)
    if source is None:
        print(backup.PG_DUMP_ADVICE, file=sys.stderr)
        return 1
    copy = backup.backup(source, Path(path))
    now = datetime.now(cfg.agency.tz)
    print(f"Đã sao lưu {source} vào {copy.path} lúc {now:%H:%M %d/%m/%Y}: "
          f"{copy.size:,} byte".replace(",", ".")
          + f", {copy.entries} mục sổ đăng ký, phiên bản lược đồ {copy.revision or 'chưa có'}.")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from daemon import selfcheck

    # Config and rules examined together: every problem of both is listed before exit 78.
    cfg, ruleset = selfcheck.load(Path(args.config) if args.config else None)
    _as_data_owner(cfg)
    log.setup(args.log_level)
    # The emails that draw a PDF are checked aside from here on, while the daemon's modules
    # are imported and the rest is checked.
    proving = selfcheck.Proving(cfg, ruleset, aside=True)
    from daemon.service import Daemon

    asyncio.run(Daemon(cfg, ruleset, proving).run())
    return 0


def cmd_rules(args: argparse.Namespace) -> int:
    from daemon.routing import ruletest

    if args.action == "check":
        return cmd_check(args)
    cfg = _config(args)
    ruleset = rules_module.load(cfg.rules.dir)
    if args.action == "test":
        failed = 0
        for outcome in ruletest.run_expectations(cfg, ruleset, Path(args.dir)):
            print(("PASS " if outcome.passed else "FAIL ") + outcome.name)
            for problem in outcome.problems:
                print(f"     {problem}")
            failed += not outcome.passed
        return 1 if failed else 0
    since = datetime.fromisoformat(args.since).date()
    changed = 0
    for line in ruletest.replay(cfg, ruleset, _engine(cfg), since):
        print(line)
        changed += 1
    print(f"{changed} mail(s) would have gone differently; nothing was sent")
    return 0


def cmd_send_result(args: argparse.Namespace) -> int:
    from daemon.office.results import send_result

    cfg = _config(args)
    outcome = asyncio.run(send_result(cfg, _engine(cfg), Path(args.pdf), args.case, move=False))
    if not outcome.sent:
        print(f"Không gửi: {outcome.reason_vi}\nNot sent: {outcome.reason_en}", file=sys.stderr)
        return 1
    print(f"Đã xếp thư trả kết quả chờ gửi (số đi {outcome.outgoing_number}); daemon đang "
          "chạy sẽ gửi đi.")
    return 0


def cmd_digest(args: argparse.Namespace) -> int:
    from daemon.office import digest
    from daemon.outbound.send import Sender

    cfg = _config(args)
    ruleset = rules_module.load(cfg.rules.dir)
    engine = _engine(cfg) if args.send else _reader(cfg)
    now = datetime.now(UTC)
    report = digest.build(engine, cfg, ruleset, digest.since_last(engine, cfg, now), now)
    if not args.send:
        print(report.text)
        return 0
    to = digest.recipients(cfg, ruleset, now.astimezone(cfg.agency.tz))
    if not to:
        print("no recipients: set [digest] to", file=sys.stderr)
        return 1
    key = f"manual-{now.astimezone(cfg.agency.tz):%Y-%m-%dT%H:%M:%S}"
    email = digest.claim(engine, cfg, ruleset, digest.compose(cfg, report, to, key, now), to,
                         key, now)
    if email is None:
        print("a digest was sent by hand this very second; nothing queued", file=sys.stderr)
        return 1
    sent = asyncio.run(Sender(engine, cfg.smtp).drain(only=str(email["Message-ID"])))
    print(f"digest sent to {', '.join(to)}" if sent else "digest queued; sending deferred")
    return 0


def _case_json(row: Any) -> dict[str, Any]:
    return {"code": row.code, "status": row.status, "applicant": row.applicant_name,
            "email": row.applicant_email, "phone": row.applicant_phone,
            "procedure": row.procedure, "lead_department": row.lead_department,
            "deadline": row.deadline.isoformat() if row.deadline else None,
            "opened_at": row.opened_at.isoformat()}


def _case_text(cfg: config.Config, case: Any, events: list[Any]) -> str:
    """`vanthu case show` for people: Vietnamese, local time."""
    from daemon.office import cases as cases_module

    tz = cfg.agency.tz
    status = cases_module.STATUS_NAMES.get(case.status, case.status)
    contact = ", ".join(x for x in (case.applicant_email, case.applicant_phone) if x)
    lines = [f"Hồ sơ: {case.code}", f"Trạng thái: {status}",
             f"Người nộp: {case.applicant_name or '(chưa rõ)'}"
             + (f" ({contact})" if contact else ""),
             f"Thủ tục: {case.procedure or 'chưa xác định'}",
             f"Đơn vị chủ trì: {case.lead_department or 'chưa phân công'}",
             f"Hạn trả kết quả: {f'{case.deadline:%d/%m/%Y}' if case.deadline else 'chưa có'}",
             f"Tiếp nhận lúc: {case.opened_at.astimezone(tz):%H:%M %d/%m/%Y}", "Lịch sử:"]
    lines += [f"  {e.at.astimezone(tz):%H:%M %d/%m/%Y}  "
              f"{cases_module.event_line(e.event, e.detail)} — {e.actor}" for e in events]
    return "\n".join(lines)


def cmd_case(args: argparse.Namespace) -> int:
    from daemon.office import cases as cases_module

    try:
        status = CaseStatus(args.status) if args.status else None
    except ValueError:
        print(f"--status phải là một trong: {', '.join(CaseStatus)}", file=sys.stderr)
        return 1
    cfg = _config(args)
    engine = _reader(cfg) if args.action in ("list", "show") else _engine(cfg)
    today = datetime.now(cfg.agency.tz).date()
    actor = args.actor
    if args.action == "list":
        with reading(engine) as conn:
            rows = [_case_json(r) for r in cases_module.listing(conn, status)]
        if args.json:
            print(json.dumps(rows, ensure_ascii=False, indent=1))
        for row in [] if args.json else rows:
            print(f"{row['code']:28} {cases_module.STATUS_NAMES.get(row['status'], '?'):22} "
                  f"hạn {row['deadline'] or '—':10}  {row['applicant'] or ''}")
        return 0
    if not args.code:
        print("cần mã hồ sơ (vanthu case list)", file=sys.stderr)
        return 1
    try:
        return _case_action(args, cfg, engine, today, actor, status or CaseStatus.DONE)
    except EmailRefused as err:
        print(f"không gửi được thư, không có thay đổi nào: {err}", file=sys.stderr)
        return 1


def _case_action(args: argparse.Namespace, cfg: config.Config, engine: Any, today: Any,
                 actor: str, status: CaseStatus) -> int:
    """One clerk's command on one case: parse, call `daemon.office.cases`, print."""
    from daemon.office import cases as cases_module
    from daemon.outbound.recipients import Allowed

    ruleset = rules_module.load(cfg.rules.dir)
    allowed = Allowed.of(ruleset, cfg)
    if args.action == "accept":  # a dossier held for review is complete: the receipt goes
        from daemon.office import review

        done, said = review.accept(engine, cfg, ruleset, args.code, actor, args.procedure)
        print(said, file=sys.stdout if done else sys.stderr)
        return 0 if done else 1
    with engine.begin() as conn:
        case = cases_module.find(conn, args.code)
        if case is None:
            print(f"không có hồ sơ {args.code}", file=sys.stderr)
            return 1
        if args.action == "show":
            out = {**_case_json(case), "events": [
                {"at": e.at.isoformat(), "event": e.event, "actor": e.actor,
                 "detail": e.detail} for e in cases_module.history(conn, case.id)]}
            print(json.dumps(out, ensure_ascii=False, indent=1) if args.json
                  else _case_text(cfg, case, cases_module.history(conn, case.id)))
            return 0
        if args.action == "request-supplement":
            if not args.items:
                print("liệt kê mọi thành phần còn thiếu bằng --items", file=sys.stderr)
                return 1
            cases_module.request_supplement(conn, cfg, case, args.items, today, actor,
                                            allowed=allowed)
        elif args.action == "postpone":
            try:
                new_date = datetime.fromisoformat(args.to or "").date()
            except ValueError:
                print("cho ngày hẹn mới bằng --to YYYY-MM-DD", file=sys.stderr)
                return 1
            if why := cases_module.postpone(conn, cfg, case, new_date, args.reason, today, actor,
                                            allowed=allowed):
                print(why, file=sys.stderr)
                return 1
        elif args.action == "assign":
            lead = ruleset.departments.get(args.lead or "")
            cooperate = [ruleset.departments.get(d) for d in args.cooperate]
            if lead is None or None in cooperate:
                print("--lead và --cooperate nhận mã đơn vị trong rules/people.yaml",
                      file=sys.stderr)
                return 1
            cases_module.assign(conn, cfg, case, lead, [u for u in cooperate if u], args.days,
                                today, actor, allowed=allowed)
        elif args.action == "close":
            cases_module.set_status(conn, case.id, status, actor)
    if args.json:
        with reading(engine) as conn:
            updated = cases_module.find(conn, args.code)
        print(json.dumps(_case_json(updated), ensure_ascii=False, indent=1))
    else:
        done = {"request-supplement": "đã yêu cầu bổ sung hồ sơ (thời hạn tạm dừng từ hôm nay)",
                "postpone": "đã hẹn lại ngày trả kết quả", "assign": "đã giao xử lý",
                "close": "đã đóng hồ sơ"}.get(args.action, args.action)
        print(f"{args.code}: {done}; thư sẽ được gửi đi bởi daemon đang chạy.")
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    from daemon.office import export

    cfg = _config(args)
    today = datetime.now(cfg.agency.tz).date()
    start = datetime.fromisoformat(args.start).date() if args.start else today.replace(
        month=1, day=1)
    end = datetime.fromisoformat(args.end).date() if args.end else today
    report = export.stats(_reader(cfg), cfg, start, end)
    if args.json:
        print(json.dumps(report, ensure_ascii=False, indent=1))
        return 0
    print(f"Thống kê hồ sơ từ {start:%d/%m/%Y} đến {end:%d/%m/%Y}")
    names = {"received": "tiếp nhận", "returned_on_time": "trả đúng hạn",
             "returned_late": "trả quá hạn", "open": "đang giải quyết", "overdue": "đã quá hạn"}
    for procedure, row in [("Tổng cộng", report["total"]), *report["by_procedure"].items()]:
        print(f"  {procedure}: " + ", ".join(f"{names[k]} {v}" for k, v in row.items()))
    return 0


def cmd_calendar(args: argparse.Namespace) -> int:
    """The working calendar of one year: with --json every day, else the days that are not
    ordinary (weekdays off, weekend days worked, proposed holidays) and the totals."""
    calendar = _config(args).calendar.work_calendar()
    if not 1 <= args.year <= 9998:
        print(f"vanthu calendar: {args.year}: not a year", file=sys.stderr)
        return 2
    days = list(calendar.year(args.year))
    if args.json:
        print(json.dumps([d.as_json() for d in days], ensure_ascii=False, indent=1))
        return 0
    from daemon.office.calendar import announced

    state = "đã công bố" if announced(args.year) else \
        "DỰ KIẾN (chưa có quyết định chính thức về ngày nghỉ; có thể thay đổi)"
    print(f"Lịch làm việc năm {args.year}: {state}")
    for d in days:
        weekend = d.day.weekday() >= 5
        if d.working == weekend or "đề xuất" in d.reason:  # a weekday off, a weekend worked
            what = "làm việc" if d.working else "nghỉ"
            mark = " (dự kiến)" if d.provisional and "dự kiến" not in d.reason else ""
            source = f" — {d.source}" if d.source else ""
            print(f"  {_WEEKDAYS[d.day.weekday()]} {d.day:%d/%m/%Y}: {what}{mark}: "
                  f"{d.reason}{source}")
    working = sum(d.working for d in days)
    print(f"Tổng: {working} ngày làm việc, {len(days) - working} ngày nghỉ")
    return 0


_WEEKDAYS = ("Thứ Hai", "Thứ Ba", "Thứ Tư", "Thứ Năm", "Thứ Sáu", "Thứ Bảy", "Chủ nhật")


def cmd_demo(args: argparse.Namespace) -> int:
    # The demo and its throwaway mail servers live beside the tests, not in the product: an
    # office server installs vanthu without them (and without aiosmtpd).
    try:
        from tests.demo import run_demo
    except ImportError as err:
        print(f"the demo runs from a checkout of vanthu with its development tools "
              f"(bash tests/setup.sh): {err}", file=sys.stderr)
        return 1
    return run_demo(Path(args.dir) if args.dir else None, args.mail)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vanthu", description="Văn thư điện tử — mailroom")
    parser.add_argument("--version", action="version", version=__version__)
    parser.add_argument("--config", help="config.toml (default: embedded defaults)")
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, func: Any, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--config", default=argparse.SUPPRESS, help="config.toml")
        p.set_defaults(func=func)
        return p

    p = command("run", cmd_run, "run the daemon in the foreground")
    p.add_argument("--log-level", default="INFO")
    p = command("demo", cmd_demo, "local servers, sample mail, the daemon: see it work")
    p.add_argument("--dir", help="keep the demo's data here (default: a temporary folder)")
    p.add_argument("--mail", nargs="*", help=".eml files to deliver (default: the samples)")
    p = command("check", cmd_check, "validate config and rules")
    p.add_argument("--connect", action="store_true",
                   help="instead: log in to every mailbox and the SMTP server")
    p.add_argument("--json", action="store_true", help="--connect: the result as JSON")
    p = command("inspect", cmd_inspect, "understand one mail, no side effects")
    p.add_argument("mail")
    p.add_argument("--json", action="store_true")
    p.add_argument("--at", help="evaluate rules at this date/time (ISO)")
    p = command("rules", cmd_rules, "check, test and replay the routing rules")
    p.add_argument("action", choices=["check", "test", "replay"])
    p.add_argument("dir", nargs="?", default="rules/tests", help="expectations (rules test)")
    p.add_argument("--since", default=datetime.now(UTC).date().isoformat(),
                   help="replay mail stored since this date (YYYY-MM-DD)")
    p = command("case", cmd_case, "dossier cases: list, show, accept, assign, supplements, close")
    p.add_argument("action", choices=["list", "show", "assign", "accept", "request-supplement",
                                      "postpone", "close"])
    p.add_argument("code", nargs="?")
    p.add_argument("--json", action="store_true")
    p.add_argument("--status", help="list: only this status; close: the final status")
    p.add_argument("--items", nargs="*", default=[], help="request-supplement: every item")
    p.add_argument("--lead", help="assign: the lead department id")
    p.add_argument("--cooperate", nargs="*", default=[], help="assign: cooperating ids")
    p.add_argument("--days", type=int, help="assign: working days from today")
    p.add_argument("--procedure", help="accept: the procedure's id (procedures.yaml), for a "
                                       "held dossier whose procedure was not recognised")
    p.add_argument("--to", help="postpone: the new date (YYYY-MM-DD)")
    p.add_argument("--reason", default="hồ sơ cần thêm thời gian thẩm định",
                   help="postpone: why, in Vietnamese")
    p.add_argument("--actor", default=os.environ.get("USER", "clerk"),
                   help="who does it, for the case's history")
    p = command("backlog", cmd_backlog, "old mail: import it into the register, no email")
    p.add_argument("action", choices=["import"])
    p.add_argument("--since", help="received on or after this local date (YYYY-MM-DD)")
    p.add_argument("--until", help="received on or before this local date (YYYY-MM-DD)")
    p.add_argument("--mailbox", help="only mail first seen in this mailbox (its name)")
    p.add_argument("--dry-run", action="store_true", help="count, change nothing")
    p.add_argument("--json", action="store_true")
    p = command("digest", cmd_digest, "the digest: print it, or send it now")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", action="store_true", help="print it (the default)")
    mode.add_argument("--send", action="store_true", help="send it now")
    p = command("send-result", cmd_send_result, "send a signed result PDF for a case")
    p.add_argument("pdf")
    p.add_argument("--case", help="the case code (default: read from the file name)")
    p = command("register", cmd_register, "the registers: list, export or close a year")
    p.add_argument("action", choices=["list", "export", "close"])
    p.add_argument("--year", type=int)
    p.add_argument("--json", action="store_true")
    p.add_argument("--book", choices=["incoming", "confidential", "outgoing", "cases"],
                   default="incoming", help="export: which register")
    p.add_argument("--format", choices=["xlsx", "csv", "pdf"], default="pdf")
    p.add_argument("--output", help="export: the file to write")
    p.add_argument("--parent", help="export: the parent authority (cơ quan chủ quản) on the "
                   "cover (default: [agency] parent)")
    p.add_argument("--volume", type=int,
                   help="export: the volume (quyển số; default [agency] volume)")
    p.add_argument("--actor", default=os.environ.get("USER", ""),
                   help="close: who closes the year (printed in the closing statement)")
    p.add_argument("--force", action="store_true",
                   help="close: close the current year before it has ended")
    p = command("stats", cmd_stats, "dossiers received and returned, on time or late")
    p.add_argument("--from", dest="start", help="YYYY-MM-DD (default: 1 January)")
    p.add_argument("--to", dest="end", help="YYYY-MM-DD (default: today)")
    p.add_argument("--json", action="store_true")
    p = command("calendar", cmd_calendar, "working days and days off of a year")
    p.add_argument("action", choices=["show"])
    p.add_argument("year", type=int)
    p.add_argument("--json", action="store_true")
    p = command("status", cmd_status, "health of mailboxes, backlog, outbox")
    p.add_argument("--json", action="store_true")
    p = command("quarantine", cmd_quarantine,
                "mail held for a human: list, show, release (vouch for it) or drop it")
    p.add_argument("action", choices=["list", "show", "release", "drop", "trusted", "untrust"])
    p.add_argument("id", nargs="?",
                   help="the mail's id (quarantine list); untrust: the DOMAIN")
    p.add_argument("--json", action="store_true")
    p.add_argument("--actor", default=os.environ.get("USER", ""),
                   help="release/drop/untrust: who decides (kept with the mail)")
    p.add_argument("--trust-sender", action="store_true",
                   help="release: also trust the sender's domain for later mail held only "
                        "for lack of authentication")
    p.add_argument("--reason", help="release/drop: why, in Vietnamese (required)")
    p.add_argument("--as", dest="as_kind", choices=["document", "dossier", "reply", "other"],
                   help="show/release: what the mail is, in the clerk's judgement")
    p = command("refetch", cmd_refetch,
                "fetch a mail again from the mailbox (its stored copy damaged or lost)")
    p.add_argument("id", type=int, help="the mail's id (quarantine list, register list)")
    p.add_argument("--json", action="store_true")
    p = command("attachments", cmd_attachments,
                "a stored mail's attachments: list, save one, release a withheld one")
    p.add_argument("id", type=int, help="the mail's id (quarantine list, register list)")
    p.add_argument("--json", action="store_true")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--save", type=int, metavar="N", help="write attachment N to --to DIR")
    what.add_argument("--release", type=int, metavar="N",
                      help="send withheld attachment N to those the mail was forwarded to")
    p.add_argument("--to", default=".", metavar="DIR", help="--save: the folder (default: .)")
    p.add_argument("--actor", default=os.environ.get("USER", "clerk"),
                   help="--release: who checked the file and lets it go")
    p = command("db", cmd_db, "database: upgrade the schema, or back it up (SQLite)")
    p.add_argument("action", choices=["upgrade", "backup"])
    p.add_argument("path", nargs="?", help="backup: the new file to write (never overwritten)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; every error of vanthu's tree ends here as a message and an exit code
    (see the module's docstring), never as a traceback."""
    from daemon.errors import VanthuError

    args = build_parser().parse_args(argv)
    if not hasattr(args, "config"):
        args.config = None
    try:
        return int(args.func(args))
    except ConfigError as err:
        lines: list[object] = [*err.problems] or [str(err) or "configuration error"]
        for line in lines:
            print(line, file=sys.stderr)
        return EX_CONFIG
    except VanthuError as err:
        print(" ".join(f"vanthu {args.command}: {err}".split()), file=sys.stderr)
        return 1
    except OSError as err:
        if err.filename is None:  # not a file's trouble: a bug, shown with its traceback
            raise
        name = os.fsdecode(err.filename)  # a path opened as bytes names itself in bytes
        print(f"vanthu {args.command}: {name}: {err.strerror}", file=sys.stderr)
        return 1
    finally:
        while _opened:
            _opened.pop().dispose()
