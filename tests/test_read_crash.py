"""kill -9 at random moments while the worker reads a mailbox full of answers.

Every partner got step 1; their answers (replies, vacation notices, bounces, unsubscribe
requests) and unrelated mail wait in the IMAP mailbox. `outreach run --once` is started and
killed with SIGKILL again and again until a run finishes. Then each answer is recorded once,
its effect applied once, and nothing unrelated is recorded.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import date
from pathlib import Path

import pytest
from workspace import ALWAYS_OPEN, Workspace, local_imap, partner_rows

from outreach.store import Store
from outreach.testing import partner_mail
from outreach.testing.imap_server import LocalIMAPServer
from outreach.testing.smtp_server import LocalSMTPServer

ONE_STEP = (
    ALWAYS_OPEN
    + """[[steps]]
template = "hello"
subject = "Check-in"
"""
)

PARTNERS = 300
KINDS = ("reply", "auto_reply", "bounce", "unsubscribe")


def answer(kind: str, sent: bytes, index: int) -> bytes:
    if kind == "reply":
        return partner_mail.reply(sent, f"Answer number {index}: all good.")
    if kind == "auto_reply":
        return partner_mail.out_of_office(sent, date(2026, 12, 7))
    if kind == "bounce":
        return partner_mail.bounce(sent)
    return partner_mail.unsubscribe(sent)


def recorded(database: Path) -> int:
    """Answers recorded so far, read without disturbing the worker (WAL readers)."""
    with contextlib.closing(
        sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=10)
    ) as db:
        return int(db.execute("SELECT count(*) FROM inbound").fetchone()[0])


def kill_after(process: subprocess.Popen[bytes], ready: Callable[[], bool], timeout: float) -> bool:
    """SIGKILL the process as soon as `ready()` (polled), or when `timeout` runs out; False
    when it finished by itself first."""
    deadline = time.monotonic() + timeout
    while process.poll() is None:
        if ready() or time.monotonic() > deadline:
            process.send_signal(signal.SIGKILL)
            process.wait()
            return True
        time.sleep(0.005)
    return False


@pytest.mark.slow
def test_sigkill_while_reading_records_each_answer_once(
    tmp_path: Path,
    smtp_server: LocalSMTPServer,
    imap_server: LocalIMAPServer,
) -> None:
    env = dict(os.environ, TEST_IMAP_PW=imap_server.password)
    ws = Workspace(
        tmp_path,
        smtp_port=smtp_server.port,
        campaign=ONE_STEP,
        imap=local_imap(imap_server),
        config_extra="[replies]\nbatch_size = 15",
    )
    ws.add_partners(partner_rows(PARTNERS))
    assert ws.worker().send_cycle().sent == PARTNERS
    ws.close()

    rng = random.Random(20261129)
    expected: dict[str, str] = {}  # partner -> kind of their answer
    mail = []
    for index, sent in enumerate(smtp_server.messages):
        kind = KINDS[index % len(KINDS)]
        expected[sent.rcpt_tos[0]] = kind
        mail.append(answer(kind, sent.raw, index))
        if index % 3 == 0:
            mail.append(partner_mail.unrelated(subject=f"Newsletter {index}"))
    rng.shuffle(mail)
    with imap_server.client(timeout=60) as client:
        for start in range(0, len(mail), 200):
            client.multiappend("INBOX", mail[start : start + 200])

    command = [
        sys.executable,
        "-m",
        "outreach",
        "--config",
        str(tmp_path / "config.toml"),
        "run",
        "--once",
    ]
    database = tmp_path / "outreach.db"
    kills = 0
    progress: list[int] = []  # answers recorded when each kill struck
    for _attempt in range(80):
        process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env
        )
        # half the kills at a random time (starting up, recovering, reading); the others
        # once a random number of further answers is recorded, so they land mid-mailbox
        if rng.random() < 0.5:
            killed = kill_after(process, lambda: False, rng.uniform(0.05, 1.2))
        else:
            target = recorded(database) + rng.randint(1, 60)
            killed = kill_after(process, lambda n=target: recorded(database) >= n, 30.0)
        if killed:
            kills += 1
            progress.append(recorded(database))
            continue
        stderr = process.stderr.read().decode() if process.stderr else ""
        assert process.returncode == 0, stderr
        break
    else:
        pytest.fail("the worker never finished reading")
    assert kills >= 5, "the test must actually kill the worker while it reads"
    assert len([n for n in progress if 0 < n < PARTNERS]) >= 3, progress
    print(f"{kills} kills; answers recorded when each struck: {progress}")

    with Store(tmp_path / "outreach.db") as store:
        assert store.scalar("PRAGMA integrity_check") == "ok"
        inbound = store.query(
            "SELECT i.message_id, i.kind, p.email FROM inbound i"
            " JOIN partners p ON p.id = i.partner_id"
        )
        events = store.query(
            "SELECT e.kind, p.email FROM events e JOIN partners p ON p.id = e.partner_id"
            " WHERE e.kind IN ('reply', 'auto_reply', 'bounce', 'unsubscribe')"
        )
        statuses = {p.email: p.status for p in store.partners()}
        sequences = {
            r["email"]: r["state"]
            for r in store.query(
                "SELECT p.email, s.state FROM sequences s JOIN partners p ON p.id = s.partner_id"
            )
        }
        stray = store.scalar("SELECT count(*) FROM inbound WHERE partner_id IS NULL")
    assert stray == 0, "unrelated mail was recorded"
    per_message = Counter(r["message_id"] for r in inbound)
    assert set(per_message.values()) == {1}, "an answer was recorded twice"
    assert {r["email"]: r["kind"] for r in inbound} == expected
    per_partner = Counter((r["email"], r["kind"]) for r in events)
    assert set(per_partner.values()) == {1}, "an answer's effect was applied twice"
    assert {email: kind for email, kind in per_partner} == expected
    for email, kind in expected.items():
        want_status = {"bounce": "bounced", "unsubscribe": "opted_out"}.get(kind, "active")
        assert statuses[email] == want_status, email
        if kind == "reply":
            assert sequences[email] == "replied"
        if kind == "auto_reply":
            assert sequences[email] == "paused"
