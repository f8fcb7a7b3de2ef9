"""Reply ingestion vs raw IMAP reads, side by side in one run, against a real Dovecot.

    python benchmarks/ingest.py [--quick] [--mailbox N] [--replies N] [--rounds N]

Starts the project's Postfix + Dovecot stack (scripts/mailstack, sdbox mailboxes) on free
loopback ports, fills two mailboxes with MULTIAPPEND, and stops the stack afterwards (also
on Ctrl-C). Two comparisons, each timed from connect to logout:

(a) a coordinator's mailbox of 10,000 messages (--mailbox), 5% of them replies from roster
    partners to Message-IDs in outreach's ledger, the rest unrelated mail from other people
    (2-20 KB with real-looking trace and DKIM headers, newsletters, threads among
    colleagues, notifications, attachments, a few bounces and out-of-office notices of the
    coordinator's own mail). outreach: Reader.read_all into a fresh copy of a database that
    holds the roster and the ledger (header-first read, classify, match, record, act).
    raw: IMAPClient `UID FETCH BODY.PEEK[]` of every message in batches of the same size.
    ratio = raw time / outreach time (target >= 1.0).
(b) a mailbox of 5,000 replies (--replies), all concerning outreach. outreach as above; raw:
    the same fetch plus a stdlib parse of each message (email.message_from_bytes with
    policy.default, get_body, get_content). ratio = raw time / outreach time (target >= 0.5).

Rounds alternate which side goes first, after one untimed warm-up of each; the best time of
each side counts (the machine is shared and noisy). outreach's results are checked (every
reply recorded as a reply, nothing unrelated recorded). The last line is `ratio: X`, the
lower of the two ratios.
"""

from __future__ import annotations

import argparse
import base64
import email
import logging
import os
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email import policy
from email.utils import format_datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _mailstack import Mailstack, run  # noqa: E402
from workspace import ALWAYS_OPEN, Workspace, partner_rows  # noqa: E402

from outreach.core.settings import ReplySettings  # noqa: E402
from outreach.engine.ingest import Reader, ReadReport  # noqa: E402
from outreach.engine.sending import Sender, SendReport  # noqa: E402
from outreach.store import Store  # noqa: E402

COORDINATOR = "coordinator@example.test"  # mailbox (a)
REPLIES = "replies@example.test"  # mailbox (b)
PASSWORD = "bench-secret"
PASSWORD_ENV = "OUTREACH_BENCH_IMAP_PASSWORD"
BATCH = ReplySettings().batch_size  # outreach's default batch; the raw reads use the same
APPEND_CHUNK = 500

CAMPAIGN = (
    ALWAYS_OPEN
    + """[[steps]]
template = "hello"
subject = "Check-in for {{ partner.organization }}"
"""
)

# --------------------------------------------------------------------------- text pools

WORDS = (  # noqa: SIM905
    "the of and to in a is that for it as was with be by on not he this are or his from at "
    "which but have an they you were her she there been one all we their has would when if "
    "so no will more can out about up other into what some time could them these may then "
    "schedule meeting budget report students program district partner school career review "
    "update draft project plan week month quarter attached please thanks regards agenda "
    "follow deadline approval invoice order shipping account payment training workshop "
    "session room building parking calendar board minutes committee survey results grant "
    "application summer internship placement counselor principal teacher classroom lab "
    "equipment vendor quote contract renewal policy safety drill transportation lunch"
).split()
FIRST = (
    "Ana",
    "Ben",
    "Chloe",
    "David",
    "Elena",
    "Farid",
    "Grace",
    "Hiro",
    "Isabel",
    "Jamal",
    "Kate",
    "Liam",
    "Maya",
    "Noah",
    "Olga",
    "Priya",
    "Quinn",
    "Rosa",
    "Sam",
    "Tariq",
)
LAST = (
    "Smith",
    "Garcia",
    "Chen",
    "Okafor",
    "Novak",
    "Patel",
    "Rossi",
    "Kim",
    "Müller",
    "Dubois",
    "Silva",
    "Johnson",
    "Nguyen",
    "Haddad",
    "Larsen",
)
OTHER_DOMAINS = (
    "district.test",
    "county-gov.test",
    "vendor-supply.test",
    "edu-news.test",
    "bigbank.test",
    "travel-agency.test",
    "union.test",
    "colleague-mail.test",
)
ANSWERS = (
    "Thanks for checking in. We are still planning to host two interns this summer, "
    "same as last year.",
    "Things are going well here. Our new training lab opened in October and we would love "
    "to show it to your students.",
    "Hi, sorry for the slow answer. Our contact person changed: please talk to Maria in HR "
    "from now on, she handles the apprenticeships.",
    "We had a quiet year, nothing has changed on our side. Happy to keep the partnership going.",
    "Good to hear from you! Yes, we can take part in the career fair in March. Could you "
    "send the dates?",
    "Our company moved to a new building downtown, the address is on our website. The "
    "program is the same.",
)


@dataclass
class Pools:
    rng: random.Random
    paragraphs: list[str]
    blobs: list[bytes]

    @classmethod
    def make(cls, seed: int = 7) -> Pools:
        rng = random.Random(seed)
        paragraphs = []
        for _ in range(400):
            words = rng.choices(WORDS, k=rng.randint(40, 120))
            sentence_ends = set(rng.sample(range(len(words)), k=max(1, len(words) // 14)))
            text = " ".join(w + ("." if i in sentence_ends else "") for i, w in enumerate(words))
            paragraphs.append(text[0].upper() + text[1:] + ".")
        blobs = [rng.randbytes(n) for n in (3_000, 6_000, 9_000, 12_000, 14_000)]
        return cls(rng, paragraphs, blobs)

    def text(self, size: int) -> str:
        out, total = [], 0
        while total < size:
            p = self.rng.choice(self.paragraphs)
            out.append(_wrap(p))
            total += len(p) + 2
        return "\r\n\r\n".join(out)

    def person(self, domain: str) -> tuple[str, str]:
        first, last = self.rng.choice(FIRST), self.rng.choice(LAST)
        return f"{first} {last}", f"{first.lower()}.{last.lower()}@{domain}".replace("ü", "ue")


def _wrap(text: str, width: int = 76) -> str:
    lines, line = [], ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    lines.append(line)
    return "\r\n".join(lines)


def _b64(data: bytes) -> str:
    encoded = base64.b64encode(data).decode()
    return "\r\n".join(encoded[i : i + 76] for i in range(0, len(encoded), 76))


def _folded(name: str, value: str) -> str:
    return f"{name}: " + "\r\n\t".join(value[i : i + 70] for i in range(0, len(value), 70))


def trace_headers(pools: Pools, domain: str, when: datetime, *, dkim: bool = True) -> str:
    """Received chain, authentication results and signatures: what real mail carries."""
    rng = pools.rng
    hops = []
    stamp = when
    for hop in range(rng.randint(2, 4)):
        stamp += timedelta(seconds=rng.randint(1, 4))
        ip = f"203.0.113.{rng.randint(1, 254)}"
        hops.append(
            f"Received: from mail-{hop}{rng.randint(10, 99)}.{domain} (mail.{domain} [{ip}])\r\n"
            f"\tby mx{hop}.district.test (Postfix) with ESMTPS id {rng.getrandbits(40):X}\r\n"
            f"\tfor <coordinator@district.test>; {format_datetime(stamp)}"
        )
    lines = list(reversed(hops))
    lines.append(
        f"Authentication-Results: mx.district.test; dkim=pass header.d={domain};\r\n"
        f"\tspf=pass smtp.mailfrom={domain}; dmarc=pass (p=NONE) header.from={domain}"
    )
    if dkim:
        bh = base64.b64encode(rng.randbytes(32)).decode()
        b = base64.b64encode(rng.randbytes(256)).decode()
        lines.append(
            _folded(
                "DKIM-Signature",
                f"v=1; a=rsa-sha256; c=relaxed/relaxed; "
                f"d={domain}; s=s{rng.randint(1, 9)}; h=from:to:subject:date:"
                f"message-id:mime-version; bh={bh}; b={b}",
            )
        )
        if rng.random() < 0.5:
            lines.append(
                _folded(
                    "ARC-Seal",
                    "i=1; a=rsa-sha256; t=1764000000; cv=none; "
                    f"d={domain}; s=arc; b=" + base64.b64encode(rng.randbytes(256)).decode(),
                )
            )
    lines.append(f"X-Spam-Score: {rng.uniform(-2, 3):.1f}")
    return "\r\n".join(lines)


def _mid(pools: Pools, domain: str) -> str:
    return f"<{pools.rng.getrandbits(64):016x}.{pools.rng.getrandbits(24)}@{domain}>"


# --------------------------------------------------------------------------- unrelated mail


def unrelated_message(pools: Pools, index: int, when: datetime) -> bytes:
    """One message of a coordinator's everyday mail: nothing to do with outreach."""
    rng = pools.rng
    domain = rng.choice(OTHER_DOMAINS)
    name, addr = pools.person(domain)
    roll = rng.random()
    common = (
        f"Date: {format_datetime(when)}\r\nMessage-ID: {_mid(pools, domain)}\r\n"
        "To: Coordinator <coordinator@district.test>\r\nMIME-Version: 1.0\r\n"
    )
    trace = trace_headers(pools, domain, when)
    if roll < 0.005:  # a bounce of the coordinator's own (non-outreach) mail
        lost = f"{rng.choice(FIRST).lower()}@gone.test"
        boundary = f"bnd{index}"
        return (
            f"{trace}\r\nReturn-Path: <>\r\nFrom: Mail Delivery System <MAILER-DAEMON@mx.gone.test>"
            f"\r\nSubject: Undelivered Mail Returned to Sender\r\n{common}Auto-Submitted: "
            f"auto-replied\r\nContent-Type: multipart/report; report-type=delivery-status; "
            f'boundary="{boundary}"\r\n\r\n--{boundary}\r\nContent-Type: text/plain\r\n\r\n'
            f"Your message could not be delivered to <{lost}>: user unknown.\r\n\r\n--{boundary}"
            f"\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.gone.test"
            f"\r\n\r\nFinal-Recipient: rfc822; {lost}\r\nAction: failed\r\nStatus: 5.1.1\r\n"
            f"Diagnostic-Code: smtp; 550 5.1.1 user unknown\r\n\r\n--{boundary}\r\n"
            f"Content-Type: text/rfc822-headers\r\n\r\nFrom: coordinator@district.test\r\nTo: "
            f"{lost}\r\nSubject: Lunch on Friday\r\nMessage-ID: <own{index}@district.test>\r\n"
            f"\r\n--{boundary}--\r\n"
        ).encode()
    if roll < 0.015:  # a colleague's out-of-office answer to the coordinator's own mail
        return (
            f"{trace}\r\nFrom: {name} <{addr}>\r\nSubject: Automatic reply: Budget draft\r\n"
            f"{common}In-Reply-To: <own{index}@district.test>\r\nAuto-Submitted: "
            f"auto-replied\r\nX-Autoreply: yes\r\nContent-Type: text/plain; charset=utf-8"
            f"\r\n\r\nI am out of the office until Monday with limited access to email."
            f"\r\n"
        ).encode()
    if roll < 0.35:  # newsletter / bulk: multipart/alternative with a big HTML part
        size = rng.randint(3_000, 9_000)
        text = pools.text(size)
        html = (
            "<html><body>"
            + "".join(f'<p style="font-family:Arial">{p}</p>' for p in text.split("\r\n\r\n"))
            + "</body></html>"
        )
        boundary = f"alt{index}"
        return (
            f"{trace}\r\nFrom: {domain.split('.')[0].title()} News <news@{domain}>\r\n"
            f"Subject: {rng.choice(WORDS).title()} {rng.choice(WORDS)} news, issue {index}\r\n"
            f"{common}List-Id: <news.{domain}>\r\nList-Unsubscribe: <mailto:leave@{domain}>"
            f"\r\nPrecedence: bulk\r\nContent-Type: multipart/alternative; boundary="
            f'"{boundary}"\r\n\r\n--{boundary}\r\nContent-Type: text/plain; charset=utf-8'
            f"\r\n\r\n{text}\r\n--{boundary}\r\nContent-Type: text/html; charset=utf-8\r\n"
            f"\r\n{_wrap_html(html)}\r\n--{boundary}--\r\n"
        ).encode()
    if roll < 0.45:  # notification from a no-reply address
        return (
            f"{trace}\r\nFrom: Calendar <no-reply@{domain}>\r\nSubject: Reminder: "
            f"{rng.choice(WORDS)} {rng.choice(WORDS)} at 10:00\r\n{common}Content-Type: "
            f"text/plain; charset=utf-8\r\n\r\n{pools.text(rng.randint(300, 1500))}\r\n"
        ).encode()
    thread = ""
    subject = f"{rng.choice(WORDS).title()} {rng.choice(WORDS)} {rng.choice(WORDS)}"
    if rng.random() < 0.4:  # a thread among colleagues (references point at other mail)
        other = _mid(pools, domain)
        thread = f"In-Reply-To: {other}\r\nReferences: {_mid(pools, domain)} {other}\r\n"
        subject = "Re: " + subject
    body = pools.text(rng.randint(600, 6_000))
    head = f"{trace}\r\nFrom: {name} <{addr}>\r\nSubject: {subject}\r\n{common}{thread}"
    if roll < 0.75:  # plain personal mail
        return (
            f"{head}Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: "
            f"8bit\r\n\r\n{body}\r\n\r\n-- \r\n{name}\r\n"
        ).encode()
    blob = rng.choice(pools.blobs)  # with an attachment
    kind, ext = rng.choice(
        (("application/pdf", "pdf"), ("image/png", "png"), ("application/vnd.ms-excel", "xls"))
    )
    boundary = f"mix{index}"
    return (
        f'{head}Content-Type: multipart/mixed; boundary="{boundary}"\r\n\r\n--{boundary}'
        f"\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body[:1500]}\r\n--{boundary}\r\n"
        f'Content-Type: {kind}; name="file{index}.{ext}"\r\nContent-Disposition: attachment;'
        f' filename="file{index}.{ext}"\r\nContent-Transfer-Encoding: base64\r\n\r\n'
        f"{_b64(blob)}\r\n--{boundary}--\r\n"
    ).encode()


def _wrap_html(html: str) -> str:
    return "\r\n".join(html[i : i + 900] for i in range(0, len(html), 900))


# --------------------------------------------------------------------------- replies


@dataclass(frozen=True)
class Sent:
    """One ledger message, as needed to answer it."""

    message_id: str
    subject: str
    to_addr: str
    name: str
    organization: str
    sent_at: datetime


def reply_message(pools: Pools, sent: Sent, index: int, when: datetime) -> bytes:
    """A partner's answer to one of outreach's messages, in the style of a common client."""
    rng = pools.rng
    domain = sent.to_addr.rpartition("@")[2]
    answer = rng.choice(ANSWERS)
    signature = f"{sent.name}\r\nPartnerships lead, {sent.organization}\r\n+1 555 0100 {index % 97}"
    original = f"Hello {sent.name},\r\nHow has {sent.organization} changed?"
    quoted = "\r\n".join("> " + line for line in original.split("\r\n"))
    sent_date = format_datetime(sent.sent_at)
    head = (
        f"{trace_headers(pools, domain, when)}\r\nFrom: {sent.name} <{sent.to_addr}>\r\n"
        f"To: Coordinator <coordinator@district.test>\r\nSubject: Re: {sent.subject}\r\n"
        f"Date: {format_datetime(when)}\r\nMessage-ID: {_mid(pools, domain)}\r\n"
        f"In-Reply-To: {sent.message_id}\r\nReferences: {sent.message_id}\r\n"
        "MIME-Version: 1.0\r\n"
    )
    style = rng.random()
    if style < 0.30:  # Gmail, plain text
        body = (
            f"{answer}\r\n\r\n{signature}\r\n\r\nOn {sent_date} Coordinator "
            f"<coordinator@district.test> wrote:\r\n{quoted}\r\n"
        )
        return (head + "Content-Type: text/plain; charset=UTF-8\r\n\r\n" + body).encode()
    if style < 0.60:  # Gmail, multipart/alternative with the quote in a gmail_quote div
        boundary = f"000000000000{index:012x}"
        plain = (
            f"{answer}\r\n\r\n{signature}\r\n\r\nOn {sent_date} Coordinator "
            f"<coordinator@district.test> wrote:\r\n{quoted}\r\n"
        )
        html_signature = signature.replace("\r\n", "<br>")
        html_original = original.replace("\r\n", "<br>")
        html = (
            f'<div dir="ltr"><div>{answer}</div><br><div>{html_signature}</div></div>'
            f'<br><div class="gmail_quote"><div '
            f'dir="ltr" class="gmail_attr">On {sent_date} Coordinator &lt;coordinator@'
            f'district.test&gt; wrote:<br></div><blockquote class="gmail_quote" style="'
            f'margin:0px 0px 0px 0.8ex;border-left:1px solid rgb(204,204,204)">'
            f"{html_original}</blockquote></div>"
        )
        return (
            head + f'Content-Type: multipart/alternative; boundary="{boundary}"\r\n\r\n'
            f'--{boundary}\r\nContent-Type: text/plain; charset="UTF-8"\r\n\r\n{plain}\r\n'
            f'--{boundary}\r\nContent-Type: text/html; charset="UTF-8"\r\n\r\n{html}\r\n'
            f"--{boundary}--\r\n"
        ).encode()
    if style < 0.80:  # Outlook: header block above the unquoted original
        body = (
            f"{answer}\r\n\r\nBest regards,\r\n{signature}\r\n\r\n"
            "________________________________\r\nFrom: Coordinator "
            f"<coordinator@district.test>\r\nSent: {sent.sent_at:%A, %B %d, %Y %I:%M %p}\r\n"
            f"To: {sent.name} <{sent.to_addr}>\r\nSubject: {sent.subject}\r\n\r\n"
            f"{original}\r\n"
        )
        return (
            head + 'Content-Type: text/plain; charset="iso-8859-1"\r\n'
            "Content-Transfer-Encoding: quoted-printable\r\n\r\n" + body
        ).encode()
    if style < 0.90:  # Apple Mail from a phone
        on = f"{sent.sent_at:%b %d, %Y, at %H:%M}"
        body = (
            f"{answer}\r\n\r\nSent from my iPhone\r\n\r\n> On {on}, Coordinator "
            f"<coordinator@district.test> wrote:\r\n> \r\n{quoted}\r\n"
        )
        return (
            head + "Content-Type: text/plain; charset=utf-8\r\n"
            "Content-Transfer-Encoding: 7bit\r\n\r\n" + body
        ).encode()
    # with an attachment (a brochure, a photo)
    boundary = f"mixed{index}"
    blob = rng.choice(pools.blobs)
    body = (
        f"{answer} I attached our brochure.\r\n\r\n{signature}\r\n\r\nOn {sent_date} "
        f"Coordinator <coordinator@district.test> wrote:\r\n{quoted}\r\n"
    )
    return (
        head + f'Content-Type: multipart/mixed; boundary="{boundary}"\r\n\r\n--{boundary}'
        f"\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n--{boundary}\r\n"
        f'Content-Type: application/pdf; name="brochure.pdf"\r\nContent-Disposition: '
        f'attachment; filename="brochure.pdf"\r\nContent-Transfer-Encoding: base64\r\n\r\n'
        f"{_b64(blob)}\r\n--{boundary}--\r\n"
    ).encode()


# --------------------------------------------------------------------------- setup


class Bench:
    """The stack, a template database (roster + ledger) and the two filled mailboxes."""

    def __init__(self, stack: Mailstack, folder: Path) -> None:
        self.stack = stack
        self.folder = folder
        self.template = folder / "template.db"
        self.sent: list[Sent] = []
        os.environ[PASSWORD_ENV] = PASSWORD
        self.logger = logging.getLogger("outreach-bench-ingest")

    def workspace(self, name: str, user: str) -> Workspace:
        ws = Workspace(
            self.folder / name,
            smtp_port=self.stack.smtp_port,
            campaign=CAMPAIGN,
            imap={
                "host": "127.0.0.1",
                "port": self.stack.imap_port,
                "security": "none",
                "username": user,
                "password_env": PASSWORD_ENV,
            },
        )
        ws.logger.setLevel(logging.ERROR)
        return ws

    def build_ledger(self, partners: int) -> None:
        """Roster + one sent check-in per partner, through outreach's own outbox (no SMTP:
        every queued row is recorded as sent)."""
        ws = self.workspace("template", COORDINATOR)
        ws.add_partners(partner_rows(partners))
        sender = Sender(ws.config, ws.campaigns, ws.store, ws.clock, ws.logger)
        report = SendReport()
        sender.queue_due(report)
        assert report.queued == partners, report
        store = ws.store
        with store.write():
            for row in store.all_ledger_rows():  # every row is queued here
                store.mark_sending([row.id], ws.clock())
                store.mark_sent(row, ws.clock(), "250 2.0.0 Ok")
        for row in store.query(
            "SELECT m.message_id, m.subject, m.to_addr, m.sent_at, p.name, p.organization"
            " FROM messages m JOIN partners p ON p.id = m.partner_id ORDER BY m.id"
        ):
            self.sent.append(
                Sent(
                    row["message_id"],
                    row["subject"],
                    row["to_addr"],
                    row["name"],
                    row["organization"],
                    datetime.fromisoformat(row["sent_at"]),
                )
            )
        ws.close()  # the last connection checkpoints the WAL: one self-contained file
        shutil.copyfile(ws.root / "outreach.db", self.template)

    def fill(self, user: str, messages: Iterator[bytes]) -> int:
        count = 0
        with self.stack.imap(user) as client:
            chunk: list[bytes] = []
            for raw in messages:
                chunk.append(raw)
                if len(chunk) == APPEND_CHUNK:
                    client.multiappend("INBOX", chunk)
                    count += len(chunk)
                    chunk = []
            if chunk:
                client.multiappend("INBOX", chunk)
                count += len(chunk)
        return count


def mailbox_a(pools: Pools, sent: list[Sent], total: int, relevant: int) -> Iterator[bytes]:
    """`relevant` replies spread evenly among `total - relevant` unrelated messages."""
    start = datetime(2026, 11, 24, 11, 0, tzinfo=UTC)
    every = total / relevant
    marks = {int(i * every + every / 2) for i in range(relevant)}
    answered = iter(sent[:relevant])
    for index in range(total):
        when = start + timedelta(seconds=20 * index)
        if index in marks:
            yield reply_message(pools, next(answered), index, when)
        else:
            yield unrelated_message(pools, index, when)


def mailbox_b(pools: Pools, sent: list[Sent], count: int) -> Iterator[bytes]:
    start = datetime(2026, 11, 24, 11, 0, tzinfo=UTC)
    for index, item in enumerate(sent[:count]):
        yield reply_message(pools, item, index, start + timedelta(seconds=7 * index))


# --------------------------------------------------------------------------- the two sides


def outreach_read(bench: Bench, user: str, round_no: int) -> tuple[float, ReadReport]:
    ws = bench.workspace(f"read-{user.split('@')[0]}-{round_no}", user)
    shutil.copyfile(bench.template, ws.root / "outreach.db")
    ws.clock.advance(days=1)
    store = Store(ws.root / "outreach.db")
    try:
        reader = Reader(ws.config, ws.campaigns, store, ws.clock, ws.logger)
        report = ReadReport()
        started = time.perf_counter()
        reader.read_all(report)
        elapsed = time.perf_counter() - started
    finally:
        store.close()
        shutil.rmtree(ws.root, ignore_errors=True)
    if report.errors:
        raise SystemExit(f"outreach reported errors: {report.errors[:3]}")
    return elapsed, report


def raw_read(stack: Mailstack, user: str, parse: bool) -> tuple[float, int]:
    """Connect, select read-only, UID SEARCH, UID FETCH BODY.PEEK[] in batches (and parse)."""
    started = time.perf_counter()
    total = 0
    client = stack.imap(user)
    try:
        client.select_folder("INBOX", readonly=True)
        uids = sorted(client.search(["UID", "1:*"]))
        for start in range(0, len(uids), BATCH):
            data = client.fetch(uids[start : start + BATCH], ["BODY.PEEK[]"])
            for item in data.values():
                raw = item[b"BODY[]"]
                total += 1
                if parse:
                    message = email.message_from_bytes(raw, policy=policy.default)
                    body = message.get_body(("plain", "html"))
                    if body is not None:
                        body.get_content()
    finally:
        client.logout()
    return time.perf_counter() - started, total


def compare(
    label: str,
    rounds: int,
    ours: Callable[[int], tuple[float, ReadReport]],
    raw: Callable[[], tuple[float, int]],
    expected: int,
    check: Callable[[ReadReport], None],
) -> float:
    raw()  # warm-up: Dovecot's index and cache files, the page cache
    check(ours(0)[1])
    our_times: list[float] = []
    raw_times: list[float] = []

    def run_ours(round_no: int) -> None:
        elapsed, report = ours(round_no)
        check(report)
        our_times.append(elapsed)

    def run_raw() -> None:
        elapsed, fetched = raw()
        if fetched != expected:
            raise SystemExit(f"raw read got {fetched} of {expected} messages")
        raw_times.append(elapsed)

    for round_no in range(1, rounds + 1):  # alternate which side goes first
        if round_no % 2:
            run_ours(round_no)
            run_raw()
        else:
            run_raw()
            run_ours(round_no)
    ours_best, raw_best = min(our_times), min(raw_times)
    ratio = raw_best / ours_best
    print(
        f"{label}: outreach {ours_best:6.2f} s ({expected / ours_best:6.0f} msg/s)   raw "
        f"{raw_best:6.2f} s ({expected / raw_best:6.0f} msg/s)   ratio {ratio:.2f}",
        flush=True,
    )
    return ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smaller run, under a minute")
    parser.add_argument("--mailbox", type=int, default=None, help="messages in mailbox (a)")
    parser.add_argument("--replies", type=int, default=None, help="messages in mailbox (b)")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--only", choices=("a", "b"), default=None)
    args = parser.parse_args()
    total = args.mailbox or (2_000 if args.quick else 10_000)
    replies = args.replies or (1_000 if args.quick else 5_000)
    rounds = args.rounds or (2 if args.quick else 3)
    relevant = max(1, total // 20)
    folder = Path(tempfile.mkdtemp(prefix="outreach-bench-ingest-"))
    try:
        users = {COORDINATOR: PASSWORD, REPLIES: PASSWORD}
        with Mailstack(users=users) as stack:
            bench = Bench(stack, folder)
            started = time.perf_counter()
            bench.build_ledger(max(relevant, replies))
            pools = Pools.make()
            size_a = size_b = 0
            if args.only != "b":
                size_a = bench.fill(COORDINATOR, mailbox_a(pools, bench.sent, total, relevant))
            if args.only != "a":
                size_b = bench.fill(REPLIES, mailbox_b(pools, bench.sent, replies))
            print(
                f"setup: {len(bench.sent)} partners in the ledger, mailbox (a) {size_a} "
                f"messages ({relevant} concern outreach), mailbox (b) {size_b} replies; "
                f"{time.perf_counter() - started:.1f} s",
                flush=True,
            )
            ratios = []

            def replies_only(expected: int) -> Callable[[ReadReport], None]:
                def check(report: ReadReport) -> None:
                    if report.recorded != expected or report.kinds.get("reply") != expected:
                        raise SystemExit(
                            f"outreach recorded {report.recorded} of {expected} "
                            f"replies: {report.kinds}"
                        )

                return check

            if args.only != "b":
                ratios.append(
                    compare(
                        f"(a) {total} messages, {relevant} ours",
                        rounds,
                        lambda r: outreach_read(bench, COORDINATOR, r),
                        lambda: raw_read(stack, COORDINATOR, parse=False),
                        total,
                        replies_only(relevant),
                    )
                )
            if args.only != "a":
                ratios.append(
                    compare(
                        f"(b) {replies} replies, parsed",
                        rounds,
                        lambda r: outreach_read(bench, REPLIES, r),
                        lambda: raw_read(stack, REPLIES, parse=True),
                        replies,
                        replies_only(replies),
                    )
                )
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(f"ratio: {min(ratios):.2f}")


if __name__ == "__main__":
    run(main)
