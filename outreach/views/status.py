"""`outreach status`: per campaign, how many messages are in each ledger state; whether the
worker runs and when it last read, sent and beat; who must sign in; what is unknown.

`load_status` reads (the store, the worker lock); the rest is pure. Which accounts wait
for a sign-in comes from the token file (engine/credentials.py), read by the caller.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from outreach.core.model import AccountState, LedgerStatus
from outreach.store import LedgerRow, Store
from outreach.store.lock import lock_holder
from outreach.views.text import format_table, when

STATES = tuple(LedgerStatus)
WORKER_FIELDS = (
    "started_at", "last_cycle_at", "last_read_at", "last_send_at", "last_error",
    "last_error_at", "heartbeat_at", "stopped_at", "host",
)  # fmt: skip


@dataclass(frozen=True)
class Status:
    counts: dict[str, dict[str, int]]  # campaign -> ledger state -> messages
    campaigns: list[str]
    worker: dict[str, Any]  # the heartbeat row
    holder: int | None  # the pid holding the worker lock, if one runs
    unknown: list[LedgerRow]
    waiting: list[tuple[str, str]]  # (account, why) of OAuth2 accounts that must sign in
    # account -> part (send, read) -> its state row (state, reason, since, checked_at)
    accounts: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    last_message_at: str | None = None  # when the last message went out


def error_resolved(worker: dict[str, Any]) -> bool:
    """Whether the last error is behind us: both halves of a cycle (read and send) worked
    after it."""
    at = worker.get("last_error_at")
    read, sent = worker.get("last_read_at"), worker.get("last_send_at")
    return bool(at and read and sent and read > at and sent > at)


def load_status(
    store: Store,
    campaigns: list[str],
    database: Path,
    waiting: list[tuple[str, str]],
    accounts: Sequence[str] = (),
) -> Status:
    counts = store.status_counts()
    states: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in accounts}
    for row in store.account_states():
        if row["account"] in states:  # an account gone from config.toml is not shown
            states[row["account"]][row["part"]] = row
    return Status(
        counts=counts,
        campaigns=sorted(set(counts) | set(campaigns)),
        worker=store.worker_state(),
        holder=lock_holder(database),
        unknown=store.unknown_rows(),
        waiting=waiting,
        accounts=states,
        last_message_at=store.last_message_sent_at(),
    )


def status_json(status: Status) -> dict[str, Any]:
    worker = status.worker
    holder = status.holder
    return {
        "campaigns": {
            n: {s: status.counts.get(n, {}).get(s, 0) for s in STATES} for n in status.campaigns
        },
        "worker": {
            "running": holder is not None,
            "pid": holder if holder is not None else worker.get("pid"),
            **{key: worker.get(key) for key in WORKER_FIELDS},
            "last_message_sent_at": status.last_message_at,
            "last_error_resolved": error_resolved(worker),
        },
        "accounts": {
            name: {
                part: {key: row.get(key) for key in ("state", "reason", "since", "checked_at")}
                for part, row in parts.items()
            }
            for name, parts in status.accounts.items()
        },
        "sign_in_needed": [
            {"account": account, "reason": why, "command": f"outreach auth login {account}"}
            for account, why in status.waiting
        ],
        "unknown": [
            {
                "id": r.id,
                "partner": r.to_addr,
                "campaign": r.campaign,
                "step": r.step,
                "message_id": r.message_id,
            }
            for r in status.unknown
        ],
    }


def format_status(status: Status, zone: ZoneInfo, now: datetime) -> list[str]:
    """The status for a terminal, a line (or paragraph) each."""
    table = [("CAMPAIGN", *(s.upper() for s in STATES))] + [
        (n, *(str(status.counts.get(n, {}).get(s, 0)) for s in STATES)) for n in status.campaigns
    ]
    lines = [format_table(table) if status.campaigns else "no campaigns yet"]
    holder, worker = status.holder, status.worker
    lines.append(f"\nworker: {f'running (pid {holder})' if holder is not None else 'not running'}")
    for key, label in (
        ("started_at", "started"),
        ("last_read_at", "last read mail"),
        ("last_send_at", "last send cycle"),
        ("heartbeat_at", "last heartbeat"),
        ("stopped_at", "stopped"),
    ):
        if worker.get(key) and (key != "stopped_at" or holder is None):
            lines.append(f"  {label}: {when(worker[key], zone, now)}")
        if key == "last_read_at":  # the last message out, not the last cycle that ran
            lines.append(f"  last sent: {when(status.last_message_at, zone, now)}")
    if worker.get("last_error"):
        at = when(worker.get("last_error_at"), zone, now)
        if error_resolved(worker):
            lines.append(
                f"  last error (resolved: read and send work again): {worker['last_error']} ({at})"
            )
        else:
            lines.append(f"  last error: {worker['last_error']} ({at})")
    lines += format_accounts(status, zone, now)
    for account, why in status.waiting:
        lines.append(
            f"\naccounts.{account}: sign-in needed ({why}): its messages stay queued and its "
            f"mailbox is not read until you run `outreach auth login {account}`"
        )
    if status.unknown:
        lines.append(
            f"\n{len(status.unknown)} message(s) with an unknown outcome (see `outreach resolve`):"
        )
        lines += [f"  #{r.id} {r.campaign} step {r.step} to {r.to_addr}" for r in status.unknown]
    return lines


def format_accounts(status: Status, zone: ZoneInfo, now: datetime) -> list[str]:
    """Each account's sending and reading: ok, or failing with why and since when."""
    if not status.accounts:
        return []
    lines = ["\naccounts:"]
    for name, parts in status.accounts.items():
        if not parts:
            lines.append(f"  {name}: not tried yet")
            continue
        for part, row in sorted(parts.items(), reverse=True):  # send, then read
            if row["state"] == AccountState.OK:
                lines.append(f"  {name} {part}: ok ({when(row['checked_at'], zone, now)})")
            else:
                lines.append(
                    f"  {name} {part}: FAILING since {when(row['since'], zone, now)}: "
                    f"{row['reason']}"
                )
    return lines
