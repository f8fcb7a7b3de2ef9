"""Nothing is sent twice: the ledger's rules, in one place.

Every message outreach sends has one row in the outbox (`messages`, store/outbox.py), unique
per (campaign, partner, round, step), and moves through these states (core.model.LedgerStatus):

    queued --claim--> sending --result--> sent
       ^                 |                deferred --(retry time)--> claimed again
       |                 |                failed     (5xx, or out of retries: never again)
       |                 |                unknown    (lost during DATA: never resent blindly)
       +----release------+                           (never reached the server)

1. Queue. A message is rendered with its own Message-ID and written to the outbox, and that
   write is committed, before any SMTP traffic of its own (sending.OutboxFeed hands it to a
   connection only then). The unique key refuses a second row for the same step.
   A campaign that repeats (core/rounds.py) sends the steps again only as a new round: the
   planner gives a round number one above the partner's latest round, and only once that
   round has ended (`replied` or `finished`), so a round's steps are never queued again.
2. Claim. Before its DATA command a message is claimed: queued or deferred -> sending, one
   delivery attempt counted (`claim`). A row in any other state is not claimed, so two
   batches can never both send it. The claim is committed before DATA goes out:
   transport.smtp.Connection.deliver awaits it between RCPT and DATA.
3. Result. Right after the server answers, the result is recorded (`record_results`): sent;
   deferred (a 4xx or a connection lost before DATA) until the account's retry schedule
   runs out, then failed; failed for a 5xx (a refused recipient also marks the partner
   bounced); unknown when the connection was lost during DATA (the server may have the
   message); released (back to queued, the attempt not counted) when it never reached the
   server, e.g. the account must sign in again.
4. Crash. A row still `sending` after a crash (or a batch whose results could not be
   written, a full disk) becomes unknown at the next start or batch (`recover`), never
   queued again by itself.
5. Unknown. An unknown row is settled from the account's Sent folder over IMAP
   (`resolve_from_sent_folder`: found there means sent) or by a person (`resolve_by_hand`,
   `outreach resolve --sent | --resend`).

What is not here is throughput only: transport.smtp's LedgerWriter folds the claims and
results of several connections into few commits (a group commit, still committing each
claim before its DATA), and its IdleWorkSelector runs the ledger's statements while the
event loop would wait. Statements may run ahead of their commit, but nothing acts on them
before it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Protocol

from outreach.core.errors import MailServerError, SignInNeeded
from outreach.core.settings import Account, Config
from outreach.engine.credentials import Logins
from outreach.logs import log_event
from outreach.store import LedgerRow, Store
from outreach.transport.imap import Mailbox
from outreach.transport.smtp import Envelope, Outcome, Result

Clock = Callable[[], datetime]


class Tally(Protocol):
    """What a batch counts of its results (sending.SendReport)."""

    sent: int
    deferred: int
    failed: int
    unknown: int


def claim(store: Store, ledger_ids: Sequence[int], now: datetime) -> set[int]:
    """Claim rows for one delivery attempt each (queued or deferred -> sending), in the open
    transaction: the ids claimed. A row in any other state is not."""
    return store.mark_sending(ledger_ids, now)


def _fields(row: LedgerRow, result: Result) -> dict[str, Any]:
    """A result's fields in the log."""
    return dict(
        campaign=row.campaign,
        step=row.step,
        to=row.to_addr,
        message_id=row.message_id,
        code=result.code,
    )


def record_results(
    store: Store,
    account: Account,
    results: Sequence[tuple[LedgerRow, Result]],
    clock: Clock,
    log: logging.Logger,
    tally: Tally,
) -> None:
    """Record the results of claimed rows; the delivered ones with one statement each."""
    sent = [(row, result) for row, result in results if result.outcome is Outcome.SENT]
    if sent:
        responses = [(row, f"{result.code} {result.message}") for row, result in sent]
        store.mark_sent_many(responses, clock())
        tally.sent += len(sent)
        if log.isEnabledFor(logging.INFO):  # a line a message: made only when shown
            for row, result in sent:
                log_event(
                    log,
                    "sent",
                    f"sent {row.campaign} step {row.step} to {row.to_addr}",
                    **_fields(row, result),
                )
    for row, result in results:
        if result.outcome is not Outcome.SENT:
            _record_undelivered(store, account, row, result, clock(), log, tally)


def _record_undelivered(
    store: Store,
    account: Account,
    row: LedgerRow,
    result: Result,
    now: datetime,
    log: logging.Logger,
    tally: Tally,
) -> None:
    """Deferred (retried on a schedule, then failed), failed, released, or unknown."""
    fields = _fields(row, result)
    if result.outcome is Outcome.DEFERRED:
        attempts = row.attempts + 1
        schedule = account.limits.retry
        if attempts > len(schedule):
            error = f"gave up after {attempts} attempts: {result.message}"
            store.mark_failed(row, now, result.code, error, permanent=False)
            tally.failed += 1
            log_event(log, "failed", f"failed {row.to_addr}: {error}", logging.WARNING, **fields)
        else:
            retry_at = now + schedule[attempts - 1]
            store.mark_deferred(row, now, retry_at, result.code, result.message)
            tally.deferred += 1
            log_event(
                log,
                "deferred",
                f"deferred {row.to_addr}: {result.message}",
                logging.WARNING,
                retry_at=retry_at.isoformat(timespec="seconds"),
                **fields,
            )
    elif result.outcome in (Outcome.REFUSED, Outcome.REJECTED):
        permanent = result.outcome is Outcome.REFUSED
        store.mark_failed(row, now, result.code, result.message, permanent=permanent)
        tally.failed += 1
        log_event(
            log, "failed", f"refused {row.to_addr}: {result.message}", logging.WARNING, **fields
        )
    elif result.outcome is Outcome.HELD:
        # never reached the server: queued again as it was, no attempt counted
        store.release(row, now)
    else:
        store.mark_unknown(row, now, result.message)
        tally.unknown += 1
        log_event(
            log,
            "unknown",
            f"outcome unknown for {row.to_addr}: {result.message}",
            logging.WARNING,
            **fields,
        )


class OutboxStage(Protocol):
    """New outbox rows written during a batch (sending.OutboxFeed): staged in the ledger's
    open transaction, handed to the connections once it commits."""

    def stage_some(self) -> None: ...

    def commit(self) -> None: ...

    def forget_staged(self) -> None: ...


class BatchLedger:
    """The ledger's side of one account's delivery batch (transport.smtp.Ledger): results,
    the new outbox rows and claims are written into one open transaction, in the event
    loop's idle time when there is some, and committed when a claim must be durable (its
    DATA is next) or a result has waited RESULT_DELAY."""

    def __init__(
        self,
        store: Store,
        account: Account,
        outbox: OutboxStage,
        rows: dict[int, LedgerRow],
        clock: Clock,
        log: logging.Logger,
        tally: Tally,
    ) -> None:
        self.store = store
        self.account = account
        self.outbox = outbox
        self.rows = rows  # the batch's rows by ledger id (an envelope's key)
        self.clock = clock
        self.log = log
        self.tally = tally

    def stage(
        self, results: Sequence[tuple[Envelope, Result]], claims: Sequence[Envelope]
    ) -> set[int]:
        self.store.begin()
        delivered = [(self.rows[envelope.key], result) for envelope, result in results]
        record_results(self.store, self.account, delivered, self.clock, self.log, self.tally)
        self.outbox.stage_some()
        return claim(self.store, [e.key for e in claims], self.clock())

    def commit(self) -> None:
        self.outbox.commit()  # commits the store's transaction, then hands out the new rows

    def rollback(self) -> None:
        self.store.rollback()
        self.outbox.forget_staged()


# ----------------------------------------------------------------------------- after a crash


def recover(
    config: Config, store: Store, logins: Logins, clock: Clock, log: logging.Logger
) -> None:
    """Rows a crash left in `sending` become `unknown`, then the Sent folder (where the
    account has IMAP) settles what it can."""
    for row in store.mark_interrupted(clock()):
        log_event(
            log,
            "unknown",
            f"{row.to_addr}: {row.campaign} step {row.step} was being sent when the "
            "worker stopped or could not record the result; not resending it blindly",
            logging.WARNING,
            message_id=row.message_id,
        )
    if store.count_unknown():
        _resolved, left = resolve_from_sent_folder(config, store, logins, clock, log)
        if left:
            log_event(
                log,
                "unknown",
                f"{left} message(s) with an unknown outcome: see `outreach resolve`",
                logging.WARNING,
            )


def resolve_from_sent_folder(
    config: Config, store: Store, logins: Logins, clock: Clock, log: logging.Logger
) -> tuple[int, int]:
    """Look for `unknown` messages in each account's Sent folder; found ones count as sent.

    Returns (resolved, still_unknown)."""
    rows = store.unknown_rows()
    resolved = 0
    by_account: dict[str, list[LedgerRow]] = {}
    for row in rows:
        by_account.setdefault(row.account, []).append(row)
    for name, account_rows in by_account.items():
        account = config.accounts.get(name)
        if account is None or account.imap is None:
            continue
        try:
            login = logins.for_server(account, account.imap)
            with Mailbox(account.imap, login) as mailbox:
                found = mailbox.find_message_ids(
                    mailbox.sent_folder(), [r.message_id for r in account_rows]
                )
        except SignInNeeded:
            continue  # settled once the account is signed in again (the reader says so)
        except MailServerError as exc:
            log_event(
                log, "imap_error", f"checking the Sent folder: {exc}", logging.WARNING, account=name
            )
            continue
        for row in account_rows:
            if row.message_id in found:
                store.resolve_unknown(row, True, clock(), "found in the Sent folder")
                resolved += 1
                log_event(
                    log,
                    "resolved",
                    f"{row.to_addr}: found in the Sent folder; counted as sent",
                    campaign=row.campaign,
                    step=row.step,
                )
    return resolved, len(rows) - resolved


def resolve_by_hand(store: Store, row: LedgerRow, sent: bool, now: datetime) -> None:
    """A person settles an unknown row (`outreach resolve`): delivered, or queued again
    (the partner may then get it twice, which they were told)."""
    store.resolve_unknown(row, sent, now, "by `outreach resolve`")
