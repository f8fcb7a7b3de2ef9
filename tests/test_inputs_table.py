"""A table of broken inputs, each run through the CLI.

Every row must end the same way: exit code 2, one `error:` line naming the file and the
line, key or partner, and no traceback.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from helpers import (
    CSV_HEADER,
    assert_input_error,
    edit,
    error_lines,
    invoke,
    line_of,
    write_csv,
)

from outreach.config import load_config
from outreach.config.passwords import server_password
from outreach.core.errors import ConfigError

Needles = Callable[[Path], list["str | re.Pattern[str]"]]


@dataclass(frozen=True)
class Case:
    """Break something in a fresh sample project, run `commands`, expect `needles`."""

    id: str
    setup: Callable[[Path], None]
    needles: Needles
    commands: tuple[tuple[str, ...], ...] = (("check",), ("preview", "checkin"))
    extra: dict[str, str] = field(default_factory=dict)


def config(p: Path) -> Path:
    return p / "config.toml"


def campaign(p: Path) -> Path:
    return p / "campaigns" / "checkin.toml"


def at(path: Path, needle: str, occurrence: int = 1) -> str:
    """`/abs/file:LINE:` where LINE holds `needle`."""
    return f"{path}:{line_of(path, needle, occurrence)}:"


def import_csv(project: Path, name: str, rows: list[str]) -> None:
    path = write_csv(project / name, rows)
    result = invoke(["partners", "import", str(path)], project=project)
    assert result.exit_code == 0, result.output


# --------------------------------------------------------------------------- setups


def toml_syntax_error(p: Path) -> None:
    edit(config(p), "[worker]", "[worker")


def campaign_toml_syntax_error(p: Path) -> None:
    edit(campaign(p), 'after = "7d"', 'after = "7d')


def unknown_key(p: Path) -> None:
    edit(config(p), "per_minute = 20", "per_minut = 20")


def wrong_type(p: Path) -> None:
    edit(config(p), "port = 993", "port = true")


def bad_duration_config(p: Path) -> None:
    edit(config(p), 'send_every = "2m"', 'send_every = "2 min"')


def bad_duration_campaign(p: Path) -> None:
    edit(campaign(p), 'after = "10d"', 'after = "10 days"')


def missing_template(p: Path) -> None:
    (p / "templates" / "last_call.txt.j2").unlink()


def missing_include(p: Path) -> None:
    (p / "templates" / "_signature.txt.j2").unlink()


def template_syntax_error(p: Path) -> None:
    edit(p / "templates" / "followup.txt.j2", "Thank you,", "Thank you,{% if %}")


def template_not_utf8(p: Path) -> None:
    path = p / "templates" / "followup.txt.j2"
    assert line_of(path, "Thank you,") == 7
    path.write_bytes(path.read_bytes().replace(b"Thank you,", b"Gr\xfc\xdfe,"))


def undefined_variable_for_some_partners(p: Path) -> None:
    # partners.csv has no `region`; a second roster adds it for one partner only
    import_csv(p, "partners.csv", (p / "partners.csv").read_text(encoding="utf-8").splitlines())
    import_csv(p, "regions.csv", ["email,region", "maria.gonzalez@mercyhealth.example,Southeast"])
    edit(p / "templates" / "followup.txt.j2", "Thank you,", "Region: {{ partner.region }}\nThanks,")


def undefined_variable_in_subject(p: Path) -> None:
    edit(campaign(p), "{{ program }} check-in", "{{ programme }} check-in")


def unknown_time_zone_config(p: Path) -> None:
    edit(config(p), 'timezone = "America/Chicago"', 'timezone = "US/Chicagoland"')


def unknown_account(p: Path) -> None:
    edit(campaign(p), 'account = "default"', 'account = "district"')


def step_2_without_after(p: Path) -> None:
    edit(campaign(p), 'after = "7d"', "")


def step_3_without_after(p: Path) -> None:
    edit(campaign(p), 'after = "10d"', "")


def threaded_step_with_subject(p: Path) -> None:
    edit(campaign(p), 'after = "7d"', 'after = "7d"\nsubject = "Following up"')


def first_step_without_subject(p: Path) -> None:
    edit(
        campaign(p),
        'subject = "{{ program }} check-in: how is {{ partner.organization }} doing?"',
        "",
    )


def bad_window(p: Path) -> None:
    edit(campaign(p), 'hours = "08:30-15:30"', 'hours = "15:30-08:30"')


def bad_blackout(p: Path) -> None:
    edit(campaign(p), "to = 2027-03-19", "to = 2027-03-10")


def config_missing(p: Path) -> None:
    config(p).unlink()


def no_accounts(p: Path) -> None:
    text = config(p).read_text(encoding="utf-8")
    start = text.index("[accounts.default]")
    end = text.index("[worker]")
    config(p).write_text(text[:start] + text[end:], encoding="utf-8")


def set_in_campaign(old: str, new: str) -> Callable[[Path], None]:
    return lambda p: edit(campaign(p), old, new)


def set_in_config(old: str, new: str) -> Callable[[Path], None]:
    return lambda p: edit(config(p), old, new)


def add_to_replies(line: str) -> Callable[[Path], None]:
    return set_in_config("soft_bounce_limit = 3", f"soft_bounce_limit = 3\n{line}")


def add_to_worker(line: str) -> Callable[[Path], None]:
    return set_in_config('send_every = "2m"', f'send_every = "2m"\n{line}')


DEEP_ARRAY = "deep = " + "[" * 5000 + "]" * 5000


# Values read after the problems were collected, zero durations replaced by a default,
# numbers out of range, dates past the end of the calendar: each once passed `check`.
VALUE_CASES = [
    Case(
        "campaign-enabled-as-a-string",
        set_in_campaign('account = "default"', 'account = "default"\nenabled = "no"'),
        lambda p: [at(campaign(p), "enabled ="), "enabled", "expected a boolean, got a string"],
    ),
    Case(
        "campaign-enabled-as-zero",
        set_in_campaign('account = "default"', 'account = "default"\nenabled = 0'),
        lambda p: [at(campaign(p), "enabled ="), "enabled", "expected a boolean, got an integer"],
    ),
    Case(
        "campaign-match-domain-as-a-string",
        set_in_campaign('account = "default"', 'account = "default"\nmatch_domain = "yes"'),
        lambda p: [at(campaign(p), "match_domain ="), "match_domain", "expected a boolean"],
    ),
    Case(
        "campaign-description-as-a-number",
        set_in_campaign('description = "Fall check-in with industry partners"', "description = 5"),
        lambda p: [at(campaign(p), "description ="), "description", "expected a string"],
    ),
    Case(
        "blackout-name-as-a-number",
        set_in_campaign('name = "Winter break"', "name = 2026"),
        lambda p: [at(campaign(p), "name = 2026"), "blackout[0].name", "expected a string"],
    ),
    Case(
        "after-on-the-first-step",
        set_in_campaign('template = "checkin"', 'template = "checkin"\nafter = "3d"'),
        lambda p: [at(campaign(p), 'after = "3d"'), "steps[0].after", "`start`"],
    ),
    Case(
        "start-past-the-end-of-the-calendar-in-utc",
        set_in_campaign("# start = 2026-09-08", "start = 9999-12-31T23:00:00-05:00"),
        lambda p: [at(campaign(p), "start = 9999"), "start", "end of the calendar"],
    ),
    Case(
        "campaign-nested-too-deeply",
        set_in_campaign('account = "default"', f'account = "default"\n{DEEP_ARRAY}'),
        lambda p: [str(campaign(p)), "nested too deeply"],
    ),
    Case(
        "config-nested-too-deeply",
        set_in_config("[worker]", f"{DEEP_ARRAY}\n[worker]"),
        lambda p: [str(config(p)), "nested too deeply"],
    ),
    Case(
        "poll-every-zero",
        set_in_config('poll_every = "2m"', 'poll_every = "0s"'),
        lambda p: [at(config(p), "poll_every"), "worker.poll_every", "longer than 0s"],
    ),
    Case(
        "send-every-zero",
        set_in_config('send_every = "2m"', 'send_every = "0m"'),
        lambda p: [at(config(p), "send_every"), "worker.send_every", "longer than 0s"],
    ),
    Case(
        "shutdown-timeout-zero",
        add_to_worker('shutdown_timeout = "0s"'),
        lambda p: [at(config(p), "shutdown_timeout"), "worker.shutdown_timeout", "than 0s"],
    ),
    Case(
        "server-timeout-zero",
        set_in_config(
            'password_env = "OUTREACH_SMTP_PASSWORD" }',
            'password_env = "OUTREACH_SMTP_PASSWORD", timeout = "0s" }',
        ),
        lambda p: [at(config(p), 'timeout = "0s"'), "accounts.default.smtp.timeout", "than 0s"],
    ),
    Case(
        "auto-reply-pause-zero",
        set_in_config('auto_reply_pause = "7d"', 'auto_reply_pause = "0d"'),
        lambda p: [at(config(p), "auto_reply_pause"), "replies.auto_reply_pause", "than 0s"],
    ),
    Case(
        "soft-bounce-limit-zero",
        set_in_config("soft_bounce_limit = 3", "soft_bounce_limit = 0"),
        lambda p: [at(config(p), "soft_bounce_limit"), "replies.soft_bounce_limit", "use 1 to"],
    ),
    Case(
        "max-message-size-zero",
        add_to_replies("max_message_size = 0"),
        lambda p: [at(config(p), "max_message_size"), "replies.max_message_size", "65,536"],
    ),
    Case(
        "max-message-size-negative",
        add_to_replies("max_message_size = -1"),
        lambda p: [at(config(p), "max_message_size"), "replies.max_message_size", "-1"],
    ),
    Case(
        "max-message-size-too-small-for-a-reply",
        add_to_replies("max_message_size = 10"),
        lambda p: [at(config(p), "max_message_size"), "replies.max_message_size", "64 KiB"],
    ),
    Case(
        "template-with-nested-range-loops",
        lambda p: edit(
            p / "templates" / "followup.txt.j2",
            "Thank you,",
            "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
            "\nThank you,",
        ),
        lambda p: [f"{p / 'templates' / 'followup.txt.j2'}:7:", "over the limit", "100,000 steps"],
    ),
    Case(
        "template-making-a-billion-characters",
        lambda p: edit(p / "templates" / "checkin.txt.j2", "Thank you,", "{{ 'x' * 10**9 }}"),
        lambda p: [at(p / "templates" / "checkin.txt.j2", "10**9"), "over the limit", "characters"],
    ),
    Case(
        "batch-size-zero",
        add_to_replies("batch_size = 0"),
        lambda p: [at(config(p), "batch_size"), "replies.batch_size", "use 1 to"],
    ),
]

CONFIG_CASES = [
    Case(
        "toml-syntax", toml_syntax_error, lambda p: [at(config(p), "[worker"), "TOML syntax error"]
    ),
    Case(
        "campaign-toml-syntax",
        campaign_toml_syntax_error,
        lambda p: [at(campaign(p), 'after = "7d'), "TOML syntax error"],
    ),
    Case(
        "unknown-key",
        unknown_key,
        lambda p: [
            at(config(p), "per_minut"),
            "accounts.default.limits.per_minut",
            "unknown key",
            "per_minute",
        ],
    ),
    Case(
        "wrong-type",
        wrong_type,
        lambda p: [
            at(config(p), "port = true"),
            "accounts.default.imap.port",
            "expected an integer, got a boolean",
        ],
    ),
    Case(
        "bad-duration-config",
        bad_duration_config,
        lambda p: [at(config(p), "send_every"), "worker.send_every", "'2 min'"],
    ),
    Case(
        "bad-duration-campaign",
        bad_duration_campaign,
        lambda p: [at(campaign(p), "10 days"), "steps[2].after", "'10 days'"],
    ),
    Case(
        "missing-template",
        missing_template,
        lambda p: [at(campaign(p), '"last_call"'), "steps[2].template", "last_call.txt.j2"],
    ),
    Case(
        "missing-include",
        missing_include,
        lambda p: [str(p / "templates" / "_signature.txt.j2"), "not found"],
    ),
    Case(
        "template-syntax",
        template_syntax_error,
        lambda p: [at(p / "templates" / "followup.txt.j2", "{% if %}"), "syntax error"],
    ),
    Case(
        "template-not-utf8",
        template_not_utf8,
        lambda p: [f"{p / 'templates' / 'followup.txt.j2'}:7: not UTF-8 text"],
    ),
    Case(
        "undefined-variable-for-some-partners",
        undefined_variable_for_some_partners,
        lambda p: [
            at(p / "templates" / "followup.txt.j2", "partner.region"),
            "region",
            re.compile(r"partner (dan\.oconnor|priya\.shah|sam\.lee)@"),
        ],
    ),
    Case(
        "undefined-variable-in-subject",
        undefined_variable_in_subject,
        lambda p: [
            at(campaign(p), "{{ programme }}") + " steps[0].subject:",
            "programme",
            "partner ",
        ],
    ),
    Case(
        "unknown-time-zone-config",
        unknown_time_zone_config,
        lambda p: [at(config(p), "US/Chicagoland"), "outreach.timezone", "US/Chicagoland"],
    ),
    Case(
        "unknown-account",
        unknown_account,
        lambda p: [at(campaign(p), 'account = "district"'), "account", "'district'", "default"],
    ),
    Case(
        "step-2-without-after",
        step_2_without_after,
        lambda p: [at(campaign(p), "[[steps]]", 2) + " steps[1]:", "needs 'after'"],
    ),
    Case(
        "step-3-without-after",
        step_3_without_after,
        lambda p: [at(campaign(p), "[[steps]]", 3) + " steps[2]:", "needs 'after'"],
    ),
    Case(
        "threaded-step-with-subject",
        threaded_step_with_subject,
        lambda p: [at(campaign(p), "Following up"), "steps[1].subject", "thread = false"],
    ),
    Case(
        "first-step-without-subject",
        first_step_without_subject,
        lambda p: [at(campaign(p), "[[steps]]", 1), "steps[0]", "subject"],
    ),
    Case(
        "window-backwards",
        bad_window,
        lambda p: [at(campaign(p), "hours ="), "window.hours", "before the end"],
    ),
    Case(
        "blackout-backwards",
        bad_blackout,
        lambda p: [at(campaign(p), "Spring break"), "blackout[1]", "before it starts"],
    ),
    Case(
        "config-missing", config_missing, lambda p: [str(config(p)), "not found", "outreach init"]
    ),
    Case(
        "no-accounts", no_accounts, lambda p: [str(config(p)), "accounts", "at least one account"]
    ),
]


@pytest.mark.parametrize("case", CONFIG_CASES + VALUE_CASES, ids=lambda c: c.id)
def test_broken_config_campaign_or_template(project: Path, case: Case) -> None:
    case.setup(project)
    needles = case.needles(project)
    for command in case.commands:
        result = invoke(list(command), project=project)
        assert_input_error(result, *needles)
        if command[0] == "check":
            assert len(error_lines(result)) == 1, result.output  # no echo of one cause
            assert re.search(r"^1 problem found$", result.stderr, re.M), result.stderr
        else:
            assert len(result.stderr.strip().splitlines()) == 1, result.stderr


# --------------------------------------------------------------------------- rosters


@dataclass(frozen=True)
class RosterCase:
    id: str
    data: bytes
    needles: list[str | re.Pattern[str]]


def rows(*lines: str) -> bytes:
    return ("\n".join([CSV_HEADER, *lines]) + "\n").encode("utf-8")


GOOD = "ok.partner@example.org,Ok Partner,Ok,Acme,Healthcare,Health,jlee,advisory,"

ROSTER_CASES = [
    RosterCase(
        "bad-address",
        rows(GOOD, "jane.doe@@example.org,Jane,,,,,,,"),
        [":3:", "email", "jane.doe@@example.org"],
    ),
    RosterCase(
        "address-without-domain-dot",
        rows(GOOD, "jane@localhost,Jane,,,,,,,"),
        [":3:", "email", "jane@localhost"],
    ),
    RosterCase("empty-address", rows(GOOD, ",Jane,,,,,,,"), [":3:", "email", "empty"]),
    RosterCase(
        "duplicate-email",
        rows(GOOD, "OK.Partner@Example.org,Again,,,,,,,"),
        [":3:", "duplicate", "ok.partner@example.org", "line 2"],
    ),
    RosterCase(
        "latin-1",
        rows(GOOD).replace(b"Ok Partner", b"Jos\xe9 Partner"),
        [":2:", "not UTF-8", "CSV UTF-8"],
    ),
    RosterCase("utf-16", rows(GOOD).decode().encode("utf-16"), ["UTF-16", "CSV UTF-8"]),
    RosterCase(
        "utf-16-without-bom", rows(GOOD).decode().encode("utf-16-le"), ["UTF-16", "CSV UTF-8"]
    ),
    RosterCase(
        "unknown-time-zone", rows(GOOD + "Europe/Lincoln"), [":2:", "timezone", "Europe/Lincoln"]
    ),
    RosterCase(
        "crlf-in-quoted-field",
        rows('evil@example.org,"Eve\r\nBcc: victim@example.org",,,,,,,'),
        [":2:", "'name'", "line break"],
    ),
    RosterCase(
        "lf-in-quoted-field",
        rows(GOOD, 'x@example.org,"Two\nLines",,,,,,,'),
        [":3:", "'name'", "line break"],
    ),
    RosterCase("nul-in-field", rows("nul@example.org,A\x00B,,,,,,,"), [":2:", "'name'"]),
    RosterCase("unicode-line-separator", rows("ls@example.org,A\u2028B,,,,,,,"), [":2:", "'name'"]),
    RosterCase(
        "missing-comma", rows(GOOD, "short@example.org,Short"), [":3:", "2 values for 9 columns"]
    ),
    RosterCase("no-email-column", b"name,organization\nJane,Acme\n", [":1:", "'email'"]),
    RosterCase("line-break-in-a-header", b'"e\nmail",name\nx@example.org,X\n', [":1:", "'email'"]),
    RosterCase("empty-file", b"", ["empty"]),
    RosterCase("reserved-column", b"email,status\na@example.org,active\n", [":1:", "'status'"]),
]


@pytest.mark.parametrize("case", ROSTER_CASES, ids=lambda c: c.id)
@pytest.mark.parametrize("dry_run", [False, True], ids=["import", "dry-run"])
def test_broken_roster(project: Path, case: RosterCase, dry_run: bool) -> None:
    path = project / "roster.csv"
    path.write_bytes(case.data)
    args = ["partners", "import", *(["--dry-run"] if dry_run else []), str(path)]
    result = invoke(args, project=project)
    line = assert_input_error(result, str(path), *case.needles)
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    if not dry_run:
        assert "nothing imported" in line or ":" in line
    listing = invoke(["partners", "list", "--json"], project=project)
    assert listing.exit_code == 0
    assert listing.stdout.strip() == "[]"  # nothing was imported


def test_unknown_time_zone_in_the_roster_names_file_line_and_column(project: Path) -> None:
    path = write_csv(project / "tz.csv", [CSV_HEADER, GOOD + "Mars/Olympus_Mons"])
    result = invoke(["partners", "import", str(path)], project=project)
    assert_input_error(result, f"{path}:2: timezone:", "Mars/Olympus_Mons")


def test_missing_csv_file(project: Path) -> None:
    path = project / "nope.csv"
    assert_input_error(invoke(["partners", "import", str(path)], project=project), str(path))


# --------------------------------------------------------------------------- hostile names

# A file name is text from outside too (a saved attachment): quoted back in an error line,
# its controls are shown, never sent to the terminal (issue 16, point 4).
EVIL = "ev\x1b]0;owned\x07il\u202e"
SHOWN = "ev\u241b]0;owned\u2407il<U+202E>"
UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def broken_roster_named(p: Path) -> list[str]:
    path = p / f"{EVIL}.csv"
    path.write_bytes(rows(GOOD, "jane.doe@@example.org,Jane,,,,,,,"))
    return ["partners", "import", str(path)]


def export_into_a_missing_folder(p: Path) -> list[str]:
    return ["export", "replies", "-o", str(p / EVIL / "replies.csv")]


def report_into_a_missing_folder(p: Path) -> list[str]:
    return ["report", "checkin", "--html", str(p / EVIL / "report.html")]


def backup_into_a_missing_folder(p: Path) -> list[str]:
    import_csv(p, "partners.csv", (p / "partners.csv").read_text(encoding="utf-8").splitlines())
    return ["backup", str(p / EVIL / "copy.db")]


@pytest.mark.parametrize(
    "command",
    [
        broken_roster_named,
        export_into_a_missing_folder,
        report_into_a_missing_folder,
        backup_into_a_missing_folder,
    ],
    ids=lambda f: f.__name__.replace("_", "-"),
)
def test_a_hostile_file_name_is_quoted_inert(
    project: Path, command: Callable[[Path], list[str]]
) -> None:
    result = invoke(command(project), project=project)
    assert_input_error(result, SHOWN)
    assert UNSAFE.search(result.stderr) is None, repr(result.stderr)
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


# --------------------------------------------------------------------------- passwords


def test_missing_password_variable_raises_config_error_naming_it(project: Path) -> None:
    account = load_config(config(project)).accounts["default"]
    with pytest.raises(ConfigError) as caught:
        server_password(account.smtp)
    assert "OUTREACH_SMTP_PASSWORD" in str(caught.value)
    assert "config.toml" in str(caught.value)
    assert caught.value.exit_code == 2
    assert "\n" not in str(caught.value)


def test_check_warns_about_a_missing_password_variable(project: Path) -> None:
    result = invoke(["check"], project=project, env={"OUTREACH_IMAP_PASSWORD": "set"})
    assert result.exit_code == 0
    (warning,) = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert "OUTREACH_SMTP_PASSWORD" in warning and "accounts.default.smtp" in warning


# --------------------------------------------------------------------------- command line


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["preview", "nosuch"], ["nosuch", "checkin"]),
        (["preview", "checkin", "--step", "4"], ["steps 1 to 3", "4"]),
        (["preview", "checkin", "--step", "0"], ["steps 1 to 3", "0"]),
        (
            ["preview", "checkin", "--partner", "nobody@example.org"],
            ["nobody@example.org", "partners list"],
        ),
        (["plan", "--days", "3000000"], ["--days 3000000", "1 to 36525"]),
        (["plan", "--days", "0"], ["--days 0", "1 to 36525"]),
        (["log", "--since", "99999999d"], ["--since '99999999d'", "at most 100 years"]),
    ],
)
def test_bad_command_line_values(project: Path, args: list[str], needles: list[str]) -> None:
    result = invoke(args, project=project)
    assert_input_error(result, *needles)
    assert len(result.stderr.strip().splitlines()) == 1


def test_check_names_one_partner_and_counts_the_others(project: Path) -> None:
    undefined_variable_for_some_partners(project)
    result = invoke(["check"], project=project)
    line = assert_input_error(result, "partner dan.oconnor@buildright.example")
    assert line.endswith("(and 2 more partners)")
    assert "maria.gonzalez" not in result.stderr  # she has a region


@pytest.mark.parametrize(
    ("since", "events"),
    [("9999-12-31T23:59:59", False), ("9999-12-31", False), ("0001-01-01T00:00+05:00", True)],
)
def test_since_at_the_ends_of_the_calendar_is_a_clean_answer(
    project: Path, since: str, events: bool
) -> None:
    """A --since whose UTC falls outside the calendar is after (or before) every event."""
    import_csv(project, "partners.csv", (project / "partners.csv").read_text().splitlines())
    result = invoke(["log", "--since", since], project=project)
    assert result.exit_code == 0, result.output
    assert ("event(s)" in result.output) is events, result.output


@pytest.mark.parametrize("start", ["9999-12-31", "9999-12-31T23:59:59Z"])
def test_a_campaign_starting_at_the_end_of_the_calendar_plans_nothing(
    project: Path, start: str
) -> None:
    edit(campaign(project), "# start = 2026-09-08", f"start = {start}")
    edit(
        campaign(project), "blackout = [", "blackout = [\n  { from = 9999-12-01, to = 9999-12-31 },"
    )
    import_csv(project, "partners.csv", (project / "partners.csv").read_text().splitlines())
    for command, answer in (
        (["check"], "everything checks out"),
        (["plan", "--days", "36525"], "nothing planned"),
        (["run", "--once", "--dry-run"], "nothing is due now"),
    ):
        result = invoke(command, project=project)
        assert result.exit_code == 0, result.output
        assert answer in result.output
