"""The pure planner: windows in the partner's time zone (DST-correct), blackouts, start,
follow-up delays, and the invariants that keep a partner from getting a step twice."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from outreach.core.model import Audience, Blackout, Campaign, Partner, SequenceState, Step, Window
from outreach.core.plan import audience_includes, due_messages, may_send_at, next_send_time, project
from outreach.core.zones import partner_zone
from outreach.engine.planning import find_due
from outreach.store import Store

CHICAGO = ZoneInfo("America/Chicago")


def campaign(**kwargs) -> Campaign:
    defaults = dict(
        name="checkin",
        source=Path("checkin.toml"),
        account="default",
        steps=(
            Step(1, "hello", "Hi", timedelta(0), thread=False),
            Step(2, "nudge", None, timedelta(days=7)),
            Step(3, "nudge", None, timedelta(days=10)),
        ),
        window=Window(frozenset(range(5)), time(9), time(16)),
    )
    defaults.update(kwargs)
    return Campaign(**defaults)  # type: ignore[arg-type]


def partner(i: int = 1, **kwargs) -> Partner:
    return Partner(**{"email": f"p{i}@x.test", "id": i, "timezone": "America/Chicago", **kwargs})


def test_window_is_in_the_partners_own_time_zone():
    c = campaign()
    tuesday_15_utc = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)  # 09:00 Chicago, 07:00 LA
    assert may_send_at(c, CHICAGO, tuesday_15_utc)
    assert not may_send_at(c, ZoneInfo("America/Los_Angeles"), tuesday_15_utc)
    assert not may_send_at(c, CHICAGO, datetime(2026, 11, 24, 22, 0, tzinfo=UTC))  # 16:00
    assert not may_send_at(c, CHICAGO, datetime(2026, 11, 28, 16, 0, tzinfo=UTC))  # Saturday


def test_window_follows_daylight_saving_time():
    c = campaign()
    # 09:00 in Chicago is 15:00 UTC in winter (CST) and 14:00 UTC in summer (CDT)
    assert may_send_at(c, CHICAGO, datetime(2026, 3, 9, 14, 0, tzinfo=UTC))  # Mon after DST
    assert not may_send_at(c, CHICAGO, datetime(2026, 3, 6, 14, 0, tzinfo=UTC))  # Fri before
    friday = datetime(2026, 3, 6, 22, 30, tzinfo=UTC)  # after hours Friday before the change
    assert next_send_time(c, CHICAGO, friday) == datetime(2026, 3, 9, 9, 0, tzinfo=CHICAGO)
    assert next_send_time(c, CHICAGO, friday) == datetime(2026, 3, 9, 14, 0, tzinfo=UTC)


def test_blackout_and_start():
    c = campaign(
        blackouts=(Blackout(date(2026, 12, 21), date(2027, 1, 1), "Winter break"),),
        start=datetime(2026, 12, 1, tzinfo=CHICAGO),
    )
    assert not may_send_at(c, CHICAGO, datetime(2026, 11, 30, 16, 0, tzinfo=UTC))  # before start
    assert may_send_at(c, CHICAGO, datetime(2026, 12, 1, 16, 0, tzinfo=UTC))
    assert not may_send_at(c, CHICAGO, datetime(2026, 12, 22, 16, 0, tzinfo=UTC))
    after_break = next_send_time(c, CHICAGO, datetime(2026, 12, 21, 16, 0, tzinfo=UTC))
    assert after_break == datetime(2027, 1, 4, 9, 0, tzinfo=CHICAGO)  # Fri 1 Jan is blacked out


def test_audience_filters():
    a = Audience(tags=("advisory",), pathways=("Health Science", "IT"))
    assert audience_includes(a, partner(tags=("Advisory",), pathway="health science"))
    assert not audience_includes(a, partner(tags=("advisory",), pathway="Culinary"))
    assert not audience_includes(a, partner(tags=("other",), pathway="IT"))
    assert audience_includes(Audience(), partner())
    assert not audience_includes(Audience(exclude_tags=("no-email",)), partner(tags=("no-email",)))


ZONES = ("America/Chicago", "America/Los_Angeles", "Asia/Kolkata", "Europe/Berlin", "", "No/Zone")


@settings(max_examples=200, deadline=None)
@given(
    now=st.datetimes(datetime(2026, 1, 1), datetime(2028, 1, 1), timezones=st.just(UTC)),
    zones=st.lists(st.sampled_from(ZONES), min_size=1, max_size=12),
    default=st.sampled_from(("UTC", "America/New_York")),
)
def test_each_partner_gets_the_window_of_its_own_zone(now, zones, default):
    """The planner works the window out once per zone: partners of different zones, in any
    order (the empty and the unknown zone mean the default one), still each get their own."""
    c = campaign()
    partners = [partner(i, timezone=zone) for i, zone in enumerate(zones, 1)]
    due = due_messages([c], {"checkin": partners}, {}, now, default)
    wanted = [p.email for p in partners if may_send_at(c, partner_zone(p, default), now)]
    assert sorted(d.partner.email for d in due) == sorted(wanted)


def test_follow_up_waits_for_after_and_for_a_pause():
    c = campaign()
    now = datetime(2026, 11, 24, 16, 0, tzinfo=UTC)
    p = partner()
    sent = now - timedelta(days=7)
    seq = SequenceState("checkin", 1, "active", 1, sent, None)
    due = due_messages([c], {}, {"checkin": [(seq, p)]}, now, "UTC")
    assert [(d.partner.email, d.step.number) for d in due] == [(p.email, 2)]
    paused = SequenceState("checkin", 1, "paused", 1, sent, now + timedelta(days=1))
    assert due_messages([c], {}, {"checkin": [(paused, p)]}, now, "UTC") == []
    early = SequenceState("checkin", 1, "active", 1, sent + timedelta(minutes=1), None)
    assert due_messages([c], {}, {"checkin": [(early, p)]}, now, "UTC") == []


def test_project_lists_the_whole_sequence():
    c = campaign()
    now = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)  # Monday 09:00 Chicago
    rows = project(c, [partner()], [], now, now + timedelta(days=30), "UTC")
    assert [(r.step, r.at) for r in rows] == [
        (1, now),
        (2, now + timedelta(days=7)),
        (3, now + timedelta(days=17)),
    ]


# --------------------------------------------------------------------------- properties

states = st.sampled_from(["active", "paused", "replied", "stopped"])
moments = st.datetimes(
    min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC)
)


@given(
    last_step=st.integers(0, 3),
    sent=moments,
    now=moments,
    paused=st.none() | moments,
    zone=st.sampled_from(["UTC", "America/Chicago", "Asia/Tokyo"]),
)
def test_nothing_is_ever_planned_for_a_partner_who_replied(last_step, sent, now, paused, zone):
    c = campaign(window=Window(frozenset(range(7)), time(0), time.max))
    p = partner(timezone=zone)
    seq = SequenceState("checkin", 1, "replied", last_step, sent, paused)
    assert due_messages([c], {}, {"checkin": [(seq, p)]}, now, "UTC") == []


@given(
    statuses=st.lists(st.sampled_from(["active", "bounced", "opted_out"]), min_size=1, max_size=8),
    steps=st.lists(st.integers(1, 10), min_size=0, max_size=3),
    hops=st.lists(st.integers(0, 15 * 24), min_size=1, max_size=6),
    replied=st.sets(st.integers(0, 7)),
)
@settings(max_examples=40, deadline=None)
def test_replanning_after_recording_yields_nothing(
    tmp_path_factory, statuses, steps, hops, replied
):
    """Drive the real store through several cycles; after each one is recorded, nothing
    more is due, no (partner, step) is ever queued twice, and repliers get nothing."""
    c = campaign(
        window=Window(frozenset(range(7)), time(0), time.max),
        steps=(
            Step(1, "hello", "Hi", timedelta(0), thread=False),
            *(Step(i + 2, "nudge", None, timedelta(days=d)) for i, d in enumerate(steps)),
        ),
    )
    store = Store(tmp_path_factory.mktemp("plan") / "o.db")
    now = datetime(2026, 11, 24, 10, tzinfo=UTC)
    store.upsert_partners([partner(i) for i in range(len(statuses))], now)
    for p, status in zip(store.partners(), statuses, strict=True):
        if status != "active":
            store.set_partner_status(p.id, status, "test", now, event="status")
    seen: set[tuple[int, int]] = set()
    for hop in hops:
        now += timedelta(hours=hop)
        for due in find_due(store, [c], now, "UTC"):
            key = (due.partner.id, due.step.number)
            assert key not in seen
            assert due.partner.status == "active"
            seen.add(key)
            ledger_id = store.queue_message(
                campaign="checkin",
                partner_id=due.partner.id,
                step=due.step.number,
                account="default",
                message_id=f"<{key}@x>",
                to_addr=due.partner.email,
                subject="s",
                raw=b"x",
                now=now,
            )
            row = store.ledger_row(ledger_id)
            store.mark_sending([row.id], now)
            store.mark_sent(row, now)
        assert find_due(store, [c], now, "UTC") == []
        for index, p in enumerate(store.partners()):
            if index in replied and store.sequence("checkin", p.id):
                store.set_sequence_state("checkin", p.id, "replied", now)
    replied_ids = {p.id for i, p in enumerate(store.partners()) if i in replied}
    for p_id in replied_ids:
        seq = store.sequence("checkin", p_id)
        if seq is not None and seq.state == "replied":
            later = find_due(store, [c], now + timedelta(days=365), "UTC")
            assert all(d.partner.id != p_id for d in later)
    store.close()


words = st.sampled_from(
    [
        "Health Science",
        "health science",
        "SANTÉ",
        "santé",
        "IT",
        "it",
        "Culinary",
        " Culinary ",
        "Straße",
        "STRASSE",
        "advisory",
        "Advisory",
    ]
)


@given(
    partners=st.lists(
        st.tuples(words, words, st.lists(words, max_size=3)), min_size=1, max_size=12
    ),
    wanted_pathways=st.lists(words, max_size=2),
    wanted_tags=st.lists(words, max_size=2),
    excluded=st.lists(words, max_size=1),
)
@settings(max_examples=40, deadline=None)
def test_sql_audience_narrowing_never_drops_a_real_match(
    tmp_path_factory, partners, wanted_pathways, wanted_tags, excluded
):
    """The store narrows the audience in SQL for speed; it must keep every partner the pure
    rule accepts (same case folding, non-ASCII included)."""
    store = Store(tmp_path_factory.mktemp("aud") / "o.db")
    now = datetime(2026, 11, 24, 10, tzinfo=UTC)
    store.upsert_partners(
        [
            Partner(email=f"p{i}@x.test", pathway=pathway, industry=industry, tags=tuple(tags))
            for i, (pathway, industry, tags) in enumerate(partners)
        ],
        now,
    )
    audience = Audience(
        pathways=tuple(wanted_pathways), tags=tuple(wanted_tags), exclude_tags=tuple(excluded)
    )
    expected = {p.email for p in store.partners() if audience_includes(audience, p)}
    narrowed = store.partners_without_sequence("checkin", audience)
    assert expected <= {p.email for p in narrowed}
    store.close()


# --------------------------------------------------------------------------- end of the calendar

KIRITIMATI = ZoneInfo("Pacific/Kiritimati")  # UTC+14: its 9999-12-31 ends first
END = datetime.max.replace(tzinfo=UTC)


def every_day(**kwargs) -> Campaign:
    return campaign(window=Window(frozenset(range(7)), time(0), time.max), **kwargs)


def test_a_moment_whose_local_time_is_past_the_calendar_is_never_in_the_window():
    c = every_day()
    assert not may_send_at(c, KIRITIMATI, END - timedelta(hours=2))  # 10000-01-01 there
    assert may_send_at(c, CHICAGO, END - timedelta(hours=2))


def test_the_window_search_stops_at_the_end_of_the_calendar():
    c = campaign(blackouts=(Blackout(date(9999, 12, 1), date(9999, 12, 31), "End"),))
    assert next_send_time(c, CHICAGO, datetime(9999, 11, 30, 17, 0, tzinfo=CHICAGO)) is None
    assert next_send_time(c, KIRITIMATI, END - timedelta(hours=2)) is None
    started = campaign(start=datetime(9999, 12, 31, 17, 0, tzinfo=CHICAGO))  # after hours
    assert next_send_time(started, CHICAGO, datetime(2026, 11, 24, tzinfo=UTC)) is None


def test_a_follow_up_due_past_the_calendar_is_never_due():
    c = campaign(steps=(*campaign().steps[:1], Step(2, "nudge", None, timedelta(days=36525))))
    sent = datetime(9950, 1, 5, 15, 0, tzinfo=UTC)
    sequence = SequenceState("checkin", 1, "active", 1, sent, None)
    assert due_messages([c], {}, {"checkin": [(sequence, partner())]}, END, "UTC") == []
    assert project(c, [], [(sequence, partner())], sent, END, "UTC") == []


def test_the_projection_near_the_end_of_the_calendar_stops_cleanly():
    now = datetime(9999, 12, 20, 12, 0, tzinfo=UTC)
    rows = project(
        every_day(), [partner(1), partner(2, timezone="Pacific/Kiritimati")], [], now, END, "UTC"
    )
    assert sorted(row.step for row in rows) == [1, 1, 2, 2]  # step 3 would fall after 9999
    # a pause at the calendar's start: the follow-up's delay cannot be taken off it
    paused = SequenceState("checkin", 1, "paused", 1, now, datetime(1, 1, 2, tzinfo=UTC))
    rows = project(every_day(), [], [(paused, partner())], now, END, "UTC")
    assert [(row.step, row.at) for row in rows] == [(2, now + timedelta(days=7))]
