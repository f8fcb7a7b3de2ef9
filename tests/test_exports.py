"""`outreach export {events,replies,partners}` and `outreach partners list` (relationship
columns, --stale) over a database filled by real cycles."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from logbook import EMAILS, ENGLISH, SPANISH, World
from workspace import Workspace

from outreach.views.exports import EVENT_COLUMNS, PARTNER_COLUMNS, REPLY_COLUMNS
from outreach.views.relationships import Relationship, is_stale


def ok(result) -> str:
    assert result.exit_code == 0, (result.output, result.exception)
    return result.stdout


def read_csv(text: str) -> list[dict[str, str]]:
    assert text.startswith("\ufeff"), "a BOM, so spreadsheets read UTF-8"
    return list(csv.DictReader(io.StringIO(text[1:], newline="")))


# --------------------------------------------------------------------------- exports


@pytest.mark.parametrize(
    "what,columns",
    [("events", EVENT_COLUMNS), ("replies", REPLY_COLUMNS), ("partners", PARTNER_COLUMNS)],
)
def test_every_format_has_the_same_stable_columns(world: World, what, columns, tmp_path):
    as_json = json.loads(ok(world.ws.cli("export", what, "--format", "json")))
    lines = [
        json.loads(x) for x in ok(world.ws.cli("export", what, "--format", "jsonl")).splitlines()
    ]
    target = tmp_path / f"{what}.csv"
    result = world.ws.cli("export", what, "--format", "csv", "-o", str(target))
    assert result.exit_code == 0 and f"wrote {len(lines)} {what} to {target}" in result.stderr
    raw = target.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf") and b"\r\n" in raw
    rows = read_csv(raw.decode("utf-8"))
    assert as_json == lines and len(rows) == len(lines) > 0
    assert all(tuple(item) == columns for item in lines)
    assert tuple(rows[0]) == columns
    # stdout gives the same bytes as the file
    assert world.ws.cli("export", what, "--format", "csv").stdout_bytes == raw


def test_events_export_keeps_its_contract(world: World):
    events = [json.loads(x) for x in ok(world.ws.cli("export", "events")).splitlines()]
    sent = [e for e in events if e["kind"] == "sent" and e["partner"] == EMAILS[0]][0]
    assert sent["campaign"] == "checkin" and sent["step"] == 1
    assert sent["at"] == "2026-11-24T10:00:00.000000+00:00"
    assert sent["at_local"] == "2026-11-24T04:00:00-06:00"
    assert sent["message_id"].startswith("<") and sent["name"] == "María González"
    reply = [e for e in events if e["kind"] == "reply" and e["partner"] == EMAILS[0]][0]
    assert "primavera 🎉" in reply["summary"] and reply["inbound_id"]


def test_replies_export_in_a_spreadsheet(world: World):
    rows = read_csv(ok(world.ws.cli("export", "replies", "--format", "csv")))
    assert [r["kind"] for r in rows] == ["reply", "auto_reply", "bounce", "unsubscribe", "reply"]
    maria, dan, priya, _, li = rows
    assert maria["name"] == "María González" and maria["text"] == SPANISH
    assert maria["needs_review"] == "true" and maria["handled"] == "false"
    assert dan["return_date"] == "2026-12-07"
    assert priya["status_code"] == "5.1.1" and json.loads(priya["bounced"]) == [EMAILS[2]]
    assert priya["hard"] == "true"
    assert li["text"] == ENGLISH and li["step"] == "2"
    replies = json.loads(ok(world.ws.cli("export", "replies", "--format", "json")))
    assert replies[2]["bounced"] == [EMAILS[2]] and replies[2]["hard"] is True
    assert replies[0]["contact_change"] is False and replies[0]["note"] is None


def test_partners_export(world: World):
    rows = {
        r["email"]: r for r in read_csv(ok(world.ws.cli("export", "partners", "--format", "csv")))
    }
    assert rows[EMAILS[0]]["last_reply"] == "2026-11-24T15:00:00.000000+00:00"
    assert rows[EMAILS[1]]["open_campaign"] == "checkin"
    assert rows[EMAILS[1]]["open_state"] == "paused"
    assert rows[EMAILS[2]]["status"] == "bounced" and rows[EMAILS[3]]["status"] == "opted_out"
    assert rows[EMAILS[4]]["name"] == "Zoë Ødegaard" and rows[EMAILS[4]]["last_reply"] == ""


def test_a_formula_in_a_reply_stays_text_in_csv(world: World):
    world.ws.store.db.conn.execute("UPDATE inbound SET text = '=HYPERLINK(\"x\")' WHERE id = 1")
    rows = read_csv(ok(world.ws.cli("export", "replies", "--format", "csv")))
    assert rows[0]["text"] == '\'=HYPERLINK("x")'
    as_json = json.loads(ok(world.ws.cli("export", "replies", "--format", "json")))
    assert as_json[0]["text"] == '=HYPERLINK("x")'  # JSON keeps the value as it is


def test_exports_of_an_empty_database(ws: Workspace):
    for what in ("events", "replies", "partners"):
        assert json.loads(ok(ws.cli("export", what, "--format", "json"))) == []
        assert ok(ws.cli("export", what, "--format", "jsonl")) == ""
        result = ws.cli("export", what, "--format", "csv")
        assert result.exit_code == 0 and result.stdout_bytes.count(b"\r\n") == 1
        assert read_csv(result.stdout) == []


def test_export_errors(ws: Workspace, tmp_path: Path):
    bad = ws.cli("export", "messages")
    assert bad.exit_code == 2
    missing = ws.cli("export", "events", "-o", str(tmp_path / "no" / "such" / "dir.csv"))
    assert missing.exit_code == 2 and "cannot write" in missing.output


# --------------------------------------------------------------------------- partners list


def test_partners_list_shows_the_relationship(world: World):
    out = ok(world.ws.cli("partners", "list"))
    lines = out.splitlines()
    assert lines[0].split() == [
        "EMAIL",
        "NAME",
        "ORGANIZATION",
        "PATHWAY",
        "LAST",
        "CONTACT",
        "LAST",
        "REPLY",
        "OPEN",
        "CAMPAIGN",
        "STATUS",
    ]
    by_email = {line.split()[0]: line for line in lines[1:]}
    assert "2026-11-24" in by_email[EMAILS[0]] and by_email[EMAILS[0]].endswith("active")
    assert "María González" in by_email[EMAILS[0]]
    assert "checkin (paused)" in by_email[EMAILS[1]]
    assert by_email[EMAILS[2]].endswith("bounced")
    assert "2026-11-29" in by_email[EMAILS[4]] and "never" in by_email[EMAILS[4]]
    data = {p["email"]: p for p in json.loads(ok(world.ws.cli("partners", "list", "--json")))}
    maria, dan, zoe = data[EMAILS[0]], data[EMAILS[1]], data[EMAILS[4]]
    assert maria["last_contact"] == "2026-11-24T04:00:00-06:00"
    assert maria["last_reply"] == "2026-11-24T09:00:00-06:00"
    assert maria["open_campaign"] is None and maria["status"] == "active"
    assert dan["open_campaign"] == "checkin" and dan["last_reply"] is None
    assert zoe["open_campaign"] == "checkin" and zoe["last_contact"].startswith("2026-11-29")
    assert data[EMAILS[3]]["status"] == "opted_out"


def test_partners_list_stale(world: World):
    now = datetime.now(UTC)
    replied = {
        EMAILS[0]: datetime(2026, 11, 24, 15, tzinfo=UTC),
        EMAILS[5]: datetime(2026, 11, 26, 18, tzinfo=UTC),
    }

    def expected(quiet: timedelta) -> set[str]:
        return {e for e in EMAILS if e not in replied or replied[e] < now - quiet}

    for window in ("90d", "1d", "30000d"):
        days = int(window[:-1])
        listed = json.loads(ok(world.ws.cli("partners", "list", "--stale", window, "--json")))
        assert {p["email"] for p in listed} == expected(timedelta(days=days)), window
    never = {e for e in EMAILS if e not in replied}
    assert {
        line.split()[0]
        for line in ok(world.ws.cli("partners", "list", "--stale", "30000d")).splitlines()[1:]
    } == never
    bad = world.ws.cli("partners", "list", "--stale", "soon")
    assert bad.exit_code == 2 and "--stale" in bad.output


def test_partners_list_before_anything_was_sent(ws: Workspace):
    assert "no partners yet" in ok(ws.cli("partners", "list"))
    ws.add_partners([{"email": "maria@clinica.test", "name": "María González"}])
    lines = ok(ws.cli("partners", "list")).splitlines()
    assert lines[0].split() == ["EMAIL", "NAME", "ORGANIZATION", "PATHWAY", "STATUS"]
    listed = json.loads(ok(ws.cli("partners", "list", "--json")))
    assert listed[0]["last_contact"] is None and listed[0]["open_campaign"] is None
    assert ok(ws.cli("partners", "list", "--stale", "90d")).splitlines()[1].startswith("maria")


def test_is_stale():
    now = datetime(2026, 6, 1, tzinfo=UTC)
    never = Relationship(None, None, None, None)
    recent = Relationship(None, now - timedelta(days=10), None, None)
    old = Relationship(None, now - timedelta(days=100), None, None)
    assert is_stale(never, now, timedelta(days=90))
    assert not is_stale(recent, now, timedelta(days=90))
    assert is_stale(old, now, timedelta(days=90))
