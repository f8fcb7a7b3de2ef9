"""Each account's sending and reading state (`account_state`, issue 19): ok, or failing with
its reason and since when, written by the worker after each try, read by `outreach status`.

One account failing (a wrong password, a server down) never holds back the others; this is
where a person sees which one it is.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from outreach.core.model import AccountPart, AccountState
from outreach.store.database import Database, iso


class AccountStates(Database):
    def set_account_state(
        self,
        account: str,
        part: AccountPart,
        state: AccountState,
        reason: str | None,
        now: datetime,
    ) -> None:
        """Record the outcome of one try; `since` moves only when the state changes."""
        with self.write() as conn:
            conn.execute(
                "INSERT INTO account_state (account, part, state, reason, since, checked_at)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (account, part) DO UPDATE SET"
                " since = CASE WHEN account_state.state = excluded.state"
                " THEN account_state.since ELSE excluded.since END,"
                " state = excluded.state, reason = excluded.reason,"
                " checked_at = excluded.checked_at",
                (account, part, state, reason, iso(now), iso(now)),
            )

    def account_states(self) -> list[dict[str, Any]]:
        """Every account's rows, by account then part."""
        return self.query("SELECT * FROM account_state ORDER BY account, part")

    # ------------------------------------------------------------------ owners' digests

    def claim_owner_digest(
        self, day: str, owner: str, account: str, to_addr: str, message_id: str, now: datetime
    ) -> bool:
        """Reserve `day` for `owner`'s digest before any SMTP traffic (never twice a day);
        False when it was sent, is being sent, or was found empty already."""
        with self.write() as conn:
            cursor = conn.execute(
                "INSERT OR IGNORE INTO owner_digests (day, owner, account, status, to_addr,"
                " message_id, created_at, updated_at) VALUES (?, ?, ?, 'sending', ?, ?, ?, ?)",
                (day, owner, account, to_addr, message_id, iso(now), iso(now)),
            )
        return cursor.rowcount == 1

    def finish_owner_digest(
        self, day: str, owner: str, status: str, summary: str, now: datetime
    ) -> None:
        with self.write() as conn:
            conn.execute(
                "UPDATE owner_digests SET status = ?, summary = ?, updated_at = ?"
                " WHERE day = ? AND owner = ?",
                (status, summary, iso(now), day, owner),
            )

    def release_owner_digest(self, day: str, owner: str) -> None:
        """Give the day back (the server was not reachable): tried again."""
        with self.write() as conn:
            conn.execute(
                "DELETE FROM owner_digests WHERE day = ? AND owner = ? AND status = 'sending'",
                (day, owner),
            )

    def last_owner_digest(self, owner: str) -> dict[str, Any] | None:
        """The latest digest that went out to `owner` (not one found empty)."""
        rows = self.query(
            "SELECT * FROM owner_digests WHERE owner = ? AND status != 'empty'"
            " ORDER BY created_at DESC LIMIT 1",
            [owner],
        )
        return rows[0] if rows else None

    def owner_digest_day(self, owner: str) -> str | None:
        """The last day `owner`'s digest was dealt with (sent, failed or found empty)."""
        value = self.scalar("SELECT max(day) FROM owner_digests WHERE owner = ?", [owner])
        return None if value is None else str(value)
