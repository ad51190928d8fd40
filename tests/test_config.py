"""Configuration: validated whole, every problem reported with its key, secrets never shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon import config
from daemon.cli import main
from daemon.errors import EX_CONFIG, ConfigError
from tests.conftest import ROOT

MINIMAL = """
[agency]
name = "Sở Xây dựng"
code = "000.00.22.H56"
timezone = "Asia/Ho_Chi_Minh"

[storage]
data_dir = "data"
database_url = ""

[[mailboxes]]
name = "agency"
host = "imap.example.gov.vn"
port = 993
security = "tls"
username = "vanthu"
password_env = "VANTHU_TEST_PASSWORD"
folders = ["INBOX"]
after = "flag"

[smtp]
host = "smtp.example.gov.vn"
port = 587
security = "starttls"
username = "vanthu"
password_file = "smtp.secret"
from = "vanthu@example.gov.vn"

[rules]
dir = "rules"
"""


def test_a_config_with_only_the_fixed_keys_runs(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """The fixed keys alone make a working config; every other key has a default."""
    monkeypatch.setenv("VANTHU_TEST_PASSWORD", "imap-secret")
    (tmp_path / "smtp.secret").write_text("smtp-secret\n")
    path = tmp_path / "config.toml"
    path.write_text(MINIMAL, encoding="utf-8")

    cfg = config.load(path)

    assert cfg.mailboxes[0].password.reveal() == "imap-secret"
    assert cfg.smtp.password is not None and cfg.smtp.password.reveal() == "smtp-secret"
    assert cfg.storage.url == f"sqlite:///{tmp_path / 'data' / 'vanthu.db'}"
    assert cfg.digest.times == ("06:00", "12:00", "18:00")
    assert "secret" not in repr(cfg)


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    """Unknown keys and wrong types are all listed, each with its path and line."""
    path = tmp_path / "config.toml"
    path.write_text('[agency]\nname = 5\ncolour = "red"\n[smtp]\nport = "25"\n'
                    '[[mailboxes]]\nhost = "x"\nusername = "u"\npassword = "p"\n'
                    'security = "ssl"\n', encoding="utf-8")

    with pytest.raises(ConfigError) as caught:
        config.load(path)

    text = str(caught.value)
    assert f"{path}:2: agency.name: expected str, got int" in text
    assert f"{path}:3: agency.colour: unknown key" in text
    assert "smtp.port: expected int, got str" in text
    assert "mailboxes[0].security: must be one of tls, starttls, none" in text


def test_missing_password_environment_variable_is_an_error(tmp_path: Path) -> None:
    """A password_env naming an unset variable is a configuration error, not an empty password."""
    path = tmp_path / "config.toml"
    path.write_text('[[mailboxes]]\nhost = "x"\nusername = "u"\n'
                    'password_env = "VANTHU_SURELY_UNSET"\n', encoding="utf-8")

    with pytest.raises(ConfigError, match="VANTHU_SURELY_UNSET is not set"):
        config.load(path)


def test_shipped_example_config_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    """config.example.toml loads (with its secret supplied) and `vanthu check` accepts it."""
    monkeypatch.setenv("VANTHU_IMAP_PASSWORD", "x")
    monkeypatch.setenv("VANTHU_SMTP_PASSWORD", "y")
    monkeypatch.chdir(ROOT)

    assert main(["check", "--config", str(ROOT / "config.example.toml")]) == 0


def test_run_with_a_bad_config_exits_78(tmp_path: Path) -> None:
    """A configuration error ends the process with EX_CONFIG, so systemd does not restart it."""
    path = tmp_path / "config.toml"
    path.write_text("[agency]\nname = 1\n", encoding="utf-8")

    assert main(["run", "--config", str(path)]) == EX_CONFIG


def test_check_loads_the_trust_roots(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A trust root that cannot be read is reported by `vanthu check`."""
    monkeypatch.chdir(ROOT)
    path = tmp_path / "config.toml"
    path.write_text(f'[rules]\ndir = "{ROOT / "rules"}"\n[results]\n'
                    f'trust_roots = ["{tmp_path / "missing.pem"}"]\n', encoding="utf-8")

    assert main(["check", "--config", str(path)]) == 1

    assert "missing.pem: cannot load trust root" in capsys.readouterr().out
