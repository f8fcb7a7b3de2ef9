"""Reply ingestion end to end: send over SMTP, put answers into a real IMAP mailbox (pymap),
run a cycle, and check the events, the review queue and who gets the next step."""

from __future__ import annotations

import csv
import io
import json
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
from workspace import Workspace, local_imap, partner_rows

from outreach.engine.classify_pool import ClassifierPool
from outreach.engine.ingest import ReadReport
from outreach.testing import partner_mail


@pytest.fixture
def ws(tmp_path: Path, smtp_server, imap_server, monkeypatch):
    monkeypatch.setenv("TEST_IMAP_PW", imap_server.password)
    workspace = Workspace(
        tmp_path,
        smtp_port=smtp_server.port,
        imap=local_imap(imap_server),
        config_extra='[replies]\nauto_reply_pause = "5d"\nsoft_bounce_limit = 2',
    )
    yield workspace
    workspace.close()


def sent_to(smtp_server, address: str, step: int = 1) -> bytes:
    mine = [m for m in smtp_server.messages if list(m.rcpt_tos) == [address]]
    return mine[step - 1].raw


def kinds(ws: Workspace, partner: str) -> list[str]:
    return [
        r["kind"]
        for r in ws.store.query(
            "SELECT e.kind FROM events e JOIN partners p ON p.id = e.partner_id"
            " WHERE p.email = ? ORDER BY e.id",
            [partner],
        )
    ]


def test_a_full_round_of_answers(ws, smtp_server, imap_server):
    ws.add_partners(partner_rows(6))
    worker = ws.worker()
    read, sent = worker.cycle()
    assert sent.sent == 6 and read.recorded == 0
    p = [f"p{i:04d}@partners.test" for i in range(6)]
    when = ws.clock()
    imap_server.append(
        partner_mail.reply(
            sent_to(smtp_server, p[0]),
            "Our clinic added a night shift.\nWe would love more interns.",
            when=when,
        )
    )
    imap_server.append(partner_mail.out_of_office(sent_to(smtp_server, p[1]), date(2026, 12, 7)))
    imap_server.append(partner_mail.bounce(sent_to(smtp_server, p[2])))
    imap_server.append(partner_mail.unsubscribe(sent_to(smtp_server, p[3])))
    imap_server.append(partner_mail.unrelated())
    imap_server.append(
        partner_mail.bounce(
            sent_to(smtp_server, p[5]), status="4.2.2", diagnostic="452 4.2.2 Mailbox full"
        )
    )
    read, _ = worker.cycle()
    assert read.recorded == 5, read
    assert read.kinds == {"reply": 1, "auto_reply": 1, "bounce": 2, "unsubscribe": 1}

    assert "reply" in kinds(ws, p[0]) and "stopped" in kinds(ws, p[0])
    assert ws.store.sequence("checkin", 1).state == "replied"
    assert ws.store.sequence("checkin", 2).state == "paused"
    assert ws.store.sequence("checkin", 2).paused_until.date() == date(2026, 12, 8)
    statuses = {x.email: x.status for x in ws.store.partners()}
    assert statuses[p[2]] == "bounced" and statuses[p[3]] == "opted_out"
    assert statuses[p[5]] == "active"  # one soft bounce is not enough (limit 2)

    # the review queue holds the human answer, in the partner's own words
    rows = ws.store.query("SELECT * FROM inbound WHERE kind = 'reply' AND handled_at IS NULL")
    assert len(rows) == 1
    assert rows[0]["text"] == "Our clinic added a night shift.\nWe would love more interns."
    assert "wrote:" in rows[0]["full_text"]

    # two days later only the silent partners (and the soft bounce) get step 2
    ws.clock.advance(days=2)
    _, sent = worker.cycle()
    second = sorted(m.rcpt_tos[0] for m in smtp_server.messages[6:])
    assert second == [p[4], p[5]]
    # the out-of-office partner gets it the day after their return
    ws.clock.moment = datetime(2026, 12, 8, 0, 0, tzinfo=ws.clock().tzinfo) + timedelta(minutes=1)
    worker.cycle()
    assert p[1] in [m.rcpt_tos[0] for m in smtp_server.messages[8:]]
    assert "resumed" in kinds(ws, p[1])


def one_partner_answers(ws: Workspace, smtp_server):
    """One partner got the check-in; returns the worker and the partner's answer."""
    ws.add_partners(partner_rows(1))
    worker = ws.worker()
    worker.cycle()
    return worker, partner_mail.reply(sent_to(smtp_server, "p0000@partners.test"), "Doing well!")


def test_nothing_is_read_twice_and_the_mailbox_is_untouched(ws, smtp_server, imap_server):
    worker, raw = one_partner_answers(ws, smtp_server)
    imap_server.append(raw)
    assert worker.read_cycle().recorded == 1
    assert worker.read_cycle().recorded == 0
    # the same message again (copied into the folder: a new UID, the same Message-ID)
    imap_server.append(raw)
    assert worker.read_cycle().recorded == 0
    assert ws.store.scalar("SELECT count(*) FROM inbound") == 1
    stored = imap_server.messages("INBOX")
    assert all("\\Seen" not in [str(f) for f in m.flags] for m in stored)
    assert len(stored) == 2


def test_uidvalidity_change_rescans_without_duplicates(ws, smtp_server, imap_server):
    ws.add_partners(partner_rows(2))
    worker = ws.worker()
    worker.cycle()
    first = partner_mail.reply(sent_to(smtp_server, "p0000@partners.test"), "First answer")
    imap_server.append(first)
    assert worker.read_cycle().recorded == 1
    imap_server.restart()  # new UIDVALIDITY, empty; the user's client re-syncs the folder
    imap_server.append(first)
    imap_server.append(partner_mail.reply(sent_to(smtp_server, "p0001@partners.test"), "Second"))
    report = worker.read_cycle()
    assert report.recorded == 1
    assert ws.store.scalar("SELECT count(*) FROM inbound") == 2


def test_soft_bounces_turn_hard_after_the_limit(ws, smtp_server, imap_server):
    ws.add_partners(partner_rows(1))
    worker = ws.worker()
    worker.cycle()
    raw = sent_to(smtp_server, "p0000@partners.test")
    for _ in range(2):
        imap_server.append(partner_mail.bounce(raw, status="4.2.2", diagnostic="452 full"))
    worker.read_cycle()
    assert ws.store.partners()[0].status == "bounced"


def test_unmatched_mail_is_left_alone(ws, smtp_server, imap_server):
    ws.add_partners(partner_rows(1))
    worker = ws.worker()
    worker.cycle()
    imap_server.append(partner_mail.unrelated())
    imap_server.append(partner_mail.unrelated(sender="someone@else.test", subject="Lunch?"))
    report = worker.read_cycle()
    assert report.seen == 2 and report.relevant == 0 and report.recorded == 0
    assert ws.store.scalar("SELECT count(*) FROM inbound") == 0


def test_a_malformed_message_is_recorded_and_the_batch_goes_on(ws, smtp_server, imap_server):
    ws.add_partners(partner_rows(2))
    worker = ws.worker()
    worker.cycle()
    original = sent_to(smtp_server, "p0000@partners.test")
    message_id = [
        line for line in original.decode().splitlines() if line.startswith("Message-ID:")
    ][0].split(": ", 1)[1]
    broken = (
        "From: p0000@partners.test\r\nIn-Reply-To: " + message_id + "\r\n"
        'Subject: Re: hi\r\nContent-Type: multipart/mixed; boundary="nope"\r\n'
        "Content-Transfer-Encoding: base64\r\n\r\n--nope\r\nContent-Type: text/plain; "
        "charset=x-unknown-charset\r\n\r\n\xff\xfe garbage \x00\r\n"
    ).encode("latin-1")
    imap_server.append(broken)
    imap_server.append(partner_mail.reply(sent_to(smtp_server, "p0001@partners.test"), "All good"))
    report = worker.read_cycle()
    assert report.recorded == 2
    assert ws.store.scalar("SELECT count(*) FROM inbound WHERE partner_id = 2") == 1


def test_imap_outage_is_reported_and_read_next_time(ws, smtp_server, imap_server):
    ws.add_partners(partner_rows(1))
    worker = ws.worker()
    worker.cycle()
    raw = partner_mail.reply(sent_to(smtp_server, "p0000@partners.test"), "Hello")
    imap_server.append(raw)
    imap_server.stop()
    report = ReadReport()
    worker.reader.read_all(report)
    assert report.errors and "cannot connect" in report.errors[0]
    imap_server.start()
    imap_server.append(raw)
    assert worker.read_cycle().recorded == 1


def test_two_copies_of_one_reply_in_one_read_are_recorded_once(ws, smtp_server, imap_server):
    worker, raw = one_partner_answers(ws, smtp_server)
    imap_server.append(raw)
    imap_server.append(raw)  # the same message twice (a new UID, the same Message-ID)
    assert worker.read_cycle().recorded == 1
    assert ws.store.scalar("SELECT count(*) FROM inbound") == 1
    assert kinds(ws, "p0000@partners.test").count("reply") == 1


def test_a_batch_of_answers_is_classified_on_the_worker_process(ws, smtp_server, imap_server):
    """Enough answers in one batch go to the classifier process; the outcome is the same."""
    ws.add_partners(partner_rows(12))
    worker = ws.worker()
    worker.cycle()
    pool = ClassifierPool(min_batch=8)
    worker.reader.pool = pool
    for n in range(12):
        address = f"p{n:04d}@partners.test"
        imap_server.append(partner_mail.reply(sent_to(smtp_server, address), f"Answer {n}"))
    try:
        report = worker.read_cycle()
    finally:
        pool.close()
    assert report.recorded == 12 and report.kinds == {"reply": 12}
    assert pool.classified_there == 12 and not pool.broken
    texts = {r["text"] for r in ws.store.query("SELECT text FROM inbound")}
    assert texts == {f"Answer {n}" for n in range(12)}
    assert all("reply" in kinds(ws, f"p{n:04d}@partners.test") for n in range(12))


class FailingPool(ClassifierPool):
    """A helper that fails every batch it is given (as a crashed one does)."""

    def submit(self, raws, unsubscribe, today):
        if len(raws) < self.min_batch:
            return None
        failed: Future = Future()
        failed.set_exception(BrokenProcessPool("the helper died"))
        return failed


def test_a_failing_helper_is_reported_once_and_the_answers_still_recorded(
    ws, smtp_server, imap_server, caplog
):
    ws.add_partners(partner_rows(10))
    worker = ws.worker()
    worker.cycle()
    worker.reader.pool = pool = FailingPool(min_batch=2)
    for n in range(10):
        address = f"p{n:04d}@partners.test"
        imap_server.append(partner_mail.reply(sent_to(smtp_server, address), f"Answer {n}"))
    with caplog.at_level("WARNING"):
        report = worker.read_cycle()
    assert report.recorded == 10 and report.kinds == {"reply": 10}
    assert pool.broken
    warnings = [r for r in caplog.records if "classifier helper" in r.getMessage()]
    assert len(warnings) == 1


INLINE_ANSWER = (
    "> How has your workplace changed?\n\nWe went hybrid.\n\n"
    "> Is there anything we can do to help?\n\nA speaker in May.\n\nThanks, Dana"
)
SIGNATURE = "-- \nDana <b>Reyes</b>\n\x1b[31mBrightWorks\nSent from my iPhone"


def test_a_reply_keeps_its_signature_apart_in_every_view(ws, smtp_server, imap_server):
    """Read over IMAP: the words (with the questions answered inline) in `text`, the '-- '
    block in `signature`; both in replies, replies --json, the export, report --json and the
    HTML report (escaped, in a muted class); mail text never reaches a terminal raw."""
    ws.add_partners(partner_rows(1))
    worker = ws.worker()
    worker.cycle()
    original = sent_to(smtp_server, "p0000@partners.test")
    imap_server.append(partner_mail.reply(original, f"{INLINE_ANSWER}\n\n{SIGNATURE}"))
    read, _ = worker.cycle()
    assert read.kinds == {"reply": 1}
    row = ws.store.query("SELECT text, signature FROM inbound WHERE kind = 'reply'")[0]
    assert (row["text"], row["signature"]) == (INLINE_ANSWER, SIGNATURE)

    listing = ws.cli("replies")
    assert listing.exit_code == 0, listing.output
    assert "    A speaker in May." in listing.output and "    Sent from my iPhone" in listing.output
    assert listing.output.index("Thanks, Dana") < listing.output.index("Dana <b>Reyes</b>")
    assert "\x1b" not in listing.output and "\u241b[31mBrightWorks" in listing.output
    assert json.loads(ws.cli("replies", "--json").stdout)[0]["signature"] == SIGNATURE

    exported = ws.cli("export", "replies", "--format", "csv").stdout
    header, first = list(csv.reader(io.StringIO(exported.lstrip("\ufeff"), newline="")))[:2]
    # signature was added after unreadable (columns are only ever added at the end)
    assert header.index("signature") == header.index("unreadable") + 1
    assert first[header.index("text")] == INLINE_ANSWER
    # a cell starting with '-' is kept text, not a formula; CSV on standard output is shown
    # inert (outreach.cli.terminal), a CSV file (-o) keeps the exact words
    assert first[header.index("signature")] == "'" + SIGNATURE.replace("\x1b", "\u241b")
    exported = json.loads(ws.cli("export", "replies", "--format", "json").stdout)
    columns = list(exported[0])
    assert columns.index("signature") == columns.index("unreadable") + 1
    assert exported[0]["signature"] == SIGNATURE
    report = json.loads(ws.cli("report", "checkin", "--json").stdout)
    assert report["replies"][0]["signature"] == SIGNATURE
    page = ws.root / "checkin.html"
    assert ws.cli("report", "checkin", "--html", str(page)).exit_code == 0
    html = page.read_text(encoding="utf-8")
    assert '<p class="signature">-- \nDana &lt;b&gt;Reyes&lt;/b&gt;' in html
    assert ".reply .signature { color: var(--muted)" in html
