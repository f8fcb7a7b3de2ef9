"""Which message is this: the key it is recorded under (its Message-ID, else a digest of
its header block), the digest of its content, and whether a message recorded under the
same key is this one delivered again or a different one reusing the id.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any

from outreach.core.inbound.mailparse import MessageHeaders

_HEADER_END = re.compile(rb"\r?\n\r?\n")


def message_key(message_id: str | None, header_block: bytes) -> str:
    """The key a message is recorded under: its Message-ID, or a digest of its header
    block for mail that has none (or whose headers could not be read)."""
    if message_id:
        return message_id
    return "sha256:" + hashlib.sha256(header_block.strip()).hexdigest()


def content_digest(headers: MessageHeaders, raw: bytes) -> str:
    """What tells a re-delivery of a message from a different message with the same
    Message-ID: its sender, recipients, subject, date, ids and body bytes.

    Trace headers (Received, Delivered-To, Return-Path, DKIM and ARC stamps) are left out:
    they differ between two deliveries of one message (a copy in another folder, a server
    that delivered it twice) while what the sender wrote does not.
    """
    identity = "\x00".join(
        [
            headers.from_addr or "",
            headers.from_name or "",
            " ".join(sorted(headers.to_addrs)),
            headers.subject,
            headers.date_text,
            headers.message_id or "",
            headers.in_reply_to or "",
            " ".join(headers.references),
        ]
    ).encode("utf-8", "surrogatepass")  # lone surrogates (lenient decoders) are kept
    end = _HEADER_END.search(raw)
    body = raw[end.end() :] if end else b""
    return "sha256:" + hashlib.sha256(identity + b"\x00\x00" + body).hexdigest()


def same_message(
    earlier: Mapping[str, Any], digest: str, from_addr: str | None, full_text: str | None
) -> bool:
    """Whether a message already recorded under the same Message-ID is this one delivered
    again (a copy in another folder, a server that delivered it twice, a read after a
    crash), rather than a different message reusing the id."""
    if earlier.get("content_hash"):
        return bool(earlier["content_hash"] == digest)
    # recorded before digests were kept (m005): the sender and the words decide
    return bool(
        earlier.get("from_addr") == from_addr
        and (earlier.get("full_text") or "") == (full_text or "")
    )
