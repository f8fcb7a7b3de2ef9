"""`outreach classify`: the JSON contract, one object per line per file, no database."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path

from click.testing import CliRunner

from outreach.cli import cli

MAIL = Path(__file__).parent / "fixtures" / "mail"


def test_classify_json_one_line_per_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no config here: classify must not need one
    files = [MAIL / "bounce_postfix_dsn.eml", MAIL / "auto_reply_de.eml", MAIL / "reply_gmail.eml"]
    result = CliRunner().invoke(cli, ["classify", "--json", *map(str, files)])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.output.splitlines()]
    assert [line["file"] for line in lines] == [str(f) for f in files]
    for line in lines:
        assert {
            "file",
            "kind",
            "bounced_recipients",
            "hard",
            "return_date",
            "text",
            "reasons",
        } <= set(line)
        assert isinstance(line["bounced_recipients"], list) and line["reasons"]
    bounce, auto, reply = lines
    assert bounce["kind"] == "bounce" and bounce["hard"] is True and bounce["bounced_recipients"]
    assert auto["kind"] == "auto_reply" and auto["return_date"] == "2026-12-07"
    assert reply["kind"] == "reply" and reply["text"]
    assert not (tmp_path / "outreach.db").exists()


def test_classify_human_output_names_the_rules():
    result = CliRunner().invoke(cli, ["classify", str(MAIL / "auto_reply_en.eml")])
    assert result.exit_code == 0
    assert "auto_reply" in result.output and "because: header Auto-Submitted" in result.output
    assert "back on: 2026-12-07" in result.output


def test_classify_missing_file_is_a_usage_error():
    result = CliRunner().invoke(cli, ["classify", "nope.eml"])
    assert result.exit_code == 2 and "Traceback" not in result.output


REPLY_HEAD = (
    b"From: Maria Gonzalez <maria.gonzalez@mercyhealth.example>\r\n"
    b"To: Jordan Lee <jlee@district.example>\r\n"
    b"Subject: Re: Lincoln High CTE check-in\r\n"
    b"Message-ID: <reply-1@mercyhealth.example>\r\n"
    b"\r\n"
    b"Thanks for checking in, all is well here.\r\n"
)


def one_gigabyte() -> None:
    """The child process may not use more than 1 GB of address space."""
    resource.setrlimit(resource.RLIMIT_AS, (1024**3, 1024**3))


def test_classify_reads_a_bounded_amount_of_a_huge_file(tmp_path: Path) -> None:
    """A 2 GB file is classified from its first 10 MiB, in a process that could not even
    hold it."""
    huge = tmp_path / "huge.eml"
    with huge.open("wb") as handle:
        handle.write(REPLY_HEAD)
        handle.truncate(2 * 1024**3)  # sparse: 2 GB of zeros after the message
    done = subprocess.run(
        [sys.executable, "-m", "outreach", "classify", "--json", str(huge)],
        capture_output=True,
        timeout=60,
        preexec_fn=one_gigabyte,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr.decode()
    assert json.loads(done.stdout)["kind"] == "reply"
    (warning,) = done.stderr.decode().splitlines()
    assert warning.startswith(f"warning: {huge}: longer than 10 MiB")


def test_classify_stops_reading_an_endless_pipe(tmp_path: Path) -> None:
    """`... | outreach classify /dev/stdin` with a writer that never stops: classify reads
    10 MiB, answers and closes the pipe."""
    child = subprocess.Popen(
        [sys.executable, "-m", "outreach", "classify", "/dev/stdin"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=one_gigabyte,
        cwd=tmp_path,
    )
    assert child.stdin is not None
    written, deadline = 0, time.monotonic() + 60
    chunk = b"and more words, forever. " * 4096
    try:
        child.stdin.write(REPLY_HEAD)
        while time.monotonic() < deadline:  # endless, as far as the reader can tell
            child.stdin.write(chunk)
            written += len(chunk)
    except BrokenPipeError:  # the reader had enough and closed its end
        pass
    finally:
        if time.monotonic() >= deadline:
            child.kill()  # it never stopped reading
    out, err = child.communicate(timeout=60)
    assert child.returncode == 0, err.decode()
    assert "/dev/stdin: reply" in out.decode()
    assert "longer than 10 MiB" in err.decode()
    assert written < 20 * 1024**2
