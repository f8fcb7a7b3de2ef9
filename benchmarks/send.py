"""Send path throughput vs raw aiosmtplib, side by side in one run.

    python benchmarks/send.py [--quick] [--messages N] [--postfix HOST:PORT]

For each concurrency (1 and 4), the same number of partners goes through outreach's full
send path (plan, render, write the outbox, claim, SMTP, record) and, to the same SMTP sink
at the same concurrency, raw aiosmtplib sends the same pre-rendered messages as bytes over
reused connections. Both use the same sink process (aiosmtpd's Sink handler, or a real
Postfix given with --postfix). Printed: messages per second of each and their ratio; the last
line is the headline `ratio: X` (the lower of the two concurrencies).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiosmtplib

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from workspace import Workspace, partner_rows  # noqa: E402

from outreach.localservers import free_port  # noqa: E402
from outreach.sending import SendReport  # noqa: E402

CAMPAIGN = """
[window]
days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
hours = "00:00-24:00"
[[steps]]
template = "hello"
subject = "Check-in for {{ partner.organization }}"
"""


def start_sink() -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "aiosmtpd",
            "-n",
            "-l",
            f"127.0.0.1:{port}",
            "-c",
            "aiosmtpd.handlers.Sink",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process, port
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise SystemExit("the SMTP sink did not start")


def outreach_run(host: str, port: int, count: int, concurrency: int) -> tuple[float, list[bytes]]:
    folder = Path(tempfile.mkdtemp(prefix="outreach-bench-"))
    try:
        ws = Workspace(
            folder, smtp_port=port, campaign=CAMPAIGN, limits=f"concurrency = {concurrency}"
        )
        if host != "127.0.0.1":
            raise SystemExit("only loopback hosts")
        ws.add_partners(partner_rows(count))
        worker = ws.worker()
        worker.logger = logging.getLogger("bench")
        ws.logger.setLevel(logging.ERROR)
        started = time.perf_counter()
        report: SendReport = worker.send_cycle()
        elapsed = time.perf_counter() - started
        if report.sent != count:
            raise SystemExit(f"outreach sent {report.sent} of {count}: {report.errors[:3]}")
        raws = [r["raw"] for r in ws.store.query("SELECT raw FROM messages ORDER BY id")]
        ws.close()
        return count / elapsed, raws
    finally:
        shutil.rmtree(folder, ignore_errors=True)


async def raw_run(host: str, port: int, raws: list[bytes], concurrency: int) -> float:
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for raw in raws:
        queue.put_nowait(raw)

    async def one_connection() -> None:
        client = aiosmtplib.SMTP(hostname=host, port=port, start_tls=False)
        await client.connect()
        try:
            while True:
                try:
                    raw = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                await client.sendmail("coordinator@district.test", ["p@partners.test"], raw)
        finally:
            await client.quit()

    started = time.perf_counter()
    await asyncio.gather(*(one_connection() for _ in range(concurrency)))
    return len(raws) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smaller run, under a minute")
    parser.add_argument("--messages", type=int, default=None)
    parser.add_argument("--postfix", metavar="HOST:PORT", help="a real SMTP server instead")
    parser.add_argument("--rounds", type=int, default=None)
    args = parser.parse_args()
    count = args.messages or (500 if args.quick else 3000)
    rounds = args.rounds or (2 if args.quick else 3)
    sink = None
    if args.postfix:
        host, _, port_text = args.postfix.rpartition(":")
        port = int(port_text)
    else:
        sink, port = start_sink()
        host = "127.0.0.1"
    ratios = []
    try:
        for concurrency in (1, 4):
            ours, raw = [], []
            for _ in range(rounds):  # interleaved, best of each: the machine is noisy
                rate, raws = outreach_run(host, port, count, concurrency)
                ours.append(rate)
                raw.append(asyncio.run(raw_run(host, port, raws, concurrency)))
            ratio = max(ours) / max(raw)
            ratios.append(ratio)
            print(
                f"concurrency {concurrency}: outreach {max(ours):7.0f} msg/s   "
                f"raw aiosmtplib {max(raw):7.0f} msg/s   ratio {ratio:.2f}"
            )
    finally:
        if sink is not None:
            sink.terminate()
            sink.wait()
    print(f"ratio: {min(ratios):.2f}")


if __name__ == "__main__":
    main()
