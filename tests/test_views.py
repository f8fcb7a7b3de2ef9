"""The SQL views (m002): readable by any SQLite client and by the sqlite-utils CLI."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from logbook import EMAILS, World, build_world
from workspace import Workspace, make_workspace

from outreach.store import Store


@pytest.fixture
def ws(tmp_path: Path, smtp_server, imap_server, monkeypatch):
    workspace = make_workspace(tmp_path, smtp_server, imap_server, monkeypatch)
    yield workspace
    workspace.close()


def plain_rows(path: Path, sql: str) -> list[dict[str, object]]:
    """Through the stdlib driver only: no function of ours is registered."""
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(sql)]
    finally:
        conn.close()


def test_views_over_real_cycles(ws: Workspace, smtp_server, imap_server):
    build_world(ws, smtp_server, imap_server)
    db = ws.root / "outreach.db"
    funnel = plain_rows(db, "SELECT * FROM campaign_funnel")
    assert funnel == [
        {
            "campaign": "checkin",
            "audience": 6,
            "sent": 6,
            "messages_sent": 9,
            "sent_per_step": '{"1":6,"2":2,"3":1}',
            "replied": 2,
            "auto_replied": 1,
            "bounced": 1,
            "unsubscribed": 1,
            "failed": 0,
            "pending": 2,
            "reply_rate": 0.3333,
            "median_hours_to_reply": 30.5,  # 5 h (María) and 56 h (Li, after the follow-up)
        }
    ]
    status = {r["email"]: r for r in plain_rows(db, "SELECT * FROM partner_status")}
    assert status[EMAILS[0]]["name"] == "María González"
    assert status[EMAILS[0]]["last_reply"] == "2026-11-24T15:00:00.000000+00:00"
    assert status[EMAILS[0]]["open_campaign"] is None and status[EMAILS[0]]["unhandled"] == 1
    assert status[EMAILS[1]]["open_campaign"] == "checkin"
    assert status[EMAILS[1]]["open_state"] == "paused"
    assert status[EMAILS[2]]["status"] == "bounced"
    assert status[EMAILS[4]]["last_contact"] == "2026-11-29T18:00:00.000000+00:00"
    log = plain_rows(
        db, "SELECT partner, kind, needs_review, handled, text FROM reply_log ORDER BY at, id"
    )
    assert [r["kind"] for r in log] == ["reply", "auto_reply", "bounce", "unsubscribe", "reply"]
    assert [r["needs_review"] for r in log] == [1, 0, 0, 0, 1]
    assert "🎉" in str(log[0]["text"])


def test_views_through_the_sqlite_utils_cli(ws: Workspace, smtp_server, imap_server):
    build_world(ws, smtp_server, imap_server)
    db = str(ws.root / "outreach.db")
    names = subprocess.run(
        [sys.executable, "-m", "sqlite_utils", "views", db],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert {v["view"] for v in json.loads(names)} >= {
        "partner_status",
        "campaign_funnel",
        "reply_log",
    }
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "sqlite_utils",
            "query",
            db,
            "SELECT partner, text FROM reply_log WHERE kind = 'reply' ORDER BY at",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rows = json.loads(out)
    assert rows[0]["partner"] == EMAILS[0] and "primavera" in rows[0]["text"]


def test_views_on_an_empty_database(tmp_path: Path):
    with Store(tmp_path / "empty.db"):
        pass
    for view in ("partner_status", "campaign_funnel", "reply_log"):
        assert plain_rows(tmp_path / "empty.db", f"SELECT * FROM {view}") == []


def test_world_fixture_is_real(ws: Workspace, smtp_server, imap_server):
    """The world is built by sending and reading mail, not by inserting rows."""
    world: World = build_world(ws, smtp_server, imap_server)
    assert len(world.smtp.messages) == 9
    assert len(world.imap.messages("INBOX")) == 5
