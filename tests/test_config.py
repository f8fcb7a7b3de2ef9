"""config.toml and campaigns/*.toml: loading, discovery, durations, servers, every problem."""

from __future__ import annotations

import json
import os
import re
from datetime import date, time, timedelta
from pathlib import Path
from typing import Any

import pytest
from helpers import (
    SAMPLE,
    assert_input_error,
    edit,
    error_lines,
    invoke,
    line_of,
    make_project,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from outreach.config import find_config, load_campaigns, load_config
from outreach.config.passwords import server_password
from outreach.core.durations import format_duration, parse_duration
from outreach.core.errors import ConfigError, InputError, Problems
from outreach.core.questions import QUESTION_KEYS
from outreach.core.settings import ServerSettings
from outreach.engine.checks import check_all


def problems_of(path: Path) -> list[str]:
    with pytest.raises(Problems) as caught:
        load_config(path)
    return caught.value.problems


def minimal_config(tmp_path: Path, smtp: str, extra: str = "") -> Path:
    """A config with one account whose smtp inline table is `smtp`."""
    path = tmp_path / "config.toml"
    path.write_text(
        "[outreach]\n"
        'timezone = "America/Chicago"\n'
        "[accounts.default]\n"
        'from = "Jordan Lee <jlee@district.example>"\n'
        f"smtp = {{ {smtp} }}\n" + extra,
        encoding="utf-8",
    )
    return path


# --------------------------------------------------------------------------- the sample


def test_sample_config_loads(project: Path) -> None:
    config = load_config(project / "config.toml")
    assert config.path == project / "config.toml"
    assert config.timezone == "America/Chicago"
    assert config.template_vars["program"] == "Lincoln High CTE"
    account = config.accounts["default"]
    assert account.from_email == "jlee@district.example"
    assert account.domain == "district.example"
    assert account.from_name == "Jordan Lee"
    assert (account.smtp.host, account.smtp.port, account.smtp.security) == (
        "smtp.district.example",
        587,
        "starttls",
    )
    assert account.smtp.password_env == "OUTREACH_SMTP_PASSWORD"
    assert account.imap is not None
    assert (account.imap.port, account.imap.security, account.imap.folder) == (993, "tls", "INBOX")
    assert account.limits.per_minute == 20
    assert account.limits.jitter == timedelta(seconds=3)
    assert account.limits.retry == (
        timedelta(minutes=1),
        timedelta(minutes=10),
        timedelta(hours=1),
        timedelta(hours=6),
    )
    assert config.worker.poll_every == timedelta(minutes=2)
    assert config.replies.auto_reply_pause == timedelta(days=7)


def test_sample_campaign_loads(project: Path) -> None:
    config = load_config(project / "config.toml")
    (campaign,) = load_campaigns(config)
    assert campaign.name == "checkin"  # the file stem
    assert campaign.account == "default"
    assert campaign.audience.tags == ("advisory", "internship-host")
    assert campaign.window.days == frozenset({0, 1, 2, 3})
    assert (campaign.window.start, campaign.window.end) == (time(8, 30), time(15, 30))
    assert [(b.first, b.last) for b in campaign.blackouts] == [
        (date(2026, 12, 21), date(2027, 1, 1)),
        (date(2027, 3, 15), date(2027, 3, 19)),
    ]
    assert [s.template for s in campaign.steps] == ["checkin", "followup", "last_call"]
    assert [s.after for s in campaign.steps] == [
        timedelta(0),
        timedelta(days=7),
        timedelta(days=10),
    ]
    first, second, third = campaign.steps
    assert first.subject and "{{ partner.organization }}" in first.subject
    assert second.subject is None and second.thread
    assert third.subject is None and third.thread


def test_campaign_name_is_the_file_stem_unless_set(project: Path) -> None:
    config = load_config(project / "config.toml")
    (project / "campaigns" / "checkin.toml").rename(project / "campaigns" / "fall.toml")
    assert [c.name for c in load_campaigns(config)] == ["fall"]
    edit(project / "campaigns" / "fall.toml", "description =", 'name = "autumn"\ndescription =')
    assert [c.name for c in load_campaigns(config)] == ["autumn"]


def test_audience_left_out_means_everyone(project: Path) -> None:
    path = project / "campaigns" / "checkin.toml"
    edit(path, "[audience]", "[ignored]")
    edit(path, 'tags = ["advisory", "internship-host"]\n', "")
    edit(path, "[ignored]", "")
    (campaign,) = load_campaigns(load_config(project / "config.toml"))
    assert campaign.audience.is_everyone


# --------------------------------------------------------------------------- discovery


def test_find_config_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert find_config(None) == Path("config.toml")
    monkeypatch.setenv("OUTREACH_CONFIG", str(tmp_path / "env.toml"))
    assert find_config(None) == tmp_path / "env.toml"
    assert find_config(tmp_path / "flag.toml") == tmp_path / "flag.toml"


def _broken_project(root: Path) -> Path:
    make_project(root)
    edit(root / "config.toml", "[outreach]", "[outreach]\nbroken_on_purpose = 1")
    return root


def test_config_flag_wins_over_environment_and_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = make_project(tmp_path / "good")
    broken = _broken_project(tmp_path / "broken")
    monkeypatch.chdir(broken)
    monkeypatch.setenv("OUTREACH_CONFIG", str(broken / "config.toml"))
    assert invoke(["--config", str(good / "config.toml"), "check"]).exit_code == 0


def test_environment_wins_over_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    good = make_project(tmp_path / "good")
    broken = _broken_project(tmp_path / "broken")
    monkeypatch.chdir(broken)
    monkeypatch.setenv("OUTREACH_CONFIG", str(good / "config.toml"))
    assert invoke(["check"]).exit_code == 0
    monkeypatch.setenv("OUTREACH_CONFIG", str(broken / "config.toml"))
    assert_input_error(invoke(["check"]), str(broken / "config.toml"), "broken_on_purpose")


def test_config_toml_in_the_current_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    good = make_project(tmp_path / "good")
    monkeypatch.chdir(good)
    assert invoke(["check"]).exit_code == 0
    monkeypatch.chdir(tmp_path)
    line = assert_input_error(invoke(["check"]), "config.toml", "not found")
    assert "outreach init" in line  # the hint


def test_relative_paths_resolve_against_the_config_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = make_project(tmp_path / "project")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = load_config(Path("../project/config.toml"))
    assert config.database.resolve() == (project / "outreach.db").resolve()
    assert config.campaigns_dir.resolve() == (project / "campaigns").resolve()
    assert config.templates_dir.resolve() == (project / "templates").resolve()
    assert config.database.is_absolute()

    result = invoke(
        ["--config", "../project/config.toml", "partners", "import", str(project / "partners.csv")]
    )
    assert result.exit_code == 0, result.output
    assert (project / "outreach.db").exists()
    assert not (elsewhere / "outreach.db").exists()
    assert invoke(["--config", "../project/config.toml", "check"]).exit_code == 0


def test_folders_can_be_renamed_in_the_config(project: Path) -> None:
    (project / "campaigns").rename(project / "my campaigns")
    edit(project / "config.toml", 'campaigns = "campaigns"', 'campaigns = "my campaigns"')
    config = load_config(project / "config.toml")
    assert [c.name for c in load_campaigns(config)] == ["checkin"]


# --------------------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("7d", timedelta(days=7)),
        ("36h", timedelta(hours=36)),
        ("30m", timedelta(minutes=30)),
        ("5s", timedelta(seconds=5)),
        ("1w", timedelta(weeks=1)),
        ("1d12h", timedelta(days=1, hours=12)),
        ("1.5h", timedelta(minutes=90)),
        ("0s", timedelta(0)),
        (" 7d ", timedelta(days=7)),
        ("7D", timedelta(days=7)),
        ("1d 12h", timedelta(days=1, hours=12)),
    ],
)
def test_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "7",
        "d",
        "7x",
        "7 days",
        "-7d",
        "+7d",
        "7d-",
        "seven days",
        "7dd",
        "1e3s",
        "99999999999999d",
        "999999999d",
        "7d,3h",
        "P7D",
    ],
)
def test_bad_durations_raise_value_error(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_a_duration_must_be_a_string() -> None:
    with pytest.raises(ValueError):
        parse_duration(7)  # type: ignore[arg-type]


@pytest.mark.parametrize("text", ["7d", "36h", "30m", "5s", "1d12h30m5s", "0s"])
def test_format_duration_round_trips(text: str) -> None:
    delta = parse_duration(text)
    assert parse_duration(format_duration(delta)) == delta


def test_bad_duration_in_config_names_file_line_and_key(project: Path) -> None:
    path = project / "config.toml"
    edit(path, 'jitter = "3s"', 'jitter = "3 secs"')
    (problem,) = problems_of(path)
    assert problem.startswith(
        f"{path}:{line_of(path, 'jitter =')}: accounts.default.limits.jitter:"
    )
    assert "'3 secs' is not a duration" in problem


def test_huge_duration_is_a_problem_not_a_crash(project: Path) -> None:
    path = project / "campaigns" / "checkin.toml"
    edit(path, 'after = "7d"', 'after = "99999999999999d"')
    with pytest.raises(Problems) as caught:
        load_campaigns(load_config(project / "config.toml"))
    (problem,) = caught.value.problems
    assert f"{path}:{line_of(path, 'after = ')}: steps[1].after:" in problem


def test_duration_written_as_a_number_is_a_type_error(project: Path) -> None:
    path = project / "config.toml"
    edit(path, 'poll_every = "2m"', "poll_every = 120")
    (problem,) = problems_of(path)
    assert f":{line_of(path, 'poll_every')}: worker.poll_every: expected a string" in problem


# --------------------------------------------------------------------------- servers


@pytest.mark.parametrize(
    ("security", "host"),
    [
        ("tls", "smtp.example.org"),
        ("starttls", "smtp.example.org"),
        ("none", "127.0.0.1"),
        ("none", "localhost"),
        ("none", "::1"),
    ],
)
def test_security_modes(tmp_path: Path, security: str, host: str) -> None:
    path = minimal_config(tmp_path, f'host = "{host}", port = 2525, security = "{security}"')
    smtp = load_config(path).accounts["default"].smtp
    assert (smtp.host, smtp.port, smtp.security) == (host, 2525, security)


def test_security_defaults(tmp_path: Path) -> None:
    path = minimal_config(
        tmp_path,
        'host = "smtp.example.org"',
        extra='imap = { host = "imap.example.org" }\n',
    )
    account = load_config(path).accounts["default"]
    assert (account.smtp.port, account.smtp.security) == (587, "starttls")
    assert account.imap is not None
    assert (account.imap.port, account.imap.security, account.imap.folder) == (993, "tls", "INBOX")


def test_imap_may_be_left_out(tmp_path: Path) -> None:
    path = minimal_config(tmp_path, 'host = "127.0.0.1", port = 2525, security = "none"')
    assert load_config(path).accounts["default"].imap is None


def test_unknown_security_mode(tmp_path: Path) -> None:
    path = minimal_config(tmp_path, 'host = "smtp.example.org", security = "ssl"')
    (problem,) = problems_of(path)
    assert problem.startswith(f"{path}:5: accounts.default.smtp.security:")
    assert "'ssl'" in problem and "tls, starttls, none" in problem


@pytest.mark.parametrize("host", ["smtp.example.org", "10.0.0.5", "127.0.0.1.example.org"])
def test_security_none_is_refused_for_other_hosts(tmp_path: Path, host: str) -> None:
    path = minimal_config(tmp_path, f'host = "{host}", security = "none"')
    (problem,) = problems_of(path)
    assert problem.startswith(f"{path}:5: accounts.default.smtp.security:")
    assert "loopback" in problem and repr(host) in problem


def test_password_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = minimal_config(
        tmp_path, 'host = "smtp.example.org", username = "jlee", password_env = "TEST_PW_VAR"'
    )
    smtp = load_config(path).accounts["default"].smtp
    monkeypatch.setenv("TEST_PW_VAR", "s3cret value")
    assert server_password(smtp) == "s3cret value"
    monkeypatch.delenv("TEST_PW_VAR")
    with pytest.raises(ConfigError) as caught:
        server_password(smtp)
    assert "TEST_PW_VAR" in str(caught.value)
    assert "accounts.default.smtp.password_env" in str(caught.value)
    assert caught.value.exit_code == 2


def test_password_never_read_from_the_file(tmp_path: Path) -> None:
    path = minimal_config(tmp_path, 'host = "smtp.example.org", username = "u", password = "x"')
    (problem,) = problems_of(path)
    assert "accounts.default.smtp.password: unknown key" in problem


def test_password_from_command(tmp_path: Path) -> None:
    path = minimal_config(
        tmp_path,
        'host = "smtp.example.org", username = "jlee", password_cmd = "printf \'s3cret\\\\n\'"',
    )
    smtp = load_config(path).accounts["default"].smtp
    assert server_password(smtp) == "s3cret"


def test_failing_password_command(tmp_path: Path) -> None:
    path = minimal_config(
        tmp_path, 'host = "smtp.example.org", username = "jlee", password_cmd = "exit 3"'
    )
    with pytest.raises(ConfigError, match=r"accounts\.default\.smtp\.password_cmd.*3"):
        server_password(load_config(path).accounts["default"].smtp)


def test_no_password_needed_without_login(tmp_path: Path) -> None:
    path = minimal_config(tmp_path, 'host = "127.0.0.1", port = 2525, security = "none"')
    assert server_password(load_config(path).accounts["default"].smtp) is None


def test_password_env_and_cmd_together_is_a_problem(tmp_path: Path) -> None:
    path = minimal_config(
        tmp_path,
        'host = "smtp.example.org", username = "u", password_env = "A", password_cmd = "echo x"',
    )
    (problem,) = problems_of(path)
    assert "accounts.default.smtp" in problem and "not both" in problem


def test_password_without_username_is_a_problem(tmp_path: Path) -> None:
    path = minimal_config(tmp_path, 'host = "smtp.example.org", password_env = "A"')
    (problem,) = problems_of(path)
    assert "accounts.default.smtp" in problem and "username" in problem


def test_check_warns_about_a_missing_password_variable(project: Path) -> None:
    result = invoke(["check"], project=project)
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
    assert any("OUTREACH_SMTP_PASSWORD" in w and "password_env" in w for w in warnings)
    assert any("OUTREACH_IMAP_PASSWORD" in w for w in warnings)
    result = invoke(
        ["check"],
        project=project,
        env={"OUTREACH_SMTP_PASSWORD": "x", "OUTREACH_IMAP_PASSWORD": "y"},
    )
    assert result.exit_code == 0
    assert "warning" not in result.stderr


def test_server_settings_password_is_only_looked_up_when_asked(tmp_path: Path) -> None:
    settings = ServerSettings(
        kind="smtp",
        key_path="accounts.x.smtp",
        source=tmp_path / "config.toml",
        host="smtp.example.org",
        port=587,
        security="starttls",
        username="u",
        password_env="SURELY_NOT_SET_ANYWHERE_42",
    )
    assert "SURELY_NOT_SET_ANYWHERE_42" not in os.environ
    with pytest.raises(ConfigError, match="SURELY_NOT_SET_ANYWHERE_42"):
        server_password(settings)


# --------------------------------------------------------------------------- unknown keys


@pytest.mark.parametrize(
    ("old", "new", "key", "suggestion"),
    [
        ("[outreach]", "[outreach]\ndatabse = 'x.db'", "outreach.databse", "database"),
        ("[worker]", "[wroker]", "wroker", "worker"),
        (
            'folder = "INBOX"',
            'folder = "INBOX", fodler = "X"',
            "accounts.default.imap.fodler",
            "folder",
        ),
        ("per_day = 500", "per_dya = 500", "accounts.default.limits.per_dya", "per_day"),
        (
            "soft_bounce_limit = 3",
            "soft_bounce_limt = 3",
            "replies.soft_bounce_limt",
            "soft_bounce_limit",
        ),
    ],
)
def test_unknown_config_key_names_file_line_and_key(
    project: Path, old: str, new: str, key: str, suggestion: str
) -> None:
    path = project / "config.toml"
    edit(path, old, new)
    (problem,) = problems_of(path)
    typo = key.rpartition(".")[2]
    assert problem.startswith(f"{path}:{line_of(path, typo)}: {key}: unknown key")
    assert f"did you mean '{suggestion}'" in problem


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        ("description =", "desciption = 'x'\ndescription =", "desciption"),
        ('hours = "08:30-15:30"', 'hour = "08:30-15:30"', "window.hour"),
        ('after = "7d"', 'after = "7d"\nsubjet = "x"', "steps[1].subjet"),
        ('after = "10d"', 'after = "10d"\ntemplat = "x"', "steps[2].templat"),
        ('name = "Spring break"', 'nmae = "Spring break"', "blackout[1].nmae"),
    ],
)
def test_unknown_campaign_key_names_file_line_and_key(
    project: Path, old: str, new: str, key: str
) -> None:
    path = project / "campaigns" / "checkin.toml"
    edit(path, old, new)
    with pytest.raises(Problems) as caught:
        load_campaigns(load_config(project / "config.toml"))
    (problem,) = caught.value.problems
    typo = re.split(r"[.\]]", key)[-1]
    assert problem.startswith(f"{path}:{line_of(path, typo + ' =')}: {key}: unknown key"), problem


def test_problems_in_later_steps_point_at_their_own_lines(project: Path) -> None:
    path = project / "campaigns" / "checkin.toml"
    edit(path, 'template = "followup"', 'template = "folowup"')
    edit(path, 'after = "10d"', 'after = "ten days"')
    with pytest.raises(Problems) as caught:
        load_campaigns(load_config(project / "config.toml"))
    assert caught.value.problems[0].startswith(
        f"{path}:{line_of(path, 'folowup')}: steps[1].template: template 'folowup' not found"
    )
    assert caught.value.problems[1].startswith(
        f"{path}:{line_of(path, 'ten days')}: steps[2].after:"
    )


def test_commented_out_keys_are_not_taken_for_the_real_line(project: Path) -> None:
    path = project / "campaigns" / "checkin.toml"  # holds "# start = 2026-09-08"
    edit(path, "[audience]", 'start = "next fall"\n\n[audience]')
    with pytest.raises(Problems) as caught:
        load_campaigns(load_config(project / "config.toml"))
    (problem,) = caught.value.problems
    assert problem.startswith(f"{path}:{line_of(path, 'next fall')}: start:")


def test_wrong_type_names_file_line_key_and_types(project: Path) -> None:
    path = project / "config.toml"
    edit(path, "port = 587", 'port = "587"')
    (problem,) = problems_of(path)
    assert problem == (
        f"{path}:{line_of(path, 'port = ')}: accounts.default.smtp.port: "
        "expected an integer, got a string"
    )


def test_toml_syntax_error_names_file_and_line(project: Path) -> None:
    path = project / "config.toml"
    edit(path, "[worker]", "[worker")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value).startswith(f"{path}:{line_of(path, '[worker')}: TOML syntax error")


def test_config_that_is_not_utf8(project: Path) -> None:
    path = project / "config.toml"
    path.write_bytes(path.read_bytes().replace(b"Lincoln", b"Lincoln \xe9"))
    with pytest.raises(InputError, match=re.escape(str(path)) + ".*UTF-8"):
        load_config(path)


def test_unknown_time_zone_in_config(project: Path) -> None:
    path = project / "config.toml"
    edit(path, 'timezone = "America/Chicago"', 'timezone = "America/Chicag"')
    (problem,) = problems_of(path)
    assert problem.startswith(f"{path}:{line_of(path, 'timezone =')}: outreach.timezone:")
    assert "America/Chicag" in problem


def test_bad_from_address(project: Path) -> None:
    path = project / "config.toml"
    edit(path, "<jlee@district.example>", "<jlee@district>")
    (problem,) = problems_of(path)
    assert problem.startswith(f"{path}:{line_of(path, 'from =')}: accounts.default.from:")


def test_unsubscribe_url_must_be_https(project: Path) -> None:
    path = project / "config.toml"
    edit(
        path,
        "[accounts.default.limits]",
        '[accounts.default.unsubscribe]\nurl = "http://district.example/u"\n\n'
        "[accounts.default.limits]",
    )
    (problem,) = problems_of(path)
    assert "accounts.default.unsubscribe.url" in problem and "https" in problem


# --------------------------------------------------------------------------- every problem


def test_check_reports_every_config_problem_at_once(project: Path) -> None:
    path = project / "config.toml"
    edit(path, 'database = "outreach.db"', 'databse = "outreach.db"')
    edit(path, "port = 587", 'port = "587"')
    edit(path, 'security = "tls"', 'security = "ssl"')
    edit(path, 'poll_every = "2m"', 'poll_every = "2 minutes"')
    edit(path, 'timezone = "America/Chicago"', 'timezone = "Central"')
    result = invoke(["check"], project=project)
    assert result.exit_code == 2
    lines = error_lines(result)
    assert len(lines) == 5, result.output
    for key in (
        "outreach.databse",
        "accounts.default.smtp.port",
        "accounts.default.imap.security",
        "worker.poll_every",
        "outreach.timezone",
    ):
        assert any(f"{path}:" in line and f": {key}: " in line for line in lines), key
    assert "5 problems found" in result.stderr


def test_check_reports_every_campaign_and_template_problem_at_once(project: Path) -> None:
    campaign = project / "campaigns" / "checkin.toml"
    edit(campaign, 'hours = "08:30-15:30"', 'hours = "8:30 to 15:30"')
    edit(campaign, 'after = "7d"', 'after = "a week"')
    edit(campaign, 'days = ["mon", "tue", "wed", "thu"]', 'days = ["mon", "tue", "wednes", "thx"]')
    (project / "campaigns" / "second.toml").write_text(
        'account = "nobody"\n[[steps]]\ntemplate = "nothing"\nsubject = "Hi"\n', encoding="utf-8"
    )
    (project / "templates" / "broken.txt.j2").write_text("{% if %}\n", encoding="utf-8")
    result = invoke(["check"], project=project)
    assert result.exit_code == 2
    text = "\n".join(error_lines(result))
    for needle in (
        "window.hours",
        "steps[1].after",
        "'thx' is not a day",
        "second.toml:1: account",
        "second.toml:3: steps[0].template",
        "broken.txt.j2:1: template syntax error",
    ):
        assert needle in text, needle
    assert "6 problems found" in result.stderr


def test_the_first_problem_and_a_count_for_other_commands(project: Path) -> None:
    path = project / "config.toml"
    edit(path, 'database = "outreach.db"', 'databse = "outreach.db"')
    edit(path, 'poll_every = "2m"', 'poll_every = "2 minutes"')
    result = invoke(["partners", "list"], project=project)
    line = assert_input_error(result, f"{path}:", "outreach.databse")
    assert "1 more" in line and "outreach check" in line
    assert len(result.stderr.strip().splitlines()) == 1


def test_empty_window_is_reported_alongside_other_problems(project: Path) -> None:
    path = project / "campaigns" / "checkin.toml"
    edit(path, 'account = "default"', 'account = "nobody"')
    edit(path, 'days = ["mon", "tue", "wed", "thu"]', "days = []")
    with pytest.raises(Problems) as caught:
        load_campaigns(load_config(project / "config.toml"))
    keys = [problem.split(": ")[1] for problem in caught.value.problems]
    assert keys == ["account", "window.days"]


@pytest.mark.parametrize("name", ["partner", "account", "campaign", "step"])
def test_template_vars_cannot_take_a_name_outreach_uses(project: Path, name: str) -> None:
    path = project / "config.toml"
    edit(path, 'phone = "(555) 010-0199"', f'{name} = "x"')
    (problem,) = problems_of(path)
    assert problem.startswith(f"{path}:{line_of(path, name + ' = ')}: template_vars.{name}:")


def test_steps_of_the_wrong_type_is_one_problem(project: Path) -> None:
    (project / "campaigns" / "checkin.toml").write_text('steps = "checkin"\n', encoding="utf-8")
    with pytest.raises(Problems) as caught:
        load_campaigns(load_config(project / "config.toml"))
    (problem,) = caught.value.problems
    assert ":1: steps: expected a list, got a string" in problem


@pytest.mark.parametrize(
    "value",
    [
        "jlee@district.example, boss@district.example",
        "Lee, Jordan <jlee@district.example>",
    ],
)
def test_from_must_be_exactly_one_address(project: Path, value: str) -> None:
    path = project / "config.toml"
    edit(path, 'from = "Jordan Lee <jlee@district.example>"', f"from = '{value}'")
    (problem,) = problems_of(path)
    assert problem.startswith(f"{path}:{line_of(path, 'from =')}: accounts.default.from:")
    assert "more than one address" in problem and "double quotes" in problem


@pytest.mark.parametrize(
    ("value", "email", "name"),
    [
        ('"Lee, Jordan" <JLee@District.example>', "jlee@district.example", "Lee, Jordan"),
        ("jlee@district.example", "jlee@district.example", ""),
        ("José Pérez <jp@district.example>", "jp@district.example", "José Pérez"),
    ],
)
def test_from_forms(project: Path, value: str, email: str, name: str) -> None:
    path = project / "config.toml"
    edit(path, 'from = "Jordan Lee <jlee@district.example>"', f"from = '{value}'")
    account = load_config(path).accounts["default"]
    assert (account.from_email, account.from_name) == (email, name)


# --------------------------------------------------------------------------- any value, anywhere

toml_values = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(
        lambda f: (
            "nan"
            if f != f
            else ("inf" if f == float("inf") else "-inf")
            if f in (float("inf"), float("-inf"))
            else repr(f)
        )
    ),
    st.booleans().map(lambda b: "true" if b else "false"),
    st.text(st.characters(exclude_categories=["Cs"]), max_size=30).map(json.dumps),
    st.sampled_from(
        [
            '""',
            '"7d"',
            '"0s"',
            '"none"',
            '"tls"',
            '"mon"',
            '"09:00-16:00"',
            '"24:00-01:00"',
            '"x@y"',
            '"Nowhere/Zone"',
            '"../../etc/passwd"',
            "2026-01-01",
            "10:30:00",
            "2026-01-01T10:00:00",
            "2026-01-01T10:00:00-05:00",
            "[]",
            "{}",
            '["a", 1]',
            "[1]",
            "[[]]",
            "{ x = 1 }",
            "[{ from = 2026-01-01 }]",
            "[{}]",
            '"default"',
            '"checkin"',
        ]
    ),
)

ASSIGNMENT = re.compile(r"(?m)(?:^|[{,]\s*)([A-Za-z_]+)\s*=\s*")


def mutate(text: str, which: int, value: str) -> str:
    """Replace the value of the `which`-th assignment (top-level or inline) by `value`."""
    found = list(ASSIGNMENT.finditer(text))
    match = found[which % len(found)]
    rest = text[match.end() :]
    # the old value ends at the end of the line, or at `,`/`}` inside an inline table
    if text[match.start()] in "{,":
        end = re.search(r"\s*[,}]", rest)
        stop = end.start() if end else len(rest)
        if rest[:1] in "[{" or rest[:1] == '"':
            stop = _balanced(rest)
    else:
        line_end = rest.find("\n")
        stop = len(rest) if line_end < 0 else line_end
        if rest[:1] in "[{":
            stop = max(stop, _balanced(rest))
    return text[: match.end()] + value + rest[stop:]


def _balanced(rest: str) -> int:
    """End of the value at the start of `rest`: a string, or a bracketed array or table."""
    if rest[:1] == '"':
        index = 1
        while index < len(rest) and rest[index] != '"':
            index += 2 if rest[index] == "\\" else 1
        return index + 1
    depth, index, in_string = 0, 0, False
    for index, char in enumerate(rest):
        if char == '"':
            in_string = not in_string
        elif not in_string and char in "[{":
            depth += 1
        elif not in_string and char in "]}":
            depth -= 1
            if depth == 0:
                return index + 1
    return len(rest)


@pytest.fixture(scope="module")
def sample_texts() -> tuple[str, str]:
    return (
        (SAMPLE / "config.toml").read_text(encoding="utf-8"),
        (SAMPLE / "campaigns" / "checkin.toml").read_text(encoding="utf-8"),
    )


LOCATED = re.compile(r"^(?P<file>/\S+?)(:\d+)?: ")


def assert_located(problem: str, root: Path) -> None:
    """One line that begins with a file of the project (and its line where there is one)."""
    found = LOCATED.match(problem)
    assert found and Path(found["file"]).is_relative_to(root), problem
    assert "\n" not in problem and "Traceback" not in problem


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(which=st.integers(min_value=0, max_value=200), value=toml_values, in_campaign=st.booleans())
def test_any_value_for_any_key_is_loaded_or_reported(
    tmp_path_factory: pytest.TempPathFactory,
    sample_texts: tuple[str, str],
    which: int,
    value: str,
    in_campaign: bool,
) -> None:
    root = tmp_path_factory.mktemp("mutant")
    make_project(root)
    config_text, campaign_text = sample_texts
    target = root / ("campaigns/checkin.toml" if in_campaign else "config.toml")
    target.write_text(
        mutate(campaign_text if in_campaign else config_text, which, value), encoding="utf-8"
    )
    try:
        config = load_config(root / "config.toml")
        load_campaigns(config)
    except (ConfigError, Problems) as exc:
        for problem in exc.problems if isinstance(exc, Problems) else [str(exc)]:
            assert_located(problem, root)
    report = check_all(root / "config.toml")
    for problem in report.problems + report.warnings:
        assert_located(problem, root)


# --------------------------------------------------------------------------- every key checked

# Every key outreach reads, with a good value; tables as [section] headers so each key is on
# its own line. `steps[1]` is the second [[steps]] table.
FULL_CONFIG: dict[str, dict[str, str]] = {
    "outreach": {
        "database": '"outreach.db"',
        "campaigns": '"campaigns"',
        "templates": '"templates"',
        "timezone": '"America/Chicago"',
    },
    "template_vars": {"program": '"Lincoln High CTE"'},
    "accounts.default": {
        "from": '"Jordan Lee <jlee@district.example>"',
        "reply_to": '"jlee@district.example"',
        "save_sent": "true",
        "owners": '["jlee"]',
    },
    "accounts.default.smtp": {
        "host": '"smtp.district.example"',
        "port": "587",
        "security": '"starttls"',
        "username": '"jlee"',
        "auth": '"password"',
        "password_env": '"SMTP_PW"',
        "ca_file": '"ca.pem"',
        "timeout": '"30s"',
    },
    "accounts.default.imap": {
        "host": '"imap.district.example"',
        "port": "993",
        "security": '"tls"',
        "username": '"jlee"',
        "password_cmd": '"echo secret"',
        "ca_file": '"ca.pem"',
        "timeout": '"30s"',
        "folder": '"INBOX"',
        "sent_folder": '"Sent"',
        "idle": "true",
    },
    "accounts.default.limits": {
        "preset": '"gmail"',
        "per_minute": "5",
        "per_day": "100",
        "jitter": '"1s"',
        "retry": '["1m", "1h"]',
        "concurrency": "1",
    },
    "accounts.default.unsubscribe": {
        "mailto": '"unsubscribe@district.example"',
        "url": '"https://district.example/u/{email}"',
    },
    # an OAuth2 account: the keys a password account cannot have
    "accounts.cloud": {"from": '"Sam Ortiz <sortiz@district.example>"'},
    "accounts.cloud.smtp": {
        "host": '"smtp.district.example"',
        "username": '"sortiz@district.example"',
        "auth": '"oauth2"',
        "sasl": '"xoauth2"',
    },
    "accounts.cloud.imap": {
        "host": '"imap.district.example"',
        "username": '"sortiz@district.example"',
        "auth": '"oauth2"',
        "sasl": '"oauthbearer"',
    },
    "accounts.cloud.oauth2": {
        "provider": '"custom"',
        "client_id": '"outreach-test"',
        "client_secret_env": '"CLOUD_SECRET"',
        "device_authorization_url": '"https://login.district.example/device"',
        "token_url": '"https://login.district.example/token"',
        "authorization_url": '"https://login.district.example/authorize"',
        "revocation_url": '"https://login.district.example/revoke"',
        "scopes": '["imap", "smtp"]',
    },
    # a Microsoft tenant, signing in through a command instead
    "accounts.ms": {"from": '"Ana Ruiz <aruiz@district.example>"'},
    "accounts.ms.smtp": {
        "host": '"smtp.office365.com"',
        "username": '"aruiz@district.example"',
        "auth": '"oauth2"',
    },
    "accounts.ms.oauth2": {
        "provider": '"microsoft"',
        "client_id": '"00000000-0000-0000-0000-000000000000"',
        "tenant": '"organizations"',
        "token_cmd": '"echo token"',
    },
    "worker": {
        "poll_every": '"2m"',
        "send_every": '"2m"',
        "idle": "false",
        "shutdown_timeout": '"30s"',
    },
    "replies": {
        "auto_reply_pause": '"7d"',
        "soft_bounce_limit": "3",
        "max_message_size": "1048576",
        "batch_size": "100",
    },
    "digest": {
        "to": '"jlee@district.example"',
        "account": '"default"',
        "at": '"07:00"',
        "per_owner": "true",
    },
}
FULL_CAMPAIGN: dict[str, dict[str, str]] = {
    "": {
        "name": '"full"',
        "description": '"Every key"',
        "account": '"owner"',
        "fallback_account": '"default"',
        "start": "2026-09-08",
        "enabled": "true",
        "match_domain": "false",
        "repeat": '"120d"',
        "until": "2027-06-30",
        "blackout": '[{ from = 2026-12-21, to = 2027-01-01, name = "Winter break" }]',
    },
    "audience": {
        "tags": '["advisory"]',
        "pathways": '["Health Science"]',
        "industries": '["Healthcare"]',
        "owners": '["jlee"]',
        "exclude_tags": '["paused"]',
    },
    "window": {"days": '["mon", "tue"]', "hours": '"09:00-16:00"'},
    "steps[0]": {"template": '"checkin"', "subject": '"Hello"'},
    "steps[1]": {
        "template": '"followup"',
        "after": '"7d"',
        "thread": "false",
        "subject": '"Again"',
    },
    "questions[0]": {
        "id": '"help"',
        "text": '"Is there anything we can do to help?"',
        "keywords": '["help", "intern"]',
        "asks": "true",
    },
}
WRONG = "{ wrong = 1 }"  # an inline table: the wrong type for every key above


def full_toml(sections: dict[str, dict[str, str]]) -> str:
    lines = []
    for section, keys in sections.items():
        if section.startswith(("steps[", "questions[")):
            lines.append(f"[[{section.split('[')[0]}]]")
        elif section:
            lines.append(f"[{section}]")
        lines += [f"{key} = {value}" for key, value in keys.items()]
    return "\n".join(lines) + "\n"


def every_key(sections: dict[str, dict[str, str]]) -> list[Any]:
    return [
        pytest.param(section, key, id=f"{section}.{key}".lstrip("."))
        for section, keys in sections.items()
        for key in keys
        if section != "template_vars"  # any value is a template variable
    ]


def with_value(sections: dict[str, dict[str, str]], section: str, key: str, value: str) -> str:
    return full_toml({s: {**k, key: value} if s == section else k for s, k in sections.items()})


@pytest.fixture
def full_project(project: Path) -> Path:
    (project / "config.toml").write_text(full_toml(FULL_CONFIG), encoding="utf-8")
    (project / "ca.pem").write_text("not read by these tests\n", encoding="utf-8")
    for path in (project / "campaigns").glob("*.toml"):
        path.unlink()
    (project / "campaigns" / "full.toml").write_text(full_toml(FULL_CAMPAIGN), encoding="utf-8")
    return project


def test_the_full_config_and_campaign_load_and_name_every_key_outreach_reads(
    full_project: Path,
) -> None:
    from outreach.config import campaigns as campaign_module
    from outreach.config import settings_file as module

    config = load_config(full_project / "config.toml")
    (campaign,) = load_campaigns(config)
    assert campaign.name == "full" and len(campaign.steps) == 2
    assert config.replies.max_message_size == 1048576 and config.worker.idle is False
    tables = {
        "outreach": module._OUTREACH,
        "accounts.default": module._ACCOUNT,
        "accounts.default.smtp": module._SERVER_COMMON,
        "accounts.default.imap": module._SERVER_COMMON + module._IMAP_ONLY,
        "accounts.default.limits": module._LIMITS,
        "accounts.default.unsubscribe": module._UNSUBSCRIBE,
        "accounts.cloud.oauth2": module._OAUTH2,
        "worker": module._WORKER,
        "replies": module._REPLIES,
        "digest": module._DIGEST,
        "": campaign_module._CAMPAIGN,
        "audience": campaign_module._AUDIENCE,
        "window": campaign_module._WINDOW,
    }
    written = {**FULL_CONFIG, **FULL_CAMPAIGN}
    # the OAuth2 accounts write what a password account cannot
    for kind in ("smtp", "imap"):
        written[f"accounts.default.{kind}"] = {
            **written[f"accounts.default.{kind}"],
            **written[f"accounts.cloud.{kind}"],
        }
    written["accounts.default"] = {**written["accounts.default"], "oauth2": ""}
    written["accounts.cloud.oauth2"] = {
        **written["accounts.cloud.oauth2"],
        **written["accounts.ms.oauth2"],
    }
    tables_as_keys = {
        "smtp",
        "imap",
        "limits",
        "unsubscribe",
        "audience",
        "window",
        "steps",
        "questions",
    }
    for section, allowed in tables.items():
        # a key outreach learns to read must be added here, so the test below checks it
        assert set(allowed) - tables_as_keys - {"password_cmd", "password_env"} <= set(
            written[section]
        ) | {"password_cmd", "password_env"}, section
    assert set(campaign_module._STEP) == set(FULL_CAMPAIGN["steps[1]"])
    assert set(QUESTION_KEYS) == set(FULL_CAMPAIGN["questions[0]"])
    assert [q.id for q in campaign.questions] == ["help"]
    assert {"password_env", "password_cmd"} <= set(FULL_CONFIG["accounts.default.smtp"]) | set(
        FULL_CONFIG["accounts.default.imap"]
    )


@pytest.mark.parametrize(("section", "key"), every_key(FULL_CONFIG))
def test_a_wrong_type_for_any_config_key_is_a_problem_naming_it(
    full_project: Path, section: str, key: str
) -> None:
    path = full_project / "config.toml"
    path.write_text(with_value(FULL_CONFIG, section, key, WRONG), encoding="utf-8")
    full = f"{section}.{key}"
    problems = problems_of(path)
    line = line_of(path, f"{key} = {WRONG}")
    assert any(p.startswith(f"{path}:{line}: {full}: expected ") for p in problems), problems


@pytest.mark.parametrize(("section", "key"), every_key(FULL_CAMPAIGN))
def test_a_wrong_type_for_any_campaign_key_is_a_problem_naming_it(
    full_project: Path, section: str, key: str
) -> None:
    path = full_project / "campaigns" / "full.toml"
    path.write_text(with_value(FULL_CAMPAIGN, section, key, WRONG), encoding="utf-8")
    full = f"{section}.{key}" if section else key
    with pytest.raises(Problems) as caught:
        load_campaigns(load_config(full_project / "config.toml"))
    line = line_of(path, f"{key} = {WRONG}")
    assert any(p.startswith(f"{path}:{line}: {full}: ") for p in caught.value.problems), (
        caught.value.problems
    )


@pytest.mark.parametrize(
    ("key", "value", "allowed"),
    [
        ("max_message_size", 64 * 1024, True),
        ("max_message_size", 64 * 1024 - 1, False),
        ("max_message_size", 100 * 1024 * 1024, True),
        ("max_message_size", 100 * 1024 * 1024 + 1, False),
        ("max_message_size", 10**30, False),
        ("batch_size", 1, True),
        ("batch_size", 10_000, True),
        ("batch_size", 10_001, False),
        ("soft_bounce_limit", 1, True),
        ("soft_bounce_limit", -3, False),
    ],
)
def test_replies_numbers_have_a_range(project: Path, key: str, value: int, allowed: bool) -> None:
    path = project / "config.toml"
    edit(path, "soft_bounce_limit = 3", f"soft_bounce_limit = 3\n{key} = {value}", count=1)
    if key == "soft_bounce_limit":
        edit(path, "soft_bounce_limit = 3\n", "")
    if allowed:
        assert getattr(load_config(path).replies, key) == value
    else:
        (problem,) = problems_of(path)
        assert f":{line_of(path, key + ' =')}: replies.{key}: " in problem
        assert "out of range" in problem


@pytest.mark.parametrize(
    ("old", "new", "attribute"),
    [
        ('jitter = "3s"', 'jitter = "0s"', lambda c: c.accounts["default"].limits.jitter),
        ('retry = ["1m",', 'retry = ["0s",', lambda c: c.accounts["default"].limits.retry[0]),
    ],
)
def test_zero_is_kept_where_it_means_something(
    project: Path, old: str, new: str, attribute: Any
) -> None:
    """A jitter of 0s turns it off; a retry of 0s tries again at the next cycle."""
    path = project / "config.toml"
    edit(path, old, new)
    assert attribute(load_config(path)) == timedelta(0)


def test_a_follow_up_may_go_out_at_the_next_cycle(project: Path) -> None:
    edit(project / "campaigns" / "checkin.toml", 'after = "7d"', 'after = "0s"')
    (campaign,) = load_campaigns(load_config(project / "config.toml"))
    assert campaign.steps[1].after == timedelta(0)


def test_a_value_read_after_the_verdict_is_a_bug_not_a_silent_default(tmp_path: Path) -> None:
    from outreach.config.toml_reader import KeyReader

    reader = KeyReader(tmp_path / "x.toml", "enabled = 'no'\n")
    reader.verdict()
    with pytest.raises(RuntimeError, match="enabled read after the verdict"):
        reader.get({"enabled": "no"}, "", "enabled", bool, True)


def test_disabled_campaign_is_read_as_disabled(project: Path) -> None:
    path = project / "campaigns" / "checkin.toml"
    edit(path, 'account = "default"', 'account = "default"\nenabled = false\nmatch_domain = true')
    (campaign,) = load_campaigns(load_config(project / "config.toml"))
    assert (campaign.enabled, campaign.match_domain) == (False, True)
