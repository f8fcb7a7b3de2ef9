"""IMAP with IMAPClient: the one socket-aware class for mailboxes.

outreach never deletes, moves or flags anything in the user's mailbox: folders are selected
read-only and messages fetched with BODY.PEEK[] so nothing is marked read. The only writes are
an optional APPEND of sent copies to the Sent folder, and creating the sent_folder the user
named when the server says it does not exist yet.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import imapclient
from imapclient.exceptions import IMAPClientError, LoginError

from outreach.core import sasl
from outreach.core.errors import AuthenticationError, MailServerError, tls_failure
from outreach.core.redaction import redact
from outreach.core.settings import ServerSettings
from outreach.core.text import one_line
from outreach.transport import compat_imapclient as compat
from outreach.transport.login import Login, as_login
from outreach.transport.tls import tls_context

SENT_NAMES = ("Sent", "Sent Items", "Sent Messages", "Sent Mail", "[Gmail]/Sent Mail", "INBOX.Sent")


class Mailbox:
    """A logged-in IMAP connection; use as a context manager."""

    def __init__(self, settings: ServerSettings, password: str | Login | None) -> None:
        self.settings = settings
        self.login = as_login(settings, password)
        self.client: imapclient.IMAPClient | None = None

    @property
    def where(self) -> str:
        return f"IMAP {self.settings.address}"

    def _said(self, exc: BaseException) -> str:
        """A server's (or the library's) text without the password: a server may quote the
        LOGIN or AUTHENTICATE data it refuses (outreach.core.redaction; the logins remember
        every password and token they hand out)."""
        return redact(str(exc))

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
                s.host,
                port=s.port,
                ssl=s.security == "tls",
                ssl_context=tls_context(s) if s.security == "tls" else None,
                timeout=timeout,
            )
            if s.security == "starttls":
                client.starttls(tls_context(s))
            # Nagle's algorithm stalls APPEND of many small messages (see mail-servers.md).
            sock = getattr(client, "socket", lambda: None)()
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except ssl.SSLError as exc:
            raise tls_failure(self.where, exc) from exc
        except (IMAPClientError, OSError) as exc:
            raise MailServerError(f"{self.where}: cannot connect: {self._said(exc)}") from exc
        if s.username:
            try:
                self._login(client, s.username)
            except LoginError as exc:
                _quietly_logout(client)
                said = f": {exc}" if self.login.mechanism is not None else ""
                raise AuthenticationError(
                    f"{self.where}: login as {s.username} refused{said}",
                    hint=self.login.refused_hint(),
                ) from exc
            except MailServerError:  # ours already: sign-in needed, token endpoint down
                _quietly_logout(client)
                raise
            except (IMAPClientError, OSError) as exc:
                _quietly_logout(client)
                raise MailServerError(f"{self.where}: login failed: {self._said(exc)}") from exc
            except BaseException:  # token_cmd failed (ConfigError): not left open
                _quietly_logout(client)
                raise
        self.client = client

    def _login(self, client: imapclient.IMAPClient, username: str) -> None:
        """LOGIN with a password, or AUTHENTICATE with a token (RFC 3501 6.2.2), renewed
        and tried once more when refused."""
        login = self.login
        mechanism = login.mechanism
        if mechanism is None:
            client.login(username, login.secret() or "")
            return
        token = login.secret()
        assert token is not None
        try:
            self._authenticate(client, mechanism, username, token)
        except LoginError:
            fresh = login.renew(token)
            if fresh is None:
                raise
            self._authenticate(client, mechanism, username, fresh)

    def _authenticate(
        self, client: imapclient.IMAPClient, mechanism: sasl.Mechanism, user: str, token: str
    ) -> None:
        s = self.settings
        conversation = sasl.Conversation(mechanism, user, token, s.host, s.port)
        try:
            client.sasl_login(mechanism.value, conversation)
        except LoginError as exc:
            # the server's words, and what its error challenge said; never the token
            said = one_line(exc, 300, printable=True)
            said += f" ({conversation.error})" if conversation.error else ""
            raise LoginError(said) from None

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
        except (TimeoutError, IMAPClientError, OSError) as exc:
            raise MailServerError(f"{self.where}: {doing} failed: {self._said(exc)}") from exc

    @property
    def imap(self) -> imapclient.IMAPClient:
        if self.client is None:
            raise MailServerError(f"{self.where}: not connected")
        return self.client

    def capabilities(self) -> set[str]:
        with self.errors("CAPABILITY"):
            found = self.imap.capabilities()
            return {c.decode() if isinstance(c, bytes) else str(c) for c in found}

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
            f"{self.where}: no Sent folder found",
            hint="set sent_folder in the [imap] settings (created if it does not exist)",
            permanent=True,
        )

    def append(self, folder: str, raw: bytes, when: datetime | None = None) -> bool:
        """APPEND a message, marked read. A folder that does not exist is created (and
        subscribed, so mail clients show it) when the server answers NO [TRYCREATE] (RFC 3501
        6.3.11), and the APPEND is tried once more. True when the folder was created."""
        with self.errors(f"APPEND to {folder}"):
            try:
                self.imap.append(folder, raw, flags=(imapclient.SEEN,), msg_time=when)
                return False
            except IMAPClientError as exc:
                if "[TRYCREATE]" not in str(exc).upper():
                    raise
        with self.errors(f"CREATE {folder}"):
            self.imap.create_folder(folder)
        with contextlib.suppress(IMAPClientError):  # a folder not subscribed still works
            self.imap.subscribe_folder(folder)
        with self.errors(f"APPEND to {folder}"):
            self.imap.append(folder, raw, flags=(imapclient.SEEN,), msg_time=when)
        return True

    def find_message_ids(self, folder: str, message_ids: Iterable[str]) -> set[str]:
        """Which of these Message-IDs are in `folder` (read-only; nothing is marked)."""
        found: set[str] = set()
        with self.errors(f"SEARCH in {folder}"):
            self.imap.select_folder(folder, readonly=True)
            for message_id in message_ids:
                if self.imap.search(["HEADER", "Message-ID", message_id]):
                    found.add(message_id)
        return found

    # ------------------------------------------------------------------ reading

    def select_readonly(self, folder: str) -> tuple[int, int]:
        """Select a folder read-only (nothing is ever marked read); (UIDVALIDITY, UIDNEXT)."""
        with self.errors(f"SELECT {folder}"):
            info = self.imap.select_folder(folder, readonly=True)
        uidvalidity = int(info.get(b"UIDVALIDITY", 0))
        uidnext = int(info.get(b"UIDNEXT", 0) or 0)
        return uidvalidity, uidnext

    def uids_from(self, first: int) -> list[int]:
        """UIDs >= first, ascending. (`first:*` also matches the highest UID when it is
        below `first`, RFC 3501 6.4.8, hence the filter.)"""
        with self.errors("UID SEARCH"):
            found = self.imap.search(["UID", f"{max(first, 1)}:*"])
        return sorted(uid for uid in found if uid >= first)

    def fetch_headers(self, uids: list[int]) -> dict[int, tuple[bytes, int]]:
        """Header block and size of each message, without downloading bodies."""
        if not uids:
            return {}
        with self.errors("FETCH headers"):
            data = self._fetch(uids, ["BODY.PEEK[HEADER]", "RFC822.SIZE"])
        return {
            uid: (bytes(item.get(b"BODY[HEADER]") or b""), int(item.get(b"RFC822.SIZE") or 0))
            for uid, item in data.items()
        }

    def fetch_bodies(self, uids: list[int], max_size: int) -> dict[int, bytes]:
        """Whole messages (BODY.PEEK[], so not marked read), cut at max_size bytes."""
        if not uids:
            return {}
        with self.errors("FETCH bodies"):
            data = self._fetch(uids, [f"BODY.PEEK[]<0.{max_size}>"])
        bodies = {}
        for uid, item in data.items():
            raw = next((v for k, v in item.items() if k.startswith(b"BODY[]")), b"")
            bodies[uid] = bytes(raw or b"")
        return bodies

    def _fetch(self, uids: list[int], items: list[str]) -> dict[int, dict[bytes, Any]]:
        """UID FETCH, read quickly when the answer has the usual shape (compat.uid_fetch)."""
        return compat.uid_fetch(self.imap, uids, items)

    def idle_wait(self, seconds: float, on_idle: Callable[[], None] | None = None) -> bool:
        """IMAP IDLE (RFC 2177) on the selected folder: True when the server reports news.
        `on_idle` is called once the server has accepted IDLE (mail delivered before then
        may be reported only when IDLE ends: pymap does so).

        Not IMAPClient's idle_check: it reads with the socket non-blocking, so a response
        line that arrives in two pieces (pymap writes `* 1 FETCH (FLAGS ()` and `)` apart;
        any server may, under load) ended the session with "unterminated line", and the
        watcher waited for its retry. Here a line is read only once the socket (or a buffer
        before it) has data, and then read whole."""
        client = self.imap
        with self.errors("IDLE"):
            news = compat.start_idle(client)
            try:
                if on_idle is not None:
                    on_idle()
                if not news:
                    news = compat.wait_for_news(client, time.monotonic() + seconds)
            finally:
                _, responses = client.idle_done()
        return news or any(compat.is_news(response) for response in responses)


def _quietly_logout(client: imapclient.IMAPClient) -> None:
    try:
        client.logout()
    except Exception:  # noqa: BLE001 - closing a broken connection must not raise
        with contextlib.suppress(Exception):
            client.shutdown()
