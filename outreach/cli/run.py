"""`outreach run`, `status` and `resolve`: the worker, what it is doing, and settling the
messages whose delivery is unknown."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from outreach.cli.app import App, cli, json_option, now, pass_app
from outreach.cli.terminal import echo
from outreach.config.passwords import server_password
from outreach.core.errors import InputError, OutreachError
from outreach.core.text import json_text


@cli.command()
@click.option("--once", is_flag=True, help="Run one cycle now and exit (fits cron).")
@click.option("--dry-run", is_flag=True, help="Print what would be sent; change nothing.")
@click.option("--log-json", is_flag=True, help="Log one JSON object per line.")
@click.option("-v", "--verbose", is_flag=True, help="Log more detail.")
@click.option(
    "--log-file",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE",
    help="Log to FILE instead of stderr, rotated at 10 MB (5 old files kept).",
)
@pass_app
def run(
    app: App, once: bool, dry_run: bool, log_json: bool, verbose: bool, log_file: Path | None
) -> None:
    """Send what is due and read replies: one cycle with --once, else until stopped."""
    from outreach.engine.worker import Worker
    from outreach.logs import setup_logging
    from outreach.store.lock import WorkerLock

    try:
        logger = setup_logging(as_json=log_json, verbose=verbose, zone=app.zone, log_file=log_file)
    except OSError as exc:
        raise OutreachError(f"{log_file}: cannot write the log: {exc.strerror}") from exc
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

        sys.exit(run_forever(app.config, worker, logger))


def show_dry_run(app: App) -> None:
    from outreach.engine.planning import find_due

    due = find_due(app.store, app.campaigns, now(), app.config.timezone, app.config.accounts)
    if not due:
        echo("nothing is due now")
        return
    for item in due:
        sender = app.config.accounts.get(item.sender)
        address = f" <{sender.from_email}>" if sender else ""
        echo(
            f"{item.campaign.name}  step {item.step.number}  {item.partner.email}"
            f"  from {item.sender}{address}"
        )
    echo(f"{len(due)} message(s) would be sent (dry run: nothing changed)")


@cli.command()
@json_option("Machine-readable output.")
@pass_app
def status(app: App, as_json: bool) -> None:
    """Per campaign: how many messages are queued, sent, deferred, failed or unknown."""
    from outreach.engine.credentials import Logins
    from outreach.views.status import format_status, load_status, status_json

    waiting = [
        (row.account, row.waiting)
        for row in Logins(app.config).statuses(app.config)
        if row.auth == "oauth2" and row.waiting
    ]
    names = [c.name for c in app.campaigns]
    found = load_status(app.store, names, app.config.database, waiting, list(app.config.accounts))
    if as_json:
        echo(json_text(status_json(found), indent=2))
        return
    for line in format_status(found, app.zone, now()):
        echo(line)


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
