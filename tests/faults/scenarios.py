"""All fault cases of a pytest session run at once, each in a thread of its own.

A fault case spends most of its time waiting — for a socket timeout, for the sender's next
round, for a lock to be released — so run one after the other the suite would take about ten
minutes on two cores; `AT_ONCE` of them run together, the longest first. Each test module
registers its cases by name (`register`); the first fault test of the session starts every
case selected in the session (`pytest -k` still runs only what it selects); each test then
waits for its own case's outcome, so a case fails, passes, skips or xfails as its own test.

A case is a function of (Dovecot, a fresh directory) that asserts what it must and returns
its line of the table of measured figures.
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.servers import Dovecot

Case = Callable[[Dovecot, Path], str]
CASES: dict[str, Case] = {}
RESULT_SECONDS = 900.0  # a bound on any one case: each has its own, shorter, waits inside
# Cases at once: enough to overlap their waits, few enough that two cores still start each
# daemon (seconds of Python imports, for it and its worker) without starving the others.
AT_ONCE = 5
# Started first: the longest, so that the others fit beside it.
FIRST = ("sigkill storm",)


def register(name: str, function: Callable[..., str], **arguments: Any) -> str:
    """Register `function(dovecot, directory, **arguments)` as case `name`; return the name."""
    assert name not in CASES, f"case {name} registered twice"
    CASES[name] = functools.partial(function, **arguments)
    return name


def _with_logs(case: Case, dovecot: Dovecot, directory: Path) -> str:
    """Run `case`; a failure carries the end of the daemon's logs (pytest removes old temporary
    directories, so the logs may be gone by the time someone looks)."""
    try:
        return case(dovecot, directory)
    except Exception as err:
        logs = "\n".join(f"--- {p.name}\n" + p.read_text(errors="replace")[-2500:]
                         for p in sorted(directory.glob("*.log"))[-3:])
        raise AssertionError(f"{err}\n{logs}") from err


class _Runner:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.futures: dict[str, Future[str]] = {}
        self.pool: ThreadPoolExecutor | None = None

    def start(self, names: list[str], dovecot: Dovecot,
              factory: pytest.TempPathFactory) -> None:
        with self.lock:
            todo = [n for n in dict.fromkeys(names) if n not in self.futures]
            if not todo:
                return
            todo.sort(key=lambda n: n not in FIRST)
            self.pool = ThreadPoolExecutor(max_workers=AT_ONCE, thread_name_prefix="fault")
            for name in todo:
                directory = factory.mktemp(re.sub(r"[^a-z0-9]+", "-", name.lower()))
                self.futures[name] = self.pool.submit(_with_logs, CASES[name], dovecot,
                                                      directory)
            self.pool.shutdown(wait=False)

    def result(self, name: str) -> str:
        return self.futures[name].result(RESULT_SECONDS)


_RUNNER = _Runner()


def selected(request: pytest.FixtureRequest) -> list[str]:
    """The fault cases selected in this session (the `case` parameter of fault tests)."""
    names = []
    for item in request.session.items:
        callspec = getattr(item, "callspec", None)
        module = getattr(getattr(item, "module", None), "__name__", "")
        if callspec is not None and module.rpartition(".")[2].startswith("test_faults_") \
                and "case" in callspec.params:
            names.append(str(callspec.params["case"]))
    return names


def outcome(request: pytest.FixtureRequest, dovecot: Dovecot,
            factory: pytest.TempPathFactory, case: str) -> str:
    """Start every selected case (once per session), wait for `case`, print its table line."""
    _RUNNER.start([*selected(request), case], dovecot, factory)
    line = _RUNNER.result(case)
    print("\n" + line)
    return line
