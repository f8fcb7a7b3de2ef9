"""IMAPClient underneath its public API, where outreach needs what it does not offer: the
one place outreach reaches into IMAPClient (and imaplib below it).

- `uid_fetch`: IMAPClient.fetch tokenizes every response in Python, which costs about as
  much as the transfer itself for thousands of small header blocks (benchmarks/README.md,
  "first read"). The usual answer is read with one regex; any other shape goes through
  IMAPClient's own parser, so the result is the same either way. Uses imaplib's `_command`,
  `_command_complete`, `_untagged_response` and IMAPClient's `_checkok`, `join_message_ids`,
  `seq_to_parenstr_upper` and `parse_fetch_response`.
- `start_idle`, `wait_for_news`: IMAPClient.idle() refuses untagged responses that arrive
  before the server's "+" (RFC 3501 7 allows them at any time), and idle_check reads with
  the socket non-blocking, so a response line that arrives in two pieces ended the session.
  Uses imaplib's `_command`, `_get_response`, `_get_line`, `tagged_commands`, `file` and
  IMAPClient's `_idle_tag` (so its public idle_done() ends the IDLE).

tests/test_compat.py runs against the lowest and highest IMAPClient the pins in
pyproject.toml allow (scripts/test-compat).
"""

from __future__ import annotations

import re
import selectors
import socket
import ssl
import time
from typing import Any

import imapclient
from imapclient.exceptions import IMAPClientError
from imapclient.imapclient import join_message_ids, seq_to_parenstr_upper
from imapclient.response_parser import parse_fetch_response, parse_response


def uid_fetch(
    client: imapclient.IMAPClient, uids: list[int], items: list[str]
) -> dict[int, dict[bytes, Any]]:
    """``IMAPClient.fetch`` (UID FETCH), with a quick reader for the usual answer.

    IMAPClient tokenizes every response in Python, which costs about as much as the
    transfer itself for thousands of small header blocks. The common shape, one
    ``* n FETCH (UID u [RFC822.SIZE s] BODY[...] {len}`` literal ``)`` per message, is read
    with one regex; any other shape (other items, unsolicited FLAGS, NIL, quoted strings)
    goes through IMAPClient's own parser, so the result is the same either way.
    """
    try:
        imap = client._imap
        use_uid = client.use_uid
    except AttributeError:
        return dict(client.fetch(uids, items))
    args = ["FETCH", join_message_ids(uids), seq_to_parenstr_upper(items)]
    if use_uid:
        args.insert(0, "UID")
    tag = imap._command(*args)
    typ, data = imap._command_complete("FETCH", tag)
    client._checkok("fetch", typ, data)
    typ, data = imap._untagged_response(typ, data, "FETCH")
    response = _quick_fetch_response(data) if use_uid else None
    if response is None:
        response = parse_fetch_response(data, client.normalise_times, use_uid)
    return {uid: response[uid] for uid in uids if uid in response}


def start_idle(client: imapclient.IMAPClient) -> bool:
    """IMAPClient.idle(), except that untagged responses before the server's "+" (mail
    may arrive just then; RFC 3501 7 allows them at any time) are read, not an error.
    True if one of them is news."""
    if not client.has_capability("IDLE"):  # also caches them for idle_done's check
        raise IMAPClientError("the server does not offer IDLE")
    imap = client._imap
    tag = imap._command("IDLE")
    news = False
    while (line := imap._get_response()) is not None:
        if imap.tagged_commands.get(tag):  # answered instead of idling: refused
            raise IMAPClientError(f"IDLE refused: {imap.tagged_commands[tag]}")
        news = news or (line.startswith(b"* ") and is_news(parse_untagged(line)))
    client._idle_tag = tag
    return news


def wait_for_news(client: imapclient.IMAPClient, deadline: float) -> bool:
    """In IDLE: True once the server reports new mail (EXISTS or RECENT), False at
    `deadline`. A line is read only once the socket (or a buffer before it) has data, and
    then read whole."""
    imap = client._imap
    sock = client.socket()
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        if not _buffered(imap.file, sock):
            with selectors.DefaultSelector() as waiting:  # poll: any fd number
                waiting.register(sock, selectors.EVENT_READ)
                if not waiting.select(remaining):
                    return False
        line = imap._get_line()  # whole, within the connection's timeout
        if line.startswith(b"* ") and is_news(parse_untagged(line)):
            return True


def parse_untagged(line: bytes) -> tuple[Any, ...]:
    """An untagged response as IMAPClient's idle_check returns it, e.g. (3, b'EXISTS')."""
    text = line[2:]
    if text.startswith((b"OK ", b"NO ", b"BYE ")):
        return tuple(text.split(b" ", 1))
    return tuple(parse_response([text]))


def is_news(response: tuple[Any, ...]) -> bool:
    return len(response) > 1 and response[1] in (b"EXISTS", b"RECENT")


def _buffered(file: Any, sock: socket.socket) -> bool:
    """Whether response bytes already wait where polling the socket cannot see them: in
    imaplib's read buffer (read along with the line before), or in the TLS layer."""
    if isinstance(sock, ssl.SSLSocket) and sock.pending():
        return True
    timeout = sock.gettimeout()
    sock.setblocking(False)
    try:
        return bool(file.peek(1))
    except OSError:  # nothing to read without waiting (TLS says so with an error)
        return False
    finally:
        sock.settimeout(timeout)


_QUICK_FETCH = re.compile(
    rb"(\d+) \(UID (\d+)(?: RFC822\.SIZE (\d+))? (BODY\[(?:HEADER)?\](?:<\d+>)?) \{(\d+)\}"
)


def _quick_fetch_response(data: list[Any]) -> dict[int, dict[bytes, Any]] | None:
    """What ``parse_fetch_response`` returns for the usual shape of a FETCH answer, or None
    when the answer has any other shape."""
    if len(data) % 2:
        return None
    out: dict[int, dict[bytes, Any]] = {}
    for index in range(0, len(data), 2):
        item, closing = data[index], data[index + 1]
        if type(item) is not tuple or len(item) != 2 or closing != b")":
            return None
        head, literal = item
        match = _QUICK_FETCH.fullmatch(head)
        if match is None or int(match.group(5)) != len(literal):
            return None
        uid = int(match.group(2))
        if uid in out:
            return None
        values: dict[bytes, Any] = {b"SEQ": int(match.group(1))}
        if match.group(3) is not None:
            values[b"RFC822.SIZE"] = int(match.group(3))
        values[match.group(4)] = literal
        out[uid] = values
    return out
