"""The sending engine against a real in-process SMTP server (aiosmtpd): no mocked client."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from workspace import ALWAYS_OPEN, Workspace, local_imap, partner_rows

from outreach.core.errors import AuthenticationError, StoreError
from outreach.core.settings import Limits, ServerSettings
from outreach.engine.sending import SendReport
from outreach.store import CLAIM_SQL
from outreach.testing.smtp_server import LocalSMTPServer
from outreach.transport.smtp import Envelope, deliver_batch

SAMPLE = b"From: coordinator@district.test\r\nSubject: hello\r\n\r\nHello.\r\n"


@pytest.fixture
def ws(tmp_path: Path, smtp_server: LocalSMTPServer):
    workspace = Workspace(tmp_path, smtp_port=smtp_server.port)
    yield workspace
    workspace.close()


def ledger(ws: Workspace) -> dict[str, str]:
    return {
        r["to_addr"] + f"#{r['step']}": r["status"]
        for r in ws.store.query("SELECT to_addr, step, status FROM messages")
    }


def events(ws: Workspace, kind: str) -> list[dict]:
    return ws.store.query("SELECT * FROM events WHERE kind = ? ORDER BY id", [kind])


def test_delivers_one_message_per_partner_with_headers(ws, smtp_server):
    ws.add_partners(partner_rows(3))
    worker = ws.worker()
    report = worker.send_cycle()
    assert (report.queued, report.sent) == (3, 3)
    received = smtp_server.wait_for(3)
    for item in received:
        assert len(item.rcpt_tos) == 1
        assert item.mail_from == "coordinator@district.test"
        message = item.message
        assert message["To"].addresses[0].addr_spec == item.rcpt_tos[0]
        assert message["Message-ID"].endswith("@district.test>")
        assert message["Date"] is not None
        assert (
            message["List-Unsubscribe"] == "<mailto:coordinator@district.test?subject=unsubscribe>"
        )
        assert message["Subject"].startswith("Check-in for Org ")
    ids = {r.message["Message-ID"] for r in received}
    assert ids == {r["message_id"] for r in ws.store.query("SELECT message_id FROM messages")}
    assert set(ledger(ws).values()) == {"sent"}
    assert len(events(ws, "sent")) == 3
    # nothing more is due right after
    assert worker.send_cycle().queued == 0


def test_follow_ups_thread_and_stop_at_the_last_step(ws, smtp_server):
    ws.add_partners(partner_rows(1))
    worker = ws.worker()
    worker.send_cycle()
    ws.clock.advance(days=1, hours=23)
    assert worker.send_cycle().queued == 0, "step 2 is due only after 2 days"
    ws.clock.advance(hours=1)
    assert worker.send_cycle().sent == 1
    ws.clock.advance(days=3)
    assert worker.send_cycle().sent == 1
    ws.clock.advance(days=30)
    assert worker.send_cycle().queued == 0
    first, second, third = (m.message for m in smtp_server.wait_for(3))
    assert second["Subject"] == "Re: " + first["Subject"]
    assert second["In-Reply-To"] == first["Message-ID"]
    assert second["References"] == first["Message-ID"]
    assert third["In-Reply-To"] == second["Message-ID"]
    assert third["References"].split() == [first["Message-ID"], second["Message-ID"]]


def test_unthreaded_step_has_its_own_subject(tmp_path, smtp_server):
    campaign = (
        ALWAYS_OPEN
        + """
[[steps]]
template = "hello"
subject = "First"
[[steps]]
template = "nudge"
after = "1d"
thread = false
subject = "A new question for {{ partner.organization }}"
"""
    )
    ws = Workspace(tmp_path, smtp_port=smtp_server.port, campaign=campaign)
    ws.add_partners(partner_rows(1))
    worker = ws.worker()
    worker.send_cycle()
    ws.clock.advance(days=1)
    worker.send_cycle()
    second = smtp_server.wait_for(2)[1].message
    assert second["Subject"] == "A new question for Org 0"
    assert second["In-Reply-To"] is None and second["References"] is None
    ws.close()


def test_451_defers_then_retries_after_the_backoff(ws, smtp_server):
    ws.add_partners(partner_rows(1))
    smtp_server.queue_data_responses("451 4.3.0 Try again later")
    worker = ws.worker()
    report = worker.send_cycle()
    assert (report.sent, report.deferred) == (0, 1)
    row = ws.store.query("SELECT * FROM messages")[0]
    assert row["status"] == "deferred" and row["smtp_code"] == 451
    assert worker.send_cycle().sent == 0, "not before the first retry delay (1m)"
    ws.clock.advance(minutes=1)
    assert worker.send_cycle().sent == 1
    assert len(smtp_server.wait_for(1)) == 1
    kinds = [
        e["kind"]
        for e in ws.store.query("SELECT kind FROM events WHERE kind != 'imported' ORDER BY id")
    ]
    assert kinds == ["deferred", "sent"]  # one line per outcome; no `queued` line


def test_the_partner_log_lists_messages_still_in_the_outbox(ws, smtp_server):
    """No `queued` event, but `outreach log --partner` shows what waits: queued, or deferred
    with its next try; nothing once it is sent."""
    first, second = (partner.email for partner in ws.add_partners(partner_rows(2)))
    worker = ws.worker()
    worker.sender.queue_due(SendReport())

    def waiting(email: str) -> list[str]:
        result = ws.cli("log", "--partner", email)
        assert result.exit_code == 0, result.output
        return [line for line in result.output.splitlines() if line.startswith("in the outbox")]

    assert waiting(first) == [
        'in the outbox: checkin step 1 "Check-in for Org 0", queued 2026-11-24 10:00 UTC'
    ]
    assert ws.cli("log", "--partner", first, "--campaign", "other").output.count("outbox") == 0
    smtp_server.queue_data_responses("451 4.3.0 Try again later")  # whichever comes first
    ws.clock.advance(minutes=5)
    assert worker.send_cycle().deferred == 1
    [deferred] = [
        r["to_addr"]
        for r in ws.store.query("SELECT to_addr FROM messages WHERE status = 'deferred'")
    ]
    sent = second if deferred == first else first
    org = "Org 0" if deferred == first else "Org 1"
    assert waiting(deferred) == [
        f'in the outbox: checkin step 1 "Check-in for {org}", deferred, '
        "next try 2026-11-24 10:06 UTC"
    ]
    assert waiting(sent) == []
    ws.clock.advance(minutes=1)
    assert worker.send_cycle().sent == 1
    assert waiting(deferred) == []


def test_retries_run_out_and_the_message_fails(tmp_path, smtp_server):
    ws = Workspace(tmp_path, smtp_port=smtp_server.port, limits='retry = ["1m", "2m"]')
    ws.add_partners(partner_rows(1))
    smtp_server.queue_data_responses(*["451 4.3.0 busy"] * 3)
    worker = ws.worker()
    worker.send_cycle()
    ws.clock.advance(minutes=1)
    worker.send_cycle()
    ws.clock.advance(minutes=2)
    report = worker.send_cycle()
    assert report.failed == 1
    row = ws.store.query("SELECT status, attempts, last_error FROM messages")[0]
    assert row["status"] == "failed" and row["attempts"] == 3
    assert "gave up after 3 attempts" in row["last_error"]
    # a message that ran out of retries does not judge the address
    assert ws.store.partners()[0].status == "active"
    ws.close()


def test_550_for_one_recipient_while_the_others_go_through(ws, smtp_server):
    ws.add_partners(partner_rows(4))
    smtp_server.refuse("p0002@partners.test", "550 5.1.1 No such user")
    report = ws.worker().send_cycle()
    assert (report.sent, report.failed) == (3, 1)
    assert sorted(m.rcpt_tos[0] for m in smtp_server.wait_for(3)) == [
        "p0000@partners.test",
        "p0001@partners.test",
        "p0003@partners.test",
    ]
    statuses = {p.email: p.status for p in ws.store.partners()}
    assert statuses["p0002@partners.test"] == "bounced"
    failed = events(ws, "failed")
    assert len(failed) == 1 and "No such user" in failed[0]["summary"]
    # bounced partners get nothing more, in any campaign
    ws.clock.advance(days=10)
    ws.worker().send_cycle()
    assert all(m.rcpt_tos[0] != "p0002@partners.test" for m in smtp_server.messages)


def test_dropped_connection_mid_batch_delivers_everything_once(ws, smtp_server):
    ws.add_partners(partner_rows(6))
    smtp_server.drop_after(2)  # hang up at the 3rd MAIL FROM
    report = ws.worker().send_cycle()
    assert report.sent == 6
    received = Counter(m.rcpt_tos[0] for m in smtp_server.wait_for(6))
    assert len(received) == 6 and set(received.values()) == {1}
    assert smtp_server.drops == 1


def test_421_reconnects_and_goes_on(ws, smtp_server):
    ws.add_partners(partner_rows(4))
    smtp_server.drop_after(1, reply="421 4.3.2 Service shutting down")
    report = ws.worker().send_cycle()
    assert report.sent == 4
    assert len({m.rcpt_tos[0] for m in smtp_server.wait_for(4)}) == 4


def test_connection_lost_during_data_is_unknown_not_resent(ws, smtp_server):
    ws.add_partners(partner_rows(3))
    smtp_server.drop_after(1, reply=None, when="data")
    worker = ws.worker()
    report = worker.send_cycle()
    assert report.unknown == 1 and report.sent == 2
    ws.clock.advance(days=1)
    worker.send_cycle()
    row = ws.store.query("SELECT * FROM messages WHERE status = 'unknown'")[0]
    # shown to the user, settled explicitly
    status = json.loads(ws.cli("status", "--json").output)
    assert status["unknown"][0]["id"] == row["id"]
    result = ws.cli("resolve", str(row["id"]), "--resend")
    assert result.exit_code == 0, result.output
    assert worker.send_cycle().sent == 1
    assert Counter(m.rcpt_tos[0] for m in smtp_server.messages)[row["to_addr"]] == 1


def test_starttls_verified_against_a_throwaway_ca(tmp_path, smtp_tls_server):
    ws = Workspace(
        tmp_path,
        smtp_port=smtp_tls_server.port,
        smtp_extra=f', ca_file = "{smtp_tls_server.ca_file}"',
    )
    # security = "none" is written by the workspace; switch to starttls on loopback
    config = (
        (tmp_path / "config.toml").read_text().replace('security = "none"', 'security = "starttls"')
    )
    (tmp_path / "config.toml").write_text(config)
    ws.add_partners(partner_rows(2))
    assert ws.worker().send_cycle().sent == 2
    assert all(m.tls for m in smtp_tls_server.wait_for(2))
    ws.close()


def test_starttls_refuses_an_untrusted_certificate(tmp_path, smtp_tls_server):
    ws = Workspace(tmp_path, smtp_port=smtp_tls_server.port)
    config = (
        (tmp_path / "config.toml").read_text().replace('security = "none"', 'security = "starttls"')
    )
    (tmp_path / "config.toml").write_text(config)
    ws.add_partners(partner_rows(1))
    report = ws.worker().send_cycle()
    assert report.sent == 0 and report.errors and "TLS" in report.errors[0]
    assert smtp_tls_server.messages == []
    # nothing was claimed: the message waits in the queue, not in an unknown state
    assert ws.store.query("SELECT status FROM messages")[0]["status"] == "queued"
    ws.close()


def test_auth_login_and_bad_password(tmp_path, smtp_server_factory, monkeypatch):
    server = smtp_server_factory(username="jlee", password="s3cret")
    ws = Workspace(
        tmp_path,
        smtp_port=server.port,
        smtp_extra=', username = "jlee", password_env = "TEST_SMTP_PW"',
    )
    ws.add_partners(partner_rows(2))
    monkeypatch.setenv("TEST_SMTP_PW", "wrong")
    with pytest.raises(AuthenticationError):
        ws.worker().send_cycle()
    assert ws.store.query("SELECT DISTINCT status FROM messages") == [{"status": "queued"}]
    monkeypatch.setenv("TEST_SMTP_PW", "s3cret")
    assert ws.worker().send_cycle().sent == 2
    ws.close()


def test_server_down_leaves_the_queue_for_the_next_cycle(ws, smtp_server):
    ws.add_partners(partner_rows(2))
    smtp_server.stop()
    report = ws.worker().send_cycle()
    assert report.sent == 0 and "cannot connect" in report.errors[0]
    assert {r["status"] for r in ws.store.query("SELECT status FROM messages")} == {"queued"}
    smtp_server.start()
    assert ws.worker().send_cycle().sent == 2


def test_per_day_limit_counts_from_the_ledger_across_restarts(tmp_path, smtp_server):
    ws = Workspace(tmp_path, smtp_port=smtp_server.port, limits="per_day = 3")
    ws.add_partners(partner_rows(5))
    report = ws.worker().send_cycle()
    assert report.sent == 3 and report.held_by_limit == 2
    # a new worker (a restart) still counts the 3 sent in the last 24 h
    ws.clock.advance(hours=12)
    assert ws.worker().send_cycle().sent == 0
    ws.clock.advance(hours=12, seconds=1)
    assert ws.worker().send_cycle().sent == 2
    assert len(smtp_server.wait_for(5)) == 5
    ws.close()


def test_per_minute_limit_spaces_the_sends(tmp_path, smtp_server):
    ws = Workspace(tmp_path, smtp_port=smtp_server.port, limits="per_minute = 120\nconcurrency = 2")
    ws.add_partners(partner_rows(4))
    started = time.monotonic()
    assert ws.worker().send_cycle().sent == 4
    elapsed = time.monotonic() - started
    assert elapsed >= 1.4, (
        f"4 messages at 120/min need at least 1.5 s of spacing, took {elapsed:.2f}"
    )
    stamps = sorted(m.received_at for m in smtp_server.messages)
    gaps = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
    assert min(gaps) >= 0.4
    ws.close()


def test_dry_run_changes_nothing(ws, smtp_server):
    ws.add_partners(partner_rows(2))
    result = ws.cli("run", "--once", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "2 message(s) would be sent" in result.output
    assert ws.store.query("SELECT count(*) AS n FROM messages")[0]["n"] == 0
    assert smtp_server.messages == []


def test_run_once_from_the_cli(ws, smtp_server):
    ws.add_partners(partner_rows(2))
    result = ws.cli("run", "--once")
    assert result.exit_code == 0, result.output
    assert "2 sent" in result.output
    assert len(smtp_server.wait_for(2)) == 2


def test_export_events_jsonl_contract(ws, smtp_server):
    ws.add_partners(partner_rows(1))
    ws.worker().send_cycle()
    result = ws.cli("export", "events", "--format", "jsonl")
    lines = [json.loads(line) for line in result.output.splitlines()]
    sent = [e for e in lines if e["kind"] == "sent"]
    assert len(sent) == 1
    event = sent[0]
    assert event["partner"] == "p0000@partners.test"
    assert event["campaign"] == "checkin" and event["step"] == 1
    assert event["at"].endswith("+00:00") and event["message_id"].startswith("<")
    imported = [e for e in lines if e["kind"] == "imported"][0]
    assert imported["step"] is None


def test_status_counts_per_campaign(ws, smtp_server):
    ws.add_partners(partner_rows(3))
    smtp_server.refuse("p0001@partners.test")
    ws.worker().send_cycle()
    status = json.loads(ws.cli("status", "--json").output)
    assert status["campaigns"]["checkin"]["sent"] == 2
    assert status["campaigns"]["checkin"]["failed"] == 1
    assert status["worker"]["running"] is False


def test_plan_shows_who_gets_what_when(ws, smtp_server):
    ws.add_partners(partner_rows(2))
    result = ws.cli("plan", "checkin", "--days", "10", "--json")
    rows = json.loads(result.output)
    assert sorted((r["partner"], r["step"]) for r in rows) == [
        ("p0000@partners.test", 1),
        ("p0000@partners.test", 2),
        ("p0000@partners.test", 3),
        ("p0001@partners.test", 1),
        ("p0001@partners.test", 2),
        ("p0001@partners.test", 3),
    ]


# --------------------------------------------------------------------------- Sent folder (IMAP)


def test_sent_copies_are_appended_to_the_sent_folder(
    tmp_path, smtp_server, imap_server, monkeypatch
):
    monkeypatch.setenv("TEST_IMAP_PW", imap_server.password)
    imap_server.create_folder("Sent")
    ws = Workspace(
        tmp_path,
        smtp_port=smtp_server.port,
        imap=local_imap(imap_server),
        account_extra="save_sent = true",
    )
    ws.add_partners(partner_rows(3))
    assert ws.worker().send_cycle().sent == 3
    copies = imap_server.messages("Sent")
    assert sorted(m.message["Message-ID"] for m in copies) == sorted(
        r["message_id"] for r in ws.store.query("SELECT message_id FROM messages")
    )
    assert all("\\Seen" in [str(f) for f in m.flags] for m in copies)
    assert ws.store.scalar("SELECT count(*) FROM messages WHERE saved_copy_at IS NULL") == 0
    ws.close()


def test_a_named_sent_folder_is_created_when_the_server_says_so(
    tmp_path, smtp_server, imap_server, monkeypatch
):
    """sent_folder names a folder that does not exist yet: the server answers the APPEND with
    NO [TRYCREATE] (RFC 3501 6.3.11), so outreach creates it, once, and saves every copy."""
    monkeypatch.setenv("TEST_IMAP_PW", imap_server.password)
    assert "Outreach Sent" not in imap_server.folders()
    ws = Workspace(
        tmp_path,
        smtp_port=smtp_server.port,
        imap={**local_imap(imap_server), "sent_folder": "Outreach Sent"},
        account_extra="save_sent = true",
    )
    ws.add_partners(partner_rows(3))
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    ws.logger.addHandler(handler)
    ws.logger.setLevel(logging.INFO)
    try:
        report = ws.worker().send_cycle()
    finally:
        ws.logger.removeHandler(handler)
    assert (report.sent, report.errors) == (3, [])
    assert "Outreach Sent" in imap_server.folders()
    copies = imap_server.messages("Outreach Sent")
    assert sorted(m.message["Message-ID"] for m in copies) == sorted(
        r["message_id"] for r in ws.store.query("SELECT message_id FROM messages")
    )
    created = [r.getMessage() for r in records if getattr(r, "event", None) == "folder_created"]
    assert created == ["created the folder Outreach Sent for copies of sent mail"]
    ws.close()


def test_unknown_after_a_crash_is_settled_from_the_sent_folder(
    tmp_path, smtp_server, imap_server, monkeypatch
):
    monkeypatch.setenv("TEST_IMAP_PW", imap_server.password)
    imap_server.create_folder("Sent")
    ws = Workspace(tmp_path, smtp_port=smtp_server.port, imap=local_imap(imap_server))
    ws.add_partners(partner_rows(2))
    worker = ws.worker()
    report = SendReport()
    worker.sender.queue_due(report)
    rows = ws.store.all_ledger_rows()
    for row in rows:  # the worker claimed both, then died
        assert ws.store.mark_sending([row.id], ws.clock()) == {row.id}
    imap_server.append(rows[0].raw, folder="Sent")  # the server kept a copy of the first
    ws.worker().recover()
    statuses = {r["id"]: r["status"] for r in ws.store.query("SELECT id, status FROM messages")}
    assert statuses == {rows[0].id: "sent", rows[1].id: "unknown"}
    kinds = [
        e["kind"]
        for e in ws.store.query(
            "SELECT kind FROM events WHERE outbound_id = ? ORDER BY id", [rows[0].id]
        )
    ]
    assert kinds == ["unknown", "resolved", "sent"]
    # the unknown one is never resent by itself
    ws.clock.advance(days=30)
    ws.worker().send_cycle()
    assert smtp_server.messages == [] or all(
        m.rcpt_tos[0] != rows[1].to_addr for m in smtp_server.messages
    )
    result = ws.cli("resolve", str(rows[1].id), "--sent")
    assert result.exit_code == 0, result.output
    assert (
        ws.store.query("SELECT status FROM messages WHERE id = ?", [rows[1].id])[0]["status"]
        == "sent"
    )
    ws.close()


def test_every_message_is_claimed_in_the_ledger_before_the_server_has_it(
    tmp_path, smtp_server_factory
):
    """DATA waits for the claim's commit (with four connections, the claim commits when its
    connection is ready for DATA, with the others' pending claims). Checked from the
    server's side, through a second database connection."""
    seen: dict[str, str] = {}
    ws: Workspace | None = None

    def check(message) -> None:
        assert ws is not None
        with sqlite3.connect(ws.root / "outreach.db") as db:
            (status,) = db.execute(
                "SELECT status FROM messages WHERE message_id = ?", [message.message["Message-ID"]]
            ).fetchone()
        seen[message.rcpt_tos[0]] = status

    server = smtp_server_factory(on_message=check)
    ws = Workspace(tmp_path, smtp_port=server.port, limits="concurrency = 4")
    ws.add_partners(partner_rows(40))
    report = ws.worker().send_cycle()
    assert report.sent == 40
    assert len(seen) == 40 and set(seen.values()) == {"sending"}
    assert set(ledger(ws).values()) == {"sent"}
    assert len(events(ws, "sent")) == 40
    ws.close()


def test_connections_share_commits_and_every_claim_commits_before_its_data(
    smtp_server_factory,
):
    """With four connections, a claim waits until its connection is ready for DATA and
    commits with whatever the others have pending: fewer commits than messages."""
    envelopes = numbered_envelopes(60)
    committed: set[int] = set()
    commits: list[tuple[int, int]] = []
    early: list[str] = []

    def check(message) -> None:  # on the server's side, at the end of DATA
        if int(message.rcpt_tos[0][1:].split("@")[0]) not in committed:
            early.append(message.rcpt_tos[0])

    smtp_server = smtp_server_factory(on_message=check)
    recorded: list[int] = []

    def transition(results, claims):
        commits.append((len(results), len(claims)))
        recorded.extend(envelope.key for envelope, _ in results)
        committed.update(envelope.key for envelope in claims)
        return {envelope.key for envelope in claims}

    run_batch(smtp_server, envelopes, transition, concurrency=4)
    assert len(smtp_server.wait_for(60)) == 60
    assert sorted(recorded) == list(range(1, 61))
    assert len(commits) < 40, commits  # one commit per message and claim would be 60+
    assert max(claims for _, claims in commits) >= 3, commits
    assert not early, "DATA before its claim was committed"


def test_a_result_is_committed_soon_even_with_no_claim_to_join(tmp_path, smtp_server_factory):
    """With several connections a result waits for the next claim's commit, but not longer
    than RESULT_DELAY. Both messages are in DATA (so both claims are committed); the first
    is answered, the second held for 0.5 s: meanwhile the first must be recorded as sent (a
    crash now would not leave it `unknown`), though no claim came to take its result along."""
    first_in: list[str] = []
    second_in = threading.Event()
    status_meanwhile: list[str] = []
    ws: Workspace | None = None

    def hold_the_second(message) -> None:  # on the server, in a thread per message
        if not first_in:
            first_in.append(message.message["Message-ID"])
            assert second_in.wait(10), "both messages reach DATA"
            return
        second_in.set()
        time.sleep(0.5)
        assert ws is not None
        with sqlite3.connect(ws.root / "outreach.db") as db:
            (status,) = db.execute(
                "SELECT status FROM messages WHERE message_id = ?", first_in
            ).fetchone()
        status_meanwhile.append(status)

    server = smtp_server_factory(on_message=hold_the_second)
    ws = Workspace(tmp_path, smtp_port=server.port, limits="concurrency = 2")
    ws.add_partners(partner_rows(2))
    assert ws.worker().send_cycle().sent == 2
    assert status_meanwhile == ["sent"]
    ws.close()


def test_a_claim_takes_only_rows_still_sendable_and_looks_them_up_by_id(tmp_path, smtp_server):
    ws = Workspace(tmp_path, smtp_port=smtp_server.port)
    ws.add_partners(partner_rows(3))
    report = SendReport()
    ws.worker().sender.queue_due(report)
    first, second, third = (row.id for row in ws.store.all_ledger_rows())
    assert ws.store.mark_sending([first], ws.clock()) == {first}
    assert ws.store.mark_sending([first, second, third], ws.clock()) == {second, third}
    # with four ids or more, SQLite preferred the status index to the ids
    sql = "EXPLAIN QUERY PLAN " + CLAIM_SQL.format(marks=",".join("?" * 8))
    plan = " ".join(row[-1] for row in ws.store.db.conn.execute(sql, ["now", *range(8)]))
    assert "INTEGER PRIMARY KEY" in plan and "messages_status" not in plan, plan
    ws.close()


def test_the_wal_is_checkpointed_once_after_a_delivery_batch(tmp_path, smtp_server):
    ws = Workspace(tmp_path, smtp_port=smtp_server.port, limits="concurrency = 2")
    ws.add_partners(partner_rows(30))
    assert ws.worker().send_cycle().sent == 30
    wal = ws.root / "outreach.db-wal"
    size = wal.stat().st_size
    with ws.store.write():  # a checkpointed WAL is written again from its start
        ws.store.add_event("note", ws.clock(), partner_id=None)
    assert wal.stat().st_size == size, "the batch's pages were not copied into the database"
    assert ws.store.scalar("PRAGMA wal_autocheckpoint") == 10_000
    ws.close()


def test_the_wal_is_checkpointed_on_a_helper_thread_while_the_batch_goes_on(
    tmp_path, smtp_server_factory, monkeypatch
):
    """During a batch, checkpoints run on their own thread (the event loop's commits would
    wait for the disk): the database file takes the batch's pages while messages are still
    being delivered, not only after the batch."""
    from outreach.store import database as store

    monkeypatch.setattr(store, "BATCH_CHECKPOINT_EVERY", 0.02)
    started: list[store.WalCheckpointer] = []

    class Watched(store.WalCheckpointer):
        def __enter__(self) -> store.WalCheckpointer:
            started.append(self)
            return super().__enter__()

    monkeypatch.setattr(store, "WalCheckpointer", Watched)
    sizes: list[int] = []

    def slowly(message) -> None:  # on the server's thread, while the batch goes on
        sizes.append((tmp_path / "outreach.db").stat().st_size)
        time.sleep(0.002)

    server = smtp_server_factory(on_message=slowly)
    ws = Workspace(tmp_path, smtp_port=server.port, limits="concurrency = 2")
    assert ws.store.path == tmp_path / "outreach.db"
    ws.add_partners(partner_rows(150))
    assert ws.worker().send_cycle().sent == 150
    assert len(sizes) == 150
    assert sizes[-1] > sizes[0], "no page reached the database file during the batch"
    (checkpointer,) = started
    assert checkpointer.done > 0 and checkpointer.error is None
    ws.close()


def test_a_failing_checkpointer_is_no_error_for_its_caller(tmp_path):
    from outreach.store.database import WalCheckpointer

    with WalCheckpointer(tmp_path / "missing" / "outreach.db", 0.01) as checkpointer:
        time.sleep(0.05)
    assert isinstance(checkpointer.error, sqlite3.Error)
    assert checkpointer.done == 0


def test_a_message_gets_one_deadline_and_a_silent_server_leaves_it_unknown(tmp_path, smtp_server):
    """`timeout` bounds the whole message. The server below answers the end of DATA only
    after 1.5 s: past the 1 s deadline, so it may have the message (unknown, never resent),
    and the connection is dropped; the next message goes out on a new one."""
    smtp_server.delay = 1.5
    ws = Workspace(
        tmp_path,
        smtp_port=smtp_server.port,
        smtp_extra=', timeout = "1s"',
        limits="concurrency = 1",
    )
    ws.add_partners(partner_rows(2))
    started = time.monotonic()
    report = ws.worker().send_cycle()
    assert report.unknown == 2 and report.sent == 0
    assert time.monotonic() - started < 2 * 1.5, "each message stopped at its deadline"
    reasons = {r["last_error"] for r in ws.store.query("SELECT last_error FROM messages")}
    assert reasons == {"connection lost during DATA (no answer within 1s)"}
    ws.close()


def numbered_envelopes(count: int) -> list[Envelope]:
    return [
        Envelope(key, "coordinator@district.test", f"p{key}@partners.test", SAMPLE)
        for key in range(1, count + 1)
    ]


def run_batch(server, envelopes, transition, concurrency=2, should_stop=lambda: False):
    settings = ServerSettings(
        "smtp", "accounts.test.smtp", Path("config.toml"), server.host, server.port, "none"
    )
    limits = Limits(concurrency=concurrency)
    asyncio.run(deliver_batch(settings, None, limits, envelopes, transition, should_stop))


def test_a_stop_mid_batch_leaves_every_claim_with_its_result(smtp_server):
    """Told to stop, the four connections finish the message they are on; each message
    claimed gets its result written (pending ones at the end), the rest is never claimed."""
    envelopes = numbered_envelopes(80)
    claimed: set[int] = set()
    recorded: set[int] = set()

    def transition(results, claims):
        recorded.update(envelope.key for envelope, _ in results)
        claimed.update(envelope.key for envelope in claims)
        return {envelope.key for envelope in claims}

    run_batch(smtp_server, envelopes, transition, 4, should_stop=lambda: len(recorded) >= 10)
    delivered = {int(m.rcpt_tos[0][1:].split("@")[0]) for m in smtp_server.messages}
    assert 10 <= len(recorded) < 80
    assert recorded == claimed == delivered


def test_a_refused_claim_sends_nothing_and_records_nothing(smtp_server):
    envelopes = numbered_envelopes(6)
    recorded: list[int] = []

    def transition(results, claims):
        recorded.extend(envelope.key for envelope, _ in results)
        return {envelope.key for envelope in claims if envelope.key != 3}

    run_batch(smtp_server, envelopes, transition)
    assert sorted(m.rcpt_tos[0] for m in smtp_server.wait_for(5)) == [
        f"p{key}@partners.test" for key in (1, 2, 4, 5, 6)
    ]
    time.sleep(0.2)
    assert len(smtp_server.messages) == 5
    assert sorted(recorded) == [1, 2, 4, 5, 6]


def test_a_ledger_failure_stops_the_batch_before_the_next_data(smtp_server):
    envelopes = numbered_envelopes(10)
    claimed: list[int] = []

    def transition(results, claims):
        if any(envelope.key == 4 for envelope in claims):
            raise StoreError("outreach.db: disk I/O error")
        claimed.extend(envelope.key for envelope in claims)
        return {envelope.key for envelope in claims}

    with pytest.raises(StoreError, match="disk I/O error"):
        run_batch(smtp_server, envelopes, transition)
    delivered = {int(m.rcpt_tos[0][1:].split("@")[0]) for m in smtp_server.messages}
    assert 4 not in delivered
    assert delivered <= set(claimed), "nothing reaches the server without a committed claim"


def test_new_messages_are_rendered_while_the_batch_goes_out_each_in_the_outbox_first(
    tmp_path, smtp_server_factory
):
    """What is due now is not rendered all before the first message goes out: it is
    rendered in the event loop's idle time and written to the outbox with the ledger's
    commits. Every message's outbox row is committed before its envelope reaches the
    server (checked at RCPT, through a second connection), and each partner gets one."""
    rows_at_first_message: list[int] = []
    missing_at_rcpt: list[str] = []
    ws: Workspace | None = None

    def outbox_count() -> int:
        assert ws is not None
        with sqlite3.connect(ws.root / "outreach.db") as db:
            return int(db.execute("SELECT count(*) FROM messages").fetchone()[0])

    def first_message(message) -> None:
        if not rows_at_first_message:
            rows_at_first_message.append(outbox_count())

    server = smtp_server_factory(on_message=first_message)
    on_rcpt = server._on_rcpt

    def check_rcpt(envelope, address, options):  # on the server's loop, before its reply
        assert ws is not None
        with sqlite3.connect(ws.root / "outreach.db") as db:
            row = db.execute(
                "SELECT status FROM messages WHERE to_addr = ? AND status IN ('queued', 'sending')",
                [address],
            ).fetchone()
        if row is None:
            missing_at_rcpt.append(address)
        return on_rcpt(envelope, address, options)

    server._on_rcpt = check_rcpt
    ws = Workspace(tmp_path, smtp_port=server.port, limits="concurrency = 2")
    ws.add_partners(partner_rows(120))
    report = ws.worker().send_cycle()
    assert (report.queued, report.sent, report.errors) == (120, 120, [])
    assert rows_at_first_message and rows_at_first_message[0] < 120, rows_at_first_message
    assert not missing_at_rcpt
    assert sorted(Counter(m.rcpt_tos[0] for m in server.messages).values()) == [1] * 120
    assert set(ledger(ws).values()) == {"sent"}
    assert len(events(ws, "sent")) == 120 and events(ws, "queued") == []
    ws.close()


def test_a_stop_mid_batch_leaves_no_partner_unaccounted_and_none_sent_twice(tmp_path, smtp_server):
    """Stopped while new messages are still being rendered: what was not written to the
    outbox is planned again next cycle, what was is sent from the outbox; nobody twice."""
    stop = threading.Event()
    ws = Workspace(tmp_path, smtp_port=smtp_server.port, limits="concurrency = 2")
    ws.add_partners(partner_rows(80))
    worker = ws.worker(should_stop=stop.is_set)
    smtp_server.on_message = lambda message: stop.set() if len(smtp_server.messages) >= 9 else None
    first = worker.send_cycle()
    assert 10 <= first.sent < 80
    statuses = Counter(ledger(ws).values())
    assert set(statuses) <= {"sent", "queued"} and statuses["sent"] == first.sent
    stop.clear()
    smtp_server.on_message = None
    second = worker.send_cycle()
    assert first.sent + second.sent == 80
    assert sorted(Counter(m.rcpt_tos[0] for m in smtp_server.messages).values()) == [1] * 80
    assert set(ledger(ws).values()) == {"sent"}
    ws.close()


def test_idle_work_runs_only_while_the_event_loop_would_wait():
    import socket

    from outreach.transport.smtp import IdleWorkSelector

    pieces: list[float] = []
    limit = [10_000]

    def work() -> None:
        pieces.append(time.monotonic())
        time.sleep(0.0005)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        await asyncio.sleep(0.05)  # waiting on a timer: the work runs, the timer still fires
        assert 0.05 <= time.monotonic() - started < 1  # not after all 10,000 pieces (5 s)
        assert len(pieces) > 5
        before = len(pieces)  # callbacks ready to run: no work between them
        done = loop.create_future()

        def chain(left: int) -> None:
            if left:
                loop.call_soon(chain, left - 1)
            else:
                done.set_result(len(pieces))

        chain(200)
        assert await done == before
        near, far = socket.socketpair()  # a socket ready to read waits one piece at most
        arrived = loop.create_future()
        loop.add_reader(near, lambda: arrived.done() or arrived.set_result(time.monotonic()))
        await asyncio.sleep(0.01)
        sent = time.monotonic()
        far.send(b"x")
        assert await arrived - sent < 0.5  # one piece is 0.5 ms; all of them, 5 s
        loop.remove_reader(near)
        near.close()
        far.close()
        limit[0] = len(pieces)  # nothing wanted: the loop waits without working
        await asyncio.sleep(0.05)
        assert len(pieces) == limit[0]

    selector = IdleWorkSelector()
    selector.add(work, lambda: len(pieces) < limit[0])
    with asyncio.Runner(loop_factory=lambda: asyncio.SelectorEventLoop(selector)) as runner:
        runner.run(main())


def test_idle_work_that_resolves_a_future_lets_its_waiter_run_at_once():
    """A piece of idle work that makes a callback ready (a commit resolving claims) hands
    control back to the loop: the waiter must not sit until a socket or timer wakes the loop
    (here, the long sleep's timer)."""
    from outreach.transport.smtp import IdleWorkSelector

    selector = IdleWorkSelector()
    other: list[int] = []

    async def main() -> float:
        loop = asyncio.get_running_loop()
        claim = loop.create_future()
        selector.add(lambda: claim.set_result(True) or True, lambda: not claim.done())
        selector.add(lambda: other.append(1), lambda: len(other) < 5)
        sleeper = asyncio.ensure_future(asyncio.sleep(30))
        started = time.monotonic()
        assert await claim
        sleeper.cancel()
        return time.monotonic() - started

    with asyncio.Runner(loop_factory=lambda: asyncio.SelectorEventLoop(selector)) as runner:
        assert runner.run(main()) < 1


def test_a_deadline_while_a_claim_waits_for_its_commit_leaves_the_claim_whole():
    """On an idle-work loop a claim's commit waits for the loop's next idle moment; a
    message's deadline may end the wait first. The claim must still be committed and its
    outcome given to the next wait (a cancelled claim made the retry raise CancelledError)."""
    from outreach.transport.smtp import LedgerWriter

    committed: list[int] = []

    def transition(results, claims):
        committed.extend(envelope.key for envelope in claims)
        return {envelope.key for envelope in claims}

    async def main() -> bool:
        writer = LedgerWriter(transition, at_idle=True)  # nobody commits until write() below
        claim = writer.claim(Envelope(7, "a@x.test", "b@x.test", b"x"))
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.02):
                await claim
        writer.write()
        return await claim

    assert asyncio.run(main()) is True
    assert committed == [7]


class StagedLedger:
    """A smtp.Ledger that keeps what was staged apart from what was committed."""

    def __init__(self, fail_commit_at: int | None = None) -> None:
        self.staged: set[int] = set()
        self.committed: set[int] = set()
        self.recorded: list[int] = []
        self.stages = self.commits = 0
        self.fail_commit_at = fail_commit_at

    def stage(self, results, claims):
        self.stages += 1
        self.recorded.extend(envelope.key for envelope, _ in results)
        self.staged.update(envelope.key for envelope in claims)
        return {envelope.key for envelope in claims}

    def commit(self) -> None:
        self.commits += 1
        if self.commits == self.fail_commit_at:
            raise sqlite3.OperationalError("disk I/O error")
        self.committed |= self.staged
        self.staged = set()

    def rollback(self) -> None:
        self.staged = set()


def run_idle_batch(server, envelopes, ledger, concurrency=4):
    from outreach.transport.smtp import IdleWorkSelector, run_with_idle_work

    settings = ServerSettings(
        "smtp", "accounts.test.smtp", Path("config.toml"), server.host, server.port, "none"
    )
    idle = IdleWorkSelector()
    batch = deliver_batch(
        settings, None, Limits(concurrency=concurrency), envelopes, ledger, idle=idle
    )
    run_with_idle_work(batch, idle)


def test_the_ledger_stages_while_the_loop_waits_and_data_waits_for_the_commit(
    smtp_server_factory,
):
    """On an idle-work loop the ledger's statements run ahead (staged) while the connections
    wait for the server; a claim staged but not committed must never let its DATA go."""
    ledger = StagedLedger()
    early: list[str] = []

    def check(message) -> None:  # on the server's side, at the end of DATA
        if int(message.rcpt_tos[0][1:].split("@")[0]) not in ledger.committed:
            early.append(message.rcpt_tos[0])

    server = smtp_server_factory(on_message=check)
    run_idle_batch(server, numbered_envelopes(60), ledger)
    assert len(server.wait_for(60)) == 60
    assert sorted(ledger.recorded) == list(range(1, 61))
    assert ledger.committed == set(range(1, 61)) and not ledger.staged
    assert ledger.stages > ledger.commits, (ledger.stages, ledger.commits)
    assert not early, "DATA before its claim was committed"


def test_a_failed_commit_lets_no_staged_claim_reach_data(smtp_server):
    ledger = StagedLedger(fail_commit_at=3)
    with pytest.raises(sqlite3.OperationalError):
        run_idle_batch(smtp_server, numbered_envelopes(40), ledger)
    delivered = {int(m.rcpt_tos[0][1:].split("@")[0]) for m in smtp_server.messages}
    assert delivered <= ledger.committed
    assert len(delivered) < 40
