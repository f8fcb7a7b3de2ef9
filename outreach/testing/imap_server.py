"""A local IMAP server for the test suite and for ``outreach demo``: pymap (in-memory
``dict`` backend, one user) run as a child process, with helpers that APPEND and read mail
via IMAPClient.

Nothing here talks to any host but the loopback interface, and nothing imports pytest.
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from outreach.testing.ports import LOCALHOST, free_port, port_open

__all__ = ["LocalIMAPServer", "StoredMessage"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoredMessage:
    """One message in a LocalIMAPServer folder."""

    uid: int
    flags: tuple[str, ...]
    raw: bytes
    folder: str = "INBOX"

    @property
    def message(self) -> EmailMessage:
        msg = email.message_from_bytes(self.raw, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        return msg


_PYMAP_LAUNCHER = """\
import os, sys, threading, time
parent = os.getppid()
def watchdog():
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(0)
threading.Thread(target=watchdog, daemon=True).start()
sys.argv[0] = "pymap"
from pymap.main import main
main()
"""


@dataclass
class _Proc:
    popen: subprocess.Popen[bytes]
    log_file: Any = field(repr=False)


class LocalIMAPServer:
    """A pymap IMAP4rev1 server (in-memory ``dict`` backend) in a child process.

    Usage::

        with LocalIMAPServer() as imap:          # or imap = LocalIMAPServer().start()
            imap.append(raw_bytes)               # -> UID
            with imap.client() as c: ...         # logged-in IMAPClient (plain, TCP_NODELAY)
            imap.messages("INBOX")               # list[StoredMessage], by UID

    One user (``user``/``password``; LOGIN and AUTHENTICATE PLAIN), no TLS, on
    ``host``:``port`` (``port=0``: a free port is picked on the first start and kept).
    The mailbox starts EMPTY: only INBOX, no messages (pymap loads its demo messages only
    with ``--demo-data``, which is not passed). Everything lives in the child's memory:

    * ``stop()`` kills the process and all mail is gone; ``start()``/``restart()`` brings up
      an empty server on the SAME port. UIDs start at 101 again and every folder gets a
      NEW UIDVALIDITY (pymap draws it from the clock and a random number), so a restart is
      how to test a client's UIDVALIDITY-change handling.
    * ``clear()`` deletes all messages and all folders but INBOX without a restart: fast,
      but UIDs keep counting up and UIDVALIDITY stays the same.

    pymap capabilities: IDLE, UIDPLUS (APPEND returns the UID), MOVE, MULTIAPPEND,
    ``SEARCH HEADER``; no NAMESPACE, CONDSTORE, ESEARCH, SORT. Each LOGIN costs ~0.1 s
    (PBKDF2), so the helpers here reuse one connection. The child's stdout/stderr go to
    ``log_path`` (a temporary file made at the first start unless given; ``close()`` or
    leaving the ``with`` block deletes it); ``log_tail()`` returns its end.
    """

    def __init__(
        self,
        user: str = "coordinator@example.test",
        password: str = "secret",
        host: str = LOCALHOST,
        port: int = 0,
        *,
        log_path: str | os.PathLike[str] | None = None,
        startup_timeout: float = 20.0,
    ) -> None:
        self.user = user
        self.password = password
        self.host = host
        self.port = port
        self.startup_timeout = startup_timeout
        self._own_log = log_path is None
        # a temporary file is made on the first start()
        self.log_path: Path | None = Path(log_path) if log_path is not None else None
        self._proc: _Proc | None = None
        self._helper: Any = None  # IMAPClient, created on first use
        self._helper_lock = threading.RLock()
        self._state_lock = threading.RLock()

    # ------------------------------------------------------------------ lifecycle

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.popen.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.popen.pid if self._proc is not None else None

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    def command(self) -> list[str]:
        """The command line of the child process.

        pymap has no ``__main__`` module (``python -m pymap`` fails), so its console-script
        function is called with ``-c``, behind a watchdog thread that ends the child when
        this process dies without calling stop() (e.g. a test run killed with SIGKILL).
        """
        return [
            sys.executable,
            "-c",
            _PYMAP_LAUNCHER,
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--no-tls",
            "dict",
            "--demo-user",
            self.user,
            "--demo-password",
            self.password,
        ]

    def start(self) -> LocalIMAPServer:
        """Start the child process and wait until it answers (idempotent)."""
        with self._state_lock:
            if self.running:
                return self
            if self._proc is not None:  # died on its own
                self._reap()
            if self.port == 0:
                self.port = free_port(self.host)
            if port_open(self.host, self.port):
                raise RuntimeError(f"LocalIMAPServer: port {self.port} is already in use")
            if self.log_path is None:
                fd, name = tempfile.mkstemp(prefix="outreach-pymap-", suffix=".log")
                os.close(fd)
                self.log_path = Path(name)
            log_file = open(self.log_path, "ab")  # noqa: SIM115 (closed in _reap)
            log_file.write(f"--- starting pymap on {self.host}:{self.port}\n".encode())
            log_file.flush()
            env = dict(os.environ, PYTHONUNBUFFERED="1")
            popen = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # a Ctrl-C in the terminal is not meant for it
            )
            self._proc = _Proc(popen, log_file)
            deadline = time.monotonic() + self.startup_timeout
            while True:
                if popen.poll() is not None:
                    tail = self.log_tail()
                    self._reap()
                    raise RuntimeError(
                        f"pymap exited with code {popen.returncode} at start:\n{tail}"
                    )
                if self._greets():
                    return self
                if time.monotonic() > deadline:
                    tail = self.log_tail()
                    self.stop()
                    raise RuntimeError(
                        f"pymap did not answer on {self.host}:{self.port} within "
                        f"{self.startup_timeout} s:\n{tail}"
                    )
                time.sleep(0.02)

    def _greets(self) -> bool:
        """True when an IMAP server greets on our port (reads the '* OK' line)."""
        try:
            with socket.create_connection((self.host, self.port), timeout=1) as s:
                return s.recv(64).startswith(b"* OK")
        except OSError:
            return False

    def stop(self) -> None:
        """Kill the child process (TERM, then KILL after 5 s) and reap it (idempotent)."""
        with self._state_lock:
            self._close_helper()
            if self._proc is None:
                return
            popen = self._proc.popen
            if popen.poll() is None:
                popen.send_signal(signal.SIGTERM)
                try:
                    popen.wait(5)
                except subprocess.TimeoutExpired:
                    popen.kill()
                    popen.wait(5)
            self._reap()
            # the listening socket dies with the process; make sure before a restart
            deadline = time.monotonic() + 5
            while port_open(self.host, self.port, 0.1) and time.monotonic() < deadline:
                time.sleep(0.02)

    def _reap(self) -> None:
        if self._proc is not None:
            with contextlib.suppress(Exception):
                self._proc.popen.wait(1)
            self._proc.log_file.close()
            self._proc = None

    def restart(self) -> LocalIMAPServer:
        """Stop and start again on the same port: empty mailbox, new UIDVALIDITY."""
        self.stop()
        return self.start()

    def close(self) -> None:
        """stop(), and remove the log file if this object created it."""
        self.stop()
        if self._own_log and self.log_path is not None:
            with contextlib.suppress(OSError):
                self.log_path.unlink()

    def __enter__(self) -> LocalIMAPServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = f"pid {self.pid}" if self.running else "stopped"
        return f"<LocalIMAPServer {self.user}@{self.host}:{self.port} {state}>"

    def log_tail(self, lines: int = 30) -> str:
        if self.log_path is None:
            return ""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    # ------------------------------------------------------------------ clients

    def client(self, *, timeout: float = 10.0, login: bool = True) -> Any:
        """A new IMAPClient connected (plain, ``ssl=False``) and, by default, logged in.

        TCP_NODELAY is set: without it pymap's replies to APPEND wait for Nagle's
        algorithm (~40 ms each). Use as a context manager to log out.
        """
        from imapclient import IMAPClient  # imported here: IMAPClient is slow to import

        c = IMAPClient(self.host, port=self.port, ssl=False, timeout=timeout)
        try:
            c.socket().setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if login:
                c.login(self.user, self.password)
        except BaseException:
            with contextlib.suppress(Exception):
                c.shutdown()
            raise
        return c

    def _close_helper(self) -> None:
        with self._helper_lock:
            helper, self._helper = self._helper, None
            if helper is not None:
                with contextlib.suppress(Exception):
                    helper.shutdown()

    def _with_helper(self, fn: Callable[[Any], Any]) -> Any:
        """Run fn(client) on the shared helper connection; reconnect once on failure."""
        from imapclient.exceptions import IMAPClientAbortError

        with self._helper_lock:
            for attempt in (1, 2):
                if self._helper is None:
                    self._helper = self.client()
                try:
                    return fn(self._helper)
                except (OSError, IMAPClientAbortError, EOFError):
                    self._close_helper()
                    if attempt == 2:
                        raise
        raise AssertionError("unreachable")

    # ------------------------------------------------------------------ helpers

    def append(
        self,
        raw: bytes | str | EmailMessage,
        folder: str = "INBOX",
        flags: Sequence[str | bytes] = (),
        msg_time: Any = None,
    ) -> int | None:
        """APPEND a message to *folder*; return its UID (from UIDPLUS' APPENDUID)."""
        if isinstance(raw, EmailMessage):
            raw = raw.as_bytes(policy=email.policy.SMTP)
        elif isinstance(raw, str):
            raw = raw.encode()
        data = raw

        def do(c: Any) -> int | None:
            resp = c.append(folder, data, flags=tuple(flags), msg_time=msg_time)
            return _appenduid(resp)

        result: int | None = self._with_helper(do)
        return result

    def messages(self, folder: str = "INBOX") -> list[StoredMessage]:
        """All messages of *folder* (UID, flags, raw bytes), by UID; marks nothing read."""

        def do(c: Any) -> list[StoredMessage]:
            c.select_folder(folder, readonly=True)
            uids = c.search("ALL")
            if not uids:
                return []
            data = c.fetch(uids, ["FLAGS", "BODY.PEEK[]"])
            out = [
                StoredMessage(
                    uid=uid,
                    flags=tuple(_text(f) for f in d[b"FLAGS"]),
                    raw=d[b"BODY[]"],
                    folder=folder,
                )
                for uid, d in data.items()
            ]
            return sorted(out, key=lambda m: m.uid)

        result: list[StoredMessage] = self._with_helper(do)
        return result

    def wait_for(
        self, count: int, folder: str = "INBOX", timeout: float = 5.0
    ) -> list[StoredMessage]:
        """Poll until *folder* holds at least *count* messages; return them."""
        deadline = time.monotonic() + timeout
        while True:
            msgs = self.messages(folder)
            if len(msgs) >= count:
                return msgs
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"LocalIMAPServer: {len(msgs)} of {count} messages in {folder} "
                    f"after {timeout} s"
                )
            time.sleep(0.05)

    def folders(self) -> list[str]:
        """Names of all folders (INBOX included)."""
        result: list[str] = self._with_helper(
            lambda c: [_text(name) for _flags, _delim, name in c.list_folders()]
        )
        return result

    def create_folder(self, name: str) -> None:
        self._with_helper(lambda c: c.create_folder(name))

    def delete_folder(self, name: str) -> None:
        self._with_helper(lambda c: c.delete_folder(name))

    def uidvalidity(self, folder: str = "INBOX") -> int:
        result: int = self._with_helper(
            lambda c: c.folder_status(folder, ["UIDVALIDITY"])[b"UIDVALIDITY"]
        )
        return result

    def clear(self) -> None:
        """Delete every message in INBOX and every other folder (no restart needed)."""

        def do(c: Any) -> None:
            names = [_text(name) for _flags, _delim, name in c.list_folders()]
            # children before parents
            for name in sorted(names, key=len, reverse=True):
                if name.upper() == "INBOX":
                    continue
                with contextlib.suppress(Exception):
                    c.unsubscribe_folder(name)
                c.delete_folder(name)
            c.select_folder("INBOX")
            uids = c.search("ALL")
            if uids:
                c.delete_messages(uids)
                c.expunge()
            c.close_folder()

        self._with_helper(do)


def _text(value: str | bytes) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _appenduid(resp: bytes | str) -> int | None:
    """UID from an APPEND response like b'[APPENDUID 1234 101] APPEND completed.'."""
    text = _text(resp)
    if "[APPENDUID" not in text:
        return None
    try:
        return int(text.split("[APPENDUID", 1)[1].split("]", 1)[0].split()[1])
    except (IndexError, ValueError):
        return None
