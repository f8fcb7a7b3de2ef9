"""The roster (`partners`): import (upsert by email), look-ups, and a partner's status across
all campaigns (bounced and opted out stop every open sequence of theirs).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from outreach.core.model import Partner
from outreach.store.database import iso
from outreach.store.events import Events

# A Partner's fields in its order: rows of thousands of partners are read as tuples, without
# a dict per row (planning reads every partner who has not started a campaign).
PARTNER_COLUMNS = (
    "p.email, p.name, p.first_name, p.organization, p.industry, p.pathway, p.owner, p.tags,"
    " p.timezone, p.fields, p.status, p.id"
)


def partner_from_row(row: Sequence[Any]) -> Partner:
    """A Partner from a row of PARTNER_COLUMNS."""
    tags, fields = row[7], row[9]
    return Partner(
        email=row[0],
        name=row[1],
        first_name=row[2],
        organization=row[3],
        industry=row[4],
        pathway=row[5],
        owner=row[6],
        tags=tuple(json.loads(tags)) if tags and tags != "[]" else (),
        timezone=row[8],
        fields=json.loads(fields) if fields and fields != "{}" else {},
        status=row[10],
        id=row[11],
    )


class Partners(Events):
    def upsert_partners(self, partners: Iterable[Partner], now: datetime) -> tuple[int, int]:
        """Insert new partners and update known ones (by email); never touches history.

        Returns (created, updated). Status (bounced, opted out) is kept: a roster import
        must not re-subscribe someone who asked to stop.
        """
        created = updated = 0
        stamp = iso(now)
        with self.write() as conn:
            for partner in partners:
                values = (
                    partner.name,
                    partner.first_name,
                    partner.organization,
                    partner.industry,
                    partner.pathway,
                    partner.owner,
                    json.dumps(list(partner.tags)),
                    partner.timezone,
                    json.dumps(partner.fields, ensure_ascii=False),
                )
                row = conn.execute(
                    "SELECT id, owner FROM partners WHERE email = ?", (partner.email,)
                ).fetchone()
                if row is None:
                    cursor = conn.execute(
                        "INSERT INTO partners (email, name, first_name, organization, industry,"
                        " pathway, owner, tags, timezone, fields, created_at, updated_at)"
                        " VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                        (partner.email, *values, stamp, stamp),
                    )
                    self.add_event(
                        "imported", now, partner_id=cursor.lastrowid, summary="added to roster"
                    )
                    created += 1
                else:
                    conn.execute(
                        "UPDATE partners SET name=?, first_name=?, organization=?, industry=?,"
                        " pathway=?, owner=?, tags=?, timezone=?, fields=?, updated_at=?"
                        " WHERE id=?",
                        (*values, stamp, row[0]),
                    )
                    if row[1] != partner.owner:
                        self._owner_changed(row[0], row[1], partner.owner, now)
                    updated += 1
        return created, updated

    def _owner_changed(self, partner_id: int, before: str, after: str, now: datetime) -> None:
        """A partner's log says when they changed hands, and that what is under way stays
        with the account it started from (its follow-ups keep their thread)."""
        open_campaigns = [
            str(name)
            for (name,) in self.db.conn.execute(
                "SELECT campaign FROM sequences WHERE partner_id = ? AND state IN"
                " ('active', 'paused') ORDER BY campaign",
                (partner_id,),
            )
        ]
        summary = f"owner {before or '(none)'} -> {after or '(none)'}"
        if open_campaigns:
            summary += f"; {', '.join(open_campaigns)} keeps its account and thread"
        self.add_event(
            "owner_changed",
            now,
            partner_id=partner_id,
            summary=summary,
            detail={"before": before, "after": after, "open": open_campaigns},
        )

    def partners(self, *, status: str | None = None) -> list[Partner]:
        where = "WHERE status = ?" if status else ""
        rows = self.db.conn.execute(
            f"SELECT {PARTNER_COLUMNS} FROM partners p {where} ORDER BY email",
            (status,) if status else (),
        )
        return [partner_from_row(row) for row in rows]

    def partner_by_email(self, email: str) -> Partner | None:
        row = self.db.conn.execute(
            f"SELECT {PARTNER_COLUMNS} FROM partners p WHERE email = ?", [email.strip().lower()]
        ).fetchone()
        return partner_from_row(row) if row else None

    def partners_by_id(self, ids: Iterable[int]) -> dict[int, Partner]:
        rows = self._select_in(
            f"SELECT {PARTNER_COLUMNS} FROM partners p WHERE id IN ({{marks}})", sorted(set(ids))
        )
        return {row[-1]: partner_from_row(row) for row in rows}

    def partner_ids_by_address(self, addresses: Iterable[str]) -> dict[str, int]:
        wanted = sorted({a.lower() for a in addresses if a})
        return dict(
            self._select_in("SELECT email, id FROM partners WHERE email IN ({marks})", wanted)
        )

    def active_addresses(self) -> list[tuple[int, str]]:
        """(id, email) of every active partner."""
        rows = self.db.conn.execute("SELECT id, email FROM partners WHERE status = 'active'")
        return [(int(partner_id), str(email)) for partner_id, email in rows]

    def partner_status(self, partner_id: int) -> str | None:
        status = self.scalar("SELECT status FROM partners WHERE id = ?", [partner_id])
        return None if status is None else str(status)

    def set_partner_status(
        self,
        partner_id: int,
        status: str,
        reason: str,
        now: datetime,
        *,
        event: str,
        campaign: str | None = None,
        inbound_id: int | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        """Mark a partner bounced / opted out and stop every open sequence of theirs."""
        with self.write() as conn:
            conn.execute(
                "UPDATE partners SET status=?, status_reason=?, updated_at=? WHERE id=?",
                (status, reason, iso(now), partner_id),
            )
            conn.execute(
                "UPDATE sequences SET state='stopped', updated_at=? WHERE partner_id=?"
                " AND state IN ('active', 'paused')",
                (iso(now), partner_id),
            )
            self.add_event(
                event,
                now,
                partner_id=partner_id,
                campaign=campaign,
                inbound_id=inbound_id,
                summary=reason,
                detail=detail,
            )

    def restore_partner(self, partner_id: int, *, stopped_at: str, now: datetime) -> int:
        """Back to active, reopening the sequences that were stopped by the status change
        made at `stopped_at`; returns how many were reopened."""
        with self.write() as conn:
            conn.execute(
                "UPDATE partners SET status = 'active', status_reason = NULL, updated_at = ?"
                " WHERE id = ?",
                (iso(now), partner_id),
            )
            return conn.execute(
                "UPDATE sequences SET state = 'active', paused_until = NULL, updated_at = ?"
                " WHERE partner_id = ? AND state = 'stopped' AND updated_at = ?",
                (iso(now), partner_id, stopped_at),
            ).rowcount

    def count_soft_bounce(self, partner_id: int, now: datetime) -> int:
        self.db.conn.execute(
            "UPDATE partners SET soft_bounces = soft_bounces + 1, updated_at = ? WHERE id = ?",
            (iso(now), partner_id),
        )
        return int(self.scalar("SELECT soft_bounces FROM partners WHERE id = ?", [partner_id]))

    def uncount_soft_bounce(self, partner_id: int, now: datetime) -> None:
        with self.write() as conn:
            conn.execute(
                "UPDATE partners SET soft_bounces = max(soft_bounces - 1, 0), updated_at = ?"
                " WHERE id = ?",
                (iso(now), partner_id),
            )
