"""Mail a partner, or their mail server, sends back: for the demo and for tests.

Each function takes the raw message outreach sent and returns raw bytes shaped like what
real clients and servers produce (a Gmail-style reply with quoted history, an RFC 3834
vacation notice, an RFC 3464 delivery report, ...).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import SMTP, default
from email.utils import format_datetime, make_msgid


def _original(raw: bytes) -> EmailMessage:
    message = BytesParser(policy=default).parsebytes(raw)
    assert isinstance(message, EmailMessage)
    return message


def _base(original: EmailMessage, sender: str, subject: str, when: datetime | None) -> EmailMessage:
    message = EmailMessage(policy=SMTP)
    message["From"] = sender
    message["To"] = str(original["From"])
    message["Subject"] = subject
    message["Date"] = format_datetime(when or datetime.now(UTC))
    message["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2].strip(">") or "x.test")
    return message


def _quoted(original: EmailMessage) -> str:
    body = original.get_body(("plain",))
    text = body.get_content() if body is not None else ""
    return "\n".join("> " + line for line in text.splitlines())


def reply(
    raw: bytes, text: str, *, sender: str | None = None, when: datetime | None = None
) -> bytes:
    """A human answer, Gmail style: new text, then "On ... wrote:" and the quoted message."""
    original = _original(raw)
    sender = sender or str(original["To"])
    subject = str(original["Subject"])
    message = _base(
        original, sender, subject if subject.lower().startswith("re:") else f"Re: {subject}", when
    )
    message["In-Reply-To"] = str(original["Message-ID"])
    message["References"] = " ".join(
        x for x in (str(original.get("References") or ""), str(original["Message-ID"])) if x
    )
    wrote = f"On {original['Date']}, {original['From']} wrote:"
    message.set_content(f"{text.rstrip()}\n\n{wrote}\n{_quoted(original)}\n")
    return message.as_bytes()


def unsubscribe(raw: bytes, *, when: datetime | None = None) -> bytes:
    return reply(raw, "Please remove me from your mailing list. Thank you.", when=when)


def out_of_office(raw: bytes, back: date, *, when: datetime | None = None) -> bytes:
    """An RFC 3834 vacation notice naming the return date."""
    original = _original(raw)
    sender = str(original["To"])
    message = _base(original, sender, f"Automatic reply: {original['Subject']}", when)
    message["In-Reply-To"] = str(original["Message-ID"])
    message["Auto-Submitted"] = "auto-replied"
    message["X-Autoreply"] = "yes"
    message.set_content(
        "Thank you for your email. I am out of the office with limited access to email and "
        f"will return on {back.strftime('%A, %B')} {back.day}, {back.year}.\n"
        "For urgent matters please call the front desk.\n"
    )
    return message.as_bytes()


def bounce(
    raw: bytes,
    *,
    status: str = "5.1.1",
    reporting_mta: str = "mx.partners.test",
    diagnostic: str = "550 5.1.1 <{rcpt}>: Recipient address rejected: User unknown",
    when: datetime | None = None,
) -> bytes:
    """An RFC 3464 delivery status notification carrying the original headers, laid out as
    Postfix writes it."""
    original = _original(raw)
    recipient = original["To"].addresses[0].addr_spec
    diagnostic = diagnostic.format(rcpt=recipient)
    action = "failed" if status.startswith("5") else "delayed"
    boundary = "dsn-" + make_msgid().strip("<>").replace("@", ".")
    headers_only = raw.split(b"\r\n\r\n", 1)[0].decode("ascii", "replace")
    text = f"""Return-Path: <>
From: Mail Delivery System <MAILER-DAEMON@{reporting_mta}>
To: {original["From"]}
Subject: Undelivered Mail Returned to Sender
Date: {format_datetime(when or datetime.now(UTC))}
Message-ID: {make_msgid(domain=reporting_mta)}
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"

This is a MIME-encapsulated message.

--{boundary}
Content-Type: text/plain; charset=us-ascii

This is the mail system at host {reporting_mta}.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients.

<{recipient}>: host {reporting_mta} said: {diagnostic}

--{boundary}
Content-Type: message/delivery-status

Reporting-MTA: dns; {reporting_mta}

Final-Recipient: rfc822; {recipient}
Original-Recipient: rfc822;{recipient}
Action: {action}
Status: {status}
Diagnostic-Code: smtp; {diagnostic}

--{boundary}
Content-Type: text/rfc822-headers

{headers_only}

--{boundary}--
"""
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode("ascii", "replace")


def unrelated(
    sender: str = "newsletter@vendor.test",
    to: str = "coordinator@district.test",
    subject: str = "Your weekly digest",
    when: datetime | None = None,
) -> bytes:
    message = EmailMessage(policy=SMTP)
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = format_datetime(when or datetime.now(UTC))
    message["Message-ID"] = make_msgid(domain="vendor.test")
    message.set_content("Nothing to do with outreach.\n")
    return message.as_bytes()
