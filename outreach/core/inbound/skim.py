"""Skimming a header block: the few fields that decide whether a message may concern us,
read with plain scans instead of the email package.

Parsing every header block costs more than downloading the whole message; most of a
mailbox is settled by this scan (engine/ingest.py). A block it cannot read for certain
gives None, and goes through mailparse.read_headers instead: the decision is the same.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from outreach.core.inbound.mailparse import (
    ANGLE_LESS_ID_RE,
    MAX_MESSAGE_ID,
    MSGID_RE,
    normalize_msgid,
)

_ATEXT = r"[A-Za-z0-9!#$%&'*+/?^_`{|}~=-]"
_SIMPLE_ADDR = rf"{_ATEXT}+(?:\.{_ATEXT}+)*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*"
#: From values whose address anyone reads the same way: `addr`, `Name <addr>`, `"Name" <addr>`.
_SIMPLE_FROM = re.compile(
    rf'[ \t]*(?:(?:"[^"\\<>@,;:]*"|[A-Za-z0-9 \t!#$%&\'*+/?^_`{{|}}~-]*)[ \t]*<({_SIMPLE_ADDR})>'
    rf"|({_SIMPLE_ADDR}))[ \t]*"
)
_SIMPLE_MSGID = re.compile(rf"[ \t]*<({_ATEXT}+(?:\.{_ATEXT}+)*@{_ATEXT}+(?:\.{_ATEXT}+)*)>[ \t]*")
_SKIMMED = (
    "from",
    "in-reply-to",
    "references",
    "subject",
    "return-path",
    "content-type",
    "to",
    "cc",
    "message-id",
)
#: A header block that the parser reads as plain "Name: value" lines and folded continuations,
#: each ending in CRLF, nothing else (no lone CR or LF, no mbox "From " line).
_PRINTABLE_BYTES = re.compile(rb"[\x20-\x7e\t]*")
#: From: an unquoted display name with 8-bit bytes (no specials), then a plain <address>
_FROM_8BIT_NAME = re.compile(
    rb"[ \t]*(?=[^<]*[\x80-\xff])[\x80-\xffA-Za-z0-9 \t!#$%&'*+/?^_`{|}~-]+<("
    + _SIMPLE_ADDR.encode()
    + rb")>[ \t]*\r"
)
_PLAIN_BLOCK = re.compile(rb"(?:[\x21-\x39\x3b-\x7e]+:[^\n]*\r\n(?:[ \t][^\n]*\r\n)*)*")
_SKIMMED_FIELD = re.compile(
    rb"\n(" + "|".join(_SKIMMED).encode() + rb"):[ \t]*([^\n]*(?:\n[ \t][^\n]*)*)",
    re.IGNORECASE,
)


class HeaderSkim(NamedTuple):
    """What a plain scan of a header block tells for certain, without the email parser.

    ``from_addr``, ``subject`` and ``return_path`` are exactly what :func:`read_headers`
    would give; ``ids`` holds every Message-ID that ``In-Reply-To``/``References`` could
    yield (and maybe more); ``report`` is False only when no Content-Type can carry a
    ``report-type``; ``recipients`` is the To/Cc text, lower-case without whitespace, and
    ``recipients_unclear`` says an address in it may be written in a way that text does not
    show (comments, quotes, encoded words). ``message_id`` is exact when ``message_id_known``.
    """

    from_addr: str | None
    subject: str
    return_path: str | None
    ids: frozenset[str]
    report: bool
    recipients: str
    recipients_unclear: bool
    message_id: str | None = None
    message_id_known: bool = False


def skim_headers(block: bytes) -> HeaderSkim | None:
    """Scan a header block (``BODY.PEEK[HEADER]``) for the few facts that decide whether a
    message is worth downloading; None when the block is not plain enough to be sure (encoded
    words, non-ASCII, unusual syntax): then :func:`read_headers` must parse it."""
    if block[:1] in (b" ", b"\t", b"\r", b"\n", b""):
        return None  # leading blank lines are dropped before parsing
    end = block.find(b"\r\n\r\n")  # the parser ends the header block at the first blank line
    head = block[: end + 2] if end >= 0 else block if block.endswith(b"\r\n") else block + b"\r\n"
    if not _PLAIN_BLOCK.fullmatch(head) or head.count(b"\r") != head.count(b"\n"):
        return None  # a line that is no header (the parser would end the block there), a lone CR
    joined: dict[str, list[str]] = {}
    for match in _SKIMMED_FIELD.finditer(b"\n" + head):
        value = match.group(2).replace(b"\r\n", b"")  # unfolded; no lone CR: the last is CRLF's
        if not _PRINTABLE_BYTES.fullmatch(value, 0, len(value) - 1):
            # control characters or 8-bit text: the parser may read them otherwise; but a
            # sender's 8-bit display name (common: raw UTF-8 names) before a plain <address>
            # leaves the address as the parser reads it
            named = _FROM_8BIT_NAME.fullmatch(value) if match.group(1).lower() == b"from" else None
            if named is None:
                return None
            value = b"<" + named.group(1) + b">\r"
        joined.setdefault(match.group(1).decode().lower(), []).append(value[:-1].decode())
    if b"=?" in head and any(
        "=?" in v
        for name in ("from", "in-reply-to", "references", "subject", "return-path")
        for v in joined.get(name, ())
    ):
        return None
    senders = joined.get("from", [])
    if len(senders) > 1:
        return None
    from_addr = None
    if senders:
        simple = _SIMPLE_FROM.fullmatch(senders[0])
        if simple is None:
            return None
        from_addr = (simple.group(1) or simple.group(2)).lower()
    ids: set[str] = set()
    for name in ("in-reply-to", "references"):
        for value in joined.get(name, ()):
            ids.update(normalize_msgid(i) for i in MSGID_RE.findall(value))
            ids.update(normalize_msgid(i) for i in ANGLE_LESS_ID_RE.findall(value))
    subjects = joined.get("subject", [])
    paths = joined.get("return-path", [])
    return_path = " ".join(paths[0].split()) if paths else ""
    recipients = joined.get("to", []) + joined.get("cc", [])
    message_ids = joined.get("message-id", [])
    message_id, message_id_known = None, not message_ids
    if len(message_ids) == 1:
        simple_id = _SIMPLE_MSGID.fullmatch(message_ids[0])
        if simple_id is not None and len(simple_id.group(1)) <= MAX_MESSAGE_ID:
            message_id, message_id_known = simple_id.group(1), True
    return HeaderSkim(
        from_addr=from_addr,
        subject=" ".join(subjects[0].split()) if subjects else "",
        return_path=return_path or None,
        ids=frozenset(i for i in ids if i),
        report=any("report" in v.lower() for v in joined.get("content-type", ())),
        recipients="".join("".join(recipients).lower().split()),
        recipients_unclear=any(c in v for v in recipients for c in ("=?", "(", '"', "\\")),
        message_id=message_id,
        message_id_known=message_id_known,
    )
