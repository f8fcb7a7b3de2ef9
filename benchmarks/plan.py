"""Planning cost (time and peak memory) at 1k, 10k and 100k partners, with and without history.

    python benchmarks/plan.py [--quick] [--sizes 1000,10000] [--repeat N]

Planning is `find_due` (sending.py): indexed store queries narrow the candidates, the pure
planner applies the rules. For each roster size, databases are built (outside the timing)
for one 3-step campaign (step 2 after 2 days, step 3 after 3 days):

  fresh       nobody has started: step 1 is due for everyone (due = N)
  bare        everyone had steps 1 and 2 four days ago, but only the sequence state says so:
              the ledger and the event log are empty; step 3 is due for everyone (due = N)
  history     the same, with the history a real run leaves: two ledger rows per partner, each
              with its rendered message (~1.3 KB), and 6 events per partner (imported, queued,
              sent, queued, deferred, sent); step 3 is due for everyone (due = N)
  history-1%  the same history, but only 1% had step 2 long enough ago (due = N/100)

`bare` and `history` plan the same messages through the same path; only the history differs.
If planning cost grows with what is due and not with history, they take about as long: the
headline is time(history) / time(bare) at the largest size (near 1 is good). `history-1%`
shows the cost falling with what is due; `fresh` is the first-step path for comparison.
Times are the median of --repeat runs on a warm database; peak memory is tracemalloc's peak
during one more run (traced separately: tracing slows Python down). The last line is
`ratio: X`. --quick limits the sizes to 1k and 10k.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _mailstack import run  # noqa: E402
from workspace import Workspace  # noqa: E402

from outreach.core.model import Campaign  # noqa: E402
from outreach.engine.planning import find_due  # noqa: E402
from outreach.store import Store, iso  # noqa: E402

SCENARIOS = ("fresh", "bare", "history", "history-1%")
RAW = (
    "From: Coordinator <coordinator@district.test>\r\nTo: Partner <p@partners.test>\r\n"
    "Subject: Check-in for Org\r\nDate: Tue, 24 Nov 2026 10:00:00 +0000\r\n"
    "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
    "List-Unsubscribe: <mailto:coordinator@district.test?subject=unsubscribe>\r\n\r\n"
    + "Hello Partner, how has your organization changed this year? " * 18
    + "\r\n"
).encode()


def build(path: Path, size: int, scenario: str, ws: Workspace) -> None:
    """Write the roster and, for the heavy scenarios, the history, straight into SQLite
    (the product's own write path would take minutes at 100k)."""
    now = ws.clock()
    store = Store(path)
    conn = store.db.conn
    stamp = iso(now - timedelta(days=30))
    with store.write():
        conn.executemany(
            "INSERT INTO partners (id, email, name, organization, created_at, updated_at)"
            " VALUES (?,?,?,?,?,?)",
            (
                (i, f"p{i:06d}@partners.test", f"Partner {i}", f"Org {i}", stamp, stamp)
                for i in range(1, size + 1)
            ),
        )
        conn.executemany(
            "INSERT INTO events (at, partner_id, kind, summary) VALUES (?,?,'imported',"
            "'added to roster')",
            ((stamp, i) for i in range(1, size + 1)),
        )
        if scenario != "fresh":
            history(conn, size, scenario, now)
    store.db.conn.execute("ANALYZE")
    store.close()


def history(conn: sqlite3.Connection, size: int, scenario: str, now: datetime) -> None:
    recent = max(1, size // 100) if scenario == "history-1%" else size
    campaign = "checkin"

    def sent_at(partner: int, step: int) -> datetime:
        # step 2 four days ago (step 3 due) for the first `recent` partners, else yesterday
        second = now - timedelta(days=4 if partner <= recent else 1)
        return second - timedelta(days=3) if step == 1 else second

    def messages() -> Iterator[tuple[object, ...]]:
        for i in range(1, size + 1):
            for step in (1, 2):
                at = iso(sent_at(i, step))
                yield (
                    2 * i + step - 2,
                    campaign,
                    i,
                    step,
                    "default",
                    f"<{i}.{step}.bench@district.test>",
                    f"p{i:06d}@partners.test",
                    "Check-in for Org" if step == 1 else "Re: Check-in for Org",
                    "sent",
                    RAW,
                    1,
                    at,
                    at,
                    at,
                )

    conn.executemany(
        "INSERT INTO sequences (campaign, partner_id, state, last_step, last_sent_at,"
        " updated_at) VALUES (?,?,'active',2,?,?)",
        ((campaign, i, iso(sent_at(i, 2)), iso(sent_at(i, 2))) for i in range(1, size + 1)),
    )
    if scenario == "bare":
        return
    conn.executemany(
        "INSERT INTO messages (id, campaign, partner_id, step, account, message_id, to_addr,"
        " subject, status, raw, attempts, created_at, updated_at, sent_at)"
        " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        messages(),
    )

    def events() -> Iterator[tuple[object, ...]]:
        for i in range(1, size + 1):
            for step in (1, 2):
                at = iso(sent_at(i, step))
                ledger = 2 * i + step - 2
                mid = f"<{i}.{step}.bench@district.test>"
                yield (at, i, campaign, step, "queued", mid, ledger, "Check-in", "{}")
                if step == 2:
                    yield (
                        at,
                        i,
                        campaign,
                        step,
                        "deferred",
                        mid,
                        ledger,
                        "451 4.3.0 try again later",
                        json.dumps({"code": 451}),
                    )
                yield (
                    at,
                    i,
                    campaign,
                    step,
                    "sent",
                    mid,
                    ledger,
                    "Check-in",
                    json.dumps({"response": "250 2.0.0 Ok: queued"}),
                )

    conn.executemany(
        "INSERT INTO events (at, partner_id, campaign, step, kind, message_id, outbound_id,"
        " summary, detail) VALUES (?,?,?,?,?,?,?,?,?)",
        events(),
    )


def plan_once(path: Path, campaigns: list[Campaign], ws: Workspace) -> tuple[float, int]:
    store = Store(path)
    try:
        started = time.perf_counter()
        due = find_due(store, campaigns, ws.clock(), "UTC")
        return time.perf_counter() - started, len(due)
    finally:
        store.close()


def peak_memory(path: Path, campaigns: list[Campaign], ws: Workspace) -> int:
    store = Store(path)
    try:
        tracemalloc.start()
        due = find_due(store, campaigns, ws.clock(), "UTC")
        _current, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        del due
        return peak
    finally:
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1k and 10k only, under a minute")
    parser.add_argument("--sizes", default=None, help="comma-separated roster sizes")
    parser.add_argument("--repeat", type=int, default=None)
    args = parser.parse_args()
    sizes = (
        [int(s) for s in args.sizes.split(",")]
        if args.sizes
        else [1_000, 10_000]
        if args.quick
        else [1_000, 10_000, 100_000]
    )
    repeat = args.repeat or (5 if args.quick else 7)
    folder = Path(tempfile.mkdtemp(prefix="outreach-bench-plan-"))
    results: dict[tuple[int, str], tuple[float, int, int, int]] = {}
    try:
        ws = Workspace(folder / "project", smtp_port=25)
        ws.logger.setLevel(logging.ERROR)
        campaigns = ws.campaigns
        print(
            f"{'partners':>9} {'history':>10} {'due':>8} {'db MB':>7} {'time ms':>9} "
            f"{'per due us':>10} {'peak MB':>8}",
            flush=True,
        )
        for size in sizes:
            paths = {scenario: folder / f"{scenario}-{size}.db" for scenario in SCENARIOS}
            for scenario, path in paths.items():
                build(path, size, scenario, ws)
                plan_once(path, campaigns, ws)  # warm-up: SQLite's page cache, imports
            times: dict[str, list[float]] = {scenario: [] for scenario in SCENARIOS}
            due: dict[str, int] = {}
            for _ in range(repeat):  # interleaved: the machine's load drifts
                for scenario, path in paths.items():
                    elapsed, due[scenario] = plan_once(path, campaigns, ws)
                    times[scenario].append(elapsed)
            for scenario, path in paths.items():
                peak = peak_memory(path, campaigns, ws)
                took = statistics.median(times[scenario])
                megabytes = path.stat().st_size // 1_000_000
                results[(size, scenario)] = (took, due[scenario], peak, megabytes)
                print(
                    f"{size:>9} {scenario:>10} {due[scenario]:>8} {megabytes:>7} "
                    f"{took * 1000:>9.1f} {took / max(due[scenario], 1) * 1e6:>10.1f} "
                    f"{peak / 1e6:>8.1f}",
                    flush=True,
                )
                for suffix in ("", "-wal", "-shm"):
                    Path(str(path) + suffix).unlink(missing_ok=True)
        ws.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    largest = max(sizes)
    full, bare = results[(largest, "history")], results[(largest, "bare")]
    print(
        f"at {largest} partners, the same {bare[1]} due: with history {full[0] * 1000:.0f} ms, "
        f"{full[3]} MB database / without {bare[0] * 1000:.0f} ms, {bare[3]} MB; peak memory "
        f"{full[2] / 1e6:.1f} / {bare[2] / 1e6:.1f} MB"
    )
    print(f"ratio: {full[0] / bare[0]:.2f}")


if __name__ == "__main__":
    run(main)  # the temporary databases are removed on Ctrl-C / SIGTERM too
