"""Commands to read the response logs (log, replies, report); they register on `cli`.

Queries and formatting live in outreach.timeline, outreach.review and outreach.report; this
module only parses options, builds the store and prints.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable
from contextlib import suppress
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import click

from outreach.cli import App, cli, pass_app
from outreach.errors import InputError


def _now() -> datetime:
    return datetime.now(UTC)


def _zone(app: App) -> ZoneInfo:
    return ZoneInfo(app.config.timezone)


def _width() -> int:
    return shutil.get_terminal_size((100, 24)).columns


def _partner_email(app: App, email: str) -> str:
    """The roster's form of an address as typed (case, IDN domain), or an InputError."""
    from outreach.addresses import normalize_address

    with suppress(ValueError):
        email = normalize_address(email)
    email = email.strip().lower()
    if app.store.partner_by_email(email) is None:
        raise InputError(f"no partner {email} in the roster", hint="outreach partners list")
    return email


# --------------------------------------------------------------------------- log


@cli.command("log")
@click.option("--partner", "partner_email", metavar="EMAIL", help="Only this partner.")
@click.option("--campaign", "campaign_name", metavar="NAME", help="Only this campaign.")
@click.option("--since", metavar="DATE",
              help="From this date (2026-11-01), date and time, or duration back (7d).")
@click.option("--json", "as_json", is_flag=True, help="A JSON array, one object per event.")
@pass_app
def log_command(app: App, partner_email: str | None, campaign_name: str | None,
                since: str | None, as_json: bool) -> None:
    """Every event in order: sent, deferred, failed, replies with their text, auto-replies,
    bounces, unsubscribes, pauses, acknowledgements. Times in the coordinator's time zone."""
    from outreach.timeline import format_log, load_events, parse_since

    zone = _zone(app)
    start = None
    if since is not None:
        try:
            start = parse_since(since, zone, _now())
        except ValueError as exc:
            raise InputError(str(exc)) from None
    partner = _partner_email(app, partner_email) if partner_email else None
    events = load_events(app.store, partner=partner, campaign=campaign_name, since=start)
    if as_json:
        echo_json_array(event.to_json(zone) for event in events)
        return
    if partner is not None:
        found = app.store.partner_by_email(partner)
        assert found is not None
        who = " · ".join(x for x in (found.name, found.organization, found.status) if x)
        click.echo(f"{found.email}  {who}\n")
    listed = list(events)
    if not listed:
        click.echo("no events" + (" match" if partner or campaign_name or since else " yet"))
        return
    click.echo("\n".join(format_log(listed, zone, width=_width(),
                                     show_partner=partner is None)))
    click.echo(f"\n{len(listed)} event(s); times in {zone.key}")


def echo_json_array(items: Iterable[dict[str, Any]]) -> None:
    """A JSON array, one object per line, written as it goes (large logs stay cheap)."""
    chunks, count = ["["], 0
    for item in items:
        chunks.append(("," if count else "") + "\n  " + json.dumps(item, ensure_ascii=False))
        count += 1
        if len(chunks) >= 1000:
            click.echo("".join(chunks), nl=False)
            chunks = []
    chunks.append("\n]" if count else "]")
    click.echo("".join(chunks))
