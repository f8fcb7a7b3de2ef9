"""What an inbound message does to its partner's record, decided without I/O.

`decide` is the effect of a message as the reader records it; `reclassified` is the effect
of a person's correction (`outreach replies reclassify`). Both are applied by one function,
engine/effects.py, so the reader and the review queue change a record the same way.
`needs_review` says which recorded messages wait for a person.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from outreach.core.inbound.classify import Classification
from outreach.core.model import InboundKind, PartnerStatus, SequenceStatus
from outreach.core.text import one_line


@dataclass(frozen=True)
class Effect:
    """What an inbound message does to the partner and the sequence."""

    event: str  # reply / auto_reply / bounce / unsubscribe / other / error
    sequence_state: str | None = None  # replied / paused / stopped, for the matched campaign
    paused_until: datetime | None = None
    partner_status: str | None = None  # bounced / opted_out: everywhere
    soft_bounce: bool = False
    summary: str = ""


def pause_until(
    return_date: date | None, zone: ZoneInfo, now: datetime, default_pause: timedelta
) -> datetime:
    """The day after the return date (local midnight), else now + the configured pause.
    A time past the end of the calendar is the last day it holds."""
    try:
        if return_date is not None:
            candidate = datetime.combine(return_date + timedelta(days=1), time(0), zone)
            if candidate > now:
                return candidate
        return now + default_pause
    except OverflowError:
        return LAST_MOMENT


#: The latest time outreach stores (a day before the calendar ends, so any zone can show it).
LAST_MOMENT = datetime(9999, 12, 30, tzinfo=UTC)


def decide(
    result: Classification, zone: ZoneInfo, now: datetime, default_pause: timedelta
) -> Effect:
    kind = result.kind
    if kind == InboundKind.REPLY:
        return Effect(
            InboundKind.REPLY,
            sequence_state=SequenceStatus.REPLIED,
            summary=one_line(result.text or result.full_text or "", 500),
        )
    if kind == InboundKind.UNSUBSCRIBE:
        return Effect(
            InboundKind.UNSUBSCRIBE,
            partner_status=PartnerStatus.OPTED_OUT,
            summary="asked to stop: " + "; ".join(result.reasons)[:200],
        )
    if kind == InboundKind.BOUNCE:
        detail = " ".join(x for x in (result.status, result.diagnostic) if x)
        if result.hard is False:
            return Effect(
                InboundKind.BOUNCE, soft_bounce=True, summary=f"soft bounce {detail}".strip()
            )
        return Effect(
            InboundKind.BOUNCE,
            partner_status=PartnerStatus.BOUNCED,
            summary=f"hard bounce {detail}".strip(),
        )
    if kind == InboundKind.AUTO_REPLY:
        if result.contact_change:
            return Effect(
                InboundKind.AUTO_REPLY,
                sequence_state=SequenceStatus.STOPPED,
                summary="contact change: " + one_line(result.text or result.full_text or "", 500),
            )
        until = pause_until(result.return_date, zone, now, default_pause)
        back = f"back {result.return_date.isoformat()}; " if result.return_date else ""
        return Effect(
            InboundKind.AUTO_REPLY,
            sequence_state=SequenceStatus.PAUSED,
            paused_until=until,
            summary=f"{back}follow-ups paused until {until.date().isoformat()}",
        )
    if kind == InboundKind.ERROR:
        return Effect(InboundKind.ERROR, summary="; ".join(result.reasons)[:300])
    return Effect(InboundKind.OTHER, summary="; ".join(result.reasons)[:300])


def needs_review(
    kind: str, contact_change: bool, unverified: str | None, duplicate_of: int | None
) -> bool:
    """Whether a recorded message waits for a person (the review queue). The reply_log
    view says the same in SQL (store/schema.py, m005; tests/test_architecture.py checks
    that the two agree)."""
    return (
        kind in (InboundKind.REPLY, InboundKind.ERROR)
        or (kind == InboundKind.AUTO_REPLY and contact_change)
        or unverified is not None
        or duplicate_of is not None
    )


def reclassified(
    kind: str,
    old: str,
    *,
    contact_change: bool,
    return_date: date | None,
    zone: ZoneInfo,
    received: datetime,
    now: datetime,
    default_pause: timedelta,
) -> Effect:
    """The effect of a message a person says is `kind` (it was `old`), applied `now` as the
    reader would have applied it when the message arrived at `received`: a pause that has
    run out since is not applied; a bounce said by hand is a hard one."""
    if kind == InboundKind.REPLY:
        return Effect(kind, sequence_state=SequenceStatus.REPLIED)
    if kind == InboundKind.AUTO_REPLY:
        if contact_change:
            return Effect(kind, sequence_state=SequenceStatus.STOPPED)
        until = pause_until(return_date, zone, received, default_pause)
        if until <= now:
            return Effect(kind)
        return Effect(
            kind,
            sequence_state=SequenceStatus.PAUSED,
            paused_until=until,
            summary=f"follow-ups paused until {until.date().isoformat()}",
        )
    if kind == InboundKind.UNSUBSCRIBE:
        return Effect(
            kind,
            partner_status=PartnerStatus.OPTED_OUT,
            summary=f"asked to stop (reclassified by hand from {old})",
        )
    if kind == InboundKind.BOUNCE:
        return Effect(
            kind,
            partner_status=PartnerStatus.BOUNCED,
            summary=f"hard bounce (reclassified by hand from {old})",
        )
    return Effect(kind)
