"""Tests for the pure inbound-mail classifier (outreach.core.inbound.classify and its helpers).

Fixtures in tests/fixtures/mail are the project's own messages, modelled on real client
and MTA output; expected.json is the table they are checked against.
"""

from __future__ import annotations

import ast
import json
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from outreach.core.inbound.autoreply import find_return_date
from outreach.core.inbound.bodytext import html_to_text
from outreach.core.inbound.bounces import parse_dsn_fields
from outreach.core.inbound.classify import KINDS, Classification, classify_message
from outreach.core.inbound.mailparse import parse_msgids, read_headers
from outreach.core.inbound.replytext import extract_reply

MAIL = Path(__file__).parent / "fixtures" / "mail"
EXPECTED: dict[str, dict[str, object]] = json.loads((MAIL / "expected.json").read_text())
UNSUBSCRIBE = ["unsubscribe@district.example"]
PURE_MODULES = ["classify", "mailparse", "bounces", "autoreply", "replytext"]
FORBIDDEN = {"sqlite3", "sqlite_utils", "imapclient", "aiosmtplib", "click", "socket"}


def classify_fixture(name: str) -> Classification:
    return classify_message((MAIL / name).read_bytes(), unsubscribe_addresses=UNSUBSCRIBE)


# --------------------------------------------------------------------------- table


def test_every_fixture_has_an_expectation() -> None:
    assert sorted(p.name for p in MAIL.glob("*.eml")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_table(name: str) -> None:
    result = classify_fixture(name)
    expected = EXPECTED[name]
    assert result.kind == expected["kind"], result.reasons
    assert result.reasons, "every decision carries a reason"
    for key, want in expected.items():
        got = getattr(result, key)
        if isinstance(got, tuple):
            got = list(got)
        if isinstance(got, date):
            got = got.isoformat()
        assert got == want, f"{key}: {result.reasons}"


# --------------------------------------------------------------------------- holdout-like

HOLDOUT = MAIL / "holdout_like"
HOLDOUT_LABELS: list[dict[str, object]] = [
    json.loads(line) for line in (HOLDOUT / "labels.jsonl").read_text().splitlines() if line
]


def test_every_holdout_like_fixture_is_labelled() -> None:
    assert sorted(p.name for p in HOLDOUT.glob("*.eml")) == sorted(
        str(label["file"]) for label in HOLDOUT_LABELS
    )


@pytest.mark.parametrize("label", HOLDOUT_LABELS, ids=lambda label: str(label["file"]))
def test_holdout_like_fixture(label: dict[str, object]) -> None:
    """Messages modelled on many more clients, MTAs and languages than the dev corpus.

    Same label shape as the corpus (``scripts/measure_corpus.py`` reads the folder too);
    classified without configured unsubscribe addresses, like the measurement.
    """
    result = classify_message((HOLDOUT / str(label["file"])).read_bytes())
    assert result.kind == label["kind"], result.reasons
    assert result.reasons
    if label.get("bounced") is not None:
        assert sorted(result.bounced_recipients) == sorted(label["bounced"]), result.reasons  # type: ignore[call-overload]
    if label.get("hard") is not None:
        assert result.hard == label["hard"], (result.status, result.diagnostic)
    if "return_date" in label:
        got = result.return_date.isoformat() if result.return_date else None
        assert got == label["return_date"]
    if "contact_change" in label:
        assert result.contact_change == label["contact_change"], result.reasons
    if label.get("reply_text") is not None:
        # these labels keep device lines, like some corpus sources: compare text + signature
        got = f"{result.text or ''}\n{result.signature or ''}"
        assert " ".join(got.split()) == " ".join(str(label["reply_text"]).split())


def test_quoted_unsubscribe_footer_is_still_a_reply() -> None:
    result = classify_fixture("reply_quoted_unsubscribe_footer.eml")
    assert result.kind == "reply"
    assert "unsubscribe" in (result.full_text or "")
    assert "unsubscribe" not in (result.text or "")


def test_unsubscribe_address_only_counts_when_configured() -> None:
    raw = (MAIL / "to_unsubscribe_address.eml").read_bytes()
    assert classify_message(raw, unsubscribe_addresses=["UNSUBSCRIBE@district.example"]).kind == (
        "unsubscribe"
    )
    assert classify_message(raw).kind == "reply"


def test_four_x_status_is_soft_even_when_action_failed() -> None:
    result = classify_fixture("bounce_exchange_soft.eml")
    assert (result.kind, result.hard, result.status) == ("bounce", False, "4.2.2")


def test_bounce_points_at_the_message_we_sent() -> None:
    result = classify_fixture("bounce_postfix_dsn.eml")
    assert result.original_message_ids == ("checkin-2026-11.30.alderfab@district.example",)
    assert result.diagnostic and "User" in result.diagnostic


# --------------------------------------------------------------------------- JSON shape


def test_to_json_shape() -> None:
    data = classify_fixture("bounce_postfix_dsn.eml").to_json("x.eml")
    assert set(data) == {
        "file", "kind", "bounced_recipients", "hard", "return_date", "text", "reasons",
        "status", "diagnostic", "contact_change", "message_id", "in_reply_to", "from", "subject",
        "signature",
    }  # fmt: skip
    assert data["file"] == "x.eml"
    assert data["bounced_recipients"] == ["t.nguyen@alderfab.example"]
    assert json.loads(json.dumps(data)) == data
    auto = classify_fixture("auto_reply_en.eml").to_json(None)
    assert auto["return_date"] == "2026-12-07"


# --------------------------------------------------------------------------- never raises


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.binary(max_size=3000))
def test_arbitrary_bytes_never_raise(raw: bytes) -> None:
    result = classify_message(raw)
    assert result.kind in KINDS
    assert result.kind != "error", result.reasons


FIXTURE_BYTES = [p.read_bytes() for p in sorted(MAIL.glob("*.eml"))]


@st.composite
def mutated_fixture(draw: st.DrawFn) -> bytes:
    """A fixture with random bytes replaced, inserted or cut away."""
    data = bytearray(draw(st.sampled_from(FIXTURE_BYTES)))
    for _ in range(draw(st.integers(1, 8))):
        action = draw(st.sampled_from(["replace", "insert", "truncate", "delete"]))
        where = draw(st.integers(0, max(0, len(data) - 1)))
        if action == "replace" and data:
            data[where] = draw(st.integers(0, 255))
        elif action == "insert":
            data[where:where] = draw(st.binary(min_size=1, max_size=40))
        elif action == "truncate":
            del data[where:]
        elif data:
            del data[where : where + draw(st.integers(1, 200))]
    return bytes(data)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(mutated_fixture())
def test_mutated_fixtures_never_raise(raw: bytes) -> None:
    result = classify_message(raw, unsubscribe_addresses=UNSUBSCRIBE, today=date(2026, 12, 1))
    assert result.kind in KINDS
    assert result.kind != "error", result.reasons
    result.to_json("m.eml")


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\r\n\r\n",
        b"Content-Type: multipart/mixed; boundary=x\n\n--x\n",
        b"Content-Type: text/plain; charset=x-unknown-9\n\n\xff\xfe caf\xe9",
        b'Content-Type: text/plain; charset=""\n\nhello',
        b"From: =?utf-8?q?broken\nSubject: =?bogus?B?###?=\nDate: yesterday\n\nhi",
        b"Content-Type: message/delivery-status\n\nFinal-Recipient: rfc822;\nAction:\n",
        b"Message-ID: <<<>>>\nReferences: < > <a@b>\nIn-Reply-To: garbage\n\nx",
    ],
)
def test_broken_input_is_classified_not_raised(raw: bytes) -> None:
    assert classify_message(raw).kind in KINDS


def test_unexpected_failure_becomes_error_kind() -> None:
    result = classify_message(None)  # type: ignore[arg-type]
    assert result.kind == "error"
    assert result.reasons and "classifier failed" in result.reasons[0]


# --------------------------------------------------------------------------- purity


@pytest.mark.parametrize("module", PURE_MODULES)
def test_pure_modules_import_no_io_libraries(module: str) -> None:
    path = Path(__file__).parent.parent / "outreach" / "core" / "inbound" / module
    sources = sorted(path.glob("*.py")) if path.is_dir() else [path.with_suffix(".py")]
    imported: set[str] = set()
    for node in (n for source in sources for n in ast.walk(ast.parse(source.read_text()))):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert not imported & FORBIDDEN


# --------------------------------------------------------------------------- headers


def test_read_headers_normalises_ids_and_addresses() -> None:
    raw = (
        b'From: "Reyes, Dana" <Dana.Reyes@BrightWorks.example>\r\n'
        b"To: a@x.example, B <B@Y.example>\r\n"
        b"Subject: =?utf-8?q?R=C3=A9ponse?=\r\n"
        b"Date: Tue, 1 Dec 2026 09:19:52 -0500\r\n"
        b"Message-ID:  <Abc.123@Mail.example> \r\n"
        b"In-Reply-To: <orig-1@district.example>\r\n"
        b"References: <orig-0@district.example>\r\n <orig-1@district.example>\r\n"
        b"Auto-Submitted: auto-replied\r\n"
        b"Return-Path: <>\r\n\r\n"
    )
    headers = read_headers(raw)
    assert headers.message_id == "Abc.123@Mail.example"
    assert headers.in_reply_to == "orig-1@district.example"
    assert headers.references == ("orig-0@district.example", "orig-1@district.example")
    assert headers.from_addr == "dana.reyes@brightworks.example"
    assert headers.from_name == "Reyes, Dana"
    assert headers.to_addrs == ("a@x.example", "b@y.example")
    assert headers.subject == "Réponse"
    assert headers.date == datetime(2026, 12, 1, 14, 19, 52, tzinfo=UTC)
    assert headers.auto_submitted == "auto-replied"
    assert headers.return_path == "<>"


def test_read_headers_never_raises_on_garbage() -> None:
    assert read_headers(b"\x00\xff:::\n\n").message_id is None


def test_parse_msgids_accepts_bare_ids() -> None:
    assert parse_msgids("orig@x.example") == ("orig@x.example",)
    assert parse_msgids("<a@b> <a@b> <c@d>") == ("a@b", "c@d")


# --------------------------------------------------------------------------- pieces


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("I will be returning on Monday, December 7th.", date(2026, 12, 7)),
        ("I am back on 12/07.", date(2026, 12, 7)),
        ("I am away until 7 December 2026.", date(2026, 12, 7)),
        ("Ich bin bis zum 07.12.2026 nicht im Büro.", date(2026, 12, 7)),
        ("Je suis absent jusqu'au 7 décembre.", date(2026, 12, 7)),
        ("Estoy fuera hasta el 7 de diciembre.", date(2026, 12, 7)),
        ("Out of office 2026-12-01 to 2026-12-07.", date(2026, 12, 7)),
        ("On vacation from December 1 through December 6.", date(2026, 12, 7)),
        ("Vom 30.11. bis 04.12. im Urlaub, ab 07.12. wieder erreichbar.", date(2026, 12, 7)),
        ("I am out of the office until Monday.", date(2026, 12, 7)),
        ("Back on January 4th.", date(2027, 1, 4)),
        ("I am out of the office and will reply when I return.", None),
    ],
)
def test_return_dates(text: str, want: date | None) -> None:
    assert find_return_date(text, date(2026, 11, 30)) == want


def test_dsn_fields_per_recipient() -> None:
    text = (
        "Reporting-MTA: dns; mx.example\n\n"
        "Final-Recipient: rfc822; a@x.example\nAction: failed\nStatus: 5.1.1\n\n"
        "Final-Recipient: rfc822; b@x.example\nAction: delayed\nStatus: 4.4.1\n"
    )
    failures = parse_dsn_fields(text)
    assert [(f.address, f.hard) for f in failures] == [
        ("a@x.example", True),
        ("b@x.example", False),
    ]


@pytest.mark.parametrize(
    ("field", "want"),
    [
        ("Final-Recipient: rfc822; <Dana@BrightWorks.example>", "dana@brightworks.example"),
        ("Final-Recipient: rfc822; tomas@riverside-welding", "tomas@riverside-welding"),
        ("Final-Recipient: RFC822; recipient@#example.net", "recipient@#example.net"),
        ("Final-Recipient: utf-8; jörg@müller-bau.example", "jörg@müller-bau.example"),
        ("Final-Recipient: rfc822; @relay.example:ana@shop.example", "ana@shop.example"),
        ("Original-Recipient: rfc822;hr+2Binterns@northwind.example\n"
         "Final-Recipient: rfc822;hr+interns@northwind.example", "hr+interns@northwind.example"),
        ("Final-Recipient: rfc822; ana+2Bnews@shop.example", "ana+2bnews@shop.example"),
    ],
)  # fmt: skip
def test_dsn_recipient_as_the_mta_wrote_it(field: str, want: str) -> None:
    """A typo'd domain, another script, a source route; xtext only in Original-Recipient."""
    failures = parse_dsn_fields(f"{field}\nAction: failed\nStatus: 5.1.1\n")
    assert [f.address for f in failures] == [want]


def test_html_to_text_marks_blockquotes() -> None:
    text = html_to_text("<div>Hi<br>there</div><blockquote><p>old</p></blockquote>")
    assert text.splitlines()[:2] == ["Hi", "there"]
    assert "> old" in text


@pytest.mark.parametrize(
    ("body", "want"),
    [
        ("Yes.\n\nOn Mon, Nov 30, 2026 at 8:02 AM Sam <s@x.example> wrote:\n> Q?\n", "Yes."),
        ("On Mon, Nov 30, 2026, Sam wrote:\n> Q?\n\nDone.\n", "Done."),
        ("Ok.\n\n-----Original Message-----\nFrom: Sam\nSent: Monday\nSubject: Q\n\nQ?", "Ok."),
        ("Gerne.\n\nVon: Sam <s@x.example>\nGesendet: Montag\nAn: Jo\nBetreff: Q\n\nQ?", "Gerne."),
        ("Oui.\n\nLe lun. 30 nov. 2026 à 08:02, Sam <s@x.example> a écrit :\n> Q ?\n", "Oui."),
    ],
)  # fmt: skip
def test_extract_reply(body: str, want: str) -> None:
    assert extract_reply(body) == want


QUOTED = "> Hello,\n> Could you host interns?\n"


@pytest.mark.parametrize(
    ("body", "want"),
    [
        ("Yes.\n\n2014-03-20 8:48 GMT+01:00 Sam Rivera <s@x.example>:\n\n" + QUOTED, "Yes."),
        ("Yes.\n\nEl 11/07/2026 06:13 p.m., Sam escribió:\n" + QUOTED, "Yes."),
        ("Yes.\n\nW dniu 30 listopada 2026 14:02 użytkownik Sam <s@x.example> napisał:\n" + QUOTED, "Yes."),  # noqa: E501
        ("Yes.\n\nOp 30-11-26 14:02, Sam schreef:\n" + QUOTED, "Yes."),
        ("Yes.\n\nOp ma 30 nov. 2026 om 14:02 schreef Sam <\ns@x.example>:\n\n" + QUOTED, "Yes."),
        ("Yes.\n\n---- On Mon, 30 Nov 2026 08:02 Sam <s@x.example> wrote ----\n\nHello", "Yes."),
        ("Yes.\n\n----- Mail original -----\nDe: Sam <s@x.example>\nÀ: a@b.example\nEnvoyé: Lundi\nObjet: y\n\nHello", "Yes."),  # noqa: E501
        ("Yes.\n\n-------- Message original --------\nSujet : y\nDate : Mon\nDe : Sam\nPour : a@b\n\nHello", "Yes."),  # noqa: E501
        ("Yes.\n\n\n\nSam Rivera <s@x.example>\nSent by: o@x.example\n11/30/2026 08:02 AM\n\nTo\na@b\ncc\n\nSubject\ny\n\nHello", "Yes."),  # noqa: E501
        ("Dates:\nFrom: 1 March\nTo: 30 April\n\nLi\n\nOn Mon, Nov 30, 2026, Sam <s@x.example> wrote:\n" + QUOTED, "Dates:\nFrom: 1 March\nTo: 30 April\n\nLi"),  # noqa: E501
    ],
)  # fmt: skip
def test_extract_reply_more_clients(body: str, want: str) -> None:
    assert " ".join(extract_reply(body).split()) == " ".join(want.split())


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("Sarò fuori ufficio fino al 4 dicembre compreso, rientro lunedì 7 dicembre.", date(2026, 12, 7)),  # noqa: E501
        ("Estarei fora até 04/12/2026, retornando em 07/12/2026.", date(2026, 12, 7)),
        ("Ik ben tot en met vrijdag 4 december afwezig.", date(2026, 12, 5)),
        ("Ich bin ab 30.11.2026 nicht im Büro. Ich kehre zurück am 07.12.2026.", date(2026, 12, 7)),
        ("I'm out of the office from December 1.", None),
        ("Back Tuesday (12/8).", date(2026, 12, 8)),
        ("I'll be out 2 days, 5 out of 10 tasks done.", None),
    ],
)  # fmt: skip
def test_return_dates_more_languages(text: str, want: date | None) -> None:
    assert find_return_date(text, date(2026, 11, 30)) == want
