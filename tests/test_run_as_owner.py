"""A command run by root on a data folder the service's user owns goes on as that user: the
files it makes there (the database, its side files, the sender's journal) stay writable by
the daemon."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.test_errors import CONFIG

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="only root can run as another user")


@pytest.fixture
def folder() -> Iterator[Path]:
    # Not under pytest's tmp_path: its folders are root's alone (0700), so no other user
    # could reach a data folder inside them.
    made = Path(tempfile.mkdtemp(prefix="vanthu-owner-", dir="/tmp"))
    made.chmod(0o755)
    yield made
    shutil.rmtree(made, ignore_errors=True)


# The command runs once as root on a folder root owns, so that every module it needs is
# imported before it runs on the folder under test: the interpreter of this machine may be
# where only root reads (pyenv under /root), while a deployment's is readable by the
# service's user, who runs the daemon with it.
SCRIPT = """
import sys
from daemon.cli import main
assert main(["db", "upgrade", "--config", sys.argv[1]]) == 0
raise SystemExit(main(["db", "upgrade", "--config", sys.argv[2]]))
"""


def _config(folder: Path, name: str, owner: int) -> tuple[Path, Path]:
    data = folder / name
    data.mkdir()
    os.chown(data, owner, owner)
    config = folder / f"{name}.toml"
    config.write_text(CONFIG.replace('data_dir = "data"', f'data_dir = "{data}"'),
                      encoding="utf-8")
    return config, data / "vanthu.db"


def _upgrade(folder: Path, owner: int) -> tuple[subprocess.CompletedProcess[str], Path]:
    warm, _ = _config(folder, "warm", 0)
    config, database = _config(folder, "dữ liệu", owner)
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(warm), str(config)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False)
    return done, database


@pytest.mark.parametrize("owner", [pwd.getpwnam("nobody").pw_uid, 54321])
def test_root_goes_on_as_the_owner_of_the_data_folder(folder: Path, owner: int) -> None:
    """nobody (a named user) and 54321 (a user without a name in /etc/passwd)."""
    done, database = _upgrade(folder, owner)
    assert done.returncode == 0, done.stderr
    assert database.stat().st_uid == owner
    assert all(path.stat().st_uid == owner for path in database.parent.iterdir())
    name = "nobody" if owner != 54321 else "54321"
    assert done.stderr.count("chạy với quyền") == 1
    assert f"chạy với quyền của {name}, chủ thư mục dữ liệu {database.parent}" in done.stderr


def test_a_data_folder_root_owns_stays_roots(folder: Path) -> None:
    done, database = _upgrade(folder, 0)
    assert done.returncode == 0, done.stderr
    assert database.stat().st_uid == 0
    assert "chạy với quyền" not in done.stderr
