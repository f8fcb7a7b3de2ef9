"""OAuth2 sign-in, the pure part: provider presets, the account's OAuth2 settings, what a
token response means, when to refresh, and how to answer a device-flow poll.

Nothing here touches the network, a file or the clock: `now` comes in as an argument. The
endpoints as config.toml gives them are checked by config/oauth2_endpoints.py, the HTTP side
is transport/oauth2_client.py, the token file store/token_file.py, the logins the mail
adapters use engine/credentials.py.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any


class Provider(StrEnum):
    MICROSOFT = "microsoft"
    GOOGLE = "google"
    CUSTOM = "custom"


class Flow(StrEnum):
    """How `outreach auth login` gets the first tokens."""

    DEVICE = "device"  # RFC 8628: a code to type in on any device with a browser
    BROWSER = "browser"  # RFC 8252: installed app, PKCE, redirect to a loopback address
    COMMAND = "command"  # token_cmd prints a token; nothing to sign in


# The providers' documented scopes for IMAP and SMTP. offline_access asks Microsoft for a
# refresh token; Google gives one for access_type=offline (see oauth2_client).
SCOPES: dict[Provider, tuple[str, ...]] = {
    Provider.MICROSOFT: (
        "https://outlook.office.com/IMAP.AccessAsUser.All",
        "https://outlook.office.com/SMTP.Send",
        "offline_access",
    ),
    Provider.GOOGLE: ("https://mail.google.com/",),
}

MICROSOFT_LOGIN = "https://login.microsoftonline.com"
GOOGLE_AUTHORIZATION = "https://accounts.google.com/o/oauth2/v2/auth"
GOOGLE_TOKEN = "https://oauth2.googleapis.com/token"
GOOGLE_REVOCATION = "https://oauth2.googleapis.com/revoke"

TENANT = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]{0,99}")


@dataclass(frozen=True)
class Endpoints:
    token_url: str
    device_authorization_url: str | None = None
    authorization_url: str | None = None
    revocation_url: str | None = None


@dataclass(frozen=True)
class OAuth2Settings:
    """[accounts.NAME.oauth2] as read from config.toml."""

    account: str
    key_path: str  # e.g. "accounts.district.oauth2", for messages
    source: Path
    provider: Provider | None
    client_id: str | None = None
    tenant: str = "organizations"
    client_secret_env: str | None = None
    scopes: tuple[str, ...] = ()
    endpoints: Endpoints | None = None
    token_cmd: str | None = None

    @property
    def flow(self) -> Flow:
        if self.token_cmd:
            return Flow.COMMAND
        if self.endpoints is not None and self.endpoints.device_authorization_url:
            return Flow.DEVICE
        return Flow.BROWSER

    @property
    def provider_name(self) -> str:
        return str(self.provider) if self.provider else "token_cmd"

    def identity(self) -> dict[str, str]:
        """What the stored tokens were issued for: another client, provider or token
        endpoint in config.toml means they belong to another app (a new sign-in is needed)."""
        return {
            "provider": self.provider_name,
            "client_id": self.client_id or "",
            "token_url": self.endpoints.token_url if self.endpoints else "",
        }


# ----------------------------------------------------------------------------- tokens


@dataclass(frozen=True)
class TokenSet:
    """What a token endpoint issued. The secrets never show in a repr (tracebacks, logs)."""

    access_token: str = field(repr=False)
    refresh_token: str | None = field(repr=False)
    expires_at: datetime | None  # None: the server did not say (valid until refused)
    obtained_at: datetime
    scope: str = ""


def token_set_from_response(
    response: Mapping[str, Any], now: datetime, previous_refresh: str | None = None
) -> TokenSet:
    """A successful token response (RFC 6749 5.1) as a TokenSet. A refresh that returns no
    new refresh token keeps the old one (RFC 6749 6); ValueError for a malformed answer."""
    access = response.get("access_token")
    if not isinstance(access, str) or not access.strip():
        raise ValueError("the token endpoint's answer has no access_token")
    if not _printable(access):
        raise ValueError("the access_token holds characters a SASL login cannot carry")
    kind = response.get("token_type", "Bearer")
    if not isinstance(kind, str) or kind.lower() != "bearer":
        raise ValueError(f"token_type {str(kind)[:40]!r} is not Bearer (RFC 6750)")
    refresh = response.get("refresh_token")
    if not isinstance(refresh, str) or not refresh:
        refresh = previous_refresh
    lifetime = response.get("expires_in")
    expires_at = None
    if isinstance(lifetime, str) and lifetime.strip().isdigit():  # some servers send "3599"
        lifetime = int(lifetime)
    if isinstance(lifetime, int | float) and not isinstance(lifetime, bool):
        if not math.isfinite(lifetime) or lifetime <= 0:
            expires_at = now  # already unusable: refresh before the next login
        else:
            expires_at = now + timedelta(seconds=min(float(lifetime), 10 * 365 * 86400.0))
    scope = response.get("scope")
    return TokenSet(
        access_token=access,
        refresh_token=refresh,
        expires_at=expires_at,
        obtained_at=now,
        scope=scope if isinstance(scope, str) else "",
    )


def _printable(text: str) -> bool:
    return all(0x20 < ord(c) < 0x7F for c in text)


REFRESH_MARGIN = timedelta(minutes=5)


def refresh_margin(tokens: TokenSet) -> timedelta:
    """How long before expiry a token is renewed: five minutes, or a quarter of its
    lifetime when that is shorter (a token that lives 4 s is renewed after 3 s)."""
    if tokens.expires_at is None:
        return timedelta(0)
    return min(REFRESH_MARGIN, max(timedelta(0), tokens.expires_at - tokens.obtained_at) / 4)


def needs_refresh(tokens: TokenSet, now: datetime) -> bool:
    """Whether the access token should be renewed before the next login."""
    if tokens.expires_at is None:
        return False
    return now >= tokens.expires_at - refresh_margin(tokens)


# ----------------------------------------------------------------------------- device flow


class PollStep(StrEnum):
    """What a device-flow poll's answer means (RFC 8628 3.5)."""

    WAIT = "wait"  # authorization_pending: ask again after the interval
    SLOW_DOWN = "slow_down"  # ask again, 5 seconds slower from now on
    DENIED = "denied"  # access_denied: the person said no
    EXPIRED = "expired"  # expired_token: the code ran out; start again
    FAILED = "failed"  # anything else: stop with the server's error


def poll_step(error: str) -> PollStep:
    return {
        "authorization_pending": PollStep.WAIT,
        "slow_down": PollStep.SLOW_DOWN,
        "access_denied": PollStep.DENIED,
        "expired_token": PollStep.EXPIRED,
    }.get(error, PollStep.FAILED)


DEFAULT_INTERVAL = 5.0  # RFC 8628 3.2: when the server names none
MIN_INTERVAL = 1.0  # never poll faster than this, whatever a server says


def poll_interval(value: Any) -> float:
    """The interval a device authorization answer asks for, in seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return min(max(float(value), MIN_INTERVAL), 60.0)
    return DEFAULT_INTERVAL


def slower(interval: float) -> float:
    """RFC 8628 3.5: after slow_down, the interval grows by 5 seconds for good."""
    return interval + 5.0


# ----------------------------------------------------------------------------- sign-in state

# Token endpoint errors (RFC 6749 5.2, OpenID Connect Core 3.1.2.6) that a person must
# answer by signing in again: the refresh token was revoked or expired, the password
# changed, consent was withdrawn, the app was removed. Anything else (no answer, 5xx,
# temporarily_unavailable) is an outage: tried again at the next cycle.
TEMPORARY_ERRORS = frozenset({"temporarily_unavailable", "server_error", "slow_down"})


def sign_in_needed(error: str, status: int) -> bool:
    """Whether a refused refresh means the account must be signed in again."""
    if error in TEMPORARY_ERRORS or status >= 500 or status == 429:
        return False
    return 400 <= status < 500 or bool(error)


def sign_in_command(account: str) -> str:
    return f"outreach auth login {account}"
