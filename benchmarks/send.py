"""Send path throughput vs raw aiosmtplib, side by side in one run.

    python benchmarks/send.py [--quick] [--messages N] [--postfix [--plain]]

For each concurrency (1 and 4), the same number of partners goes through outreach's full
send path (plan, render, write the outbox, claim, SMTP, record) and, to the same SMTP server
at the same concurrency, raw aiosmtplib sends the same pre-rendered messages as bytes over
reused connections. The server is an aiosmtpd Sink in its own process (default), or with
--postfix the project's real Postfix + Dovecot (scripts/mailstack, started for the run and
stopped after, also on Ctrl-C): its submission port with STARTTLS and AUTH, the certificate
verified against the stack's own (both sides), or with --plain its plain SMTP port without
TLS or AUTH. Postfix delivers every message to Dovecot over LMTP (the partners are
sink+pNNNN@example.test: one mailbox); before each measured run the benchmark waits until
Postfix's queue is empty. Printed: messages per second of each and their ratio, with the CPU
time per message of each side (this process, and the sink's process when it is the sink;
on two cores the three compete); the last line is the headline `ratio: X` (the lower of the
two concurrencies).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import aiosmtplib

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _mailstack import Mailstack, run  # noqa: E402
from workspace import ALWAYS_OPEN, Workspace, partner_rows  # noqa: E402

from outreach.engine.sending import SendReport  # noqa: E402
from outreach.testing.ports import free_port  # noqa: E402

CAMPAIGN = (
    ALWAYS_OPEN
    + """[[steps]]
template = "hello"
subject = "Check-in for {{ partner.organization }}"
"""
)
PASSWORD_ENV = "OUTREACH_BENCH_SMTP_PASSWORD"


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


@dataclass
class Target:
    """Where both sides send; for Postfix's submission port, with STARTTLS and AUTH."""

    port: int
    host: str = "127.0.0.1"
    starttls: bool = False
    username: str | None = None
    password: str | None = None
    ca_file: str | None = None
    postfix: bool = False
    server_pid: int | None = None  # the sink's process, for its CPU time

    def smtp_table(self) -> str:
        """The `smtp = {...}` line of config.toml for this target."""
        table = f'host = "{self.host}", port = {self.port}, security = "none"'
        if self.starttls:
            table = (
                f'host = "{self.host}", port = {self.port}, security = "starttls", '
                f'username = "{self.username}", password_env = "{PASSWORD_ENV}", '
                f'ca_file = "{self.ca_file}"'
            )
        return f"smtp = {{ {table} }}"

    def partners(self, count: int) -> list[dict[str, str]]:
        if not self.postfix:
            rows: list[dict[str, str]] = partner_rows(count)
            return rows
        rows = partner_rows(count, domain="example.test")
        for row in rows:  # Dovecot files sink+anything@ in sink's INBOX
            row["email"] = "sink+" + row["email"]
        return rows


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Sample:
    """One timed run: messages per second, and CPU per message of this process and of the
    sink (None for Postfix: several processes)."""

    rate: float
    client_us: float
    server_us: float | None


class Stopwatch:
    """Wall time and CPU time of this process and of the sink, over one run."""

    def __init__(self, target: Target) -> None:
        self.pid = target.server_pid
        self.wall = time.perf_counter()
        self.cpu = time.process_time()
        self.server = process_cpu(self.pid) if self.pid else 0.0

    def sample(self, count: int) -> Sample:
        wall = time.perf_counter() - self.wall
        client = (time.process_time() - self.cpu) / count * 1e6
        server = (process_cpu(self.pid) - self.server) / count * 1e6 if self.pid else None
        return Sample(count / wall, client, server)


def outreach_run(
    target: Target, count: int, concurrency: int
) -> tuple[Sample, list[tuple[str, bytes]]]:
    folder = Path(tempfile.mkdtemp(prefix="outreach-bench-"))
    try:
        ws = Workspace(
            folder, smtp_port=target.port, campaign=CAMPAIGN, limits=f"concurrency = {concurrency}"
        )
        if target.host != "127.0.0.1":
            raise SystemExit("only loopback hosts")
        config = ws.root / "config.toml"
        text = config.read_text(encoding="utf-8")
        written = Target(target.port).smtp_table()  # what Workspace writes
        if written not in text:
            raise SystemExit("unexpected config.toml from tests/workspace.py")
        config.write_text(text.replace(written, target.smtp_table()), encoding="utf-8")
        ws.add_partners(target.partners(count))
        worker = ws.worker()
        worker.logger = logging.getLogger("bench")
        ws.logger.setLevel(logging.ERROR)
        watch = Stopwatch(target)
        report: SendReport = worker.send_cycle()
        sample = watch.sample(count)
        if report.sent != count:
            raise SystemExit(f"outreach sent {report.sent} of {count}: {report.errors[:3]}")
        sent = [
            (r["to_addr"], r["raw"])
            for r in ws.store.query("SELECT to_addr, raw FROM messages ORDER BY id")
        ]
        ws.close()
        return sample, sent
    finally:
        shutil.rmtree(folder, ignore_errors=True)


async def raw_run(target: Target, sent: list[tuple[str, bytes]], concurrency: int) -> Sample:
    queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
    for item in sent:
        queue.put_nowait(item)
    context = ssl.create_default_context(cafile=target.ca_file) if target.starttls else None

    async def one_connection() -> None:
        client = aiosmtplib.SMTP(
            hostname=target.host, port=target.port, start_tls=target.starttls, tls_context=context
        )
        await client.connect()
        if target.username:
            await client.login(target.username, target.password or "")
        try:
            while True:
                try:
                    rcpt, raw = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                if not target.postfix:
                    rcpt = "p@partners.test"  # the sink takes anything
                await client.sendmail("coordinator@district.test", [rcpt], raw)
        finally:
            await client.quit()

    watch = Stopwatch(target)
    await asyncio.gather(*(one_connection() for _ in range(concurrency)))
    return watch.sample(len(sent))


def cpu_text(sample: Sample) -> str:
    server = f" + sink {sample.server_us:.0f}" if sample.server_us is not None else ""
    return f"{sample.client_us:.0f}{server} µs"


def measure(
    target: Target, count: int, rounds: int, settle: Callable[[], None] = lambda: None
) -> list[float]:
    ratios = []
    for concurrency in (1, 4):
        ours: list[Sample] = []
        raw: list[Sample] = []
        for _ in range(rounds):  # interleaved, best of each: the machine is noisy
            settle()
            sample, sent = outreach_run(target, count, concurrency)
            ours.append(sample)
            settle()
            raw.append(asyncio.run(raw_run(target, sent, concurrency)))
        best_ours = max(ours, key=lambda s: s.rate)
        best_raw = max(raw, key=lambda s: s.rate)
        ratio = best_ours.rate / best_raw.rate
        ratios.append(ratio)
        paired = sorted(o.rate / r.rate for o, r in zip(ours, raw, strict=True))
        print(
            f"concurrency {concurrency}: outreach {best_ours.rate:7.0f} msg/s   "
            f"raw aiosmtplib {best_raw.rate:7.0f} msg/s   ratio {ratio:.2f}\n"
            f"  CPU per message: outreach {cpu_text(best_ours)}, raw {cpu_text(best_raw)}\n"
            f"  each round's own ratio: median {statistics.median(paired):.2f} "
            f"({', '.join(f'{r:.2f}' for r in paired)})",
            flush=True,
        )
    return ratios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smaller run, under a minute")
    parser.add_argument("--messages", type=int, default=None)
    parser.add_argument(
        "--postfix",
        action="store_true",
        help="send to the project's Postfix (submission port: STARTTLS + AUTH)",
    )
    parser.add_argument(
        "--plain", action="store_true", help="with --postfix: its plain port (no TLS, no AUTH)"
    )
    parser.add_argument("--rounds", type=int, default=None)
    args = parser.parse_args()
    if args.plain and not args.postfix:
        parser.error("--plain goes with --postfix")
    count = args.messages or (500 if args.quick else 10_000)
    rounds = args.rounds or (2 if args.quick else 3)
    if not args.postfix:
        sink, port = start_sink()
        try:
            ratios = measure(Target(port, server_pid=sink.pid), count, rounds)
        finally:
            sink.terminate()
            sink.wait()
        print(f"ratio: {min(ratios):.2f}")
        return
    user, password = "coordinator@example.test", "bench-secret"
    with Mailstack(users={user: password}) as stack:
        if args.plain:
            target = Target(stack.smtp_port, postfix=True)
            where = f"plain SMTP 127.0.0.1:{stack.smtp_port}"
        else:
            os.environ[PASSWORD_ENV] = password
            target = Target(
                stack.submission_port,
                starttls=True,
                username=user,
                password=password,
                ca_file=stack.ca_file,
                postfix=True,
            )
            where = f"submission 127.0.0.1:{stack.submission_port} (STARTTLS, AUTH)"
        print(f"Postfix {where}, {count} messages per run", flush=True)
        ratios = measure(target, count, rounds, settle=stack.wait_for_empty_queue)
    print(f"ratio: {min(ratios):.2f}")


if __name__ == "__main__":
    run(main)
