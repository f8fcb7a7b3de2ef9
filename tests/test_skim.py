"""The header skim (reading's fast path) never decides otherwise than the email parser would.

`Reader.candidates` trusts `skim_headers` to settle most of a mailbox without the email
package: "certainly not ours" must mean `worth_downloading` would say no; "certainly ours"
must mean it would say yes, with the same dedupe key. Checked here on generated header blocks
mixing plain and tricky forms (8-bit names, encoded words, comments, groups, folding,
control characters, bare LF), each judged both ways.
"""

from __future__ import annotations

import random

import pytest

from outreach.core.inbound.identity import message_key
from outreach.core.inbound.mailparse import read_headers
from outreach.core.inbound.match import from_partner, header_ids, may_concern, worth_downloading
from outreach.core.inbound.skim import skim_headers

PARTNERS = {"ana@clinic.example", "bo@builders.example", "cy@it.example"}
DOMAINS = {"clinic.example"}
OURS = {"ours-1@district.test", "ours-2@district.test"}
UNSUBSCRIBE = ("unsubscribe@district.test",)

SENDERS = [
    "ana@clinic.example",
    "Ana Ruiz <ana@clinic.example>",
    '"Ruiz, Ana" <ana@clinic.example>',
    "ANA@Clinic.Example",
    "Ana <ana@clinic.example> (work)",
    "nurse@clinic.example",
    "bo@builders.example",
    "Bö Builder <bo@builders.example>",
    "Jürgen Müller <bo@builders.example>",
    "=?utf-8?q?B=C3=B6?= <bo@builders.example>",
    "MAILER-DAEMON@mx.example",
    "Mail Delivery System <mailer-daemon@mx.example>",
    "postmaster@mx.example",
    "news@shop.example",
    "Newsletter <news@shop.example>",
    "José García <jg@other.example>",
    "Zoë <zoë@x.example>",
    "undisclosed-recipients:;",
    "a@b.example, c@d.example",
    "<cy@it.example>",
    "cy@it.example (Cy)",
    '"cy@it.example" <evil@x.example>',
    "Cy <cy@it.example",
    "",
    "\x85odd <cy@it.example>",
    '"Müller, Jö" <bo@builders.example>',
    "Jö, Ana <ana@clinic.example>",
    "Jö (ana@clinic.example) <nurse@clinic.example>",
    "Jö@clinic.example <ana@clinic.example>",
    "Jö: Ana <ana@clinic.example>;",
    "Jö.Ruiz <ana@clinic.example>",
    "Jö [work] <ana@clinic.example>",
    "Jö\\ <ana@clinic.example>",
]
SUBJECTS = [
    "Re: Check-in",
    "Quarterly newsletter",
    "Undelivered Mail Returned to Sender",
    "Delivery Status Notification (Failure)",
    "Out of office",
    "=?utf-8?q?R=C3=A9ponse?=",
    "Réponse automatique",
    "Re: Check-in\x0b(vt)",
    "",
]
IDS = [
    "<ours-1@district.test>",
    "<other@x.example>",
    "ours-2@district.test",
    "<ours-2@district.test> <x@y>",
    "<OURS-1@district.test>",
    "<broken",
]
TOS = [
    "coordinator@district.test",
    "Unsub <unsubscribe@district.test>",
    "unsubscribe@district.test (list)",
    '"unsubscribe@district.test" <x@y.example>',
    "Coördinator <coordinator@district.test>",
    "=?utf-8?q?U?= <unsubscribe@district.test>",
]
OTHER = [
    "Received: from mx.example by mx2.example; Mon, 30 Nov 2026 08:00:00 +0000",
    "Received: from \xe9t\xe9 (8-bit) by mx.example",
    "X-Mailer: Thunderbird",
    "DKIM-Signature: v=1; a=rsa-sha256; d=example; b=abc\r\n\tdef",
    "X-Odd: form\x0cfeed",
    "List-Id: <news.shop.example>",
]


def random_block(rnd: random.Random) -> bytes:
    lines = []
    if rnd.random() < 0.9:
        lines.append(f"From: {rnd.choice(SENDERS)}")
    if rnd.random() < 0.05:
        lines.append(f"From: {rnd.choice(SENDERS)}")
    lines.append(f"To: {rnd.choice(TOS)}")
    if rnd.random() < 0.3:
        lines.append(f"Cc: {rnd.choice(TOS)}")
    if rnd.random() < 0.9:
        lines.append(f"Subject: {rnd.choice(SUBJECTS)}")
    if rnd.random() < 0.6:
        lines.append(f"In-Reply-To: {rnd.choice(IDS)}")
    if rnd.random() < 0.4:
        lines.append("References: " + " ".join(rnd.sample(IDS, 2)))
    if rnd.random() < 0.3:
        lines.append(f"Return-Path: {rnd.choice(['<>', '<bo@builders.example>', ''])}")
    if rnd.random() < 0.2:
        lines.append(
            "Content-Type: "
            + rnd.choice(
                [
                    "multipart/report; report-type=delivery-status; boundary=x",
                    "text/plain; charset=utf-8",
                    'multipart/mixed; boundary="r"',
                ]
            )
        )
    if rnd.random() < 0.85:
        lines.append("Message-ID: " + rnd.choice(["<m1@x.example>", "<m2@y>", "m3@z", ""]))
    lines += rnd.sample(OTHER, rnd.randint(0, 3))
    rnd.shuffle(lines)
    if rnd.random() < 0.2:  # fold one line
        index = rnd.randrange(len(lines))
        lines[index] = lines[index].replace(" ", "\r\n ", 1)
    text = "\r\n".join(lines) + "\r\n\r\n"
    if rnd.random() < 0.05:
        text = text.replace("\r\n", "\n", 1)
    encoding = "latin-1" if rnd.random() < 0.1 and text.isascii() is False else "utf-8"
    return text.encode(encoding, errors="replace")


@pytest.mark.parametrize("seed", range(12))
def test_the_skim_never_decides_otherwise_than_the_parser(seed: int) -> None:
    rnd = random.Random(seed)
    settled = eight_bit = 0
    for _ in range(1500):
        block = random_block(rnd)
        skim = skim_headers(block)
        if skim is None:
            continue  # the reader parses this one: nothing to compare
        settled += 1
        eight_bit += not block.isascii()
        parsed = read_headers(block)
        wanted = worth_downloading(parsed, OURS, PARTNERS, DOMAINS, UNSUBSCRIBE)
        where = block.decode("utf-8", "replace")
        assert skim.from_addr == parsed.from_addr, where
        assert header_ids(parsed) <= skim.ids, where
        if skim.message_id_known:
            assert skim.message_id == parsed.message_id, where
            key = message_key(skim.message_id, block)
            assert key == message_key(parsed.message_id, block), where
        if skim.message_id_known and from_partner(skim, PARTNERS, DOMAINS):
            assert wanted, where
        elif not may_concern(skim, OURS, PARTNERS, DOMAINS, UNSUBSCRIBE):
            assert not wanted, where
    assert settled > 200, "the generator should produce plenty of plain blocks"
    assert eight_bit > 20, "and 8-bit ones the skim settles (raw UTF-8 display names)"
