"""One open outreach database: the connection, its transactions and its checkpoints.

Every entity module (partners, sequences, outbox, inbound, events, state) is a mixin over
`Database`; store/__init__.py puts them together as `Store`. The connection is SQLite in WAL
mode with foreign keys on; writes are explicit transactions (`write`, or `begin` ... `commit`
for the send path's group commit). The file is created 0600: it holds partners' own words.
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

import sqlite_utils

from outreach.core.errors import DamagedDatabaseError, StoreError
from outreach.store.failures import (
    RESTORE_HINT,
    database_failure,
    is_environmental,
    quick_check,
)
from outreach.store.schema import migrations

IN_CHUNK = 500
AUTOCHECKPOINT_PAGES = 10_000  # ~40 MB of WAL
BATCH_CHECKPOINT_PAGES = 250_000  # ~1 GB: a bound for a batch that is never that large
BATCH_CHECKPOINT_EVERY = 0.2  # seconds between a batch's checkpoints on the helper thread
PRIVATE = 0o600  # the database holds partners' words: readable by its owner alone


def iso(moment: datetime) -> str:
    """The one text form of a time in the database."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime")
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


# A lone UTF-16 surrogate cannot be encoded as UTF-8, so SQLite refuses the whole row. Lenient
# decoders make them from hostile mail (UTF-7 payloads, surrogateescape'd 8-bit headers).
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def storable(value: Any) -> Any:
    """Text SQLite can store: lone surrogates become U+FFFD; other values pass through."""
    if isinstance(value, str) and _LONE_SURROGATE.search(value):
        return _LONE_SURROGATE.sub("\ufffd", value)
    return value


def parse_iso(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def create_private(path: Path) -> None:
    """Create the database file 0600 (whatever the umask) before SQLite opens it: SQLite
    gives its -wal and -shm files the mode of the database file."""
    if path == Path(":memory:") or path.exists():
        return
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, PRIVATE)
    try:
        os.fchmod(fd, PRIVATE)
    finally:
        os.close(fd)


def refuse_second_name(path: Path) -> None:
    """A database with two names (a hard link) is refused: SQLite keeps its -wal beside the
    name it was opened by, so a worker and a command using one name each would each have a
    log of their own and damage it; and the worker lock could not see the other name."""
    try:
        links = os.stat(path).st_nlink
    except OSError:
        return
    if links > 1:
        raise StoreError(
            f"{path}: this database file has {links} names (hard links); refusing to use "
            "it, as SQLite could damage a database opened by two names",
            hint=f"keep one name: find the others with `find / -xdev -samefile {path}`, "
            "remove them, and use a symbolic link if you need a second path",
        )


class WalCheckpointer:
    """Checkpoints a database's WAL every `every` seconds on a thread of its own, with its
    own connection, while the block runs. SQLite copies the pages and waits for the disk
    without holding the GIL, so the caller's thread goes on meanwhile. PASSIVE: nothing is
    waited for; a checkpoint that cannot run now is left for the next. An error stops the
    checkpoints, never the caller: what is left is checkpointed later.
    """

    def __init__(self, path: Path, every: float) -> None:
        self.path = path
        self.every = every
        self.done = 0  # checkpoints run
        self.error: sqlite3.Error | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="outreach-checkpoint")

    def __enter__(self) -> WalCheckpointer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        try:
            conn = sqlite3.connect(str(self.path), isolation_level=None)
        except sqlite3.Error as exc:
            self.error = exc
            return
        try:
            conn.execute("PRAGMA synchronous=NORMAL")
            while not self._stop.wait(self.every):
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
                self.done += 1
        except sqlite3.Error as exc:
            self.error = exc
        finally:
            conn.close()


def _casefold(value: Any) -> Any:
    return value.casefold() if isinstance(value, str) else value


class Database:
    """A handle on one outreach database: open, migrate, transactions, plain queries."""

    def __init__(self, path: Path | str, *, integrity_budget: float | None = None) -> None:
        """Open (creating it 0600 if needed) and migrate the database. With
        `integrity_budget`, first spend up to that many seconds on PRAGMA quick_check, so a
        damaged database is said to be damaged instead of giving a partial answer (the CLI
        does; a database too large to check in time is checked by `outreach check`)."""
        self.path = Path(path)
        try:
            create_private(self.path)
            refuse_second_name(self.path)
            # isolation_level=None: we issue BEGIN ourselves (see `write`).
            conn = sqlite3.connect(str(self.path), timeout=30, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            # Checkpoints fsync; fewer, larger ones keep writes fast (WAL <= ~40 MB).
            conn.execute(f"PRAGMA wal_autocheckpoint={AUTOCHECKPOINT_PAGES}")
            conn.execute("PRAGMA foreign_keys=ON")
            # Python's casefold, so SQL narrows the audience exactly as plan.py compares it
            conn.create_function("casefold", 1, _casefold, deterministic=True)
            if integrity_budget is not None:
                found = quick_check(conn, integrity_budget)
                if found.problems:
                    conn.close()
                    raise DamagedDatabaseError(
                        f"{self.path}: the database is damaged ({found.problems[0]})",
                        hint=RESTORE_HINT,
                    )
            self.db = sqlite_utils.Database(conn, execute_plugins=False)
            migrations.apply(self.db)
        except sqlite3.Error as exc:
            if is_environmental(exc):
                raise database_failure(self.path, exc) from exc
            raise StoreError(f"{self.path}: cannot open the database: {exc}") from exc
        except OSError as exc:
            raise StoreError(
                f"{self.path}: cannot create the database: {exc.strerror}",
                hint="check that its folder can be written",
            ) from exc

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; nested calls join the outer one (no savepoints: an error
        anywhere rolls the whole transaction back).

        BEGIN IMMEDIATE takes the write lock up front: a deferred transaction that reads and
        then writes can fail at once with "database is locked" when the worker and a command
        write at the same time, while an immediate one waits for the busy timeout.
        """
        conn = self.db.conn
        if conn.in_transaction:  # nested: part of the caller's transaction, all or nothing
            yield conn
            return
        self.begin()
        try:
            yield conn
        except sqlite3.Error as exc:
            self.rollback()
            if is_environmental(exc):  # a full disk, a damaged page: one line, not a bug
                raise database_failure(self.path, exc) from exc
            raise
        except BaseException:
            self.rollback()
            raise
        else:
            self.commit()

    def begin(self) -> None:
        """Open a write transaction (BEGIN IMMEDIATE, see `write`) that the caller ends with
        `commit` or `rollback`, unless one is open; `write` joins it meanwhile."""
        conn = self.db.conn
        if not conn.in_transaction:
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                if is_environmental(exc):
                    raise database_failure(self.path, exc) from exc
                raise StoreError(f"{self.path}: cannot write: {exc}") from exc

    def commit(self) -> None:
        """Commit the open transaction; if that fails (a full disk), it is rolled back, so
        nothing of it is kept or acted on."""
        if self.db.conn.in_transaction:
            try:
                self.db.conn.execute("COMMIT")
            except sqlite3.Error as exc:
                self.rollback()
                if is_environmental(exc):
                    raise database_failure(self.path, exc) from exc
                raise

    def rollback(self) -> None:
        if self.db.conn.in_transaction:
            try:
                self.db.conn.execute("ROLLBACK")
            except sqlite3.Error as exc:
                if not is_environmental(exc):
                    raise
                # SQLite rolls back what it could not write by itself (and at the next open)

    @contextmanager
    def checkpoint_after(self) -> Iterator[None]:
        """Keep WAL checkpoints off this connection during a batch of many small transactions.

        A checkpoint copies the pages written since the last one into the database file and
        fsyncs it. Automatic ones ran inside a commit now and then, and the batch waited for
        the disk (a large part of each commit's cost). During the batch they run every
        BATCH_CHECKPOINT_EVERY seconds on a helper thread with a connection of its own
        (WalCheckpointer); the rest is checkpointed here, after the batch. PASSIVE: a reader
        in another process is never waited for.
        """
        conn = self.db.conn
        conn.execute(f"PRAGMA wal_autocheckpoint={BATCH_CHECKPOINT_PAGES}")
        try:
            if self.path == Path(":memory:"):
                yield
            else:
                with WalCheckpointer(self.path, BATCH_CHECKPOINT_EVERY):
                    yield
        finally:
            # a checkpoint that fails (a full disk) loses nothing: the pages stay in the WAL
            with contextlib.suppress(sqlite3.Error):
                conn.execute(f"PRAGMA wal_autocheckpoint={AUTOCHECKPOINT_PAGES}")
                if not conn.in_transaction:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def _select_in(
        self, sql: str, values: Sequence[Any], before: Sequence[Any] = ()
    ) -> Iterator[Any]:
        """Run `sql`, whose `{marks}` is an IN list, over `values` in chunks (SQLite limits
        the number of parameters of one statement); the rows as tuples."""
        for start in range(0, len(values), IN_CHUNK):
            chunk = list(values[start : start + IN_CHUNK])
            yield from self.db.conn.execute(
                sql.format(marks=",".join("?" * len(chunk))), [*before, *chunk]
            )

    def query(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[dict[str, Any]]:
        return list(self.db.query(sql, params))

    def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        row = self.db.conn.execute(sql, params).fetchone()
        return row[0] if row else None
