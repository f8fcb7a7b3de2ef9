"""A log a colleague would write (issue 21): the events of a partner or a campaign as one
line per thing that happened, in plain words, with the time in the coordinator's zone.

The store records an outcome and each change it caused as separate events (a `reply` and
the `stopped` of its sequence; an `unsubscribe` and the partner's `status`). Here they make
one line: "José Núñez replied", "Sam Lee asked to be removed: no more messages". The words
of the classifier and the store stay available as each line's `reason` (`--verbose`,
JSON). Text from mail stays text: nothing here builds markup, and the CLI makes what it
prints safe for the terminal.

Pure: events come in as `timeline.load_events` yields them; `now` and the zone are
arguments. A new event kind is one entry in `NARRATIONS`.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from outreach.core.rounds import round_label

# ----------------------------------------------------------------------------- one clock


def when_for_people(moment: datetime, zone: ZoneInfo, now: datetime | None = None) -> str:
    """A moment as a person reads it, in the coordinator's zone and saying which:
    "Tue Dec 15 09:00 CST". The year is added when it is not the year of `now` (and always
    without `now`: a report or a log file is read later): "Tue Dec 15 2026 09:00 CST".

    No "today" or "yesterday": a line printed, pasted into an email or kept in a report is
    read on another day. The zone's abbreviation tells CST from CDT in the hour a clock
    falls back; a zone with no abbreviation shows its offset ("UTC-03").
    """
    local = _in_zone(moment, zone)
    return f"{_day(local.date(), _year_of(now, zone))} {local:%H:%M} {zone_label(local)}"


def day_for_people(day: date, zone: ZoneInfo, now: datetime | None = None) -> str:
    """A calendar day: "Mon Dec 14" (with the year when not the year of `now`)."""
    return _day(day, _year_of(now, zone))


def until_for_people(moment: datetime, zone: ZoneInfo, now: datetime | None = None) -> str:
    """The end of a wait: the day alone when it ends at midnight in `zone` ("Tue Dec 15"),
    else the day and time with the zone."""
    local = _in_zone(moment, zone)
    if local.time() == time(0) and local.tzinfo is zone:
        return day_for_people(local.date(), zone, now)
    return when_for_people(moment, zone, now)


def when_for_machines(moment: datetime, zone: ZoneInfo) -> str:
    """ISO 8601 with the offset, in the coordinator's zone: 2026-12-15T09:00:00-06:00."""
    return _in_zone(moment, zone).isoformat(timespec="seconds")


def zone_label(local: datetime) -> str:
    """The abbreviation of an aware time's zone ("CST", "CDT", "IST", "UTC"), or its
    offset when the zone database has no letters for it ("UTC-03", "UTC+05:45")."""
    name = local.tzname() or ""
    if name and name[0] not in "+-":
        return name
    offset = local.utcoffset()
    if offset is None:
        return "UTC"
    minutes = int(offset.total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    hours, rest = divmod(abs(minutes), 60)
    return f"UTC{sign}{hours:02d}" + (f":{rest:02d}" if rest else "")


def _in_zone(moment: datetime, zone: ZoneInfo) -> datetime:
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    try:
        return aware.astimezone(zone)
    except OverflowError:  # the first or last hours of the calendar: in its own zone
        return aware


def _year_of(now: datetime | None, zone: ZoneInfo) -> int | None:
    return None if now is None else _in_zone(now, zone).year


def _day(day: date, this_year: int | None) -> str:
    text = f"{day:%a %b} {day.day}"
    return text if day.year == this_year else f"{text} {day.year}"


# ----------------------------------------------------------------------------- events


class EventLike(Protocol):
    """One event of the partner's log, as `timeline.LogEvent` has it."""

    @property
    def id(self) -> int: ...
    @property
    def at(self) -> datetime: ...  # aware
    @property
    def kind(self) -> str: ...
    @property
    def partner(self) -> str | None: ...  # email
    @property
    def name(self) -> str: ...
    @property
    def organization(self) -> str: ...
    @property
    def campaign(self) -> str | None: ...
    @property
    def step(self) -> int | None: ...
    @property
    def summary(self) -> str: ...
    @property
    def text(self) -> str | None: ...  # a reply's words
    @property
    def detail(self) -> dict[str, Any]: ...
    @property
    def message_id(self) -> str | None: ...
    @property
    def inbound_id(self) -> int | None: ...
    @property
    def from_addr(self) -> str | None: ...
    @property
    def from_name(self) -> str | None: ...


@dataclass(frozen=True)
class Line:
    """One thing that happened, as a colleague would write it."""

    at: datetime
    kind: str  # the kind of the event that made it happen (reply, bounce, sent...)
    text: str  # the plain words, without the time
    reason: str  # the machine's words: the classifier's reasons, the store's summaries
    partner: str | None
    name: str
    campaign: str | None
    step: int | None
    words: str | None  # what the partner wrote, to print under the line (a reply)
    events: tuple[int, ...]  # the ids of the events the line tells

    def to_json(self, zone: ZoneInfo) -> dict[str, Any]:
        return {
            "at": when_for_machines(self.at, zone),
            "kind": self.kind,
            "text": self.text,
            "reason": self.reason,
            "partner": self.partner,
            "name": self.name,
            "campaign": self.campaign,
            "step": self.step,
            "words": self.words,
            "events": list(self.events),
        }


@dataclass(frozen=True)
class Said:
    """What a narration says of an outcome and the events it absorbed."""

    text: str
    words: str | None = None


@dataclass(frozen=True)
class Telling:
    """How to tell the events of the line: the outcome, the events it caused, the zone."""

    event: EventLike
    caused: Sequence[EventLike]
    zone: ZoneInfo
    now: datetime | None

    @property
    def who(self) -> str:
        return self.event.name.strip() or self.event.partner or "someone"

    @property
    def address(self) -> str:
        return self.event.partner or self.who

    def first(self, kind: str) -> EventLike | None:
        return next((e for e in self.caused if e.kind == kind), None)

    def until(self, value: Any) -> str:
        moment = _moment(value)
        if moment is None:
            return str(value)
        return until_for_people(moment, self.zone, self.now)

    def when(self, value: Any) -> str:
        moment = _moment(value)
        return str(value) if moment is None else when_for_people(moment, self.zone, self.now)


@dataclass(frozen=True)
class Narration:
    """One event kind: how to say it, and which events it causes at the same moment (with
    the same message read, partner and campaign) that its line tells too."""

    say: Callable[[Telling], Said]
    absorbs: frozenset[str] = frozenset()
    reason: Callable[[EventLike], str] | None = None  # default: reasons, else the summary


def narrate(
    events: Iterable[EventLike], zone: ZoneInfo, now: datetime | None = None
) -> Iterator[Line]:
    """The lines of a log, oldest first, from its events oldest first (as `load_events`
    gives them). Events of one moment are read together: an outcome and the changes it
    caused are stored at the same moment, so a log of any size is read once, a moment at
    a time."""
    run: list[EventLike] = []
    for event in events:
        if run and event.at != run[0].at:
            yield from _tell_moment(run, zone, now)
            run = []
        run.append(event)
    if run:
        yield from _tell_moment(run, zone, now)


def _key(event: EventLike) -> tuple[int | None, str | None, str | None]:
    return (event.inbound_id, event.partner, event.campaign)


def _tell_moment(run: list[EventLike], zone: ZoneInfo, now: datetime | None) -> Iterator[Line]:
    """Lines for events of one moment: each change joins the outcome that caused it (the
    nearest before it, else after it: a correction records its changes first)."""
    outcomes: dict[tuple[int | None, str | None, str | None], list[int]] = {}
    for index, event in enumerate(run):
        narration = NARRATIONS.get(event.kind)
        if narration is not None and narration.absorbs:
            outcomes.setdefault(_key(event), []).append(index)
    caused: dict[int, list[int]] = {}
    owner: dict[int, int] = {}
    for index, event in enumerate(run):
        if event.kind not in _ABSORBED or event.kind in _OUTCOMES:
            continue
        candidates = [
            i for i in outcomes.get(_key(event), ()) if i != index and _causes(run[i], event)
        ]
        if not candidates:
            continue
        before = [i for i in candidates if i < index]
        chosen = before[-1] if before else candidates[0]
        caused.setdefault(chosen, []).append(index)
        owner[index] = chosen
    told = []
    for index, event in enumerate(run):
        if index not in owner:
            mine = caused.get(index, [])
            # told where its first event is (a correction records its changes first)
            told.append((min([index, *mine]), _line(event, [run[i] for i in mine], zone, now)))
    for _, line in sorted(told, key=lambda pair: pair[0]):
        yield line


def _causes(outcome: EventLike, change: EventLike) -> bool:
    narration = NARRATIONS[outcome.kind]
    if change.kind not in narration.absorbs:
        return False
    # a message's outcome (resolved, then sent) is about that message alone
    return not (
        outcome.message_id and change.message_id and outcome.message_id != change.message_id
    )


def _line(
    event: EventLike, caused: Sequence[EventLike], zone: ZoneInfo, now: datetime | None
) -> Line:
    narration = NARRATIONS.get(event.kind, _UNKNOWN)
    said = narration.say(Telling(event, caused, zone, now))
    reasons: list[str] = []
    for reason in [(narration.reason or _reason)(event), *(_reason(e) for e in caused)]:
        if reason and not any(reason in r or r in reason for r in reasons):
            reasons.append(reason)
    return Line(
        at=event.at,
        kind=event.kind,
        text=" ".join(said.text.split()),  # one line, whatever a server or a subject held
        reason="; ".join(reasons),
        partner=event.partner,
        name=event.name,
        campaign=event.campaign,
        step=event.step,
        words=said.words,
        events=tuple(sorted([event.id, *(e.id for e in caused)])),
    )


def _reason(event: EventLike) -> str:
    reasons = _list(event.detail.get("reasons"))
    return "; ".join(str(r) for r in reasons) if reasons else event.summary


def _moment(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# ----------------------------------------------------------------------------- the words


def _step(t: Telling) -> str:
    return f"step {t.event.step}" if t.event.step is not None else "a message"


def _subject(t: Telling) -> str:
    return f' ("{t.event.summary}")' if t.event.summary else ""


def _round(t: Telling) -> str:
    number = t.event.detail.get("round")
    if not isinstance(number, int) or isinstance(number, bool):
        return ""
    return f" ({round_label(number, t.event.at, t.zone)})"


def _sent(t: Telling) -> Said:
    return Said(f"sent {_step(t)}{_subject(t)} to {t.who}{_round(t)}")


def _queued(t: Telling) -> Said:  # databases from before m004 have these
    return Said(f"{_step(t)}{_subject(t)} queued for {t.who}")


def _deferred(t: Telling) -> Said:
    error = re.sub(r"\s*\(retry at [^)]*\)$", "", t.event.summary).strip()
    code = t.event.detail.get("code")
    if code is not None and str(code) not in error:
        error = f"{code} {error}".strip()
    retry = t.event.detail.get("retry_at")
    later = f"; next try {t.when(retry)}" if retry else ""
    return Said(f"{_step(t)} to {t.who} waits: the mail server said to try later ({error}){later}")


def _failed(t: Telling) -> Said:
    error = t.event.summary
    code = t.event.detail.get("code")
    if code is not None and str(code) not in error:
        error = f"{code} {error}".strip()
    if t.event.detail.get("permanent"):
        tail = ": address marked bounced, no more messages" if t.first("status") else ""
        return Said(f"{_step(t)} to {t.address} refused by the mail server ({error}){tail}")
    return Said(f"{_step(t)} to {t.who} could not be delivered ({error}): follow-ups stopped")


def _unknown(t: Telling) -> Said:
    return Said(
        f"{_step(t)} to {t.who} may or may not have been delivered: it is not sent"
        " again until that is known"
    )


def _resolved(t: Telling) -> Said:
    found = re.search(r"\(([^)]*)\)\s*$", t.event.summary)
    how = found.group(1) if found else t.event.summary
    sent = t.first("sent")
    if sent is not None or t.event.summary.startswith("counted as sent"):
        subject = f' ("{sent.summary}")' if sent is not None and sent.summary else ""
        return Said(f"sent {_step(t)}{subject} to {t.who} after all ({how})")
    return Said(f"{_step(t)} to {t.who} will be sent again ({how})")


def _reply(t: Telling) -> Said:
    detail = t.event.detail
    text = f"{t.who} replied"
    sender = _sender(t.event)
    if sender:
        text += f" (written by {sender})"
    if detail.get("duplicate_of"):
        text += f"; it reuses the Message-ID of #{detail['duplicate_of']}: see the review queue"
    return Said(text, words=t.event.text)


def _auto_reply(t: Telling) -> Said:
    detail = t.event.detail
    if detail.get("contact_change"):
        where = f" at {t.event.organization}" if t.event.organization else ""
        stopped = ": follow-ups stopped" if t.first("stopped") else ""
        return Said(
            f"{t.who} is no longer{where} (automatic reply){stopped}; update the roster",
            words=t.event.text,
        )
    back = _date(detail.get("return_date"))
    away = (
        f"{t.who} is out of office until {day_for_people(back, t.zone, t.now)}"
        if back
        else f"{t.who} is away (automatic reply)"
    )
    paused = t.first("paused")
    if paused is not None and paused.detail.get("until"):
        return Said(f"{away}; follow-ups wait until {t.until(paused.detail['until'])}")
    if paused is not None:
        return Said(f"{away}; follow-ups wait")
    return Said(away)


def _unsubscribe(t: Telling) -> Said:
    reasons = " ".join(str(r) for r in _list(t.event.detail.get("reasons")))
    asked = (
        f"{t.who} reported our message as spam"
        if "ARF" in reasons
        else f"{t.who} asked to be removed"
    )
    return Said(asked + (": no more messages" if t.first("status") else ""))


def _bounce(t: Telling) -> Said:
    detail = t.event.detail
    status = str(detail.get("status") or "")
    codes = " ".join(c for c in (_smtp_code(str(detail.get("diagnostic") or "")), status) if c)
    text = f"bounce: {t.address} {_bounce_meaning(status)}" + (f" ({codes})" if codes else "")
    if detail.get("hard") is False:
        text = "soft " + text
    marked = t.first("status")
    if marked is not None:
        count = re.match(r"(\d+) soft bounces", marked.summary)
        text += (f"; {count.group(1)} soft bounces" if count else "") + ": no more messages"
    return Said(text)


def _status(t: Telling) -> Said:
    if t.event.detail.get("restored"):
        return Said(f"{t.who} is active again ({t.event.summary})")
    return Said(f"{t.who}: {t.event.summary or 'status changed'}")


def _paused(t: Telling) -> Said:
    until = t.event.detail.get("until")
    wait = f" until {t.until(until)}" if until else ""
    return Said(f"follow-ups to {t.who} wait{wait}")


def _resumed(t: Telling) -> Said:
    why = " (the pause ended)" if "pause ended" in t.event.summary else ""
    return Said(f"follow-ups to {t.who} resume{why}")


def _stopped(t: Telling) -> Said:
    _, _, why = t.event.summary.partition(": ")
    return Said(f"follow-ups to {t.who} stopped" + (f": {why}" if why else ""))


def _acknowledged(t: Telling) -> Said:
    detail = t.event.detail
    number = f"#{t.event.inbound_id}" if t.event.inbound_id is not None else "a message"
    if detail.get("dismissed"):
        text = f"mail {number} about {t.who} dismissed: not theirs, nothing changed"
    else:
        text = f"{number} from {t.who} marked handled"
    note = detail.get("note")
    return Said(text + (f": {note}" if note else ""))


def _reclassified(t: Telling) -> Said:
    detail = t.event.detail
    number = f"#{t.event.inbound_id}" if t.event.inbound_id is not None else "a message"
    old, new = _kind_words(detail.get("from")), _kind_words(detail.get("to"))
    if detail.get("attributed"):
        text = f"mail {number} attributed to {t.who} by hand, as {new}"
    else:
        text = f"{number} from {t.who} corrected by hand: {new}, not {old}"
    changes = [str(c) for c in _list(detail.get("changes")) if not str(c).startswith("attributed")]
    return Said(text + (f" ({'; '.join(changes)})" if changes else ""))


def _other(t: Telling) -> Said:
    return Said(f"mail from {t.who} that is not an answer: nothing changed")


def _error(t: Telling) -> Said:
    return Said(f"mail from {t.who} could not be read: see the review queue")


def _unverified(t: Telling) -> Said:
    detail = t.event.detail
    sender = detail.get("from") or "someone"
    number = f" as #{t.event.inbound_id}" if t.event.inbound_id is not None else ""
    return Said(
        f"{_kind_words(detail.get('kind'))} about {t.who} from {sender} not acted on:"
        f" in the review queue{number}"
    )


def _imported(t: Telling) -> Said:
    return Said(f"{t.who} added to the roster")


def _finished(t: Telling) -> Said:
    count = t.event.detail.get("messages", t.event.step)
    after = f" after {count} message{'s' if count != 1 else ''}" if count else ""
    return Said(f"no answer from {t.who}{after}")


def _owner_changed(t: Telling) -> Said:
    """store/partners._owner_changed: {"before", "after", "open": campaigns under way}."""
    detail = t.event.detail
    old, new = detail.get("before"), detail.get("after")
    if old and new:
        said = f"{t.who} reassigned from {old} to {new}"
    elif new:
        said = f"{t.who} assigned to {new}"
    else:
        said = f"{t.who} no longer assigned" + (f" to {old}" if old else "")
    under_way = [str(name) for name in detail.get("open") or ()]
    if under_way:
        said += f"; {', '.join(under_way)} keeps its account and thread"
    return Said(said)


def _unknown_kind(t: Telling) -> Said:
    what = t.event.kind.replace("_", " ")
    return Said(f"{t.who}: {what}" + (f": {t.event.summary}" if t.event.summary else ""))


def _sent_reason(event: EventLike) -> str:
    return str(event.detail.get("response") or "")


def _reply_reason(event: EventLike) -> str:
    # the summary is the partner's words themselves, not a reason
    return "; ".join(str(r) for r in _list(event.detail.get("reasons")))


NARRATIONS: Mapping[str, Narration] = {
    "imported": Narration(_imported),
    "queued": Narration(_queued),
    "sent": Narration(_sent, reason=_sent_reason),
    "deferred": Narration(_deferred),
    "failed": Narration(_failed, absorbs=frozenset({"status"})),
    "unknown": Narration(_unknown),
    "resolved": Narration(_resolved, absorbs=frozenset({"sent"})),
    "reply": Narration(_reply, absorbs=frozenset({"stopped"}), reason=_reply_reason),
    "auto_reply": Narration(_auto_reply, absorbs=frozenset({"paused", "stopped"})),
    "unsubscribe": Narration(_unsubscribe, absorbs=frozenset({"status"})),
    "bounce": Narration(_bounce, absorbs=frozenset({"status"})),
    "status": Narration(_status),
    "paused": Narration(_paused),
    "resumed": Narration(_resumed),
    "stopped": Narration(_stopped),
    "acknowledged": Narration(_acknowledged),
    "reclassified": Narration(
        _reclassified, absorbs=frozenset({"resumed", "paused", "stopped", "status"})
    ),
    "other": Narration(_other),
    "error": Narration(_error),
    "unverified": Narration(_unverified),
    "finished": Narration(_finished),  # issue 21: every step sent without an answer
    "owner_changed": Narration(_owner_changed),  # issue 19
}
_UNKNOWN = Narration(_unknown_kind)
_ABSORBED = frozenset(kind for n in NARRATIONS.values() for kind in n.absorbs)
_OUTCOMES = frozenset(kind for kind, n in NARRATIONS.items() if n.absorbs)


def _list(value: Any) -> list[Any]:
    """A list from an event's detail, or nothing (a detail written by another version)."""
    return value if isinstance(value, list) else []


def _sender(event: EventLike) -> str | None:
    """Who wrote it, when that is not the partner (a colleague)."""
    if not event.from_addr or event.from_addr == event.partner:
        return None
    return f"{event.from_name} <{event.from_addr}>" if event.from_name else event.from_addr


def _date(value: Any) -> date | None:
    if not isinstance(value, str):
        return None
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        return None


def _kind_words(kind: Any) -> str:
    return {
        "reply": "a reply",
        "auto_reply": "an automatic reply",
        "bounce": "a bounce",
        "unsubscribe": "a request to stop",
        "other": "not an answer",
        "error": "unreadable mail",
    }.get(str(kind), str(kind or "mail").replace("_", " "))


def _smtp_code(diagnostic: str) -> str:
    """The reply code in a server's words ("smtp; 550 5.1.1 <dan@...>" -> "550")."""
    found = re.search(r"(?<![\d.])([245]\d\d)(?=[\s-]|$)", diagnostic)
    return found.group(1) if found else ""


# RFC 3463: the subject and detail of an enhanced status code (class.subject.detail).
_STATUS_DETAIL = {
    "1.1": "does not exist",
    "1.2": "is at a domain that does not exist",
    "1.3": "is not a valid address",
    "1.10": "is at a domain that accepts no mail",  # RFC 7505: null MX
    "2.1": "is disabled",
    "2.2": "is full",
    "2.3": "cannot take a message this large",
}
_STATUS_SUBJECT = {
    "1": "is not a valid address",
    "2": "cannot take mail now",
    "3": "cannot take mail (a problem of the receiving system)",
    "4": "could not be reached",
    "5": "could not be delivered (a protocol problem)",
    "6": "was refused for its content",
    "7": "was refused by the receiving server's policy",
}


def _bounce_meaning(status: str) -> str:
    parts = status.split(".")
    if len(parts) != 3:
        return "could not be delivered"
    _, subject, detail = parts
    return _STATUS_DETAIL.get(f"{subject}.{detail}") or _STATUS_SUBJECT.get(
        subject, "could not be delivered"
    )


# ----------------------------------------------------------------------------- printing


def format_narrative(
    lines: Iterable[Line],
    zone: ZoneInfo,
    now: datetime | None = None,
    *,
    width: int = 100,
    verbose: bool = False,
) -> Iterator[str]:
    """For a terminal: "Tue Dec 15 09:00 CST  José Núñez replied", the partner's words
    under it (their own line breaks kept) and, with `verbose`, the machine's reason."""
    for line in lines:
        when = when_for_people(line.at, zone, now)
        yield f"{when}  {line.text}"
        indent = " " * 4
        if line.words:
            for part in wrap_keeping_lines(line.words, width - len(indent)):
                yield (indent + part) if part else ""
        if verbose and line.reason:
            for part in wrap_keeping_lines(f"reason: {line.reason}", width - len(indent)):
                yield indent + part


MIN_WIDTH = 20  # narrower than this, every word would be a line of its own


def wrap_keeping_lines(text: str, width: int) -> list[str]:
    """A partner's text for a terminal `width` cells wide: each line of theirs stays a line,
    blank lines stay (not at the start or end), and only a line too long is broken, at
    spaces, continued under itself.

    How this differs from `timeline.wrap` (textwrap on each line): a line that fits is left
    exactly as written; a continued line keeps the line's indentation and `>` quote marks
    (an inline answer's quoted question stays quoted) and hangs under a list item's text;
    a word longer than the width (a link) is kept whole, not cut where it can no longer be
    copied; widths are terminal cells (an emoji or a CJK character takes two, a combining
    accent none); leading blank lines go too; and the width is never under MIN_WIDTH.
    """
    width = max(width, MIN_WIDTH)
    out: list[str] = []
    for raw in text.splitlines():
        line = raw.expandtabs(8).rstrip()
        if cells(line) <= width:
            out.append(line)
        else:
            out.extend(_wrap_line(line, width))
    while out and not out[-1]:
        out.pop()
    start = next((i for i, line in enumerate(out) if line), len(out))
    return out[start:]


_PREFIX = re.compile(r"[ ]*(?:>[ ]?)*[ ]*")
_ITEM = re.compile(r"(?:[-*•]|\d{1,3}[.)])[ ]+")


def _wrap_line(line: str, width: int) -> list[str]:
    prefix = _PREFIX.match(line)
    head = prefix.group(0) if prefix else ""
    body = line[len(head) :]
    item = _ITEM.match(body)
    under = head + " " * (cells(item.group(0)) if item else 0)
    if cells(under) > width - MIN_WIDTH // 2:  # deep quotes: keep the marks, not the hang
        under = head.rstrip() + " " if head.strip() else ""
    pieces = re.findall(r"[ ]*\S+", body)
    lines: list[str] = []
    current, lead = "", head
    for piece in pieces:
        if not current:
            current = piece
        elif cells(lead + current + piece) <= width:
            current += piece
        else:
            lines.append(lead + current)
            lead, current = under, piece.lstrip(" ")
    if current or not lines:
        lines.append(lead + current)
    return [line.rstrip() for line in lines]


def cells(text: str) -> int:
    """How many terminal cells `text` takes: two for wide characters (emoji, CJK), none
    for combining marks and invisible format characters."""
    return sum(_cell(ch) for ch in text)


def _cell(ch: str) -> int:
    if ch.isascii():
        return 1
    if unicodedata.combining(ch) or unicodedata.category(ch) in ("Mn", "Me", "Cf"):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
