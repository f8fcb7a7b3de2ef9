"""campaigns/*.toml -> core.model.Campaign: who gets it (audience), when (start, sending
window, blackouts) and its steps. A campaign's name is its file name unless `name` says
otherwise; every problem in every file is collected, so `outreach check` lists them all.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from outreach.config.toml_reader import KeyReader, key_location, kind_of, parse_clock, read_toml
from outreach.core.errors import ConfigError, Problems
from outreach.core.model import OWNER_ACCOUNT, Audience, Blackout, Campaign, Step, Window
from outreach.core.questions import Question, build_questions, question_problems
from outreach.core.rounds import repeat_problem, round_deadline
from outreach.core.settings import Config

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

_CAMPAIGN = (
    "name",
    "description",
    "account",
    "fallback_account",
    "audience",
    "start",
    "window",
    "blackout",
    "steps",
    "match_domain",
    "enabled",
    "questions",
    "repeat",
    "until",
)
_AUDIENCE = ("tags", "pathways", "industries", "owners", "exclude_tags")
_WINDOW = ("days", "hours")
_BLACKOUT = ("from", "to", "name")
_STEP = ("template", "subject", "after", "thread")


def campaign_files(config: Config) -> list[Path]:
    if not config.campaigns_dir.is_dir():
        return []
    return sorted(config.campaigns_dir.glob("*.toml"))


def load_campaigns(config: Config) -> list[Campaign]:
    """Read every campaigns/*.toml. Raises Problems listing every problem in every file."""
    problems: list[str] = []
    campaigns: list[Campaign] = []
    if not config.campaigns_dir.is_dir():
        raise ConfigError(
            f"{key_location(config.path, 'outreach.campaigns')}: the campaigns folder "
            f"{config.campaigns_dir} does not exist"
        )
    seen: dict[str, Path] = {}
    for path in campaign_files(config):
        try:
            campaign = load_campaign(path, config)
        except Problems as exc:
            problems.extend(exc.problems)
            continue
        except ConfigError as exc:
            problems.append(str(exc))
            continue
        if campaign.name in seen:
            problems.append(
                f"{path}: campaign name {campaign.name!r} is already used by {seen[campaign.name]}"
            )
            continue
        seen[campaign.name] = path
        campaigns.append(campaign)
    if problems:
        raise Problems(problems)
    return campaigns


def load_campaign(path: Path, config: Config) -> Campaign:
    data, text = read_toml(path)
    reader = KeyReader(path, text)
    top = reader.table(data, "", _CAMPAIGN)
    name = reader.get(top, "", "name", str, path.stem)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name or ""):
        reader.problem("name", f"{name!r}: use letters, digits, '-', '_' and '.' only")
    account = reader.get(top, "", "account", str, "default")
    if account != OWNER_ACCOUNT and account not in config.accounts:
        reader.problem(
            "account",
            f"no account named {account!r} in {config.path.name} "
            f'(accounts: {", ".join(config.accounts) or "none"}; or "owner": each partner\'s '
            "owner's account)",
        )
    fallback = reader.get(top, "", "fallback_account", str)
    if fallback is not None and account != OWNER_ACCOUNT:
        reader.problem("fallback_account", 'only for account = "owner"')
    elif fallback is not None and fallback not in config.accounts:
        reader.problem(
            "fallback_account",
            f"no account named {fallback!r} in {config.path.name} "
            f"(accounts: {', '.join(config.accounts) or 'none'})",
        )
    if account == OWNER_ACCOUNT and not config.owner_accounts() and fallback is None:
        reader.problem(
            "account",
            f'"owner": no account in {config.path.name} lists owners; add owners = [...] '
            "to the accounts, or set fallback_account",
        )

    audience_raw = reader.table(top.get("audience", {}), "audience", _AUDIENCE)
    audience = Audience(
        tags=reader.string_list(audience_raw, "audience", "tags"),
        pathways=reader.string_list(audience_raw, "audience", "pathways"),
        industries=reader.string_list(audience_raw, "audience", "industries"),
        owners=reader.string_list(audience_raw, "audience", "owners"),
        exclude_tags=reader.string_list(audience_raw, "audience", "exclude_tags"),
    )

    start = _read_start(reader, top.get("start"), config.timezone)
    window = _read_window(reader, top.get("window", {}))
    blackouts = _read_blackouts(reader, top.get("blackout", []))

    steps: list[Step] = []
    raw_steps = reader.get(top, "", "steps", list, [], required=True)
    if isinstance(top.get("steps"), list) and not raw_steps:
        reader.problem("steps", "a campaign needs at least one [[steps]] entry")
    for index, raw in enumerate(raw_steps):
        step = _read_step(reader, index, raw, config)
        if step is not None:
            steps.append(step)

    description = reader.get(top, "", "description", str, "")
    match_domain = reader.get(top, "", "match_domain", bool, False)
    enabled = reader.get(top, "", "enabled", bool, True)
    questions = _read_questions(reader, top)
    repeat, until = _read_rounds(reader, top, config.timezone)

    reader.verdict()
    return Campaign(
        name=name,
        source=path,
        account=account,
        steps=tuple(steps),
        audience=audience,
        start=start,
        window=window,
        blackouts=blackouts,
        description=description,
        match_domain=match_domain,
        enabled=enabled,
        owner_accounts=config.owner_accounts() if account == OWNER_ACCOUNT else {},
        fallback_account=fallback if account == OWNER_ACCOUNT else None,
        questions=questions,
        repeat=repeat,
        until=until,
    )


def _read_questions(reader: KeyReader, top: dict[str, Any]) -> tuple[Question, ...]:
    """`[[questions]]`: each problem with its file, line and key (core/questions decides)."""
    if "questions" not in top:
        return ()
    raw = top["questions"]
    problems = question_problems(raw)
    for problem in problems:
        reader.problem(problem.key, problem.message)
    return () if problems else build_questions(raw)


def _read_rounds(
    reader: KeyReader, top: dict[str, Any], timezone: str
) -> tuple[timedelta | None, datetime | None]:
    """`repeat = "120d"`: a new round that long after a partner's round ended; `until`: no
    round starts after that day (its end, in the coordinator's zone) or moment."""
    repeat = None
    if "repeat" in top:
        repeat = reader.duration(top, "", "repeat", timedelta(0))
        problem = repeat_problem(repeat) if repeat > timedelta(0) else None
        if problem is not None:
            reader.problem("repeat", f"{top['repeat']!r}: {problem}")
        if repeat <= timedelta(0) or problem is not None:
            repeat = None
    if "until" not in top:
        return repeat, None
    value = top["until"]
    if repeat is None and "repeat" not in top:
        reader.problem("until", "is for a campaign that repeats: set `repeat` too")
    if isinstance(value, str):
        try:
            value = date.fromisoformat(value) if len(value) == 10 else datetime.fromisoformat(value)
        except ValueError:
            reader.problem("until", f"{value!r} is not a date like 2027-06-30")
            return repeat, None
    if not isinstance(value, date):  # datetime is a date too
        reader.problem("until", f"expected a date like 2027-06-30, got {kind_of(value)}")
        return repeat, None
    return repeat, round_deadline(value, ZoneInfo(timezone))


def _read_start(reader: KeyReader, value: Any, timezone: str) -> datetime | None:
    """`start` may be a TOML date, local or offset date-time, or an ISO string."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            reader.problem("start", f"{value!r} is not a date like 2026-09-01")
            return None
    if isinstance(value, datetime):
        moment: datetime = value
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=ZoneInfo(timezone))
    elif isinstance(value, date):
        moment = datetime.combine(value, time(0), ZoneInfo(timezone))
    else:
        reader.problem("start", f"expected a date, got {kind_of(value)}")
        return None
    try:  # every comparison and time-zone change the planner makes goes through UTC
        moment.astimezone(UTC)
    except OverflowError:
        reader.problem("start", f"{value} is past the end of the calendar (year 9999) in UTC")
        return None
    return moment


def _read_window(reader: KeyReader, raw: Any) -> Window:
    table = reader.table(raw, "window", _WINDOW)
    window = Window()
    days = window.days
    if "days" in table:
        before = len(reader.problems)
        names = reader.string_list(table, "window", "days")
        chosen: set[int] = set()
        for name in names:
            key = name.lower()[:3]
            if key not in WEEKDAYS:
                reader.problem("window.days", f"{name!r} is not a day (use mon, tue, ... sun)")
            else:
                chosen.add(WEEKDAYS.index(key))
        if not chosen and len(reader.problems) == before:  # not when each day was bad
            reader.problem("window.days", "the window needs at least one day")
        days = frozenset(chosen)
    start, end = window.start, window.end
    hours = reader.get(table, "window", "hours", str)
    if hours is not None:
        parts = hours.split("-")
        if len(parts) != 2:
            reader.problem("window.hours", f'{hours!r}: write the hours like "09:00-16:00"')
        else:
            parsed_start = parse_clock(reader, "window.hours", parts[0])
            parsed_end = parse_clock(reader, "window.hours", parts[1])
            if parsed_start and parsed_end:
                if parsed_start >= parsed_end:
                    reader.problem("window.hours", f"{hours!r}: the start must be before the end")
                start, end = parsed_start, parsed_end
    return Window(days=days, start=start, end=end)


def _as_date(reader: KeyReader, key_path: str, value: Any) -> date | None:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    reader.problem(key_path, f"{value!r} is not a date like 2026-12-21")
    return None


def _read_blackouts(reader: KeyReader, raw: Any) -> tuple[Blackout, ...]:
    if not isinstance(raw, list):
        reader.problem("blackout", "expected a list like [{ from = 2026-12-21, to = 2027-01-01 }]")
        return ()
    blackouts = []
    for index, item in enumerate(raw):
        key_path = f"blackout[{index}]"
        table = reader.table(item, key_path, _BLACKOUT)
        name = reader.get(table, key_path, "name", str, "")
        if "from" not in table:
            reader.problem(key_path, "missing required key 'from'")
            continue
        first = _as_date(reader, f"{key_path}.from", table["from"])
        last = _as_date(reader, f"{key_path}.to", table.get("to", table["from"]))
        if first and last:
            if last < first:
                reader.problem(key_path, f"ends ({last}) before it starts ({first})")
            blackouts.append(Blackout(first, last, name))
    return tuple(blackouts)


def _read_step(reader: KeyReader, index: int, raw: Any, config: Config) -> Step | None:
    number = index + 1
    key_path = f"steps[{index}]"
    table = reader.table(raw, key_path, _STEP)
    template = reader.get(table, key_path, "template", str, required=True)
    if template and not (config.templates_dir / f"{template}.txt.j2").is_file():
        reader.problem(
            f"{key_path}.template",
            f"template {template!r} not found: expected "
            f"{config.templates_dir / (template + '.txt.j2')}",
        )
    thread = reader.get(table, key_path, "thread", bool, True)
    subject = reader.get(table, key_path, "subject", str)
    if number == 1:
        if not subject:
            reader.problem(key_path, "the first step needs a 'subject'")
        after: timedelta | None = timedelta(0)
        if "after" in table:  # it would be ignored: the first step waits for nothing
            reader.problem(
                f"{key_path}.after",
                "the first step goes out when the campaign starts (set `start` to hold it "
                "back); `after` is for follow-ups",
            )
    else:
        # "0s": at the next send cycle after the step before (tests and demos use it)
        after = reader.duration(table, key_path, "after", timedelta(0), zero=True)
        if "after" not in table:
            reader.problem(key_path, "a follow-up step needs 'after', e.g. after = \"7d\"")
            after = None
        if thread and subject:
            reader.problem(
                f"{key_path}.subject",
                'a threaded follow-up is sent as "Re: <first subject>"; set thread = false '
                "to give it its own subject",
            )
            subject = None
        if not thread and not subject:
            reader.problem(key_path, "a step with thread = false needs its own 'subject'")
    if template is None or after is None:
        return None
    return Step(
        number=number,
        template=template,
        subject=subject if (number == 1 or not thread) else None,
        after=after,
        thread=thread if number > 1 else False,
    )
