"""The response-log commands on a log of more than 10,000 events, against a raw read of it.

    python benchmarks/views.py [--quick] [--repeat N]

The database is the one tests/test_large_log.py builds (3,000 partners, ~14,000 events,
replies, auto-replies, bounces, unsubscribes), through the store API. Each command of
test_large_log.COMMANDS runs through the CLI in-process (as a coordinator's shell would,
minus Python's start-up); the baseline, in the same run, is a raw read of the same database:
every row of `events`, `messages`, `inbound` and `partners` fetched with sqlite3 and written
out as JSON lines. A command that reads the whole log does more than that (joins, narration,
formatting) and sits near 1; a filtered one reads less and sits well above. What matters is
that each stays in its range from one change to the next (the first run, 2026-12-06: lowest
0.74, `log --json`). Times are the median of --repeat runs; the last line is `ratio: X`,
the lowest ratio of all commands.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from test_large_log import COMMANDS, build_large_log  # noqa: E402
from workspace import Workspace  # noqa: E402

TABLES = ("events", "messages", "inbound", "partners")


def raw_read(database: Path) -> float:
    """Seconds to fetch every row of the log's tables and write each as a JSON line."""
    began = time.perf_counter()
    out = io.StringIO()
    with sqlite3.connect(database) as conn:
        conn.row_factory = sqlite3.Row
        for table in TABLES:
            for row in conn.execute(f"SELECT * FROM {table}"):  # noqa: S608 (fixed names)
                out.write(json.dumps(dict(row), default=repr) + "\n")
    conn.close()
    return time.perf_counter() - began


def command(ws: Workspace, args: tuple[str, ...]) -> float:
    began = time.perf_counter()
    result = ws.cli(*args)
    elapsed = time.perf_counter() - began
    if result.exit_code != 0:
        raise SystemExit(f"outreach {' '.join(args)} failed: {result.output[-500:]}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one run per command")
    parser.add_argument("--repeat", type=int, default=5)
    options = parser.parse_args()
    repeat = 1 if options.quick else options.repeat
    folder = Path(tempfile.mkdtemp(prefix="outreach-views-"))
    try:
        ws = Workspace(folder, smtp_port=2525)
        build_large_log(ws.store, datetime(2026, 3, 2, 14, 0, tzinfo=UTC))
        ws.close()
        database = folder / "outreach.db"
        lowest = float("inf")
        print(f"{'command':48} {'seconds':>8} {'raw':>8} {'ratio':>6}")
        for args in COMMANDS:
            ours, raw = [], []
            for _ in range(repeat):  # interleaved, so a slow second hits both sides
                raw.append(raw_read(database))
                ours.append(command(ws, args))
            ratio = statistics.median(raw) / statistics.median(ours)
            lowest = min(lowest, ratio)
            print(
                f"{' '.join(args):48} {statistics.median(ours):8.3f}"
                f" {statistics.median(raw):8.3f} {ratio:6.2f}"
            )
        print(f"ratio: {lowest:.2f}")
        return 0
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
