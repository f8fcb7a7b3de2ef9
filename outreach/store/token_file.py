"""The token file: each OAuth2 account's tokens, next to the database, readable by its
owner only (0600), never in config.toml, the database or its exports.

Every write replaces the whole file atomically: a temporary file in the same folder,
created 0600, written and fsynced, renamed over the old one (os.replace), then the folder
fsynced. A crash at any point leaves either the old file or the new one, never a mix, so a
rotated refresh token never loses the sign-in. Read-modify-write cycles (a refresh, a
sign-in, a sign-out) hold an exclusive lock (flock on FILE.lock), so the worker and
`outreach auth login` or `check --connect` never both spend one refresh token.
(Issue 18 moves this module to store/.)
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from outreach.core.errors import StoreError
from outreach.core.oauth2 import TokenSet

FORMAT_VERSION = 1
_THREAD_LOCK = threading.RLock()  # flock is per open file; threads of one process queue here


def token_file_path(database: Path) -> Path:
    """outreach.db -> outreach.tokens.json, in the database's folder."""
    return database.with_name(f"{database.stem}.tokens.json")


@dataclass(frozen=True)
class Entry:
    """One account's sign-in as stored."""

    identity: dict[str, str]  # OAuth2Settings.identity() at sign-in
    tokens: TokenSet | None
    signed_in_at: str | None = None
    waiting: str | None = None  # why a new sign-in is needed (refresh refused), else None
    waiting_since: str | None = None

    @property
    def signed_in(self) -> bool:
        return self.tokens is not None and self.waiting is None


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _moment(text: Any) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def _entry_json(entry: Entry) -> dict[str, Any]:
    tokens = entry.tokens
    return {
        "identity": entry.identity,
        "access_token": tokens.access_token if tokens else None,
        "refresh_token": tokens.refresh_token if tokens else None,
        "expires_at": _iso(tokens.expires_at) if tokens else None,
        "obtained_at": _iso(tokens.obtained_at) if tokens else None,
        "scope": tokens.scope if tokens else "",
        "signed_in_at": entry.signed_in_at,
        "waiting": entry.waiting,
        "waiting_since": entry.waiting_since,
    }


def _entry(data: Any) -> Entry | None:
    if not isinstance(data, dict):
        return None
    identity = data.get("identity")
    identity = {str(k): str(v) for k, v in identity.items()} if isinstance(identity, dict) else {}
    access, obtained = data.get("access_token"), _moment(data.get("obtained_at"))
    tokens = None
    if isinstance(access, str) and access and obtained is not None:
        refresh = data.get("refresh_token")
        tokens = TokenSet(
            access_token=access,
            refresh_token=refresh if isinstance(refresh, str) and refresh else None,
            expires_at=_moment(data.get("expires_at")),
            obtained_at=obtained,
            scope=str(data.get("scope") or ""),
        )
    waiting, since, signed = (
        data.get("waiting"),
        data.get("waiting_since"),
        data.get("signed_in_at"),
    )
    return Entry(
        identity=identity,
        tokens=tokens,
        signed_in_at=signed if isinstance(signed, str) else None,
        waiting=waiting if isinstance(waiting, str) and waiting else None,
        waiting_since=since if isinstance(since, str) else None,
    )


class TokenFile:
    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def lock_path(self) -> Path:
        return self.path.with_name(self.path.name + ".lock")

    # ------------------------------------------------------------------ reading

    def _read_all(self) -> dict[str, Any]:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise StoreError(f"{self.path}: cannot read: {exc.strerror}") from exc
        try:
            data = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise StoreError(
                f"{self.path}: not a token file outreach wrote (not JSON)",
                hint="move it away and sign in again with `outreach auth login NAME`",
            ) from None
        accounts = data.get("accounts") if isinstance(data, dict) else None
        return dict(accounts) if isinstance(accounts, dict) else {}

    def load(self, account: str) -> Entry | None:
        return _entry(self._read_all().get(account))

    def load_all(self) -> dict[str, Entry]:
        found = {}
        for name, data in self._read_all().items():
            entry = _entry(data)
            if entry is not None:
                found[str(name)] = entry
        return found

    # ------------------------------------------------------------------ writing

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Exclusive use of the file, across threads and processes."""
        with _THREAD_LOCK:
            try:
                fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except OSError as exc:
                raise StoreError(f"{self.lock_path}: cannot open: {exc.strerror}") from exc
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)  # releases the flock

    def save(self, account: str, entry: Entry) -> None:
        """Store one account's entry (the others are kept). Call inside `locked()`."""
        accounts = self._read_all()
        accounts[account] = _entry_json(entry)
        self._write(accounts)

    def remove(self, account: str) -> bool:
        """Forget one account's tokens; True if there were any. Call inside `locked()`."""
        accounts = self._read_all()
        if account not in accounts:
            return False
        del accounts[account]
        self._write(accounts)
        return True

    def _write(self, accounts: dict[str, Any]) -> None:
        data = json.dumps({"version": FORMAT_VERSION, "accounts": accounts}, indent=2)
        folder = self.path.parent
        temp = folder / f".{self.path.name}.{os.getpid()}.{threading.get_ident()}.tmp"
        try:
            # O_EXCL + 0600 at creation: never readable by others, not for a moment, whatever
            # the umask (it can only take bits away)
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except FileExistsError:
            temp.unlink()  # left by a crash of this very pid and thread: ours to replace
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise StoreError(f"{self.path}: cannot write: {exc.strerror}") from exc
        try:
            try:
                os.fchmod(fd, 0o600)
                view = memoryview((data + "\n").encode("utf-8"))
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temp, self.path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                temp.unlink()
            raise StoreError(f"{self.path}: cannot write: {exc.strerror}") from exc
        try:  # the rename itself is durable only once the folder is
            dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            return
        try:
            os.fsync(dir_fd)
        except OSError:
            pass
        finally:
            os.close(dir_fd)
