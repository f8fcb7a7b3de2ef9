"""`outreach auth login / logout`: the sign-in a coordinator does once, and forgets.

* microsoft and custom (with a device_authorization_url): the device flow (RFC 8628). The
  coordinator opens the verification address on any device, types the code, signs in; we
  poll the token endpoint at the server's interval meanwhile.
* google (and custom with only an authorization_url): the installed-app flow (RFC 8252)
  with PKCE (RFC 7636) and a redirect to a loopback address on a random port. On a
  computer without a browser the address is opened elsewhere, and the address the browser
  was sent to (which fails to load there) is pasted back here.

The tokens go to the token file only; nothing here prints or logs them.
(Issue 18 moves this module to engine/ or cli/.)
"""

from __future__ import annotations

import hmac
import queue
import threading
import time
from collections.abc import Callable
from datetime import datetime
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from outreach.core.errors import InputError, OutreachError
from outreach.core.oauth2 import (
    Flow,
    OAuth2Settings,
    PollStep,
    TokenSet,
    poll_interval,
    poll_step,
    slower,
)
from outreach.engine.credentials import oauth2_client, wall_clock
from outreach.store.token_file import Entry, TokenFile
from outreach.transport.oauth2_client import (
    OAuth2Client,
    OAuth2Refused,
    OAuth2Unavailable,
    new_code_verifier,
    new_state,
)

Echo = Callable[[str], None]
BROWSER_TIMEOUT = 600.0  # seconds to wait for the redirect or a pasted address


class SignInFailed(OutreachError):
    """The sign-in did not complete (declined, expired, refused): exit 1."""


def sign_in(
    settings: OAuth2Settings,
    tokens: TokenFile,
    echo: Echo,
    *,
    open_browser: Callable[[str], Any] | None = None,
    read_line: Callable[[], str] | None = None,
    clock: Callable[[], datetime] = wall_clock,
    sleep: Callable[[float], None] = time.sleep,
    timeout: float = BROWSER_TIMEOUT,
) -> TokenSet:
    """Run the account's flow and store its tokens (replacing any earlier sign-in)."""
    if settings.flow is Flow.COMMAND:
        raise InputError(
            f"accounts.{settings.account}: gets its tokens from token_cmd; there is nothing "
            "to sign in"
        )
    client = oauth2_client(settings)
    try:
        if settings.flow is Flow.DEVICE:
            fresh = device_flow(client, echo, clock, sleep)
        else:
            fresh = browser_flow(client, echo, open_browser, read_line, clock, timeout)
    except OAuth2Unavailable as exc:
        raise SignInFailed(str(exc)) from None
    now = clock()
    with tokens.locked():
        tokens.save(
            settings.account,
            Entry(
                identity=settings.identity(),
                tokens=fresh,
                signed_in_at=now.isoformat(timespec="seconds"),
            ),
        )
    return fresh


def device_flow(
    client: OAuth2Client,
    echo: Echo,
    clock: Callable[[], datetime],
    sleep: Callable[[float], None],
) -> TokenSet:
    """RFC 8628: show the code, then poll until the person has approved it."""
    code = client.start_device()
    echo(
        f"To sign in accounts.{client.settings.account}, open this address in a browser "
        f"(on any computer or phone):\n\n    {code.verification_uri}\n\nand enter the code:"
        f"\n\n    {code.user_code}\n"
    )
    if code.verification_uri_complete:
        echo(f"(or open {code.verification_uri_complete}, which has the code in it)\n")
    echo(f"Sign in as {client.settings.account}'s mailbox user. Waiting for you to finish...")
    interval = poll_interval(code.interval)
    deadline = time.monotonic() + code.expires_in
    while True:
        sleep(interval)
        if time.monotonic() > deadline:
            raise SignInFailed(
                f"{client.where}: the code {code.user_code} expired before it was used",
                hint="run `outreach auth login` again and enter the new code sooner",
            )
        try:
            return client.poll_device(code, clock())
        except OAuth2Refused as exc:
            step = poll_step(exc.error)
            if step is PollStep.WAIT:
                continue
            if step is PollStep.SLOW_DOWN:
                interval = slower(interval)
                continue
            if step is PollStep.DENIED:
                raise SignInFailed(f"{client.where}: the sign-in was declined") from None
            if step is PollStep.EXPIRED:
                raise SignInFailed(
                    f"{client.where}: the code {code.user_code} expired before it was used",
                    hint="run `outreach auth login` again",
                ) from None
            raise SignInFailed(str(exc)) from None


# ----------------------------------------------------------------------------- browser flow


class LoopbackListener:
    """Waits on 127.0.0.1, on a port the system picks, for the browser to come back with
    the authorization code (RFC 8252 7.3). Only the first answer that carries a code or an
    error counts; it is handed over with `put`."""

    def __init__(self, put: Callable[[str], None]) -> None:
        done = threading.Event()

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass  # the request line carries the code

            def do_GET(self) -> None:  # noqa: N802
                query = parse_qs(urlsplit(self.path).query)
                answered = "code" in query or "error" in query
                if answered and not done.is_set():
                    done.set()
                    address: Any = self.server.server_address
                    port = int(address[1])
                    put(f"http://127.0.0.1:{port}{self.path}")
                page = (
                    b"<!doctype html><title>outreach</title><p>Done: you can close this "
                    b"window and go back to outreach.</p>"
                    if answered
                    else b"<!doctype html><p>Waiting for the sign-in.</p>"
                )
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)

        self.httpd = HTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(
            target=self.httpd.serve_forever,
            args=(0.05,),
            daemon=True,
            name="outreach-signin-redirect",
        )

    @property
    def redirect_uri(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/"

    def __enter__(self) -> LoopbackListener:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def browser_flow(
    client: OAuth2Client,
    echo: Echo,
    open_browser: Callable[[str], Any] | None,
    read_line: Callable[[], str] | None,
    clock: Callable[[], datetime],
    timeout: float,
) -> TokenSet:
    """Installed-app flow with PKCE; the redirect comes to the loopback listener, or the
    person pastes the address the browser was sent to."""
    answers: queue.Queue[str] = queue.Queue()
    state, verifier = new_state(), new_code_verifier()
    with LoopbackListener(answers.put) as listener:
        url = client.authorization_url(listener.redirect_uri, state, verifier)
        echo(
            f"To sign in accounts.{client.settings.account}, open this address in a browser "
            f"and sign in as the account's mailbox user:\n\n    {url}\n"
        )
        echo(
            "On a computer without a browser: open it on another one, sign in, and paste "
            f"here the address that browser is sent to at the end (it starts with "
            f"{listener.redirect_uri} and will not load there), then press Enter."
        )
        if open_browser is not None:
            open_browser(url)
        if read_line is not None:
            threading.Thread(
                target=_pasted,
                args=(read_line, answers.put),
                daemon=True,
                name="outreach-signin-paste",
            ).start()
        try:
            redirected = answers.get(timeout=timeout)
        except queue.Empty:
            raise SignInFailed(
                f"{client.where}: no sign-in within {timeout / 60:g} minutes",
                hint="run `outreach auth login` again",
            ) from None
    query = {k: v[-1] for k, v in parse_qs(urlsplit(redirected).query).items()}
    if not hmac.compare_digest(query.get("state", ""), state):
        raise SignInFailed(
            f"{client.where}: the address is not the answer to this sign-in (its state differs)",
            hint="run `outreach auth login` again",
        )
    if "error" in query:
        raise SignInFailed(
            str(OAuth2Refused(client.where, query["error"], query.get("error_description", "")))
        )
    try:
        return client.exchange_code(redirected, state, listener.redirect_uri, verifier, clock())
    except OAuth2Refused as exc:
        raise SignInFailed(str(exc)) from None


def _pasted(read_line: Callable[[], str], put: Callable[[str], None]) -> None:
    """Lines typed or pasted: the first that looks like the redirected address counts."""
    while True:
        try:
            line = read_line()
        except (EOFError, OSError, ValueError):
            return
        if not line:
            return  # end of input: the redirect may still come to the listener
        line = line.strip()
        if line.startswith(("http://", "https://")) and ("code=" in line or "error=" in line):
            put(line)
            return


# ----------------------------------------------------------------------------- logout


def sign_out(settings: OAuth2Settings, tokens: TokenFile, echo: Echo) -> bool:
    """Forget the account's tokens and, where the provider has an endpoint for it, revoke
    its refresh token (RFC 7009). True when there was a sign-in to forget."""
    with tokens.locked():
        entry = tokens.load(settings.account)
        known = tokens.remove(settings.account)
    stored = entry.tokens if entry is not None else None
    if stored is None or settings.flow is Flow.COMMAND or settings.endpoints is None:
        return known
    client = oauth2_client(settings)
    try:
        revoked = client.revoke(
            stored.refresh_token or stored.access_token,
            "refresh_token" if stored.refresh_token else "access_token",
        )
    except (OAuth2Refused, OAuth2Unavailable) as exc:
        echo(f"warning: the tokens are forgotten here, but {exc}; they expire on their own")
        return known
    if not revoked:
        echo(
            f"note: {settings.provider_name} has no revocation endpoint for this kind of app: "
            "the sign-in can also be ended in the account's security settings"
        )
    return known
