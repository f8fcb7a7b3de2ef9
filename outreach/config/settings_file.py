"""config.toml -> core.settings.Config: the project's folders and time zone, the accounts
with their servers, limits and OAuth2 sign-in, and the [worker], [replies] and [digest]
settings. Every problem is collected (KeyReader), so `outreach check` lists them all.
"""

from __future__ import annotations

import os
from datetime import time, timedelta
from email.utils import getaddresses
from pathlib import Path
from typing import Any

from outreach.config.oauth2_endpoints import TEST_ORIGIN_ENV, endpoint_problem, preset_endpoints
from outreach.config.toml_reader import KeyReader, parse_clock, read_toml
from outreach.core.addresses import normalize_address
from outreach.core.durations import parse_duration
from outreach.core.model import OWNER_ACCOUNT
from outreach.core.oauth2 import SCOPES, TENANT, Endpoints, OAuth2Settings, Provider
from outreach.core.settings import (
    Account,
    Config,
    DigestSettings,
    Limits,
    ReplySettings,
    ServerSettings,
    WorkerSettings,
    owner_key,
)
from outreach.core.zones import check_timezone

CONFIG_ENV = "OUTREACH_CONFIG"
SECURITY_MODES = ("tls", "starttls", "none")
AUTH_KINDS = ("password", "oauth2")
SASL_MECHANISMS = ("xoauth2", "oauthbearer")
LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")
RESERVED_TEMPLATE_VARS = ("partner", "account", "campaign", "step", "questions")

# Sending limits published by the providers (see README, "Sending limits").
LIMIT_PRESETS: dict[str, dict[str, Any]] = {
    "google_workspace": {"per_minute": 20, "per_day": 1500, "jitter": "3s", "concurrency": 1},
    "gmail": {"per_minute": 10, "per_day": 400, "jitter": "5s", "concurrency": 1},
    "microsoft365": {"per_minute": 30, "per_day": 5000, "jitter": "2s", "concurrency": 1},
}


# Ranges of [replies] (README, "Configuration reference").
MIN_MESSAGE_SIZE = 64 * 1024  # below this, ordinary replies would be cut short
MAX_MESSAGE_SIZE = 100 * 1024 * 1024  # a message is held in memory several times over
MAX_BATCH_SIZE = 10_000
MAX_SOFT_BOUNCE_LIMIT = 100


def find_config(explicit: str | os.PathLike[str] | None) -> Path:
    """--config PATH, else $OUTREACH_CONFIG, else ./config.toml."""
    if explicit:
        return Path(explicit)
    from_env = os.environ.get(CONFIG_ENV)
    if from_env:
        return Path(from_env)
    return Path("config.toml")


_TOP = ("outreach", "template_vars", "accounts", "worker", "replies", "digest")
_OUTREACH = ("database", "campaigns", "templates", "timezone")
_ACCOUNT = (
    "from",
    "reply_to",
    "smtp",
    "imap",
    "limits",
    "unsubscribe",
    "save_sent",
    "oauth2",
    "owners",
)
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
_DIGEST = ("to", "account", "at", "per_owner")


def load_config(path: Path) -> Config:
    """Read and validate config.toml. Raises Problems listing every problem found."""
    path = path.absolute()
    data, text = read_toml(path)
    reader = KeyReader(path, text)
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
        if name == OWNER_ACCOUNT:
            reader.problem(
                f"accounts.{name}",
                f'the name {name!r} is taken: a campaign\'s account = "owner" sends from '
                "each partner's owner's account; rename this account",
            )
        account = _read_account(reader, name, raw)
        if account is not None:
            accounts[name] = account
    _check_owners(reader, accounts)

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
        per_owner = reader.get(digest_raw, "digest", "per_owner", bool, False)
        # with per_owner, `to` (the whole digest, for a coordinator) may be left out
        to = reader.get(digest_raw, "digest", "to", str, "", required=not per_owner)
        account_name = reader.get(digest_raw, "digest", "account", str, "default")
        at_text = reader.get(digest_raw, "digest", "at", str, "07:00")
        at = parse_clock(reader, "digest.at", at_text) or time(7, 0)
        if account_name not in raw_accounts and ("account" in digest_raw or to):
            reader.problem("digest.account", f"no account named {account_name!r}")
        if per_owner and not any(a.owners for a in accounts.values()):
            reader.problem(
                "digest.per_owner", "no account lists owners (add owners = [...] to an account)"
            )
        if to:
            _check_address(reader, "digest.to", to)
        if to or per_owner:
            digest = DigestSettings(
                to=to or "",
                account=account_name,
                at=at,
                per_owner=per_owner,
                account_set="account" in digest_raw,
            )

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


def _check_owners(reader: KeyReader, accounts: dict[str, Account]) -> None:
    """An owner belongs to one account: listed by two, whose address would a partner get?"""
    listed: dict[str, str] = {}
    for account in accounts.values():
        for owner in account.owners:
            key = owner_key(owner)
            if not key:
                reader.problem(f"accounts.{account.name}.owners", "an owner may not be empty")
            elif key in listed and listed[key] != account.name:
                reader.problem(
                    f"accounts.{account.name}.owners",
                    f"owner {owner!r} is listed by accounts.{listed[key]} and "
                    f"accounts.{account.name}; an owner sends from one account",
                )
            else:
                listed[key] = account.name


def _check_address(reader: KeyReader, key_path: str, text: str) -> str | None:
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


def _read_account(reader: KeyReader, name: str, raw: Any) -> Account | None:
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
    owners = reader.string_list(table, key_path, "owners")
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
        owners=owners,
    )


def _read_server(reader: KeyReader, key_path: str, kind: str, raw: Any) -> ServerSettings | None:
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
    reader: KeyReader, key_path: str, table: dict[str, Any], username: str | None
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


def _read_oauth2(reader: KeyReader, account: str, raw: Any) -> OAuth2Settings | None:
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


def _read_limits(reader: KeyReader, key_path: str, raw: Any) -> Limits:
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
