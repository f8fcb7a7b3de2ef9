"""What config.toml says, as values: the project's folders, its accounts and their servers,
sending limits, and the worker's, the reader's and the digest's settings.

config/ reads and checks the file and builds these; everything else only reads them. A
password is never held here: `password_env` and `password_cmd` name where it is, and
config/passwords.py looks it up at the moment a login needs it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import time, timedelta
from email.utils import parseaddr
from functools import lru_cache
from pathlib import Path
from typing import Any

from outreach.core.oauth2 import OAuth2Settings


@dataclass(frozen=True)
class ServerSettings:
    """How to reach one SMTP or IMAP server."""

    kind: str  # "smtp" or "imap", for messages
    key_path: str  # e.g. "accounts.default.smtp", for messages
    source: Path
    host: str
    port: int
    security: str
    username: str | None = None
    password_env: str | None = None
    password_cmd: str | None = None
    ca_file: Path | None = None
    timeout: timedelta = timedelta(seconds=30)
    # IMAP only
    folder: str = "INBOX"
    sent_folder: str | None = None
    idle: bool = False
    # "password" (password_env / password_cmd) or "oauth2" (the account's [oauth2] table);
    # sasl: the OAuth2 mechanism, XOAUTH2 by default (the only one Microsoft 365 takes on
    # SMTP), OAUTHBEARER (RFC 7628) where the server offers it
    auth: str = "password"
    sasl: str = "xoauth2"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class Limits:
    per_minute: int | None = None
    per_day: int | None = None
    jitter: timedelta = timedelta(0)
    retry: tuple[timedelta, ...] = (
        timedelta(minutes=1),
        timedelta(minutes=10),
        timedelta(hours=1),
        timedelta(hours=6),
    )
    concurrency: int = 2


@lru_cache(maxsize=64)
def _display_name(header: str) -> str:
    return parseaddr(header)[0]


@dataclass(frozen=True)
class Account:
    name: str
    from_header: str
    from_email: str
    smtp: ServerSettings
    imap: ServerSettings | None
    limits: Limits
    reply_to: str | None = None
    unsubscribe_mailto: str | None = None
    unsubscribe_url: str | None = None
    save_sent: bool = False
    oauth2: OAuth2Settings | None = None
    # the roster owners this account sends for (a campaign with account = "owner")
    owners: tuple[str, ...] = ()

    @property
    def domain(self) -> str:
        return self.from_email.rpartition("@")[2]

    @property
    def from_name(self) -> str:
        return _display_name(self.from_header)

    @property
    def unsubscribe_address(self) -> str:
        return self.unsubscribe_mailto or self.from_email


@dataclass(frozen=True)
class WorkerSettings:
    poll_every: timedelta = timedelta(minutes=2)
    send_every: timedelta = timedelta(minutes=2)
    idle: bool = False
    shutdown_timeout: timedelta = timedelta(seconds=30)


@dataclass(frozen=True)
class ReplySettings:
    auto_reply_pause: timedelta = timedelta(days=7)
    soft_bounce_limit: int = 3
    max_message_size: int = 10 * 1024 * 1024
    batch_size: int = 200


@dataclass(frozen=True)
class DigestSettings:
    to: str
    account: str
    at: time = time(7, 0)
    # each owner's digest about their own partners, to the address of the account that
    # lists them (from that account, unless `account` is set)
    per_owner: bool = False
    account_set: bool = False  # `account` was written, not the default


def owner_key(owner: str) -> str:
    """How an owner is compared: the roster's and the config's spelling may differ in case
    and spaces."""
    return owner.strip().casefold()


@dataclass(frozen=True)
class Config:
    path: Path
    database: Path
    campaigns_dir: Path
    templates_dir: Path
    timezone: str
    template_vars: dict[str, Any]
    accounts: dict[str, Account]
    worker: WorkerSettings = field(default_factory=WorkerSettings)
    replies: ReplySettings = field(default_factory=ReplySettings)
    digest: DigestSettings | None = None

    @property
    def folder(self) -> Path:
        return self.path.parent

    def owner_accounts(self) -> dict[str, str]:
        """owner (owner_key) -> the account that lists it."""
        return {owner_key(o): a.name for a in self.accounts.values() for o in a.owners}
