"""Sequences (`sequences`, `campaigns`): one row per (campaign, partner), how far it got and
whether it goes on; and the candidates the planner looks at (core/plan.py decides).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime
from typing import Any

from outreach.core.model import Audience, Campaign, Partner, SequenceState
from outreach.store.database import iso, parse_iso
from outreach.store.partners import PARTNER_COLUMNS, Partners, partner_from_row


class Sequences(Partners):
    def candidates(
        self, campaign: Campaign, due_by: datetime | None = None
    ) -> tuple[list[Partner], list[tuple[SequenceState, Partner]]]:
        """What the planner looks at for `campaign`: the active partners who have not started
        it (narrowed by its audience), and its open sequences with their partners. With
        `due_by`, only the sequences whose last step went out long enough before it for
        the next one to be due (indexed); core/plan.py applies every rule exactly."""
        not_started = self.partners_without_sequence(campaign.name, campaign.audience)
        if due_by is None:
            sequences = self.open_sequences(campaign.name)
        else:
            sequences = []
            for index in range(1, len(campaign.steps)):
                after = campaign.steps[index].after
                sequences += self.sequences_waiting(campaign.name, index, due_by - after)
        partners = self.partners_by_id(s.partner_id for s in sequences)
        waiting = [(s, partners[s.partner_id]) for s in sequences if s.partner_id in partners]
        return not_started, waiting

    def remember_campaigns(self, campaigns: Iterable[tuple[str, str]], now: datetime) -> None:
        with self.write() as conn:
            conn.executemany(
                "INSERT OR IGNORE INTO campaigns (name, account, first_seen_at) VALUES (?,?,?)",
                [(name, account, iso(now)) for name, account in campaigns],
            )

    def partners_without_sequence(
        self, campaign: str, audience: Audience | None = None
    ) -> list[Partner]:
        """Active partners who have not started `campaign`, narrowed by its audience in SQL
        (a superset: the pure planner applies the audience rules exactly)."""
        where = [
            "p.status = 'active'",
            "NOT EXISTS (SELECT 1 FROM sequences s WHERE s.campaign = ? AND s.partner_id = p.id)",
        ]
        params: list[Any] = [campaign]
        if audience is not None:
            for column, wanted in (
                ("pathway", audience.pathways),
                ("industry", audience.industries),
                ("owner", audience.owners),
            ):
                if wanted:
                    where.append(f"casefold(trim(p.{column})) IN ({','.join('?' * len(wanted))})")
                    params += [w.strip().casefold() for w in wanted]
            if audience.tags:
                where.append(
                    "EXISTS (SELECT 1 FROM json_each(p.tags) t WHERE casefold(trim(t.value))"
                    f" IN ({','.join('?' * len(audience.tags))}))"
                )
                params += [t.strip().casefold() for t in audience.tags]
        rows = self.db.conn.execute(
            f"SELECT {PARTNER_COLUMNS} FROM partners p WHERE {' AND '.join(where)} ORDER BY p.id",
            params,
        )
        return [partner_from_row(row) for row in rows]

    def sequences_waiting(
        self, campaign: str, last_step: int, sent_before: datetime
    ) -> list[SequenceState]:
        """Open sequences whose step `last_step` went out before `sent_before` (indexed)."""
        rows = self.query(
            # INDEXED BY: without ANALYZE statistics SQLite may pick the primary key and
            # scan every sequence of the campaign; this keeps the cost to what is due.
            "SELECT * FROM sequences INDEXED BY sequences_due WHERE campaign = ?"
            " AND state IN ('active', 'paused') AND last_step = ? AND last_sent_at <= ?",
            [campaign, last_step, iso(sent_before)],
        )
        return [_sequence(row) for row in rows]

    def open_sequences(self, campaign: str) -> list[SequenceState]:
        rows = self.query(
            "SELECT * FROM sequences WHERE campaign = ? AND state IN ('active', 'paused')",
            [campaign],
        )
        return [_sequence(row) for row in rows]

    def sequence(self, campaign: str, partner_id: int) -> SequenceState | None:
        """The partner's latest round of `campaign`."""
        rows = self.query(
            "SELECT * FROM sequences WHERE campaign = ? AND partner_id = ?"
            " ORDER BY round DESC LIMIT 1",
            [campaign, partner_id],
        )
        return _sequence(rows[0]) if rows else None

    def rounds(self, campaign: str, partner_id: int) -> list[SequenceState]:
        """Every round of `campaign` the partner had, oldest first."""
        rows = self.query(
            "SELECT * FROM sequences WHERE campaign = ? AND partner_id = ? ORDER BY round",
            [campaign, partner_id],
        )
        return [_sequence(row) for row in rows]

    def ended_rounds(self, campaign: str) -> list[tuple[SequenceState, Partner]]:
        """Each active partner's latest round of `campaign` when it has ended (replied or
        finished), with the partner: the candidates for a new round (core/rounds.py decides).
        Read only for a campaign that repeats."""
        rows = self.query(
            # the answer's time as the reply_log view tells it (its Date when plausible)
            "SELECT s.*, CASE WHEN s.state = 'replied' THEN (SELECT max(r.at) FROM reply_log r"
            " WHERE r.partner_id = s.partner_id AND r.campaign = s.campaign AND r.kind = 'reply'"
            " AND r.unverified IS NULL AND r.at >= COALESCE(s.last_sent_at, ''))"
            " END AS answered_at FROM sequences s WHERE s.campaign = ?"
            " AND s.state IN ('replied', 'finished')"
            " AND s.round = (SELECT max(round) FROM sequences l WHERE l.campaign = s.campaign"
            " AND l.partner_id = s.partner_id)",
            [campaign],
        )
        ended = [replace(_sequence(row), answered_at=parse_iso(row["answered_at"])) for row in rows]
        partners = self.partners_by_id(s.partner_id for s in ended)
        return [(s, partners[s.partner_id]) for s in ended if s.partner_id in partners]

    def finish_sequences(self, campaign: str, steps: int, now: datetime) -> int:
        """Open rounds of `campaign` whose last step (`steps`) went out become `finished`:
        every message was sent without an answer. A paused round waits for its pause to end
        (an out-of-office does not end a round). Returns how many; each gets an event."""
        with self.write() as conn:
            rows = conn.execute(
                "UPDATE sequences SET state = 'finished', updated_at = ? WHERE campaign = ?"
                " AND state = 'active' AND last_step >= ? AND last_sent_at IS NOT NULL"
                " RETURNING partner_id, round, last_step",
                (iso(now), campaign, steps),
            ).fetchall()
            for partner_id, round_, last_step in rows:
                self.add_event(
                    "finished",
                    now,
                    partner_id=partner_id,
                    campaign=campaign,
                    summary=f"no answer after {last_step} message{'s' if last_step != 1 else ''}",
                    detail={"messages": last_step, **({"round": round_} if round_ > 1 else {})},
                )
        return len(rows)

    def set_sequence_state(
        self,
        campaign: str,
        partner_id: int,
        state: str,
        now: datetime,
        paused_until: datetime | None = None,
    ) -> None:
        """Set the state of the partner's latest round of `campaign` (an answer to a
        finished round still makes it `replied`)."""
        with self.write() as conn:
            conn.execute(
                "UPDATE sequences SET state=?, paused_until=?, updated_at=?"
                " WHERE campaign=?4 AND partner_id=?5 AND round = (SELECT max(round) FROM"
                " sequences WHERE campaign=?4 AND partner_id=?5)",
                (
                    state,
                    iso(paused_until) if paused_until else None,
                    iso(now),
                    campaign,
                    partner_id,
                ),
            )

    def resume_paused(self, now: datetime) -> list[SequenceState]:
        """Sequences whose pause has run out go back to active, each with a 'resumed' event."""
        rows = self.query(
            "SELECT * FROM sequences WHERE state = 'paused' AND paused_until <= ?", [iso(now)]
        )
        resumed = [_sequence(row) for row in rows]
        with self.write() as conn:
            for seq in resumed:
                conn.execute(
                    "UPDATE sequences SET state='active', paused_until=NULL, updated_at=?"
                    " WHERE campaign=? AND partner_id=? AND round=?",
                    (iso(now), seq.campaign, seq.partner_id, seq.round),
                )
                self.add_event(
                    "resumed",
                    now,
                    partner_id=seq.partner_id,
                    campaign=seq.campaign,
                    summary="pause ended; follow-ups resume",
                )
        return resumed


def _sequence(row: dict[str, Any]) -> SequenceState:
    return SequenceState(
        campaign=row["campaign"],
        partner_id=row["partner_id"],
        state=row["state"],
        last_step=row["last_step"],
        last_sent_at=parse_iso(row["last_sent_at"]),
        paused_until=parse_iso(row["paused_until"]),
        account=row.get("account"),
        round=row["round"],
        updated_at=parse_iso(row["updated_at"]),
    )
