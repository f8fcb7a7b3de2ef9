"""The relationship view behind `outreach partners list`: for each partner, when we last
wrote, when they last replied, which campaign is still open, and who has gone quiet.

`load_relationships` reads the `partner_status` view (m002); the rest is pure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from outreach.core.model import Partner
from outreach.store import Store, parse_iso, queries


@dataclass(frozen=True)
class Relationship:
    last_contact: datetime | None  # our last message that went out
    last_reply: datetime | None  # their last human reply
    open_campaign: str | None  # a sequence still running (active or paused)
    open_state: str | None
    replies: int = 0
    unhandled: int = 0


NONE = Relationship(None, None, None, None)


def load_relationships(store: Store) -> dict[int, Relationship]:
    return {
        row["id"]: Relationship(
            last_contact=parse_iso(row["last_contact"]),
            last_reply=parse_iso(row["last_reply"]),
            open_campaign=row["open_campaign"],
            open_state=row["open_state"],
            replies=row["replies"],
            unhandled=row["unhandled"],
        )
        for row in queries.relationships(store)
    }


def is_stale(relationship: Relationship, now: datetime, quiet_for: timedelta) -> bool:
    """Nobody has heard from the partner in `quiet_for`: no reply since, or no reply ever."""
    last = relationship.last_reply
    return last is None or last < now - quiet_for


def partner_json(partner: Partner, rel: Relationship, zone: ZoneInfo) -> dict[str, Any]:
    return {
        "email": partner.email,
        "name": partner.name,
        "first_name": partner.first_name,
        "organization": partner.organization,
        "industry": partner.industry,
        "pathway": partner.pathway,
        "owner": partner.owner,
        "tags": list(partner.tags),
        "timezone": partner.timezone,
        "fields": partner.fields,
        "status": partner.status,
        "last_contact": _iso(rel.last_contact, zone),
        "last_reply": _iso(rel.last_reply, zone),
        "open_campaign": rel.open_campaign,
        "open_state": rel.open_state,
        "replies": rel.replies,
        "unhandled_replies": rel.unhandled,
    }


def partner_table(
    partners: Sequence[Partner], rels: dict[int, Relationship], zone: ZoneInfo
) -> list[tuple[str, ...]]:
    """Rows for format_table. The relationship columns appear once anything was sent or
    received (before that they would be empty for everyone); STATUS stays last."""
    listed = [(p, rels.get(p.id or 0, NONE)) for p in partners]
    active = any(r != NONE for _, r in listed)
    head: tuple[str, ...] = ("EMAIL", "NAME", "ORGANIZATION", "PATHWAY")
    if active:
        head += ("LAST CONTACT", "LAST REPLY", "OPEN CAMPAIGN")
    table = [(*head, "STATUS")]
    for partner, rel in listed:
        row: tuple[str, ...] = (partner.email, partner.name, partner.organization, partner.pathway)
        if active:
            campaign = rel.open_campaign or "-"
            if rel.open_campaign and rel.open_state and rel.open_state != "active":
                campaign += f" ({rel.open_state})"
            row += (_day(rel.last_contact, zone), _day(rel.last_reply, zone), campaign)
        table.append((*row, partner.status))
    return table


def _iso(moment: datetime | None, zone: ZoneInfo) -> str | None:
    return moment.astimezone(zone).isoformat() if moment else None


def _day(moment: datetime | None, zone: ZoneInfo) -> str:
    return moment.astimezone(zone).strftime("%Y-%m-%d") if moment else "never"
