"""Benchmark: writing an email as bytes and parsing it back, as the outbox does for every
email it queues, both ways side by side in one run (prints figures; stops first if the two
ways give other bytes or another parse).

    uv run python -m tests.bench_writing [--emails 300] [--rounds 3]

The emails are forwards of the benchmark backlog's documents (tests/bench_intake.py: their
PDFs and scans, 10 KB to over 1 MB) with a short cover note, as `compose.forward` makes them.
Two steps are timed, in CPU milliseconds per email:

1. writing: the standard generator (`Message.as_bytes`, which writes a body line by line)
   against `outbox._bytes` (each body's text written at once); the bytes are compared;
2. parsing back for `outbox.check`: the whole email against `outbox.skeleton` of it (each
   run of full base64 lines cut to one); the parts, headers and defects are compared.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from email import message_from_bytes
from email import policy as email_policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from daemon.outbound import headers  # noqa: E402
from daemon.outbound.outbox import _OUTPUT, _bytes, skeleton  # noqa: E402
from tests.bench_intake import cached_backlog  # noqa: E402


def forwards(count: int) -> list[EmailMessage]:
    """Forwards of the first documents of the backlog that carry files."""
    made: list[EmailMessage] = []
    mails, _ = cached_backlog(2000, 17)
    for raw in mails:
        found = message_from_bytes(raw, policy=email_policy.default)
        files = [part for part in found.iter_attachments()
                 if isinstance(part.get_content(), bytes)]
        if not files:
            continue
        email = EmailMessage(policy=email_policy.SMTP)
        email["Subject"] = "Chuyển văn bản đến số 12: Công văn của UBND tỉnh"
        email["To"] = "giamdoc.sxd@tayninh.gov.vn"
        email.set_content("Kính gửi Giám đốc Sở,\nVăn thư chuyển văn bản đến.\n" * 8)
        email.add_alternative("<p>Kính gửi Giám đốc Sở,</p>" * 8, subtype="html")
        for part in files:
            email.add_attachment(part.get_content(), maintype="application",
                                 subtype="octet-stream", filename=part.get_filename() or "tệp")
        made.append(email)
        if len(made) == count:
            break
    return made


def reading(raw: bytes) -> list[tuple[Any, ...]]:
    parsed = message_from_bytes(raw, policy=headers.READER)
    return [(part.get_content_type(), [type(d).__name__ for d in part.defects],
             [(name, str(value)) for name, value in part.items()]) for part in parsed.walk()]


def timed(work: Callable[[Any], Any], items: list[Any]) -> float:
    """CPU milliseconds per item."""
    started = time.process_time()
    for item in items:
        work(item)
    return (time.process_time() - started) * 1000 / len(items)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--emails", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    emails = forwards(args.emails)
    raws = [_bytes(email) for email in emails]  # draws the boundaries both ways then use
    if any(raw != email.as_bytes(policy=_OUTPUT)
           for raw, email in zip(raws, emails, strict=True)):
        raise SystemExit("_bytes wrote other bytes than as_bytes")
    if any(reading(skeleton(raw)) != reading(raw) for raw in raws):
        raise SystemExit("the skeleton parsed otherwise than the whole email")
    size = sum(map(len, raws)) / len(raws) / 1000
    print(f"{len(emails)} forwards, mean {size:.0f} KB; the same bytes, the same parse both ways")
    print(f"{'CPU ms per email':32} {'before':>8} {'after':>8}")
    for _ in range(args.rounds):
        print(f"{'writing: as_bytes · _bytes':32} "
              f"{timed(lambda e: e.as_bytes(policy=_OUTPUT), emails):8.2f} "
              f"{timed(_bytes, emails):8.2f}")
        print(f"{'parsing back: whole · skeleton':32} "
              f"{timed(lambda r: reading(r), raws):8.2f} "
              f"{timed(lambda r: reading(skeleton(r)), raws):8.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
