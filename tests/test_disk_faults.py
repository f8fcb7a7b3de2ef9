"""Failing disks and damaged files (issue 16, point 7): one clear line, never a traceback, and
nothing lost.

On real filesystems: a small tmpfs that fills up, the immutable flag (chattr +i), a
read-only mount, /dev/full, and database files with damaged pages. Mounting and chattr need
root, like the integration tier: these tests fail (never skip) without it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from helpers import assert_no_traceback
from logbook import build_world
from workspace import ALWAYS_OPEN, Workspace, make_workspace, partner_rows

from outreach.cli import cli
from outreach.testing.imap_server import LocalIMAPServer
from outreach.testing.smtp_server import LocalSMTPServer

IMAP_PW = "TEST_IMAP_PW"


def need_root() -> None:
    if os.geteuid() != 0:
        pytest.fail(
            "these tests mount a small tmpfs and set chattr +i: run them as root "
            "(scripts/test does in CI)"
        )


@dataclass
class Disk:
    """A tmpfs of a few MB, mounted for one test: `fill()` takes every free byte."""

    root: Path

    @property
    def filler(self) -> Path:
        return self.root / "filler"

    def fill(self) -> None:
        with open(self.filler, "ab", buffering=0) as out:
            for size in (1 << 16, 4096, 512, 1):
                with contextlib.suppress(OSError):
                    while True:
                        out.write(b"\0" * size)

    def free(self) -> None:
        self.filler.unlink(missing_ok=True)

    def remount(self, *options: str) -> None:
        subprocess.run(["mount", "-o", ",".join(["remount", *options]), str(self.root)], check=True)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Disk]:
    need_root()
    root = tmp_path / "disk"
    root.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=6m,mode=0755", "outreach-test", str(root)], check=True
    )
    try:
        yield Disk(root)
    finally:
        subprocess.run(["umount", "-l", str(root)], check=False)


@contextlib.contextmanager
def immutable(path: Path) -> Iterator[None]:
    """chattr +i: not even root may change it (or, for a folder, add or remove a file)."""
    need_root()
    subprocess.run(["chattr", "+i", str(path)], check=True)
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


def invoke(root: Path, *args: str) -> Result:
    result = CliRunner().invoke(
        cli, ["--config", str(root / "config.toml"), *args], env={IMAP_PW: "unused"}
    )
    assert_no_traceback(result)
    return result


def assert_failed_in_one_line(result: Result, *needles: str) -> str:
    """Exit 1 and one `error:` line on stderr holding every needle; nothing on stdout."""
    assert result.exit_code == 1, f"exit {result.exit_code}\n{result.output}"
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    return lines[0]


# --------------------------------------------------------------------------- a damaged database


@pytest.fixture(scope="module")
def pristine(
    tmp_path_factory: pytest.TempPathFactory, _imap_server_process: LocalIMAPServer
) -> Iterator[Path]:
    """A database written by real cycles: partners, messages, replies, a bounce."""
    imap = _imap_server_process
    imap.start()
    imap.clear()
    root = tmp_path_factory.mktemp("pristine")
    with LocalSMTPServer() as smtp, pytest.MonkeyPatch.context() as mp:
        ws = make_workspace(root, smtp, imap, mp)
        build_world(ws, smtp, imap)
        ws.add_partners(partner_rows(200))
        ws.close()
    yield root


def root_page(db: Path, table: str) -> int:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        (page,) = conn.execute(
            "SELECT rootpage FROM sqlite_master WHERE name = ?", (table,)
        ).fetchone()
        return int(page)


def zero_page(db: Path, number: int) -> None:
    with open(db, "r+b") as f:
        f.seek((number - 1) * 4096)
        f.write(bytes(4096))


def damage_replies_table(db: Path) -> None:
    """The first page of the inbound table zeroed: `status` never reads it, so it used to
    answer as if nothing were wrong."""
    zero_page(db, root_page(db, "inbound"))


def damage_second_half(db: Path) -> None:
    size = db.stat().st_size
    with open(db, "r+b") as f:
        f.seek(size // 2)
        f.write(os.urandom(size - size // 2))


def cut_in_half(db: Path) -> None:
    os.truncate(db, db.stat().st_size // 2)


def overwrite_header(db: Path) -> None:
    with open(db, "r+b") as f:
        f.write(b"this is not what SQLite wrote")


DAMAGE = [damage_replies_table, damage_second_half, cut_in_half, overwrite_header]

EVERY_COMMAND = [
    ["status"],
    ["status", "--json"],
    ["replies"],
    ["replies", "--json"],
    ["replies", "ack", "1"],
    ["log"],
    ["log", "--json"],
    ["partners", "list"],
    ["partners", "import", "{root}/more.csv"],
    ["plan"],
    ["report", "checkin"],
    ["export", "replies"],
    ["export", "events", "-o", "{root}/events.jsonl"],
    ["resolve"],
    ["preview", "checkin"],
    ["run", "--once"],
    ["run"],
    ["check"],
    ["backup", "{root}/copy.db"],
]


@pytest.fixture
def damaged(request: pytest.FixtureRequest, pristine: Path, tmp_path: Path) -> Path:
    root = tmp_path / "project"
    shutil.copytree(pristine, root)
    (root / "more.csv").write_text("email,name\nnew@partners.test,New\n")
    request.param(root / "outreach.db")
    return root


@pytest.mark.parametrize("damaged", DAMAGE, indirect=True, ids=lambda f: f.__name__)
@pytest.mark.parametrize("command", EVERY_COMMAND, ids=" ".join)
def test_every_command_says_a_damaged_database_is_damaged(
    damaged: Path, command: list[str]
) -> None:
    """Never an empty or partial answer: exit 1, what happened, what to do."""
    args = [a.format(root=damaged) for a in command]
    result = invoke(damaged, *args)
    line = assert_failed_in_one_line(
        result, str(damaged / "outreach.db"), "damaged", "restore the latest backup"
    )
    assert result.stdout == "" or command == ["check"], result.stdout
    assert not (damaged / "copy.db").exists() and not (damaged / "events.jsonl").exists()
    assert "\n" not in line


def test_check_names_the_damage_and_passes_on_a_whole_database(
    pristine: Path, tmp_path: Path
) -> None:
    root = tmp_path / "project"
    shutil.copytree(pristine, root)
    whole = invoke(root, "check")
    assert whole.exit_code == 0, whole.output
    assert "database: no damage found" in whole.stdout
    damage_replies_table(root / "outreach.db")
    result = invoke(root, "check")
    line = assert_failed_in_one_line(result, "the database is damaged", "restore the latest backup")
    assert "database: damaged" in result.stdout
    assert "outreach check" not in line  # the hint of every other command


# --------------------------------------------------------------------------- operation failures


@dataclass(frozen=True)
class Failure:
    """Set up a failing disk or file, run a command: exit 1, one line with `needles`.
    The project is on the small disk (`project_on_disk`), or on the usual one with what the
    command writes going to the small disk ({out})."""

    id: str
    setup: Callable[[Path, Disk], Any]
    command: list[str]
    needles: tuple[str, ...]
    project_on_disk: bool = True
    unchanged: Callable[[Path], Any] | None = None  # checked after the disk is fixed


def project_copy(pristine: Path, root: Path) -> Path:
    """The pristine project in `root`, without IMAP (no server needed) and with a roster."""
    shutil.copytree(pristine, root)
    config = root / "config.toml"
    config.write_text(
        "\n".join(
            line
            for line in config.read_text().splitlines()
            if not line.strip().startswith("imap =")
        )
    )
    (root / "roster.csv").write_text(
        "email,name,organization\n"
        + "".join(f"new{i}@partners.test,New {i},{'x' * 200}\n" for i in range(3000))
    )
    return root


def partner_count(root: Path) -> int:
    with contextlib.closing(sqlite3.connect(root / "outreach.db")) as conn:
        return int(conn.execute("SELECT count(*) FROM partners").fetchone()[0])


def fill(root: Path, disk: Disk) -> None:
    disk.fill()


def chattr_immutable(*names: str) -> Callable[[Path, Disk], None]:
    def setup(root: Path, disk: Disk) -> None:
        need_root()
        for name in names:
            subprocess.run(["chattr", "+i", str(root / name)], check=True)

    return setup


FAILURES = [
    Failure(
        "import-on-a-full-disk",
        fill,
        ["partners", "import", "{root}/roster.csv"],
        ("outreach.db", "the disk is full"),
        unchanged=partner_count,
    ),
    Failure(
        "ack-on-a-full-disk", fill, ["replies", "ack", "1"], ("outreach.db", "the disk is full")
    ),
    Failure("status-on-a-full-disk", fill, ["status"], ("outreach.db", "the disk is full")),
    Failure(
        "export-to-a-full-disk",
        fill,
        ["export", "events", "--format", "json", "-o", "{out}/events.json"],
        ("events.json", "No space left on device"),
        project_on_disk=False,
    ),
    Failure(
        "report-to-a-full-disk",
        fill,
        ["report", "checkin", "--html", "{out}/report.html"],
        ("report.html", "No space left on device"),
        project_on_disk=False,
    ),
    Failure(
        "backup-to-a-full-disk",
        fill,
        ["backup", "{out}/copy.db"],
        ("copy.db", "the disk is full"),
        project_on_disk=False,
    ),
    Failure(
        "export-to-dev-full",
        lambda root, disk: None,
        ["export", "replies", "--format", "csv", "-o", "/dev/full"],
        ("/dev/full", "No space left on device"),
    ),
    Failure(
        "jsonl-to-dev-full",
        lambda root, disk: None,
        ["export", "events", "-o", "/dev/full"],
        ("/dev/full", "No space left"),
    ),
    Failure(
        "report-to-dev-full",
        lambda root, disk: None,
        ["report", "checkin", "--html", "/dev/full"],
        ("/dev/full", "No space left"),
    ),
    Failure(
        "import-into-an-immutable-database",
        chattr_immutable("outreach.db"),
        ["partners", "import", "{root}/roster.csv"],
        ("outreach.db", "read-only"),
        unchanged=partner_count,
    ),
    Failure(
        "run-on-an-immutable-database",
        chattr_immutable("outreach.db"),
        ["run", "--once"],
        ("outreach.db", "read-only"),
    ),
    Failure(
        "status-in-an-immutable-folder",
        chattr_immutable("."),
        ["status"],
        ("outreach.db", "cannot open", "folder"),
    ),
    Failure(
        "replies-on-a-read-only-mount",
        lambda root, disk: disk.remount("ro"),
        ["replies"],
        ("outreach.db", "cannot open", "folder"),
    ),
    Failure(
        "run-with-the-lock-in-an-immutable-folder",
        chattr_immutable("."),
        ["run", "--once"],
        ("outreach.db.lock", "worker lock"),
    ),
]


@pytest.mark.parametrize("case", FAILURES, ids=lambda c: c.id)
def test_a_failing_disk_or_file_is_one_line_and_exit_1(
    tmp_path: Path,
    small_disk: Disk,
    pristine: Path,
    case: Failure,
) -> None:
    base = small_disk.root if case.project_on_disk else tmp_path
    root = project_copy(pristine, base / "project")
    before = case.unchanged(root) if case.unchanged else None
    case.setup(root, small_disk)
    try:
        args = [a.format(root=root, out=small_disk.root) for a in case.command]
        result = invoke(root, *args)
    finally:
        for path in (root / "outreach.db", root):
            subprocess.run(["chattr", "-i", str(path)], check=False)
        small_disk.remount("rw")
        small_disk.free()
    assert_failed_in_one_line(result, *case.needles)
    # nothing half-written under the name asked for, no temporary file left
    for name in ("events.json", "report.html", "copy.db"):
        assert not (small_disk.root / name).exists(), name
    for folder in (root, small_disk.root):
        assert [p.name for p in folder.iterdir() if p.name.endswith(".tmp")] == []
    if case.unchanged is not None:
        assert case.unchanged(root) == before  # nothing of the failed change was kept
    assert invoke(root, "check").exit_code == 0  # and the database is whole


def test_a_full_pipe_is_one_line(pristine: Path, tmp_path: Path) -> None:
    """`outreach log > /dev/full`: standard output itself cannot be written."""
    root = tmp_path / "project"
    shutil.copytree(pristine, root)
    for command in (["log"], ["export", "events"], ["replies", "--json"]):
        with open("/dev/full", "w") as full:
            done = subprocess.run(
                [sys.executable, "-m", "outreach", "--config", str(root / "config.toml"), *command],
                stdout=full,
                stderr=subprocess.PIPE,
                text=True,
                timeout=60,
                env=dict(os.environ, **{IMAP_PW: "unused"}),
            )
        assert done.returncode == 1, done.stderr
        lines = done.stderr.strip().splitlines()
        assert lines == ["error: standard output: cannot write: No space left on device"], (
            command,
            done.stderr,
        )


# --------------------------------------------------------------------------- the worker


FAST = '[worker]\npoll_every = "1s"\nsend_every = "1s"\nshutdown_timeout = "5s"\n'


def read_events(log: Path) -> list[dict[str, Any]]:
    found = []
    for line in log.read_text(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            found.append(json.loads(line))
    return found


def wait_until(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
    return value


def test_the_worker_survives_a_full_disk_mid_batch_and_sends_nothing_twice(
    tmp_path: Path,
    small_disk: Disk,
    smtp_server: LocalSMTPServer,
) -> None:
    """The disk fills while the worker is delivering a batch: it logs one clear line and
    keeps running; once space returns it sends the rest. No partner gets a message twice,
    and every message the server received is in the ledger (sent, or unknown when its
    result could not be written: settled by `outreach resolve`, never resent blindly)."""
    count = 400
    root = small_disk.root / "project"
    ws = Workspace(
        root,
        smtp_port=smtp_server.port,
        config_extra=FAST,
        campaign=ALWAYS_OPEN + '[[steps]]\ntemplate = "hello"\nsubject = "Hi"\n',
    )
    ws.add_partners(partner_rows(count))
    ws.close()
    smtp_server.delay = 0.01
    log = tmp_path / "worker.log"  # the journal is on another disk
    with open(log, "wb") as out:
        worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "outreach",
                "--config",
                str(root / "config.toml"),
                "run",
                "--log-json",
            ],
            stdout=subprocess.DEVNULL,
            stderr=out,
        )
    try:
        wait_until(lambda: len(smtp_server.messages) >= 20, 60, "the first messages")
        small_disk.fill()
        failed = wait_until(
            lambda: [
                e
                for e in read_events(log)
                if e.get("event") == "job_error" and "disk is full" in e["message"]
            ],
            60,
            "the worker to hit the full disk",
        )
        assert worker.poll() is None, log.read_text()  # it goes on
        received_while_full = len(smtp_server.messages)
        assert received_while_full < count
        time.sleep(2)  # a few ticks on a full disk: nothing is delivered without its claim
        assert len(smtp_server.messages) <= received_while_full + 2
        small_disk.free()

        def done() -> bool:
            with contextlib.closing(sqlite3.connect(root / "outreach.db", timeout=10)) as conn:
                left = conn.execute(
                    "SELECT count(*) FROM messages WHERE status NOT IN ('sent', 'unknown')"
                ).fetchone()[0]
                total = conn.execute("SELECT count(*) FROM messages").fetchone()[0]
            return total == count and left == 0

        wait_until(done, 90, "every message to be sent once space returned")
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0, log.read_text()
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
        small_disk.free()
    assert "Traceback" not in log.read_text()
    assert failed[0]["level"] == "error" and "\n" not in failed[0]["message"]
    per_partner = Counter(m.rcpt_tos[0] for m in smtp_server.messages)
    assert max(per_partner.values()) == 1, per_partner.most_common(3)  # never twice
    with contextlib.closing(sqlite3.connect(root / "outreach.db")) as conn:
        statuses = dict(
            conn.execute("SELECT status, count(*) FROM messages GROUP BY status").fetchall()
        )
        ledger = {r[0]: r[1] for r in conn.execute("SELECT to_addr, status FROM messages")}
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    # what the server got is in the ledger; what is `sent` did reach the server
    assert set(per_partner) <= set(ledger)
    assert {a for a, s in ledger.items() if s == "sent"} <= set(per_partner)
    unknown = {a for a, s in ledger.items() if s == "unknown"}
    assert unknown <= set(per_partner)  # delivered, result unrecorded: never resent
    assert len(per_partner) == count, statuses  # and everyone got theirs once
    # each message settled as unknown was said so in the log, with how to settle it
    settled = [e for e in read_events(log) if e.get("event") == "unknown"]
    assert len(settled) == len(unknown) + bool(unknown), settled
