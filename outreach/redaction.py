"""Passwords never leave the process: not as they are, and not in base64.

A mail server may repeat what it was sent when it refuses a login (an SMTP 535 quoting the
AUTH PLAIN data, an IMAP NO quoting the LOGIN command). Every text that reaches a person or a
file passes `redact` first: the terminal (outreach.terminal), the log (outreach.logs), and
the adapters' error texts before they are stored (smtp, imap).

`remember_secret` is called where a password is read (config.ServerSettings.password), so
the process knows every secret it holds; `redact_secrets` is the pure function behind it.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable
from functools import lru_cache

REDACTED = "[redacted]"
MIN_SECRET = 4  # shorter values are not hidden: they would blank out ordinary words

_secrets: set[str] = set()
# base64 text (RFC 4648 section 4) as a server would quote it: one run of the alphabet
_BASE64_RUN = re.compile(r"[A-Za-z0-9+/]{4,}=*")


def remember_secret(value: str | None) -> None:
    """Hide `value` from everything this process prints, logs or stores from now on."""
    if value and len(value) >= MIN_SECRET:
        _secrets.add(value)


def redact(text: str) -> str:
    """`text` without any secret this process holds (see `remember_secret`)."""
    if not _secrets:
        return text
    return redact_secrets(text, _secrets)


def redact_secrets(text: str, secrets: Iterable[str | None]) -> str:
    """`text` with each secret, and any base64 run that encodes a string containing one
    (SASL PLAIN's "\\0user\\0password", LOGIN's password alone, or anything else around it),
    replaced by "[redacted]"."""
    wanted = sorted({s for s in secrets if s and len(s) >= MIN_SECRET}, key=len, reverse=True)
    if not wanted:
        return text
    for secret in wanted:
        if secret in text:
            text = text.replace(secret, REDACTED)
    # cheap first: a whole-text search for each encoding; runs are decoded only for secrets
    # too short to have an encoding at every position
    suspects = [
        (cores, raw)
        for cores, raw in map(_encodings, wanted)
        if len(cores) < 3 or any(core in text for core in cores)
    ]
    if not suspects or not _BASE64_RUN.search(text):
        return text

    def replace(match: re.Match[str]) -> str:
        run = match.group(0)
        for cores, raw in suspects:
            if any(core in run for core in cores):
                return REDACTED
            if len(cores) < 3 and _decodes_to(run, raw):
                return REDACTED
        return run

    return _BASE64_RUN.sub(replace, text)


@lru_cache(maxsize=64)
def _encodings(secret: str) -> tuple[tuple[str, ...], bytes]:
    """The base64 characters that encode `secret` wherever it sits in a longer string.

    Base64 turns each 3 bytes into 4 characters, so a secret inside a longer string starts at
    one of three positions in a 3-byte group; for each, the groups that lie wholly inside the
    secret always encode to the same characters, whatever surrounds it. Those runs shorter
    than 8 characters would match by chance; short secrets are found by decoding instead."""
    raw = secret.encode("utf-8")
    cores = []
    for shift in range(3):
        text = base64.b64encode(b"\0" * shift + raw).decode("ascii")
        first, last = (1 if shift else 0), (shift + len(raw)) // 3
        core = text[4 * first : 4 * last]
        if len(core) >= 8:
            cores.append(core)
    return tuple(cores), raw


def _decodes_to(run: str, raw: bytes) -> bool:
    """Whether `run`, read as base64 from any of its first four characters, holds `raw`."""
    body = run.rstrip("=")
    for start in range(4):
        chunk = body[start:]
        if len(chunk) % 4 == 1:
            chunk = chunk[:-1]
        if not chunk:
            continue
        try:
            decoded = base64.b64decode(chunk + "=" * (-len(chunk) % 4))
        except (binascii.Error, ValueError):
            continue
        if raw in decoded:
            return True
    return False
