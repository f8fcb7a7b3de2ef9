"""Helpers shared by the foundation tests (config, roster, render, CLI).

A "project" is a folder laid out like `outreach init` writes it: config.toml, partners.csv,
campaigns/, templates/. Tests copy the packaged sample and then break one thing.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from outreach.cli import cli

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "outreach" / "sample"
SAMPLE_EMAILS = (
    "maria.gonzalez@mercyhealth.example",
    "dan.oconnor@buildright.example",
    "priya.shah@netforge.example",
    "sam.lee@bistro21.example",
)
PASSWORD_VARS = ("OUTREACH_SMTP_PASSWORD", "OUTREACH_IMAP_PASSWORD")


def isolate_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No config or password from the developer's shell may leak into a test."""
    monkeypatch.delenv("OUTREACH_CONFIG", raising=False)
    for name in PASSWORD_VARS:
        monkeypatch.delenv(name, raising=False)


def make_project(root: Path) -> Path:
    """A copy of the packaged sample in `root` (created if needed); returns `root`."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copytree(SAMPLE, root, dirs_exist_ok=True)
    return root


def edit(path: Path, old: str, new: str, count: int = 1) -> None:
    """Replace `old` by `new` in a text file; the test fails if `old` is not there."""
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, count), encoding="utf-8")


def line_of(path: Path, needle: str, occurrence: int = 1) -> int:
    """1-based number of the line holding the `occurrence`-th `needle`."""
    seen = 0
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if needle in line:
            seen += 1
            if seen == occurrence:
                return number
    raise AssertionError(f"{needle!r} (#{occurrence}) not in {path}")


def invoke(args: Sequence[str], *, project: Path | None = None, **kwargs: object) -> Result:
    """Run the CLI in-process; with `project`, pass its config.toml as --config."""
    argv = list(args)
    if project is not None:
        argv = ["--config", str(project / "config.toml"), *argv]
    result = CliRunner().invoke(cli, argv, **kwargs)  # type: ignore[arg-type]
    assert_no_traceback(result)
    return result


def assert_no_traceback(result: Result) -> None:
    """Only SystemExit may leave a command: anything else would be a traceback for a user."""
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(
            f"the command raised {type(result.exception).__name__}: {result.exception}\n"
            f"output:\n{result.output}"
        ) from result.exception
    assert "Traceback" not in result.output


def error_lines(result: Result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("error: ")]


def assert_input_error(result: Result, *needles: str | re.Pattern[str]) -> str:
    """Exit code 2 and an `error:` line on stderr that holds every needle; returns that line."""
    assert result.exit_code == 2, f"exit {result.exit_code}\n{result.output}"
    lines = error_lines(result)
    assert lines, f"no error line on stderr:\n{result.output}"
    for line in lines:
        if all(_has(line, needle) for needle in needles):
            return line
    raise AssertionError(f"no error line holds all of {needles!r}:\n" + "\n".join(lines))


def _has(line: str, needle: str | re.Pattern[str]) -> bool:
    return bool(needle.search(line)) if isinstance(needle, re.Pattern) else needle in line


def write_csv(path: Path, rows: Iterable[str], *, encoding: str = "utf-8") -> Path:
    path.write_bytes(("\n".join(rows) + "\n").encode(encoding))
    return path


CSV_HEADER = "email,name,first_name,organization,industry,pathway,owner,tags,timezone"


def old_database_with_a_reply(path: Path, stop_before: str, text: str) -> set[str]:
    """A database as a version before migration `stop_before` left it, holding one partner
    (ana@shop.test) and one reply of theirs (#1, to checkin step 1) whose text is `text`:
    the next Workspace on `path` migrates it. Returns the columns `inbound` had then."""
    import sqlite_utils

    from outreach.store import migrations

    old = sqlite_utils.Database(path)
    migrations.apply(old, stop_before=stop_before)
    stamp = "2026-11-20T15:00:00.000000+00:00"
    old.execute(
        "INSERT INTO partners (email, name, created_at, updated_at) VALUES"
        " ('ana@shop.test', 'Ana', ?, ?)",
        [stamp, stamp],
    )
    old.execute(
        "INSERT INTO inbound (account, folder, uidvalidity, uid, message_id, from_addr,"
        " subject, kind, partner_id, campaign, step, text, processed_at) VALUES"
        " ('main', 'INBOX', 1, 7, '<old@shop.test>', 'ana@shop.test', 'Re: Check-in',"
        " 'reply', 1, 'checkin', 1, ?, ?)",
        [text, stamp],
    )
    old.conn.commit()
    columns = set(old["inbound"].columns_dict)
    old.close()
    return columns
