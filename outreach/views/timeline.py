"""The per-partner timeline behind `outreach log`: every event in order, with the words
partners wrote, laid out for a terminal or as JSON.

`load_events` reads (one query, streamed); everything else is pure and takes the time zone
and `now` as arguments.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from outreach.core.durations import parse_duration
from outreach.store import Store, queries
from outreach.views.text import local_minute


@dataclass(frozen=True)
class LogEvent:
    id: int
    at: datetime  # aware, UTC
    kind: str
    partner: str | None  # email
    name: str
    organization: str
    campaign: str | None
    step: int | None
    summary: str
    text: str | None  # a reply's extracted words (inbound.text), when the event has them
    detail: dict[str, Any]
    message_id: str | None
    inbound_id: int | None
    from_addr: str | None = None  # who wrote the message read from the mailbox, if any
    from_name: str | None = None

    def to_json(self, zone: ZoneInfo) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": self.at.astimezone(zone).isoformat(),
            "kind": self.kind,
            "partner": self.partner,
            "name": self.name,
            "organization": self.organization,
            "campaign": self.campaign,
            "step": self.step,
            "summary": self.summary,
            "text": self.text,
            "detail": self.detail,
            "message_id": self.message_id,
            "inbound_id": self.inbound_id,
            "from": self.from_addr,
            "from_name": self.from_name,
        }

    @property
    def sender(self) -> str | None:
        """Who wrote it, when that is not the partner the event is about."""
        if not self.from_addr or self.from_addr == self.partner:
            return None
        return f"{self.from_name} <{self.from_addr}>" if self.from_name else self.from_addr


def parse_since(text: str, zone: ZoneInfo, now: datetime) -> datetime:
    """--since: a date (local midnight), a date and time (local unless it has an offset), or
    a duration back from now ("7d", "12h")."""
    value = text.strip()
    try:
        day = date.fromisoformat(value)
    except ValueError:
        pass
    else:
        return _within_calendar(datetime.combine(day, time(0), zone))
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        pass
    else:
        return _within_calendar(moment if moment.tzinfo else moment.replace(tzinfo=zone))
    if re.fullmatch(r"[\d.\s]+[wdhms].*", value.lower()):
        try:
            return now - parse_duration(value)
        except ValueError as exc:
            if "too long" in str(exc):  # at most 100 years back: say so, not "use a date"
                raise ValueError(f"--since {exc}") from None
    raise ValueError(
        f"--since {text!r}: use a date (2026-11-01), a date and time (2026-11-01T08:00) or "
        "a duration back from now (7d, 12h)"
    )


def _within_calendar(moment: datetime) -> datetime:
    """`moment` in UTC; a moment whose UTC falls outside the calendar (a date and time on
    9999-12-31 west of UTC, or on 0001-01-01 east of it) becomes the calendar's end, after
    (or start, before) every event, instead of an OverflowError."""
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        edge = datetime.max if moment.year == datetime.max.year else datetime.min
        return edge.replace(tzinfo=UTC)


def load_events(
    store: Store,
    *,
    partner: str | None = None,
    campaign: str | None = None,
    since: datetime | None = None,
    owner: str | None = None,
) -> Iterator[LogEvent]:
    """Events oldest first (ties in insertion order), filtered in SQL, streamed."""
    for row in queries.events(store, partner=partner, campaign=campaign, since=since, owner=owner):
        yield LogEvent(
            id=row[0],
            at=datetime.fromisoformat(row[1]),
            kind=row[2],
            partner=row[3],
            name=row[4] or "",
            organization=row[5] or "",
            campaign=row[6],
            step=row[7],
            summary=row[8] or "",
            text=row[9],
            detail=json.loads(row[10] or "{}"),
            message_id=row[11],
            inbound_id=row[12],
            from_addr=row[13],
            from_name=row[14],
        )


def format_waiting(rows: Iterable[dict[str, Any]], zone: ZoneInfo) -> Iterator[str]:
    """A partner's messages still in the outbox (Store.waiting_for), a line each: the log
    records what became of a message, not that it was queued."""
    for row in rows:
        if row["status"] == "deferred":  # a deferred row always has its next try
            next_try = datetime.fromisoformat(row["next_attempt_at"])
            when = f"deferred, next try {local_minute(next_try, zone)}"
        else:
            when = f"queued {local_minute(datetime.fromisoformat(row['created_at']), zone)}"
        yield f'in the outbox: {row["campaign"]} step {row["step"]} "{row["subject"]}", {when}'
