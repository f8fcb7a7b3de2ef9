"""`outreach demo` end to end: local servers, the real worker, simulated partners, the log."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from outreach.testing import demo as demo_module
from outreach.testing.demo import PERSONAS, run_demo


def query(folder: Path, sql: str) -> list[tuple[Any, ...]]:
    with contextlib.closing(sqlite3.connect(folder / "outreach.db")) as conn:
        return conn.execute(sql).fetchall()


def test_the_demo_runs_the_whole_loop_and_ends_with_the_response_log(tmp_path: Path) -> None:
    folder = tmp_path / "demo"
    env = {k: v for k, v in os.environ.items() if k != "OUTREACH_CONFIG"}
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "outreach", "demo", "--keep", str(folder)],
        capture_output=True,
        text=True,
        timeout=90,
        env=dict(env, COLUMNS="30"),  # a narrow terminal, or a pipe: the demo reads the same
    )
    took = time.monotonic() - started
    assert done.returncode == 0, done.stdout + done.stderr
    assert took < 45, f"the demo took {took:.0f}s"
    out = done.stdout

    # what happened, as it happened
    live, _, final_log = out.partition("The response log")
    assert final_log, out
    for line in (
        "started: `outreach run`",
        "sent the check-in (step 1) to María González",
        "María González replies:",
        "out of the office until",
        "bounces the check-in to José Núñez",
        "Sam Lee answers:",
        "sent the follow-up (step 2) to Kwame Mensah",
        "Łukasz Wiśniewski gets the follow-up and stays silent",
        "read Chloé Dubois's reply",
        "SIGTERM",
        "worker stopped",
    ):
        assert line in live, f"{line!r} not in the live output:\n{live}"

    # the response log printed at the end (`outreach log`) shows every partner and outcome
    for persona in PERSONAS:  # by name, as a colleague writes
        assert persona.name in final_log, persona.name
    # one line per thing, in plain words (issue 21), the bounced address named
    for said in (
        "María González replied",
        "is out of office until",
        "bounce: jose@nunez-auto.example does not exist (550 5.1.1): no more messages",
        "Sam Lee asked to be removed: no more messages",
        'sent step 2 ("Re: ',
    ):
        assert said in final_log, said
    assert "read a bounce: jose@nunez-auto.example is marked bounced" in live
    assert "It has been a big year" in final_log
    assert "we can take one intern in January" in " ".join(final_log.split())
    # COLUMNS=30 did not squeeze it: a reply's line wraps at the demo's 100 columns
    assert "    It has been a big year: we opened a night clinic and hired three of your" in (
        final_log
    )

    # the kept folder: the database agrees, nothing is half-written, the worker logged JSON
    assert query(folder, "PRAGMA integrity_check") == [("ok",)]
    statuses = dict(query(folder, "SELECT email, status FROM partners"))
    assert statuses["jose@nunez-auto.example"] == "bounced"
    assert statuses["sam.lee@bistro21.example"] == "opted_out"
    states = dict(
        query(
            folder,
            "SELECT p.email, s.state FROM sequences s JOIN partners p ON p.id = s.partner_id",
        )
    )
    assert states["dan.oconnor@buildright.example"] == "paused"
    for replied in ("maria.gonzalez", "priya.shah", "zoe.angstrom", "chloe.dubois"):
        assert next(v for k, v in states.items() if k.startswith(replied)) == "replied"
    second = {
        r[0]
        for r in query(folder, "SELECT to_addr FROM messages WHERE step = 2 AND status = 'sent'")
    }
    assert second == {
        "chloe.dubois@boulangerie-dubois.example",
        "kwame.mensah@riverside-logistics.example",
        "lukasz.wisniewski@stal-works.example",
    }
    assert query(folder, "SELECT count(*) FROM messages WHERE status != 'sent'") == [(0,)]
    events = [json.loads(line) for line in (folder / "worker.log").read_text().splitlines()]
    assert events[-1]["event"] == "stopped"
    assert not [e for e in events if e["level"] == "error"]


def test_the_demo_folder_is_removed_unless_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[Path] = []

    def fake_run(self: demo_module.Demo, keep: bool) -> int:
        (self.folder / "outreach.db").write_text("")
        seen.append(self.folder)
        return 0

    monkeypatch.setattr(demo_module.Demo, "run", fake_run)
    assert run_demo(None, echo=lambda _line: None) == 0
    assert seen and not seen[0].exists()
    kept = tmp_path / "kept"
    assert run_demo(kept, echo=lambda _line: None) == 0
    assert (kept / "outreach.db").exists()


def test_keep_refuses_a_folder_with_files(tmp_path: Path) -> None:
    (tmp_path / "something.txt").write_text("mine")
    done = subprocess.run(
        [sys.executable, "-m", "outreach", "demo", "--keep", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2 and "not an empty folder" in done.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["something.txt"]
