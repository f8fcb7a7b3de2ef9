"""OAuth2 against the real stack: Dovecot's oauth2 passdb (XOAUTH2 and OAUTHBEARER, tokens
checked by introspection, RFC 7662) and Postfix submission authenticating through it, with
the session's local authorization server (conftest: ``mailstack.oauth2``).

A person signs in with the device flow (the test approves the code at the server's
verification page, as they would in a browser); the campaign goes out over submission +
STARTTLS + XOAUTH2; replies are read over IMAPS with XOAUTH2 and with OAUTHBEARER; tokens
expire and are renewed without a person; a revoked sign-in makes the account wait and a
new one resumes it, nothing lost or sent twice; token_cmd works; no token ever shows.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import requests
from click.testing import CliRunner
from workspace import Workspace

from outreach.cli import cli
from outreach.engine.signin import sign_in
from outreach.store.token_file import TokenFile, token_file_path
from outreach.testing import partner_mail
from outreach.testing.oauth2_server import LocalOAuth2Server

from .test_campaign_stack import submit_raw

if TYPE_CHECKING:
    from conftest import Mailstack


def oauth2_workspace(
    root: Path,
    stack: Mailstack,
    server: LocalOAuth2Server,
    coordinator: str,
    imap_sasl: str = "xoauth2",
    oauth2: str | None = None,
) -> Workspace:
    """An account on the stack that signs in with OAuth2 on both servers: submission with
    STARTTLS, IMAPS, both verified against the stack's certificate."""
    urls = server.custom_endpoints()
    table = oauth2 or (
        'oauth2 = { provider = "custom", client_id = "outreach-district", scopes = ["mail"], '
        + ", ".join(f'{k} = "{v}"' for k, v in urls.items())
        + " }"
    )
    imap = {
        "host": stack.host,
        "port": stack.imaps_port,
        "security": "tls",
        "username": coordinator,
        "auth": "oauth2",
        "ca_file": stack.ca_file,
    }
    if imap_sasl != "xoauth2":
        imap["sasl"] = imap_sasl
    return Workspace(
        root,
        smtp_port=stack.submission_port,
        smtp_host=stack.host,
        smtp_security="starttls",
        smtp_extra=f', username = "{coordinator}", auth = "oauth2", ca_file = "{stack.ca_file}"',
        from_header=f"Coordinator <{coordinator}>",
        imap=imap,
        account_extra=table,
    )


def approve_as(server: LocalOAuth2Server, email: str) -> threading.Thread:
    """The coordinator at a browser: the verification page, the code shown, Allow."""

    def act() -> None:
        code = server.wait_for_user_code(timeout=30)
        page = requests.post(
            f"{server.url}/device", data={"user_code": code, "email": email}, timeout=10
        )
        assert "Done" in page.text

    thread = threading.Thread(target=act, daemon=True)
    thread.start()
    return thread


def cli_login(
    ws: Workspace, server: LocalOAuth2Server, email: str
) -> subprocess.CompletedProcess[bytes]:
    """`outreach auth login default` in its own process, approved by the coordinator."""
    approver = approve_as(server, email)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "outreach",
            "--config",
            str(ws.root / "config.toml"),
            "auth",
            "login",
            "default",
        ],
        capture_output=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        env={k: v for k, v in os.environ.items() if not k.startswith("OUTREACH_")},
    )
    approver.join(10)
    assert done.returncode == 0, (done.stdout + done.stderr).decode()
    return done


def quick_login(ws: Workspace, server: LocalOAuth2Server, email: str) -> None:
    settings = ws.config.accounts["default"].oauth2
    assert settings is not None
    approver = approve_as(server, email)
    sign_in(settings, TokenFile(token_file_path(ws.config.database)), lambda text: None)
    approver.join(10)


def log_since(path: Path, offset: int) -> str:
    return path.read_bytes()[offset:].decode(errors="replace")


def reply_from(stack: Mailstack, partner: str, coordinator: str, text: str) -> None:
    """The partner answers from their own mail client (submission with a password)."""
    first = next(iter(stack.wait_for_messages(partner).values()))
    submit_raw(stack, partner, [coordinator], partner_mail.reply(first, text))


# --------------------------------------------------------------------------- the whole way


def test_device_sign_in_campaign_over_xoauth2_and_replies_read_with_both_mechanisms(
    tmp_path: Path, mailstack: Mailstack, stack_oauth2: LocalOAuth2Server
) -> None:
    coordinator, _ = mailstack.new_user()
    first, _ = mailstack.new_user()
    second, _ = mailstack.new_user()
    ws = oauth2_workspace(tmp_path, mailstack, stack_oauth2, coordinator)
    ws.add_partners([{"email": first, "name": "First"}, {"email": second, "name": "Second"}])

    done = cli_login(ws, stack_oauth2, coordinator)
    assert f"{stack_oauth2.url}/device".encode() in done.stdout
    path = token_file_path(ws.config.database)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600

    postfix_log = mailstack.log_dir / "postfix.log"
    dovecot_log = mailstack.log_dir / "dovecot.log"
    postfix_at, dovecot_at = postfix_log.stat().st_size, dovecot_log.stat().st_size
    worker = ws.worker()
    read, sent = worker.cycle()
    assert (sent.sent, sent.errors, read.errors) == (2, [], [])
    assert len(mailstack.wait_for_messages(first)) == 1
    assert len(mailstack.wait_for_messages(second)) == 1
    # Postfix took the mail from a client that logged in with XOAUTH2 as the coordinator
    assert re.search(
        rf"sasl_method=XOAUTH2, sasl_username={re.escape(coordinator)}",
        log_since(postfix_log, postfix_at),
    )

    reply_from(mailstack, first, coordinator, "Read over XOAUTH2.")
    mailstack.wait_for_messages(coordinator)
    assert worker.read_cycle().kinds == {"reply": 1}
    assert re.search(
        rf"Login: user=<{re.escape(coordinator)}>, method=XOAUTH2",
        log_since(dovecot_log, dovecot_at),
    )

    # the same account reading with OAUTHBEARER (RFC 7628)
    config = ws.root / "config.toml"
    lines = config.read_text().splitlines()
    (index,) = [n for n, line in enumerate(lines) if line.startswith("imap =")]
    lines[index] = lines[index].replace('auth = "oauth2"', 'auth = "oauth2", sasl = "oauthbearer"')
    config.write_text("\n".join(lines) + "\n")
    assert ws.config.accounts["default"].imap.sasl == "oauthbearer"  # type: ignore[union-attr]
    dovecot_at = dovecot_log.stat().st_size
    reply_from(mailstack, second, coordinator, "Read over OAUTHBEARER.")
    mailstack.wait_for_messages(coordinator, count=2)
    assert ws.worker().read_cycle().kinds == {"reply": 1}
    assert re.search(
        rf"Login: user=<{re.escape(coordinator)}>, method=OAUTHBEARER",
        log_since(dovecot_log, dovecot_at),
    )
    texts = sorted(r["text"] for r in ws.store.query("SELECT text FROM inbound"))
    assert texts == ["Read over OAUTHBEARER.", "Read over XOAUTH2."]
    ws.close()


def test_a_token_that_expires_between_cycles_is_renewed_without_a_person(
    tmp_path: Path, mailstack: Mailstack, stack_oauth2: LocalOAuth2Server
) -> None:
    coordinator, _ = mailstack.new_user()
    partner, _ = mailstack.new_user()
    stack_oauth2.access_lifetime = 2
    ws = oauth2_workspace(tmp_path, mailstack, stack_oauth2, coordinator)
    ws.add_partners([{"email": partner, "name": "P"}])
    quick_login(ws, stack_oauth2, coordinator)
    worker = ws.worker()
    assert worker.cycle()[1].sent == 1
    refreshes = stack_oauth2.refresh_count()
    time.sleep(2.2)  # the access token is dead at Dovecot now
    ws.clock.advance(days=2)
    read, sent = worker.cycle()
    assert (sent.sent, sent.errors, read.errors) == (1, [], [])
    assert stack_oauth2.refresh_count() == refreshes + 1  # renewed once, before the logins
    assert len(mailstack.wait_for_messages(partner, count=2)) == 2
    ws.close()


def test_a_token_dovecot_refuses_is_renewed_and_tried_once_more(
    tmp_path: Path, mailstack: Mailstack, stack_oauth2: LocalOAuth2Server
) -> None:
    """Our clock says the token is good; the server says no (its JSON error challenge is
    answered as each mechanism wants), then the renewed token is taken."""
    coordinator, _ = mailstack.new_user()
    partner, _ = mailstack.new_user()
    ws = oauth2_workspace(tmp_path, mailstack, stack_oauth2, coordinator, imap_sasl="oauthbearer")
    ws.add_partners([{"email": partner, "name": "P"}])
    quick_login(ws, stack_oauth2, coordinator)
    stack_oauth2.expire_access_tokens()
    refreshes = stack_oauth2.refresh_count()
    read, sent = ws.worker().cycle()
    assert (sent.sent, sent.errors, read.errors) == (1, [], [])
    assert stack_oauth2.refresh_count() == refreshes + 1
    ws.close()


def test_revocation_makes_the_account_wait_and_a_new_sign_in_resumes_it(
    tmp_path: Path, mailstack: Mailstack, stack_oauth2: LocalOAuth2Server
) -> None:
    coordinator, _ = mailstack.new_user()
    replier, _ = mailstack.new_user()
    silent, _ = mailstack.new_user()
    ws = oauth2_workspace(tmp_path, mailstack, stack_oauth2, coordinator)
    ws.add_partners([{"email": replier, "name": "R"}, {"email": silent, "name": "S"}])
    quick_login(ws, stack_oauth2, coordinator)
    worker = ws.worker()
    assert worker.cycle()[1].sent == 2

    # the district's admin ends the sessions; the replier answers meanwhile
    stack_oauth2.revoke_user(coordinator)
    reply_from(mailstack, replier, coordinator, "Yes, we hired two students.")
    mailstack.wait_for_messages(coordinator)
    for _ in range(3):  # the follow-ups fall due, cycle after cycle: the account waits
        ws.clock.advance(days=2)
        read, sent = worker.cycle()
        assert (read.recorded, sent.sent) == (0, 0)
        for errors in (read.errors, sent.errors):
            assert errors and all("run `outreach auth login default`" in e for e in errors)
    assert ws.store.scalar("SELECT count(*) FROM inbound") == 0  # the mailbox was not read
    assert Counter(r["status"] for r in ws.store.query("SELECT status FROM messages")) == {
        "sent": 2
    }  # nothing failed, nothing was queued behind the reply's back
    status = CliRunner().invoke(cli, ["--config", str(ws.root / "config.toml"), "status", "--json"])
    (waiting,) = json.loads(status.stdout)["sign_in_needed"]
    assert waiting["account"] == "default" and "invalid_grant" in waiting["reason"]

    quick_login(ws, stack_oauth2, coordinator)  # the coordinator signs in again
    read, sent = worker.cycle()
    assert (read.kinds, read.errors, sent.errors) == ({"reply": 1}, [], [])
    assert sent.sent == 1  # the follow-up goes to the silent partner only
    ws.clock.advance(days=3)
    assert worker.cycle()[1].sent == 1  # and the last step
    # Dovecot holds exactly what the ledger says went out: nothing lost, nothing twice
    ledger = Counter(
        r["to_addr"] for r in ws.store.query("SELECT to_addr FROM messages WHERE status = 'sent'")
    )
    assert ledger == {replier: 1, silent: 3}
    assert len(mailstack.wait_for_messages(replier)) == 1
    assert len(mailstack.wait_for_messages(silent, count=3)) == 3
    ws.close()


def test_token_cmd_gives_the_tokens_for_both_servers(
    tmp_path: Path, mailstack: Mailstack, stack_oauth2: LocalOAuth2Server
) -> None:
    coordinator, _ = mailstack.new_user()
    partner, _ = mailstack.new_user()
    # a helper like oama or mailctl keeps a token fresh and prints it
    token_file = tmp_path / "token"
    token_file.write_text(stack_oauth2.issue(coordinator)["access_token"])
    ws = oauth2_workspace(
        tmp_path / "p",
        mailstack,
        stack_oauth2,
        coordinator,
        oauth2=f'oauth2 = {{ token_cmd = "cat {token_file}" }}',
    )
    ws.add_partners([{"email": partner, "name": "P"}])
    assert ws.worker().cycle()[1].sent == 1
    reply_from(mailstack, partner, coordinator, "Via token_cmd.")
    mailstack.wait_for_messages(coordinator)
    assert ws.worker().read_cycle().kinds == {"reply": 1}
    ws.close()


def test_no_token_in_any_output_log_database_or_export(
    tmp_path: Path, mailstack: Mailstack, stack_oauth2: LocalOAuth2Server
) -> None:
    coordinator, _ = mailstack.new_user()
    partner, _ = mailstack.new_user()
    stack_oauth2.access_lifetime = 2
    ws = oauth2_workspace(tmp_path, mailstack, stack_oauth2, coordinator)
    ws.add_partners([{"email": partner, "name": "P"}])
    ws.close()
    config = str(ws.root / "config.toml")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OUTREACH_")}
    issued_before = len(stack_oauth2.issued.all())
    outputs = [cli_login(ws, stack_oauth2, coordinator)]

    def run(*args: str) -> subprocess.CompletedProcess[bytes]:
        done = subprocess.run(
            [sys.executable, "-m", "outreach", "--config", config, *args],
            capture_output=True,
            env=env,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )
        outputs.append(done)
        return done

    assert run("run", "--once", "--log-json", "-v").returncode == 0
    reply_from(mailstack, partner, coordinator, "Thanks!")
    mailstack.wait_for_messages(coordinator)
    time.sleep(2.2)  # expired: renewed on the way
    assert run("run", "--once", "-v").returncode == 0
    assert run("check", "--connect").returncode == 0
    stack_oauth2.revoke_user(coordinator)
    assert run("run", "--once", "--log-json", "-v").returncode == 1
    for args in (
        ["status"],
        ["status", "--json"],
        ["auth", "status", "--json"],
        ["log"],
        ["replies", "--json"],
        ["export", "events"],
        ["export", "replies"],
        ["export", "partners", "--format", "csv"],
    ):
        assert run(*args).returncode == 0
    blobs = [b for done in outputs for b in (done.stdout, done.stderr)]
    assert b"Thanks!" in b"".join(blobs) and b"sign-in needed" in b"".join(blobs)
    blobs += [p.read_bytes() for p in ws.root.glob("outreach.db*")]
    blobs += [p.read_bytes() for p in mailstack.log_dir.glob("*.log")]
    tokens = stack_oauth2.issued.all()[issued_before:]
    assert len(tokens) >= 4
    for token in tokens:
        assert not any(token.encode() in blob for blob in blobs)
