"""Start and stop the project's real Postfix + Dovecot stack (scripts/mailstack) for a benchmark.

The same steps as the `mailstack` fixture in tests/conftest.py, without pytest: free ports,
a 0755 folder under /tmp (Postfix, Dovecot and `mail` must be able to enter every parent),
start.sh with its output in a file (the daemons keep inherited pipes open), stop.sh --purge
and the folder removed afterwards, also on Ctrl-C or SIGTERM.

    with Mailstack(users={"coordinator@example.test": "secret"}) as stack:
        stack.imap_port, stack.submission_port, stack.ca_file, ...
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from outreach.testing.ports import free_ports

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "scripts" / "mailstack"


def exit_cleanly_on_signals() -> None:
    """SIGTERM / SIGHUP unwind the stack like Ctrl-C does, so every `finally` runs."""

    def handler(signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, handler)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started in background


def run(main: Callable[[], None]) -> None:
    """A benchmark's entry point: Ctrl-C (or SIGTERM/SIGHUP) stops it after its cleanup."""
    try:
        exit_cleanly_on_signals()
        main()
    except KeyboardInterrupt:
        print("interrupted: servers stopped, temporary files removed", file=sys.stderr)
        sys.exit(130)


class Mailstack:
    """A throwaway Postfix + Dovecot on 127.0.0.1; a context manager."""

    def __init__(
        self,
        *,
        users: dict[str, str],
        domains: tuple[str, ...] = ("example.test",),
        mail_format: str = "sdbox",
        in_flow_delay: str = "0s",
    ) -> None:
        self.users = dict(users)
        self.domains = domains
        self.mail_format = mail_format
        self.in_flow_delay = in_flow_delay
        self.base: Path | None = None
        self.dir = Path()
        self.host = "127.0.0.1"
        self.ports: dict[str, int] = {}
        self.ca_file = ""

    # ports by name, as in stack.json
    smtp_port = property(lambda self: self.ports["smtp"])
    submission_port = property(lambda self: self.ports["subm"])
    imap_port = property(lambda self: self.ports["imap"])
    imaps_port = property(lambda self: self.ports["imaps"])
    lmtp_port = property(lambda self: self.ports["lmtp"])

    def __enter__(self) -> Mailstack:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        if os.geteuid() != 0:
            raise SystemExit("the mail stack (Postfix + Dovecot) must be started as root")
        missing = [c for c in ("postfix", "dovecot", "openssl") if shutil.which(c) is None]
        if missing:
            raise SystemExit(
                f"not installed: {', '.join(missing)}: run scripts/mailstack/install.sh"
            )
        self.base = Path(tempfile.mkdtemp(prefix="outreach-bench-stack-", dir="/tmp"))
        self.base.chmod(0o755)
        self.dir = self.base / "stack"
        names = ("SMTP", "SUBM", "SMTPS", "IMAP", "IMAPS", "LMTP")
        env = dict(
            os.environ,
            MAILSTACK_MAIL_FORMAT=self.mail_format,
            MAILSTACK_IN_FLOW_DELAY=self.in_flow_delay,
            MAILSTACK_DOMAINS=" ".join(self.domains),
            MAILSTACK_USERS=" ".join(f"{u}:{p}" for u, p in self.users.items()),
        )
        ports = free_ports(6)
        env.update({f"MAILSTACK_{n}_PORT": str(p) for n, p in zip(names, ports, strict=True)})
        log = self.base / "start.log"
        with open(log, "wb") as out:
            # own session: a Ctrl-C in the terminal reaches us, not the daemons; we stop them
            rc = subprocess.run(
                [str(SCRIPTS / "start.sh"), str(self.dir)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                timeout=120,
                start_new_session=True,
            ).returncode
        if rc != 0:
            tail = log.read_text(errors="replace")[-3000:]
            for name in ("postfix.log", "dovecot.log"):
                path = self.dir / "log" / name
                if path.exists():
                    tail += f"\n--- {name}\n" + path.read_text(errors="replace")[-2000:]
            raise SystemExit(f"the mail stack did not start (start.sh exit {rc}):\n{tail}")
        info: dict[str, Any] = json.loads((self.dir / "stack.json").read_text())
        self.ports = {k: int(v) for k, v in info["ports"].items()}
        self.ca_file = info["ca_file"]

    def stop(self) -> None:
        if self.base is None:
            return
        try:
            if self.dir.is_dir():
                subprocess.run(
                    [str(SCRIPTS / "stop.sh"), str(self.dir), "--purge"],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    timeout=60,
                    start_new_session=True,
                )
        finally:
            shutil.rmtree(self.base, ignore_errors=True)
            self.base = None

    def imap(self, user: str, *, timeout: float = 60) -> Any:
        """A logged-in IMAPClient on the plain IMAP port (TCP_NODELAY set)."""
        import socket

        from imapclient import IMAPClient

        client = IMAPClient(self.host, port=self.imap_port, ssl=False, timeout=timeout)
        client.socket().setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        client.login(user, self.users[user])
        return client

    def postfix_queue_size(self) -> int:
        """Messages Postfix still holds (incoming, active, deferred, maildrop)."""
        spool = self.dir / "spool" / "postfix"
        return sum(
            1
            for name in ("maildrop", "incoming", "active", "deferred", "hold")
            for _ in (spool / name).rglob("*")
            if _.is_file()
        )

    def wait_for_empty_queue(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while self.postfix_queue_size() and time.monotonic() < deadline:
            time.sleep(0.2)
