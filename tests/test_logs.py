"""`outreach log`, `outreach replies` and the views, over a database filled by real cycles."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from logbook import EMAILS, ENGLISH, SPANISH, World, build_world, make_workspace
from workspace import Workspace

from outreach.timeline import format_log, parse_since, wrap


@pytest.fixture
def ws(tmp_path: Path, smtp_server, imap_server, monkeypatch):
    monkeypatch.setenv("COLUMNS", "160")  # the terminal width the log wraps to
    workspace = make_workspace(tmp_path, smtp_server, imap_server, monkeypatch)
    yield workspace
    workspace.close()


@pytest.fixture
def world(ws: Workspace, smtp_server, imap_server) -> World:
    return build_world(ws, smtp_server, imap_server)


def ok(result) -> str:
    assert result.exit_code == 0, (result.output, result.exception)
    return result.output


# --------------------------------------------------------------------------- log


def test_log_lists_every_event_in_order_in_local_time(world: World):
    out = ok(world.ws.cli("log"))
    lines = out.splitlines()
    assert lines[0].split() == ["WHEN", "PARTNER", "CAMPAIGN", "STEP", "EVENT", "DETAILS"]
    assert "times in America/Chicago" in out
    # the clock started at 2026-11-24 10:00 UTC = 04:00 in Chicago
    assert "2026-11-24 04:00" in out
    for kind in ("imported", "queued", "sent", "reply", "auto_reply", "bounce",
                 "unsubscribe", "paused", "stopped", "status"):
        assert f"  {kind}  " in out or f"  {kind} " in out, kind
    # columns are aligned: DETAILS starts at the same place on every event line
    start = lines[0].index("DETAILS")
    events = [line for line in lines[1:] if line[:4] == "2026"]
    assert all(len(line) <= start or line[start - 2 : start] == "  " for line in events)
    # the reply's own words, with the non-ASCII and the emoji kept
    assert "¡Hola! Nos encantaría recibir más estudiantes en primavera 🎉" in out
    assert "Gracias por escribir." in out


def test_log_json_and_filters(world: World):
    everything = json.loads(ok(world.ws.cli("log", "--json")))
    assert [e["id"] for e in everything] == sorted(e["id"] for e in everything)
    assert all(e["at"].endswith("-06:00") for e in everything)  # Chicago in winter
    maria = json.loads(ok(world.ws.cli("log", "--json", "--partner", "MARIA@clinica.test")))
    assert {e["partner"] for e in maria} == {EMAILS[0]}
    assert maria[0]["name"] == "María González"
    reply = [e for e in maria if e["kind"] == "reply"][0]
    assert reply["text"] == SPANISH and reply["campaign"] == "checkin" and reply["step"] == 1
    assert [e["kind"] for e in maria].count("sent") == 1
    campaign = json.loads(ok(world.ws.cli("log", "--json", "--campaign", "checkin")))
    assert campaign and all(e["campaign"] == "checkin" for e in campaign)
    assert json.loads(ok(world.ws.cli("log", "--json", "--campaign", "nope"))) == []
    late = json.loads(ok(world.ws.cli("log", "--json", "--since", "2026-11-26T12:00")))
    assert late and all(e["at"] >= "2026-11-26T12:00" for e in late)
    assert {e["kind"] for e in late} >= {"reply", "sent"}
    human = ok(world.ws.cli("log", "--partner", EMAILS[0]))
    assert human.startswith("maria@clinica.test  María González · Clínica Sol · active")
    assert "PARTNER" not in human.splitlines()[2]


def test_log_bad_input_is_one_line_and_exit_2(world: World):
    result = world.ws.cli("log", "--partner", "nobody@x.test")
    assert result.exit_code == 2 and "no partner nobody@x.test" in result.output
    result = world.ws.cli("log", "--since", "last tuesday")
    assert result.exit_code == 2 and result.output.startswith("error: --since")


def test_log_on_an_empty_database(ws: Workspace):
    assert ok(ws.cli("log")).strip() == "no events yet"
    assert json.loads(ok(ws.cli("log", "--json"))) == []


# --------------------------------------------------------------------------- pure parts


def test_parse_since_forms():
    zone = ZoneInfo("America/Chicago")
    now = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
    assert parse_since("2026-11-01", zone, now) == datetime(2026, 11, 1, tzinfo=zone)
    assert parse_since("2026-11-01T08:30", zone, now) == datetime(2026, 11, 1, 8, 30,
                                                                  tzinfo=zone)
    assert parse_since("7d", zone, now) == datetime(2026, 11, 17, 10, 0, tzinfo=UTC)
    with pytest.raises(ValueError):
        parse_since("soon", zone, now)


def test_wrap_keeps_line_breaks_and_wraps_long_lines():
    assert wrap("one\ntwo", 10) == ["one", "two"]
    assert wrap("a " * 30, 10) == ["a a a a a"] * 6
    assert wrap("", 10) == []


def test_format_log_wraps_under_the_details_column(world: World):
    from outreach.timeline import load_events

    lines = list(format_log(load_events(world.ws.store), ZoneInfo("UTC"), width=70))
    start = lines[0].index("DETAILS")
    continued = [line for line in lines[1:] if line.startswith(" ")]
    assert continued and all(line[:start].strip() == "" for line in continued)
    assert all(len(line) <= max(70, start + 30) for line in lines)
    assert ENGLISH.split()[0] in "\n".join(lines)
