"""The two compat modules, against real servers: what outreach does under aiosmtplib's and
IMAPClient's public API must give what their public calls give.

scripts/test-compat runs this file on the lowest and the highest aiosmtplib and IMAPClient
the pins in pyproject.toml allow, so a release that changes the internals fails here first
(the whole suite runs on the versions installed in .venv).
"""

from __future__ import annotations

import asyncio
import threading
import time
from importlib.metadata import version

import aiosmtplib
import pytest

from outreach.testing import partner_mail
from outreach.testing.imap_server import LocalIMAPServer
from outreach.testing.smtp_server import LocalSMTPServer
from outreach.transport import compat_aiosmtplib, compat_imapclient

MESSAGE = (
    b"From: c@district.test\r\nTo: p@partners.test\r\nSubject: x\r\n\r\n"
    b".a line that starts with a period\r\nbare LF\nbare CR\r..\r\nend"
)


def test_the_versions_under_test_are_reported() -> None:
    """So a run's output says which versions it checked."""
    print(f"aiosmtplib {version('aiosmtplib')}, IMAPClient {version('imapclient')}")


async def _send(server: LocalSMTPServer, raw: bytes) -> aiosmtplib.SMTPResponse:
    client = aiosmtplib.SMTP(hostname=server.host, port=server.port, start_tls=False)
    await client.connect()
    try:
        await client.ehlo()
        await compat_aiosmtplib.mail_from(client, "c@district.test")
        await compat_aiosmtplib.rcpt_to(client, "p@partners.test")
        return await compat_aiosmtplib.data(client, raw)
    finally:
        client.close()


def test_mail_rcpt_and_data_deliver_what_smtp_sendmail_would(
    smtp_server: LocalSMTPServer,
) -> None:
    response = asyncio.run(_send(smtp_server, MESSAGE))
    assert response.code == 250

    async def reference() -> None:
        client = aiosmtplib.SMTP(hostname=smtp_server.host, port=smtp_server.port)
        await client.connect()
        try:
            await client.sendmail("c@district.test", ["p@partners.test"], MESSAGE)
        finally:
            client.close()

    asyncio.run(reference())
    ours, theirs = smtp_server.wait_for(2)
    assert ours.raw == theirs.raw
    assert (ours.mail_from, ours.rcpt_tos) == ("c@district.test", ("p@partners.test",))


def test_a_refused_recipient_and_a_refused_message_raise_as_aiosmtplib_does(
    smtp_server: LocalSMTPServer,
) -> None:
    smtp_server.refuse("p@partners.test", "550 5.1.1 No such user")
    with pytest.raises(aiosmtplib.SMTPRecipientRefused) as refused:
        asyncio.run(_send(smtp_server, MESSAGE))
    assert refused.value.code == 550
    smtp_server.reset_faults()
    smtp_server.queue_data_responses("451 4.3.0 try later")
    with pytest.raises(aiosmtplib.SMTPDataError) as deferred:
        asyncio.run(_send(smtp_server, MESSAGE))
    assert deferred.value.code == 451


def test_uid_fetch_gives_what_imapclient_fetch_gives(imap_server: LocalIMAPServer) -> None:
    for number in range(3):
        imap_server.append(partner_mail.reply(MESSAGE, f"answer {number}"))
    with imap_server.client() as client:
        client.select_folder("INBOX", readonly=True)
        uids = sorted(client.search(["ALL"]))
        for items in (["BODY.PEEK[HEADER]", "RFC822.SIZE"], ["BODY.PEEK[]<0.100000>"], ["FLAGS"]):
            ours = compat_imapclient.uid_fetch(client, uids, items)
            theirs = client.fetch(uids, items)
            assert ours == {uid: theirs[uid] for uid in uids}, items


def test_idle_reports_mail_that_arrives_while_it_waits(imap_server: LocalIMAPServer) -> None:
    with imap_server.client() as client:
        client.select_folder("INBOX", readonly=True)
        assert compat_imapclient.start_idle(client) is False
        timer = threading.Timer(0.3, lambda: imap_server.append(partner_mail.reply(MESSAGE, "x")))
        timer.start()
        try:
            news = compat_imapclient.wait_for_news(client, time.monotonic() + 10)
        finally:
            client.idle_done()
            timer.join()
        assert news is True
        compat_imapclient.start_idle(client)
        try:  # nothing new: the wait ends at its deadline
            assert compat_imapclient.wait_for_news(client, time.monotonic() + 0.3) is False
        finally:
            client.idle_done()


def test_the_wire_form_of_data_is_aiosmtplibs() -> None:
    """`wire` skips aiosmtplib's two regex passes when a message needs neither; its output
    must be what aiosmtplib's data() sends, for any message (its own two patterns, as
    protocol.write_message_data applies them)."""
    import random

    from aiosmtplib.protocol import LINE_ENDINGS_REGEX, PERIOD_REGEX

    def reference(message: bytes) -> bytes:
        message = LINE_ENDINGS_REGEX.sub(b"\r\n", message)
        if not message.endswith(b"\r\n"):
            message += b"\r\n"
        return PERIOD_REGEX.sub(b"..", message) + b".\r\n"

    pieces = [b"a", b".", b"\r", b"\n", b"\r\n", b" ", b"..", b"x.", b"\r\n."]
    rng = random.Random(5)
    for _ in range(20_000):
        message = b"".join(rng.choice(pieces) for _ in range(rng.randint(0, 14)))
        assert compat_aiosmtplib.wire(message) == reference(message), message
    sample = b"From: coordinator@district.test\r\nSubject: hello\r\n\r\nHello.\r\n"
    assert compat_aiosmtplib.wire(sample) == sample + b".\r\n"
