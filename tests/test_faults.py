"""Fault injection: servers that go away mid-cycle, UIDVALIDITY changes, hostile mail.

What must hold whatever happens: nothing lost, nothing sent or recorded twice, the error
reported, and the next cycle completes.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hostile_mail import assert_read_correctly, corpus
from workspace import Workspace, local_imap, partner_rows

from outreach.core.errors import AuthenticationError
from outreach.core.inbound.classify import classify_message
from outreach.engine.worker import Worker
from outreach.testing import partner_mail
from outreach.testing.imap_server import LocalIMAPServer
from outreach.testing.smtp_server import LocalSMTPServer

# --------------------------------------------------------------------------- helpers


def reading_workspace(
    root: Path,
    smtp: LocalSMTPServer,
    imap: LocalIMAPServer,
    monkeypatch: pytest.MonkeyPatch,
    **kwargs: object,
) -> Workspace:
    monkeypatch.setenv("TEST_IMAP_PW", imap.password)
    return Workspace(
        root,
        smtp_port=smtp.port,
        imap=local_imap(imap),
        **kwargs,  # type: ignore[arg-type]
    )


def multiappend(imap: LocalIMAPServer, messages: list[bytes], chunk: int = 200) -> None:
    """APPEND many messages fast (MULTIAPPEND, RFC 3502), in order."""
    with imap.client(timeout=60) as client:
        for start in range(0, len(messages), chunk):
            client.multiappend("INBOX", messages[start : start + chunk])


def our_message_ids(ws: Workspace) -> dict[str, str]:
    return {
        r["to_addr"]: r["message_id"]
        for r in ws.store.query("SELECT to_addr, message_id FROM messages WHERE step = 1")
    }


# --------------------------------------------------------------------------- hostile mail


def test_hostile_messages_never_crash_and_ours_are_recorded(
    tmp_path: Path,
    smtp_server: LocalSMTPServer,
    imap_server: LocalIMAPServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Fuzzed MIME in the fast tier (pymap). The integration tier feeds 2,500 of them, and
    deeper nesting than pymap accepts, through Dovecot."""
    ws = reading_workspace(
        tmp_path, smtp_server, imap_server, monkeypatch, config_extra="[replies]\nbatch_size = 50"
    )
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
    tmp_path: Path,
    smtp_server: LocalSMTPServer,
    imap_server: LocalIMAPServer,
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
        b"Content-Type: text/plain; charset=utf-7\r\n\r\nFine +3Uo- thanks\r\n"
    )
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
        body = (
            b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (level, level)
            + body
            + b"\r\n--b%d--\r\n" % level
        )
    raw = (
        b"From: p0000@partners.test\r\nIn-Reply-To: <ours@district.test>\r\n"
        b"Subject: Re: Check-in\r\n" + body
    )
    started = time.monotonic()
    result = classify_message(raw)
    assert time.monotonic() - started < 1.0
    assert result.kind == "error" and "MIME structure not read" in result.reasons[0]
    assert result.headers.in_reply_to == "ours@district.test"
    assert result.headers.from_addr == "p0000@partners.test"


# --------------------------------------------------------------------------- SMTP outage


def ledger_statuses(ws: Workspace) -> Counter[str]:
    return Counter(r["status"] for r in ws.store.query("SELECT status FROM messages"))


def assert_each_sent_once(ws: Workspace, smtp: LocalSMTPServer) -> None:
    """Every ledger row is sent or unknown; what the server got, it got once, and every row
    that says `sent` is what the server got."""
    rows = ws.store.query("SELECT to_addr, step, status, message_id FROM messages")
    received = Counter(m.message["Message-ID"] for m in smtp.messages)
    assert set(received.values()) <= {1}, "a message was delivered twice"
    by_partner = Counter(m.rcpt_tos[0] for m in smtp.messages)
    assert set(by_partner.values()) <= {1}, "a partner got the same step twice"
    assert {r["status"] for r in rows} <= {"sent", "unknown"}
    for row in rows:
        if row["status"] == "sent":
            assert received[row["message_id"]] == 1, row
    assert set(received) <= {r["message_id"] for r in rows}


@pytest.mark.parametrize("concurrency", [1, 3])
def test_smtp_server_stopped_mid_batch(
    tmp_path: Path, smtp_server: LocalSMTPServer, concurrency: int
) -> None:
    smtp_server.delay = 0.02  # time spent inside DATA, where an outage hurts most
    ws = Workspace(tmp_path, smtp_port=smtp_server.port, limits=f"concurrency = {concurrency}")
    ws.add_partners(partner_rows(60))
    worker = ws.worker()

    def outage() -> None:
        smtp_server.wait_for(12, timeout=30)
        smtp_server.stop()  # cuts every open connection, refuses new ones

    stopper = threading.Thread(target=outage)
    stopper.start()
    report = worker.send_cycle()
    stopper.join()
    assert report.errors, "the outage is reported"
    assert any("cannot connect" in e for e in report.errors), report.errors
    assert 12 <= report.sent < 60
    statuses = ledger_statuses(ws)
    # nothing is left claimed: each message is sent, queued (never tried), deferred (tried
    # before DATA) or unknown (cut during DATA), and the report says so
    assert set(statuses) <= {"sent", "queued", "deferred", "unknown"}, statuses
    assert statuses["sent"] == report.sent and statuses["unknown"] == report.unknown
    assert statuses["unknown"] <= concurrency

    smtp_server.start()
    ws.clock.advance(minutes=1)  # the first retry of what was deferred
    report = worker.send_cycle()
    assert report.errors == []
    assert ledger_statuses(ws)["sent"] + ledger_statuses(ws)["unknown"] == 60
    assert_each_sent_once(ws, smtp_server)
    ws.close()


def test_login_refused_on_one_connection_while_another_is_in_data(
    tmp_path: Path,
    smtp_server_factory: Callable[..., LocalSMTPServer],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One connection is hung up on and its reconnect refused (the password was changed on
    the server) while the other connection waits for its DATA reply: that message's result
    is still recorded. It used to be cancelled mid-DATA and left claimed (`sending`), though
    the server had taken it."""
    server = smtp_server_factory(username="jlee", password="s3cret", delay=0.3)
    monkeypatch.setenv("TEST_SMTP_PW", "s3cret")
    ws = Workspace(
        tmp_path,
        smtp_port=server.port,
        limits="concurrency = 2",
        smtp_extra=', username = "jlee", password_env = "TEST_SMTP_PW"',
    )
    ws.add_partners(partner_rows(10))

    def password_changed() -> None:
        server.wait_for(2, timeout=10)
        server.password = "rotated"
        server.drop_after(0, reply="421 4.3.2 Service shutting down")

    changer = threading.Thread(target=password_changed)
    changer.start()
    with pytest.raises(AuthenticationError):
        ws.worker().send_cycle()
    changer.join()
    time.sleep(0.5)  # anything the server was still taking is in by now
    statuses = ledger_statuses(ws)
    assert statuses["sending"] == 0, statuses
    # every message the server took is recorded as sent; the batch stopped early (how many
    # got through first depends on timing: 2 before the change, 1-3 more in flight)
    assert statuses["sent"] == len(server.messages)
    assert 2 <= len(server.messages) < 10
    # the rest waits in the queue; the next run with the new password delivers it once
    monkeypatch.setenv("TEST_SMTP_PW", "rotated")
    ws.clock.advance(minutes=1)
    worker = ws.worker()
    worker.recover()
    assert worker.send_cycle().errors == []
    assert ledger_statuses(ws) == {"sent": 10}
    assert_each_sent_once(ws, server)
    ws.close()


# --------------------------------------------------------------------------- IMAP outage


def replies_to_all(ws: Workspace, smtp: LocalSMTPServer) -> list[bytes]:
    return [partner_mail.reply(m.raw, f"Answer from {m.rcpt_tos[0]}") for m in smtp.messages]


def stop_after(
    monkeypatch: pytest.MonkeyPatch, worker: Worker, count: int, action: Callable[[], None]
) -> None:
    """Run `action` (in the reading thread) right after the `count`-th message is recorded."""
    original = worker.reader.process
    seen = 0

    def process(*args: Any, **kwargs: Any) -> None:
        nonlocal seen
        original(*args, **kwargs)
        seen += 1
        if seen == count:
            action()

    monkeypatch.setattr(worker.reader, "process", process)


def assert_each_recorded_once(ws: Workspace, expected: int) -> None:
    rows = ws.store.query("SELECT message_id, partner_id, kind FROM inbound")
    assert len(rows) == expected
    assert len({r["message_id"] for r in rows}) == expected, "a reply was recorded twice"
    replies = Counter(
        r["partner_id"]
        for r in ws.store.query("SELECT partner_id FROM events WHERE kind = 'reply'")
    )
    assert len(replies) == expected and set(replies.values()) == {1}


def test_imap_server_stopped_mid_read(
    tmp_path: Path,
    smtp_server: LocalSMTPServer,
    imap_server: LocalIMAPServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ws = reading_workspace(
        tmp_path, smtp_server, imap_server, monkeypatch, config_extra="[replies]\nbatch_size = 10"
    )
    ws.add_partners(partner_rows(60))
    worker = ws.worker()
    assert worker.send_cycle().sent == 60
    replies = replies_to_all(ws, smtp_server)
    multiappend(imap_server, replies)

    stop_after(monkeypatch, worker, 25, imap_server.stop)
    report = worker.read_cycle()
    assert report.errors and "cannot connect" in report.errors[-1], report.errors
    read_before = ws.store.scalar("SELECT count(*) FROM inbound")
    assert 25 <= read_before < 60  # what was fetched before the outage is kept

    # pymap keeps mail in memory: it comes back empty, with a new UIDVALIDITY, and the
    # user's client puts the mail back (the first replies included: a safe rescan)
    imap_server.start()
    multiappend(imap_server, replies)
    report = worker.read_cycle()
    assert report.errors == [] and report.recorded == 60 - read_before
    assert_each_recorded_once(ws, 60)
    assert worker.read_cycle().recorded == 0
    ws.close()


def test_imap_server_restarted_during_the_reconnect_backoff(
    tmp_path: Path,
    smtp_server: LocalSMTPServer,
    imap_server: LocalIMAPServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The server is back (and refilled) while the reader waits to reconnect: the same
    cycle, or at the latest the next one, reads everything, once."""
    ws = reading_workspace(
        tmp_path, smtp_server, imap_server, monkeypatch, config_extra="[replies]\nbatch_size = 10"
    )
    ws.add_partners(partner_rows(40))
    worker = ws.worker()
    worker.send_cycle()
    replies = replies_to_all(ws, smtp_server)
    multiappend(imap_server, replies)

    def bounce_server() -> None:
        imap_server.stop()
        threading.Thread(
            target=lambda: (imap_server.start(), multiappend(imap_server, replies))
        ).start()

    stop_after(monkeypatch, worker, 15, bounce_server)
    first = worker.read_cycle()
    second = worker.read_cycle()
    assert second.errors == []
    assert first.recorded + second.recorded == 40
    assert_each_recorded_once(ws, 40)
    ws.close()
