"""SMTP delivery with aiosmtplib: the only async code in outreach.

A batch is delivered over a few reused connections. Each message goes through MAIL, RCPT and
DATA one command at a time, so a failure can be placed: anything before DATA is safe to try
again on a fresh connection; a connection lost during DATA leaves the outcome unknown (the
server may have accepted it), which the ledger records instead of guessing.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import operator
import random
import selectors
import ssl
import time
from collections.abc import Callable, Coroutine, Generator, Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, Protocol

import aiosmtplib

from outreach.core import sasl
from outreach.core.errors import AuthenticationError, MailServerError, SignInNeeded, tls_failure
from outreach.core.redaction import redact
from outreach.core.settings import Limits, ServerSettings
from outreach.core.text import one_line
from outreach.transport import compat_aiosmtplib as compat
from outreach.transport.login import Login, as_login
from outreach.transport.tls import tls_context


class Outcome(Enum):
    SENT = "sent"
    DEFERRED = "deferred"  # 4xx or a connection problem before DATA: try again later
    REFUSED = "refused"  # 5xx for this recipient: the address is bad
    REJECTED = "rejected"  # 5xx for the message (sender, content): fails, address not judged
    UNKNOWN = "unknown"  # lost during DATA: may or may not have been delivered
    HELD = "held"  # never reached the server (the account must sign in again): queued again


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


def _classify_refusal(code: int, phase: str) -> Outcome:
    if 400 <= code < 500:
        return Outcome.DEFERRED
    if phase == "rcpt":
        return Outcome.REFUSED
    return Outcome.REJECTED


class Pacer:
    """Spaces sends across all connections of an account (per_minute) and adds jitter."""

    def __init__(self, limits: Limits) -> None:
        self.interval = 60.0 / limits.per_minute if limits.per_minute else 0.0
        self.jitter = limits.jitter.total_seconds()
        self._next = 0.0
        self._lock = asyncio.Lock()

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


async def _sasl_login(
    client: aiosmtplib.SMTP, settings: ServerSettings, mechanism: sasl.Mechanism, token: str
) -> None:
    """AUTH XOAUTH2 / OAUTHBEARER with the initial response (RFC 4954 4). A refused token
    first gets an error challenge (334), which must be answered before the server's 535
    (RFC 7628 3.2.2)."""
    if client.is_ehlo_or_helo_needed:
        await client.ehlo()
    if mechanism.value.lower() not in client.server_auth_methods:
        offered = " ".join(client.server_auth_methods).upper() or "no AUTH"
        raise AuthenticationError(
            f"SMTP {settings.address}: does not offer AUTH {mechanism.value} (offers {offered})",
            hint='check host and port, or set sasl = "xoauth2" / "oauthbearer" to one it offers',
        )
    assert settings.username is not None
    first = sasl.initial_response(mechanism, settings.username, token, settings.host, settings.port)
    response = await client.execute_command(
        b"AUTH", mechanism.value.encode(), base64.b64encode(first)
    )
    detail = ""
    if response.code == 334:
        try:
            detail = sasl.describe_challenge(base64.b64decode(response.message, validate=True))
        except ValueError:
            detail = ""
        response = await client.execute_command(base64.b64encode(sasl.error_answer(mechanism)))
    if response.code != 235:
        message = response.message + (f" ({detail})" if detail else "")
        raise aiosmtplib.SMTPAuthenticationError(response.code, message)


async def _login(client: aiosmtplib.SMTP, settings: ServerSettings, login: Login) -> None:
    """Log in with a password, or with a token (renewed and tried once more if refused)."""
    assert settings.username is not None
    mechanism = login.mechanism
    if mechanism is None:
        await client.login(settings.username, login.secret() or "")
        return
    token = await asyncio.to_thread(login.secret) if login.blocking else login.secret()
    assert token is not None
    try:
        await _sasl_login(client, settings, mechanism, token)
    except aiosmtplib.SMTPAuthenticationError:
        fresh = await asyncio.to_thread(login.renew, token) if login.blocking else None
        if fresh is None:
            raise
        await _sasl_login(client, settings, mechanism, fresh)


class Connection:
    """One SMTP connection that reconnects when it has to.

    What the server says is kept (in the ledger, the log, an error) only through `_said`,
    without the password: a server may quote the AUTH data it refuses ("535 5.7.8 ...
    AHVzZXIAcGFzc3dvcmQ="), and that base64 is the password (outreach.core.redaction)."""

    def __init__(self, settings: ServerSettings, password: str | Login | None) -> None:
        self.settings = settings
        self.login = as_login(settings, password)
        self.client: aiosmtplib.SMTP | None = None
        self.fatal: MailServerError | None = None

    def _said(self, text: object) -> str:
        """A server's text, shortened to one line, without a password or token."""
        return one_line(redact(str(text)), 300)  # whole first: a cut could leave part of a secret

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
        login = self.login
        try:
            await client.connect()
            if s.username and (login.mechanism is not None or login.secret() is not None):
                await _login(client, s, login)
            if client.is_ehlo_or_helo_needed:  # MAIL goes out as a plain command (compat.mail_from)
                try:
                    await client.ehlo()
                except aiosmtplib.SMTPHeloError:
                    await client.helo()
        except MailServerError:  # ours already: sign-in needed, AUTH not offered
            client.close()
            raise
        except aiosmtplib.SMTPAuthenticationError as exc:
            client.close()
            raise AuthenticationError(
                f"SMTP {s.address}: login as {s.username} refused: "
                f"{exc.code} {self._said(exc.message)}",
                hint=login.refused_hint(),
            ) from exc
        except aiosmtplib.SMTPResponseException as exc:
            client.close()
            raise MailServerError(
                f"SMTP {s.address}: refused the connection: {exc.code} {self._said(exc.message)}",
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
            raise MailServerError(f"SMTP {s.address}: cannot connect: {self._said(exc)}") from exc
        except BaseException:  # token_cmd failed (ConfigError), cancelled: not left open
            client.close()
            raise
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

    async def deliver(self, envelope: Envelope, claim: Claim) -> Result | None:
        """One message, reconnecting once if the server went away before DATA.

        `claim` is the ledger's claim of the message, which may commit while MAIL and RCPT
        go out (they deliver nothing); DATA waits for it. None when it was refused: the
        transaction is reset and nothing was sent. Never raises for a server problem: a
        claimed message must get a result. A permanent failure to reconnect is kept in `fatal`.

        The timeout is one deadline for the whole message, not a timer per command (aiosmtplib
        starts four per message, each costing CPU the send path does not have). If it ends
        while the claim's commit is awaited, that counts as a timeout before DATA (the wait
        is shielded, the commit goes ahead): the retry awaits the same claim.
        """
        timeout = self.settings.timeout.total_seconds()
        for attempt in (1, 2):
            try:
                client = await self.open()
            except SignInNeeded as exc:  # claimed, never sent: back to the queue as it was
                self.fatal = exc
                return Result(Outcome.HELD, None, str(exc))
            except MailServerError as exc:
                if exc.permanent:
                    self.fatal = exc
                return Result(Outcome.DEFERRED, None, str(exc))
            phase = "mail"
            try:
                async with asyncio.timeout(timeout):
                    await compat.mail_from(client, envelope.sender)
                    phase = "rcpt"
                    await compat.rcpt_to(client, envelope.recipient)
                    if not await claim:
                        await self._reset(client)
                        return None
                    phase = "data"
                    response = await compat.data(client, envelope.raw)
                return Result(Outcome.SENT, response.code, self._said(response.message))
            except aiosmtplib.SMTPResponseException as exc:
                if exc.code == 421:  # the server is closing this connection (RFC 5321 4.2.2)
                    self.drop()
                    if phase != "data" and attempt == 1:
                        continue
                    return Result(Outcome.DEFERRED, exc.code, self._said(exc.message))
                await self._reset(client)
                return Result(_classify_refusal(exc.code, phase), exc.code, self._said(exc.message))
            except (
                aiosmtplib.SMTPServerDisconnected,
                aiosmtplib.SMTPTimeoutError,
                OSError,
                TimeoutError,
            ) as exc:
                self.drop()
                if isinstance(exc, TimeoutError) and not str(exc):  # our deadline
                    why = f"no answer within {timeout:g}s"
                else:
                    why = self._said(exc) or type(exc).__name__
                if phase == "data":
                    return Result(Outcome.UNKNOWN, None, f"connection lost during DATA ({why})")
                if attempt == 1:
                    continue
                return Result(Outcome.DEFERRED, None, f"connection lost: {why}")
        return Result(Outcome.DEFERRED, None, "connection lost twice")

    async def _reset(self, client: aiosmtplib.SMTP) -> None:
        try:
            await client.rset()
        except (TimeoutError, aiosmtplib.SMTPException, OSError):
            self.drop()


Transition = Callable[[Sequence[tuple[Envelope, Result]], Sequence[Envelope]], set[int]]
"""The ledger's writes, one transaction: record these results and claim these envelopes.
Returns the keys of the envelopes claimed; a claim is refused when the message is no longer
sendable. The results are always recorded."""


class Ledger(Protocol):
    """The ledger's writes in two steps, so the statements can run while the event loop would
    otherwise wait, and only the commit when a claim must be durable."""

    def stage(
        self, results: Sequence[tuple[Envelope, Result]], claims: Sequence[Envelope]
    ) -> set[int]:
        """Write these results and claims in the open transaction (opening one); the keys
        claimed (see Transition)."""

    def commit(self) -> None:
        """Commit what was staged (nothing is durable, or acted on, before)."""

    def rollback(self) -> None:
        """Forget what was staged."""


class OneTransaction:
    """A Transition as a Ledger: staging is the whole transaction, committed at once."""

    def __init__(self, transition: Transition) -> None:
        self.transition = transition

    def stage(
        self, results: Sequence[tuple[Envelope, Result]], claims: Sequence[Envelope]
    ) -> set[int]:
        return self.transition(results, claims)

    def commit(self) -> None:
        pass

    def rollback(self) -> None:
        pass


RESULT_DELAY = 0.05  # seconds a result may wait for a claim to share its commit


class Claim:
    """A message's claim, pending in the LedgerWriter. Awaiting it asks for a commit of
    everything pending, unless an earlier commit took it already; it can be awaited again.
    The wait is shielded: a deadline that cancels it leaves the claim to its commit, and the
    next wait gets its outcome."""

    __slots__ = ("writer", "future")

    def __init__(self, writer: LedgerWriter, future: asyncio.Future[bool]) -> None:
        self.writer = writer
        self.future = future

    def __await__(self) -> Generator[Any, None, bool]:
        if not self.future.done():
            self.writer.commit_soon()
        if not self.future.done():  # committed at the loop's next idle moment
            yield from asyncio.shield(self.future).__await__()
        return self.future.result()


class LedgerWriter:
    """Folds the claims and results of all connections into few commits (a group commit).

    With several connections, a claim is committed only when its connection is ready for DATA,
    together with every claim and result pending by then: while one connection waits for
    RCPT's reply, the others ask for theirs, so four connections cost about one commit per
    round instead of four (a commit costs more than the statements in it; the messages per
    commit are in benchmarks/README.md). On an idle-work loop the commit waits until the
    loop has run what is ready (commit_soon), so the connections served meanwhile join it. A
    result with no claim to join is written RESULT_DELAY later at the latest. With one
    connection there is nobody to wait for: its claim commits while MAIL and RCPT go out.
    The store is used from the event loop's thread only: a writer thread was slower (it and
    the loop kept waiting for each other's GIL), and so was a COMMIT alone on a helper
    thread (on two cores the thread takes CPU from the server; the loop gained nothing).

    The statements can run ahead of the commit (`stage`, as idle work: see deliver_batch),
    in a transaction left open until the commit; a claim's future is resolved only after
    its commit, so DATA still never goes out before its claim is durable.
    """

    def __init__(
        self, ledger: Ledger | Transition, alone: bool = False, at_idle: bool = False
    ) -> None:
        self.ledger: Ledger = ledger if not callable(ledger) else OneTransaction(ledger)
        self.alone = alone
        self.at_idle = at_idle  # commit when the loop would wait (see commit_soon)
        self._results: list[tuple[Envelope, Result]] = []
        self._claims: list[tuple[Envelope, asyncio.Future[bool]]] = []
        self._staged: list[tuple[asyncio.Future[bool], bool]] = []
        self._open = False  # something staged and not committed yet
        self._commit_wanted = False
        self._timer: asyncio.TimerHandle | None = None
        self.error: BaseException | None = None

    def record(self, envelope: Envelope, result: Result) -> None:
        self._results.append((envelope, result))
        self._write_within(0 if self.alone else RESULT_DELAY)

    def claim(self, envelope: Envelope) -> Claim:
        claimed: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        if self.error is not None:
            claimed.set_exception(self.error)
        else:
            self._claims.append((envelope, claimed))
            if self.alone:
                self._write_within(0)
        return Claim(self, claimed)

    def _write_within(self, delay: float) -> None:
        loop = asyncio.get_running_loop()
        when = loop.time() + delay
        if self._timer is not None:
            if self._timer.when() <= when:
                return
            self._timer.cancel()
        self._timer = loop.call_at(when, self.write)

    def commit_soon(self) -> None:
        """A claim is awaited: commit now, or, on an idle-work loop (`at_idle`), once the
        loop has run what is ready and would wait. The connections that get their turn
        meanwhile add their claims to the same commit (a commit costs more than the claims
        in it)."""
        if self.at_idle:
            self._commit_wanted = True
        else:
            self.write()

    def commit_wanted(self) -> bool:
        return self._commit_wanted and self.error is None

    def pending(self) -> bool:
        """Claims or results not staged yet."""
        return self.error is None and bool(self._results or self._claims)

    def stage(self) -> bool:
        """Run the statements for what is pending, without committing. True when it failed
        (the claims waiting got the error)."""
        if not self.pending():
            return False
        results, self._results = self._results, []
        claims, self._claims = self._claims, []
        try:
            claimed = self.ledger.stage(results, [envelope for envelope, _ in claims])
        except BaseException as exc:  # the batch stops; unrecorded rows stay `sending`
            self._fail(exc, claims)
            if not isinstance(exc, Exception):
                raise
            return True
        self._open = True
        self._staged += [(future, envelope.key in claimed) for envelope, future in claims]
        return False

    def write(self) -> bool:
        """Commit every pending claim and result now. True when claims were resolved (or
        failed): their connections can go on."""
        self._commit_wanted = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        failed = self.stage()
        if self.error is not None or not self._open:
            return failed
        try:
            self.ledger.commit()
        except BaseException as exc:
            self._fail(exc, [])
            if not isinstance(exc, Exception):
                raise
            return True
        staged, self._staged = self._staged, []
        self._open = False
        for future, claimed in staged:
            if not future.done():
                future.set_result(claimed)
        return bool(staged)

    def _fail(
        self, exc: BaseException, claims: Sequence[tuple[Envelope, asyncio.Future[bool]]]
    ) -> None:
        """Stop: nothing staged is committed, and every claim waiting gets the error."""
        self.error = exc
        with contextlib.suppress(Exception):
            self.ledger.rollback()
        futures = [future for _, future in claims] + [future for future, _ in self._staged]
        futures += [future for _, future in self._claims]
        self._staged, self._claims, self._open = [], [], False
        for future in futures:
            if not future.done():
                future.set_exception(exc)

    async def close(self) -> None:
        """Write what is pending; raises the writer's error, if any."""
        self.write()
        if self.error is not None:
            raise self.error


class IdleWorkSelector(selectors.DefaultSelector):
    """A selector that does work whenever the event loop would otherwise wait.

    The loop asks its selector to wait only when nothing else is ready to run; at that point,
    one small piece of work from the first source that wants it is done, then the sockets
    are polled again. So the work takes only time the loop would have spent waiting for a
    server, and a server's answer waits at most one piece of work. A piece that makes
    callbacks ready (its work returns True) hands control back to the loop to run them.
    """

    def __init__(self) -> None:
        super().__init__()
        self.sources: list[tuple[Callable[[], bool | None], Callable[[], bool]]] = []

    def add(
        self, work: Callable[[], bool | None], wanted: Callable[[], bool], first: bool = False
    ) -> None:
        """A source of work: `work()` does one small piece, while `wanted()`; it returns
        True when it made callbacks ready (resolved a future)."""
        self.sources.insert(0 if first else len(self.sources), (work, wanted))

    def _work(self) -> Callable[[], bool | None] | None:
        for work, wanted in self.sources:
            if wanted():
                return work
        return None

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if (timeout is not None and timeout <= 0) or self._work() is None:
            return super().select(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            ready = super().select(0)
            if ready or (deadline is not None and time.monotonic() >= deadline):
                return ready
            work = self._work()
            if work is None:
                break
            if work():  # it made callbacks ready (a commit resolved claims): run them first
                return []
        if deadline is None:
            return super().select(None)
        return super().select(max(0.0, deadline - time.monotonic()))


def run_with_idle_work(main: Coroutine[Any, Any, None], selector: IdleWorkSelector) -> None:
    """asyncio.run(main) on an event loop that does the selector's idle work."""

    def new_loop() -> asyncio.AbstractEventLoop:
        return asyncio.SelectorEventLoop(selector)

    with asyncio.Runner(loop_factory=new_loop) as runner:
        runner.run(main)


async def deliver_batch(
    settings: ServerSettings,
    password: str | Login | None,
    limits: Limits,
    envelopes: Iterable[Envelope],
    ledger: Ledger | Transition,
    should_stop: Callable[[], bool] = lambda: False,
    idle: IdleWorkSelector | None = None,
) -> None:
    """Deliver envelopes over `limits.concurrency` reused connections.

    `envelopes` is taken one at a time, as connections become free: it may produce more
    while the batch goes on (sending.OutboxFeed); its length hint sizes the connections.
    Every message is claimed through `ledger` before its DATA command, and its result
    recorded through it after; the claims and results of all connections are folded into as
    few commits as possible (LedgerWriter). Run on `idle`'s event loop, the ledger's
    statements are staged while the loop would wait, ahead of any other idle work: the
    commit alone is left for when a claim must be durable.
    MailServerError propagates (server down, login refused, TLS refused) and stops the
    batch; messages not yet claimed stay queued. The other connections finish the message
    they are on first: cancelling one mid-DATA would leave it claimed with its outcome
    unrecorded, although the server may well have taken it.
    """
    pending = iter(envelopes)
    pacer = Pacer(limits)
    count = max(1, min(limits.concurrency, operator.length_hint(envelopes, limits.concurrency)))
    writer = LedgerWriter(ledger, alone=count == 1, at_idle=idle is not None)
    if idle is not None:
        idle.add(writer.stage, writer.pending, first=True)
        idle.add(writer.write, writer.commit_wanted, first=True)
    failed = False

    def stopping() -> bool:
        return failed or writer.error is not None or should_stop()

    async def worker() -> None:
        nonlocal failed
        connection = Connection(settings, password)
        try:
            while not stopping():
                envelope = next(pending, None)
                if envelope is None:
                    break
                await pacer.wait()
                if stopping():
                    break
                # Connect before claiming: a server that is down or refuses our login
                # leaves the message queued, untouched, for the next cycle.
                await connection.open()
                claim = writer.claim(envelope)
                try:
                    result = await connection.deliver(envelope, claim)
                finally:
                    claimed = await claim  # committed now if deliver stopped early
                if claimed and result is not None:
                    writer.record(envelope, result)
                if connection.fatal is not None:
                    raise connection.fatal
        except BaseException:
            failed = True
            raise
        finally:
            await connection.close()

    tasks = [asyncio.create_task(worker()) for _ in range(count)]
    try:
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        for task in tasks:
            task.cancel()
        await writer.close()
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
