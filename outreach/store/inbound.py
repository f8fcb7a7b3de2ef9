"""Mail read from the mailboxes (`inbound`, `mailboxes`): each message once per (account,
folder, UIDVALIDITY, UID), with what it is, whom it concerns and whether a person handled
it; and each folder's checkpoint (UIDVALIDITY and the last UID read).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from outreach.store.database import Database, iso, storable


class Inbound(Database):
    def checkpoint(self, account: str, folder: str) -> tuple[int, int] | None:
        """(UIDVALIDITY, last UID read) of a folder, or None before the first read."""
        rows = self.query(
            "SELECT uidvalidity, last_uid FROM mailboxes WHERE account = ? AND folder = ?",
            [account, folder],
        )
        return (rows[0]["uidvalidity"], rows[0]["last_uid"]) if rows else None

    def set_checkpoint(
        self, account: str, folder: str, uidvalidity: int, last_uid: int, now: datetime
    ) -> None:
        with self.write() as conn:
            conn.execute(
                "INSERT INTO mailboxes (account, folder, uidvalidity, last_uid, updated_at)"
                " VALUES (?,?,?,?,?) ON CONFLICT (account, folder) DO UPDATE SET"
                " uidvalidity = excluded.uidvalidity, last_uid = excluded.last_uid,"
                " updated_at = excluded.updated_at",
                (account, folder, uidvalidity, last_uid, iso(now)),
            )

    def seen_uids(self, account: str, folder: str, uidvalidity: int, uids: list[int]) -> set[int]:
        return {
            r[0]
            for r in self._select_in(
                "SELECT uid FROM inbound WHERE account=? AND folder=? AND uidvalidity=?"
                " AND uid IN ({marks})",
                uids,
                before=(account, folder, uidvalidity),
            )
        }

    def inbound_with_message_id(self, message_id: str) -> list[dict[str, Any]]:
        """Messages recorded under this Message-ID (or header digest), oldest first: what a
        new message with the same id is compared with."""
        cursor = self.db.conn.execute(
            "SELECT id, content_hash, from_addr, full_text FROM inbound WHERE message_id = ?"
            " ORDER BY id",
            [message_id],
        )
        names = ("id", "content_hash", "from_addr", "full_text")
        return [dict(zip(names, row, strict=True)) for row in cursor]

    def record_inbound(self, values: dict[str, Any]) -> int:
        columns = ", ".join(values)
        marks = ", ".join("?" * len(values))
        cursor = self.db.conn.execute(
            f"INSERT INTO inbound ({columns}) VALUES ({marks})",
            [storable(v) for v in values.values()],
        )
        return int(cursor.lastrowid or 0)

    def mark_handled(self, inbound_id: int, note: str | None, now: datetime) -> None:
        """A person has dealt with this answer (the first time counts; a note is kept)."""
        with self.write() as conn:
            conn.execute(
                "UPDATE inbound SET handled_at = COALESCE(handled_at, ?),"
                " handled_note = COALESCE(?, handled_note) WHERE id = ?",
                (iso(now), note, inbound_id),
            )

    def set_inbound_kind(
        self,
        inbound_id: int,
        kind: str,
        *,
        handled_at: datetime | None,
        reasons: list[str],
        attributed: bool = False,
    ) -> None:
        """A person's correction; `attributed`: they said the message is the partner's, so it
        is no longer unverified."""
        with self.write() as conn:
            conn.execute(
                "UPDATE inbound SET kind = ?, handled_at = ?, reasons = ?,"
                " unverified = CASE WHEN ? THEN NULL ELSE unverified END WHERE id = ?",
                (
                    kind,
                    iso(handled_at) if handled_at else None,
                    storable(json.dumps(reasons, ensure_ascii=False)),
                    attributed,
                    inbound_id,
                ),
            )

    def inbound_since(self, since: datetime, kinds: Sequence[str]) -> list[dict[str, Any]]:
        """Recorded mail of these kinds read after `since`, with the partner's name, oldest
        first."""
        marks = ",".join("?" * len(kinds))
        return self.query(
            "SELECT i.*, p.email AS partner_email, p.name AS partner_name,"
            " p.organization AS partner_organization FROM inbound i"
            " LEFT JOIN partners p ON p.id = i.partner_id"
            f" WHERE i.processed_at > ? AND i.kind IN ({marks}) ORDER BY i.processed_at, i.id",
            [iso(since), *kinds],
        )

    def inbound_row(self, inbound_id: int) -> dict[str, Any] | None:
        """One recorded message with its partner's email, status and time zone."""
        rows = self.query(
            "SELECT i.*, p.email, p.status AS partner_status, p.timezone AS partner_timezone"
            " FROM inbound i LEFT JOIN partners p ON p.id = i.partner_id WHERE i.id = ?",
            [inbound_id],
        )
        return rows[0] if rows else None

    def set_answers(
        self,
        inbound_id: int,
        answers: dict[str, str | None] | None,
        asked_help: bool | None,
        *,
        corrected_at: datetime | None = None,
    ) -> None:
        """A reply's answers per question (JSON), and whether it asks for help; with
        `corrected_at`, a person set them (reclassifying keeps them from then on)."""
        with self.write() as conn:
            conn.execute(
                "UPDATE inbound SET answers = ?, asked_help = ?,"
                " answers_corrected_at = COALESCE(?, answers_corrected_at) WHERE id = ?",
                (
                    None if answers is None else storable(json.dumps(answers, ensure_ascii=False)),
                    None if asked_help is None else int(asked_help),
                    iso(corrected_at) if corrected_at else None,
                    inbound_id,
                ),
            )
