"""What is due: pure functions of (campaigns, partners, sequence states, now).

The store narrows the candidates with indexed queries (partners who have not started a
campaign, sequences whose last step went out long enough ago); these functions apply every
rule exactly, so they can be tested without a database and without patching time.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from outreach.core.model import (
    ACTIVE,
    OPEN_SEQUENCES,
    Audience,
    Campaign,
    Due,
    Partner,
    SequenceState,
    Step,
)
from outreach.core.rounds import RoundRecord, next_round, project_rounds, round_may_start
from outreach.core.settings import Account
from outreach.core.zones import partner_zone


def _norm(values: Iterable[str]) -> set[str]:
    return {v.strip().casefold() for v in values if v.strip()}


@functools.lru_cache(maxsize=256)
def _wanted(values: tuple[str, ...]) -> frozenset[str]:
    """An audience's values, normalized once, not again for every partner."""
    return frozenset(_norm(values))


def audience_includes(audience: Audience, partner: Partner) -> bool:
    """Within one filter any value matches; across filters all must match."""
    if audience.tags or audience.exclude_tags:
        tags = _norm(partner.tags)
        if audience.exclude_tags and not tags.isdisjoint(_wanted(audience.exclude_tags)):
            return False
        if audience.tags and tags.isdisjoint(_wanted(audience.tags)):
            return False
    for wanted, value in (
        (audience.pathways, partner.pathway),
        (audience.industries, partner.industry),
        (audience.owners, partner.owner),
    ):
        if wanted and value.strip().casefold() not in _wanted(wanted):
            return False
    return True


#: Who a campaign is rendered for (`outreach preview`, `check`, a reload) when no partner
#: is in its audience yet.
SAMPLE_PARTNER = Partner(
    email="sample.partner@example.org",
    name="Sample Partner",
    first_name="Sample",
    organization="Sample Organization",
    industry="Sample Industry",
    pathway="Sample Pathway",
    owner="sample",
    tags=("sample",),
    timezone="America/Chicago",
)


def audience_or_sample(
    audience: Audience, partners: Iterable[Partner], limit: int | None = None
) -> tuple[list[Partner], bool]:
    """The partners in `audience` (at most `limit`), else the sample partner alone; True
    when it is the sample."""
    found = [p for p in partners if audience_includes(audience, p)][:limit]
    return (found, False) if found else ([SAMPLE_PARTNER], True)


def blackout_on(campaign: Campaign, day: date) -> bool:
    return any(b.first <= day <= b.last for b in campaign.blackouts)


def _later(moment: datetime, delta: timedelta) -> datetime | None:
    """`moment + delta`, or None when that is past the end of the calendar (year 9999), in
    its own zone or in UTC: never, rather than an OverflowError."""
    try:
        later = moment + delta
        later.astimezone(UTC)
    except OverflowError:
        return None
    return later


def may_send_at(campaign: Campaign, zone: ZoneInfo, moment: datetime) -> bool:
    """Inside the window, outside blackouts, not before start: in the partner's local time."""
    if campaign.start is not None and moment < campaign.start:
        return False
    try:
        local = moment.astimezone(zone)
    except OverflowError:  # the last hours of the calendar, east of `moment`'s zone
        return False
    window = campaign.window
    if local.weekday() not in window.days or blackout_on(campaign, local.date()):
        return False
    clock = local.time().replace(tzinfo=None)
    return window.start <= clock < window.end


def next_send_time(
    campaign: Campaign, zone: ZoneInfo, earliest: datetime, horizon_days: int = 400
) -> datetime | None:
    """The first moment at or after `earliest` when `campaign` may send to this zone."""
    if campaign.start is not None and earliest < campaign.start:
        earliest = campaign.start
    if may_send_at(campaign, zone, earliest):
        return earliest
    try:
        first_day = earliest.astimezone(zone).date()
    except OverflowError:
        return None
    for offset in range(horizon_days + 1):
        if offset > (date.max - first_day).days:  # the calendar ends (a start in 9999)
            return None
        day = first_day + timedelta(days=offset)
        if day.weekday() not in campaign.window.days or blackout_on(campaign, day):
            continue
        # fold=0 and zoneinfo give the right UTC instant across DST changes
        opening = datetime.combine(day, campaign.window.start, zone)
        closing = datetime.combine(day, campaign.window.end, zone)
        candidate = max(opening, earliest)
        if candidate < closing and may_send_at(campaign, zone, candidate):
            return candidate
    return None


def step_due_at(campaign: Campaign, sequence: SequenceState) -> tuple[Step, datetime] | None:
    """The next step of an open sequence and when it falls due, or None when it is over (or
    would fall past the end of the calendar)."""
    if sequence.state not in OPEN_SEQUENCES or sequence.last_sent_at is None:
        return None
    if sequence.last_step >= len(campaign.steps):
        return None
    step = campaign.steps[sequence.last_step]
    due = _later(sequence.last_sent_at, step.after)
    if due is None:
        return None
    if sequence.paused_until is not None and sequence.paused_until > due:
        due = sequence.paused_until
    return step, due


def sending_account(
    campaign: Campaign,
    partner: Partner,
    sequence: SequenceState | None = None,
    accounts: Collection[str] | None = None,
) -> str | None:
    """The account a message to `partner` goes from. A sequence keeps the account it started
    with: its follow-ups continue the thread from the same address even when the partner's
    owner (or the campaign's account) changed since; the change applies to the next sequence.
    Only an account gone from config.toml (not in `accounts`) gives way to today's choice.
    None: the campaign sends by owner and this partner's owner has no account."""
    kept = sequence.account if sequence is not None else None
    if kept and (accounts is None or kept in accounts):
        return kept
    return campaign.account_for(partner)


def preview_account(
    accounts: Mapping[str, Account], campaign: Campaign, partner: Partner
) -> Account:
    """The account a preview or a check renders `partner`'s messages with: the one that would
    send them, else (an owner without an account, the sample partner) one the campaign uses."""
    name = campaign.account_for(partner)
    if name is None or name not in accounts:
        name = min(campaign.accounts() & set(accounts), default=next(iter(accounts)))
    return accounts[name]


def unrouted_partners(campaign: Campaign, partners: Iterable[Partner]) -> list[Partner]:
    """The campaign's partners whose owner has no account (and no fallback_account covers):
    nothing is sent to them; `outreach check` names them."""
    if not campaign.by_owner or campaign.fallback_account:
        return []
    return [
        p
        for p in partners
        if p.status == ACTIVE
        and audience_includes(campaign.audience, p)
        and campaign.account_for(p) is None
    ]


def _window_by_zone(
    campaign: Campaign, now: datetime, default_timezone: str
) -> Callable[[Partner], bool]:
    """may_send_at(campaign, partner's zone, now), worked out once per time zone: it depends
    on nothing else of the partner, and a roster has a few zones for thousands of partners."""
    found: dict[str, bool] = {}

    def may_send(partner: Partner) -> bool:
        allowed = found.get(partner.timezone)
        if allowed is None:
            zone = partner_zone(partner, default_timezone)
            allowed = found[partner.timezone] = may_send_at(campaign, zone, now)
        return allowed

    return may_send


def due_messages(
    campaigns: Sequence[Campaign],
    not_started: Mapping[str, Sequence[Partner]],
    waiting: Mapping[str, Sequence[tuple[SequenceState, Partner]]],
    now: datetime,
    default_timezone: str,
    accounts: Collection[str] | None = None,
    ended: Mapping[str, Sequence[tuple[SequenceState, Partner]]] | None = None,
) -> list[Due]:
    """Everything due now, oldest first, each with the account that sends it
    (`sending_account`; a partner without one is left out).

    not_started: per campaign, partners with no sequence in it yet (candidates for step 1).
    waiting: per campaign, open sequences with their partners (candidates for a follow-up).
    accounts: the accounts in config.toml (a sequence's own account is kept while it is).
    ended: per campaign that repeats, each partner's latest round when it has ended
    (candidates for the step 1 of a new round, core/rounds.next_round; a new round is a new
    sequence, so it goes from the account the partner's owner has today).
    """
    due: list[Due] = []
    for campaign in campaigns:
        if not campaign.enabled or not campaign.steps:
            continue
        if campaign.start is not None and now < campaign.start:
            continue
        first = campaign.steps[0]
        became_due = campaign.start or now
        may_send = _window_by_zone(campaign, now, default_timezone)
        for partner in not_started.get(campaign.name, ()):
            if partner.status != ACTIVE or not audience_includes(campaign.audience, partner):
                continue
            account = sending_account(campaign, partner, None, accounts)
            if account and may_send(partner):
                due.append(Due(campaign, partner, first, became_due, account))
        for sequence, partner in waiting.get(campaign.name, ()):
            if partner.status != ACTIVE:
                continue
            nxt = step_due_at(campaign, sequence)
            if nxt is None or nxt[1] > now:
                continue
            account = sending_account(campaign, partner, sequence, accounts)
            if account and may_send(partner):
                due.append(
                    Due(campaign, partner, nxt[0], nxt[1], account=account, round=sequence.round)
                )
        for sequence, partner in (ended or {}).get(campaign.name, ()):
            starting = next_round(
                [RoundRecord(sequence.round, sequence.state, sequence.ended_at)],
                partner.status,
                campaign.repeat,
                campaign.until,
            )
            if starting is None or starting.earliest > now:
                continue
            if not round_may_start(now, campaign.until):
                continue
            if not audience_includes(campaign.audience, partner):
                continue
            account = sending_account(campaign, partner, None, accounts)
            if account and may_send(partner):
                due.append(
                    Due(
                        campaign,
                        partner,
                        first,
                        starting.earliest,
                        account=account,
                        round=starting.number,
                    )
                )
    due.sort(key=lambda d: (d.due_at, d.campaign.name, d.partner.email, d.step.number))
    return due


@dataclass(frozen=True)
class Projection:
    campaign: str
    partner: Partner
    step: int
    at: datetime
    account: str = ""  # the account that would send it
    round: int = 1


def project(
    campaign: Campaign,
    partners_not_started: Sequence[Partner],
    open_sequences: Sequence[tuple[SequenceState, Partner]],
    now: datetime,
    until: datetime,
    default_timezone: str,
    accounts: Collection[str] | None = None,
    ended: Sequence[tuple[SequenceState, Partner]] = (),
) -> list[Projection]:
    """Who gets which step when, up to `until`, assuming nobody answers (for `outreach plan`),
    and from which account (`sending_account`; a partner without one is left out): with
    `repeat`, the rounds that follow each one (core/rounds.project_rounds; a new round goes
    from the account the partner's owner has today). `ended`: each partner's latest round
    when it has ended."""
    result: list[Projection] = []

    def follow(
        partner: Partner, round_: int, step_number: int, sent_at: datetime, account: str
    ) -> datetime | None:
        """The round's remaining steps; when its last step is projected, that moment."""
        zone = partner_zone(partner, default_timezone)
        while step_number < len(campaign.steps):
            step = campaign.steps[step_number]
            due = _later(sent_at, step.after)
            moment = None if due is None else next_send_time(campaign, zone, max(due, now))
            if moment is None or moment > until:
                return None
            result.append(
                Projection(
                    campaign.name, partner, step.number, moment, account=account, round=round_
                )
            )
            step_number, sent_at = step.number, moment
        return sent_at

    def repeats(partner: Partner, last_round: int, ended_at: datetime | None) -> None:
        if campaign.repeat is None or ended_at is None:
            return
        account = sending_account(campaign, partner, None, accounts)  # a new sequence's
        if account is None:
            return
        zone = partner_zone(partner, default_timezone)
        for send in project_rounds(
            last_round=last_round,
            ended_at=ended_at,
            partner_status=partner.status,
            steps_after=[s.after for s in campaign.steps],
            repeat=campaign.repeat,
            until=campaign.until,
            now=now,
            horizon=until,
            place=lambda moment: next_send_time(campaign, zone, moment),
        ):
            result.append(
                Projection(
                    campaign.name, partner, send.step, send.at, account=account, round=send.round
                )
            )

    if not campaign.enabled or not campaign.steps:
        return result
    for partner in partners_not_started:
        if partner.status != ACTIVE or not audience_includes(campaign.audience, partner):
            continue
        account = sending_account(campaign, partner, None, accounts)
        if account is None:
            continue
        zone = partner_zone(partner, default_timezone)
        moment = next_send_time(campaign, zone, now)
        if moment is None or moment > until:
            continue
        result.append(Projection(campaign.name, partner, 1, moment, account=account))
        repeats(partner, 1, follow(partner, 1, 1, moment, account))
    for sequence, partner in open_sequences:
        if partner.status != ACTIVE or sequence.state not in OPEN_SEQUENCES:
            continue
        account = sending_account(campaign, partner, sequence, accounts)
        if sequence.last_sent_at is None or account is None:
            continue
        start = sequence.last_sent_at
        if sequence.paused_until and sequence.last_step < len(campaign.steps):
            resumed = _later(sequence.paused_until, -campaign.steps[sequence.last_step].after)
            start = max(start, resumed or start)
        last = follow(partner, sequence.round, sequence.last_step, start, account)
        repeats(partner, sequence.round, last)
    for sequence, partner in ended:
        if audience_includes(campaign.audience, partner):
            repeats(partner, sequence.round, sequence.ended_at)
    result.sort(key=lambda p: (p.at, p.partner.email, p.round, p.step))
    return result
