"""The domain's nouns: partners, campaigns and their steps, sequences, and the states each
can be in.

Everything else in outreach is written in these words. They are frozen dataclasses (values:
safe to share between threads and to cache) and str enums, whose members are equal to the
text the database stores (`PartnerStatus.BOUNCED == "bounced"`), so a state read back from
SQLite needs no conversion. config/ builds campaigns from TOML, store/ builds partners and
sequences from rows; nothing here reads a file or a clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

from outreach.core.questions import Question


class PartnerStatus(StrEnum):
    """A partner across all campaigns."""

    ACTIVE = "active"
    BOUNCED = "bounced"  # a hard bounce, or too many soft ones: nothing more is sent
    OPTED_OUT = "opted_out"  # asked to stop: nothing more is sent, ever, unless a person says
    INACTIVE = "inactive"


class SequenceStatus(StrEnum):
    """One partner's way through one campaign (the `state` of a sequences row)."""

    ACTIVE = "active"
    PAUSED = "paused"  # an out-of-office: follow-ups wait until the partner is back
    REPLIED = "replied"
    STOPPED = "stopped"  # the partner bounced, opted out, or left (contact change)
    DONE = "done"
    FINISHED = "finished"  # the last step went out without an answer: the round has ended


#: Sequences that may still get a follow-up.
OPEN_SEQUENCES = (SequenceStatus.ACTIVE, SequenceStatus.PAUSED)


class LedgerStatus(StrEnum):
    """One outgoing message in the outbox and ledger (engine/ledger.py tells the rules)."""

    QUEUED = "queued"
    SENDING = "sending"  # claimed for one delivery attempt, its DATA may be under way
    SENT = "sent"
    DEFERRED = "deferred"  # a 4xx or a lost connection before DATA: tried again later
    FAILED = "failed"
    UNKNOWN = "unknown"  # may or may not have been delivered: never resent blindly


class InboundKind(StrEnum):
    """What a message read from the mailbox is (core/inbound/classify.py decides)."""

    REPLY = "reply"
    AUTO_REPLY = "auto_reply"
    BOUNCE = "bounce"
    UNSUBSCRIBE = "unsubscribe"
    OTHER = "other"
    ERROR = "error"  # could not be read or classified: a person looks at it


class AccountPart(StrEnum):
    """What an account does for outreach (its state is kept for each)."""

    SEND = "send"  # SMTP
    READ = "read"  # IMAP


class AccountState(StrEnum):
    """How an account's last try at sending or reading went (`outreach status`)."""

    OK = "ok"
    FAILING = "failing"  # a refused login, a server down: the others go on


# Kept for the modules that name a status on its own.
ACTIVE, BOUNCED, OPTED_OUT, INACTIVE = (
    PartnerStatus.ACTIVE,
    PartnerStatus.BOUNCED,
    PartnerStatus.OPTED_OUT,
    PartnerStatus.INACTIVE,
)
PARTNER_STATUSES = tuple(PartnerStatus)

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
    state: str  # a SequenceStatus
    last_step: int
    last_sent_at: datetime | None
    paused_until: datetime | None
    account: str | None = None  # the account it started with: its follow-ups go from it
    round: int = 1  # 1 for the first sequence, 2 for the first repeat (core/rounds.py)
    updated_at: datetime | None = None
    answered_at: datetime | None = None  # the partner's answer that ended it, when read

    @property
    def ended_at(self) -> datetime | None:
        """When this round ended (core/rounds.round_ended_at): at the last message for
        `finished`, at the answer for `replied` (when it was recorded, if its time is not
        known); None while open."""
        if self.state == SequenceStatus.FINISHED:
            return self.last_sent_at
        if self.state == SequenceStatus.REPLIED:
            return self.answered_at or self.updated_at
        return None


@dataclass(frozen=True)
class LedgerRef:
    """What the ledger knows of a message we sent (for matching replies to it)."""

    id: int
    partner_id: int
    campaign: str
    step: int
    to_addr: str


# ----------------------------------------------------------------------------- campaigns

#: A campaign's `account = "owner"`: each partner's messages go from their owner's account.
OWNER_ACCOUNT = "owner"


@dataclass(frozen=True)
class Audience:
    tags: tuple[str, ...] = ()
    pathways: tuple[str, ...] = ()
    industries: tuple[str, ...] = ()
    owners: tuple[str, ...] = ()
    exclude_tags: tuple[str, ...] = ()

    @property
    def is_everyone(self) -> bool:
        return not (self.tags or self.pathways or self.industries or self.owners)


@dataclass(frozen=True)
class Window:
    days: frozenset[int] = frozenset(range(5))  # Monday = 0
    start: time = time(9, 0)
    end: time = time(16, 0)


@dataclass(frozen=True)
class Blackout:
    first: date
    last: date
    name: str = ""


@dataclass(frozen=True)
class Step:
    number: int  # 1-based
    template: str
    subject: str | None  # None: "Re: <first subject>"
    after: timedelta
    thread: bool = True


@dataclass(frozen=True)
class Campaign:
    name: str
    source: Path  # the campaign file, for messages that name it
    account: str
    steps: tuple[Step, ...]
    audience: Audience = field(default_factory=Audience)
    start: datetime | None = None
    window: Window = field(default_factory=Window)
    blackouts: tuple[Blackout, ...] = ()
    description: str = ""
    match_domain: bool = False
    enabled: bool = True
    # account = "owner": the owner (settings.owner_key) -> the account that lists it, from
    # config.toml, and the account for partners whose owner has none (None: not sent to)
    owner_accounts: dict[str, str] = field(default_factory=dict, compare=False, hash=False)
    fallback_account: str | None = None
    #: the questions the check-in asks, numbered from 1 (core/questions.py)
    questions: tuple[Question, ...] = ()
    repeat: timedelta | None = None  # a new round this long after a partner's round ended
    until: datetime | None = None  # no round starts after this (core/rounds.round_deadline)

    @property
    def by_owner(self) -> bool:
        return self.account == OWNER_ACCOUNT

    def account_for(self, partner: Partner) -> str | None:
        """The account that starts a sequence with `partner`; None when the campaign sends by
        owner and neither the partner's owner nor a fallback has one."""
        if not self.by_owner:
            return self.account
        found = self.owner_accounts.get(partner.owner.strip().casefold())
        return found or self.fallback_account

    def accounts(self) -> set[str]:
        """Every account this campaign may start a sequence from."""
        if not self.by_owner:
            return {self.account}
        found = set(self.owner_accounts.values())
        if self.fallback_account:
            found.add(self.fallback_account)
        return found


@dataclass(frozen=True)
class Due:
    """One message the planner says should go out now (core/plan.py)."""

    campaign: Campaign
    partner: Partner
    step: Step
    due_at: datetime  # when it became due (ignoring the window), for ordering and `plan`
    account: str = ""  # the account that sends it (campaign.account when left empty)
    round: int = 1  # the partner's round of the campaign (core/rounds.py)

    @property
    def sender(self) -> str:
        return self.account or self.campaign.account
