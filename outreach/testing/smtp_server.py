"""Local mail servers for the test suite and for ``outreach demo``.

* :class:`LocalSMTPServer` -- an aiosmtpd SMTP server in a background thread of this
  process, on ``127.0.0.1`` and a real port. It records every accepted message and
  can inject faults (refused recipients, one-shot DATA replies, dropped connections,
  slowness), offer STARTTLS or implicit TLS and require AUTH.
* :class:`LocalIMAPServer` -- a pymap IMAP server (in-memory ``dict`` backend, one
  user) run as a child process, with helpers that APPEND and read mail via IMAPClient.
* :func:`free_port` / :func:`free_ports` -- free TCP ports on the loopback interface.

Nothing here talks to any host but the loopback interface, and nothing imports pytest.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import email
import email.policy
import hmac
import itertools
import logging
import os
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Literal

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

__all__ = [
    "LocalIMAPServer",
    "LocalSMTPServer",
    "ReceivedMessage",
    "StoredMessage",
    "free_port",
    "free_ports",
]

log = logging.getLogger(__name__)

LOCALHOST = "127.0.0.1"


# --------------------------------------------------------------------------- ports


def free_ports(count: int, host: str = LOCALHOST) -> list[int]:
    """Return *count* distinct TCP ports that are free on *host* right now.

    All sockets are bound at the same time, so the ports differ from each other. Another
    process may still take a port before the caller binds it (unavoidable, and rare).
    """
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def free_port(host: str = LOCALHOST) -> int:
    """Return one TCP port that is free on *host* right now."""
    return free_ports(1, host)[0]


def _port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


# --------------------------------------------------------------------------- SMTP


@dataclass(frozen=True)
class ReceivedMessage:
    """One message accepted by :class:`LocalSMTPServer` (an SMTP transaction)."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    raw: bytes  # the DATA exactly as received (dot-unstuffed), CRLF line ends
    received_at: float  # time.time() when accepted
    peer: Any = None  # (host, port) of the client
    tls: bool = False  # STARTTLS or implicit TLS was in effect
    auth_user: str | None = None  # the AUTH login, if the client authenticated
    mail_options: tuple[str, ...] = ()  # e.g. ("SIZE=123", "BODY=8BITMIME")
    rcpt_options: tuple[str, ...] = ()

    @property
    def message(self) -> EmailMessage:
        """The raw bytes parsed with ``email.policy.default`` (a new object each time)."""
        msg = email.message_from_bytes(self.raw, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        return msg


@dataclass(frozen=True)
class _Drop:
    at: int  # fires once this many messages were accepted in total
    reply: str | None  # sent before closing; None = close without any reply
    when: Literal["mail", "data"]


class _LoginDataWarningFilter(logging.Filter):
    """aiosmtpd 1.4 logs a deprecation warning on every successful AUTH: drop it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "login_data is deprecated" not in record.getMessage()


logging.getLogger("mail.log").addFilter(_LoginDataWarningFilter())


class _SMTPProtocol(SMTP):
    """aiosmtpd's SMTP protocol plus connection tracking and "reply, then hang up"."""

    def __init__(self, owner: LocalSMTPServer, handler: Any, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._owner = owner
        # set by a hook: the next reply is replaced by this one (None: no reply at all)
        # and the connection is closed right after
        self.hang_up: tuple[str | None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._owner._connections.add(self)

    def connection_lost(self, error: Exception | None) -> None:
        self._owner._connections.discard(self)
        super().connection_lost(error)

    @property
    def uses_tls(self) -> bool:
        return self._owner.implicit_tls or self._tls_protocol is not None

    async def push(self, status: Any) -> None:
        if self.hang_up is None:
            await super().push(status)
            return
        (reply,) = self.hang_up
        self.hang_up = None
        transport = self.transport
        if reply is not None:
            with contextlib.suppress(ConnectionError):
                await super().push(reply)
            if transport is not None:
                transport.close()
        elif transport is not None:
            transport.abort()  # type: ignore[attr-defined]
        # like aiosmtpd's own QUIT: end the command loop (we are running inside it)
        if self._handler_coroutine is not None:
            self._handler_coroutine.cancel()


class _Handler:
    """aiosmtpd hooks; all state lives in the owning LocalSMTPServer."""

    def __init__(self, owner: LocalSMTPServer) -> None:
        self.owner = owner

    async def handle_MAIL(  # noqa: N802 (aiosmtpd's hook names)
        self,
        server: _SMTPProtocol,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        return self.owner._on_mail(server, session, envelope, address, mail_options)

    async def handle_RCPT(  # noqa: N802
        self,
        server: _SMTPProtocol,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        return self.owner._on_rcpt(envelope, address, rcpt_options)

    async def handle_DATA(  # noqa: N802
        self, server: _SMTPProtocol, session: Session, envelope: Envelope
    ) -> str:
        return await self.owner._on_data(server, session, envelope)

    # OAuth2 bearer tokens (offered only with LocalSMTPServer(bearer=...))
    async def auth_XOAUTH2(self, server: _SMTPProtocol, args: list[str]) -> AuthResult:  # noqa: N802
        return await self._bearer(server, args, "XOAUTH2")

    async def auth_OAUTHBEARER(self, server: _SMTPProtocol, args: list[str]) -> AuthResult:  # noqa: N802
        return await self._bearer(server, args, "OAUTHBEARER")

    async def _bearer(self, server: _SMTPProtocol, args: list[str], name: str) -> AuthResult:
        from outreach.testing.oauth2_server import smtp_bearer_auth

        check = self.owner.bearer or (lambda token: None)
        result: AuthResult = await smtp_bearer_auth(
            server, args, name, check, self.owner.bearer_logins.append
        )
        return result


class LocalSMTPServer:
    """An SMTP server (aiosmtpd) in a background thread, for tests and the demo.

    Usage::

        with LocalSMTPServer() as smtp:             # or smtp = LocalSMTPServer().start()
            ... send to (smtp.host, smtp.port) ...
            msgs = smtp.wait_for(1, timeout=5)      # list[ReceivedMessage]

    ``port=0`` (default) binds a free port on the first start(); the port is then kept,
    so ``stop()`` + ``start()`` (or ``restart()``) brings the server back on the SAME port
    (SO_REUSEADDR) -- use it to simulate an outage. ``stop()`` also cuts every open client
    connection. Recorded messages survive a restart (``clear()`` forgets them).

    TLS: ``tls_context`` is a server-side ``ssl.SSLContext`` (certificate loaded). By
    default it is offered as STARTTLS (``require_starttls=True`` refuses commands other
    than EHLO/NOOP/QUIT before it); with ``implicit_tls=True`` the port speaks TLS from the
    first byte instead (SMTPS). ``ca_file`` is only informational: the PEM file of the CA
    that signed the certificate, for clients (see :meth:`client_tls_context`).

    AUTH: pass ``username`` and ``password`` (PLAIN and LOGIN). Then MAIL FROM is refused
    with 530 until the client has authenticated (``auth_required=False`` to allow both).
    AUTH is offered only over TLS when STARTTLS is configured (like real servers), and on
    plain connections otherwise (``auth_require_tls`` overrides this).

    Fault injection -- thread-safe, settable from the test thread at any time, also as
    constructor keywords:

    * ``rcpt_refusals``: ``{"bad@x.test": "550 5.1.1 No such user"}``; a key
      ``"@domain"`` matches the whole domain. Persistent until changed. ``refuse()`` adds.
    * ``rcpt_responses``: FIFO of one-shot replies for the next RCPT TO commands, e.g.
      ``["450 4.2.0 Greylisted"]``.
    * ``data_responses``: FIFO of one-shot replies to the end of DATA, e.g.
      ``["451 4.3.0 Try again later"]``: that message is NOT recorded. An entry starting
      with ``2`` accepts (and records) the message with that reply text.
    * ``drop_after(n, reply="421 ...", when="mail")``: after *n* more accepted messages,
      the next MAIL FROM (``when="data"``: the next message's end of DATA, message not
      recorded) is answered with *reply* and the connection is closed; ``reply=None`` closes
      without a word. One-shot; ``drops`` counts how often it fired.
    * ``delay``: seconds to wait before answering the end of DATA (slow server).
    * ``auth_reply``: every AUTH fails with this reply, where ``{sasl}`` stands for the
      base64 the client sent (PLAIN: ``\\0user\\0password``; LOGIN: the password's),
      ``{login}`` and ``{password}`` for what it decoded: a server that quotes the
      credentials it refuses, e.g. ``"535 5.7.8 Authentication failed: {sasl}"``.
    * ``reset_faults()`` clears all of the above.

    ``on_message(msg: ReceivedMessage)`` is called (in a worker thread, awaited) for every
    message before the client gets its 250: when it returns, the client is told "250" and
    the message is recorded; if it raises, the client gets "451 4.3.0" and nothing is
    recorded. The demo uses it to deliver replies and bounces into a LocalIMAPServer.
    """

    def __init__(
        self,
        host: str = LOCALHOST,
        port: int = 0,
        *,
        tls_context: ssl.SSLContext | None = None,
        implicit_tls: bool = False,
        require_starttls: bool = False,
        username: str | None = None,
        password: str | None = None,
        auth_required: bool | None = None,
        auth_require_tls: bool | None = None,
        on_message: Callable[[ReceivedMessage], None] | None = None,
        hostname: str = "localhost",
        data_size_limit: int | None = 32 * 1024 * 1024,
        enable_smtputf8: bool = True,
        ca_file: str | os.PathLike[str] | None = None,
        rcpt_refusals: dict[str, str] | None = None,
        rcpt_responses: Iterable[str] = (),
        data_responses: Iterable[str] = (),
        delay: float = 0.0,
        auth_reply: str | None = None,
        auth_exclude: Iterable[str] = (),
        bearer: Callable[[str], str | None] | None = None,
    ) -> None:
        if implicit_tls and tls_context is None:
            raise ValueError("implicit_tls=True needs a tls_context")
        if (username is None) != (password is None):
            raise ValueError("give both username and password, or neither")
        self.host = host
        self.port = port
        self.tls_context = tls_context
        self.implicit_tls = implicit_tls
        self.require_starttls = require_starttls and not implicit_tls
        self.username = username
        self.password = password
        # OAuth2: AUTH XOAUTH2 and OAUTHBEARER, `bearer(token)` naming the token's user
        # (e.g. LocalOAuth2Server.introspect_user); each attempt is kept in bearer_logins
        self.bearer = bearer
        self.bearer_logins: list[tuple[str, str, bool, bytes]] = []
        logs_in = username is not None or bearer is not None
        self.auth_required = logs_in if auth_required is None else auth_required
        if auth_require_tls is None:
            # aiosmtpd only knows about STARTTLS: over implicit TLS it must be False
            auth_require_tls = tls_context is not None and not implicit_tls
        self.auth_require_tls = auth_require_tls
        self.on_message = on_message
        self.hostname = hostname
        self.data_size_limit = data_size_limit
        self.enable_smtputf8 = enable_smtputf8
        self.ca_file = str(ca_file) if ca_file is not None else None

        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._messages: list[ReceivedMessage] = []
        self._accepted_total = 0
        self._rcpt_refusals: dict[str, str] = {}
        self._rcpt_responses: collections.deque[str] = collections.deque()
        self._data_responses: collections.deque[str] = collections.deque()
        self._delay = 0.0
        self._drop: _Drop | None = None
        self.drops = 0
        self.rcpt_refusals = rcpt_refusals or {}
        self.rcpt_responses = list(rcpt_responses)
        self.data_responses = list(data_responses)
        self.delay = delay
        self.auth_reply = auth_reply
        self.auth_exclude = tuple(auth_exclude)  # mechanisms not offered, e.g. ("PLAIN",)

        self._handler = _Handler(self)
        self._connections: set[_SMTPProtocol] = set()
        self._queue_ids = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.AbstractServer | None = None
        self._state_lock = threading.Lock()

    # ------------------------------------------------------------------ lifecycle

    @property
    def running(self) -> bool:
        return self._thread is not None

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    def start(self) -> LocalSMTPServer:
        """Start listening (idempotent: does nothing when already running)."""
        with self._state_lock:
            if self._thread is not None:
                return self
            loop = asyncio.new_event_loop()
            ready = threading.Event()
            errors: list[BaseException] = []
            thread = threading.Thread(
                target=self._run,
                args=(loop, ready, errors),
                name=f"LocalSMTPServer-{self.port or 'new'}",
                daemon=True,
            )
            thread.start()
            if not ready.wait(15):
                raise RuntimeError("LocalSMTPServer did not start within 15 s")
            if errors:
                thread.join(5)
                raise errors[0]
            self._loop, self._thread = loop, thread
            return self

    def stop(self) -> None:
        """Stop listening and cut all client connections (idempotent)."""
        with self._state_lock:
            loop, thread = self._loop, self._thread
            if loop is None or thread is None:
                return
            try:
                fut = asyncio.run_coroutine_threadsafe(self._close_all(), loop)
                fut.result(timeout=10)
            finally:
                loop.call_soon_threadsafe(loop.stop)
                thread.join(15)
                self._loop = self._thread = None

    def restart(self) -> LocalSMTPServer:
        self.stop()
        return self.start()

    def __enter__(self) -> LocalSMTPServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<LocalSMTPServer {self.host}:{self.port} {state}>"

    def _run(
        self, loop: asyncio.AbstractEventLoop, ready: threading.Event, errors: list[BaseException]
    ) -> None:
        asyncio.set_event_loop(loop)
        try:
            server = loop.run_until_complete(
                loop.create_server(
                    self._make_protocol,
                    host=self.host,
                    port=self.port,
                    ssl=self.tls_context if self.implicit_tls else None,
                    reuse_address=True,
                )
            )
        except BaseException as exc:  # report bind errors etc. to start()
            errors.append(exc)
            ready.set()
            loop.close()
            return
        self._server = server
        self.port = server.sockets[0].getsockname()[1]
        ready.set()
        try:
            loop.run_forever()
        finally:
            tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for t in tasks:
                t.cancel()
            if tasks:
                loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()
            self._server = None

    async def _close_all(self) -> None:
        if self._server is not None:
            self._server.close()
        for proto in list(self._connections):
            if proto.transport is not None:
                proto.transport.abort()  # type: ignore[attr-defined]
        if self._server is not None:
            await self._server.wait_closed()
        for _ in range(3):  # let connection_lost() callbacks run
            await asyncio.sleep(0)

    def _make_protocol(self) -> _SMTPProtocol:
        authenticator = self._authenticate if self.username is not None else None
        logs_in = self.username is not None or self.bearer is not None
        return _SMTPProtocol(
            self,
            self._handler,
            hostname=self.hostname,
            ident="outreach LocalSMTPServer",
            tls_context=None if self.implicit_tls else self.tls_context,
            require_starttls=self.require_starttls,
            # without credentials: hide AUTH on plain connections, fail it everywhere
            auth_require_tls=self.auth_require_tls if logs_in else True,
            authenticator=authenticator,
            auth_exclude_mechanism=[*self.auth_exclude]
            + ([] if self.bearer else ["XOAUTH2", "OAUTHBEARER"]),
            data_size_limit=self.data_size_limit,
            enable_SMTPUTF8=self.enable_smtputf8,
            loop=self._loop or asyncio.get_running_loop(),
        )

    # ------------------------------------------------------------------ recording

    @property
    def messages(self) -> list[ReceivedMessage]:
        """A snapshot (copy) of the messages accepted so far, oldest first."""
        with self._lock:
            return list(self._messages)

    def clear(self) -> None:
        """Forget the recorded messages (fault settings are kept)."""
        with self._lock:
            self._messages.clear()

    def wait_for(self, count: int, timeout: float = 5.0) -> list[ReceivedMessage]:
        """Block until at least *count* messages are recorded; return all of them.

        Raises TimeoutError (saying how many arrived) after *timeout* seconds.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self._messages) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(
                        f"LocalSMTPServer: {len(self._messages)} of {count} messages "
                        f"after {timeout} s"
                    )
                self._cond.wait(left)
            return list(self._messages)

    # ------------------------------------------------------------------ faults

    @property
    def rcpt_refusals(self) -> dict[str, str]:
        with self._lock:
            return dict(self._rcpt_refusals)

    @rcpt_refusals.setter
    def rcpt_refusals(self, value: dict[str, str]) -> None:
        refusals = {k.lower(): _check_reply(v) for k, v in value.items()}
        with self._lock:
            self._rcpt_refusals = refusals

    def refuse(self, address: str, reply: str = "550 5.1.1 No such user") -> None:
        """Refuse *address* (or ``"@domain"``) at RCPT TO with *reply* from now on."""
        with self._lock:
            self._rcpt_refusals[address.lower()] = _check_reply(reply)

    @property
    def rcpt_responses(self) -> list[str]:
        with self._lock:
            return list(self._rcpt_responses)

    @rcpt_responses.setter
    def rcpt_responses(self, value: Iterable[str]) -> None:
        replies = [_check_reply(r) for r in value]
        with self._lock:
            self._rcpt_responses = collections.deque(replies)

    @property
    def data_responses(self) -> list[str]:
        with self._lock:
            return list(self._data_responses)

    @data_responses.setter
    def data_responses(self, value: Iterable[str]) -> None:
        replies = [_check_reply(r) for r in value]
        with self._lock:
            self._data_responses = collections.deque(replies)

    def queue_data_responses(self, *replies: str) -> None:
        """Append one-shot replies for the next ends of DATA."""
        checked = [_check_reply(r) for r in replies]
        with self._lock:
            self._data_responses.extend(checked)

    @property
    def delay(self) -> float:
        return self._delay

    @delay.setter
    def delay(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("delay must be >= 0")
        self._delay = float(seconds)

    def drop_after(
        self,
        n: int = 0,
        reply: str | None = "421 4.3.2 Service shutting down, closing transmission channel",
        when: Literal["mail", "data"] = "mail",
    ) -> None:
        """Hang up once, after *n* more accepted messages (see the class docstring)."""
        if n < 0:
            raise ValueError("n must be >= 0")
        if when not in ("mail", "data"):
            raise ValueError("when must be 'mail' or 'data'")
        if reply is not None:
            _check_reply(reply)
        with self._lock:
            self._drop = _Drop(at=self._accepted_total + n, reply=reply, when=when)

    def reset_faults(self) -> None:
        """Clear refusals, queued replies, a pending drop and the delay."""
        with self._lock:
            self._rcpt_refusals = {}
            self._rcpt_responses.clear()
            self._data_responses.clear()
            self._drop = None
            self._delay = 0.0
            self.auth_reply = None

    def client_tls_context(self) -> ssl.SSLContext:
        """A verifying client context that trusts ``ca_file`` (needs ``ca_file``)."""
        if self.ca_file is None:
            raise ValueError("this LocalSMTPServer has no ca_file")
        return ssl.create_default_context(cafile=self.ca_file)

    @property
    def connections(self) -> int:
        """Number of client connections open right now."""
        return len(self._connections)

    # ------------------------------------------------------------------ hooks

    def _authenticate(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        mechanism: str,
        auth_data: Any,
    ) -> AuthResult:
        if (
            self.username is None
            or self.password is None
            or not isinstance(auth_data, LoginPassword)
        ):
            return AuthResult(success=False, handled=False)
        if self.auth_reply is not None:
            login, password = auth_data.login or b"", auth_data.password or b""
            sent = b"\0" + login + b"\0" + password if mechanism == "PLAIN" else password
            reply = self.auth_reply.format(
                sasl=base64.b64encode(sent).decode("ascii"),
                login=login.decode(errors="replace"),
                password=password.decode(errors="replace"),
            )
            return AuthResult(success=False, handled=False, message=_check_reply(reply))
        ok = hmac.compare_digest(auth_data.login, self.username.encode()) & hmac.compare_digest(
            auth_data.password, self.password.encode()
        )
        return AuthResult(success=ok, handled=False, auth_data=self.username if ok else None)

    def _take_drop(self, when: str) -> _Drop | None:
        with self._lock:
            drop = self._drop
            if drop is None or drop.when != when or self._accepted_total < drop.at:
                return None
            self._drop = None
            self.drops += 1
            return drop

    def _on_mail(
        self,
        server: _SMTPProtocol,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        if self.auth_required and not session.authenticated:
            return "530 5.7.0 Authentication required"
        drop = self._take_drop("mail")
        if drop is not None:
            server.hang_up = (drop.reply,)
            return drop.reply or "421 4.3.2 closing"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 OK"

    def _on_rcpt(self, envelope: Envelope, address: str, rcpt_options: list[str]) -> str:
        with self._lock:
            addr = address.lower()
            reply = self._rcpt_refusals.get(addr)
            if reply is None and "@" in addr:
                reply = self._rcpt_refusals.get("@" + addr.rsplit("@", 1)[1])
            if reply is None and self._rcpt_responses:
                reply = self._rcpt_responses.popleft()
        if reply is not None and not reply.startswith("2"):
            return reply
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return reply or "250 2.1.5 OK"

    async def _on_data(self, server: _SMTPProtocol, session: Session, envelope: Envelope) -> str:
        if self._delay:
            await asyncio.sleep(self._delay)
        drop = self._take_drop("data")
        if drop is not None:
            server.hang_up = (drop.reply,)
            return drop.reply or "421 4.3.2 closing"
        with self._lock:
            reply = self._data_responses.popleft() if self._data_responses else None
        if reply is not None and not reply.startswith("2"):
            return reply
        raw = envelope.original_content or b""
        msg = ReceivedMessage(
            mail_from=envelope.mail_from or "",
            rcpt_tos=tuple(envelope.rcpt_tos),
            raw=bytes(raw),
            received_at=time.time(),
            peer=session.peer,
            tls=server.uses_tls,
            auth_user=session.auth_data if session.authenticated else None,
            mail_options=tuple(envelope.mail_options),
            rcpt_options=tuple(envelope.rcpt_options),
        )
        if self.on_message is not None:
            try:
                await asyncio.get_running_loop().run_in_executor(None, self.on_message, msg)
            except Exception:
                log.exception("LocalSMTPServer: on_message callback failed")
                return "451 4.3.0 Local delivery failed"
        with self._cond:
            self._messages.append(msg)
            self._accepted_total += 1
            self._cond.notify_all()
        return reply or f"250 2.0.0 OK queued as L{next(self._queue_ids):06d}"


def _check_reply(reply: str) -> str:
    code = reply[:3]
    if not (code.isdigit() and code[0] in "2345" and (len(reply) == 3 or reply[3] in " -")):
        raise ValueError(f"not an SMTP reply: {reply!r}")
    return reply


# --------------------------------------------------------------------------- IMAP


@dataclass(frozen=True)
class StoredMessage:
    """One message in a LocalIMAPServer folder."""

    uid: int
    flags: tuple[str, ...]
    raw: bytes
    folder: str = "INBOX"

    @property
    def message(self) -> EmailMessage:
        msg = email.message_from_bytes(self.raw, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        return msg


_PYMAP_LAUNCHER = """\
import os, sys, threading, time
parent = os.getppid()
def watchdog():
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(0)
threading.Thread(target=watchdog, daemon=True).start()
sys.argv[0] = "pymap"
from pymap.main import main
main()
"""


@dataclass
class _Proc:
    popen: subprocess.Popen[bytes]
    log_file: Any = field(repr=False)


class LocalIMAPServer:
    """A pymap IMAP4rev1 server (in-memory ``dict`` backend) in a child process.

    Usage::

        with LocalIMAPServer() as imap:          # or imap = LocalIMAPServer().start()
            imap.append(raw_bytes)               # -> UID
            with imap.client() as c: ...         # logged-in IMAPClient (plain, TCP_NODELAY)
            imap.messages("INBOX")               # list[StoredMessage], by UID

    One user (``user``/``password``; LOGIN and AUTHENTICATE PLAIN), no TLS, on
    ``host``:``port`` (``port=0``: a free port is picked on the first start and kept).
    The mailbox starts EMPTY: only INBOX, no messages (pymap loads its demo messages only
    with ``--demo-data``, which is not passed). Everything lives in the child's memory:

    * ``stop()`` kills the process and all mail is gone; ``start()``/``restart()`` brings up
      an empty server on the SAME port. UIDs start at 101 again and every folder gets a
      NEW UIDVALIDITY (pymap draws it from the clock and a random number), so a restart is
      how to test a client's UIDVALIDITY-change handling.
    * ``clear()`` deletes all messages and all folders but INBOX without a restart: fast,
      but UIDs keep counting up and UIDVALIDITY stays the same.

    pymap capabilities: IDLE, UIDPLUS (APPEND returns the UID), MOVE, MULTIAPPEND,
    ``SEARCH HEADER``; no NAMESPACE, CONDSTORE, ESEARCH, SORT. Each LOGIN costs ~0.1 s
    (PBKDF2), so the helpers here reuse one connection. The child's stdout/stderr go to
    ``log_path`` (a temporary file made at the first start unless given; ``close()`` or
    leaving the ``with`` block deletes it); ``log_tail()`` returns its end.
    """

    def __init__(
        self,
        user: str = "coordinator@example.test",
        password: str = "secret",
        host: str = LOCALHOST,
        port: int = 0,
        *,
        log_path: str | os.PathLike[str] | None = None,
        startup_timeout: float = 20.0,
    ) -> None:
        self.user = user
        self.password = password
        self.host = host
        self.port = port
        self.startup_timeout = startup_timeout
        self._own_log = log_path is None
        # a temporary file is made on the first start()
        self.log_path: Path | None = Path(log_path) if log_path is not None else None
        self._proc: _Proc | None = None
        self._helper: Any = None  # IMAPClient, created on first use
        self._helper_lock = threading.RLock()
        self._state_lock = threading.RLock()

    # ------------------------------------------------------------------ lifecycle

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.popen.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.popen.pid if self._proc is not None else None

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    def command(self) -> list[str]:
        """The command line of the child process.

        pymap has no ``__main__`` module (``python -m pymap`` fails), so its console-script
        function is called with ``-c``, behind a watchdog thread that ends the child when
        this process dies without calling stop() (e.g. a test run killed with SIGKILL).
        """
        return [
            sys.executable,
            "-c",
            _PYMAP_LAUNCHER,
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--no-tls",
            "dict",
            "--demo-user",
            self.user,
            "--demo-password",
            self.password,
        ]

    def start(self) -> LocalIMAPServer:
        """Start the child process and wait until it answers (idempotent)."""
        with self._state_lock:
            if self.running:
                return self
            if self._proc is not None:  # died on its own
                self._reap()
            if self.port == 0:
                self.port = free_port(self.host)
            if _port_open(self.host, self.port):
                raise RuntimeError(f"LocalIMAPServer: port {self.port} is already in use")
            if self.log_path is None:
                fd, name = tempfile.mkstemp(prefix="outreach-pymap-", suffix=".log")
                os.close(fd)
                self.log_path = Path(name)
            log_file = open(self.log_path, "ab")  # noqa: SIM115 (closed in _reap)
            log_file.write(f"--- starting pymap on {self.host}:{self.port}\n".encode())
            log_file.flush()
            env = dict(os.environ, PYTHONUNBUFFERED="1")
            popen = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # a Ctrl-C in the terminal is not meant for it
            )
            self._proc = _Proc(popen, log_file)
            deadline = time.monotonic() + self.startup_timeout
            while True:
                if popen.poll() is not None:
                    tail = self.log_tail()
                    self._reap()
                    raise RuntimeError(
                        f"pymap exited with code {popen.returncode} at start:\n{tail}"
                    )
                if self._greets():
                    return self
                if time.monotonic() > deadline:
                    tail = self.log_tail()
                    self.stop()
                    raise RuntimeError(
                        f"pymap did not answer on {self.host}:{self.port} within "
                        f"{self.startup_timeout} s:\n{tail}"
                    )
                time.sleep(0.02)

    def _greets(self) -> bool:
        """True when an IMAP server greets on our port (reads the '* OK' line)."""
        try:
            with socket.create_connection((self.host, self.port), timeout=1) as s:
                return s.recv(64).startswith(b"* OK")
        except OSError:
            return False

    def stop(self) -> None:
        """Kill the child process (TERM, then KILL after 5 s) and reap it (idempotent)."""
        with self._state_lock:
            self._close_helper()
            if self._proc is None:
                return
            popen = self._proc.popen
            if popen.poll() is None:
                popen.send_signal(signal.SIGTERM)
                try:
                    popen.wait(5)
                except subprocess.TimeoutExpired:
                    popen.kill()
                    popen.wait(5)
            self._reap()
            # the listening socket dies with the process; make sure before a restart
            deadline = time.monotonic() + 5
            while _port_open(self.host, self.port, 0.1) and time.monotonic() < deadline:
                time.sleep(0.02)

    def _reap(self) -> None:
        if self._proc is not None:
            with contextlib.suppress(Exception):
                self._proc.popen.wait(1)
            self._proc.log_file.close()
            self._proc = None

    def restart(self) -> LocalIMAPServer:
        """Stop and start again on the same port: empty mailbox, new UIDVALIDITY."""
        self.stop()
        return self.start()

    def close(self) -> None:
        """stop(), and remove the log file if this object created it."""
        self.stop()
        if self._own_log and self.log_path is not None:
            with contextlib.suppress(OSError):
                self.log_path.unlink()

    def __enter__(self) -> LocalIMAPServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = f"pid {self.pid}" if self.running else "stopped"
        return f"<LocalIMAPServer {self.user}@{self.host}:{self.port} {state}>"

    def log_tail(self, lines: int = 30) -> str:
        if self.log_path is None:
            return ""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    # ------------------------------------------------------------------ clients

    def client(self, *, timeout: float = 10.0, login: bool = True) -> Any:
        """A new IMAPClient connected (plain, ``ssl=False``) and, by default, logged in.

        TCP_NODELAY is set: without it pymap's replies to APPEND wait for Nagle's
        algorithm (~40 ms each). Use as a context manager to log out.
        """
        from imapclient import IMAPClient  # imported here: IMAPClient is slow to import

        c = IMAPClient(self.host, port=self.port, ssl=False, timeout=timeout)
        try:
            c.socket().setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if login:
                c.login(self.user, self.password)
        except BaseException:
            with contextlib.suppress(Exception):
                c.shutdown()
            raise
        return c

    def _close_helper(self) -> None:
        with self._helper_lock:
            helper, self._helper = self._helper, None
            if helper is not None:
                with contextlib.suppress(Exception):
                    helper.shutdown()

    def _with_helper(self, fn: Callable[[Any], Any]) -> Any:
        """Run fn(client) on the shared helper connection; reconnect once on failure."""
        from imapclient.exceptions import IMAPClientAbortError

        with self._helper_lock:
            for attempt in (1, 2):
                if self._helper is None:
                    self._helper = self.client()
                try:
                    return fn(self._helper)
                except (OSError, IMAPClientAbortError, EOFError):
                    self._close_helper()
                    if attempt == 2:
                        raise
        raise AssertionError("unreachable")

    # ------------------------------------------------------------------ helpers

    def append(
        self,
        raw: bytes | str | EmailMessage,
        folder: str = "INBOX",
        flags: Sequence[str | bytes] = (),
        msg_time: Any = None,
    ) -> int | None:
        """APPEND a message to *folder*; return its UID (from UIDPLUS' APPENDUID)."""
        if isinstance(raw, EmailMessage):
            raw = raw.as_bytes(policy=email.policy.SMTP)
        elif isinstance(raw, str):
            raw = raw.encode()
        data = raw

        def do(c: Any) -> int | None:
            resp = c.append(folder, data, flags=tuple(flags), msg_time=msg_time)
            return _appenduid(resp)

        result: int | None = self._with_helper(do)
        return result

    def messages(self, folder: str = "INBOX") -> list[StoredMessage]:
        """All messages of *folder* (UID, flags, raw bytes), by UID; marks nothing read."""

        def do(c: Any) -> list[StoredMessage]:
            c.select_folder(folder, readonly=True)
            uids = c.search("ALL")
            if not uids:
                return []
            data = c.fetch(uids, ["FLAGS", "BODY.PEEK[]"])
            out = [
                StoredMessage(
                    uid=uid,
                    flags=tuple(_text(f) for f in d[b"FLAGS"]),
                    raw=d[b"BODY[]"],
                    folder=folder,
                )
                for uid, d in data.items()
            ]
            return sorted(out, key=lambda m: m.uid)

        result: list[StoredMessage] = self._with_helper(do)
        return result

    def wait_for(
        self, count: int, folder: str = "INBOX", timeout: float = 5.0
    ) -> list[StoredMessage]:
        """Poll until *folder* holds at least *count* messages; return them."""
        deadline = time.monotonic() + timeout
        while True:
            msgs = self.messages(folder)
            if len(msgs) >= count:
                return msgs
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"LocalIMAPServer: {len(msgs)} of {count} messages in {folder} "
                    f"after {timeout} s"
                )
            time.sleep(0.05)

    def folders(self) -> list[str]:
        """Names of all folders (INBOX included)."""
        result: list[str] = self._with_helper(
            lambda c: [_text(name) for _flags, _delim, name in c.list_folders()]
        )
        return result

    def create_folder(self, name: str) -> None:
        self._with_helper(lambda c: c.create_folder(name))

    def delete_folder(self, name: str) -> None:
        self._with_helper(lambda c: c.delete_folder(name))

    def uidvalidity(self, folder: str = "INBOX") -> int:
        result: int = self._with_helper(
            lambda c: c.folder_status(folder, ["UIDVALIDITY"])[b"UIDVALIDITY"]
        )
        return result

    def clear(self) -> None:
        """Delete every message in INBOX and every other folder (no restart needed)."""

        def do(c: Any) -> None:
            names = [_text(name) for _flags, _delim, name in c.list_folders()]
            # children before parents
            for name in sorted(names, key=len, reverse=True):
                if name.upper() == "INBOX":
                    continue
                with contextlib.suppress(Exception):
                    c.unsubscribe_folder(name)
                c.delete_folder(name)
            c.select_folder("INBOX")
            uids = c.search("ALL")
            if uids:
                c.delete_messages(uids)
                c.expunge()
            c.close_folder()

        self._with_helper(do)


def _text(value: str | bytes) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _appenduid(resp: bytes | str) -> int | None:
    """UID from an APPEND response like b'[APPENDUID 1234 101] APPEND completed.'."""
    text = _text(resp)
    if "[APPENDUID" not in text:
        return None
    try:
        return int(text.split("[APPENDUID", 1)[1].split("]", 1)[0].split()[1])
    except (IndexError, ValueError):
        return None
