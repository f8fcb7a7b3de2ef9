"""The database's files (issue 16, points 5, 6 and 9), with real worker processes:

- private by default: the database, its -wal and -shm files, the worker lock, and what
  outreach writes for you (exports, the HTML report, backups) are 0600 whatever the umask;
- one worker per database, whatever name reaches it (a symbolic link, a linked folder,
  `..`); a second name made by a hard link is refused;
- `outreach backup`: a consistent, private copy while the worker sends; never overwriting
  without --force; restored as the README says.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from workspace import ALWAYS_OPEN, Workspace, partner_rows

from outreach.testing.smtp_server import LocalSMTPServer

FAST = '[worker]\npoll_every = "1s"\nsend_every = "1s"\nshutdown_timeout = "10s"\n'
ONE_STEP = ALWAYS_OPEN + '[[steps]]\ntemplate = "hello"\nsubject = "Hi"\n'


def outreach(
    config: Path, *args: str, umask: int | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OUTREACH_")}
    return subprocess.run(
        [sys.executable, "-m", "outreach", "--config", str(config), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        umask=-1 if umask is None else umask,
    )


class Worker:
    """`outreach run --log-json` in a child process."""

    def __init__(self, config: Path, log: Path, umask: int | None = None) -> None:
        self.log = log
        env = {k: v for k, v in os.environ.items() if not k.startswith("OUTREACH_")}
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "outreach", "--config", str(config), "run", "--log-json"],
                stdout=subprocess.DEVNULL,
                stderr=out,
                env=env,
                umask=-1 if umask is None else umask,
            )

    def events(self) -> list[dict[str, Any]]:
        found = []
        for line in self.log.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                found.append(json.loads(line))
        return found

    def wait_for(self, event: str, timeout: float = 30) -> None:
        def seen() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"the worker exited {self.proc.returncode}:\n" + self.log.read_text()
                )
            return any(e.get("event") == event for e in self.events())

        wait_until(seen, timeout, f"{event} in {self.log}")

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(30)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def workers() -> Iterator[list[Worker]]:
    started: list[Worker] = []
    yield started
    for worker in started:
        worker.close()


def wait_until(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
    return value


def mode(path: Path) -> str:
    return oct(stat.S_IMODE(path.stat().st_mode))


def project(
    root: Path,
    smtp: LocalSMTPServer,
    partners: int,
    database: str = "outreach.db",
) -> Path:
    """A project whose roster (partners.csv) is not imported yet: nothing on disk but files."""
    ws = Workspace(root, smtp_port=smtp.port, config_extra=FAST, campaign=ONE_STEP)
    config = root / "config.toml"
    config.write_text(
        config.read_text().replace('database = "outreach.db"', f'database = "{database}"')
    )
    rows = partner_rows(partners)
    (root / "partners.csv").write_text(
        "email,name,organization\n"
        + "".join(f"{r['email']},{r['name']},{r['organization']}\n" for r in rows)
    )
    del ws
    return config


# --------------------------------------------------------------------------- private files


@pytest.mark.parametrize("umask", [0o000, 0o022], ids=["umask-000", "umask-022"])
def test_state_and_output_files_are_private_whatever_the_umask(
    tmp_path: Path,
    smtp_server: LocalSMTPServer,
    workers: list[Worker],
    umask: int,
) -> None:
    config = project(tmp_path, smtp_server, 300, database="state/outreach.db")
    imported = outreach(config, "partners", "import", str(tmp_path / "partners.csv"), umask=umask)
    assert imported.returncode == 0, imported.stderr
    state = tmp_path / "state"
    assert mode(state) == "0o700"  # a folder outreach made for it
    smtp_server.delay = 0.02  # the worker is still sending while we look
    worker = Worker(config, tmp_path / "worker.log", umask=umask)
    workers.append(worker)
    worker.wait_for("sent")
    db = state / "outreach.db"
    files = [db, state / "outreach.db-wal", state / "outreach.db-shm", state / "outreach.db.lock"]
    for path in files:
        assert mode(path) == "0o600", path
    written = {
        "replies.csv": ["export", "replies", "--format", "csv", "-o"],
        "events.jsonl": ["export", "events", "-o"],
        "report.html": ["report", "checkin", "--html"],
        "copy.db": ["backup"],
    }
    for name, command in written.items():
        done = outreach(config, *command, str(tmp_path / name), umask=umask)
        assert done.returncode == 0, done.stderr
        assert mode(tmp_path / name) == "0o600", name
    assert worker.stop() == 0
    assert mode(db) == "0o600"


# --------------------------------------------------------------------------- one worker


def second_config(other: Path, first: Path, database: str) -> Path:
    """Another project folder whose config reaches `first`'s database as `database`."""
    other.mkdir(exist_ok=True)
    for name in ("campaigns", "templates"):
        shutil.copytree(first.parent / name, other / name, dirs_exist_ok=True)
    text = first.read_text().replace('database = "outreach.db"', f'database = "{database}"')
    (other / "config.toml").write_text(text)
    return other / "config.toml"


def symlink_to_the_file(tmp_path: Path, other: Path) -> str:
    other.mkdir()
    (other / "link.db").symlink_to(tmp_path / "a" / "outreach.db")
    return "link.db"


def relative_symlink_to_the_file(tmp_path: Path, other: Path) -> str:
    other.mkdir()
    (other / "link.db").symlink_to(Path("..") / "a" / "outreach.db")
    return "./link.db"


def symlinked_folder(tmp_path: Path, other: Path) -> str:
    other.mkdir()
    (other / "data").symlink_to(tmp_path / "a", target_is_directory=True)
    return "data/outreach.db"


def dot_dot(tmp_path: Path, other: Path) -> str:
    return "../a/./outreach.db"


def absolute_through_a_linked_parent(tmp_path: Path, other: Path) -> str:
    (tmp_path / "alias").symlink_to(tmp_path, target_is_directory=True)
    return str(tmp_path / "alias" / "a" / ".." / "a" / "outreach.db")


NAMINGS = [
    symlink_to_the_file,
    relative_symlink_to_the_file,
    symlinked_folder,
    dot_dot,
    absolute_through_a_linked_parent,
]


def test_one_worker_per_database_however_it_is_named(
    tmp_path: Path,
    smtp_server: LocalSMTPServer,
    workers: list[Worker],
) -> None:
    """The lock is keyed on the database's real path: a second config reaching the same
    file by any other name cannot start a second worker, and its `status` sees the first."""
    first = project(tmp_path / "a", smtp_server, 3)
    assert (
        outreach(first, "partners", "import", str(tmp_path / "a" / "partners.csv")).returncode == 0
    )
    worker = Worker(first, tmp_path / "first.log")
    workers.append(worker)
    worker.wait_for("started")
    for name_it in NAMINGS:
        other = tmp_path / name_it.__name__
        second = second_config(other, first, name_it(tmp_path, other))
        for args in (["run", "--once"], ["run"]):
            refused = outreach(second, *args, timeout=30)
            assert refused.returncode == 1, (name_it.__name__, refused.stderr)
            lines = refused.stderr.strip().splitlines()
            assert len(lines) == 1 and "already running" in lines[0], refused.stderr
            assert f"pid {worker.proc.pid}" in lines[0]
        status = outreach(second, "status", "--json")
        assert json.loads(status.stdout)["worker"]["running"] is True, name_it.__name__
    assert worker.stop() == 0
    assert len(smtp_server.messages) == 3  # one worker sent them, once


def test_a_database_with_a_second_name_is_refused(
    tmp_path: Path,
    smtp_server: LocalSMTPServer,
    workers: list[Worker],
) -> None:
    """A hard link is a second name the lock cannot see from the other, and SQLite would
    keep a -wal beside each: every command refuses it, saying how to fix it."""
    first = project(tmp_path / "a", smtp_server, 3)
    assert (
        outreach(first, "partners", "import", str(tmp_path / "a" / "partners.csv")).returncode == 0
    )
    worker = Worker(first, tmp_path / "first.log")
    workers.append(worker)
    worker.wait_for("started")
    (tmp_path / "other").mkdir()
    os.link(tmp_path / "a" / "outreach.db", tmp_path / "other" / "hard.db")
    second = second_config(tmp_path / "other", first, "hard.db")
    for args in (["run", "--once"], ["status"], ["replies"]):
        refused = outreach(second, *args, timeout=30)
        assert refused.returncode == 1, refused.stderr
        lines = refused.stderr.strip().splitlines()
        assert len(lines) == 1 and "2 names (hard links)" in lines[0], refused.stderr
        assert "samefile" in lines[0]
    assert not (tmp_path / "other" / "hard.db-wal").exists()
    assert worker.stop() == 0
    assert len(smtp_server.messages) == 3


# --------------------------------------------------------------------------- backups


def ledger_is_whole(db: Path) -> dict[str, int]:
    """A copy taken at one moment: each sent message has its `sent` event (one transaction
    writes both), the file is whole, and it stands alone (no -wal needed)."""
    uri = f"file:{db}?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("delete",)
        sent = conn.execute("SELECT count(*) FROM messages WHERE status = 'sent'").fetchone()[0]
        events = conn.execute("SELECT count(*) FROM events WHERE kind = 'sent'").fetchone()[0]
        queued = conn.execute("SELECT count(*) FROM messages").fetchone()[0]
        partners = conn.execute("SELECT count(*) FROM partners").fetchone()[0]
    assert sent == events, (sent, events)
    return {"sent": sent, "messages": queued, "partners": partners}


def test_backup_while_the_worker_sends_is_consistent_and_private(
    tmp_path: Path,
    smtp_server: LocalSMTPServer,
    workers: list[Worker],
) -> None:
    count = 300
    config = project(tmp_path, smtp_server, count)
    assert outreach(config, "partners", "import", str(tmp_path / "partners.csv")).returncode == 0
    smtp_server.delay = 0.02
    worker = Worker(config, tmp_path / "worker.log")
    workers.append(worker)
    worker.wait_for("sent")
    copies = []
    for number in range(3):
        target = tmp_path / "backups" / f"copy{number}.db"
        target.parent.mkdir(exist_ok=True)
        done = outreach(config, "backup", str(target))
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith(f"wrote {target}")
        assert mode(target) == "0o600"
        copies.append(ledger_is_whole(target))
        time.sleep(0.3)
    received = len(smtp_server.messages)
    assert worker.proc.poll() is None  # the worker was not held up (still running)
    assert worker.stop() == 0
    assert sorted(p.name for p in (tmp_path / "backups").iterdir()) == [
        "copy0.db",
        "copy1.db",
        "copy2.db",
    ]  # no -wal, -shm or temporary file beside them
    sent = [c["sent"] for c in copies]
    assert sent == sorted(sent) and sent[0] > 0 and sent[-1] < count, sent  # mid-batch
    assert sent[-1] <= received
    assert all(c["partners"] == count for c in copies)


def test_backup_never_overwrites_without_force_and_restores_as_the_readme_says(
    tmp_path: Path,
    smtp_server: LocalSMTPServer,
) -> None:
    config = project(tmp_path, smtp_server, 5)
    assert outreach(config, "partners", "import", str(tmp_path / "partners.csv")).returncode == 0
    assert outreach(config, "run", "--once").returncode == 0
    target = tmp_path / "nightly.db"
    target.write_bytes(b"last night's copy")
    refused = outreach(config, "backup", str(target))
    assert refused.returncode == 2, refused.stderr
    assert refused.stderr.strip() == (
        f"error: {target}: already exists; not replaced (hint: --force replaces it)"
    )
    assert target.read_bytes() == b"last night's copy"
    target.chmod(0o644)
    forced = outreach(config, "backup", "--force", str(target))
    assert forced.returncode == 0, forced.stderr
    assert mode(target) == "0o600"
    assert ledger_is_whole(target) == {"sent": 5, "messages": 5, "partners": 5}
    # the database is lost; restore it as the README says (the worker is stopped): move the
    # database and its -wal and -shm files aside, copy the backup in its place, check
    db = tmp_path / "outreach.db"
    db.write_bytes(b"garbage" * 1000)
    (tmp_path / "outreach.db-wal").write_bytes(b"stale log")
    aside = tmp_path / "damaged"
    aside.mkdir()
    for name in ("outreach.db", "outreach.db-wal", "outreach.db-shm"):
        with contextlib.suppress(FileNotFoundError):
            (tmp_path / name).rename(aside / name)
    shutil.copyfile(target, db)
    os.chmod(db, 0o600)
    checked = outreach(config, "check")
    assert checked.returncode == 0, checked.stderr
    assert "database: no damage found" in checked.stdout
    status = json.loads(outreach(config, "status", "--json").stdout)
    assert status["campaigns"]["checkin"]["sent"] == 5
