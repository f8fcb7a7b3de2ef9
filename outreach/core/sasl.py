"""SASL for OAuth2 bearer tokens, written once for SMTP and IMAP: XOAUTH2 (Google's and
Microsoft's mechanism) and OAUTHBEARER (RFC 7628). Pure: the mail adapters send the bytes.

Both are client-first: the initial response carries the user and the token. A server that
refuses the token first sends an error challenge (a JSON object, RFC 7628 3.2.2); the
client must answer it (XOAUTH2: an empty response; OAUTHBEARER: a single %x01) and then
gets the failure (SMTP 535, IMAP NO). (Issue 18 moves this module to transport/.)
"""

from __future__ import annotations

import json
from enum import StrEnum


class Mechanism(StrEnum):
    XOAUTH2 = "XOAUTH2"
    OAUTHBEARER = "OAUTHBEARER"


def _checked(what: str, value: str) -> bytes:
    """The fields are framed with %x01: a control character inside one would end it early."""
    if not value or any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise ValueError(f"the {what} for a SASL login is empty or holds control characters")
    return value.encode("utf-8")


def _saslname(user: str) -> bytes:
    """RFC 5801 5.1: "," and "=" in the authorization identity are written =2C and =3D."""
    return _checked("user", user).replace(b"=", b"=3D").replace(b",", b"=2C")


def initial_response(
    mechanism: Mechanism, user: str, token: str, host: str | None = None, port: int | None = None
) -> bytes:
    """The client's first message, before base64 (the adapters encode it)."""
    bearer = b"auth=Bearer " + _checked("access token", token)
    if mechanism is Mechanism.XOAUTH2:
        # https://developers.google.com/gmail/imap/xoauth2-protocol and
        # https://learn.microsoft.com/exchange/client-developer/legacy-protocols/how-to-authenticate-an-imap-pop-smtp-application-by-using-oauth
        return b"user=" + _checked("user", user) + b"\x01" + bearer + b"\x01\x01"
    # RFC 7628 3.1: gs2-header ("n,a=<user>,") %x01 [host=.. %x01 port=.. %x01] auth=.. %x01%x01
    parts = [b"n,a=" + _saslname(user) + b","]
    if host:
        parts.append(b"host=" + _checked("host", host))
    if port:
        parts.append(b"port=" + str(int(port)).encode())
    parts.append(bearer)
    return b"\x01".join(parts) + b"\x01\x01"


def error_answer(mechanism: Mechanism) -> bytes:
    """The reply to a server's error challenge, before base64 (RFC 7628 3.2.3; XOAUTH2
    wants an empty one). The server then ends the exchange with its failure."""
    return b"\x01" if mechanism is Mechanism.OAUTHBEARER else b""


def describe_challenge(challenge: bytes) -> str:
    """A server's error challenge (already base64-decoded) for a message: its "status" and
    "scope" (RFC 7628 3.2.2), never anything else it says; "" when it is not that JSON."""
    try:
        data = json.loads(challenge.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return ""
    if not isinstance(data, dict):
        return ""
    found = []
    for key in ("status", "scope"):
        value = data.get(key)
        if isinstance(value, str | int) and not isinstance(value, bool):
            text = "".join(c for c in str(value) if c.isprintable())[:80]
            if text:
                found.append(f"{key} {text}")
    return ", ".join(found)


class Conversation:
    """One SASL exchange as IMAPClient's `sasl_login` drives it: called with each server
    challenge (decoded), returns the next response (not yet encoded), None to abort ("*")."""

    def __init__(
        self,
        mechanism: Mechanism,
        user: str,
        token: str,
        host: str | None = None,
        port: int | None = None,
    ) -> None:
        self.mechanism = mechanism
        self._first = initial_response(mechanism, user, token, host, port)
        self.steps = 0
        self.error = ""  # what the server's error challenge said, if it sent one

    def __call__(self, challenge: bytes) -> bytes | None:
        self.steps += 1
        if self.steps == 1 and not challenge:
            return self._first  # IMAP without SASL-IR: an empty "+" asks for it
        if self.steps <= 2 and challenge:
            self.error = describe_challenge(challenge)
            return error_answer(self.mechanism)
        return None
