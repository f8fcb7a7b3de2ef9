"""The local test servers (outreach.testing.smtp_server) work with the real clients."""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from email.utils import make_msgid
from typing import TYPE_CHECKING, Any

import aiosmtplib
import pytest
from hypothesis import given
from hypothesis import strategies as st
from imapclient import IMAPClient
from imapclient.exceptions import LoginError

from outreach.testing.imap_server import LocalIMAPServer
from outreach.testing.ports import free_port, free_ports
from outreach.testing.smtp_server import LocalSMTPServer, ReceivedMessage

if TYPE_CHECKING:
    from conftest import TestCA

SENDER = "coordinator@district.test"


def make_msg(
    to: str = "partner@example.test", subject: str = "Check-in", **headers: str
) -> EmailMessage:
    m = EmailMessage()
    m["From"] = SENDER
    m["To"] = to
    m["Subject"] = subject
    m["Message-ID"] = make_msgid(domain="district.test")
    for k, v in headers.items():
        m[k.replace("_", "-")] = v
    m.set_content("Hello, how is the internship going?\n")
    return m


def send(
    server: LocalSMTPServer, msg: EmailMessage, **kwargs: Any
) -> tuple[dict[str, aiosmtplib.SMTPResponse], str]:
    kwargs.setdefault("timeout", 10)
    return asyncio.run(aiosmtplib.send(msg, hostname=server.host, port=server.port, **kwargs))


# --------------------------------------------------------------------------- SMTP basics


def test_free_ports_are_distinct_and_bindable() -> None:
    ports = free_ports(6)
    assert len(set(ports)) == 6
    with socket.socket() as s:
        s.bind(("127.0.0.1", free_port()))


def test_plain_send_is_recorded(smtp_server: LocalSMTPServer) -> None:
    msg = make_msg()
    errors, reply = send(smtp_server, msg)
    assert errors == {}
    assert reply.startswith("2.0.0 OK")
    (got,) = smtp_server.wait_for(1)
    assert isinstance(got, ReceivedMessage)
    assert got.mail_from == SENDER
    assert got.rcpt_tos == ("partner@example.test",)
    assert got.message["Message-ID"] == msg["Message-ID"]
    assert b"internship" in got.raw
    assert got.tls is False and got.auth_user is None
    assert abs(got.received_at - time.time()) < 5
    assert smtp_server.host == "127.0.0.1" and smtp_server.port > 0


def test_wait_for_times_out(smtp_server: LocalSMTPServer) -> None:
    t0 = time.monotonic()
    with pytest.raises(TimeoutError, match="0 of 1"):
        smtp_server.wait_for(1, timeout=0.2)
    assert time.monotonic() - t0 < 2


def test_concurrent_senders_are_all_recorded(smtp_server: LocalSMTPServer) -> None:
    async def main() -> None:
        await asyncio.gather(
            *(
                aiosmtplib.send(
                    make_msg(to=f"p{i}@example.test"),
                    hostname=smtp_server.host,
                    port=smtp_server.port,
                )
                for i in range(20)
            )
        )

    asyncio.run(main())
    got = smtp_server.wait_for(20)
    assert sorted(m.rcpt_tos[0] for m in got) == sorted(f"p{i}@example.test" for i in range(20))
    smtp_server.clear()
    assert smtp_server.messages == []


@pytest.fixture(scope="module")
def shared_smtp_server() -> Iterator[LocalSMTPServer]:
    """One server for all examples of a hypothesis test (function fixtures don't mix)."""
    with LocalSMTPServer() as server:
        yield server


@given(
    lines=st.lists(
        st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=80),
        max_size=20,
    )
)
def test_data_round_trips_byte_exact(shared_smtp_server: LocalSMTPServer, lines: list[str]) -> None:
    """Dot-stuffing and CRLF: what aiosmtplib sends is what the server records."""
    server = shared_smtp_server
    server.clear()
    body = "".join(line + "\r\n" for line in lines)
    raw = f"From: {SENDER}\r\nTo: a@example.test\r\nSubject: x\r\n\r\n{body}".encode()
    asyncio.run(
        aiosmtplib.send(
            raw,
            sender=SENDER,
            recipients=["a@example.test"],
            hostname=server.host,
            port=server.port,
        )
    )
    (got,) = server.wait_for(1)
    assert got.raw == raw


# --------------------------------------------------------------------------- TLS and AUTH


def test_starttls_verified_against_test_ca(smtp_tls_server: LocalSMTPServer) -> None:
    assert smtp_tls_server.ca_file
    ctx = smtp_tls_server.client_tls_context()
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    send(smtp_tls_server, make_msg(), start_tls=True, tls_context=ctx)
    (got,) = smtp_tls_server.wait_for(1)
    assert got.tls is True


def test_starttls_without_trusting_the_ca_fails(smtp_tls_server: LocalSMTPServer) -> None:
    # the system's default trust store does not know the trustme CA
    with pytest.raises(ssl.SSLCertVerificationError, match="CERTIFICATE_VERIFY_FAILED"):
        send(smtp_tls_server, make_msg(), start_tls=True, tls_context=ssl.create_default_context())
    assert smtp_tls_server.messages == []


def test_auth_required(smtp_server_factory: Callable[..., LocalSMTPServer]) -> None:
    server = smtp_server_factory(username="mailer", password="s3cret")
    send(server, make_msg(), username="mailer", password="s3cret")
    (got,) = server.wait_for(1)
    assert got.auth_user == "mailer"

    with pytest.raises(aiosmtplib.SMTPAuthenticationError) as bad:
        send(server, make_msg(), username="mailer", password="wrong")
    assert bad.value.code == 535

    with pytest.raises(aiosmtplib.SMTPSenderRefused) as anon:
        send(server, make_msg())
    assert anon.value.code == 530
    assert len(server.messages) == 1


def test_auth_after_starttls_and_implicit_tls(
    smtp_server_factory: Callable[..., LocalSMTPServer], tls_ca: TestCA
) -> None:
    starttls = smtp_server_factory(
        tls_context=tls_ca.server_context(),
        require_starttls=True,
        username="mailer",
        password="pw",
        ca_file=tls_ca.ca_file,
    )
    send(
        starttls,
        make_msg(),
        start_tls=True,
        tls_context=tls_ca.client_context(),
        username="mailer",
        password="pw",
    )
    assert starttls.wait_for(1)[0].auth_user == "mailer"
    # STARTTLS required: a client that refuses to upgrade is turned away
    with pytest.raises(aiosmtplib.SMTPException):
        send(starttls, make_msg(), start_tls=False)

    smtps = smtp_server_factory(
        tls_context=tls_ca.server_context(), implicit_tls=True, username="mailer", password="pw"
    )
    send(
        smtps,
        make_msg(),
        use_tls=True,
        tls_context=tls_ca.client_context(),
        username="mailer",
        password="pw",
    )
    (got,) = smtps.wait_for(1)
    assert got.tls is True and got.auth_user == "mailer"


# --------------------------------------------------------------------------- fault injection


def test_one_recipient_refused_other_delivered(smtp_server: LocalSMTPServer) -> None:
    smtp_server.rcpt_refusals = {"Bad@Example.test": "550 5.1.1 No such user"}
    msg = make_msg(to="good@example.test, bad@example.test")
    errors, _ = send(smtp_server, msg)
    assert set(errors) == {"bad@example.test"}
    assert errors["bad@example.test"].code == 550
    assert "No such user" in errors["bad@example.test"].message
    (got,) = smtp_server.wait_for(1)
    assert got.rcpt_tos == ("good@example.test",)

    # the only recipient refused: nothing is sent at all
    with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as info:
        send(smtp_server, make_msg(to="bad@example.test"))
    assert info.value.recipients[0].code == 550

    # a whole domain, added later from the test thread
    smtp_server.refuse("@gone.test", "550 5.1.2 Domain not found")
    with pytest.raises(aiosmtplib.SMTPRecipientsRefused):
        send(smtp_server, make_msg(to="x@gone.test"))
    assert len(smtp_server.messages) == 1


def test_rcpt_one_shot_response(smtp_server: LocalSMTPServer) -> None:
    smtp_server.rcpt_responses = ["450 4.2.0 Greylisted, try again"]
    with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as info:
        send(smtp_server, make_msg())
    assert info.value.recipients[0].code == 450
    send(smtp_server, make_msg())
    assert len(smtp_server.wait_for(1)) == 1


def test_data_451_once_then_success(smtp_server: LocalSMTPServer) -> None:
    smtp_server.queue_data_responses("451 4.3.0 Try again later")
    msg = make_msg()
    with pytest.raises(aiosmtplib.SMTPDataError) as info:
        send(smtp_server, msg)
    assert info.value.code == 451
    assert smtp_server.messages == []
    assert smtp_server.data_responses == []
    send(smtp_server, msg)
    (got,) = smtp_server.wait_for(1)
    assert got.message["Message-ID"] == msg["Message-ID"]


def test_data_responses_sequence(smtp_server: LocalSMTPServer) -> None:
    smtp_server.data_responses = ["554 5.7.1 Message rejected", "250 2.0.0 Custom OK"]
    with pytest.raises(aiosmtplib.SMTPDataError) as info:
        send(smtp_server, make_msg())
    assert info.value.code == 554
    _, reply = send(smtp_server, make_msg())
    assert reply == "2.0.0 Custom OK"
    assert len(smtp_server.messages) == 1
    with pytest.raises(ValueError):
        smtp_server.queue_data_responses("not a reply")


def test_drop_connection_after_n_messages(smtp_server: LocalSMTPServer) -> None:
    smtp_server.drop_after(2)

    async def one_connection() -> tuple[int, BaseException | None, bool]:
        client = aiosmtplib.SMTP(hostname=smtp_server.host, port=smtp_server.port, timeout=10)
        await client.connect()
        sent = 0
        try:
            for _ in range(5):
                await client.send_message(make_msg())
                sent += 1
        except aiosmtplib.SMTPException as exc:
            return sent, exc, client.is_connected
        return sent, None, client.is_connected

    sent, exc, connected = asyncio.run(one_connection())
    assert sent == 2
    assert isinstance(exc, aiosmtplib.SMTPResponseException) and exc.code == 421
    assert not connected
    assert smtp_server.drops == 1
    # one-shot: a new connection works again
    send(smtp_server, make_msg())
    assert len(smtp_server.wait_for(3)) == 3


def test_drop_during_data_without_reply(smtp_server: LocalSMTPServer) -> None:
    smtp_server.drop_after(0, reply=None, when="data")
    with pytest.raises(aiosmtplib.SMTPServerDisconnected):
        send(smtp_server, make_msg())
    assert smtp_server.messages == [] and smtp_server.drops == 1
    send(smtp_server, make_msg())
    assert len(smtp_server.wait_for(1)) == 1


def test_delay_and_client_timeout(smtp_server: LocalSMTPServer) -> None:
    smtp_server.delay = 0.3
    t0 = time.monotonic()
    send(smtp_server, make_msg())
    assert time.monotonic() - t0 >= 0.3
    smtp_server.delay = 2
    with pytest.raises(aiosmtplib.SMTPTimeoutError):
        send(smtp_server, make_msg(), timeout=0.3)
    smtp_server.reset_faults()
    assert smtp_server.delay == 0
    send(smtp_server, make_msg())


def test_on_message_callback(smtp_server_factory: Callable[..., LocalSMTPServer]) -> None:
    seen: list[tuple[ReceivedMessage, str]] = []
    fail = threading.Event()

    def deliver(msg: ReceivedMessage) -> None:
        if fail.is_set():
            raise RuntimeError("mailbox full")
        seen.append((msg, threading.current_thread().name))

    server = smtp_server_factory(on_message=deliver)
    send(server, make_msg())
    # called before the client got its 250
    assert len(seen) == 1 and seen[0][0].rcpt_tos == ("partner@example.test",)
    fail.set()
    with pytest.raises(aiosmtplib.SMTPDataError) as info:
        send(server, make_msg())
    assert info.value.code == 451
    assert len(server.messages) == 1


# --------------------------------------------------------------------------- outage


def test_restart_on_same_port(smtp_server: LocalSMTPServer) -> None:
    port = smtp_server.port

    async def hold_connection() -> aiosmtplib.SMTP:
        client = aiosmtplib.SMTP(hostname=smtp_server.host, port=port, timeout=5)
        await client.connect()
        return client

    async def scenario() -> None:
        client = await hold_connection()
        assert smtp_server.connections == 1
        await asyncio.get_running_loop().run_in_executor(None, smtp_server.stop)
        # the open connection is cut, new ones are refused
        with pytest.raises(aiosmtplib.SMTPServerDisconnected):
            await client.send_message(make_msg())
        with pytest.raises(aiosmtplib.SMTPConnectError):
            await aiosmtplib.send(make_msg(), hostname=smtp_server.host, port=port, timeout=5)

    asyncio.run(scenario())
    assert not smtp_server.running
    smtp_server.start()
    assert smtp_server.port == port and smtp_server.running
    send(smtp_server, make_msg())
    assert len(smtp_server.wait_for(1)) == 1
    smtp_server.restart()
    assert smtp_server.port == port
    send(smtp_server, make_msg())
    assert len(smtp_server.wait_for(2)) == 2  # the record survives restarts


def test_bind_error_is_reported() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        with pytest.raises(OSError):
            LocalSMTPServer(port=s.getsockname()[1]).start()


# --------------------------------------------------------------------------- IMAP


def raw_msg(subject: str = "Re: Check-in", **headers: str) -> tuple[bytes, str]:
    m = make_msg(to=SENDER, subject=subject, **headers)
    del m["From"]
    m["From"] = "partner@example.test"
    return m.as_bytes(), m["Message-ID"]


def test_imap_server_starts_empty(imap_server: LocalIMAPServer) -> None:
    assert imap_server.folders() == ["INBOX"]
    assert imap_server.messages() == []
    with imap_server.client() as c:
        assert c.select_folder("INBOX")[b"EXISTS"] == 0


def test_imap_append_search_fetch(imap_server: LocalIMAPServer) -> None:
    raw, mid = raw_msg(In_Reply_To="<orig@district.test>")
    uid = imap_server.append(raw, flags=[r"\Seen"])
    assert isinstance(uid, int) and uid >= 101

    with IMAPClient(imap_server.host, port=imap_server.port, ssl=False, timeout=10) as c:
        c.login(imap_server.user, imap_server.password)
        c.select_folder("INBOX", readonly=True)
        assert c.search(["HEADER", "Message-ID", mid]) == [uid]
        assert c.search(["HEADER", "In-Reply-To", "<orig@district.test>"]) == [uid]
        data = c.fetch([uid], ["BODY.PEEK[]", "FLAGS"])[uid]
        assert data[b"BODY[]"].replace(b"\r\n", b"\n") == raw.replace(b"\r\n", b"\n")
        assert b"\\Seen" in data[b"FLAGS"]
        assert b"UIDPLUS" in c.capabilities() and b"IDLE" in c.capabilities()

    (stored,) = imap_server.messages()
    assert stored.uid == uid and "\\Seen" in stored.flags
    assert stored.message["Message-ID"] == mid


def test_imap_folders_and_clear(imap_server: LocalIMAPServer) -> None:
    imap_server.create_folder("Outreach")
    imap_server.create_folder("Outreach/Bounces")
    imap_server.append(raw_msg()[0], folder="Outreach/Bounces")
    imap_server.append(raw_msg()[0])
    assert set(imap_server.folders()) == {"INBOX", "Outreach", "Outreach/Bounces"}
    assert len(imap_server.messages("Outreach/Bounces")) == 1
    assert len(imap_server.wait_for(1)) == 1
    imap_server.clear()
    assert imap_server.folders() == ["INBOX"] and imap_server.messages() == []


def test_imap_append_is_fast(imap_server: LocalIMAPServer) -> None:
    raw, _ = raw_msg()
    t0 = time.monotonic()
    for _ in range(50):
        imap_server.append(raw)
    assert time.monotonic() - t0 < 2.5  # ~40 ms each without TCP_NODELAY
    assert len(imap_server.messages()) == 50


def test_imap_wrong_password(imap_server: LocalIMAPServer) -> None:
    with imap_server.client(login=False) as c, pytest.raises(LoginError):
        c.login(imap_server.user, "wrong")


def test_imap_restart_same_port_new_uidvalidity(fresh_imap_server: LocalIMAPServer) -> None:
    server = fresh_imap_server
    assert server.append(raw_msg()[0]) == 101  # pymap's first UID
    assert server.append(raw_msg()[0]) == 102
    port, validity, pid = server.port, server.uidvalidity(), server.pid

    server.stop()
    assert not server.running and server.pid is None
    with pytest.raises(OSError):
        socket.create_connection((server.host, port), timeout=1).close()
    with pytest.raises(OSError):
        LocalIMAPServer(port=port).client()

    server.start()
    assert server.port == port and server.pid != pid
    assert server.messages() == []  # in-memory: all mail is gone
    assert server.uidvalidity() != validity
    assert server.append(raw_msg()[0]) == 101
    assert "starting pymap" in server.log_tail()


def test_imap_server_close_kills_process_and_removes_log() -> None:
    server = LocalIMAPServer(user="demo@example.test", password="pw")
    with server:
        assert server.running
        pid = server.pid
        with server.client() as c:
            assert c.list_folders()
        assert server.log_path is not None and server.log_path.exists()
    assert not server.running
    assert not server.log_path.exists()  # its own temporary log is removed by close()
    assert not os.path.exists(f"/proc/{pid}")  # killed and reaped
