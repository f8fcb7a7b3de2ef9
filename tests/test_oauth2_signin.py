"""Signing in with OAuth2 against a real local authorization server
(outreach.testing.oauth2_server): the device flow, the installed-app flow with PKCE and a
loopback redirect (followed with plain HTTP, no browser), the token file (0600, atomic,
locked), and `outreach auth`."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
from helpers import REPO, invoke
from workspace import Workspace

from outreach.config import load_config
from outreach.config.oauth2_endpoints import TEST_ORIGIN_ENV
from outreach.core.errors import SignInNeeded
from outreach.core.oauth2 import TokenSet
from outreach.engine.credentials import Logins, OAuth2Login
from outreach.engine.signin import SignInFailed, sign_in
from outreach.store.token_file import Entry, TokenFile, token_file_path
from outreach.testing.oauth2_server import LocalOAuth2Server

USER = "coordinator@district.test"


def oauth2_table(server: LocalOAuth2Server, device: bool = True, **extra: str) -> str:
    """An inline [accounts.default.oauth2] for a custom provider on the local server."""
    urls = server.custom_endpoints()
    if not device:
        del urls["device_authorization_url"]
    fields = {"provider": "custom", "client_id": "outreach-test", **urls, **extra}
    inner = ", ".join(f'{k} = "{v}"' for k, v in fields.items())
    return f'oauth2 = {{ {inner}, scopes = ["mail.imap", "mail.smtp"] }}'


def oauth_workspace(
    root: Path,
    server: LocalOAuth2Server,
    smtp_port: int = 2525,
    device: bool = True,
    sasl: str = "",
) -> Workspace:
    extra = f', username = "{USER}", auth = "oauth2"' + (f', sasl = "{sasl}"' if sasl else "")
    return Workspace(
        root, smtp_port=smtp_port, smtp_extra=extra, account_extra=oauth2_table(server, device)
    )


def approve_when_asked(server: LocalOAuth2Server, email: str = USER) -> threading.Thread:
    """A person at a browser: opens the verification page and approves the code shown."""

    def act() -> None:
        code = server.wait_for_user_code()
        page = requests.post(
            f"{server.url}/device", data={"user_code": code, "email": email}, timeout=10
        )
        assert "Done" in page.text

    thread = threading.Thread(target=act, daemon=True)
    thread.start()
    return thread


def signed_in(ws: Workspace, server: LocalOAuth2Server) -> None:
    config = ws.config
    settings = config.accounts["default"].oauth2
    assert settings is not None
    approver = approve_when_asked(server)
    sign_in(settings, TokenFile(token_file_path(config.database)), lambda text: None)
    approver.join(5)


# --------------------------------------------------------------------------- device flow


def test_device_flow_shows_the_code_polls_and_stores_the_tokens(
    tmp_path: Path, oauth2_server: LocalOAuth2Server
) -> None:
    ws = oauth_workspace(tmp_path, oauth2_server)
    settings = ws.config.accounts["default"].oauth2
    assert settings is not None
    shown: list[str] = []
    approver = approve_when_asked(oauth2_server)
    tokens = TokenFile(token_file_path(ws.config.database))
    fresh = sign_in(settings, tokens, shown.append)
    approver.join(5)
    said = "\n".join(shown)
    assert f"{oauth2_server.url}/device" in said
    stored = tokens.load("default")
    assert stored is not None and stored.tokens is not None and stored.signed_in
    assert stored.tokens.access_token == fresh.access_token == oauth2_server.issued.access[-1]
    assert oauth2_server.introspect_user(fresh.access_token) == USER
    for token in oauth2_server.issued.all():
        assert token not in said  # the person sees the code, never a token
    ws.close()


def test_device_flow_honours_pending_and_slow_down(
    tmp_path: Path, oauth2_server: LocalOAuth2Server
) -> None:
    ws = oauth_workspace(tmp_path, oauth2_server)
    settings = ws.config.accounts["default"].oauth2
    assert settings is not None
    oauth2_server.device_errors = ["authorization_pending", "slow_down", "authorization_pending"]
    oauth2_server.enforce_interval = False  # these sleeps take no time
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 4:  # the person approves while the fourth wait runs
            oauth2_server.approve(oauth2_server.wait_for_user_code(), USER)

    sign_in(settings, TokenFile(token_file_path(ws.config.database)), lambda t: None, sleep=sleep)
    assert waits == [1.0, 1.0, 6.0, 6.0]  # RFC 8628 3.5: +5 s after slow_down, for good
    ws.close()


@pytest.mark.parametrize(
    ("error", "words"), [("access_denied", "declined"), ("expired_token", "expired")]
)
def test_device_flow_stops_when_declined_or_expired(
    tmp_path: Path, oauth2_server: LocalOAuth2Server, error: str, words: str
) -> None:
    ws = oauth_workspace(tmp_path, oauth2_server)
    settings = ws.config.accounts["default"].oauth2
    assert settings is not None
    oauth2_server.device_errors = [error]
    oauth2_server.enforce_interval = False
    tokens = TokenFile(token_file_path(ws.config.database))
    with pytest.raises(SignInFailed, match=words):
        sign_in(settings, tokens, lambda t: None, sleep=lambda s: None)
    assert tokens.load("default") is None
    ws.close()


def test_microsoft_preset_against_the_local_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, oauth2_server: LocalOAuth2Server
) -> None:
    monkeypatch.setenv(TEST_ORIGIN_ENV, oauth2_server.url)
    ws = Workspace(
        tmp_path,
        smtp_port=2525,
        smtp_extra=f', username = "{USER}", auth = "oauth2"',
        account_extra='oauth2 = { provider = "microsoft", client_id = "ms-app", '
        'tenant = "district.example" }',
    )
    settings = ws.config.accounts["default"].oauth2
    assert settings is not None
    assert settings.endpoints is not None
    assert settings.endpoints.device_authorization_url == (
        f"{oauth2_server.url}/district.example/oauth2/v2.0/devicecode"
    )
    approver = approve_when_asked(oauth2_server)
    sign_in(settings, TokenFile(token_file_path(ws.config.database)), lambda t: None)
    approver.join(5)
    (device,) = oauth2_server._devices.values()
    assert device.scope.split() == [
        "https://outlook.office.com/IMAP.AccessAsUser.All",
        "https://outlook.office.com/SMTP.Send",
        "offline_access",
    ]
    assert device.client_id == "ms-app"
    ws.close()


# --------------------------------------------------------------------------- browser flow


def google_workspace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: LocalOAuth2Server
) -> Workspace:
    monkeypatch.setenv(TEST_ORIGIN_ENV, server.url)
    monkeypatch.setenv("TEST_GOOGLE_SECRET", "not-so-secret")
    server.clients = {"g-desktop": "not-so-secret"}
    server.browser_user = USER
    return Workspace(
        tmp_path,
        smtp_port=2525,
        smtp_extra=f', username = "{USER}", auth = "oauth2"',
        account_extra='oauth2 = { provider = "google", client_id = "g-desktop", '
        'client_secret_env = "TEST_GOOGLE_SECRET" }',
    )


def test_google_loopback_redirect_followed_with_plain_http(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, oauth2_server: LocalOAuth2Server
) -> None:
    ws = google_workspace(tmp_path, monkeypatch, oauth2_server)
    settings = ws.config.accounts["default"].oauth2
    assert settings is not None
    opened: list[str] = []

    def browser(url: str) -> None:  # no browser: plain HTTP that follows the redirect
        opened.append(url)
        page = requests.get(url, timeout=10)
        assert "you can close this window" in page.text

    fresh = sign_in(
        settings,
        TokenFile(token_file_path(ws.config.database)),
        lambda t: None,
        open_browser=browser,
    )
    (url,) = opened
    assert url.startswith(f"{oauth2_server.url}/o/oauth2/v2/auth?")
    for part in (
        "code_challenge_method=S256",
        "access_type=offline",
        "prompt=consent",
        "scope=https%3A%2F%2Fmail.google.com%2F",
        "redirect_uri=http%3A%2F%2F127.0.0.1",
    ):
        assert part in url
    assert oauth2_server.introspect_user(fresh.access_token) == USER
    ws.close()


def test_google_without_a_browser_takes_the_pasted_address(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, oauth2_server: LocalOAuth2Server
) -> None:
    ws = google_workspace(tmp_path, monkeypatch, oauth2_server)
    settings = ws.config.accounts["default"].oauth2
    assert settings is not None
    redirected: list[str] = []
    ready = threading.Event()

    def elsewhere(url: str) -> None:  # the other computer's browser: it ends on an address
        answer = requests.get(url, allow_redirects=False, timeout=10)
        redirected.append(answer.headers["Location"])
        ready.set()

    def paste() -> str:
        ready.wait(10)
        return "  " + redirected[0] + "\n"

    tokens = TokenFile(token_file_path(ws.config.database))
    sign_in(settings, tokens, lambda t: None, open_browser=elsewhere, read_line=paste)
    stored = tokens.load("default")
    assert stored is not None and stored.signed_in
    ws.close()


def test_a_pasted_address_from_another_sign_in_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, oauth2_server: LocalOAuth2Server
) -> None:
    ws = google_workspace(tmp_path, monkeypatch, oauth2_server)
    settings = ws.config.accounts["default"].oauth2
    assert settings is not None
    with pytest.raises(SignInFailed, match="state differs"):
        sign_in(
            settings,
            TokenFile(token_file_path(ws.config.database)),
            lambda t: None,
            read_line=lambda: "http://127.0.0.1:9/?code=stolen&state=other\n",
            timeout=5,
        )
    oauth2_server.deny_consent = True
    with pytest.raises(SignInFailed, match="access_denied"):
        sign_in(
            settings,
            TokenFile(token_file_path(ws.config.database)),
            lambda t: None,
            open_browser=lambda url: requests.get(url, timeout=10),
        )
    ws.close()


# --------------------------------------------------------------------------- the token file


@pytest.mark.parametrize("umask", [0o000, 0o022])
def test_the_token_file_is_0600_whatever_the_umask(tmp_path: Path, umask: int) -> None:
    tokens = TokenFile(tmp_path / "outreach.tokens.json")
    before = os.umask(umask)
    try:
        with tokens.locked():
            now = datetime.now(UTC)
            tokens.save("a", Entry({"provider": "x"}, TokenSet("AT", "RT", now, now)))
            tokens.save("b", Entry({"provider": "x"}, TokenSet("AT2", None, None, now)))
    finally:
        os.umask(before)
    for path in (tokens.path, tokens.lock_path):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert set(tokens.load_all()) == {"a", "b"}
    assert list(tmp_path.glob(".*.tmp")) == []


def test_a_kill_during_writes_never_leaves_a_broken_token_file(tmp_path: Path) -> None:
    """kill -9 while a process rewrites the file as fast as it can: what is left is always
    a whole file, the last one written or the one before."""
    path = tmp_path / "outreach.tokens.json"
    script = textwrap.dedent(f"""
        from datetime import UTC, datetime
        from pathlib import Path
        from outreach.core.oauth2 import TokenSet
        from outreach.store.token_file import Entry, TokenFile
        tokens = TokenFile(Path({str(path)!r}))
        n = 0
        while True:
            n += 1
            now = datetime.now(UTC)
            with tokens.locked():
                tokens.save("district", Entry({{"n": str(n)}}, TokenSet("at-" + "x" * 4000,
                            "rt-%d" % n, now, now)))
            if n == 3:
                print("writing", flush=True)
    """)
    for _ in range(3):
        child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, cwd=REPO)
        assert child.stdout is not None and child.stdout.readline() == b"writing\n"
        time.sleep(0.15)
        child.send_signal(signal.SIGKILL)
        child.wait()
        entry = TokenFile(path).load("district")
        assert entry is not None and entry.tokens is not None
        assert entry.tokens.refresh_token == f"rt-{entry.identity['n']}"


def test_two_processes_renewing_at_once_spend_a_rotating_refresh_token_once(
    tmp_path: Path, oauth2_server: LocalOAuth2Server
) -> None:
    ws = oauth_workspace(tmp_path, oauth2_server)
    signed_in(ws, oauth2_server)
    first = oauth2_server.issued.access[-1]
    script = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        from outreach.config import load_config
        from outreach.engine.credentials import Logins
        config = load_config(Path({str(ws.root / "config.toml")!r}))
        account = config.accounts["default"]
        login = Logins(config).for_server(account, account.smtp)
        token = login.renew({first!r})
        print("ok" if token and token != {first!r} else "same", flush=True)
    """)
    children = [
        subprocess.Popen(
            [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO
        )
        for _ in range(2)
    ]
    outputs = [child.communicate(timeout=60) for child in children]
    assert [out.strip() for out, _ in outputs] == [b"ok", b"ok"], outputs
    assert oauth2_server.refresh_count() == 1  # the second saw the first one's new token
    ws.close()


# --------------------------------------------------------------------------- refresh


def test_a_refused_refresh_makes_the_account_wait_and_says_so(
    tmp_path: Path, oauth2_server: LocalOAuth2Server
) -> None:
    ws = oauth_workspace(tmp_path, oauth2_server)
    signed_in(ws, oauth2_server)
    config = ws.config
    account = config.accounts["default"]
    logins = Logins(config, clock=lambda: datetime.now(UTC) + timedelta(hours=2))
    oauth2_server.revoke_user(USER)
    login = logins.for_server(account, account.smtp)
    assert isinstance(login, OAuth2Login)
    with pytest.raises(SignInNeeded) as caught:
        login.secret()
    message = str(caught.value)
    assert message.startswith(
        "accounts.default: sign-in needed (custom refused the refresh: invalid_grant"
    )
    assert message.endswith("run `outreach auth login default`")
    (row,) = logins.statuses(config)
    assert (row.signed_in, row.waiting is not None) == (False, True)
    refreshes = oauth2_server.refresh_count()
    with pytest.raises(SignInNeeded):  # and it does not ask the server again
        logins.for_server(account, account.smtp).secret()
    assert oauth2_server.refresh_count() == refreshes
    ws.close()


# --------------------------------------------------------------------------- the CLI


def test_auth_login_in_a_real_process_then_status_and_logout(
    tmp_path: Path, oauth2_server: LocalOAuth2Server
) -> None:
    ws = oauth_workspace(tmp_path, oauth2_server)
    config = str(ws.root / "config.toml")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OUTREACH_")}
    approver = approve_when_asked(oauth2_server)
    done = subprocess.run(
        [sys.executable, "-m", "outreach", "--config", config, "auth", "login", "default"],
        capture_output=True,
        env=env,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    approver.join(5)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output.decode()
    code = oauth2_server._devices[next(iter(oauth2_server._devices))].user_code
    assert code.encode() in done.stdout and b"signed in: accounts.default" in done.stdout
    for token in oauth2_server.issued.all():
        assert token.encode() not in output
    path = token_file_path(ws.config.database)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600

    status = invoke(["auth", "status", "--json"], project=ws.root)
    assert status.exit_code == 0, status.output
    (row,) = json.loads(status.stdout)
    assert set(row) == {"account", "auth", "signed_in", "expires_at"}
    assert (row["account"], row["auth"], row["signed_in"]) == ("default", "oauth2", True)
    assert datetime.fromisoformat(row["expires_at"]) > datetime.now(UTC)
    text = invoke(["auth", "status"], project=ws.root)
    assert "default" in text.stdout and "yes" in text.stdout

    out = invoke(["auth", "logout", "default"], project=ws.root)
    assert out.exit_code == 0 and "signed out" in out.stdout
    assert ("revoke", "") in oauth2_server.requests
    assert oauth2_server.introspect(oauth2_server.issued.access[-1]) == {"active": False}
    (row,) = json.loads(invoke(["auth", "status", "--json"], project=ws.root).stdout)
    assert (row["signed_in"], row["expires_at"]) == (False, None)
    ws.close()


def test_auth_commands_refuse_password_and_unknown_accounts(tmp_path: Path) -> None:
    ws = Workspace(tmp_path, smtp_port=2525)
    for args in (["auth", "login", "default"], ["auth", "logout", "default"]):
        result = invoke(args, project=ws.root)
        assert result.exit_code == 2 and "signs in with a password" in result.output
    result = invoke(["auth", "login", "nobody"], project=ws.root)
    assert result.exit_code == 2 and "no account named 'nobody'" in result.output
    (row,) = json.loads(invoke(["auth", "status", "--json"], project=ws.root).stdout)
    assert row == {"account": "default", "auth": "password", "signed_in": True, "expires_at": None}
    ws.close()


def test_config_changes_to_another_app_need_a_new_sign_in(
    tmp_path: Path, oauth2_server: LocalOAuth2Server
) -> None:
    ws = oauth_workspace(tmp_path, oauth2_server)
    signed_in(ws, oauth2_server)
    config_file = ws.root / "config.toml"
    config_file.write_text(config_file.read_text().replace("outreach-test", "another-app"))
    config = load_config(config_file)
    (row,) = Logins(config).statuses(config)
    assert (row.signed_in, row.waiting) == (False, "signed in with another app")
    ws.close()
