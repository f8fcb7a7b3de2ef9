"""What can go wrong with the database file itself, said in one line for a coordinator.

A SQLite error from the disk or the file (full, read-only, damaged, busy) is not a bug: it
becomes a StoreError (a DamagedDatabaseError when pages are damaged) that says what
happened and what to do. `quick_check` looks for damage within a time budget, so a damaged
database is reported instead of giving a partial answer.
"""

from __future__ import annotations

import re
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from outreach.core.errors import DamagedDatabaseError, StoreError

# What the disk or the file did, as opposed to a mistake in a statement (SQLite result codes).
_DAMAGED = (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)
_ENVIRONMENT = (
    *_DAMAGED,
    sqlite3.SQLITE_FULL,
    sqlite3.SQLITE_READONLY,
    sqlite3.SQLITE_IOERR,
    sqlite3.SQLITE_CANTOPEN,
    sqlite3.SQLITE_PERM,
    sqlite3.SQLITE_BUSY,
    sqlite3.SQLITE_LOCKED,
)
RESTORE = 'stop the worker and restore the latest backup (README: "Backups")'
RESTORE_HINT = RESTORE + "; `outreach check` shows the damage"


def _result_code(exc: sqlite3.Error) -> int | None:
    code = getattr(exc, "sqlite_errorcode", None)
    return None if code is None else code & 0xFF  # the primary code of an extended one


def is_environmental(exc: BaseException) -> bool:
    """Whether a SQLite error comes from the disk or the file (full, read-only, damaged,
    busy), not from a statement: those become one line for the user (`database_failure`)."""
    return isinstance(exc, sqlite3.Error) and _result_code(exc) in _ENVIRONMENT


def database_failure(path: Path | str, exc: sqlite3.Error) -> StoreError:
    """A SQLite error as one line for a coordinator: what happened to the database and what
    to do. A damaged file is a DamagedDatabaseError (restore a backup)."""
    code = _result_code(exc)
    if code in _DAMAGED:
        return DamagedDatabaseError(f"{path}: the database is damaged ({exc})", hint=RESTORE_HINT)
    if code == sqlite3.SQLITE_FULL or (code == sqlite3.SQLITE_IOERR and _no_space(path)):
        # a full disk also shows as an I/O error, e.g. when SQLite cannot make its -shm file
        return StoreError(
            f"{path}: cannot write: the disk is full (this change was not saved)",
            hint="free some space; the worker tries again by itself",
        )
    if code in (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_PERM):
        return StoreError(
            f"{path}: cannot write: the database is read-only ({exc})",
            hint="outreach must be able to write the database and its folder (for the -wal "
            "and -shm files): check the permissions, `lsattr` for the immutable flag, or a "
            "read-only mount",
        )
    if code == sqlite3.SQLITE_CANTOPEN:
        return StoreError(
            f"{path}: cannot open the database file ({exc})",
            hint="its folder must exist and be writable: SQLite keeps the -wal and -shm "
            "files beside it",
        )
    if code == sqlite3.SQLITE_IOERR:
        return StoreError(
            f"{path}: the disk failed to read or write the database ({exc})",
            hint="check that the disk is not full or failing, then run `outreach check`",
        )
    if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        return StoreError(
            f"{path}: the database is busy ({exc})",
            hint="another process kept it locked too long; try again",
        )
    return StoreError(f"{path}: database error: {exc}")


OPEN_CHECK_BUDGET = 0.5  # seconds of integrity check when a command opens the database
MAX_REPORTED = 10  # problems PRAGMA quick_check lists, at most
QUICK_CHECK = "PRAGMA quick_check"  # what `outreach check` says it ran


@dataclass(frozen=True)
class Integrity:
    problems: list[str]  # empty: no damage found
    finished: bool  # False: stopped at the time budget, nothing wrong found until then


def quick_check(conn: sqlite3.Connection, budget: float | None) -> Integrity:
    """PRAGMA quick_check on `conn`, stopped after `budget` seconds (None: no limit).

    quick_check reads every page and checks its structure, which is what a failing disk, a
    torn write or a bad copy damages; it skips matching each index entry with its row
    (integrity_check's extra work, several times slower); see benchmarks/README.md for
    how long it takes per GB."""
    deadline = None if budget is None else time.monotonic() + budget
    if deadline is not None:
        conn.set_progress_handler(lambda: int(time.monotonic() > deadline), 10_000)
    try:
        rows = [str(r[0]) for r in conn.execute(f"PRAGMA quick_check({MAX_REPORTED})")]
    except sqlite3.OperationalError as exc:
        if deadline is not None and "interrupt" in str(exc).lower():
            return Integrity([], finished=False)
        raise
    finally:
        conn.set_progress_handler(None, 0)
    if rows == ["ok"]:
        return Integrity([], finished=True)
    # one line each: "*** in database main ***\nPage 32: ..." -> "Page 32: ..."
    lines = [" ".join(re.sub(r"\*\*\* in database \w+ \*\*\*", "", r).split()) for r in rows]
    return Integrity([line for line in lines if line], finished=True)


@contextmanager
def database_errors(path: Callable[[], Path | str], *, all_errors: bool = True) -> Iterator[None]:
    """A SQLite error met in the block (a read that finds a damaged page, a full disk) is
    raised as one line (`database_failure`) about the database at `path()`. With
    `all_errors=False` only the disk's and the file's: a mistake in a statement stays a bug."""
    try:
        yield
    except sqlite3.Error as exc:
        if not all_errors and not is_environmental(exc):
            raise
        raise database_failure(path(), exc) from exc


def _no_space(path: Path | str) -> bool:
    """Whether the filesystem holding `path` has (next to) no room left."""
    try:
        return shutil.disk_usage(Path(path).absolute().parent).free < 64 * 1024
    except OSError:
        return False
