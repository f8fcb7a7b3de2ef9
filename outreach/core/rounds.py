"""Check-ins that recur (issue 21): a campaign with `repeat = "120d"` (and optionally
`until = 2027-06-30`) starts a new round of its steps for a partner that long after the
partner's previous round ended.

Pure decisions only, no I/O; `now` and time zones are passed in. These functions give the
earliest moment a round may start; the planner places it in the campaign's window and
outside its blackouts (`plan.next_send_time`), which nothing here knows about.

The rules:
- A round has ended when the partner answered (`replied`, at the answer) or when its last
  step went out without an answer (`finished`, at that send). Nothing else ends a round: a
  round paused by an out-of-office is still open, and one `stopped` (the contact has left,
  delivery failed for good, the partner opted out or bounced) waits for a person.
- The next round may start `repeat` after the end, never after `until` (a round that has
  started still sends its follow-ups after `until`: a conversation is not cut in the middle).
- Only an active partner gets a new round: an opted-out or bounced partner is never
  enrolled again (an inactive one only once made active again).
- A moment past the end of the calendar (year 9999) is "never", as everywhere in outreach.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from outreach.core.model import ACTIVE, BOUNCED, OPTED_OUT

#: The latest moment outreach stores (replies.LAST_MOMENT): a day before the calendar ends,
#: so that any time zone can still show it. A round that would start later never starts.
CALENDAR_END = datetime(9999, 12, 30, tzinfo=UTC)

#: The shortest `repeat`: a new round less than a day after the last one is a mistake
#: (`"0s"` would start a round again at every wake-up).
MIN_REPEAT = timedelta(days=1)

#: No partner gets more rounds than this from one projection (a guard, never reached with a
#: repeat of at least a day over `plan --days`).
MAX_PROJECTED_ROUNDS = 1000


class RoundState(StrEnum):
    """A round's state: the `state` of its row in `sequences` (plus `finished`)."""

    ACTIVE = "active"
    PAUSED = "paused"  # an out-of-office: still open, not ended
    REPLIED = "replied"  # the partner answered: ended
    FINISHED = "finished"  # every step went out without an answer: ended
    STOPPED = "stopped"  # the contact left, delivery failed, opted out or bounced


#: The states after which a new round may follow.
ENDED = frozenset({RoundState.REPLIED, RoundState.FINISHED})
#: The partner statuses that are never enrolled again.
NEVER_AGAIN = frozenset({BOUNCED, OPTED_OUT})


class Season(StrEnum):
    FALL = "fall"
    WINTER = "winter"
    SPRING = "spring"
    SUMMER = "summer"


#: The seasons of a school year in the northern hemisphere, by month: the year starts in
#: August with the fall term (Aug-Nov), winter holds the winter break (Dec-Feb), spring is
#: Mar-May and summer the break of Jun-Jul. A round is named after the season of its first
#: message ("round 2, spring").
SCHOOL_YEAR_NORTH: Mapping[int, Season] = {
    **dict.fromkeys((8, 9, 10, 11), Season.FALL),
    **dict.fromkeys((12, 1, 2), Season.WINTER),
    **dict.fromkeys((3, 4, 5), Season.SPRING),
    **dict.fromkeys((6, 7), Season.SUMMER),
}


# ----------------------------------------------------------------------------- settings


def repeat_problem(repeat: timedelta) -> str | None:
    """What is wrong with a campaign's `repeat`, for the config reader (None when fine)."""
    if repeat < MIN_REPEAT:
        return "must be at least 1d (a new round starts that long after the previous one ends)"
    return None


def round_deadline(until: date | datetime, zone: ZoneInfo) -> datetime:
    """The last moment a round may start, from a campaign's `until`: the end of that day in
    `zone` (the coordinator's) for a date, the moment itself for a date and time (in `zone`
    when it has no offset). Never later than CALENDAR_END."""
    if isinstance(until, datetime):
        moment = until if until.tzinfo else until.replace(tzinfo=zone)
    else:
        moment = datetime.combine(until, time.max, zone)
    return min(moment, CALENDAR_END)


# ----------------------------------------------------------------------------- rounds


@dataclass(frozen=True)
class RoundRecord:
    """One round of a campaign for one partner, as the store knows it."""

    number: int  # 1 for the first sequence, 2 for the first repeat, ...
    state: str  # a RoundState value
    ended_at: datetime | None = None  # see round_ended_at; None while the round is open


@dataclass(frozen=True)
class NextRound:
    number: int
    earliest: datetime  # not before: the planner places it in the window


def round_ended_at(
    state: str, *, last_sent_at: datetime | None, answered_at: datetime | None
) -> datetime | None:
    """When a round ended: at the partner's answer for `replied`, at its last message for
    `finished`; None for a round that has not ended (open, paused or stopped)."""
    if state == RoundState.REPLIED:
        return answered_at
    if state == RoundState.FINISHED:
        return last_sent_at
    return None


def next_round_at(
    ended_at: datetime, repeat: timedelta, until: datetime | None = None
) -> datetime | None:
    """The earliest moment the next round may start: `repeat` after `ended_at`; None when
    that is after `until` or past the end of the calendar."""
    try:
        earliest = ended_at + repeat
        earliest.astimezone(UTC)  # representable in UTC, as the planner compares in UTC
    except OverflowError:
        return None
    return earliest if round_may_start(earliest, until) else None


def round_may_start(moment: datetime, until: datetime | None) -> bool:
    """Whether a round may start at `moment` (after placing it in the window, ask again: a
    window may push it past `until`)."""
    return moment <= CALENDAR_END and (until is None or moment <= until)


def next_round(
    history: Sequence[RoundRecord],
    partner_status: str,
    repeat: timedelta | None,
    until: datetime | None = None,
) -> NextRound | None:
    """The partner's next round of a campaign, from the rounds it had: None when the
    campaign does not repeat, the partner is not active (opted out and bounced partners
    never again), the latest round has not ended, or the next would start after `until`.

    The first round is not a repeat: the planner starts it for partners with no sequence.
    """
    if repeat is None or not history or partner_status != ACTIVE:
        return None
    latest = max(history, key=lambda r: r.number)
    if latest.state not in ENDED or latest.ended_at is None:
        return None
    earliest = next_round_at(latest.ended_at, repeat, until)
    if earliest is None:
        return None
    return NextRound(latest.number + 1, earliest)


def round_of(moment: datetime, starts: Sequence[datetime]) -> int:
    """The round a moment belongs to, from the start of each round (oldest first): the
    last round started at or before it; round 1 before any start."""
    return max(1, bisect.bisect_right(starts, moment))


def season_of(day: date, by_month: Mapping[int, Season] = SCHOOL_YEAR_NORTH) -> Season:
    return by_month[day.month]


def round_label(
    number: int,
    started_at: datetime,
    zone: ZoneInfo,
    by_month: Mapping[int, Season] = SCHOOL_YEAR_NORTH,
) -> str:
    """The round and the season of its first message in `zone`: "round 2, spring"."""
    return f"round {number}, {season_of(_local_date(started_at, zone), by_month)}"


# ----------------------------------------------------------------------------- projection


@dataclass(frozen=True)
class ProjectedSend:
    round: int
    step: int
    at: datetime


def project_rounds(
    *,
    last_round: int,
    ended_at: datetime,
    partner_status: str,
    steps_after: Sequence[timedelta],
    repeat: timedelta,
    until: datetime | None,
    now: datetime,
    horizon: datetime,
    place: Callable[[datetime], datetime | None],
) -> list[ProjectedSend]:
    """The rounds after `last_round`, step by step, up to `horizon`, assuming nobody
    answers (each round then ends with its last step): for `outreach plan --days 365`.

    ended_at: when `last_round` ended, or for a round still open, when the planner
    projects its last step to go out. steps_after: each step's `after`, in order (the
    first is not used: a round starts with its first step). place: the planner's window
    and blackouts for this partner (`lambda t: next_send_time(campaign, zone, t)`); it
    gives the first moment at or after `t` when a message may go out, or None.
    """
    if repeat_problem(repeat) is not None:
        raise ValueError(f"repeat {repeat} is shorter than {MIN_REPEAT}")
    if partner_status != ACTIVE or not steps_after:
        return []
    sends: list[ProjectedSend] = []
    number, end = last_round, ended_at
    for _ in range(MAX_PROJECTED_ROUNDS):
        earliest = next_round_at(end, repeat, until)
        start = None if earliest is None else _placed(place, max(earliest, now))
        if start is None or start > horizon or not round_may_start(start, until):
            break
        number += 1
        sends.append(ProjectedSend(number, 1, start))
        end = start
        for step, after in enumerate(steps_after[1:], start=2):
            due = _later(end, after)
            moment = None if due is None else _placed(place, due)
            if moment is None or moment > horizon:
                return sends
            sends.append(ProjectedSend(number, step, moment))
            end = moment
    return sends


def _placed(place: Callable[[datetime], datetime | None], earliest: datetime) -> datetime | None:
    moment = place(earliest)
    return None if moment is None else max(moment, earliest)  # never earlier than asked


def _later(moment: datetime, delta: timedelta) -> datetime | None:
    try:
        later = moment + delta
        later.astimezone(UTC)
    except OverflowError:
        return None
    return later if later <= CALENDAR_END else None


# ----------------------------------------------------------------------------- templates


def round_context(
    number: int,
    *,
    last_reply: tuple[str, datetime] | None,
    previous_sent_at: datetime | None,
    zone: ZoneInfo,
    now: datetime,
) -> dict[str, Any]:
    """What a template sees of the rounds: `round` (1, 2, ...), `last_reply` (the
    partner's latest answer, in any round, or None) and `previous` (our previous message to
    the partner in this campaign, or None before the first). `zone` is the partner's.

    Both are None when there is nothing to tell, so a template writes
    `{% if last_reply %}In the {{ last_reply.season }} you mentioned ...{% endif %}`.
    """
    return {
        "round": number,
        "last_reply": None
        if last_reply is None
        else last_reply_context(last_reply[0], last_reply[1], zone, now),
        "previous": None
        if previous_sent_at is None
        else previous_context(previous_sent_at, zone, now),
    }


def last_reply_context(text: str, at: datetime, zone: ZoneInfo, now: datetime) -> dict[str, Any]:
    """`last_reply`: `text` (the partner's words), `at` (the day, a date: prints as
    2026-11-24, `at.strftime(...)` for other forms), `days_ago`, `ago` ("3 weeks ago") and
    `season` ("fall")."""
    day = _local_date(at, zone)
    days = _days_between(day, _local_date(now, zone))
    return {
        "text": text,
        "at": day,
        "days_ago": days,
        "ago": ago(days),
        "season": str(season_of(day)),
    }


def previous_context(sent_at: datetime, zone: ZoneInfo, now: datetime) -> dict[str, Any]:
    """`previous`: `sent_at` (the day our previous message went out, a date), `days_ago`
    and `ago` ("last week" is only true a week later: "Just following up on the note I
    sent you {{ previous.ago }}")."""
    day = _local_date(sent_at, zone)
    days = _days_between(day, _local_date(now, zone))
    return {"sent_at": day, "days_ago": days, "ago": ago(days)}


def ago(days: int) -> str:
    """How long ago, in calendar days, as a person says it in English: "today",
    "yesterday", "3 days ago", "a week ago", "2 weeks ago", "a month ago", "4 months ago",
    "a year ago", "2 years ago"."""
    if days <= 0:
        return "today"
    if days == 1:
        return "yesterday"
    if days < 7:
        return f"{days} days ago"
    if days < 14:
        return "a week ago"
    if days < 56:
        return f"{days // 7} weeks ago"
    if days < 365:
        months = round(days / 30.44)
        return "a month ago" if months <= 1 else f"{months} months ago"
    years = days // 365
    return "a year ago" if years == 1 else f"{years} years ago"


def _local_date(moment: datetime, zone: ZoneInfo) -> date:
    try:
        return moment.astimezone(zone).date()
    except OverflowError:  # the last hours of the calendar, east of UTC
        return moment.date()


def _days_between(earlier: date, later: date) -> int:
    return max(0, later.toordinal() - earlier.toordinal())
