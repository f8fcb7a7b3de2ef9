"""The command line: builds config, store and adapters, and picks exit codes.

Exit codes: 0 success; 1 an operation failed (server, store); 2 bad command line or bad file.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from outreach import __version__
from outreach.cli.terminal import echo
from outreach.config import find_config, load_campaigns, load_config
from outreach.config.passwords import server_password
from outreach.core.errors import InputError, OutreachError, Problems
from outreach.core.model import Campaign
from outreach.core.settings import Config
from outreach.core.text import json_text
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
    def store(self) -> Store:
        # checked for damage first (bounded): a damaged database never gives a partial answer
        return Store(self.config.database, integrity_budget=OPEN_CHECK_BUDGET)

    def close(self) -> None:
        if "store" in self.__dict__:
            self.store.close()


pass_app = click.make_pass_decorator(App)


class OutreachGroup(click.Group):
    """Turns our errors into one line on stderr and an exit code; never a traceback."""

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


def now() -> datetime:
    return datetime.now(UTC)


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
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with (sample / name).open("rb") as source, open(target, "xb") as out:
                shutil.copyfileobj(source, out)
        except OSError as exc:
            raise InputError(f"{target}: cannot write: {exc.strerror or exc}") from exc
        written.append(name)
    for name in written:
        echo(f"wrote {directory / name}")
    for name in kept:
        echo(f"kept  {directory / name} (already there)")
    echo(
        "\nNext: edit config.toml (your address and mail servers), then\n"
        f"  cd {directory}\n  outreach partners import partners.csv\n  outreach check\n"
        "  outreach preview checkin"
    )


# --------------------------------------------------------------------------- check / preview


@cli.command()
@click.option(
    "--connect",
    is_flag=True,
    help="Then log in to every account's SMTP and IMAP server (password or OAuth2).",
)
@pass_app
def check(app: App, connect: bool) -> None:
    """Validate the config, every campaign and template, and render every step for every
    partner in its audience, without touching the network (unless --connect). Reports every
    problem at once.

    Also checks the database file for damage (SQLite's quick_check; exit 1 if damaged)."""
    from outreach.engine.checks import check_all, check_logins

    report = check_all(app.config_path)
    for note in report.notes:
        echo(note)
    for warning in report.warnings:
        echo(f"warning: {warning}", err=True)
    for damage in report.damage:
        echo(f"error: {damage}", err=True)
    if report.problems:
        for problem in report.problems:
            echo(f"error: {problem}", err=True)
        count = len(report.problems)
        echo(f"{count} problem{'s' if count > 1 else ''} found", err=True)
        sys.exit(1 if report.damage else 2)
    if report.damage:
        sys.exit(1)
    if connect:
        failures = 0
        for line, ok in check_logins(app.config):
            echo(line if ok else f"error: {line}", err=not ok)
            failures += not ok
        if failures:
            echo(f"{failures} login{'s' if failures > 1 else ''} failed", err=True)
            sys.exit(1)
    echo("ok: everything checks out")


@cli.command()
@click.argument("campaign_name", metavar="CAMPAIGN")
@click.option("--partner", "partner_email", metavar="EMAIL", help="Render for this partner.")
@click.option("--step", "steps", type=int, multiple=True, help="Only this step (repeatable).")
@pass_app
def preview(
    app: App, campaign_name: str, partner_email: str | None, steps: tuple[int, ...]
) -> None:
    """Print the complete rendered message(s) of CAMPAIGN with their headers."""
    from outreach.config.templates import renderer_for
    from outreach.core.plan import audience_includes
    from outreach.core.render import render_sequence
    from outreach.engine.checks import SAMPLE_PARTNER
    from outreach.engine.message_ids import new_message_id

    campaign = app.campaign(campaign_name)
    for number in steps:
        if not 1 <= number <= len(campaign.steps):
            raise InputError(f"{campaign.name} has steps 1 to {len(campaign.steps)}, not {number}")
    if partner_email:
        from contextlib import suppress

        from outreach.core.addresses import normalize_address

        with suppress(ValueError):  # the roster keeps an IDN domain in its ASCII form
            partner_email = normalize_address(partner_email)
        partner = app.store.partner_by_email(partner_email)
        if partner is None:
            raise InputError(
                f"no partner {partner_email} in the roster", hint="outreach partners list"
            )
    else:
        audience = [
            p
            for p in app.store.partners(status="active")
            if audience_includes(campaign.audience, p)
        ]
        partner = audience[0] if audience else SAMPLE_PARTNER
        if not audience:
            echo("(no partner in this campaign's audience yet: a sample partner is shown)\n")
    account = app.config.accounts[campaign.account]
    renderer = renderer_for(app.config)
    built = render_sequence(
        renderer, campaign, partner, account, now(), new_message_id, steps or None
    )
    for index, message in enumerate(built):
        if index:
            echo("\n" + "=" * 72 + "\n")
        echo(format_for_terminal(message.message))


def format_for_terminal(message: Any) -> str:
    lines = [
        f"{name}: {value}"
        for name, value in message.items()
        if name.lower() not in ("content-type", "content-transfer-encoding", "mime-version")
    ]
    text_part = message.get_body(("plain",))
    html_part = message.get_body(("html",))
    lines.append("")
    lines.append(_lines(text_part.get_content()) if text_part else "")
    if html_part is not None:
        lines += ["", "----- text/html alternative -----", _lines(html_part.get_content())]
    return "\n".join(lines)


def _lines(content: str) -> str:
    """A part's text with its CRLF line ends as newlines and no blank end."""
    return content.replace("\r\n", "\n").rstrip("\n")


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
    from outreach.config.roster_file import read_roster
    from outreach.core.roster import merge_partner

    roster = read_roster(csv_file)
    in_store = {p.email: p for p in app.store.partners()}
    # columns the CSV leaves out keep their values: a partial roster must not blank them
    records = [
        merge_partner(in_store[p.email], p, roster.columns) if p.email in in_store else p
        for p in roster
    ]
    if dry_run:
        known = sum(1 for p in records if app.store.partner_by_email(p.email))
        echo(
            f"{csv_file}: {len(records)} valid rows ({len(records) - known} new, {known} "
            "updated); nothing changed (dry run)"
        )
        return
    from outreach.cli.progress import progress_counter

    created = updated = 0
    moment = now()
    # one transaction (all or nothing), written in chunks so a large roster shows progress
    with app.store.write(), progress_counter(length=len(records), label="importing") as done:
        for start in range(0, len(records), 500):
            chunk = records[start : start + 500]
            new, changed = app.store.upsert_partners(chunk, moment)
            created, updated = created + new, updated + changed
            done(len(chunk))
    echo(f"{csv_file}: imported {len(records)} partners ({created} new, {updated} updated)")


@partners.command("list")
@click.option("--json", "as_json", is_flag=True, help="A JSON array, one object per partner.")
@click.option("--status", type=click.Choice(["active", "bounced", "opted_out", "inactive"]))
@click.option(
    "--stale",
    metavar="DURATION",
    help="Only partners nobody has heard from in this long (e.g. 90d): no reply since.",
)
@pass_app
def partners_list(app: App, as_json: bool, status: str | None, stale: str | None) -> None:
    """Show the roster: status, last contact, last reply and open campaign of each partner."""
    from outreach.views.relationships import (
        is_stale,
        load_relationships,
        partner_json,
        partner_table,
    )

    rows = app.store.partners(status=status)
    rels = load_relationships(app.store) if rows else {}
    if stale is not None:
        from outreach.core.durations import parse_duration

        try:
            quiet = parse_duration(stale)
        except ValueError as exc:
            raise InputError(f"--stale: {exc}") from None
        moment = now()
        rows = [p for p in rows if p.id not in rels or is_stale(rels[p.id], moment, quiet)]
    if as_json:
        from outreach.views.relationships import NONE

        echo(
            json_text(
                [partner_json(p, rels.get(p.id or 0, NONE), local_zone(app)) for p in rows],
                indent=2,
            )
        )
        return
    if not rows:
        echo(
            f"nobody has been quiet for {stale}"
            if stale is not None
            else "no partners yet (outreach partners import FILE.csv)"
        )
        return
    echo(format_table(partner_table(rows, rels, local_zone(app))))


def format_table(rows: Sequence[Sequence[str]], max_width: int = 40) -> str:
    cut = [tuple(c if len(c) <= max_width else c[: max_width - 1] + "…" for c in r) for r in rows]
    widths = [max(len(r[i]) for r in cut) for i in range(len(cut[0]))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cut
    )


# --------------------------------------------------------------------------- sending


@cli.command()
@click.option("--once", is_flag=True, help="Run one cycle now and exit (fits cron).")
@click.option("--dry-run", is_flag=True, help="Print what would be sent; change nothing.")
@click.option("--log-json", is_flag=True, help="Log one JSON object per line.")
@click.option("-v", "--verbose", is_flag=True, help="Log more detail.")
@pass_app
def run(app: App, once: bool, dry_run: bool, log_json: bool, verbose: bool) -> None:
    """Send what is due and read replies: one cycle with --once, else until stopped."""
    from outreach.engine.worker import Worker
    from outreach.logs import setup_logging
    from outreach.store.lock import WorkerLock

    logger = setup_logging(as_json=log_json, verbose=verbose)
    if dry_run:
        show_dry_run(app)
        return
    for account in app.config.accounts.values():
        for server in (account.smtp, account.imap):
            if server is not None:
                server_password(server)
    with WorkerLock(app.config.database):
        worker = Worker(app.config, app.campaigns, app.store, logger)
        if once:
            worker.recover()
            read, sent = worker.cycle()
            from outreach.engine.service import record_once

            record_once(app.store, read, sent, now())
            echo(f"read: {read.summary()}\nsend: {sent.summary()}")
            if read.errors or sent.errors:
                sys.exit(1)
            return
        from outreach.engine.service import run_forever

        sys.exit(run_forever(app, worker, logger))


def show_dry_run(app: App) -> None:
    from outreach.engine.planning import find_due

    due = find_due(app.store, app.campaigns, now(), app.config.timezone)
    if not due:
        echo("nothing is due now")
        return
    for item in due:
        echo(f"{item.campaign.name}  step {item.step.number}  {item.partner.email}")
    echo(f"{len(due)} message(s) would be sent (dry run: nothing changed)")


@cli.command()
@click.argument("campaign_name", metavar="[CAMPAIGN]", required=False)
@click.option("--days", default=30, show_default=True, help="How far ahead to look.")
@click.option("--json", "as_json", is_flag=True, help="A JSON array.")
@pass_app
def plan(app: App, campaign_name: str | None, days: int, as_json: bool) -> None:
    """Show who gets which step when, assuming nobody answers."""
    from datetime import timedelta

    from outreach.core.durations import MAX_DURATION
    from outreach.engine.planning import projections

    if not 1 <= days <= MAX_DURATION.days:  # later dates would pass the calendar's end
        raise InputError(
            f"--days {days}: look from 1 to {MAX_DURATION.days} days (100 years) ahead"
        )
    campaigns = [app.campaign(campaign_name)] if campaign_name else app.campaigns
    start = now()
    until = start + timedelta(days=days)
    rows = projections(app.store, campaigns, start, until, app.config.timezone)
    if as_json:
        echo(
            json_text(
                [
                    {
                        "campaign": r.campaign,
                        "partner": r.partner.email,
                        "step": r.step,
                        "at": r.at.isoformat(),
                    }
                    for r in rows
                ],
                indent=2,
            )
        )
        return
    if not rows:
        echo(f"nothing planned in the next {days} days")
        return
    zone = local_zone(app)
    table = [("WHEN", "CAMPAIGN", "STEP", "PARTNER", "ORGANIZATION")] + [
        (
            r.at.astimezone(zone).strftime("%a %Y-%m-%d %H:%M"),
            r.campaign,
            str(r.step),
            r.partner.email,
            r.partner.organization,
        )
        for r in rows
    ]
    echo(format_table(table))
    echo(f"\n{len(rows)} message(s) in the next {days} days (times in {zone.key})")


def local_zone(app: App) -> Any:
    from zoneinfo import ZoneInfo

    return ZoneInfo(app.config.timezone)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_app
def status(app: App, as_json: bool) -> None:
    """Per campaign: how many messages are queued, sent, deferred, failed or unknown."""
    from outreach.store import LEDGER_STATES
    from outreach.store.lock import lock_holder

    counts = app.store.status_counts()
    names = sorted(set(counts) | {c.name for c in app.campaigns})
    worker = app.store.worker_state()
    holder = lock_holder(app.config.database)
    worker_info = {
        "running": holder is not None,
        "pid": holder if holder is not None else worker.get("pid"),
        "started_at": worker.get("started_at"),
        "last_cycle_at": worker.get("last_cycle_at"),
        "last_read_at": worker.get("last_read_at"),
        "last_send_at": worker.get("last_send_at"),
        "last_error": worker.get("last_error"),
        "last_error_at": worker.get("last_error_at"),
        "heartbeat_at": worker.get("heartbeat_at"),
        "stopped_at": worker.get("stopped_at"),
        "host": worker.get("host"),
    }
    unknown = app.store.unknown_rows()
    from outreach.engine.credentials import Logins

    logins = [row for row in Logins(app.config).statuses(app.config) if row.auth == "oauth2"]
    if as_json:
        echo(
            json_text(
                {
                    "campaigns": {
                        n: {s: counts.get(n, {}).get(s, 0) for s in LEDGER_STATES} for n in names
                    },
                    "worker": worker_info,
                    "sign_in_needed": [
                        {
                            "account": row.account,
                            "reason": row.waiting,
                            "command": f"outreach auth login {row.account}",
                        }
                        for row in logins
                        if row.waiting
                    ],
                    "unknown": [
                        {
                            "id": r.id,
                            "partner": r.to_addr,
                            "campaign": r.campaign,
                            "step": r.step,
                            "message_id": r.message_id,
                        }
                        for r in unknown
                    ],
                },
                indent=2,
            )
        )
        return
    table = [("CAMPAIGN", *(s.upper() for s in LEDGER_STATES))] + [
        (n, *(str(counts.get(n, {}).get(s, 0)) for s in LEDGER_STATES)) for n in names
    ]
    echo(format_table(table) if names else "no campaigns yet")
    state = f"running (pid {holder})" if holder is not None else "not running"
    echo(f"\nworker: {state}")
    from outreach.engine.service import when

    zone, moment = local_zone(app), now()
    for key, label in (
        ("started_at", "started"),
        ("last_read_at", "last read mail"),
        ("last_send_at", "last sent"),
        ("heartbeat_at", "last heartbeat"),
        ("stopped_at", "stopped"),
    ):
        if worker.get(key) and (key != "stopped_at" or holder is None):
            echo(f"  {label}: {when(worker[key], zone, moment)}")
    if worker.get("last_error"):
        echo(
            f"  last error: {worker['last_error']} "
            f"({when(worker.get('last_error_at'), zone, moment)})"
        )
    for row in logins:
        if row.waiting:
            echo(
                f"\naccounts.{row.account}: sign-in needed ({row.waiting}): its "
                "messages stay queued and its mailbox is not read until you run "
                f"`outreach auth login {row.account}`"
            )
    if unknown:
        echo(f"\n{len(unknown)} message(s) with an unknown outcome (see `outreach resolve`):")
        for r in unknown:
            echo(f"  #{r.id} {r.campaign} step {r.step} to {r.to_addr}")


@cli.command()
@click.argument("ids", nargs=-1, type=int)
@click.option("--all", "all_unknown", is_flag=True, help="Every message with an unknown outcome.")
@click.option("--sent", "choice", flag_value="sent", help="Count it as delivered.")
@click.option("--resend", "choice", flag_value="resend", help="Queue it to be sent again.")
@click.option(
    "--check-sent-folder",
    "choice",
    flag_value="imap",
    help="Look for it in the account's Sent folder over IMAP.",
)
@pass_app
def resolve(app: App, ids: tuple[int, ...], all_unknown: bool, choice: str | None) -> None:
    """Settle messages whose delivery is unknown (the worker stopped while sending them).

    Without a choice, lists them. --sent counts a message as delivered; --resend queues it
    again (the partner may get it twice if it did arrive)."""
    rows = app.store.unknown_rows()
    if not rows:
        echo("no message has an unknown outcome")
        return
    if choice is None:
        for r in rows:
            echo(f"#{r.id}  {r.campaign} step {r.step} to {r.to_addr}  {r.message_id}")
        echo("\nsettle with: outreach resolve ID... --sent | --resend | --check-sent-folder")
        return
    if choice == "imap":
        from outreach.engine.credentials import Logins
        from outreach.engine.ledger import resolve_from_sent_folder
        from outreach.logs import setup_logging

        resolved, left = resolve_from_sent_folder(
            app.config, app.store, Logins(app.config), now, setup_logging()
        )
        echo(f"{resolved} found in the Sent folder and counted as sent; {left} still unknown")
        return
    from outreach.engine.ledger import resolve_by_hand

    if not ids and not all_unknown:
        raise InputError("name the message ids to settle, or --all")
    chosen = rows if all_unknown else [r for r in rows if r.id in set(ids)]
    missing = set(ids) - {r.id for r in rows}
    if missing:
        raise InputError(f"not an unknown message: {', '.join(f'#{i}' for i in sorted(missing))}")
    for r in chosen:
        resolve_by_hand(app.store, r, choice == "sent", now())
        echo(f"#{r.id} {r.to_addr}: {'counted as sent' if choice == 'sent' else 'queued again'}")


# --------------------------------------------------------------------------- classify


@cli.command()
@click.argument(
    "files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line per file.")
def classify(files: tuple[Path, ...], as_json: bool) -> None:
    """Show how each FILE.eml would be classified (reply, auto_reply, bounce, unsubscribe,
    other), with the rules that decided it. Reads at most the first 10 MiB of a file, as the
    worker reads a message. Touches no database and no network."""
    from outreach.core.inbound.classify import classify_message
    from outreach.core.settings import ReplySettings

    limit = ReplySettings().max_message_size  # the worker's default: one message's worth
    for path in files:
        try:
            with path.open("rb") as handle:  # a device or pipe may never end (/dev/zero)
                raw = handle.read(limit + 1)
        except OSError as exc:
            raise InputError(f"{path}: cannot read: {exc.strerror}") from None
        if len(raw) > limit:
            raw = raw[:limit]
            echo(
                f"warning: {path}: longer than {limit // 2**20} MiB; classified its first "
                f"{limit // 2**20} MiB, as the worker reads at most [replies] max_message_size",
                err=True,
            )
        result = classify_message(raw)
        if as_json:
            echo(json_text(result.to_json(str(path))))
            continue
        echo(f"{path}: {result.kind}")
        for reason in result.reasons:
            echo(f"  because: {reason}")
        if result.bounced_recipients:
            hard = {True: "hard", False: "soft", None: "unknown"}[result.hard]
            echo(f"  failed recipients: {', '.join(result.bounced_recipients)} ({hard})")
        if result.return_date:
            echo(f"  back on: {result.return_date.isoformat()}")
        if result.contact_change:
            echo("  contact change: the person seems to have left")
        if result.text:
            echo("  text: " + result.text.replace("\n", "\n        "))
        if result.signature:
            echo("  signature: " + result.signature.replace("\n", "\n             "))


# --------------------------------------------------------------------------- exports


@cli.command()
@click.argument("what", type=click.Choice(["events", "replies", "partners"]))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "json", "jsonl"]),
    default="jsonl",
    show_default=True,
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write to FILE instead of standard output.",
)
@pass_app
def export(app: App, what: str, fmt: str, output: Path | None) -> None:
    """Export events, replies or partners as CSV, JSON or JSON Lines, with stable column
    names (docs/response-logs.md). CSV is UTF-8 with a BOM: it opens cleanly in a
    spreadsheet."""
    from outreach.cli.progress import progress
    from outreach.views.exports import write_export

    count = write_export(app.store, what, fmt, output, app.config.timezone, progress)
    if output:
        echo(f"wrote {count} {what} to {output}", err=True)


# --------------------------------------------------------------------------- entry point


def main() -> None:
    """Console entry point."""
    cli(prog_name="outreach")

