"""The record can be trusted: hostile inbound mail through a real IMAP server (pymap).

A stranger cannot change a partner's status (a bounce or a complaint must quote one of our
Message-IDs; a reply counts for who wrote it), no different message is dropped as a
duplicate, and no reply is lost to an odd value: each case is read by the worker from the
mailbox, then checked in the store and in what the commands show.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from hostile_mail import forged_bounce, message_id_of, with_header
from workspace import ALWAYS_OPEN, THREE_STEPS, Workspace, local_imap, partner_rows

from outreach.testing import partner_mail
from outreach.views.exports import REPLY_COLUMNS

P0, P1, P2 = "p0000@partners.test", "p0001@partners.test", "p0002@partners.test"
UNSUBSCRIBE = "unsubscribe@district.test"


def workspace(
    root: Path, smtp_server: Any, imap_server: Any, monkeypatch: Any, campaign_extra: str = ""
) -> Workspace:
    monkeypatch.setenv("TEST_IMAP_PW", imap_server.password)
    return Workspace(
        root,
        smtp_port=smtp_server.port,
        imap=local_imap(imap_server),
        config_extra='[replies]\nauto_reply_pause = "5d"\nsoft_bounce_limit = 2',
        account_extra=f'unsubscribe = {{ mailto = "{UNSUBSCRIBE}" }}',
        campaign=campaign_extra + ALWAYS_OPEN + THREE_STEPS,
    )


@pytest.fixture
def ws(tmp_path: Path, smtp_server: Any, imap_server: Any, monkeypatch: Any) -> Any:
    workspace_ = workspace(tmp_path, smtp_server, imap_server, monkeypatch)
    workspace_.add_partners(partner_rows(3))
    assert workspace_.worker().cycle()[1].sent == 3
    yield workspace_
    workspace_.close()


def sent_to(smtp_server: Any, address: str, step: int = 1) -> bytes:
    return bytes([m for m in smtp_server.messages if list(m.rcpt_tos) == [address]][step - 1].raw)


def ok(result: Any) -> str:
    assert result.exit_code == 0, (result.output, result.exception)
    return str(result.output)


def inbound(ws: Workspace) -> list[dict[str, Any]]:
    return ws.store.query(
        "SELECT i.*, p.email AS partner FROM inbound i"
        " LEFT JOIN partners p ON p.id = i.partner_id ORDER BY i.id"
    )


def status_of(ws: Workspace, email: str) -> str:
    return {p.email: p.status for p in ws.store.partners()}[email]


def state_of(ws: Workspace, email: str) -> str:
    partner = ws.store.partner_by_email(email)
    assert partner is not None and partner.id is not None
    sequence = ws.store.sequence("checkin", partner.id)
    assert sequence is not None
    return sequence.state


def replies_json(ws: Workspace) -> list[dict[str, Any]]:
    return list(json.loads(ok(ws.cli("replies", "--json"))))


# --------------------------------------------------------------------------- bounces


def test_a_bounce_that_quotes_none_of_our_messages_changes_nothing_and_waits_for_a_person(
    ws: Workspace, smtp_server: Any, imap_server: Any
) -> None:
    for _ in range(3):  # soft ones: not counted either (the limit is 2)
        imap_server.append(forged_bounce(P1, status="4.2.2"))
    imap_server.append(forged_bounce(P0))
    read = ws.worker().read_cycle()
    assert read.recorded == 4 and read.kinds == {"bounce": 4}
    assert status_of(ws, P0) == status_of(ws, P1) == "active"
    assert ws.store.scalar("SELECT max(soft_bounces) FROM partners") == 0
    rows = inbound(ws)
    assert [r["partner"] for r in rows] == [P1, P1, P1, P0]
    assert all("quotes none of the messages outreach sent" in r["unverified"] for r in rows)
    assert all(P0 in r["unverified"] or P1 in r["unverified"] for r in rows)
    assert all(r["handled_at"] is None for r in rows)  # in the review queue

    # the queue, its JSON and the log say what it is and whom it names
    queue = ok(ws.cli("replies", "--unhandled"))
    assert "[unverified bounce]" in queue and "not acted on:" in queue
    assert "from: Mail Delivery System <mailer-daemon@mx.evil.test>" in queue
    item = next(r for r in replies_json(ws) if r["partner"] == P0)
    assert item["kind"] == "bounce" and item["from"] == "mailer-daemon@mx.evil.test"
    assert item["from_name"] == "Mail Delivery System"
    assert P0 in item["unverified"]
    log = json.loads(ok(ws.cli("log", "--json", "--partner", P0)))
    (event,) = [e for e in log if e["kind"] == "unverified"]
    assert P0 in event["summary"] and event["inbound_id"] == item["id"]
    assert "bounce" not in [e["kind"] for e in log] and "status" not in [e["kind"] for e in log]
    # the next cycle still writes to both partners
    ws.clock.advance(days=2)
    assert ws.worker().send_cycle().sent == 3

    # a person decides: dismiss one, attribute the other (it is the partner's, after all)
    soft = next(r for r in replies_json(ws) if r["partner"] == P1)
    assert "dismissed" in ok(ws.cli("replies", "ack", str(soft["id"])))
    assert status_of(ws, P1) == "active"
    out = ok(ws.cli("replies", "reclassify", str(item["id"]), "bounce"))
    assert "attributed to p0000@partners.test" in out
    assert status_of(ws, P0) == "bounced" and state_of(ws, P0) == "stopped"
    after = ws.store.query("SELECT unverified, handled_at FROM inbound WHERE id = ?", [item["id"]])[
        0
    ]
    assert after["unverified"] is None and after["handled_at"] is not None


def test_a_bounce_that_quotes_our_message_acts_as_before(
    ws: Workspace, smtp_server: Any, imap_server: Any
) -> None:
    imap_server.append(partner_mail.bounce(sent_to(smtp_server, P0)))
    imap_server.append(
        forged_bounce(P1, message_id=message_id_of(sent_to(smtp_server, P1)), status="4.2.2")
    )
    imap_server.append(
        forged_bounce(P1, message_id=message_id_of(sent_to(smtp_server, P1)), status="4.4.1")
    )
    ws.worker().read_cycle()
    assert status_of(ws, P0) == "bounced" and status_of(ws, P1) == "bounced"  # 2 soft: limit
    assert ws.store.scalar("SELECT count(*) FROM inbound WHERE unverified IS NOT NULL") == 0


ARF = """From: Feedback Loop <fbl@isp.test>\r
To: coordinator@district.test\r
Subject: Abuse report\r
Message-ID: <report.{n}@isp.test>\r
MIME-Version: 1.0\r
Content-Type: multipart/report; report-type=feedback-report; boundary="b"\r
\r
--b\r
Content-Type: text/plain\r
\r
This is an email abuse report.\r
--b\r
Content-Type: message/feedback-report\r
\r
Feedback-Type: abuse\r
Version: 1\r
Original-Rcpt-To: <{partner}>\r
\r
--b\r
Content-Type: text/rfc822-headers\r
\r
From: coordinator@district.test\r
To: {partner}\r
Subject: Check-in\r
Message-ID: {message_id}\r
--b--\r
"""


def test_a_complaint_opts_out_only_when_it_quotes_our_message(
    ws: Workspace, smtp_server: Any, imap_server: Any
) -> None:
    ours = message_id_of(sent_to(smtp_server, P0))
    imap_server.append(ARF.format(n=1, partner=P0, message_id=ours).encode())
    imap_server.append(ARF.format(n=2, partner=P1, message_id="<made.up@x.test>").encode())
    read = ws.worker().read_cycle()
    assert read.recorded == 2
    assert status_of(ws, P0) == "opted_out" and status_of(ws, P1) == "active"
    forged = next(r for r in inbound(ws) if r["partner"] == P1)
    assert forged["unverified"].startswith("the complaint quotes none of the messages")


# --------------------------------------------------------------------------- who wrote it


def test_a_strangers_reply_in_a_partners_thread_goes_to_a_person(
    ws: Workspace, smtp_server: Any, imap_server: Any, tmp_path: Path
) -> None:
    stranger = partner_mail.reply(
        sent_to(smtp_server, P0),
        "Stop writing to Pat, thanks!",
        sender="Eve Mallory <eve@evil.test>",
    )
    imap_server.append(stranger)
    imap_server.append(
        partner_mail.reply(
            sent_to(smtp_server, P2), "Please unsubscribe me", sender="Eve Mallory <eve@evil.test>"
        )
    )
    read = ws.worker().read_cycle()
    assert read.kinds == {"reply": 1, "unsubscribe": 1}
    assert state_of(ws, P0) == "active" and status_of(ws, P2) == "active"
    rows = inbound(ws)
    assert [(r["partner"], r["from_addr"], r["from_name"]) for r in rows] == [
        (P0, "eve@evil.test", "Eve Mallory"),
        (P2, "eve@evil.test", "Eve Mallory"),
    ]
    assert all("is not" in r["unverified"] and "not in the roster" in r["unverified"] for r in rows)
    queue = ok(ws.cli("replies"))
    assert "from: Eve Mallory <eve@evil.test>" in queue and "[unverified reply]" in queue
    ws.clock.advance(days=2)
    sent = ws.worker().send_cycle()
    assert sent.sent == 3  # Pat and the partner "unsubscribed" by Eve still get step 2

    # the report and the funnel do not count it as Pat's reply
    report = json.loads(ok(ws.cli("report", "checkin", "--json")))
    assert report["replied"] == 0 and report["unsubscribed"] == 0 and report["replies"] == []
    # a person says it is Pat's answer after all (Eve is Pat's assistant): it counts now
    item = next(r for r in replies_json(ws) if r["partner"] == P0)
    assert item["from"] == "eve@evil.test" and item["unverified"]
    ok(ws.cli("replies", "reclassify", str(item["id"]), "reply"))
    assert state_of(ws, P0) == "replied"
    assert json.loads(ok(ws.cli("report", "checkin", "--json")))["replied"] == 1


def test_a_reply_counts_for_the_partner_who_wrote_it(
    ws: Workspace, smtp_server: Any, imap_server: Any
) -> None:
    # P1 answers in P0's thread (P0 forwarded the check-in): it is P1's answer
    imap_server.append(
        partner_mail.reply(sent_to(smtp_server, P0), "Count us in too", sender=f"Partner 1 <{P1}>")
    )
    ws.worker().read_cycle()
    assert state_of(ws, P1) == "replied" and state_of(ws, P0) == "active"
    (row,) = inbound(ws)
    assert row["partner"] == P1 and row["unverified"] is None
    assert "wrote in the thread of our message to p0000@partners.test" in row["match_rule"]


def test_a_colleague_at_the_partners_domain_answers_for_them(
    ws: Workspace, smtp_server: Any, imap_server: Any, tmp_path: Path
) -> None:
    imap_server.append(
        partner_mail.reply(
            sent_to(smtp_server, P0),
            "Pat is on leave; we <b>will</b> host two interns.",
            sender='"Bob <Builder>" <bob@partners.test>',
        )
    )
    ws.worker().read_cycle()
    assert state_of(ws, P0) == "replied"
    (row,) = inbound(ws)
    assert (row["from_addr"], row["from_name"], row["unverified"]) == (
        "bob@partners.test",
        "Bob <Builder>",
        None,
    )
    log = ok(ws.cli("log", "--partner", P0))
    assert "Bob <Builder> <bob@partners.test>" in log
    (event,) = [e for e in json.loads(ok(ws.cli("log", "--json"))) if e["kind"] == "reply"]
    assert (event["from"], event["from_name"]) == ("bob@partners.test", "Bob <Builder>")
    # the replies export: the sender in new columns, at the end, after the old ones
    table = list(
        csv.reader(io.StringIO(ok(ws.cli("export", "replies", "--format", "csv")).lstrip("\ufeff")))
    )
    assert table[0][:24] == list(REPLY_COLUMNS[:24])
    assert table[0][29:31] == ["unreadable", "signature"]
    assert table[0][31:] == ["owner", "account", "read_by"]  # issue 19, at the end
    assert table[0][24:26] == ["from_addr", "from_name"]
    assert table[1][24:26] == ["bob@partners.test", "Bob <Builder>"]
    # the HTML report names the sender, escaped
    page = tmp_path / "report.html"
    ok(ws.cli("report", "checkin", "--html", str(page)))
    html = page.read_text()
    assert "from Bob &lt;Builder&gt; &lt;bob@partners.test&gt;" in html
    assert "<Builder>" not in html and "<b>will</b>" not in html


def test_a_match_domain_campaign_trusts_its_threads_but_not_for_opt_outs(
    tmp_path: Path, smtp_server: Any, imap_server: Any, monkeypatch: Any
) -> None:
    ws = workspace(tmp_path, smtp_server, imap_server, monkeypatch, "match_domain = true\n")
    ws.add_partners(partner_rows(2))
    ws.worker().cycle()
    imap_server.append(
        partner_mail.reply(
            sent_to(smtp_server, P0), "Fine, thanks", sender="assistant@elsewhere.test"
        )
    )
    imap_server.append(
        partner_mail.reply(
            sent_to(smtp_server, P1), "Unsubscribe", sender="assistant@elsewhere.test"
        )
    )
    ws.worker().read_cycle()
    assert state_of(ws, P0) == "replied"
    assert status_of(ws, P1) == "active" and state_of(ws, P1) == "active"
    ws.close()


def test_an_opt_out_from_the_partners_own_address_needs_no_thread(
    ws: Workspace, smtp_server: Any, imap_server: Any
) -> None:
    """RFC 2369 mailto: the partner's client writes to the unsubscribe address; honoured
    even before outreach wrote to them (a new roster entry), as opting out must be easy."""
    newcomer = "new.partner@elsewhere.test"
    ws.add_partners([{"email": newcomer, "name": "New Partner"}])
    imap_server.append(
        partner_mail.unrelated(sender=newcomer, to=UNSUBSCRIBE, subject="unsubscribe")
    )
    imap_server.append(
        partner_mail.unrelated(sender="eve@evil.test", to=UNSUBSCRIBE, subject="unsubscribe")
    )
    read = ws.worker().read_cycle()
    assert read.recorded == 1 and status_of(ws, newcomer) == "opted_out"
    assert ws.worker().send_cycle().sent == 0  # nothing goes to them


def test_our_own_message_in_the_inbox_is_not_the_partners_answer(
    ws: Workspace, smtp_server: Any, imap_server: Any
) -> None:
    """A Bcc or list copy of our follow-up (In-Reply-To: our step 1) and the coordinator's own
    note in the thread are not answers."""
    ws.clock.advance(days=2)
    assert ws.worker().send_cycle().sent == 3
    imap_server.append(sent_to(smtp_server, P0, step=2))
    imap_server.append(
        partner_mail.reply(
            sent_to(smtp_server, P1),
            "Called Pat, see notes",
            sender="Coordinator <coordinator@district.test>",
        )
    )
    assert ws.worker().read_cycle().recorded == 0
    assert state_of(ws, P0) == state_of(ws, P1) == "active"


# --------------------------------------------------------------------------- duplicates


def test_a_reused_message_id_with_other_content_is_recorded_and_flagged(
    ws: Workspace, smtp_server: Any, imap_server: Any
) -> None:
    first = partner_mail.reply(sent_to(smtp_server, P0), "We can host two interns.")
    imap_server.append(first)
    assert ws.worker().read_cycle().recorded == 1
    # re-deliveries of the same message: a copy, and one with more trace headers
    imap_server.append(first)
    imap_server.append(
        b"Received: from mx2.partners.test by mx.district.test; "
        b"Tue, 24 Nov 2026 11:00:00 +0000\r\nDelivered-To: c\r\n" + first
    )
    # the same Message-ID, other words; and the same Message-ID from someone else
    imap_server.append(first.replace(b"two interns", b"no interns"))
    imap_server.append(with_header(first, "From", b"Eve <eve@evil.test>"))
    read = ws.worker().read_cycle()
    assert read.recorded == 2, read
    rows = inbound(ws)
    assert len(rows) == 3 and len({r["message_id"] for r in rows}) == 1
    assert [r["duplicate_of"] for r in rows] == [None, rows[0]["id"], rows[0]["id"]]
    assert rows[1]["text"] == "We can host no interns." and rows[1]["handled_at"] is None
    assert rows[2]["from_addr"] == "eve@evil.test" and rows[2]["unverified"]
    queue = ok(ws.cli("replies", "--unhandled"))
    assert queue.count(f"same Message-ID as #{rows[0]['id']}") == 2
    assert {r["duplicate_of"] for r in replies_json(ws)} == {None, rows[0]["id"]}


# --------------------------------------------------------------------------- odd values

ODD = {
    # name: (header lines added or replaced, body, what the record keeps as unreadable)
    "date at the end of time": ({"Date": b"Fri, 31 Dec 9999 23:59:59 -1200"}, None, "Date"),
    "date in year 1": ({"Date": b"Mon, 1 Jan 0001 00:00:00 +0100"}, None, "Date"),
    "date offset out of range": ({"Date": b"Tue, 24 Nov 2026 10:00:00 +9999"}, None, "Date"),
    "unknown charset": ({"Content-Type": b'text/plain; charset="x-unknown-42"'}, None, None),
    "NUL bytes": ({"X-Nul": b"a\x00b"}, b"We can\x00 host two interns.\r\n", None),
    "8-bit header": (
        {"X-8bit": b"\xff\xfe\xe9t\xe9", "Subject": b"Re: \xe9t\xe9 \xff"},
        None,
        None,
    ),
    "header over 100 KB": ({"X-Huge": b"x" * 150_000}, None, None),
    "Message-ID with spaces": ({"Message-ID": b"<we can@partners.test>"}, None, "Message-ID"),
    "Message-ID with brackets inside": ({"Message-ID": b"<<x>@partners.test>"}, None, "Message-ID"),
    "broken MIME structure": (
        {"Content-Type": b'multipart/mixed; boundary="n0"'},
        b"".join(
            b'--n%d\r\nContent-Type: multipart/mixed; boundary="n%d"\r\n\r\n' % (i, i + 1)
            for i in range(120)
        )
        + b"--n120\r\nContent-Type: text/plain\r\n\r\nWe can host two interns.\r\n",
        None,
    ),
}


@pytest.mark.parametrize("name", ODD)
def test_no_reply_is_lost_to_an_odd_value(
    ws: Workspace, smtp_server: Any, imap_server: Any, name: str
) -> None:
    headers, body, unreadable = ODD[name]
    raw = partner_mail.reply(
        sent_to(smtp_server, P0),
        "We can host two interns.",
        sender="Pat Partner <p0000@partners.test>",
    )
    for header, value in headers.items():
        raw = with_header(raw, header, value)
    if body is not None:
        raw = raw.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n" + body
    imap_server.append(raw)
    read = ws.worker().read_cycle()
    assert read.errors == [] and read.recorded == 1
    (row,) = inbound(ws)
    assert row["partner"] == P0 and row["from_name"] == "Pat Partner"
    words = (row["text"] or row["full_text"] or "").replace("\x00", "")
    assert "We can host two interns." in words
    problems = json.loads(row["unreadable"])
    if unreadable is None:
        assert problems == []
    else:
        assert any(p.startswith(unreadable) for p in problems), problems
    if unreadable == "Date":
        assert row["date"] is None and row["date_header"] == headers["Date"].decode()
        # ordered by when outreach read it
        (item,) = replies_json(ws)
        assert datetime.fromisoformat(item["at"]) == ws.clock()
        assert any("cannot be read" in p for p in item["unreadable"])
    if row["kind"] == "reply":
        assert state_of(ws, P0) == "replied"
    else:  # mail whose MIME cannot be read: kept for a person with its words
        assert row["kind"] == "error" and row["handled_at"] is None
        assert any(r["id"] == row["id"] for r in replies_json(ws))


def test_an_auto_reply_dated_at_the_end_of_time_pauses_for_days_not_for_ever(
    ws: Workspace, smtp_server: Any, imap_server: Any
) -> None:
    from datetime import date

    raw = partner_mail.out_of_office(sent_to(smtp_server, P0), date(2026, 12, 7))
    raw = with_header(raw, "Date", b"Fri, 31 Dec 9999 23:59:59 +1200")
    raw = raw.replace(b"will return on", b"will return on Thursday, December 31, 9999, or on")
    imap_server.append(raw)
    assert ws.worker().read_cycle().kinds == {"auto_reply": 1}
    partner = ws.store.partner_by_email(P0)
    assert partner is not None and partner.id is not None
    sequence = ws.store.sequence("checkin", partner.id)
    assert sequence is not None and sequence.state == "paused"
    assert sequence.paused_until is not None and sequence.paused_until.year == 2027


def test_mail_that_breaks_processing_keeps_its_sender_words_and_partner(
    ws: Workspace, smtp_server: Any, imap_server: Any, monkeypatch: Any
) -> None:
    """The last guard (a bug met on one message): recorded as an error, not without its
    partner and words, and in the review queue."""
    worker = ws.worker()

    def broken(*args: Any, **kwargs: Any) -> None:
        raise ValueError("a bug")

    monkeypatch.setattr(worker.reader, "apply", broken)
    imap_server.append(
        partner_mail.reply(
            sent_to(smtp_server, P0),
            "We can host two interns.",
            sender="Pat Partner <p0000@partners.test>",
        )
    )
    report = worker.read_cycle()
    assert report.kinds == {"error": 1}
    (row,) = inbound(ws)
    assert (row["kind"], row["error"], row["partner"]) == ("error", "ValueError: a bug", P0)
    assert row["from_name"] == "Pat Partner" and "two interns" in row["full_text"]
    assert row["handled_at"] is None


# --------------------------------------------------------------------------- older databases


def test_a_database_from_before_m005_opens_and_its_replies_are_still_known(
    tmp_path: Path, smtp_server: Any, imap_server: Any, monkeypatch: Any
) -> None:
    """m005 adds the sender's name, unverified, duplicate_of, the content digest and what
    could not be read, and remakes the views. Rows an older version wrote keep working, and
    a re-delivery of a message it recorded (no digest then) is still told from a message
    that reuses its Message-ID."""
    import sqlite_utils

    from outreach.core.inbound.classify import classify_message
    from outreach.store import migrations

    stamp = "2026-11-24T10:00:00.000000+00:00"
    old = sqlite_utils.Database(tmp_path / "outreach.db")
    migrations.apply(old, stop_before="m005_inbound_trust")
    old.execute(
        "INSERT INTO partners (email, name, created_at, updated_at) VALUES (?, 'Pat', ?, ?)",
        [P0, stamp, stamp],
    )
    old.execute(
        "INSERT INTO messages (campaign, partner_id, step, account, message_id, to_addr,"
        " subject, status, raw, created_at, updated_at, sent_at) VALUES ('checkin', 1,"
        " 1, 'default', '<m1@district.test>', ?, 'Check-in', 'sent', x'', ?, ?, ?)",
        [P0, stamp, stamp, stamp],
    )
    old.execute(
        "INSERT INTO sequences (campaign, partner_id, state, last_step, last_sent_at,"
        " updated_at) VALUES ('checkin', 1, 'replied', 1, ?, ?)",
        [stamp, stamp],
    )
    reply = (
        f"From: Pat <{P0}>\r\nTo: coordinator@district.test\r\nSubject: Re: Check-in\r\n"
        "Message-ID: <r1@partners.test>\r\nIn-Reply-To: <m1@district.test>\r\n"
        "Date: Tue, 24 Nov 2026 10:30:00 +0000\r\n\r\nWe can host two interns.\r\n"
    ).encode()
    words = classify_message(reply).full_text  # what the older version kept
    old.execute(
        "INSERT INTO inbound (account, folder, uidvalidity, uid, message_id, from_addr,"
        " subject, kind, partner_id, campaign, step, matched_message, text, full_text,"
        " processed_at) VALUES ('default', 'INBOX', 1, 1, 'r1@partners.test', ?,"
        " 'Re: Check-in', 'reply', 1, 'checkin', 1, 1, ?, ?, ?)",
        [P0, words, words, stamp],
    )
    old.conn.commit()
    old.close()

    ws = workspace(tmp_path, smtp_server, imap_server, monkeypatch)
    (item,) = replies_json(ws)
    assert (item["partner"], item["from"], item["from_name"], item["unverified"]) == (
        P0,
        P0,
        None,
        None,
    )
    assert item["unreadable"] == [] and not item["handled"]
    assert json.loads(ok(ws.cli("report", "checkin", "--json")))["replied"] == 1
    assert "1" in ok(ws.cli("partners", "list"))
    exported = json.loads(ok(ws.cli("export", "replies", "--format", "json")))
    assert exported[0]["from_addr"] == P0 and exported[0]["duplicate_of"] is None
    # the same reply again (a rescan of the folder): recorded once; another one reusing its
    # Message-ID: recorded and flagged
    imap_server.append(reply)
    imap_server.append(reply.replace(b"two interns", b"three interns"))
    assert ws.worker().read_cycle().recorded == 1
    rows = inbound(ws)
    assert [r["duplicate_of"] for r in rows] == [None, 1]
    assert rows[1]["content_hash"].startswith("sha256:")
    ws.close()


def test_the_digest_tells_unverified_mail_apart(
    ws: Workspace, smtp_server: Any, imap_server: Any
) -> None:
    from datetime import timedelta

    from outreach.engine.digest import collect, render_text

    since = ws.clock() - timedelta(hours=1)
    imap_server.append(forged_bounce(P0))
    imap_server.append(partner_mail.bounce(sent_to(smtp_server, P1)))
    ws.worker().read_cycle()
    digest = collect(ws.store, ws.config, ws.campaigns, ws.clock(), since)
    assert [r["partner_email"] for r in digest.bounces] == [P1]
    assert [r["partner_email"] for r in digest.unverified] == [P0]
    text = render_text(digest)
    assert "BOUNCES (1)" in text and "TO CHECK: NOT ACTED ON (1)" in text
    assert "quotes none of the messages outreach sent" in text
