"""kill -9 while a campaign's second round is being sent (issue 21): a new round is new
messages (the round is in the never-sent-twice key), never the old round sent again, and no
(partner, round, step) arrives twice however often the worker is killed."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from test_crash import TWO_QUICK_STEPS, nothing_pending, run_until_done_with_kills
from workspace import Workspace, partner_rows

from outreach.store import Store
from outreach.testing.smtp_server import LocalSMTPServer

PARTNERS = 150


@pytest.mark.slow
def test_sigkill_during_a_second_round_never_sends_twice(
    tmp_path: Path, smtp_server: LocalSMTPServer
) -> None:
    smtp_server.delay = 0.002
    ws = Workspace(
        tmp_path,
        smtp_port=smtp_server.port,
        campaign='repeat = "1d"\n' + TWO_QUICK_STEPS,
        limits="concurrency = 2",
    )
    ws.add_partners(partner_rows(PARTNERS))
    # round 1, on the workspace's clock (2026-11-24, before the worker's real clock)
    worker = ws.worker()
    for _ in range(3):
        worker.cycle()
        ws.clock.advance(minutes=1)
    finished = ws.store.scalar("SELECT count(*) FROM sequences WHERE state = 'finished'")
    assert finished == PARTNERS
    ws.close()
    round_1 = len(smtp_server.messages)
    assert round_1 == 2 * PARTNERS

    def second_round_over(store: Store, delivered_before: int) -> bool:
        """A whole run that delivered nothing, with nothing pending: the round is over."""
        second = store.scalar("SELECT count(*) FROM sequences WHERE round = 2")
        return (
            nothing_pending(store)
            and second == PARTNERS
            and len(smtp_server.messages) == delivered_before
        )

    run_until_done_with_kills(tmp_path, smtp_server, 20261206, second_round_over, max_kills=15)

    with Store(tmp_path / "outreach.db") as store:
        assert store.scalar("PRAGMA integrity_check") == "ok"
        rows = store.query("SELECT round, step, status, message_id, to_addr FROM messages")
    by_message_id = {r["message_id"]: r for r in rows}
    received = Counter(m.message["Message-ID"] for m in smtp_server.messages)
    assert set(received) <= set(by_message_id), "a message went out that the ledger lost"
    delivered = Counter(
        (by_message_id[mid]["to_addr"], by_message_id[mid]["round"], by_message_id[mid]["step"])
        for mid in received
        for _ in range(received[mid])
    )
    assert [key for key, count in delivered.items() if count > 1] == []
    assert {r["round"] for r in rows} == {1, 2}  # no third round: 1d has not passed
    assert Counter(r["round"] for r in rows)[1] == 2 * PARTNERS  # round 1 never again
    assert Counter(r["status"] for r in rows).keys() <= {"sent", "unknown"}
    # every partner got round 2's first message, or it is reported as unknown
    firsts = {r["to_addr"] for r in rows if r["round"] == 2 and r["step"] == 1}
    assert len(firsts) == PARTNERS
    unknown_first = {
        r["to_addr"]
        for r in rows
        if r["round"] == 2 and r["step"] == 1 and r["status"] == "unknown"
    }
    seconds = Counter(r["to_addr"] for r in rows if r["round"] == 2 and r["step"] == 2)
    for address in firsts:
        assert seconds[address] == (0 if address in unknown_first else 1), address
