"""aiosmtplib's MAIL, RCPT and DATA without its per-command work: the one place outreach
goes under aiosmtplib's public API.

Why (benchmarks/README.md, "send path"): SMTP.mail(), rcpt() and data() each parse the
addresses again, start a timer per command and make two regex passes over the whole
message; at a thousand messages a minute that was most of the send path's CPU. Here the
commands go out through SMTP.execute_command (public) with no timer of their own (the
caller's asyncio.timeout covers the whole message), and DATA's message is written to the
connection's protocol (`SMTP.protocol.write` and `read_response`, not public) once made
ready by `wire`. Responses are checked as aiosmtplib checks them and refusals raised as its
own exceptions, so the adapter handles them as from the public calls.

tests/test_compat.py runs against the lowest and highest aiosmtplib the pins in
pyproject.toml allow (scripts/test-compat); a new aiosmtplib that changes these internals
fails there first.
"""

from __future__ import annotations

import re

import aiosmtplib


def address_path(address: str) -> bytes:
    """<address> for MAIL and RCPT. Addresses are validated ASCII addr-specs on the way in
    (outreach.core.addresses), so aiosmtplib's own parsing of them (email.utils.parseaddr) is
    not needed; aiosmtplib still refuses CR and LF in a command."""
    return b"<" + address.encode("ascii") + b">"


async def mail_from(client: aiosmtplib.SMTP, sender: str) -> None:
    """MAIL FROM, as SMTP.mail() does it, without a timer of its own."""
    response = await client.execute_command(b"MAIL", b"FROM:" + address_path(sender), timeout=None)
    if response.code != 250:
        raise aiosmtplib.SMTPSenderRefused(response.code, response.message, sender)


async def rcpt_to(client: aiosmtplib.SMTP, recipient: str) -> None:
    """RCPT TO, as SMTP.rcpt() does it."""
    response = await client.execute_command(b"RCPT", b"TO:" + address_path(recipient), timeout=None)
    if response.code not in (250, 251):
        raise aiosmtplib.SMTPRecipientRefused(response.code, response.message, recipient)


_LINE_END = re.compile(rb"\r\n|\n|\r")
_LEADING_PERIOD = re.compile(rb"(?m)^\.")


def wire(raw: bytes) -> bytes:
    """The message as DATA carries it, as aiosmtplib's data() makes it: CRLF line ends,
    dot-stuffed, ended by "." (RFC 5321 4.5.2). Rendered messages have CRLF line ends
    throughout and seldom a line starting with "."; counting bytes spares the two regex
    passes over the whole message that data() makes every time."""
    crlf = raw.count(b"\r\n")
    if crlf != raw.count(b"\n") or crlf != raw.count(b"\r") or not raw.endswith(b"\r\n"):
        raw = _LINE_END.sub(b"\r\n", raw)
        if not raw.endswith(b"\r\n"):
            raw += b"\r\n"
    if raw.startswith(b".") or b"\n." in raw:
        raw = _LEADING_PERIOD.sub(b"..", raw)
    return raw + b".\r\n"


async def data(client: aiosmtplib.SMTP, raw: bytes) -> aiosmtplib.SMTPResponse:
    """DATA and the message, as SMTP.data() does it, with the message made ready by `wire`."""
    start = await client.execute_command(b"DATA", timeout=None)
    if start.code != 354:
        raise aiosmtplib.SMTPDataError(start.code, start.message)
    protocol = client.protocol
    if protocol is None:
        raise aiosmtplib.SMTPServerDisconnected("Connection lost")
    protocol.write(wire(raw))
    response = await protocol.read_response(timeout=None)
    if response.code != 250:
        raise aiosmtplib.SMTPDataError(response.code, response.message)
    return response
