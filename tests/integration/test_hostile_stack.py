"""Thousands of malformed and hostile messages in a real Dovecot mailbox, read by the worker:
no crash, each message that points at us recorded once, the rest left alone."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from hostile_mail import assert_read_correctly, corpus
from workspace import Workspace, partner_rows

from outreach.testing.smtp_server import LocalSMTPServer

if TYPE_CHECKING:
    from conftest import Mailstack


def test_thousands_of_hostile_messages_in_dovecot(
    tmp_path: Path,
    mailstack: Mailstack,
    smtp_server: LocalSMTPServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    coordinator, password = mailstack.new_user()
    monkeypatch.setenv("TEST_IMAP_PW", password)
    ws = Workspace(
        tmp_path,
        smtp_port=smtp_server.port,  # sending is not what this test is about
        imap={
            "host": mailstack.host,
            "port": mailstack.imaps_port,
            "security": "tls",
            "username": coordinator,
            "password_env": "TEST_IMAP_PW",
            "ca_file": mailstack.ca_file,
        },
    )
    ws.add_partners(partner_rows(20))
    worker = ws.worker()
    assert worker.send_cycle().sent == 20
    ours = {
        r["to_addr"]: r["message_id"]
        for r in ws.store.query("SELECT to_addr, message_id FROM messages")
    }
    # Dovecot takes nesting far deeper than the fast tier's pymap (and Python's recursion)
    made = corpus(20261125, 2500, ours, depths=(50, 400, 3000))
    # a reply whose subject is a UTF-7 encoded word that decodes to a lone surrogate
    made.insert(
        0,
        type(made[0])(
            b"From: p0003@partners.test\r\nTo: coordinator@district.test\r\n"
            b"Subject: =?utf-7?q?+3Uo-?= hi\r\nIn-Reply-To: "
            + ours["p0003@partners.test"].encode()
            + b"\r\nMessage-ID: <utf7@fuzz.test>\r\n"
            b"Content-Type: text/plain; charset=utf-7\r\n\r\nFine +3Uo- thanks\r\n",
            True,
            "irt",
            ("utf-7 surrogates",),
        ),
    )
    with mailstack.imap(coordinator, timeout=60) as client:
        for start in range(0, len(made), 500):
            client.multiappend("INBOX", [h.raw for h in made[start : start + 500]])
        client.select_folder("INBOX", readonly=True)
        uids = sorted(client.search("ALL"))
    assert len(uids) == len(made)

    started = time.monotonic()
    report = worker.read_cycle()
    elapsed = time.monotonic() - started
    assert report.errors == [], report.errors[:3]
    assert report.seen == len(made)
    assert_read_correctly(ws, made, uids)
    utf7 = ws.store.query("SELECT kind, subject, text FROM inbound WHERE uid = ?", [uids[0]])[0]
    assert utf7["kind"] == "reply" and utf7["text"] == "Fine \ufffd thanks"
    assert worker.read_cycle().recorded == 0
    with mailstack.imap(coordinator) as client:
        client.select_folder("INBOX", readonly=True)
        assert client.search("SEEN") == []
    print(f"read {len(made)} hostile messages from Dovecot in {elapsed:.1f} s: {report.kinds}")
    ws.close()


def send_from_outside(stack: Mailstack, sender: str, recipient: str, raw: bytes) -> None:
    """Mail from the internet: Postfix's port 25, no TLS, no AUTH, any envelope sender (""
    is the null sender of a bounce, MAIL FROM:<>)."""
    import asyncio

    import aiosmtplib

    async def go() -> None:
        client = aiosmtplib.SMTP(
            hostname=stack.host, port=stack.smtp_port, start_tls=False, use_tls=False, timeout=20
        )
        async with client:
            await client.mail(sender)
            await client.rcpt(recipient)
            await client.data(raw)

    asyncio.run(go())


def test_a_stranger_cannot_change_the_record_through_postfix_and_dovecot(
    tmp_path: Path,
    mailstack: Mailstack,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Through the real servers: a stranger's reply in a partner's thread and a forged bounce
    (both from the internet, port 25) change nothing and wait for a person; a partner's
    reply dated 31 Dec 9999 is recorded with its words; a later message reusing its
    Message-ID is recorded and flagged, while the same reply delivered again is not."""
    from hostile_mail import forged_bounce, message_id_of, with_header

    from integration.test_campaign_stack import PASSWORD_ENV, stack_workspace, submit_raw
    from outreach.testing import partner_mail

    coordinator, password = mailstack.new_user()
    pat, _ = mailstack.new_user()
    quinn, _ = mailstack.new_user()
    monkeypatch.setenv(PASSWORD_ENV, password)
    ws = stack_workspace(tmp_path, mailstack, coordinator)
    ws.add_partners([{"email": pat, "name": "Pat"}, {"email": quinn, "name": "Quinn"}])
    worker = ws.worker()
    assert worker.cycle()[1].sent == 2
    to_pat = next(iter(mailstack.wait_for_messages(pat).values()))

    stranger = partner_mail.reply(
        to_pat, "Pat will not take interns. Do not write again.", sender="Eve <eve@evil.test>"
    )
    send_from_outside(mailstack, "eve@evil.test", coordinator, stranger)
    send_from_outside(mailstack, "", coordinator, forged_bounce(quinn))  # MAIL FROM:<>
    answer = with_header(
        partner_mail.reply(to_pat, "We can host two interns in March."),
        "Date",
        b"Fri, 31 Dec 9999 23:59:59 -1200",
    )
    submit_raw(mailstack, pat, [coordinator], answer)
    submit_raw(mailstack, pat, [coordinator], answer)  # delivered twice: other Received lines
    submit_raw(mailstack, pat, [coordinator], answer.replace(b"two interns", b"no interns"))
    mailstack.wait_for_messages(coordinator, count=5)

    ws.clock.advance(days=2)
    read, sent = worker.cycle()
    assert read.errors == [] and read.recorded == 4, read
    assert sent.sent == 1  # step 2 goes to Quinn, whom the forged bounce named; not to Pat
    assert len(mailstack.wait_for_messages(quinn, count=2)) == 2
    assert {p.email: p.status for p in ws.store.partners()} == {pat: "active", quinn: "active"}

    rows = {
        r["from_addr"] + "|" + (r["text"] or r["kind"]): r
        for r in ws.store.query(
            "SELECT i.*, p.email AS partner FROM inbound i JOIN partners p ON p.id = i.partner_id"
        )
    }
    eve = rows["eve@evil.test|Pat will not take interns. Do not write again."]
    assert eve["partner"] == pat and "not in the roster" in eve["unverified"]
    bounce = next(r for key, r in rows.items() if key.endswith("|bounce"))
    assert bounce["partner"] == quinn and "quotes none" in bounce["unverified"]
    first = rows[f"{pat}|We can host two interns in March."]
    assert first["date"] is None and first["date_header"] == "Fri, 31 Dec 9999 23:59:59 -1200"
    assert first["unverified"] is None and first["duplicate_of"] is None
    again = rows[f"{pat}|We can host no interns in March."]
    assert again["duplicate_of"] == first["id"]
    assert again["message_id"] == first["message_id"] == message_id_of(answer).strip("<>")

    queue = json.loads(ws.cli("replies", "--json", "--unhandled").output)
    assert {(r["from"], bool(r["unverified"]), r["duplicate_of"]) for r in queue} == {
        ("eve@evil.test", True, None),
        ("mailer-daemon@mx.evil.test", True, None),
        (pat, False, None),
        (pat, False, first["id"]),
    }
    ws.close()
