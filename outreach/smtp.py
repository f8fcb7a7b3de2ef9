"""SMTP delivery with aiosmtplib: the only async code in outreach.

A batch is delivered over a few reused connections. Each message goes through MAIL, RCPT and
DATA one command at a time, so a failure can be placed: anything before DATA is safe to try
again on a fresh connection; a connection lost during DATA leaves the outcome unknown (the
server may have accepted it), which the ledger records instead of guessing.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum

import aiosmtplib

from outreach.config import Limits, ServerSettings
from outreach.errors import AuthenticationError, MailServerError, tls_failure


class Outcome(Enum):
    SENT = "sent"
    DEFERRED = "deferred"  # 4xx or a connection problem before DATA: try again later
    REFUSED = "refused"  # 5xx for this recipient: the address is bad
    REJECTED = "rejected"  # 5xx for the message (sender, content): fails, address not judged
    UNKNOWN = "unknown"  # lost during DATA: may or may not have been delivered


@dataclass(frozen=True)
class Result:
    outcome: Outcome
    code: int | None = None
    message: str = ""


@dataclass(frozen=True)
class Envelope:
    key: int  # the ledger id
    sender: str
    recipient: str
    raw: bytes


def tls_context(settings: ServerSettings) -> ssl.SSLContext:
    """Certificates are always verified; a private CA is trusted only when named (ca_file)."""
    if settings.ca_file is not None:
        return ssl.create_default_context(cafile=str(settings.ca_file))
    return ssl.create_default_context()


def _classify_refusal(code: int, phase: str) -> Outcome:
    if 400 <= code < 500:
        return Outcome.DEFERRED
    if phase == "rcpt":
        return Outcome.REFUSED
    return Outcome.REJECTED


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class Pacer:
    """Spaces sends across all connections of an account (per_minute) and adds jitter."""

    def __init__(self, limits: Limits) -> None:
        self.interval = 60.0 / limits.per_minute if limits.per_minute else 0.0
        self.jitter = limits.jitter.total_seconds()
        self._next = 0.0
        self._lock = asyncio.Lock()

    def will_wait(self) -> bool:
        return self.jitter > 0 or (self.interval > 0 and self._next > time.monotonic())

    async def wait(self) -> None:
        if self.jitter > 0:
            await asyncio.sleep(random.uniform(0, self.jitter))
        if not self.interval:
            return
        async with self._lock:
            now = time.monotonic()
            delay = self._next - now
            self._next = max(now, self._next) + self.interval
        if delay > 0:
            await asyncio.sleep(delay)


class Connection:
    """One SMTP connection that reconnects when it has to."""

    def __init__(self, settings: ServerSettings, password: str | None) -> None:
        self.settings = settings
        self.password = password
        self.client: aiosmtplib.SMTP | None = None
        self.fatal: MailServerError | None = None

    async def open(self) -> aiosmtplib.SMTP:
        if self.client is not None and self.client.is_connected:
            return self.client
        s = self.settings
        timeout = s.timeout.total_seconds()
        client = aiosmtplib.SMTP(
            hostname=s.host,
            port=s.port,
            timeout=timeout,
            use_tls=s.security == "tls",
            start_tls=s.security == "starttls",
            tls_context=tls_context(s) if s.security != "none" else None,
        )
        try:
            await client.connect()
            if s.username and self.password is not None:
                await client.login(s.username, self.password)
        except aiosmtplib.SMTPAuthenticationError as exc:
            client.close()
            raise AuthenticationError(
                f"SMTP {s.address}: login as {s.username} refused: "
                f"{exc.code} {_short(exc.message)}",
                hint=f"check the password in {s.password_env or 'password_cmd'}",
            ) from exc
        except aiosmtplib.SMTPResponseException as exc:
            client.close()
            raise MailServerError(
                f"SMTP {s.address}: refused the connection: {exc.code} {_short(exc.message)}",
                permanent=not 400 <= exc.code < 500,
            ) from exc
        except ssl.SSLError as exc:
            client.close()
            raise tls_failure(f"SMTP {s.address}", exc) from exc
        except (TimeoutError, aiosmtplib.SMTPException, OSError) as exc:
            client.close()
            cause = exc.__cause__ if isinstance(exc.__cause__, ssl.SSLError) else None
            if cause is not None:  # implicit TLS: aiosmtplib wraps it in SMTPConnectError
                raise tls_failure(f"SMTP {s.address}", cause) from exc
            raise MailServerError(f"SMTP {s.address}: cannot connect: {_short(str(exc))}") from exc
        self.client = client
        return client

    def drop(self) -> None:
        if self.client is not None:
            self.client.close()
        self.client = None

    async def close(self) -> None:
        if self.client is not None and self.client.is_connected:
            with contextlib.suppress(TimeoutError, aiosmtplib.SMTPException, OSError):
                await self.client.quit()
        self.drop()

    async def deliver(self, envelope: Envelope) -> Result:
        """One message, reconnecting once if the server went away before DATA.

        Never raises for a server problem: the caller has claimed the message in the ledger
        and must record a result. A permanent failure to reconnect is kept in `fatal`.
        """
        for attempt in (1, 2):
            try:
                client = await self.open()
            except MailServerError as exc:
                if exc.permanent:
                    self.fatal = exc
                return Result(Outcome.DEFERRED, None, str(exc))
            phase = "mail"
            try:
                await client.mail(envelope.sender)
                phase = "rcpt"
                await client.rcpt(envelope.recipient)
                phase = "data"
                response = await client.data(envelope.raw)
                return Result(Outcome.SENT, response.code, _short(response.message))
            except aiosmtplib.SMTPResponseException as exc:
                if exc.code == 421:  # the server is closing this connection (RFC 5321 4.2.2)
                    self.drop()
                    if phase != "data" and attempt == 1:
                        continue
                    return Result(Outcome.DEFERRED, exc.code, _short(exc.message))
                await self._reset(client)
                return Result(_classify_refusal(exc.code, phase), exc.code, _short(exc.message))
            except (
                aiosmtplib.SMTPServerDisconnected,
                aiosmtplib.SMTPTimeoutError,
                OSError,
                TimeoutError,
            ) as exc:
                self.drop()
                if phase == "data":
                    return Result(
                        Outcome.UNKNOWN,
                        None,
                        f"connection lost during DATA ({_short(str(exc)) or type(exc).__name__})",
                    )
                if attempt == 1:
                    continue
                return Result(Outcome.DEFERRED, None, f"connection lost: {_short(str(exc))}")
        return Result(Outcome.DEFERRED, None, "connection lost twice")

    async def _reset(self, client: aiosmtplib.SMTP) -> None:
        try:
            await client.rset()
        except (TimeoutError, aiosmtplib.SMTPException, OSError):
            self.drop()


Transition = Callable[[tuple[Envelope, Result] | None, Envelope | None], bool]
"""The ledger's one write per message: record the previous result (if any) and claim the next
envelope (if any) in one transaction. Returns False when the claim was refused (the message
is no longer sendable); the result is always recorded."""


async def deliver_batch(
    settings: ServerSettings,
    password: str | None,
    limits: Limits,
    envelopes: Sequence[Envelope],
    transition: Transition,
    should_stop: Callable[[], bool] = lambda: False,
) -> None:
    """Deliver envelopes over `limits.concurrency` reused connections.

    Every message is claimed through `transition` right before its SMTP conversation, and
    its result recorded through it right after, folded into the next claim so each message
    costs one commit. A pause (per_minute pacing, jitter) never holds a result back.
    MailServerError propagates (server down, login refused, TLS refused) and stops the
    batch; messages not yet claimed stay queued. The other connections finish the message
    they are on first: cancelling one mid-DATA would leave it claimed with its outcome
    unrecorded, although the server may well have taken it.
    """
    queue: asyncio.Queue[Envelope] = asyncio.Queue()
    for envelope in envelopes:
        queue.put_nowait(envelope)
    pacer = Pacer(limits)
    failed = False

    def stopping() -> bool:
        return failed or should_stop()

    async def worker() -> None:
        nonlocal failed
        connection = Connection(settings, password)
        done: tuple[Envelope, Result] | None = None
        try:
            while not stopping():
                try:
                    envelope = queue.get_nowait()
                except asyncio.QueueEmpty:
                    break
                if pacer.will_wait() and done is not None:
                    transition(done, None)
                    done = None
                await pacer.wait()
                if stopping():
                    break
                # Connect before claiming: a server that is down or refuses our login
                # leaves the message queued, untouched, for the next cycle.
                await connection.open()
                claimed = transition(done, envelope)
                done = None
                if not claimed:
                    continue
                done = (envelope, await connection.deliver(envelope))
                if connection.fatal is not None:
                    raise connection.fatal
        except BaseException:
            failed = True
            raise
        finally:
            if done is not None:
                transition(done, None)
            await connection.close()

    count = max(1, min(limits.concurrency, len(envelopes)))
    tasks = [asyncio.create_task(worker()) for _ in range(count)]
    try:
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        for task in tasks:
            task.cancel()
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
