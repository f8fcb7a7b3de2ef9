"""One worker per database: an advisory lock the kernel releases when the process dies,
so a crashed worker never leaves it stuck.

The lock is keyed on the database's real path (symbolic links, `..` and relative paths
resolved), so two configs that reach one database by different names share one lock. A
database with a second name (a hard link) is refused when it is opened (store.Store):
SQLite keeps the -wal file beside the name it was given, so two names would mean two logs.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from outreach.core.errors import StoreError, WorkerLockedError

PRIVATE = 0o600


def lock_path(database: Path) -> Path:
    """The lock file of `database`: beside the file the path really leads to."""
    real = Path(os.path.realpath(database))
    return real.with_name(real.name + ".lock")


class WorkerLock:
    def __init__(self, database: Path) -> None:
        self.path = lock_path(database)
        self._fd: int | None = None

    def acquire(self) -> None:
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, PRIVATE)
        except OSError as exc:
            raise StoreError(
                f"{self.path}: cannot create the worker lock: {exc.strerror or exc}",
                hint="outreach needs to write in the database's folder (check its "
                "permissions, `lsattr -d` for the immutable flag, a read-only mount)",
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise WorkerLockedError(
                f"{self.path.with_suffix('')}: a worker is already running on this database "
                f"(pid {holder})",
                hint="stop it first, or use `outreach status` to see what it is doing",
            ) from None
        try:
            if os.fstat(fd).st_mode & 0o777 != PRIVATE:
                os.fchmod(fd, PRIVATE)  # whatever the umask was when it was made
            os.ftruncate(fd, 0)
            os.write(fd, str(os.getpid()).encode())
        except OSError as exc:
            os.close(fd)
            raise StoreError(
                f"{self.path}: cannot write the worker lock: {exc.strerror or exc}"
            ) from None
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> WorkerLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def lock_holder(database: Path) -> int | None:
    """The pid holding the worker lock, or None when no live worker holds it (or the lock
    cannot be read at all)."""
    path = lock_path(database)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.read(fd, 64).decode(errors="replace").strip()
            return int(text) if text.isdigit() else -1
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
