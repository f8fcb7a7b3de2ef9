"""config.toml and campaigns/*.toml -> frozen dataclasses.

Every problem is collected with the file, line and key it is about, so `outreach check`
can report all of them at once; other commands show the first. Unknown keys are errors:
they are usually typos.
"""

from __future__ import annotations

import os
import re
import subprocess
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from email.utils import getaddresses, parseaddr
from functools import lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from outreach.core.durations import parse_duration
from outreach.core.oauth2 import (
    SCOPES,
    TENANT,
    TEST_ORIGIN_ENV,
    Endpoints,
    OAuth2Settings,
    Provider,
    endpoint_problem,
    preset_endpoints,
)
from outreach.core.redaction import remember_secret
from outreach.errors import ConfigError, Problems

CONFIG_ENV = "OUTREACH_CONFIG"
SECURITY_MODES = ("tls", "starttls", "none")
AUTH_KINDS = ("password", "oauth2")
SASL_MECHANISMS = ("xoauth2", "oauthbearer")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")
RESERVED_TEMPLATE_VARS = ("partner", "account", "campaign", "step")

# Sending limits published by the providers (see README, "Sending limits").
LIMIT_PRESETS: dict[str, dict[str, Any]] = {
    "google_workspace": {"per_minute": 20, "per_day": 1500, "jitter": "3s", "concurrency": 1},
    "gmail": {"per_minute": 10, "per_day": 400, "jitter": "5s", "concurrency": 1},
    "microsoft365": {"per_minute": 30, "per_day": 5000, "jitter": "2s", "concurrency": 1},
}


# ----------------------------------------------------------------------------- dataclasses


@dataclass(frozen=True)
class ServerSettings:
    """How to reach one SMTP or IMAP server. Passwords are looked up only when needed."""

    kind: str  # "smtp" or "imap", for messages
    key_path: str  # e.g. "accounts.default.smtp", for messages
    source: Path
    host: str
    port: int
    security: str
    username: str | None = None
    password_env: str | None = None
    password_cmd: str | None = None
    ca_file: Path | None = None
    timeout: timedelta = timedelta(seconds=30)
    # IMAP only
    folder: str = "INBOX"
    sent_folder: str | None = None
    idle: bool = False
    # "password" (password_env / password_cmd) or "oauth2" (the account's [oauth2] table);
    # sasl: the OAuth2 mechanism, XOAUTH2 by default (the only one Microsoft 365 takes on
    # SMTP), OAUTHBEARER (RFC 7628) where the server offers it
    auth: str = "password"
    sasl: str = "xoauth2"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def password(self) -> str | None:
        """The password from the environment or from a command; None when no login is needed."""
        if self.password_env:
            value = os.environ.get(self.password_env)
            if value is None:
                raise ConfigError(
                    f"{key_location(self.source, self.key_path + '.password_env')}: the "
                    f"environment variable {self.password_env} is not set",
                    hint=f"export {self.password_env}=... before starting outreach",
                )
            remember_secret(value)  # never printed, logged or stored (outreach.core.redaction)
            return value
        if self.password_cmd:
            try:
                done = subprocess.run(
                    self.password_cmd, shell=True, capture_output=True, text=True, timeout=60
                )
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise ConfigError(
                    f"{key_location(self.source, self.key_path + '.password_cmd')} could not "
                    f"run: {exc}"
                ) from exc
            if done.returncode != 0:
                raise ConfigError(
                    f"{key_location(self.source, self.key_path + '.password_cmd')} exited "
                    f"with {done.returncode}"
                )
            password = done.stdout.rstrip("\r\n")
            remember_secret(password)
            return password
        return None


@dataclass(frozen=True)
class Limits:
    per_minute: int | None = None
    per_day: int | None = None
    jitter: timedelta = timedelta(0)
    retry: tuple[timedelta, ...] = (
        timedelta(minutes=1),
        timedelta(minutes=10),
        timedelta(hours=1),
        timedelta(hours=6),
    )
    concurrency: int = 2


@lru_cache(maxsize=64)
def _display_name(header: str) -> str:
    return parseaddr(header)[0]


@dataclass(frozen=True)
class Account:
    name: str
    from_header: str
    from_email: str
    smtp: ServerSettings
    imap: ServerSettings | None
    limits: Limits
    reply_to: str | None = None
    unsubscribe_mailto: str | None = None
    unsubscribe_url: str | None = None
    save_sent: bool = False
    oauth2: OAuth2Settings | None = None

    @property
    def domain(self) -> str:
        return self.from_email.rpartition("@")[2]

    @property
    def from_name(self) -> str:
        return _display_name(self.from_header)

    @property
    def unsubscribe_address(self) -> str:
        return self.unsubscribe_mailto or self.from_email


@dataclass(frozen=True)
class WorkerSettings:
    poll_every: timedelta = timedelta(minutes=2)
    send_every: timedelta = timedelta(minutes=2)
    idle: bool = False
    shutdown_timeout: timedelta = timedelta(seconds=30)


# Ranges of [replies] (README, "Configuration reference").
MIN_MESSAGE_SIZE = 64 * 1024  # below this, ordinary replies would be cut short
MAX_MESSAGE_SIZE = 100 * 1024 * 1024  # a message is held in memory several times over
MAX_BATCH_SIZE = 10_000
MAX_SOFT_BOUNCE_LIMIT = 100


@dataclass(frozen=True)
class ReplySettings:
    auto_reply_pause: timedelta = timedelta(days=7)
    soft_bounce_limit: int = 3
    max_message_size: int = 10 * 1024 * 1024
    batch_size: int = 200


@dataclass(frozen=True)
class DigestSettings:
    to: str
    account: str
    at: time = time(7, 0)


@dataclass(frozen=True)
class Config:
    path: Path
    database: Path
    campaigns_dir: Path
    templates_dir: Path
    timezone: str
    template_vars: dict[str, Any]
    accounts: dict[str, Account]
    worker: WorkerSettings = field(default_factory=WorkerSettings)
    replies: ReplySettings = field(default_factory=ReplySettings)
    digest: DigestSettings | None = None

    @property
    def folder(self) -> Path:
        return self.path.parent


@dataclass(frozen=True)
class Audience:
    tags: tuple[str, ...] = ()
    pathways: tuple[str, ...] = ()
    industries: tuple[str, ...] = ()
    owners: tuple[str, ...] = ()
    exclude_tags: tuple[str, ...] = ()

    @property
    def is_everyone(self) -> bool:
        return not (self.tags or self.pathways or self.industries or self.owners)


@dataclass(frozen=True)
class Window:
    days: frozenset[int] = frozenset(range(5))  # Monday = 0
    start: time = time(9, 0)
    end: time = time(16, 0)


@dataclass(frozen=True)
class Blackout:
    first: date
    last: date
    name: str = ""


@dataclass(frozen=True)
class Step:
    number: int  # 1-based
    template: str
    subject: str | None  # None: "Re: <first subject>"
    after: timedelta
    thread: bool = True


@dataclass(frozen=True)
class Campaign:
    name: str
    source: Path
    account: str
    steps: tuple[Step, ...]
    audience: Audience = field(default_factory=Audience)
    start: datetime | None = None
    window: Window = field(default_factory=Window)
    blackouts: tuple[Blackout, ...] = ()
    description: str = ""
    match_domain: bool = False
    enabled: bool = True


# ----------------------------------------------------------------------------- reading


def find_config(explicit: str | os.PathLike[str] | None) -> Path:
    """--config PATH, else $OUTREACH_CONFIG, else ./config.toml."""
    if explicit:
        return Path(explicit)
    from_env = os.environ.get(CONFIG_ENV)
    if from_env:
        return Path(from_env)
    return Path("config.toml")


def read_toml(path: Path) -> tuple[dict[str, Any], str]:
    """Parse a TOML file; syntax errors name the file and line."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: file not found", hint="run `outreach init` or pass --config PATH"
        ) from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    try:
        return tomllib.loads(text), text
    except RecursionError:  # tomllib parses nested arrays and tables recursively
        raise ConfigError(
            f"{path}: TOML syntax error: arrays or tables nested too deeply"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        found = re.search(r"\(at line (\d+), column (\d+)\)", message)
        reason = message[: found.start()].strip() if found else message
        where = f"{path}:{found.group(1)}" if found else str(path)
        raise ConfigError(f"{where}: TOML syntax error: {reason}") from None


class _Reader:
    """Reads one TOML document, recording problems as 'file:line: key: message'."""

    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.lines = text.splitlines()
        self.problems: list[str] = []
        self.judged = False

    def verdict(self) -> None:
        """Raise Problems if any were found. Every key must be read before this: a value read
        afterwards would never be checked (`enabled = "no"` once sent mail that way)."""
        self.judged = True
        if self.problems:
            raise Problems(self.problems)

    def line_of(self, key_path: str) -> int | None:
        """Best effort: the line where the last part of `key_path` is written.

        `steps[2].after` is looked for after the third `[[steps]]` header (or the third
        inline table of an inline array); whole-line comments are skipped, so a
        commented-out example is never taken for the real key.
        """
        parts = re.findall(r"\[\d+\]|[^.\[\]]+", key_path)
        if not parts:
            return None
        code = [("" if line.lstrip().startswith("#") else line) for line in self.lines]
        names: list[str] = []
        start = 0
        for part in parts:
            if part.startswith("["):
                index = int(part[1:-1])
                array = re.compile(
                    r"^\s*\[\[\s*" + r"\s*\.\s*".join(map(re.escape, names)) + r"\s*\]\]"
                )
                hits = [n for n in range(start, len(code)) if array.search(code[n])]
                if not hits:  # an inline array of tables: one `{` per element
                    hits = [n for n in range(start, len(code)) if "{" in code[n]]
                if index < len(hits):
                    start = hits[index]
                continue
            names.append(part)
            header = re.compile(
                r"^\s*\[\[?\s*" + r"\s*\.\s*".join(map(re.escape, names)) + r"\s*\]"
            )
            assign = re.compile(r"(^|[{,\s])" + re.escape(part) + r"\s*=")
            for number in range(start, len(code)):
                if header.search(code[number]) or assign.search(code[number]):
                    start = number
                    break
        return start + 1

    def problem(self, key_path: str, message: str) -> None:
        if self.judged:
            raise RuntimeError(f"{key_path} checked after the verdict")
        line = self.line_of(key_path) if key_path else None
        where = f"{self.path}:{line}" if line else str(self.path)
        self.problems.append(
            f"{where}: {key_path}: {message}" if key_path else f"{where}: {message}"
        )

    def table(self, value: Any, key_path: str, allowed: tuple[str, ...]) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.problem(key_path, f"expected a table, got {_kind(value)}")
            return {}
        for key in value:
            if key not in allowed:
                suggestion = _closest(key, allowed)
                hint = f" (did you mean '{suggestion}'?)" if suggestion else ""
                self.problem(
                    _join(key_path, key),
                    f"unknown key{hint}; expected one of: {', '.join(allowed)}",
                )
        return value

    def get(
        self,
        table: dict[str, Any],
        key_path: str,
        key: str,
        kind: type | tuple[type, ...],
        default: Any = None,
        required: bool = False,
    ) -> Any:
        if self.judged:  # a bug: this value would never be checked
            raise RuntimeError(f"{_join(key_path, key)} read after the verdict")
        full = _join(key_path, key)
        if key not in table:
            if required:
                self.problem(key_path or key, f"missing required key '{key}'")
            return default
        value = table[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if isinstance(value, bool) and bool not in kinds:
            self.problem(full, f"expected {_names(kinds)}, got a boolean")
            return default
        if not isinstance(value, kinds):
            self.problem(full, f"expected {_names(kinds)}, got {_kind(value)}")
            return default
        return value

    def duration(
        self, table: dict[str, Any], key_path: str, key: str, default: timedelta, zero: bool = False
    ) -> timedelta:
        """A duration like "7d": longer than 0s unless `zero` says 0s means something (a
        jitter of "0s" turns it off). A bad value is a problem; the default stands in for it
        only so the other keys can still be checked."""
        text = self.get(table, key_path, key, str)
        if text is None:
            return default
        try:
            value = parse_duration(text)
        except ValueError as exc:
            self.problem(_join(key_path, key), str(exc))
            return default
        if not zero and value <= timedelta(0):
            self.problem(_join(key_path, key), f"{text!r}: must be longer than 0s")
            return default
        return value

    def integer(
        self,
        table: dict[str, Any],
        key_path: str,
        key: str,
        default: int,
        low: int,
        high: int,
        note: str = "",
    ) -> int:
        """A whole number from `low` to `high`; outside that range it is a problem."""
        value: int = self.get(table, key_path, key, int, default)
        if not low <= value <= high:
            self.problem(
                _join(key_path, key), f"{value:,} is out of range: use {low:,} to {high:,}{note}"
            )
            return default
        return value

    def string_list(self, table: dict[str, Any], key_path: str, key: str) -> tuple[str, ...]:
        value = self.get(table, key_path, key, (list, str), default=[])
        if isinstance(value, str):
            value = [value]
        if not all(isinstance(item, str) for item in value):
            self.problem(_join(key_path, key), "expected a list of strings")
            return ()
        return tuple(item.strip() for item in value if item.strip())


def _join(key_path: str, key: str) -> str:
    return f"{key_path}.{key}" if key_path else key


def _kind(value: Any) -> str:
    return _TYPE_NAMES.get(type(value), type(value).__name__)


_TYPE_NAMES: dict[type, str] = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "a boolean",
    list: "a list",
    dict: "a table",
}


def _names(kinds: tuple[type, ...]) -> str:
    return " or ".join(_TYPE_NAMES.get(k, k.__name__) for k in kinds)


def _closest(key: str, allowed: tuple[str, ...]) -> str | None:
    import difflib

    found = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
    return found[0] if found else None


def check_timezone(name: str) -> ZoneInfo:
    """ZoneInfo(name) or ValueError with a readable message."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        # OSError: a folder of the zone database ("America") or a name too long for a path
        raise ValueError(
            f'unknown time zone {name!r} (use a name like "America/Chicago")'
        ) from None


# ----------------------------------------------------------------------------- config.toml

_TOP = ("outreach", "template_vars", "accounts", "worker", "replies", "digest")
_OUTREACH = ("database", "campaigns", "templates", "timezone")
_ACCOUNT = ("from", "reply_to", "smtp", "imap", "limits", "unsubscribe", "save_sent", "oauth2")
_SERVER_COMMON = (
    "host",
    "port",
    "security",
    "username",
    "password_env",
    "password_cmd",
    "ca_file",
    "timeout",
    "auth",
    "sasl",
)
_IMAP_ONLY = ("folder", "sent_folder", "idle")
_LIMITS = ("preset", "per_minute", "per_day", "jitter", "retry", "concurrency")
_UNSUBSCRIBE = ("mailto", "url")
_WORKER = ("poll_every", "send_every", "idle", "shutdown_timeout")
_REPLIES = ("auto_reply_pause", "soft_bounce_limit", "max_message_size", "batch_size")
_DIGEST = ("to", "account", "at")


def load_config(path: Path) -> Config:
    """Read and validate config.toml. Raises Problems listing every problem found."""
    path = path.absolute()
    data, text = read_toml(path)
    reader = _Reader(path, text)
    top = reader.table(data, "", _TOP)
    folder = path.parent

    main = reader.table(top.get("outreach", {}), "outreach", _OUTREACH)
    database = folder / reader.get(main, "outreach", "database", str, "outreach.db")
    if database.is_dir():  # also `database = ""`: the config's own folder
        reader.problem("outreach.database", f"{database} is a folder; name the database file")
    campaigns_dir = folder / reader.get(main, "outreach", "campaigns", str, "campaigns")
    templates_dir = folder / reader.get(main, "outreach", "templates", str, "templates")
    timezone = reader.get(main, "outreach", "timezone", str, "America/Chicago")
    try:
        check_timezone(timezone)
    except ValueError as exc:
        reader.problem("outreach.timezone", str(exc))

    template_vars = reader.get(top, "", "template_vars", dict, {})
    for key in template_vars:
        if key in RESERVED_TEMPLATE_VARS:  # the renderer would silently replace it
            reader.problem(f"template_vars.{key}", "this name is taken by outreach; rename it")

    accounts: dict[str, Account] = {}
    raw_accounts = reader.get(top, "", "accounts", dict, {})
    if not raw_accounts:
        reader.problem("accounts", "define at least one account, e.g. [accounts.default]")
    for name, raw in raw_accounts.items():
        account = _read_account(reader, name, raw)
        if account is not None:
            accounts[name] = account

    worker_raw = reader.table(top.get("worker", {}), "worker", _WORKER)
    defaults = WorkerSettings()
    worker = WorkerSettings(
        poll_every=reader.duration(worker_raw, "worker", "poll_every", defaults.poll_every),
        send_every=reader.duration(worker_raw, "worker", "send_every", defaults.send_every),
        idle=reader.get(worker_raw, "worker", "idle", bool, False),
        shutdown_timeout=reader.duration(
            worker_raw, "worker", "shutdown_timeout", defaults.shutdown_timeout
        ),
    )

    replies_raw = reader.table(top.get("replies", {}), "replies", _REPLIES)
    reply_defaults = ReplySettings()
    replies = ReplySettings(
        auto_reply_pause=reader.duration(
            replies_raw, "replies", "auto_reply_pause", reply_defaults.auto_reply_pause
        ),
        soft_bounce_limit=reader.integer(
            replies_raw,
            "replies",
            "soft_bounce_limit",
            reply_defaults.soft_bounce_limit,
            1,
            MAX_SOFT_BOUNCE_LIMIT,
        ),
        max_message_size=reader.integer(
            replies_raw,
            "replies",
            "max_message_size",
            reply_defaults.max_message_size,
            MIN_MESSAGE_SIZE,
            MAX_MESSAGE_SIZE,
            " bytes (64 KiB to 100 MiB; a message is read only up to this size)",
        ),
        batch_size=reader.integer(
            replies_raw, "replies", "batch_size", reply_defaults.batch_size, 1, MAX_BATCH_SIZE
        ),
    )

    digest = None
    if "digest" in top:
        digest_raw = reader.table(top["digest"], "digest", _DIGEST)
        to = reader.get(digest_raw, "digest", "to", str, required=True)
        account_name = reader.get(digest_raw, "digest", "account", str, "default")
        at_text = reader.get(digest_raw, "digest", "at", str, "07:00")
        at = _parse_clock(reader, "digest.at", at_text) or time(7, 0)
        if account_name not in raw_accounts:
            reader.problem("digest.account", f"no account named {account_name!r}")
        if to:
            _check_address(reader, "digest.to", to)
            digest = DigestSettings(to=to, account=account_name, at=at)

    reader.verdict()
    return Config(
        path=path,
        database=database,
        campaigns_dir=campaigns_dir,
        templates_dir=templates_dir,
        timezone=timezone,
        template_vars=template_vars,
        accounts=accounts,
        worker=worker,
        replies=replies,
        digest=digest,
    )


def _check_address(reader: _Reader, key_path: str, text: str) -> str | None:
    from outreach.core.addresses import normalize_address

    found = getaddresses([text])
    if len(found) > 1:  # parseaddr would quietly keep the first one
        reader.problem(
            key_path,
            f'{text!r} is more than one address; write one, like "Jordan Lee '
            '<jlee@district.example>" (a name with a comma goes in double quotes)',
        )
        return None
    address = found[0][1] if found else ""
    try:
        return normalize_address(address or text)
    except ValueError as exc:
        reader.problem(key_path, str(exc))
        return None


def _read_account(reader: _Reader, name: str, raw: Any) -> Account | None:
    key_path = f"accounts.{name}"
    table = reader.table(raw, key_path, _ACCOUNT)
    from_header = reader.get(table, key_path, "from", str, required=True)
    from_email = _check_address(reader, f"{key_path}.from", from_header) if from_header else None
    reply_to = reader.get(table, key_path, "reply_to", str)
    if reply_to:
        _check_address(reader, f"{key_path}.reply_to", reply_to)

    smtp = None
    if "smtp" in table:
        smtp = _read_server(reader, f"{key_path}.smtp", "smtp", table["smtp"])
    else:
        reader.problem(key_path, "missing required key 'smtp'")
    imap = (
        _read_server(reader, f"{key_path}.imap", "imap", table["imap"]) if "imap" in table else None
    )

    limits = _read_limits(reader, f"{key_path}.limits", table.get("limits", {}))
    unsub = reader.table(table.get("unsubscribe", {}), f"{key_path}.unsubscribe", _UNSUBSCRIBE)
    mailto = reader.get(unsub, f"{key_path}.unsubscribe", "mailto", str)
    if mailto:
        _check_address(reader, f"{key_path}.unsubscribe.mailto", mailto)
    url = reader.get(unsub, f"{key_path}.unsubscribe", "url", str)
    if url and not url.startswith("https://"):
        reader.problem(f"{key_path}.unsubscribe.url", "must be an https:// URL (RFC 8058)")
    save_sent = reader.get(table, key_path, "save_sent", bool, False)
    if save_sent and imap is None:
        reader.problem(f"{key_path}.save_sent", "needs an [imap] section to save sent copies")

    oauth2 = _read_oauth2(reader, name, table.get("oauth2"))
    oauth_servers = [s for s in (smtp, imap) if s is not None and s.auth == "oauth2"]
    if oauth_servers and oauth2 is None and "oauth2" not in table:
        reader.problem(
            f"{oauth_servers[0].key_path}.auth",
            f'auth = "oauth2" needs an [{key_path}.oauth2] table (provider, client_id)',
        )
    if oauth2 is not None and not oauth_servers and smtp is not None:
        reader.problem(
            f"{key_path}.oauth2",
            'no server of this account has auth = "oauth2"; add it to smtp and imap',
        )

    if from_header is None or from_email is None or smtp is None:
        return None
    return Account(
        name=name,
        from_header=from_header,
        from_email=from_email,
        smtp=smtp,
        imap=imap,
        limits=limits,
        reply_to=reply_to,
        unsubscribe_mailto=mailto,
        unsubscribe_url=url,
        save_sent=save_sent,
        oauth2=oauth2,
    )


def _read_server(reader: _Reader, key_path: str, kind: str, raw: Any) -> ServerSettings | None:
    allowed = _SERVER_COMMON + (_IMAP_ONLY if kind == "imap" else ())
    table = reader.table(raw, key_path, allowed)
    host = reader.get(table, key_path, "host", str, required=True)
    default_port = {"smtp": 587, "imap": 993}[kind]
    port = reader.get(table, key_path, "port", int, default_port)
    if not 0 < port < 65536:
        reader.problem(f"{key_path}.port", f"{port} is not a TCP port")
    default_security = "starttls" if kind == "smtp" else "tls"
    security = reader.get(table, key_path, "security", str, default_security)
    if security not in SECURITY_MODES:
        reader.problem(
            f"{key_path}.security", f"{security!r} is not one of: {', '.join(SECURITY_MODES)}"
        )
    elif security == "none" and host and host not in LOOPBACK_HOSTS:
        reader.problem(
            f"{key_path}.security",
            f"'none' sends passwords and mail in clear text; it is allowed only for "
            f"loopback hosts ({', '.join(LOOPBACK_HOSTS)}), not {host!r}",
        )
    username = reader.get(table, key_path, "username", str)
    password_env = reader.get(table, key_path, "password_env", str)
    password_cmd = reader.get(table, key_path, "password_cmd", str)
    if password_env and password_cmd:
        reader.problem(key_path, "set password_env or password_cmd, not both")
    if (password_env or password_cmd) and not username:
        reader.problem(key_path, "a password needs a username")
    auth, sasl = _read_server_auth(reader, key_path, table, username)
    ca_text = reader.get(table, key_path, "ca_file", str)
    ca_file = None
    if ca_text:
        ca_file = reader.path.parent / ca_text
        if not ca_file.is_file():
            reader.problem(f"{key_path}.ca_file", f"{ca_file} does not exist")
    timeout = reader.duration(table, key_path, "timeout", timedelta(seconds=30))
    folder = reader.get(table, key_path, "folder", str, "INBOX")
    sent_folder = reader.get(table, key_path, "sent_folder", str)
    idle = reader.get(table, key_path, "idle", bool, False)
    if host is None:
        return None
    return ServerSettings(
        kind=kind,
        key_path=key_path,
        source=reader.path,
        host=host,
        port=port,
        security=security,
        username=username,
        password_env=password_env,
        password_cmd=password_cmd,
        ca_file=ca_file,
        timeout=timeout,
        folder=folder,
        sent_folder=sent_folder,
        idle=idle,
        auth=auth,
        sasl=sasl,
    )


def _read_server_auth(
    reader: _Reader, key_path: str, table: dict[str, Any], username: str | None
) -> tuple[str, str]:
    """`auth` ("password", the default, or "oauth2") and `sasl` (oauth2 only)."""
    auth = reader.get(table, key_path, "auth", str, "password")
    if auth not in AUTH_KINDS:
        reader.problem(f"{key_path}.auth", f"{auth!r} is not one of: {', '.join(AUTH_KINDS)}")
        auth = "password"
    sasl = reader.get(table, key_path, "sasl", str, "xoauth2")
    if "sasl" in table and auth != "oauth2":
        reader.problem(f"{key_path}.sasl", 'only for auth = "oauth2"')
    if sasl not in SASL_MECHANISMS:
        reader.problem(f"{key_path}.sasl", f"{sasl!r} is not one of: {', '.join(SASL_MECHANISMS)}")
        sasl = "xoauth2"
    if auth == "oauth2":
        for key in ("password_env", "password_cmd"):
            if key in table:
                reader.problem(
                    f"{key_path}.{key}",
                    'auth = "oauth2" takes no password: it signs in with `outreach auth login`'
                    " (or the account's oauth2.token_cmd)",
                )
        if not username:
            reader.problem(key_path, 'auth = "oauth2" needs the username of the mailbox')
    return auth, sasl


_OAUTH2 = (
    "provider",
    "client_id",
    "tenant",
    "client_secret_env",
    "device_authorization_url",
    "token_url",
    "authorization_url",
    "revocation_url",
    "scopes",
    "token_cmd",
)
_CUSTOM_ONLY = ("device_authorization_url", "token_url", "authorization_url", "revocation_url")


def _read_oauth2(reader: _Reader, account: str, raw: Any) -> OAuth2Settings | None:
    """[accounts.NAME.oauth2]: a provider preset (microsoft, google), a custom provider's
    endpoints, or token_cmd alone."""
    if raw is None:
        return None
    key_path = f"accounts.{account}.oauth2"
    table = reader.table(raw, key_path, _OAUTH2)
    before = len(reader.problems)
    token_cmd = reader.get(table, key_path, "token_cmd", str)
    provider_text = reader.get(table, key_path, "provider", str)
    provider = None
    if provider_text is not None:
        try:
            provider = Provider(provider_text)
        except ValueError:
            reader.problem(
                f"{key_path}.provider",
                f"{provider_text!r} is not one of: {', '.join(p.value for p in Provider)}",
            )
    elif not token_cmd and "provider" not in table:
        reader.problem(
            key_path, 'missing required key \'provider\' ("microsoft", "google" or "custom")'
        )
    client_id = reader.get(table, key_path, "client_id", str)
    tenant = reader.get(table, key_path, "tenant", str, "organizations")
    secret_env = reader.get(table, key_path, "client_secret_env", str)
    scopes = reader.string_list(table, key_path, "scopes")
    urls = {key: reader.get(table, key_path, key, str) for key in _CUSTOM_ONLY}
    for key, url in urls.items():
        problem = endpoint_problem(url) if url is not None else None
        if problem:
            reader.problem(f"{key_path}.{key}", problem)

    if "tenant" in table and provider is not Provider.MICROSOFT:
        reader.problem(f"{key_path}.tenant", 'only for provider = "microsoft"')
    elif not TENANT.fullmatch(tenant or ""):
        reader.problem(
            f"{key_path}.tenant",
            f'{tenant!r}: use "organizations", the tenant\'s domain or its directory id',
        )
    if provider in (Provider.MICROSOFT, Provider.GOOGLE):
        for key in _CUSTOM_ONLY:
            if key in table:
                reader.problem(
                    f"{key_path}.{key}",
                    f'the {provider.value} endpoints are built in; use provider = "custom" '
                    "for another server",
                )
    if provider is not None and not token_cmd and not client_id:
        reader.problem(key_path, "missing required key 'client_id' (the app registration's id)")
    if provider is Provider.GOOGLE and not token_cmd and not secret_env:
        reader.problem(
            key_path,
            "missing required key 'client_secret_env': Google's desktop-app clients need "
            "their (not confidential) client secret, from an environment variable",
        )
    if provider is Provider.CUSTOM and not token_cmd:
        if not urls["token_url"]:
            reader.problem(key_path, "missing required key 'token_url'")
        if not (urls["device_authorization_url"] or urls["authorization_url"]):
            reader.problem(
                key_path, "set device_authorization_url (device flow) or authorization_url"
            )
        if not scopes:
            reader.problem(key_path, "missing required key 'scopes' (what IMAP and SMTP need)")
    if len(reader.problems) > before:
        return None

    endpoints = None
    if provider in (Provider.MICROSOFT, Provider.GOOGLE):
        endpoints = preset_endpoints(provider, tenant, os.environ.get(TEST_ORIGIN_ENV))
    elif provider is Provider.CUSTOM and urls["token_url"]:
        endpoints = Endpoints(
            token_url=urls["token_url"],
            device_authorization_url=urls["device_authorization_url"],
            authorization_url=urls["authorization_url"],
            revocation_url=urls["revocation_url"],
        )
    return OAuth2Settings(
        account=account,
        key_path=key_path,
        source=reader.path,
        provider=provider,
        client_id=client_id,
        tenant=tenant,
        client_secret_env=secret_env,
        scopes=scopes or SCOPES.get(provider, ()) if provider else scopes,
        endpoints=endpoints,
        token_cmd=token_cmd,
    )


def _read_limits(reader: _Reader, key_path: str, raw: Any) -> Limits:
    table = dict(reader.table(raw, key_path, _LIMITS))
    preset = reader.get(table, key_path, "preset", str)
    if preset:
        if preset not in LIMIT_PRESETS:
            reader.problem(
                f"{key_path}.preset", f"unknown preset; expected one of: {', '.join(LIMIT_PRESETS)}"
            )
        else:
            table = {**LIMIT_PRESETS[preset], **table}
    defaults = Limits()
    per_minute = reader.get(table, key_path, "per_minute", int)
    per_day = reader.get(table, key_path, "per_day", int)
    for key, value in (("per_minute", per_minute), ("per_day", per_day)):
        if value is not None and value < 1:
            reader.problem(f"{key_path}.{key}", "must be at least 1 (leave it out for no limit)")
    jitter = reader.duration(table, key_path, "jitter", defaults.jitter, zero=True)
    retry_raw = reader.get(table, key_path, "retry", list)
    retry = defaults.retry
    if retry_raw is not None:
        try:
            retry = tuple(parse_duration(item) for item in retry_raw)
        except ValueError as exc:
            reader.problem(f"{key_path}.retry", str(exc))
    concurrency = reader.get(table, key_path, "concurrency", int, defaults.concurrency)
    if not 1 <= concurrency <= 16:
        reader.problem(f"{key_path}.concurrency", "must be between 1 and 16")
    return Limits(
        per_minute=per_minute,
        per_day=per_day,
        jitter=jitter,
        retry=retry,
        concurrency=concurrency,
    )


def _parse_clock(reader: _Reader, key_path: str, text: str) -> time | None:
    found = re.fullmatch(r"\s*(\d{1,2}):(\d{2})\s*", text)
    if not found or int(found.group(1)) > 24 or int(found.group(2)) > 59:
        reader.problem(key_path, f'{text!r} is not a time of day like "09:00"')
        return None
    hour, minute = int(found.group(1)), int(found.group(2))
    if hour == 24:
        if minute:
            reader.problem(key_path, f"{text!r} is not a time of day")
            return None
        return time.max
    return time(hour, minute)


# ----------------------------------------------------------------------------- campaigns

_CAMPAIGN = (
    "name",
    "description",
    "account",
    "audience",
    "start",
    "window",
    "blackout",
    "steps",
    "match_domain",
    "enabled",
)
_AUDIENCE = ("tags", "pathways", "industries", "owners", "exclude_tags")
_WINDOW = ("days", "hours")
_BLACKOUT = ("from", "to", "name")
_STEP = ("template", "subject", "after", "thread")


def key_location(path: Path, key_path: str) -> str:
    """'/path/file.toml:LINE: key' for a problem found after the file was read."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError):
        return f"{path}: {key_path}"
    return f"{path}:{_Reader(path, text).line_of(key_path)}: {key_path}"


def campaign_files(config: Config) -> list[Path]:
    if not config.campaigns_dir.is_dir():
        return []
    return sorted(config.campaigns_dir.glob("*.toml"))


def load_campaigns(config: Config) -> list[Campaign]:
    """Read every campaigns/*.toml. Raises Problems listing every problem in every file."""
    problems: list[str] = []
    campaigns: list[Campaign] = []
    if not config.campaigns_dir.is_dir():
        raise ConfigError(
            f"{key_location(config.path, 'outreach.campaigns')}: the campaigns folder "
            f"{config.campaigns_dir} does not exist"
        )
    seen: dict[str, Path] = {}
    for path in campaign_files(config):
        try:
            campaign = load_campaign(path, config)
        except Problems as exc:
            problems.extend(exc.problems)
            continue
        except ConfigError as exc:
            problems.append(str(exc))
            continue
        if campaign.name in seen:
            problems.append(
                f"{path}: campaign name {campaign.name!r} is already used by {seen[campaign.name]}"
            )
            continue
        seen[campaign.name] = path
        campaigns.append(campaign)
    if problems:
        raise Problems(problems)
    return campaigns


def load_campaign(path: Path, config: Config) -> Campaign:
    data, text = read_toml(path)
    reader = _Reader(path, text)
    top = reader.table(data, "", _CAMPAIGN)
    name = reader.get(top, "", "name", str, path.stem)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name or ""):
        reader.problem("name", f"{name!r}: use letters, digits, '-', '_' and '.' only")
    account = reader.get(top, "", "account", str, "default")
    if account not in config.accounts:
        reader.problem(
            "account",
            f"no account named {account!r} in {config.path.name} "
            f"(accounts: {', '.join(config.accounts) or 'none'})",
        )

    audience_raw = reader.table(top.get("audience", {}), "audience", _AUDIENCE)
    audience = Audience(
        tags=reader.string_list(audience_raw, "audience", "tags"),
        pathways=reader.string_list(audience_raw, "audience", "pathways"),
        industries=reader.string_list(audience_raw, "audience", "industries"),
        owners=reader.string_list(audience_raw, "audience", "owners"),
        exclude_tags=reader.string_list(audience_raw, "audience", "exclude_tags"),
    )

    start = _read_start(reader, top.get("start"), config.timezone)
    window = _read_window(reader, top.get("window", {}))
    blackouts = _read_blackouts(reader, top.get("blackout", []))

    steps: list[Step] = []
    raw_steps = reader.get(top, "", "steps", list, [], required=True)
    if isinstance(top.get("steps"), list) and not raw_steps:
        reader.problem("steps", "a campaign needs at least one [[steps]] entry")
    for index, raw in enumerate(raw_steps):
        step = _read_step(reader, index, raw, config)
        if step is not None:
            steps.append(step)

    description = reader.get(top, "", "description", str, "")
    match_domain = reader.get(top, "", "match_domain", bool, False)
    enabled = reader.get(top, "", "enabled", bool, True)

    reader.verdict()
    return Campaign(
        name=name,
        source=path,
        account=account,
        steps=tuple(steps),
        audience=audience,
        start=start,
        window=window,
        blackouts=blackouts,
        description=description,
        match_domain=match_domain,
        enabled=enabled,
    )


def _read_start(reader: _Reader, value: Any, timezone: str) -> datetime | None:
    """`start` may be a TOML date, local or offset date-time, or an ISO string."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            reader.problem("start", f"{value!r} is not a date like 2026-09-01")
            return None
    if isinstance(value, datetime):
        moment: datetime = value
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=ZoneInfo(timezone))
    elif isinstance(value, date):
        moment = datetime.combine(value, time(0), ZoneInfo(timezone))
    else:
        reader.problem("start", f"expected a date, got {_kind(value)}")
        return None
    try:  # every comparison and time-zone change the planner makes goes through UTC
        moment.astimezone(UTC)
    except OverflowError:
        reader.problem("start", f"{value} is past the end of the calendar (year 9999) in UTC")
        return None
    return moment


def _read_window(reader: _Reader, raw: Any) -> Window:
    table = reader.table(raw, "window", _WINDOW)
    window = Window()
    days = window.days
    if "days" in table:
        before = len(reader.problems)
        names = reader.string_list(table, "window", "days")
        chosen: set[int] = set()
        for name in names:
            key = name.lower()[:3]
            if key not in WEEKDAYS:
                reader.problem("window.days", f"{name!r} is not a day (use mon, tue, ... sun)")
            else:
                chosen.add(WEEKDAYS.index(key))
        if not chosen and len(reader.problems) == before:  # not when each day was bad
            reader.problem("window.days", "the window needs at least one day")
        days = frozenset(chosen)
    start, end = window.start, window.end
    hours = reader.get(table, "window", "hours", str)
    if hours is not None:
        parts = hours.split("-")
        if len(parts) != 2:
            reader.problem("window.hours", f'{hours!r}: write the hours like "09:00-16:00"')
        else:
            parsed_start = _parse_clock(reader, "window.hours", parts[0])
            parsed_end = _parse_clock(reader, "window.hours", parts[1])
            if parsed_start and parsed_end:
                if parsed_start >= parsed_end:
                    reader.problem("window.hours", f"{hours!r}: the start must be before the end")
                start, end = parsed_start, parsed_end
    return Window(days=days, start=start, end=end)


def _as_date(reader: _Reader, key_path: str, value: Any) -> date | None:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    reader.problem(key_path, f"{value!r} is not a date like 2026-12-21")
    return None


def _read_blackouts(reader: _Reader, raw: Any) -> tuple[Blackout, ...]:
    if not isinstance(raw, list):
        reader.problem("blackout", "expected a list like [{ from = 2026-12-21, to = 2027-01-01 }]")
        return ()
    blackouts = []
    for index, item in enumerate(raw):
        key_path = f"blackout[{index}]"
        table = reader.table(item, key_path, _BLACKOUT)
        name = reader.get(table, key_path, "name", str, "")
        if "from" not in table:
            reader.problem(key_path, "missing required key 'from'")
            continue
        first = _as_date(reader, f"{key_path}.from", table["from"])
        last = _as_date(reader, f"{key_path}.to", table.get("to", table["from"]))
        if first and last:
            if last < first:
                reader.problem(key_path, f"ends ({last}) before it starts ({first})")
            blackouts.append(Blackout(first, last, name))
    return tuple(blackouts)


def _read_step(reader: _Reader, index: int, raw: Any, config: Config) -> Step | None:
    number = index + 1
    key_path = f"steps[{index}]"
    table = reader.table(raw, key_path, _STEP)
    template = reader.get(table, key_path, "template", str, required=True)
    if template and not (config.templates_dir / f"{template}.txt.j2").is_file():
        reader.problem(
            f"{key_path}.template",
            f"template {template!r} not found: expected "
            f"{config.templates_dir / (template + '.txt.j2')}",
        )
    thread = reader.get(table, key_path, "thread", bool, True)
    subject = reader.get(table, key_path, "subject", str)
    if number == 1:
        if not subject:
            reader.problem(key_path, "the first step needs a 'subject'")
        after: timedelta | None = timedelta(0)
        if "after" in table:  # it would be ignored: the first step waits for nothing
            reader.problem(
                f"{key_path}.after",
                "the first step goes out when the campaign starts (set `start` to hold it "
                "back); `after` is for follow-ups",
            )
    else:
        # "0s": at the next send cycle after the step before (tests and demos use it)
        after = reader.duration(table, key_path, "after", timedelta(0), zero=True)
        if "after" not in table:
            reader.problem(key_path, "a follow-up step needs 'after', e.g. after = \"7d\"")
            after = None
        if thread and subject:
            reader.problem(
                f"{key_path}.subject",
                'a threaded follow-up is sent as "Re: <first subject>"; set thread = false '
                "to give it its own subject",
            )
            subject = None
        if not thread and not subject:
            reader.problem(key_path, "a step with thread = false needs its own 'subject'")
    if template is None or after is None:
        return None
    return Step(
        number=number,
        template=template,
        subject=subject if (number == 1 or not thread) else None,
        after=after,
        thread=thread if number > 1 else False,
    )


def iter_accounts_in_use(config: Config, campaigns: list[Campaign]) -> Iterator[Account]:
    used = {c.account for c in campaigns}
    for name, account in config.accounts.items():
        if name in used:
            yield account
