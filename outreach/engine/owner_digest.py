"""Each owner's daily digest (issue 19, `[digest] per_owner = true`): what happened with
their own partners, sent to the address of the account that lists them, from that account
(or from `[digest] account` when it is set).

The content is the coordinator's digest (engine/digest.py) narrowed to one owner's
partners. Each owner's day is claimed in `owner_digests` before any SMTP traffic, so a
restart never sends it twice. One account failing holds back only its owners' digests,
which are tried again on the next run; a day with nothing for an owner sends nothing.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from outreach.core.errors import MailServerError, SignInNeeded
from outreach.core.model import Campaign
from outreach.core.settings import Account, Config, DigestSettings, owner_key
from outreach.engine.credentials import Logins
from outreach.engine.digest import Digest, build_message, collect, deliver, digest_due
from outreach.logs import log_event
from outreach.store import Store, parse_iso, queries
from outreach.transport.smtp import Outcome


def for_owner(digest: Digest, owner: str, emails: set[str], account: str) -> Digest:
    """The digest narrowed to one owner's partners (and their account's sign-in)."""

    def mine(rows: list[dict[str, object]]) -> list[dict[str, object]]:
        return [r for r in rows if r.get("partner_email") in emails]

    return replace(
        digest,
        replies=mine(digest.replies),
        auto_replies=mine(digest.auto_replies),
        bounces=mine(digest.bounces),
        refusals=mine(digest.refusals),
        unsubscribes=mine(digest.unsubscribes),
        unverified=mine(digest.unverified),
        due_tomorrow=[p for p in digest.due_tomorrow if owner_key(p.partner.owner) == owner],
        sign_in_needed=[w for w in digest.sign_in_needed if w[0] == account],
    )


def is_empty(digest: Digest) -> bool:
    return not (
        digest.replies
        or digest.auto_replies
        or digest.bounces
        or digest.refusals
        or digest.unsubscribes
        or digest.unverified
        or digest.due_tomorrow
        or digest.sign_in_needed
    )


def owners_to_send(config: Config) -> list[tuple[str, Account]]:
    """(owner, the account that lists it) for every owner in config.toml."""
    return [(o, a) for a in config.accounts.values() for o in a.owners]


def send_owner_digests(
    config: Config,
    campaigns: list[Campaign],
    store: Store,
    now: datetime,
    logger: logging.Logger,
    logins: Logins | None = None,
) -> dict[str, str]:
    """Send each owner's digest that is due today; owner -> status ("sent", "empty",
    "deferred", "failed", "unknown")."""
    settings = config.digest
    if settings is None or not settings.per_owner:
        return {}
    zone = ZoneInfo(config.timezone)
    logins = logins or Logins(config)
    statuses: dict[str, str] = {}
    waiting: list[tuple[str, str]] | None = None
    collected: dict[datetime, Digest] = {}
    for owner, account in owners_to_send(config):
        key = owner_key(owner)
        if not digest_due(now, settings, zone, store.owner_digest_day(key)):
            continue
        if waiting is None:
            waiting = [(s.account, s.waiting) for s in logins.statuses(config) if s.waiting]
        last = store.last_owner_digest(key)
        since = (parse_iso(last["created_at"]) if last else None) or now - timedelta(days=1)
        if since not in collected:  # owners whose last digest was the same day share it
            collected[since] = collect(store, config, campaigns, now, since, waiting)
        whole = collected[since]
        digest = for_owner(whole, key, queries.owner_emails(store, owner), account.name)
        sender = settings.account if settings.account_set else account.name
        mine = replace(settings, to=account.from_header, account=sender)
        message_id, raw = build_message(digest, mine, config, now)
        day = digest.day.isoformat()
        if not store.claim_owner_digest(day, key, sender, account.from_email, message_id, now):
            continue
        if is_empty(digest):
            store.finish_owner_digest(day, key, "empty", "nothing about their partners", now)
            statuses[owner] = "empty"
            continue
        statuses[owner] = _send(store, config, mine, raw, logins, logger, key, digest, now)
    return statuses


def _send(
    store: Store,
    config: Config,
    settings: DigestSettings,
    raw: bytes,
    logins: Logins,
    logger: logging.Logger,
    owner: str,
    digest: Digest,
    now: datetime,
) -> str:
    """Deliver one owner's claimed digest and record how it went."""
    day = digest.day.isoformat()
    try:
        result = deliver(config, settings, raw, logins)
    except (SignInNeeded, MailServerError) as exc:  # a refused login too: the others go on
        store.release_owner_digest(day, owner)
        log_event(
            logger,
            "smtp_error",
            f"{owner}'s daily digest not sent: {exc}",
            logging.WARNING,
            account=settings.account,
        )
        return "deferred"
    if result.outcome is Outcome.SENT:
        store.finish_owner_digest(day, owner, "sent", digest.counts(), now)
        log_event(
            logger,
            "digest",
            f"{owner}'s daily digest sent to {settings.to}: {digest.counts()}",
            account=settings.account,
        )
        return "sent"
    if result.outcome is Outcome.DEFERRED:
        store.release_owner_digest(day, owner)
        return "deferred"
    status = "unknown" if result.outcome is Outcome.UNKNOWN else "failed"
    store.finish_owner_digest(day, owner, status, f"{result.code or ''} {result.message}", now)
    log_event(
        logger,
        "digest_failed",
        f"{owner}'s daily digest {status}: {result.message} (not retried today)",
        logging.ERROR,
        account=settings.account,
    )
    return status
