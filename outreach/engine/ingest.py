"""The reading half of a cycle: new mail over IMAP -> classified, matched, acted on.

Each message is processed in one transaction (its inbound row, its effect on the partner
and sequence, its events); the folder checkpoint moves after each batch. A crash can make
the next run see a message again, but its (account, folder, UIDVALIDITY, UID) is already in
`inbound`, or its Message-ID with the same content digest, so it is not processed twice. A
UIDVALIDITY change rescans the folder with the same protection. A message that reuses a
recorded Message-ID with another sender or other content is recorded too, flagged
`duplicate_of` for a person.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from outreach.core.addresses import address_domain
from outreach.core.errors import AuthenticationError, MailServerError, SignInNeeded
from outreach.core.inbound.answers import recorded_answers
from outreach.core.inbound.classify import Classification, classify_message
from outreach.core.inbound.effects import decide, needs_review
from outreach.core.inbound.identity import content_digest, message_key, same_message
from outreach.core.inbound.mailparse import read_headers
from outreach.core.inbound.match import (
    PUBLIC_DOMAINS,
    Match,
    from_partner,
    header_ids,
    match_message,
    may_concern,
    worth_downloading,
)
from outreach.core.inbound.skim import HeaderSkim, skim_headers
from outreach.core.model import AccountPart, AccountState, Campaign, InboundKind
from outreach.core.settings import Account, Config
from outreach.core.zones import partner_zone
from outreach.engine.classify_pool import ClassifierPool
from outreach.engine.credentials import Logins, announce_waiting, announce_working
from outreach.engine.effects import apply_effect
from outreach.logs import log_event
from outreach.store import Store, iso
from outreach.transport.imap import Mailbox

Clock = Callable[[], datetime]

__all__ = ["PUBLIC_DOMAINS", "ReadReport", "Reader"]


@dataclass
class ReadReport:
    seen: int = 0
    relevant: int = 0
    recorded: int = 0
    kinds: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def summary(self) -> str:
        kinds = ", ".join(f"{n} {k}" for k, n in sorted(self.kinds.items()))
        text = f"{self.seen} new in mailbox, {self.recorded} recorded"
        text += f" ({kinds})" if kinds else ""
        if self.errors:  # never a summary that reads as success when the mailbox was not read
            failed = "failed: " + "; ".join(self.errors)
            return failed if not (self.seen or self.recorded) else f"{text}; {failed}"
        return text


@dataclass
class _Fetched:
    """A batch downloaded, its classification under way."""

    account: Account
    folder: str
    uidvalidity: int
    last_uid: int
    items: list[tuple[int, bytes, int]]  # (uid, message, size)
    unsubscribe: tuple[str, ...]
    domains: dict[str, int]
    today: date
    classifying: Future[list[Classification]] | None


SHARED_POOL = ClassifierPool()  # one worker process for the whole program, started when needed


class Reader:
    def __init__(
        self,
        config: Config,
        campaigns: list[Campaign],
        store: Store,
        clock: Clock,
        logger: logging.Logger,
        should_stop: Callable[[], bool] = lambda: False,
        pool: ClassifierPool = SHARED_POOL,
        logins: Logins | None = None,
    ) -> None:
        self.pool = pool
        self.logins = logins or Logins(config)
        self.config = config
        self.campaigns = campaigns
        self.store = store
        self.clock = clock
        self.log = logger
        self.should_stop = should_stop

    def read_all(self, report: ReadReport) -> None:
        """Read every account with an [imap] table: a reply lands in the mailbox of the
        account that sent it (or any other: its Message-ID ties it to its sequence). One
        mailbox failing holds back no other; each account's state is recorded for
        `outreach status`. A refused login stops the worker (AuthenticationError) only
        when every mailbox refused it."""
        readable = [a for a in self.config.accounts.values() if a.imap is not None]
        refused: list[AuthenticationError] = []
        for account in readable:
            if self.should_stop():
                return
            try:
                problem = self.read_account(account, report)
            except SignInNeeded as exc:  # only this mailbox waits; the others are read
                report.errors.append(str(exc))
                announce_waiting(self.logins, self.log, exc)
                problem = str(exc)
            except AuthenticationError as exc:
                refused.append(exc)
                report.errors.append(str(exc))
                log_event(self.log, "imap_error", str(exc), logging.ERROR, account=account.name)
                problem = str(exc)
            self.store.set_account_state(
                account.name,
                AccountPart.READ,
                AccountState.FAILING if problem else AccountState.OK,
                problem,
                self.clock(),
            )
        if refused and len(refused) == len(readable):
            raise refused[0]

    def read_account(self, account: Account, report: ReadReport, attempts: int = 3) -> str | None:
        """Read one account, reconnecting with backoff when the connection drops; the
        reason it could not be read, or None."""
        assert account.imap is not None
        for attempt in range(1, attempts + 1):
            try:
                login = self.logins.for_server(account, account.imap)
                with Mailbox(account.imap, login) as mailbox:
                    self.read_folder(mailbox, account, account.imap.folder, report)
                announce_working(self.logins, self.log, account.name)
                return None
            except (AuthenticationError, SignInNeeded):
                raise
            except MailServerError as exc:
                if attempt == attempts or exc.permanent or self.should_stop():
                    report.errors.append(str(exc))
                    log_event(
                        self.log, "imap_error", str(exc), logging.WARNING, account=account.name
                    )
                    return str(exc)
                time.sleep(0.5 * 2 ** (attempt - 1))
        return None

    def read_folder(
        self, mailbox: Mailbox, account: Account, folder: str, report: ReadReport
    ) -> None:
        uidvalidity, _ = mailbox.select_readonly(folder)
        checkpoint = self.store.checkpoint(account.name, folder)
        first = 1
        if checkpoint is not None:
            if checkpoint[0] == uidvalidity:
                first = checkpoint[1] + 1
            else:
                log_event(
                    self.log,
                    "uidvalidity",
                    f"{account.name}/{folder}: UIDVALIDITY changed "
                    f"({checkpoint[0]} -> {uidvalidity}); rescanning, nothing is counted "
                    "twice",
                    logging.WARNING,
                    account=account.name,
                )
        uids = mailbox.uids_from(first)
        batch_size = max(1, self.config.replies.batch_size)
        pending: _Fetched | None = None  # classified meanwhile; recorded after the next fetch
        try:
            for start in range(0, len(uids), batch_size):
                if self.should_stop():
                    break
                batch = uids[start : start + batch_size]
                fetched = self.fetch_batch(mailbox, account, folder, uidvalidity, batch, report)
                if pending is not None:
                    self.finish_batch(pending, report)
                pending = fetched
        except MailServerError:
            if pending is not None:  # downloaded already: record it before giving up
                self.finish_batch(pending, report)
            raise
        if pending is not None:
            self.finish_batch(pending, report)
        if not uids and (checkpoint is None or checkpoint[0] != uidvalidity):
            self.store.set_checkpoint(account.name, folder, uidvalidity, 0, self.clock())

    def fetch_batch(
        self,
        mailbox: Mailbox,
        account: Account,
        folder: str,
        uidvalidity: int,
        uids: list[int],
        report: ReadReport,
    ) -> _Fetched:
        """Download what in this batch may concern us and start classifying it.

        A message whose Message-ID was recorded already is downloaded too (it is rare: a copy,
        a rescan): only its content tells a re-delivery from a different message.
        """
        report.seen += len(uids)
        seen = self.store.seen_uids(account.name, folder, uidvalidity, uids)
        fresh = [u for u in uids if u not in seen]
        heads = mailbox.fetch_headers(fresh)
        unsubscribe = self.unsubscribe_addresses(account)
        domains = self.partner_domains()
        certain, maybe = self.candidates(heads, unsubscribe, domains)
        parsed = {uid: read_headers(heads[uid][0]) for uid in maybe}
        our_ids = self.store.ledger_refs(i for h in parsed.values() for i in header_ids(h))
        senders = self.store.partner_ids_by_address(
            h.from_addr for h in parsed.values() if h.from_addr
        )
        wanted = [
            uid
            for uid in heads
            if uid in certain
            or (
                uid in parsed
                and worth_downloading(parsed[uid], our_ids, senders, domains, unsubscribe)
            )
        ]
        report.relevant += len(wanted)
        bodies = mailbox.fetch_bodies(wanted, self.config.replies.max_message_size)
        items = [(uid, bodies[uid], heads[uid][1]) for uid in wanted if uid in bodies]
        today = self.clock().date()
        raws = [raw for _, raw, _ in items]
        return _Fetched(
            account,
            folder,
            uidvalidity,
            uids[-1],
            items,
            unsubscribe,
            domains,
            today,
            self.pool.submit(raws, unsubscribe, today),
        )

    def finish_batch(self, fetched: _Fetched, report: ReadReport) -> None:
        """Match, record and act on a fetched batch, then move the checkpoint past it."""
        was_broken = self.pool.broken
        results = self.pool.results(
            fetched.classifying,
            [raw for _, raw, _ in fetched.items],
            fetched.unsubscribe,
            fetched.today,
        )
        if self.pool.broken and not was_broken:
            log_event(
                self.log,
                "classifier_helper",
                "the classifier helper process failed; "
                "classifying in the worker (same results, slower), trying a new helper "
                f"in {self.pool.retry_after / 60:g} minutes",
                logging.WARNING,
                account=fetched.account.name,
            )
        for (uid, raw, size), result in zip(fetched.items, results, strict=True):
            self.process(
                fetched.account,
                fetched.folder,
                fetched.uidvalidity,
                uid,
                raw,
                size,
                report,
                fetched.unsubscribe,
                fetched.domains,
                result,
            )
        self.store.set_checkpoint(
            fetched.account.name,
            fetched.folder,
            fetched.uidvalidity,
            fetched.last_uid,
            self.clock(),
        )

    def candidates(
        self,
        heads: dict[int, tuple[bytes, int]],
        unsubscribe: tuple[str, ...],
        domains: dict[str, int],
    ) -> tuple[dict[int, HeaderSkim], list[int]]:
        """Sort a batch by its headers: (certainly worth downloading, maybe); the rest
        certainly is not.

        Parsing every header block with the email package costs more than downloading the
        whole message. A plain scan (`skim_headers`) settles most of a mailbox: mail that
        cannot concern us is left out, mail from a partner's address is in; only what the
        scan cannot settle (or cannot read for certain) goes through `read_headers` and
        `worth_downloading`. The decision is the same as parsing every header block.
        """
        skims = {uid: skim_headers(block) for uid, (block, _size) in heads.items()}
        clear = [s for s in skims.values() if s is not None]
        ours = self.store.ledger_refs(i for s in clear for i in s.ids)
        senders = self.store.partner_ids_by_address(s.from_addr for s in clear if s.from_addr)
        certain: dict[int, HeaderSkim] = {}
        maybe: list[int] = []
        for uid, skim in skims.items():
            if skim is None:
                maybe.append(uid)
            elif skim.message_id_known and from_partner(skim, senders, domains):
                certain[uid] = skim
            elif may_concern(skim, ours, senders, domains, unsubscribe):
                maybe.append(uid)
        return certain, maybe

    def own_addresses(self) -> frozenset[str]:
        """The accounts' own From addresses: mail from them is ours, never an answer."""
        return frozenset(a.from_email.lower() for a in self.config.accounts.values())

    def unsubscribe_addresses(self, account: Account) -> tuple[str, ...]:
        # Only a dedicated address means "stop" by itself; replies to the coordinator's own
        # address are judged by what they say.
        if account.unsubscribe_mailto and account.unsubscribe_mailto.lower() != account.from_email:
            return (account.unsubscribe_mailto.lower(),)
        return ()

    def partner_domains(self) -> dict[str, int]:
        """Domain -> partner for campaigns with match_domain, when the domain is one partner's
        own (not a public mailbox provider, not shared by two partners)."""
        if not any(c.match_domain for c in self.campaigns):
            return {}
        counts: dict[str, list[int]] = {}
        for partner_id, email in self.store.active_addresses():
            counts.setdefault(address_domain(email), []).append(partner_id)
        return {d: ids[0] for d, ids in counts.items() if len(ids) == 1 and d not in PUBLIC_DOMAINS}

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
        """Classify (unless done already), match and act on one message; one bad message
        never stops the batch."""
        now = self.clock()
        if result is None:
            result = classify_message(raw, unsubscribe_addresses=unsubscribe, today=now.date())
        headers = result.headers
        ids = set(result.original_message_ids) | header_ids(headers)
        if headers.message_id:
            ids.add(headers.message_id)
        ledger = self.store.ledger_refs(ids)
        if self.ours(result, ledger):
            return  # a copy of what outreach (or the coordinator) sent: not an answer
        matches = self.matches_for(result, ledger, domains)
        if not matches:
            return  # not ours: left alone, not logged
        key = message_key(headers.message_id, raw.split(b"\r\n\r\n", 1)[0])
        digest = content_digest(headers, raw)
        earlier = self.store.inbound_with_message_id(key)
        if any(same_message(e, digest, headers.from_addr, result.full_text) for e in earlier):
            return  # the same message delivered again: recorded once
        duplicate_of = earlier[0]["id"] if earlier else None
        with self.store.write():
            inbound_id = self.store.record_inbound(
                self.inbound_values(
                    account,
                    folder,
                    uidvalidity,
                    uid,
                    size,
                    key,
                    result,
                    matches[0],
                    now,
                    digest=digest,
                    duplicate_of=duplicate_of,
                )
            )
            for match in matches:
                if match.unverified is None:
                    self.apply(match, result, inbound_id, now, duplicate_of)
                else:
                    self.hold(match, result, inbound_id, now)
        report.recorded += 1
        report.kinds[result.kind] = report.kinds.get(result.kind, 0) + 1
        held = matches[0].unverified
        bounced = ", ".join(result.bounced_recipients) if result.kind == InboundKind.BOUNCE else ""
        extra: dict[str, Any] = {"bounced": bounced} if bounced else {}
        log_event(
            self.log,
            "unverified" if held else result.kind,
            f"{result.kind} from {headers.from_addr or '?'} ({matches[0].rule})"
            + (f" for {bounced}" if bounced else "")
            + (f"; not acted on: {held}" if held else "")
            + (f"; reuses the Message-ID of #{duplicate_of}" if duplicate_of else ""),
            campaign=matches[0].campaign,
            step=matches[0].step,
            reasons="; ".join(result.reasons)[:200],
            **extra,
        )

    def matches_for(
        self, result: Classification, ledger: dict[str, Any], domains: dict[str, int]
    ) -> list[Match]:
        """Whom a classified message concerns (match_message, fed from the store)."""
        headers = result.headers
        addresses = {a for a in (*result.bounced_recipients, headers.from_addr) if a}
        by_address = self.store.partner_ids_by_address(addresses)
        latest = self.store.latest_sent({*by_address.values(), *domains.values()})
        trusting = {c.name for c in self.campaigns if c.match_domain}
        return match_message(result, ledger, by_address, latest, domains, trusting)

    def ours(self, result: Classification, ledger: dict[str, Any]) -> bool:
        """A message outreach sent (its Message-ID is in the ledger: a Bcc or list copy), or
        one from an account's own address (the coordinator's own mail in a thread)."""
        if result.kind == InboundKind.BOUNCE or result.complaint:
            return False  # a report quotes our messages; its own id and sender are not ours
        headers = result.headers
        return bool(
            (headers.message_id and headers.message_id in ledger)
            or (headers.from_addr or "") in self.own_addresses()
        )

    def inbound_values(
        self,
        account: Account,
        folder: str,
        uidvalidity: int,
        uid: int,
        size: int,
        key: str,
        result: Classification,
        match: Match,
        now: datetime,
        *,
        digest: str | None = None,
        duplicate_of: int | None = None,
    ) -> dict[str, object]:
        import json

        headers = result.headers
        review = needs_review(result.kind, result.contact_change, match.unverified, duplicate_of)
        return {
            "account": account.name,
            "folder": folder,
            "uidvalidity": uidvalidity,
            "uid": uid,
            "message_id": key,
            "from_addr": headers.from_addr,
            "subject": headers.subject,
            "date": iso(headers.date) if headers.date else None,
            "size": size,
            "kind": result.kind,
            "reasons": json.dumps(list(result.reasons), ensure_ascii=False),
            "partner_id": match.partner_id,
            "campaign": match.campaign,
            "step": match.step,
            "matched_message": match.ledger_id,
            "match_rule": match.rule,
            "text": result.text,
            "full_text": result.full_text,
            "signature": result.signature,
            "return_date": result.return_date.isoformat() if result.return_date else None,
            "bounced": json.dumps(list(result.bounced_recipients)),
            "hard": None if result.hard is None else int(result.hard),
            "status_code": result.status,
            "diagnostic": result.diagnostic,
            "contact_change": int(result.contact_change),
            "error": "; ".join(result.reasons) if result.kind == "error" else None,
            "processed_at": iso(now),
            "handled_at": None if review else iso(now),
            "from_name": headers.from_name,
            "unverified": match.unverified,
            "duplicate_of": duplicate_of,
            "content_hash": digest,
            "date_header": headers.date_text
            if headers.date is None and headers.date_text
            else None,
            "unreadable": json.dumps(list(headers.problems), ensure_ascii=False),
            **self.answer_values(result, match),
        }

    def answer_values(self, result: Classification, match: Match) -> dict[str, object]:
        """A reply's answer to each of its campaign's questions, and whether it asks for help
        (docs/answers.md); nothing for other mail or a campaign without questions."""
        import json

        questions = next((c.questions for c in self.campaigns if c.name == match.campaign), ())
        answers, asked = recorded_answers(result.kind, result.text, questions)
        if answers is None:
            return {}
        return {"answers": json.dumps(answers, ensure_ascii=False), "asked_help": int(bool(asked))}

    def hold(self, match: Match, result: Classification, inbound_id: int, now: datetime) -> None:
        """An unverified message: in the partner's log and the review queue, nothing else."""
        sender = result.headers.from_addr or "(no From)"
        kind = ("complaint" if result.complaint else result.kind).replace("_", "-")
        self.store.add_event(
            "unverified",
            now,
            partner_id=match.partner_id,
            campaign=match.campaign,
            step=match.step,
            message_id=result.headers.message_id,
            inbound_id=inbound_id,
            summary=f"{kind} from {sender}, not acted on: {match.unverified}; "
            f"in the review queue as #{inbound_id}",
            detail={
                "kind": result.kind,
                "from": sender,
                "rule": match.rule,
                "reason": match.unverified,
            },
        )

    def apply(
        self,
        match: Match,
        result: Classification,
        inbound_id: int,
        now: datetime,
        duplicate_of: int | None = None,
    ) -> None:
        partners = self.store.partners_by_id([match.partner_id])
        partner = partners[match.partner_id]
        zone = partner_zone(partner, self.config.timezone)
        effect = decide(result, zone, now, self.config.replies.auto_reply_pause)
        sender = result.headers.from_addr
        detail = {
            "rule": match.rule,
            "reasons": list(result.reasons),
            "return_date": result.return_date.isoformat() if result.return_date else None,
            "status": result.status,
            "diagnostic": result.diagnostic,
            "hard": result.hard,
            "contact_change": result.contact_change,
            "from": sender if sender != partner.email else None,
            "duplicate_of": duplicate_of,
        }
        self.store.add_event(
            effect.event,
            now,
            partner_id=match.partner_id,
            campaign=match.campaign,
            step=match.step,
            message_id=result.headers.message_id,
            inbound_id=inbound_id,
            summary=effect.summary,
            detail={k: v for k, v in detail.items() if v not in (None, [])},
        )
        apply_effect(
            self.store,
            effect,
            partner_id=match.partner_id,
            campaign=match.campaign,
            inbound_id=inbound_id,
            now=now,
            soft_bounce_limit=self.config.replies.soft_bounce_limit,
        )
