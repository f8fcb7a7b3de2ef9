"""`outreach status` and `run --once` tell the truth (issue 21): "last sent" is when the last
message went out, a last error is shown resolved once reading and sending work again, and a
read that failed never prints as "0 new in mailbox"."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from workspace import Workspace, local_imap, partner_rows

from outreach.engine.service import record_once


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def ws(tmp_path: Path, smtp_server, imap_server, monkeypatch):
    monkeypatch.setenv("TEST_IMAP_PW", imap_server.password)
    workspace = Workspace(
        tmp_path,
        smtp_port=smtp_server.port,
        imap=local_imap(imap_server),
    )
    yield workspace
    workspace.close()


def imap_down(ws: Workspace, imap_server) -> None:
    config = ws.root / "config.toml"
    config.write_text(
        config.read_text().replace(f"port = {imap_server.port}", f"port = {closed_port()}")
    )


def test_last_sent_is_the_last_message_out_not_the_last_cycle(ws: Workspace) -> None:
    ws.add_partners(partner_rows(2))
    worker = ws.worker()
    read, sent = worker.cycle()
    assert sent.sent == 2
    first = ws.clock()
    record_once(ws.store, read, sent, first)
    ws.clock.advance(hours=5)  # a cycle with nothing due
    read, sent = worker.cycle()
    assert sent.sent == 0
    record_once(ws.store, read, sent, ws.clock())
    ws.close()
    status = json.loads(ws.cli("status", "--json").output)["worker"]
    assert status["last_send_at"] == ws.clock().isoformat(timespec="microseconds")
    assert status["last_message_sent_at"] == first.isoformat(timespec="microseconds")
    text = ws.cli("status").output
    assert f"last sent: {first:%Y-%m-%d %H:%M:%S}" in text
    assert f"last send cycle: {ws.clock():%Y-%m-%d %H:%M:%S}" in text


def test_run_once_with_the_imap_server_down_says_the_read_failed_then_resolved(
    ws: Workspace, imap_server
) -> None:
    ws.add_partners(partner_rows(1))
    imap_down(ws, imap_server)
    result = ws.cli("run", "--once")
    assert result.exit_code == 1
    read_line = next(line for line in result.stdout.splitlines() if line.startswith("read: "))
    assert read_line.startswith("read: failed: ") and "new in mailbox" not in read_line
    assert "127.0.0.1" in read_line
    status = ws.cli("status")
    assert "last error: " in status.output and "resolved" not in status.output
    assert json.loads(ws.cli("status", "--json").output)["worker"]["last_error_resolved"] is False


def test_a_last_error_is_shown_resolved_once_read_and_send_work_again(
    ws: Workspace, imap_server
) -> None:
    ws.add_partners(partner_rows(1))
    good = (ws.root / "config.toml").read_text()
    imap_down(ws, imap_server)
    assert ws.cli("run", "--once").exit_code == 1
    (ws.root / "config.toml").write_text(good)
    again = ws.cli("run", "--once")
    assert again.exit_code == 0, again.output
    assert "read: 0 new in mailbox" in again.stdout
    status = ws.cli("status")
    assert "last error (resolved: read and send work again): " in status.output
    assert json.loads(ws.cli("status", "--json").output)["worker"]["last_error_resolved"] is True


def test_when_the_read_failed_for_one_account_the_summary_says_so_after_the_counts() -> None:
    from outreach.engine.ingest import ReadReport

    report = ReadReport(seen=3, recorded=2, kinds={"reply": 2}, errors=["imap.b: refused"])
    assert report.summary() == "3 new in mailbox, 2 recorded (2 reply); failed: imap.b: refused"
    assert ReadReport(errors=["imap.a: down"]).summary() == "failed: imap.a: down"
    assert ReadReport().summary() == "0 new in mailbox, 0 recorded"


def test_every_time_a_command_prints_names_the_coordinators_zone(
    ws: Workspace, smtp_server, imap_server, monkeypatch
) -> None:
    """One clock (issue 21): status, plan, replies, report and log all say which zone."""
    import outreach.cli.campaigns as campaigns_cli
    from outreach.testing import partner_mail

    config = ws.root / "config.toml"
    config.write_text(config.read_text().replace('"UTC"', '"America/Chicago"'))
    ws.add_partners(partner_rows(2))
    worker = ws.worker()
    read, sent = worker.cycle()
    record_once(ws.store, read, sent, ws.clock())
    imap_server.append(partner_mail.reply(smtp_server.messages[0].raw, "Doing well."))
    ws.clock.advance(hours=1)
    worker.cycle()
    ws.close()
    monkeypatch.setattr(campaigns_cli, "now", ws.clock)
    outputs = {
        "status": ws.cli("status").output,
        "plan": ws.cli("plan", "--days", "10").output,
        "replies": ws.cli("replies").output,
        "report": ws.cli("report", "checkin").output,
        "log": ws.cli("log").output,
    }
    for command, out in outputs.items():
        assert " CST" in out, (command, out)
    status_times = [  # the worker's times (each account's own come after, at their times)
        line
        for line in outputs["status"].split("\naccounts:")[0].splitlines()
        if "2026-11-24" in line
    ]
    assert status_times and all("2026-11-24 04:00:00 CST" in line for line in status_times)
    plan = json.loads(ws.cli("plan", "--days", "10", "--json").output)
    assert plan and all(row["at"].endswith("-06:00") for row in plan)
