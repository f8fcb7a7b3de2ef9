"""A team's project: three accounts (two owners' and the office's), each reading its own
local IMAP mailbox, all sending through one local SMTP server, and one account = "owner"
campaign. For tests/test_team.py and the crash tests."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from workspace import ALWAYS_OPEN, THREE_STEPS, Workspace

#: account -> (address, owners)
TEAM = {
    "jlee": ("jlee@district.test", ["jlee"]),
    "akim": ("akim@district.test", ["akim", "Pat Ng"]),
    "office": ("office@district.test", []),
}

ROSTER = [
    {"email": "nurse@mercy.test", "name": "Nora Nurse", "organization": "Mercy", "owner": "jlee"},
    {"email": "boss@build.test", "name": "Bo Boss", "organization": "BuildRight", "owner": "JLee"},
    {"email": "it@netforge.test", "name": "Ida Tech", "organization": "NetForge", "owner": "akim"},
    {"email": "chef@bistro.test", "name": "Cy Chef", "organization": "Bistro", "owner": "pat ng"},
    {"email": "solo@nobody.test", "name": "Sol Solo", "organization": "Solo", "owner": ""},
    {"email": "gone@later.test", "name": "Gil Gone", "organization": "Later", "owner": "rsmith"},
]
OWNED_BY = {
    "nurse@mercy.test": "jlee",
    "boss@build.test": "jlee",
    "it@netforge.test": "akim",
    "chef@bistro.test": "akim",
}
UNOWNED = ["solo@nobody.test", "gone@later.test"]


def team_config(
    smtp_port: int,
    imap: Mapping[str, Any],
    *,
    smtp_auth: Mapping[str, tuple[int, str, str]] | None = None,
    limits: Mapping[str, str] | None = None,
    extra: str = "",
) -> str:
    """config.toml for TEAM. imap: account -> server (user, port, password env name);
    smtp_auth: account -> (port, username, password env) for accounts with a server of
    their own that asks for a login."""
    parts = [
        textwrap.dedent("""\
        [outreach]
        database = "outreach.db"
        timezone = "UTC"
        [template_vars]
        program = "Test CTE"
        """)
    ]
    for name, (address, owners) in TEAM.items():
        smtp = f'host = "127.0.0.1", port = {smtp_port}, security = "none"'
        if smtp_auth and name in smtp_auth:
            port, user, env = smtp_auth[name]
            smtp = (
                f'host = "127.0.0.1", port = {port}, security = "none", username = "{user}",'
                f' password_env = "{env}"'
            )
        parts.append(f'[accounts.{name}]\nfrom = "{name.title()} <{address}>"')
        if owners:
            parts.append("owners = [" + ", ".join(f'"{o}"' for o in owners) + "]")
        parts.append(f"smtp = {{ {smtp} }}")
        if name in imap:
            server, env = imap[name]
            parts.append(
                f'imap = {{ host = "127.0.0.1", port = {server.port}, security = "none",'
                f' username = "{server.user}", password_env = "{env}" }}'
            )
        parts.append(f'[accounts.{name}.limits]\njitter = "0s"\n{(limits or {}).get(name, "")}')
    parts.append(extra)
    return "\n".join(parts) + "\n"


def owner_campaign(fallback: str | None = "office") -> str:
    head = 'account = "owner"\n'
    if fallback:
        head += f'fallback_account = "{fallback}"\n'
    return head + ALWAYS_OPEN + THREE_STEPS


def team_workspace(
    root: Path,
    smtp_port: int,
    imap: Mapping[str, Any],
    monkeypatch: Any,
    *,
    fallback: str | None = "office",
    **config: Any,
) -> Workspace:
    """A Workspace whose config is the team's; every mailbox's password in the environment
    (TEAM_<ACCOUNT>_PW) unless a test sets another."""
    ws = Workspace(root, smtp_port=smtp_port, campaign=owner_campaign(fallback))
    envs = {}
    for name, server in imap.items():
        env = f"TEAM_{name.upper()}_PW"
        monkeypatch.setenv(env, server.password)
        envs[name] = (server, env)
    (root / "config.toml").write_text(team_config(smtp_port, envs, **config), encoding="utf-8")
    return ws


def from_address(raw_message: Any) -> str:
    from email.utils import parseaddr

    return parseaddr(str(raw_message.message["From"]))[1]
