"""Check-ins that recur (issue 21), wired end to end: `repeat` and `until` in a campaign, a
new sequence per round in a new thread, `finished` rounds, what templates remember, the
store's key per round, and a year of cycles against real local SMTP and IMAP servers
checked against `outreach plan --days 365`."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, date, datetime, timedelta
from email import message_from_bytes
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import sqlite_utils
from helpers import line_of, make_project
from test_report import parse, run_chromium
from workspace import ALWAYS_OPEN, Workspace, local_imap, partner_rows

from outreach.config import load_campaigns, load_config
from outreach.config.templates import renderer_for
from outreach.core.errors import Problems
from outreach.core.model import Partner
from outreach.core.render import Threading
from outreach.core.rounds import round_context
from outreach.engine.planning import projections
from outreach.store import Store
from outreach.store.outbox import Outgoing
from outreach.store.schema import migrations
from outreach.testing import partner_mail

TWO_STEPS = """
[[steps]]
template = "hello"
subject = "Check-in for {{ partner.organization }}"

[[steps]]
template = "nudge"
after = "7d"
"""


def repeating(extra: str = 'repeat = "120d"\n') -> str:
    return extra + ALWAYS_OPEN + TWO_STEPS


@pytest.fixture
def ws(tmp_path: Path, smtp_server, imap_server, monkeypatch):
    monkeypatch.setenv("TEST_IMAP_PW", imap_server.password)
    workspace = Workspace(
        tmp_path,
        smtp_port=smtp_server.port,
        imap=local_imap(imap_server),
        campaign=repeating(),
        config_extra='[replies]\nauto_reply_pause = "5d"',
    )
    (tmp_path / "templates" / "hello.txt.j2").write_text(
        "Hello {{ partner.name }}, round {{ round }}.\n"
        "{% if last_reply %}You said: {{ last_reply.text }} ({{ last_reply.at }}){% endif %}\n"
    )
    (tmp_path / "templates" / "nudge.txt.j2").write_text(
        "Following up on my note of {{ previous.sent_at }} ({{ previous.days_ago }} days).\n"
    )
    yield workspace
    workspace.close()


def sent(smtp_server, address: str) -> list:
    return [
        message_from_bytes(m.raw) for m in smtp_server.messages if list(m.rcpt_tos) == [address]
    ]


# ----------------------------------------------------------------------------- config


def write_campaign(ws: Workspace, text: str) -> Path:
    path = ws.root / "campaigns" / "checkin.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("lines", "key", "needle"),
    [
        ('repeat = "12h"', "repeat", "at least 1d"),
        ('repeat = "often"', "repeat", "often"),
        ("repeat = 120", "repeat", "expected"),
        ('repeat = "120d"\nuntil = "soon"', "until", "not a date like 2027-06-30"),
        ('repeat = "120d"\nuntil = 12:00:00', "until", "expected a date"),
        ("until = 2027-06-30", "until", "set `repeat` too"),
    ],
)
def test_a_wrong_repeat_or_until_is_a_problem_naming_file_line_and_key(
    ws: Workspace, lines: str, key: str, needle: str
) -> None:
    path = write_campaign(ws, lines + "\n" + ALWAYS_OPEN + TWO_STEPS)
    with pytest.raises(Problems) as caught:
        load_campaigns(load_config(ws.root / "config.toml"))
    line = line_of(path, f"{key} =")
    assert any(
        p.startswith(f"{path}:{line}: {key}: ") and needle in p for p in caught.value.problems
    ), caught.value.problems


def test_repeat_and_until_are_read_until_the_end_of_that_day_in_the_coordinators_zone(
    ws: Workspace,
) -> None:
    config = ws.root / "config.toml"
    config.write_text(config.read_text().replace('"UTC"', '"America/Chicago"'))
    write_campaign(ws, 'repeat = "120d"\nuntil = 2027-06-30\n' + ALWAYS_OPEN + TWO_STEPS)
    (campaign,) = load_campaigns(load_config(config))
    assert campaign.repeat == timedelta(days=120)
    assert campaign.until is not None
    assert campaign.until.astimezone(UTC) > datetime(2027, 7, 1, 4, 59, tzinfo=UTC)
    assert campaign.until.astimezone(UTC) < datetime(2027, 7, 1, 5, 0, tzinfo=UTC)


def test_the_check_command_with_a_wrong_repeat_exits_2_naming_the_file(ws: Workspace) -> None:
    write_campaign(ws, 'repeat = "0s"\n' + ALWAYS_OPEN + TWO_STEPS)
    result = ws.cli("check")
    assert result.exit_code == 2, result.output
    assert "checkin.toml" in result.output and "repeat" in result.output
    assert "Traceback" not in result.output


# ----------------------------------------------------------------------------- store


def old_database(path: Path) -> None:
    """A database as outreach made it before rounds: one sequence and its message."""
    db = sqlite_utils.Database(path)
    migrations.apply(db, stop_before="m009_rounds")
    stamp = "2026-11-24T10:00:00.000000+00:00"
    db.execute(
        "INSERT INTO partners (email, created_at, updated_at) VALUES ('a@partners.test', ?, ?)",
        [stamp, stamp],
    )
    db.execute(
        "INSERT INTO sequences (campaign, partner_id, state, last_step, last_sent_at,"
        " updated_at) VALUES ('checkin', 1, 'replied', 2, ?, ?)",
        [stamp, stamp],
    )
    db.execute(
        "INSERT INTO messages (campaign, partner_id, step, account, message_id, to_addr,"
        " subject, status, raw, created_at, updated_at, sent_at) VALUES ('checkin', 1, 1,"
        " 'default', '<old@district.test>', 'a@partners.test', 'Hi', 'sent', x'00', ?, ?, ?)",
        [stamp, stamp, stamp],
    )
    db.execute(
        "INSERT INTO events (at, partner_id, campaign, kind, outbound_id) VALUES"
        " (?, 1, 'checkin', 'sent', 1)",
        [stamp],
    )
    db.conn.commit()
    db.conn.close()


def test_a_database_from_before_rounds_migrates_with_round_1(tmp_path: Path) -> None:
    path = tmp_path / "outreach.db"
    old_database(path)
    store = Store(path)
    try:
        (sequence,) = store.rounds("checkin", 1)
        assert (sequence.round, sequence.state, sequence.last_step) == (1, "replied", 2)
        (row,) = store.all_ledger_rows()
        assert (row.round, row.message_id, row.status) == (1, "<old@district.test>", "sent")
        assert store.scalar("PRAGMA integrity_check") == "ok"
        assert store.db.conn.execute("PRAGMA foreign_key_check").fetchall() == []
        # the views were made again and still read the rows
        assert store.scalar("SELECT last_contact FROM partner_status") is not None
        assert store.scalar("SELECT audience FROM campaign_funnel") == 1
        assert "count(DISTINCT partner_id) AS audience" in store.scalar(
            "SELECT sql FROM sqlite_master WHERE name = 'campaign_funnel'"
        )
        # the events still point at the message
        assert store.scalar("SELECT outbound_id FROM events") == 1
    finally:
        store.close()


def test_m009_run_again_after_its_record_was_lost_changes_nothing(tmp_path: Path) -> None:
    """The migration commits its own transaction, then sqlite-utils records it: a crash in
    between runs it again at the next start, which must leave the tables as they are."""
    path = tmp_path / "outreach.db"
    old_database(path)
    Store(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("DELETE FROM _sqlite_migrations WHERE name = 'm009_rounds'")
    store = Store(path)
    try:
        assert [s.round for s in store.rounds("checkin", 1)] == [1]
        assert store.scalar("SELECT count(*) FROM messages") == 1
        assert store.scalar("PRAGMA integrity_check") == "ok"
        assert store.scalar("SELECT audience FROM campaign_funnel") == 1
    finally:
        store.close()


def test_the_never_sent_twice_key_holds_per_round_and_allows_a_new_round(tmp_path: Path) -> None:
    store = Store(tmp_path / "outreach.db")
    try:
        now = datetime(2026, 11, 24, 10, tzinfo=UTC)
        store.db.conn.execute(
            "INSERT INTO partners (email, created_at, updated_at) VALUES ('a@p.test', 't', 't')"
        )

        def out(round_: int, message_id: str) -> Outgoing:
            return Outgoing("checkin", 1, 1, "default", message_id, "a@p.test", "S", b"r", round_)

        first = store.queue_messages([out(1, "<a@d>")], now)
        again = store.queue_messages([out(1, "<b@d>")], now)
        second = store.queue_messages([out(2, "<c@d>")], now)
        assert first[0] is not None and again == [None] and second[0] is not None
        assert second[0].round == 2
        assert [s.round for s in store.rounds("checkin", 1)] == [1, 2]
        with pytest.raises(sqlite3.IntegrityError):
            store.db.conn.execute(
                "INSERT INTO messages (campaign, partner_id, round, step, account, message_id,"
                " to_addr, subject, status, raw, created_at, updated_at) VALUES ('checkin', 1,"
                " 2, 1, 'default', '<d@d>', 'a@p.test', 'S', 'queued', x'00', 't', 't')"
            )
    finally:
        store.close()


# ----------------------------------------------------------------------------- cycles


def test_a_round_unanswered_is_finished_and_the_next_starts_in_a_new_thread(
    ws: Workspace, smtp_server
) -> None:
    ws.add_partners(partner_rows(1))
    worker = ws.worker()
    address = "p0000@partners.test"
    worker.cycle()
    ws.clock.advance(days=7)
    worker.cycle()
    ws.clock.advance(hours=1)
    worker.cycle()
    rounds = ws.store.rounds("checkin", 1)
    assert [(r.round, r.state) for r in rounds] == [(1, "finished")]
    assert ws.store.scalar("SELECT summary FROM events WHERE kind = 'finished'") == (
        "no answer after 2 messages"
    )
    # partners list shows no open campaign for it
    listing = ws.cli("partners", "list", "--json")
    assert listing.exit_code == 0, listing.output
    assert json.loads(listing.output)[0]["open_campaign"] is None

    ws.clock.advance(days=119)
    worker.cycle()
    assert len(sent(smtp_server, address)) == 2  # not yet: 120 days after the last message
    ws.clock.advance(days=1)
    worker.cycle()
    mails = sent(smtp_server, address)
    assert len(mails) == 3
    assert "round 2." in mails[2].get_payload()
    assert mails[2]["In-Reply-To"] is None and mails[2]["References"] is None
    assert mails[2]["Subject"] == mails[0]["Subject"]
    ws.clock.advance(days=7)
    worker.cycle()
    mails = sent(smtp_server, address)
    assert len(mails) == 4, (ws.store.rounds("checkin", 1), ws.clock())
    # the round's follow-up threads to the round's first message, not to round 1
    assert mails[3]["In-Reply-To"] == mails[2]["Message-ID"]
    assert mails[3]["References"] == mails[2]["Message-ID"]
    # previous.sent_at / days_ago: the note of 7 days before, not "last week" by default
    assert f"{(ws.clock() - timedelta(days=7)).date()} (7 days)" in mails[3].get_payload()
    assert [(r.round, r.last_step) for r in ws.store.rounds("checkin", 1)] == [(1, 2), (2, 2)]
    rows = ws.store.query("SELECT round, step FROM messages ORDER BY id")
    assert [(r["round"], r["step"]) for r in rows] == [(1, 1), (1, 2), (2, 1), (2, 2)]
    # the report counts the partner once, as their latest round stands
    report = ws.cli("report", "checkin", "--json")
    assert report.exit_code == 0, report.output
    funnel = json.loads(report.output)
    assert funnel["audience"] == 1 and funnel["pending"] == 1
    assert [p["last_step"] for p in funnel["never_answered"]] == [2]
    assert funnel["never_answered"][0]["round_label"] == "round 2, spring"
    assert "active (round 2, spring)" in ws.cli("report", "checkin").output
    page = ws.root / "report.html"
    assert ws.cli("report", "checkin", "--html", str(page)).exit_code == 0
    dom_text, console = run_chromium(page, "--dump-dom")
    assert console == []
    assert "active (round 2, spring)" in "".join(parse(dom_text).text)
    # the sent events of round 2 say so (the log tells "round 2, spring")
    details = [
        json.loads(r["detail"])
        for r in ws.store.query("SELECT detail FROM events WHERE kind = 'sent' ORDER BY id")
    ]
    assert [d.get("round") for d in details] == [None, None, 2, 2]
    log = ws.cli("log", "--partner", address)
    assert log.exit_code == 0, log.output
    assert 'sent step 1 ("Check-in for Org 0") to Partner 0 (round 2, spring)' in log.output
    assert "no answer from Partner 0 after 2 messages" in log.output
    ws.clock.advance(hours=1)
    worker.cycle()  # round 2 finishes: nobody is pending any more
    assert json.loads(ws.cli("report", "checkin", "--json").output)["pending"] == 0


def test_an_answer_ends_the_round_and_the_next_remembers_it(
    ws: Workspace, smtp_server, imap_server
) -> None:
    ws.add_partners(partner_rows(1))
    worker = ws.worker()
    address = "p0000@partners.test"
    worker.cycle()
    imap_server.append(
        partner_mail.reply(
            smtp_server.messages[0].raw, "We hired two interns.\nThanks!", when=ws.clock()
        )
    )
    ws.clock.advance(hours=2)
    worker.cycle()
    assert ws.store.sequence("checkin", 1).state == "replied"
    ws.clock.advance(days=119, hours=21)
    worker.cycle()
    # the follow-up never went; the next round starts 120 days after the answer (its Date)
    assert len(sent(smtp_server, address)) == 1
    ws.clock.advance(hours=1)
    worker.cycle()
    mails = sent(smtp_server, address)
    assert len(mails) == 2
    body = mails[1].get_payload().replace("\r\n", "\n")
    assert "round 2." in body
    assert "You said: We hired two interns.\nThanks! (2026-11-24)" in body


def test_an_answer_after_the_last_step_still_ends_the_round_as_answered(
    ws: Workspace, smtp_server, imap_server
) -> None:
    ws.add_partners(partner_rows(1))
    worker = ws.worker()
    worker.cycle()
    ws.clock.advance(days=7)
    worker.cycle()
    ws.clock.advance(hours=1)
    worker.cycle()
    assert ws.store.sequence("checkin", 1).state == "finished"
    imap_server.append(partner_mail.reply(smtp_server.messages[1].raw, "Sorry, busy term."))
    ws.clock.advance(days=2)
    worker.cycle()
    assert ws.store.sequence("checkin", 1).state == "replied"


def test_opted_out_and_bounced_partners_never_get_a_new_round(
    ws: Workspace, smtp_server, imap_server
) -> None:
    ws.add_partners(partner_rows(3))
    worker = ws.worker()
    worker.cycle()
    imap_server.append(partner_mail.unsubscribe(smtp_server.messages[0].raw))
    imap_server.append(partner_mail.bounce(smtp_server.messages[1].raw))
    ws.clock.advance(hours=1)
    worker.cycle()
    for _ in range(20):
        ws.clock.advance(days=20)
        worker.cycle()
    counts = {
        p: len(sent(smtp_server, p))
        for p in ("p0000@partners.test", "p0001@partners.test", "p0002@partners.test")
    }
    assert counts["p0000@partners.test"] == 1 and counts["p0001@partners.test"] == 1
    assert counts["p0002@partners.test"] >= 6  # the silent one: several rounds of two
    assert [r.round for r in ws.store.rounds("checkin", 1)] == [1]
    assert [r.round for r in ws.store.rounds("checkin", 2)] == [1]


def test_until_stops_new_rounds_but_not_a_round_under_way(ws: Workspace, smtp_server) -> None:
    write_campaign(ws, 'repeat = "120d"\nuntil = 2026-11-30\n' + ALWAYS_OPEN + TWO_STEPS)
    ws.add_partners(partner_rows(1))
    worker = ws.worker()
    worker.cycle()  # 2026-11-24
    for days in (7, 1, *[30] * 12):
        ws.clock.advance(days=days)
        worker.cycle()
    rows = ws.store.query("SELECT round, step, sent_at FROM messages ORDER BY id")
    # round 1 started before `until`: its follow-up goes out on 2026-12-01, after it; round 2
    # (from 2027-03-31) would start after `until`: never
    assert [(r["round"], r["step"]) for r in rows] == [(1, 1), (1, 2)]


# ----------------------------------------------------------------------------- the year


YEAR_CAMPAIGN = (
    'repeat = "120d"\n'
    "blackout = [\n"
    '  { from = 2026-12-21, to = 2027-01-03, name = "Winter break" },\n'
    '  { from = 2027-03-15, to = 2027-03-21, name = "Spring break" },\n'
    "]\n"
    '[window]\ndays = ["mon", "tue", "wed", "thu", "fri"]\nhours = "09:00-16:00"\n' + TWO_STEPS
)


def test_a_year_of_cycles_matches_plan_days_365(
    ws: Workspace, smtp_server, imap_server, monkeypatch
) -> None:
    """Three rounds in a year with blackout weeks: what the silent partner got is what
    `plan --days 365` said on the first day; the opt-out of round 1 never hears again; the
    out-of-office partner gets nothing while away, and their next round waits for the
    pause to end."""
    import outreach.cli.campaigns as campaigns_cli

    write_campaign(ws, YEAR_CAMPAIGN)
    ws.add_partners(partner_rows(3))
    silent, leaver, away = (f"p000{i}@partners.test" for i in range(3))
    monkeypatch.setattr(campaigns_cli, "now", ws.clock)
    planned = json.loads(ws.cli("plan", "--days", "365", "--json").output)
    table = ws.cli("plan", "--days", "365").output
    assert table.splitlines()[0].split()[:4] == ["WHEN", "CAMPAIGN", "ROUND", "STEP"]
    assert sum(" checkin   3 " in line for line in table.splitlines()) == 6  # 3 partners
    worker = ws.worker()
    start = ws.clock()
    away_until: date | None = None
    campaigns = ws.campaigns
    while ws.clock() < start + timedelta(days=365):
        before = len(smtp_server.messages)
        worker.cycle()
        # the next cycle: at the next moment the planner names, at most a week later (a
        # cycle every few hours over a year would take minutes; the mailbox is read at
        # every cycle, so an answer is read before the next message could go)
        ahead = projections(ws.store, campaigns, ws.clock(), ws.clock() + timedelta(days=7), "UTC")
        following = min((p.at for p in ahead if p.at > ws.clock()), default=None)
        for message in smtp_server.messages[before:]:
            to = message.rcpt_tos[0]
            sent_at = ws.clock()
            if to == leaver:
                imap_server.append(partner_mail.unsubscribe(message.raw))
            if to == away and away_until is None and len(sent(smtp_server, away)) == 2:
                # away from the last step of round 1 until past round 2's start
                away_until = (sent_at + timedelta(days=130)).date()
                imap_server.append(partner_mail.out_of_office(message.raw, away_until))
        ws.clock.moment = following or ws.clock() + timedelta(days=7)

    silent_rows = ws.store.query(
        "SELECT m.round, m.step, m.sent_at FROM messages m JOIN partners p"
        " ON p.id = m.partner_id WHERE p.email = ? ORDER BY m.id",
        [silent],
    )
    expected = [(r["round"], r["step"]) for r in planned if r["partner"] == silent]
    assert expected == [(1, 1), (1, 2), (2, 1), (2, 2), (3, 1), (3, 2)]
    assert [(r["round"], r["step"]) for r in silent_rows] == expected
    # each went out at the moment planned on the first day
    for row, plan in zip(silent_rows, [r for r in planned if r["partner"] == silent], strict=True):
        planned_at = datetime.fromisoformat(plan["at"])
        actual = datetime.fromisoformat(row["sent_at"])
        assert planned_at == actual, (row, plan)
        local = actual.date()
        assert not date(2026, 12, 21) <= local <= date(2027, 1, 3)
        assert not date(2027, 3, 15) <= local <= date(2027, 3, 21)
    # the opt-out of round 1: one message, ever
    assert len(sent(smtp_server, leaver)) == 1
    leaver_plan = [r for r in planned if r["partner"] == leaver]
    assert len(leaver_plan) == 6  # the plan assumed nobody answers
    # the out-of-office partner: nothing while away; round 2 after the return
    away_rows = ws.store.query(
        "SELECT m.round, m.step, m.sent_at FROM messages m JOIN partners p"
        " ON p.id = m.partner_id WHERE p.email = ? ORDER BY m.id",
        [away],
    )
    assert away_until is not None
    assert [(r["round"], r["step"]) for r in away_rows][:3] == [(1, 1), (1, 2), (2, 1)]
    round_2 = datetime.fromisoformat(away_rows[2]["sent_at"])
    assert round_2.date() >= away_until + timedelta(days=1)
    silent_round_2 = datetime.fromisoformat(silent_rows[2]["sent_at"])
    assert round_2 > silent_round_2  # it waited for the pause to end


# ----------------------------------------------------------------------------- templates


def test_the_sample_templates_say_how_long_ago_and_remember_the_answer(tmp_path: Path) -> None:
    root = make_project(tmp_path)
    config = load_config(root / "config.toml")
    (campaign,) = load_campaigns(config)
    renderer = renderer_for(config)
    account = config.accounts[campaign.account]
    partner = Partner(email="a@acme.example", name="Ana Ruiz", organization="Acme Health")
    now = datetime(2027, 3, 30, 15, tzinfo=UTC)
    context = round_context(
        2,
        last_reply=("Fine, thanks", datetime(2026, 11, 24, 16, tzinfo=UTC)),
        previous_sent_at=now - timedelta(days=9),
        zone=ZoneInfo("America/Chicago"),
        now=now,
    )
    followup = renderer.render(campaign, campaign.steps[1], partner, account, Threading(), context)
    assert "my note of 9 days ago." in followup.text
    assert "last week" not in followup.text
    first = renderer.render(campaign, campaign.steps[0], partner, account, Threading(), context)
    assert "Thank you again for your note in the fall (November 24)." in first.text
    assert first.html is not None and "note in the\nfall (November 24)." in first.html
    # a first round, and `outreach preview`, `check`: nothing to remember, no guess
    plain = renderer.render(campaign, campaign.steps[0], partner, account)
    assert "Thank you again" not in plain.text
    assert "a few days ago" in renderer.render(campaign, campaign.steps[1], partner, account).text
