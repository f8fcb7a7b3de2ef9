"""Who may change a partner's record: the pure decisions (match_message, needs_review,
same_message, the header values that cannot be read), table-driven."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from outreach.core.inbound.classify import Classification, classify_message
from outreach.core.inbound.effects import LAST_MOMENT, needs_review, pause_until
from outreach.core.inbound.identity import content_digest, same_message
from outreach.core.inbound.mailparse import MessageHeaders, own_message_id, parse_date, read_headers
from outreach.core.inbound.match import Match, match_message
from outreach.core.model import LedgerRef

# The roster: Pat (partner 1, pat@clinic.test), Quinn (partner 2, quinn@shop.test), and Gail
# (partner 3, gail@gmail.com, a public mailbox domain). Quinn got step 2 of "spring" last.
PAT, QUINN, GAIL = 1, 2, 3
ROSTER = {"pat@clinic.test": PAT, "quinn@shop.test": QUINN, "gail@gmail.com": GAIL}
TO_PAT = LedgerRef(10, PAT, "checkin", 1, "pat@clinic.test")
TO_QUINN = LedgerRef(20, QUINN, "spring", 2, "quinn@shop.test")
TO_GAIL = LedgerRef(30, GAIL, "checkin", 1, "gail@gmail.com")
LEDGER = {
    "pat.1@district.test": TO_PAT,
    "quinn.2@district.test": TO_QUINN,
    "gail.1@district.test": TO_GAIL,
}
LATEST = {PAT: TO_PAT, QUINN: TO_QUINN, GAIL: TO_GAIL}
DOMAINS = {"clinic.test": PAT}  # what Reader.partner_domains gives when match_domain is used


@dataclass(frozen=True)
class Case:
    kind: str
    sender: str
    expected: list[tuple[int, str | None, bool]]  # (partner, campaign, acted on)
    in_reply_to: str | None = None
    references: tuple[str, ...] = ()
    returned: tuple[str, ...] = ()  # Message-IDs inside a bounce or complaint
    named: tuple[str, ...] = ()  # addresses a bounce or complaint names
    complaint: bool = False
    trusting: tuple[str, ...] = ()  # campaigns with match_domain = true
    latest: dict[int, LedgerRef] = field(default_factory=lambda: dict(LATEST))


CASES = {
    # bounces and complaints: our Message-ID is the proof
    "bounce quoting our message": Case(
        "bounce",
        "mailer-daemon@mx.clinic.test",
        [(PAT, "checkin", True)],
        returned=("pat.1@district.test",),
        named=("quinn@shop.test",),
    ),
    "bounce naming a partner, quoting nothing of ours": Case(
        "bounce", "mailer-daemon@evil.test", [(PAT, "checkin", False)], named=("pat@clinic.test",)
    ),
    "bounce naming two partners, quoting nothing": Case(
        "bounce",
        "mailer-daemon@evil.test",
        [(PAT, "checkin", False), (QUINN, "spring", False)],
        named=("pat@clinic.test", "stranger@x.test", "quinn@shop.test"),
    ),
    "bounce quoting a Message-ID that is not ours": Case(
        "bounce",
        "mailer-daemon@evil.test",
        [(PAT, "checkin", False)],
        returned=("forged@district.test",),
        named=("pat@clinic.test",),
    ),
    "bounce sent from the partner's own address, quoting nothing": Case(
        "bounce", "pat@clinic.test", [(PAT, "checkin", False)]
    ),
    "bounce naming nobody in the roster": Case(
        "bounce", "mailer-daemon@evil.test", [], named=("someone@else.test",)
    ),
    "complaint quoting our message": Case(
        "unsubscribe",
        "fbl@isp.test",
        [(QUINN, "spring", True)],
        complaint=True,
        returned=("quinn.2@district.test",),
    ),
    "complaint naming a partner, quoting nothing": Case(
        "unsubscribe",
        "fbl@isp.test",
        [(QUINN, "spring", False)],
        complaint=True,
        named=("quinn@shop.test",),
    ),
    # mail in a partner's thread counts for who wrote it
    "the partner answers their thread": Case(
        "reply", "pat@clinic.test", [(PAT, "checkin", True)], in_reply_to="pat.1@district.test"
    ),
    "another roster partner answers in Pat's thread": Case(
        "reply", "quinn@shop.test", [(QUINN, "spring", True)], in_reply_to="pat.1@district.test"
    ),
    "a partner never written to answers in Pat's thread": Case(
        "reply",
        "quinn@shop.test",
        [(QUINN, None, True)],
        in_reply_to="pat.1@district.test",
        latest={PAT: TO_PAT},
    ),
    "Quinn answers a thread holding both messages: Quinn's own": Case(
        "reply",
        "quinn@shop.test",
        [(QUINN, "spring", True)],
        references=("quinn.2@district.test", "pat.1@district.test"),
    ),
    "a colleague at the partner's domain": Case(
        "reply", "bob@clinic.test", [(PAT, "checkin", True)], in_reply_to="pat.1@district.test"
    ),
    "a stranger in the thread": Case(
        "reply", "eve@evil.test", [(PAT, "checkin", False)], in_reply_to="pat.1@district.test"
    ),
    "a stranger in the thread, by References only": Case(
        "auto_reply",
        "eve@evil.test",
        [(PAT, "checkin", False)],
        references=("x@y.test", "pat.1@district.test"),
    ),
    "no From at all in the thread": Case(
        "reply", "", [(PAT, "checkin", False)], in_reply_to="pat.1@district.test"
    ),
    "a stranger at the same public mailbox domain": Case(
        "reply", "eve@gmail.com", [(GAIL, "checkin", False)], in_reply_to="gail.1@district.test"
    ),
    "a stranger in the thread of a campaign with match_domain": Case(
        "reply",
        "eve@evil.test",
        [(PAT, "checkin", True)],
        in_reply_to="pat.1@district.test",
        trusting=("checkin",),
    ),
    "a stranger's opt-out in a match_domain thread": Case(
        "unsubscribe",
        "eve@evil.test",
        [(PAT, "checkin", False)],
        in_reply_to="pat.1@district.test",
        trusting=("checkin",),
    ),
    "a colleague's opt-out in the thread": Case(
        "unsubscribe",
        "bob@clinic.test",
        [(PAT, "checkin", False)],
        in_reply_to="pat.1@district.test",
    ),
    "the partner's opt-out in the thread": Case(
        "unsubscribe",
        "pat@clinic.test",
        [(PAT, "checkin", True)],
        in_reply_to="pat.1@district.test",
    ),
    "machine mail from a stranger in the thread changes nothing anyway": Case(
        "other",
        "tickets@helpdesk.test",
        [(PAT, "checkin", True)],
        in_reply_to="pat.1@district.test",
    ),
    # outside a thread the sender decides
    "an opt-out from a partner's own address, never written to": Case(
        "unsubscribe", "quinn@shop.test", [(QUINN, None, True)], latest={}
    ),
    "a reply from a partner never written to is not ours": Case(
        "reply", "quinn@shop.test", [], latest={}
    ),
    "a colleague's reply, campaign with match_domain": Case(
        "reply", "bob@clinic.test", [(PAT, "checkin", True)], trusting=("checkin",)
    ),
    "a colleague's reply, campaign without match_domain": Case("reply", "bob@clinic.test", []),
    "a colleague's opt-out, campaign with match_domain": Case(
        "unsubscribe", "bob@clinic.test", [(PAT, "checkin", False)], trusting=("checkin",)
    ),
}


def classification(case: Case) -> Classification:
    headers = MessageHeaders(
        from_addr=case.sender or None, in_reply_to=case.in_reply_to, references=case.references
    )
    return Classification(
        kind=case.kind,
        headers=headers,
        bounced_recipients=case.named,
        original_message_ids=case.returned,
        complaint=case.complaint,
    )


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_who_a_message_counts_for(case: Case) -> None:
    matches = match_message(
        classification(case), LEDGER, ROSTER, case.latest, DOMAINS, case.trusting
    )
    assert [(m.partner_id, m.campaign, m.unverified is None) for m in matches] == case.expected
    for match in matches:
        assert match.rule
        if match.unverified is not None:
            assert match.unverified.strip()  # the reason a person reads in the queue


def test_an_unverified_bounce_says_what_it_names() -> None:
    case = CASES["bounce naming two partners, quoting nothing"]
    (first, _) = match_message(classification(case), LEDGER, ROSTER, LATEST, DOMAINS)
    assert first.unverified is not None
    assert "quotes none of the messages outreach sent" in first.unverified
    assert "pat@clinic.test" in first.unverified and "quinn@shop.test" in first.unverified


def test_a_report_naming_the_whole_roster_is_listed_under_a_few() -> None:
    roster = {f"p{n}@x.test": n for n in range(1, 1001)}
    result = Classification(kind="bounce", bounced_recipients=tuple(roster))
    matches = match_message(result, {}, roster, {}, {})
    assert [m.partner_id for m in matches] == list(range(1, 21))
    assert matches[0].unverified is not None and "and 995 more" in matches[0].unverified


@pytest.mark.parametrize(
    ("kind", "contact_change", "unverified", "duplicate_of", "expected"),
    [
        ("reply", False, None, None, True),
        ("auto_reply", False, None, None, False),
        ("auto_reply", True, None, None, True),
        ("bounce", False, None, None, False),
        ("bounce", False, "quotes none of our messages", None, True),
        ("unsubscribe", False, None, None, False),
        ("unsubscribe", False, "a stranger", None, True),
        ("other", False, None, None, False),
        ("other", False, None, 12, True),
        ("error", False, None, None, True),  # an answer that could not be read is still one
    ],
)
def test_what_waits_for_a_person(
    kind: str,
    contact_change: bool,
    unverified: str | None,
    duplicate_of: int | None,
    expected: bool,
) -> None:
    assert needs_review(kind, contact_change, unverified, duplicate_of) is expected


@pytest.mark.parametrize(
    ("earlier", "same"),
    [
        ({"content_hash": "sha256:a", "from_addr": "x", "full_text": "y"}, True),
        ({"content_hash": "sha256:b", "from_addr": "pat@clinic.test", "full_text": "Hi"}, False),
        # recorded before m005 (no digest): the sender and the words decide
        ({"content_hash": None, "from_addr": "pat@clinic.test", "full_text": "Hi"}, True),
        ({"content_hash": None, "from_addr": "eve@evil.test", "full_text": "Hi"}, False),
        ({"content_hash": None, "from_addr": "pat@clinic.test", "full_text": "Stop"}, False),
    ],
)
def test_a_redelivery_is_told_from_a_reused_message_id(
    earlier: dict[str, str | None], same: bool
) -> None:
    assert same_message(earlier, "sha256:a", "pat@clinic.test", "Hi") is same


# --------------------------------------------------------------------------- odd values


@pytest.mark.parametrize(
    ("value", "readable"),
    [
        ("Tue, 24 Nov 2026 10:00:00 +0000", datetime(2026, 11, 24, 10, tzinfo=UTC)),
        ("Tue, 24 Nov 2026 10:00:00 -0000", datetime(2026, 11, 24, 10, tzinfo=UTC)),  # RFC 5322 3.3
        ("Tue, 24 Nov 2026 10:00:00", datetime(2026, 11, 24, 10, tzinfo=UTC)),
        ("Fri, 31 Dec 9999 23:59:59 -1200", None),  # after the last year Python holds, in UTC
        ("Mon, 1 Jan 0001 00:00:00 +0100", None),  # the parser would read 2001
        ("Tue, 24 Nov 2026 10:00:00 +9999", None),
        ("yesterday", None),
        ("", None),
    ],
)
def test_a_date_is_read_or_is_unknown_with_the_reason(
    value: str, readable: datetime | None
) -> None:
    parsed, problem = parse_date(value)
    assert parsed == readable
    if readable is not None:
        assert problem is None and parsed is not None and parsed.astimezone(UTC)
    elif value:
        assert problem is not None and repr(value) in problem and "time outreach read" in problem


@pytest.mark.parametrize(
    ("value", "kept", "problem"),
    [
        ("<a.1@x.test>", "a.1@x.test", False),
        ("  <a.1@x.test>  ", "a.1@x.test", False),
        ("<a 1@x.test>", "a 1@x.test", True),  # spaces inside: kept, not cut to "1@x.test"
        ("<<abc>@x.test>", "<<abc>@x.test>", True),  # not cut to "abc"
        ("<a@x.test> <b@x.test>", "<a@x.test> <b@x.test>", True),
        ("no-brackets@x.test", "no-brackets@x.test", True),
        ("", None, False),
    ],
)
def test_a_message_id_is_kept_as_written_when_it_is_not_one_clean_id(
    value: str, kept: str | None, problem: bool
) -> None:
    found, why = own_message_id(value)
    assert found == kept and (why is not None) is problem


def test_a_message_id_over_998_characters_is_kept_as_its_digest() -> None:
    found, why = own_message_id("<" + "a" * 5000 + "@x.test>")
    assert found is not None and found.startswith("sha256:") and len(found) == 71
    assert why is not None and "998" in why


def test_the_headers_keep_the_date_as_written_and_why_it_was_not_read() -> None:
    headers = read_headers(
        b"From: Pat <pat@clinic.test>\r\nMessage-ID: <a b@c>\r\n"
        b"Date: Fri, 31 Dec 9999 23:59:59 -1200\r\n\r\n"
    )
    assert headers.date is None and headers.date_text == "Fri, 31 Dec 9999 23:59:59 -1200"
    assert headers.message_id == "a b@c" and headers.from_name == "Pat"
    assert len(headers.problems) == 2


REPLY = (
    b"From: Pat <pat@clinic.test>\r\nTo: c@district.test\r\nSubject: Re: Check-in\r\n"
    b"Message-ID: <r1@clinic.test>\r\nIn-Reply-To: <pat.1@district.test>\r\n"
    b"Date: Tue, 24 Nov 2026 10:00:00 +0000\r\n\r\nWe can host two interns.\r\n"
)


def digest_of(raw: bytes) -> str:
    return content_digest(read_headers(raw.split(b"\r\n\r\n")[0] + b"\r\n\r\n"), raw)


def test_a_redelivery_has_the_same_digest_and_a_changed_message_another() -> None:
    trace = b"Received: from mx2 by mx1; Tue, 24 Nov 2026 10:00:05 +0000\r\nDelivered-To: c\r\n"
    assert digest_of(trace + REPLY) == digest_of(REPLY)
    assert digest_of(REPLY.replace(b"Pat <pat@", b"Eve <eve@")) != digest_of(REPLY)
    assert digest_of(REPLY.replace(b"two interns", b"no interns")) != digest_of(REPLY)


def auto_reply(date_header: bytes, body: bytes) -> bytes:
    return (
        b"From: pat@clinic.test\r\nTo: c@district.test\r\nSubject: Automatic reply\r\n"
        b"Auto-Submitted: auto-replied\r\nMessage-ID: <a@clinic.test>\r\nDate: "
        + date_header
        + b"\r\n\r\n"
        + body
        + b"\r\n"
    )


@pytest.mark.parametrize(
    ("date_header", "body", "back"),
    [
        # a Date at the end of time must not put the return date there
        (
            b"Fri, 31 Dec 9999 23:59:59 -1200",
            b"I am out of the office until December 2.",
            date(2026, 12, 2),
        ),
        (
            b"Fri, 31 Dec 9999 23:59:59 +1200",
            b"I am out of the office until December 2.",
            date(2026, 12, 2),
        ),
        (b"Fri, 31 Dec 9999 23:59:59 +1200", b"I am away through December 31.", date(2027, 1, 1)),
        (b"Tue, 24 Nov 2026 10:00:00 +0000", b"I am out of the office until 2031-05-01.", None),
        (
            b"Tue, 24 Nov 2026 10:00:00 +0000",
            b"I am out of the office until 2026-12-07.",
            date(2026, 12, 7),
        ),
    ],
)
def test_an_auto_reply_cannot_pause_the_follow_ups_for_ever(
    date_header: bytes, body: bytes, back: date | None
) -> None:
    today = date(2026, 11, 24)
    result = classify_message(auto_reply(date_header, body), today=today)
    assert result.kind == "auto_reply"
    assert result.return_date == back
    if back is None:
        assert any("not believed" in reason for reason in result.reasons)


def test_a_pause_past_the_end_of_the_calendar_stops_at_its_last_day() -> None:
    now = datetime(2026, 11, 24, 10, tzinfo=UTC)
    zone = ZoneInfo("Pacific/Kiritimati")
    assert pause_until(date(9999, 12, 31), zone, now, timedelta(days=5)) == LAST_MOMENT
    assert pause_until(None, zone, now, timedelta.max) == LAST_MOMENT
    assert pause_until(date(2026, 12, 7), zone, now, timedelta(days=5)) == datetime(
        2026, 12, 8, tzinfo=zone
    )


ARF = b"""From: Feedback Loop <fbl@isp.test>\r
To: abuse@district.test\r
Subject: Abuse report\r
Message-ID: <report.1@isp.test>\r
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
User-Agent: isp-fbl/1.0\r
Version: 1\r
Original-Rcpt-To: <quinn@shop.test>\r
\r
--b\r
Content-Type: message/rfc822\r
\r
From: c@district.test\r
To: quinn@shop.test\r
Subject: Check-in\r
Message-ID: <quinn.2@district.test>\r
\r
Hello\r
--b--\r
"""


def test_a_complaint_says_whom_it_is_about_and_which_message() -> None:
    result = classify_message(ARF)
    assert (result.kind, result.complaint) == ("unsubscribe", True)
    assert result.bounced_recipients == ("quinn@shop.test",)
    assert result.original_message_ids == ("quinn.2@district.test",)
    forged = classify_message(ARF.replace(b"<quinn.2@district.test>", b"<made.up@x.test>"))
    (match,) = match_message(forged, LEDGER, ROSTER, LATEST, DOMAINS)
    assert (match.partner_id, match.unverified is not None) == (QUINN, True)
    (match,) = match_message(result, LEDGER, ROSTER, LATEST, DOMAINS)
    assert match == Match(QUINN, "spring", 2, 20, "the Message-ID inside the returned message")


def test_mime_that_is_not_read_keeps_the_words() -> None:
    nested = b"".join(
        b'--n%d\r\nContent-Type: multipart/mixed; boundary="n%d"\r\n\r\n' % (i, i + 1)
        for i in range(150)
    )
    raw = (
        b"From: pat@clinic.test\r\nIn-Reply-To: <pat.1@district.test>\r\n"
        b'Content-Type: multipart/mixed; boundary="n0"\r\n\r\n'
        + nested
        + b"--n150\r\nContent-Type: text/plain\r\n\r\nWe can host two interns.\r\n"
    )
    result = classify_message(raw)
    assert result.kind == "error" and result.full_text == "We can host two interns."
    assert replace(result, full_text=None).headers.from_addr == "pat@clinic.test"


def test_the_digest_of_a_subject_with_a_lone_surrogate() -> None:
    """UTF-7 encoded words can decode to a lone surrogate, which UTF-8 refuses."""
    raw = (
        b"From: pat@clinic.test\r\nSubject: =?utf-7?q?+3Uo-?= hi\r\n"
        b"Message-ID: <" + b"x" * 1200 + b"@y>\r\n\r\nhi\r\n"
    )
    headers = read_headers(raw)
    assert "\udd4a" in headers.subject and headers.message_id is not None
    assert digest_of(raw).startswith("sha256:") and headers.message_id.startswith("sha256:")


def report(own_id: bytes, parts: bytes) -> bytes:
    return (
        b"From: Mail System <postmaster@clinic.test>\r\nTo: c@district.test\r\n"
        b"Subject: Undeliverable: Check-in\r\nMessage-ID: " + own_id + b"\r\n"
        b"MIME-Version: 1.0\r\nContent-Type: multipart/report; "
        b'report-type=delivery-status; boundary="r"\r\n\r\n--r\r\n'
        b"Content-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n"
        + parts
        + b"--r--\r\n"
    )


DSN = (
    b"--r\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx\r\n\r\n"
    b"Final-Recipient: rfc822; pat@clinic.test\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n"
)
RETURNED = (
    b"From: c@district.test\r\nTo: pat@clinic.test\r\nSubject: Check-in\r\n"
    b"Message-ID: <pat.1@district.test>\r\n"
)


@pytest.mark.parametrize(
    ("own_id", "parts"),
    [
        # Lotus Domino gives its report the Message-ID of the message that bounced
        (
            b"<pat.1@district.test>",
            DSN + b"--r\r\nContent-Type: message/rfc822\r\n\r\n" + RETURNED + b"\r\nHello\r\n",
        ),
        # message/rfc822-headers, a common misspelling of text/rfc822-headers
        (
            b"<own@mx.clinic.test>",
            DSN + b"--r\r\nContent-Type: message/rfc822-headers\r\n\r\n" + RETURNED + b"\r\n",
        ),
        # the returned headers pasted into the delivery-status part
        (b"<own@mx.clinic.test>", DSN[:-2] + RETURNED + b"\r\n"),
    ],
)
def test_a_bounce_quotes_our_message_however_its_mta_returns_it(
    own_id: bytes, parts: bytes
) -> None:
    result = classify_message(report(own_id, parts))
    assert result.kind == "bounce"
    assert "pat.1@district.test" in result.original_message_ids
    (match,) = match_message(result, LEDGER, ROSTER, LATEST, DOMAINS)
    assert (match.partner_id, match.unverified) == (PAT, None)
