"""`outreach log`, `outreach replies` and the views, over a database filled by real cycles."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import sqlite_utils
from helpers import old_database_with_a_reply
from logbook import EMAILS, ENGLISH, SPANISH, World
from workspace import Workspace

from outreach.store import migrations
from outreach.views.text import wrap
from outreach.views.timeline import parse_since


@pytest.fixture(autouse=True)
def terminal_width(monkeypatch):
    monkeypatch.setenv("COLUMNS", "160")  # the terminal width the log wraps to


def ok(result) -> str:
    assert result.exit_code == 0, (result.output, result.exception)
    return result.output


# --------------------------------------------------------------------------- log


def test_log_lists_every_event_in_order_in_local_time(world: World):
    out = ok(world.ws.cli("log"))
    lines = out.splitlines()
    assert "times in America/Chicago" in out
    # the clock started at 2026-11-24 10:00 UTC = 04:00 in Chicago, said with its zone
    assert lines[0].startswith("Tue Nov 24 04:00 CST  ")
    # one line per thing that happened, in plain words (issue 21)
    for said in (
        "María González added to the roster",
        'sent step 1 ("Check-in for BuildRight") to Dan O\'Connor',
        "María González replied",
        "Dan O'Connor is out of office until Mon Dec 7; follow-ups wait until Tue Dec 8",
        "bounce: priya@netforge.test does not exist (550 5.1.1): no more messages",
        "Sam Lee asked to be removed: no more messages",
    ):
        assert sum(line.endswith(said) for line in lines) == 1, (said, out)
    # the outcome is not told twice (the event and the status change it caused), and the
    # classifier's wording stays under --verbose
    assert "new text asks to stop" not in out and "stopped" not in out
    verbose = ok(world.ws.cli("log", "--verbose", "--partner", "sam@bistro.test"))
    assert "reason: new text asks to stop: 'remove me'" in verbose
    timed = [line for line in lines if line[:3] in ("Tue", "Thu", "Sun")]
    assert timed and all(line[17:22] in ("CST  ", "CDT  ") for line in timed)
    # the reply's own words, with the non-ASCII, the emoji and its line breaks kept
    assert "    ¡Hola! Nos encantaría recibir más estudiantes en primavera 🎉\n" in out
    assert "\n    Gracias por escribir.\n" in out


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


def test_a_database_from_before_m004_keeps_its_queued_events_and_gets_lighter_indexes(
    tmp_path: Path,
):
    """Outboxes no longer log a `queued` line per message; older databases keep theirs, and
    m004 drops events_campaign and narrows sequences_paused to the paused sequences."""
    path = tmp_path / "outreach.db"
    old = sqlite_utils.Database(path)
    migrations.apply(old, stop_before="m004_lighter_indexes")
    assert "events_campaign" in {index.name for index in old["events"].indexes}
    stamp = "2026-11-20T15:00:00.000000+00:00"
    old.execute(
        "INSERT INTO partners (email, name, created_at, updated_at) VALUES"
        " ('ana@shop.test', 'Ana', ?, ?)",
        [stamp, stamp],
    )
    old.execute(
        "INSERT INTO sequences (campaign, partner_id, state, last_step, paused_until,"
        " updated_at) VALUES ('checkin', 1, 'paused', 1, ?, ?)",
        [stamp, stamp],
    )
    old.execute(
        "INSERT INTO events (at, partner_id, campaign, step, kind, summary) VALUES"
        " (?, 1, 'checkin', 1, 'queued', 'Check-in for Shop')",
        [stamp],
    )
    old.conn.commit()
    old.close()

    ws = Workspace(tmp_path, smtp_port=2525)
    conn = ws.store.db.conn
    indexes = dict(
        conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")
    )
    assert "events_campaign" not in indexes
    assert indexes["sequences_paused"].endswith("WHERE state = 'paused'")
    plan = " ".join(
        str(row)
        for row in conn.execute(
            "EXPLAIN QUERY PLAN SELECT * FROM sequences"
            " WHERE state = 'paused' AND paused_until <= ?",
            [stamp],
        )
    )
    assert "USING INDEX sequences_paused" in plan
    assert [s.partner_id for s in ws.store.resume_paused(ws.clock())] == [1]
    listing = ok(ws.cli("log", "--campaign", "checkin"))
    assert 'step 1 ("Check-in for Shop") queued for' in listing
    assert "resume (the pause ended)" in listing
    ws.close()


def test_a_database_from_before_m006_gets_a_signature_column_and_keeps_its_replies(
    tmp_path: Path,
):
    """m006 adds inbound.signature. Replies read before keep NULL there (their text still
    holds any signature) and every view of them works; new replies store theirs apart."""
    path = tmp_path / "outreach.db"
    before = old_database_with_a_reply(
        path, "m006_inbound_signature", "Yes.\n\nSent from my iPhone"
    )
    assert "signature" not in before
    stamp = "2026-11-20T15:00:00.000000+00:00"  # when the old reply was read

    ws = Workspace(tmp_path, smtp_port=2525)
    assert "signature" in ws.store.db["inbound"].columns_dict
    [reply] = json.loads(ok(ws.cli("replies", "--json")))
    assert (reply["text"], reply["signature"]) == ("Yes.\n\nSent from my iPhone", "")
    [exported] = json.loads(ok(ws.cli("export", "replies", "--format", "json")))
    assert exported["text"] == reply["text"] and exported["signature"] is None
    assert json.loads(ok(ws.cli("report", "checkin", "--json")))["replies"][0]["signature"] == ""
    assert "Sent from my iPhone" in ok(ws.cli("replies"))
    with ws.store.write():
        ws.store.record_inbound(
            {
                "account": "main",
                "folder": "INBOX",
                "uidvalidity": 1,
                "uid": 8,
                "message_id": "<new@shop.test>",
                "kind": "reply",
                "partner_id": 1,
                "campaign": "checkin",
                "step": 1,
                "text": "Also April.",
                "signature": "Sent from my iPad",
                "processed_at": stamp,
            }
        )
    exported = json.loads(ok(ws.cli("export", "replies", "--format", "json")))
    assert [(e["text"], e["signature"]) for e in exported] == [
        ("Yes.\n\nSent from my iPhone", None),
        ("Also April.", "Sent from my iPad"),
    ]
    ws.close()


# --------------------------------------------------------------------------- pure parts


def test_parse_since_forms():
    zone = ZoneInfo("America/Chicago")
    now = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
    assert parse_since("2026-11-01", zone, now) == datetime(2026, 11, 1, tzinfo=zone)
    assert parse_since("2026-11-01T08:30", zone, now) == datetime(2026, 11, 1, 8, 30, tzinfo=zone)
    assert parse_since("7d", zone, now) == datetime(2026, 11, 17, 10, 0, tzinfo=UTC)
    with pytest.raises(ValueError):
        parse_since("soon", zone, now)


def test_wrap_keeps_line_breaks_and_wraps_long_lines():
    assert wrap("one\ntwo", 10) == ["one", "two"]
    assert wrap("a " * 30, 10) == ["a a a a a"] * 6
    assert wrap("", 10) == []


# --------------------------------------------------------------------------- replies


def inbound_id(ws: Workspace, email: str, kind: str | None = None) -> int:
    sql = (
        "SELECT i.id FROM inbound i JOIN partners p ON p.id = i.partner_id"
        " WHERE p.email = ?" + (" AND i.kind = ?" if kind else "") + " ORDER BY i.id"
    )
    return int(ws.store.query(sql, [email, kind] if kind else [email])[0]["id"])


def test_replies_queue_newest_first_with_the_answers(world: World):
    rows = json.loads(ok(world.ws.cli("replies", "--json")))
    assert [r["partner"] for r in rows] == [EMAILS[5], EMAILS[0]]  # Li (later), then María
    li, maria = rows
    assert maria["text"] == SPANISH and maria["name"] == "María González"
    assert maria["organization"] == "Clínica Sol" and maria["campaign"] == "checkin"
    assert maria["kind"] == "reply" and maria["handled"] is False
    assert maria["at"] == "2026-11-24T09:00:00-06:00"
    assert li["text"] == ENGLISH and li["step"] == 2
    assert {
        "id",
        "partner",
        "campaign",
        "at",
        "text",
        "organization",
        "name",
        "kind",
        "handled",
    } <= set(li)
    out = ok(world.ws.cli("replies"))
    assert out.index("li@harbor.test") < out.index("maria@clinica.test")
    assert "María González <maria@clinica.test> · Clínica Sol · checkin step 1" in out
    assert "    ¡Hola! Nos encantaría" in out and "2 replies, 2 open" in out
    assert all(line == line.rstrip() for line in out.splitlines())


def test_ack_takes_a_reply_out_of_the_unhandled_queue(world: World):
    maria = inbound_id(world.ws, EMAILS[0])
    out = ok(world.ws.cli("replies", "ack", str(maria), "--note", "llamé a María ☎"))
    assert f"#{maria} (maria@clinica.test) marked handled" in out
    unhandled = json.loads(ok(world.ws.cli("replies", "--unhandled", "--json")))
    assert [r["partner"] for r in unhandled] == [EMAILS[5]]
    every = json.loads(ok(world.ws.cli("replies", "--json")))
    mine = [r for r in every if r["id"] == maria][0]
    assert mine["handled"] is True and mine["note"] == "llamé a María ☎"
    log = json.loads(ok(world.ws.cli("log", "--json", "--partner", EMAILS[0])))
    assert log[-1]["kind"] == "acknowledged" and log[-1]["detail"] == {"note": "llamé a María ☎"}
    assert "llamé a María ☎" in ok(world.ws.cli("log", "--partner", EMAILS[0]))
    again = ok(world.ws.cli("replies", "ack", str(maria)))
    assert "already handled" in again
    missing = world.ws.cli("replies", "ack", "999")
    assert missing.exit_code == 2 and "no reply #999" in missing.output
    assert ok(world.ws.cli("replies", "--unhandled")).count("OPEN") == 1


def test_reclassify_a_reply_that_was_an_auto_reply_resumes_follow_ups(world: World):
    ws = world.ws
    li = inbound_id(ws, EMAILS[5])
    assert ws.store.sequence("checkin", 6).state == "replied"
    out = ok(ws.cli("replies", "reclassify", str(li), "auto_reply"))
    assert "follow-ups resume" in out
    # no return date in the text: paused for auto_reply_pause (5d) from when it arrived
    # (paused if that is still ahead of today's date, else active at once)
    assert ws.store.sequence("checkin", 6).state in ("active", "paused")
    assert json.loads(ok(ws.cli("replies", "--json")))[0]["partner"] == EMAILS[0]
    kinds = [e["kind"] for e in json.loads(ok(ws.cli("log", "--json", "--partner", EMAILS[5])))]
    assert kinds[-2:] == ["resumed", "reclassified"] or kinds[-3:] == [
        "resumed",
        "paused",
        "reclassified",
    ]
    # once that pause is over (whatever today's date), the worker sends Li the next step
    ws.clock.moment = datetime(2026, 12, 3, 18, 0, tzinfo=UTC)
    ws.worker().cycle()
    assert list(world.smtp.messages[-1].rcpt_tos) == [EMAILS[5]]
    # and back: a reply again stops the sequence and enters the queue
    out = ok(ws.cli("replies", "reclassify", str(li), "reply"))
    assert ws.store.sequence("checkin", 6).state == "replied"
    assert EMAILS[5] in ok(ws.cli("replies", "--unhandled"))


def test_reclassify_an_unsubscribe_puts_the_partner_back(world: World):
    ws = world.ws
    sam = inbound_id(ws, EMAILS[3])
    assert ws.store.partner_by_email(EMAILS[3]).status == "opted_out"
    assert ws.store.sequence("checkin", 4).state == "stopped"
    out = ok(ws.cli("replies", "reclassify", str(sam), "reply"))
    assert "partner back to active (was opted_out); 1 sequence(s) reopened" in out
    assert ws.store.partner_by_email(EMAILS[3]).status == "active"
    assert ws.store.sequence("checkin", 4).state == "replied"
    assert EMAILS[3] in ok(ws.cli("replies", "--unhandled"))
    # and the reverse: a reply that was really an unsubscribe
    maria = inbound_id(ws, EMAILS[0])
    ok(ws.cli("replies", "reclassify", str(maria), "unsubscribe"))
    assert ws.store.partner_by_email(EMAILS[0]).status == "opted_out"
    assert EMAILS[0] not in ok(ws.cli("replies"))


def test_reclassify_an_auto_reply_that_was_a_reply_stops_the_sequence(world: World):
    ws = world.ws
    dan = inbound_id(ws, EMAILS[1])
    assert ws.store.sequence("checkin", 2).state == "paused"
    ok(ws.cli("replies", "reclassify", str(dan), "reply"))
    assert ws.store.sequence("checkin", 2).state == "replied"
    queue = json.loads(ok(ws.cli("replies", "--unhandled", "--json")))
    assert EMAILS[1] in [r["partner"] for r in queue]
    event = json.loads(ok(ws.cli("log", "--json", "--partner", EMAILS[1])))[-1]
    assert event["kind"] == "reclassified"
    assert event["detail"]["from"] == "auto_reply" and event["detail"]["to"] == "reply"


def test_reclassify_a_bounce_and_bad_input(world: World):
    ws = world.ws
    priya = inbound_id(ws, EMAILS[2])
    ok(ws.cli("replies", "reclassify", str(priya), "other"))
    assert ws.store.partner_by_email(EMAILS[2]).status == "active"
    assert ws.store.sequence("checkin", 3).state == "active"
    same = ws.cli("replies", "reclassify", str(priya), "other")
    assert same.exit_code == 2 and "already classified as other" in same.output
    bad = ws.cli("replies", "reclassify", str(priya), "spam")
    assert bad.exit_code == 2
    assert ws.cli("replies", "reclassify", "12345", "reply").exit_code == 2


def test_replies_on_an_empty_database(ws: Workspace):
    assert ok(ws.cli("replies")).strip() == "no replies yet"
    assert ok(ws.cli("replies", "--unhandled")).strip() == "no unhandled replies"
    assert json.loads(ok(ws.cli("replies", "--json"))) == []
