"""What is due now, and what will be: the store narrows the candidates with indexed
queries (Store.candidates), the pure planner (core/plan.py) applies every rule.

Used by the sender (`find_due`), `outreach run --dry-run`, `outreach plan` and the daily
digest (`projections`).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime

from outreach.core.model import Campaign, Due
from outreach.core.plan import Projection, due_messages, project
from outreach.store import Store


def find_due(
    store: Store,
    campaigns: Sequence[Campaign],
    now: datetime,
    default_tz: str,
    accounts: Collection[str] | None = None,
) -> list[Due]:
    """Everything due now, oldest first, with the account that sends each
    (core.plan.due_messages; `accounts`: those in config.toml)."""
    not_started = {}
    waiting = {}
    ended = {}
    for campaign in campaigns:
        if not campaign.enabled:
            continue
        not_started[campaign.name], waiting[campaign.name] = store.candidates(campaign, now)
        if campaign.repeat is not None:
            ended[campaign.name] = store.ended_rounds(campaign.name)
    return due_messages(campaigns, not_started, waiting, now, default_tz, accounts, ended)


def finish_rounds(store: Store, campaigns: Sequence[Campaign], now: datetime) -> int:
    """Open rounds whose last step went out become `finished` (Store.finish_sequences):
    before planning, so a round that ended may be followed by the next."""
    return sum(
        store.finish_sequences(campaign.name, len(campaign.steps), now)
        for campaign in campaigns
        if campaign.steps
    )


def projections(
    store: Store,
    campaigns: Sequence[Campaign],
    start: datetime,
    until: datetime,
    default_tz: str,
    accounts: Collection[str] | None = None,
) -> list[Projection]:
    """Who gets which step when, from `start` to `until`, assuming nobody answers
    (core.plan.project), in time order."""
    rows: list[Projection] = []
    for campaign in campaigns:
        if not campaign.enabled:
            continue
        not_started, waiting = store.candidates(campaign)
        ended = store.ended_rounds(campaign.name) if campaign.repeat is not None else []
        rows += project(campaign, not_started, waiting, start, until, default_tz, accounts, ended)
    rows.sort(key=lambda r: (r.at, r.campaign, r.partner.email))
    return rows
