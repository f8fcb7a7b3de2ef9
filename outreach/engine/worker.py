"""One cycle (read the mailbox, then send what is due) and the long-running worker."""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from outreach.core.errors import OutreachError, TemplateError
from outreach.core.inbound.bodytext import fallback_text
from outreach.core.inbound.classify import Classification
from outreach.core.inbound.identity import message_key
from outreach.core.inbound.mailparse import read_headers
from outreach.core.inbound.match import header_ids
from outreach.core.model import Campaign, Due
from outreach.core.render import Built, Threading
from outreach.core.settings import Account, Config
from outreach.engine.credentials import Logins
from outreach.engine.ingest import Reader, ReadReport
from outreach.engine.ledger import recover
from outreach.engine.planning import finish_rounds
from outreach.engine.sending import Sender, SendReport
from outreach.logs import log_event
from outreach.store import Store, iso

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


class Worker:
    """Wires the store, the planner and the mail adapters together for one database."""

    def __init__(
        self,
        config: Config,
        campaigns: list[Campaign],
        store: Store,
        logger: logging.Logger,
        clock: Clock = utc_now,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> None:
        self.config = config
        self.campaigns = campaigns
        self.store = store
        self.log = logger
        self.clock = clock
        self.should_stop = should_stop
        # who waits for a sign-in, across reloads (the token file is beside the database,
        # which a reload does not change)
        self.logins = Logins(config)
        self.reconfigure(config, campaigns)

    def _stop_requested(self) -> bool:
        # looked up at every check, so the service can set `should_stop` after construction
        return self.should_stop()

    def reconfigure(self, config: Config, campaigns: list[Campaign]) -> None:
        """Use reloaded (already validated) campaigns and templates from the next cycle on."""
        self.config = config
        self.campaigns = campaigns
        self.sender: Sender = GuardedSender(
            config,
            campaigns,
            self.store,
            self.clock,
            self.log,
            self._stop_requested,
            self.logins,
        )
        self.reader: Reader = GuardedReader(
            config,
            campaigns,
            self.store,
            self.clock,
            self.log,
            self._stop_requested,
            logins=self.logins,
        )

    def recover(self) -> None:
        """At start: messages a crash left in `sending` become `unknown`, then the Sent
        folder (when there is an IMAP account) settles what it can (engine/ledger.py)."""
        recover(self.config, self.store, self.logins, self.clock, self.log)

    def send_cycle(self) -> SendReport:
        report = SendReport()
        if self.store.any_sending():
            # a batch before this one stopped between a message's DATA and its result (the
            # disk was full): settled as at a start, never sent again blindly
            self.recover()
        self.store.resume_paused(self.clock())
        finish_rounds(self.store, self.campaigns, self.clock())
        self.sender.send_due(report)
        return report

    def read_cycle(self) -> ReadReport:
        report = ReadReport()
        self.reader.read_all(report)
        return report

    def cycle(self) -> tuple[ReadReport, SendReport]:
        """Read the mailbox first (a reply that arrived stops its follow-up), then send."""
        read = self.read_cycle()
        return read, self.send_cycle()


# Failures that are not about one message or one partner: the cycle stops and is retried.
_NOT_ITEM_FAILURES = (OutreachError, sqlite3.Error, MemoryError)


class GuardedSender(Sender):
    """A bug met while preparing one partner's message is reported for that partner (like a
    template error) and the others are still queued."""

    def prepare(self, item: Due, threading: Threading) -> Built:
        try:
            return super().prepare(item, threading)
        except _NOT_ITEM_FAILURES:
            raise
        except Exception as exc:  # noqa: BLE001 - one partner must not stop the others
            raise TemplateError(
                f"{item.campaign.name} step {item.step.number} for {item.partner.email}: "
                f"could not be prepared: {type(exc).__name__}: {exc}"
            ) from exc


class GuardedReader(Reader):
    """A message that makes the reading code fail (a bug, not an outage) is recorded as an
    `error` with its reason and the batch goes on: it must never hold back the mail after it.
    Outages and store errors still stop the batch, so the message is read again next time."""

    def salvage(self, raw: bytes, reason: str, domains: dict[str, int]) -> dict[str, Any]:
        """What can still be read of a message that made processing fail: its sender,
        subject and words, and the partner it points at (each step may fail too)."""
        found: dict[str, Any] = {}
        try:
            headers = read_headers(raw.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n")
            found.update(
                from_addr=headers.from_addr,
                from_name=headers.from_name,
                subject=headers.subject,
                full_text=fallback_text(raw) or None,
            )
            result = Classification(kind="error", reasons=(reason,), headers=headers)
            matches = self.matches_for(result, self.store.ledger_refs(header_ids(headers)), domains)
        except _NOT_ITEM_FAILURES:
            raise
        except Exception:  # noqa: BLE001 - keep what was found so far
            return found
        if matches:
            found.update(
                partner_id=matches[0].partner_id,
                campaign=matches[0].campaign,
                step=matches[0].step,
                matched_message=matches[0].ledger_id,
                match_rule=matches[0].rule,
                unverified=matches[0].unverified,
            )
        return found

    def process(
        self,
        account: Account,
        folder: str,
        uidvalidity: int,
        uid: int,
        raw: bytes,
        size: int,
        report: ReadReport,
        unsubscribe: tuple[str, ...],
        domains: dict[str, int],
        result: Classification | None = None,
    ) -> None:
        try:
            super().process(
                account, folder, uidvalidity, uid, raw, size, report, unsubscribe, domains, result
            )
        except _NOT_ITEM_FAILURES:
            raise
        except Exception as exc:  # noqa: BLE001 - one message must not stop the batch
            reason = f"{type(exc).__name__}: {exc}"[:500]
            now = self.clock()
            header_block = raw.split(b"\r\n\r\n", 1)[0]
            salvaged = self.salvage(raw, reason, domains)
            with self.store.write():
                self.store.record_inbound(
                    {
                        "account": account.name,
                        "folder": folder,
                        "uidvalidity": uidvalidity,
                        "uid": uid,
                        "message_id": message_key(None, header_block),  # the headers were not read
                        "size": size,
                        "kind": "error",
                        "reasons": json.dumps([f"processing failed: {reason}"]),
                        "error": reason,
                        "processed_at": iso(now),
                        # what the message says is kept; one matched to a partner waits for
                        # a person (an unreadable answer is still an answer)
                        "handled_at": None if salvaged.get("partner_id") else iso(now),
                        **salvaged,
                    }
                )
            report.errors.append(f"{account.name}/{folder} uid {uid}: {reason}")
            report.kinds["error"] = report.kinds.get("error", 0) + 1
            log_event(
                self.log,
                "read_failed",
                f"{account.name}/{folder} uid {uid}: could not "
                f"process this message ({reason}); recorded as an error, moving on",
                logging.ERROR,
                account=account.name,
                uid=uid,
            )
