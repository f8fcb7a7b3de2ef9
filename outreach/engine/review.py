"""The review queue: partners' answers that need a person, marking them handled, and
correcting a wrong classification (which redoes its effect on the sequence and partner).

The queue is `inbound` rows that need a person (`replies.needs_review`: a human reply, an
auto-reply saying the contact left, mail that could not be read, a message that reuses
another's Message-ID, and unverified mail: a bounce that quotes none of our messages, a
reply from someone who is not the partner) with `handled_at` NULL. Unverified mail changed
nothing: `acknowledge` dismisses it, `reclassify` attributes it to the partner and applies
its kind's effect. Every change is one transaction with its events.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from outreach.core.errors import InputError
from outreach.core.inbound.answers import stored_answers
from outreach.core.inbound.effects import needs_review, reclassified
from outreach.core.model import BOUNCED, OPTED_OUT, InboundKind, SequenceStatus
from outreach.core.zones import partner_zone
from outreach.engine.answers import QuestionSets, recompute_answers
from outreach.engine.effects import apply_effect
from outreach.store import Store, parse_iso, queries

#: What a person may say a message is (anything the classifier says but "error").
KINDS = tuple(kind.value for kind in InboundKind if kind is not InboundKind.ERROR)


@dataclass(frozen=True)
class ReplyRow:
    id: int
    at: datetime
    partner: str | None
    name: str
    organization: str
    campaign: str | None
    step: int | None
    kind: str
    subject: str
    text: str
    contact_change: bool
    handled_at: datetime | None
    note: str | None
    signature: str = ""  # cut from the end of `text` ("-- " block, "Sent from my iPhone")
    from_addr: str | None = None  # who wrote it (the From address), whoever it is matched to
    from_name: str | None = None
    unverified: str | None = None  # why it changed nothing: a person attributes or dismisses
    duplicate_of: int | None = None  # an earlier message with the same Message-ID
    unreadable: tuple[str, ...] = ()  # header values that could not be read, and why
    #: question id -> the partner's answer (None: unanswered), "other"; None: no questions
    answers: dict[str, str | None] | None = None
    asks_help: bool = False  # a question marked `asks` has an answer that is more than a no

    @property
    def sender(self) -> str:
        """The From as a person reads it: `Name <address>`."""
        if not self.from_addr:
            return "(no From address)"
        return f"{self.from_name} <{self.from_addr}>" if self.from_name else self.from_addr

    @property
    def handled(self) -> bool:
        return self.handled_at is not None

    def to_json(self, zone: ZoneInfo) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": self.at.astimezone(zone).isoformat(),
            "partner": self.partner,
            "name": self.name,
            "organization": self.organization,
            "campaign": self.campaign,
            "step": self.step,
            "kind": self.kind,
            "subject": self.subject,
            "text": self.text,
            "contact_change": self.contact_change,
            "handled": self.handled,
            "handled_at": self.handled_at.astimezone(zone).isoformat() if self.handled_at else None,
            "note": self.note,
            "from": self.from_addr,
            "from_name": self.from_name,
            "unverified": self.unverified,
            "duplicate_of": self.duplicate_of,
            "unreadable": list(self.unreadable),
            "signature": self.signature,
            "answers": self.answers,
            "asks_help": self.asks_help,
        }


def load_replies(
    store: Store, *, unhandled: bool = False, owner: str | None = None
) -> list[ReplyRow]:
    """Answers that need a person, newest first (all of them, or only the open ones; only
    about `owner`'s partners); open replies that ask for help come before everything else
    (docs/answers.md)."""
    rows = queries.review_queue(store, unhandled=unhandled, owner=owner)
    found = [
        ReplyRow(
            id=r["id"],
            at=datetime.fromisoformat(r["at"]),
            partner=r["partner"],
            name=r["name"] or "",
            organization=r["organization"] or "",
            campaign=r["campaign"],
            step=r["step"],
            kind=r["kind"],
            subject=r["subject"] or "",
            text=(r["text"] or r["full_text"] or "").strip(),
            contact_change=bool(r["contact_change"]),
            handled_at=parse_iso(r["handled_at"]),
            note=r["handled_note"],
            from_addr=r["from_addr"],
            from_name=r["from_name"],
            unverified=r["unverified"],
            duplicate_of=r["duplicate_of"],
            unreadable=tuple(json.loads(r["unreadable"] or "[]")),
            signature=(r["signature"] or "").strip(),
            answers=stored_answers(r["answers"]),
            asks_help=bool(r["asked_help"]) and not r["unverified"],
        )
        for r in rows
    ]
    return sorted(found, key=lambda row: not (row.asks_help and not row.handled))  # stable


def _needed_review(row: dict[str, Any]) -> bool:
    return needs_review(
        row["kind"], bool(row["contact_change"]), row["unverified"], row["duplicate_of"]
    )


def _inbound(store: Store, inbound_id: int) -> dict[str, Any]:
    row = store.inbound_row(inbound_id)
    if row is None or row["partner_id"] is None:
        raise InputError(f"no reply #{inbound_id}", hint="outreach replies")
    return row


def acknowledge(store: Store, inbound_id: int, note: str | None, now: datetime) -> str:
    """Mark one answer handled, with an optional note; returns what happened, for the user.
    An unverified message is dismissed: it stays as it is, and changes nothing."""
    row = _inbound(store, inbound_id)
    was = parse_iso(row["handled_at"])
    dismissed = bool(row["unverified"])
    with store.write():
        store.mark_handled(inbound_id, note, now)
        store.add_event(
            "acknowledged",
            now,
            partner_id=row["partner_id"],
            campaign=row["campaign"],
            step=row["step"],
            inbound_id=inbound_id,
            summary=f"{row['kind'].replace('_', '-')} #{inbound_id} "
            + ("dismissed: not the partner's, nothing changed" if dismissed else "handled")
            + (f": {note}" if note else ""),
            detail={k: v for k, v in (("note", note), ("dismissed", dismissed)) if v} or None,
        )
    who = row["email"]
    if was is not None and _needed_review(row):
        return f"#{inbound_id} ({who}) was already handled" + ("; note saved" if note else "")
    if dismissed:
        return (
            f"#{inbound_id} ({who}) dismissed: it stays unverified and changes nothing "
            f"(to act on it: outreach replies reclassify {inbound_id} KIND)"
        )
    return f"#{inbound_id} ({who}) marked handled"


def reclassify(
    store: Store,
    inbound_id: int,
    kind: str,
    now: datetime,
    *,
    default_timezone: str,
    auto_reply_pause: timedelta,
    questions: QuestionSets | None = None,
) -> list[str]:
    """Correct the classification of one inbound message and redo its effect.

    First the old kind's effect is undone (a sequence it stopped or paused goes back to
    active; a partner it marked bounced or opted out goes back to active, with the
    sequences that marking stopped), then the new kind's effect is applied as the worker
    would have applied it when the message arrived. Returns what changed, for the user.

    An unverified message (it changed nothing when it arrived) is attributed to its partner
    by this: the new kind's effect is applied, also when the kind stays the same.

    With `questions` (campaign -> its questions), the message's answers are computed again
    for its new kind (only a reply has answers), unless a person corrected them.
    """
    if kind not in KINDS:
        raise InputError(f"unknown kind {kind!r} (use one of: {', '.join(KINDS)})")
    row = _inbound(store, inbound_id)
    old = row["kind"]
    unverified = row["unverified"]
    if old == kind and not unverified:
        raise InputError(f"#{inbound_id} is already classified as {kind}")
    partner_id: int = row["partner_id"]
    campaign: str | None = row["campaign"]
    changes: list[str] = []
    if unverified:
        changes.append(f"attributed to {row['email']} by hand (it was not acted on: {unverified})")
    with store.write():
        if not unverified:
            _undo(store, row, now, changes)
        zone = partner_zone(store.partners_by_id([partner_id])[partner_id], default_timezone)
        received = parse_iso(row["processed_at"]) or now
        review = needs_review(kind, bool(row["contact_change"]), None, row["duplicate_of"])
        note = (
            f"reclassified by hand: {old} -> {kind}"
            if old != kind
            else f"attributed to the partner by hand as {kind}"
        )
        store.set_inbound_kind(
            inbound_id,
            kind,
            handled_at=None if review else (parse_iso(row["handled_at"]) or now),
            reasons=[*json.loads(row["reasons"] or "[]"), note],
            attributed=bool(unverified),
        )
        if questions is not None:
            recompute_answers(store, row, kind, questions)
        back = date.fromisoformat(row["return_date"]) if row["return_date"] else None
        effect = reclassified(
            kind,
            old,
            contact_change=bool(row["contact_change"]),
            return_date=back,
            zone=zone,
            received=received,
            now=now,
            default_pause=auto_reply_pause,
        )
        changes += apply_effect(
            store,
            effect,
            partner_id=partner_id,
            campaign=campaign,
            inbound_id=inbound_id,
            now=now,
        )
        store.add_event(
            "reclassified",
            now,
            partner_id=partner_id,
            campaign=campaign,
            step=row["step"],
            inbound_id=inbound_id,
            summary=f"#{inbound_id} {old} -> {kind}"
            + (f": {'; '.join(changes)}" if changes else ""),
            detail={
                "from": old,
                "to": kind,
                "changes": changes,
                **({"attributed": True} if unverified else {}),
            },
        )
    return changes


def _undo(store: Store, row: dict[str, Any], now: datetime, changes: list[str]) -> None:
    """Reverse what the message's current kind did (only what is still in place)."""
    inbound_id, partner_id, campaign = row["id"], row["partner_id"], row["campaign"]
    stamp = store.last_status_change(inbound_id)
    current = store.partner_status(partner_id)
    if stamp is not None and current in (BOUNCED, OPTED_OUT):
        reopened = store.restore_partner(partner_id, stopped_at=stamp, now=now)
        store.add_event(
            "status",
            now,
            partner_id=partner_id,
            campaign=campaign,
            inbound_id=inbound_id,
            summary=f"back to active (was {current}: #{inbound_id} reclassified)",
            detail={"restored": True},
        )
        changes.append(
            f"partner back to active (was {current})"
            + (f"; {reopened} sequence(s) reopened" if reopened else "")
        )
    if row["kind"] == InboundKind.BOUNCE and row["hard"] == 0:
        store.uncount_soft_bounce(partner_id, now)
        changes.append("one soft bounce fewer")
    if campaign is None:
        return
    sequence = store.sequence(campaign, partner_id)
    if sequence is None:
        return
    done_by_it = store.event_kinds_for(inbound_id, ("stopped", "paused"))
    stopped = (SequenceStatus.REPLIED, SequenceStatus.STOPPED)
    if ("stopped" in done_by_it and sequence.state in stopped) or (
        "paused" in done_by_it and sequence.state == SequenceStatus.PAUSED
    ):
        store.set_sequence_state(campaign, partner_id, SequenceStatus.ACTIVE, now)
        store.add_event(
            "resumed",
            now,
            partner_id=partner_id,
            campaign=campaign,
            inbound_id=inbound_id,
            summary=f"follow-ups resume (#{inbound_id} is not a {row['kind']})",
        )
        changes.append(f"{campaign}: follow-ups resume (was {sequence.state})")
