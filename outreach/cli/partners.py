"""`outreach partners import | list`: the roster."""

from __future__ import annotations

from pathlib import Path

import click

from outreach.cli.app import App, cli, json_option, now, pass_app
from outreach.cli.terminal import echo
from outreach.core.errors import InputError
from outreach.core.text import json_text
from outreach.views.text import format_table


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
@json_option("A JSON array, one object per partner.")
@click.option("--status", type=click.Choice(["active", "bounced", "opted_out", "inactive"]))
@click.option("--owner", metavar="NAME", help="Only the partners of this owner.")
@click.option(
    "--stale",
    metavar="DURATION",
    help="Only partners nobody has heard from in this long (e.g. 90d): no reply since.",
)
@pass_app
def partners_list(
    app: App, as_json: bool, status: str | None, owner: str | None, stale: str | None
) -> None:
    """Show the roster: status, last contact, last reply and open campaign of each partner."""
    from outreach.views.relationships import (
        is_stale,
        load_relationships,
        partner_json,
        partner_table,
    )

    rows = app.store.partners(status=status)
    if owner is not None:
        from outreach.cli.logs import owner_name
        from outreach.core.settings import owner_key

        wanted = owner_key(owner_name(app, owner) or "")
        rows = [p for p in rows if owner_key(p.owner) == wanted]
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
                [partner_json(p, rels.get(p.id or 0, NONE), app.zone) for p in rows],
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
    echo(format_table(partner_table(rows, rels, app.zone)))
