"""The outbox and ledger (`messages`): one row per (campaign, partner, step) with its own
Message-ID, and the SQL of each of its transitions.

engine/ledger.py says when each transition is taken and why nothing is sent twice; this
module only writes them, each with its event in the partner's log, in one transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, NamedTuple

from outreach.core.model import BOUNCED, LedgerRef
from outreach.store.database import IN_CHUNK, iso, parse_iso, storable
from outreach.store.events import EVENT_INSERT, INSERT_EVENT, event_values
from outreach.store.sequences import Sequences

OUTBOX_CHUNK = 50  # rows per INSERT: 10 parameters each, under SQLite's old limit of 999


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
    round: int = 1  # the partner's round of the campaign: part of the never-sent-twice key


class LedgerRow(NamedTuple):
    """An outbox row. A tuple, not a frozen dataclass: a delivery batch makes one per
    message, and a tuple is several times cheaper to make."""

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
    round: int = 1


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
# The ledger's events from the outbox rows themselves (?1: the time; then (?,?,?) for each
# message: its order, its id and the server's response): the rows' values are not bound once
# more for each statement.
_SENT_EVENTS = (
    EVENT_INSERT + " SELECT ?1, m.partner_id, m.campaign, m.step, 'sent', m.message_id,"
    " m.id, NULL, m.subject, CASE WHEN m.round > 1 THEN json_set(CASE WHEN r.column3 = ''"
    " THEN '{{}}' ELSE json_object('response', r.column3) END, '$.round', m.round)"
    " WHEN r.column3 = '' THEN '{{}}'"
    " ELSE '{{\"response\": ' || json_quote(r.column3) || '}}' END"
    " FROM (VALUES {values}) AS r JOIN messages m ON m.id = r.column2 ORDER BY r.column1"
)


def _ledger_event_values(
    kind: str, row: LedgerRow, at: str, summary: str, detail: dict[str, Any] | None
) -> tuple[Any, ...]:
    """An event about one outbox message, in its partner's log."""
    return event_values(
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


class Outbox(Sequences):
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
            INSERT_EVENT, _ledger_event_values(kind, row, iso(now), summary, detail)
        )
        return int(cursor.lastrowid or 0)

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
                    " message_id, to_addr, subject, raw, round, status, created_at, updated_at)"
                    " VALUES "
                    + ",".join([f"(?,?,?,?,?,?,?,?,?,'{QUEUED}',?,?)"] * len(chunk))
                    + " RETURNING id, message_id",
                    [value for m in chunk for value in (*m, stamp, stamp)],
                )
                ids.update((message_id, ledger_id) for ledger_id, message_id in cursor)
            rows = [
                _queued_row(m, ids[m.message_id]) if m.message_id in ids else None for m in messages
            ]
            written = [row.id for row in rows if row is not None]
            # the sequences from the rows just written, in SQL: a row's values are not bound
            # once more
            for start in range(0, len(written), IN_CHUNK):
                some = written[start : start + IN_CHUNK]
                marks = ",".join("?" * len(some))
                conn.execute(
                    "INSERT INTO sequences (campaign, partner_id, round, state, last_step,"
                    " updated_at, account) SELECT campaign, partner_id, round, 'active', step,"
                    f" ?1, account FROM messages WHERE id IN ({marks}) ORDER BY id ON CONFLICT"
                    " (campaign, partner_id, round) DO UPDATE SET last_step = excluded.last_step,"
                    " updated_at = excluded.updated_at,"
                    " account = coalesce(sequences.account, excluded.account)",
                    [stamp, *some],
                )
        return rows

    def _ledger_rows(self, where: str, params: Sequence[Any] = ()) -> list[LedgerRow]:
        return [_ledger(row) for row in self.query(f"SELECT * FROM messages WHERE {where}", params)]

    def ledger_row(self, ledger_id: int) -> LedgerRow:
        """One message of the ledger, by its id."""
        return self._ledger_rows("id = ?", [ledger_id])[0]

    def all_ledger_rows(self) -> list[LedgerRow]:
        """Every message of the ledger, oldest first (for checks over the whole record)."""
        return self._ledger_rows("1 ORDER BY id")

    def unknown_rows(self) -> list[LedgerRow]:
        """Messages whose delivery is unknown (the worker stopped while sending them)."""
        return self._ledger_rows("status = 'unknown' ORDER BY id")

    def count_unknown(self) -> int:
        return int(self.scalar("SELECT count(*) FROM messages WHERE status = 'unknown'"))

    def unsaved_copies(self, account: str) -> list[LedgerRow]:
        """The account's sent messages without a copy in its Sent folder yet."""
        return self._ledger_rows(
            "account = ? AND status = 'sent' AND saved_copy_at IS NULL ORDER BY id", [account]
        )

    def accounts_with_backlog(self) -> set[str]:
        """Accounts with messages queued or deferred."""
        return {
            row[0]
            for row in self.db.conn.execute(
                "SELECT DISTINCT account FROM messages WHERE status IN ('queued', 'deferred')"
            )
        }

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
        return self._ledger_rows(sql, params)

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
                    " AND sequences.partner_id = m.partner_id AND sequences.round = m.round"
                    " AND sequences.last_step = m.step",
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
                    " AND partner_id=? AND round=?",
                    (iso(now), row.campaign, row.partner_id, row.round),
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
        rows = self._ledger_rows("status = 'sending'")
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
        self, wanted: dict[tuple[str, int], tuple[int, int]]
    ) -> dict[tuple[str, int], tuple[str | None, list[str]]]:
        """For each (campaign, partner id) -> (round, step): the subject of the round's step
        1 (whatever became of it) and the Message-IDs of its earlier steps that may have been
        delivered, oldest first: what a follow-up threads to. Each round is its own thread.
        Read in bulk before a batch."""
        found: dict[tuple[str, int], tuple[str | None, list[str]]] = {
            key: (None, []) for key in wanted
        }
        rows = self._select_in(
            "SELECT campaign, partner_id, round, step, message_id, subject, status FROM messages"
            " WHERE partner_id IN ({marks}) ORDER BY step",
            sorted({partner_id for _, partner_id in wanted}),
        )
        for campaign, partner_id, round_, step, message_id, subject, status in rows:
            key = (campaign, partner_id)
            before = wanted.get(key)
            if before is None or round_ != before[0] or step >= before[1]:
                continue
            ids = found[key][1]
            if step == 1:
                found[key] = (subject, ids)
            if status in _THREADED:
                ids.append(message_id)
        return found

    def round_memory(
        self, keys: Iterable[tuple[str, int]]
    ) -> dict[tuple[str, int], tuple[tuple[str, datetime] | None, datetime | None]]:
        """For each (campaign, partner id): the partner's latest answer in that campaign (its
        words and when it was read) and when our latest message to them in it went out, for
        the templates' `last_reply` and `previous` (core/rounds.round_context). In bulk."""
        wanted = set(keys)
        found: dict[tuple[str, int], tuple[tuple[str, datetime] | None, datetime | None]] = {
            key: (None, None) for key in wanted
        }
        partner_ids = sorted({partner_id for _, partner_id in wanted})
        sent = self._select_in(
            "SELECT campaign, partner_id, max(sent_at) FROM messages WHERE partner_id IN"
            " ({marks}) AND sent_at IS NOT NULL GROUP BY campaign, partner_id",
            partner_ids,
        )
        for campaign, partner_id, sent_at in sent:
            if (campaign, partner_id) in found:
                found[(campaign, partner_id)] = (None, parse_iso(sent_at))
        replies = self._select_in(
            "SELECT campaign, partner_id, text, processed_at FROM inbound WHERE partner_id IN"
            " ({marks}) AND kind = 'reply' AND unverified IS NULL AND text IS NOT NULL"
            " ORDER BY processed_at",
            partner_ids,
        )
        for campaign, partner_id, text, processed_at in replies:
            key = (campaign, partner_id)
            at = parse_iso(processed_at)
            latest = found[key][0] if key in found else None
            if key in found and at is not None and (latest is None or at >= latest[1]):
                found[key] = ((text, at), found[key][1])
        return found

    def ledger_refs(self, message_ids: Iterable[str]) -> dict[str, LedgerRef]:
        """Our messages by Message-ID (given without angle brackets)."""
        wanted = sorted({f"<{m.strip('<>')}>" for m in message_ids if m})
        rows = self._select_in(
            "SELECT id, partner_id, campaign, step, to_addr, message_id FROM messages"
            " WHERE message_id IN ({marks})",
            wanted,
        )
        return {row[5].strip("<>"): LedgerRef(*row[:5]) for row in rows}

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

    def last_message_sent_at(self) -> str | None:
        """When the last message went out (not when a send cycle last ran)."""
        value = self.scalar("SELECT max(sent_at) FROM messages WHERE sent_at IS NOT NULL")
        return str(value) if value is not None else None

    def status_counts(self) -> dict[str, dict[str, int]]:
        counts: dict[str, dict[str, int]] = {}
        for row in self.query(
            "SELECT campaign, status, count(*) AS n FROM messages GROUP BY campaign, status"
        ):
            counts.setdefault(row["campaign"], {})[row["status"]] = row["n"]
        return counts


def _queued_row(message: Outgoing, ledger_id: int) -> LedgerRow:
    """The ledger row queue_messages has just written."""
    m = message
    return LedgerRow(
        ledger_id, m.campaign, m.partner_id, m.step, m.account, m.message_id, m.to_addr,
        m.subject, QUEUED, m.raw, attempts=0, next_attempt_at=None, sent_at=None,
        round=m.round,
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
        round=row["round"],
    )
