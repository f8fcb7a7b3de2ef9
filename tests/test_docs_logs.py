"""docs/response-logs.md documents every response-log command, option, export column and
view column: a new one without documentation fails here."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

from outreach.cli import cli
from outreach.store import Store
from outreach.views.exports import EVENT_COLUMNS, PARTNER_COLUMNS, REPLY_COLUMNS

DOC = (Path(__file__).resolve().parent.parent / "docs" / "response-logs.md").read_text(
    encoding="utf-8"
)
COMMANDS = [
    "log",
    "replies",
    "replies ack",
    "replies reclassify",
    "report",
    "export",
    "partners list",
]


def command(path: str) -> click.Command:
    found: click.Command = cli
    for name in path.split():
        assert isinstance(found, click.Group)
        found = found.commands[name]
    return found


@pytest.mark.parametrize("path", COMMANDS)
def test_every_command_and_option_is_documented(path: str):
    assert re.search(rf"`outreach {re.escape(path)}\b", DOC), path
    cmd = command(path)
    assert (cmd.help or "").strip()
    for param in cmd.params:
        if isinstance(param, click.Option) and param.name != "help":
            assert any(opt in DOC for opt in param.opts), (path, param.opts)


@pytest.mark.parametrize("columns", [EVENT_COLUMNS, REPLY_COLUMNS, PARTNER_COLUMNS])
def test_every_export_column_is_documented(columns: tuple[str, ...]):
    for column in columns:
        assert f"`{column}`" in DOC, column


@pytest.mark.parametrize("view", ["reply_log", "partner_status", "campaign_funnel"])
def test_every_view_column_is_documented(view: str, tmp_path: Path):
    with Store(tmp_path / "x.db") as store:
        names = [r["name"] for r in store.query(f"PRAGMA table_info({view})")]
    section = DOC.split(f"### `{view}`", 1)[1].split("\n### ", 1)[0]
    for name in names:
        assert f"`{name}`" in section, (view, name)
