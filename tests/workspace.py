"""A throwaway outreach project wired to local mail servers, for engine tests.

`Workspace` writes config.toml, one campaign, templates and a roster, and gives tests the
objects the CLI would build (config, campaigns, store, worker) plus a settable clock.
"""

from __future__ import annotations

import logging
import textwrap
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result

from outreach.cli import cli
from outreach.config import load_campaigns, load_config
from outreach.core.model import Campaign, Partner
from outreach.core.settings import Config
from outreach.engine.worker import Worker
from outreach.logs import setup_logging
from outreach.store import Store

ALWAYS_OPEN = """
[window]
days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
hours = "00:00-24:00"
"""

THREE_STEPS = """
[[steps]]
template = "hello"
subject = "Check-in for {{ partner.organization }}"

[[steps]]
template = "nudge"
after = "2d"

[[steps]]
template = "nudge"
after = "3d"
"""


@dataclass
class Clock:
    """A clock tests move by hand; starts on a Tuesday at 10:00 UTC."""

    moment: datetime = field(default_factory=lambda: datetime(2026, 11, 24, 10, 0, tzinfo=UTC))

    def __call__(self) -> datetime:
        return self.moment

    def advance(self, **kwargs: float) -> datetime:
        self.moment += timedelta(**kwargs)
        return self.moment


def partner_rows(count: int, domain: str = "partners.test") -> list[dict[str, str]]:
    return [
        {"email": f"p{i:04d}@{domain}", "name": f"Partner {i}", "organization": f"Org {i}"}
        for i in range(count)
    ]


class Workspace:
    def __init__(
        self,
        root: Path,
        *,
        smtp_port: int,
        imap: dict[str, Any] | None = None,
        smtp_extra: str = "",
        limits: str = "",
        campaign: str | None = None,
        account_extra: str = "",
        config_extra: str = "",
        smtp_host: str = "127.0.0.1",
        smtp_security: str = "none",
        from_header: str = "Coordinator <coordinator@district.test>",
    ) -> None:
        self.root = root
        (root / "campaigns").mkdir(parents=True, exist_ok=True)
        (root / "templates").mkdir(exist_ok=True)
        smtp_line = (
            f"host = {_toml(smtp_host)}, port = {smtp_port}, security = {_toml(smtp_security)}"
        )
        imap_line = ""
        if imap:
            inner = ", ".join(f"{k} = {_toml(v)}" for k, v in imap.items())
            imap_line = f"imap = {{ {inner} }}"
        (root / "config.toml").write_text(
            textwrap.dedent(f"""\
            [outreach]
            database = "outreach.db"
            timezone = "UTC"
            [template_vars]
            program = "Test CTE"
            [accounts.default]
            from = {_toml(from_header)}
            smtp = {{ {smtp_line}{smtp_extra} }}
            {imap_line}
            {account_extra}
            [accounts.default.limits]
            jitter = "0s"
            {limits}
            {config_extra}
            """),
            encoding="utf-8",
        )
        (root / "templates" / "hello.txt.j2").write_text(
            "Hello {{ partner.name }},\nHow has {{ partner.organization }} changed?\n"
        )
        (root / "templates" / "nudge.txt.j2").write_text(
            "Hello again {{ partner.name }}, step {{ step }}.\n"
        )
        (root / "campaigns" / "checkin.toml").write_text(
            campaign if campaign is not None else ALWAYS_OPEN + THREE_STEPS
        )
        self.clock = Clock()
        self.logger = setup_logging()
        self.logger.setLevel(logging.WARNING)
        self._store: Store | None = None

    @property
    def config(self) -> Config:
        return load_config(self.root / "config.toml")

    @property
    def campaigns(self) -> list[Campaign]:
        return load_campaigns(self.config)

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = Store(self.root / "outreach.db")
        return self._store

    def add_partners(self, rows: list[dict[str, str]]) -> list[Partner]:
        partners = [Partner(**row) for row in rows]  # type: ignore[arg-type]
        self.store.upsert_partners(partners, self.clock())
        return self.store.partners()

    def worker(self, **kwargs: Any) -> Worker:
        return Worker(
            self.config, self.campaigns, self.store, self.logger, clock=self.clock, **kwargs
        )

    def cli(self, *args: str) -> Result:
        return CliRunner().invoke(cli, ["--config", str(self.root / "config.toml"), *args])

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def local_imap(server: Any, password_env: str = "TEST_IMAP_PW") -> dict[str, Any]:
    """An account's `imap` settings for a local test IMAP server (plain, on 127.0.0.1); the
    password is read from `password_env`, which the test sets to `server.password`."""
    return {
        "host": "127.0.0.1",
        "port": server.port,
        "security": "none",
        "username": server.user,
        "password_env": password_env,
    }


def make_workspace(
    root: Path,
    smtp_server: Any,
    imap_server: Any,
    monkeypatch: Any,
    timezone: str = "America/Chicago",
) -> Workspace:
    """A workspace whose account reads the local IMAP server too (the response-log
    tests), with a five-day auto-reply pause and a soft-bounce limit of two."""
    monkeypatch.setenv("TEST_IMAP_PW", imap_server.password)
    ws = Workspace(
        root,
        smtp_port=smtp_server.port,
        imap=local_imap(imap_server),
        config_extra='[replies]\nauto_reply_pause = "5d"\nsoft_bounce_limit = 2',
    )
    config = ws.root / "config.toml"
    config.write_text(config.read_text().replace('timezone = "UTC"', f'timezone = "{timezone}"'))
    return ws
