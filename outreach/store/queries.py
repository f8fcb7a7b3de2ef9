"""The read-only queries behind what people read: `outreach log`, `replies`, `report`,
`partners list` and the exports.

Each returns plain rows (tuples or dicts, streamed where a log can be long); views/ turns
them into what is shown. They read the views m005 made (reply_log, partner_status,
campaign_funnel), which any SQLite client can read too (docs/response-logs.md).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from outreach.store.database import Database, iso

# --------------------------------------------------------------------------- the log


def events(
    store: Database,
    *,
    partner: str | None = None,
    campaign: str | None = None,
    since: datetime | None = None,
    owner: str | None = None,
) -> Iterator[tuple[Any, ...]]:
    """Events oldest first (ties in insertion order), filtered in SQL, one tuple each: id, at,
    kind, partner's email, name, organization, campaign, step, summary, the words of a reply
    (when the event has them), detail, message_id, inbound_id, from_addr, from_name."""
    where, params = [], []
    if partner is not None:
        where.append("e.partner_id = (SELECT id FROM partners WHERE email = ?)")
        params.append(partner)
    if campaign is not None:
        where.append("e.campaign = ?")
        params.append(campaign)
    if since is not None:
        where.append("e.at >= ?")
        params.append(iso(since))
    if owner is not None:
        where.append(OWNER_IS)
        params.append(owner)
    sql = (
        "SELECT e.id, e.at, e.kind, p.email, p.name, p.organization, e.campaign, e.step,"
        " e.summary, CASE WHEN e.kind IN ('reply', 'auto_reply', 'unsubscribe', 'unverified')"
        " THEN i.text END, e.detail, e.message_id, e.inbound_id, i.from_addr, i.from_name"
        " FROM events e LEFT JOIN partners p ON p.id = e.partner_id"
        " LEFT JOIN inbound i ON i.id = e.inbound_id"
        + (" WHERE " + " AND ".join(where) if where else "")
        + " ORDER BY e.at, e.id"
    )
    yield from store.db.conn.execute(sql, params)


# --------------------------------------------------------------------------- the review queue


def review_queue(
    store: Database, *, unhandled: bool = False, owner: str | None = None
) -> list[dict[str, Any]]:
    """Answers that need a person (reply_log.needs_review), newest first; with `unhandled`,
    only those nobody has handled; with `owner`, only about that owner's partners."""
    where = "needs_review" + (" AND NOT handled" if unhandled else "")
    params: list[Any] = []
    if owner is not None:
        where += f" AND r.partner IN (SELECT p.email FROM partners p WHERE {OWNER_IS})"
        params.append(owner)
    return store.query(
        "SELECT r.id, r.at, r.partner, r.name, r.organization, r.campaign, r.step, r.kind,"
        " r.subject, r.text, r.contact_change, r.handled_at, r.handled_note,"
        " i.full_text, r.from_addr, r.from_name, r.unverified, r.duplicate_of, r.unreadable,"
        " i.signature, i.answers, i.asked_help"
        " FROM reply_log r JOIN inbound i ON i.id = r.id"
        f" WHERE {where} ORDER BY r.at DESC, r.id DESC",
        params,
    )


# --------------------------------------------------------------------------- partners list


def relationships(store: Database) -> list[dict[str, Any]]:
    """Per partner (partner_status): last contact, last reply, the open campaign and its
    state, how many replies and how many unhandled."""
    return store.query(
        "SELECT id, last_contact, last_reply, open_campaign, open_state, replies,"
        " unhandled FROM partner_status"
    )


# --------------------------------------------------------------------------- campaign report


def campaign_names(store: Database) -> list[str]:
    return [r["campaign"] for r in store.query("SELECT campaign FROM campaign_funnel")]


def funnel(store: Database, campaign: str) -> dict[str, Any]:
    """The campaign_funnel row of `campaign` ({} when it has none)."""
    rows = store.query("SELECT * FROM campaign_funnel WHERE campaign = ?", [campaign])
    return rows[0] if rows else {}


def step_counts(store: Database, campaign: str) -> dict[int, dict[str, int]]:
    """Per step: messages sent ("sent"), and partners who answered it, per kind of answer
    (mail not verified as the partner's left out)."""
    steps: dict[int, dict[str, int]] = {}
    for row in store.query(
        "SELECT step, count(*) AS n FROM messages WHERE campaign = ? AND sent_at IS NOT NULL"
        " GROUP BY step",
        [campaign],
    ):
        steps.setdefault(row["step"], {})["sent"] = row["n"]
    for row in store.query(
        "SELECT step, kind, count(DISTINCT partner_id) AS n FROM inbound WHERE campaign = ?"
        " AND step IS NOT NULL AND unverified IS NULL GROUP BY step, kind",
        [campaign],
    ):
        steps.setdefault(row["step"], {})[row["kind"]] = row["n"]
    return steps


def never_answered(store: Database, campaign: str) -> list[dict[str, Any]]:
    """Partners the campaign reached who never answered (no reply, unsubscribe or bounce
    verified as theirs), longest waiting first, with whether they sent an auto-reply."""
    return store.query(
        "SELECT p.email, p.name, p.organization, s.state, s.last_step, s.last_sent_at,"
        " s.round, (SELECT min(m.sent_at) FROM messages m WHERE m.campaign = s.campaign"
        "   AND m.partner_id = s.partner_id AND m.round = s.round) AS round_started_at,"
        # IN lists made once, not an EXISTS per partner: inbound has no partner index
        " s.partner_id IN (SELECT i.partner_id FROM inbound i WHERE i.campaign = ?1"
        "   AND i.kind = 'auto_reply' AND i.unverified IS NULL AND i.partner_id IS NOT NULL)"
        " AS auto_replied"
        " FROM sequences s JOIN partners p ON p.id = s.partner_id"
        " WHERE s.campaign = ?1 AND s.last_sent_at IS NOT NULL AND p.status != 'bounced'"
        # each partner once, as their latest round stands (a campaign that repeats)
        " AND s.round = (SELECT max(round) FROM sequences l WHERE l.campaign = s.campaign"
        "   AND l.partner_id = s.partner_id)"
        " AND s.partner_id NOT IN (SELECT i.partner_id FROM inbound i WHERE i.campaign = ?1"
        "   AND i.kind IN ('reply', 'unsubscribe', 'bounce') AND i.unverified IS NULL"
        "   AND i.partner_id IS NOT NULL)"
        " ORDER BY s.last_sent_at, p.email",
        [campaign],
    )


def campaign_replies(store: Database, campaign: str) -> list[dict[str, Any]]:
    """The campaign's replies and auto-replies, oldest first; mail not verified as the
    partner's waits in the review queue and is left out."""
    return store.query(
        "SELECT r.id, r.at, r.partner, r.name, r.organization, r.step, r.kind, r.text,"
        " r.handled, r.from_addr, r.from_name, i.signature"
        " FROM reply_log r JOIN inbound i ON i.id = r.id"
        " WHERE r.campaign = ? AND r.kind IN ('reply', 'auto_reply')"
        " AND r.unverified IS NULL ORDER BY r.at, r.id",
        [campaign],
    )


def sent_times(store: Database, campaign: str) -> Iterator[str]:
    """When each of the campaign's messages went out (stored text)."""
    for row in store.db.conn.execute(
        "SELECT sent_at FROM messages WHERE campaign = ? AND sent_at IS NOT NULL", [campaign]
    ):
        yield row[0]


# --------------------------------------------------------------------------- exports

# What each export reads, and the table whose rows it counts (for the progress bar).
EXPORT_SQL = {
    "events": (
        "SELECT e.id, e.at, p.email AS partner, p.organization, e.campaign, e.step, e.kind,"
        " e.summary, e.message_id, e.detail, p.name, e.inbound_id, p.owner,"
        # the account that sent the message the event is about, else the one of the
        # partner's latest sequence in the campaign (one row per event, however many rounds)
        " coalesce(m.account, (SELECT s.account FROM sequences s WHERE s.campaign = e.campaign"
        "   AND s.partner_id = e.partner_id ORDER BY s.round DESC LIMIT 1)) AS account"
        " FROM events e"
        " LEFT JOIN partners p ON p.id = e.partner_id"
        " LEFT JOIN messages m ON m.id = e.outbound_id"
        " ORDER BY e.at, e.id",
        "events",
    ),
    "replies": (
        "SELECT r.*, r.handled_note AS note, i.signature,"
        " (SELECT p.owner FROM partners p WHERE p.id = i.partner_id) AS owner,"
        " (SELECT m.account FROM messages m WHERE m.id = i.matched_message) AS account,"
        " i.account AS read_by, i.answers, i.asked_help AS asks_help"
        " FROM reply_log r JOIN inbound i ON i.id = r.id"
        " ORDER BY r.at, r.id",
        "inbound",
    ),
    "partners": (
        "SELECT s.*, s.unhandled AS unhandled_replies, p.first_name, p.tags, p.timezone,"
        " p.fields, (SELECT q.account FROM sequences q WHERE q.partner_id = s.id"
        "   ORDER BY q.updated_at DESC LIMIT 1) AS account"
        " FROM partner_status s JOIN partners p ON p.id = s.id ORDER BY s.email",
        "partners",
    ),
}


def export_rows(store: Database, what: str) -> Iterator[dict[str, Any]]:
    """The rows of one export (events, replies, partners) as dicts, streamed."""
    cursor = store.db.conn.execute(EXPORT_SQL[what][0])
    names = [c[0] for c in cursor.description]
    for values in cursor:
        yield dict(zip(names, values, strict=True))


def export_size(store: Database, what: str) -> int:
    """About how many rows an export has (its table's rows)."""
    return int(store.scalar(f"SELECT count(*) FROM {EXPORT_SQL[what][1]}"))


def campaign_answer_rows(store: Database, campaign: str) -> list[dict[str, Any]]:
    """A campaign's replies (verified: the partner's own) with their stored answers, oldest
    first: what `outreach answers` and the report's "What partners said" show."""
    return store.query(
        "SELECT r.id, r.at, r.partner, r.name, r.organization, r.text, i.answers, i.asked_help"
        " FROM reply_log r JOIN inbound i ON i.id = r.id"
        " WHERE r.campaign = ? AND r.kind = 'reply' AND r.unverified IS NULL"
        " ORDER BY r.at, r.id",
        [campaign],
    )


def answered_question_ids(store: Database) -> list[str]:
    """Every question id the stored answers hold (not "other"), in the order replies first
    held them: the replies export's answer columns."""
    rows = store.query(
        "SELECT j.key AS key FROM inbound i, json_each(i.answers) j"
        " WHERE i.answers IS NOT NULL AND json_valid(i.answers) AND json_type(i.answers) = 'object'"
        " AND j.key != 'other' GROUP BY j.key ORDER BY min(i.id), min(j.id)"
    )
    return [r["key"] for r in rows]


# --------------------------------------------------------------------------- the demo


def partner_event_kinds(store: Database) -> list[tuple[str, str, int | None]]:
    """(partner's email, event kind, step) of every event about a partner."""
    return [
        (email, kind, step)
        for email, kind, step in store.db.conn.execute(
            "SELECT p.email, e.kind, e.step FROM events e JOIN partners p ON p.id = e.partner_id"
        )
    ]


# --------------------------------------------------------------------------- owners (issue 19)

#: Partners of one owner (the roster's `owner`, compared like the config's: trimmed, any case).
OWNER_IS = "casefold(trim(p.owner)) = casefold(trim(?))"


def owner_emails(store: Database, owner: str) -> set[str]:
    """The addresses of every partner of `owner`."""
    return {
        str(email)
        for (email,) in store.db.conn.execute(
            f"SELECT p.email FROM partners p WHERE {OWNER_IS}", [owner]
        )
    }


def owner_counts(store: Database, campaign: str) -> list[dict[str, Any]]:
    """Per owner (as the roster writes it, '' for none): partners in the roster, partners the
    campaign reached, partners who replied to it (verified as theirs), and answers waiting
    for a person (reply_log.needs_review, not handled)."""
    return store.query(
        "SELECT trim(p.owner) AS owner, count(*) AS partners,"
        " sum(EXISTS (SELECT 1 FROM sequences s WHERE s.partner_id = p.id AND s.campaign = ?1"
        "   AND s.last_sent_at IS NOT NULL)) AS reached,"
        # IN, not a correlated EXISTS: inbound has no partner index, so the list is made
        # once (0.35 s less on a roster of 3,000, benchmarks/views.py)
        " sum(p.id IN (SELECT i.partner_id FROM inbound i WHERE i.campaign = ?1"
        "   AND i.kind = 'reply' AND i.unverified IS NULL AND i.partner_id IS NOT NULL))"
        " AS replied,"
        " (SELECT count(*) FROM reply_log r JOIN partners q ON q.email = r.partner"
        "   WHERE r.needs_review AND NOT r.handled AND r.campaign = ?1"
        "   AND casefold(trim(q.owner)) = casefold(trim(p.owner))) AS waiting"
        " FROM partners p GROUP BY casefold(trim(p.owner)) ORDER BY casefold(trim(p.owner))",
        [campaign],
    )


def left_campaign(store: Database, campaign: str) -> list[dict[str, Any]]:
    """Partners the campaign wrote to who asked to stop or whose address bounced (today's
    status, with why), by name: the report names them, not only counts them."""
    return store.query(
        "SELECT p.email, p.name, p.organization, p.status, p.status_reason FROM partners p"
        " WHERE p.status IN ('opted_out', 'bounced') AND EXISTS (SELECT 1 FROM messages m"
        "   WHERE m.partner_id = p.id AND m.campaign = ?)"
        " ORDER BY p.status, p.name, p.email",
        [campaign],
    )


def may_still_write(store: Database, campaign: str) -> int:
    """Partners the campaign may still write to: an open round (active, or paused by an
    out-of-office) of a partner who is active."""
    return int(
        store.scalar(
            "SELECT count(DISTINCT s.partner_id) FROM sequences s JOIN partners p"
            " ON p.id = s.partner_id WHERE s.campaign = ? AND s.state IN ('active', 'paused')"
            " AND p.status = 'active'",
            [campaign],
        )
    )
