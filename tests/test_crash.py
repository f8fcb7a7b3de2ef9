"""kill -9 at random moments while a campaign of a few hundred partners is being sent.

After every kill the worker is started again, until a run finishes. Then: no (partner, step)
was delivered twice, every delivered message is in the ledger, and every partner either got
each step or has it reported as `unknown`.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from workspace import ALWAYS_OPEN, Workspace, partner_rows

from outreach.store import Store
from outreach.testing.smtp_server import LocalSMTPServer

TWO_QUICK_STEPS = (
    ALWAYS_OPEN
    + """[[steps]]
template = "hello"
subject = "Check-in"
[[steps]]
template = "nudge"
after = "0s"
"""
)

PARTNERS = 300


def kill_at_random_moment(
    process: subprocess.Popen[bytes],
    server: LocalSMTPServer,
    delivered_before: int,
    rng: random.Random,
) -> bool:
    """SIGKILL the worker at a random moment of its run; False if it ended first.

    Mostly once the server has taken a random number of its messages, and then a random few
    milliseconds later (anywhere in a message: MAIL, RCPT, DATA, its result); sometimes
    after a random time from its start (start-up, planning, the outbox). Counting deliveries
    rather than seconds keeps the kills inside the campaign however fast the machine is.
    """
    deadline = time.monotonic() + 60
    if rng.random() < 0.25:
        deadline = time.monotonic() + rng.uniform(0.05, 0.8)
        target = sys.maxsize
    else:
        target = delivered_before + rng.randint(1, 120)
    while process.poll() is None and time.monotonic() < deadline:
        if len(server.messages) >= target:
            time.sleep(rng.uniform(0, 0.004))
            break
        time.sleep(0.001)
    if process.poll() is not None:
        return False
    process.send_signal(signal.SIGKILL)
    process.wait()
    return True


@pytest.mark.slow
def run_until_done_with_kills(
    root: Path,
    smtp_server: LocalSMTPServer,
    seed: int,
    done: Callable[[Store, int], bool],
    max_kills: int = 25,
) -> int:
    """`outreach run --once` again and again, kill -9 at a random moment in up to `max_kills`
    of the runs, until a run that was not killed leaves `done(store, delivered_before)` true;
    returns how many runs were killed (at least 3, or the test fails)."""
    rng = random.Random(seed)
    command = [sys.executable, "-m", "outreach", "--config", str(root / "config.toml")]
    command += ["run", "--once"]
    kills = 0
    for _ in range(60):
        delivered_before = len(smtp_server.messages)
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if kills < max_kills and kill_at_random_moment(process, smtp_server, delivered_before, rng):
            kills += 1
            continue
        process.wait(timeout=120)
        assert process.returncode == 0, process.stderr.read().decode() if process.stderr else ""
        with Store(root / "outreach.db") as store:
            if done(store, delivered_before):
                break
    else:
        pytest.fail("the campaign never finished")
    assert kills >= 3, "the test must actually kill the worker mid-campaign"
    return kills


def nothing_pending(store: Store) -> bool:
    return not store.scalar(
        "SELECT count(*) FROM messages WHERE status IN ('queued', 'sending', 'deferred')"
    )


def every_partner_started(partners: int) -> Callable[[Store, int], bool]:
    """Done: nothing left to send and every partner has a sequence."""
    return lambda store, _: (
        nothing_pending(store) and store.scalar("SELECT count(*) FROM sequences") == partners
    )


def test_sigkill_at_random_moments_never_sends_twice(tmp_path: Path, smtp_server: LocalSMTPServer):
    smtp_server.delay = 0.002  # a little time inside DATA, where a kill hurts most
    ws = Workspace(
        tmp_path, smtp_port=smtp_server.port, campaign=TWO_QUICK_STEPS, limits="concurrency = 2"
    )
    ws.add_partners(partner_rows(PARTNERS))
    ws.close()
    run_until_done_with_kills(tmp_path, smtp_server, 20261129, every_partner_started(PARTNERS))
    # one more run: everything that can be sent has been
    command = [sys.executable, "-m", "outreach", "--config", str(tmp_path / "config.toml")]
    final = subprocess.run([*command, "run", "--once"], capture_output=True, timeout=120)
    assert final.returncode == 0, final.stderr.decode()

    with Store(tmp_path / "outreach.db") as store:
        assert store.scalar("PRAGMA integrity_check") == "ok"
        rows = store.query("SELECT id, partner_id, step, status, message_id, to_addr FROM messages")
    by_message_id = {r["message_id"]: r for r in rows}
    received = Counter(m.message["Message-ID"] for m in smtp_server.messages)
    # every delivered message is in the ledger, and no (partner, step) arrived twice
    assert set(received) <= set(by_message_id), "a message went out that the ledger lost"
    delivered = Counter(
        (by_message_id[mid]["to_addr"], by_message_id[mid]["step"])
        for mid in received
        for _ in range(received[mid])
    )
    twice = [key for key, count in delivered.items() if count > 1]
    assert twice == [], f"delivered twice: {twice[:5]}"
    # the ledger has one row per (partner, step), each sent or reported unknown
    assert Counter(r["status"] for r in rows).keys() <= {"sent", "unknown"}
    for row in rows:
        if row["status"] == "sent":
            assert received[row["message_id"]] == 1
    steps = Counter(r["partner_id"] for r in rows)
    unknown_first = {r["partner_id"] for r in rows if r["step"] == 1 and r["status"] == "unknown"}
    for partner_id in range(1, PARTNERS + 1):
        expected = 1 if partner_id in unknown_first else 2
        assert steps[partner_id] == expected, f"partner {partner_id}: {steps[partner_id]} steps"


TEAM_PARTNERS = 240
TEAM_OWNERS = ("jlee", "akim", "pat ng", "")  # the last: no owner (the office's fallback)


@pytest.mark.slow
def test_sigkill_in_the_middle_of_a_multi_account_cycle_never_sends_twice(
    tmp_path: Path, smtp_server: LocalSMTPServer, monkeypatch: pytest.MonkeyPatch
):
    """Issue 19: three accounts deliver one after another in each cycle; kills land inside
    any of them. Nothing is lost or sent twice, and every message of a sequence comes from
    the account of its partner's owner."""
    from team import TEAM, team_workspace

    smtp_server.delay = 0.002
    ws = team_workspace(
        tmp_path, smtp_server.port, {}, monkeypatch, limits={n: "concurrency = 2" for n in TEAM}
    )
    (tmp_path / "campaigns" / "checkin.toml").write_text(
        'account = "owner"\nfallback_account = "office"\n' + TWO_QUICK_STEPS
    )
    rows = partner_rows(TEAM_PARTNERS)
    for index, row in enumerate(rows):
        row["owner"] = TEAM_OWNERS[index % len(TEAM_OWNERS)]
    ws.add_partners(rows)
    ws.close()
    expected_account = {
        row["email"]: {"jlee": "jlee", "akim": "akim", "pat ng": "akim", "": "office"}[row["owner"]]
        for row in rows
    }
    run_until_done_with_kills(tmp_path, smtp_server, 20261206, every_partner_started(TEAM_PARTNERS))
    command = [sys.executable, "-m", "outreach", "--config", str(tmp_path / "config.toml")]
    final = subprocess.run([*command, "run", "--once"], capture_output=True, timeout=120)
    assert final.returncode == 0, final.stderr.decode()

    with Store(tmp_path / "outreach.db") as store:
        assert store.scalar("PRAGMA integrity_check") == "ok"
        rows_out = store.query(
            "SELECT partner_id, step, status, message_id, to_addr, account FROM messages"
        )
        sequences = store.query(
            "SELECT p.email, s.account FROM sequences s JOIN partners p ON p.id = s.partner_id"
        )
    by_message_id = {r["message_id"]: r for r in rows_out}
    received = Counter(m.message["Message-ID"] for m in smtp_server.messages)
    assert set(received) <= set(by_message_id), "a message went out that the ledger lost"
    twice = [mid for mid, count in received.items() if count > 1]
    assert twice == [], f"delivered twice: {twice[:5]}"
    pairs = Counter((r["to_addr"], r["step"]) for r in rows_out)
    assert max(pairs.values()) == 1
    assert Counter(r["status"] for r in rows_out).keys() <= {"sent", "unknown"}
    # each from the partner's owner's account: the ledger, the sequence and the envelope
    assert {s["email"]: s["account"] for s in sequences} == expected_account
    for row in rows_out:
        assert row["account"] == expected_account[row["to_addr"]], row
    for message in smtp_server.messages:
        row = by_message_id[message.message["Message-ID"]]
        assert message.mail_from == TEAM[row["account"]][0]
    unknown_first = {r["to_addr"] for r in rows_out if r["step"] == 1 and r["status"] == "unknown"}
    steps = Counter(r["to_addr"] for r in rows_out)
    for email in expected_account:
        assert steps[email] == (1 if email in unknown_first else 2), email
