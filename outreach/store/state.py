"""The worker's own records: its heartbeat (`worker`, for `outreach status`) and the daily
digests sent (`digests`, claimed before any SMTP traffic: never twice a day).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from outreach.store.database import Database, iso


class WorkerState(Database):
    def worker_state(self) -> dict[str, Any]:
        rows = self.query("SELECT * FROM worker WHERE id = 1")
        return rows[0] if rows else {}

    def update_worker(self, **values: Any) -> None:
        columns = ", ".join(f"{k} = :{k}" for k in values)
        with self.write() as conn:
            conn.execute("INSERT OR IGNORE INTO worker (id) VALUES (1)")
            conn.execute(f"UPDATE worker SET {columns} WHERE id = 1", values)

    def claim_digest(self, day: str, to_addr: str, message_id: str, now: datetime) -> bool:
        """Reserve `day` (coordinator's local date) for the digest before any SMTP traffic;
        False when that day's digest was already sent or is being sent."""
        with self.write() as conn:
            cursor = conn.execute(
                "INSERT OR IGNORE INTO digests (day, status, to_addr, message_id, created_at,"
                " updated_at) VALUES (?, 'sending', ?, ?, ?, ?)",
                (day, to_addr, message_id, iso(now), iso(now)),
            )
        return cursor.rowcount == 1

    def finish_digest(self, day: str, status: str, summary: str, now: datetime) -> None:
        with self.write() as conn:
            conn.execute(
                "UPDATE digests SET status = ?, summary = ?, updated_at = ? WHERE day = ?",
                (status, summary, iso(now), day),
            )

    def release_digest(self, day: str) -> None:
        """Give the day back (the server was not reachable): the digest is tried again."""
        with self.write() as conn:
            conn.execute("DELETE FROM digests WHERE day = ? AND status = 'sending'", (day,))

    def last_digest(self) -> dict[str, Any] | None:
        rows = self.query("SELECT * FROM digests ORDER BY created_at DESC LIMIT 1")
        return rows[0] if rows else None
