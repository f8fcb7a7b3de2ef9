"""A campaign per owner (issue 19), for `outreach report`: each owner's partners, how many
the campaign reached, how many replied and how many answers wait for a person, with the
account that sends for the owner; and the report narrowed to one owner (`--owner NAME`).

`load_owners` and `for_owner` read; the rest is pure. Owners come from the roster, so
they are escaped in HTML like any other text from outside.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from outreach.core.settings import Config, owner_key
from outreach.store import Store, queries
from outreach.views.answers import CampaignAnswers
from outreach.views.report import CampaignReport
from outreach.views.text import table_lines

NO_OWNER = "(no owner)"


@dataclass(frozen=True)
class OwnerRow:
    owner: str  # as the roster writes it; "" for partners with none
    account: str | None  # the account that lists the owner, if one does
    partners: int
    reached: int
    replied: int
    waiting: int  # answers waiting for a person (not handled yet)

    @property
    def label(self) -> str:
        return self.owner or NO_OWNER


def load_owners(
    store: Store, campaign: str, config: Config, owner: str | None = None
) -> list[OwnerRow]:
    """One row per owner in the roster (only `owner`'s, when given)."""
    accounts = config.owner_accounts()
    rows = [
        OwnerRow(
            owner=r["owner"] or "",
            account=accounts.get(owner_key(r["owner"] or "")),
            partners=r["partners"] or 0,
            reached=r["reached"] or 0,
            replied=r["replied"] or 0,
            waiting=r["waiting"] or 0,
        )
        for r in queries.owner_counts(store, campaign)
    ]
    if owner is not None:
        rows = [r for r in rows if owner_key(r.owner) == owner_key(owner)]
    return rows


def for_owner(store: Store, report: CampaignReport, owner: str) -> CampaignReport:
    """The report's lists (never answered, replies) narrowed to `owner`'s partners; the
    funnel stays the campaign's."""
    emails = queries.owner_emails(store, owner)
    return replace(
        report,
        never_answered=[s for s in report.never_answered if s.email in emails],
        replies=[r for r in report.replies if r.partner in emails],
    )


def answers_for_owner(store: Store, said: CampaignAnswers, owner: str) -> CampaignAnswers:
    """What partners said, narrowed to `owner`'s partners."""
    emails = queries.owner_emails(store, owner)
    return replace(said, partners=tuple(p for p in said.partners if p.partner in emails))


HEADERS = ("OWNER", "ACCOUNT", "PARTNERS", "REACHED", "REPLIED", "WAITING FOR A PERSON")


def _cells(row: OwnerRow) -> tuple[str, ...]:
    return (
        row.label,
        row.account or "-",
        str(row.partners),
        str(row.reached),
        str(row.replied),
        str(row.waiting),
    )


def owner_lines(rows: list[OwnerRow], owner: str | None = None) -> list[str]:
    """The per-owner table for a terminal (after the rest of the report)."""
    if not rows:
        return []
    title = f"Owner {owner}:" if owner else "Per owner:"
    return ["", title] + ["  " + line for line in table_lines([HEADERS, *map(_cells, rows)])]


def owner_json(rows: list[OwnerRow], owner: str | None = None) -> dict[str, Any]:
    return {
        "owner": owner,
        "owners": [
            {
                "owner": r.owner,
                "account": r.account,
                "partners": r.partners,
                "reached": r.reached,
                "replied": r.replied,
                "waiting_for_a_person": r.waiting,
            }
            for r in rows
        ],
    }


def owner_html(rows: list[OwnerRow], owner: str | None = None) -> str:
    """The per-owner table of the HTML report (every value escaped)."""
    from html import escape

    def esc(value: object) -> str:
        return escape(str(value), quote=True)

    head = "".join(f"<th>{esc(h.capitalize())}</th>" for h in HEADERS)
    body = "".join(
        "<tr><td>"
        + esc(r.label)
        + "</td><td>"
        + esc(r.account or "-")
        + "</td>"
        + "".join(
            f'<td class="num">{n}</td>' for n in (r.partners, r.reached, r.replied, r.waiting)
        )
        + "</tr>"
        for r in rows
    )
    title = f"Owner {esc(owner)}" if owner else "Per owner"
    if not rows:
        return f'<h2>{title}</h2><p class="meta" id="owners-empty">No partners yet.</p>'
    return f'<h2>{title}</h2><table id="owners"><tr>{head}</tr>{body}</table>'
