"""Backups and integrity checks of the database file (part of the store: SQL lives here and
in outreach.store only).

`backup` copies the database with SQLite's online backup API in one step: one read
transaction, so the copy is the database as it was at one moment, even while the worker
writes (in WAL mode a reader never blocks a writer, and the worker never waits for the
backup). A copy made in several steps would start over each time another process wrote,
which a busy worker does all the time. The copy is checked (PRAGMA quick_check) before it
gets its name, is private (0600), and is one self-contained file (rollback journal mode,
no -wal beside it): restoring it is copying it back.

`integrity_problems` runs PRAGMA quick_check: it reads every page and checks each one's
structure (what a failing disk or a torn write damages), but skips matching every index
entry against its table, which makes PRAGMA integrity_check much slower on a large
database; and it stops after a time budget, so `outreach check` stays quick on any size.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from outreach.core.errors import DamagedDatabaseError, InputError, OutreachError, StoreError
from outreach.store import database_failure
from outreach.store.failures import RESTORE_HINT, Integrity, quick_check
from outreach.store.files import publish, temporary_beside, write_failure

CHECK_BUDGET = 20.0  # seconds `outreach check` spends on the integrity check, at most


def _read_only(path: Path) -> sqlite3.Connection:
    """A connection that can neither create nor change the database."""
    uri = f"file:{urllib.parse.quote(str(path.absolute()))}?mode=ro"
    return sqlite3.connect(uri, uri=True, timeout=30, isolation_level=None)


def integrity_problems(path: Path, budget: float | None = CHECK_BUDGET) -> Integrity:
    """What PRAGMA quick_check finds in the database at `path` (opened read-only, never
    created), within `budget` seconds. A file SQLite cannot read at all counts as damage."""
    conn: sqlite3.Connection | None = None
    try:
        conn = _read_only(path)
        return quick_check(conn, budget)
    except sqlite3.Error as exc:
        failure = database_failure(path, exc)
        if isinstance(failure, DamagedDatabaseError):
            return Integrity([str(exc)], finished=True)
        raise failure from exc
    finally:
        if conn is not None:
            conn.close()


@dataclass(frozen=True)
class Backup:
    path: Path
    size: int


def backup(source: Path, target: Path, *, overwrite: bool = False) -> Backup:
    """Copy the database at `source` to `target` (see the module docstring). The copy only
    gets its name once complete and checked; an existing `target` is replaced only with
    `overwrite`."""
    if not source.is_file():
        raise StoreError(f"{source}: no database here yet: nothing to back up")
    if target.exists() and not overwrite:
        raise InputError(f"{target}: already exists; not replaced", hint="--force replaces it")
    if target.exists() and target.resolve() == source.resolve():
        raise InputError(f"{target}: this is the database itself; name another file")
    try:
        temporary, fd = temporary_beside(target)
    except OSError as exc:
        raise write_failure(target, exc) from None
    os.close(fd)
    try:
        _copy(source, temporary, target)
        _fsync(temporary)
        publish(temporary, target, overwrite=overwrite)
    except FileExistsError:
        raise InputError(
            f"{target}: already exists; not replaced", hint="--force replaces it"
        ) from None
    except OSError as exc:
        raise write_failure(target, exc) from None
    finally:
        with contextlib.suppress(OSError):
            temporary.unlink()
    return Backup(target, target.stat().st_size)


def _copy(source: Path, temporary: Path, target: Path) -> None:
    """The online backup into `temporary`, then its check; errors as one line each."""
    try:
        src = _read_only(source)
    except sqlite3.Error as exc:
        raise database_failure(source, exc) from exc
    try:
        dst = sqlite3.connect(str(temporary), isolation_level=None)
        try:
            src.backup(dst)  # pages=-1: one step, one snapshot (see the module docstring)
            dst.execute("PRAGMA journal_mode=DELETE")  # one file: no -wal beside the copy
            found = quick_check(dst, None)
        finally:
            dst.close()
    except sqlite3.Error as exc:
        code = (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF
        if code == sqlite3.SQLITE_FULL:
            raise OutreachError(
                f"{target}: cannot write: the disk is full",
                hint="free some space; nothing was written",
            ) from exc
        raise database_failure(source, exc) from exc
    finally:
        src.close()
    if found.problems:
        raise DamagedDatabaseError(
            f"{source}: the database is damaged ({found.problems[0]}); no backup was "
            "written, as it would be damaged too",
            hint=RESTORE_HINT,
        )


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
