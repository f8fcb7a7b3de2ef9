"""What partners wrote cannot drive the terminal (issue 16, point 4).

Text from outside (a reply's words, a partner's name or organization, a subject, a file
name) may carry ESC sequences, C1 controls or bidi overrides. Every command prints it with
those shown as visible symbols, on a terminal and in a pipe alike; JSON keeps them as \\u
escapes (exact, and inert); the worker's log lines too. The hostile text goes in through the
real servers (aiosmtpd, pymap) and the real roster import.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from helpers import assert_no_traceback
from logbook import sent_to
from workspace import make_workspace

from outreach.cli import cli
from outreach.store import iso
from outreach.testing import partner_mail
from outreach.testing.imap_server import LocalIMAPServer
from outreach.testing.smtp_server import LocalSMTPServer

# Sequences a terminal acts on: clear the screen, recolour, set the window title, a C1 CSI
# (0x9b, "ESC ["), an OSC 8 hyperlink, a bell, a carriage return that overwrites the line,
# a backspace, and the Trojan Source bidi override and isolate (CVE-2021-42574).
HOSTILE = (
    "\x1b[2J\x1b[31mred\x1b]0;owned title\x07 \x9b33m csi \x1b]8;;http://evil.test\x1b\\link"
    "\x1b]8;;\x1b\\ ok\rOVERWRITE\x08 \u202eevil\u202c \u2066iso\u2069 del\x7f nul\x00end"
)
# Unicode characters a terminal would act on, as UTF-8 output carries them
UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def assert_inert(blob: bytes | str, where: str) -> str:
    """Nothing a terminal would act on: only newline and tab of the controls."""
    text = blob if isinstance(blob, str) else blob.decode("utf-8")
    found = UNSAFE.search(text.replace("\r\n", "\n"))  # CSV's CRLF: the CR moves nothing
    assert found is None, f"{where}: {found.group(0)!r} at {found.start()}: {text[:1500]!r}"
    return text


# --------------------------------------------------------------------------- the rule itself


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("\x1b[31mred", "\u241b[31mred"),
        ("a\x9b31mb", "a<U+009B>31mb"),
        ("x\u202eevil", "x<U+202E>evil"),
        ("\u2066iso\u2069", "<U+2066>iso<U+2069>"),
        ("bell\x07", "bell\u2407"),
        ("del\x7f", "del\u2421"),
        ("over\rwrite", "over\u240dwrite"),
        ("lines\r\nkept\tand tabs\n", "lines\nkept\tand tabs\n"),
        ("accents é, emoji 🎉, Arabic مرحبا", "accents é, emoji 🎉, Arabic مرحبا"),
    ],
)
def test_visible_shows_controls_as_symbols(raw: str, shown: str) -> None:
    from outreach.core.text import visible

    assert visible(raw) == shown
    assert_inert(visible(raw), raw)


def test_a_log_line_stays_one_line() -> None:
    from outreach.core.text import visible

    assert visible("sent\nFAKE 2026-01-01 line", newlines=False) == "sent\u240aFAKE 2026-01-01 line"


def test_json_text_is_exact_and_inert() -> None:
    from outreach.core.text import json_text

    value = {"text": HOSTILE, "name": "Zoë\u2028Ødegaard"}
    text = json_text(value)
    assert_inert(text, "json_text")
    assert json.loads(text) == value
    assert "\\u009b" in text and "\\u202e" in text and "\\u001b" in text
    assert "Zoë" in text  # still UTF-8 text, not \u-escaped letters


# --------------------------------------------------------------------------- every command


@pytest.fixture
def hostile_world(
    tmp_path: Path,
    smtp_server: LocalSMTPServer,
    imap_server: LocalIMAPServer,
    monkeypatch: pytest.MonkeyPatch,
) -> Any:
    """A database whose partners, replies and errors all carry HOSTILE: names and an
    organization stored without the import's check (an older version, a hand edit), a reply
    through pymap with it in its words, and a 5xx whose text echoes it."""
    ws = make_workspace(tmp_path, smtp_server, imap_server, monkeypatch)
    ws.add_partners(
        [
            {
                "email": "eve@partners.test",
                "name": "Eve " + HOSTILE,
                "organization": "Org " + HOSTILE,
            },
            {"email": "bob@partners.test", "name": "Bob", "organization": "Bob's " + HOSTILE},
            {"email": "refused@partners.test", "name": "Ref", "organization": "Refusing"},
        ]
    )
    smtp_server.refuse("refused@partners.test", "550 5.1.1 no such user " + HOSTILE[:40])
    worker = ws.worker()
    worker.cycle()
    imap_server.append(
        partner_mail.reply(
            sent_to(smtp_server, "eve@partners.test"), "Thanks! " + HOSTILE, when=ws.clock()
        )
    )
    read, _ = worker.cycle()
    assert read.recorded == 1, read
    ws.store.update_worker(last_error="SMTP 127.0.0.1: " + HOSTILE, last_error_at=iso(ws.clock()))
    ws.close()
    return ws


COMMANDS = [
    ["log"],
    ["log", "--partner", "eve@partners.test"],
    ["log", "--json"],
    ["replies"],
    ["replies", "--json"],
    ["replies", "--unhandled"],
    ["report", "checkin"],
    ["report", "checkin", "--json"],
    ["partners", "list"],
    ["partners", "list", "--json"],
    ["status"],
    ["plan", "--days", "30"],
    ["preview", "checkin", "--partner", "eve@partners.test"],
    ["export", "events"],
    ["export", "replies", "--format", "csv"],
    ["export", "replies", "--format", "json"],
    ["export", "partners", "--format", "csv"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_prints_hostile_text_inert(hostile_world: Any, command: list[str]) -> None:
    result = CliRunner().invoke(
        cli, ["--config", str(hostile_world.root / "config.toml"), *command]
    )
    assert_no_traceback(result)
    assert result.exit_code == 0, result.output
    out = assert_inert(result.stdout_bytes, "stdout")
    assert_inert(result.stderr_bytes, "stderr")
    if "--json" in command or "json" in command or command == ["export", "events"]:
        # JSON (and JSON Lines) keep the exact words, escaped
        assert "\\u001b" in out or "\\u009b" in out or "\\u202e" in out, out[:500]
        lines = out.splitlines() if command[0] == "export" and "json" not in command else [out]
        for line in lines:
            json.loads(line)
    else:
        assert "\u241b" in out or "<U+202E>" in out, out[:800]  # shown, not dropped


def test_replies_show_the_hostile_words_visibly(hostile_world: Any) -> None:
    result = CliRunner().invoke(
        cli, ["--config", str(hostile_world.root / "config.toml"), "replies"]
    )
    out = assert_inert(result.stdout_bytes, "replies")
    assert "\u241b[2J\u241b[31mred" in out
    assert "<U+009B>33m csi" in out and "<U+202E>evil" in out


def test_json_and_a_csv_file_keep_the_exact_words(hostile_world: Any) -> None:
    """JSON escapes the controls (exact once decoded); a CSV file is data for a spreadsheet
    and holds the words as written, while the same cells on standard output are shown inert
    (test_every_command_...)."""
    config = str(hostile_world.root / "config.toml")
    result = CliRunner().invoke(cli, ["--config", config, "replies", "--json"])
    (reply,) = json.loads(assert_inert(result.stdout_bytes, "replies --json"))
    assert "Thanks! \x1b[2J\x1b[31mred" in reply["text"]
    assert "\x9b33m" in reply["text"] and " evil" in reply["text"]
    # the reply's new text drops invisible direction marks (outreach.core.inbound.replytext:
    # they hide quote headers); a roster value keeps them, exactly
    assert "\u202eevil" in reply["name"]
    target = hostile_world.root / "replies.csv"
    result = CliRunner().invoke(
        cli, ["--config", config, "export", "replies", "--format", "csv", "-o", str(target)]
    )
    assert result.exit_code == 0, result.output
    assert "Thanks! \x1b[2J\x1b[31mred" in target.read_text(encoding="utf-8-sig")


@pytest.mark.parametrize("flags", [["-v"], ["--log-json", "-v"]], ids=["human", "json"])
def test_the_worker_log_is_inert_in_both_formats(
    tmp_path: Path,
    smtp_server: LocalSMTPServer,
    imap_server: LocalIMAPServer,
    monkeypatch: pytest.MonkeyPatch,
    flags: list[str],
) -> None:
    """The log on stderr (the journal) carries a server's answer and partners' addresses;
    each line stays one line with nothing a terminal would act on."""
    ws = make_workspace(tmp_path, smtp_server, imap_server, monkeypatch)
    ws.add_partners(
        [{"email": f"p{i}@partners.test", "name": "P", "organization": "O"} for i in range(3)]
    )
    ws.close()
    smtp_server.refuse("p0@partners.test", "550 5.1.1 " + HOSTILE[:60])
    smtp_server.queue_data_responses("451 4.3.0 try later \x1b[2J\u202e\nFAKE sent line")
    env = dict(os.environ, TEST_IMAP_PW=imap_server.password)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "outreach",
            "--config",
            str(ws.root / "config.toml"),
            "run",
            "--once",
            *flags,
        ],
        capture_output=True,
        env=env,
        timeout=120,
    )
    log = assert_inert(done.stderr, f"run --once {flags}")
    assert_inert(done.stdout, "stdout")
    assert "refused p0@partners.test" in log, log
    if "--log-json" in flags:
        events = [json.loads(line) for line in log.splitlines()]
        refused = next(e for e in events if e.get("to") == "p0@partners.test")
        assert "\x1b[2J" in refused["message"]  # exact, once decoded
    else:
        assert "\u241b[2J" in log
        assert not any(line.startswith("FAKE") for line in log.splitlines()), log


# --------------------------------------------------------------------------- saved messages
# (file names and values quoted back in error lines: tests/test_inputs_table.py)


def test_classify_prints_a_hostile_message_inert(tmp_path: Path) -> None:
    eml = tmp_path / "evil\x1b[31m.eml"
    eml.write_bytes(
        b"From: Eve \x1b[31m<eve@x.test>\r\nTo: c@district.test\r\n"
        b"Subject: hi \x1b]0;title\x07\r\nMessage-ID: <1@x.test>\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n\r\n"
        + "Hello \x1b[2J \u202eevil\r\n".encode()
        + b"\r\n"
    )
    for flags in ([], ["--json"]):
        result = CliRunner().invoke(cli, ["classify", *flags, str(eml)])
        assert result.exit_code == 0, result.output
        out = assert_inert(result.stdout_bytes, f"classify {flags}")
        assert ("\u241b[2J" in out) if not flags else ("\\u001b[2J" in out)
