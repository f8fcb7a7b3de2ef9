"""Running in the background without systemd (issue 21): a launchd agent for macOS,
`outreach run --log-file FILE` with rotation, and log lines in the coordinator's zone."""

from __future__ import annotations

import logging
import os
import plistlib
import signal
import subprocess
from pathlib import Path

import pytest
from test_service import FAST, TWO_STEPS, status_json, wait_until
from workspace import Workspace, partner_rows

import outreach.logs
from outreach.logs import log_event, setup_logging
from outreach.testing.smtp_server import LocalSMTPServer

AGENT = "org.outreach.worker.plist"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("OUTREACH_CONFIG", raising=False)
    return home


def chicago(ws: Workspace) -> Workspace:
    config = ws.root / "config.toml"
    config.write_text(config.read_text().replace('"UTC"', '"America/Chicago"'))
    return ws


@pytest.fixture
def ws(tmp_path: Path, smtp_server: LocalSMTPServer):
    project = tmp_path / "my project"
    project.mkdir()
    workspace = chicago(
        Workspace(project, smtp_port=smtp_server.port, campaign=TWO_STEPS, config_extra=FAST)
    )
    yield workspace
    workspace.close()


def test_service_install_writes_a_launchd_agent_and_never_overwrites(
    ws: Workspace, home: Path
) -> None:
    agent_path = home / "Library" / "LaunchAgents" / AGENT
    printed = ws.cli("service", "install", "--launchd", "--print")
    assert printed.exit_code == 0, printed.output
    assert not agent_path.exists()
    installed = ws.cli("service", "install", "--launchd", "--user")
    assert installed.exit_code == 0, installed.output
    assert "launchctl bootstrap" in installed.stdout
    assert agent_path.read_text() == printed.stdout
    agent = plistlib.loads(agent_path.read_bytes())
    assert agent["Label"] == "org.outreach.worker"
    assert agent["KeepAlive"] == {"SuccessfulExit": False} and agent["RunAtLoad"] is True
    assert agent["WorkingDirectory"] == str(ws.root)
    program, *args = agent["ProgramArguments"]
    assert Path(program).is_absolute() and os.access(program, os.X_OK)
    assert args[-5:] == [
        "--config",
        str(ws.root / "config.toml"),
        "run",
        "--log-file",
        str(ws.root / "outreach.log"),
    ]
    agent_path.write_text("<!-- mine -->\n")
    again = ws.cli("service", "install", "--launchd", "--user")
    assert again.exit_code == 1 and "already exists" in again.stderr
    assert agent_path.read_text() == "<!-- mine -->\n"
    forced = ws.cli("service", "install", "--launchd", "--user", "--force")
    assert forced.exit_code == 0 and agent_path.read_text() == printed.stdout
    # a systemd unit stays the default off macOS, and --to writes either anywhere
    elsewhere = ws.root / "unit" / "outreach.service"
    to = ws.cli("service", "install", "--systemd", "--to", str(elsewhere))
    assert to.exit_code == 0, to.output
    assert "Restart=on-failure" in elsewhere.read_text()


def test_what_launchd_would_run_starts_the_worker_logging_to_a_file_in_the_coordinators_zone(
    ws: Workspace, home: Path
) -> None:
    ws.add_partners(partner_rows(1))
    ws.close()
    agent = plistlib.loads(ws.cli("service", "install", "--launchd", "--print").stdout.encode())
    env = {k: v for k, v in os.environ.items() if k != "OUTREACH_CONFIG"}
    proc = subprocess.Popen(
        agent["ProgramArguments"],
        cwd=agent["WorkingDirectory"],
        env={**env, **agent["EnvironmentVariables"]},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    log = ws.root / "outreach.log"
    try:
        wait_until(lambda: status_json(ws.root)["worker"]["started_at"], 15, "the worker")
        wait_until(lambda: log.exists() and " sent " in log.read_text(), 15, "a sent line")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.stderr is not None and proc.stderr.read() == b""  # it all went to the file
    lines = log.read_text().splitlines()
    assert lines and all(line[20:23] in ("CST", "CDT") for line in lines), lines[:3]


def test_run_once_log_file_json_has_the_offset_and_an_unwritable_file_is_one_line(
    ws: Workspace,
) -> None:
    ws.add_partners(partner_rows(1))
    log = ws.root / "run.log"
    done = ws.cli("run", "--once", "--log-json", "--log-file", str(log))
    assert done.exit_code == 0, done.output
    assert done.stderr == ""
    import json

    events = [json.loads(line) for line in log.read_text().splitlines()]
    assert any(e["event"] == "sent" for e in events)
    assert all(e["at"].endswith(("-06:00", "-05:00")) for e in events)
    bad = ws.cli("run", "--once", "--log-file", str(ws.root / "missing" / "run.log"))
    assert bad.exit_code == 1
    assert bad.stderr.strip().startswith(f"error: {ws.root / 'missing' / 'run.log'}: cannot")
    assert "Traceback" not in bad.output and len(bad.stderr.strip().splitlines()) <= 2


def test_the_log_file_is_rotated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(outreach.logs, "LOG_FILE_BYTES", 2_000)
    log = tmp_path / "outreach.log"
    logger = setup_logging(log_file=log)
    try:
        for number in range(400):
            log_event(logger, "sent", f"sent checkin step 1 to partner{number}@partners.test")
    finally:
        for handler in logger.handlers:
            handler.close()
        setup_logging()
    kept = sorted(p.name for p in tmp_path.iterdir())
    assert kept == ["outreach.log", *(f"outreach.log.{n}" for n in range(1, 6))]
    assert all(p.stat().st_size <= 2_000 for p in tmp_path.iterdir())
    assert "partner399@partners.test" in log.read_text()


def test_a_human_log_line_names_the_coordinators_zone() -> None:
    from datetime import UTC, datetime
    from zoneinfo import ZoneInfo

    from outreach.logs import HumanFormatter

    record = logging.LogRecord("outreach", logging.INFO, "", 0, "sent x", None, None)
    record.created = datetime(2026, 12, 15, 15, 0, tzinfo=UTC).timestamp()
    assert (
        HumanFormatter(ZoneInfo("America/Chicago"))
        .format(record)
        .startswith("2026-12-15 09:00:00 CST sent x")
    )
    assert (
        HumanFormatter(ZoneInfo("America/Sao_Paulo"))
        .format(record)
        .startswith("2026-12-15 12:00:00 UTC-0300 sent x")
    )
