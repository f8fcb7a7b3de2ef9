"""The daily digest: once a day the coordinator gets one email that sums up what happened.

New replies in the partners' own words, auto-replies with their return dates, bounces and
refusals, opt-outs, and who is due tomorrow. Deciding (is it due? what goes in it?) is pure;
`send_digest` is the thin part that reads the store and talks SMTP. The day is reserved in
the `digests` table before any SMTP traffic, so a restart never sends it twice the same day.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, parseaddr
from typing import Any
from zoneinfo import ZoneInfo

from outreach.core.errors import AuthenticationError, MailServerError, SignInNeeded
from outreach.core.model import Campaign
from outreach.core.plan import Projection
from outreach.core.settings import Config, DigestSettings, Limits
from outreach.engine.credentials import Logins
from outreach.engine.message_ids import new_message_id
from outreach.engine.planning import projections
from outreach.logs import log_event
from outreach.store import Store, parse_iso
from outreach.transport.smtp import Envelope, Outcome, Result, deliver_batch

DIGEST_KINDS = ("reply", "auto_reply", "bounce", "unsubscribe")
TEXT_LIMIT = 1200  # characters of a partner's words quoted in the digest


def local_day(now: datetime, zone: ZoneInfo) -> date:
    return now.astimezone(zone).date()


def digest_due(
    now: datetime, settings: DigestSettings, zone: ZoneInfo, last_day: str | None
) -> bool:
    """Due once `at` has passed on the coordinator's local day, unless that day's digest
    already went out. A worker that was down at `at` sends it when it comes back."""
    local = now.astimezone(zone)
    if local.time().replace(tzinfo=None) < settings.at:
        return False
    return last_day != local.date().isoformat()


@dataclass
class Digest:
    day: date
    since: datetime
    zone: ZoneInfo
    replies: list[dict[str, Any]] = field(default_factory=list)
    auto_replies: list[dict[str, Any]] = field(default_factory=list)
    bounces: list[dict[str, Any]] = field(default_factory=list)
    refusals: list[dict[str, Any]] = field(default_factory=list)
    unsubscribes: list[dict[str, Any]] = field(default_factory=list)
    due_tomorrow: list[Projection] = field(default_factory=list)
    unverified: list[dict[str, Any]] = field(default_factory=list)  # changed nothing
    # accounts that wait for `outreach auth login NAME`: (name, why)
    sign_in_needed: list[tuple[str, str]] = field(default_factory=list)

    def counts(self) -> str:
        parts = [
            _plural(len(self.replies), "new reply", "new replies"),
            _plural(len(self.auto_replies), "auto-reply", "auto-replies"),
            _plural(len(self.bounces) + len(self.refusals), "bounce", "bounces"),
            _plural(len(self.unsubscribes), "opt-out", "opt-outs"),
            f"{len(self.due_tomorrow)} due tomorrow",
        ]
        return ", ".join(parts)


def _plural(count: int, one: str, many: str) -> str:
    return f"{count} {one if count == 1 else many}"


def due_tomorrow(
    store: Store, campaigns: list[Campaign], now: datetime, timezone: str
) -> list[Projection]:
    """The first step each partner is due tomorrow (coordinator's day), assuming nobody
    answers before then."""
    zone = ZoneInfo(timezone)
    tomorrow = local_day(now, zone) + timedelta(days=1)
    start = datetime.combine(tomorrow, time(0), zone)
    end = datetime.combine(tomorrow + timedelta(days=1), time(0), zone)
    found: dict[tuple[str, str], Projection] = {}
    for row in projections(store, campaigns, start, end - timedelta(microseconds=1), timezone):
        found.setdefault((row.campaign, row.partner.email), row)
    return sorted(found.values(), key=lambda r: (r.at, r.campaign, r.partner.email))


def collect(
    store: Store,
    config: Config,
    campaigns: list[Campaign],
    now: datetime,
    since: datetime,
    waiting: Sequence[tuple[str, str]] = (),
) -> Digest:
    zone = ZoneInfo(config.timezone)
    digest = Digest(day=local_day(now, zone), since=since, zone=zone, sign_in_needed=list(waiting))
    for row in store.inbound_since(since, DIGEST_KINDS):
        if row.get("unverified"):  # not the partner's: told apart, it changed nothing
            digest.unverified.append(row)
            continue
        {
            "reply": digest.replies,
            "auto_reply": digest.auto_replies,
            "bounce": digest.bounces,
            "unsubscribe": digest.unsubscribes,
        }[row["kind"]].append(row)
    # a reply that asks for help comes first (docs/answers.md); otherwise as they came
    digest.replies.sort(key=lambda row: not row.get("asked_help"))
    digest.refusals = [
        r
        for r in store.refusals_since(since)
        if json.loads(r.get("detail") or "{}").get("permanent")
    ]
    digest.due_tomorrow = due_tomorrow(store, campaigns, now, config.timezone)
    return digest


def _who(row: dict[str, Any]) -> str:
    name = row.get("partner_name") or ""
    email = row.get("partner_email") or row.get("from_addr") or "?"
    organization = row.get("partner_organization") or ""
    who = f"{name} <{email}>" if name else email
    return f"{who}, {organization}" if organization else who


def _where(row: dict[str, Any]) -> str:
    if row.get("campaign") and row.get("step"):
        return f" ({row['campaign']}, step {row['step']})"
    if row.get("campaign"):
        return f" ({row['campaign']})"
    return ""


def _long_date(day: date) -> str:
    return f"{day.strftime('%A')} {day.day} {day.strftime('%B %Y')}"


def render_text(digest: Digest) -> str:
    """The digest as plain text (what the coordinator reads)."""
    since = digest.since.astimezone(digest.zone)
    lines = [
        f"outreach daily digest for {_long_date(digest.day)}",
        f"Since {_long_date(since.date())} {since.strftime('%H:%M')} ({digest.zone.key}): "
        f"{digest.counts()}.",
        "",
    ]
    if digest.sign_in_needed:
        lines.append(f"SIGN-IN NEEDED ({len(digest.sign_in_needed)})")
        for name, why in digest.sign_in_needed:
            lines.append(
                f"- {name}: {why}; its messages wait in the queue and its mailbox is "
                f"not read until you run `outreach auth login {name}`"
            )
        lines.append("")
    if digest.replies:
        asking = sum(1 for row in digest.replies if row.get("asked_help"))
        lines.append(
            f"NEW REPLIES ({len(digest.replies)}"
            + (f", {asking} asking for help" if asking else "")
            + ")"
        )
        for row in digest.replies:
            flag = "[ASKS FOR HELP] " if row.get("asked_help") else ""
            lines.append(f"- {flag}{_who(row)}{_where(row)}")
            text = (row.get("text") or row.get("full_text") or "").strip()
            if len(text) > TEXT_LIMIT:
                text = text[: TEXT_LIMIT - 1].rstrip() + "…"
            for line in (text or "(no text)").splitlines():
                lines.append(f"    | {line}".rstrip())
        lines.append("")
    if digest.auto_replies:
        lines.append(f"AUTO-REPLIES ({len(digest.auto_replies)})")
        for row in digest.auto_replies:
            if row.get("return_date"):
                back = date.fromisoformat(row["return_date"])
                note = f"away until {_long_date(back)}; follow-ups wait until then"
            else:
                note = "away, no return date given; follow-ups paused for a while"
            if row.get("contact_change"):
                note = "seems to have left the organization: please find a new contact"
            lines.append(f"- {_who(row)}{_where(row)}: {note}")
        lines.append("")
    if digest.bounces or digest.refusals:
        lines.append(f"BOUNCES ({len(digest.bounces) + len(digest.refusals)})")
        for row in digest.bounces:
            hard = {None: "", 1: "hard", 0: "soft"}.get(row.get("hard"), "")
            reason = row.get("diagnostic") or row.get("status_code") or ""
            recipients = ", ".join(json.loads(row.get("bounced") or "[]"))
            detail = ", ".join(x for x in (hard and f"{hard} bounce", recipients, reason) if x)
            lines.append(f"- {_who(row)}{_where(row)}: {detail or 'bounced'}")
        for row in digest.refusals:
            lines.append(
                f"- {_who(row)}{_where(row)}: refused by the mail server: "
                f"{row.get('summary') or ''}".rstrip()
            )
        lines.append("")
    if digest.unverified:
        lines.append(f"TO CHECK: NOT ACTED ON ({len(digest.unverified)})")
        for row in digest.unverified:
            kind = str(row.get("kind") or "mail").replace("_", "-")
            lines.append(
                f"- {kind} about {_who(row)}{_where(row)} from "
                f"{row.get('from_addr') or '(no From)'}: {row['unverified']} "
                f"(outreach replies, #{row['id']})"
            )
        lines.append("")
    if digest.unsubscribes:
        lines.append(f"OPTED OUT ({len(digest.unsubscribes)})")
        for row in digest.unsubscribes:
            lines.append(f"- {_who(row)}{_where(row)}: asked to be removed; no more mail")
        lines.append("")
    lines.append(f"DUE TOMORROW ({len(digest.due_tomorrow)})")
    for item in digest.due_tomorrow:
        partner = item.partner
        who = f"{partner.name} <{partner.email}>" if partner.name else partner.email
        when = item.at.astimezone(digest.zone).strftime("%H:%M")
        lines.append(
            f"- {when}  {item.campaign} step {item.step}  {who}"
            + (f", {partner.organization}" if partner.organization else "")
        )
    if not digest.due_tomorrow:
        lines.append("- nothing")
    lines += [
        "",
        "The full response log: `outreach log`. This email was sent by the outreach "
        "worker ([digest] in config.toml).",
    ]
    return "\n".join(lines) + "\n"


def build_message(
    digest: Digest, settings: DigestSettings, config: Config, now: datetime
) -> tuple[str, bytes]:
    """(Message-ID, raw bytes) of the digest email."""
    account = config.accounts[settings.account]
    message = EmailMessage(policy=SMTP)
    message_id = new_message_id(account.domain)
    message["From"] = account.from_header
    message["To"] = settings.to
    message["Subject"] = f"outreach digest {digest.day.isoformat()}: {digest.counts()}"
    message["Date"] = format_datetime(now)
    message["Message-ID"] = message_id
    # RFC 3834: machine-made, so vacation responders do not answer it
    message["Auto-Submitted"] = "auto-generated"
    message["X-Outreach"] = "digest"
    message.set_content(render_text(digest))
    return message_id, message.as_bytes(policy=SMTP)


def deliver(config: Config, settings: DigestSettings, raw: bytes, logins: Logins) -> Result:
    account = config.accounts[settings.account]
    recipient = parseaddr(settings.to)[1] or settings.to
    results: list[Result] = []

    def transition(done: Sequence[tuple[Envelope, Result]], claims: Sequence[Envelope]) -> set[int]:
        results.extend(result for _, result in done)
        return {envelope.key for envelope in claims}

    asyncio.run(
        deliver_batch(
            account.smtp,
            logins.for_server(account, account.smtp),
            Limits(concurrency=1),
            [Envelope(0, account.from_email, recipient, raw)],
            transition,
        )
    )
    return results[0] if results else Result(Outcome.DEFERRED, None, "not attempted")


def send_digest(
    config: Config,
    campaigns: list[Campaign],
    store: Store,
    now: datetime,
    logger: logging.Logger,
    logins: Logins | None = None,
) -> str | None:
    """Send today's digest when it is due; returns its status ("sent", "failed", ...) or None
    when nothing was due. AuthenticationError propagates (it stops the worker) when the
    project has one account; with several, only this digest waits."""
    settings = config.digest
    if settings is None or not settings.to:  # per_owner alone: engine/owner_digest.py
        return None
    zone = ZoneInfo(config.timezone)
    last = store.last_digest()
    if not digest_due(now, settings, zone, last["day"] if last else None):
        return None
    since = (parse_iso(last["created_at"]) if last else None) or now - timedelta(days=1)
    logins = logins or Logins(config)
    waiting = [(s.account, s.waiting) for s in logins.statuses(config) if s.waiting]
    digest = collect(store, config, campaigns, now, since, waiting)
    message_id, raw = build_message(digest, settings, config, now)
    day = digest.day.isoformat()
    if not store.claim_digest(day, settings.to, message_id, now):
        return None
    try:
        result = deliver(config, settings, raw, logins)
    except SignInNeeded as exc:  # its account waits (the sender says so): sent after
        store.release_digest(day)
        log_event(logger, "signin_needed", f"daily digest not sent: {exc}", logging.DEBUG)
        return "deferred"
    except AuthenticationError as exc:
        store.release_digest(day)
        if len(config.accounts) == 1:
            raise
        # a team: the sender reports this account's refusal (and stops the worker only
        # when every account is refused); the digest waits for it like its messages
        log_event(logger, "smtp_error", f"daily digest not sent: {exc}", logging.WARNING)
        return "deferred"
    except MailServerError as exc:
        store.release_digest(day)
        log_event(logger, "smtp_error", f"daily digest not sent: {exc}", logging.WARNING)
        return "deferred"
    if result.outcome is Outcome.SENT:
        store.finish_digest(day, "sent", digest.counts(), now)
        log_event(
            logger,
            "digest",
            f"daily digest sent to {settings.to}: {digest.counts()}",
            message_id=message_id,
        )
        return "sent"
    if result.outcome is Outcome.DEFERRED:
        store.release_digest(day)
        log_event(
            logger,
            "smtp_error",
            f"daily digest deferred: {result.message}",
            logging.WARNING,
            code=result.code,
        )
        return "deferred"
    status = "unknown" if result.outcome is Outcome.UNKNOWN else "failed"
    store.finish_digest(day, status, f"{result.code or ''} {result.message}".strip(), now)
    log_event(
        logger,
        "digest_failed",
        f"daily digest to {settings.to} {status}: {result.message} (not retried today)",
        logging.ERROR,
        code=result.code,
    )
    return status
