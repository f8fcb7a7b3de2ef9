"""The command line: builds config, store and adapters, and picks exit codes.

Exit codes: 0 success; 1 an operation failed (server, store); 2 bad command line or bad file.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from outreach import __version__
from outreach.config import Campaign, Config, find_config, load_campaigns, load_config
from outreach.errors import InputError, OutreachError, Problems
from outreach.store import Store

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
        raise InputError(f"no campaign named {name!r} in {self.config.campaigns_dir} (campaigns: {known})")

    @cached_property
    def store(self) -> Store:
        return Store(self.config.database)

    def close(self) -> None:
        if "store" in self.__dict__:
            self.store.close()


pass_app = click.make_pass_decorator(App)


class OutreachGroup(click.Group):
    """Turns our errors into one line on stderr and an exit code; never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except Problems as exc:
            more = (
                f" (and {len(exc.problems) - 1} more; `outreach check` shows them all)"
                if len(exc.problems) > 1 else ""
            )
            fail(exc.problems[0] + more, exc.exit_code)
        except OutreachError as exc:
            fail(str(exc), exc.exit_code)
        except KeyboardInterrupt:
            fail("interrupted", 130)


def fail(message: str, code: int) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def now() -> datetime:
    return datetime.now(UTC)


@click.group(cls=OutreachGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="outreach")
@click.option(
    "--config", "config_path", metavar="PATH", envvar="OUTREACH_CONFIG",
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


# --------------------------------------------------------------------------- init


SAMPLE_FILES = (
    "config.toml",
    "partners.csv",
    "campaigns/checkin.toml",
    "templates/_signature.txt.j2",
    "templates/checkin.txt.j2",
    "templates/checkin.html.j2",
    "templates/followup.txt.j2",
    "templates/last_call.txt.j2",
)


@cli.command()
@click.argument("directory", default=".", type=click.Path(file_okay=False, path_type=Path))
def init(directory: Path) -> None:
    """Write a working sample (config, campaign, templates, partners.csv) into DIRECTORY.

    Existing files are never overwritten.
    """
    sample = resources.files("outreach") / "sample"
    written, kept = [], []
    for name in SAMPLE_FILES:
        target = directory / name
        if target.exists():
            kept.append(name)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        with (sample / name).open("rb") as source, open(target, "xb") as out:
            shutil.copyfileobj(source, out)
        written.append(name)
    for name in written:
        click.echo(f"wrote {directory / name}")
    for name in kept:
        click.echo(f"kept  {directory / name} (already there)")
    click.echo(
        "\nNext: edit config.toml (your address and mail servers), then\n"
        f"  cd {directory}\n  outreach partners import partners.csv\n  outreach check\n"
        "  outreach preview checkin"
    )


# --------------------------------------------------------------------------- check / preview


@cli.command()
@pass_app
def check(app: App) -> None:
    """Validate the config, every campaign and template, and render every step for every
    partner in its audience, without touching the network. Reports every problem at once."""
    from outreach.checks import check_all

    report = check_all(app.config_path)
    for note in report.notes:
        click.echo(note)
    for warning in report.warnings:
        click.echo(f"warning: {warning}", err=True)
    if report.problems:
        for problem in report.problems:
            click.echo(f"error: {problem}", err=True)
        count = len(report.problems)
        click.echo(f"{count} problem{'s' if count > 1 else ''} found", err=True)
        sys.exit(2)
    click.echo("ok: everything checks out")


@cli.command()
@click.argument("campaign_name", metavar="CAMPAIGN")
@click.option("--partner", "partner_email", metavar="EMAIL", help="Render for this partner.")
@click.option("--step", "steps", type=int, multiple=True, help="Only this step (repeatable).")
@pass_app
def preview(app: App, campaign_name: str, partner_email: str | None, steps: tuple[int, ...]) -> None:
    """Print the complete rendered message(s) of CAMPAIGN with their headers."""
    from outreach.checks import SAMPLE_PARTNER
    from outreach.plan import audience_includes
    from outreach.render import Renderer, render_sequence

    campaign = app.campaign(campaign_name)
    for number in steps:
        if not 1 <= number <= len(campaign.steps):
            raise InputError(f"{campaign.name} has steps 1 to {len(campaign.steps)}, not {number}")
    if partner_email:
        partner = app.store.partner_by_email(partner_email)
        if partner is None:
            raise InputError(f"no partner {partner_email} in the roster", hint="outreach partners list")
    else:
        audience = [
            p for p in app.store.partners(status="active")
            if audience_includes(campaign.audience, p)
        ]
        partner = audience[0] if audience else SAMPLE_PARTNER
        if not audience:
            click.echo("(no partner in this campaign's audience yet: a sample partner is shown)\n")
    account = app.config.accounts[campaign.account]
    built = render_sequence(Renderer(app.config), campaign, partner, account, now(), steps or None)
    for index, message in enumerate(built):
        if index:
            click.echo("\n" + "=" * 72 + "\n")
        click.echo(format_for_terminal(message.message))


def format_for_terminal(message: Any) -> str:
    lines = [f"{name}: {value}" for name, value in message.items() if name.lower() not in (
        "content-type", "content-transfer-encoding", "mime-version")]
    text_part = message.get_body(("plain",))
    html_part = message.get_body(("html",))
    lines.append("")
    lines.append(text_part.get_content().rstrip("\n") if text_part else "")
    if html_part is not None:
        lines += ["", "----- text/html alternative -----", html_part.get_content().rstrip("\n")]
    return "\n".join(lines)


# --------------------------------------------------------------------------- partners


@cli.group()
def partners() -> None:
    """The partner roster: import a CSV, list partners."""


@partners.command("import")
@click.argument("csv_file", metavar="FILE.csv", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Validate and report; change nothing.")
@pass_app
def partners_import(app: App, csv_file: Path, dry_run: bool) -> None:
    """Add or update partners from a CSV (upsert by email). All or nothing: one bad row and
    nothing changes; every bad row is listed by line number."""
    from outreach.roster import read_roster

    records = read_roster(csv_file)
    if dry_run:
        known = sum(1 for p in records if app.store.partner_by_email(p.email))
        click.echo(f"{csv_file}: {len(records)} valid rows ({len(records) - known} new, {known} updated); nothing changed (dry run)")
        return
    created, updated = app.store.upsert_partners(records, now())
    click.echo(f"{csv_file}: imported {len(records)} partners ({created} new, {updated} updated)")


@partners.command("list")
@click.option("--json", "as_json", is_flag=True, help="A JSON array, one object per partner.")
@click.option("--status", type=click.Choice(["active", "bounced", "opted_out", "inactive"]))
@pass_app
def partners_list(app: App, as_json: bool, status: str | None) -> None:
    """Show the roster with each partner's status."""
    rows = app.store.partners(status=status)
    if as_json:
        click.echo(json.dumps([
            {"email": p.email, "name": p.name, "first_name": p.first_name,
             "organization": p.organization, "industry": p.industry, "pathway": p.pathway,
             "owner": p.owner, "tags": list(p.tags), "timezone": p.timezone,
             "fields": p.fields, "status": p.status}
            for p in rows
        ], ensure_ascii=False, indent=2))
        return
    if not rows:
        click.echo("no partners yet (outreach partners import FILE.csv)")
        return
    table = [("EMAIL", "NAME", "ORGANIZATION", "PATHWAY", "STATUS")] + [
        (p.email, p.name, p.organization, p.pathway, p.status) for p in rows
    ]
    click.echo(format_table(table))


def format_table(rows: list[tuple[str, ...]], max_width: int = 40) -> str:
    cut = [tuple(c if len(c) <= max_width else c[: max_width - 1] + "…" for c in r) for r in rows]
    widths = [max(len(r[i]) for r in cut) for i in range(len(cut[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cut)


# --------------------------------------------------------------------------- entry point


def main() -> None:
    """Console entry point."""
    cli(prog_name="outreach")
