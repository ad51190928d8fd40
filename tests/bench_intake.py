"""Benchmark: vanthu's intake of a realistic backlog, side by side with the limits of the
parsers it uses, on real servers in one run (prints figures, asserts none).

    uv run python -m tests.bench_intake [--mails 2000] [--seed 17] [--idle 20] [--spy DIR]
                                        [--log FILE] [--skip-baseline] [--keep]

The backlog is made here, deterministic for a seed: N distinct mails in an agency's mix
(45% documents, most with a Decree-30 PDF; 20% dossiers with attachments; 10% replies;
10% auto-replies, bounces and bulk; 15% other mail and spam; a few over 1 MB), every one with
its own numbers, issuer, dates, PDFs and applicant (tests/generated/make.py draws them). The
same backlog is put in three mailboxes of one Dovecot on loopback, and timed:

1. raw batched FETCH BODY.PEEK[] (imapclient), the wire;
2. FETCH + mail-parser;
3. FETCH + mail-parser + pypdf text of each PDF's first page, then of every page: the
   single-thread limit of understanding is the second (a document is understood only once
   all its text is read: a confidentiality mark may be on any page), the first is a stricter
   reference shown beside it;
4. vanthu as a separate process (`vanthu run`, its worker pool, SQLite, a real SMTP server):
   until every mail is stored, then every mail is processed, then the outbox is drained;
   the peak PSS of its process tree (read once a second), and whether memory stays flat
   from the 500th mail (the highest sample over the last 500 mails within a tenth of the
   highest from the 500th to the 1,000th);
   then the limit (every page) once more: the machine is shared and its speed drifts, so
   the ratios are to the mean of the two measurements, both printed;
5. a second vanthu on an empty mailbox: time to READY and to its first IDLE, then IDLE
   latency (APPEND of a new document to its forward at the SMTP server) over --idle mails.

`--spy DIR` also records a py-spy profile (flame graph, and the top functions) of the vanthu
of step 4, every thread and the worker processes: where the time goes.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import itertools
import json
import logging
import os
import random
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mailparser
import pypdf
from imapclient import IMAPClient

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.generated import make  # noqa: E402
from tests.generated.make import GIVEN, Gen, Page  # noqa: E402
from tests.servers import (  # noqa: E402
    Dovecot,
    Received,
    SmtpSink,
    free_port,
    local_config,
    stop_process,
    wait_listening,
)

# The mix of 2,000 mails, by share.
MIX = [("document", 900), ("dossier", 400), ("reply", 200), ("auto", 70), ("bounce", 65),
       ("bulk", 65), ("spam", 150), ("other", 150)]
BACKLOG_VERSION = 1  # raise it whenever `backlog` or what it calls here draws other mails
BIG_EVERY = 180  # one mail in this many carries a scan over 1 MB
ARRIVAL_GAP = 0.3  # seconds between the documents of the IDLE latency measure
AGENCY = {"name": "Sở Giáo dục và Đào tạo tỉnh Nghệ An", "address": "vanthu.sgddt@nghean.gov.vn",
          "domain": "sgddt.nghean.gov.vn", "authserv": "mx.nghean.gov.vn"}


# ----- the backlog ---------------------------------------------------------------------------

def scan_pdf(rnd: random.Random, size: int, title: str) -> bytes:
    """A one-page PDF with a text line and an image stream of `size` random bytes (a scan):
    large on the wire, cheap for a text extractor, which never decodes the image."""
    image = rnd.randbytes(size)
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> /XObject << /Im1 6 0 R >> >> >>",
        None,  # the content stream
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        None,  # the image
    ]
    text = f"BT /F1 12 Tf 72 800 Td ({title}) Tj ET q 451 0 0 640 72 100 cm /Im1 Do Q".encode()
    objects[3] = b"<< /Length %d >>\nstream\n" % len(text) + text + b"\nendstream"
    objects[5] = (b"<< /Type /XObject /Subtype /Image /Width 1000 /Height 1400 "
                  b"/ColorSpace /DeviceGray /BitsPerComponent 8 /Filter /DCTDecode "
                  b"/Length %d >>\nstream\n" % len(image) + image + b"\nendstream")
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % number + (body or b"") + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for offset in offsets:
        out.write(b"%010d 00000 n \n" % offset)
    out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n"
              % (len(objects) + 1, xref))
    return out.getvalue()


BODY = [  # the body of an official document: its bases, articles and closing, as printed
    "Căn cứ Luật Tổ chức chính quyền địa phương ngày 19 tháng 02 năm 2025;",
    "Căn cứ Nghị định số 30/2020/NĐ-CP ngày 05 tháng 3 năm 2020 của Chính phủ về công tác văn "
    "thư;",
    "Căn cứ Quyết định số {n}/QĐ-UBND ngày {d} tháng {m} năm 2026 của Ủy ban nhân dân tỉnh về "
    "việc ban hành Quy chế làm việc;",
    "Xét đề nghị của Chánh Văn phòng và Trưởng phòng Kế hoạch - Tài chính,",
    "Điều {k}. Giao các cơ quan, đơn vị, địa phương căn cứ chức năng, nhiệm vụ được giao chủ "
    "động xây dựng kế hoạch, bố trí nguồn lực, tổ chức triển khai thực hiện có hiệu quả các "
    "nhiệm vụ, giải pháp đã đề ra; định kỳ hằng quý báo cáo kết quả thực hiện trước ngày 15 "
    "của tháng cuối quý để tổng hợp, báo cáo cấp có thẩm quyền theo quy định.",
    "Trong quá trình thực hiện, nếu có khó khăn, vướng mắc, các đơn vị kịp thời phản ánh về "
    "cơ quan thường trực để được hướng dẫn, giải quyết hoặc tổng hợp, báo cáo Ủy ban nhân dân "
    "tỉnh xem xét, quyết định đối với những nội dung vượt thẩm quyền.",
    "Kinh phí thực hiện được bố trí từ nguồn ngân sách nhà nước theo phân cấp hiện hành, lồng "
    "ghép các chương trình mục tiêu và các nguồn vốn hợp pháp khác; thanh quyết toán theo quy "
    "định của Luật Ngân sách nhà nước và các văn bản hướng dẫn thi hành.",
    "Nơi nhận:",
    "- Như Điều {k};",
    "- Lưu: VT, KHTC.",
]


def realistic(page: Page, rnd: random.Random) -> Page:
    """A document's page as agencies print them: bases, articles and closing after the
    header, two to four pages in all (the generator's pages end after the summary)."""
    lines = []
    for k in range(1, rnd.randint(5, 14)):
        for line in BODY:
            lines.append(line.format(n=rnd.randint(1, 3000), d=rnd.randint(1, 28),
                                     m=rnd.randint(1, 12), k=k))
    return Page(page.left, page.right, page.rest + lines)


def other_mail(gen: Gen) -> bytes:
    """A person's question that is neither a dossier nor a reply."""
    person = gen.pick(GIVEN)
    topic = gen.pick(["lịch tiếp công dân tháng này", "địa chỉ nộp hồ sơ trực tiếp",
                      "thời gian làm việc dịp nghỉ lễ", "số điện thoại của bộ phận một cửa"])
    body = (f"Kính gửi Quý cơ quan,\n\nTôi là {person}, xin hỏi về {topic}.\n"
            f"Mong nhận được phản hồi.\n\nTrân trọng,\n{person}")
    return gen.mail(person, f"hoi{gen.rnd.randint(1000, 99999)}@gmail.com",
                    f"Hỏi về {topic}", body, [], ["other"], auth=gen.rnd.random() < 0.5)


def with_attachment(raw: bytes, name: str, data: bytes) -> bytes:
    """`raw` with one more attachment: its last MIME boundary reopened, or the mail wrapped."""
    part = (f'Content-Type: application/pdf; name="{name}"\r\nContent-Disposition: attachment; '
            f'filename="{name}"\r\nContent-Transfer-Encoding: base64\r\n\r\n').encode()
    encoded = base64.encodebytes(data).replace(b"\n", b"\r\n")
    head, _, body = raw.partition(b"\r\n\r\n")
    marker = b'boundary="'
    if marker in head:
        boundary = head.split(marker, 1)[1].split(b'"', 1)[0]
        closing = b"--" + boundary + b"--\r\n"
        return raw.replace(closing, b"--" + boundary + b"\r\n" + part + encoded + closing)
    lines = head.split(b"\r\n")
    content = [line for line in lines if line.lower().startswith(
        (b"content-type", b"content-transfer-encoding"))]
    kept = [line for line in lines if line not in content]
    boundary = b"bench-wrap"
    return (b"\r\n".join(kept) + b'\r\nContent-Type: multipart/mixed; boundary="'
            + boundary + b'"\r\n\r\n--' + boundary + b"\r\n" + b"\r\n".join(content)
            + b"\r\n\r\n" + body + b"\r\n--" + boundary + b"\r\n" + part + encoded
            + b"\r\n--" + boundary + b"--\r\n")


def cached_backlog(count: int, seed: int) -> tuple[list[bytes], dict[str, int]]:
    """`backlog`, kept in the temp directory between runs (drawing 2,000 mails with their
    PDFs takes a minute or two); the key covers the generator's text and BACKLOG_VERSION."""
    sources = (ROOT / "tests/generated/make.py").read_bytes()
    key = hashlib.sha256(sources + f"{BACKLOG_VERSION}/{count}/{seed}".encode()).hexdigest()[:16]
    path = Path(tempfile.gettempdir()) / f"vanthu-backlog-{key}.json"
    if path.exists():
        saved = json.loads(path.read_text())
        return [base64.b64decode(m) for m in saved["mails"]], saved["mix"]
    mails, mix = backlog(count, seed)
    temp = path.with_suffix(".part")
    temp.write_text(json.dumps({"mix": mix, "mails": [base64.b64encode(m).decode()
                                                      for m in mails]}))
    temp.replace(path)
    return mails, mix


def backlog(count: int, seed: int) -> tuple[list[bytes], dict[str, int]]:
    """`count` distinct mails in MIX's proportions, in a seeded order; and how many of each."""
    gen = Gen(random.Random(seed))
    rnd = random.Random(seed + 1)
    plain = make.pdf_of_page
    make.pdf_of_page = lambda page: plain(realistic(page, rnd))
    total = sum(n for _, n in MIX)
    kinds = [kind for kind, n in MIX for _ in range(round(n * count / total))]
    kinds = (kinds + ["document"] * count)[:count]
    rnd.shuffle(kinds)
    makers: dict[str, Callable[[], bytes]] = {
        "document": lambda: gen.document().raw, "dossier": lambda: gen.dossier().raw,
        "reply": lambda: gen.reply().raw, "auto": lambda: gen.auto().raw,
        "bounce": lambda: gen.bounce().raw, "bulk": lambda: gen.bulk().raw,
        "spam": lambda: gen.spam().raw, "other": lambda: other_mail(gen)}
    mails = []
    for i, kind in enumerate(kinds):
        raw = makers[kind]()
        if i % BIG_EVERY == BIG_EVERY // 2:  # a scan over 1 MB
            raw = with_attachment(raw, f"scan-{i}.pdf",
                                  scan_pdf(rnd, rnd.randint(800_000, 2_000_000), f"Scan {i}"))
        elif kind == "dossier" or (kind == "document" and rnd.random() < 0.3):
            raw = with_attachment(raw, f"giay-to-{i}.pdf",
                                  scan_pdf(rnd, rnd.randint(30_000, 110_000), f"Giay to {i}"))
        mails.append(raw)
    make.pdf_of_page = plain
    return mails, {kind: kinds.count(kind) for kind, _ in MIX}


# ----- the parsers' limits -------------------------------------------------------------------

def append_all(server: Dovecot, user: str, mails: list[bytes]) -> None:
    client = IMAPClient("127.0.0.1", port=server.imap_port, ssl=False)
    client.login(user, "pw")
    for start in range(0, len(mails), 100):
        client.multiappend("INBOX", mails[start:start + 100])
    client.logout()


def loop(server: Dovecot, user: str, work: Callable[[bytes], None]) -> tuple[int, float]:
    """Batched FETCH of the whole folder, `work` on each mail: (mails, seconds)."""
    client = IMAPClient("127.0.0.1", port=server.imap_port, ssl=False)
    # imaplib's protocol trace off, as on vanthu's own connections (daemon/intake/fetch.py):
    # IMAPClient turns it on, and it formats the repr of every mail fetched.
    client._imap.debug = 0
    client.login(user, "pw")
    client.select_folder("INBOX", readonly=True)
    uids = client.search(["ALL"])
    started = time.perf_counter()
    for start in range(0, len(uids), 100):
        for data in client.fetch(uids[start:start + 100], ["BODY.PEEK[]"]).values():
            work(data[b"BODY[]"])
    elapsed = time.perf_counter() - started
    client.logout()
    return len(uids), elapsed


def parse(raw: bytes) -> Any:
    return mailparser.parse_from_bytes(raw)


def parse_and_read(raw: bytes, every_page: bool = False) -> None:
    """Parse, then pypdf's text of each PDF: its first page, or `every_page`."""
    for part in parse(raw).attachments:
        if part["mail_content_type"] == "application/pdf":
            try:
                reader = pypdf.PdfReader(io.BytesIO(base64.b64decode(part["payload"])))
                for page in reader.pages if every_page else reader.pages[:1]:
                    page.extract_text()
            except Exception:  # bench: a PDF pypdf cannot read is skipped, as any loop would
                pass


def parse_and_read_all(raw: bytes) -> None:
    parse_and_read(raw, every_page=True)


# ----- vanthu as a process -------------------------------------------------------------------

# Where Postfix's smtp-sink is unpacked when Postfix is not installed (`apt-get download`).
POSTFIX_CACHE = Path.home() / ".cache" / "vanthu-bench" / "postfix"


def smtp_sink_command() -> tuple[list[str], dict[str, str]] | None:
    """Postfix's smtp-sink (a test SMTP server written in C) and the environment it needs:
    the installed one, else one unpacked from the Debian package into POSTFIX_CACHE. None
    when neither can be had (no Postfix, no apt)."""
    installed = shutil.which("smtp-sink") or (
        "/usr/sbin/smtp-sink" if os.access("/usr/sbin/smtp-sink", os.X_OK) else None)
    if installed:
        return [installed], dict(os.environ)
    unpacked = POSTFIX_CACHE / "root" / "usr" / "sbin" / "smtp-sink"
    if not unpacked.exists():
        POSTFIX_CACHE.mkdir(parents=True, exist_ok=True)
        try:
            subprocess.run(["apt-get", "download", "postfix"], cwd=POSTFIX_CACHE, check=True,
                           capture_output=True, timeout=300)
            package = next(POSTFIX_CACHE.glob("postfix_*.deb"))
            subprocess.run(["dpkg-deb", "-x", str(package), str(POSTFIX_CACHE / "root")],
                           check=True, capture_output=True, timeout=300)
        except (OSError, subprocess.SubprocessError, StopIteration):
            return None
    env = dict(os.environ,
               LD_LIBRARY_PATH=str(POSTFIX_CACHE / "root" / "usr" / "lib" / "postfix"))
    return [str(unpacked)], env


@dataclass
class PostfixSink:
    """A real SMTP server on loopback that costs the machine little: Postfix's smtp-sink,
    in C, writing each message it accepts to a file of its own. vanthu's emails go to the
    agency's relay, another machine, in a deployment; the Python test server (aiosmtpd)
    would take a tenth of these two cores from vanthu while it reads every line."""

    command: list[str]
    env: dict[str, str]
    port: int = field(default_factory=free_port)
    # In memory when it can be (/dev/shm): writing 130 MB of emails to disk would compete
    # with vanthu's own writes, which wait for the disk at every commit.
    dump: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(
        prefix="vanthu-sink-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)))
    seen: list[Received] = field(default_factory=list)
    names: set[str] = field(default_factory=set)
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> PostfixSink:
        self.dump.chmod(0o777)  # smtp-sink run by root writes as nobody
        user = ["-u", "nobody"] if os.geteuid() == 0 else []
        self.process = subprocess.Popen(
            [*self.command, *user, "-d", f"{self.dump}/%H%M%S.", f"127.0.0.1:{self.port}",
             "256"], env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            wait_listening(self.port, self.process, "smtp-sink")
        except RuntimeError:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)
        shutil.rmtree(self.dump, ignore_errors=True)

    def count(self) -> int:
        return len(os.listdir(self.dump))

    def messages(self) -> list[Received]:
        """Every message accepted so far, in the order they were first seen."""
        for name in sorted(os.listdir(self.dump)):
            if name not in self.names:
                data = (self.dump / name).read_bytes()
                if not data.endswith(b"\n"):
                    continue  # still being written
                self.names.add(name)
                self.seen.append(Received("", [], data))
        return list(self.seen)


Sink = SmtpSink | PostfixSink


def write_config(directory: Path, server: Dovecot, sink: Sink, user: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    text = local_config(directory, server, sink, user=user, password="pw",
                        rules_dir=ROOT / "rules", extra="\n[digest]\nto = []\n")
    text = (text.replace("Sở Xây dựng tỉnh Tây Ninh", AGENCY["name"])
            .replace("vanthu.sxd@tayninh.gov.vn", AGENCY["address"])
            .replace("sxd.tayninh.gov.vn", AGENCY["domain"])
            .replace("mx1.tayninh.gov.vn", AGENCY["authserv"]))
    if "intake" in load_sections():  # the whole backlog is new mail here, processed in full
        text += '\n[intake]\nstart = "all"\n'
    path = directory / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def load_sections() -> set[str]:
    """The top-level sections this checkout's configuration knows."""
    example = (ROOT / "config.example.toml").read_text(encoding="utf-8")
    return {line.strip("[] \n") for line in example.splitlines() if line.startswith("[")}


class Running:
    """`vanthu run` in its own process, its log lines timed as they arrive, and READY=1
    from its systemd notification socket."""

    def __init__(self, config: Path, spy: Path | None = None,
                 keep: Path | None = None) -> None:
        self.events: dict[str, float] = {}
        # Line-buffered: the reading thread may write a last line while the run stops.
        self.keep = keep.open("w", encoding="utf-8", buffering=1) if keep is not None else None
        self.spied = spy is not None
        self.notify_path = str(config.parent / "notify.sock")
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(self.notify_path)
        env = dict(os.environ, NOTIFY_SOCKET=self.notify_path)
        command = [sys.executable, "-m", "daemon", "run", "--config", str(config),
                   "--log-level", "INFO"]
        if spy is not None:
            command = [os.environ.get("PY_SPY", "py-spy"), "record", "--subprocesses",
                       "--threads", "--rate", "50", "--format", "raw",
                       "-o", str(spy), "--", *command]
        self.started = time.perf_counter()
        # vanthu logs JSON lines to stdout; py-spy's own words go to stderr.
        self.proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        threading.Thread(target=self._read_log, daemon=True).start()
        threading.Thread(target=self._read_notify, daemon=True).start()

    def _read_log(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if self.keep is not None:  # each line with the seconds since the process began
                self.keep.write(f"{time.perf_counter() - self.started:.3f} "
                                f"{line.decode(errors='replace')}")
            try:
                event = json.loads(line).get("event")
            except (ValueError, AttributeError):
                continue
            if isinstance(event, str):
                self.events.setdefault(event, time.perf_counter() - self.started)

    def _read_notify(self) -> None:
        while True:
            try:
                data = self.notify.recv(4096)
            except OSError:
                return
            if b"READY=1" in data:
                self.events.setdefault("READY", time.perf_counter() - self.started)

    def daemon_pid(self) -> int | None:
        """The pid of vanthu itself (under py-spy, its child)."""
        if not self.spied:
            return self.proc.pid
        children = tree(self.proc.pid)[1:]
        return children[0] if children else None

    def stop(self) -> None:
        pid = self.daemon_pid()
        if pid is not None:
            os.kill(pid, 15)
        self.proc.wait(120)
        self.notify.close()


def proc_stat(pid: int | str) -> tuple[str, list[bytes]] | None:
    """The name of process `pid` and the fields of /proc/PID/stat after it (field 4, the
    parent, is [1]; utime and stime [11:13]; with the children's, [11:15]); None when it is
    gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    name = data[data.find(b"(") + 1:data.rfind(b")")].decode(errors="replace")
    return name, data.rsplit(b")", 1)[1].split()


def tree(root: int) -> list[int]:
    """`root` and every process descended from it."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (found := proc_stat(entry)) is not None:
            parents[int(entry)] = int(found[1][1])
    out, frontier = [root], [root]
    while frontier:
        frontier = [pid for pid, parent in parents.items() if parent in frontier]
        out += frontier
    return out


def pss_mb(pids: list[int]) -> float:
    return sum(mb for name, mb in pss_each(pids).items() if not name.startswith("("))


def pss_each(pids: list[int]) -> dict[str, float]:
    """PSS in MB of each process, by a short name: vanthu, fork server, worker N."""
    out: dict[str, float] = {}
    for n, pid in enumerate(pids):
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                fields = {line.split(":")[0]: int(line.split()[1]) for line in f
                          if line.startswith("Pss")}
            kb = fields["Pss"]
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                command = f.read().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, StopIteration):
            continue
        role = ("vanthu" if n == 0 else "fork server" if "forkserver" in command
                and pid == min(pids[1:]) else f"child {pid}")
        out[role] = kb / 1024
        if n == 0:  # where vanthu's own memory is: heap, mapped files, shared memory
            out["(vanthu anon)"] = fields.get("Pss_Anon", 0) / 1024
            out["(vanthu file)"] = fields.get("Pss_File", 0) / 1024
    return out


def cpu_seconds(pids: list[int]) -> dict[str, float]:
    """CPU seconds (user + system) each process has used: vanthu's own, its workers' (a
    process's count includes its children that have exited: the fork server's, the workers
    already replaced)."""
    out: dict[str, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for n, pid in enumerate(pids):
        if (found := proc_stat(pid)) is not None:
            name = "vanthu" if n == 0 else f"child {pid}"
            out[name] = sum(int(value) for value in found[1][11:15]) / tick
    return out


def system_seconds(pids: list[int]) -> dict[str, float]:
    """CPU seconds each process has spent in the kernel (reading and writing sockets, pipes
    and files), counted as in `cpu_seconds`: part of its count, shown apart."""
    out: dict[str, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for n, pid in enumerate(pids):
        if (found := proc_stat(pid)) is not None:
            name = "vanthu" if n == 0 else f"child {pid}"
            out[name] = (int(found[1][12]) + int(found[1][14])) / tick
    return out


def machine_busy() -> tuple[float, float, float]:
    """CPU seconds the whole machine has been busy, in all (every core), and stolen (a
    virtual machine's cores given to others by the host): /proc/stat."""
    with open("/proc/stat") as f:
        ticks = [int(value) for value in f.readline().split()[1:]]
    tick = os.sysconf("SC_CLK_TCK")
    idle = ticks[3] + ticks[4]  # idle, iowait
    steal = ticks[7] if len(ticks) > 7 else 0
    return (sum(ticks) - idle) / tick, sum(ticks) / tick, steal / tick


def cpu_by_process() -> dict[int, tuple[str, float]]:
    """Every process's name and CPU seconds (user + system) so far: /proc/PID/stat."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[int, tuple[str, float]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (found := proc_stat(entry)) is not None:
            name, fields = found
            out[int(entry)] = (name, sum(int(value) for value in fields[11:13]) / tick)
    return out


def cpu_elsewhere(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]],
                  ours: set[int]) -> dict[str, float]:
    """CPU seconds used between two `cpu_by_process` snapshots outside vanthu's tree (`ours`),
    by who used them: this benchmark's own process (its sampling, and aiosmtpd when that is
    the SMTP server), Dovecot, smtp-sink, the rest of the machine. Processes that ended in
    between are not counted."""
    out = {"this benchmark (sampling; aiosmtpd when it is the SMTP server)": 0.0,
           "Dovecot": 0.0, "smtp-sink": 0.0, "other": 0.0}
    for pid, (name, seconds) in after.items():
        if pid in ours:
            continue
        used = seconds - before.get(pid, (name, 0.0))[1]
        if pid == os.getpid():
            out["this benchmark (sampling; aiosmtpd when it is the SMTP server)"] += used
        elif name in DOVECOT_PROCESSES:
            out["Dovecot"] += used
        elif name == "smtp-sink":
            out["smtp-sink"] += used
        else:
            out["other"] += used
    return out


# The names of Dovecot's processes (its master, the IMAP servers and their helpers).
DOVECOT_PROCESSES = frozenset({"dovecot", "imap", "imap-login", "auth", "log", "config",
                               "anvil", "stats", "indexer", "indexer-worker"})


def counts(db: Path) -> tuple[int, int, int]:
    """Mails stored, mails still waiting for the pipeline, emails waiting to be sent."""
    if not db.exists():
        return 0, 0, 0
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        total = conn.execute("select count(*) from messages").fetchone()[0]
        waiting = conn.execute("select count(*) from messages where state = 'stored'"
                               ).fetchone()[0]
        pending = conn.execute("select count(*) from outbox where state not in "
                               "('sent', 'failed', 'dead')").fetchone()[0]
    except sqlite3.OperationalError:  # not created yet
        return 0, 0, 0
    finally:
        conn.close()
    return total, waiting, pending


# The counts (stored, processed, sent) are read four times a second, the PSS of the process
# tree once a second: reading a process's PSS (/proc/PID/smaps_rollup) walks its page tables
# in the kernel, holding its memory map's lock (10 ms of CPU for a 300 MB process). Read at
# every count, this benchmark took 2-3 CPU seconds of a 30-second run, 4 % of the two cores
# vanthu is measured on.
SAMPLE_SECONDS = 0.25
PSS_EVERY = 4


def whole_intake(server: Dovecot, sink: Sink, work: Path, count: int,
                 spy: Path | None, keep: Path | None = None) -> dict[str, Any]:
    config = write_config(work / "intake", server, sink, "intake")
    db = work / "intake" / "data" / "vanthu.db"
    running = Running(config, spy, keep)
    marks: dict[str, float] = {}
    cpu: dict[str, float] = {}
    system: dict[str, float] = {}
    memory: list[tuple[int, float]] = []  # (mails processed, PSS of the tree in MB)
    peak_each: dict[str, float] = {}
    busy_before = machine_busy()
    busy = (0.0, 0.0, 0.0)
    each_before = cpu_by_process()
    elsewhere: dict[str, float] = {}
    try:
        for sample in itertools.count():
            time.sleep(SAMPLE_SECONDS)  # the sampling period of the counts, not a wait
            now = time.perf_counter() - running.started
            if running.proc.poll() is not None:
                raise SystemExit(f"vanthu exited with {running.proc.returncode}")
            total, waiting, pending = counts(db)
            pid = running.daemon_pid()
            if pid is not None and sample % PSS_EVERY == 0:
                each = pss_each(tree(pid))
                memory.append((total - waiting, sum(mb for name, mb in each.items()
                                                    if not name.startswith("("))))
                if memory[-1][1] >= max(mb for _, mb in memory):
                    peak_each = each
            if total >= count:
                marks.setdefault("stored", now)
                if not waiting:
                    marks.setdefault("processed", now)
                    if not pending:
                        marks["drained"] = now
                        cpu = cpu_seconds(tree(pid)) if pid is not None else {}
                        system = system_seconds(tree(pid)) if pid is not None else {}
                        busy = machine_busy()
                        elsewhere = cpu_elsewhere(each_before, cpu_by_process(),
                                                  set(tree(pid)) if pid is not None else set())
                        break
            if now > 3600:
                raise SystemExit("vanthu did not finish within an hour")
    finally:
        running.stop()
    start = running.events.get("daemon.started", 0.0)
    out: dict[str, Any] = {key: value - start for key, value in marks.items()}
    out["emails"] = sink.count() if isinstance(sink, PostfixSink) else len(sink.messages())
    out["pss_peak"] = max(mb for _, mb in memory)
    # Flat: the highest sample over the last 500 mails within a tenth of the highest between
    # the 500th and the 1,000th. Highs, not single samples: one taken while a worker is being
    # replaced (every 100 mails) is lower by that worker, and would be the baseline.
    early = [mb for n, mb in memory if 500 <= n < 1000]
    late = [mb for n, mb in memory if n >= max(count - 500, 500)]
    out["pss_500"] = max(early) if early else float("nan")
    out["pss_last"] = max(late) if late else float("nan")
    out["pss_by_1000"] = {at: next((mb for n, mb in memory if n >= at), float("nan"))
                          for at in range(500, count + 1, 500)}
    out["pss_end"] = memory[-1][1]
    out["pss_peak_each"] = peak_each
    out["cpu"] = cpu
    out["system"] = system
    out["elsewhere"] = elsewhere
    out["machine"] = (busy[0] - busy_before[0]) / max(busy[1] - busy_before[1], 1e-9)
    out["stolen"] = (busy[2] - busy_before[2]) / max(busy[1] - busy_before[1], 1e-9)
    return out


def fresh_document(number: int) -> bytes:
    """A new official document from a People's Committee, authenticated by our MX."""
    return f"""Authentication-Results: {AGENCY['authserv']}; dkim=pass header.d=nghean.gov.vn;
 spf=pass smtp.mailfrom=vanthu@nghean.gov.vn; dmarc=pass header.from=nghean.gov.vn
From: =?utf-8?b?{base64.b64encode('UBND tỉnh Nghệ An'.encode()).decode()}?=
 <vanthu@nghean.gov.vn>
To: {AGENCY['address']}
Subject: =?utf-8?b?{base64.b64encode(f'Thông báo số {number}/TB-UBND'.encode()).decode()}?=
Message-ID: <idle-{number}-{time.time_ns()}@nghean.gov.vn>
Date: Mon, 23 Nov 2026 14:20:00 +0700
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: 8bit

ỦY BAN NHÂN DÂN
TỈNH NGHỆ AN
Số: {number}/TB-UBND
Nghệ An, ngày 23 tháng 11 năm 2026
THÔNG BÁO
Về việc kiểm tra công tác số {number}
Nội dung thông báo.
""".replace("\n", "\r\n").encode()


def forwarded(client: IMAPClient, sink: Sink, number: int) -> float:
    """APPEND document `number`; the seconds until its forward reaches the SMTP server (a poll
    of that condition, given up after a minute)."""
    before = len(sink.messages())
    started = time.perf_counter()
    client.append("INBOX", fresh_document(number))
    while not any(b"X-Vanthu-Action: forward" in m.data for m in sink.messages()[before:]):
        if time.perf_counter() - started > 60:
            break
        time.sleep(0.002)
    return time.perf_counter() - started


def idle_latency(server: Dovecot, sink: Sink, work: Path, samples: int) -> dict[str, Any]:
    config = write_config(work / "idle", server, sink, "idle")
    running = Running(config)
    try:
        deadline = time.perf_counter() + 120
        while "mailbox.connected" not in running.events and time.perf_counter() < deadline:
            time.sleep(0.01)  # a poll of the condition, bounded by the deadline
        latencies = []
        client = IMAPClient("127.0.0.1", port=server.imap_port, ssl=False)
        client.login("idle", "pw")
        # A first document, not counted: once its forward is out, the daemon is past its
        # start (catch-up, first batch) and waits in IDLE as it does all day.
        forwarded(client, sink, 699)
        for i in range(samples):
            latencies.append(forwarded(client, sink, 700 + i))
            time.sleep(ARRIVAL_GAP)  # the workload: mail arrives apart, not back to back
        client.logout()
    finally:
        running.stop()
    latencies.sort()
    return {"ready": running.events.get("READY"),
            "watching": running.events.get("mailbox.connected"),
            "median": statistics.median(latencies),
            "p95": latencies[max(0, round(0.95 * len(latencies)) - 1)],
            "max": latencies[-1], "samples": len(latencies)}


def spy_top(raw: Path, top: int = 25) -> list[str]:
    """The functions in most samples (self time and total time), from py-spy's raw output."""
    own: dict[str, int] = {}
    total: dict[str, int] = {}
    samples = 0
    for line in raw.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        frames = stack.split(";")
        samples += int(n)
        leaf = frames[-1]
        own[leaf] = own.get(leaf, 0) + int(n)
        for frame in set(frames[1:]):
            total[frame] = total.get(frame, 0) + int(n)
    lines = [f"{samples} samples"]
    lines += [f"self  {n / samples:6.1%}  {name}" for name, n in
              sorted(own.items(), key=lambda kv: -kv[1])[:top]]
    lines += [f"total {n / samples:6.1%}  {name}" for name, n in
              sorted(total.items(), key=lambda kv: -kv[1])[:top]]
    return lines


def main() -> int:
    # Stopped (SIGTERM), the benchmark still stops vanthu, Dovecot and smtp-sink on its way
    # out: the runs after it would share the machine with them.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mails", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--idle", type=int, default=20, help="IDLE latency samples")
    parser.add_argument("--spy", type=Path, help="record a py-spy profile of vanthu here")
    parser.add_argument("--log", type=Path,
                        help="keep the log of the timed vanthu here (with seconds since its start)")
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--keep", action="store_true",
                        help="keep vanthu's folders (configuration, database, store) afterwards")
    parser.add_argument("--python-smtp", action="store_true",
                        help="receive vanthu's emails with aiosmtpd in this process, not "
                             "Postfix's smtp-sink")
    args = parser.parse_args()
    logging.getLogger("mailparser").setLevel(logging.ERROR)  # says so of every bounce
    mails, mix = cached_backlog(args.mails, args.seed)
    size = sum(len(m) for m in mails)
    print(f"backlog: {len(mails)} distinct mails, {size / 1e6:.0f} MB, mean "
          f"{size / len(mails) / 1e3:.0f} KB, {sum(len(m) > 1_000_000 for m in mails)} over "
          f"1 MB; {', '.join(f'{k} {n}' for k, n in mix.items())}", flush=True)
    rows: list[tuple[str, float]] = []
    with Dovecot({"base": "pw", "intake": "pw", "idle": "pw"}) as server:
        found = None if args.python_smtp else smtp_sink_command()
        sink: Sink = SmtpSink().start() if found is None else PostfixSink(*found).start()
        print("SMTP server: " + ("aiosmtpd, in this process" if found is None
                                 else f"Postfix's smtp-sink ({found[0][0]})"), flush=True)
        work = Path(tempfile.mkdtemp(prefix="vanthu-bench-"))
        try:
            append_all(server, "base", mails)
            append_all(server, "intake", mails)
            if not args.skip_baseline:
                baselines: list[tuple[str, Callable[[bytes], Any]]] = [
                    ("raw batched FETCH (imapclient)", lambda raw: None),
                    ("FETCH + mail-parser", parse),
                    ("FETCH + mail-parser + pypdf text of page 1", parse_and_read),
                    ("FETCH + mail-parser + pypdf text (understanding limit)",
                     parse_and_read_all)]
                for name, work_on in baselines:
                    n, seconds = loop(server, "base", work_on)
                    rows.append((name, n / seconds))
                    print(f"{name}: {n / seconds:.1f} mails/s", flush=True)
            spy = args.spy / "intake.txt" if args.spy else None
            if args.spy:
                args.spy.mkdir(parents=True, exist_ok=True)
            got = whole_intake(server, sink, work, len(mails), spy, args.log)
            rows.append(("vanthu: all stored", len(mails) / got["stored"]))
            rows.append(("vanthu: all processed (registered, routed, queued)",
                         len(mails) / got["processed"]))
            rows.append((f"vanthu: whole intake, outbox drained ({got['emails']} emails)",
                         len(mails) / got["drained"]))
            if not args.skip_baseline:
                # The machine's speed drifts (it is shared): the limit is measured again after
                # vanthu's run, and the ratios are to the mean of both.
                n, seconds = loop(server, "base", parse_and_read_all)
                before = next(rate for name, rate in rows if "understanding limit" in name)
                print(f"understanding limit again, after vanthu: {n / seconds:.1f} mails/s "
                      f"(before: {before:.1f})", flush=True)
                rows = [(name, (before + n / seconds) / 2 if "understanding limit" in name
                         else rate) for name, rate in rows]
                rows = [(name.replace("(understanding limit)", "(limit, before+after)"),
                         rate) for name, rate in rows]
            idle = idle_latency(server, sink, work, args.idle)
        finally:  # also when stopped (SIGTERM): nothing of the run is left behind
            sink.stop()
            if args.keep:
                print(f"vanthu's folders (its database holds every email it sent): {work}")
            else:
                shutil.rmtree(work, ignore_errors=True)
    limit = next((rate for name, rate in rows if "(limit, before+after)" in name), None)
    first = next((rate for name, rate in rows if "page 1" in name), None)
    print(f"\n{'intake of the same backlog':58} {'mails/s':>9} {'× limit':>8} {'× page 1':>9}")
    for name, rate in rows:
        ratio = f"{rate / limit:8.2f} {rate / first:9.2f}" if limit and first else ""
        print(f"{name:58} {rate:9.1f} {ratio}")
    print(f"\nvanthu times from its start: stored {got['stored']:.1f} s, processed "
          f"{got['processed']:.1f} s, drained {got['drained']:.1f} s")
    flat = ("flat" if got["pss_last"] <= got["pss_500"] * 1.10 else "growing") \
        if got["pss_500"] == got["pss_500"] else "fewer than 500 mails: not judged"
    print(f"memory (PSS of the process tree): peak {got['pss_peak']:.0f} MB; highest from the "
          f"500th to the 1,000th mail processed {got['pss_500']:.0f} MB, over the last 500 "
          f"{got['pss_last']:.0f} MB, at the end {got['pss_end']:.0f} MB; by mails processed: "
          + ", ".join(f"{at}: {mb:.0f}" for at, mb in got["pss_by_1000"].items())
          + " "
          f"({flat}); at the peak: "
          + ", ".join(f"{k} {v:.0f}" for k, v in got["pss_peak_each"].items()))
    cpu = got["cpu"]
    print(f"CPU seconds until drained ({got['drained']:.0f} s of wall time): "
          + ", ".join(f"{k} {v:.1f}" for k, v in cpu.items())
          + f"; per mail: vanthu {1000 * cpu.get('vanthu', 0) / len(mails):.1f} ms, all "
          f"{1000 * sum(cpu.values()) / len(mails):.1f} ms; the machine was busy "
          f"{100 * got['machine']:.0f}% of its {os.cpu_count()} cores' time "
          f"({100 * got['stolen']:.0f}% stolen by the host)")
    system = got["system"]
    print("of which in the kernel (system time): "
          + ", ".join(f"{k} {v:.1f}" for k, v in system.items())
          + f"; per mail: vanthu {1000 * system.get('vanthu', 0) / len(mails):.1f} ms, all "
          f"{1000 * sum(system.values()) / len(mails):.1f} ms")
    print("CPU seconds outside vanthu meanwhile: "
          + ", ".join(f"{k} {v:.1f}" for k, v in got["elsewhere"].items()))
    print(f"start: READY {idle['ready']:.2f} s, first mailbox connected "
          f"{idle['watching']:.2f} s after the process began")
    print(f"IDLE latency (APPEND → forward at SMTP) over {idle['samples']} mails: median "
          f"{idle['median']:.2f} s, p95 {idle['p95']:.2f} s, max {idle['max']:.2f} s")
    if spy is not None and spy.exists():
        print("\nprofile of vanthu (py-spy, every thread and worker):")
        for line in spy_top(spy):
            print("  " + line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
