"""IMAP with IMAPClient: the one socket-aware class for mailboxes.

outreach never deletes, moves or flags anything in the user's mailbox: folders are selected
read-only and messages fetched with BODY.PEEK[] so nothing is marked read. The only write is
an optional APPEND of sent copies to the Sent folder.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime

import imapclient
from imapclient.exceptions import IMAPClientError, LoginError

from outreach.config import ServerSettings
from outreach.errors import AuthenticationError, MailServerError

SENT_NAMES = ("Sent", "Sent Items", "Sent Messages", "Sent Mail", "[Gmail]/Sent Mail", "INBOX.Sent")


def _tls_context(settings: ServerSettings) -> ssl.SSLContext:
    if settings.ca_file is not None:
        return ssl.create_default_context(cafile=str(settings.ca_file))
    return ssl.create_default_context()


class Mailbox:
    """A logged-in IMAP connection; use as a context manager."""

    def __init__(self, settings: ServerSettings, password: str | None) -> None:
        self.settings = settings
        self.password = password
        self.client: imapclient.IMAPClient | None = None

    @property
    def where(self) -> str:
        return f"IMAP {self.settings.address}"

    def __enter__(self) -> Mailbox:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def connect(self) -> None:
        s = self.settings
        timeout = s.timeout.total_seconds()
        try:
            client = imapclient.IMAPClient(
                s.host, port=s.port, ssl=s.security == "tls",
                ssl_context=_tls_context(s) if s.security == "tls" else None, timeout=timeout,
            )
            if s.security == "starttls":
                client.starttls(_tls_context(s))
            # Nagle's algorithm stalls APPEND of many small messages (see mail-servers.md).
            sock = getattr(client, "socket", lambda: None)()
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except ssl.SSLError as exc:
            raise MailServerError(
                f"{self.where}: TLS failed: {exc.reason or exc}",
                hint="if the server uses a private certificate, name its CA in ca_file",
                permanent=True,
            ) from exc
        except (IMAPClientError, OSError) as exc:
            raise MailServerError(f"{self.where}: cannot connect: {exc}") from exc
        if s.username:
            try:
                client.login(s.username, self.password or "")
            except LoginError as exc:
                _quietly_logout(client)
                raise AuthenticationError(
                    f"{self.where}: login as {s.username} refused",
                    hint=f"check the password in {s.password_env or 'password_cmd'}",
                ) from exc
            except (IMAPClientError, OSError) as exc:
                _quietly_logout(client)
                raise MailServerError(f"{self.where}: login failed: {exc}") from exc
        self.client = client

    def close(self) -> None:
        if self.client is not None:
            _quietly_logout(self.client)
            self.client = None

    @contextmanager
    def errors(self, doing: str) -> Iterator[None]:
        """Foreign exceptions become MailServerError with the host and what we were doing."""
        try:
            yield
        except MailServerError:
            raise
        except (IMAPClientError, OSError, socket.timeout) as exc:
            raise MailServerError(f"{self.where}: {doing} failed: {exc}") from exc

    @property
    def imap(self) -> imapclient.IMAPClient:
        if self.client is None:
            raise MailServerError(f"{self.where}: not connected")
        return self.client

    def capabilities(self) -> set[str]:
        with self.errors("CAPABILITY"):
            return {c.decode() if isinstance(c, bytes) else str(c) for c in self.imap.capabilities()}

    def sent_folder(self) -> str:
        """The configured sent_folder, else the special-use \\Sent folder (RFC 6154), else a
        folder with a well-known name."""
        if self.settings.sent_folder:
            return self.settings.sent_folder
        with self.errors("LIST"):
            folders = self.imap.list_folders()
        names = []
        for flags, _delimiter, name in folders:
            if b"\\Sent" in flags:
                return str(name)
            names.append(str(name))
        for candidate in SENT_NAMES:
            if candidate in names:
                return candidate
        raise MailServerError(
            f"{self.where}: no Sent folder found", hint="set sent_folder in the [imap] settings",
            permanent=True,
        )

    def append(self, folder: str, raw: bytes, when: datetime | None = None) -> None:
        with self.errors(f"APPEND to {folder}"):
            self.imap.append(folder, raw, flags=(imapclient.SEEN,), msg_time=when)

    def find_message_ids(self, folder: str, message_ids: Iterable[str]) -> set[str]:
        """Which of these Message-IDs are in `folder` (read-only; nothing is marked)."""
        found: set[str] = set()
        with self.errors(f"SEARCH in {folder}"):
            self.imap.select_folder(folder, readonly=True)
            for message_id in message_ids:
                if self.imap.search(["HEADER", "Message-ID", message_id]):
                    found.add(message_id)
        return found


def _quietly_logout(client: imapclient.IMAPClient) -> None:
    try:
        client.logout()
    except Exception:  # noqa: BLE001 - closing a broken connection must not raise
        try:
            client.shutdown()
        except Exception:  # noqa: BLE001
            pass
