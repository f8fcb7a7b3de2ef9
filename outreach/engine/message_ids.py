"""Each outgoing message's own Message-ID (RFC 5322 3.6.4): unique everywhere and
unguessable, so a reply, a bounce or a complaint that quotes it can be trusted to be about
that message (core/inbound/match.py).
"""

from __future__ import annotations

import os
import secrets
import time


def new_message_id(domain: str) -> str:
    """A globally unique Message-ID on the account's domain (RFC 5322 section 3.6.4)."""
    return f"<{int(time.time() * 1000):x}.{_random_hex()}.outreach@{domain}>"


_RANDOM_POOL: list[str] = []


def _random_hex() -> str:
    """16 hex digits from the OS's random source, drawn 256 at a time: one system call
    each was a noticeable part of rendering a message. A forked child draws its own."""
    try:
        return _RANDOM_POOL.pop()  # atomic: two threads never get the same digits
    except IndexError:
        pool = secrets.token_hex(8 * 256)
        _RANDOM_POOL.extend(pool[i : i + 16] for i in range(16, len(pool), 16))
        return pool[:16]


os.register_at_fork(after_in_child=_RANDOM_POOL.clear)
