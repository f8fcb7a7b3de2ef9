"""The sending half of a cycle: plan what is due, render it into the outbox, deliver it.

Each account's batch delivers its backlog first, then what is due now, rendered while the
batch goes out (OutboxFeed, in the event loop's idle time; see transport.smtp's
IdleWorkSelector). What makes it crash-safe (a message is in the outbox before any traffic
of its own, claimed before its DATA, its result recorded right after) is engine/ledger.py.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from outreach.config.templates import renderer_for
from outreach.core.errors import (
    AuthenticationError,
    ConfigError,
    MailServerError,
    OutreachError,
    SignInNeeded,
)
from outreach.core.model import AccountPart, AccountState, Campaign, Due
from outreach.core.render import Built, Threading, build_message
from outreach.core.rounds import round_context
from outreach.core.settings import Account, Config
from outreach.core.zones import partner_zone
from outreach.engine.credentials import Logins, announce_waiting, announce_working
from outreach.engine.ledger import BatchLedger, record_results
from outreach.engine.message_ids import new_message_id
from outreach.engine.planning import find_due
from outreach.logs import log_event
from outreach.store import LedgerRow, Outgoing, Store
from outreach.transport.imap import Mailbox
from outreach.transport.smtp import (
    Envelope,
    IdleWorkSelector,
    Result,
    deliver_batch,
    run_with_idle_work,
)

Clock = Callable[[], datetime]
QUEUE_CHUNK = 200
RENDER_AHEAD = 32  # messages rendered or queued ahead of delivery, at most
RENDER_NOW = 16  # rendered at once when delivery has caught up with rendering
STAGE_AT = 8  # rendered messages written to the outbox together (fewer, larger statements)


@dataclass
class SendReport:
    queued: int = 0
    sent: int = 0
    deferred: int = 0
    failed: int = 0
    unknown: int = 0
    held_by_limit: int = 0
    not_prepared: int = 0  # a template failed for the partner (the reason is logged)
    errors: list[str] = field(default_factory=list)

    def summary(self) -> str:
        parts = [f"{self.queued} queued", f"{self.sent} sent"]
        for name in ("deferred", "failed", "unknown", "held_by_limit", "not_prepared"):
            value = getattr(self, name)
            if value:
                parts.append(f"{value} {name.replace('_', ' ')}")
        return ", ".join(parts)


class Sender:
    def __init__(
        self,
        config: Config,
        campaigns: list[Campaign],
        store: Store,
        clock: Clock,
        logger: logging.Logger,
        should_stop: Callable[[], bool] = lambda: False,
        logins: Logins | None = None,
    ) -> None:
        self.config = config
        self.campaigns = campaigns
        self.store = store
        self.clock = clock
        self.log = logger
        self.should_stop = should_stop
        self.renderer = renderer_for(config)
        self.logins = logins or Logins(config)
        # (campaign, partner id) -> (latest answer, our latest message): see threading_for
        self.memory: dict[tuple[str, int], tuple[tuple[str, datetime] | None, datetime | None]]
        self.memory = {}

    # ------------------------------------------------------------------ queue

    def due(self) -> list[Due]:
        return find_due(
            self.store, self.campaigns, self.clock(), self.config.timezone, self.config.accounts
        )

    def daily_budget(self, account: Account, now: datetime) -> int | None:
        """How many more messages the rolling 24 h limit allows (from the ledger, so a
        restart does not reset it); None without a limit."""
        if not account.limits.per_day:
            return None
        used = self.store.sent_since(account.name, now - timedelta(days=1))
        return max(0, account.limits.per_day - used)

    def plan_by_account(self, report: SendReport) -> dict[str, list[Due]]:
        """What is due now, per account, no more than its daily limit lets go out now (so a
        message's Date is the day it is sent); the rest is counted as held by the limit."""
        now = self.clock()
        self.store.remember_campaigns(((c.name, c.account) for c in self.campaigns), now)
        room: dict[str, int | None] = {}
        for account in self.config.accounts.values():
            budget = self.daily_budget(account, now)
            if budget is not None:
                budget -= self.store.count_sendable(account.name, now)
            room[account.name] = budget
        planned: dict[str, list[Due]] = {}
        for item in self.due():
            left = room.get(item.sender)
            if left is not None:
                if left <= 0:
                    report.held_by_limit += 1
                    continue
                room[item.sender] = left - 1
            planned.setdefault(item.sender, []).append(item)
        return planned

    def queue_due(self, report: SendReport) -> None:
        """Render everything due into the outbox without sending it."""
        for items in self.plan_by_account(report).values():
            if not self.queue_items(items, report):
                return

    def queue_items(self, items: Sequence[Due], report: SendReport) -> bool:
        """Render items into the outbox, one commit per chunk; False if told to stop."""
        threading = self.threading_for(items)
        for start in range(0, len(items), QUEUE_CHUNK):
            if self.should_stop():
                return False
            rendered = []
            for item in items[start : start + QUEUE_CHUNK]:
                built = self.prepare_or_report(item, threading, report)
                if built is not None:
                    rendered.append((item, built))
            if rendered:  # a chunk whose every message failed to render writes nothing
                report.queued += len(self.outbox(rendered))  # one commit per chunk
        return True

    def threading_for(self, items: Sequence[Due]) -> dict[tuple[str, int], Threading]:
        """The thread each follow-up among `items` continues (its round's earlier messages:
        a new round is a new thread), read in bulk; and what the templates of the items
        after a round's first message remember (`last_reply`, `previous`), kept for
        `prepare`."""
        wanted = {
            (item.campaign.name, item.partner.id or 0): (item.round, item.step.number)
            for item in items
            if item.step.thread and item.step.number > 1
        }
        remembered = [
            (item.campaign.name, item.partner.id or 0)
            for item in items
            if item.round > 1 or item.step.number > 1
        ]
        if remembered:  # round 1's first message has nothing to remember: no query
            self.memory.update(self.store.round_memory(remembered))
        return {
            key: Threading(first_subject=first, earlier_ids=tuple(ids))
            for key, (first, ids) in self.store.threads_for(wanted).items()
        }

    def round_context(self, item: Due) -> dict[str, Any]:
        """`round`, `last_reply` and `previous` for the item's templates (core/rounds)."""
        last_reply, previous = self.memory.get(
            (item.campaign.name, item.partner.id or 0), (None, None)
        )
        return round_context(
            item.round,
            last_reply=last_reply,
            previous_sent_at=previous,
            zone=partner_zone(item.partner, self.config.timezone),
            now=self.clock(),
        )

    def prepare(self, item: Due, threading: Threading) -> Built:
        """Render one message (pure: no I/O)."""
        campaign, partner, step = item.campaign, item.partner, item.step
        account = self.config.accounts[item.sender]
        if not (step.thread and step.number > 1):
            threading = Threading()
        rendered = self.renderer.render(
            campaign, step, partner, account, threading, self.round_context(item)
        )
        message_id = new_message_id(account.domain)
        return build_message(rendered, partner, account, self.clock(), threading, message_id)

    def prepare_or_report(
        self, item: Due, threading: dict[tuple[str, int], Threading], report: SendReport
    ) -> Built | None:
        assert item.partner.id is not None
        try:
            thread = threading.get((item.campaign.name, item.partner.id), Threading())
            return self.prepare(item, thread)
        except OutreachError as exc:
            report.errors.append(str(exc))
            report.not_prepared += 1
            log_event(
                self.log,
                "render_failed",
                str(exc),
                logging.ERROR,
                campaign=item.campaign.name,
                partner=item.partner.email,
            )
            return None

    def outbox(self, rendered: Sequence[tuple[Due, Built]]) -> list[LedgerRow]:
        """Write rendered messages to the outbox (in the caller's transaction, if any); the
        rows written. One already there for its (campaign, partner, step) is left out."""
        rows = self.store.queue_messages(
            [
                Outgoing(
                    item.campaign.name,
                    item.partner.id or 0,
                    item.step.number,
                    item.sender,
                    built.message_id,
                    built.to_addr,
                    built.subject,
                    built.raw,
                    item.round,
                )
                for item, built in rendered
            ],
            self.clock(),
        )
        return [row for row in rows if row is not None]

    # ------------------------------------------------------------------ deliver

    def send_due(self, report: SendReport) -> None:
        """Plan what is due, then deliver each account's backlog and its new messages; the
        new ones are rendered while the batch is being delivered (OutboxFeed)."""
        self.deliver_all(report, self.plan_by_account(report))

    def deliver_all(self, report: SendReport, planned: dict[str, list[Due]] | None = None) -> None:
        """Deliver what is queued (and `planned`, rendered on the way), account by account.

        One account failing (a refused login, a sign-in that expired, its server down) holds
        back only its own messages, which stay queued: the others are delivered, and each
        account's state is recorded for `outreach status`. A refused login stops the worker
        (AuthenticationError) only when every account in use was refused: then nothing can
        be sent until a person fixes the passwords.
        """
        planned = planned or {}
        in_use = self.accounts_in_use()
        refused: list[AuthenticationError] = []
        for account in in_use:
            if self.should_stop():
                return
            try:
                if self.deliver_account(account, report, planned.get(account.name, ())):
                    self.account_state(account, AccountState.OK, None)
            except SignInNeeded as exc:  # only this account waits: its messages stay queued
                report.errors.append(str(exc))
                announce_waiting(self.logins, self.log, exc)
                self.account_state(account, AccountState.FAILING, str(exc))
                continue
            except AuthenticationError as exc:
                refused.append(exc)
                report.errors.append(str(exc))
                log_event(self.log, "smtp_error", str(exc), logging.ERROR, account=account.name)
                self.account_state(account, AccountState.FAILING, str(exc))
                continue
            except MailServerError as exc:
                report.errors.append(str(exc))
                log_event(self.log, "smtp_error", str(exc), logging.WARNING, account=account.name)
                self.account_state(account, AccountState.FAILING, str(exc))
            if account.save_sent:
                self.save_sent_copies(account, report)
        if refused and len(refused) == len(in_use):
            raise refused[0]

    def account_state(self, account: Account, state: AccountState, reason: str | None) -> None:
        self.store.set_account_state(account.name, AccountPart.SEND, state, reason, self.clock())

    def accounts_in_use(self) -> list[Account]:
        names = {name for c in self.campaigns for name in c.accounts()}
        names |= self.store.accounts_with_backlog()
        return [self.config.accounts[n] for n in sorted(names) if n in self.config.accounts]

    def deliver_account(
        self, account: Account, report: SendReport, items: Sequence[Due] = ()
    ) -> bool:
        """Deliver the account's sendable rows, then `items` (planned for it now); False when
        there was nothing to deliver (the server was not tried)."""
        # an account that must sign in again renders nothing new into the outbox: what is
        # due is planned afresh once it can send, after its mailbox is read (replies first)
        self.logins.check(account)
        now = self.clock()
        rows = self.store.sendable(account.name, now)
        budget = self.daily_budget(account, now)
        if budget is not None and len(rows) > budget:
            report.held_by_limit += len(rows) - budget
            rows = rows[:budget]
            log_event(
                self.log,
                "limit",
                f"{account.name}: per_day limit of "
                f"{account.limits.per_day} reached; the rest waits",
                logging.WARNING,
                account=account.name,
            )
        if not rows and not items:
            return False
        feed = OutboxFeed(self, account, rows, items, report)
        idle = IdleWorkSelector()
        idle.add(feed.render_ahead, feed.wants_rendering)
        try:
            login = self.logins.for_server(account, account.smtp)
            with self.store.checkpoint_after():
                run_with_idle_work(
                    deliver_batch(
                        account.smtp,
                        login,
                        account.limits,
                        feed,
                        BatchLedger(
                            self.store, account, feed, feed.rows, self.clock, self.log, report
                        ),
                        self.should_stop,
                        idle,
                    ),
                    idle,
                )
        except (MailServerError, ConfigError):
            feed.queue_rest()  # the server is down or refused us: the next cycle sends them
            raise
        finally:
            self.store.rollback()  # what an interrupted batch staged: as if it had crashed
        feed.queue_rest()
        announce_working(self.logins, self.log, account.name)
        return True

    # ------------------------------------------------------------------ Sent folder

    def record_results(
        self, account: Account, results: Sequence[tuple[LedgerRow, Result]], report: SendReport
    ) -> None:
        """Record the results of claimed rows in the ledger (ledger.record_results)."""
        record_results(self.store, account, results, self.clock, self.log, report)

    def save_sent_copies(self, account: Account, report: SendReport) -> None:
        """APPEND a copy of each sent message to the Sent folder (retried next cycle on error)."""
        if account.imap is None:
            return
        rows = self.store.unsaved_copies(account.name)
        if not rows:
            return
        try:
            with Mailbox(account.imap, self.logins.for_server(account, account.imap)) as mailbox:
                folder = mailbox.sent_folder()
                for row in rows:
                    if mailbox.append(folder, row.raw, row.sent_at):
                        log_event(
                            self.log,
                            "folder_created",
                            f"created the folder {folder} for copies of sent mail",
                            account=account.name,
                        )
                    self.store.mark_saved_copy(row.id, self.clock())
        except SignInNeeded:
            return  # the account waits (said once already); the copies are saved after
        except MailServerError as exc:
            report.errors.append(str(exc))
            log_event(
                self.log,
                "imap_error",
                f"saving sent copies: {exc}",
                logging.WARNING,
                account=account.name,
            )


class OutboxFeed(Iterator[Envelope]):
    """The envelopes of one account's delivery batch, taken one at a time by its connections.

    First the backlog (queued rows, and deferred ones whose retry time has come), then the
    messages planned now. Those are rendered in the event loop's idle time, while the
    connections wait for the server (smtp.IdleWorkSelector), and written to the outbox with
    the ledger's commits, eight at a time (BatchLedger); rendering them all before the first
    message went out left the server idle meanwhile. A message becomes an envelope only once
    its outbox row is committed, so it is in the ledger, with its Message-ID, before any SMTP
    traffic of its own. When delivery catches up with rendering, the next few are rendered
    at once.
    """

    def __init__(
        self,
        sender: Sender,
        account: Account,
        backlog: Sequence[LedgerRow],
        items: Sequence[Due],
        report: SendReport,
    ) -> None:
        self.sender = sender
        self.account = account
        self.report = report
        self.rows = {row.id: row for row in backlog}
        self.ready = deque(self._envelope(row) for row in backlog)
        self.items = deque(items)
        self.threading = sender.threading_for(items) if items else {}
        self.rendered: list[tuple[Due, Built]] = []
        self.staged: list[LedgerRow] = []  # written to the outbox, not committed yet
        self.error: Exception | None = None

    def _envelope(self, row: LedgerRow) -> Envelope:
        return Envelope(row.id, self.account.from_email, row.to_addr, row.raw)

    def __length_hint__(self) -> int:
        return len(self.ready) + len(self.rendered) + len(self.items)

    def __next__(self) -> Envelope:
        if self.error is not None:
            raise self.error
        if not self.ready:
            while len(self.rendered) < RENDER_NOW and self.render_one():
                pass
            self.stage_rendered()
            self.commit()
        if not self.ready:
            raise StopIteration
        return self.ready.popleft()

    def render_one(self) -> bool:
        """Render the next planned message; False when none is left or the worker stops
        (what is left is planned again next cycle)."""
        if self.sender.should_stop():
            self.items.clear()
        if not self.items:
            return False
        item = self.items.popleft()
        built = self.sender.prepare_or_report(item, self.threading, self.report)
        if built is not None:
            self.rendered.append((item, built))
        return True

    def wants_rendering(self) -> bool:
        """Whether the idle time should render more: fewer than RENDER_AHEAD messages wait."""
        return (
            self.error is None
            and bool(self.items)
            and len(self.ready) + len(self.staged) + len(self.rendered) < RENDER_AHEAD
        )

    def render_ahead(self) -> None:
        """The idle work: render one more message. An error is kept for the next envelope
        taken, which stops the batch the usual way (a connection in the middle of a message
        finishes it first)."""
        try:
            self.render_one()
        except Exception as exc:  # noqa: BLE001 - raised from __next__, see above
            self.error = exc

    def stage_some(self) -> None:
        """Stage the rendered messages once STAGE_AT are waiting, or sooner when fewer than
        that are ready to go: written eight at a time, a message costs markedly less than one at
        a time (benchmarks/README.md, "Figures behind the code")."""
        waiting = len(self.rendered)
        if waiting >= STAGE_AT or (waiting and len(self.ready) + len(self.staged) < STAGE_AT):
            self.stage_rendered()

    def stage_rendered(self) -> None:
        """Write the rendered messages to the outbox, in the open transaction (BatchLedger's
        or one of its own); they are delivered once it commits (`commit`)."""
        rendered, self.rendered = self.rendered, []
        if rendered:
            self.sender.store.begin()
            self.staged += self.sender.outbox(rendered)

    def forget_staged(self) -> None:
        """The open transaction was rolled back: what it staged was never written."""
        self.staged.clear()

    def commit(self) -> None:
        """Commit the open transaction; the rows staged are ready to be delivered."""
        self.sender.store.commit()
        staged, self.staged = self.staged, []
        self.report.queued += len(staged)
        for row in staged:
            self.rows[row.id] = row
            self.ready.append(self._envelope(row))

    def queue_rest(self) -> None:
        """After the batch: what was planned but not delivered goes to the outbox for the
        next cycle (not when the worker is stopping: it is planned again next time)."""
        if self.sender.should_stop() or not (self.rendered or self.items):
            return
        self.stage_rendered()
        self.commit()
        items = list(self.items)
        self.items.clear()
        self.sender.queue_items(items, self.report)
