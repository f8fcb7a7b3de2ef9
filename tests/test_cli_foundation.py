"""`outreach init / check / preview`, help texts, README coverage, and the sample's front door."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from helpers import REPO, SAMPLE, SAMPLE_EMAILS, edit, invoke, isolate_env, make_project

from outreach.cli import cli
from outreach.cli.project import SAMPLE_FILES


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    isolate_env(monkeypatch)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return make_project(tmp_path / "project")


def sample_files() -> list[str]:
    return sorted(p.relative_to(SAMPLE).as_posix() for p in SAMPLE.rglob("*") if p.is_file())


# --------------------------------------------------------------------------- init


def test_init_writes_the_whole_sample(tmp_path: Path) -> None:
    target = tmp_path / "new project"
    result = invoke(["init", str(target)])
    assert result.exit_code == 0, result.output
    assert sorted(SAMPLE_FILES) == sample_files()  # nothing in the sample is left behind
    for name in sample_files():
        assert (target / name).read_bytes() == (SAMPLE / name).read_bytes(), name
        assert f"wrote {target / name}" in result.stdout
    assert "outreach check" in result.stdout  # tells the user what to do next


def test_init_defaults_to_the_current_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert invoke(["init"]).exit_code == 0
    assert (tmp_path / "config.toml").is_file()
    assert invoke(["check"]).exit_code == 0


def test_init_never_overwrites(tmp_path: Path) -> None:
    target = tmp_path / "p"
    assert invoke(["init", str(target)]).exit_code == 0
    edit(target / "config.toml", 'program = "Lincoln High CTE"', 'program = "Roosevelt CTE"')
    (target / "partners.csv").write_text("email\nmine@example.org\n", encoding="utf-8")
    (target / "templates" / "followup.txt.j2").unlink()
    mine = {name: (target / name).read_bytes() for name in ("config.toml", "partners.csv")}

    result = invoke(["init", str(target)])
    assert result.exit_code == 0, result.output
    for name, data in mine.items():
        assert (target / name).read_bytes() == data
        assert f"kept  {target / name}" in result.stdout
    assert f"wrote {target / 'templates' / 'followup.txt.j2'}" in result.stdout
    assert (target / "templates" / "followup.txt.j2").read_bytes() == (
        SAMPLE / "templates" / "followup.txt.j2"
    ).read_bytes()


def test_init_keeps_a_file_even_when_it_is_empty(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_bytes(b"")
    assert invoke(["init", str(tmp_path)]).exit_code == 0
    assert (tmp_path / "config.toml").read_bytes() == b""


def test_init_on_a_file_is_a_usage_error(tmp_path: Path) -> None:
    path = tmp_path / "a-file"
    path.write_text("x", encoding="utf-8")
    result = invoke(["init", str(path)])
    assert result.exit_code == 2
    assert path.read_text(encoding="utf-8") == "x"


# --------------------------------------------------------------------------- check


def test_check_passes_on_the_sample_without_partners(project: Path) -> None:
    result = invoke(["check"], project=project)
    assert result.exit_code == 0, result.output
    assert "ok: everything checks out" in result.stdout
    assert "checkin: no partner in its audience yet; rendered for a sample partner" in result.stdout
    assert "error" not in result.output


def test_check_passes_on_the_sample_with_partners(project: Path) -> None:
    imported = invoke(["partners", "import", str(project / "partners.csv")], project=project)
    assert imported.exit_code == 0, imported.output
    result = invoke(["check"], project=project)
    assert result.exit_code == 0, result.output
    assert "checkin: 3 step(s) rendered for 4 partner(s)" in result.stdout
    assert "ok: everything checks out" in result.stdout


def test_check_touches_no_database_and_no_network(project: Path) -> None:
    # the sample names smtp.district.example, which does not resolve: check must not try
    assert invoke(["check"], project=project).exit_code == 0
    assert not (project / "outreach.db").exists()


def test_check_renders_for_partners_in_the_audience_only(project: Path) -> None:
    imported = invoke(["partners", "import", str(project / "partners.csv")], project=project)
    assert imported.exit_code == 0
    # a template that fails only for a partner outside the audience is not a problem
    edit(
        project / "campaigns" / "checkin.toml",
        'tags = ["advisory", "internship-host"]',
        'tags = ["advisory"]',
    )
    edit(
        project / "templates" / "followup.txt.j2",
        "Thank you,",
        "{% if 'internship-host' in partner.tags and 'advisory' not in partner.tags %}"
        "{{ partner.missing }}{% endif %}\nThank you,",
    )
    result = invoke(["check"], project=project)
    assert result.exit_code == 0, result.output
    assert "rendered for 2 partner(s)" in result.stdout


# --------------------------------------------------------------------------- preview


def test_preview_one_step_for_one_partner(project: Path) -> None:
    invoke(["partners", "import", str(project / "partners.csv")], project=project)
    result = invoke(
        ["preview", "checkin", "--partner", "maria.gonzalez@mercyhealth.example", "--step", "2"],
        project=project,
    )
    assert result.exit_code == 0, result.output
    head, _, body = result.stdout.partition("\n\n")
    headers = dict(line.split(": ", 1) for line in head.splitlines())
    assert headers["From"] == "Jordan Lee <jlee@district.example>"
    assert headers["To"] == "María González <maria.gonzalez@mercyhealth.example>"
    assert headers["Subject"] == "Re: Lincoln High CTE check-in: how is Mercy Health doing?"
    assert re.fullmatch(r"<\S+@district\.example>", headers["Message-ID"])
    assert re.fullmatch(r"<\S+@district\.example>", headers["In-Reply-To"])
    assert headers["References"] == headers["In-Reply-To"]
    assert "Date" in headers and "List-Unsubscribe" in headers
    assert body.startswith("Hello María,\n\nJust following up")
    assert body.rstrip().endswith("(555) 010-0199")
    assert "=" * 72 not in result.stdout  # one message only


def test_preview_every_step_with_the_html_alternative(project: Path) -> None:
    invoke(["partners", "import", str(project / "partners.csv")], project=project)
    result = invoke(
        ["preview", "checkin", "--partner", "sam.lee@bistro21.example"], project=project
    )
    assert result.exit_code == 0, result.output
    messages = result.stdout.split("\n" + "=" * 72 + "\n")
    assert len(messages) == 3
    assert "----- text/html alternative -----" in messages[0]
    assert "<li>How has your workplace changed this year?</li>" in messages[0]
    assert all("Subject: Re: " in m for m in messages[1:])
    assert "One last note from me" in messages[2]


def test_preview_without_partners_uses_a_sample_partner(project: Path) -> None:
    result = invoke(["preview", "checkin", "--step", "1"], project=project)
    assert result.exit_code == 0, result.output
    assert "a sample partner is shown" in result.stdout
    assert "Sample Organization" in result.stdout


def test_preview_repeated_steps(project: Path) -> None:
    result = invoke(["preview", "checkin", "--step", "1", "--step", "3"], project=project)
    assert result.exit_code == 0
    assert result.stdout.count("Message-ID: ") == 2


# --------------------------------------------------------------------------- help and README


def walk(group: click.Group, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, click.Command]]:
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None
        path = (*prefix, name)
        yield " ".join(path), command
        if isinstance(command, click.Group):
            yield from walk(command, path)


COMMANDS = sorted(walk(cli), key=lambda item: item[0])


def test_the_foundation_commands_exist() -> None:
    names = {name for name, _ in COMMANDS}
    assert {"init", "check", "preview", "partners", "partners import", "partners list"} <= names


@pytest.mark.parametrize(("name", "command"), COMMANDS, ids=[name for name, _ in COMMANDS])
def test_every_command_has_help_and_is_in_the_readme(name: str, command: click.Command) -> None:
    assert (command.help or "").strip(), f"`outreach {name}` has no help text"
    result = invoke([*name.split(), "--help"], prog_name="outreach")
    assert result.exit_code == 0
    assert f"Usage: outreach {name}" in result.stdout
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert re.search(rf"outreach {re.escape(name)}\b", readme), f"README never shows {name!r}"


def test_top_level_help_and_version() -> None:
    result = invoke(["--help"])
    assert result.exit_code == 0
    for name in ("init", "check", "preview", "partners"):
        assert re.search(rf"^\s+{name}\s", result.stdout, re.M)
    version = invoke(["--version"])
    assert version.exit_code == 0 and re.search(r"\d+\.\d+", version.stdout)


# --------------------------------------------------------------------------- the front door


@pytest.mark.parametrize("name", sample_files())
def test_top_level_sample_matches_the_packaged_sample(name: str) -> None:
    """config.toml, partners.csv, campaigns/ and templates/ at the repository root are what
    a new user sees first; `outreach init` writes outreach/sample/. They must not drift."""
    top = REPO / name
    assert top.is_file(), f"{name} is missing at the repository root"
    assert top.read_bytes() == (SAMPLE / name).read_bytes(), f"{name} differs from outreach/sample"


@pytest.mark.parametrize("folder", ["campaigns", "templates"])
def test_no_extra_files_in_the_top_level_sample_folders(folder: str) -> None:
    top = sorted(p.name for p in (REPO / folder).iterdir() if p.is_file())
    packaged = sorted(p.name for p in (SAMPLE / folder).iterdir() if p.is_file())
    assert top == packaged


def test_sample_roster_addresses() -> None:
    assert (
        tuple(
            line.split(",", 1)[0]
            for line in (SAMPLE / "partners.csv").read_text(encoding="utf-8").splitlines()[1:]
        )
        == SAMPLE_EMAILS
    )


def test_init_where_it_cannot_write_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x", encoding="utf-8")
    result = invoke(["init", str(blocker / "project")])
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: {blocker / 'project'}")
    assert "cannot write" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
