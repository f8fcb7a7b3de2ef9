"""Commands to read the response logs (log, replies, report); they register on `cli`.

Queries and formatting live in outreach.views.timeline, outreach.engine.review and
outreach.views.report; this module only parses options, builds the store and prints.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from outreach.cli.app import App, cli, json_option, now, pass_app
from outreach.cli.terminal import echo
from outreach.core.errors import InputError
from outreach.core.text import json_text
from outreach.engine.review import KINDS

if TYPE_CHECKING:
    from outreach.views.answers import CampaignAnswers


def _width() -> int:
    return shutil.get_terminal_size((100, 24)).columns


def owner_name(app: App, owner: str | None) -> str | None:
    """--owner NAME as given, once it is known: an owner in the roster or in an account's
    owners (compared trimmed, in any case); an InputError naming the known ones otherwise."""
    if owner is None:
        return None
    from outreach.core.settings import owner_key

    known = {p.owner.strip() for p in app.store.partners() if p.owner.strip()}
    known |= {o for a in app.config.accounts.values() for o in a.owners}
    if owner_key(owner) not in {owner_key(k) for k in known}:
        raise InputError(
            f"--owner {owner}: no partner or account has this owner "
            f"(owners: {', '.join(sorted(known, key=str.casefold)) or 'none'})"
        )
    return owner.strip()


def _partner_email(app: App, email: str) -> str:
    """The roster's form of an address as typed (case, IDN domain), or an InputError."""
    from outreach.core.addresses import normalize_address

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
@click.option(
    "--since",
    metavar="DATE",
    help="From this date (2026-11-01), date and time, or duration back (7d).",
)
@click.option("--owner", metavar="NAME", help="Only the partners of this owner.")
@click.option(
    "--verbose",
    "-v",
    is_flag=True,
    help="Under each line, the reason outreach gave (the classifier's, the server's).",
)
@json_option("A JSON array, one object per event (each with its reason).")
@pass_app
def log_command(
    app: App,
    partner_email: str | None,
    campaign_name: str | None,
    since: str | None,
    owner: str | None,
    verbose: bool,
    as_json: bool,
) -> None:
    """What happened, one line per thing in plain words, oldest first: messages sent,
    replies with the partner's own words, out-of-office, bounces, requests to stop, rounds
    finished. Times in the coordinator's time zone, each with its zone."""
    from outreach.views.narrative import format_narrative, narrate
    from outreach.views.timeline import format_waiting, load_events, parse_since

    zone = app.zone
    start = None
    if since is not None:
        try:
            start = parse_since(since, zone, now())
        except ValueError as exc:
            raise InputError(str(exc)) from None
    partner = _partner_email(app, partner_email) if partner_email else None
    owner = owner_name(app, owner)
    events = load_events(
        app.store, partner=partner, campaign=campaign_name, since=start, owner=owner
    )
    if as_json:
        echo_json_array(event.to_json(zone) for event in events)
        return
    waiting: list[str] = []
    if partner is not None:
        found = app.store.partner_by_email(partner)
        assert found is not None and found.id is not None
        who = " · ".join(x for x in (found.name, found.organization, found.status) if x)
        echo(f"{found.email}  {who}\n")
        waiting = list(format_waiting(app.store.waiting_for(found.id, campaign_name), zone))
    listed = list(events)
    if not listed:
        echo("no events" + (" match" if partner or campaign_name or since or owner else " yet"))
    else:
        moment = now()
        lines = list(narrate(listed, zone, moment))
        echo("\n".join(format_narrative(lines, zone, moment, width=_width(), verbose=verbose)))
        echo(f"\n{len(lines)} line(s) from {len(listed)} event(s); times in {zone.key}")
    if waiting:
        echo("\n" + "\n".join(waiting))


def echo_json_array(items: Iterable[dict[str, Any]]) -> None:
    """A JSON array, one object per line, written as it goes (large logs stay cheap)."""
    chunks, count = ["["], 0
    for item in items:
        chunks.append(("," if count else "") + "\n  " + json_text(item))
        count += 1
        if len(chunks) >= 1000:
            echo("".join(chunks), nl=False)
            chunks = []
    chunks.append("\n]" if count else "]")
    echo("".join(chunks))


# --------------------------------------------------------------------------- replies


@cli.group("replies", invoke_without_command=True)
@click.option("--unhandled", is_flag=True, help="Only answers nobody has handled yet.")
@click.option("--owner", metavar="NAME", help="Only about the partners of this owner.")
@json_option("A JSON array, newest first.")
@click.pass_context
def replies(ctx: click.Context, unhandled: bool, owner: str | None, as_json: bool) -> None:
    """The review queue: what needs a person (human replies, auto-replies saying the contact
    left, mail that could not be read, and unverified mail outreach did not act on: a bounce
    that quotes none of our messages, a reply from someone who is not the partner), newest
    first, with the partner, the real sender, the campaign and the text.

    Mark one handled (or dismiss unverified mail) with `outreach replies ack ID`; correct a
    classification, or attribute unverified mail to its partner, with
    `outreach replies reclassify ID KIND`; put a reply's words under the right question with
    `outreach replies answer ID QUESTION_ID --text TEXT`. Open replies that ask for help come
    first."""
    if ctx.invoked_subcommand is not None:
        return
    from outreach.engine.review import load_replies
    from outreach.views.text import local_minute, wrap

    app = ctx.find_object(App)
    assert app is not None
    zone = app.zone
    rows = load_replies(app.store, unhandled=unhandled, owner=owner_name(app, owner))
    if as_json:
        echo_json_array(r.to_json(zone) for r in rows)
        return
    if not rows:
        echo("no unhandled replies" if unhandled else "no replies yet")
        return
    width = max(40, _width() - 6)
    blocks = []
    for r in rows:
        who = f"{r.name} <{r.partner}>" if r.name else str(r.partner)
        where = f"{r.campaign} step {r.step}" if r.campaign and r.step else (r.campaign or "-")
        flag = "handled" if r.handled else "OPEN"
        head = (
            f"#{r.id}  {local_minute(r.at, zone)}  {flag}  {who}"
            + (f" · {r.organization}" if r.organization else "")
            + f" · {where}"
            + "".join(f"  [{tag}]" for tag in _tags(r))
        )
        notes = []
        if r.from_addr != r.partner:
            notes.append(f"from: {r.sender}")
        if r.unverified:
            notes.append(
                f"not acted on: {r.unverified} (attribute it: outreach replies "
                f"reclassify {r.id} KIND; dismiss it: outreach replies ack {r.id})"
            )
        if r.duplicate_of:
            notes.append(
                f"reuses the Message-ID of #{r.duplicate_of} with another sender or other content"
            )
        notes += [f"unreadable: {problem}" for problem in r.unreadable]
        body = [("    " + line).rstrip() for note in notes for line in wrap(note, width)]
        body += [("    " + line).rstrip() for line in (wrap(r.text, width) or ["(no text)"])]
        # the signature after the words, set apart ("-- " block, "Sent from my iPhone")
        signature = wrap(r.signature, width - 4)
        body += [
            ("    " + ("~ " if i == 0 else "  ") + line).rstrip()
            for i, line in enumerate(signature)
        ]
        if r.note:
            body.append(f"    note: {r.note}")
        blocks.append("\n".join([head, *body]))
    echo("\n\n".join(blocks))
    open_count = sum(1 for r in rows if not r.handled)
    echo(
        f"\n{len(rows)} repl{'y' if len(rows) == 1 else 'ies'}, {open_count} open; "
        f"times in {zone.key}. Mark one handled: outreach replies ack ID --note TEXT"
    )


def _tags(row: Any) -> list[str]:
    """What kind of item a review-queue entry is, when it is not a plain reply."""
    kind = row.kind.replace("_", "-")
    tags = ["ASKS FOR HELP"] if row.asks_help else []
    if row.unverified:
        tags.append(f"unverified {kind}")
    elif row.kind == "auto_reply" and row.contact_change:
        tags.append(f"{kind}: contact change")
    elif row.kind != "reply":
        tags.append(kind)
    if row.duplicate_of:
        tags.append(f"same Message-ID as #{row.duplicate_of}")
    return tags


@replies.command("ack")
@click.argument("reply_id", metavar="ID", type=int)
@click.option("--note", help="What was done (kept with the reply and in the log).")
@pass_app
def replies_ack(app: App, reply_id: int, note: str | None) -> None:
    """Mark reply ID handled (it leaves the --unhandled queue); records an event. Unverified
    mail is dismissed: it changes nothing."""
    from outreach.engine.review import acknowledge

    echo(acknowledge(app.store, reply_id, note, now()))


@replies.command("reclassify")
@click.argument("reply_id", metavar="ID", type=int)
@click.argument("kind", type=click.Choice(KINDS))
@pass_app
def replies_reclassify(app: App, reply_id: int, kind: str) -> None:
    """Correct the classification of message ID and redo its effect: e.g. an auto-reply
    misread as a reply resumes the follow-ups; an unsubscribe misread puts the partner back
    to active. Unverified mail (a bounce quoting none of our messages, a stranger's reply) is
    attributed to its partner and KIND's effect applied. Records an event."""
    from outreach.engine.answers import question_sets
    from outreach.engine.review import reclassify

    changes = reclassify(
        app.store,
        reply_id,
        kind,
        now(),
        default_timezone=app.config.timezone,
        auto_reply_pause=app.config.replies.auto_reply_pause,
        questions=question_sets(app.campaigns),
    )
    echo(f"#{reply_id} is now {kind}")
    for change in changes:
        echo(f"  {change}")


@replies.command("answer")
@click.argument("reply_id", metavar="ID", type=int)
@click.argument("question_id", metavar="QUESTION_ID")
@click.option("--text", required=True, help="The partner's answer to QUESTION_ID ('' clears it).")
@pass_app
def replies_answer(app: App, reply_id: int, question_id: str, text: str) -> None:
    """Correct reply ID's answer to QUESTION_ID: TEXT becomes that answer and leaves wherever
    it was; what the old answer held goes to "other" (nothing the partner wrote is lost).
    Records an event; `replies reclassify` keeps a corrected reply's answers."""
    from outreach.engine.answers import correct_answer, question_sets

    echo(
        correct_answer(app.store, reply_id, question_id, text, now(), question_sets(app.campaigns))
    )


# --------------------------------------------------------------------------- report


@cli.command("report")
@click.argument("campaign_name", metavar="CAMPAIGN")
@click.option(
    "--html",
    "html_file",
    metavar="FILE",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write a self-contained HTML report (charts, replies) to FILE.",
)
@click.option(
    "--owner",
    metavar="NAME",
    help="The per-owner table, the silent partners and the replies of this owner only.",
)
@json_option("The report as one JSON object.")
@pass_app
def report_command(
    app: App, campaign_name: str, html_file: Path | None, owner: str | None, as_json: bool
) -> None:
    """The funnel of CAMPAIGN (audience, sent per step, replied, auto-replied, bounced,
    unsubscribed, still pending, reply rate, median time to reply), per owner (partners,
    reached, replied, waiting for a person) and the partners who never answered."""
    from outreach.cli.progress import progress
    from outreach.views.owners import for_owner, load_owners, owner_html, owner_json, owner_lines
    from outreach.views.report import campaign_names, format_report, load_report, report_json

    known = set(campaign_names(app.store)) | {c.name for c in app.campaigns}
    if campaign_name not in known:
        raise InputError(
            f"no campaign named {campaign_name!r} (campaigns: {', '.join(sorted(known)) or 'none'})"
        )
    zone = app.zone
    moment = now()
    report = load_report(app.store, campaign_name, zone)
    owner = owner_name(app, owner)
    owners = load_owners(app.store, campaign_name, app.config, owner)
    if owner is not None:
        report = for_owner(app.store, report, owner)
    answers = _what_partners_said(app, campaign_name, owner) if html_file or as_json else None
    if html_file is not None:
        from outreach.views.answers_html import what_partners_said
        from outreach.views.report_html import render_html

        said = "" if answers is None else what_partners_said(answers, zone)
        with progress(
            report.replies, length=len(report.replies), label="writing the report"
        ) as replies:
            page = render_html(
                report, zone, moment, replies, (owner_html(owners, owner),), said=said
            )
        from outreach.store.files import private_text_file

        with private_text_file(html_file) as handle:
            handle.write(page)
    if as_json:
        shape = {**report_json(report, zone), **owner_json(owners, owner)}
        if answers is not None:
            from outreach.views.answers import answers_json

            shape["what_partners_said"] = answers_json(answers, zone)
        echo(json_text(shape, indent=2))
    else:
        echo("\n".join(format_report(report, zone, moment) + owner_lines(owners, owner)))
    if html_file is not None:
        echo(f"wrote {html_file}", err=True)


def _what_partners_said(
    app: App, campaign_name: str, owner: str | None = None
) -> CampaignAnswers | None:
    """Every partner's answer to each question when the campaign declares questions (only
    `owner`'s partners when one is given)."""
    questions = next((c.questions for c in app.campaigns if c.name == campaign_name), ())
    if not questions:
        return None
    from outreach.views.answers import load_answers

    said = load_answers(app.store, campaign_name, questions)
    if owner is None:
        return said
    from outreach.views.owners import answers_for_owner

    return answers_for_owner(app.store, said, owner)


# --------------------------------------------------------------------------- export


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
