"""The SQLite store (sqlite-utils): the only package with SQL.

`Store` is one handle on one database; each table's SQL lives in the module of its entity:

- schema      the migrations (m001...), frozen once shipped
- database    the connection, transactions, WAL checkpoints; times as ISO text (`iso`)
- failures    a full disk, a damaged file, a busy database: one line for a person
- partners    `partners`: the roster; `status` is active / bounced / opted_out / inactive
- sequences   `sequences`, `campaigns`: one row per (campaign, partner), how far it got
- outbox      `messages`: the outbox and ledger, one row per (campaign, partner, step) with
              its Message-ID (engine/ledger.py tells its rules)
- inbound     `inbound`, `mailboxes`: every message read, once per (account, folder,
              uidvalidity, uid); a reply's new words in `text`, its signature apart
- events      `events`: the per-partner log, every state change, every reply
- state       `worker`, `digests`: the worker's heartbeat and the digests sent
- account_state  `account_state`: each account's sending and reading, ok or failing
- queries     the read-only queries behind the views (log, replies, report, exports)

Beside the database, the other files outreach keeps: `token_file` (OAuth2 tokens, 0600),
`files` (exports and reports, 0600, whole or not at all), `backup` and `lock` (one worker
per database).
"""

from __future__ import annotations

from outreach.store.account_state import AccountStates
from outreach.store.database import Database, iso, parse_iso, storable
from outreach.store.failures import OPEN_CHECK_BUDGET, database_errors, database_failure
from outreach.store.inbound import Inbound
from outreach.store.outbox import (
    CLAIM_SQL,
    LEDGER_STATES,
    LedgerRow,
    Outbox,
    Outgoing,
)
from outreach.store.schema import migrations
from outreach.store.state import WorkerState


class Store(Outbox, Inbound, WorkerState, AccountStates, Database):
    """A handle on one outreach database: every entity's reads and writes (see above)."""


__all__ = [
    "CLAIM_SQL",
    "LEDGER_STATES",
    "OPEN_CHECK_BUDGET",
    "LedgerRow",
    "Outgoing",
    "Store",
    "database_errors",
    "database_failure",
    "iso",
    "migrations",
    "parse_iso",
    "storable",
]
