"""What an inbound message does to its partner's record, applied: one function for the
reader (a message as it arrives) and the review queue (a person's correction), so both
change a record the same way.

The effect itself is decided without I/O (core/inbound/effects.py); here it is written, in
the caller's transaction, with the events that record it.
"""

from __future__ import annotations

from datetime import datetime

from outreach.core.inbound.effects import Effect
from outreach.core.model import OPEN_SEQUENCES, PartnerStatus, SequenceStatus
from outreach.store import Store, iso


def apply_effect(
    store: Store,
    effect: Effect,
    *,
    partner_id: int,
    campaign: str | None,
    inbound_id: int,
    now: datetime,
    soft_bounce_limit: int | None = None,
) -> list[str]:
    """Change the partner's status or the campaign's sequence as `effect` says; returns what
    changed, for a person. A sequence that is no longer open (replied, stopped) is left as
    it is: an auto-reply must not reopen it. `soft_bounce_limit`: soft bounces that make a
    partner bounced (a person's correction never counts one)."""
    if effect.partner_status is not None:
        store.set_partner_status(
            partner_id,
            effect.partner_status,
            effect.summary,
            now,
            event="status",
            campaign=campaign,
            inbound_id=inbound_id,
        )
        return [f"partner marked {effect.partner_status}; every open sequence stopped"]
    if effect.soft_bounce:
        assert soft_bounce_limit is not None
        count = store.count_soft_bounce(partner_id, now)
        if count < soft_bounce_limit:
            return [f"soft bounce {count} of {soft_bounce_limit}"]
        store.set_partner_status(
            partner_id,
            PartnerStatus.BOUNCED,
            f"{count} soft bounces (limit {soft_bounce_limit})",
            now,
            event="status",
            campaign=campaign,
            inbound_id=inbound_id,
        )
        return [f"partner marked {PartnerStatus.BOUNCED} after {count} soft bounces"]
    if effect.sequence_state is None or campaign is None:
        return []
    sequence = store.sequence(campaign, partner_id)
    # an answer to a round whose last step went out unanswered still ends it as answered
    late_answer = (
        sequence is not None
        and sequence.state == SequenceStatus.FINISHED
        and effect.sequence_state == SequenceStatus.REPLIED
    )
    if sequence is None or (sequence.state not in OPEN_SEQUENCES and not late_answer):
        return []
    store.set_sequence_state(
        campaign, partner_id, effect.sequence_state, now, paused_until=effect.paused_until
    )
    if effect.sequence_state == SequenceStatus.PAUSED:
        until = effect.paused_until
        assert until is not None  # a pause always says until when
        store.add_event(
            "paused",
            now,
            partner_id=partner_id,
            campaign=campaign,
            inbound_id=inbound_id,
            summary=effect.summary,
            detail={"until": iso(until)},
        )
        return [f"{campaign}: follow-ups paused until {until.date().isoformat()}"]
    replied = effect.sequence_state == SequenceStatus.REPLIED
    summary = "follow-ups stopped: " + ("the partner replied" if replied else "contact change")
    store.add_event(
        "stopped",
        now,
        partner_id=partner_id,
        campaign=campaign,
        inbound_id=inbound_id,
        summary=summary,
    )
    return [f"{campaign}: {summary}"]
