"""`outreach run` as a long-running worker: started as a real subprocess against in-process
mail servers, stopped with signals; plus the pure parts (backoff, digest timing, the unit)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, date, datetime
from datetime import time as clock_time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner
from workspace import ALWAYS_OPEN, Workspace, partner_rows

from outreach.cli import cli
from outreach.config import load_config
from outreach.core.errors import AuthenticationError
from outreach.core.settings import DigestSettings
from outreach.engine.digest import digest_due, send_digest
from outreach.engine.service import (
    Backoff,
    Service,
    backoff_delay,
    fingerprint,
    live_config,
    unset_password_envs,
)
from outreach.testing import partner_mail
from outreach.testing.imap_server import LocalIMAPServer
from outreach.testing.smtp_server import LocalSMTPServer

FAST = '[worker]\npoll_every = "1s"\nsend_every = "1s"\nshutdown_timeout = "5s"\n'
IMAP_PASSWORD_ENV = "TEST_SERVICE_IMAP_PW"
TWO_STEPS = (
    ALWAYS_OPEN
    + """
[[steps]]
template = "hello"
subject = "Check-in for {{ partner.organization }}"

[[steps]]
template = "nudge"
after = "2d"
"""
)


# --------------------------------------------------------------------------- helpers


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(0.05)


def query(root: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with contextlib.closing(sqlite3.connect(root / "outreach.db", timeout=10)) as conn:
        return conn.execute(sql, params).fetchall()


class Worker:
    """`python -m outreach --config ... run --log-json` in a child process."""

    count = 0

    def __init__(self, root: Path, env: dict[str, str], *args: str) -> None:
        Worker.count += 1
        self.log_path = root / f"worker-{Worker.count}.log"
        self.log_file = open(self.log_path, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "outreach",
                "--config",
                str(root / "config.toml"),
                "run",
                "--log-json",
                *args,
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self.log_file,
            env=env,
        )

    @property
    def text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def events(self) -> list[dict[str, Any]]:
        found = []
        for line in self.text.splitlines():
            with contextlib.suppress(ValueError):
                found.append(json.loads(line))
        return found

    def has(self, event: str) -> list[dict[str, Any]]:
        return [e for e in self.events() if e.get("event") == event]

    def wait_for(self, event: str, timeout: float = 10.0) -> list[dict[str, Any]]:
        return wait_until(
            lambda: self.has(event) or self._died(),
            timeout,  # type: ignore[no-any-return]
            f"event {event!r} in the worker log:\n{self.text}",
        )

    def _died(self) -> None:
        if self.proc.poll() is not None:
            raise AssertionError(f"the worker exited with {self.proc.returncode}:\n{self.text}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        self.proc.send_signal(sig)
        return self.proc.wait(timeout)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self.log_file.close()


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, imap_server: LocalIMAPServer) -> dict[str, str]:
    monkeypatch.delenv("OUTREACH_CONFIG", raising=False)
    monkeypatch.setenv(IMAP_PASSWORD_ENV, imap_server.password)
    return dict(os.environ)


@pytest.fixture
def workers() -> Iterator[list[Worker]]:
    started: list[Worker] = []
    yield started
    for worker in started:
        worker.close()


def worker_workspace(
    root: Path, smtp: LocalSMTPServer, imap: LocalIMAPServer | None, extra: str = "", **kwargs: Any
) -> Workspace:
    imap_settings = None
    if imap is not None:
        imap_settings = {
            "host": "127.0.0.1",
            "port": imap.port,
            "security": "none",
            "username": imap.user,
            "password_env": IMAP_PASSWORD_ENV,
        }
    kwargs.setdefault("campaign", TWO_STEPS)
    return Workspace(
        root, smtp_port=smtp.port, imap=imap_settings, config_extra=FAST + extra, **kwargs
    )


def start(root: Path, env: dict[str, str], workers: list[Worker], *args: str) -> Worker:
    worker = Worker(root, env, *args)
    workers.append(worker)
    return worker


def status_json(root: Path) -> dict[str, Any]:
    result = CliRunner().invoke(cli, ["--config", str(root / "config.toml"), "status", "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def assert_nothing_half_written(root: Path) -> None:
    assert query(root, "PRAGMA integrity_check") == [("ok",)]
    assert query(root, "SELECT count(*) FROM messages WHERE status = 'sending'") == [(0,)]


def sent_to(smtp: LocalSMTPServer, address: str) -> bytes:
    return next(m.raw for m in smtp.messages if list(m.rcpt_tos) == [address])


# --------------------------------------------------------------------------- the worker


def test_run_sends_reads_logs_and_stops_warm_on_sigterm(
    tmp_path: Path,
    smtp_server: LocalSMTPServer,
    imap_server: LocalIMAPServer,
    env: dict[str, str],
    workers: list[Worker],
) -> None:
    ws = worker_workspace(
        tmp_path,
        smtp_server,
        imap_server,
        '[digest]\nto = "coordinator@district.test"\nat = "00:00"\n',
    )
    ws.add_partners(partner_rows(3))
    ws.close()
    worker = start(tmp_path, env, workers)
    smtp_server.wait_for(4, timeout=15)  # three check-ins and the daily digest
    imap_server.append(
        partner_mail.reply(
            sent_to(smtp_server, "p0001@partners.test"), "We hired two of your students this fall."
        )
    )
    wait_until(
        lambda: query(tmp_path, "SELECT text FROM inbound WHERE kind = 'reply'"),
        10,
        "the reply to be recorded",
    )
    worker.wait_for("reply")

    state = status_json(tmp_path)["worker"]
    assert state["running"] is True and state["pid"] == worker.proc.pid
    assert state["last_cycle_at"] and state["last_read_at"] and state["last_send_at"]
    assert state["last_error"] is None
    text = CliRunner().invoke(cli, ["--config", str(tmp_path / "config.toml"), "status"]).stdout
    assert f"worker: running (pid {worker.proc.pid})" in text
    assert "last read mail: " in text and "last sent: " in text and " ago" in text

    started = time.monotonic()
    assert worker.stop() == 0
    assert time.monotonic() - started < 5
    assert_nothing_half_written(tmp_path)
    assert status_json(tmp_path)["worker"]["running"] is False
    assert query(tmp_path, "SELECT stopped_at IS NOT NULL FROM worker") == [(1,)]
    assert query(tmp_path, "SELECT status FROM digests") == [("sent",)]
    digests = [m for m in smtp_server.messages if m.rcpt_tos == ("coordinator@district.test",)]
    assert len(digests) == 1 and "NEW REPLIES" not in digests[0].message.get_content()

    # logs: one JSON object per line, no password, no message body
    lines = worker.text.splitlines()
    assert lines and all(json.loads(line) for line in lines)
    assert imap_server.password not in worker.text
    assert "We hired two" not in worker.text
    kinds = [e["event"] for e in worker.events()]
    assert kinds[0] == "started" and kinds[-1] == "stopped" and "stop" in kinds


def test_a_second_worker_on_the_same_database_is_refused(
    tmp_path: Path,
    smtp_server: LocalSMTPServer,
    env: dict[str, str],
    workers: list[Worker],
) -> None:
    ws = worker_workspace(tmp_path, smtp_server, None)
    ws.close()
    first = start(tmp_path, env, workers)
    first.wait_for("started")
    for extra in ([], ["--once"]):
        second = subprocess.run(
            [
                sys.executable,
                "-m",
                "outreach",
                "--config",
                str(tmp_path / "config.toml"),
                "run",
                *extra,
            ],
            capture_output=True,
            text=True,
            timeout=20,
            env=env,
        )
        assert second.returncode == 1
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1, second.stderr
        assert lines[0].startswith("error: ") and "already running" in lines[0]
        assert f"pid {first.proc.pid}" in lines[0]
    assert first.stop() == 0


def test_mail_server_outages_are_logged_and_survived(
    tmp_path: Path,
    smtp_server: LocalSMTPServer,
    imap_server: LocalIMAPServer,
    env: dict[str, str],
    workers: list[Worker],
) -> None:
    ws = worker_workspace(tmp_path, smtp_server, imap_server)
    ws.add_partners(partner_rows(2))
    ws.close()
    smtp_server.stop()
    imap_server.stop()
    worker = start(tmp_path, env, workers)
    worker.wait_for("smtp_error")
    worker.wait_for("imap_error")
    assert query(tmp_path, "SELECT count(*) FROM messages WHERE status = 'sent'") == [(0,)]
    wait_until(lambda: status_json(tmp_path)["worker"]["last_error"], 5, "last_error")

    smtp_server.start()
    smtp_server.wait_for(2, timeout=15)
    imap_server.start()
    imap_server.append(
        partner_mail.reply(
            sent_to(smtp_server, "p0000@partners.test"), "Back online, all good here."
        )
    )
    wait_until(
        lambda: query(tmp_path, "SELECT 1 FROM inbound WHERE kind = 'reply'"),
        15,
        "the reply after the IMAP outage",
    )
    assert worker.has("recovered") and worker.has("backoff")
    assert worker.stop() == 0
    assert_nothing_half_written(tmp_path)
    assert query(tmp_path, "SELECT count(*) FROM messages WHERE status = 'sent'") == [(2,)]


def test_sigterm_finishes_the_message_in_flight_and_exits_0(
    tmp_path: Path,
    smtp_server: LocalSMTPServer,
    env: dict[str, str],
    workers: list[Worker],
) -> None:
    smtp_server.delay = 0.6  # every message takes a while inside DATA
    ws = worker_workspace(tmp_path, smtp_server, None, limits="concurrency = 1")
    ws.add_partners(partner_rows(8))
    ws.close()
    worker = start(tmp_path, env, workers)
    wait_until(
        lambda: query(tmp_path, "SELECT 1 FROM messages WHERE status = 'sending'"),
        10,
        "a message in flight",
    )
    assert worker.stop(timeout=5) == 0
    assert_nothing_half_written(tmp_path)
    counts = dict(query(tmp_path, "SELECT status, count(*) FROM messages GROUP BY status"))
    assert counts.get("sent", 0) == len(smtp_server.messages) >= 1
    assert counts.get("queued", 0) >= 1, "it stopped between messages, not after the batch"


def test_a_second_signal_stops_at_once_and_the_database_stays_whole(
    tmp_path: Path,
    smtp_server: LocalSMTPServer,
    env: dict[str, str],
    workers: list[Worker],
) -> None:
    smtp_server.delay = 3.0
    ws = worker_workspace(tmp_path, smtp_server, None, limits="concurrency = 1")
    ws.add_partners(partner_rows(3))
    ws.close()
    worker = start(tmp_path, env, workers)
    wait_until(
        lambda: query(tmp_path, "SELECT 1 FROM messages WHERE status = 'sending'"),
        10,
        "a message in flight",
    )
    worker.proc.send_signal(signal.SIGTERM)
    worker.wait_for("stop")
    started = time.monotonic()
    assert worker.stop(signal.SIGINT, timeout=5) == 128 + signal.SIGINT
    assert time.monotonic() - started < 1.5
    assert query(tmp_path, "PRAGMA integrity_check") == [("ok",)]
    # the message in flight is never resent blindly: the next start reports it
    smtp_server.delay = 0
    again = subprocess.run(
        [
            sys.executable,
            "-m",
            "outreach",
            "--config",
            str(tmp_path / "config.toml"),
            "run",
            "--once",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )
    assert "not resending it blindly" in again.stderr
    assert query(tmp_path, "SELECT count(*) FROM messages WHERE status = 'unknown'") == [(1,)]


def test_refused_credentials_stop_the_worker_with_a_clear_message(
    tmp_path: Path,
    smtp_server_factory: Callable[..., LocalSMTPServer],
    env: dict[str, str],
    workers: list[Worker],
) -> None:
    smtp = smtp_server_factory(username="coordinator", password="right", auth_require_tls=False)
    env["TEST_SMTP_PW"] = "wrong"
    ws = worker_workspace(
        tmp_path, smtp, None, smtp_extra=', username = "coordinator", password_env = "TEST_SMTP_PW"'
    )
    ws.add_partners(partner_rows(1))
    ws.close()
    worker = start(tmp_path, env, workers)
    assert worker.proc.wait(15) == 1
    fatal = worker.has("fatal")
    assert fatal and "login as coordinator refused" in fatal[-1]["message"]
    assert "wrong" not in worker.text
    state = status_json(tmp_path)["worker"]
    assert state["running"] is False and "refused" in state["last_error"]


def test_a_broken_template_refuses_to_start(
    tmp_path: Path,
    smtp_server: LocalSMTPServer,
    env: dict[str, str],
    workers: list[Worker],
) -> None:
    ws = worker_workspace(tmp_path, smtp_server, None)
    ws.close()
    (tmp_path / "templates" / "hello.txt.j2").write_text("Hello {{ partner.name \n")
    worker = start(tmp_path, env, workers)
    assert worker.proc.wait(15) == 2
    assert "template syntax error" in worker.has("fatal")[0]["message"]


def test_sighup_reloads_checked_campaigns_and_keeps_the_last_good_version(
    tmp_path: Path,
    smtp_server: LocalSMTPServer,
    env: dict[str, str],
    workers: list[Worker],
) -> None:
    ws = worker_workspace(tmp_path, smtp_server, None)
    ws.close()
    template = tmp_path / "templates" / "hello.txt.j2"
    worker = start(tmp_path, env, workers)
    worker.wait_for("started")

    template.write_text("Broken {{ partner.name \n")
    worker.proc.send_signal(signal.SIGHUP)
    failed = worker.wait_for("reload_failed")
    assert (
        "template syntax error" in failed[0]["message"] and "hello.txt.j2" in failed[0]["message"]
    )
    ws.add_partners(partner_rows(1))
    ws.close()
    first = smtp_server.wait_for(1, timeout=10)[0]
    assert "How has Org 0 changed?" in first.message.get_content()  # the last good version

    template.write_text("New words for {{ partner.name }}.\n")  # seen by mtime, no signal
    worker.wait_for("reloaded")
    ws.add_partners(partner_rows(2))
    ws.close()
    second = smtp_server.wait_for(2, timeout=10)[1]
    assert "New words for Partner 1." in second.message.get_content()
    assert worker.stop() == 0


def test_sighup_reloads_config_toml_and_says_what_waits_for_a_restart(
    tmp_path: Path,
    smtp_server: LocalSMTPServer,
    env: dict[str, str],
    workers: list[Worker],
) -> None:
    ws = worker_workspace(tmp_path, smtp_server, None)
    ws.close()
    config = tmp_path / "config.toml"
    template = tmp_path / "templates" / "hello.txt.j2"
    template.write_text("Hello {{ partner.name }}, from {{ program }}.\n")
    worker = start(tmp_path, env, workers)
    worker.wait_for("started")
    original = config.read_text()

    # a broken config.toml is reported with its line, and the last good one keeps running
    broken = original.replace('program = "Test CTE"', 'program = "Test CTE"\nbad = = 1')
    config.write_text(broken)
    worker.proc.send_signal(signal.SIGHUP)
    failed = worker.wait_for("reload_failed")
    line = broken.splitlines().index("bad = = 1") + 1
    assert failed[0]["message"].startswith(f"{config}:{line}: TOML syntax error")
    ws.add_partners(partner_rows(1))
    ws.close()
    first = smtp_server.wait_for(1, timeout=10)[0]
    assert "from Test CTE." in first.message.get_content()

    # [template_vars] and limits apply at once; [worker] waits for a restart, and says so
    config.write_text(
        original.replace('program = "Test CTE"', 'program = "Westside CTE"').replace(
            'send_every = "1s"', 'send_every = "2s"'
        )
    )
    worker.proc.send_signal(signal.SIGHUP)
    worker.wait_for("reloaded")
    held = worker.wait_for("restart_needed")
    assert "[worker] changed" in held[0]["message"]
    ws.add_partners(partner_rows(2))
    ws.close()
    second = smtp_server.wait_for(2, timeout=10)[1]
    assert "from Westside CTE." in second.message.get_content()
    assert worker.stop() == 0


def test_imap_idle_wakes_the_reader_before_the_next_poll(
    tmp_path: Path,
    smtp_server: LocalSMTPServer,
    imap_server: LocalIMAPServer,
    env: dict[str, str],
    workers: list[Worker],
) -> None:
    ws = worker_workspace(tmp_path, smtp_server, imap_server)
    (tmp_path / "config.toml").write_text(
        (tmp_path / "config.toml")
        .read_text()
        .replace('poll_every = "1s"', 'poll_every = "5m"\nidle = true')
    )
    ws.add_partners(partner_rows(1))
    ws.close()
    worker = start(tmp_path, env, workers, "--verbose")
    smtp_server.wait_for(1, timeout=10)
    wait_until(
        lambda: [e for e in worker.has("idle") if "IMAP IDLE" in e["message"]], 10, "IDLE to start"
    )
    imap_server.append(partner_mail.reply(sent_to(smtp_server, "p0000@partners.test"), "Hi!"))
    wait_until(
        lambda: query(tmp_path, "SELECT 1 FROM inbound WHERE kind = 'reply'"),
        6,
        "IDLE to wake the reader (the poll is 5 minutes away)",
    )
    assert worker.stop() == 0


def test_idle_sees_every_delivery_even_when_an_answer_arrives_in_pieces(
    imap_server: LocalIMAPServer,
) -> None:
    """pymap writes `* 1 FETCH (FLAGS ()` and its `)` apart. IMAPClient's idle_check read
    them with the socket non-blocking and failed ("unterminated line"), so the watcher waited
    30 s for its retry (and test_imap_idle_wakes_the_reader... failed now and then). Each
    delivery during IDLE must wake it, and the connection must stay usable."""
    import threading

    from outreach.core.settings import ServerSettings
    from outreach.transport.imap import Mailbox

    settings = ServerSettings(
        kind="imap",
        key_path="accounts.default.imap",
        source=Path("config.toml"),
        host=imap_server.host,
        port=imap_server.port,
        security="none",
        username=imap_server.user,
    )
    rounds = 12
    with Mailbox(settings, imap_server.password) as mailbox:
        mailbox.select_readonly("INBOX")
        for number in range(rounds):
            message = partner_mail.unrelated(subject=f"delivery {number}")
            delivery = threading.Timer(0.02 * (number % 3), imap_server.append, args=(message,))
            started = time.monotonic()
            try:  # delivered once IDLE is accepted (pymap reports earlier mail when it ends)
                woke = mailbox.idle_wait(10.0, on_idle=delivery.start)
            finally:
                if delivery.ident is not None:
                    delivery.join()
            took = time.monotonic() - started
            assert woke and took < 5, f"delivery {number}: woke {woke} after {took:.1f} s"
        assert len(mailbox.uids_from(1)) == rounds


# --------------------------------------------------------------------------- job guard


def test_a_failing_job_is_logged_and_the_worker_goes_on(
    tmp_path: Path,
    smtp_server: LocalSMTPServer,
) -> None:
    ws = worker_workspace(tmp_path, smtp_server, None)
    logger = logging.getLogger("outreach.test.guard")
    service = Service(ws.config, ws.worker(), logger)
    try:

        def bug() -> None:
            raise ZeroDivisionError("a bug")

        service.run_job("send", bug)
        assert not service.stopping and service.fatal is None
        assert "ZeroDivisionError: a bug" in ws.store.worker_state()["last_error"]
        assert service.backoffs["send"].failures == 1

        def refused() -> None:
            raise AuthenticationError("SMTP 127.0.0.1:25: login as x refused")

        service.backoffs["send"].not_before = 0
        service.run_job("send", refused)
        assert service.stopping and isinstance(service.fatal, AuthenticationError)
    finally:
        service.files.cleanup()
        ws.close()


def test_one_partner_that_breaks_rendering_does_not_stop_the_others(
    tmp_path: Path,
    smtp_server: LocalSMTPServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import outreach.engine.sending

    ws = worker_workspace(tmp_path, smtp_server, None)
    ws.add_partners(partner_rows(3))
    real = outreach.engine.sending.build_message

    def build(rendered: Any, partner: Any, *args: Any) -> Any:
        if partner.email == "p0001@partners.test":
            raise KeyError("surprise")
        return real(rendered, partner, *args)

    monkeypatch.setattr(outreach.engine.sending, "build_message", build)
    report = ws.worker().send_cycle()
    assert report.sent == 2 and "KeyError" in report.errors[0]
    ws.close()


def test_one_message_that_breaks_reading_is_recorded_and_the_batch_goes_on(
    tmp_path: Path,
    smtp_server: LocalSMTPServer,
    imap_server: LocalIMAPServer,
    env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import outreach.engine.ingest

    ws = worker_workspace(tmp_path, smtp_server, imap_server)
    ws.add_partners(partner_rows(2))
    worker = ws.worker()
    worker.cycle()
    for address, words in (("p0000@partners.test", "Crash on me"), ("p0001@partners.test", "Fine")):
        imap_server.append(partner_mail.reply(sent_to(smtp_server, address), words))
    real = outreach.engine.ingest.match_message

    def match(result: Any, *args: Any) -> Any:
        if result.headers.from_addr == "p0000@partners.test":
            raise ValueError("a bug")
        return real(result, *args)

    monkeypatch.setattr(outreach.engine.ingest, "match_message", match)
    report = worker.read_cycle()
    assert report.recorded == 1 and report.kinds == {"error": 1, "reply": 1}
    kinds = dict(query(tmp_path, "SELECT kind, error FROM inbound"))
    assert kinds["error"] == "ValueError: a bug" and "reply" in kinds
    assert worker.read_cycle().seen == 0  # the checkpoint moved past both
    ws.close()


# --------------------------------------------------------------------------- pure parts


@pytest.mark.parametrize(
    ("interval", "failures", "expected"),
    [
        (1.0, 0, 0.0),
        (1.0, 1, 1.0),
        (1.0, 2, 2.0),
        (1.0, 4, 8.0),
        (1.0, 30, 900.0),
        (120.0, 3, 480.0),
        (120.0, 9, 900.0),
        (3600.0, 2, 3600.0),
    ],
)
def test_backoff_doubles_up_to_a_cap(interval: float, failures: int, expected: float) -> None:
    assert backoff_delay(interval, failures) == expected


def test_backoff_state() -> None:
    backoff = Backoff(interval=2.0)
    assert backoff.ready(0.0)
    assert backoff.failed(10.0) == 2.0 and not backoff.ready(11.0) and backoff.ready(12.0)
    assert backoff.failed(12.0) == 4.0
    assert backoff.succeeded() and backoff.failures == 0 and not backoff.succeeded()


def test_a_reloaded_config_keeps_what_only_a_restart_changes(
    tmp_path: Path, smtp_server: LocalSMTPServer, imap_server: LocalIMAPServer
) -> None:
    started = worker_workspace(tmp_path, smtp_server, imap_server).config
    account = started.accounts["default"]
    assert account.imap is not None
    fresh = replace(
        started,
        database=tmp_path / "other.db",
        worker=replace(started.worker, idle=True),
        template_vars={"program": "Westside CTE"},
        accounts={"default": replace(account, imap=replace(account.imap, port=1))},
    )
    live, held = live_config(started, fresh)
    assert live.database == started.database and live.worker == started.worker
    assert live.template_vars == {"program": "Westside CTE"}
    assert live.accounts["default"].imap.port == 1  # type: ignore[union-attr]
    assert held == ["outreach.database", "[worker]"]  # IDLE was off when it started
    idle = replace(started, worker=replace(started.worker, idle=True))
    assert live_config(idle, replace(fresh, worker=idle.worker))[1] == [
        "outreach.database",
        "accounts.default.imap (for IMAP IDLE; reading uses the new one)",
    ]
    assert live_config(started, started) == (started, [])


def test_a_reload_naming_a_password_variable_the_worker_lacks_is_refused(
    tmp_path: Path,
    smtp_server: LocalSMTPServer,
    imap_server: LocalIMAPServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(IMAP_PASSWORD_ENV, raising=False)  # unset at the start already
    started = worker_workspace(tmp_path, smtp_server, imap_server).config
    assert unset_password_envs(started, started) == [], "not news: the start decided on it"
    config = tmp_path / "config.toml"
    config.write_text(config.read_text().replace(IMAP_PASSWORD_ENV, "OUTREACH_TEST_UNSET_PW"))
    fresh = load_config(config)
    (problem,) = unset_password_envs(started, fresh)
    lines = config.read_text().splitlines()
    line = next(n for n, text in enumerate(lines, 1) if "OUTREACH_TEST_UNSET_PW" in text)
    assert problem.startswith(f"{config}:{line}: accounts.default.imap.password_env: ")
    assert "OUTREACH_TEST_UNSET_PW is not set for the running worker" in problem
    monkeypatch.setenv("OUTREACH_TEST_UNSET_PW", "x")
    assert unset_password_envs(started, fresh) == []


def test_fingerprint_sees_edits(tmp_path: Path, smtp_server: LocalSMTPServer) -> None:
    ws = worker_workspace(tmp_path, smtp_server, None)
    before = fingerprint(ws.config)
    assert before == fingerprint(ws.config)
    (tmp_path / "templates" / "hello.txt.j2").write_text("changed, and longer than before\n")
    assert fingerprint(ws.config) != before
    before = fingerprint(ws.config)
    config = tmp_path / "config.toml"
    config.write_text(config.read_text() + "\n# an edit\n")
    assert fingerprint(ws.config) != before


CHICAGO = ZoneInfo("America/Chicago")


@pytest.mark.parametrize(
    ("local", "last", "due"),
    [
        (datetime(2026, 11, 30, 6, 59, tzinfo=CHICAGO), None, False),
        (datetime(2026, 11, 30, 7, 0, tzinfo=CHICAGO), None, True),
        (datetime(2026, 11, 30, 7, 0, tzinfo=CHICAGO), "2026-11-30", False),
        (datetime(2026, 11, 30, 23, 0, tzinfo=CHICAGO), "2026-11-29", True),  # down at 7: late
        # 03:00 UTC on Dec 1 is still Nov 30 in Chicago: the day is the coordinator's
        (datetime(2026, 12, 1, 3, 0, tzinfo=UTC), "2026-11-30", False),
    ],
)
def test_digest_is_due_once_a_day_after_its_time(
    local: datetime, last: str | None, due: bool
) -> None:
    settings = DigestSettings(to="c@d.test", account="default", at=clock_time(7, 0))
    assert digest_due(local, settings, CHICAGO, last) is due


def test_the_daily_digest_sums_up_the_day_once(
    tmp_path: Path,
    smtp_server: LocalSMTPServer,
    imap_server: LocalIMAPServer,
    env: dict[str, str],
) -> None:
    ws = worker_workspace(
        tmp_path,
        smtp_server,
        imap_server,
        '[digest]\nto = "Coordinator <coordinator@district.test>"\nat = "07:00"\n',
        campaign=ALWAYS_OPEN
        + """
[[steps]]
template = "hello"
subject = "Check-in"
[[steps]]
template = "nudge"
after = "1d"
""",
    )
    ws.add_partners(partner_rows(6))
    worker = ws.worker()
    worker.cycle()
    p = [f"p{i:04d}@partners.test" for i in range(6)]
    imap_server.append(
        partner_mail.reply(sent_to(smtp_server, p[0]), "Our clinic added a night shift.")
    )
    imap_server.append(partner_mail.out_of_office(sent_to(smtp_server, p[1]), date(2026, 12, 7)))
    imap_server.append(partner_mail.bounce(sent_to(smtp_server, p[2])))
    imap_server.append(partner_mail.unsubscribe(sent_to(smtp_server, p[3])))
    worker.read_cycle()
    logger = logging.getLogger("outreach.test.digest")

    assert send_digest(ws.config, ws.campaigns, ws.store, ws.clock(), logger) == "sent"
    digest = smtp_server.messages[-1]
    assert digest.rcpt_tos == ("coordinator@district.test",)
    message = digest.message
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["Subject"].startswith(
        "outreach digest 2026-11-24: 1 new reply, 1 auto-reply, 1 bounce, 1 opt-out, 2 due tomorrow"
    )
    text = message.get_content()
    assert "Our clinic added a night shift." in text
    assert "Partner 1 <p0001@partners.test>" in text and "Monday 7 December 2026" in text
    assert "p0002@partners.test" in text and "hard bounce" in text
    assert "asked to be removed" in text
    tomorrow = text.split("DUE TOMORROW (2)")[1]
    assert "checkin step 2" in tomorrow and p[4] in tomorrow and p[5] in tomorrow

    # not twice the same day, even after a restart; again the next day
    assert send_digest(ws.config, ws.campaigns, ws.store, ws.clock(), logger) is None
    ws.clock.advance(days=1)
    assert send_digest(ws.config, ws.campaigns, ws.store, ws.clock(), logger) == "sent"
    second = smtp_server.messages[-1].message
    assert "0 new replies" in second["Subject"]
    assert [r[0] for r in query(tmp_path, "SELECT day FROM digests ORDER BY day")] == [
        "2026-11-24",
        "2026-11-25",
    ]
    ws.close()


def test_digest_waits_for_the_mail_server(
    tmp_path: Path,
    smtp_server: LocalSMTPServer,
) -> None:
    ws = worker_workspace(
        tmp_path, smtp_server, None, '[digest]\nto = "coordinator@district.test"\n'
    )
    logger = logging.getLogger("outreach.test.digest")
    smtp_server.stop()
    assert send_digest(ws.config, ws.campaigns, ws.store, ws.clock(), logger) == "deferred"
    assert query(tmp_path, "SELECT count(*) FROM digests") == [(0,)]
    smtp_server.start()
    assert send_digest(ws.config, ws.campaigns, ws.store, ws.clock(), logger) == "sent"
    ws.close()


def test_run_once_leaves_a_heartbeat(tmp_path: Path, smtp_server: LocalSMTPServer) -> None:
    ws = worker_workspace(tmp_path, smtp_server, None)
    ws.add_partners(partner_rows(1))
    result = ws.cli("run", "--once")
    assert result.exit_code == 0, result.output
    state = status_json(tmp_path)["worker"]
    assert state["running"] is False and state["last_send_at"] and state["last_error"] is None
    ws.close()


# --------------------------------------------------------------------------- service install


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.delenv("OUTREACH_CONFIG", raising=False)
    return home


def test_service_install_writes_a_user_unit_and_never_overwrites(
    tmp_path: Path,
    smtp_server: LocalSMTPServer,
    home: Path,
) -> None:
    project = tmp_path / "my project"
    project.mkdir()
    ws = worker_workspace(project, smtp_server, None)
    unit_path = home / ".config" / "systemd" / "user" / "outreach.service"

    printed = ws.cli("service", "install", "--print")
    assert printed.exit_code == 0 and not unit_path.exists()
    installed = ws.cli("service", "install", "--user")
    assert installed.exit_code == 0, installed.output
    assert "systemctl --user enable --now outreach" in installed.stdout
    unit = unit_path.read_text()
    assert unit == printed.stdout
    assert "Restart=on-failure" in unit
    assert f"WorkingDirectory={project}\n" in unit
    exec_start = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    assert f'--config "{project}/config.toml" run' in exec_start
    program = exec_start.removeprefix("ExecStart=").split()[0]
    assert Path(program).is_absolute() and os.access(program, os.X_OK)

    unit_path.write_text("# mine\n")
    again = ws.cli("service", "install", "--user")
    assert again.exit_code == 1 and "already exists" in again.stderr
    assert unit_path.read_text() == "# mine\n"
    forced = ws.cli("service", "install", "--user", "--force")
    assert forced.exit_code == 0 and unit_path.read_text() == unit
    assert ws.cli("service", "install").exit_code == 2
    ws.close()


def test_the_unit_starts_the_worker(
    tmp_path: Path,
    smtp_server: LocalSMTPServer,
    home: Path,
    env: dict[str, str],
) -> None:
    """What systemd would run: ExecStart from the printed unit, started and stopped."""
    import shlex

    ws = worker_workspace(tmp_path, smtp_server, None)
    unit = ws.cli("service", "install", "--print").stdout
    exec_start = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    argv = shlex.split(exec_start.removeprefix("ExecStart=").replace("%%", "%"))
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    try:
        wait_until(lambda: status_json(tmp_path)["worker"]["started_at"], 15, "the worker")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    ws.close()


def test_unit_escaping() -> None:
    from outreach.cli.service import systemd_escape

    assert systemd_escape("/usr/bin/outreach") == "/usr/bin/outreach"
    assert systemd_escape("/srv/100%/a b") == '"/srv/100%%/a b"'
    assert systemd_escape("/x/$HOME") == "/x/$$HOME"


def test_a_template_broken_for_everyone_blocks_a_reload_but_one_partners_data_does_not(
    tmp_path: Path,
    smtp_server: LocalSMTPServer,
) -> None:
    from outreach.core.model import Partner
    from outreach.engine.service import render_check

    ws = worker_workspace(tmp_path, smtp_server, None)
    (tmp_path / "templates" / "hello.txt.j2").write_text("Hello from {{ partner.city }}\n")
    campaign = ws.campaigns[0]
    with_city = Partner(email="a@partners.test", name="A", fields={"city": "Lincoln"})
    without = Partner(email="b@partners.test", name="B")
    problems, warnings = render_check(ws.config, campaign, [with_city, without])
    assert problems == [] and len(warnings) == 1 and "b@partners.test" in warnings[0]
    problems, warnings = render_check(ws.config, campaign, [without])
    assert len(problems) == 1 and "city" in problems[0] and warnings == []
    assert render_check(ws.config, campaign, [with_city]) == ([], [])
    ws.close()


def test_the_running_worker_sends_each_owner_their_digest(
    tmp_path: Path,
    smtp_server: LocalSMTPServer,
    imap_server: LocalIMAPServer,
    monkeypatch: pytest.MonkeyPatch,
    workers: list[Worker],
) -> None:
    """[digest] per_owner through `outreach run` itself (the service's digest job), not only
    through send_owner_digests: each owner's digest goes to the address of their account,
    from it, about their own partners; the coordinator gets none without `to`."""
    from team import ROSTER, team_workspace

    with (
        LocalIMAPServer(user="jlee@district.test", password="jlee-pw") as jlee,
        LocalIMAPServer(user="akim@district.test", password="akim-pw") as akim,
    ):
        mailboxes = {"jlee": jlee, "akim": akim, "office": imap_server}
        ws = team_workspace(
            tmp_path,
            smtp_server.port,
            mailboxes,
            monkeypatch,
            extra='[digest]\nper_owner = true\nat = "00:00"\n',
        )
        ws.add_partners(ROSTER)
        ws.clock.moment = datetime.now(UTC)  # the worker process below runs on the real clock
        ws.worker().send_cycle()
        for mailbox, email, words in (
            (jlee, "nurse@mercy.test", "Nurse words for jlee."),
            (akim, "it@netforge.test", "IT words for akim."),
        ):
            checkin = next(m for m in smtp_server.messages if list(m.rcpt_tos) == [email])
            mailbox.append(partner_mail.reply(checkin.raw, words, when=ws.clock()))
        ws.close()
        start(tmp_path, dict(os.environ), workers)  # reads, sends, then the digest job

        def digests() -> list[Any]:
            return [m for m in smtp_server.messages if "digest" in str(m.message["Subject"])]

        wait_until(lambda: len(digests()) >= 2, 30, "two owners' digests")
        by_owner = {m.rcpt_tos: m for m in digests()}
        assert set(by_owner) == {("jlee@district.test",), ("akim@district.test",)}
        to_jlee = by_owner[("jlee@district.test",)]
        assert to_jlee.mail_from == "jlee@district.test"
        text = to_jlee.message.get_body(("plain",)).get_content()
        assert "Nurse words for jlee." in text and "IT words for akim." not in text
        to_akim = by_owner[("akim@district.test",)].message.get_body(("plain",)).get_content()
        assert "IT words for akim." in to_akim and "Nurse words for jlee." not in to_akim
