"""Configuration: validated whole, every problem reported with its key, secrets never shown."""

from __future__ import annotations

import contextlib
import logging
import subprocess
import sys
import threading
from datetime import date
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import pytest

from daemon import config, selfcheck
from daemon.cli import main
from daemon.errors import EX_CONFIG, ConfigError
from daemon.outbound import compose
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


# --- Locations, all problems in one run, dates, identity, the self-check -------------------

VALID = """\
# vanthu, one agency
[agency]
name = "Sở Xây dựng tỉnh Tây Ninh"
code = "000.00.22.H56"
message_id_domain = "sxd.tayninh.gov.vn"

[[mailboxes]]
name = "one"
host = "imap.example.gov.vn"
port = 993
username = "vanthu"
password = "x"

[[mailboxes]]
name = "two"
host = "imap2.example.gov.vn"
port = 993
username = "vanthu2"
password = "y"

[smtp]
host = "smtp.example.gov.vn"
port = 587
security = "starttls"
from = "Văn thư <vanthu@example.gov.vn>"

[rules]
dir = "RULES"

[security]
authserv_id = "mx1.tayninh.gov.vn"
"""


def _config(tmp_path: Path, text: str = VALID, rules: Path | None = None) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text.replace("RULES", str(rules or ROOT / "rules")), encoding="utf-8")
    return path


def _line(text: str, fragment: str, after: str = "") -> int:
    """The 1-based number of the first line holding `fragment` after the line holding `after`."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if after in line) if after else 0
    return next(i for i, line in enumerate(lines) if i >= start and fragment in line) + 1


def _copy_rules(tmp_path: Path) -> Path:
    target = tmp_path / "rules"
    target.mkdir()
    for path in (ROOT / "rules").glob("*.yaml"):
        (target / path.name).write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    return target


def test_a_valid_config_passes_the_whole_self_check(tmp_path: Path) -> None:
    """A complete config with a Vietnamese `[smtp] from` has no problem and no note."""
    report = selfcheck.check(_config(tmp_path))

    assert report.problems == () and report.notes == ()
    assert report.config is not None and report.config.smtp.from_name == "Văn thư"


def test_the_self_checks_sample_emails_are_not_logged_as_news(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Composing one of each email at start queues them in a scratch database: no
    "outbox.queued" (or any other info) line says so, while another thread logs as ever."""
    caplog.set_level(logging.DEBUG, logger="vanthu")
    other: list[str] = []

    def meanwhile() -> None:  # a running daemon's thread, logging while the check runs
        logging.getLogger("vanthu.outbox").info("outbox.queued")
        other.append("logged")

    checking = threading.Event()
    original = selfcheck._attempt

    def attempt(build: Any, cfg: Any) -> Any:
        if not checking.is_set():
            checking.set()
            thread = threading.Thread(target=meanwhile)
            thread.start()
            thread.join()
        return original(build, cfg)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(selfcheck, "_attempt", attempt)
        report = selfcheck.check(_config(tmp_path))
    assert report.problems == () and other == ["logged"]
    mine = [r for r in caplog.records if r.thread == threading.get_ident()
            and r.name.startswith("vanthu")]
    assert [r.getMessage() for r in mine if r.levelno < logging.WARNING] == []
    theirs = [r for r in caplog.records if r.thread != threading.get_ident()]
    assert [r.getMessage() for r in theirs] == ["outbox.queued"]
    # Without the check's quiet, the samples did log: the test sees what it claims to hide.
    caplog.clear()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(selfcheck, "rehearsal", contextlib.nullcontext)
        selfcheck.check(_config(tmp_path))
    assert any(r.getMessage() == "outbox.queued" for r in caplog.records)


def test_errors_point_at_the_key_inside_its_own_table(tmp_path: Path) -> None:
    """`smtp.port` is located in [smtp] and `mailboxes[1].port` in the second [[mailboxes]],
    not at the first `port =` of the file."""
    text = (VALID.replace('port = 587', 'port = "587"')
            .replace('host = "imap2.example.gov.vn"\nport = 993',
                     'host = "imap2.example.gov.vn"\nport = 0'))
    path = _config(tmp_path, text)

    problems = [str(p) for p in config.examine(path).problems]

    assert problems == [
        f"{path}:{_line(text, 'port = 0')}: mailboxes[1].port: must be a TCP port (1 to 65535)",
        f"{path}:{_line(text, 'port = ', after='[smtp]')}: smtp.port: expected int, got str",
    ]


def test_dotted_keys_inline_tables_and_multiline_strings_are_located(tmp_path: Path) -> None:
    """A dotted key, a key in an inline table and an unknown key after a multi-line string
    holding `port = 1` are each located at their own line; comments are never keys."""
    text = ('rules.dir = "RULES"\n'
            'limits = { max_parts = "many", max_depth = 3 }\n'
            'remark = """\nport = 1\n"""\n'
            + VALID.replace('[rules]\ndir = "RULES"\n', "")
            .replace("[smtp]\n", "[smtp]\n# port = 2\nport = -1\n", 1)
            .replace('port = 587\n', ''))
    path = _config(tmp_path, text)

    problems = [str(p) for p in config.examine(path).problems]

    assert f"{path}:2: limits.max_parts: expected int, got str" in problems
    assert f"{path}:3: remark: unknown key" in problems
    assert f"{path}:{_line(text, 'port = -1')}: smtp.port: must be a TCP port (1 to 65535)" \
        in problems
    assert config.locate(path, "rules.dir") == (str(path), 1)
    assert config.locate(path, "mailboxes[1].host") == (str(path), _line(text, "imap2"))


def test_a_file_that_is_not_toml_is_located_and_its_rules_are_still_checked(
        tmp_path: Path) -> None:
    """A TOML syntax error is reported at its line, and the rules folder the file names is
    checked in the same run."""
    rules = _copy_rules(tmp_path)
    (rules / "20-bad.yaml").write_text("rules:\n  - id: Bad Id\n", encoding="utf-8")
    path = _config(tmp_path, VALID.replace('code = "000.00.22.H56"', 'code = 000.00.22.H56'),
                   rules)

    problems = [str(p) for p in selfcheck.check(path).problems]

    assert problems[0].startswith(f"{path}:4: not valid TOML")
    assert f"{rules / '20-bad.yaml'}:2: rule id 'Bad Id' must be lower-case letters, digits, " \
           "_ or -" in problems


def test_check_reports_config_rules_and_trust_roots_in_one_run(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`vanthu check` lists the config's problems, every rule file's and the trust roots' in
    one run, and exits 1."""
    rules = _copy_rules(tmp_path)
    (rules / "20-a.yaml").write_text("rules:\n  - id: a\n    when: {kind: letter}\n",
                                     encoding="utf-8")
    (rules / "30-b.yaml").write_text("rules:\n  - id: b\n    then:\n      - forward: "
                                     "{roles: [thu_ky]}\n", encoding="utf-8")
    text = VALID + f'\n[results]\ntrust_roots = ["{tmp_path / "missing.pem"}"]\n'
    path = _config(tmp_path, text.replace('name = "one"', 'name = 1'), rules)

    assert main(["check", "--config", str(path)]) == 1

    out = capsys.readouterr().out
    line = _line(text, 'name = "one"')
    assert f"{path}:{line}: mailboxes[0].name: expected str" in out
    assert f"{rules / '20-a.yaml'}:3: unknown kind 'letter'" in out
    assert f"{rules / '30-b.yaml'}:4: unknown role 'thu_ky'" in out
    assert "missing.pem: cannot load trust root" in out


def test_days_off_take_toml_dates_and_iso_strings(tmp_path: Path) -> None:
    """`[calendar] days_off` accepts TOML dates and quoted ISO dates alike."""
    path = _config(tmp_path, VALID + '\n[calendar]\ndays_off = [2026-12-31, "2027-01-02"]\n'
                                     'working_days = ["2027-01-09"]\n')

    cfg = config.load(path)

    assert cfg.calendar.days_off == (date(2026, 12, 31), date(2027, 1, 2))
    assert cfg.calendar.working_days == (date(2027, 1, 9),)


def test_a_wrong_date_is_reported_at_its_own_line(tmp_path: Path) -> None:
    """A date string that is no date, or a date with a time, is an error at its element's line."""
    text = VALID + ('\n[calendar]\ndays_off = [\n  "2026-12-31",\n  "2026-13-01",\n'
                    '  2026-12-30T08:00:00,\n]\n')
    path = _config(tmp_path, text)

    problems = [str(p) for p in config.examine(path).problems]

    assert problems == [
        f"{path}:{_line(text, '2026-13-01')}: calendar.days_off[1]: '2026-13-01' is not a date: "
        "month must be in 1..12",
        f"{path}:{_line(text, '2026-12-30T')}: calendar.days_off[2]: '2026-12-30T08:00:00' has "
        "a time of day; write the date alone (YYYY-MM-DD)",
    ]


def test_security_and_reply_limit_keys_have_defaults_and_are_checked(tmp_path: Path) -> None:
    """authres_headers, verify_dkim and the reply limits default to 1, false, 5 and 50; a
    zero or a wrong type is an error at its line."""
    defaults = config.load(_config(tmp_path))
    text = VALID + ('authres_headers = 0\nverify_dkim = "yes"\n[limits]\n'
                    'replies_per_sender_per_day = 0\nreplies_per_domain_per_day = 2.5\n')
    path = _config(tmp_path, text)

    problems = [str(p) for p in config.examine(path).problems]

    assert (defaults.security.authres_headers, defaults.security.verify_dkim) == (1, False)
    assert (defaults.limits.replies_per_sender_per_day,
            defaults.limits.replies_per_domain_per_day) == (5, 50)
    assert sorted(problems) == sorted([
        f"{path}:{_line(text, 'replies_per_domain')}: limits.replies_per_domain_per_day: "
        "expected int, got float",
        f"{path}:{_line(text, 'replies_per_sender')}: limits.replies_per_sender_per_day: "
        "must be positive",
        f"{path}:{_line(text, 'verify_dkim')}: security.verify_dkim: expected bool, got str",
        f"{path}:{_line(text, 'authres_headers')}: security.authres_headers: must be positive",
    ])


_TOO_SMALL = (f"must be at least {config.MIN_WORKER_MEMORY_MB} (MB): a worker takes about "
              "250 MB before it reads a mail, and every mail needing more is quarantined")
_TOO_LARGE = f"must be at most {config.MAX_WORKER_MEMORY_MB} (MB): no larger cap can be set"


@pytest.mark.parametrize(("value", "problem"), [
    (0, _TOO_SMALL), (1, _TOO_SMALL), (100, _TOO_SMALL),
    (config.MIN_WORKER_MEMORY_MB - 1, _TOO_SMALL), (config.MIN_WORKER_MEMORY_MB, None),
    (4096, None), (config.MAX_WORKER_MEMORY_MB, None),
    (config.MAX_WORKER_MEMORY_MB + 1, _TOO_LARGE), (2**50, _TOO_LARGE)])
def test_a_worker_memory_cap_no_worker_could_read_under_or_be_given_is_an_error(
        tmp_path: Path, value: int, problem: str | None) -> None:
    """A cap below what a worker takes before it reads any mail would quarantine every mail
    for want of memory; one past what setrlimit takes would stop every worker from starting:
    each is refused at its line, saying why."""
    text = VALID + f"[limits]\nworker_memory_mb = {value}\n"
    path = _config(tmp_path, text)

    problems = [str(p) for p in config.examine(path).problems]

    assert problems == ([] if problem is None else [
        f"{path}:{_line(text, 'worker_memory_mb')}: limits.worker_memory_mb: {problem}"])


def test_the_largest_worker_memory_cap_accepted_can_be_set() -> None:
    """The largest accepted cap's bytes are what setrlimit takes (in a child: a cap once
    lowered cannot be raised again)."""
    script = ("import resource, sys; b = int(sys.argv[1]) * 2**20; "
              "resource.setrlimit(resource.RLIMIT_AS, (b, resource.RLIM_INFINITY))")
    for value, ok in ((config.MAX_WORKER_MEMORY_MB, True),
                      (config.MAX_WORKER_MEMORY_MB + 1, False)):
        done = subprocess.run([sys.executable, "-c", script, str(value)],
                              capture_output=True, text=True, check=False)
        assert (done.returncode == 0) is ok, done.stderr


@pytest.mark.parametrize(("key", "value", "message"), [
    ("message_id_domain", '"sở.gov.vn"', "is not an ASCII domain"),
    ("message_id_domain", '"sxd tayninh.gov.vn"', "is not a domain name"),
    ("addresses", '["văn.thư@sxd.gov.vn"]', "is not an ASCII address"),
    ("case_code_format", '"{code}-{ngay}-{seq}"', "unknown field {ngay}"),
    ("case_code_format", '"{code}-{seq:04d}"', "makes the same code twice"),
    ("case_code_format", '"{code} {yymmdd} {seq}"', "cannot go into a Message-ID"),
    ("case_ref_pattern", "'HS-\\d{4}-\\d{6}'", "does not recognise the dossier codes"),
    ("case_ref_pattern", "'(HS'", "not a valid regular expression"),
])
def test_identity_values_vanthu_could_not_use_are_errors(tmp_path: Path, key: str, value: str,
                                                         message: str) -> None:
    """Each identity value that would break the emails or the case numbering is an error
    located at its key."""
    text = VALID.replace('message_id_domain = "sxd.tayninh.gov.vn"\n', "").replace(
        'code = "000.00.22.H56"\n', f'code = "000.00.22.H56"\n{key} = {value}\n')
    path = _config(tmp_path, text)

    problems = config.examine(path).problems

    assert [(p.line, message in p.message) for p in problems] == [(5, True)], problems


def test_an_empty_authserv_id_is_a_note_not_an_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Without `[security] authserv_id` check passes but prints a note saying no sender can be
    authenticated, so no acknowledgement is sent."""
    text = VALID.replace('authserv_id = "mx1.tayninh.gov.vn"', "# authserv_id unset")
    path = _config(tmp_path, text)

    assert main(["check", "--config", str(path)]) == 0

    out = capsys.readouterr().out
    assert f"note: {path}:{_line(text, '[security]')}: security.authserv_id is empty: no sender " \
           "can be authenticated, so no acknowledgement is sent" in out


def test_every_email_carries_a_long_vietnamese_sender(tmp_path: Path) -> None:
    """With a long Vietnamese display name in `[smtp] from` every email vanthu sends is From
    that name and address, as a mail client decodes it."""
    name = "Văn thư Văn phòng Ủy ban nhân dân tỉnh Bà Rịa - Vũng Tàu, \"Bộ phận một cửa\""
    text = VALID.replace('from = "Văn thư <vanthu@example.gov.vn>"',
                         f"from = '\"{name.replace(chr(34), chr(92) + chr(34))}\" "
                         "<vanthu@example.gov.vn>'")
    path = _config(tmp_path, text)
    report = selfcheck.check(path)
    assert report.problems == () and report.config is not None and report.rules is not None

    sent = selfcheck.emails(report.config, report.rules)

    assert len(sent) == 11
    for label, raw in sent:
        parsed = message_from_bytes(raw, policy=policy.default)
        assert parsed["From"].addresses[0].addr_spec == "vanthu@example.gov.vn", label
        raw_from = next(v for k, v in parsed.raw_items() if k == "From")
        assert selfcheck.shown_name(raw_from) == name, label


def test_a_composing_failure_is_located_at_the_key_that_causes_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """When one email cannot be composed with the configured agency name, the problem names
    `agency.name` at its line and the email."""
    real_notify = compose.notify

    def fragile(cfg: config.Config, *args: Any) -> Any:
        if "Tây Ninh" in cfg.agency.name:
            raise UnicodeEncodeError("ascii", "Tây", 1, 2, "no Vietnamese here")
        return real_notify(cfg, *args)

    monkeypatch.setattr(compose, "notify", fragile)
    path = _config(tmp_path)

    problems = [str(p) for p in selfcheck.check(path).problems]

    assert problems == [f"{path}:3: agency.name: the email cannot be composed: "
                        "UnicodeEncodeError: 'ascii' codec can't encode character '\\xe2' in "
                        "position 1: no Vietnamese here (in the confidential notice)"]


def test_a_broken_receipt_template_is_reported_at_its_line(tmp_path: Path) -> None:
    """An agency's receipt template that fails to render is reported at the template's line."""
    rules = _copy_rules(tmp_path)
    (rules / "templates").mkdir()
    (rules / "templates" / "receipt.txt.j2").write_text(
        "GIẤY TIẾP NHẬN HỒ SƠ\nMã hồ sơ: {{ code }}\nNgười nộp: {{ nguoi_nop }}\n",
        encoding="utf-8")

    problems = selfcheck.check(_config(tmp_path, rules=rules)).problems

    assert [(p.file, p.line) for p in problems] == [
        (str(rules / "templates" / "receipt.txt.j2"), 3)]
    assert "'nguoi_nop' is undefined (in the dossier receipt)" in problems[0].message


def test_the_daemon_refuses_to_start_on_a_failing_self_check(tmp_path: Path) -> None:
    """`vanthu run` with a configuration whose receipt cannot be composed exits 78 and lists
    the problem, before touching any server."""
    rules = _copy_rules(tmp_path)
    (rules / "templates").mkdir()
    (rules / "templates" / "receipt.html.j2").write_text("<p>{{ code }</p>\n", encoding="utf-8")
    path = _config(tmp_path, VALID.replace('"imap.example.gov.vn"', '"127.0.0.1"'), rules)

    done = subprocess.run([sys.executable, "-m", "daemon", "run", "--config", str(path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)

    assert done.returncode == EX_CONFIG
    assert f"{rules / 'templates' / 'receipt.html.j2'}:1: this template breaks" in done.stderr


def test_digest_recipients_must_reach_someone(tmp_path: Path) -> None:
    """A `[digest] to` entry that is no role, person, department or address is an error at
    the key; a department is resolved to its address."""
    text = VALID + '\n[digest]\nto = ["giam_doc", "khong_ai", "qlxd"]\n'
    path = _config(tmp_path, text)

    problems = [str(p) for p in selfcheck.check(path).problems]

    line = _line(text, "to = [")
    assert problems == [
        f"{path}:{line}: digest.to: 'khong_ai' is not a role (giam_doc, pho_giam_doc, "
        "chanh_van_phong, van_thu, truong_phong), nor a person or department of people.yaml, "
        "nor an address",
    ]


def test_a_file_saved_by_notepad_is_read_and_located(tmp_path: Path) -> None:
    """A config saved with a BOM and CRLF line ends loads, and its problems keep their lines."""
    text = VALID.replace('port = 587', 'port = "587"')
    path = tmp_path / "config.toml"
    path.write_bytes(b"\xef\xbb\xbf" + text.replace("RULES", str(ROOT / "rules"))
                     .replace("\n", "\r\n").encode("utf-8"))

    problems = [str(p) for p in config.examine(path).problems]

    assert problems == [f"{path}:{_line(text, 'port = ', after='[smtp]')}: smtp.port: "
                        "expected int, got str"]


def test_an_smtp_password_without_a_username_is_an_error(tmp_path: Path) -> None:
    """A password in [smtp] with no username would never be used (vanthu logs in only with
    both): an error at the password's line, not a key silently ignored."""
    text = VALID.replace('security = "starttls"\n', 'security = "starttls"\npassword = "z"\n')
    path = _config(tmp_path, text)

    problems = [str(p) for p in config.examine(path).problems]

    assert problems == [
        f"{path}:{_line(text, 'password = ', after='[smtp]')}: smtp.password: is given but no "
        "username: vanthu logs in to the SMTP server only with both (leave both out to send "
        "without a login)"]


def test_a_letter_the_slips_serif_face_lacks_is_named(tmp_path: Path) -> None:
    """'☯' is in DejaVu Sans (the registers) but not in DejaVu Serif (the receipt slip): the
    check covers every face vanthu prints with, so the slip never drops a letter silently."""
    text = VALID.replace('[agency]\n', '[agency]\nresult_place = "Bộ phận một cửa ☯"\n', 1)
    assert 'result_place = "Bộ phận một cửa ☯"' in text
    problems = [str(p) for p in selfcheck.check(_config(tmp_path, text)).problems]
    assert any("result_place" in p and "U+262F" in p for p in problems), problems
