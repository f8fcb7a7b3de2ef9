"""The database's schema, as a list of named migrations (sqlite-utils' Migrations).

A migration runs once per database and is recorded by name, so its body never changes after
it ships: its SQL is written inside it, not taken from a constant that could be edited
later (m002's views stay as m002 made them; m005 made them again). A new column, index or
view is a new migration at the end.

Times are stored as ISO 8601 text in UTC with microseconds (store.database.iso), so that
text order is time order.
"""

from __future__ import annotations

import sqlite3

import sqlite_utils
from sqlite_utils.migrations import Migrations

migrations = Migrations("outreach")


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


@migrations()
def m002_views(db: sqlite_utils.Database) -> None:
    """Read-only views over the response log (reply_log first: the others use it).
    m005 replaced them; this body stays as it shipped: new databases still run it."""
    db.execute("CREATE INDEX IF NOT EXISTS inbound_campaign ON inbound(campaign, kind)")
    db.execute("CREATE INDEX IF NOT EXISTS messages_partner ON messages(partner_id, sent_at)")
    # The moment a partner answered: the Date header when it is plausible (not before the
    # message it answers, not after outreach read it), else when outreach read it.
    inbound_at = (
        "CASE WHEN i.date IS NOT NULL AND i.date <= i.processed_at"
        " AND i.date >= COALESCE(m.sent_at, '') THEN i.date ELSE i.processed_at END"
    )

    views = {
        "reply_log": f"""
            SELECT i.id AS id, {inbound_at} AS at, i.processed_at AS received_at,
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
    for name, sql in views.items():
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


@migrations()
def m007_team_accounts(db: sqlite_utils.Database) -> None:
    """A team (issue 19): the account each sequence started with (its follow-ups go from it,
    whoever owns the partner later), filled for the sequences before from their first
    message; each account's sending and reading state for `outreach status`; and each
    owner's daily digest, claimed before any SMTP traffic like the coordinator's."""
    db.executescript(
        """
        ALTER TABLE sequences ADD COLUMN account TEXT;
        UPDATE sequences SET account = (
            SELECT m.account FROM messages m
            WHERE m.campaign = sequences.campaign AND m.partner_id = sequences.partner_id
            ORDER BY m.step LIMIT 1
        );

        CREATE TABLE account_state (
            account TEXT NOT NULL,
            part TEXT NOT NULL,
            state TEXT NOT NULL,
            reason TEXT,
            since TEXT NOT NULL,
            checked_at TEXT NOT NULL,
            PRIMARY KEY (account, part)
        ) WITHOUT ROWID;

        CREATE TABLE owner_digests (
            day TEXT NOT NULL,
            owner TEXT NOT NULL,
            account TEXT NOT NULL,
            status TEXT NOT NULL,
            to_addr TEXT NOT NULL,
            message_id TEXT NOT NULL,
            summary TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            PRIMARY KEY (day, owner)
        ) WITHOUT ROWID;
        """
    )


@migrations()
def m008_inbound_answers(db: sqlite_utils.Database) -> None:
    """A reply's answer to each of its campaign's questions (issue 20, part 2).

    - answers: JSON object, question id -> the partner's words (null when unanswered), and
      "other" for what answered no question; NULL when the campaign declares no questions or
      the message is not a reply.
    - asked_help: 1 when a question marked `asks` has an answer that is more than a no.
    - answers_corrected_at: when a person last corrected an answer (`outreach replies answer`);
      a corrected row keeps its answers when it is reclassified."""
    for column in ("answers TEXT", "asked_help INTEGER", "answers_corrected_at TEXT"):
        db.execute(f"ALTER TABLE inbound ADD COLUMN {column}")


@migrations(transactional=False)
def m009_rounds(db: sqlite_utils.Database) -> None:
    """Check-ins that recur (issue 21): a partner has one sequence per round of a campaign,
    and the never-sent-twice key of `messages` is (campaign, partner, round, step).

    SQLite cannot change a table's key in place, so `sequences` and `messages` are made
    again (https://sqlite.org/lang_altertable.html, "other kinds of table schema changes"):
    a new table with every column the old one has at this moment (read from the database,
    so columns added by other migrations come along), the rows copied with round 1, the old
    table dropped, the new one renamed, its indexes, the views and triggers made again.

    Foreign keys must be off while a table others point at is dropped, and that pragma does
    nothing inside a transaction: so this migration opens its own, checks every foreign key
    before it commits, and is safe to run again (a table that has `round` is left alone)."""
    conn = db.conn
    conn.execute("PRAGMA foreign_keys = OFF")
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            _m009_body(conn)
            broken = conn.execute("PRAGMA foreign_key_check").fetchall()
            if broken:
                raise sqlite3.IntegrityError(f"m009_rounds: foreign keys broken: {broken[:3]}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    finally:
        conn.execute("PRAGMA foreign_keys = ON")


def _m009_body(conn: sqlite3.Connection) -> None:
    """m009_rounds' work, in its transaction (frozen with it)."""

    def saved(kind: str) -> list[tuple[str, str]]:
        return list(
            conn.execute(
                "SELECT name, sql FROM sqlite_master WHERE type = ? AND sql IS NOT NULL",
                [kind],
            )
        )

    views, triggers = saved("view"), saved("trigger")
    for name, _ in views:
        conn.execute(f'DROP VIEW "{name}"')
    for name, _ in triggers:
        conn.execute(f'DROP TRIGGER "{name}"')

    def rebuild(table: str, key: str, replaced_unique: tuple[str, ...], tail: str) -> None:
        columns = list(conn.execute(f'PRAGMA table_info("{table}")'))
        if any(c[1] == "round" for c in columns):
            return  # made again already (the migration ran, its record was not written)
        keys = [c for c in columns if c[5]]
        references = {
            fk[3]: f' REFERENCES "{fk[2]}"("{fk[4]}")'
            + (f" ON DELETE {fk[6]}" if fk[6] != "NO ACTION" else "")
            + (f" ON UPDATE {fk[5]}" if fk[5] != "NO ACTION" else "")
            for fk in conn.execute(f'PRAGMA foreign_key_list("{table}")')
        }
        uniques = []
        for index in conn.execute(f'PRAGMA index_list("{table}")'):
            if index[3] != "u":
                continue
            names = tuple(c[2] for c in conn.execute(f'PRAGMA index_info("{index[1]}")'))
            if names != replaced_unique:
                uniques.append("UNIQUE (" + ", ".join(f'"{n}"' for n in names) + ")")
        definitions = []
        for _, name, kind, notnull, default, pk in columns:
            text = f'"{name}" {kind}'
            if pk and len(keys) == 1:
                text += " PRIMARY KEY"
            if notnull:
                text += " NOT NULL"
            if default is not None:
                text += f" DEFAULT ({default})"
            definitions.append(text + references.get(name, ""))
            if name == "partner_id":
                # next to the other key columns: SQLite 3.40's integrity_check misreads a
                # WITHOUT ROWID table whose key has a column after the others
                definitions.append('"round" INTEGER NOT NULL DEFAULT 1')
        indexes = [
            sql
            for name, sql in conn.execute(
                "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ?"
                " AND sql IS NOT NULL",
                [table],
            )
        ]
        copied = ", ".join(f'"{c[1]}"' for c in columns)
        conn.execute(
            f'CREATE TABLE "{table}_m009" (' + ", ".join([*definitions, *uniques, key]) + f"){tail}"
        )
        conn.execute(
            f'INSERT INTO "{table}_m009" ({copied}, "round") SELECT {copied}, 1 FROM "{table}"'
        )
        conn.execute(f'DROP TABLE "{table}"')
        conn.execute(f'ALTER TABLE "{table}_m009" RENAME TO "{table}"')
        for sql in indexes:
            conn.execute(sql)

    rebuild(
        "sequences",
        'PRIMARY KEY ("campaign", "partner_id", "round")',
        (),
        " WITHOUT ROWID",
    )
    rebuild(
        "messages",
        'UNIQUE ("campaign", "partner_id", "round", "step")',
        ("campaign", "partner_id", "step"),
        "",
    )
    for name, sql in [*views, *triggers]:
        if name == "campaign_funnel":  # a partner with several rounds is one in the audience
            sql = sql.replace(
                "SELECT campaign, count(*) AS audience,",
                "SELECT campaign, count(DISTINCT partner_id) AS audience,",
            )
        conn.execute(sql)
