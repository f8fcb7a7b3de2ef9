"""Check-ins that recur (issue 21, section 1): the pure decisions of outreach/rounds.py.
When a partner's next round starts, who never gets one, the season a round is named after,
the projection `plan --days 365` will show, and what a template sees of the last round."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import jinja2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from outreach.core.model import (
    ACTIVE,
    BOUNCED,
    INACTIVE,
    OPTED_OUT,
    Blackout,
    Campaign,
    Step,
    Window,
)
from outreach.core.plan import next_send_time
from outreach.core.rounds import (
    CALENDAR_END,
    ENDED,
    NextRound,
    ProjectedSend,
    RoundRecord,
    RoundState,
    Season,
    ago,
    last_reply_context,
    next_round,
    next_round_at,
    previous_context,
    project_rounds,
    repeat_problem,
    round_context,
    round_deadline,
    round_ended_at,
    round_label,
    round_of,
    season_of,
)
from outreach.core.template_limits import BoundedEnvironment

CHICAGO = ZoneInfo("America/Chicago")
MADRID = ZoneInfo("Europe/Madrid")
DAYS_120 = timedelta(days=120)
T0 = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)  # Tue Nov 24, 09:00 in Chicago


def rounds(*records: tuple[int, str, datetime | None]) -> list[RoundRecord]:
    return [RoundRecord(number, state, ended) for number, state, ended in records]


# --------------------------------------------------------------------------- when a round ends


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ("replied", "answered"),  # José Núñez answered: the round ended at his answer
        ("finished", "last_sent"),  # every step went out: ended with the last one
        ("active", None),
        ("paused", None),  # María González is out of office: not ended
        ("stopped", None),  # the contact left, or delivery failed: a person decides
    ],
)
def test_a_round_ends_at_the_answer_or_at_its_last_message(state, expected):
    last_sent, answered = T0, T0 + timedelta(days=3)
    got = round_ended_at(state, last_sent_at=last_sent, answered_at=answered)
    assert got == {"answered": answered, "last_sent": last_sent, None: None}[expected]


def test_the_states_that_end_a_round_are_replied_and_finished():
    assert set(ENDED) == {"replied", "finished"}
    assert RoundState.PAUSED not in ENDED and RoundState.STOPPED not in ENDED


# --------------------------------------------------------------------------- the next round


@pytest.mark.parametrize(
    ("history", "status", "repeat", "until", "expected"),
    [
        # José Núñez replied in round 1: round 2 starts 120 days after his answer
        (rounds((1, "replied", T0)), ACTIVE, DAYS_120, None, NextRound(2, T0 + DAYS_120)),
        # María González never answered round 2 (every step sent): round 3
        (
            rounds((1, "replied", T0), (2, "finished", T0 + timedelta(days=150))),
            ACTIVE,
            DAYS_120,
            None,
            NextRound(3, T0 + timedelta(days=270)),
        ),
        # the rounds in any order: the latest counts
        (
            rounds((2, "finished", T0 + timedelta(days=150)), (1, "replied", T0)),
            ACTIVE,
            DAYS_120,
            None,
            NextRound(3, T0 + timedelta(days=270)),
        ),
        # an out-of-office pause is not an end
        (rounds((1, "paused", None)), ACTIVE, DAYS_120, None, None),
        (rounds((1, "active", None)), ACTIVE, DAYS_120, None, None),
        # stopped (contact left, delivery failed): a person decides, not the planner
        (rounds((1, "stopped", T0)), ACTIVE, DAYS_120, None, None),
        # opted out and bounced: never again; inactive: not while inactive
        (rounds((1, "replied", T0)), OPTED_OUT, DAYS_120, None, None),
        (rounds((1, "finished", T0)), BOUNCED, DAYS_120, None, None),
        (rounds((1, "replied", T0)), INACTIVE, DAYS_120, None, None),
        # the campaign does not repeat
        (rounds((1, "replied", T0)), ACTIVE, None, None, None),
        # no round yet: the first is not a repeat
        ([], ACTIVE, DAYS_120, None, None),
        # an ended round with no known end: not guessed
        (rounds((1, "replied", None)), ACTIVE, DAYS_120, None, None),
        # `until`: the day before the next round would start; the very moment it may start
        (rounds((1, "replied", T0)), ACTIVE, DAYS_120, T0 + DAYS_120 - timedelta(seconds=1), None),
        (rounds((1, "replied", T0)), ACTIVE, DAYS_120, T0 + DAYS_120, NextRound(2, T0 + DAYS_120)),
    ],
)
def test_next_round(history, status, repeat, until, expected):
    assert next_round(history, status, repeat, until) == expected


@pytest.mark.parametrize(
    ("ended_at", "repeat", "until", "expected"),
    [
        (T0, DAYS_120, None, T0 + DAYS_120),
        (T0, DAYS_120, T0 + timedelta(days=119), None),
        # past the end of the calendar is never, not an OverflowError
        (datetime(9999, 11, 1, tzinfo=UTC), DAYS_120, None, None),
        (datetime.max.replace(tzinfo=UTC), timedelta(days=1), None, None),
        (datetime(9999, 12, 29, 12, tzinfo=CHICAGO), timedelta(days=1), None, None),
        # the last moment outreach stores is still a moment
        (CALENDAR_END - timedelta(days=1), timedelta(days=1), None, CALENDAR_END),
    ],
)
def test_next_round_at(ended_at, repeat, until, expected):
    assert next_round_at(ended_at, repeat, until) == expected


@pytest.mark.parametrize(
    ("until", "zone", "expected"),
    [
        # a date: rounds may start until the end of that day, in the coordinator's zone
        (date(2027, 6, 30), CHICAGO, datetime(2027, 6, 30, 23, 59, 59, 999999, tzinfo=CHICAGO)),
        (datetime(2027, 6, 30, 12, 0), CHICAGO, datetime(2027, 6, 30, 12, tzinfo=CHICAGO)),
        (datetime(2027, 6, 30, 12, 0, tzinfo=UTC), CHICAGO, datetime(2027, 6, 30, 12, tzinfo=UTC)),
        (date(9999, 12, 31), CHICAGO, CALENDAR_END),
    ],
)
def test_round_deadline(until, zone, expected):
    assert round_deadline(until, zone) == expected


@pytest.mark.parametrize(
    ("repeat", "problem"),
    [
        (timedelta(days=120), False),
        (timedelta(days=1), False),
        (timedelta(hours=23), True),
        (timedelta(0), True),
    ],
)
def test_repeat_problem(repeat, problem):
    assert (repeat_problem(repeat) is not None) is problem


# --------------------------------------------------------------------------- numbering, seasons


STARTS = [
    datetime(2026, 9, 8, 14, tzinfo=UTC),
    datetime(2027, 1, 12, 15, tzinfo=UTC),
    datetime(2027, 5, 18, 14, tzinfo=UTC),
]


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        (datetime(2026, 9, 1, tzinfo=UTC), 1),  # before any start: the first round
        (STARTS[0], 1),
        (STARTS[1] - timedelta(seconds=1), 1),
        (STARTS[1], 2),
        (datetime(2027, 3, 1, tzinfo=UTC), 2),
        (datetime(2027, 12, 1, tzinfo=UTC), 3),
    ],
)
def test_round_of(moment, expected):
    assert round_of(moment, STARTS) == expected
    assert round_of(moment, []) == 1


@pytest.mark.parametrize(
    ("month", "season"),
    [
        (8, "fall"),
        (9, "fall"),
        (10, "fall"),
        (11, "fall"),
        (12, "winter"),
        (1, "winter"),
        (2, "winter"),
        (3, "spring"),
        (4, "spring"),
        (5, "spring"),
        (6, "summer"),
        (7, "summer"),
    ],
)
def test_the_seasons_of_a_school_year(month, season):
    assert season_of(date(2027, month, 15)) == Season(season)


@pytest.mark.parametrize(
    ("number", "started_at", "zone", "label"),
    [
        (1, datetime(2026, 9, 8, 14, tzinfo=UTC), CHICAGO, "round 1, fall"),
        (2, datetime(2027, 3, 16, 14, tzinfo=UTC), CHICAGO, "round 2, spring"),
        # Mar 1 at 03:00 UTC is still Feb 28 in Chicago: the coordinator's calendar decides
        (3, datetime(2027, 3, 1, 3, tzinfo=UTC), CHICAGO, "round 3, winter"),
        (3, datetime(2027, 3, 1, 3, tzinfo=UTC), MADRID, "round 3, spring"),
    ],
)
def test_round_label(number, started_at, zone, label):
    assert round_label(number, started_at, zone) == label


# --------------------------------------------------------------------------- projection


def campaign(**kwargs) -> Campaign:
    defaults = dict(
        name="checkin",
        source=Path("checkin.toml"),
        account="default",
        steps=(
            Step(1, "checkin", "Check-in", timedelta(0), thread=False),
            Step(2, "followup", None, timedelta(days=7)),
            Step(3, "last_call", None, timedelta(days=10)),
        ),
        window=Window(frozenset(range(4)), time(8, 30), time(15, 30)),  # Mon-Thu
        blackouts=(
            Blackout(date(2026, 12, 21), date(2027, 1, 1), "Winter break"),
            Blackout(date(2027, 3, 15), date(2027, 3, 19), "Spring break"),
        ),
    )
    defaults.update(kwargs)
    return Campaign(**defaults)  # type: ignore[arg-type]


def project_a_year(
    c: Campaign,
    ended_at: datetime,
    *,
    until: datetime | None = None,
    status: str = ACTIVE,
    now: datetime = T0,
    days: int = 365,
) -> list[ProjectedSend]:
    return project_rounds(
        last_round=1,
        ended_at=ended_at,
        partner_status=status,
        steps_after=[s.after for s in c.steps],
        repeat=DAYS_120,
        until=until,
        now=now,
        horizon=now + timedelta(days=days),
        place=lambda t: next_send_time(c, CHICAGO, t),
    )


def test_a_year_of_rounds_in_the_window_and_outside_blackouts():
    c = campaign()
    # José Núñez answered round 1 on Tue Nov 24 at 09:00 CST: round 2 is due 120 days
    # later, Wed Mar 24 at 15:00 UTC, which is 10:00 CDT (summer time began Mar 14)
    sends = project_a_year(c, T0)
    local = [(s.round, s.step, s.at.astimezone(CHICAGO)) for s in sends]
    assert [(r, s) for r, s, _ in local] == [(2, 1), (2, 2), (2, 3), (3, 1), (3, 2), (3, 3)]
    assert local[0][2] == datetime(2027, 3, 24, 10, 0, tzinfo=CHICAGO)
    assert local[1][2] == datetime(2027, 3, 31, 10, 0, tzinfo=CHICAGO)
    # +10 days is Sat Apr 10, outside Mon-Thu: Mon Apr 12 when the window opens
    assert local[2][2] == datetime(2027, 4, 12, 8, 30, tzinfo=CHICAGO)
    # round 3: 120 days after round 2's last message (nobody answers in a projection)
    assert local[3][2] == local[2][2] + DAYS_120 == datetime(2027, 8, 10, 8, 30, tzinfo=CHICAGO)
    # +7d Tue Aug 17; +10d is Fri Aug 27: Mon Aug 30
    assert local[4][2] == datetime(2027, 8, 17, 8, 30, tzinfo=CHICAGO)
    assert local[5][2] == datetime(2027, 8, 30, 8, 30, tzinfo=CHICAGO)
    for send in sends:
        day = send.at.astimezone(CHICAGO)
        assert day.weekday() < 4 and time(8, 30) <= day.time() < time(15, 30)
        assert not any(b.first <= day.date() <= b.last for b in c.blackouts)


def test_a_round_due_in_a_blackout_waits_for_its_end():
    c = campaign()
    # ended so that round 2 falls due Mon Dec 21 (winter break): it starts Mon Jan 4
    ended = datetime(2026, 12, 21, 15, tzinfo=UTC) - DAYS_120
    first = project_a_year(c, ended, now=ended)[0]
    assert first.at.astimezone(CHICAGO) == datetime(2027, 1, 4, 8, 30, tzinfo=CHICAGO)


def test_until_ends_the_rounds_but_not_a_round_already_started():
    c = campaign()
    until = round_deadline(date(2027, 6, 30), CHICAGO)
    sends = project_a_year(c, T0, until=until)
    assert {s.round for s in sends} == {2}  # round 3 would start in August
    # a round that starts the day of `until` still sends its follow-ups after it
    start_day = datetime(2027, 3, 24, tzinfo=CHICAGO)
    sends = project_a_year(c, T0, until=round_deadline(start_day.date(), CHICAGO))
    assert [(s.round, s.step) for s in sends] == [(2, 1), (2, 2), (2, 3)]
    assert sends[-1].at > round_deadline(start_day.date(), CHICAGO)
    # due Thu Mar 25 at 10:00 CDT in a Mon-Wed window: placed on Mon Mar 29, past `until`
    mon_to_wed = campaign(window=Window(frozenset(range(3)), time(8, 30), time(15, 30)))
    ended = datetime(2027, 3, 25, 15, tzinfo=UTC) - DAYS_120
    until = round_deadline(date(2027, 3, 26), CHICAGO)
    assert next_round_at(ended, DAYS_120, until) is not None  # due before `until`
    assert project_a_year(mon_to_wed, ended, until=until, now=ended) == []


def test_a_round_that_would_have_started_while_the_worker_was_off_starts_now():
    c = campaign()
    now = T0 + timedelta(days=200)  # round 2 fell due 80 days ago
    first = project_a_year(c, T0, now=now)[0]
    assert first.round == 2 and first.at >= now
    assert first.at == next_send_time(c, CHICAGO, now)


def test_the_horizon_cuts_a_round_short():
    sends = project_a_year(campaign(), T0, days=125)  # round 2 starts on day 119
    assert [(s.round, s.step) for s in sends] == [(2, 1)]


@pytest.mark.parametrize("status", [OPTED_OUT, BOUNCED, INACTIVE])
def test_no_projected_round_for_a_partner_who_is_not_active(status):
    assert project_a_year(campaign(), T0, status=status) == []


def test_a_projection_refuses_a_repeat_under_a_day():
    with pytest.raises(ValueError):
        project_rounds(
            last_round=1,
            ended_at=T0,
            partner_status=ACTIVE,
            steps_after=[timedelta(0)],
            repeat=timedelta(0),
            until=None,
            now=T0,
            horizon=T0 + timedelta(days=1),
            place=lambda t: t,
        )


def test_a_projection_near_the_end_of_the_calendar_stops_quietly():
    end = datetime(9999, 10, 1, tzinfo=UTC)
    sends = project_rounds(
        last_round=4,
        ended_at=end,
        partner_status=ACTIVE,
        steps_after=[timedelta(0), timedelta(days=7)],
        repeat=DAYS_120,
        until=None,
        now=end,
        horizon=datetime.max.replace(tzinfo=UTC),
        place=lambda t: t,
    )
    assert sends == []


# --------------------------------------------------------------------------- properties

moments = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(9999, 12, 31, 23), timezones=st.just(UTC)
)
repeats = st.timedeltas(min_value=timedelta(days=1), max_value=timedelta(days=36525))
states = st.sampled_from([s.value for s in RoundState])
statuses = st.sampled_from([ACTIVE, BOUNCED, OPTED_OUT, INACTIVE])


@given(ended=moments, repeat=repeats, until=st.none() | moments)
def test_property_a_round_never_starts_early_nor_after_until(ended, repeat, until):
    start = next_round_at(ended, repeat, until)
    if start is not None:
        assert start >= ended + repeat
        assert until is None or start <= until
        assert start <= CALENDAR_END


@given(
    history=st.lists(st.tuples(states, st.none() | moments), min_size=1, max_size=4),
    status=statuses,
    repeat=repeats,
    until=st.none() | moments,
)
def test_property_who_gets_a_next_round(history, status, repeat, until):
    records = [RoundRecord(n, state, ended) for n, (state, ended) in enumerate(history, 1)]
    got = next_round(records, status, repeat, until)
    latest = records[-1]
    if status in (OPTED_OUT, BOUNCED) or latest.state == "paused":
        assert got is None  # opted out or bounced never again; paused is not ended
    if got is not None:
        assert status == ACTIVE and latest.state in ENDED and latest.ended_at is not None
        assert got.number == latest.number + 1
        assert got.earliest >= latest.ended_at + repeat
        assert until is None or got.earliest <= until


@st.composite
def places(draw: st.DrawFn):
    """A planner's window, drawn: each call moves a moment to the next allowed hour."""
    hours = draw(st.sets(st.integers(0, 23), min_size=1, max_size=24))
    days = draw(st.sets(st.integers(0, 6), min_size=1, max_size=7))

    def place(moment: datetime) -> datetime | None:
        candidate = moment
        for _ in range(24 * 8):
            if candidate.weekday() in days and candidate.hour in hours:
                return candidate
            try:
                candidate = (candidate + timedelta(hours=1)).replace(
                    minute=0, second=0, microsecond=0
                )
            except OverflowError:
                return None
        return None

    return place


@given(
    ended=st.datetimes(
        min_value=datetime(2020, 1, 1), max_value=datetime(2040, 1, 1), timezones=st.just(UTC)
    ),
    repeat=st.timedeltas(min_value=timedelta(days=1), max_value=timedelta(days=400)),
    delays=st.lists(
        st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=30)), min_size=1, max_size=4
    ),
    until_after=st.none() | st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=900)),
    status=statuses,
    place=places(),
)
def test_property_projected_rounds(ended, repeat, delays, until_after, status, place):
    until = None if until_after is None else ended + until_after
    now = ended
    horizon = now + timedelta(days=365)
    sends = project_rounds(
        last_round=1,
        ended_at=ended,
        partner_status=status,
        steps_after=delays,
        repeat=repeat,
        until=until,
        now=now,
        horizon=horizon,
        place=place,
    )
    if status != ACTIVE:
        assert sends == []
        return
    end = ended
    expected_round, expected_step = 2, 1
    for send in sends:
        if send.step == 1:
            assert send.round == expected_round
            assert send.at >= end + repeat  # never before the previous end + repeat
            assert until is None or send.at <= until  # never after `until`
        else:
            assert (send.round, send.step) == (expected_round - 1, expected_step)
            assert send.at >= end + delays[send.step - 1]
        assert send.at <= horizon
        end = send.at
        if send.step == len(delays):
            expected_round, expected_step = send.round + 1, 1
        else:
            expected_round, expected_step = send.round + 1, send.step + 1


# --------------------------------------------------------------------------- templates


@pytest.mark.parametrize(
    ("days", "words"),
    [
        (0, "today"),
        (1, "yesterday"),
        (3, "3 days ago"),
        (7, "a week ago"),
        (13, "a week ago"),
        (14, "2 weeks ago"),
        (20, "2 weeks ago"),
        (21, "3 weeks ago"),
        (55, "7 weeks ago"),
        (56, "2 months ago"),
        (120, "4 months ago"),
        (364, "12 months ago"),
        (365, "a year ago"),
        (800, "2 years ago"),
    ],
)
def test_ago(days, words):
    assert ago(days) == words


def test_previous_counts_calendar_days_in_the_partners_zone():
    # sent Mon Nov 23 at 23:30 in Chicago (Tue 05:30 UTC); now Tue Nov 24 at 08:00 there
    sent = datetime(2026, 11, 24, 5, 30, tzinfo=UTC)
    now = datetime(2026, 11, 24, 14, 0, tzinfo=UTC)
    assert previous_context(sent, CHICAGO, now) == {
        "sent_at": date(2026, 11, 23),
        "days_ago": 1,
        "ago": "yesterday",
    }
    # in Madrid both moments are on Tue Nov 24
    assert previous_context(sent, MADRID, now)["days_ago"] == 0


def test_last_reply_context():
    words = "¡Hola! Podemos recibir dos estudiantes en primavera.\nJosé Núñez"
    at = datetime(2026, 10, 6, 15, tzinfo=UTC)
    context = last_reply_context(words, at, CHICAGO, datetime(2027, 2, 2, 15, tzinfo=UTC))
    assert context == {
        "text": words,
        "at": date(2026, 10, 6),
        "days_ago": 119,
        "ago": "4 months ago",
        "season": "fall",
    }


@pytest.mark.parametrize(
    ("number", "last_reply", "previous", "expected"),
    [
        (1, None, None, "round 1. Hello José Núñez."),
        (
            2,
            ("Dos estudiantes, por favor.", datetime(2026, 10, 6, 15, tzinfo=UTC)),
            datetime(2026, 10, 1, 15, tzinfo=UTC),
            "round 2. Hello José Núñez. In the fall (October 6) you mentioned: Dos estudiantes,"
            " por favor. My last note was 4 months ago.",
        ),
        (
            3,
            None,
            datetime(2027, 1, 26, 15, tzinfo=UTC),
            "round 3. Hello José Núñez. My last note was a week ago.",
        ),
    ],
)
def test_a_template_sees_the_round_the_last_reply_and_the_previous_message(
    number, last_reply, previous, expected
):
    """Rendered as outreach renders: sandboxed, StrictUndefined (a missing key fails)."""
    env = BoundedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False)
    template = env.from_string(
        "round {{ round }}. Hello {{ partner }}."
        "{% if last_reply %} In the {{ last_reply.season }}"
        " ({{ last_reply.at.strftime('%B') }} {{ last_reply.at.day }})"
        " you mentioned: {{ last_reply.text }}{% endif %}"
        "{% if previous %} My last note was {{ previous.ago }}.{% endif %}"
    )
    context = round_context(
        number,
        last_reply=last_reply,
        previous_sent_at=previous,
        zone=CHICAGO,
        now=datetime(2027, 2, 2, 15, tzinfo=UTC),
    )
    assert template.render(partner="José Núñez", **context) == expected
