"""OAuth2 over HTTP: the token endpoint (device code, authorization code with PKCE, refresh),
device authorization (RFC 8628) and revocation (RFC 7009), through Authlib's client.

One generic client serves microsoft, google and custom providers alike: each is a set of
endpoints and scopes (outreach.core.oauth2). Why not msal + google-auth-oauthlib: `custom` needs a
generic client anyway; msal validates its authority against Microsoft's cloud (instance
discovery) and keeps tokens in a cache format of its own, google-auth-oauthlib's installed-app
flow expects a browser on this computer (Google removed its copy-paste flow); two libraries
would mean two refresh paths and two token stores to test, while the three providers differ
only in endpoints, scopes and one flow each, all standard RFCs.

Foreign errors become ours here: a refused grant is `OAuth2Refused` (with the server's error
code), no answer or a 5xx is `OAuth2Unavailable`. Tokens never appear in an error message.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import requests
from authlib.common.security import generate_token
from authlib.integrations.base_client import OAuthError
from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2.rfc8628 import DEVICE_CODE_GRANT_TYPE

from outreach.core.errors import OutreachError
from outreach.core.oauth2 import Flow, OAuth2Settings, TokenSet, token_set_from_response
from outreach.core.text import one_line

TIMEOUT = 30.0


class OAuth2Refused(OutreachError):
    """The authorization server answered with an OAuth2 error (RFC 6749 5.2)."""

    def __init__(self, where: str, error: str, description: str = "") -> None:
        self.error = one_line(error or "", 60, printable=True) or "error"
        self.description = one_line(description or "", 200, printable=True)
        text = self.error + (f": {self.description}" if self.description else "")
        super().__init__(f"{where}: {text}")


class OAuth2Unavailable(OutreachError):
    """The authorization server could not be reached or failed (try again later)."""


@dataclass(frozen=True)
class DeviceCode:
    """A device authorization answer (RFC 8628 3.2)."""

    device_code: str = field(repr=False)
    user_code: str
    verification_uri: str
    verification_uri_complete: str | None
    expires_in: float
    interval: Any


class OAuth2Client:
    """The HTTP side of one account's [oauth2] settings."""

    def __init__(
        self,
        settings: OAuth2Settings,
        client_secret: Callable[[], str | None] = lambda: None,
        timeout: float = TIMEOUT,
    ) -> None:
        """`client_secret` is looked up when a request needs it (config.passwords)."""
        if settings.endpoints is None or settings.flow is Flow.COMMAND:
            raise ValueError("token_cmd accounts have no OAuth2 endpoints")
        self.settings = settings
        self.endpoints = settings.endpoints
        self.client_secret = client_secret
        self.timeout = timeout

    @property
    def where(self) -> str:
        return f"{self.settings.provider_name} sign-in for accounts.{self.settings.account}"

    def session(self, **kwargs: Any) -> OAuth2Session:
        secret = self.client_secret()
        return OAuth2Session(
            client_id=self.settings.client_id,
            client_secret=secret,
            # a public client sends its id in the body; a secret goes in the body too, as
            # Google documents for installed apps
            token_endpoint_auth_method="client_secret_post" if secret else "none",
            revocation_endpoint_auth_method="client_secret_post" if secret else "none",
            scope=" ".join(self.settings.scopes),
            default_timeout=self.timeout,
            **kwargs,
        )

    def _call(self, what: str, action: Any) -> Any:
        """Run one request; foreign errors become OAuth2Refused / OAuth2Unavailable."""
        try:
            return action()
        except OAuthError as exc:
            raise OAuth2Refused(self.where, exc.error or "error", exc.description or "") from None
        except requests.HTTPError as exc:
            status = exc.response.status_code if exc.response is not None else 0
            raise OAuth2Unavailable(f"{self.where}: {what}: HTTP {status}") from None
        except requests.RequestException as exc:
            reason = type(exc).__name__
            raise OAuth2Unavailable(f"{self.where}: {what}: no answer ({reason})") from None
        except ValueError as exc:  # not JSON, or a malformed token answer
            said = one_line(exc, 200, printable=True)
            raise OAuth2Unavailable(f"{self.where}: {what}: {said}") from None

    # ------------------------------------------------------------------ device flow

    def start_device(self) -> DeviceCode:
        """Ask for a device code and the code a person types in (RFC 8628 3.1)."""
        url = self.endpoints.device_authorization_url
        assert url is not None

        def ask() -> DeviceCode:
            with self.session() as session:
                body = {"client_id": self.settings.client_id, "scope": session.scope}
                secret = self.client_secret()
                if secret:
                    body["client_secret"] = secret
                response = session.post(url, data=body, withhold_token=True)
            data = _json(response)
            if "error" in data:
                raise OAuthError(str(data["error"]), str(data.get("error_description") or ""))
            if response.status_code >= 400:
                response.raise_for_status()
            # RFC 8628 names it verification_uri; Microsoft's older endpoints said _url
            uri = data.get("verification_uri") or data.get("verification_url")
            device_code, user_code = data.get("device_code"), data.get("user_code")
            if not all(isinstance(v, str) and v for v in (uri, device_code, user_code)):
                raise ValueError("the device authorization answer lacks a code or a URL")
            complete = data.get("verification_uri_complete")
            expires = data.get("expires_in")
            return DeviceCode(
                device_code=str(device_code),
                user_code=one_line(user_code or "", 40, printable=True),
                verification_uri=one_line(uri or "", 300, printable=True),
                verification_uri_complete=one_line(complete or "", 400, printable=True)
                if isinstance(complete, str)
                else None,
                expires_in=float(expires) if isinstance(expires, int | float) else 900.0,
                interval=data.get("interval"),
            )

        result: DeviceCode = self._call("device authorization", ask)
        return result

    def poll_device(self, code: DeviceCode, now: datetime) -> TokenSet:
        """One poll of the token endpoint (RFC 8628 3.4); OAuth2Refused while pending."""

        def poll() -> TokenSet:
            with self.session() as session:
                token = session.fetch_token(
                    self.endpoints.token_url,
                    grant_type=DEVICE_CODE_GRANT_TYPE,
                    device_code=code.device_code,
                    client_id=self.settings.client_id,
                )
            return token_set_from_response(token, now)

        result: TokenSet = self._call("device token", poll)
        return result

    # ------------------------------------------------------------------ browser flow

    def authorization_url(self, redirect_uri: str, state: str, code_verifier: str) -> str:
        """Where the person signs in (RFC 6749 4.1.1 with PKCE, RFC 7636 S256)."""
        assert self.endpoints.authorization_url is not None
        extra: dict[str, str] = {}
        if self.settings.provider is not None and self.settings.provider.value == "google":
            # a refresh token, and a fresh one even when consent was given before
            extra = {"access_type": "offline", "prompt": "consent"}
        with self.session(redirect_uri=redirect_uri, code_challenge_method="S256") as session:
            url, _ = session.create_authorization_url(
                self.endpoints.authorization_url,
                state=state,
                code_verifier=code_verifier,
                **extra,
            )
        return str(url)

    def exchange_code(
        self, redirected: str, state: str, redirect_uri: str, code_verifier: str, now: datetime
    ) -> TokenSet:
        """The code in the redirected URL for tokens; the state must match (RFC 6749 10.12)."""

        def exchange() -> TokenSet:
            with self.session(redirect_uri=redirect_uri, state=state) as session:
                token = session.fetch_token(
                    self.endpoints.token_url,
                    authorization_response=redirected,
                    code_verifier=code_verifier,
                )
            return token_set_from_response(token, now)

        result: TokenSet = self._call("authorization code", exchange)
        return result

    # ------------------------------------------------------------------ refresh / revoke

    def refresh(self, refresh_token: str, now: datetime) -> TokenSet:
        """A new access token (RFC 6749 6); a rotated refresh token comes with it."""

        def renew() -> TokenSet:
            with self.session() as session:
                token = session.refresh_token(self.endpoints.token_url, refresh_token=refresh_token)
            return token_set_from_response(token, now, previous_refresh=refresh_token)

        result: TokenSet = self._call("refresh", renew)
        return result

    def revoke(self, token: str, hint: str = "refresh_token") -> bool:
        """Ask the provider to revoke a token (RFC 7009); False when it has no endpoint."""
        url = self.endpoints.revocation_url
        if not url:
            return False

        def ask() -> None:
            with self.session() as session:
                response = session.revoke_token(url, token=token, token_type_hint=hint)
            if response.status_code >= 400:  # RFC 7009 2.2: 200 even for an unknown token
                data = _json(response)
                if "error" in data:
                    raise OAuthError(str(data["error"]), str(data.get("error_description") or ""))
                response.raise_for_status()

        self._call("revocation", ask)
        return True


def new_state() -> str:
    return str(generate_token(32))


def new_code_verifier() -> str:
    """RFC 7636 4.1: 43 to 128 characters from the unreserved set; 64 random ones."""
    return str(generate_token(64))


def _json(response: requests.Response) -> Mapping[str, Any]:
    try:
        data = response.json()
    except ValueError:
        if response.status_code >= 400:
            response.raise_for_status()
        raise ValueError(f"HTTP {response.status_code}: the answer is not JSON") from None
    if not isinstance(data, dict):
        raise ValueError(f"HTTP {response.status_code}: the answer is not a JSON object")
    return data
