"""The logins of a config's accounts: a password, or an OAuth2 access token that is
refreshed without a person.

The adapters call a `Login` (transport/login.py) for their secret just before they log in,
and once more after a refusal: an OAuth2 token is renewed before it expires and once more
after a refusal, a token_cmd is run again, a password is not retried. When an OAuth2
account must be signed in again (the refresh was refused: revoked, expired, consent
withdrawn) `SignInNeeded` names the account; the account waits (the token file says so,
for `outreach status` and the digest) while the others go on. Tokens are read from and
written to the token file only; they never reach a message, a log line or the database.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from outreach.config import key_location
from outreach.config.passwords import command_output, oauth2_client_secret, server_password
from outreach.core.errors import ConfigError, MailServerError, SignInNeeded
from outreach.core.oauth2 import Flow, OAuth2Settings, TokenSet, needs_refresh, sign_in_needed
from outreach.core.redaction import remember_secret
from outreach.core.sasl import Mechanism
from outreach.core.settings import Account, Config, ServerSettings
from outreach.logs import log_event
from outreach.store.token_file import Entry, TokenFile, token_file_path
from outreach.transport.login import Login, password_login

if TYPE_CHECKING:
    from outreach.transport.oauth2_client import OAuth2Client

Clock = Callable[[], datetime]


def oauth2_client(settings: OAuth2Settings) -> OAuth2Client:
    """The HTTP client of one account's [oauth2] settings (loaded only when needed: the HTTP
    libraries are slow to import), its client secret looked up when a request needs it."""
    from outreach.transport.oauth2_client import OAuth2Client

    return OAuth2Client(settings, lambda: oauth2_client_secret(settings))


def wall_clock() -> datetime:
    """Tokens expire in real time, whatever clock the worker plans with."""
    return datetime.now(UTC)


def _mechanism(settings: ServerSettings) -> Mechanism:
    return Mechanism.OAUTHBEARER if settings.sasl == "oauthbearer" else Mechanism.XOAUTH2


class TokenCommandLogin:
    """token_cmd: a command that prints a fresh access token, run for every login (like
    password_cmd; its output is never logged)."""

    blocking = True

    def __init__(self, oauth2: OAuth2Settings, settings: ServerSettings) -> None:
        self.oauth2 = oauth2
        self.settings = settings

    @property
    def username(self) -> str | None:
        return self.settings.username

    @property
    def mechanism(self) -> Mechanism:
        return _mechanism(self.settings)

    def secret(self) -> str:
        where = key_location(self.oauth2.source, self.oauth2.key_path + ".token_cmd")
        assert self.oauth2.token_cmd is not None
        token = command_output(self.oauth2.token_cmd, where, quiet=True).strip()
        if not token or any(ord(c) <= 0x20 or ord(c) >= 0x7F for c in token):
            raise ConfigError(f"{where} printed no access token (one line, no spaces)")
        remember_secret(token, token=True)
        return token

    def renew(self, refused: str) -> str | None:
        token = self.secret()
        return token if token != refused else None

    def refused_hint(self) -> str:
        return (
            f"the server refused the token from token_cmd: check that it is for "
            f"{self.settings.username} and has the IMAP/SMTP scopes"
        )


class OAuth2Login:
    """An account signed in with `outreach auth login`: the access token from the token
    file, refreshed before it expires and once after a refusal (RFC 6749 6)."""

    blocking = True

    def __init__(
        self,
        oauth2: OAuth2Settings,
        settings: ServerSettings,
        tokens: TokenFile,
        clock: Clock = wall_clock,
        client: OAuth2Client | None = None,
    ) -> None:
        self.oauth2 = oauth2
        self.settings = settings
        self.file = tokens
        self.clock = clock
        self._client = client

    @property
    def client(self) -> OAuth2Client:
        """Made when first needed: the HTTP libraries load only for a refresh."""
        if self._client is None:
            self._client = oauth2_client(self.oauth2)
        return self._client

    @property
    def account(self) -> str:
        return self.oauth2.account

    @property
    def username(self) -> str | None:
        return self.settings.username

    @property
    def mechanism(self) -> Mechanism:
        return _mechanism(self.settings)

    def refused_hint(self) -> str:
        return (
            f"{self.oauth2.provider_name} issued a fresh token but the server refused it: "
            f"check that {self.settings.username} is the mailbox that signed in and that "
            f"{self.settings.kind.upper()} AUTH is enabled for it"
        )

    def _current(self) -> TokenSet:
        entry = self.file.load(self.account)
        return self._usable(entry)

    def _usable(self, entry: Entry | None) -> TokenSet:
        if entry is None or entry.identity != self.oauth2.identity():
            reason = "not signed in" if entry is None else "signed in with another app"
            raise SignInNeeded(self.account, reason)
        if entry.waiting is not None:
            raise SignInNeeded(self.account, entry.waiting)
        if entry.tokens is None:
            raise SignInNeeded(self.account, "not signed in")
        remember_secret(entry.tokens.access_token, token=True)
        remember_secret(entry.tokens.refresh_token, token=True)
        return entry.tokens

    def secret(self) -> str:
        tokens = self._current()
        if needs_refresh(tokens, self.clock()):
            tokens = self._refresh(tokens.access_token)
        return tokens.access_token

    def renew(self, refused: str) -> str | None:
        return self._refresh(refused).access_token

    def _refresh(self, stale: str) -> TokenSet:
        """A new access token in place of `stale`. Under the token file's lock: if another
        thread or process renewed it meanwhile, that one is used (a rotated refresh token
        must be spent once only)."""
        from outreach.transport.oauth2_client import OAuth2Refused, OAuth2Unavailable

        with self.file.locked():
            entry = self.file.load(self.account)
            tokens = self._usable(entry)
            assert entry is not None
            if tokens.access_token != stale and not needs_refresh(tokens, self.clock()):
                return tokens
            if not tokens.refresh_token:
                self._wait(entry, "the provider gave no refresh token")
            try:
                fresh = self.client.refresh(tokens.refresh_token or "", self.clock())
            except OAuth2Refused as exc:
                if not sign_in_needed(exc.error, 400):
                    raise MailServerError(f"{exc} (tried again at the next cycle)") from None
                self._wait(
                    entry,
                    f"{self.oauth2.provider_name} refused the refresh: {exc.error}"
                    + (f": {exc.description}" if exc.description else ""),
                )
            except OAuth2Unavailable as exc:
                raise MailServerError(f"{exc} (tried again at the next cycle)") from None
            remember_secret(fresh.access_token, token=True)
            remember_secret(fresh.refresh_token, token=True)
            self.file.save(
                self.account,
                Entry(identity=entry.identity, tokens=fresh, signed_in_at=entry.signed_in_at),
            )
            return fresh

    def _wait(self, entry: Entry, reason: str) -> None:
        """Remember that only a person can go on (for status and the digest), then say so.
        The dead tokens are dropped: nothing tries them again."""
        self.file.save(
            self.account,
            Entry(
                identity=entry.identity,
                tokens=None,
                signed_in_at=entry.signed_in_at,
                waiting=reason,
                waiting_since=self.clock().isoformat(timespec="seconds"),
            ),
        )
        raise SignInNeeded(self.account, reason)


# ----------------------------------------------------------------------------- per config


@dataclass(frozen=True)
class AccountAuth:
    """One row of `outreach auth status`; read from config.toml and the token file only."""

    account: str
    auth: str  # "oauth2" or "password"
    signed_in: bool
    expires_at: datetime | None
    waiting: str | None  # why the account waits for a sign-in, else None
    provider: str | None = None

    def to_json(self) -> dict[str, object]:
        """The contract of `outreach auth status --json`."""
        return {
            "account": self.account,
            "auth": self.auth,
            "signed_in": self.signed_in,
            "expires_at": self.expires_at.isoformat(timespec="seconds")
            if self.expires_at
            else None,
        }


def account_auth(account: Account) -> str:
    servers = [s for s in (account.smtp, account.imap) if s is not None]
    return "oauth2" if any(s.auth == "oauth2" for s in servers) else "password"


class Logins:
    """The logins of one config's accounts, and which accounts wait for a sign-in."""

    def __init__(self, config: Config, clock: Clock = wall_clock) -> None:
        self.file = TokenFile(token_file_path(config.database))
        self.clock = clock
        self._announced: dict[str, str] = {}
        self._lock = threading.Lock()

    def for_server(self, account: Account, settings: ServerSettings) -> Login:
        if settings.auth != "oauth2":
            return password_login(settings, server_password(settings))
        oauth2 = account.oauth2
        assert oauth2 is not None  # config.py makes sure
        if oauth2.flow is Flow.COMMAND:
            return TokenCommandLogin(oauth2, settings)
        return OAuth2Login(oauth2, settings, self.file, self.clock)

    def check(self, account: Account) -> None:
        """SignInNeeded when the token file already says the account cannot log in (never
        signed in, signed out, refresh refused): no network, nothing rendered or sent."""
        row = self.status(account)
        if row.auth == "oauth2" and row.waiting is not None:
            raise SignInNeeded(account.name, row.waiting)

    def status(self, account: Account, entries: dict[str, Entry] | None = None) -> AccountAuth:
        kind = account_auth(account)
        if kind == "password":
            servers = [s for s in (account.smtp, account.imap) if s is not None and s.username]
            ready = all(
                s.password_cmd or (s.password_env and s.password_env in os.environ) for s in servers
            )
            return AccountAuth(account.name, kind, bool(ready), None, None)
        oauth2 = account.oauth2
        assert oauth2 is not None
        if oauth2.flow is Flow.COMMAND:
            return AccountAuth(account.name, kind, True, None, None, "token_cmd")
        if entries is None:
            entries = self.file.load_all()
        entry = entries.get(account.name)
        if entry is None:
            return AccountAuth(
                account.name, kind, False, None, "not signed in", oauth2.provider_name
            )
        if entry.identity != oauth2.identity():
            return AccountAuth(
                account.name, kind, False, None, "signed in with another app", oauth2.provider_name
            )
        expires = entry.tokens.expires_at if entry.tokens else None
        return AccountAuth(
            account.name,
            kind,
            entry.signed_in,
            expires,
            entry.waiting or (None if entry.tokens else "not signed in"),
            oauth2.provider_name,
        )

    def statuses(self, config: Config) -> list[AccountAuth]:
        entries = self.file.load_all()
        return [self.status(account, entries) for account in config.accounts.values()]

    def note_waiting(self, account: str, message: str) -> bool:
        """True the first time this process sees the account wait for this reason (the
        worker logs it as an error then, quietly after)."""
        with self._lock:
            new = self._announced.get(account) != message
            self._announced[account] = message
            return new

    def note_working(self, account: str) -> bool:
        """True when the account was waiting and works again."""
        with self._lock:
            return self._announced.pop(account, None) is not None


def announce_waiting(logins: Logins, log: logging.Logger, exc: SignInNeeded) -> None:
    """Log that an account waits for a sign-in: as an error the first time (it names the
    account and the command to run), quietly at later cycles."""
    first = logins.note_waiting(exc.account, exc.reason)
    level = logging.ERROR if first else logging.DEBUG
    log_event(log, "signin_needed", str(exc), level, account=exc.account)


def announce_working(logins: Logins, log: logging.Logger, account: str) -> None:
    """Log once that an account that waited for a sign-in works again."""
    if logins.note_working(account):
        log_event(
            log,
            "signed_in",
            f"accounts.{account}: signed in again; its queued "
            "messages go out and its mailbox is read again",
            account=account,
        )
