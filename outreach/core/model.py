"""Shared dataclasses and constants of the domain."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

# Partner status across all campaigns.
ACTIVE, BOUNCED, OPTED_OUT, INACTIVE = "active", "bounced", "opted_out", "inactive"
PARTNER_STATUSES = (ACTIVE, BOUNCED, OPTED_OUT, INACTIVE)

# Roster columns with a meaning; anything else is kept in `fields` for templates.
ROSTER_COLUMNS = (
    "email",
    "name",
    "first_name",
    "organization",
    "industry",
    "pathway",
    "owner",
    "tags",
    "timezone",
)


@dataclass(frozen=True)
class Partner:
    email: str
    name: str = ""
    first_name: str = ""
    organization: str = ""
    industry: str = ""
    pathway: str = ""
    owner: str = ""
    tags: tuple[str, ...] = ()
    timezone: str = ""
    fields: dict[str, str] = field(default_factory=dict)
    status: str = ACTIVE
    id: int | None = None

    @property
    def greeting_name(self) -> str:
        """first_name, else the first word of name, else empty."""
        if self.first_name:
            return self.first_name
        return self.name.split()[0] if self.name.strip() else ""

    def template_context(self) -> dict[str, Any]:
        """Everything a template may use as `partner.*`: extra CSV columns, then known fields."""
        context: dict[str, Any] = dict(self.fields)
        context.update(
            email=self.email,
            name=self.name,
            first_name=self.greeting_name,
            organization=self.organization,
            industry=self.industry,
            pathway=self.pathway,
            owner=self.owner,
            tags=list(self.tags),
            timezone=self.timezone,
            status=self.status,
        )
        return context


@dataclass(frozen=True)
class SequenceState:
    campaign: str
    partner_id: int
    state: str  # active / paused / replied / stopped / done
    last_step: int
    last_sent_at: datetime | None
    paused_until: datetime | None


@dataclass(frozen=True)
class LedgerRef:
    """What the ledger knows of a message we sent (for matching replies to it)."""

    id: int
    partner_id: int
    campaign: str
    step: int
    to_addr: str
