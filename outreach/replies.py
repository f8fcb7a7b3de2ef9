"""Pure decisions about inbound mail: is it worth downloading, whom does it concern, and
what it does to the sequence. No I/O: the ingest adapter feeds these functions lookups.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from outreach.classify import Classification
from outreach.mailparse import MessageHeaders
from outreach.model import LedgerRef

# Mail from these local parts, or with these subjects, may be a bounce of ours even when
# nothing in its headers points at us: its body says which message came back.
BOUNCE_SENDERS = re.compile(
    r"^(mailer-daemon|postmaster|mail-daemon|mailer|bounces?|"
    r"mdaemon|nobody|microsoftexchange[0-9a-f]*)[@+]",
    re.IGNORECASE,
)
BOUNCE_SUBJECTS = re.compile(
    r"undeliver|delivery (status|fail|report|notification)|returned mail|failure notice|"
    r"mail delivery|non[- ]?delivery|could not be delivered|nicht zustellbar|"
    r"unzustellbar|non remis|no se puede entregar|rejected|delayed mail|warning: message",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Match:
    partner_id: int
    campaign: str | None
    step: int | None
    ledger_id: int | None
    rule: str


def header_ids(headers: MessageHeaders) -> set[str]:
    """Message-IDs a message points at (In-Reply-To, References), without angle brackets."""
    ids = set(headers.references)
    if headers.in_reply_to:
        ids.add(headers.in_reply_to)
    return ids


def may_be_bounce(headers: MessageHeaders) -> bool:
    return bool(
        headers.return_path in ("", "<>")
        or (headers.from_addr and BOUNCE_SENDERS.match(headers.from_addr))
        or headers.report_type in ("delivery-status", "feedback-report")
        or BOUNCE_SUBJECTS.search(headers.subject or "")
    )


def worth_downloading(
    headers: MessageHeaders,
    our_ids: Collection[str],
    partner_addresses: Collection[str],
    partner_domains: Collection[str],
    unsubscribe_addresses: Collection[str],
) -> bool:
    """Decide from the headers alone whether a message may concern outreach.

    Only these are downloaded whole: a coordinator's mailbox is mostly other mail, and
    reading it all would be slower than it needs to be and none of our business.
    """
    if header_ids(headers) & set(our_ids):
        return True
    sender = headers.from_addr or ""
    if sender in partner_addresses:
        return True
    if sender.rpartition("@")[2] in partner_domains:
        return True
    if set(headers.to_addrs) & set(unsubscribe_addresses):
        return True
    return may_be_bounce(headers)


def _match_of(ref: LedgerRef, rule: str) -> Match:
    """A match on one of our messages: its partner, campaign and step."""
    return Match(ref.partner_id, ref.campaign, ref.step, ref.id, rule)


def match_message(
    result: Classification,
    ledger_by_id: Mapping[str, LedgerRef],
    partner_by_address: Mapping[str, int],
    latest_by_partner: Mapping[int, LedgerRef],
    partner_by_domain: Mapping[str, int],
) -> list[Match]:
    """Whom a message concerns, in order of certainty (several for a multi-recipient bounce).

    1. In-Reply-To / References against our Message-IDs;
    2. for bounces, the Message-ID inside the returned message, then the failed recipients;
    3. the sender's address against the roster (their latest sequence);
    4. the sender's domain against partners' domains (campaigns that allow it).
    """
    headers = result.headers
    if result.kind == "bounce":
        for message_id in result.original_message_ids:
            ref = ledger_by_id.get(message_id)
            if ref is not None:
                return [_match_of(ref, "the Message-ID inside the returned message")]
        found = []
        for address in result.bounced_recipients:
            partner_id = partner_by_address.get(address)
            if partner_id is not None:
                ref = latest_by_partner.get(partner_id)
                found.append(
                    Match(
                        partner_id,
                        ref.campaign if ref else None,
                        ref.step if ref else None,
                        ref.id if ref else None,
                        f"failed recipient {address} is in the roster",
                    )
                )
        if found:
            return found
    pointers: list[str | None] = [headers.in_reply_to, *reversed(headers.references)]
    for pointer in pointers:
        ref = ledger_by_id.get(pointer or "")
        if ref is not None:
            return [_match_of(ref, "In-Reply-To/References point at our message")]
    sender = headers.from_addr or ""
    partner_id = partner_by_address.get(sender)
    if partner_id is not None and partner_id in latest_by_partner:
        ref = latest_by_partner[partner_id]
        return [Match(partner_id, ref.campaign, ref.step, ref.id, "the sender is in the roster")]
    partner_id = partner_by_domain.get(sender.rpartition("@")[2])
    if partner_id is not None and partner_id in latest_by_partner:
        ref = latest_by_partner[partner_id]
        return [
            Match(partner_id, ref.campaign, ref.step, ref.id, "the sender's domain is a partner's")
        ]
    return []


@dataclass(frozen=True)
class Effect:
    """What an inbound message does to the partner and the sequence."""

    event: str  # reply / auto_reply / bounce / unsubscribe / other / error
    sequence_state: str | None = None  # replied / paused / stopped, for the matched campaign
    paused_until: datetime | None = None
    partner_status: str | None = None  # bounced / opted_out: everywhere
    soft_bounce: bool = False
    needs_review: bool = False
    summary: str = ""


def pause_until(
    return_date: date | None, zone: ZoneInfo, now: datetime, default_pause: timedelta
) -> datetime:
    """The day after the return date (local midnight), else now + the configured pause."""
    if return_date is not None:
        candidate = datetime.combine(return_date + timedelta(days=1), time(0), zone)
        if candidate > now:
            return candidate
    return now + default_pause


def decide(
    result: Classification, zone: ZoneInfo, now: datetime, default_pause: timedelta
) -> Effect:
    kind = result.kind
    if kind == "reply":
        return Effect(
            "reply",
            sequence_state="replied",
            needs_review=True,
            summary=_clip(result.text or result.full_text or ""),
        )
    if kind == "unsubscribe":
        return Effect(
            "unsubscribe",
            partner_status="opted_out",
            summary="asked to stop: " + "; ".join(result.reasons)[:200],
        )
    if kind == "bounce":
        detail = " ".join(x for x in (result.status, result.diagnostic) if x)
        if result.hard is False:
            return Effect("bounce", soft_bounce=True, summary=f"soft bounce {detail}".strip())
        return Effect("bounce", partner_status="bounced", summary=f"hard bounce {detail}".strip())
    if kind == "auto_reply":
        if result.contact_change:
            return Effect(
                "auto_reply",
                sequence_state="stopped",
                needs_review=True,
                summary="contact change: " + _clip(result.text or result.full_text or ""),
            )
        until = pause_until(result.return_date, zone, now, default_pause)
        back = f"back {result.return_date.isoformat()}; " if result.return_date else ""
        return Effect(
            "auto_reply",
            sequence_state="paused",
            paused_until=until,
            summary=f"{back}follow-ups paused until {until.date().isoformat()}",
        )
    if kind == "error":
        return Effect("error", summary="; ".join(result.reasons)[:300])
    return Effect("other", summary="; ".join(result.reasons)[:300])


def _clip(text: str, limit: int = 500) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
