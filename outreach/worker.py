"""One cycle (read the mailbox, then send what is due) and the long-running worker."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

from outreach.config import Campaign, Config
from outreach.ingest import ReadReport, Reader
from outreach.logs import log_event
from outreach.sending import SendReport, Sender
from outreach.store import Store

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


class Worker:
    """Wires the store, the planner and the mail adapters together for one database."""

    def __init__(
        self, config: Config, campaigns: list[Campaign], store: Store, logger: logging.Logger,
        clock: Clock = utc_now, should_stop: Callable[[], bool] = lambda: False,
    ) -> None:
        self.config = config
        self.campaigns = campaigns
        self.store = store
        self.log = logger
        self.clock = clock
        self.should_stop = should_stop
        self.sender = Sender(config, campaigns, store, clock, logger, should_stop)
        self.reader = Reader(config, campaigns, store, clock, logger, should_stop)

    def recover(self) -> None:
        """At start: messages a crash left in `sending` become `unknown`, then the Sent
        folder (when there is an IMAP account) settles what it can."""
        interrupted = self.store.mark_interrupted(self.clock())
        for row in interrupted:
            log_event(self.log, "unknown", f"{row.to_addr}: {row.campaign} step {row.step} was "
                      "being sent when the worker stopped; not resending it blindly",
                      logging.WARNING, message_id=row.message_id)
        if self.store.scalar("SELECT count(*) FROM messages WHERE status='unknown'"):
            resolved, left = self.sender.resolve_unknown()
            if left:
                log_event(self.log, "unknown", f"{left} message(s) with an unknown outcome: "
                          "see `outreach resolve`", logging.WARNING)

    def send_cycle(self) -> SendReport:
        report = SendReport()
        self.store.resume_paused(self.clock())
        self.sender.queue_due(report)
        self.sender.deliver_all(report)
        return report

    def read_cycle(self) -> ReadReport:
        report = ReadReport()
        self.reader.read_all(report)
        return report

    def cycle(self) -> tuple[ReadReport, SendReport]:
        """Read the mailbox first (a reply that arrived stops its follow-up), then send."""
        read = self.read_cycle()
        return read, self.send_cycle()
