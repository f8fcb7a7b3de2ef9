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
