"""A CTE team on the real stack (issue 19): three accounts with mailboxes of their own on
Postfix (submission, STARTTLS + AUTH) and Dovecot (IMAPS), a roster with three owners and
partners with none, one account = "owner" campaign.

Each partner gets step 1 from their owner's address; answers sent to each owner's mailbox
are read from there and stop the right sequences; a wrong password on one account leaves
the other two sending and reading (status --json names it); a follow-up after an owner
change comes from the first account in the same thread; each owner's digest goes to them
with their own partners.
"""

from __future__ import annotations

import json
import logging
import textwrap
from email.utils import parseaddr
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from workspace import ALWAYS_OPEN, THREE_STEPS, Workspace

from outreach.core.model import Partner
from outreach.engine.owner_digest import send_owner_digests
from outreach.testing import partner_mail

from .test_campaign_stack import inbox_of, parse, submit_raw

if TYPE_CHECKING:
    from conftest import Mailstack

OWNERS = {"jlee": "jlee", "akim": "akim", "office": "coord"}  # account -> the owner it lists


def team_config(stack: Mailstack, addresses: dict[str, str]) -> str:
    parts = [
        textwrap.dedent("""\
        [outreach]
        database = "outreach.db"
        timezone = "UTC"
        [template_vars]
        program = "Team CTE"
        [digest]
        per_owner = true
        """)
    ]
    for name, address in addresses.items():
        env = f"TEAM_{name.upper()}_PW"
        tls = f'ca_file = "{stack.ca_file}"'
        parts.append(
            f'[accounts.{name}]\nfrom = "{name.title()} <{address}>"\n'
            f'owners = ["{OWNERS[name]}"]\n'
            f'smtp = {{ host = "{stack.host}", port = {stack.submission_port}, '
            f'security = "starttls", username = "{address}", password_env = "{env}", {tls} }}\n'
            f'imap = {{ host = "{stack.host}", port = {stack.imaps_port}, security = "tls", '
            f'username = "{address}", password_env = "{env}", {tls} }}\n'
            f'[accounts.{name}.limits]\njitter = "0s"'
        )
    return "\n".join(parts) + "\n"


def test_a_team_sends_and_reads_from_each_owners_account(
    tmp_path: Path, mailstack: Mailstack, monkeypatch: pytest.MonkeyPatch
) -> None:
    accounts = {name: mailstack.new_user()[0] for name in OWNERS}
    partners = {key: mailstack.new_user()[0] for key in ("j1", "j2", "a1", "c1", "n1", "n2")}
    owner_of = {"j1": "jlee", "j2": "jlee", "a1": "akim", "c1": "coord", "n1": "", "n2": ""}
    account_of = {"j1": "jlee", "j2": "jlee", "a1": "akim", "c1": "office"}
    ws = Workspace(
        tmp_path,
        smtp_port=1,
        campaign='account = "owner"\nfallback_account = "office"\n' + ALWAYS_OPEN + THREE_STEPS,
    )
    (tmp_path / "config.toml").write_text(team_config(mailstack, accounts), encoding="utf-8")
    for name in OWNERS:
        monkeypatch.setenv(f"TEAM_{name.upper()}_PW", mailstack.users[accounts[name]])
    monkeypatch.setenv("TEAM_AKIM_PW", "not akim's password")  # sending and reading refused
    rows = [
        {"email": partners[k], "name": f"Partner {k}", "organization": f"Org {k}", "owner": o}
        for k, o in owner_of.items()
    ]
    ws.add_partners(rows)
    assert ws.cli("check").exit_code == 0

    # cycle 1: akim's login is refused; jlee and the office send and read all the same
    worker = ws.worker()
    read, sent = worker.cycle()
    assert sent.sent == 5 and any(accounts["akim"] in e for e in sent.errors), sent
    first = {k: inbox_of(mailstack, partners[k], 1)[0] for k in owner_of if k != "a1"}
    for key, message in first.items():
        expected = accounts[account_of.get(key, "office")]
        assert parseaddr(str(message["From"]))[1] == expected, key
    status = json.loads(ws.cli("status", "--json").output)["accounts"]
    assert status["akim"]["send"]["state"] == "failing"
    assert status["akim"]["read"]["state"] == "failing"
    assert accounts["akim"] in status["akim"]["send"]["reason"]
    for name in ("jlee", "office"):
        assert status[name]["send"]["state"] == status[name]["read"]["state"] == "ok"
    assert ws.store.query("SELECT account, status FROM messages WHERE status != 'sent'") == [
        {"account": "akim", "status": "queued"}
    ]

    # answers to the coordinator's and the office's own mailboxes are read from there
    c1_raw = next(iter(mailstack.wait_for_messages(partners["c1"]).values()))
    n1_raw = next(iter(mailstack.wait_for_messages(partners["n1"]).values()))
    submit_raw(
        mailstack,
        partners["c1"],
        [accounts["office"]],
        partner_mail.reply(c1_raw, "Coord partner: two interns in spring.", when=ws.clock()),
    )
    submit_raw(
        mailstack,
        partners["n1"],
        [accounts["office"]],
        partner_mail.reply(n1_raw, "No-owner partner: all good.", when=ws.clock()),
    )
    inbox_of(mailstack, accounts["office"], 2)
    ws.clock.advance(hours=1)
    read, sent = worker.cycle()
    assert read.kinds == {"reply": 2}, read
    assert sent.sent == 0  # akim still refused: its message waits, sent once later

    # akim's password is fixed: its message goes out once, from akim; akim's partner
    # answers to akim's mailbox
    monkeypatch.setenv("TEAM_AKIM_PW", mailstack.users[accounts["akim"]])
    ws.clock.advance(hours=1)
    read, sent = worker.cycle()
    assert sent.sent == 1 and sent.errors == [] and read.errors == []
    (to_a1,) = inbox_of(mailstack, partners["a1"], 1)
    assert parseaddr(str(to_a1["From"]))[1] == accounts["akim"]
    a1_raw = next(iter(mailstack.wait_for_messages(partners["a1"]).values()))
    submit_raw(
        mailstack,
        partners["a1"],
        [accounts["akim"]],
        partner_mail.reply(a1_raw, "Akim partner: let us meet.", when=ws.clock()),
    )
    inbox_of(mailstack, accounts["akim"], 1)
    ws.clock.advance(hours=1)
    read, _ = worker.cycle()
    assert read.kinds == {"reply": 1}
    status = json.loads(ws.cli("status", "--json").output)["accounts"]
    assert all(p["state"] == "ok" for parts in status.values() for p in parts.values())
    states = {
        r["email"]: r["state"]
        for r in ws.store.query(
            "SELECT p.email, s.state FROM sequences s JOIN partners p ON p.id = s.partner_id"
        )
    }
    replied = {partners[k] for k in ("c1", "n1", "a1")}
    assert {e for e, s in states.items() if s == "replied"} == replied
    read_by = {
        r["from_addr"]: r["account"]
        for r in ws.store.query("SELECT from_addr, account FROM inbound WHERE kind = 'reply'")
    }
    assert read_by == {partners["c1"]: "office", partners["n1"]: "office", partners["a1"]: "akim"}

    # each owner's digest: to their account's mailbox, from it, about their own partners
    ws.clock.advance(hours=18)  # 07:00 the next morning
    logger = logging.getLogger("outreach.test.team_stack")
    statuses = send_owner_digests(ws.config, ws.campaigns, ws.store, ws.clock(), logger)
    assert statuses == {"jlee": "sent", "akim": "sent", "coord": "sent"}
    digests = {}
    for name in OWNERS:
        found = mailstack.wait_for_messages(accounts[name], ["HEADER", "X-Outreach", "digest"])
        (raw,) = found.values()
        digests[name] = parse(raw)
        assert parseaddr(str(digests[name]["From"]))[1] == accounts[name]
    office = digests["office"].get_content()
    assert "Coord partner: two interns in spring." in office
    assert "No-owner partner" not in office and partners["n1"] not in office
    akim = digests["akim"].get_content()
    assert "Akim partner: let us meet." in akim
    assert partners["j1"] not in akim and "Coord partner" not in akim
    jlee = digests["jlee"].get_content()  # their partners' step 2 is due tomorrow
    assert partners["j1"] in jlee and partners["j2"] in jlee and "Akim partner" not in jlee

    # j1 moves from jlee to akim: step 2 still comes from jlee, in the same thread
    ws.store.upsert_partners([Partner(**{**rows[0], "owner": "akim"})], ws.clock())
    ws.clock.advance(days=2)
    read, sent = worker.cycle()
    assert sent.sent == 3  # j1, j2 (jlee) and n2 (office); the others replied
    j1_first, j1_second = inbox_of(mailstack, partners["j1"], 2)
    assert parseaddr(str(j1_second["From"]))[1] == accounts["jlee"]
    assert j1_second["In-Reply-To"] == j1_first["Message-ID"]
    assert j1_second["Subject"] == "Re: " + j1_first["Subject"]
    log = ws.cli("log", "--partner", partners["j1"]).output
    assert "Partner j1 reassigned from jlee to akim; checkin keeps its account and thread" in (
        " ".join(log.split())
    )

    ws.close()
