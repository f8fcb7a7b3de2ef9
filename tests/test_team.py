"""A CTE team (issue 19): each owner's partners get their messages from the owner's
account, replies are read from every mailbox, a sequence keeps its account, and one
account failing holds back no other. Real SMTP (aiosmtpd) and IMAP (pymap) servers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from helpers import line_of
from team import OWNED_BY, ROSTER, TEAM, from_address, team_workspace

from outreach.config import load_campaigns, load_config
from outreach.core.errors import Problems
from outreach.core.model import Partner
from outreach.testing import partner_mail
from outreach.testing.imap_server import LocalIMAPServer


@pytest.fixture
def mailboxes(imap_server) -> Iterator[dict[str, LocalIMAPServer]]:
    """One mailbox per account: the session's pymap server for the office, two of their
    own for the owners (pymap keeps one user per server)."""
    with (
        LocalIMAPServer(user="jlee@district.test", password="jlee-pw") as jlee,
        LocalIMAPServer(user="akim@district.test", password="akim-pw") as akim,
    ):
        yield {"jlee": jlee, "akim": akim, "office": imap_server}


@pytest.fixture
def team(tmp_path: Path, smtp_server, mailboxes, monkeypatch):
    ws = team_workspace(tmp_path, smtp_server.port, mailboxes, monkeypatch)
    ws.add_partners(ROSTER)
    yield ws
    ws.close()


def sent(smtp_server, address: str) -> list:
    return [m for m in smtp_server.messages if list(m.rcpt_tos) == [address]]


# ----------------------------------------------------------------------------- config


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


ACCOUNT = 'from = "{0} <{0}@d.test>"\nsmtp = {{ host = "127.0.0.1", port = 25, security = "none" }}'


def test_an_owner_listed_by_two_accounts_is_a_problem_naming_both(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f'[accounts.jlee]\n{ACCOUNT.format("jlee")}\nowners = ["jlee", "Pat"]\n'
        f'[accounts.akim]\n{ACCOUNT.format("akim")}\nowners = ["akim", "pat "]\n',
    )
    with pytest.raises(Problems) as caught:
        load_config(path)
    line = line_of(path, 'owners = ["akim"')
    assert caught.value.problems == [
        f"{path}:{line}: accounts.akim.owners: owner 'pat' is listed by accounts.jlee and "
        "accounts.akim; an owner sends from one account"
    ]


def test_owners_must_be_a_list_of_strings_and_owner_is_no_account_name(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"[accounts.jlee]\n{ACCOUNT.format('jlee')}\nowners = [1]\n"
        f"[accounts.owner]\n{ACCOUNT.format('x')}\n",
    )
    with pytest.raises(Problems) as caught:
        load_config(path)
    text = "\n".join(caught.value.problems)
    assert f"{path}:{line_of(path, 'owners = [1]')}: accounts.jlee.owners: expected a list" in text
    assert "accounts.owner: the name 'owner' is taken" in text


@pytest.mark.parametrize(
    ("campaign", "problem"),
    [
        (
            'account = "jlee"\nfallback_account = "jlee"\n',
            'fallback_account: only for account = "owner"',
        ),
        (
            'account = "owner"\nfallback_account = "nobody"\n',
            "fallback_account: no account named 'nobody'",
        ),
        ('account = "nobody"\n', "account: no account named 'nobody'"),
    ],
)
def test_campaign_account_keys_are_checked(tmp_path: Path, campaign: str, problem: str) -> None:
    write(tmp_path, f'[accounts.jlee]\n{ACCOUNT.format("jlee")}\nowners = ["jlee"]\n')
    (tmp_path / "campaigns").mkdir()
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "t.txt.j2").write_text("hi\n")
    (tmp_path / "campaigns" / "c.toml").write_text(
        campaign + '[[steps]]\ntemplate = "t"\nsubject = "s"\n'
    )
    with pytest.raises(Problems) as caught:
        load_campaigns(load_config(tmp_path / "config.toml"))
    assert any(problem in p for p in caught.value.problems), caught.value.problems


def test_a_campaign_by_owner_knows_each_owners_account(team) -> None:
    (campaign,) = team.campaigns
    assert campaign.by_owner and campaign.fallback_account == "office"
    accounts = {p.email: campaign.account_for(p) for p in team.store.partners()}
    assert accounts == {**OWNED_BY, "solo@nobody.test": "office", "gone@later.test": "office"}


# ----------------------------------------------------------------------------- check


def test_check_names_partners_whose_owner_has_no_account(
    tmp_path, smtp_server, mailboxes, monkeypatch
) -> None:
    ws = team_workspace(tmp_path, smtp_server.port, mailboxes, monkeypatch, fallback=None)
    ws.add_partners(ROSTER)
    result = ws.cli("check")
    assert result.exit_code == 2, result.output
    assert "no account lists the owner of 2 partner(s)" in result.output
    assert "solo@nobody.test (no owner)" in result.output
    assert "gone@later.test (owner 'rsmith')" in result.output
    assert "Traceback" not in result.output
    # ... and nothing is planned or sent to them
    plan = json.loads(ws.cli("plan", "--json", "--days", "1").output)
    assert {row["partner"] for row in plan} == set(OWNED_BY)
    assert ws.worker().send_cycle().sent == len(OWNED_BY)
    assert {m.rcpt_tos[0] for m in smtp_server.messages} == set(OWNED_BY)
    ws.close()


def test_check_is_content_with_a_fallback_account(team) -> None:
    result = team.cli("check")
    assert result.exit_code == 0, result.output


# ----------------------------------------------------------------------------- sending


def test_each_partner_hears_from_their_owners_account(team, smtp_server) -> None:
    report = team.worker().send_cycle()
    assert report.sent == len(ROSTER)
    for partner in ROSTER:
        (message,) = sent(smtp_server, partner["email"])
        account = OWNED_BY.get(partner["email"], "office")
        address = TEAM[account][0]
        assert message.mail_from == address and from_address(message) == address
        assert message.message["Message-ID"].endswith("@district.test>")
    rows = team.store.query("SELECT account, count(*) AS n FROM sequences GROUP BY account")
    assert {r["account"]: r["n"] for r in rows} == {"jlee": 2, "akim": 2, "office": 2}


def test_plan_and_dry_run_show_the_sending_account(team) -> None:
    plan = json.loads(team.cli("plan", "--json", "--days", "1").output)
    assert {(r["partner"], r["account"]) for r in plan if r["step"] == 1} == {
        (p["email"], OWNED_BY.get(p["email"], "office")) for p in ROSTER
    }
    table = team.cli("plan", "--days", "1").output
    assert "FROM" in table.splitlines()[0]
    dry = team.cli("run", "--dry-run").output
    assert "it@netforge.test  from akim <akim@district.test>" in dry
    assert "solo@nobody.test  from office <office@district.test>" in dry


def test_each_accounts_daily_cap_is_its_own(tmp_path, smtp_server, mailboxes, monkeypatch) -> None:
    ws = team_workspace(
        tmp_path, smtp_server.port, mailboxes, monkeypatch, limits={"jlee": "per_day = 1"}
    )
    ws.add_partners(ROSTER)
    report = ws.worker().send_cycle()
    assert report.sent == len(ROSTER) - 1 and report.held_by_limit == 1
    assert len([m for m in smtp_server.messages if m.mail_from == "jlee@district.test"]) == 1
    assert len([m for m in smtp_server.messages if m.mail_from == "akim@district.test"]) == 2
    ws.close()


def test_a_follow_up_after_an_owner_change_keeps_the_first_account_and_thread(
    team, smtp_server
) -> None:
    worker = team.worker()
    worker.send_cycle()
    (first,) = sent(smtp_server, "nurse@mercy.test")
    # the hospital moves from jlee to akim
    moved = Partner(**{**ROSTER[0], "owner": "akim"})
    team.store.upsert_partners([moved], team.clock())
    team.clock.advance(days=2, minutes=1)
    worker = team.worker()
    worker.send_cycle()
    first_message, second = sent(smtp_server, "nurse@mercy.test")
    assert second.mail_from == "jlee@district.test" == from_address(second)
    assert second.message["In-Reply-To"] == first.message["Message-ID"]
    assert second.message["Subject"] == "Re: " + first.message["Subject"]
    # the change is in the partner's log
    log = " ".join(team.cli("log", "--partner", "nurse@mercy.test").output.split())
    assert "Nora Nurse reassigned from jlee to akim; checkin keeps its account and thread" in log
    # the next sequence (a new campaign) starts from the new owner's account
    (team.root / "campaigns" / "spring.toml").write_text(
        (team.root / "campaigns" / "checkin.toml").read_text()
    )
    team.worker().send_cycle()
    spring = [m for m in sent(smtp_server, "nurse@mercy.test") if "In-Reply-To" not in m.message]
    assert [m.mail_from for m in spring] == ["jlee@district.test", "akim@district.test"]


# ----------------------------------------------------------------------------- reading


def test_replies_are_read_from_every_mailbox_and_stop_the_right_sequences(
    team, smtp_server, mailboxes
) -> None:
    worker = team.worker()
    worker.cycle()
    when = team.clock()
    to_nurse = sent(smtp_server, "nurse@mercy.test")[0].raw
    to_it = sent(smtp_server, "it@netforge.test")[0].raw
    to_chef = sent(smtp_server, "chef@bistro.test")[0].raw
    to_solo = sent(smtp_server, "solo@nobody.test")[0].raw
    mailboxes["jlee"].append(partner_mail.reply(to_nurse, "We hired two interns.", when=when))
    mailboxes["akim"].append(partner_mail.reply(to_it, "Busy quarter, happy to talk.", when=when))
    # one answer lands in another owner's mailbox (forwarded, or sent to the wrong person):
    # its In-Reply-To still ties it to its sequence
    mailboxes["jlee"].append(partner_mail.reply(to_chef, "New menu, new hires.", when=when))
    mailboxes["office"].append(partner_mail.reply(to_solo, "All good here.", when=when))
    read, _ = worker.cycle()
    assert read.recorded == 4, read
    states = {
        r["email"]: r["state"]
        for r in team.store.query(
            "SELECT p.email, s.state FROM sequences s JOIN partners p ON p.id = s.partner_id"
        )
    }
    replied = {"nurse@mercy.test", "it@netforge.test", "chef@bistro.test", "solo@nobody.test"}
    assert {e for e, s in states.items() if s == "replied"} == replied
    accounts = {
        r["from_addr"]: r["account"]
        for r in team.store.query(
            "SELECT from_addr, account FROM inbound WHERE partner_id IS NOT NULL"
        )
    }
    assert accounts == {
        "nurse@mercy.test": "jlee",
        "it@netforge.test": "akim",
        "chef@bistro.test": "jlee",
        "solo@nobody.test": "office",
    }
    # the silent ones get step 2, from their own accounts
    team.clock.advance(days=2, minutes=1)
    _, report = worker.cycle()
    assert report.sent == 2
    assert sent(smtp_server, "boss@build.test")[1].mail_from == "jlee@district.test"
    assert sent(smtp_server, "gone@later.test")[1].mail_from == "office@district.test"


# ----------------------------------------------------------------------------- failures


def test_a_wrong_password_on_one_account_leaves_the_others_working(
    tmp_path, smtp_server, smtp_server_factory, mailboxes, monkeypatch
) -> None:
    guarded = smtp_server_factory(username="akim@district.test", password="right")
    monkeypatch.setenv("AKIM_SMTP_PW", "wrong")
    ws = team_workspace(
        tmp_path,
        smtp_server.port,
        mailboxes,
        monkeypatch,
        smtp_auth={"akim": (guarded.port, "akim@district.test", "AKIM_SMTP_PW")},
    )
    monkeypatch.setenv("TEAM_JLEE_PW", "wrong too")  # jlee's mailbox refuses its login
    ws.add_partners(ROSTER)
    to_solo_later = None
    read, report = ws.worker().cycle()  # no AuthenticationError: the others went on
    assert report.sent == 4 and guarded.messages == []
    assert any("akim" in e or "login" in e for e in report.errors), report.errors
    assert {m.mail_from for m in smtp_server.messages} == {
        "jlee@district.test",
        "office@district.test",
    }
    queued = ws.store.query("SELECT account, status FROM messages WHERE status != 'sent'")
    assert queued == [{"account": "akim", "status": "queued"}] * 2
    # the office's mailbox is still read
    to_solo_later = sent(smtp_server, "solo@nobody.test")[0].raw
    mailboxes["office"].append(partner_mail.reply(to_solo_later, "Fine, thanks.", when=ws.clock()))
    read, _ = ws.worker().cycle()
    assert read.recorded == 1
    status = json.loads(ws.cli("status", "--json").output)["accounts"]
    assert status["akim"]["send"]["state"] == "failing"
    assert "akim@district.test" in status["akim"]["send"]["reason"]
    assert status["akim"]["read"]["state"] == "ok"
    assert status["jlee"]["read"]["state"] == "failing"
    assert status["jlee"]["send"]["state"] == "ok"
    assert status["office"] == {
        "send": {**status["office"]["send"], "state": "ok", "reason": None},
        "read": {**status["office"]["read"], "state": "ok", "reason": None},
    }
    text = ws.cli("status").output
    assert "akim send: FAILING since" in text and "office read: ok" in text
    # fixed: akim's queued messages go out, once, from akim
    monkeypatch.setenv("AKIM_SMTP_PW", "right")
    _, report = ws.worker().cycle()
    assert report.sent == 2 and {m.mail_from for m in guarded.messages} == {"akim@district.test"}
    assert (
        json.loads(ws.cli("status", "--json").output)["accounts"]["akim"]["send"]["state"] == "ok"
    )
    ws.close()


# ----------------------------------------------------------------------------- views


@pytest.fixture
def answered(team, smtp_server, mailboxes):
    """Step 1 to everyone; nurse (jlee) and it (akim) replied, each to their owner."""
    worker = team.worker()
    worker.cycle()
    when = team.clock()
    for account, email, words in (
        ("jlee", "nurse@mercy.test", "We hired two interns."),
        ("akim", "it@netforge.test", "Could we talk <b>Friday</b>?"),
    ):
        mailboxes[account].append(
            partner_mail.reply(sent(smtp_server, email)[0].raw, words, when=when)
        )
    read, _ = worker.cycle()
    assert read.recorded == 2
    return team


def test_views_take_an_owner(answered) -> None:
    ws = answered
    replies = json.loads(ws.cli("replies", "--unhandled", "--owner", "AKIM", "--json").output)
    assert [r["partner"] for r in replies] == ["it@netforge.test"]
    all_replies = json.loads(ws.cli("replies", "--owner", "jlee", "--json").output)
    assert [r["partner"] for r in all_replies] == ["nurse@mercy.test"]
    events = json.loads(ws.cli("log", "--owner", "akim", "--json").output)
    # an owner is the roster's: "pat ng" sends from akim's account but is not akim
    assert {e["partner"] for e in events} == {"it@netforge.test"}
    events = json.loads(ws.cli("log", "--owner", "Pat Ng", "--json").output)
    assert {e["partner"] for e in events} == {"chef@bistro.test"}
    listed = json.loads(ws.cli("partners", "list", "--owner", "jlee", "--json").output)
    assert [p["email"] for p in listed] == ["boss@build.test", "nurse@mercy.test"]
    text = ws.cli("partners", "list", "--owner", "jlee").output
    assert "boss@build.test" in text and "it@netforge.test" not in text
    unknown = ws.cli("replies", "--owner", "nobody")
    assert unknown.exit_code == 2 and "--owner nobody: no partner or account has this owner" in (
        unknown.output
    )


def test_the_report_has_a_per_owner_table(answered, tmp_path: Path) -> None:
    ws = answered
    report = json.loads(ws.cli("report", "checkin", "--json").output)
    owners = {r["owner"]: r for r in report["owners"]}
    assert owners["akim"] == {
        "owner": "akim",
        "account": "akim",
        "partners": 1,
        "reached": 1,
        "replied": 1,
        "waiting_for_a_person": 1,
    }
    assert owners[""]["account"] is None and owners[""]["partners"] == 1
    # "jlee" and "JLee" in the roster are one owner
    assert sum(r["partners"] for r in report["owners"] if r["owner"].lower() == "jlee") == 2
    text = ws.cli("report", "checkin").output
    assert "Per owner:" in text and "WAITING FOR A PERSON" in text and "(no owner)" in text
    narrowed = json.loads(ws.cli("report", "checkin", "--owner", "akim", "--json").output)
    assert [r["owner"] for r in narrowed["owners"]] == ["akim"]
    assert [r["partner"] for r in narrowed["replies"]] == ["it@netforge.test"]
    assert "it@netforge.test" not in {s["partner"] for s in narrowed["never_answered"]}
    assert {s["partner"] for s in narrowed["never_answered"]} == set()
    page = tmp_path / "report.html"
    assert ws.cli("report", "checkin", "--html", str(page)).exit_code == 0
    html = page.read_text()
    assert '<table id="owners">' in html and "<td>akim</td><td>akim</td>" in html
    assert "<b>Friday</b>" not in html  # partner text stays escaped


def test_exports_carry_the_owner_and_the_sending_account(answered) -> None:
    ws = answered
    events = [json.loads(line) for line in ws.cli("export", "events").output.splitlines()]
    sent_events = {e["partner"]: e for e in events if e["kind"] == "sent"}
    assert sent_events["it@netforge.test"]["owner"] == "akim"
    assert sent_events["it@netforge.test"]["account"] == "akim"
    assert sent_events["solo@nobody.test"]["account"] == "office"
    replies = [json.loads(line) for line in ws.cli("export", "replies").output.splitlines()]
    by_partner = {r["partner"]: r for r in replies}
    assert (
        by_partner["nurse@mercy.test"]["account"],
        by_partner["nurse@mercy.test"]["read_by"],
    ) == (
        "jlee",
        "jlee",
    )
    assert by_partner["it@netforge.test"]["owner"] == "akim"
    partners = [json.loads(line) for line in ws.cli("export", "partners").output.splitlines()]
    assert {p["email"]: p["account"] for p in partners} == {
        p["email"]: OWNED_BY.get(p["email"], "office") for p in ROSTER
    }


# ----------------------------------------------------------------------------- digests


def digests(smtp_server) -> dict[str, list]:
    found: dict[str, list] = {}
    for m in smtp_server.messages:
        if m.message["X-Outreach"] == "digest":
            found.setdefault(m.rcpt_tos[0], []).append(m)
    return found


@pytest.mark.parametrize("sender", [None, "office"])
def test_each_owner_gets_a_digest_about_their_own_partners(
    tmp_path, smtp_server, mailboxes, monkeypatch, sender
) -> None:
    import logging

    from outreach.engine.digest import send_digest
    from outreach.engine.owner_digest import send_owner_digests

    extra = "[digest]\nper_owner = true\n" + (f'account = "{sender}"\n' if sender else "")
    ws = team_workspace(tmp_path, smtp_server.port, mailboxes, monkeypatch, extra=extra)
    ws.add_partners(ROSTER)
    worker = ws.worker()
    worker.cycle()
    ws.clock.advance(hours=1)
    for account, email, words in (
        ("jlee", "nurse@mercy.test", "Nurse words for jlee."),
        ("akim", "chef@bistro.test", "Chef words for akim."),
    ):
        mailboxes[account].append(
            partner_mail.reply(sent(smtp_server, email)[0].raw, words, when=ws.clock())
        )
    assert worker.cycle()[0].recorded == 2
    ws.clock.advance(hours=20)  # 07:00 the next morning: the digests are due
    log = logging.getLogger("outreach.test.team")
    # per_owner alone: no coordinator's digest (no `to`)
    assert send_digest(ws.config, ws.campaigns, ws.store, ws.clock(), log) is None
    statuses = send_owner_digests(ws.config, ws.campaigns, ws.store, ws.clock(), log)
    assert statuses == {"jlee": "sent", "akim": "sent", "Pat Ng": "sent"}
    found = digests(smtp_server)
    assert set(found) == {"jlee@district.test", "akim@district.test"}
    (to_jlee,) = found["jlee@district.test"]
    to_akim = found["akim@district.test"]
    assert len(to_akim) == 2  # akim's own and Pat Ng's, both to akim's address
    jlee_text = to_jlee.message.get_content()
    assert "Nurse words for jlee." in jlee_text and "Chef words" not in jlee_text
    assert "boss@build.test" in jlee_text and "it@netforge.test" not in jlee_text
    akim_texts = [m.message.get_content() for m in to_akim]
    assert sum("Chef words for akim." in t for t in akim_texts) == 1
    assert not any("Nurse words" in t or "solo@nobody.test" in t for t in akim_texts)
    expected_from = {
        "jlee@district.test": sender and TEAM[sender][0] or "jlee@district.test",
        "akim@district.test": sender and TEAM[sender][0] or "akim@district.test",
    }
    for to, messages in found.items():
        for m in messages:
            assert m.mail_from == expected_from[to] == from_address(m)
    # never twice the same day, even after a restart
    assert send_owner_digests(ws.config, ws.campaigns, ws.store, ws.clock(), log) == {}
    assert sum(len(v) for v in digests(smtp_server).values()) == 3
    ws.close()


def test_per_owner_config_is_checked(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f'[accounts.jlee]\n{ACCOUNT.format("jlee")}\n[digest]\nper_owner = "yes"\n',
    )
    with pytest.raises(Problems) as caught:
        load_config(path)
    assert any("digest.per_owner: expected a boolean" in p for p in caught.value.problems)
    write(tmp_path, f"[accounts.jlee]\n{ACCOUNT.format('jlee')}\n[digest]\nper_owner = true\n")
    with pytest.raises(Problems) as caught:
        load_config(path)
    assert any("digest.per_owner: no account lists owners" in p for p in caught.value.problems)


def test_a_refused_digest_account_holds_back_only_the_digest(
    tmp_path, smtp_server, smtp_server_factory, mailboxes, monkeypatch
) -> None:
    import logging

    from outreach.engine.digest import send_digest

    guarded = smtp_server_factory(username="akim@district.test", password="right")
    monkeypatch.setenv("AKIM_SMTP_PW", "wrong")
    ws = team_workspace(
        tmp_path,
        smtp_server.port,
        mailboxes,
        monkeypatch,
        smtp_auth={"akim": (guarded.port, "akim@district.test", "AKIM_SMTP_PW")},
        extra='[digest]\nto = "jlee@district.test"\naccount = "akim"\n',
    )
    ws.add_partners(ROSTER)
    log = logging.getLogger("outreach.test.team")
    # a team: no AuthenticationError (it would stop the worker for everyone)
    assert send_digest(ws.config, ws.campaigns, ws.store, ws.clock(), log) == "deferred"
    assert ws.store.last_digest() is None  # the day is given back: tried again
    assert ws.worker().send_cycle().sent == 4
    monkeypatch.setenv("AKIM_SMTP_PW", "right")
    assert send_digest(ws.config, ws.campaigns, ws.store, ws.clock(), log) == "sent"
    ws.close()


# ----------------------------------------------------------------------------- the rules


def test_a_sequence_keeps_its_account_unless_the_account_is_gone() -> None:
    from outreach.core.model import Campaign, SequenceState, Step
    from outreach.core.plan import sending_account

    campaign = Campaign(
        name="c",
        source=Path("c.toml"),
        account="owner",
        steps=(Step(1, "t", "s", timedelta(0)),),
        owner_accounts={"akim": "akim"},
        fallback_account=None,
    )
    moved = Partner(email="x@p.test", owner="akim")
    orphan = Partner(email="y@p.test", owner="rsmith")
    started = SequenceState("c", 1, "active", 1, None, None, account="jlee")
    accounts = {"jlee", "akim"}
    assert sending_account(campaign, moved, None, accounts) == "akim"  # a new sequence
    assert sending_account(campaign, moved, started, accounts) == "jlee"  # kept
    assert sending_account(campaign, moved, started, {"akim"}) == "akim"  # jlee is gone
    assert sending_account(campaign, orphan, None, accounts) is None  # nobody sends
    assert sending_account(campaign, orphan, started, accounts) == "jlee"  # begun: goes on


def test_preview_renders_from_the_partners_owners_account(team) -> None:
    result = team.cli("preview", "checkin", "--partner", "it@netforge.test")
    assert result.exit_code == 0, result.output
    assert "From: Akim <akim@district.test>" in result.output


def test_a_database_from_before_m007_keeps_each_sequences_account(tmp_path: Path) -> None:
    """m007 adds sequences.account, filled from each sequence's first message, so that
    follow-ups of sequences begun before the upgrade keep their sender too."""
    import sqlite_utils
    from workspace import Workspace

    from outreach.store import migrations

    path = tmp_path / "outreach.db"
    old = sqlite_utils.Database(path)
    migrations.apply(old, stop_before="m007_team_accounts")
    stamp = "2026-11-20T15:00:00.000000+00:00"
    old.execute(
        "INSERT INTO partners (email, created_at, updated_at) VALUES ('a@p.test', ?, ?)",
        [stamp, stamp],
    )
    old.execute(
        "INSERT INTO messages (campaign, partner_id, step, account, message_id, to_addr,"
        " subject, status, raw, created_at, updated_at, sent_at) VALUES ('checkin', 1, 1,"
        " 'jlee', '<1@d.test>', 'a@p.test', 's', 'sent', x'00', ?, ?, ?)",
        [stamp, stamp, stamp],
    )
    old.execute(
        "INSERT INTO sequences (campaign, partner_id, state, last_step, last_sent_at,"
        " updated_at) VALUES ('checkin', 1, 'active', 1, ?, ?)",
        [stamp, stamp],
    )
    old.conn.commit()
    old.close()
    ws = Workspace(tmp_path, smtp_port=2525)
    assert ws.store.sequence("checkin", 1).account == "jlee"
    assert {"account_state", "owner_digests"} <= set(ws.store.db.table_names())
    ws.close()


def test_a_new_round_goes_from_the_account_of_the_partners_owner_today(team, smtp_server) -> None:
    """Issue 19 meets issue 21: a round keeps its account to its last step, and the next
    round (a new sequence, a new thread) starts from the account of the owner then."""
    campaign = team.root / "campaigns" / "checkin.toml"
    campaign.write_text('repeat = "30d"\n' + campaign.read_text(), encoding="utf-8")
    team.worker().send_cycle()
    team.store.upsert_partners([Partner(**{**ROSTER[0], "owner": "akim"})], team.clock())
    for days in (2, 3, 1):  # steps 2 and 3, then the round is seen to be finished
        team.clock.advance(days=days, minutes=1)
        team.worker().send_cycle()
    round_one = sent(smtp_server, "nurse@mercy.test")
    assert [m.mail_from for m in round_one] == ["jlee@district.test"] * 3
    planned = json.loads(team.cli("plan", "--days", "40", "--json").output)
    ahead = [p for p in planned if p["partner"] == "nurse@mercy.test"]
    assert ahead and {(p["round"], p["account"]) for p in ahead} == {(2, "akim")}
    team.clock.advance(days=31)
    team.worker().send_cycle()
    *_, opening = sent(smtp_server, "nurse@mercy.test")
    assert len(sent(smtp_server, "nurse@mercy.test")) == 4
    assert opening.mail_from == "akim@district.test" == from_address(opening)
    assert "In-Reply-To" not in opening.message
