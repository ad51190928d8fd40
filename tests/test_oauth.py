"""OAuth2 logins on loopback: a local authorization server (tests/oauth_server.py) plays
Microsoft Entra and Google; Dovecot's oauth2 passdb asks that server (token introspection) who a
token belongs to; the test SMTP server checks XOAUTH2 against the same server. Real msal and
google-auth get the tokens; real imapclient and aiosmtplib log in with them."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
import json
import logging
import secrets
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from imapclient import IMAPClient
from imapclient.exceptions import LoginError

from daemon import config, oauth
from daemon.cli import main
from daemon.config import Config, MailboxConfig, OAuthConfig, Secret, SmtpConfig
from daemon.db import register_entries
from daemon.errors import ConfigError, MailboxAuthError, MailboxError
from daemon.intake import fetch
from daemon.models import OutboxState
from daemon.outbound.send import Sender, tls_context
from tests.conftest import CORPUS, RULES, Office, corpus_labels
from tests.oauth_server import Issuer, rsa_pem
from tests.servers import Dovecot, SmtpSink, free_port, local_config
from tests.test_send import _queue, _rows


@pytest.fixture(scope="module")
def issuer() -> Iterator[Issuer]:
    with Issuer() as server:
        yield server


@pytest.fixture(scope="module")
def imap(issuer: Issuer) -> Iterator[Dovecot]:
    with Dovecot(oauth2_introspection=issuer.introspection_url) as server:
        yield server


@pytest.fixture()
def sink(issuer: Issuer) -> Iterator[SmtpSink]:
    server = SmtpSink(oauth_user=issuer.user_of).start()
    yield server
    server.stop()


def app(issuer: Issuer, mailbox: str) -> OAuthConfig:
    """A Microsoft app with a secret, registered at the issuer for `mailbox` (its own id, so
    that each test has its own token source)."""
    client_id, secret = f"app-{secrets.token_hex(4)}", secrets.token_urlsafe(12)
    issuer.apps[client_id] = (secret, mailbox)
    return OAuthConfig(provider="microsoft", client_id=client_id, client_secret=Secret(secret),
                       authority=issuer.authority, ca_file=str(issuer.cert))


def box(imap: Dovecot, cfg: OAuthConfig, user: str = "vanthu") -> MailboxConfig:
    return MailboxConfig(name="hop-thu", host="127.0.0.1", port=imap.imaps_port,
                         security="tls", username=user, password=Secret(""),
                         ca_file=str(imap.cert), auth="oauth2", oauth=cfg, timeout_seconds=20)


def logs_in(mailbox: MailboxConfig) -> bool:
    with fetch.connect(mailbox) as client:
        return bool(client.select_folder("INBOX"))


def test_microsoft_secret_login_renews_after_a_refusal(issuer: Issuer, imap: Dovecot,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    cfg = app(issuer, "vanthu")
    before = issuer.issued()
    assert logs_in(box(imap, cfg))
    assert logs_in(box(imap, cfg))
    assert issuer.issued() == before + 1  # the token is kept between logins
    token = oauth.source(cfg, "vanthu").token()
    issuer.revoke_all()  # the server now says NO to it: renewed once, then accepted
    assert logs_in(box(imap, cfg))
    assert issuer.issued() == before + 2
    assert oauth.source(cfg, "vanthu").token() != token
    issuer.expire_all()  # expired at the server before our margin says so: the same
    assert logs_in(box(imap, cfg))
    assert issuer.issued() == before + 3
    # Every library logs at DEBUG here (msal, urllib3, imaplib): no token reaches the log.
    assert not [t for t in issuer.tokens if t in caplog.text]


def test_wrong_user_forged_and_refused_tokens(issuer: Issuer, imap: Dovecot) -> None:
    other = app(issuer, "truong.phong")  # an app allowed on another mailbox only
    with pytest.raises(MailboxAuthError, match="AUTHENTICATIONFAILED"):
        logs_in(box(imap, other, user="vanthu"))
    assert logs_in(box(imap, other, user="truong.phong"))
    # A token the issuer never gave, and an app whose secret is wrong.
    client = IMAPClient("127.0.0.1", port=imap.imaps_port,
                        ssl_context=tls_context(str(imap.cert), True), timeout=20)
    with pytest.raises(LoginError):
        client.oauthbearer_login("vanthu", secrets.token_urlsafe(24))
    with pytest.raises(LoginError):
        client.oauth2_login("vanthu", secrets.token_urlsafe(24))
    client.shutdown()
    wrong = dataclasses.replace(app(issuer, "vanthu"), client_secret=Secret("doan-sai"))
    with pytest.raises(MailboxAuthError, match="invalid_client") as refused:
        logs_in(box(imap, wrong))
    assert "doan-sai" not in str(refused.value)


def test_xoauth2_when_oauthbearer_is_not_offered(issuer: Issuer, imap: Dovecot) -> None:
    cfg = app(issuer, "vanthu")
    client = IMAPClient("127.0.0.1", port=imap.imaps_port,
                        ssl_context=tls_context(str(imap.cert), True), timeout=20)
    offered = client.capabilities()
    assert oauth.imap_mechanism(offered) == "OAUTHBEARER"
    client.capabilities = lambda: tuple(c for c in offered if c != b"AUTH=OAUTHBEARER")
    assert oauth.imap_login(client, "vanthu", cfg) == "XOAUTH2"
    client.logout()


def test_renewed_before_it_expires(issuer: Issuer) -> None:
    cfg = app(issuer, "vanthu")
    now = [1000.0]
    source = oauth.TokenSource(oauth._microsoft(cfg), clock=lambda: now[0])
    before = issuer.issued()
    first = source.token()
    now[0] += issuer.lifetime - oauth.RENEW_MARGIN_SECONDS - 1
    assert source.token() == first and issuer.issued() == before + 1
    now[0] += 2  # inside the margin: renewed although still valid
    assert source.token() != first and issuer.issued() == before + 2
    assert source.renew("not the current token") == source.token()  # another thread renewed
    assert issuer.issued() == before + 2


def test_microsoft_certificate(issuer: Issuer, imap: Dovecot) -> None:
    client_id = f"cert-{secrets.token_hex(4)}"
    pem = issuer.app_certificate(client_id, "vanthu")
    cfg = OAuthConfig(provider="microsoft", client_id=client_id,
                      client_certificate=Secret(pem), authority=issuer.authority,
                      ca_file=str(issuer.cert))
    assert logs_in(box(imap, cfg))
    impostor = issuer.app_certificate(f"other-{client_id}", "vanthu")  # another key, same id
    forged = dataclasses.replace(cfg, client_certificate=Secret(impostor))
    with pytest.raises(MailboxAuthError, match="invalid_client"):
        logs_in(box(imap, forged, user="vanthu"))


def test_google_service_account_and_refresh_token(issuer: Issuer, imap: Dovecot) -> None:
    key = issuer.service_account_key(f"vt-{secrets.token_hex(3)}@du-an.iam.gserviceaccount.com")
    cfg = OAuthConfig(provider="google", service_account=Secret(key), ca_file=str(issuer.cert))
    assert logs_in(box(imap, cfg, user="van.thu"))  # the token is for the mailbox it acts as
    unknown = OAuthConfig(provider="google", ca_file=str(issuer.cert), service_account=Secret(
        key.replace(key.split('"private_key": "')[1].split('"')[0],
                    rsa_pem()[0].replace("\n", "\\n"))))
    with pytest.raises(MailboxAuthError, match="Invalid JWT Signature"):
        logs_in(box(imap, unknown, user="van.thu"))

    refresh = secrets.token_urlsafe(16)
    issuer.refresh_tokens[refresh] = ("gclient", "gsecret", "vanthu")
    stored = OAuthConfig(provider="google", client_id="gclient", client_secret=Secret("gsecret"),
                         refresh_token=Secret(refresh), token_url=issuer.google_token_url,
                         ca_file=str(issuer.cert))
    assert logs_in(box(imap, stored))
    with pytest.raises(MailboxAuthError, match="AUTHENTICATIONFAILED"):
        logs_in(box(imap, stored, user="giam.doc"))  # a refresh token is one user's
    revoked = dataclasses.replace(stored, refresh_token=Secret("thu-hoi"))
    with pytest.raises(MailboxAuthError, match="invalid_grant"):
        logs_in(box(imap, revoked))


def test_token_endpoint_down_or_untrusted(issuer: Issuer, imap: Dovecot, tmp_path: Path) -> None:
    other_ca = tmp_path / "ca.pem"
    other_ca.write_text(Path(imap.cert).read_text())  # a CA that did not sign the issuer
    untrusted = dataclasses.replace(app(issuer, "vanthu"), ca_file=str(other_ca))
    with pytest.raises(MailboxError, match="CERTIFICATE_VERIFY_FAILED") as err:
        logs_in(box(imap, untrusted))
    assert not isinstance(err.value, MailboxAuthError)  # worth trying again: not a refusal


def smtp_cfg(sink: SmtpSink, cfg: OAuthConfig, user: str = "vanthu") -> SmtpConfig:
    return SmtpConfig(host="127.0.0.1", port=sink.port, username=user, auth="oauth2", oauth=cfg,
                      from_address="vanthu@x.gov.vn", timeout_seconds=20)


def test_smtp_xoauth2_sends_and_renews(issuer: Issuer, sink: SmtpSink, tmp_path: Path) -> None:
    cfg = app(issuer, "vanthu")
    engine = _queue(tmp_path, ["a@x.gov.vn"], ["b@x.gov.vn"])
    sender = Sender(engine, smtp_cfg(sink, cfg))
    assert asyncio.run(sender.drain(limit=1)) == 1
    issuer.revoke_all()
    assert asyncio.run(sender.drain()) == 1
    assert sink.logins == ["vanthu", "vanthu"] and len(sink.messages()) == 2
    assert [r.state for r in _rows(engine)] == [OutboxState.SENT, OutboxState.SENT]


def test_smtp_wrong_user_is_deferred(issuer: Issuer, sink: SmtpSink, tmp_path: Path) -> None:
    engine = _queue(tmp_path)
    sender = Sender(engine, smtp_cfg(sink, app(issuer, "truong.phong")))
    assert asyncio.run(sender.drain()) == 0
    row = _rows(engine)[0]
    assert row.state == OutboxState.PENDING and "535" in row.last_error
    assert sink.messages() == [] and sink.logins == []


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(user=st.sampled_from(["vanthu", "Vanthu", "vanthu ", "truong.phong", "văn.thư", ""]),
       token=st.one_of(st.text(min_size=1, max_size=80), st.just("")))
def test_forged_smtp_tokens_are_refused(issuer: Issuer, sink: SmtpSink, user: str,
                                        token: str) -> None:
    """Any token the issuer did not give (random text, empty, a Vietnamese name) for any user
    is refused by the test SMTP server, and nobody is logged in."""
    import aiosmtplib

    async def attempt() -> None:
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=sink.port, timeout=20)
        await client.connect()
        try:
            with pytest.raises(aiosmtplib.SMTPException):
                await client.auth_xoauth2(user, token)
        finally:
            client.close()

    asyncio.run(attempt())
    assert sink.logins == []


# --- vanthu check --connect -------------------------------------------------------------------


def connect_config(tmp_path: Path, imap: Dovecot, sink: SmtpSink, issuer: Issuer, *,
                   client_id: str, secret: str, user: str = "vanthu",
                   smtp_user: str = "vanthu", mailbox_extra: str = "",
                   password_box: bool = True) -> Path:
    """A config with an OAuth2 mailbox (its secret in a file), a password mailbox on the same
    Dovecot, and SMTP with OAuth2."""
    (tmp_path / "client-secret").write_text(secret + "\n")
    oauth_table = (f'provider = "microsoft"\nclient_id = "{client_id}"\n'
                   f'authority = "{issuer.authority}"\nca_file = "{issuer.cert}"\n'
                   f'client_secret_file = "{tmp_path / "client-secret"}"\n')
    text = local_config(tmp_path, imap, sink, user=user, password="UNUSED", rules_dir=RULES,
                        mailbox="Văn thư Sở", extra=f"\n[digest]\nto = []\n[intake]\n"
                                                    'start = "all"\n[smtp.oauth2]\n'
                                                    f"{oauth_table}")
    second = ('[[mailboxes]]\nname = "mat-khau"\n'
              f'host = "127.0.0.1"\nport = {imap.imaps_port}\n'
              f'ca_file = "{imap.cert}"\nusername = "vanthu"\npassword = "secret"\n'
              'idle = false\nafter = "move:Đã lưu"\n') if password_box else ""
    text = text.replace('password = "UNUSED"\n', f'auth = "oauth2"\n{mailbox_extra}'
                        f'[mailboxes.oauth2]\n{oauth_table}\n{second}')
    text = text.replace("[smtp]\n", f'[smtp]\nauth = "oauth2"\nusername = "{smtp_user}"\n')
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def run_check(path: Path, *more: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["check", "--config", str(path), "--connect", *more])
    return code, out.getvalue()


def test_check_connect_reports_what_each_server_offers(issuer: Issuer, imap: Dovecot,
                                                       sink: SmtpSink, tmp_path: Path) -> None:
    cfg = app(issuer, "vanthu")
    secret = cfg.client_secret.reveal() if cfg.client_secret else ""
    path = connect_config(tmp_path, imap, sink, issuer, client_id=cfg.client_id, secret=secret)
    code, text = run_check(path)
    assert code == 0, text
    assert 'ĐƯỢC Hộp thư "Văn thư Sở"' in text and "đăng nhập được bằng OAUTHBEARER" in text
    assert "IDLE có, MOVE có" in text and "XOAUTH2" in text
    assert "hỏi lại mỗi 60 giây" in text and "move:Đã lưu" in text  # the password mailbox
    assert "ĐƯỢC Máy chủ gửi thư (SMTP)" in text and secret not in text
    code, text = run_check(path, "--json")
    found = {p["name"]: p for p in json.loads(text)}
    assert code == 0 and set(found) == {"Văn thư Sở", "mat-khau", "smtp"}
    assert found["Văn thư Sở"]["uses"]["login"] == "OAUTHBEARER"
    assert found["Văn thư Sở"]["idle"] is True and found["Văn thư Sở"]["move"] is True
    assert {"XOAUTH2", "OAUTHBEARER", "PLAIN"} <= set(found["mat-khau"]["mechanisms"])
    assert found["mat-khau"]["uses"] == {"login": "LOGIN", "wait": "poll", "poll_seconds": 60.0,
                                         "after": "move:Đã lưu", "folders": ["INBOX"]}
    assert found["smtp"]["mechanisms"] == ["XOAUTH2"]
    assert found["smtp"]["uses"]["login"] == "XOAUTH2"


def test_check_connect_names_each_failure(issuer: Issuer, imap: Dovecot, sink: SmtpSink,
                                          tmp_path: Path) -> None:
    cfg = app(issuer, "truong.phong")  # the app may open another mailbox, not ours
    secret = cfg.client_secret.reveal() if cfg.client_secret else ""
    path = connect_config(tmp_path, imap, sink, issuer, client_id=cfg.client_id, secret=secret)
    code, text = run_check(path, "--json")
    found = {p["name"]: p for p in json.loads(text)}
    assert code == 1
    assert found["Văn thư Sở"]["error_kind"] == "login_refused"
    assert found["smtp"]["error_kind"] == "login_refused"
    assert found["mat-khau"]["ok"] is True

    wrong = connect_config(tmp_path, imap, sink, issuer, client_id=cfg.client_id,
                           secret="doan-sai")
    code, text = run_check(wrong)
    assert code == 1 and "không lấy được token OAuth2" in text and "doan-sai" not in text

    silent = socket.socket()  # accepts connections (the kernel's backlog), never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(4)
    nobody = free_port()
    with silent:
        for port, kind, extra in [
                (silent.getsockname()[1], "timeout", "timeout_seconds = 1\n"),
                (nobody, "unreachable", ""),
                (imap.imaps_port, "tls", f'ca_file = "{issuer.cert}"\n')]:
            text = connect_config(tmp_path, imap, sink, issuer, client_id=cfg.client_id,
                                  secret=secret, mailbox_extra=extra).read_text()
            first = text.index(f"port = {imap.imaps_port}")
            text = text[:first] + f"port = {port}" + text[first + len(f"port = {imap.imaps_port}"):]
            if kind == "tls":
                text = text.replace(f'ca_file = "{imap.cert}"\n', "", 1)
            path.write_text(text, encoding="utf-8")
            code, out = run_check(path, "--json")
            probe = json.loads(out)[0]
            assert code == 1 and probe["error_kind"] == kind, (kind, probe)


def test_the_daemon_fetches_and_sends_with_tokens(issuer: Issuer, sink: SmtpSink,
                                                   tmp_path: Path) -> None:
    """The real daemon on an OAuth2 mailbox and OAuth2 SMTP: a mail is stored, registered and
    its emails go out; a token revoked meanwhile is renewed without a lost mail."""
    with Dovecot({"hop.thu": "mat-khau-rieng"},
                 oauth2_introspection=issuer.introspection_url) as own:
        cfg = app(issuer, "hop.thu")
        secret = cfg.client_secret.reveal() if cfg.client_secret else ""
        issuer.apps[cfg.client_id] = (secret, "hop.thu")
        path = connect_config(tmp_path, own, sink, issuer, client_id=cfg.client_id,
                              secret=secret, user="hop.thu", smtp_user="hop.thu",
                              mailbox_extra="poll_seconds = 1\n", password_box=False)
        office = Office(own, sink, "hop.thu", "mat-khau-rieng", tmp_path, path)
        labels = [label for label in corpus_labels() if label["kind"] == "dossier"][:2]
        office.deliver((CORPUS / labels[0]["file"]).read_bytes())
        office.run_daemon(until=lambda: office.settled(1) and bool(sink.messages()))
        issuer.revoke_all()
        sent, issued = len(sink.messages()), issuer.issued()
        office.deliver((CORPUS / labels[1]["file"]).read_bytes())
        office.run_daemon(until=lambda: office.settled(2) and len(sink.messages()) > sent)
        assert issuer.issued() > issued  # the revoked token was renewed, not retried forever
    assert set(sink.logins) == {"hop.thu"}
    assert office.count(register_entries) == 2


# --- configuration ------------------------------------------------------------------------------

MAILBOX = ('[agency]\nname = "Sở Xây dựng tỉnh Tây Ninh"\ncode = "000.00.22.H56"\n'
           '[[mailboxes]]\nname = "Hộp thư Văn thư"\nhost = "outlook.office365.com"\n'
           'username = "vanthu@sxd.onmicrosoft.com"\n')


def load(tmp_path: Path, text: str) -> Config:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return config.load(path)


def test_oauth2_config_loads_with_secrets_from_every_source(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "key.json").write_text(json.dumps({
        "type": "service_account", "client_email": "vt@du-an.iam.gserviceaccount.com",
        "private_key": rsa_pem()[0], "token_uri": "https://oauth2.googleapis.com/token"}))
    monkeypatch.setenv("VANTHU_TEST_OAUTH_SECRET", "bí-mật")
    cfg = load(tmp_path, MAILBOX + 'auth = "oauth2"\n[mailboxes.oauth2]\nprovider = "microsoft"\n'
               'tenant = "sxd.onmicrosoft.com"\nclient_id = "abc"\n'
               'client_secret_env = "VANTHU_TEST_OAUTH_SECRET"\n'
               '[smtp]\nfrom = "vanthu@sxd.gov.vn"\nusername = "vanthu@sxd.gov.vn"\n'
               'auth = "oauth2"\n[smtp.oauth2]\n'
               'provider = "google"\nservice_account_file = "key.json"\n')
    box = cfg.mailboxes[0]
    assert box.auth == "oauth2" and box.oauth is not None
    assert box.oauth.tenant == "sxd.onmicrosoft.com"
    assert box.oauth.client_secret == Secret("bí-mật") and "bí-mật" not in repr(cfg)
    assert cfg.smtp.oauth is not None and cfg.smtp.oauth.service_account is not None
    assert "PRIVATE KEY" not in repr(cfg)
    plain = load(tmp_path, MAILBOX + 'password = "x"\n[smtp]\nfrom = "vanthu@sxd.gov.vn"\n')
    assert plain.mailboxes[0].oauth is None and plain.mailboxes[0].auth == "password"


@pytest.mark.parametrize(("tail", "message"), [
    ('auth = "OAuth2"\npassword = "x"\n', "auth: must be one of password, oauth2"),
    ('auth = "oauth2"\n', "oauth2 needs an oauth2 table"),
    ('auth = "oauth2"\npassword = "x"\n[mailboxes.oauth2]\nprovider = "microsoft"\n'
     'tenant = "t"\nclient_id = "c"\nclient_secret = "s"\n', "remove the password"),
    ('password = "x"\n[mailboxes.oauth2]\nprovider = "google"\n', 'auth is not "oauth2"'),
    ('auth = "oauth2"\n[mailboxes.oauth2]\nprovider = "yahoo"\n', "must be one of microsoft"),
    ('auth = "oauth2"\n[mailboxes.oauth2]\nprovider = "microsoft"\nclient_id = "c"\n'
     'client_secret = "s"\n', "tenant: missing"),
    ('auth = "oauth2"\n[mailboxes.oauth2]\nprovider = "microsoft"\ntenant = "t"\n'
     'client_id = "c"\n', "give client_secret or client_certificate"),
    ('auth = "oauth2"\n[mailboxes.oauth2]\nprovider = "microsoft"\ntenant = "t"\n'
     'client_id = "c"\nclient_secret = "s"\nclient_secret_file = "f"\n', "not several"),
    ('auth = "oauth2"\n[mailboxes.oauth2]\nprovider = "microsoft"\ntenant = "t"\n'
     'client_id = "c"\nclient_secret = "s"\nrefresh_token = "r"\n', "refresh_token: is not used"),
    ('auth = "oauth2"\n[mailboxes.oauth2]\nprovider = "microsoft"\ntenant = "t"\n'
     'client_id = "c"\nclient_secret = "s"\nauthority = "http://login.example/t"\n',
     "must be an https:// URL"),
    ('auth = "oauth2"\n[mailboxes.oauth2]\nprovider = "google"\nrefresh_token = "r"\n',
     "refresh_token needs client_id and client_secret"),
    ('auth = "oauth2"\n[mailboxes.oauth2]\nprovider = "google"\nservice_account = "{}"\n',
     "is not a service account key"),
    ('auth = "oauth2"\n[mailboxes.oauth2]\nprovider = "google"\nservice_account = "khóa"\n',
     "is not a JSON key file"),
    ('auth = "oauth2"\n[mailboxes.oauth2]\nprovider = "google"\n'
     'service_account_env = "VANTHU_SURELY_UNSET"\n', "VANTHU_SURELY_UNSET is not set"),
    ('auth = "oauth2"\n[mailboxes.oauth2]\nprovider = "google"\nservice_account = "{}"\n'
     'timeout_seconds = -1\n', "timeout_seconds"),
    ('auth = "oauth2"\n[mailboxes.oauth2]\nprovider = "google"\nrefresh_token = "r"\n'
     'client_id = "c"\nclient_secret = "s"\nscopes = "x"\n', "scopes: unknown key"),
])
def test_careless_oauth2_values_are_one_clear_line(tmp_path: Path, tail: str,
                                                   message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load(tmp_path, MAILBOX + tail)
    assert message in str(err.value) and "config.toml:" in str(err.value)


def test_smtp_oauth2_needs_the_mailbox_it_sends_as(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"smtp\.auth: oauth2 needs username"):
        load(tmp_path, MAILBOX + 'password = "x"\n[smtp]\nauth = "oauth2"\n[smtp.oauth2]\n'
             'provider = "microsoft"\ntenant = "t"\nclient_id = "c"\nclient_secret = "s"\n')
