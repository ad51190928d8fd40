"""Libraries do not fill vanthu's log: making one receipt PDF at INFO writes no line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = """
import logging
from daemon import log
log.setup("INFO", json_output=True)
from daemon.office.receipt import new_document
doc = new_document()
doc.add_page()
doc.set_font("DejaVu", "", 11)
doc.cell(text="Phiếu tiếp nhận và hẹn trả kết quả")
assert doc.output()[:5] == b"%PDF-"
logging.getLogger("daemon.test").info("done")
"""


def test_making_a_pdf_logs_nothing_from_the_font_libraries() -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [line["logger"] for line in lines] == ["daemon.test"]  # ours still shows


UPGRADE = """
import logging, sys
from daemon import log
log.setup("INFO", json_output=True)
from daemon.db import make_engine, upgrade
upgrade(make_engine(f"sqlite:///{sys.argv[1]}/vanthu.db"))
"""


def test_making_the_database_logs_only_vanthus_line(tmp_path: Path) -> None:
    """A start on a new database: alembic's plugins say nothing at INFO, vanthu says that
    the schema was made."""
    done = subprocess.run([sys.executable, "-c", UPGRADE, str(tmp_path)], capture_output=True,
                          text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [(line["logger"], line["event"]) for line in lines] == [("vanthu.db", "db.upgraded")]
