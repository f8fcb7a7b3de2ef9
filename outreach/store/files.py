"""Files outreach writes for its user (exports, the HTML report, backups): readable by the
user alone, and whole or not there at all.

They hold partners' own words, so they are created 0600 whatever the umask (chmod them to
share). They are written to a temporary file beside the target and renamed over it once
complete and on disk, so a full disk or a crash never leaves half a file under the name
asked for. A target that exists and is not a regular file (/dev/stdout, /dev/full, a FIFO)
is written directly.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from outreach.core.errors import InputError, OutreachError

PRIVATE = 0o600
# The device failed us (exit 1); any other error is about the path the user named (exit 2).
DEVICE_ERRORS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EFBIG})


def write_failure(path: Path | str, exc: OSError) -> OutreachError:
    """A failed write as one line: the disk's fault exits 1, a bad path exits 2."""
    reason = exc.strerror or str(exc)
    if exc.errno in DEVICE_ERRORS:
        return OutreachError(
            f"{path}: cannot write: {reason}",
            hint="free some space and try again; nothing was written",
        )
    return InputError(f"{path}: cannot write: {reason}")


def temporary_beside(path: Path) -> tuple[Path, int]:
    """A new private file in `path`'s folder, open for writing: (its path, its descriptor)."""
    for attempt in range(100):
        candidate = path.with_name(f".{path.name}.{os.getpid()}.{attempt}.tmp")
        try:
            fd = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, PRIVATE)
        except FileExistsError:
            continue
        os.fchmod(fd, PRIVATE)  # whatever the umask
        return candidate, fd
    raise FileExistsError(errno.EEXIST, "no free temporary name", str(path))


def publish(temporary: Path, path: Path, *, overwrite: bool) -> None:
    """Give the complete `temporary` file the name `path` (atomically), then make the rename
    durable. Without `overwrite`, an existing `path` is left alone (FileExistsError)."""
    if overwrite:
        os.replace(temporary, path)
    else:
        os.link(temporary, path)  # fails if `path` exists, even if it appeared meanwhile
        os.unlink(temporary)
    with contextlib.suppress(OSError):  # not every filesystem lets a folder be fsynced
        folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)


@contextmanager
def private_text_file(path: Path) -> Iterator[IO[str]]:
    """A UTF-8 text file written whole or not at all (see the module docstring); an OSError
    on the way becomes one line naming `path` (write_failure)."""
    try:
        special = path.exists() and not path.is_file()
    except OSError as exc:
        raise write_failure(path, exc) from None
    if special:
        try:
            with open(path, "w", encoding="utf-8", newline="") as handle:
                yield handle
        except OSError as exc:
            raise write_failure(path, exc) from None
        return
    try:
        temporary, fd = temporary_beside(path)
    except OSError as exc:
        raise write_failure(path, exc) from None
    try:
        with open(fd, "w", encoding="utf-8", newline="") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        publish(temporary, path, overwrite=True)
    except OSError as exc:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise write_failure(path, exc) from None
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise
