"""Run the real daemon with short mailbox leases: `python -m tests.short_leases run --config C`.

A mailbox lease is renewed every 30 s and held 90 s in production; a failover test that waits
for takeovers would take minutes. The lease's times are the daemon's own class attributes,
set here from outside (as tests/crashing.py wraps functions), so the product carries no hook.
`VANTHU_LEASE_SECONDS` (default 4) is the hold; it is renewed, and tried by a standby, every
quarter of it.
"""

from __future__ import annotations

import os
import sys

from daemon import cli
from daemon.intake.fetch import MailboxLease


def main() -> int:
    hold = float(os.environ.get("VANTHU_LEASE_SECONDS") or 4.0)
    MailboxLease.HOLD_SECONDS = hold
    MailboxLease.RENEW_SECONDS = hold / 4
    return cli.main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
