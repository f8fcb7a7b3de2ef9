"""The endpoints of an [accounts.NAME.oauth2] table: microsoft's and google's presets, and
what an endpoint written in config.toml must be (https, or http on this computer only).

Part of the loader: it reads the environment (the tests' local authorization server) and
checks URLs as config.toml gives them.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from outreach.core.oauth2 import (
    GOOGLE_AUTHORIZATION,
    GOOGLE_REVOCATION,
    GOOGLE_TOKEN,
    MICROSOFT_LOGIN,
    Endpoints,
    Provider,
)

# Tests (and `outreach demo`) point the microsoft and google presets at a local
# authorization server: the origin (scheme, host, port) of every preset URL is replaced by
# this one, the path is kept. Not a user setting: provider = "custom" is for other servers.
TEST_ORIGIN_ENV = "OUTREACH_TEST_OAUTH2_ORIGIN"

LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")


def preset_endpoints(provider: Provider, tenant: str, test_origin: str | None = None) -> Endpoints:
    """The documented endpoints of microsoft (device flow, per tenant) and google (browser
    flow; Google's device flow does not allow mail scopes)."""
    if provider is Provider.MICROSOFT:
        base = f"{MICROSOFT_LOGIN}/{tenant}/oauth2/v2.0"
        found = Endpoints(token_url=f"{base}/token", device_authorization_url=f"{base}/devicecode")
    elif provider is Provider.GOOGLE:
        found = Endpoints(
            token_url=GOOGLE_TOKEN,
            authorization_url=GOOGLE_AUTHORIZATION,
            revocation_url=GOOGLE_REVOCATION,
        )
    else:
        raise ValueError(f"{provider} has no preset endpoints")
    if not test_origin:
        return found
    return Endpoints(
        token_url=_with_origin(found.token_url, test_origin) or found.token_url,
        device_authorization_url=_with_origin(found.device_authorization_url, test_origin),
        authorization_url=_with_origin(found.authorization_url, test_origin),
        revocation_url=_with_origin(found.revocation_url, test_origin),
    )


def _with_origin(url: str | None, origin: str) -> str | None:
    if url is None:
        return None
    parts, new = urlsplit(url), urlsplit(origin)
    return urlunsplit((new.scheme, new.netloc, parts.path, parts.query, ""))


def endpoint_problem(url: str) -> str | None:
    """Why `url` cannot be an OAuth2 endpoint, or None. Tokens travel over it: https only,
    except on this computer (RFC 8252 8.3 allows plain http for loopback only)."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return None
    if parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS:
        return None
    return f"{url!r} must be an https:// URL (http:// only for 127.0.0.1, ::1 or localhost)"
