"""A small OAuth2 authorization server on 127.0.0.1, for tests and demos: the outside world
that Microsoft's and Google's sign-in servers are for a real district (like localservers
is for its mail servers). Never used by the product itself.

It speaks what outreach and Dovecot use, with short token lifetimes when asked:

* device authorization (RFC 8628): ``.../devicecode`` (Microsoft's path) or
  ``.../device_authorization``; a person approves at ``/device`` (a form; ``approve()``
  from a test does the same);
* the token endpoint ``.../token``: device_code (authorization_pending, slow_down,
  access_denied, expired_token), authorization_code with PKCE S256 (RFC 7636), and
  refresh_token with rotation (the old refresh token stops working, RFC 6819 5.2.2.3);
* authorization ``.../authorize`` or ``.../auth`` (Google's path): the person "signed in
  to the browser" (``browser_user``) consents at once and is redirected back, as after a
  click on Allow; only loopback redirect URIs (RFC 8252 7.3);
* introspection ``.../introspect`` (RFC 7662; Dovecot's oauth2 passdb asks it, with
  introspection_mode = post, for {"active": true, "email": ...});
* revocation ``.../revoke`` (RFC 7009): a refresh token takes its whole grant with it.

Any path prefix works (``/{tenant}/oauth2/v2.0/token``, ``/o/oauth2/v2/auth``), so the
microsoft and google presets can point here (config.oauth2_endpoints.TEST_ORIGIN_ENV).
Tokens are random strings known only to this server; every one issued is kept in
``issued`` so tests can look for them in outputs. Request lines are never logged (codes
travel in URLs).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import json
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
LOOPBACK = ("127.0.0.1", "localhost", "[::1]", "::1")


@dataclass
class Grant:
    """One sign-in: the tokens issued from it share its fate (revocation)."""

    email: str
    client_id: str
    scope: str
    revoked: bool = False


@dataclass
class _Token:
    grant: Grant
    expires_at: float | None
    active: bool = True

    def usable(self, now: float) -> bool:
        return (
            self.active
            and not self.grant.revoked
            and (self.expires_at is None or now < self.expires_at)
        )


@dataclass
class _Device:
    user_code: str
    client_id: str
    scope: str
    expires_at: float
    interval: float
    email: str | None = None
    denied: bool = False
    used: bool = False
    last_poll: float = 0.0


@dataclass
class _Code:
    client_id: str
    redirect_uri: str
    challenge: str
    scope: str
    email: str
    expires_at: float


@dataclass
class Issued:
    access: list[str] = field(default_factory=list)
    refresh: list[str] = field(default_factory=list)

    def all(self) -> list[str]:
        return self.access + self.refresh


class LocalOAuth2Server:
    """Usage::

    with LocalOAuth2Server(access_lifetime=3) as server:
        server.url                       # http://127.0.0.1:PORT
        server.introspection_url         # for Dovecot
        server.approve(user_code, "coordinator@example.test")
    """

    def __init__(
        self,
        *,
        access_lifetime: float = 3600.0,
        refresh_lifetime: float | None = None,
        rotate_refresh: bool = True,
        interval: int = 1,
        device_lifetime: float = 600.0,
        clients: dict[str, str | None] | None = None,
        browser_user: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.access_lifetime = access_lifetime
        self.refresh_lifetime = refresh_lifetime
        self.rotate_refresh = rotate_refresh
        self.interval = interval
        self.device_lifetime = device_lifetime
        self.clients = clients  # client_id -> secret (None: public); None: any client
        self.browser_user = browser_user
        self.deny_consent = False
        self.enforce_interval = True  # slow_down for a poll sooner than the interval
        self.clock = clock
        self.issued = Issued()
        self.requests: list[tuple[str, str]] = []  # (endpoint, grant_type or "")
        self.device_errors: list[str] = []  # one-shot answers to the next device polls
        self._lock = threading.RLock()
        self._access: dict[str, _Token] = {}
        self._refresh: dict[str, _Token] = {}
        self._devices: dict[str, _Device] = {}
        self._codes: dict[str, _Code] = {}
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> LocalOAuth2Server:
        if self._httpd is not None:
            return self
        owner = self

        class Handler(_Handler):
            server_owner = owner

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            args=(0.05,),
            name="outreach-oauth2-server",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        self._httpd = None
        self._thread = None

    def __enter__(self) -> LocalOAuth2Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._httpd is not None, "not started"
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def introspection_url(self) -> str:
        return f"{self.url}/introspect"

    def custom_endpoints(self) -> dict[str, str]:
        """The keys of a provider = "custom" [oauth2] table for this server."""
        return {
            "device_authorization_url": f"{self.url}/device_authorization",
            "token_url": f"{self.url}/token",
            "authorization_url": f"{self.url}/authorize",
            "revocation_url": f"{self.url}/revoke",
        }

    # ------------------------------------------------------------------ a person's actions

    def pending_user_codes(self) -> list[str]:
        with self._lock:
            return [
                d.user_code
                for d in self._devices.values()
                if d.email is None and not d.denied and not d.used
            ]

    def wait_for_user_code(self, timeout: float = 10.0) -> str:
        """The newest user code waiting for a person (what the CLI printed)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            codes = self.pending_user_codes()
            if codes:
                return codes[-1]
            time.sleep(0.02)
        raise TimeoutError("no device code was requested")

    def approve(self, user_code: str, email: str) -> None:
        """The person signs in as `email` and approves the device (what /device does)."""
        self._decide(user_code, email=email)

    def deny(self, user_code: str) -> None:
        self._decide(user_code, deny=True)

    def _decide(self, user_code: str, email: str | None = None, deny: bool = False) -> bool:
        with self._lock:
            for device in self._devices.values():
                if device.user_code == user_code.strip().upper() and not device.used:
                    device.email, device.denied = email, deny
                    return True
        return False

    def revoke_user(self, email: str) -> int:
        """Revoke every grant of `email` (an admin's "revoke sessions", a password change)."""
        count = 0
        with self._lock:
            for token in [*self._access.values(), *self._refresh.values()]:
                if token.grant.email == email and not token.grant.revoked:
                    token.grant.revoked = True
                    count += 1
        return count

    def expire_access_tokens(self) -> None:
        """Every access token stops working now, although its client thinks it is valid."""
        with self._lock:
            for token in self._access.values():
                token.active = False

    def introspect(self, token: str) -> dict[str, Any]:
        with self._lock:
            found = self._access.get(token)
            if found is None or not found.usable(self.clock()):
                return {"active": False}
            grant = found.grant
            return {
                "active": True,
                "email": grant.email,
                "username": grant.email,
                "client_id": grant.client_id,
                "scope": grant.scope,
                "token_type": "Bearer",
                "exp": int(found.expires_at) if found.expires_at else None,
            }

    def introspect_user(self, token: str) -> str | None:
        """The user a valid access token belongs to (what a mail server checks), else None."""
        found = self.introspect(token)
        return str(found["email"]) if found.get("active") else None

    def issue(
        self, email: str, client_id: str = "token-cmd", scope: str = "mail"
    ) -> dict[str, Any]:
        """Tokens for `email` without a sign-in flow (what a token_cmd helper would get)."""
        with self._lock:
            return self._issue(Grant(email, client_id, scope))

    def refresh_count(self) -> int:
        return sum(1 for _, kind in self.requests if kind == "refresh_token")

    # ------------------------------------------------------------------ endpoints

    def _issue(self, grant: Grant) -> dict[str, Any]:
        now = self.clock()
        access, refresh = "at-" + secrets.token_urlsafe(24), "rt-" + secrets.token_urlsafe(24)
        access_expiry = now + self.access_lifetime
        refresh_expiry = now + self.refresh_lifetime if self.refresh_lifetime else None
        self._access[access] = _Token(grant, access_expiry)
        self._refresh[refresh] = _Token(grant, refresh_expiry)
        self.issued.access.append(access)
        self.issued.refresh.append(refresh)
        return {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": self.access_lifetime,
            "refresh_token": refresh,
            "scope": grant.scope,
        }

    def _client_ok(self, form: dict[str, str]) -> bool:
        if self.clients is None:
            return bool(form.get("client_id"))
        client_id = form.get("client_id", "")
        if client_id not in self.clients:
            return False
        secret = self.clients[client_id]
        return secret is None or hmac.compare_digest(form.get("client_secret", ""), secret)

    def device_authorization(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if not self._client_ok(form):
            return 401, {"error": "invalid_client"}
        device_code = secrets.token_urlsafe(24)
        user_code = "".join(secrets.choice("BCDFGHJKLMNPQRSTVWXZ") for _ in range(8))
        with self._lock:
            self._devices[device_code] = _Device(
                user_code=user_code,
                client_id=form["client_id"],
                scope=form.get("scope", ""),
                expires_at=self.clock() + self.device_lifetime,
                interval=self.interval,
            )
        return 200, {
            "device_code": device_code,
            "user_code": user_code,
            "verification_uri": f"{self.url}/device",
            "verification_uri_complete": f"{self.url}/device?user_code={user_code}",
            "expires_in": int(self.device_lifetime),
            "interval": self.interval,
        }

    def token(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        grant_type = form.get("grant_type", "")
        with self._lock:
            self.requests.append(("token", grant_type))
            if not self._client_ok(form):
                return 401, {"error": "invalid_client"}
            if grant_type == DEVICE_GRANT:
                return self._device_token(form)
            if grant_type == "authorization_code":
                return self._code_token(form)
            if grant_type == "refresh_token":
                return self._refresh_token(form)
            return 400, {"error": "unsupported_grant_type"}

    def _device_token(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        device = self._devices.get(form.get("device_code", ""))
        if device is None or device.used or device.client_id != form["client_id"]:
            return 400, {"error": "invalid_grant"}
        now = self.clock()
        if self.device_errors:
            error = self.device_errors.pop(0)
            if error == "slow_down":
                device.interval += 5
            device.last_poll = now
            return 400, {"error": error}
        if now >= device.expires_at:
            return 400, {"error": "expired_token"}
        if device.denied:
            device.used = True
            return 400, {"error": "access_denied"}
        too_soon = self.enforce_interval and now - device.last_poll < device.interval * 0.9
        device.last_poll = now
        if too_soon:  # RFC 8628 3.5: and the client adds 5 seconds from now on
            device.interval += 5
            return 400, {"error": "slow_down"}
        if device.email is None:
            return 400, {"error": "authorization_pending"}
        device.used = True
        return 200, self._issue(Grant(device.email, device.client_id, device.scope))

    def _code_token(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        code = self._codes.pop(form.get("code", ""), None)
        if code is None or self.clock() >= code.expires_at:
            return 400, {"error": "invalid_grant", "error_description": "unknown code"}
        if code.client_id != form["client_id"] or code.redirect_uri != form.get("redirect_uri"):
            return 400, {"error": "invalid_grant", "error_description": "redirect_uri"}
        verifier = form.get("code_verifier", "")
        digest = hashlib.sha256(verifier.encode()).digest()
        expected = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
        if not verifier or not hmac.compare_digest(expected, code.challenge):
            return 400, {"error": "invalid_grant", "error_description": "PKCE verification"}
        return 200, self._issue(Grant(code.email, code.client_id, code.scope))

    def _refresh_token(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        token = self._refresh.get(form.get("refresh_token", ""))
        if token is None or not token.usable(self.clock()):
            return 400, {
                "error": "invalid_grant",
                "error_description": "the refresh token was revoked or expired",
            }
        if token.grant.client_id != form["client_id"]:
            return 400, {"error": "invalid_grant"}
        answer = self._issue(token.grant)
        if self.rotate_refresh:
            token.active = False
        else:
            del answer["refresh_token"]
        return 200, answer

    def authorize(self, query: dict[str, str]) -> tuple[int, str]:
        """The consent page: the browser's user agrees at once; a 302 back to the app."""
        redirect = query.get("redirect_uri", "")
        target = urlsplit(redirect)
        if target.scheme != "http" or target.hostname not in LOOPBACK:
            return 400, "redirect_uri must be a loopback address (RFC 8252 7.3)"
        if query.get("response_type") != "code" or query.get("code_challenge_method") != "S256":
            return 400, "response_type=code with PKCE S256 only"
        state = query.get("state", "")
        if self.deny_consent:
            return 302, _with_query(redirect, {"error": "access_denied", "state": state})
        email = self.browser_user or query.get("login_hint")
        if not email or not query.get("client_id") or not query.get("code_challenge"):
            return 400, "nobody is signed in to this browser"
        code = secrets.token_urlsafe(24)
        with self._lock:
            self.requests.append(("authorize", ""))
            self._codes[code] = _Code(
                client_id=query["client_id"],
                redirect_uri=redirect,
                challenge=query["code_challenge"],
                scope=query.get("scope", ""),
                email=email,
                expires_at=self.clock() + 600,
            )
        return 302, _with_query(redirect, {"code": code, "state": state})

    def revoke(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        value = form.get("token", "")
        with self._lock:
            self.requests.append(("revoke", ""))
            found = self._refresh.get(value) or self._access.get(value)
            if found is not None:
                if value in self._refresh:
                    found.grant.revoked = True  # the whole grant (RFC 7009 2.1)
                found.active = False
        return 200, {}

    def device_page(self, form: dict[str, str]) -> tuple[int, str]:
        code, email = form.get("user_code", ""), form.get("email", "")
        if code and email and self._decide(code, email=email, deny=form.get("deny") == "1"):
            return 200, "<p>Done: you can close this window.</p>"
        value = html.escape(code)
        return 200, (
            "<form method=post>Code: <input name=user_code value='" + value + "'> "
            "Email: <input name=email> <button>Allow</button></form>"
        )


def _with_query(url: str, params: dict[str, str]) -> str:
    joiner = "&" if urlsplit(url).query else "?"
    return url + joiner + urlencode(params)


class _Handler(BaseHTTPRequestHandler):
    server_owner: LocalOAuth2Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass  # request lines carry authorization codes: never printed

    def _form(self) -> dict[str, str]:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode("utf-8", "replace") if length else ""
        form = {k: v[-1] for k, v in parse_qs(body, keep_blank_values=True).items()}
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Basic "):  # client_secret_basic
            try:
                user, _, secret = base64.b64decode(auth[6:]).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                user, secret = "", ""
            form.setdefault("client_id", user)
            form.setdefault("client_secret", secret)
        return form

    def _send(
        self, status: int, body: str, kind: str, headers: tuple[tuple[str, str], ...] = ()
    ) -> None:
        data = body.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _json(self, status: int, data: dict[str, Any]) -> None:
        self._send(status, json.dumps(data), "application/json")

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        owner = self.server_owner
        path = urlsplit(self.path).path.rstrip("/")
        form = self._form()
        last = path.rsplit("/", 1)[-1]
        if last in ("devicecode", "device_authorization"):
            self._json(*owner.device_authorization(form))
        elif last == "token":
            self._json(*owner.token(form))
        elif last == "introspect":
            self._json(200, owner.introspect(form.get("token", "")))
        elif last == "revoke":
            self._json(*owner.revoke(form))
        elif last == "device":
            status, page = owner.device_page(form)
            self._send(status, page, "text/html; charset=utf-8")
        else:
            self._json(404, {"error": "not_found"})

    def do_GET(self) -> None:  # noqa: N802
        owner = self.server_owner
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        last = parts.path.rstrip("/").rsplit("/", 1)[-1]
        if last in ("authorize", "auth"):
            status, target = owner.authorize(query)
            if status == 302:
                self._send(302, "", "text/plain", (("Location", target),))
            else:
                self._send(status, target, "text/plain; charset=utf-8")
        elif last == "device":
            status, page = owner.device_page(query)
            self._send(status, page, "text/html; charset=utf-8")
        else:
            self._json(404, {"error": "not_found"})


# --------------------------------------------------------------------------- SMTP side

_XOAUTH2 = re.compile(rb"user=([^\x01]*)\x01auth=[Bb]earer ([^\x01]+)\x01\x01")
_OAUTHBEARER = re.compile(
    rb"n,(?:a=([^,]*))?,\x01(?:[a-z]+=[^\x01]*\x01)*?auth=[Bb]earer "
    rb"([^\x01]+)\x01(?:[a-z]+=[^\x01]*\x01)*\x01"
)


async def smtp_bearer_auth(
    server: Any,
    args: list[str],
    mechanism: str,
    check: Callable[[str], str | None],
    record: Callable[[tuple[str, str, bool, bytes]], None],
) -> Any:
    """AUTH XOAUTH2 / OAUTHBEARER for aiosmtpd (a handler's auth_* hook), as Dovecot and the
    big providers do it: a token whose owner is the user logs in; a refused one gets the
    JSON error challenge (RFC 7628 3.2.2), then 535 whatever the client answers. `check`
    maps a token to its user (None: not valid); `record` gets (mechanism, user, ok, the
    client's answer to the error challenge)."""
    from aiosmtpd.smtp import MISSING, AuthResult

    if len(args) == 2:
        try:
            blob = base64.b64decode(args[1], validate=True)
        except ValueError:
            await server.push("501 5.5.2 Can't decode base64")
            return AuthResult(success=False, handled=True)
    else:
        answer = await server.challenge_auth("")
        if answer is MISSING:
            return AuthResult(success=False, handled=True)
        blob = answer
    found = (_XOAUTH2 if mechanism == "XOAUTH2" else _OAUTHBEARER).fullmatch(blob)
    user = (
        found.group(1).replace(b"=2C", b",").replace(b"=3D", b"=").decode("utf-8", "replace")
        if found and found.group(1)
        else ""
    )
    token = found.group(2).decode("ascii", "replace") if found else ""
    if found and user and check(token) == user:
        record((mechanism, user, True, b""))
        return AuthResult(success=True, auth_data=user)
    error = json.dumps({"status": "401", "schemes": "bearer", "scope": "mail"})
    reply = await server.challenge_auth(error)
    record((mechanism, user, False, reply if isinstance(reply, bytes) else b"*"))
    if reply is MISSING:
        return AuthResult(success=False, handled=True)
    return AuthResult(
        success=False, handled=False, message="535 5.7.8 Authentication credentials invalid"
    )
