"""`outreach answers CAMPAIGN`: every partner's answer to each of a campaign's questions
(docs/answers.md)."""

from __future__ import annotations

import shutil

import click

from outreach.cli.app import App, cli, pass_app
from outreach.cli.terminal import echo
from outreach.core.errors import InputError


@cli.command("answers")
@click.argument("campaign_name", metavar="CAMPAIGN")
@click.option("--question", "question_id", metavar="ID", help="Only this question.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "csv", "json"]),
    default="text",
    show_default=True,
)
@pass_app
def answers_command(app: App, campaign_name: str, question_id: str | None, fmt: str) -> None:
    """Every partner's answer to each question of CAMPAIGN (its [[questions]]), from their
    replies; then who asked for help. CSV and JSON: one row per question and partner who
    answered it (question, number, question_text, partner, name, organization, answer,
    asks_help, replies, at)."""
    from outreach.views.answers import ANSWER_COLUMNS, answer_rows, format_answers, load_answers
    from outreach.views.exports import write_rows

    campaign = app.campaign(campaign_name)
    if not campaign.questions:
        raise InputError(
            f"{campaign.source}: campaign {campaign.name!r} declares no questions",
            hint="add [[questions]] to it (docs/answers.md)",
        )
    known = [q.id for q in campaign.questions]
    if question_id is not None and question_id not in known:
        raise InputError(
            f"{campaign.source}: campaign {campaign.name!r} has no question {question_id!r} "
            f"(its questions: {', '.join(known)})"
        )
    said = load_answers(app.store, campaign.name, campaign.questions)
    if fmt == "text":
        width = shutil.get_terminal_size((100, 24)).columns
        echo("\n".join(format_answers(said, width, only=question_id)))
        return
    from outreach.views.exports import standard_output

    with standard_output() as handle:
        write_rows(
            handle, fmt, ANSWER_COLUMNS, answer_rows(said, app.zone, question_id), exact=False
        )
