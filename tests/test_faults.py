"""Fault injection: servers that go away mid-cycle, UIDVALIDITY changes, hostile mail.

What must hold whatever happens: nothing lost, nothing sent or recorded twice, the error
reported, and the next cycle completes.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from hostile_mail import assert_read_correctly, corpus
from workspace import Workspace, partner_rows

from outreach.classify import classify_message
from outreach.localservers import LocalIMAPServer, LocalSMTPServer

# --------------------------------------------------------------------------- helpers


def reading_workspace(root: Path, smtp: LocalSMTPServer, imap: LocalIMAPServer,
                      monkeypatch: pytest.MonkeyPatch, **kwargs: object) -> Workspace:
    monkeypatch.setenv("TEST_IMAP_PW", imap.password)
    return Workspace(
        root, smtp_port=smtp.port,
        imap={"host": "127.0.0.1", "port": imap.port, "security": "none",
              "username": imap.user, "password_env": "TEST_IMAP_PW"},
        **kwargs,  # type: ignore[arg-type]
    )


def multiappend(imap: LocalIMAPServer, messages: list[bytes], chunk: int = 200) -> None:
    """APPEND many messages fast (MULTIAPPEND, RFC 3502), in order."""
    with imap.client(timeout=60) as client:
        for start in range(0, len(messages), chunk):
            client.multiappend("INBOX", messages[start : start + chunk])


def our_message_ids(ws: Workspace) -> dict[str, str]:
    return {r["to_addr"]: r["message_id"] for r in ws.store.query(
        "SELECT to_addr, message_id FROM messages WHERE step = 1")}


# --------------------------------------------------------------------------- hostile mail


def test_hostile_messages_never_crash_and_ours_are_recorded(
    tmp_path: Path, smtp_server: LocalSMTPServer, imap_server: LocalIMAPServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Fuzzed MIME in the fast tier (pymap). The integration tier feeds 2,500 of them, and
    deeper nesting than pymap accepts, through Dovecot."""
    ws = reading_workspace(tmp_path, smtp_server, imap_server, monkeypatch,
                           config_extra="[replies]\nbatch_size = 50")
    ws.add_partners(partner_rows(20))
    worker = ws.worker()
    assert worker.send_cycle().sent == 20
    made = corpus(20261124, 400, our_message_ids(ws))
    multiappend(imap_server, [h.raw for h in made])
    uids = [m.uid for m in imap_server.messages()]  # in APPEND order
    assert len(uids) == len(made)

    report = worker.read_cycle()
    assert report.errors == [] and report.seen == len(made)
    assert_read_correctly(ws, made, uids)
    # nothing is read twice, and the mailbox is untouched
    recorded = ws.store.scalar("SELECT count(*) FROM inbound")
    assert worker.read_cycle().recorded == 0
    assert ws.store.scalar("SELECT count(*) FROM inbound") == recorded
    assert all("\\Seen" not in m.flags for m in imap_server.messages())
    # what was recorded goes through the exports and the review queue
    for command in (("export", "events", "--format", "csv"), ("replies", "--json")):
        result = ws.cli(*command)
        assert result.exit_code == 0, result.output
    ws.close()


def test_text_that_sqlite_cannot_encode_is_stored(
    tmp_path: Path, smtp_server: LocalSMTPServer, imap_server: LocalIMAPServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """UTF-7 decodes to lone surrogates, which SQLite refuses as text: found by the fuzzing
    above (the reply was recorded as a processing error, without its partner)."""
    ws = reading_workspace(tmp_path, smtp_server, imap_server, monkeypatch)
    ws.add_partners(partner_rows(1))
    worker = ws.worker()
    worker.send_cycle()
    message_id = our_message_ids(ws)["p0000@partners.test"]
    imap_server.append(
        b"From: p0000@partners.test\r\nTo: coordinator@district.test\r\n"
        b"Subject: Re: hi\r\nIn-Reply-To: " + message_id.encode() + b"\r\n"
        b"Content-Type: text/plain; charset=utf-7\r\n\r\nFine +3Uo- thanks\r\n")
    report = worker.read_cycle()
    assert report.errors == [] and report.kinds == {"reply": 1}
    row = ws.store.query("SELECT kind, partner_id, text, subject FROM inbound")[0]
    assert (row["kind"], row["partner_id"]) == ("reply", 1)
    assert row["text"] == "Fine \ufffd thanks"
    ws.close()


@pytest.mark.parametrize("depth", [150, 3000])
def test_mime_nested_thousands_deep_keeps_its_headers_and_costs_little(depth: int) -> None:
    """The stdlib parser is quadratic in the nesting depth and ends in RecursionError: such a
    reply used to take ~5 s and come out with no headers, so it was matched to nobody."""
    body = b"Content-Type: text/plain\r\n\r\nhello"
    for level in range(depth):
        body = (b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (level, level)
                + body + b"\r\n--b%d--\r\n" % level)
    raw = (b"From: p0000@partners.test\r\nIn-Reply-To: <ours@district.test>\r\n"
           b"Subject: Re: Check-in\r\n" + body)
    started = time.monotonic()
    result = classify_message(raw)
    assert time.monotonic() - started < 1.0
    assert result.kind == "error" and "MIME structure not read" in result.reasons[0]
    assert result.headers.in_reply_to == "ours@district.test"
    assert result.headers.from_addr == "p0000@partners.test"
