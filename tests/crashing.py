"""Run the real daemon and kill it with SIGKILL at a named point, exactly as a power cut or the
OOM killer would: `VANTHU_CRASH_AT=after_commit python -m tests.crashing run --config C`.

The points are reached by wrapping the daemon's own functions from outside, so the product
carries no hooks for its tests:

    after_fetch     mail fetched, before its file is written
    after_file      file written and fsynced, before the storing transaction
    after_commit    stored and checkpointed, before the IMAP flag or move
    after_register  the pipeline's transaction committed, before anything is sent
    after_drafts    the pipeline's transaction committed with its emails as drafts, before
                    the workers compose them
    before_send     an outbox row taken, before its SMTP transaction
    after_send      the server's 250, before the row is marked sent
"""

from __future__ import annotations

import functools
import inspect
import os
import signal
import sys
from collections.abc import Callable
from typing import Any

from daemon import cli, service
from daemon.intake import fetch
from daemon.intake.store import MailStore
from daemon.outbound.drafts import Drafting
from daemon.outbound.send import Sender


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _wrap(owner: Any, name: str, *, before: Callable[..., bool] | None = None,
          after: Callable[[Any], bool] | None = None) -> None:
    """Replace `owner.name` by a wrapper that dies before the call when `before(*args)` holds,
    or after it when `after(result)` holds."""
    original = getattr(owner, name)

    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if before is not None and before(*args, **kwargs):
            _die()
        result = original(*args, **kwargs)
        if after is not None and after(result):
            _die()
        return result

    @functools.wraps(original)
    async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
        if before is not None and before(*args, **kwargs):
            _die()
        result = await original(*args, **kwargs)
        if after is not None and after(result):
            _die()
        return result

    setattr(owner, name, async_wrapper if inspect.iscoroutinefunction(original) else wrapper)


def _some_mail(_store: object, blobs: list[bytes], *_: object, **__: object) -> bool:
    return bool(blobs)


def _always(*_: object, **__: object) -> bool:
    return True


POINTS: dict[str, Callable[[], None]] = {
    "after_fetch": lambda: _wrap(MailStore, "write_many", before=_some_mail),
    "after_file": lambda: _wrap(MailStore, "write_many", after=bool),
    "after_commit": lambda: _wrap(fetch, "store_batch", after=bool),
    "after_register": lambda: _wrap(service, "process_pending", after=bool),
    "after_drafts": lambda: _wrap(Drafting, "hand_over", before=lambda _self, jobs: bool(jobs)),
    "before_send": lambda: _wrap(Sender, "_attempt", before=_always),
    "after_send": lambda: _wrap(Sender, "_attempt", after=lambda tried: bool(tried.delivered)),
}


def main() -> int:
    POINTS[os.environ["VANTHU_CRASH_AT"]]()
    return cli.main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
