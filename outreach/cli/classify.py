"""`outreach classify FILE.eml`: how the worker would classify a message, touching no
database and no network."""

from __future__ import annotations

from pathlib import Path

import click

from outreach.cli.app import App, cli, json_option, pass_app
from outreach.cli.terminal import echo
from outreach.core.errors import InputError
from outreach.core.text import json_text


@cli.command()
@click.argument(
    "files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option(
    "--campaign",
    "campaign_name",
    metavar="NAME",
    help="Also split a reply into its answer to each of campaign NAME's questions.",
)
@json_option("One JSON object per line per file.")
@pass_app
def classify(app: App, files: tuple[Path, ...], campaign_name: str | None, as_json: bool) -> None:
    """Show how each FILE.eml would be classified (reply, auto_reply, bounce, unsubscribe,
    other), with the rules that decided it; with --campaign, a reply's answer to each of the
    campaign's questions. Reads at most the first 10 MiB of a file, as the worker reads a
    message. Touches no database and no network (--campaign reads the config)."""
    from outreach.core.inbound.answers import recorded_answers
    from outreach.core.inbound.classify import classify_message
    from outreach.core.settings import ReplySettings

    questions = app.campaign(campaign_name).questions if campaign_name else ()
    if campaign_name and not questions:
        raise InputError(
            f"campaign {campaign_name!r} declares no questions",
            hint="add [[questions]] to its campaign file (docs/answers.md)",
        )

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
        answers, asks_help = recorded_answers(result.kind, result.text, questions)
        if as_json:
            shape = result.to_json(str(path))
            if campaign_name:
                shape.update(answers=answers, asks_help=asks_help)
            echo(json_text(shape))
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
        for question in questions if answers else ():
            answer = answers.get(question.id) if answers else None
            echo(f"  {question.number}. {question.id}: " + _indented(answer or "(no answer)"))
        if answers and answers.get("other"):
            echo("  other: " + _indented(answers["other"] or ""))
        if asks_help:
            echo("  asks for help")


def _indented(text: str) -> str:
    return text.replace("\n", "\n      ")
