"""Named crash points for the crash suite: `VANTHU_CRASH_AT=after_commit` kills the process
with SIGKILL when it reaches that point, exactly as a power cut or the OOM killer would.

Points: after_fetch, after_file, after_commit, after_register, before_send, after_send.
"""

from __future__ import annotations

import os
import signal

_POINT = os.environ.get("VANTHU_CRASH_AT", "")


def crashpoint(name: str) -> None:
    if name == _POINT:
        os.kill(os.getpid(), signal.SIGKILL)
