"""A local SMTP server for the test suite and for ``outreach demo``: aiosmtpd in a
background thread of this process, on ``127.0.0.1`` and a real port. It records every
accepted message and can inject faults (refused recipients, one-shot DATA replies, dropped
connections, slowness), offer STARTTLS or implicit TLS and require AUTH.

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
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any, Literal

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from outreach.testing.ports import LOCALHOST

__all__ = ["LocalSMTPServer", "ReceivedMessage"]

log = logging.getLogger(__name__)


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
