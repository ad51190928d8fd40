"""The systemd unit: valid for systemd, hardened, and the daemon speaks sd_notify."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from daemon.service import sd_notify
from tests.conftest import ROOT

UNIT = ROOT / "systemd" / "vanthu.service"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    """`systemd-analyze verify` accepts the unit (pointed at this checkout's executable)."""
    executable = Path(sys.executable).parent / "vanthu"
    unit = tmp_path / "vanthu.service"
    unit.write_text(UNIT.read_text().replace("/opt/vanthu/.venv/bin/vanthu", str(executable)))

    result = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                            text=True, check=False)

    assert result.returncode == 0, result.stderr


def test_unit_is_hardened_and_does_not_restart_on_config_errors() -> None:
    """The unit carries the hardening set and treats exit 78 as final."""
    text = UNIT.read_text()
    for line in ("Type=notify", "WatchdogSec=", "Restart=on-failure",
                 "RestartPreventExitStatus=78", "User=vanthu", "StateDirectory=vanthu",
                 "LoadCredential=", "ProtectSystem=strict", "NoNewPrivileges=yes",
                 "PrivateTmp=yes", "ProtectHome=yes", "RestrictAddressFamilies=",
                 "SystemCallFilter=@system-service", "CapabilityBoundingSet="):
        assert line in text, line


def test_sd_notify_reaches_the_notify_socket(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """READY=1 is sent as a datagram to $NOTIFY_SOCKET."""
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(str(path))
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))

        sd_notify("READY=1")

        assert server.recv(100) == b"READY=1"
