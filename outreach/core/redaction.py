"""Passwords never leave the process: not as they are, and not in base64.

A mail server may repeat what it was sent when it refuses a login (an SMTP 535 quoting the
AUTH PLAIN data, an IMAP NO quoting the LOGIN command). Every text that reaches a person or a
file passes `redact` first: the terminal (outreach.cli.terminal), the log (outreach.logs), and
the adapters' error texts before they are stored (smtp, imap).

`remember_secret` is called where a password is read (config.ServerSettings.password), so
the process knows every secret it holds; `redact_secrets` is the pure function behind it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache

REDACTED = "[redacted]"
MIN_SECRET = 4  # shorter values are not hidden: they would blank out ordinary words

_secrets: set[str] = set()
# access and refresh tokens rotate (hourly for an access token): the latest few are kept, so
# a worker that runs for months does not redact against thousands of dead ones
_tokens: dict[str, None] = {}
_TOKENS_KEPT = 16
# base64 text (RFC 4648 section 4) as a server would quote it: one run of the alphabet
_BASE64_RUN = re.compile(r"[A-Za-z0-9+/]{4,}=*")


def remember_secret(value: str | None, *, token: bool = False) -> None:
    """Hide `value` from everything this process prints, logs or stores from now on (a
    `token`: for as long as it is one of the latest few)."""
    if not value or len(value) < MIN_SECRET:
        return
    if not token:
        _secrets.add(value)
        return
    _tokens.pop(value, None)
    _tokens[value] = None
    while len(_tokens) > _TOKENS_KEPT:
        del _tokens[next(iter(_tokens))]


def forget_secrets() -> None:
    """Forget every remembered secret (a process that serves one project never needs this;
    the test suite runs many projects, each with its own passwords, in one process)."""
    _secrets.clear()
    _tokens.clear()


def redact(text: str) -> str:
    """`text` without any secret this process holds (see `remember_secret`)."""
    if not _secrets and not _tokens:
        return text
    return redact_secrets(text, [*_secrets, *_tokens])


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
    # one regex search per secret over the whole text; runs are looked at only on a hit
    found = [pattern for pattern in map(_encoded, wanted) if pattern.search(text)]
    if not found:
        return text

    def replace(match: re.Match[str]) -> str:
        run = match.group(0)
        return REDACTED if any(pattern.search(run) for pattern in found) else run

    return _BASE64_RUN.sub(replace, text)


_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


@lru_cache(maxsize=64)
def _encoded(secret: str) -> re.Pattern[str]:
    """A pattern for the base64 of any text that contains `secret`, wherever it sits.

    Base64 turns each 3 bytes into 4 characters of 6 bits. A secret inside a longer text
    starts at one of three positions in a 3-byte group; for each, every character whose 6
    bits come from the secret alone is fixed, and one that also takes bits from the bytes
    around it is one of the characters whose bits from the secret match (a class)."""
    raw = secret.encode("utf-8")
    choices = []
    for shift in range(3):
        bits: list[int | None] = [None] * (8 * shift)
        bits += [(byte >> (7 - k)) & 1 for byte in raw for k in range(8)]
        bits += [None] * (-len(bits) % 6)
        chars = []
        for start in range(0, len(bits), 6):
            known = bits[start : start + 6]
            if all(b is None for b in known):
                continue
            fits = [
                c
                for value, c in enumerate(_ALPHABET)
                if all(b is None or (value >> (5 - k)) & 1 == b for k, b in enumerate(known))
            ]
            chars.append(
                re.escape(fits[0])
                if len(fits) == 1
                else "[" + "".join(re.escape(c) for c in fits) + "]"
            )
        choices.append("".join(chars))
    return re.compile("|".join(choices))
