"""The daemon as a process: graceful SIGTERM, rule reload on SIGHUP, structured logs."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import cast

import pytest

from daemon.db import messages, register_entries
from daemon.office import results
from daemon.service import Daemon
from tests.conftest import CORPUS, ROOT, Office, corpus_labels, wait_for


def _start(office: Office) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "daemon", "run", "--config", str(office.config_path)],
        cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"}, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)


def test_sigterm_mid_intake_loses_nothing(office: Office) -> None:
    """SIGTERM while mail is being processed exits cleanly; a restart finishes the job once."""
    labels = corpus_labels()
    office.seed_corpus_cases()
    office.deliver(*[(CORPUS / label["file"]).read_bytes() for label in labels])
    process = _start(office)
    wait_for(lambda: office.count(messages) > 0, timeout=30)

    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=60)

    assert process.returncode == 0, output[-3000:]
    events = [json.loads(line)["event"] for line in output.splitlines() if line.startswith("{")]
    assert "daemon.stopping" in events and events[-1] == "daemon.stopped"
    registrable = sum(1 for label in labels
                      if "register" in label["must"] and "quarantine" not in label["must"])
    office.run_daemon(until=lambda: office.count(register_entries) == registrable
                      and office.count(messages) == len(labels))
    assert office.count(messages) == len(labels)


def test_sighup_with_broken_rules_keeps_the_running_set(office: Office, tmp_path: object) -> None:
    """A reload with a rule error logs the error with file and line and keeps routing."""
    rules_dir = office.dir / "rules"
    rules_dir.mkdir()
    for path in (ROOT / "rules").glob("*.yaml"):
        (rules_dir / path.name).write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    office.config_path.write_text(office.config_path.read_text().replace(
        str(ROOT / "rules"), str(rules_dir)))
    process = _start(office)
    seen: list[str] = []

    def logged(event: str) -> bool:
        """Read the daemon's log up to the next line; True once `event` was logged."""
        line = process.stdout.readline() if process.stdout else ""
        seen.append(line)
        return f'"{event}"' in line

    try:
        wait_for(lambda: logged("daemon.started"), timeout=30)
        (rules_dir / "10-routing.yaml").write_text("rules:\n  - id: x\n    when: {kind: nope}\n",
                                                   encoding="utf-8")

        process.send_signal(signal.SIGHUP)
        wait_for(lambda: logged("rules.rejected"), timeout=30)
        office.deliver((CORPUS / "008.eml").read_bytes())
        wait_for(lambda: any(b"X-Vanthu-Action: forward" in m.data
                             for m in office.smtp.messages()), timeout=30)
    finally:
        process.send_signal(signal.SIGTERM)
        rest, _ = process.communicate(timeout=60)
    output = "".join(seen) + rest
    rejected = [json.loads(line) for line in output.splitlines()
                if line.startswith("{") and '"rules.rejected"' in line]
    assert rejected and "10-routing.yaml:3: unknown kind 'nope'" in rejected[0]["problem"]


def test_a_stop_is_never_forgotten_by_a_wait() -> None:
    """A loop that waits on the stop event itself (the paused pipeline did) must not clear it:
    a SIGTERM arriving during that wait would be lost, and systemd would SIGKILL the daemon."""

    class Loops:
        stopping: asyncio.Event

    async def scenario() -> bool:
        loops = Loops()
        loops.stopping = asyncio.Event()
        loops.stopping.set()
        daemon = cast(Daemon, loops)  # only its stop event is used by _wait
        await Daemon._wait(daemon, loops.stopping, 0.01)
        other = asyncio.Event()
        other.set()
        await Daemon._wait(daemon, other, 0.01)
        return loops.stopping.is_set() and not other.is_set()

    assert asyncio.run(scenario())


def test_a_stop_does_not_wait_for_a_result_being_verified(
        office: Office, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A signed result whose verification hangs (its worker may take VERIFY_SECONDS, here an
    hour) does not hold the daemon's stop: its worker is killed and the file stays for the
    next start. (Running's exit waits 30 s for the daemon, then fails.)"""
    from tests.test_results_folder import VALID, _hanging_worker
    from tests.test_watch import Running

    gate = tmp_path / "gate"
    gate.mkdir()
    monkeypatch.setattr(results, "VERIFY_SECONDS", 3600.0)
    monkeypatch.setattr(results, "_WORKER", functools.partial(_hanging_worker, gate))
    inbox = office.cfg.results.inbox_dir
    inbox.mkdir(parents=True, exist_ok=True)
    shutil.copy(VALID, inbox / "ket-qua.pdf")
    with Running(office):
        wait_for(lambda: (gate / "pid").exists(), timeout=120)
    worker = int((gate / "pid").read_text())
    wait_for(lambda: not _running(worker), timeout=60)
    assert (inbox / "ket-qua.pdf").exists()


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except OSError:
        return False
