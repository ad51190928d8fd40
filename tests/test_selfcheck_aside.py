"""The daemon's start checks the emails that draw a PDF aside, in a forked copy of itself: the
same problems in the same order as the check in one process, and the daemon's own process
never imports the PDF maker. A copy that raises, dies or hangs is a problem, not a hang."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from daemon import selfcheck
from tests.conftest import ROOT
from tests.test_config import VALID, _config, _copy_rules

# Run in a fresh interpreter (one thread, nothing imported by other tests): the check with
# `aside`, whether fpdf2 was imported by it, then the same check in one process.
PROBE = r"""
import json, sys, threading
from pathlib import Path
from daemon import selfcheck
from daemon.office import receipt
from daemon.outbound import compose

path, mode = Path(sys.argv[1]), sys.argv[2]
cfg, rules = selfcheck.load(path)


def fragile(real):
    def composing(cfg, *args):
        if "Tây Ninh" in cfg.agency.name:
            raise UnicodeEncodeError("ascii", "Tây", 1, 2, "no Vietnamese here")
        return real(cfg, *args)
    return composing


if mode == "one cause, both kinds":  # breaks emails drawn and not drawn alike
    compose.notify = fragile(compose.notify)
    compose.acknowledge = fragile(compose.acknowledge)
if mode == "hangs":  # the PDF maker never returns
    selfcheck.ASIDE_SECONDS = 2.0
    receipt.html_pdf = lambda *args, **kwargs: threading.Event().wait()
if mode == "threads":  # another thread runs: no fork
    threading.Thread(target=threading.Event().wait, daemon=True).start()
aside = [str(p) for p in selfcheck.prove(cfg, rules, aside=True)]
out = {"aside": aside, "fpdf": "fpdf" in sys.modules}
if mode != "hangs":
    out["here"] = [str(p) for p in selfcheck.prove(cfg, rules)]
print(json.dumps(out))
"""


def _probe(path: Path, mode: str = "") -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-c", PROBE, str(path), mode], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return dict(json.loads(done.stdout.splitlines()[-1]))


def _broken_templates(tmp_path: Path, *names: str) -> Path:
    rules = _copy_rules(tmp_path)
    (rules / "templates").mkdir()
    for name in names:
        (rules / "templates" / name).write_text("<p>{{ code }</p>\n{{ nguoi_nop }}\n",
                                                encoding="utf-8")
    return rules


def test_a_valid_configuration_passes_aside_without_importing_the_pdf_maker(
        tmp_path: Path) -> None:
    found = _probe(_config(tmp_path))
    assert found == {"aside": [], "fpdf": False, "here": []}


@pytest.mark.parametrize("case", ["receipt template", "receipt and supplement templates",
                                  "glyph", "one cause, both kinds"])
def test_the_check_aside_reports_what_the_check_in_one_process_reports(
        tmp_path: Path, case: str) -> None:
    text, rules, mode = VALID, None, ""
    if case == "receipt template":
        rules = _broken_templates(tmp_path, "receipt.html.j2")
    elif case == "receipt and supplement templates":
        rules = _broken_templates(tmp_path, "receipt.txt.j2", "supplement_request.txt.j2")
    elif case == "glyph":
        text = VALID.replace('[agency]\n', '[agency]\nresult_place = "Một cửa ☯"\n', 1)
    else:
        mode = case

    found = _probe(_config(tmp_path, text, rules), mode)

    assert found["aside"] == found["here"] and found["aside"], found
    assert found["fpdf"] is False
    if case == "receipt and supplement templates":
        assert any("receipt.txt.j2" in p for p in found["aside"])
        assert any("supplement_request.txt.j2" in p for p in found["aside"])
    if case == "one cause, both kinds":  # one problem, naming the emails in their order
        [problem] = found["aside"]
        assert "(in the confidential notice, acknowledgement, dossier receipt)" in problem


def test_a_check_aside_that_hangs_is_a_problem_not_a_hang(tmp_path: Path) -> None:
    path = _config(tmp_path)
    found = _probe(path, "hangs")
    assert found["aside"] == [f"{path}: the check of the emails that draw a PDF (the dossier "
                              "receipt) failed: it did not end within 2 s"]


def test_with_another_thread_running_the_check_stays_in_one_process(tmp_path: Path) -> None:
    found = _probe(_config(tmp_path), "threads")
    assert found == {"aside": [], "fpdf": True, "here": []}


def test_the_copy_answers_with_what_it_returns_however_large() -> None:
    answer = [("tệp", "x" * 1000)] * 2000  # megabytes: more than a pipe holds
    aside = selfcheck._Aside(lambda: answer, 60)
    assert aside.result() == answer
    with pytest.raises(ProcessLookupError):  # reaped
        os.kill(aside._pid, 0)


def test_a_copy_that_raises_or_dies_is_reported() -> None:
    def dies() -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    with pytest.raises(selfcheck._AsideFailed, match="raised ZeroDivisionError"):
        selfcheck._Aside(lambda: 1 / 0, 60).result()
    with pytest.raises(selfcheck._AsideFailed, match=r"without an answer \(killed by signal 9\)"):
        selfcheck._Aside(dies, 60).result()
    with pytest.raises(selfcheck._AsideFailed, match=r"without an answer \(exit status 3\)"):
        selfcheck._Aside(lambda: os._exit(3), 60).result()
    # An answer that cannot be written whole (its end cannot be pickled): the part written
    # before is not taken for an answer.
    with pytest.raises(selfcheck._AsideFailed, match=r"incomplete \(exit status 70\)"):
        selfcheck._Aside(lambda: [b"x" * 1_000_000, lambda: None], 60).result()


def test_a_copy_that_hangs_is_killed_at_its_deadline() -> None:
    aside = selfcheck._Aside(lambda: threading.Event().wait(), 0.5)  # never ends
    with pytest.raises(selfcheck._AsideFailed, match=r"did not end within 0\.5 s"):
        aside.result()
    with pytest.raises(ProcessLookupError):  # killed and reaped
        os.kill(aside._pid, 0)
