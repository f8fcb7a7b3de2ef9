"""`outreach check`, `preview` and `plan`: is the project right, what will the messages
say, and who gets which step when."""

from __future__ import annotations

import sys
from typing import Any

import click

from outreach.cli.app import App, cli, json_option, now, pass_app
from outreach.cli.terminal import echo
from outreach.core.errors import InputError
from outreach.core.text import json_text
from outreach.views.text import format_table, local_minute


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
    from outreach.core.plan import audience_or_sample, preview_account
    from outreach.core.render import render_sequence
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
        active = app.store.partners(status="active")
        audience, sample = audience_or_sample(campaign.audience, active)
        partner = audience[0]
        if sample:
            echo("(no partner in this campaign's audience yet: a sample partner is shown)\n")
    account = preview_account(app.config.accounts, campaign, partner)
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


@cli.command()
@click.argument("campaign_name", metavar="[CAMPAIGN]", required=False)
@click.option("--days", default=30, show_default=True, help="How far ahead to look.")
@json_option("A JSON array.")
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
    rows = projections(app.store, campaigns, start, until, app.config.timezone, app.config.accounts)
    if as_json:
        echo(
            json_text(
                [
                    {
                        "campaign": r.campaign,
                        "partner": r.partner.email,
                        "round": r.round,
                        "step": r.step,
                        "at": r.at.astimezone(app.zone).isoformat(),
                        "account": r.account,
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
    zone = app.zone
    table = [("WHEN", "CAMPAIGN", "ROUND", "STEP", "PARTNER", "ORGANIZATION", "FROM")] + [
        (
            f"{r.at.astimezone(zone):%a} {local_minute(r.at, zone)}",
            r.campaign,
            str(r.round),
            str(r.step),
            r.partner.email,
            r.partner.organization,
            r.account,
        )
        for r in rows
    ]
    echo(format_table(table))
    echo(f"\n{len(rows)} message(s) in the next {days} days (times in {zone.key})")
