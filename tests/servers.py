"""Real mail servers on loopback for `vanthu demo` and the tests: a throwaway Dovecot
(Debian's dovecot-imapd) and an aiosmtpd SMTP server that keeps what it receives.

Nothing here is used by `vanthu run`.
"""

from __future__ import annotations

import base64
import functools
import grp
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Protocol

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as SMTPServer
from aiosmtpd.smtp import AuthResult

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
DOVEADM = shutil.which("doveadm") or "/usr/bin/doveadm"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def dovecot_available() -> bool:
    return os.path.exists(DOVECOT)


@functools.cache
def dovecot_version() -> tuple[int, int]:
    """The installed Dovecot's major and minor version, e.g. (2, 3) on Debian 12 and (2, 4) on
    Debian 13, whose configuration format differs; (2, 3) when it cannot be told."""
    try:
        out = subprocess.run([DOVECOT, "--version"], capture_output=True, text=True,
                             timeout=30).stdout
        major, minor = out.split(".")[:2]
        return int(major), int(minor)
    except (OSError, ValueError, subprocess.SubprocessError):
        return (2, 3)


def wait_listening(port: int, process: subprocess.Popen[bytes], what: str,
                   seconds: float = 60.0) -> None:
    """Wait until `process` (a server just started) accepts connections on loopback `port`:
    generous, as a loaded machine starts a server slowly. RuntimeError with its error output
    when it exits first, or never listens."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError as err:
            try:
                # Between two looks at the port, wait for the one event that ends the wait
                # early: the server's exit.
                process.wait(timeout=0.02)
            except subprocess.TimeoutExpired:
                continue
            raise RuntimeError(f"{what} exited: " + (
                process.stderr.read().decode() if process.stderr else "")) from err
    raise RuntimeError(f"{what} did not start listening")


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """Terminate a server, killed when it does not end within ten seconds."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class Dovecot:
    """A private Dovecot instance in a temporary directory, on 127.0.0.1."""

    def __init__(self, users: dict[str, str] | None = None, *,
                 oauth2_introspection: str | None = None) -> None:
        # With an introspection URL, XOAUTH2 and OAUTHBEARER logins are also accepted: Dovecot
        # asks that endpoint whether the token is active and for which user.
        self.oauth2_introspection = oauth2_introspection
        self.dir = Path(tempfile.mkdtemp(prefix="vanthu-dovecot-"))
        self.dir.chmod(0o755)  # Dovecot's unprivileged users must be able to enter it
        self.users = dict(users or {"vanthu": "secret"})
        self.imap_port = free_port()
        self.imaps_port = free_port()
        self.conf = self.dir / "dovecot.conf"
        self.cert = self.dir / "cert.pem"
        self.process: subprocess.Popen[bytes] | None = None
        if os.geteuid() == 0:
            self.user = "dovecot"
        else:
            self.user = pwd.getpwuid(os.geteuid()).pw_name

    def _write_config(self) -> None:
        key = self.dir / "key.pem"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(self.cert),
             "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
            check=True, capture_output=True)
        (self.dir / "mail").mkdir()
        self._write_passwd()
        entry = pwd.getpwnam(self.user)
        root = os.geteuid() == 0
        login_users = "" if root else (
            f"default_login_user = {self.user}\ndefault_internal_user = {self.user}\n"
            "login_trusted_networks = 127.0.0.1\n")
        if dovecot_version() >= (2, 4):
            # Dovecot 2.4's listeners have no address of their own: `listen` above is used.
            settings, address = self._settings_24(key, entry, login_users), ""
        else:
            settings = self._settings_23(key, entry, login_users)
            address = "    address = 127.0.0.1\n"
        self.conf.write_text(settings + self._services(root, address))
        shutil.chown(self.dir / "mail", entry.pw_uid, entry.pw_gid)

    def _settings_23(self, key: Path, entry: pwd.struct_passwd, login_users: str) -> str:
        """The settings of Dovecot 2.3 (Debian 12), before the services."""
        return f"""
instance_name = vanthu-{self.imap_port}
protocols = imap
listen = 127.0.0.1
base_dir = {self.dir}/run
state_dir = {self.dir}/state
log_path = {self.dir}/dovecot.log
info_log_path = {self.dir}/dovecot.log
ssl = yes
ssl_cert = <{self.cert}
ssl_key = <{key}
disable_plaintext_auth = no
auth_mechanisms = plain login{" xoauth2 oauthbearer" if self.oauth2_introspection else ""}
first_valid_uid = 1
mail_location = maildir:{self.dir}/mail/%u
{login_users}
{self._oauth2_passdb()}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {self.dir}/passwd
}}
userdb {{
  driver = static
  args = uid={entry.pw_uid} gid={entry.pw_gid} home={self.dir}/mail/%u
}}
"""

    def _settings_24(self, key: Path, entry: pwd.struct_passwd, login_users: str) -> str:
        """The same settings in Dovecot 2.4's format (Debian 13): new names, named passdb and
        userdb blocks, %{user} for %u, and OAuth2 settings of their own instead of a passdb."""
        return f"""
dovecot_config_version = 2.4.0
dovecot_storage_version = 2.4.0
instance_name = vanthu-{self.imap_port}
protocols = imap
listen = 127.0.0.1
base_dir = {self.dir}/run
state_dir = {self.dir}/state
log_path = {self.dir}/dovecot.log
info_log_path = {self.dir}/dovecot.log
ssl = yes
ssl_server_cert_file = {self.cert}
ssl_server_key_file = {key}
auth_allow_cleartext = yes
auth_mechanisms = plain login{" xoauth2 oauthbearer" if self.oauth2_introspection else ""}
first_valid_uid = 1
mail_driver = maildir
mail_path = {self.dir}/mail/%{{user}}
{login_users}{self._internal_group_24(entry) if login_users else ''}
{self._oauth2_settings_24()}
passdb passwd-file {{
  passwd_file_path = {self.dir}/passwd
  passdb_default_password_scheme = PLAIN
}}
userdb static {{
  fields {{
    uid = {entry.pw_uid}
    gid = {entry.pw_gid}
    home = {self.dir}/mail/%{{user}}
  }}
}}
"""

    @staticmethod
    def _internal_group_24(entry: pwd.struct_passwd) -> str:
        # Not root: Dovecot 2.4 gives its internal sockets to this group (2.3 did not chown them).
        return f"default_internal_group = {grp.getgrgid(entry.pw_gid).gr_name}\n"

    def _services(self, root: bool, address: str) -> str:
        return f"""service imap-login {{
  inet_listener imap {{
{address}    port = {self.imap_port}
  }}
  inet_listener imaps {{
{address}    port = {self.imaps_port}
    ssl = yes
  }}
  {"chroot =" if not root else ""}
}}
service anvil {{
  {"chroot =" if not root else ""}
  {self._no_penalty()}
}}
protocol imap {{
  mail_max_userip_connections = 100
}}
"""

    def _oauth2_settings_24(self) -> str:
        if not self.oauth2_introspection:
            return ""
        # Dovecot 2.4's XOAUTH2 and OAUTHBEARER mechanisms ask the endpoint themselves.
        return f"""auth_failure_delay = 0
oauth2 {{
  introspection_mode = post
  introspection_url = {self.oauth2_introspection}
  force_introspection = yes
  username_attribute = username
  active_attribute = active
  active_value = true
}}"""

    def _oauth2_passdb(self) -> str:
        if not self.oauth2_introspection:
            return ""
        # A refused token is answered at once (Dovecot waits 2 s, then longer for each failure
        # from the same address: _no_penalty turns that off too): tests try many.
        (self.dir / "oauth2.conf").write_text(f"""
introspection_mode = post
introspection_url = {self.oauth2_introspection}
force_introspection = yes
username_attribute = username
active_attribute = active
active_value = true
""")
        return f"""auth_failure_delay = 0
passdb {{
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = {self.dir}/oauth2.conf
}}"""

    def _no_penalty(self) -> str:
        return ("unix_listener anvil-auth-penalty {\n    mode = 0\n  }"
                if self.oauth2_introspection else "")

    def add_user(self, user: str, password: str) -> None:
        """Add a mail user while running: Dovecot reads the passwd-file at each login."""
        self.users[user] = password
        self._write_passwd()

    def _write_passwd(self) -> None:
        lines = [f"{user}:{{PLAIN}}{password}::::::" for user, password in self.users.items()]
        (self.dir / "passwd").write_text("\n".join(lines) + "\n")

    def start(self) -> Dovecot:
        self._write_config()
        self.process = subprocess.Popen([DOVECOT, "-F", "-c", str(self.conf)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_listening(self.imap_port, self.process, "dovecot")
        return self

    def stop(self) -> None:
        if self.process:
            stop_process(self.process)
        if self.process and self.process.stderr:
            self.process.stderr.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def doveadm(self, *args: str) -> str:
        result = subprocess.run([DOVEADM, "-c", str(self.conf), *args], check=True,
                                capture_output=True, text=True)
        return result.stdout

    def kick(self, user: str) -> None:
        """Drop every session of `user`, as a server restart would."""
        self.doveadm("kick", user)

    def set_uidvalidity(self, user: str, folder: str, value: int) -> None:
        self.doveadm("mailbox", "update", "--uid-validity", str(value), "-u", user, folder)

    def __enter__(self) -> Dovecot:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes

    @property
    def message(self) -> EmailMessage:
        parsed = message_from_bytes(self.data, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


@dataclass
class SmtpSink:
    """A real SMTP server (aiosmtpd) on loopback that keeps every message it accepts.

    `reply` lets a test make it answer RCPT with an error, e.g. "450 try later".
    `oauth_user`, when given, makes it offer AUTH XOAUTH2 and take mail only after a login
    (aiosmtpd's own auth_required would refuse plain text on loopback): it names the
    mailbox a bearer token opens (None for a token it refuses).
    """

    port: int = field(default_factory=free_port)
    received: list[Received] = field(default_factory=list)
    reply: str | None = None
    save_dir: Path | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    oauth_user: Callable[[str], str | None] | None = None
    logins: list[str] = field(default_factory=list)  # users who logged in, in order

    async def auth_XOAUTH2(self, server: SMTPServer, args: list[str]) -> AuthResult:
        """RFC-less but common XOAUTH2: base64 of 'user=U^Aauth=Bearer T^A^A'; a refusal sends
        a JSON error as a 334 challenge, then 535 once the client answers it."""
        if self.oauth_user is None:
            return AuthResult(success=False)
        if len(args) > 1:
            try:
                raw: object = base64.b64decode(args[1], validate=True)
            except ValueError:
                return AuthResult(success=False, message="501 5.5.2 Can't decode base64")
        else:
            raw = await server.challenge_auth("")
        if not isinstance(raw, bytes):  # the client gave up ('*'): already answered
            return AuthResult(success=False, handled=True)
        fields = dict(part.split("=", 1) for part in raw.decode("utf-8", "replace").split("\x01")
                      if "=" in part)
        user, bearer = fields.get("user", ""), fields.get("auth", "")
        token = bearer[len("Bearer "):] if bearer.startswith("Bearer ") else ""
        if token and self.oauth_user(token) == user:
            with self.lock:
                self.logins.append(user)
            return AuthResult(success=True, auth_data=user)
        answer = await server.challenge_auth(b'{"status":"401","schemes":"bearer"}')
        return AuthResult(success=False, handled=not isinstance(answer, bytes))

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          options: Any) -> str:
        if self.reply:
            return self.reply
        if self.oauth_user is not None and not session.authenticated:
            return "530 5.7.0 Authentication required"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        item = Received(envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.content))
        with self.lock:
            self.received.append(item)
            if self.save_dir is not None:
                self.save_dir.mkdir(parents=True, exist_ok=True)
                name = f"{len(self.received):04d}.eml"
                (self.save_dir / name).write_bytes(item.data)
        return "250 Message accepted"

    def start(self) -> SmtpSink:
        oauth: dict[str, Any] = {} if self.oauth_user is None else {
            "auth_require_tls": False,
            "authenticator": lambda *args: AuthResult(success=False),
            "auth_exclude_mechanism": ["LOGIN", "PLAIN"]}
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port,
                                     server_hostname="sink.localhost", ready_timeout=10,
                                     decode_data=False, **oauth)
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    def messages(self) -> list[Received]:
        with self.lock:
            return list(self.received)


class Listening(Protocol):
    """An SMTP server on loopback, as a configuration needs it: its port."""

    port: int


def local_config(directory: Path, dovecot: Dovecot, sink: Listening, *, user: str,
                 password: str, rules_dir: Path, mailbox: str = "agency",
                 mailbox_extra: str = "", extra: str = "") -> str:
    """A config.toml for an agency served by these local servers (IMAPS with the throwaway
    certificate, plain SMTP on loopback), as the demo and the tests use it."""
    return f"""
[agency]
name = "Sở Xây dựng tỉnh Tây Ninh"
code = "000.00.22.H56"
timezone = "Asia/Ho_Chi_Minh"
addresses = ["vanthu.sxd@tayninh.gov.vn"]
message_id_domain = "sxd.tayninh.gov.vn"

[storage]
data_dir = "{directory / 'data'}"

[[mailboxes]]
name = "{mailbox}"
host = "127.0.0.1"
port = {dovecot.imaps_port}
security = "tls"
ca_file = "{dovecot.cert}"
username = "{user}"
password = "{password}"
{mailbox_extra}
[smtp]
host = "127.0.0.1"
port = {sink.port}
security = "none"
from = "vanthu.sxd@tayninh.gov.vn"

[rules]
dir = "{rules_dir}"

[security]
authserv_id = "mx1.tayninh.gov.vn"
{extra}
"""


__all__ = ["Dovecot", "Received", "SMTPServer", "SmtpSink", "dovecot_available", "free_port",
           "local_config", "stop_process", "wait_listening"]
