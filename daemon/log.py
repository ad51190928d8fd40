"""Structured logs: an event name with dotted parts (`mail.stored`) and bound fields.

Calls use the standard library: `log.info("mail.stored", extra={"uid": 7})`. Output is one
JSON object a line (journald keeps it), or a readable line when stdout is a terminal. Bodies
and secrets are never passed as fields.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

# Attributes every LogRecord has; anything else came in through `extra=`.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


# Set while vanthu rehearses, in the thread (or task) that does: see `rehearsal`.
_rehearsing: contextvars.ContextVar[bool] = contextvars.ContextVar("vanthu_rehearsing",
                                                                   default=False)


class _Rehearsed(logging.Filter):
    """What a rehearsal logs: its info lines are dropped, its warnings and errors marked."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not _rehearsing.get():
            return True
        if record.levelno < logging.WARNING:
            return False
        record.rehearsal = True
        return True


_REHEARSED = _Rehearsed()


@contextmanager
def rehearsal() -> Iterator[None]:
    """What runs inside is a rehearsal that is undone or thrown away: the self-check's sample
    emails composed into a scratch database, the canary's sample mail taken through the
    pipeline in a savepoint rolled back. Its info lines ("queued", "registered", a case
    opened) would report what never happened: they are dropped. Its warnings and errors are
    logged, with `"rehearsal": true` (a font that cannot be read, the fault the canary
    looks for). Only the thread or task that rehearses is quieted: the others log as ever."""
    for name, logger in list(logging.Logger.manager.loggerDict.items()):
        if name.startswith("vanthu") and isinstance(logger, logging.Logger):
            logger.addFilter(_REHEARSED)  # once each; it passes everything outside rehearsals
    for handler in logging.getLogger().handlers:  # vanthu's loggers made meanwhile
        handler.addFilter(_REHEARSED)
    token = _rehearsing.set(True)
    try:
        yield
    finally:
        _rehearsing.reset(token)


def fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "event": record.getMessage(),
            "logger": record.name,
            **fields(record),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class ConsoleFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        when = datetime.fromtimestamp(record.created).strftime("%H:%M:%S")
        extra = " ".join(f"{k}={v}" for k, v in fields(record).items())
        line = f"{when} {record.levelname.lower():7} {record.getMessage():24} {extra}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def setup(level: str = "INFO", json_output: bool | None = None) -> None:
    """Send vanthu's logs to stdout: JSON unless stdout is a terminal."""
    if json_output is None:
        json_output = not sys.stdout.isatty()
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter() if json_output else ConsoleFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # fontTools logs ~75 INFO lines ("glyf subsetted", …) for every PDF fpdf2 writes;
    # alembic one ("setup plugin …") for each of its plugins at every start.
    for noisy in ("imapclient", "aiosmtplib", "apscheduler", "mail.log", "aiosmtpd", "fontTools",
                  "fpdf", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
