"""`outreach run`, `status` and `resolve`: the worker, what it is doing, and settling the
messages whose delivery is unknown."""

from __future__ import annotations

import sys

import click

from outreach.cli.app import App, cli, now, pass_app
from outreach.cli.terminal import echo
from outreach.config.passwords import server_password
from outreach.core.errors import InputError
from outreach.core.text import json_text
from outreach.views.text import format_table


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

        sys.exit(run_forever(app.config, worker, logger))


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
    from outreach.views.text import when

    zone, moment = app.zone, now()
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
