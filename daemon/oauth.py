"""OAuth2 access tokens for mailboxes and the SMTP server (`auth = "oauth2"`).

Microsoft 365: the client-credentials flow of an app registered in Entra (msal), with a client
secret or a certificate; the token's scope is Exchange Online's, for IMAP and SMTP alike.
Google: a service account with domain-wide delegation acting as the mailbox, or a stored
refresh token (google-auth). Tokens are kept per login and renewed a few minutes before they
expire, and once more when the server refuses one (revoked, or the clocks disagree). Logins go
through the mail libraries' own SASL support: imapclient's OAUTHBEARER (when the server offers
it) or XOAUTH2, aiosmtplib's XOAUTH2. Token values never reach a log or an error message.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from daemon.config import OAuthConfig
from daemon.errors import TransientError

if TYPE_CHECKING:
    import aiosmtplib
    from imapclient import IMAPClient

log = logging.getLogger("vanthu.oauth")

MICROSOFT_SCOPE = "https://outlook.office365.com/.default"
GOOGLE_SCOPE = "https://mail.google.com/"
MICROSOFT_AUTHORITY = "https://login.microsoftonline.com/"
# A token is renewed this long before it expires (at most half its lifetime), so that a login,
# a long IDLE or an SMTP transaction never starts with a token about to lapse.
RENEW_MARGIN_SECONDS = 300.0


class TokenError(TransientError):
    """No token could be obtained. `refused`: the provider said no (wrong client, secret,
    grant or consent), as opposed to a network trouble worth trying again soon."""

    def __init__(self, message: str, *, refused: bool) -> None:
        super().__init__(message)
        self.refused = refused


@dataclass(frozen=True)
class Token:
    value: str
    lifetime: float  # seconds from when it was obtained

    def __repr__(self) -> str:
        return f"Token('***', lifetime={self.lifetime})"


Fetch = Callable[[], Token]


class TokenSource:
    """One login's token, obtained on first use, kept until RENEW_MARGIN_SECONDS (or half its
    lifetime) before it expires, renewed once per refusal. Thread-safe: the folder watchers of
    one mailbox share it."""

    def __init__(self, fetch: Fetch, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._fetch = fetch
        self._clock = clock
        self._lock = threading.Lock()
        self._value: str | None = None
        self._renew_at = 0.0

    def token(self) -> str:
        with self._lock:
            if self._value is None or self._clock() >= self._renew_at:
                self._obtain()
            assert self._value is not None
            return self._value

    def renew(self, refused: str) -> str:
        """A new token after the server refused `refused` (unless another thread already
        replaced it)."""
        with self._lock:
            if self._value is None or self._value == refused:
                self._obtain()
            assert self._value is not None
            return self._value

    def _obtain(self) -> None:
        started = self._clock()
        token = self._fetch()
        margin = min(RENEW_MARGIN_SECONDS, token.lifetime / 2)
        self._value, self._renew_at = token.value, started + token.lifetime - margin
        log.info("oauth.token", extra={"expires_in": round(token.lifetime)})


# ---------------------------------------------------------------------------------------------
# Providers.


def _http(cfg: OAuthConfig) -> Any:
    """A requests session for the token endpoint: every request bounded by the configured
    timeout, and `ca_file` honoured even when REQUESTS_CA_BUNDLE is set (requests would let
    the environment win over a session's own `verify`). Proxies still come from the
    environment (HTTPS_PROXY)."""
    import requests

    class Session(requests.Session):
        def request(self, method: Any, url: Any, *args: Any, **kwargs: Any) -> Any:
            kwargs["timeout"] = cfg.timeout_seconds
            return super().request(method, url, *args, **kwargs)

        def merge_environment_settings(self, *args: Any, **kwargs: Any) -> Any:
            settings = super().merge_environment_settings(*args, **kwargs)
            if cfg.ca_file:
                settings["verify"] = cfg.ca_file
            return settings

    return Session()


def _microsoft(cfg: OAuthConfig) -> Fetch:
    import msal
    import requests

    authority = cfg.authority or MICROSOFT_AUTHORITY + cfg.tenant
    credential: str | dict[str, str]
    if cfg.client_certificate is not None:
        credential = _certificate(cfg.client_certificate.reveal())
    else:
        credential = cfg.client_secret.reveal() if cfg.client_secret else ""
    scope = cfg.scope or MICROSOFT_SCOPE
    apps: list[Any] = []  # made on first use: making one asks the authority (network)

    def fetch() -> Token:
        try:
            if not apps:
                apps.append(msal.ConfidentialClientApplication(
                    cfg.client_id, client_credential=credential, authority=authority,
                    http_client=_http(cfg),
                    instance_discovery=authority.startswith(MICROSOFT_AUTHORITY),
                    token_cache=msal.TokenCache()))
            app = apps[0]
            # TokenSource keeps the token: msal's own cache would hand back a refused one.
            for entry in list(app.token_cache.search(
                    msal.TokenCache.CredentialType.ACCESS_TOKEN)):
                app.token_cache.remove_at(entry)
            result = app.acquire_token_for_client([scope])
        except requests.RequestException as err:
            raise TokenError(f"token endpoint of {authority}: {_reason(err)}",
                             refused=False) from err
        except ValueError as err:  # msal: the authority answered but is not one
            raise TokenError(f"authority {authority}: {_first_line(str(err))}",
                             refused=True) from err
        return _result(result, authority)

    return fetch


def _certificate(pem: str) -> dict[str, str]:
    """msal's certificate credential from one PEM holding the private key and the certificate
    registered with the app (msal derives the SHA-256 thumbprint from the certificate)."""
    key = re.search(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.+?-----END [A-Z ]*PRIVATE KEY-----",
                    pem, re.S)
    cert = re.search(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", pem, re.S)
    if not key or not cert:
        raise TokenError("client_certificate must hold the private key and the certificate "
                         "(PEM)", refused=True)
    return {"private_key": key.group(0), "public_certificate": cert.group(0)}


def _result(result: dict[str, Any], where: str) -> Token:
    if "access_token" not in result:
        error = result.get("error", "no access_token")
        described = _first_line(str(result.get("error_description", "")))
        raise TokenError(f"{where} refused the token request: {error} {described}".strip(),
                         refused=True)
    return Token(str(result["access_token"]), float(result.get("expires_in", 3600)))


def _google(cfg: OAuthConfig, username: str) -> Fetch:
    import google.auth.exceptions
    from google.auth.transport.requests import Request
    from google.oauth2 import credentials, service_account

    scopes = [cfg.scope or GOOGLE_SCOPE]
    creds: Any
    if cfg.service_account is not None:
        creds = service_account.Credentials.from_service_account_info(  # type: ignore[no-untyped-call]
            json.loads(cfg.service_account.reveal()), scopes=scopes, subject=username)
    else:
        creds = credentials.Credentials(  # type: ignore[no-untyped-call]
            None, refresh_token=cfg.refresh_token.reveal() if cfg.refresh_token else None,
            client_id=cfg.client_id,
            client_secret=cfg.client_secret.reveal() if cfg.client_secret else None,
            token_uri=cfg.token_url, scopes=scopes)
    request = Request(_http(cfg))

    def fetch() -> Token:
        try:
            creds.refresh(request)
        except google.auth.exceptions.RefreshError as err:
            raise TokenError(f"Google refused the token request: "
                             f"{_first_line(str(err.args[0]))}",
                             refused=not getattr(err, "retryable", False)) from err
        except google.auth.exceptions.TransportError as err:
            raise TokenError(f"Google token endpoint: {_reason(err)}", refused=False) from err
        left = creds.expiry.timestamp() - time.time() if creds.expiry else 3600.0
        return Token(str(creds.token), max(left, 0.0))

    return fetch


def _reason(err: BaseException) -> str:
    """Why a request failed, in a few words: TLS verification, a timeout, no connection."""
    text = str(err)
    for words in ("CERTIFICATE_VERIFY_FAILED", "timed out", "Connection refused",
                  "Name or service not known"):
        if words.lower() in text.lower():
            return f"{type(err).__name__} ({words})"
    return type(err).__name__


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0][:200] if text.strip() else ""


# ---------------------------------------------------------------------------------------------
# One source per login, for the life of the process.

_sources: dict[tuple[OAuthConfig, str], TokenSource] = {}
_sources_lock = threading.Lock()


def source(cfg: OAuthConfig, username: str) -> TokenSource:
    """The token source of `username` logging in with `cfg` (shared by every caller)."""
    with _sources_lock:
        key = (cfg, username)
        if key not in _sources:
            fetch = _microsoft(cfg) if cfg.provider == "microsoft" else _google(cfg, username)
            _sources[key] = TokenSource(fetch)
        return _sources[key]


# ---------------------------------------------------------------------------------------------
# Logins.


def imap_mechanism(capabilities: Iterable[bytes | str]) -> str:
    """OAUTHBEARER (RFC 7628) when the server offers it, else XOAUTH2."""
    offered = {c.decode() if isinstance(c, bytes) else c for c in capabilities}
    return "OAUTHBEARER" if "AUTH=OAUTHBEARER" in {c.upper() for c in offered} else "XOAUTH2"


def imap_login(client: IMAPClient, username: str, cfg: OAuthConfig) -> str:
    """Log `client` in as `username` with a token; renewed and tried once more when refused.
    Returns the mechanism used. Raises imapclient's LoginError or TokenError."""
    from imapclient.exceptions import LoginError

    tokens = source(cfg, username)
    mechanism = imap_mechanism(client.capabilities())

    def attempt(token: str) -> None:
        if mechanism == "OAUTHBEARER":
            client.oauthbearer_login(username, token)
        else:
            client.oauth2_login(username, token)

    token = tokens.token()
    try:
        attempt(token)
    except LoginError:
        log.info("oauth.refused", extra={"user": username, "mechanism": mechanism})
        attempt(tokens.renew(token))
    return mechanism


async def smtp_login(client: aiosmtplib.SMTP, username: str, cfg: OAuthConfig) -> None:
    """XOAUTH2 (aiosmtplib's own) as `username`; renewed and tried once more when refused."""
    import aiosmtplib

    if client.is_ehlo_or_helo_needed:  # the AUTH mechanisms come with the EHLO answer
        await client.ehlo()
    if "xoauth2" not in client.server_auth_methods:
        raise aiosmtplib.SMTPException("the server does not offer AUTH XOAUTH2")
    tokens = source(cfg, username)
    token = await asyncio.to_thread(tokens.token)
    try:
        await client.auth_xoauth2(username, token)
    except aiosmtplib.SMTPAuthenticationError:
        log.info("oauth.refused", extra={"user": username, "mechanism": "XOAUTH2"})
        await client.auth_xoauth2(username, await asyncio.to_thread(tokens.renew, token))


__all__ = ["GOOGLE_SCOPE", "MICROSOFT_SCOPE", "Token", "TokenError", "TokenSource",
           "imap_login", "imap_mechanism", "smtp_login", "source"]
