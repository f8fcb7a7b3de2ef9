"""The per-partner log (`events`): every state change, every message sent or read.

Other entity modules write their events through `add_event` within their own transaction,
so a change and the line that records it are committed together or not at all.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from outreach.store.database import Database, iso, storable

EVENT_INSERT = (
    "INSERT INTO events (at, partner_id, campaign, step, kind, message_id, outbound_id,"
    " inbound_id, summary, detail)"
)
INSERT_EVENT = EVENT_INSERT + " VALUES (?,?,?,?,?,?,?,?,?,?)"


def event_values(
    kind: str,
    at: str,
    partner_id: int | None,
    campaign: str | None,
    step: int | None,
    message_id: str | None,
    outbound_id: int | None,
    inbound_id: int | None,
    summary: str,
    detail: dict[str, Any] | None,
) -> tuple[Any, ...]:
    """One events row, in INSERT_EVENT's order; text from mail made storable."""
    return (
        at,
        partner_id,
        storable(campaign),
        step,
        kind,
        storable(message_id),
        outbound_id,
        inbound_id,
        storable(summary),
        storable(json.dumps(detail, ensure_ascii=False, default=str)) if detail else "{}",
    )


class Events(Database):
    def add_event(
        self,
        kind: str,
        at: datetime,
        *,
        partner_id: int | None,
        campaign: str | None = None,
        step: int | None = None,
        message_id: str | None = None,
        outbound_id: int | None = None,
        inbound_id: int | None = None,
        summary: str = "",
        detail: dict[str, Any] | None = None,
    ) -> int:
        cursor = self.db.conn.execute(
            INSERT_EVENT,
            event_values(
                kind,
                iso(at),
                partner_id,
                campaign,
                step,
                message_id,
                outbound_id,
                inbound_id,
                summary,
                detail,
            ),
        )
        return int(cursor.lastrowid or 0)

    def refusals_since(self, since: datetime) -> list[dict[str, Any]]:
        """Messages the mail server refused for good (5xx) after `since`."""
        return self.query(
            "SELECT e.*, p.email AS partner_email, p.name AS partner_name,"
            " p.organization AS partner_organization FROM events e"
            " JOIN partners p ON p.id = e.partner_id WHERE e.kind = 'failed' AND e.at > ?"
            " ORDER BY e.at, e.id",
            [iso(since)],
        )

    def last_status_change(self, inbound_id: int) -> str | None:
        """When the message last changed its partner's status (a 'status' event not undone
        since), as stored; None if it never did."""
        at = self.scalar(
            "SELECT at FROM events WHERE inbound_id = ? AND kind = 'status'"
            " AND json_extract(detail, '$.restored') IS NULL ORDER BY id DESC LIMIT 1",
            [inbound_id],
        )
        return None if at is None else str(at)

    def event_kinds_for(self, inbound_id: int, kinds: Sequence[str]) -> set[str]:
        """Which of these kinds of event the message caused."""
        marks = ",".join("?" * len(kinds))
        return {
            row[0]
            for row in self.db.conn.execute(
                f"SELECT kind FROM events WHERE inbound_id = ? AND kind IN ({marks})",
                [inbound_id, *kinds],
            )
        }
