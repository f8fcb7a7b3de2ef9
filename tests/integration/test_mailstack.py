"""The real mail stack (Postfix + Dovecot from scripts/mailstack) with the real clients."""

from __future__ import annotations

import asyncio
import email
import email.policy
import ssl
from email.message import EmailMessage
from email.utils import make_msgid
from typing import TYPE_CHECKING, Any

import aiosmtplib
import pytest
from imapclient import IMAPClient

if TYPE_CHECKING:
    from conftest import Mailstack

pytestmark = pytest.mark.integration


def make_msg(sender: str, to: str, subject: str = "Internship check-in") -> EmailMessage:
    m = EmailMessage()
    m["From"] = sender
    m["To"] = to
    m["Subject"] = subject
    m["Message-ID"] = make_msgid(domain="example.test")
    m["X-Outreach-Campaign"] = "spring-checkin"
    m.set_content("Hello! How is the internship going?\n")
    return m


def submit(stack: Mailstack, msg: EmailMessage, user: str, **kwargs: Any) -> Any:
    """Send through the submission port: STARTTLS (verified) + AUTH."""
    return asyncio.run(
        aiosmtplib.send(
            msg,
            hostname=stack.host,
            port=stack.submission_port,
            start_tls=True,
            tls_context=stack.tls_context(),
            username=user,
            password=stack.users[user],
            timeout=20,
            **kwargs,
        )
    )


def parse(raw: bytes) -> EmailMessage:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def test_submission_starttls_auth_then_read_back_over_imaps(mailstack: Mailstack) -> None:
    partner, _ = mailstack.new_user()
    msg = make_msg(mailstack.coordinator, partner)
    errors, reply = submit(mailstack, msg, mailstack.coordinator)
    assert errors == {}
    assert reply.startswith("2.0.0 Ok")

    found = mailstack.wait_for_messages(partner, ["HEADER", "Message-ID", msg["Message-ID"]])
    (raw,) = found.values()
    got = parse(raw)
    assert got["Subject"] == "Internship check-in"
    assert got["X-Outreach-Campaign"] == "spring-checkin"
    assert got["Delivered-To"] == partner
    assert "internship going" in got.get_content()

    # the same over IMAPS with an explicitly verifying context, by hand
    ctx = ssl.create_default_context(cafile=mailstack.ca_file)
    with IMAPClient(
        mailstack.host, port=mailstack.imaps_port, ssl=True, ssl_context=ctx, timeout=10
    ) as c:
        c.login(partner, mailstack.users[partner])
        c.select_folder("INBOX", readonly=True)
        assert c.search(["HEADER", "Message-ID", msg["Message-ID"]]) == list(found)


def test_bounce_domain_produces_real_dsn(mailstack: Mailstack) -> None:
    assert mailstack.bounce_domain == "bounce.test"
    sender, _ = mailstack.new_user()
    partner, _ = mailstack.new_user()
    gone = f"nobody@{mailstack.bounce_domain}"
    msg = make_msg(sender, f"{gone}, {partner}")
    errors, _ = submit(mailstack, msg, sender)
    assert errors == {}  # accepted at RCPT time; Postfix bounces it afterwards

    # the co-recipient is still delivered
    mailstack.wait_for_messages(partner, ["HEADER", "Message-ID", msg["Message-ID"]])

    (raw,) = mailstack.wait_for_messages(sender, ["FROM", "MAILER-DAEMON"]).values()
    dsn = parse(raw)
    assert dsn["Return-Path"] == "<>"
    assert dsn.get_content_type() == "multipart/report"
    assert dsn.get_param("report-type") == "delivery-status"
    parts = {p.get_content_type(): p for p in dsn.iter_parts()}
    assert set(parts) >= {"text/plain", "message/delivery-status", "message/rfc822"}

    status = parts["message/delivery-status"].as_string()
    assert f"Final-Recipient: rfc822; {gone}" in status
    assert "Action: failed" in status
    assert "Status: 5.1.1" in status
    assert partner not in status  # only the failed recipient is reported

    (original,) = parts["message/rfc822"].iter_parts()
    assert original["Message-ID"] == msg["Message-ID"]
    assert original["X-Outreach-Campaign"] == "spring-checkin"


def test_defer_domain_produces_delayed_dsn(mailstack: Mailstack) -> None:
    sender, _ = mailstack.new_user()
    msg = make_msg(sender, f"slow@{mailstack.defer_domain}")
    submit(mailstack, msg, sender)
    (raw,) = mailstack.wait_for_messages(sender, ["FROM", "MAILER-DAEMON"], timeout=20).values()
    dsn = parse(raw)
    assert dsn.get_content_type() == "multipart/report"
    status = next(
        p for p in dsn.iter_parts() if p.get_content_type() == "message/delivery-status"
    ).as_string()
    assert "Action: delayed" in status
    assert "Status: 4.2.1" in status


def test_tls_is_verified(mailstack: Mailstack) -> None:
    """Without trusting the stack's certificate, TLS connections are refused."""
    untrusted = ssl.create_default_context()  # system CAs only
    with pytest.raises(ssl.SSLCertVerificationError):
        IMAPClient(
            mailstack.host, port=mailstack.imaps_port, ssl=True, ssl_context=untrusted, timeout=10
        )
    with pytest.raises(ssl.SSLCertVerificationError):
        asyncio.run(
            aiosmtplib.send(
                make_msg(mailstack.coordinator, "partner1@example.test"),
                hostname=mailstack.host,
                port=mailstack.submission_port,
                start_tls=True,
                tls_context=untrusted,
                username=mailstack.coordinator,
                password=mailstack.password,
                timeout=20,
            )
        )
    # implicit TLS: aiosmtplib wraps the verification error in SMTPConnectError
    with pytest.raises(aiosmtplib.SMTPConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        asyncio.run(
            aiosmtplib.send(
                make_msg(mailstack.coordinator, "partner1@example.test"),
                hostname=mailstack.host,
                port=mailstack.smtps_port,
                use_tls=True,
                tls_context=untrusted,
                timeout=20,
            )
        )


def test_submission_requires_auth_and_nothing_is_relayed(mailstack: Mailstack) -> None:
    # no AUTH on the submission port: refused (smtpd delays the reject to RCPT)
    with pytest.raises(aiosmtplib.SMTPRecipientsRefused):
        asyncio.run(
            aiosmtplib.send(
                make_msg(mailstack.coordinator, "partner1@example.test"),
                hostname=mailstack.host,
                port=mailstack.submission_port,
                start_tls=True,
                tls_context=mailstack.tls_context(),
                timeout=20,
            )
        )
    # a wrong password
    with pytest.raises(aiosmtplib.SMTPAuthenticationError):
        asyncio.run(
            aiosmtplib.send(
                make_msg(mailstack.coordinator, "partner1@example.test"),
                hostname=mailstack.host,
                port=mailstack.submission_port,
                start_tls=True,
                tls_context=mailstack.tls_context(),
                username=mailstack.coordinator,
                password="wrong",
                timeout=20,
            )
        )
    # foreign domains are refused at RCPT: nothing ever leaves this machine
    with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as info:
        asyncio.run(
            aiosmtplib.send(
                make_msg(mailstack.coordinator, "someone@outside.invalid"),
                hostname=mailstack.host,
                port=mailstack.smtp_port,
                timeout=20,
            )
        )
    assert info.value.recipients[0].code == 554


def test_add_user_can_log_in_at_once(mailstack: Mailstack) -> None:
    user = mailstack.add_user("late-joiner@example.test", "pw-late")
    with mailstack.imap(user) as c:
        assert c.select_folder("INBOX")[b"EXISTS"] == 0
    submit(mailstack, make_msg(user, "partner2@example.test"), user)
