"""Thousands of malformed and hostile messages in a real Dovecot mailbox, read by the worker:
no crash, each message that points at us recorded once, the rest left alone."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from hostile_mail import assert_read_correctly, corpus
from workspace import Workspace, partner_rows

from outreach.localservers import LocalSMTPServer

if TYPE_CHECKING:
    from conftest import Mailstack


def test_thousands_of_hostile_messages_in_dovecot(
    tmp_path: Path, mailstack: Mailstack, smtp_server: LocalSMTPServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    coordinator, password = mailstack.new_user()
    monkeypatch.setenv("TEST_IMAP_PW", password)
    ws = Workspace(
        tmp_path, smtp_port=smtp_server.port,  # sending is not what this test is about
        imap={"host": mailstack.host, "port": mailstack.imaps_port, "security": "tls",
              "username": coordinator, "password_env": "TEST_IMAP_PW",
              "ca_file": mailstack.ca_file},
    )
    ws.add_partners(partner_rows(20))
    worker = ws.worker()
    assert worker.send_cycle().sent == 20
    ours = {r["to_addr"]: r["message_id"] for r in ws.store.query(
        "SELECT to_addr, message_id FROM messages")}
    # Dovecot takes nesting far deeper than the fast tier's pymap (and Python's recursion)
    made = corpus(20261125, 2500, ours, depths=(50, 400, 3000))
    # a reply whose subject is a UTF-7 encoded word that decodes to a lone surrogate
    made.insert(0, type(made[0])(
        b"From: p0003@partners.test\r\nTo: coordinator@district.test\r\n"
        b"Subject: =?utf-7?q?+3Uo-?= hi\r\nIn-Reply-To: "
        + ours["p0003@partners.test"].encode() + b"\r\nMessage-ID: <utf7@fuzz.test>\r\n"
        b"Content-Type: text/plain; charset=utf-7\r\n\r\nFine +3Uo- thanks\r\n",
        True, "irt", ("utf-7 surrogates",)))
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
