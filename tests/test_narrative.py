"""A log a colleague would write (issue 21, section 4): outreach/narrative.py turns a
partner's or a campaign's events into one plain line per thing that happened, with times
that say their zone, and prints a reply keeping its own line breaks."""

from __future__ import annotations

import ast
import itertools
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st
from logbook import EMAILS, SPANISH, World

from outreach.views.narrative import (
    NARRATIONS,
    cells,
    day_for_people,
    format_narrative,
    narrate,
    until_for_people,
    when_for_machines,
    when_for_people,
    wrap_keeping_lines,
    zone_label,
)
from outreach.views.text import wrap
from outreach.views.timeline import LogEvent, load_events

CHICAGO = ZoneInfo("America/Chicago")
T = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)  # Tue Nov 24, 09:00 CST
NOW = datetime(2026, 12, 1, 15, 0, tzinfo=UTC)
JOSE = {"partner": "jose@fabrica.test", "name": "José Núñez", "organization": "Fábrica Núñez"}
MARIA = {"partner": "maria@clinica.test", "name": "María González", "organization": "Clínica Sol"}
SAM = {"partner": "sam@bistro.test", "name": "Sam Lee", "organization": "Bistro 21"}
DAN = {"partner": "dan@example.org", "name": "Dan Ortiz", "organization": "Ortiz Build"}

_ids = itertools.count(1)


def ev(kind: str, who: dict[str, str] = JOSE, *, at: datetime = T, **kwargs: Any) -> LogEvent:
    """An event as `timeline.load_events` yields it."""
    values: dict[str, Any] = {
        "id": next(_ids),
        "at": at,
        "kind": kind,
        "campaign": "checkin",
        "step": None,
        "summary": "",
        "text": None,
        "detail": {},
        "message_id": None,
        "inbound_id": None,
        **who,
    }
    values.update(kwargs)
    return LogEvent(**values)


def texts(events: list[LogEvent]) -> list[str]:
    return [line.text for line in narrate(events, CHICAGO, NOW)]


HUMAN = ["human reply: no bounce, automatic or unsubscribe signs"]
RETRY = "2026-11-24T15:30:00.000000+00:00"


# --------------------------------------------------------------------------- one line each

CASES: list[tuple[str, list[LogEvent], list[str]]] = [
    (
        "a reply and the stop of its follow-ups",
        [
            ev(
                "reply",
                inbound_id=7,
                step=1,
                summary="Sí, con gusto.",
                text="Sí, con gusto.",
                detail={"reasons": HUMAN},
            ),
            ev("stopped", inbound_id=7, summary="follow-ups stopped: the partner replied"),
        ],
        ["José Núñez replied"],
    ),
    (
        "a colleague's reply that reuses a Message-ID",
        [
            ev(
                "reply",
                inbound_id=8,
                text="Yo respondo por José.",
                from_addr="ana@fabrica.test",
                from_name="Ana Ruiz",
                detail={"reasons": HUMAN, "duplicate_of": 3},
            ),
        ],
        [
            "José Núñez replied (written by Ana Ruiz <ana@fabrica.test>); it reuses the"
            " Message-ID of #3: see the review queue"
        ],
    ),
    (
        "an out-of-office with its return date and the pause it caused",
        [
            ev(
                "auto_reply",
                MARIA,
                inbound_id=9,
                summary="back 2026-12-14; follow-ups paused until 2026-12-15",
                detail={"return_date": "2026-12-14"},
            ),
            ev(
                "paused",
                MARIA,
                inbound_id=9,
                summary="back 2026-12-14; follow-ups paused until 2026-12-15",
                detail={"until": "2026-12-15T06:00:00.000000+00:00"},
            ),
        ],
        ["María González is out of office until Mon Dec 14; follow-ups wait until Tue Dec 15"],
    ),
    (
        "an automatic reply with no return date: the usual pause, to the minute",
        [
            ev("auto_reply", MARIA, inbound_id=10),
            ev("paused", MARIA, inbound_id=10, detail={"until": "2026-11-29T15:00:00+00:00"}),
        ],
        ["María González is away (automatic reply); follow-ups wait until Sun Nov 29 09:00 CST"],
    ),
    (
        "an out-of-office after the sequence ended changes nothing",
        [ev("auto_reply", MARIA, inbound_id=11, detail={"return_date": "2027-01-04"})],
        ["María González is out of office until Mon Jan 4 2027"],
    ),
    (
        "an automatic reply saying the contact has left",
        [
            ev(
                "auto_reply",
                MARIA,
                inbound_id=12,
                text="María ya no trabaja aquí.",
                detail={"contact_change": True},
            ),
            ev("stopped", MARIA, inbound_id=12, summary="follow-ups stopped: contact change"),
        ],
        [
            "María González is no longer at Clínica Sol (automatic reply): follow-ups stopped;"
            " update the roster"
        ],
    ),
    (
        "a request to stop and the status it set",
        [
            ev(
                "unsubscribe",
                SAM,
                inbound_id=13,
                summary="asked to stop: new text asks to stop: 'take me off'",
                detail={"reasons": ["new text asks to stop: 'take me off'"]},
            ),
            ev(
                "status",
                SAM,
                inbound_id=13,
                summary="asked to stop: new text asks to stop: 'take me off'",
            ),
        ],
        ["Sam Lee asked to be removed: no more messages"],
    ),
    (
        "a spam complaint",
        [
            ev(
                "unsubscribe",
                SAM,
                inbound_id=14,
                detail={
                    "reasons": ["ARF feedback report (RFC 5965): recipient marked the mail as spam"]
                },
            ),
            ev("status", SAM, inbound_id=14),
        ],
        ["Sam Lee reported our message as spam: no more messages"],
    ),
    (
        "a hard bounce and the status it set",
        [
            ev(
                "bounce",
                DAN,
                inbound_id=15,
                summary="hard bounce 5.1.1 ...",
                detail={
                    "status": "5.1.1",
                    "hard": True,
                    "diagnostic": "smtp; 550 5.1.1 <dan@example.org>: Recipient address rejected",
                },
            ),
            ev("status", DAN, inbound_id=15, summary="hard bounce 5.1.1 ..."),
        ],
        ["bounce: dan@example.org does not exist (550 5.1.1): no more messages"],
    ),
    (
        "a bounce refused by policy, with no reply code",
        [
            ev("bounce", DAN, inbound_id=16, detail={"status": "5.7.1", "hard": True}),
            ev("status", DAN, inbound_id=16),
        ],
        [
            "bounce: dan@example.org was refused by the receiving server's policy (5.7.1): no more"
            " messages"
        ],
    ),
    (
        "the soft bounce that reached the limit",
        [
            ev(
                "bounce",
                DAN,
                inbound_id=17,
                detail={"status": "4.2.2", "hard": False, "diagnostic": "452 4.2.2 Mailbox full"},
            ),
            ev("status", DAN, inbound_id=17, summary="2 soft bounces (limit 2)"),
        ],
        ["soft bounce: dan@example.org is full (452 4.2.2); 2 soft bounces: no more messages"],
    ),
    (
        "a soft bounce under the limit",
        [ev("bounce", DAN, inbound_id=18, detail={"status": "4.2.2", "hard": False})],
        ["soft bounce: dan@example.org is full (4.2.2)"],
    ),
    (
        "a refusal while sending marks the address bounced",
        [
            ev(
                "failed",
                DAN,
                step=1,
                message_id="<m1@x>",
                summary="5.1.1 <dan@example.org>: Recipient address rejected: User unknown",
                detail={"code": 550, "permanent": True},
            ),
            ev(
                "status",
                DAN,
                summary="refused by the mail server: 5.1.1 <dan@example.org>:"
                " Recipient address rejected: User unknown",
            ),
        ],
        [
            "step 1 to dan@example.org refused by the mail server (550 5.1.1 <dan@example.org>:"
            " Recipient address rejected: User unknown): address marked bounced, no more messages"
        ],
    ),
    (
        "a message that ran out of retries",
        [
            ev(
                "failed",
                step=2,
                summary="gave up after 4 attempts: connection lost: timed out",
                detail={"code": None, "permanent": False},
            )
        ],
        [
            "step 2 to José Núñez could not be delivered (gave up after 4 attempts: connection"
            " lost: timed out): follow-ups stopped"
        ],
    ),
    (
        "a message the server asked to send later",
        [
            ev(
                "deferred",
                step=2,
                summary=f"4.7.1 Greylisted, try again later (retry at {RETRY})",
                detail={"code": 451, "retry_at": RETRY},
            )
        ],
        [
            "step 2 to José Núñez waits: the mail server said to try later (451 4.7.1 Greylisted,"
            " try again later); next try Tue Nov 24 09:30 CST"
        ],
    ),
    (
        "a message whose delivery is not known",
        [ev("unknown", step=2, summary="connection lost during DATA (reset)")],
        [
            "step 2 to José Núñez may or may not have been delivered: it is not sent again until"
            " that is known"
        ],
    ),
    (
        "found in the Sent folder: counted as sent",
        [
            ev(
                "resolved",
                step=2,
                message_id="<m2@x>",
                summary="counted as sent (found in the Sent folder)",
            ),
            ev("sent", step=2, message_id="<m2@x>", summary="Re: Check-in"),
        ],
        ['sent step 2 ("Re: Check-in") to José Núñez after all (found in the Sent folder)'],
    ),
    (
        "not delivered after all: queued again",
        [
            ev(
                "resolved",
                step=2,
                message_id="<m3@x>",
                summary="queued again (by `outreach resolve`)",
            )
        ],
        ["step 2 to José Núñez will be sent again (by `outreach resolve`)"],
    ),
    (
        "a message of a later round",
        [
            ev(
                "sent",
                step=1,
                summary="Check-in",
                at=datetime(2027, 3, 24, 15, tzinfo=UTC),
                detail={"response": "250 2.0.0 OK", "round": 2},
            )
        ],
        ['sent step 1 ("Check-in") to José Núñez (round 2, spring)'],
    ),
    (
        "a correction records its changes before itself: one line, where they start",
        [
            ev("resumed", inbound_id=19, summary="follow-ups resume (#19 is not a reply)"),
            ev("sent", MARIA, step=1, summary="Hi"),  # another partner, the same moment
            ev("paused", inbound_id=19, detail={"until": "2026-12-15T06:00:00+00:00"}),
            ev(
                "reclassified",
                inbound_id=19,
                detail={
                    "from": "reply",
                    "to": "auto_reply",
                    "changes": [
                        "checkin: follow-ups resume (was replied)",
                        "checkin: follow-ups paused until 2026-12-15",
                    ],
                },
            ),
        ],
        [
            "#19 from José Núñez corrected by hand: an automatic reply, not a reply (checkin:"
            " follow-ups resume (was replied); checkin: follow-ups paused until 2026-12-15)",
            'sent step 1 ("Hi") to María González',
        ],
    ),
    (
        "unverified mail attributed by hand",
        [
            ev("stopped", inbound_id=20, summary="follow-ups stopped: the partner replied"),
            ev(
                "reclassified",
                inbound_id=20,
                detail={
                    "from": "reply",
                    "to": "reply",
                    "attributed": True,
                    "changes": [
                        "attributed to jose@fabrica.test by hand (it was not acted on: x)",
                        "checkin: follow-ups stopped: the partner replied",
                    ],
                },
            ),
        ],
        [
            "mail #20 attributed to José Núñez by hand, as a reply (checkin: follow-ups stopped:"
            " the partner replied)"
        ],
    ),
    (
        "an answer marked handled, with a note",
        [ev("acknowledged", inbound_id=7, detail={"note": "llamé; dos pasantes en marzo"})],
        ["#7 from José Núñez marked handled: llamé; dos pasantes en marzo"],
    ),
    (
        "unverified mail dismissed",
        [ev("acknowledged", inbound_id=21, detail={"dismissed": True})],
        ["mail #21 about José Núñez dismissed: not theirs, nothing changed"],
    ),
    (
        "mail about the partner that outreach did not act on",
        [
            ev(
                "unverified",
                inbound_id=22,
                detail={
                    "kind": "bounce",
                    "from": "mailer-daemon@elsewhere.test",
                    "reason": "it quotes none of our messages",
                },
            )
        ],
        [
            "a bounce about José Núñez from mailer-daemon@elsewhere.test not acted on: in the"
            " review queue as #22"
        ],
    ),
    (
        "mail that is not an answer",
        [ev("other", inbound_id=23, summary="read receipt (RFC 8098)")],
        ["mail from José Núñez that is not an answer: nothing changed"],
    ),
    (
        "mail that could not be read",
        [ev("error", inbound_id=24, summary="MIME structure cannot be read")],
        ["mail from José Núñez could not be read: see the review queue"],
    ),
    (
        "added to the roster; old databases' queued lines",
        [ev("imported", summary="added to roster"), ev("queued", step=2, summary="Re: Check-in")],
        ["José Núñez added to the roster", 'step 2 ("Re: Check-in") queued for José Núñez'],
    ),
    (
        "every step sent without an answer (issue 21: finished)",
        [ev("finished", step=3, detail={"messages": 3})],
        ["no answer from José Núñez after 3 messages"],
    ),
    (
        "a partner given to another owner (issue 19)",
        [ev("owner_changed", detail={"before": "Ana Ruiz", "after": "Luis Pérez"})],
        ["José Núñez reassigned from Ana Ruiz to Luis Pérez"],
    ),
    (
        "changes with no outcome to join are lines of their own",
        [
            ev("paused", MARIA, detail={"until": "2026-12-15T06:00:00+00:00"}),
            ev(
                "resumed",
                MARIA,
                at=T + timedelta(days=21),
                summary="pause ended; follow-ups resume",
            ),
            ev(
                "stopped",
                at=T + timedelta(days=22),
                summary="follow-ups stopped: the partner replied",
            ),
            ev(
                "status",
                at=T + timedelta(days=23),
                summary="back to active (was opted_out: #5 reclassified)",
                detail={"restored": True},
            ),
        ],
        [
            "follow-ups to María González wait until Tue Dec 15",
            "follow-ups to María González resume (the pause ended)",
            "follow-ups to José Núñez stopped: the partner replied",
            "José Núñez is active again (back to active (was opted_out: #5 reclassified))",
        ],
    ),
    (
        "a kind this version does not know",
        [ev("archived", summary="moved to the archive")],
        ["José Núñez: archived: moved to the archive"],
    ),
    (
        "no name in the roster: the address",
        [
            ev(
                "reply",
                {"partner": "jose@fabrica.test", "name": "", "organization": ""},
                inbound_id=25,
                text="ok",
            )
        ],
        ["jose@fabrica.test replied"],
    ),
]


def case(name: str) -> list[LogEvent]:
    return next(events for title, events, _ in CASES if title == name)


@pytest.mark.parametrize(("events", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_one_line_per_thing_that_happened(events: list[LogEvent], expected: list[str]):
    lines = list(narrate(events, CHICAGO, NOW))
    assert [line.text for line in lines] == expected
    # every event is told, once
    assert sorted(i for line in lines for i in line.events) == sorted(e.id for e in events)


def test_the_reason_keeps_the_machines_words():
    [line] = narrate(case("a request to stop and the status it set"), CHICAGO, NOW)
    assert line.reason == "new text asks to stop: 'take me off'"
    [reply] = narrate(case("a reply and the stop of its follow-ups"), CHICAGO, NOW)
    assert reply.reason == HUMAN[0] + "; follow-ups stopped: the partner replied"
    assert reply.words == "Sí, con gusto." and reply.kind == "reply" and reply.step == 1
    [sent] = narrate(case("a message of a later round"), CHICAGO, NOW)
    assert sent.reason == "250 2.0.0 OK"  # the server's answer


def test_a_line_as_json_has_its_time_with_the_offset():
    [line] = narrate(case("a reply and the stop of its follow-ups"), CHICAGO, NOW)
    assert line.to_json(CHICAGO) == {
        "at": "2026-11-24T09:00:00-06:00",
        "kind": "reply",
        "text": "José Núñez replied",
        "reason": HUMAN[0] + "; follow-ups stopped: the partner replied",
        "partner": "jose@fabrica.test",
        "name": "José Núñez",
        "campaign": "checkin",
        "step": 1,
        "words": "Sí, con gusto.",
        "events": list(line.events),
    }


def test_outcomes_are_joined_only_with_what_they_caused():
    at = T
    events = [
        ev("reply", JOSE, inbound_id=30, at=at, text="Sí"),
        ev("reply", MARIA, inbound_id=31, at=at, text="Sí"),
        ev(
            "stopped",
            MARIA,
            inbound_id=31,
            at=at,
            summary="follow-ups stopped: the partner replied",
        ),
        ev(
            "stopped", JOSE, inbound_id=30, at=at, summary="follow-ups stopped: the partner replied"
        ),
        # the same partner, a moment later: its own line
        ev("stopped", JOSE, inbound_id=30, at=at + timedelta(seconds=1)),
        # a message found in the Sent folder, and another message sent at that moment
        ev(
            "resolved",
            step=2,
            message_id="<a@x>",
            at=at + timedelta(seconds=2),
            summary="counted as sent (found in the Sent folder)",
        ),
        ev("sent", step=2, message_id="<a@x>", at=at + timedelta(seconds=2), summary="Re: Hi"),
        ev(
            "sent",
            step=1,
            message_id="<b@x>",
            at=at + timedelta(seconds=2),
            summary="Hi",
            campaign="spring",
        ),
        # the status of another campaign's message is not this failure's
        ev(
            "failed",
            DAN,
            step=1,
            at=at + timedelta(seconds=3),
            summary="5.1.1 unknown",
            detail={"code": 550, "permanent": True},
        ),
        ev("status", DAN, at=at + timedelta(seconds=3), campaign="spring"),
    ]
    lines = list(narrate(events, CHICAGO, NOW))
    by_text = {line.text: line.events for line in lines}
    assert by_text["José Núñez replied"] == (events[0].id, events[3].id)
    assert by_text["María González replied"] == (events[1].id, events[2].id)
    assert [line.text for line in lines][2:] == [
        "follow-ups to José Núñez stopped",
        'sent step 2 ("Re: Hi") to José Núñez after all (found in the Sent folder)',
        'sent step 1 ("Hi") to José Núñez',
        "step 1 to dan@example.org refused by the mail server (550 5.1.1 unknown)",
        "Dan Ortiz: status changed",
    ]


def test_the_log_of_real_cycles_reads_like_notes(world: World):
    """Over a database filled by real cycles (SMTP to aiosmtpd, answers read over IMAP)."""
    events = list(load_events(world.ws.store))
    lines = list(narrate(events, CHICAGO, world.ws.clock()))
    said = [f"{when_for_people(line.at, CHICAGO, world.ws.clock())}  {line.text}" for line in lines]
    # the six first messages go out over concurrent connections: in any order
    said[6:12], said[16:18] = sorted(said[6:12]), sorted(said[16:18])
    assert said == [
        "Tue Nov 24 04:00 CST  María González added to the roster",
        "Tue Nov 24 04:00 CST  Dan O'Connor added to the roster",
        "Tue Nov 24 04:00 CST  Priya Shah added to the roster",
        "Tue Nov 24 04:00 CST  Sam Lee added to the roster",
        "Tue Nov 24 04:00 CST  Zoë Ødegaard added to the roster",
        "Tue Nov 24 04:00 CST  Li Wei added to the roster",
        'Tue Nov 24 04:00 CST  sent step 1 ("Check-in for Bistro 21") to Sam Lee',
        'Tue Nov 24 04:00 CST  sent step 1 ("Check-in for BuildRight") to Dan O\'Connor',
        'Tue Nov 24 04:00 CST  sent step 1 ("Check-in for Clínica Sol") to María González',
        'Tue Nov 24 04:00 CST  sent step 1 ("Check-in for Fjord & Co") to Zoë Ødegaard',
        'Tue Nov 24 04:00 CST  sent step 1 ("Check-in for Harbor Labs") to Li Wei',
        'Tue Nov 24 04:00 CST  sent step 1 ("Check-in for NetForge") to Priya Shah',
        "Tue Nov 24 09:00 CST  María González replied",
        "Tue Nov 24 09:00 CST  Dan O'Connor is out of office until Mon Dec 7; follow-ups wait"
        " until Tue Dec 8",
        "Tue Nov 24 09:00 CST  bounce: priya@netforge.test does not exist (550 5.1.1): no more"
        " messages",
        "Tue Nov 24 09:00 CST  Sam Lee asked to be removed: no more messages",
        'Thu Nov 26 09:00 CST  sent step 2 ("Re: Check-in for Fjord & Co") to Zoë Ødegaard',
        'Thu Nov 26 09:00 CST  sent step 2 ("Re: Check-in for Harbor Labs") to Li Wei',
        "Thu Nov 26 12:00 CST  Li Wei replied",
        'Sun Nov 29 12:00 CST  sent step 3 ("Re: Check-in for Fjord & Co") to Zoë Ødegaard',
    ]
    # the stopped, paused and status events are in the lines of what caused them
    assert len(events) == 25 and sum(len(line.events) for line in lines) == 25
    assert lines[12].words == SPANISH
    assert "new text asks to stop: 'remove me'" in lines[15].reason
    # a campaign's log and a partner's log the same way
    maria = list(narrate(load_events(world.ws.store, partner=EMAILS[0]), CHICAGO))
    assert [line.text for line in maria] == [
        "María González added to the roster",
        'sent step 1 ("Check-in for Clínica Sol") to María González',
        "María González replied",
    ]


def test_narrate_reads_a_moment_at_a_time():
    """A log of any size: the first lines come before the last events are read."""

    def endless() -> Iterator[LogEvent]:
        for n in itertools.count():
            yield ev("sent", step=1, summary="Check-in", at=T + timedelta(minutes=n))

    lines = narrate(endless(), CHICAGO, NOW)
    assert [next(lines).text for _ in range(3)] == ['sent step 1 ("Check-in") to José Núñez'] * 3


def test_format_narrative_prints_the_words_under_the_line_and_the_reason_when_asked():
    events = case("a reply and the stop of its follow-ups")[:1] + [
        ev(
            "reply",
            MARIA,
            inbound_id=40,
            text="Hola,\n\n> ¿Cuántos estudiantes?\nDos, en marzo.\n\nMaría",
            detail={"reasons": HUMAN},
        )
    ]
    out = list(format_narrative(narrate(events, CHICAGO, NOW), CHICAGO, NOW, width=60))
    assert out == [
        "Tue Nov 24 09:00 CST  José Núñez replied",
        "    Sí, con gusto.",
        "Tue Nov 24 09:00 CST  María González replied",
        "    Hola,",
        "",
        "    > ¿Cuántos estudiantes?",
        "    Dos, en marzo.",
        "",
        "    María",
    ]
    verbose = list(format_narrative(narrate(events, CHICAGO, NOW), CHICAGO, NOW, verbose=True))
    assert verbose[2] == "    reason: " + HUMAN[0]


@st.composite
def event_lists(draw: st.DrawFn) -> list[LogEvent]:
    """Events of any known (or unknown) kind, about two partners and two campaigns, a few
    moments apart, with details as any version may have written them."""
    kinds = st.sampled_from([*NARRATIONS, "something_new"])
    values = (
        st.none()
        | st.integers()
        | st.text(max_size=12)
        | st.booleans()
        | st.lists(st.text(max_size=8), max_size=2)
        | st.sampled_from(
            [
                "2026-12-15T06:00:00+00:00",
                "2026-12-14",
                "9999-12-31T23:59:59+00:00",
                "0001-01-01T00:00:00+00:00",
                "5.1.1",
                "4.2.2",
            ]
        )
    )
    details = st.dictionaries(
        st.sampled_from(
            [
                "until",
                "return_date",
                "retry_at",
                "code",
                "permanent",
                "reasons",
                "status",
                "diagnostic",
                "hard",
                "contact_change",
                "duplicate_of",
                "note",
                "dismissed",
                "from",
                "to",
                "changes",
                "attributed",
                "kind",
                "messages",
                "round",
                "restored",
                "response",
            ]
        ),
        values,
        max_size=5,
    )
    count = draw(st.integers(0, 12))
    events = []
    for n in range(count):
        events.append(
            ev(
                draw(kinds),
                draw(st.sampled_from([JOSE, MARIA])),
                at=T + timedelta(seconds=draw(st.integers(0, 2))),
                campaign=draw(st.sampled_from(["checkin", "spring", None])),
                inbound_id=draw(st.none() | st.integers(1, 2)),
                message_id=draw(st.none() | st.sampled_from(["<a@x>", "<b@x>"])),
                step=draw(st.none() | st.integers(1, 3)),
                summary=draw(st.text(max_size=20)),
                detail=draw(details),
                id=n + 1,
            )
        )
    return sorted(events, key=lambda e: (e.at, e.id))


@given(events=event_lists())
def test_property_every_event_is_told_exactly_once_in_time_order(events: list[LogEvent]):
    lines = list(narrate(events, CHICAGO, NOW))
    told = [i for line in lines for i in line.events]
    assert sorted(told) == [e.id for e in sorted(events, key=lambda e: e.id)]
    assert [line.at for line in lines] == sorted(line.at for line in lines)
    assert all(line.text and "\n" not in line.text for line in lines)
    for line in lines:
        line.to_json(CHICAGO)


# --------------------------------------------------------------------------- one clock

SAO_PAULO, KATHMANDU, KOLKATA = (
    ZoneInfo(z) for z in ("America/Sao_Paulo", "Asia/Kathmandu", "Asia/Kolkata")
)


@pytest.mark.parametrize(
    ("moment", "zone", "now", "expected"),
    [
        (T, CHICAGO, NOW, "Tue Nov 24 09:00 CST"),
        (datetime(2026, 12, 15, 15, tzinfo=UTC), CHICAGO, NOW, "Tue Dec 15 09:00 CST"),
        # summer time says so
        (datetime(2026, 6, 2, 14, tzinfo=UTC), CHICAGO, NOW, "Tue Jun 2 09:00 CDT"),
        # the hour that happens twice when the clock falls back: told apart by the zone
        (datetime(2026, 11, 1, 6, 30, tzinfo=UTC), CHICAGO, NOW, "Sun Nov 1 01:30 CDT"),
        (datetime(2026, 11, 1, 7, 30, tzinfo=UTC), CHICAGO, NOW, "Sun Nov 1 01:30 CST"),
        # another year says which
        (datetime(2027, 1, 5, 15, tzinfo=UTC), CHICAGO, NOW, "Tue Jan 5 2027 09:00 CST"),
        (datetime(2025, 12, 30, 15, tzinfo=UTC), CHICAGO, NOW, "Tue Dec 30 2025 09:00 CST"),
        # without `now` (a log file, a report read later): always the year
        (T, CHICAGO, None, "Tue Nov 24 2026 09:00 CST"),
        # zones with no letters: their offset
        (T, SAO_PAULO, NOW, "Tue Nov 24 12:00 UTC-03"),
        (T, KATHMANDU, NOW, "Tue Nov 24 20:45 UTC+05:45"),
        (T, KOLKATA, NOW, "Tue Nov 24 20:30 IST"),
        (T, ZoneInfo("UTC"), NOW, "Tue Nov 24 15:00 UTC"),
        # a time with no zone is UTC, as the store writes them
        (datetime(2026, 11, 24, 15), CHICAGO, NOW, "Tue Nov 24 09:00 CST"),
        # the end of the calendar, east of UTC: shown in its own zone, no OverflowError
        (datetime(9999, 12, 31, 23, tzinfo=UTC), KOLKATA, NOW, "Fri Dec 31 9999 23:00 UTC"),
    ],
)
def test_when_for_people(moment, zone, now, expected):
    assert when_for_people(moment, zone, now) == expected


def test_times_for_machines_and_days_and_waits():
    assert when_for_machines(T, CHICAGO) == "2026-11-24T09:00:00-06:00"
    assert when_for_machines(T, KATHMANDU) == "2026-11-24T20:45:00+05:45"
    assert day_for_people(date(2026, 12, 14), CHICAGO, NOW) == "Mon Dec 14"
    assert day_for_people(date(2027, 12, 14), CHICAGO, NOW) == "Tue Dec 14 2027"
    # a wait that ends at midnight here is a day; anywhere else a time with its zone
    midnight = datetime(2026, 12, 15, tzinfo=CHICAGO)
    assert until_for_people(midnight, CHICAGO, NOW) == "Tue Dec 15"
    eastern_midnight = datetime(2026, 12, 15, tzinfo=ZoneInfo("America/New_York"))
    assert until_for_people(eastern_midnight, CHICAGO, NOW) == "Mon Dec 14 23:00 CST"
    assert zone_label(datetime(2026, 1, 1, tzinfo=ZoneInfo("Asia/Dubai"))) == "UTC+04"


# --------------------------------------------------------------------------- a reply's lines

WRAPS = [
    (
        "lines that fit are kept as written",
        "Hola,\n\nSí,  con  gusto.\n\nJosé Núñez",
        30,
        ["Hola,", "", "Sí,  con  gusto.", "", "José Núñez"],
    ),
    (
        "only a long line is broken, at spaces",
        "We can host two interns in March and two more in May if that works.",
        30,
        ["We can host two interns in", "March and two more in May if", "that works."],
    ),
    (
        "a quoted line continues quoted",
        "> How has your workplace changed this year? Tell us anything.\nMore remote work.",
        30,
        [
            "> How has your workplace",
            "> changed this year? Tell us",
            "> anything.",
            "More remote work.",
        ],
    ),
    (
        "a list item hangs under its text",
        "1. Two interns in March, one in the lab and one at the front desk\n2. Yes",
        30,
        ["1. Two interns in March, one", "   in the lab and one at the", "   front desk", "2. Yes"],
    ),
    (
        "an indented line keeps its indent",
        "    María González, Clínica Sol, Calle Mayor 5, Madrid",
        30,
        ["    María González, Clínica", "    Sol, Calle Mayor 5, Madrid"],
    ),
    (
        "a link longer than the width stays whole",
        "See https://example.org/a/very/long/path/to/the/internship/form?id=12345 please",
        30,
        ["See", "https://example.org/a/very/long/path/to/the/internship/form?id=12345", "please"],
    ),
    (
        "emoji and wide characters take two cells",
        "🎉🎉🎉 研修生を二人 受け入れます 🎉🎉🎉",
        20,
        ["🎉🎉🎉 研修生を二人", "受け入れます 🎉🎉🎉"],
    ),
    (
        "blank lines at the ends go, blank lines inside stay; trailing spaces go",
        "\n\n  \nFirst.   \n\n\nSecond.\n\n",
        30,
        ["First.", "", "", "Second."],
    ),
    ("CRLF line ends", "Uno\r\nDos\r\n", 30, ["Uno", "Dos"]),
    (
        "never narrower than 20 cells",
        "one two three four five six seven",
        5,
        ["one two three four", "five six seven"],
    ),
    ("empty", "", 30, []),
]


@pytest.mark.parametrize(
    ("text", "width", "expected"), [w[1:] for w in WRAPS], ids=[w[0] for w in WRAPS]
)
def test_wrap_keeping_lines(text: str, width: int, expected: list[str]):
    assert wrap_keeping_lines(text, width) == expected


def test_how_it_differs_from_timeline_wrap():
    quoted = "> How has your workplace changed this year? Tell us anything."
    assert wrap(quoted, 30)[1] == "changed this year? Tell us"  # reads as the partner's words
    assert wrap_keeping_lines(quoted, 30)[1] == "> changed this year? Tell us"
    link = "https://example.org/a/very/long/path/to/the/internship/form"
    assert len(wrap(link, 30)) == 2  # cut: cannot be copied
    assert wrap_keeping_lines(link, 30) == [link]


@given(
    words=st.lists(
        st.lists(st.text(alphabet="abcdeéñ🎉研", min_size=1, max_size=14), max_size=12), max_size=6
    ),
    width=st.integers(1, 80),
)
def test_property_wrapping_keeps_every_word_and_line(words: list[list[str]], width: int):
    text = "\n".join(" ".join(line) for line in words)
    out = wrap_keeping_lines(text, width)
    room = max(width, 20)
    assert all(cells(line) <= room or " " not in line for line in out)
    assert " ".join(" ".join(out).split()) == " ".join(text.split())
    kept = [line for line in words if line]
    assert len(out) >= len(kept)
    assert "\n".join(out) == "\n".join(out).strip("\n")


def test_cells():
    assert cells("José") == 4 and cells("Jose\u0301") == 4  # é, and e + a combining accent
    assert cells("🎉") == 2 and cells("研修") == 4 and cells("a\u200bb") == 2


# --------------------------------------------------------------------------- purity


def test_narrative_is_pure():
    source = (Path(__file__).parent.parent / "outreach" / "views" / "narrative.py").read_text()
    imported = {
        node.module if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    stdlib = {
        "__future__",
        "re",
        "unicodedata",
        "collections.abc",
        "dataclasses",
        "datetime",
        "typing",
        "zoneinfo",
    }
    assert imported <= stdlib | {"outreach.core.rounds"}, imported
    assert not re.search(r"\bopen\(|\bprint\(|datetime\.now|\.today\(", source)
