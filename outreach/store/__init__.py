"""The SQLite store (sqlite-utils): the only module that writes SQL.

Tables
- partners     the roster; `status` is active / bounced / opted_out / inactive
- campaigns    every campaign the store has seen
- sequences    one row per (campaign, partner): how far the sequence got and whether it goes on
- messages     the outbox and ledger: one row per (campaign, partner, step), with its Message-ID
- inbound      every message read from a mailbox, once per (account, folder, uidvalidity, uid);
               a reply's new words in `text`, its signature apart in `signature`
- events       the per-partner log: every state change, every reply
- mailboxes    IMAP checkpoints: UIDVALIDITY and last UID per (account, folder)
- worker       the heartbeat of the running worker

Times are stored as ISO 8601 text in UTC with microseconds ("2026-11-29T03:03:15.123456+00:00")
so that text order is time order.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

import sqlite_utils
from sqlite_utils.migrations import Migrations

from outreach.core.model import (
    ACTIVE,
    BOUNCED,
    OPTED_OUT,
    Audience,
    LedgerRef,
    Partner,
    SequenceState,
)
from outreach.errors import DamagedDatabaseError, StoreError

migrations = Migrations("outreach")
IN_CHUNK = 500
OUTBOX_CHUNK = 50  # rows per INSERT: 10 parameters each, under SQLite's old limit of 999
AUTOCHECKPOINT_PAGES = 10_000  # ~40 MB of WAL
BATCH_CHECKPOINT_PAGES = 250_000  # ~1 GB: a bound for a batch that is never that large
BATCH_CHECKPOINT_EVERY = 0.2  # seconds between a batch's checkpoints on the helper thread


def iso(moment: datetime) -> str:
    """The one text form of a time in the database."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime")
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


# A lone UTF-16 surrogate cannot be encoded as UTF-8, so SQLite refuses the whole row. Lenient
# decoders make them from hostile mail (UTF-7 payloads, surrogateescape'd 8-bit headers).
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def storable(value: Any) -> Any:
    """Text SQLite can store: lone surrogates become U+FFFD; other values pass through."""
    if isinstance(value, str) and _LONE_SURROGATE.search(value):
        return _LONE_SURROGATE.sub("\ufffd", value)
    return value


def parse_iso(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


@migrations()
def m001_initial(db: sqlite_utils.Database) -> None:
    db.executescript(
        """
        CREATE TABLE partners (
            id INTEGER PRIMARY KEY,
            email TEXT NOT NULL UNIQUE,
            name TEXT NOT NULL DEFAULT '',
            first_name TEXT NOT NULL DEFAULT '',
            organization TEXT NOT NULL DEFAULT '',
            industry TEXT NOT NULL DEFAULT '',
            pathway TEXT NOT NULL DEFAULT '',
            owner TEXT NOT NULL DEFAULT '',
            tags TEXT NOT NULL DEFAULT '[]',
            timezone TEXT NOT NULL DEFAULT '',
            fields TEXT NOT NULL DEFAULT '{}',
            status TEXT NOT NULL DEFAULT 'active',
            status_reason TEXT,
            soft_bounces INTEGER NOT NULL DEFAULT 0,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        CREATE INDEX partners_status ON partners(status);

        CREATE TABLE campaigns (
            name TEXT PRIMARY KEY,
            account TEXT NOT NULL,
            first_seen_at TEXT NOT NULL
        );

        CREATE TABLE sequences (
            campaign TEXT NOT NULL,
            partner_id INTEGER NOT NULL REFERENCES partners(id),
            state TEXT NOT NULL DEFAULT 'active',
            last_step INTEGER NOT NULL DEFAULT 0,
            last_sent_at TEXT,
            paused_until TEXT,
            updated_at TEXT NOT NULL,
            PRIMARY KEY (campaign, partner_id)
        ) WITHOUT ROWID;
        CREATE INDEX sequences_due ON sequences(campaign, state, last_step, last_sent_at);
        CREATE INDEX sequences_paused ON sequences(state, paused_until);
        CREATE INDEX sequences_partner ON sequences(partner_id);

        CREATE TABLE messages (
            id INTEGER PRIMARY KEY,
            campaign TEXT NOT NULL,
            partner_id INTEGER NOT NULL REFERENCES partners(id),
            step INTEGER NOT NULL,
            account TEXT NOT NULL,
            message_id TEXT NOT NULL UNIQUE,
            to_addr TEXT NOT NULL,
            subject TEXT NOT NULL,
            status TEXT NOT NULL,
            raw BLOB NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at TEXT,
            smtp_code INTEGER,
            last_error TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            sent_at TEXT,
            saved_copy_at TEXT,
            UNIQUE (campaign, partner_id, step)
        );
        CREATE INDEX messages_status ON messages(status, next_attempt_at);
        CREATE INDEX messages_account_sent ON messages(account, sent_at)
            WHERE sent_at IS NOT NULL;

        CREATE TABLE inbound (
            id INTEGER PRIMARY KEY,
            account TEXT NOT NULL,
            folder TEXT NOT NULL,
            uidvalidity INTEGER NOT NULL,
            uid INTEGER NOT NULL,
            message_id TEXT,
            from_addr TEXT,
            subject TEXT,
            date TEXT,
            size INTEGER,
            kind TEXT NOT NULL,
            reasons TEXT NOT NULL DEFAULT '[]',
            partner_id INTEGER REFERENCES partners(id),
            campaign TEXT,
            step INTEGER,
            matched_message INTEGER REFERENCES messages(id),
            match_rule TEXT,
            text TEXT,
            full_text TEXT,
            return_date TEXT,
            bounced TEXT,
            hard INTEGER,
            status_code TEXT,
            diagnostic TEXT,
            contact_change INTEGER NOT NULL DEFAULT 0,
            error TEXT,
            processed_at TEXT NOT NULL,
            handled_at TEXT,
            handled_note TEXT,
            UNIQUE (account, folder, uidvalidity, uid)
        );
        CREATE INDEX inbound_message_id ON inbound(message_id);
        CREATE INDEX inbound_kind ON inbound(kind, handled_at);
        CREATE INDEX inbound_partner ON inbound(partner_id);

        CREATE TABLE events (
            id INTEGER PRIMARY KEY,
            at TEXT NOT NULL,
            partner_id INTEGER REFERENCES partners(id),
            campaign TEXT,
            step INTEGER,
            kind TEXT NOT NULL,
            message_id TEXT,
            outbound_id INTEGER REFERENCES messages(id),
            inbound_id INTEGER REFERENCES inbound(id),
            summary TEXT NOT NULL DEFAULT '',
            detail TEXT NOT NULL DEFAULT '{}'
        );
        CREATE INDEX events_partner ON events(partner_id, at);
        CREATE INDEX events_campaign ON events(campaign, kind);

        CREATE TABLE mailboxes (
            account TEXT NOT NULL,
            folder TEXT NOT NULL,
            uidvalidity INTEGER NOT NULL,
            last_uid INTEGER NOT NULL,
            updated_at TEXT NOT NULL,
            PRIMARY KEY (account, folder)
        );

        CREATE TABLE worker (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            pid INTEGER,
            host TEXT,
            started_at TEXT,
            heartbeat_at TEXT,
            last_cycle_at TEXT,
            last_read_at TEXT,
            last_send_at TEXT,
            last_error TEXT,
            last_error_at TEXT,
            stopped_at TEXT
        );
        """
    )


# The moment a partner answered: the Date header when it is plausible (not before the
# message it answers, not after outreach read it), else when outreach read it.
_INBOUND_AT = (
    "CASE WHEN i.date IS NOT NULL AND i.date <= i.processed_at"
    " AND i.date >= COALESCE(m.sent_at, '') THEN i.date ELSE i.processed_at END"
)

# The views as m002 made them (m005 replaced them): never edit, m002 runs on new databases.
VIEWS = {
    "reply_log": f"""
        SELECT i.id AS id, {_INBOUND_AT} AS at, i.processed_at AS received_at,
            i.partner_id AS partner_id, p.email AS partner, p.name AS name,
            p.organization AS organization, i.campaign AS campaign, i.step AS step,
            i.kind AS kind, i.subject AS subject, i.text AS text,
            i.return_date AS return_date, i.bounced AS bounced, i.hard AS hard,
            i.status_code AS status_code, i.diagnostic AS diagnostic,
            i.contact_change AS contact_change,
            (i.kind = 'reply' OR (i.kind = 'auto_reply' AND i.contact_change = 1))
                AS needs_review,
            i.handled_at IS NOT NULL AS handled, i.handled_at AS handled_at,
            i.handled_note AS handled_note, i.from_addr AS from_addr,
            i.match_rule AS match_rule, i.message_id AS message_id
        FROM inbound i
        LEFT JOIN partners p ON p.id = i.partner_id
        LEFT JOIN messages m ON m.id = i.matched_message
    """,
    "partner_status": """
        SELECT p.id AS id, p.email AS email, p.name AS name, p.organization AS organization,
            p.industry AS industry, p.pathway AS pathway, p.owner AS owner,
            p.status AS status, p.status_reason AS status_reason,
            (SELECT max(sent_at) FROM messages WHERE partner_id = p.id) AS last_contact,
            (SELECT max(at) FROM reply_log r WHERE r.partner_id = p.id AND r.kind = 'reply')
                AS last_reply,
            (SELECT campaign FROM sequences s WHERE s.partner_id = p.id
                AND s.state IN ('active', 'paused') ORDER BY s.updated_at DESC LIMIT 1)
                AS open_campaign,
            (SELECT state FROM sequences s WHERE s.partner_id = p.id
                AND s.state IN ('active', 'paused') ORDER BY s.updated_at DESC LIMIT 1)
                AS open_state,
            (SELECT count(*) FROM inbound WHERE partner_id = p.id AND kind = 'reply')
                AS replies,
            (SELECT count(*) FROM inbound WHERE partner_id = p.id AND handled_at IS NULL
                AND (kind = 'reply' OR (kind = 'auto_reply' AND contact_change = 1)))
                AS unhandled,
            p.created_at AS created_at
        FROM partners p
    """,
    "campaign_funnel": """
        WITH names AS (
            SELECT name AS campaign FROM campaigns
            UNION SELECT DISTINCT campaign FROM sequences
        ),
        seq AS (
            SELECT campaign, count(*) AS audience,
                sum(state IN ('active', 'paused')) AS pending
            FROM sequences GROUP BY campaign
        ),
        sent AS (
            SELECT campaign, count(DISTINCT partner_id) AS reached, count(*) AS messages,
                sum(status = 'failed') AS failed
            FROM messages GROUP BY campaign
        ),
        delivered AS (
            SELECT campaign, count(DISTINCT partner_id) AS reached, count(*) AS messages
            FROM messages WHERE sent_at IS NOT NULL GROUP BY campaign
        ),
        per_step AS (
            SELECT campaign, json_group_object(step, n) AS sent_per_step FROM (
                SELECT campaign, step, count(*) AS n FROM messages
                WHERE sent_at IS NOT NULL GROUP BY campaign, step ORDER BY campaign, step)
            GROUP BY campaign
        ),
        answers AS (
            SELECT campaign,
                count(DISTINCT CASE WHEN kind = 'reply' THEN partner_id END) AS replied,
                count(DISTINCT CASE WHEN kind = 'auto_reply' THEN partner_id END)
                    AS auto_replied,
                count(DISTINCT CASE WHEN kind = 'bounce' THEN partner_id END) AS bounced,
                count(DISTINCT CASE WHEN kind = 'unsubscribe' THEN partner_id END)
                    AS unsubscribed
            FROM inbound GROUP BY campaign
        ),
        waits AS (
            SELECT r.campaign AS campaign,
                (julianday(min(r.at)) - julianday(min(m.sent_at))) * 24 AS hours
            FROM reply_log r
            JOIN messages m ON m.campaign = r.campaign AND m.partner_id = r.partner_id
                AND m.sent_at IS NOT NULL
            WHERE r.kind = 'reply'
            GROUP BY r.campaign, r.partner_id
        ),
        ranked AS (
            SELECT campaign, hours,
                row_number() OVER (PARTITION BY campaign ORDER BY hours) AS rn,
                count(*) OVER (PARTITION BY campaign) AS n
            FROM waits
        ),
        median AS (
            SELECT campaign, avg(hours) AS median_hours_to_reply FROM ranked
            WHERE rn IN ((n + 1) / 2, (n + 2) / 2) GROUP BY campaign
        )
        SELECT names.campaign AS campaign,
            COALESCE(seq.audience, 0) AS audience,
            COALESCE(delivered.reached, 0) AS sent,
            COALESCE(delivered.messages, 0) AS messages_sent,
            COALESCE(per_step.sent_per_step, '{}') AS sent_per_step,
            COALESCE(answers.replied, 0) AS replied,
            COALESCE(answers.auto_replied, 0) AS auto_replied,
            COALESCE(answers.bounced, 0) AS bounced,
            COALESCE(answers.unsubscribed, 0) AS unsubscribed,
            COALESCE(sent.failed, 0) AS failed,
            COALESCE(seq.pending, 0) AS pending,
            CASE WHEN COALESCE(delivered.reached, 0) = 0 THEN NULL
                ELSE round(1.0 * COALESCE(answers.replied, 0) / delivered.reached, 4)
                END AS reply_rate,
            round(median.median_hours_to_reply, 2) AS median_hours_to_reply
        FROM names
        LEFT JOIN seq ON seq.campaign = names.campaign
        LEFT JOIN sent ON sent.campaign = names.campaign
        LEFT JOIN delivered ON delivered.campaign = names.campaign
        LEFT JOIN per_step ON per_step.campaign = names.campaign
        LEFT JOIN answers ON answers.campaign = names.campaign
        LEFT JOIN median ON median.campaign = names.campaign
    """,
}


@migrations()
def m002_views(db: sqlite_utils.Database) -> None:
    """Read-only views over the response log (reply_log first: the others use it)."""
    db.execute("CREATE INDEX IF NOT EXISTS inbound_campaign ON inbound(campaign, kind)")
    db.execute("CREATE INDEX IF NOT EXISTS messages_partner ON messages(partner_id, sent_at)")
    for name, sql in VIEWS.items():
        db.execute(f"CREATE VIEW {name} AS {sql}")


@migrations()
def m003_digest(db: sqlite_utils.Database) -> None:
    """One row per day the daily digest went out (or was being sent): never twice a day."""
    db.execute(
        """
        CREATE TABLE digests (
            day TEXT PRIMARY KEY,
            status TEXT NOT NULL,
            to_addr TEXT NOT NULL,
            message_id TEXT NOT NULL,
            summary TEXT NOT NULL DEFAULT '',
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        )
        """
    )


@migrations()
def m004_lighter_indexes(db: sqlite_utils.Database) -> None:
    """Indexes the send path no longer pays for on every message.

    - events_campaign served only `outreach log --campaign`, which reads the campaign's
      events in time order anyway; each event written updated it.
    - sequences_paused held every sequence; only paused ones are looked up (to resume them),
      so it now holds only those, and a new sequence no longer writes to it.
    """
    db.execute("DROP INDEX IF EXISTS events_campaign")
    db.execute("DROP INDEX IF EXISTS sequences_paused")
    db.execute("CREATE INDEX sequences_paused ON sequences(paused_until) WHERE state = 'paused'")


@migrations()
def m005_inbound_trust(db: sqlite_utils.Database) -> None:
    """Who wrote each message, and what outreach did not act on by itself.

    - from_name: the sender's display name (from_addr was kept already).
    - unverified: why the message did not change the record (a bounce that quotes none of
      our messages, a reply from someone who is not the partner); a person decides.
    - duplicate_of: an earlier message with the same Message-ID but another sender or other
      content; content_hash tells those from a re-delivery of the same message.
    - date_header, unreadable: the Date as written when it could not be read, and every
      header value that could not be read, with why (JSON list).

    The views are made again (documented in docs/response-logs.md; plain SQL, so any SQLite
    client can read them): the new columns, the review queue, and counts that leave out
    what was not verified.
    """
    for column in (
        "from_name TEXT",
        "unverified TEXT",
        "duplicate_of INTEGER REFERENCES inbound(id)",
        "content_hash TEXT",
        "date_header TEXT",
        "unreadable TEXT NOT NULL DEFAULT '[]'",
    ):
        db.execute(f"ALTER TABLE inbound ADD COLUMN {column}")
    for view in ("campaign_funnel", "partner_status", "reply_log"):
        db.execute(f"DROP VIEW IF EXISTS {view}")
    # the moment a partner answered: the Date header when it is plausible (not before the
    # message it answers, not after outreach read it), else when outreach read it
    at = (
        "CASE WHEN i.date IS NOT NULL AND i.date <= i.processed_at"
        " AND i.date >= COALESCE(m.sent_at, '') THEN i.date ELSE i.processed_at END"
    )
    review = (
        "(i.kind IN ('reply', 'error') OR (i.kind = 'auto_reply' AND i.contact_change = 1)"
        " OR i.unverified IS NOT NULL OR i.duplicate_of IS NOT NULL)"
    )
    db.execute(f"""
        CREATE VIEW reply_log AS
        SELECT i.id AS id, {at} AS at, i.processed_at AS received_at,
            i.partner_id AS partner_id, p.email AS partner, p.name AS name,
            p.organization AS organization, i.campaign AS campaign, i.step AS step,
            i.kind AS kind, i.subject AS subject, i.text AS text,
            i.return_date AS return_date, i.bounced AS bounced, i.hard AS hard,
            i.status_code AS status_code, i.diagnostic AS diagnostic,
            i.contact_change AS contact_change, {review} AS needs_review,
            i.handled_at IS NOT NULL AS handled, i.handled_at AS handled_at,
            i.handled_note AS handled_note, i.from_addr AS from_addr,
            i.match_rule AS match_rule, i.message_id AS message_id,
            i.from_name AS from_name, i.unverified AS unverified,
            i.duplicate_of AS duplicate_of, i.date_header AS date_header,
            i.unreadable AS unreadable
        FROM inbound i
        LEFT JOIN partners p ON p.id = i.partner_id
        LEFT JOIN messages m ON m.id = i.matched_message
    """)
    db.execute(f"""
        CREATE VIEW partner_status AS
        SELECT p.id AS id, p.email AS email, p.name AS name, p.organization AS organization,
            p.industry AS industry, p.pathway AS pathway, p.owner AS owner,
            p.status AS status, p.status_reason AS status_reason,
            (SELECT max(sent_at) FROM messages WHERE partner_id = p.id) AS last_contact,
            (SELECT max(at) FROM reply_log r WHERE r.partner_id = p.id AND r.kind = 'reply'
                AND r.unverified IS NULL) AS last_reply,
            (SELECT campaign FROM sequences s WHERE s.partner_id = p.id
                AND s.state IN ('active', 'paused') ORDER BY s.updated_at DESC LIMIT 1)
                AS open_campaign,
            (SELECT state FROM sequences s WHERE s.partner_id = p.id
                AND s.state IN ('active', 'paused') ORDER BY s.updated_at DESC LIMIT 1)
                AS open_state,
            (SELECT count(*) FROM inbound WHERE partner_id = p.id AND kind = 'reply'
                AND unverified IS NULL) AS replies,
            (SELECT count(*) FROM inbound i WHERE i.partner_id = p.id
                AND i.handled_at IS NULL AND {review}) AS unhandled,
            p.created_at AS created_at
        FROM partners p
    """)
    db.execute("""
        CREATE VIEW campaign_funnel AS
        WITH names AS (
            SELECT name AS campaign FROM campaigns
            UNION SELECT DISTINCT campaign FROM sequences
        ),
        seq AS (
            SELECT campaign, count(*) AS audience,
                sum(state IN ('active', 'paused')) AS pending
            FROM sequences GROUP BY campaign
        ),
        sent AS (
            SELECT campaign, count(DISTINCT partner_id) AS reached, count(*) AS messages,
                sum(status = 'failed') AS failed
            FROM messages GROUP BY campaign
        ),
        delivered AS (
            SELECT campaign, count(DISTINCT partner_id) AS reached, count(*) AS messages
            FROM messages WHERE sent_at IS NOT NULL GROUP BY campaign
        ),
        per_step AS (
            SELECT campaign, json_group_object(step, n) AS sent_per_step FROM (
                SELECT campaign, step, count(*) AS n FROM messages
                WHERE sent_at IS NOT NULL GROUP BY campaign, step ORDER BY campaign, step)
            GROUP BY campaign
        ),
        answers AS (
            SELECT campaign,
                count(DISTINCT CASE WHEN kind = 'reply' THEN partner_id END) AS replied,
                count(DISTINCT CASE WHEN kind = 'auto_reply' THEN partner_id END)
                    AS auto_replied,
                count(DISTINCT CASE WHEN kind = 'bounce' THEN partner_id END) AS bounced,
                count(DISTINCT CASE WHEN kind = 'unsubscribe' THEN partner_id END)
                    AS unsubscribed
            FROM inbound WHERE unverified IS NULL GROUP BY campaign
        ),
        waits AS (
            SELECT r.campaign AS campaign,
                (julianday(min(r.at)) - julianday(min(m.sent_at))) * 24 AS hours
            FROM reply_log r
            JOIN messages m ON m.campaign = r.campaign AND m.partner_id = r.partner_id
                AND m.sent_at IS NOT NULL
            WHERE r.kind = 'reply' AND r.unverified IS NULL
            GROUP BY r.campaign, r.partner_id
        ),
        ranked AS (
            SELECT campaign, hours,
                row_number() OVER (PARTITION BY campaign ORDER BY hours) AS rn,
                count(*) OVER (PARTITION BY campaign) AS n
            FROM waits
        ),
        median AS (
            SELECT campaign, avg(hours) AS median_hours_to_reply FROM ranked
            WHERE rn IN ((n + 1) / 2, (n + 2) / 2) GROUP BY campaign
        )
        SELECT names.campaign AS campaign,
            COALESCE(seq.audience, 0) AS audience,
            COALESCE(delivered.reached, 0) AS sent,
            COALESCE(delivered.messages, 0) AS messages_sent,
            COALESCE(per_step.sent_per_step, '{}') AS sent_per_step,
            COALESCE(answers.replied, 0) AS replied,
            COALESCE(answers.auto_replied, 0) AS auto_replied,
            COALESCE(answers.bounced, 0) AS bounced,
            COALESCE(answers.unsubscribed, 0) AS unsubscribed,
            COALESCE(sent.failed, 0) AS failed,
            COALESCE(seq.pending, 0) AS pending,
            CASE WHEN COALESCE(delivered.reached, 0) = 0 THEN NULL
                ELSE round(1.0 * COALESCE(answers.replied, 0) / delivered.reached, 4)
                END AS reply_rate,
            round(median.median_hours_to_reply, 2) AS median_hours_to_reply
        FROM names
        LEFT JOIN seq ON seq.campaign = names.campaign
        LEFT JOIN sent ON sent.campaign = names.campaign
        LEFT JOIN delivered ON delivered.campaign = names.campaign
        LEFT JOIN per_step ON per_step.campaign = names.campaign
        LEFT JOIN answers ON answers.campaign = names.campaign
        LEFT JOIN median ON median.campaign = names.campaign
    """)


@migrations()
def m006_inbound_signature(db: sqlite_utils.Database) -> None:
    """A reply's signature apart from its words (issue 20): the '-- ' block and device lines
    ("Sent from my iPhone") cut from the end of `text`. Rows read before keep NULL: their
    `text` still holds any signature."""
    db.execute("ALTER TABLE inbound ADD COLUMN signature TEXT")


class Outgoing(NamedTuple):
    """A rendered message for the outbox (Store.queue_messages), in its INSERT's order."""

    campaign: str
    partner_id: int
    step: int
    account: str
    message_id: str
    to_addr: str
    subject: str
    raw: bytes


class LedgerRow(NamedTuple):
    """An outbox row (a tuple: a delivery batch makes one per message, in ~0.4 µs against a
    frozen dataclass's ~3)."""

    id: int
    campaign: str
    partner_id: int
    step: int
    account: str
    message_id: str
    to_addr: str
    subject: str
    status: str
    raw: bytes
    attempts: int
    next_attempt_at: datetime | None
    sent_at: datetime | None


# Ledger states
QUEUED, SENDING, SENT, DEFERRED, FAILED, UNKNOWN = (
    "queued",
    "sending",
    "sent",
    "deferred",
    "failed",
    "unknown",
)
LEDGER_STATES = (QUEUED, SENDING, SENT, DEFERRED, FAILED, UNKNOWN)
# the states of an earlier step that a follow-up threads to (not failed: never delivered)
_THREADED = (SENT, SENDING, UNKNOWN, QUEUED, DEFERRED)


# `+status`: rows are found by id; by the status index, SQLite walked every queued row.
CLAIM_SQL = (
    "UPDATE messages SET status='sending', attempts=attempts+1, updated_at=?"
    " WHERE id IN ({marks}) AND +status IN ('queued', 'deferred') RETURNING id"
)
_EVENT_COLUMNS = (
    "INSERT INTO events (at, partner_id, campaign, step, kind, message_id, outbound_id,"
    " inbound_id, summary, detail)"
)
# The ledger's events from the outbox rows themselves (?1: the time; then (?,?,?) for each
# message: its order, its id and the server's response): the rows' values are not bound once
# more for each statement (~10 µs a message).
_SENT_EVENTS = (
    _EVENT_COLUMNS + " SELECT ?1, m.partner_id, m.campaign, m.step, 'sent', m.message_id,"
    " m.id, NULL, m.subject, CASE WHEN r.column3 = '' THEN '{{}}'"
    " ELSE '{{\"response\": ' || json_quote(r.column3) || '}}' END"
    " FROM (VALUES {values}) AS r JOIN messages m ON m.id = r.column2 ORDER BY r.column1"
)
_INSERT_EVENT = _EVENT_COLUMNS + " VALUES (?,?,?,?,?,?,?,?,?,?)"


def _event_values(
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
    """One events row, in _INSERT_EVENT's order; text from mail made storable."""
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


def _ledger_event_values(
    kind: str, row: LedgerRow, at: str, summary: str, detail: dict[str, Any] | None
) -> tuple[Any, ...]:
    """An event about one outbox message, in its partner's log."""
    return _event_values(
        kind,
        at,
        row.partner_id,
        row.campaign,
        row.step,
        row.message_id,
        row.id,
        None,
        summary,
        detail,
    )


PRIVATE = 0o600  # the database holds partners' words: readable by its owner alone

# What the disk or the file did, as opposed to a mistake in a statement (SQLite result codes).
_DAMAGED = (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)
_ENVIRONMENT = (
    *_DAMAGED,
    sqlite3.SQLITE_FULL,
    sqlite3.SQLITE_READONLY,
    sqlite3.SQLITE_IOERR,
    sqlite3.SQLITE_CANTOPEN,
    sqlite3.SQLITE_PERM,
    sqlite3.SQLITE_BUSY,
    sqlite3.SQLITE_LOCKED,
)
RESTORE = 'stop the worker and restore the latest backup (README: "Backups")'
RESTORE_HINT = RESTORE + "; `outreach check` shows the damage"


def _result_code(exc: sqlite3.Error) -> int | None:
    code = getattr(exc, "sqlite_errorcode", None)
    return None if code is None else code & 0xFF  # the primary code of an extended one


def is_environmental(exc: BaseException) -> bool:
    """Whether a SQLite error comes from the disk or the file (full, read-only, damaged,
    busy), not from a statement: those become one line for the user (`database_failure`)."""
    return isinstance(exc, sqlite3.Error) and _result_code(exc) in _ENVIRONMENT


def database_failure(path: Path | str, exc: sqlite3.Error) -> StoreError:
    """A SQLite error as one line for a coordinator: what happened to the database and what
    to do. A damaged file is a DamagedDatabaseError (restore a backup)."""
    code = _result_code(exc)
    if code in _DAMAGED:
        return DamagedDatabaseError(f"{path}: the database is damaged ({exc})", hint=RESTORE_HINT)
    if code == sqlite3.SQLITE_FULL or (code == sqlite3.SQLITE_IOERR and _no_space(path)):
        # a full disk also shows as an I/O error, e.g. when SQLite cannot make its -shm file
        return StoreError(
            f"{path}: cannot write: the disk is full (this change was not saved)",
            hint="free some space; the worker tries again by itself",
        )
    if code in (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_PERM):
        return StoreError(
            f"{path}: cannot write: the database is read-only ({exc})",
            hint="outreach must be able to write the database and its folder (for the -wal "
            "and -shm files): check the permissions, `lsattr` for the immutable flag, or a "
            "read-only mount",
        )
    if code == sqlite3.SQLITE_CANTOPEN:
        return StoreError(
            f"{path}: cannot open the database file ({exc})",
            hint="its folder must exist and be writable: SQLite keeps the -wal and -shm "
            "files beside it",
        )
    if code == sqlite3.SQLITE_IOERR:
        return StoreError(
            f"{path}: the disk failed to read or write the database ({exc})",
            hint="check that the disk is not full or failing, then run `outreach check`",
        )
    if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        return StoreError(
            f"{path}: the database is busy ({exc})",
            hint="another process kept it locked too long; try again",
        )
    return StoreError(f"{path}: database error: {exc}")


OPEN_CHECK_BUDGET = 0.5  # seconds of integrity check when a command opens the database
MAX_REPORTED = 10  # problems PRAGMA quick_check lists, at most


@dataclass(frozen=True)
class Integrity:
    problems: list[str]  # empty: no damage found
    finished: bool  # False: stopped at the time budget, nothing wrong found until then


def quick_check(conn: sqlite3.Connection, budget: float | None) -> Integrity:
    """PRAGMA quick_check on `conn`, stopped after `budget` seconds (None: no limit).

    quick_check reads every page and checks its structure, which is what a failing disk, a
    torn write or a bad copy damages; it skips matching each index entry with its row
    (integrity_check's extra work, about three times slower). ~1 s per GB once cached."""
    deadline = None if budget is None else time.monotonic() + budget
    if deadline is not None:
        conn.set_progress_handler(lambda: int(time.monotonic() > deadline), 10_000)
    try:
        rows = [str(r[0]) for r in conn.execute(f"PRAGMA quick_check({MAX_REPORTED})")]
    except sqlite3.OperationalError as exc:
        if deadline is not None and "interrupt" in str(exc).lower():
            return Integrity([], finished=False)
        raise
    finally:
        conn.set_progress_handler(None, 0)
    if rows == ["ok"]:
        return Integrity([], finished=True)
    # one line each: "*** in database main ***\nPage 32: ..." -> "Page 32: ..."
    lines = [" ".join(re.sub(r"\*\*\* in database \w+ \*\*\*", "", r).split()) for r in rows]
    return Integrity([line for line in lines if line], finished=True)


@contextmanager
def database_errors(path: Callable[[], Path | str], *, all_errors: bool = True) -> Iterator[None]:
    """A SQLite error met in the block (a read that finds a damaged page, a full disk) is
    raised as one line (`database_failure`) about the database at `path()`. With
    `all_errors=False` only the disk's and the file's: a mistake in a statement stays a bug."""
    try:
        yield
    except sqlite3.Error as exc:
        if not all_errors and not is_environmental(exc):
            raise
        raise database_failure(path(), exc) from exc


def _no_space(path: Path | str) -> bool:
    """Whether the filesystem holding `path` has (next to) no room left."""
    try:
        return shutil.disk_usage(Path(path).absolute().parent).free < 64 * 1024
    except OSError:
        return False


def create_private(path: Path) -> None:
    """Create the database file 0600 (whatever the umask) before SQLite opens it: SQLite
    gives its -wal and -shm files the mode of the database file."""
    if path == Path(":memory:") or path.exists():
        return
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, PRIVATE)
    try:
        os.fchmod(fd, PRIVATE)
    finally:
        os.close(fd)


def refuse_second_name(path: Path) -> None:
    """A database with two names (a hard link) is refused: SQLite keeps its -wal beside the
    name it was opened by, so a worker and a command using one name each would each have a
    log of their own and damage it; and the worker lock could not see the other name."""
    try:
        links = os.stat(path).st_nlink
    except OSError:
        return
    if links > 1:
        raise StoreError(
            f"{path}: this database file has {links} names (hard links); refusing to use "
            "it, as SQLite could damage a database opened by two names",
            hint=f"keep one name: find the others with `find / -xdev -samefile {path}`, "
            "remove them, and use a symbolic link if you need a second path",
        )


class WalCheckpointer:
    """Checkpoints a database's WAL every `every` seconds on a thread of its own, with its
    own connection, while the block runs. SQLite copies the pages and waits for the disk
    without holding the GIL, so the caller's thread goes on meanwhile. PASSIVE: nothing is
    waited for; a checkpoint that cannot run now is left for the next. An error stops the
    checkpoints, never the caller: what is left is checkpointed later.
    """

    def __init__(self, path: Path, every: float) -> None:
        self.path = path
        self.every = every
        self.done = 0  # checkpoints run
        self.error: sqlite3.Error | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="outreach-checkpoint")

    def __enter__(self) -> WalCheckpointer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        try:
            conn = sqlite3.connect(str(self.path), isolation_level=None)
        except sqlite3.Error as exc:
            self.error = exc
            return
        try:
            conn.execute("PRAGMA synchronous=NORMAL")
            while not self._stop.wait(self.every):
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
                self.done += 1
        except sqlite3.Error as exc:
            self.error = exc
        finally:
            conn.close()


class Store:
    """A handle on one outreach database."""

    def __init__(self, path: Path | str, *, integrity_budget: float | None = None) -> None:
        """Open (creating it 0600 if needed) and migrate the database. With
        `integrity_budget`, first spend up to that many seconds on PRAGMA quick_check, so a
        damaged database is said to be damaged instead of giving a partial answer (the CLI
        does; a database too large to check in time is checked by `outreach check`)."""
        self.path = Path(path)
        try:
            create_private(self.path)
            refuse_second_name(self.path)
            # isolation_level=None: we issue BEGIN ourselves (see `write`).
            conn = sqlite3.connect(str(self.path), timeout=30, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            # Checkpoints fsync; fewer, larger ones keep writes fast (WAL <= ~40 MB).
            conn.execute(f"PRAGMA wal_autocheckpoint={AUTOCHECKPOINT_PAGES}")
            conn.execute("PRAGMA foreign_keys=ON")
            # Python's casefold, so SQL narrows the audience exactly as plan.py compares it
            conn.create_function("casefold", 1, _casefold, deterministic=True)
            if integrity_budget is not None:
                found = quick_check(conn, integrity_budget)
                if found.problems:
                    conn.close()
                    raise DamagedDatabaseError(
                        f"{self.path}: the database is damaged ({found.problems[0]})",
                        hint=RESTORE_HINT,
                    )
            self.db = sqlite_utils.Database(conn, execute_plugins=False)
            migrations.apply(self.db)
        except sqlite3.Error as exc:
            if is_environmental(exc):
                raise database_failure(self.path, exc) from exc
            raise StoreError(f"{self.path}: cannot open the database: {exc}") from exc
        except OSError as exc:
            raise StoreError(
                f"{self.path}: cannot create the database: {exc.strerror}",
                hint="check that its folder can be written",
            ) from exc

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; nested calls join the outer one (no savepoints: an error
        anywhere rolls the whole transaction back).

        BEGIN IMMEDIATE takes the write lock up front: a deferred transaction that reads and
        then writes can fail at once with "database is locked" when the worker and a command
        write at the same time, while an immediate one waits for the busy timeout.
        """
        conn = self.db.conn
        if conn.in_transaction:  # nested: part of the caller's transaction, all or nothing
            yield conn
            return
        self.begin()
        try:
            yield conn
        except sqlite3.Error as exc:
            self.rollback()
            if is_environmental(exc):  # a full disk, a damaged page: one line, not a bug
                raise database_failure(self.path, exc) from exc
            raise
        except BaseException:
            self.rollback()
            raise
        else:
            self.commit()

    def begin(self) -> None:
        """Open a write transaction (BEGIN IMMEDIATE, see `write`) that the caller ends with
        `commit` or `rollback`, unless one is open; `write` joins it meanwhile."""
        conn = self.db.conn
        if not conn.in_transaction:
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                if is_environmental(exc):
                    raise database_failure(self.path, exc) from exc
                raise StoreError(f"{self.path}: cannot write: {exc}") from exc

    def commit(self) -> None:
        """Commit the open transaction; if that fails (a full disk), it is rolled back, so
        nothing of it is kept or acted on."""
        if self.db.conn.in_transaction:
            try:
                self.db.conn.execute("COMMIT")
            except sqlite3.Error as exc:
                self.rollback()
                if is_environmental(exc):
                    raise database_failure(self.path, exc) from exc
                raise

    def rollback(self) -> None:
        if self.db.conn.in_transaction:
            try:
                self.db.conn.execute("ROLLBACK")
            except sqlite3.Error as exc:
                if not is_environmental(exc):
                    raise
                # SQLite rolls back what it could not write by itself (and at the next open)

    @contextmanager
    def checkpoint_after(self) -> Iterator[None]:
        """Keep WAL checkpoints off this connection during a batch of many small transactions.

        A checkpoint copies the pages written since the last one into the database file and
        fsyncs it. Automatic ones ran inside a commit now and then, and the batch waited for
        the disk (half of each commit's cost, measured). During the batch they run every
        BATCH_CHECKPOINT_EVERY seconds on a helper thread with a connection of its own
        (WalCheckpointer); the rest is checkpointed here, after the batch. PASSIVE: a reader
        in another process is never waited for.
        """
        conn = self.db.conn
        conn.execute(f"PRAGMA wal_autocheckpoint={BATCH_CHECKPOINT_PAGES}")
        try:
            if self.path == Path(":memory:"):
                yield
            else:
                with WalCheckpointer(self.path, BATCH_CHECKPOINT_EVERY):
                    yield
        finally:
            # a checkpoint that fails (a full disk) loses nothing: the pages stay in the WAL
            with contextlib.suppress(sqlite3.Error):
                conn.execute(f"PRAGMA wal_autocheckpoint={AUTOCHECKPOINT_PAGES}")
                if not conn.in_transaction:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def _select_in(
        self, sql: str, values: Sequence[Any], before: Sequence[Any] = ()
    ) -> Iterator[Any]:
        """Run `sql`, whose `{marks}` is an IN list, over `values` in chunks (SQLite limits
        the number of parameters of one statement); the rows as tuples."""
        for start in range(0, len(values), IN_CHUNK):
            chunk = list(values[start : start + IN_CHUNK])
            yield from self.db.conn.execute(
                sql.format(marks=",".join("?" * len(chunk))), [*before, *chunk]
            )

    def query(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[dict[str, Any]]:
        return list(self.db.query(sql, params))

    def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        row = self.db.conn.execute(sql, params).fetchone()
        return row[0] if row else None

    # ------------------------------------------------------------------ events

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
            _INSERT_EVENT,
            _event_values(
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

    def _ledger_event(
        self,
        kind: str,
        row: LedgerRow,
        now: datetime,
        summary: str,
        detail: dict[str, Any] | None = None,
    ) -> int:
        """An event about one outbox message, in its partner's log."""
        cursor = self.db.conn.execute(
            _INSERT_EVENT, _ledger_event_values(kind, row, iso(now), summary, detail)
        )
        return int(cursor.lastrowid or 0)

    # ------------------------------------------------------------------ partners

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
                    "SELECT id FROM partners WHERE email = ?", (partner.email,)
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
                    updated += 1
        return created, updated

    def partners(self, *, status: str | None = None) -> list[Partner]:
        where = "WHERE status = ?" if status else ""
        rows = self.db.conn.execute(
            f"SELECT {_PARTNER_COLUMNS} FROM partners p {where} ORDER BY email",
            (status,) if status else (),
        )
        return [_partner(row) for row in rows]

    def partner_by_email(self, email: str) -> Partner | None:
        row = self.db.conn.execute(
            f"SELECT {_PARTNER_COLUMNS} FROM partners p WHERE email = ?", [email.strip().lower()]
        ).fetchone()
        return _partner(row) if row else None

    def partners_by_id(self, ids: Iterable[int]) -> dict[int, Partner]:
        rows = self._select_in(
            f"SELECT {_PARTNER_COLUMNS} FROM partners p WHERE id IN ({{marks}})", sorted(set(ids))
        )
        return {row[-1]: _partner(row) for row in rows}

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

    # ------------------------------------------------------------------ campaigns & planning

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
            f"SELECT {_PARTNER_COLUMNS} FROM partners p WHERE {' AND '.join(where)} ORDER BY p.id",
            params,
        )
        return [_partner(row) for row in rows]

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
        rows = self.query(
            "SELECT * FROM sequences WHERE campaign = ? AND partner_id = ?", [campaign, partner_id]
        )
        return _sequence(rows[0]) if rows else None

    def sequences_for_partner(self, partner_id: int) -> list[SequenceState]:
        rows = self.query("SELECT * FROM sequences WHERE partner_id = ?", [partner_id])
        return [_sequence(row) for row in rows]

    def set_sequence_state(
        self,
        campaign: str,
        partner_id: int,
        state: str,
        now: datetime,
        paused_until: datetime | None = None,
    ) -> None:
        with self.write() as conn:
            conn.execute(
                "UPDATE sequences SET state=?, paused_until=?, updated_at=?"
                " WHERE campaign=? AND partner_id=?",
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
                    " WHERE campaign=? AND partner_id=?",
                    (iso(now), seq.campaign, seq.partner_id),
                )
                self.add_event(
                    "resumed",
                    now,
                    partner_id=seq.partner_id,
                    campaign=seq.campaign,
                    summary="pause ended; follow-ups resume",
                )
        return resumed

    # ------------------------------------------------------------------ ledger

    def queue_message(
        self,
        *,
        campaign: str,
        partner_id: int,
        step: int,
        account: str,
        message_id: str,
        to_addr: str,
        subject: str,
        raw: bytes,
        now: datetime,
    ) -> int | None:
        """Write one rendered message to the outbox (see queue_messages); its ledger id, or
        None when (campaign, partner, step) already has a row."""
        outgoing = Outgoing(campaign, partner_id, step, account, message_id, to_addr, subject, raw)
        row = self.queue_messages([outgoing], now)[0]
        return row.id if row is not None else None

    def queue_messages(self, messages: Sequence[Outgoing], now: datetime) -> list[LedgerRow | None]:
        """Write rendered messages to the outbox before any SMTP traffic, in one transaction:
        the ledger row (`queued`, with its `created_at`) and the sequence's last step each.

        No event: the partner's log records what became of the message (sent, deferred,
        failed, unknown), one line per outcome. A `queued` line before each `sent` said
        nothing the ledger row does not, and cost ~4% of the send path's throughput
        (benchmarks/send.py, concurrency 4). Databases from before keep their `queued`
        events; they are listed like any other.

        Returns each message's ledger row, or None where (campaign, partner, step) already
        has one: the unique key is what makes a double send impossible.
        """
        stamp = iso(now)
        ids: dict[str, int] = {}
        with self.write() as conn:
            for start in range(0, len(messages), OUTBOX_CHUNK):
                chunk = messages[start : start + OUTBOX_CHUNK]
                cursor = conn.execute(
                    "INSERT OR IGNORE INTO messages (campaign, partner_id, step, account,"
                    " message_id, to_addr, subject, status, raw, created_at, updated_at) VALUES "
                    + ",".join([f"(?,?,?,?,?,?,?,'{QUEUED}',?,?,?)"] * len(chunk))
                    + " RETURNING id, message_id",
                    [value for m in chunk for value in (*m, stamp, stamp)],
                )
                ids.update((message_id, ledger_id) for ledger_id, message_id in cursor)
            rows = [
                _queued_row(m, ids[m.message_id]) if m.message_id in ids else None for m in messages
            ]
            written = [row.id for row in rows if row is not None]
            # the sequences from the rows just written, in SQL: a row's values are not bound
            # once more (~10 µs a message)
            for start in range(0, len(written), IN_CHUNK):
                some = written[start : start + IN_CHUNK]
                marks = ",".join("?" * len(some))
                conn.execute(
                    "INSERT INTO sequences (campaign, partner_id, state, last_step, updated_at)"
                    f" SELECT campaign, partner_id, 'active', step, ?1 FROM messages WHERE id IN"
                    f" ({marks}) ORDER BY id ON CONFLICT (campaign, partner_id) DO UPDATE SET"
                    " last_step = excluded.last_step, updated_at = excluded.updated_at",
                    [stamp, *some],
                )
        return rows

    def ledger_rows(self, where: str, params: Sequence[Any] = ()) -> list[LedgerRow]:
        return [_ledger(row) for row in self.query(f"SELECT * FROM messages WHERE {where}", params)]

    def sendable(self, account: str, now: datetime, limit: int | None = None) -> list[LedgerRow]:
        """Queued rows, then deferred rows whose retry time has come, oldest first."""
        sql = (
            "account = ? AND (status = 'queued' OR (status = 'deferred' AND next_attempt_at <= ?))"
            " ORDER BY id"
        )
        params: list[Any] = [account, iso(now)]
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return self.ledger_rows(sql, params)

    def count_sendable(self, account: str, now: datetime) -> int:
        return int(
            self.scalar(
                "SELECT count(*) FROM messages WHERE account = ? AND (status = 'queued'"
                " OR (status = 'deferred' AND next_attempt_at <= ?))",
                [account, iso(now)],
            )
        )

    def mark_sending(self, ledger_ids: Sequence[int], now: datetime) -> set[int]:
        """Claim rows for one delivery attempt each, committed before their SMTP DATA.

        Returns the ids claimed: a row no longer queued or deferred is not."""
        if not ledger_ids:
            return set()
        with self.write():
            return {row[0] for row in self._select_in(CLAIM_SQL, ledger_ids, before=[iso(now)])}

    def mark_sent(self, row: LedgerRow, now: datetime, response: str = "") -> None:
        self.mark_sent_many([(row, response)], now)

    def mark_sent_many(self, sent: Sequence[tuple[LedgerRow, str]], now: datetime) -> None:
        """Record delivered messages (each with the server's response), in one transaction:
        the ledger row, the sequence's last send and a `sent` event in the partner's log."""
        stamp = iso(now)
        with self.write() as conn:
            for start in range(0, len(sent), IN_CHUNK // 2):
                chunk = sent[start : start + IN_CHUNK // 2]
                ids = [row.id for row, _ in chunk]
                marks = ",".join("?" * len(chunk))
                conn.execute(
                    "UPDATE messages SET status='sent', sent_at=?1, updated_at=?1,"
                    f" last_error=NULL, next_attempt_at=NULL WHERE id IN ({marks})",
                    [stamp, *ids],
                )
                conn.execute(
                    "UPDATE sequences SET last_sent_at=?1, updated_at=?1 FROM messages m"
                    f" WHERE m.id IN ({marks}) AND sequences.campaign = m.campaign"
                    " AND sequences.partner_id = m.partner_id AND sequences.last_step = m.step",
                    [stamp, *ids],
                )
                responses = [
                    value
                    for order, (row, response) in enumerate(chunk)
                    for value in (order, row.id, storable(response))
                ]
                conn.execute(
                    _SENT_EVENTS.format(values=",".join(["(?,?,?)"] * len(chunk))),
                    [stamp, *responses],
                )

    def mark_deferred(
        self, row: LedgerRow, now: datetime, retry_at: datetime, code: int | None, error: str
    ) -> None:
        with self.write() as conn:
            conn.execute(
                "UPDATE messages SET status='deferred', next_attempt_at=?, smtp_code=?,"
                " last_error=?, updated_at=? WHERE id=?",
                (iso(retry_at), code, error, iso(now), row.id),
            )
            self._ledger_event(
                "deferred",
                row,
                now,
                summary=f"{error} (retry at {iso(retry_at)})",
                detail={"code": code, "retry_at": iso(retry_at)},
            )

    def mark_failed(
        self, row: LedgerRow, now: datetime, code: int | None, error: str, *, permanent: bool
    ) -> None:
        """A refusal for this recipient: recorded, never retried.

        A permanent (5xx) refusal of the address marks the partner bounced everywhere; a
        message that ran out of retries fails without judging the address.
        """
        with self.write() as conn:
            conn.execute(
                "UPDATE messages SET status='failed', smtp_code=?, last_error=?, updated_at=?,"
                " next_attempt_at=NULL WHERE id=?",
                (code, error, iso(now), row.id),
            )
            self._ledger_event(
                "failed",
                row,
                now,
                summary=error,
                detail={"code": code, "permanent": permanent},
            )
            if permanent:
                self.set_partner_status(
                    row.partner_id,
                    BOUNCED,
                    f"refused by the mail server: {error}",
                    now,
                    event="status",
                    campaign=row.campaign,
                )
            else:
                conn.execute(
                    "UPDATE sequences SET state='stopped', updated_at=? WHERE campaign=?"
                    " AND partner_id=?",
                    (iso(now), row.campaign, row.partner_id),
                )

    def mark_unknown(self, row: LedgerRow, now: datetime, reason: str) -> None:
        """The server may or may not have the message: never resent blindly."""
        with self.write() as conn:
            conn.execute(
                "UPDATE messages SET status='unknown', last_error=?, updated_at=? WHERE id=?",
                (reason, iso(now), row.id),
            )
            self._ledger_event(
                "unknown",
                row,
                now,
                summary=reason,
            )

    def release(self, row: LedgerRow, now: datetime) -> None:
        """Give back a claimed row that never reached the server (a limit or shutdown hit)."""
        with self.write() as conn:
            conn.execute(
                "UPDATE messages SET status=CASE WHEN next_attempt_at IS NULL THEN 'queued'"
                " ELSE 'deferred' END, attempts=attempts-1, updated_at=? WHERE id=?"
                " AND status='sending'",
                (iso(now), row.id),
            )

    def any_sending(self) -> bool:
        """Whether rows are claimed (`sending`) with no result: between two batches, only a
        crash or a batch whose results could not be written (a full disk) leaves them."""
        return self.scalar("SELECT 1 FROM messages WHERE status = 'sending' LIMIT 1") is not None

    def mark_interrupted(self, now: datetime) -> list[LedgerRow]:
        """Rows left in `sending` by a crash become `unknown`: never resent blindly."""
        rows = self.ledger_rows("status = 'sending'")
        with self.write() as conn:
            for row in rows:
                conn.execute(
                    "UPDATE messages SET status='unknown', updated_at=? WHERE id=?",
                    (iso(now), row.id),
                )
                self._ledger_event(
                    "unknown",
                    row,
                    now,
                    summary="the worker stopped (or could not record the result) while this "
                    "message was being sent; it may or may not have been delivered",
                )
        return rows

    def resolve_unknown(self, row: LedgerRow, sent: bool, now: datetime, how: str) -> None:
        """Settle an `unknown` row: it was delivered, or it goes back to the queue."""
        with self.write() as conn:
            if sent:
                conn.execute(
                    "UPDATE messages SET status='sending' WHERE id=? AND status='unknown'",
                    (row.id,),
                )
                self._ledger_event(
                    "resolved",
                    row,
                    now,
                    summary=f"counted as sent ({how})",
                )
                self.mark_sent(row, now)
            else:
                conn.execute(
                    "UPDATE messages SET status='queued', updated_at=? WHERE id=?"
                    " AND status='unknown'",
                    (iso(now), row.id),
                )
                self._ledger_event(
                    "resolved",
                    row,
                    now,
                    summary=f"queued again ({how})",
                )

    def mark_saved_copy(self, ledger_id: int, now: datetime) -> None:
        with self.write() as conn:
            conn.execute("UPDATE messages SET saved_copy_at=? WHERE id=?", (iso(now), ledger_id))

    def sent_since(self, account: str, since: datetime) -> int:
        """Messages this account sent since a moment (the rolling per_day limit)."""
        return int(
            self.scalar(
                "SELECT count(*) FROM messages WHERE account = ? AND sent_at >= ?",
                [account, iso(since)],
            )
        )

    def threads_for(
        self, wanted: dict[tuple[str, int], int]
    ) -> dict[tuple[str, int], tuple[str | None, list[str]]]:
        """For each (campaign, partner id) -> step: the subject of its step 1 (whatever became
        of it) and the Message-IDs of its earlier steps that may have been delivered, oldest
        first: what a follow-up threads to. Read in bulk before a batch."""
        found: dict[tuple[str, int], tuple[str | None, list[str]]] = {
            key: (None, []) for key in wanted
        }
        rows = self._select_in(
            "SELECT campaign, partner_id, step, message_id, subject, status FROM messages"
            " WHERE partner_id IN ({marks}) ORDER BY step",
            sorted({partner_id for _, partner_id in wanted}),
        )
        for campaign, partner_id, step, message_id, subject, status in rows:
            key = (campaign, partner_id)
            before = wanted.get(key)
            if before is None or step >= before:
                continue
            ids = found[key][1]
            if step == 1:
                found[key] = (subject, ids)
            if status in _THREADED:
                ids.append(message_id)
        return found

    def worker_state(self) -> dict[str, Any]:
        rows = self.query("SELECT * FROM worker WHERE id = 1")
        return rows[0] if rows else {}

    def update_worker(self, **values: Any) -> None:
        columns = ", ".join(f"{k} = :{k}" for k in values)
        with self.write() as conn:
            conn.execute("INSERT OR IGNORE INTO worker (id) VALUES (1)")
            conn.execute(f"UPDATE worker SET {columns} WHERE id = 1", values)

    # ------------------------------------------------------------------ inbound

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

    def ledger_refs(self, message_ids: Iterable[str]) -> dict[str, LedgerRef]:
        """Our messages by Message-ID (given without angle brackets)."""
        wanted = sorted({f"<{m.strip('<>')}>" for m in message_ids if m})
        rows = self._select_in(
            "SELECT id, partner_id, campaign, step, to_addr, message_id FROM messages"
            " WHERE message_id IN ({marks})",
            wanted,
        )
        return {row[5].strip("<>"): LedgerRef(*row[:5]) for row in rows}

    def partner_ids_by_address(self, addresses: Iterable[str]) -> dict[str, int]:
        wanted = sorted({a.lower() for a in addresses if a})
        return dict(
            self._select_in("SELECT email, id FROM partners WHERE email IN ({marks})", wanted)
        )

    def waiting_for(self, partner_id: int, campaign: str | None = None) -> list[dict[str, Any]]:
        """A partner's messages still to go out: queued, or deferred until their next try."""
        sql = (
            "SELECT campaign, step, subject, status, created_at, next_attempt_at FROM messages"
            " WHERE partner_id = ? AND status IN ('queued', 'deferred')"
        )
        params: list[Any] = [partner_id]
        if campaign is not None:
            sql += " AND campaign = ?"
            params.append(campaign)
        return self.query(sql + " ORDER BY id", params)

    def latest_sent(self, partner_ids: Iterable[int]) -> dict[int, LedgerRef]:
        """Each partner's most recent message from outreach (to place a reply that does not
        point at one of our messages)."""
        wanted = sorted(set(partner_ids))
        rows = self._select_in(
            "SELECT id, partner_id, campaign, step, to_addr FROM messages"
            " WHERE partner_id IN ({marks}) AND status IN ('sent', 'unknown') ORDER BY sent_at",
            wanted,
        )
        return {row[1]: LedgerRef(*row) for row in rows}  # the latest wins

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

    def uncount_soft_bounce(self, partner_id: int, now: datetime) -> None:
        with self.write() as conn:
            conn.execute(
                "UPDATE partners SET soft_bounces = max(soft_bounces - 1, 0), updated_at = ?"
                " WHERE id = ?",
                (iso(now), partner_id),
            )

    def count_soft_bounce(self, partner_id: int, now: datetime) -> int:
        self.db.conn.execute(
            "UPDATE partners SET soft_bounces = soft_bounces + 1, updated_at = ? WHERE id = ?",
            (iso(now), partner_id),
        )
        return int(self.scalar("SELECT soft_bounces FROM partners WHERE id = ?", [partner_id]))

    def status_counts(self) -> dict[str, dict[str, int]]:
        counts: dict[str, dict[str, int]] = {}
        for row in self.query(
            "SELECT campaign, status, count(*) AS n FROM messages GROUP BY campaign, status"
        ):
            counts.setdefault(row["campaign"], {})[row["status"]] = row["n"]
        return counts

    # ------------------------------------------------------------------ service & digest

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

    def refusals_since(self, since: datetime) -> list[dict[str, Any]]:
        """Messages the mail server refused for good (5xx) after `since`."""
        return self.query(
            "SELECT e.*, p.email AS partner_email, p.name AS partner_name,"
            " p.organization AS partner_organization FROM events e"
            " JOIN partners p ON p.id = e.partner_id WHERE e.kind = 'failed' AND e.at > ?"
            " ORDER BY e.at, e.id",
            [iso(since)],
        )


def _casefold(value: Any) -> Any:
    return value.casefold() if isinstance(value, str) else value


# A Partner's fields in its order: rows of thousands of partners are read as tuples, without
# a dict per row (planning reads every partner who has not started a campaign).
_PARTNER_COLUMNS = (
    "p.email, p.name, p.first_name, p.organization, p.industry, p.pathway, p.owner, p.tags,"
    " p.timezone, p.fields, p.status, p.id"
)


def _partner(row: Sequence[Any]) -> Partner:
    """A Partner from a row of _PARTNER_COLUMNS."""
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


def _sequence(row: dict[str, Any]) -> SequenceState:
    return SequenceState(
        campaign=row["campaign"],
        partner_id=row["partner_id"],
        state=row["state"],
        last_step=row["last_step"],
        last_sent_at=parse_iso(row["last_sent_at"]),
        paused_until=parse_iso(row["paused_until"]),
    )


def _queued_row(message: Outgoing, ledger_id: int) -> LedgerRow:
    """The ledger row queue_messages has just written."""
    m = message
    return LedgerRow(
        ledger_id, m.campaign, m.partner_id, m.step, m.account, m.message_id, m.to_addr,
        m.subject, QUEUED, m.raw, attempts=0, next_attempt_at=None, sent_at=None,
    )  # fmt: skip


def _ledger(row: dict[str, Any]) -> LedgerRow:
    return LedgerRow(
        id=row["id"],
        campaign=row["campaign"],
        partner_id=row["partner_id"],
        step=row["step"],
        account=row["account"],
        message_id=row["message_id"],
        to_addr=row["to_addr"],
        subject=row["subject"],
        status=row["status"],
        raw=row["raw"],
        attempts=row["attempts"],
        next_attempt_at=parse_iso(row["next_attempt_at"]),
        sent_at=parse_iso(row["sent_at"]),
    )


__all__ = [
    "ACTIVE",
    "BOUNCED",
    "OPTED_OUT",
    "Store",
    "SequenceState",
    "LedgerRow",
    "Outgoing",
    "iso",
    "parse_iso",
]
