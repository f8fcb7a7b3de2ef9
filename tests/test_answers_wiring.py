"""Answers per question end to end (issue 20): replies read over IMAP (pymap) from partners
who answer inline, numbered on top or in prose; their answers stored with each reply and
shown in `replies --json`, `outreach answers`, the replies export, the HTML report (checked
in headless Chromium), the review queue and the digest; corrected with `replies answer`."""

from __future__ import annotations

import csv
import io
import json
import textwrap
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import SMTP, default
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Any

import pytest
from helpers import assert_input_error, old_database_with_a_reply
from logbook import sent_to
from test_report import parse, run_chromium
from workspace import ALWAYS_OPEN, Workspace

QUESTIONS = """
[[questions]]
id = "changes"
text = "How has your workplace changed this year?"

[[questions]]
id = "lasting"
text = "Do you see any of those changes lasting?"

[[questions]]
id = "help"
text = "Is there anything we can do to help?"
keywords = ["help", "could use", "need", "intern", "hire", "speaker"]
"""
STEPS = """
[[steps]]
template = "hello"
subject = "Check-in for {{ partner.organization }}"

[[steps]]
template = "nudge"
after = "2d"
"""
TEMPLATE = """Hello {{ partner.name }},

We are checking in with our industry partners and would love to hear from you:

{% for q in questions %}{{ q.number }}. {{ q.text }}
{% endfor %}
Thank you,
The coordinator
"""
PEOPLE = [
    {"email": "ana@inline.test", "name": "Ana Ruiz", "organization": "Inline Works"},
    {"email": "ben@numbers.test", "name": "Ben Ode", "organization": "Numbered Ltd"},
    {"email": "cy@prose.test", "name": "Cy Park", "organization": "Prose & Sons"},
    {"email": "dee@silent.test", "name": "Dee Quiet", "organization": "Silent Co"},
]
ANA = {
    1: "We went hybrid: two shifts now, and the front desk is remote.",
    2: "Yes, the second shift is here to stay.",
    3: "We could use two interns in March.",
}
BEN = "1. More automation on the line.\n2. Probably, yes.\n3. No, thanks, we're all set."
CY = (
    "Our workplace changed a lot <b>this year</b> <script>alert(1)</script>.\n\n"
    "A speaker for our apprentices would help a lot."
)


def inline_reply(raw: bytes, answers: dict[int, str], *, when: Any) -> bytes:
    """Thunderbird/Gmail style answering inline: the whole message quoted, the partner's
    answer below each numbered question (a blank line around it)."""
    original = BytesParser(policy=default).parsebytes(raw)
    assert isinstance(original, EmailMessage)
    body = original.get_body(("plain",))
    assert body is not None
    lines: list[str] = []
    for line in body.get_content().splitlines():
        lines.append(f"> {line}".rstrip())
        number = line.split(".", 1)[0]
        if number.isdigit() and int(number) in answers:
            lines += ["", answers[int(number)], ""]
    message = EmailMessage(policy=SMTP)
    message["From"] = str(original["To"])
    message["To"] = str(original["From"])
    message["Subject"] = f"Re: {original['Subject']}"
    message["Date"] = format_datetime(when)
    message["Message-ID"] = make_msgid(domain="inline.test")
    message["In-Reply-To"] = str(original["Message-ID"])
    message["References"] = str(original["Message-ID"])
    wrote = f"On {original['Date']}, {original['From']} wrote:"
    message.set_content(f"{wrote}\n" + "\n".join(lines) + "\n\n-- \nAna Ruiz\nInline Works\n")
    return message.as_bytes()


@pytest.fixture
def answered(ws: Workspace, smtp_server: Any, imap_server: Any) -> dict[str, int]:
    """Four partners reached; Ana answers inline, Ben numbered on top, Cy in prose, Dee
    never. Returns each partner's reply id."""
    from outreach.testing import partner_mail

    (ws.root / "campaigns" / "checkin.toml").write_text(ALWAYS_OPEN + STEPS + QUESTIONS)
    (ws.root / "templates" / "hello.txt.j2").write_text(TEMPLATE)
    ws.add_partners(PEOPLE)
    worker = ws.worker()
    _, sent = worker.cycle()
    assert sent.sent == len(PEOPLE)
    ws.clock.advance(hours=3)
    when = ws.clock()
    imap_server.append(inline_reply(sent_to(smtp_server, PEOPLE[0]["email"]), ANA, when=when))
    imap_server.append(partner_mail.reply(sent_to(smtp_server, PEOPLE[1]["email"]), BEN, when=when))
    imap_server.append(partner_mail.reply(sent_to(smtp_server, PEOPLE[2]["email"]), CY, when=when))
    read, _ = worker.cycle()
    assert read.recorded == 3, read
    rows = json.loads(ws.cli("replies", "--json").stdout)
    return {row["partner"]: row["id"] for row in rows}


def _replies(ws: Workspace) -> dict[str, dict[str, Any]]:
    result = ws.cli("replies", "--json")
    assert result.exit_code == 0, result.output
    return {row["partner"]: row for row in json.loads(result.stdout)}


def test_each_inline_answer_is_stored_under_its_question(
    ws: Workspace, answered: dict[str, int]
) -> None:
    rows = _replies(ws)
    assert rows["ana@inline.test"]["answers"] == {
        "changes": ANA[1],
        "lasting": ANA[2],
        "help": ANA[3],
        "other": None,
    }
    assert rows["ana@inline.test"]["signature"].endswith("Ana Ruiz\nInline Works")
    assert rows["ben@numbers.test"]["answers"] == {
        "changes": "More automation on the line.",
        "lasting": "Probably, yes.",
        "help": "No, thanks, we're all set.",
        "other": None,
    }
    cy = rows["cy@prose.test"]["answers"]
    assert (
        cy["changes"] == "Our workplace changed a lot <b>this year</b> <script>alert(1)</script>."
    )
    assert cy["help"] == "A speaker for our apprentices would help a lot."
    assert [r["asks_help"] for r in rows.values()].count(True) == 2
    assert not rows["ben@numbers.test"]["asks_help"]  # "No, thanks" to help asks nothing


def test_the_review_queue_puts_open_help_requests_first(
    ws: Workspace, answered: dict[str, int]
) -> None:
    result = ws.cli("replies", "--json")
    order = [row["partner"] for row in json.loads(result.stdout)]
    assert set(order[:2]) == {"ana@inline.test", "cy@prose.test"}
    assert order[2] == "ben@numbers.test"
    text = ws.cli("replies").stdout
    assert text.count("[ASKS FOR HELP]") == 2
    # once handled, a request for help takes its place among the others again
    assert ws.cli("replies", "ack", str(answered["ana@inline.test"])).exit_code == 0
    order = [row["partner"] for row in json.loads(ws.cli("replies", "--json").stdout)]
    assert order[0] == "cy@prose.test"


def test_outreach_answers_lists_every_partners_answer_to_each_question(
    ws: Workspace, answered: dict[str, int]
) -> None:
    result = ws.cli("answers", "checkin")
    assert result.exit_code == 0, result.output
    text = result.stdout
    changes = text.index("1. How has your workplace changed this year?")
    lasting = text.index("2. Do you see any of those changes lasting?")
    helping = text.index("3. Is there anything we can do to help?")
    assert changes < text.index("two shifts now") < lasting
    assert lasting < text.index("the second shift is here to stay") < helping
    assert helping < text.index("two interns in March") < text.index("Asked for help (2):")
    assert "Dee Quiet" not in text  # never answered

    rows = json.loads(ws.cli("answers", "checkin", "--format", "json").stdout)
    got = {(r["question"], r["partner"]): r["answer"] for r in rows}
    assert got[("lasting", "ana@inline.test")] == ANA[2]
    assert got[("changes", "ben@numbers.test")] == "More automation on the line."
    assert ("lasting", "cy@prose.test") not in got

    only = json.loads(ws.cli("answers", "checkin", "--question", "help", "--format", "json").stdout)
    assert {r["question"] for r in only} == {"help"} and len(only) == 3
    assert {r["partner"] for r in only if r["asks_help"]} == {"ana@inline.test", "cy@prose.test"}

    exported = ws.cli("answers", "checkin", "--format", "csv").stdout.lstrip("\ufeff")
    table = list(csv.DictReader(io.StringIO(exported, newline="")))
    assert len(table) == len(rows) and table[0]["question"] == "changes"


def test_outreach_answers_bad_campaign_or_question_is_one_line_exit_2(
    ws: Workspace, answered: dict[str, int]
) -> None:
    assert_input_error(ws.cli("answers", "nope"), "no campaign named 'nope'")
    assert_input_error(
        ws.cli("answers", "checkin", "--question", "hiring"),
        "checkin.toml",
        "no question 'hiring'",
        "changes, lasting, help",
    )


def test_the_replies_export_has_one_column_per_question(
    ws: Workspace, answered: dict[str, int]
) -> None:
    exported = ws.cli("export", "replies", "--format", "csv").stdout.lstrip("\ufeff")
    table = list(csv.DictReader(io.StringIO(exported, newline="")))
    header = list(table[0])
    assert header[-5:] == ["asks_help", "answer_changes", "answer_lasting", "answer_help",
                           "answer_other"]  # fmt: skip
    ana = next(r for r in table if r["partner"] == "ana@inline.test")
    assert ana["answer_lasting"] == ANA[2] and ana["asks_help"] == "true"
    lines = ws.cli("export", "replies", "--format", "jsonl").stdout.splitlines()
    assert list(json.loads(lines[0])) == header  # every format, the same columns


def test_a_correction_moves_an_answer_and_is_kept_by_reclassify(
    ws: Workspace, answered: dict[str, int]
) -> None:
    cy = answered["cy@prose.test"]
    result = ws.cli(
        "replies", "answer", str(cy), "lasting", "--text", "Our workplace changed a lot"
    )
    assert result.exit_code == 0, result.output
    answers = _replies(ws)["cy@prose.test"]["answers"]
    assert answers["lasting"] == "Our workplace changed a lot"
    assert answers["changes"] == "<b>this year</b> <script>alert(1)</script>."
    log = json.loads(ws.cli("log", "--partner", "cy@prose.test", "--json").stdout)
    corrected = [e for e in log if e["kind"] == "answer_corrected"]
    assert corrected and corrected[0]["detail"]["question"] == "lasting"
    # a reclassification (there and back) keeps what a person set
    assert ws.cli("replies", "reclassify", str(cy), "other").exit_code == 0
    assert ws.cli("replies", "reclassify", str(cy), "reply").exit_code == 0
    assert _replies(ws)["cy@prose.test"]["answers"]["lasting"] == "Our workplace changed a lot"


def test_reclassify_recomputes_answers_that_nobody_corrected(
    ws: Workspace, answered: dict[str, int]
) -> None:
    ben = answered["ben@numbers.test"]
    assert ws.cli("replies", "reclassify", str(ben), "auto_reply").exit_code == 0
    row = ws.store.inbound_row(ben)
    assert row is not None and row["answers"] is None  # an auto-reply answers nothing
    assert ws.cli("replies", "reclassify", str(ben), "reply").exit_code == 0
    assert _replies(ws)["ben@numbers.test"]["answers"]["lasting"] == "Probably, yes."


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["99", "help"], ["no reply #99"]),
        (["{ana}", "hiring"], ["no question 'hiring'", "changes, lasting, help"]),
    ],
)
def test_a_bad_correction_is_one_line_exit_2_and_changes_nothing(
    ws: Workspace, answered: dict[str, int], args: list[str], needles: list[str]
) -> None:
    before = _replies(ws)
    args = [a.format(ana=answered["ana@inline.test"]) for a in args]
    assert_input_error(ws.cli("replies", "answer", *args, "--text", "x"), *needles)
    assert _replies(ws) == before


def test_the_html_report_shows_what_partners_said_in_chromium(
    ws: Workspace, answered: dict[str, int]
) -> None:
    target = ws.root / "checkin.html"
    result = ws.cli("report", "checkin", "--html", str(target))
    assert result.exit_code == 0, result.output
    page = target.read_text(encoding="utf-8")
    said = page[page.index('id="what-partners-said"') :]
    sections = {
        qid: said[said.index(f'id="question-{qid}"') :] for qid in ("changes", "lasting", "help")
    }
    changes = sections["changes"][: sections["changes"].index('id="question-lasting"')]
    lasting = sections["lasting"][: sections["lasting"].index('id="question-help"')]
    assert "two shifts now" in changes and "here to stay" not in changes
    assert "here to stay" in lasting and "two interns" not in lasting
    assert "two interns in March" in sections["help"]
    helpers = said[said.index('id="asked-for-help"') : said.index('id="question-changes"')]
    assert "Ana Ruiz" in helpers and "Cy Park" in helpers and "Ben Ode" not in helpers
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page  # mail text is text

    dom_text, console = run_chromium(target, "--dump-dom")
    assert console == []
    dom = parse(dom_text)
    assert "script" not in {t for t, _, _ in dom.elements}
    assert "<b>this year</b>" in "".join(dom.text)
    assert "<script>alert(1)</script>" in "".join(dom.text)
    assert "What partners said" in "".join(dom.text)


def test_the_digest_lists_help_requests_first(ws: Workspace, answered: dict[str, int]) -> None:
    from datetime import timedelta

    from outreach.engine.digest import collect, render_text

    digest = collect(ws.store, ws.config, ws.campaigns, ws.clock(), ws.clock() - timedelta(1))
    assert {r["partner_email"] for r in digest.replies[:2]} == {"ana@inline.test", "cy@prose.test"}
    text = render_text(digest)
    assert "NEW REPLIES (3, 2 asking for help)" in text
    assert text.count("[ASKS FOR HELP]") == 2


def test_classify_with_a_campaign_gives_the_answers(ws: Workspace, tmp_path: Path) -> None:
    (ws.root / "campaigns" / "checkin.toml").write_text(ALWAYS_OPEN + STEPS + QUESTIONS)
    mail = tmp_path / "reply.eml"
    mail.write_text(
        textwrap.dedent("""\
            From: Ben <ben@numbers.test>
            To: coordinator@district.test
            Subject: Re: Check-in
            Message-ID: <b1@numbers.test>
            In-Reply-To: <x@district.test>
            Content-Type: text/plain; charset=utf-8

            1) More automation.
            2) Yes.
            3) An intern would help.

            Sent from my iPhone
            """)
    )
    result = ws.cli("classify", str(mail), "--campaign", "checkin", "--json")
    assert result.exit_code == 0, result.output
    shape = json.loads(result.stdout)
    assert shape["answers"] == {
        "changes": "More automation.",
        "lasting": "Yes.",
        "help": "An intern would help.",
        "other": None,
    }
    assert shape["asks_help"] is True
    text = ws.cli("classify", str(mail), "--campaign", "checkin").stdout
    assert "  3. help: An intern would help." in text and "asks for help" in text
    assert_input_error(ws.cli("classify", str(mail), "--campaign", "nope"), "no campaign")
    plain = json.loads(ws.cli("classify", str(mail), "--json").stdout)
    assert "answers" not in plain  # without a campaign, as before


# --------------------------------------------------------------------------- client fixtures


def _toml_questions(raw: list[dict[str, Any]]) -> str:
    out = []
    for question in raw:
        out.append("[[questions]]")
        out += [
            f"{key} = {json.dumps(value, ensure_ascii=False)}" for key, value in question.items()
        ]
        out.append("")
    return "\n".join(out)


@pytest.fixture
def fixture_project(project: Path) -> Path:
    """The sample project with one campaign per language of the answers fixtures."""
    from test_answers import CAMPAIGNS

    for language, raw in CAMPAIGNS.items():
        (project / "campaigns" / f"ask_{language}.toml").write_text(
            '[[steps]]\ntemplate = "checkin"\nsubject = "Check-in"\n\n' + _toml_questions(raw),
            encoding="utf-8",
        )
    return project


def test_every_client_fixture_answers_through_classify_campaign(fixture_project: Path) -> None:
    """Each real-client reply (Gmail, Outlook desktop/web/Mac/.com, Apple Mail, Thunderbird,
    mutt, Yahoo, phones; inline and on top; English, Spanish, French, Portuguese) through
    the command line: `outreach classify FILE --campaign NAME --json` gives its expected
    answers per question and whether it asks for help."""
    from helpers import invoke
    from test_answers import EXPECTED, FIXTURES

    assert len(EXPECTED) >= 20
    for name, want in sorted(EXPECTED.items()):
        result = invoke(
            ["classify", str(FIXTURES / name), "--campaign", f"ask_{want['campaign']}", "--json"],
            project=fixture_project,
        )
        assert result.exit_code == 0, (name, result.output)
        shape = json.loads(result.stdout)
        assert shape["answers"] == want["answers"], (name, want["shows"])
        assert shape["asks_help"] is want["asked_for_help"], name


# --------------------------------------------------------------------------- older databases


def test_a_database_from_before_m008_shows_and_corrects_the_answers_of_old_replies(
    tmp_path: Path,
) -> None:
    """m008 adds inbound.answers, asked_help and answers_corrected_at. A reply recorded
    before has none: `outreach answers` splits it when it shows it, and a correction splits
    it first, then stores the corrected answers."""
    path = tmp_path / "outreach.db"
    before = old_database_with_a_reply(
        path, "m008_inbound_answers", "1. We went hybrid.\n2. Yes.\n3. We need a speaker."
    )
    assert "answers" not in before

    ws = Workspace(tmp_path, smtp_port=2525, campaign=ALWAYS_OPEN + STEPS + QUESTIONS)
    assert "answers" in ws.store.db["inbound"].columns_dict
    rows = json.loads(ws.cli("answers", "checkin", "--format", "json").stdout)
    assert {r["question"]: r["answer"] for r in rows} == {
        "changes": "We went hybrid.",
        "lasting": "Yes.",
        "help": "We need a speaker.",
    }
    assert all(r["asks_help"] for r in rows)
    [reply] = json.loads(ws.cli("replies", "--json").stdout)
    assert reply["answers"] is None  # not stored: read before answers were kept
    assert "answer_help" not in ws.cli("export", "replies", "--format", "csv").stdout
    assert ws.cli("replies", "answer", "1", "lasting", "--text", "Yes, for good.").exit_code == 0
    [reply] = json.loads(ws.cli("replies", "--json").stdout)
    assert reply["answers"] == {
        "changes": "We went hybrid.",
        "lasting": "Yes, for good.",
        "help": "We need a speaker.",
        "other": "Yes.",
    }
    assert reply["asks_help"] is True
    assert "answer_help" in ws.cli("export", "replies", "--format", "csv").stdout
    ws.close()


def test_control_characters_in_an_answer_never_reach_the_terminal(tmp_path: Path) -> None:
    ws = Workspace(tmp_path, smtp_port=2525, campaign=ALWAYS_OPEN + STEPS + QUESTIONS)
    stamp = "2026-11-20T15:00:00.000000+00:00"
    ws.add_partners([PEOPLE[0]])
    evil = "We need \x1b]0;pwned\x07 a speaker \x1b[31mnow\u202e."
    with ws.store.write():
        ws.store.record_inbound(
            {
                "account": "main",
                "folder": "INBOX",
                "uidvalidity": 1,
                "uid": 8,
                "message_id": "<evil@inline.test>",
                "kind": "reply",
                "partner_id": 1,
                "campaign": "checkin",
                "step": 1,
                "text": evil,
                "answers": json.dumps({"changes": None, "lasting": None, "help": evil}),
                "asked_help": 1,
                "processed_at": stamp,
            }
        )
    for args in (["answers", "checkin"], ["answers", "checkin", "--format", "csv"], ["replies"]):
        out = ws.cli(*args).stdout
        assert "speaker" in out, args
        assert "\x1b" not in out and "\x07" not in out and "\u202e" not in out, args
    rows = json.loads(ws.cli("answers", "checkin", "--format", "json").stdout)
    assert rows[0]["answer"] == evil  # JSON keeps the exact words, escaped
    ws.close()


# ------------------------------------------------------------------- every client, over IMAP


_REWRITTEN = ("from", "to", "date", "message-id", "in-reply-to", "references")


def _as_reply_to(raw: bytes, partner: str, message_id: str, when: Any) -> bytes:
    """A fixture's bytes as the partner's reply to our message: its own body and MIME
    headers, with From, To, Date, Message-ID, In-Reply-To and References replaced (header
    lines rewritten as bytes, so the body reaches the server exactly as the client wrote it)."""
    head, _, body = raw.replace(b"\r\n", b"\n").partition(b"\n\n")
    kept: list[bytes] = []
    skipping = False
    for line in head.split(b"\n"):
        if line[:1] in (b" ", b"\t"):
            if not skipping:
                kept.append(line)
            continue
        skipping = line.split(b":", 1)[0].strip().lower().decode() in _REWRITTEN
        if not skipping:
            kept.append(line)
    new = [
        f"From: {partner}",
        "To: Coordinator <coordinator@district.test>",
        f"Date: {format_datetime(when)}",
        f"Message-ID: {make_msgid(domain='client.test')}",
        f"In-Reply-To: {message_id}",
        f"References: {message_id}",
    ]
    return (
        b"\r\n".join([*(n.encode() for n in new), *kept])
        + b"\r\n\r\n"
        + body.replace(b"\n", b"\r\n")
    )


def test_every_client_fixture_read_over_imap_gets_its_expected_answers(
    ws: Workspace, smtp_server: Any, imap_server: Any
) -> None:
    """Each real-client reply fixture (EXPECTED in test_answers) answers its own campaign's
    message over IMAP (pymap): the worker records it and stores the expected answer to each
    question, and whether it asks for help."""
    from test_answers import CAMPAIGNS, EXPECTED, FIXTURES

    (ws.root / "campaigns" / "checkin.toml").unlink()
    for language, raw in CAMPAIGNS.items():
        (ws.root / "campaigns" / f"ask_{language}.toml").write_text(
            ALWAYS_OPEN + STEPS.replace("Check-in", f"Check-in {language}") + _toml_questions(raw),
            encoding="utf-8",
        )
    names = sorted(EXPECTED)
    people = [
        {"email": f"client{i:02d}@clients.test", "name": f"Client {i}", "organization": name}
        for i, name in enumerate(names)
    ]
    ws.add_partners(people)
    worker = ws.worker()
    _, sent = worker.cycle()
    assert sent.sent == len(people) * len(CAMPAIGNS)
    ws.clock.advance(hours=2)
    for person, name in zip(people, names, strict=True):
        [row] = ws.store.query(
            "SELECT m.message_id FROM messages m JOIN partners p ON p.id = m.partner_id"
            " WHERE p.email = ? AND m.campaign = ?",
            [person["email"], f"ask_{EXPECTED[name]['campaign']}"],
        )
        raw = (FIXTURES / name).read_bytes()
        imap_server.append(_as_reply_to(raw, person["email"], row["message_id"], ws.clock()))
    read, _ = worker.cycle()
    assert read.recorded == len(names), read
    rows = {r["partner"]: r for r in json.loads(ws.cli("replies", "--json").stdout)}
    for person, name in zip(people, names, strict=True):
        want = EXPECTED[name]
        got = rows[person["email"]]
        assert got["campaign"] == f"ask_{want['campaign']}", name
        assert got["answers"] == want["answers"], (name, want["shows"])
        assert got["asks_help"] is want["asked_for_help"], name


def test_report_json_has_what_partners_said(ws: Workspace, answered: dict[str, int]) -> None:
    result = ws.cli("report", "checkin", "--json")
    assert result.exit_code == 0, result.output
    said = json.loads(result.stdout)["what_partners_said"]
    assert [q["id"] for q in said["questions"]] == ["changes", "lasting", "help"]
    lasting = {a["partner"]: a["answer"] for a in said["questions"][1]["answers"]}
    assert lasting == {"ana@inline.test": ANA[2], "ben@numbers.test": "Probably, yes."}
    assert sorted(said["asked_for_help"]) == ["ana@inline.test", "cy@prose.test"]
