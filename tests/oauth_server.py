"""A local OAuth2 authorization server for the tests: it plays Microsoft Entra (OpenID discovery
and the client-credentials grant, with a secret or a certificate's signed assertion) and Google
(the JWT-bearer grant of a service account, the refresh-token grant), on HTTPS with a throwaway
certificate, and answers Dovecot's token introspection on plain HTTP. It counts the tokens it
issues and can expire or revoke any of them. No outside service is involved.
"""

from __future__ import annotations

import json
import secrets
import shutil
import ssl
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.servers import free_port

MICROSOFT_SCOPE = "https://outlook.office365.com/.default"
GOOGLE_SCOPE = "https://mail.google.com/"


def rsa_pem() -> tuple[str, Any]:
    """A fresh RSA private key as PEM text, and its public key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    return pem, key.public_key()


@dataclass
class Issued:
    user: str
    expires_at: float
    revoked: bool = False


@dataclass
class Issuer:
    """The authorization server. `apps`: Microsoft client id -> (secret or None, mailbox the app
    may open); `certificates`: client id -> public key of its certificate; `service_accounts`:
    client email -> public key; `refresh_tokens`: refresh token -> (client id, secret, user)."""

    tenant: str = "contoso-test"
    lifetime: int = 3600
    apps: dict[str, tuple[str | None, str]] = field(default_factory=dict)
    certificates: dict[str, Any] = field(default_factory=dict)
    service_accounts: dict[str, Any] = field(default_factory=dict)
    refresh_tokens: dict[str, tuple[str, str, str]] = field(default_factory=dict)
    tokens: dict[str, Issued] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)  # grant types, in order
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="vanthu-oauth-"))
        self.cert = self.dir / "cert.pem"
        self.https_port = free_port()
        self.http_port = free_port()

    # --- what the tests look at and do ---------------------------------------------------

    @property
    def authority(self) -> str:
        return f"https://127.0.0.1:{self.https_port}/{self.tenant}"

    @property
    def google_token_url(self) -> str:
        return f"https://127.0.0.1:{self.https_port}/google/token"

    @property
    def introspection_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/introspect"

    def issued(self) -> int:
        with self.lock:
            return len(self.requests)

    def user_of(self, token: str) -> str | None:
        """The mailbox a token opens, None when it is unknown, expired or revoked."""
        with self.lock:
            found = self.tokens.get(token)
            if found is None or found.revoked or found.expires_at <= time.time():
                return None
            return found.user

    def expire_all(self) -> None:
        with self.lock:
            for issued in self.tokens.values():
                issued.expires_at = 0.0

    def revoke_all(self) -> None:
        with self.lock:
            for issued in self.tokens.values():
                issued.revoked = True

    def service_account_key(self, email: str) -> str:
        """A service account's JSON key whose token_uri is this server; the server knows it."""
        pem, public = rsa_pem()
        self.service_accounts[email] = public
        return json.dumps({"type": "service_account", "client_email": email,
                           "private_key": pem, "private_key_id": "k1",
                           "token_uri": self.google_token_url, "client_id": "1"})

    def app_certificate(self, client_id: str, mailbox: str) -> str:
        """A PEM with a private key and a self-signed certificate registered for an app."""
        key_file, cert_file = self.dir / f"{client_id}.key", self.dir / f"{client_id}.crt"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days",
                        "2", "-subj", f"/CN={client_id}", "-keyout", str(key_file), "-out",
                        str(cert_file)], check=True, capture_output=True)
        pem = key_file.read_text() + cert_file.read_text()
        from cryptography import x509

        cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
        self.certificates[client_id] = cert.public_key()
        self.apps[client_id] = (None, mailbox)
        return pem

    # --- the grants ----------------------------------------------------------------------

    def _issue(self, grant: str, user: str) -> dict[str, Any]:
        token = secrets.token_urlsafe(24)
        with self.lock:
            self.tokens[token] = Issued(user, time.time() + self.lifetime)
            self.requests.append(grant)
        return {"access_token": token, "token_type": "Bearer", "expires_in": self.lifetime}

    def grant(self, path: str, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        grant = form.get("grant_type", "")
        if path == f"/{self.tenant}/oauth2/v2.0/token" and grant == "client_credentials":
            return self._client_credentials(form)
        if path == "/google/token" and grant == "urn:ietf:params:oauth:grant-type:jwt-bearer":
            return self._jwt_bearer(form)
        if path == "/google/token" and grant == "refresh_token":
            known = self.refresh_tokens.get(form.get("refresh_token", ""))
            if known is None or known[:2] != (form.get("client_id"), form.get("client_secret")):
                return 400, {"error": "invalid_grant", "error_description": "Bad Request"}
            return 200, self._issue(grant, known[2])
        return 400, {"error": "unsupported_grant_type"}

    def _client_credentials(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        client = form.get("client_id", "")
        if client not in self.apps or form.get("scope") != MICROSOFT_SCOPE:
            return 400, {"error": "invalid_client", "error_description": "AADSTS700016"}
        secret, mailbox = self.apps[client]
        if secret is not None and form.get("client_secret") == secret:
            return 200, self._issue("client_credentials", mailbox)
        assertion = form.get("client_assertion")
        if secret is None and assertion and client in self.certificates:
            try:
                claims = jwt.decode(assertion, self.certificates[client],
                                    algorithms=["RS256", "PS256"],
                                    audience=self._token_endpoint())
            except jwt.PyJWTError:
                claims = {}
            if claims.get("iss") == client and claims.get("sub") == client:
                return 200, self._issue("client_credentials", mailbox)
        return 401, {"error": "invalid_client", "error_description": "AADSTS7000215"}

    def _jwt_bearer(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        assertion = form.get("assertion", "")
        try:
            email = jwt.decode(assertion, options={"verify_signature": False})["iss"]
            # google-auth always addresses the assertion to Google's endpoint.
            claims = jwt.decode(assertion, self.service_accounts[email], algorithms=["RS256"],
                                audience="https://oauth2.googleapis.com/token")
        except (jwt.PyJWTError, KeyError):
            return 400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}
        if claims.get("scope") != GOOGLE_SCOPE or not claims.get("sub"):
            return 400, {"error": "unauthorized_client"}
        return 200, self._issue("jwt-bearer", claims["sub"])

    def _token_endpoint(self) -> str:
        return f"{self.authority}/oauth2/v2.0/token"

    def discovery(self) -> dict[str, Any]:
        return {"issuer": f"{self.authority}/v2.0", "token_endpoint": self._token_endpoint(),
                "authorization_endpoint": f"{self.authority}/oauth2/v2.0/authorize"}

    # --- the servers ---------------------------------------------------------------------

    def start(self) -> Issuer:
        key = self.dir / "key.pem"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                        "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(self.cert),
                        "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                       check=True, capture_output=True)
        handler = _handler(self)
        self.https = ThreadingHTTPServer(("127.0.0.1", self.https_port), handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, key)
        self.https.socket = context.wrap_socket(self.https.socket, server_side=True)
        self.http = ThreadingHTTPServer(("127.0.0.1", self.http_port), handler)
        for server in (self.https, self.http):
            threading.Thread(target=server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        for server in (self.https, self.http):
            server.shutdown()
            server.server_close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Issuer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _handler(issuer: Issuer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def _answer(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path == f"/{issuer.tenant}/v2.0/.well-known/openid-configuration":
                self._answer(200, issuer.discovery())
            else:
                self._answer(404, {"error": "not_found"})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
            if self.path == "/introspect":  # Dovecot's question: is this token good, for whom?
                user = issuer.user_of(form.get("token", ""))
                self._answer(200, {"active": True, "username": user} if user
                             else {"active": False})
                return
            self._answer(*issuer.grant(self.path, form))

    return Handler


__all__ = ["GOOGLE_SCOPE", "MICROSOFT_SCOPE", "Issuer", "rsa_pem"]
