"""`outreach classify`: the JSON contract, one object per line per file, no database."""

from __future__ import annotations

import json
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
