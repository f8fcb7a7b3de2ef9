"""The command line: builds config, store and adapters, and picks exit codes.

Exit codes: 0 success; 1 an operation failed (server, store); 2 bad command line or bad file.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import Any, NoReturn, TypeVar
from zoneinfo import ZoneInfo

import click

from outreach import __version__
from outreach.cli.terminal import echo
from outreach.config import find_config, load_campaigns, load_config
from outreach.core.errors import InputError, OutreachError, Problems
from outreach.core.model import Campaign
from outreach.core.settings import Config
from outreach.engine.clock import utc_now
from outreach.store import OPEN_CHECK_BUDGET, Store, database_errors

F = TypeVar("F", bound=Callable[..., Any])


class App:
    """What a command needs, built lazily so `outreach --help` touches nothing."""

    def __init__(self, config_path: str | None) -> None:
        self.explicit_config = config_path

    @cached_property
    def config_path(self) -> Path:
        return find_config(self.explicit_config)

    @cached_property
    def config(self) -> Config:
        return load_config(self.config_path)

    @cached_property
    def campaigns(self) -> list[Campaign]:
        return load_campaigns(self.config)

    def campaign(self, name: str) -> Campaign:
        for campaign in self.campaigns:
            if campaign.name == name:
                return campaign
        known = ", ".join(c.name for c in self.campaigns) or "none"
        raise InputError(
            f"no campaign named {name!r} in {self.config.campaigns_dir} (campaigns: {known})"
        )

    @cached_property
    def zone(self) -> ZoneInfo:
        """The coordinator's time zone: what every time shown is in."""
        return ZoneInfo(self.config.timezone)

    @cached_property
    def store(self) -> Store:
        # checked for damage first (bounded): a damaged database never gives a partial answer
        return Store(self.config.database, integrity_budget=OPEN_CHECK_BUDGET)

    def close(self) -> None:
        if "store" in self.__dict__:
            self.store.close()


pass_app = click.make_pass_decorator(App)


class OutreachGroup(click.Group):
    """Turns our errors into one line on stderr and an exit code; never a traceback.

    Commands in `lazy` are registered by name and imported only when asked for (click's
    "Lazily Loading Subcommands"): `demo` lives in testing/ with the local mail servers it
    starts, whose libraries (aiosmtpd, pymap) every other command would otherwise load at
    start-up. Its module gets the CLI's `echo` and never imports the CLI.
    """

    lazy = {"demo": ("outreach.testing.demo", "demo_command")}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *self.lazy])

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.lazy and name not in self.commands:
            module, factory = self.lazy[name]
            self.add_command(getattr(importlib.import_module(module), factory)(echo), name)
        return super().get_command(ctx, name)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            with database_errors(lambda: database_name(ctx)):
                return super().invoke(ctx)
        except Problems as exc:
            more = (
                f" (and {len(exc.problems) - 1} more; `outreach check` shows them all)"
                if len(exc.problems) > 1
                else ""
            )
            fail(exc.problems[0] + more, exc.exit_code)
        except OutreachError as exc:
            fail(str(exc), exc.exit_code)
        except KeyboardInterrupt:
            fail("interrupted", 130)


def database_name(ctx: click.Context) -> Path | str:
    """The database a command was using, for an error about it."""
    app = ctx.find_object(App)
    if app is not None and "store" in app.__dict__:
        return app.store.path
    if app is not None and "config" in app.__dict__:
        return app.config.database
    return "the database"


def fail(message: str, code: int) -> NoReturn:
    echo(f"error: {message}", err=True)
    sys.exit(code)


now = utc_now  # what commands stamp their changes with


@click.group(cls=OutreachGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="outreach")
@click.option(
    "--config",
    "config_path",
    metavar="PATH",
    envvar="OUTREACH_CONFIG",
    help="config.toml to use (default: $OUTREACH_CONFIG, else ./config.toml).",
)
@click.pass_context
def cli(ctx: click.Context, config_path: str | None) -> None:
    """Email check-ins with industry partners: campaigns, follow-ups and response logs.

    Start with `outreach init`, edit config.toml, then `outreach partners import`,
    `outreach check` and `outreach preview`.
    """
    app = App(config_path)
    ctx.obj = app
    ctx.call_on_close(app.close)


def json_option(help: str) -> Callable[[F], F]:
    """--json, the same flag on every command that can answer in JSON."""
    return click.option("--json", "as_json", is_flag=True, help=help)


# --------------------------------------------------------------------------- entry point


def main() -> None:
    """Console entry point."""
    cli(prog_name="outreach")
