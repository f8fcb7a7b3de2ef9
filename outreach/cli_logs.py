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
from pathlib import Path
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
    from outreach.timeline import format_log, format_waiting, load_events, parse_since

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
    waiting: list[str] = []
    if partner is not None:
        found = app.store.partner_by_email(partner)
        assert found is not None and found.id is not None
        who = " · ".join(x for x in (found.name, found.organization, found.status) if x)
        click.echo(f"{found.email}  {who}\n")
        waiting = list(format_waiting(app.store.waiting_for(found.id, campaign_name), zone))
    listed = list(events)
    if not listed:
        click.echo("no events" + (" match" if partner or campaign_name or since else " yet"))
    else:
        click.echo("\n".join(format_log(listed, zone, width=_width(),
                                         show_partner=partner is None)))
        click.echo(f"\n{len(listed)} event(s); times in {zone.key}")
    if waiting:
        click.echo("\n" + "\n".join(waiting))


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


# --------------------------------------------------------------------------- replies


@cli.group("replies", invoke_without_command=True)
@click.option("--unhandled", is_flag=True, help="Only answers nobody has handled yet.")
@click.option("--json", "as_json", is_flag=True, help="A JSON array, newest first.")
@click.pass_context
def replies(ctx: click.Context, unhandled: bool, as_json: bool) -> None:
    """The review queue: partners' answers that need a person (human replies, and
    auto-replies saying the contact left), newest first, with who, the campaign and the text.

    Mark one handled with `outreach replies ack ID`; correct a wrong classification with
    `outreach replies reclassify ID KIND`."""
    if ctx.invoked_subcommand is not None:
        return
    from outreach.review import load_replies
    from outreach.timeline import local_minute, printable, wrap

    app = ctx.find_object(App)
    assert app is not None
    zone = _zone(app)
    rows = load_replies(app.store, unhandled=unhandled)
    if as_json:
        echo_json_array(r.to_json(zone) for r in rows)
        return
    if not rows:
        click.echo("no unhandled replies" if unhandled else "no replies yet")
        return
    width = max(40, _width() - 6)
    blocks = []
    for r in rows:
        who = f"{r.name} <{r.partner}>" if r.name else str(r.partner)
        where = f"{r.campaign} step {r.step}" if r.campaign and r.step else (r.campaign or "-")
        flag = "handled" if r.handled else "OPEN"
        kind = "" if r.kind == "reply" else f"  [{r.kind.replace('_', '-')}: contact change]"
        head = (f"#{r.id}  {local_minute(r.at, zone)}  {flag}  {who}"
                + (f" · {r.organization}" if r.organization else "") + f" · {where}{kind}")
        body = [("    " + line).rstrip()
                for line in (wrap(printable(r.text), width) or ["(no text)"])]
        # the signature after the words, dimmed (click drops the styling off a terminal)
        body += [click.style(("    " + line).rstrip(), dim=True)
                 for line in wrap(printable(r.signature), width)]
        if r.note:
            body.append(f"    note: {r.note}")
        blocks.append("\n".join([head, *body]))
    click.echo("\n\n".join(blocks))
    open_count = sum(1 for r in rows if not r.handled)
    click.echo(f"\n{len(rows)} repl{'y' if len(rows) == 1 else 'ies'}, {open_count} open; "
               f"times in {zone.key}. Mark one handled: outreach replies ack ID --note TEXT")


@replies.command("ack")
@click.argument("reply_id", metavar="ID", type=int)
@click.option("--note", help="What was done (kept with the reply and in the log).")
@pass_app
def replies_ack(app: App, reply_id: int, note: str | None) -> None:
    """Mark reply ID handled (it leaves the --unhandled queue); records an event."""
    from outreach.review import acknowledge

    click.echo(acknowledge(app.store, reply_id, note, _now()))


@replies.command("reclassify")
@click.argument("reply_id", metavar="ID", type=int)
@click.argument("kind", type=click.Choice(["reply", "auto_reply", "bounce", "unsubscribe",
                                           "other"]))
@pass_app
def replies_reclassify(app: App, reply_id: int, kind: str) -> None:
    """Correct the classification of message ID and redo its effect: e.g. an auto-reply
    misread as a reply resumes the follow-ups; an unsubscribe misread puts the partner back
    to active. Records an event."""
    from outreach.review import reclassify

    changes = reclassify(app.store, reply_id, kind, _now(),
                         default_timezone=app.config.timezone,
                         auto_reply_pause=app.config.replies.auto_reply_pause)
    click.echo(f"#{reply_id} is now {kind}")
    for change in changes:
        click.echo(f"  {change}")


# --------------------------------------------------------------------------- report


@cli.command("report")
@click.argument("campaign_name", metavar="CAMPAIGN")
@click.option("--html", "html_file", metavar="FILE",
              type=click.Path(dir_okay=False, path_type=Path),
              help="Also write a self-contained HTML report (charts, replies) to FILE.")
@click.option("--json", "as_json", is_flag=True, help="The report as one JSON object.")
@pass_app
def report_command(app: App, campaign_name: str, html_file: Path | None,
                   as_json: bool) -> None:
    """The funnel of CAMPAIGN (audience, sent per step, replied, auto-replied, bounced,
    unsubscribed, still pending, reply rate, median time to reply) and the partners who
    never answered."""
    from outreach.progress import progress
    from outreach.report import campaign_names, dumps, format_report, load_report

    known = set(campaign_names(app.store)) | {c.name for c in app.campaigns}
    if campaign_name not in known:
        raise InputError(f"no campaign named {campaign_name!r} (campaigns: "
                         f"{', '.join(sorted(known)) or 'none'})")
    zone = _zone(app)
    moment = _now()
    report = load_report(app.store, campaign_name, zone)
    if html_file is not None:
        from outreach.report_html import render_html

        with progress(report.replies, length=len(report.replies),
                      label="writing the report") as replies:
            page = render_html(report, zone, moment, replies)
        try:
            html_file.write_text(page, encoding="utf-8")
        except OSError as exc:
            raise InputError(f"{html_file}: cannot write: {exc.strerror}") from None
    if as_json:
        click.echo(dumps(report, zone))
    else:
        click.echo("\n".join(format_report(report, zone, moment)))
    if html_file is not None:
        click.echo(f"wrote {html_file}", err=True)
