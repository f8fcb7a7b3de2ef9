"""outreach itself against the real stack: Postfix submission (STARTTLS + AUTH, verified
with the stack's CA) and Dovecot IMAPS, read by the worker.

Every test takes its own users from ``mailstack.new_user()``: the coordinator's mailbox and
the partners' mailboxes are empty at the start and no other test writes to them.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import re
import threading
import time
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiosmtplib
import pytest
from workspace import Workspace

from outreach.core.settings import ServerSettings
from outreach.testing import partner_mail
from outreach.transport.imap import Mailbox

if TYPE_CHECKING:
    from conftest import Mailstack

PASSWORD_ENV = "OUTREACH_TEST_STACK_PW"


# --------------------------------------------------------------------------- helpers


def stack_workspace(root: Path, stack: Mailstack, coordinator: str, **kwargs: Any) -> Workspace:
    """A project whose account is `coordinator` on the stack: submission with STARTTLS and
    AUTH, IMAPS, both verified against the stack's own certificate (ca_file)."""
    imap = {
        "host": stack.host,
        "port": stack.imaps_port,
        "security": "tls",
        "username": coordinator,
        "password_env": PASSWORD_ENV,
        "ca_file": stack.ca_file,
    }
    imap.update(kwargs.pop("imap_extra", {}))
    return Workspace(
        root,
        smtp_port=stack.submission_port,
        smtp_host=stack.host,
        smtp_security="starttls",
        smtp_extra=(
            f', username = "{coordinator}", password_env = "{PASSWORD_ENV}", '
            f'ca_file = "{stack.ca_file}"'
        ),
        from_header=f"Coordinator <{coordinator}>",
        imap=imap,
        **kwargs,
    )


@pytest.fixture
def stack_env(monkeypatch: pytest.MonkeyPatch, mailstack: Mailstack) -> Iterator[None]:
    # every user of the stack has the same password ("secret"); checked, not assumed
    assert len(set(mailstack.users.values())) == 1
    monkeypatch.setenv(PASSWORD_ENV, next(iter(mailstack.users.values())))
    yield


def parse(raw: bytes) -> EmailMessage:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def submit_raw(stack: Mailstack, user: str, recipients: list[str], raw: bytes) -> None:
    """A partner's own mail client: submission port, STARTTLS verified, AUTH as `user`."""

    async def go() -> None:
        errors, _ = await aiosmtplib.send(
            raw,
            sender=user,
            recipients=recipients,
            hostname=stack.host,
            port=stack.submission_port,
            start_tls=True,
            tls_context=stack.tls_context(),
            username=user,
            password=stack.users[user],
            timeout=20,
        )
        assert errors == {}

    asyncio.run(go())


def inbox_of(stack: Mailstack, user: str, count: int, **kwargs: Any) -> list[EmailMessage]:
    return [parse(raw) for raw in stack.wait_for_messages(user, count=count, **kwargs).values()]


def kinds_of(ws: Workspace, partner: str) -> list[str]:
    return [
        r["kind"]
        for r in ws.store.query(
            "SELECT e.kind FROM events e JOIN partners p ON p.id = e.partner_id"
            " WHERE p.email = ? ORDER BY e.id",
            [partner],
        )
    ]


def flags_in(stack: Mailstack, user: str, folder: str = "INBOX") -> list[tuple[bytes, ...]]:
    with stack.imap(user) as c:
        c.select_folder(folder, readonly=True)
        uids = c.search("ALL")
        return [d[b"FLAGS"] for d in c.fetch(uids, ["FLAGS"]).values()] if uids else []


# --------------------------------------------------------------------------- the campaign


def test_full_campaign_with_replies_bounce_and_sent_copies(
    tmp_path: Path, mailstack: Mailstack, stack_env: None
) -> None:
    coordinator, _ = mailstack.new_user()
    replier, _ = mailstack.new_user()  # answers through Postfix (real delivery)
    appender, _ = mailstack.new_user()  # their answer is put in with IMAP APPEND
    silent, _ = mailstack.new_user()  # never answers: gets every follow-up
    gone = f"left-the-company@{mailstack.bounce_domain}"  # Postfix bounces it itself
    with mailstack.imap(coordinator) as c:
        c.create_folder("Sent")  # Dovecot here makes no Sent folder by itself

    ws = stack_workspace(tmp_path, mailstack, coordinator, account_extra="save_sent = true")
    rows = [
        {"email": address, "name": f"Partner {i}", "organization": f"Org {i}"}
        for i, address in enumerate([replier, appender, silent, gone])
    ]
    ws.add_partners(rows)
    worker = ws.worker()

    # cycle 1: step 1 to all four through Postfix submission
    read, sent = worker.cycle()
    assert (sent.queued, sent.sent, sent.errors) == (4, 4, []), sent
    assert read.errors == []
    first = {p: inbox_of(mailstack, p, 1)[0] for p in (replier, appender, silent)}
    ledger = {
        r["to_addr"]: r["message_id"]
        for r in ws.store.query("SELECT to_addr, message_id FROM messages WHERE step = 1")
    }
    for partner, message in first.items():
        assert message["Message-ID"] == ledger[partner]
        number = [replier, appender, silent].index(partner)
        assert message["Subject"] == f"Check-in for Org {number}"
        assert message["List-Unsubscribe"].startswith(f"<mailto:{coordinator}")

    # Postfix's own bounce arrives in the coordinator's INBOX as a real DSN
    (dsn,) = inbox_of(mailstack, coordinator, 1, criteria=["FROM", "MAILER-DAEMON"])
    assert dsn.get_content_type() == "multipart/report"

    # the replier answers from their own mail client: submission, then delivery by Postfix
    raw_first = mailstack.wait_for_messages(replier)
    answer = partner_mail.reply(
        next(iter(raw_first.values())), "We hired two of your students.\nMore next spring!"
    )
    submit_raw(mailstack, replier, [coordinator], answer)
    # the other answer lands in the mailbox by IMAP APPEND (a client's own copy, a migration)
    appended = partner_mail.reply(
        next(iter(mailstack.wait_for_messages(appender).values())), "Busy season, talk soon."
    )
    with mailstack.imap(coordinator) as c:
        c.append("INBOX", appended)
    inbox_of(mailstack, coordinator, 3)  # DSN + delivered reply + appended reply

    # cycle 2, two days later: the answers and the bounce are read first, then only the
    # silent partner gets step 2
    ws.clock.advance(days=2)
    read, sent = worker.cycle()
    assert read.errors == [] and sent.errors == []
    assert read.kinds == {"reply": 2, "bounce": 1}, read
    assert sent.sent == 1
    statuses = {p.email: p.status for p in ws.store.partners()}
    assert statuses == {replier: "active", appender: "active", silent: "active", gone: "bounced"}
    assert ws.store.sequence("checkin", 1).state == "replied"
    assert ws.store.sequence("checkin", 2).state == "replied"
    texts = {
        r["from_addr"]: r["text"]
        for r in ws.store.query("SELECT from_addr, text FROM inbound WHERE kind = 'reply'")
    }
    assert texts == {
        replier: "We hired two of your students.\nMore next spring!",
        appender: "Busy season, talk soon.",
    }
    assert "bounce" in kinds_of(ws, gone)

    # cycle 3: the last step; the silent partner's three messages form one thread
    ws.clock.advance(days=3)
    read, sent = worker.cycle()
    assert (sent.sent, read.recorded) == (1, 0)
    thread = inbox_of(mailstack, silent, 3)
    assert [m["Subject"] for m in thread] == ["Check-in for Org 2"] + ["Re: Check-in for Org 2"] * 2
    assert thread[2]["References"].split() == [thread[0]["Message-ID"], thread[1]["Message-ID"]]
    assert thread[2]["In-Reply-To"] == thread[1]["Message-ID"]
    assert len(mailstack.wait_for_messages(replier)) == 1  # nothing after the reply
    assert len(mailstack.wait_for_messages(appender)) == 1

    # the Sent folder holds one seen copy of every message that went out, bounced one too
    sent_ids = {
        r["message_id"]
        for r in ws.store.query("SELECT message_id FROM messages WHERE status = 'sent'")
    }
    assert len(sent_ids) == 6
    copies = mailstack.wait_for_messages(coordinator, folder="Sent", count=6)
    assert {parse(raw)["Message-ID"] for raw in copies.values()} == sent_ids
    assert all(b"\\Seen" in flags for flags in flags_in(mailstack, coordinator, "Sent"))
    # reading marked nothing in the INBOX as read, and moved or deleted nothing
    assert len(flags_in(mailstack, coordinator)) == 3
    assert all(b"\\Seen" not in flags for flags in flags_in(mailstack, coordinator))
    # nothing more is due, and nothing is read twice
    ws.clock.advance(days=30)
    read, sent = worker.cycle()
    assert (read.recorded, sent.queued) == (0, 0)
    ws.close()


def test_unknown_local_part_in_the_bounce_domain_via_run_once(
    tmp_path: Path, mailstack: Mailstack, stack_env: None
) -> None:
    """The same through the command line a cron job runs: `outreach run --once`."""
    coordinator, _ = mailstack.new_user()
    partner, _ = mailstack.new_user()
    gone = f"no-such-user@{mailstack.bounce_domain}"
    ws = stack_workspace(tmp_path, mailstack, coordinator)
    ws.add_partners([{"email": gone, "name": "Gone"}, {"email": partner, "name": "Here"}])
    result = ws.cli("run", "--once")
    assert result.exit_code == 0, result.output
    assert "2 sent" in result.output
    mailstack.wait_for_messages(coordinator, ["FROM", "MAILER-DAEMON"])
    result = ws.cli("run", "--once")
    assert result.exit_code == 0, result.output
    assert "1 bounce" in result.output, result.output
    statuses = {p.email: p.status for p in ws.store.partners()}
    assert statuses == {gone: "bounced", partner: "active"}
    row = ws.store.query("SELECT kind, hard, bounced, status_code FROM inbound")[0]
    assert (row["kind"], row["hard"], row["status_code"]) == ("bounce", 1, "5.1.1")
    assert gone in row["bounced"]
    ws.close()


def test_uidvalidity_change_on_dovecot_rescans_without_duplicates(
    tmp_path: Path, mailstack: Mailstack, stack_env: None
) -> None:
    """The folder is deleted and made again (a new UIDVALIDITY, RFC 3501 2.3.1.1); the
    user's client copies the old mail back: nothing is recorded twice, new mail is read."""
    coordinator, _ = mailstack.new_user()
    a, _ = mailstack.new_user()
    b, _ = mailstack.new_user()
    with mailstack.imap(coordinator) as c:
        c.create_folder("Partners")
    ws = stack_workspace(tmp_path, mailstack, coordinator, imap_extra={"folder": "Partners"})
    ws.add_partners([{"email": a, "name": "A"}, {"email": b, "name": "B"}])
    worker = ws.worker()
    assert worker.cycle()[1].sent == 2
    reply_a = partner_mail.reply(next(iter(mailstack.wait_for_messages(a).values())), "From A")
    reply_b = partner_mail.reply(next(iter(mailstack.wait_for_messages(b).values())), "From B")
    with mailstack.imap(coordinator) as c:
        c.append("Partners", reply_a)
        before = c.folder_status("Partners", ["UIDVALIDITY"])[b"UIDVALIDITY"]
    assert worker.read_cycle().recorded == 1
    with mailstack.imap(coordinator) as c:
        c.delete_folder("Partners")
        c.create_folder("Partners")
        c.append("Partners", reply_a)
        c.append("Partners", reply_b)
        after = c.folder_status("Partners", ["UIDVALIDITY"])[b"UIDVALIDITY"]
    assert after != before
    report = worker.read_cycle()
    assert (report.seen, report.recorded, report.errors) == (2, 1, [])
    assert ws.store.scalar("SELECT count(*) FROM inbound") == 2
    assert ws.store.checkpoint("default", "Partners")[0] == after
    assert worker.read_cycle().seen == 0
    ws.close()


# --------------------------------------------------------------------------- IDLE


def imap_settings(stack: Mailstack, user: str) -> ServerSettings:
    return ServerSettings(
        kind="imap",
        key_path="accounts.default.imap",
        source=Path("config.toml"),
        host=stack.host,
        port=stack.imaps_port,
        security="tls",
        username=user,
        ca_file=Path(stack.ca_file),
    )


def test_idle_wakes_up_shortly_after_a_delivery(mailstack: Mailstack) -> None:
    user, password = mailstack.new_user()
    sender, _ = mailstack.new_user()
    message = partner_mail.unrelated(sender=sender, to=user, subject="IDLE probe")
    with Mailbox(imap_settings(mailstack, user), password) as mailbox:
        mailbox.select_readonly("INBOX")
        # nothing arrives: IDLE returns False when its time is up
        started = time.monotonic()
        assert mailbox.idle_wait(1.0) is False
        assert time.monotonic() - started >= 0.9

        delivered = threading.Timer(0.3, submit_raw, args=(mailstack, sender, [user], message))
        delivered.start()
        started = time.monotonic()
        try:
            woke = mailbox.idle_wait(15.0)
        finally:
            delivered.join()
        elapsed = time.monotonic() - started
        # Dovecot notices new mail ~0.5 s after delivery (mail-servers.md); far below 15 s
        assert woke is True
        assert elapsed < 5.0, f"IDLE took {elapsed:.1f} s to report the delivery"
        # the connection is still usable after IDLE: the new message is there
        assert mailbox.uids_from(1)


# --------------------------------------------------------------------------- faults


def test_dovecot_drops_the_connection_mid_read(
    tmp_path: Path, mailstack: Mailstack, stack_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`doveadm kick` cuts the worker's IMAP session in the middle of a read: the reader
    reconnects, goes on from its checkpoint, and records every reply once."""
    import subprocess

    from workspace import partner_rows

    coordinator, _ = mailstack.new_user()
    ws = stack_workspace(
        tmp_path, mailstack, coordinator, config_extra="[replies]\nbatch_size = 10"
    )
    # the partners are on a domain Postfix refuses: nothing is sent, the ledger is filled
    # by hand with what the replies answer
    ws.add_partners(partner_rows(80))
    worker = ws.worker()
    report = type(worker.send_cycle())()
    worker.sender.queue_due(report)
    rows = ws.store.all_ledger_rows()
    for row in rows:
        ws.store.mark_sending([row.id], ws.clock())
        ws.store.mark_sent(row, ws.clock(), "250 by hand")
    with mailstack.imap(coordinator) as c:
        c.multiappend("INBOX", [partner_mail.reply(r.raw, f"Answer {r.to_addr}") for r in rows])

    kicked = []
    original = worker.reader.process

    def process(*args: Any, **kwargs: Any) -> None:
        original(*args, **kwargs)
        if len(kicked) == 0 and ws.store.scalar("SELECT count(*) FROM inbound") == 25:
            done = subprocess.run(
                ["doveadm", "-c", mailstack.dovecot_conf, "kick", coordinator],
                capture_output=True,
                text=True,
                timeout=30,
            )
            kicked.append(done)

    monkeypatch.setattr(worker.reader, "process", process)
    connects = []
    connect = Mailbox.connect
    monkeypatch.setattr(Mailbox, "connect", lambda self: (connects.append(1), connect(self))[1])
    report = worker.read_cycle()
    assert kicked and kicked[0].returncode == 0, kicked and kicked[0].stderr
    assert len(connects) == 2, "the reader reconnected after the kick"
    assert report.errors == [], report.errors
    assert report.recorded == 80
    rows = ws.store.query("SELECT message_id FROM inbound")
    assert len({r["message_id"] for r in rows}) == len(rows) == 80
    assert worker.read_cycle().recorded == 0
    ws.close()


def test_postfix_restarted_mid_batch_never_submits_a_message_twice(
    tmp_path: Path, mailstack: Mailstack, stack_env: None
) -> None:
    """Postfix stops while the worker is sending (its connections go; new ones are refused)
    and starts again. Later cycles send the rest. No partner's message is submitted twice
    (Postfix gives each submission its own queue id; a copy Postfix itself delivers again
    after the stop keeps its id), and each partner got it or has it reported `unknown`."""
    import subprocess

    coordinator, _ = mailstack.new_user()
    sink, _ = mailstack.new_user()  # partners are sink+pNNNN@: one mailbox to count in
    local, domain = sink.split("@")
    partners = [f"{local}+p{i:04d}@{domain}" for i in range(40)]
    ws = stack_workspace(
        tmp_path, mailstack, coordinator, limits="concurrency = 2\nper_minute = 600"
    )  # ~4 s for the batch
    ws.add_partners([{"email": a, "name": f"Partner {i}"} for i, a in enumerate(partners)])
    worker = ws.worker()
    postfix = ["postfix", "-c", mailstack.postfix_conf]

    def restart() -> None:
        time.sleep(1.0)  # some ten messages in
        subprocess.run([*postfix, "stop"], check=True, capture_output=True, timeout=60)
        time.sleep(0.5)
        subprocess.run([*postfix, "start"], check=True, capture_output=True, timeout=60)

    restarter = threading.Thread(target=restart)
    restarter.start()
    try:
        first = worker.send_cycle()
    finally:
        restarter.join()
        if subprocess.run([*postfix, "status"], capture_output=True).returncode != 0:
            subprocess.run([*postfix, "start"], check=True, capture_output=True, timeout=60)
    assert first.sent < len(partners), "the restart must come in the middle of the batch"
    assert first.errors or first.deferred or first.unknown
    for _ in range(10):  # retries come on the account's schedule: move the clock past them
        left = ws.store.scalar(
            "SELECT count(*) FROM messages WHERE status IN ('queued', 'deferred', 'sending')"
        )
        if not left:
            break
        ws.clock.advance(hours=2)
        time.sleep(0.5)  # Postfix may still be starting
        worker.send_cycle()
    statuses = {
        r["to_addr"]: r["status"] for r in ws.store.query("SELECT to_addr, status FROM messages")
    }
    assert set(statuses) == set(partners)
    assert set(statuses.values()) <= {"sent", "unknown"}, statuses
    sent = [a for a, status in statuses.items() if status == "sent"]
    inbox_of(mailstack, sink, len(sent), timeout=30)
    time.sleep(1.0)  # anything Postfix still held from before the stop arrives by now
    submissions: dict[str, set[str]] = {}
    for message in inbox_of(mailstack, sink, len(sent), timeout=30):
        partner = str(message["To"]).rsplit("<", 1)[-1].rstrip(">")
        (queue_id,) = (
            match.group(1)
            for line in message.get_all("Received", [])
            if (match := re.search(r"with ESMTPSA id (\w+)", line))
        )
        submissions.setdefault(partner, set()).add(queue_id)
    assert all(len(ids) == 1 for ids in submissions.values()), submissions
    assert set(sent) <= set(submissions), "every message counted as sent arrived"
    assert set(submissions) <= set(partners)
    ws.close()


def test_outreach_run_records_a_reply_at_once_thanks_to_idle(
    tmp_path: Path, mailstack: Mailstack, stack_env: None
) -> None:
    """The long-running worker (`outreach run`) polls every 10 minutes here; with IMAP IDLE
    a reply delivered by Postfix is recorded within seconds."""
    import json
    import os
    import signal
    import sqlite3
    import subprocess
    import sys

    coordinator, _ = mailstack.new_user()
    partner, _ = mailstack.new_user()
    ws = stack_workspace(
        tmp_path,
        mailstack,
        coordinator,
        config_extra=('[worker]\npoll_every = "10m"\nsend_every = "10m"\nidle = true'),
    )
    ws.add_partners([{"email": partner, "name": "Pat", "organization": "Acme"}])
    ws.close()
    log_path = tmp_path / "worker.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "outreach",
                "--config",
                str(tmp_path / "config.toml"),
                "run",
                "--log-json",
                "-v",
            ],
            stdout=subprocess.DEVNULL,
            stderr=log,
            env=dict(os.environ),
        )
    try:

        def events() -> list[dict[str, Any]]:
            lines = log_path.read_text(errors="replace").splitlines()
            return [json.loads(line) for line in lines if line.startswith("{")]

        def wait_until(what: str, test: Any, timeout: float = 20) -> float:
            started = time.monotonic()
            while not test():
                assert process.poll() is None, log_path.read_text()
                assert time.monotonic() - started < timeout, f"{what}\n{log_path.read_text()}"
                time.sleep(0.05)
            return time.monotonic() - started

        # the first cycle at start sends step 1; then the IDLE watcher waits for news
        (first,) = mailstack.wait_for_messages(partner, timeout=20).values()
        wait_until(
            "IDLE started",
            lambda: any(
                e.get("event") == "idle" and "waiting for new mail" in e["message"]
                for e in events()
            ),
        )

        def replies() -> int:
            with sqlite3.connect(f"file:{tmp_path / 'outreach.db'}?mode=ro", uri=True) as db:
                return int(
                    db.execute("SELECT count(*) FROM inbound WHERE kind = 'reply'").fetchone()[0]
                )

        submit_raw(
            mailstack,
            partner,
            [coordinator],
            partner_mail.reply(first, "Thanks, we would love to host two interns."),
        )
        took = wait_until("the reply recorded", lambda: replies() == 1, timeout=30)
        assert took < 15, f"recorded after {took:.1f} s: IDLE did not wake the worker"
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    assert code == 0, log_path.read_text()
    assert any(e.get("event") == "stopped" for e in events())


def test_sent_copies_wait_until_a_sent_folder_exists(
    tmp_path: Path, mailstack: Mailstack, stack_env: None
) -> None:
    """This Dovecot makes no Sent folder by itself: the mail still goes out, the missing
    folder is reported with a hint, and the copies are saved once the folder exists."""
    coordinator, _ = mailstack.new_user()
    partner, _ = mailstack.new_user()
    ws = stack_workspace(tmp_path, mailstack, coordinator, account_extra="save_sent = true")
    ws.add_partners([{"email": partner, "name": "Pat", "organization": "Acme"}])
    worker = ws.worker()
    report = worker.send_cycle()
    assert report.sent == 1
    assert len(report.errors) == 1 and "no Sent folder" in report.errors[0], report.errors
    assert "sent_folder" in report.errors[0]
    mailstack.wait_for_messages(partner)
    with mailstack.imap(coordinator) as c:
        c.create_folder("Sent")
    report = worker.send_cycle()
    assert (report.sent, report.errors) == (0, [])
    (copy,) = mailstack.wait_for_messages(coordinator, folder="Sent").values()
    assert (
        parse(copy)["Message-ID"]
        == ws.store.query("SELECT message_id FROM messages")[0]["message_id"]
    )
    assert worker.send_cycle().errors == []
    assert len(mailstack.wait_for_messages(coordinator, folder="Sent")) == 1  # saved once
    ws.close()


def test_a_named_sent_folder_is_created_when_dovecot_says_so(
    tmp_path: Path, mailstack: Mailstack, stack_env: None
) -> None:
    """sent_folder names a folder this Dovecot does not have: it answers the APPEND with
    NO [TRYCREATE], and outreach creates the folder, subscribes it and saves the copy."""
    coordinator, _ = mailstack.new_user()
    partner, _ = mailstack.new_user()
    ws = stack_workspace(
        tmp_path,
        mailstack,
        coordinator,
        account_extra="save_sent = true",
        imap_extra={"sent_folder": "Outreach Sent"},
    )
    ws.add_partners([{"email": partner, "name": "Pat", "organization": "Acme"}])
    report = ws.worker().send_cycle()
    assert (report.sent, report.errors) == (1, [])
    (copy,) = mailstack.wait_for_messages(coordinator, folder="Outreach Sent").values()
    assert (
        parse(copy)["Message-ID"]
        == ws.store.query("SELECT message_id FROM messages")[0]["message_id"]
    )
    with mailstack.imap(coordinator) as c:
        assert "Outreach Sent" in [str(name) for _flags, _sep, name in c.list_sub_folders()]
    ws.close()


# --------------------------------------------------------------------------- rounds


def test_a_second_round_goes_out_in_a_new_thread_through_postfix(
    tmp_path: Path, mailstack: Mailstack, stack_env: None
) -> None:
    """A campaign with `repeat` (issue 21): after the partner answered, or stayed silent
    through every step, a new round starts in a new thread, and its follow-up threads to
    the new round only."""
    coordinator, _ = mailstack.new_user()
    replier, _ = mailstack.new_user()
    silent, _ = mailstack.new_user()
    campaign = (
        'repeat = "30d"\n'
        '[window]\ndays = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]\n'
        'hours = "00:00-24:00"\n'
        '[[steps]]\ntemplate = "hello"\nsubject = "Check-in for {{ partner.organization }}"\n'
        '[[steps]]\ntemplate = "nudge"\nafter = "7d"\n'
    )
    ws = stack_workspace(tmp_path, mailstack, coordinator, campaign=campaign)
    ws.add_partners(
        [
            {"email": address, "name": f"Partner {i}", "organization": f"Org {i}"}
            for i, address in enumerate([replier, silent])
        ]
    )
    worker = ws.worker()
    _, sent = worker.cycle()
    assert (sent.sent, sent.errors) == (2, [])
    first = next(iter(mailstack.wait_for_messages(replier).values()))
    submit_raw(mailstack, replier, [coordinator], partner_mail.reply(first, "All good here."))
    inbox_of(mailstack, coordinator, 1)

    ws.clock.advance(days=7)  # the answer is read; the silent partner gets step 2
    read, sent = worker.cycle()
    assert read.kinds == {"reply": 1} and sent.sent == 1
    ws.clock.advance(hours=1)  # the silent partner's round ends: no answer after 2 messages
    worker.cycle()
    assert [(r.round, r.state) for r in ws.store.rounds("checkin", 2)] == [(1, "finished")]

    ws.clock.advance(days=30)  # 30 days after the answer and after the last message
    _, sent = worker.cycle()
    assert (sent.sent, sent.errors) == (2, [])
    replier_mail = inbox_of(mailstack, replier, 2)
    silent_mail = inbox_of(mailstack, silent, 3)
    for round_2, round_1 in ((replier_mail[1], replier_mail[0]), (silent_mail[2], silent_mail[0])):
        assert round_2["Subject"] == round_1["Subject"]  # step 1's own subject, not "Re:"
        assert round_2["In-Reply-To"] is None and round_2["References"] is None
        assert round_2["Message-ID"] != round_1["Message-ID"]

    ws.clock.advance(days=7)  # round 2's follow-up threads to round 2's first message
    _, sent = worker.cycle()
    assert sent.sent == 2
    follow_up = inbox_of(mailstack, silent, 4)[3]
    assert follow_up["In-Reply-To"] == silent_mail[2]["Message-ID"]
    assert follow_up["References"].split() == [silent_mail[2]["Message-ID"]]
    rows = ws.store.query("SELECT round, step FROM messages ORDER BY id")
    assert sorted((r["round"], r["step"]) for r in rows) == [
        (1, 1), (1, 1), (1, 2), (2, 1), (2, 1), (2, 2), (2, 2)
    ]  # fmt: skip
    ws.close()
