"""The worker with OAuth2 accounts, against real local servers: an aiosmtpd SMTP server that
takes XOAUTH2 and OAUTHBEARER (validating tokens with the local authorization server) and
the authorization server itself. Tokens are renewed without a person; an account whose
sign-in ends waits (its messages stay queued, nothing is lost or sent twice) while the
others go on. (IMAP with XOAUTH2/OAUTHBEARER: pymap offers only PLAIN and LOGIN, so that
side is tested against Dovecot, tests/integration/test_oauth2_stack.py.)"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import assert_no_traceback, invoke
from test_oauth2_signin import USER, approve_when_asked, oauth2_table, signed_in
from workspace import Workspace, partner_rows

from outreach.cli import cli
from outreach.core.errors import SignInNeeded
from outreach.core.sasl import Mechanism
from outreach.core.settings import Limits
from outreach.engine.digest import collect, render_text, send_digest
from outreach.engine.sending import SendReport
from outreach.store.token_file import token_file_path
from outreach.testing.oauth2_server import LocalOAuth2Server
from outreach.testing.smtp_server import LocalSMTPServer
from outreach.transport.login import PasswordLogin
from outreach.transport.smtp import Envelope, Outcome, Result, deliver_batch


@pytest.fixture
def bearer_smtp(
    smtp_server_factory: Callable[..., LocalSMTPServer], oauth2_server: LocalOAuth2Server
) -> LocalSMTPServer:
    """SMTP that takes a token when the authorization server says it is valid and the
    user's (what Postfix + Dovecot's oauth2 passdb do)."""
    return smtp_server_factory(bearer=oauth2_server.introspect_user)


def oauth_ws(
    root: Path, server: LocalOAuth2Server, smtp: LocalSMTPServer, sasl: str = "", **kwargs: str
) -> Workspace:
    extra = f', username = "{USER}", auth = "oauth2"' + (f', sasl = "{sasl}"' if sasl else "")
    return Workspace(
        root,
        smtp_port=smtp.port,
        smtp_extra=extra,
        account_extra=oauth2_table(server),
        from_header=f"C <{USER}>",
        **kwargs,
    )


def statuses(ws: Workspace) -> Counter[str]:
    return Counter(r["status"] for r in ws.store.query("SELECT status FROM messages"))


# --------------------------------------------------------------------------- sending


@pytest.mark.parametrize("sasl", ["", "oauthbearer"])
def test_a_campaign_goes_out_over_xoauth2_or_oauthbearer(
    tmp_path: Path, oauth2_server: LocalOAuth2Server, bearer_smtp: LocalSMTPServer, sasl: str
) -> None:
    ws = oauth_ws(tmp_path, oauth2_server, bearer_smtp, sasl)
    signed_in(ws, oauth2_server)
    ws.add_partners(partner_rows(3))
    report = ws.worker().send_cycle()
    assert (report.sent, report.errors) == (3, [])
    mechanism = "OAUTHBEARER" if sasl else "XOAUTH2"
    assert {(m, u, ok) for m, u, ok, _ in bearer_smtp.bearer_logins} == {(mechanism, USER, True)}
    assert {m.auth_user for m in bearer_smtp.messages} == {USER}
    ws.close()


def test_an_expired_token_is_renewed_before_the_next_cycle(
    tmp_path: Path, oauth2_server: LocalOAuth2Server, bearer_smtp: LocalSMTPServer
) -> None:
    ws = oauth_ws(tmp_path, oauth2_server, bearer_smtp)
    signed_in(ws, oauth2_server)
    ws.add_partners(partner_rows(2))
    worker = ws.worker()
    assert worker.send_cycle().sent == 2
    assert oauth2_server.refresh_count() == 0
    first_refresh = oauth2_server.issued.refresh[-1]
    worker.logins.clock = lambda: datetime.now(UTC) + timedelta(hours=1)  # an hour later
    ws.clock.advance(days=2)
    assert worker.send_cycle().sent == 2
    assert oauth2_server.refresh_count() == 1
    # the rotated refresh token replaced the old one in the token file
    stored = json.loads(token_file_path(ws.config.database).read_text())
    assert stored["accounts"]["default"]["refresh_token"] == oauth2_server.issued.refresh[-1]
    assert first_refresh not in json.dumps(stored)
    assert all(ok for _, _, ok, _ in bearer_smtp.bearer_logins)  # never a refused login
    ws.close()


def test_a_token_the_server_refuses_is_renewed_once_and_tried_again(
    tmp_path: Path, oauth2_server: LocalOAuth2Server, bearer_smtp: LocalSMTPServer
) -> None:
    ws = oauth_ws(tmp_path, oauth2_server, bearer_smtp)
    signed_in(ws, oauth2_server)
    ws.add_partners(partner_rows(2))
    oauth2_server.expire_access_tokens()  # dead at the server, still "valid" for us
    report = ws.worker().send_cycle()
    assert (report.sent, report.errors) == (2, [])
    assert oauth2_server.refresh_count() == 1
    # each connection was refused once (its error challenge answered as XOAUTH2 wants, with
    # an empty response), then logged in with the one renewed token
    logins = bearer_smtp.bearer_logins
    refused = [answer for _, _, ok, answer in logins if not ok]
    assert refused and refused == [b""] * len(refused) and len(logins) == 2 * len(refused)
    assert [ok for _, _, ok, _ in logins] == [False] * len(refused) + [True] * len(refused)
    ws.close()


def test_revoked_sign_in_keeps_the_messages_queued_until_a_new_login(
    tmp_path: Path, oauth2_server: LocalOAuth2Server, bearer_smtp: LocalSMTPServer
) -> None:
    ws = oauth_ws(tmp_path, oauth2_server, bearer_smtp)
    signed_in(ws, oauth2_server)
    ws.add_partners(partner_rows(3))
    oauth2_server.revoke_user(USER)  # the admin ended the sessions; nobody told outreach
    worker = ws.worker()
    for _ in range(3):  # cycle after cycle: nothing fails, nothing counts as an attempt
        report = worker.send_cycle()
        ws.clock.advance(hours=7)
        assert report.sent == 0
        assert any("run `outreach auth login default`" in e for e in report.errors), report
    assert statuses(ws) == {"queued": 3}
    assert {r["attempts"] for r in ws.store.query("SELECT attempts FROM messages")} == {0}
    assert bearer_smtp.messages == []
    status = json.loads(invoke(["status", "--json"], project=ws.root).stdout)
    (waiting,) = status["sign_in_needed"]
    assert waiting["account"] == "default" and waiting["command"] == "outreach auth login default"
    assert "invalid_grant" in waiting["reason"]
    assert "sign-in needed" in invoke(["status"], project=ws.root).stdout
    once = invoke(["run", "--once"], project=ws.root)
    assert once.exit_code == 1 and "outreach auth login default" in once.output

    signed_in(ws, oauth2_server)  # the coordinator signs in again
    report = worker.send_cycle()
    assert (report.sent, report.errors) == (3, [])
    assert statuses(ws) == {"sent": 3}
    assert sorted(m.rcpt_tos[0] for m in bearer_smtp.messages) == sorted(
        p["email"] for p in partner_rows(3)
    )  # each once
    assert json.loads(invoke(["status", "--json"], project=ws.root).stdout)["sign_in_needed"] == []
    ws.close()


def test_one_account_waiting_does_not_hold_back_another(
    tmp_path: Path,
    oauth2_server: LocalOAuth2Server,
    bearer_smtp: LocalSMTPServer,
    smtp_server: LocalSMTPServer,
) -> None:
    second = (
        f'[accounts.other]\nfrom = "Other <other@district.test>"\n'
        f'smtp = {{ host = "127.0.0.1", port = {smtp_server.port}, security = "none" }}\n'
    )
    ws = oauth_ws(tmp_path, oauth2_server, bearer_smtp, config_extra=second)
    (ws.root / "campaigns" / "other.toml").write_text(
        'account = "other"\n' + (ws.root / "campaigns" / "checkin.toml").read_text()
    )
    ws.add_partners(partner_rows(2))  # never signed in
    report = ws.worker().send_cycle()
    assert report.sent == 2 and len(smtp_server.messages) == 2
    assert [e for e in report.errors if "accounts.default: sign-in needed (not signed in)" in e]
    by_account = Counter(
        (r["account"], r["status"]) for r in ws.store.query("SELECT account, status FROM messages")
    )
    # the account that is not signed in renders nothing: it is planned once it can send
    assert by_account == {("other", "sent"): 2}
    assert [m for m in smtp_server.messages if "coordinator" in m.mail_from] == []
    ws.close()


class FadingLogin:
    """A login whose account must sign in again from the second connection on (the
    refresh was refused between two connections of one batch)."""

    username = USER
    mechanism = Mechanism.XOAUTH2
    blocking = False

    def __init__(self, token: str) -> None:
        self.token = token
        self.calls = 0

    def secret(self) -> str:
        self.calls += 1
        if self.calls > 1:
            raise SignInNeeded("default", "refresh refused")
        return self.token

    def renew(self, refused: str) -> str | None:
        return None

    def refused_hint(self) -> str:
        return ""


def test_a_message_held_mid_batch_goes_back_to_the_queue_without_an_attempt(
    tmp_path: Path, oauth2_server: LocalOAuth2Server, bearer_smtp: LocalSMTPServer
) -> None:
    token = oauth2_server.issue(USER)["access_token"]
    ws = oauth_ws(tmp_path, oauth2_server, bearer_smtp)
    settings = ws.config.accounts["default"].smtp
    bearer_smtp.drop_after(1, reply="421 4.3.2 closing")  # the second MAIL: reconnect
    results: list[tuple[int, Outcome]] = []

    def ledger(done: object, claims: list[Envelope]) -> set[int]:
        results.extend((e.key, r.outcome) for e, r in done)  # type: ignore[attr-defined]
        return {e.key for e in claims}

    envelopes = [
        Envelope(i, USER, f"p{i}@partners.test", b"Subject: x\r\n\r\nx\r\n") for i in (1, 2)
    ]
    with pytest.raises(SignInNeeded):
        asyncio.run(
            deliver_batch(settings, FadingLogin(token), Limits(concurrency=1), envelopes, ledger)
        )
    assert results == [(1, Outcome.SENT), (2, Outcome.HELD)]

    # the sender turns HELD into the row's old state: queued, the attempt not counted
    ws.add_partners(partner_rows(1))
    sender, sender_report = ws.worker().sender, SendReport()
    sender.queue_due(sender_report)
    (row,) = ws.store.sendable("default", ws.clock())
    ws.store.mark_sending([row.id], ws.clock())
    sender.record_results(
        ws.config.accounts["default"], [(row, Result(Outcome.HELD))], sender_report
    )
    (after,) = ws.store.query("SELECT status, attempts FROM messages")
    assert (after["status"], after["attempts"]) == ("queued", 0)
    ws.close()


def test_token_cmd_gives_the_token(
    tmp_path: Path, oauth2_server: LocalOAuth2Server, bearer_smtp: LocalSMTPServer
) -> None:
    token_file = tmp_path / "token.txt"
    token_file.write_text(oauth2_server.issue(USER)["access_token"] + "\n")
    ws = Workspace(
        tmp_path / "p",
        smtp_port=bearer_smtp.port,
        smtp_extra=f', username = "{USER}", auth = "oauth2"',
        account_extra=f'oauth2 = {{ token_cmd = "cat {token_file}" }}',
        from_header=f"C <{USER}>",
    )
    ws.add_partners(partner_rows(2))
    assert ws.worker().send_cycle().sent == 2
    (row,) = json.loads(invoke(["auth", "status", "--json"], project=ws.root).stdout)
    assert (row["auth"], row["signed_in"]) == ("oauth2", True)
    login = invoke(["auth", "login", "default"], project=ws.root)
    assert login.exit_code == 2 and "token_cmd" in login.output
    ws.close()


# --------------------------------------------------------------------------- check, digest


def test_check_reports_an_account_not_signed_in_without_the_network(
    tmp_path: Path, oauth2_server: LocalOAuth2Server, bearer_smtp: LocalSMTPServer
) -> None:
    ws = oauth_ws(tmp_path, oauth2_server, bearer_smtp)
    oauth2_server.stop()  # no server to ask: check does not try
    bearer_smtp.stop()
    result = invoke(["check"], project=ws.root)
    assert result.exit_code == 0
    assert (
        "warning: accounts.default: not signed in (not signed in): run `outreach auth "
        "login default`"
    ) in result.output
    ws.close()


def test_check_connect_logs_in_to_each_server_and_names_a_failure(
    tmp_path: Path, oauth2_server: LocalOAuth2Server, bearer_smtp: LocalSMTPServer
) -> None:
    ws = oauth_ws(tmp_path, oauth2_server, bearer_smtp)
    signed_in(ws, oauth2_server)
    result = invoke(["check", "--connect"], project=ws.root)
    assert result.exit_code == 0, result.output
    assert (
        f"ok: accounts.default: SMTP 127.0.0.1:{bearer_smtp.port} logged in as {USER} (XOAUTH2)"
    ) in result.output
    bearer_smtp.bearer = lambda token: "someone.else@district.test"  # a token for another user
    result = invoke(["check", "--connect"], project=ws.root)
    assert result.exit_code == 1
    assert (
        f"error: accounts.default: SMTP 127.0.0.1:{bearer_smtp.port}: login as {USER} refused: 535"
    ) in result.output
    ws.close()


def test_the_digest_names_accounts_that_wait_for_a_sign_in(
    tmp_path: Path,
    oauth2_server: LocalOAuth2Server,
    bearer_smtp: LocalSMTPServer,
    smtp_server: LocalSMTPServer,
) -> None:
    second = (
        f'[accounts.office]\nfrom = "Office <office@district.test>"\n'
        f'smtp = {{ host = "127.0.0.1", port = {smtp_server.port}, security = "none" }}\n'
        '[digest]\nto = "jordan@district.test"\naccount = "office"\nat = "07:00"\n'
    )
    ws = oauth_ws(tmp_path, oauth2_server, bearer_smtp, config_extra=second)
    status = send_digest(ws.config, ws.campaigns, ws.store, ws.clock(), ws.logger)
    assert status == "sent"
    text = smtp_server.wait_for(1)[0].message.get_content()
    assert "SIGN-IN NEEDED (1)" in text
    assert "- default: not signed in; its messages wait in the queue" in text
    assert "`outreach auth login default`" in text
    quiet = collect(ws.store, ws.config, ws.campaigns, ws.clock(), ws.clock())
    assert "SIGN-IN" not in render_text(quiet)
    ws.close()


# --------------------------------------------------------------------------- secrets


def test_tokens_never_reach_output_logs_database_or_exports(
    tmp_path: Path, oauth2_server: LocalOAuth2Server, bearer_smtp: LocalSMTPServer
) -> None:
    ws = oauth_ws(tmp_path, oauth2_server, bearer_smtp)
    ws.add_partners(partner_rows(3))
    ws.close()
    config = str(ws.root / "config.toml")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OUTREACH_")}
    outputs: list[bytes] = []

    def run(*args: str) -> subprocess.CompletedProcess[bytes]:
        done = subprocess.run(
            [sys.executable, "-m", "outreach", "--config", config, *args],
            capture_output=True,
            env=env,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )
        outputs.extend([done.stdout, done.stderr])
        return done

    approver = approve_when_asked(oauth2_server)
    assert run("auth", "login", "default").returncode == 0
    approver.join(5)
    assert run("run", "--once", "--log-json", "-v").returncode == 0
    oauth2_server.expire_access_tokens()  # refused once, renewed
    assert run("check", "--connect").returncode == 0
    oauth2_server.revoke_user(USER)  # and a sign-in that ends, in every output
    oauth2_server.expire_access_tokens()
    roster = tmp_path / "more.csv"
    roster.write_text("email,name,organization\nnew1@partners.test,New One,Org N1\n")
    assert run("partners", "import", str(roster)).returncode == 0
    for flags in (["--log-json", "-v"], ["-v"]):
        assert run("run", "--once", *flags).returncode == 1
    assert run("check", "--connect").returncode == 1
    for command in (
        ["auth", "status"],
        ["auth", "status", "--json"],
        ["status"],
        ["status", "--json"],
        ["log"],
        ["check"],
        *[
            ["export", what, "--format", fmt]
            for what in ("events", "partners")
            for fmt in ("jsonl", "csv")
        ],
    ):
        result = CliRunner().invoke(cli, ["--config", config, *command], env=env)
        assert_no_traceback(result)
        outputs += [result.stdout_bytes, result.stderr_bytes]
    assert run("auth", "logout", "default").returncode == 0

    assert b'"event": "sent"' in b"".join(outputs) and b"sign-in needed" in b"".join(outputs)
    databases = [p.read_bytes() for p in ws.root.glob("outreach.db*")]
    assert databases
    secrets = oauth2_server.issued.all()
    assert len(secrets) >= 4
    for token in secrets:
        for index, blob in enumerate(outputs):
            assert token.encode() not in blob, f"a token in output #{index}"
        for blob in databases:
            assert token.encode() not in blob, "a token in the database"


def test_a_password_login_never_shows_its_password_in_a_repr() -> None:
    assert "hunter2" not in repr(PasswordLogin("u", "hunter2"))


# --------------------------------------------------------------------------- the service


def test_the_running_worker_waits_for_a_sign_in_and_then_goes_on(
    tmp_path: Path,
    oauth2_server: LocalOAuth2Server,
    bearer_smtp: LocalSMTPServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`outreach run`: an account that is not signed in does not stop the worker; it says
    so once, and sends as soon as someone signs in."""
    from test_service import FAST, TWO_STEPS, start

    monkeypatch.delenv("OUTREACH_CONFIG", raising=False)
    ws = oauth_ws(tmp_path, oauth2_server, bearer_smtp, config_extra=FAST, campaign=TWO_STEPS)
    ws.add_partners(partner_rows(2))
    ws.close()
    workers: list = []
    try:
        worker = start(tmp_path, dict(os.environ), workers)
        (said,) = worker.wait_for("signin_needed")
        assert said["level"] == "error" and "outreach auth login default" in said["message"]
        time.sleep(2.5)  # a few more cycles: still running, said once, nothing sent
        assert worker.proc.poll() is None and len(worker.has("signin_needed")) == 1
        assert bearer_smtp.messages == []
        signed_in(ws, oauth2_server)
        worker.wait_for("signed_in")
        bearer_smtp.wait_for(2)
        assert worker.stop() == 0
    finally:
        for started in workers:
            started.close()
    assert sorted(m.rcpt_tos[0] for m in bearer_smtp.messages) == sorted(
        p["email"] for p in partner_rows(2)
    )
