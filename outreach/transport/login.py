"""What an adapter logs in with: the `Login` interface the SMTP and IMAP adapters call, and
a password login.

A `Login` gives the adapter its secret just before it logs in (`secret()`), and, once the
server has refused it, at most one fresh one to try again (`renew()`). A password is not
retried. OAuth2 logins (a token refreshed without a person, or a token_cmd) are made by
engine/credentials.py; the adapters see only this interface.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from outreach.core.redaction import remember_secret
from outreach.core.sasl import Mechanism
from outreach.core.settings import ServerSettings


class Login(Protocol):
    """How an adapter logs in to one server."""

    @property
    def username(self) -> str | None: ...

    @property
    def mechanism(self) -> Mechanism | None:
        """The SASL mechanism for a token; None for a password (LOGIN / AUTH PLAIN)."""

    @property
    def blocking(self) -> bool:
        """Whether secret() and renew() may wait (HTTP, a command): run off the loop."""

    def secret(self) -> str | None: ...

    def renew(self, refused: str) -> str | None:
        """After the server refused `refused`: one fresh secret to try, else None."""

    def refused_hint(self) -> str: ...


@dataclass(frozen=True)
class PasswordLogin:
    username: str | None
    password: str | None
    hint: str = "check the password"
    mechanism: Mechanism | None = None
    blocking: bool = False

    def __post_init__(self) -> None:
        remember_secret(self.password)  # never printed, logged or stored

    def __repr__(self) -> str:  # never the password
        return f"PasswordLogin(username={self.username!r})"

    def secret(self) -> str | None:
        return self.password

    def renew(self, refused: str) -> str | None:
        return None

    def refused_hint(self) -> str:
        return self.hint


def password_login(settings: ServerSettings, password: str | None) -> PasswordLogin:
    return PasswordLogin(
        settings.username,
        password,
        hint=f"check the password in {settings.password_env or 'password_cmd'}",
    )


def as_login(settings: ServerSettings, value: str | Login | None) -> Login:
    """What an adapter was given: a Login as it is, a password (or None) as a PasswordLogin."""
    if value is None or isinstance(value, str):
        return password_login(settings, value)
    return value
