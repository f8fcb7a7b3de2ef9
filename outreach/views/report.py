"""The campaign report behind `outreach report`: the funnel, time to reply, the partners who
never answered, and the replies themselves.

`load_report` reads (a handful of aggregate queries over the m002 views, so it stays fast on
large logs); `format_report` and `report_json` are pure.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from outreach.core.rounds import round_label
from outreach.store import Store, queries
from outreach.views.text import local_minute, table_lines


@dataclass(frozen=True)
class StepFunnel:
    step: int
    sent: int  # messages of this step that went out
    replied: int  # partners whose reply answered this step
    auto_replied: int
    bounced: int


@dataclass(frozen=True)
class Silent:
    """A partner the campaign reached who never answered (no reply, no unsubscribe)."""

    email: str
    name: str
    organization: str
    state: str
    last_step: int
    last_sent_at: datetime | None
    auto_replied: bool
    round: int = 1  # their latest round of a campaign that repeats
    round_started_at: datetime | None = None

    def round_label(self, zone: ZoneInfo) -> str:
        """ "round 2, spring" for a round after the first, else ""."""
        if self.round <= 1 or self.round_started_at is None:
            return ""
        return round_label(self.round, self.round_started_at, zone)


@dataclass(frozen=True)
class Departed:
    """A partner the campaign wrote to who asked to stop or whose address bounced."""

    email: str
    name: str
    organization: str
    status: str  # opted_out or bounced
    reason: str


@dataclass(frozen=True)
class ReportReply:
    id: int
    at: datetime
    partner: str
    name: str
    organization: str
    step: int | None
    kind: str
    text: str
    handled: bool
    signature: str = ""  # cut from the end of `text` ("-- " block, "Sent from my iPhone")
    from_addr: str | None = None  # who wrote it (a colleague, when not the partner)
    from_name: str | None = None

    @property
    def sender(self) -> str | None:
        """Who wrote it, when that is not the partner."""
        if not self.from_addr or self.from_addr == self.partner:
            return None
        return f"{self.from_name} <{self.from_addr}>" if self.from_name else self.from_addr


@dataclass(frozen=True)
class CampaignReport:
    campaign: str
    audience: int
    sent: int  # partners reached
    messages_sent: int
    replied: int
    auto_replied: int
    bounced: int
    unsubscribed: int
    failed: int
    pending: int
    reply_rate: float | None
    median_hours_to_reply: float | None
    steps: list[StepFunnel] = field(default_factory=list)
    never_answered: list[Silent] = field(default_factory=list)
    replies: list[ReportReply] = field(default_factory=list)
    sent_days: dict[date, int] = field(default_factory=dict)  # local dates
    departed: list[Departed] = field(default_factory=list)

    def departed_as(self, status: str) -> list[Departed]:
        return [d for d in self.departed if d.status == status]

    def replies_per_day(self, zone: ZoneInfo) -> dict[date, int]:
        counts: dict[date, int] = {}
        for reply in self.replies:
            if reply.kind == "reply":
                day = reply.at.astimezone(zone).date()
                counts[day] = counts.get(day, 0) + 1
        return counts


def campaign_names(store: Store) -> list[str]:
    return queries.campaign_names(store)


def load_report(store: Store, campaign: str, zone: ZoneInfo) -> CampaignReport:
    funnel = queries.funnel(store, campaign)
    steps = queries.step_counts(store, campaign)
    silent = [
        Silent(
            email=r["email"],
            name=r["name"],
            organization=r["organization"],
            state=r["state"],
            last_step=r["last_step"],
            last_sent_at=datetime.fromisoformat(r["last_sent_at"]) if r["last_sent_at"] else None,
            auto_replied=bool(r["auto_replied"]),
            round=r["round"],
            round_started_at=datetime.fromisoformat(r["round_started_at"])
            if r["round_started_at"]
            else None,
        )
        for r in queries.never_answered(store, campaign)
    ]
    replies = [
        ReportReply(
            id=r["id"],
            at=datetime.fromisoformat(r["at"]),
            partner=r["partner"] or "",
            name=r["name"] or "",
            organization=r["organization"] or "",
            step=r["step"],
            kind=r["kind"],
            text=(r["text"] or "").strip(),
            handled=bool(r["handled"]),
            from_addr=r["from_addr"],
            from_name=r["from_name"],
            signature=(r["signature"] or "").strip(),
        )
        for r in queries.campaign_replies(store, campaign)
    ]
    sent_days: dict[date, int] = {}
    for sent_at in queries.sent_times(store, campaign):
        day = datetime.fromisoformat(sent_at).astimezone(zone).date()
        sent_days[day] = sent_days.get(day, 0) + 1
    return CampaignReport(
        campaign=campaign,
        audience=funnel.get("audience", 0),
        sent=funnel.get("sent", 0),
        messages_sent=funnel.get("messages_sent", 0),
        replied=funnel.get("replied", 0),
        auto_replied=funnel.get("auto_replied", 0),
        bounced=funnel.get("bounced", 0),
        unsubscribed=funnel.get("unsubscribed", 0),
        failed=funnel.get("failed", 0),
        # only partners who may still get a message (not a finished round, not an opt-out)
        pending=queries.may_still_write(store, campaign),
        reply_rate=funnel.get("reply_rate"),
        median_hours_to_reply=funnel.get("median_hours_to_reply"),
        steps=[
            StepFunnel(
                step=n,
                sent=v.get("sent", 0),
                replied=v.get("reply", 0),
                auto_replied=v.get("auto_reply", 0),
                bounced=v.get("bounce", 0),
            )
            for n, v in sorted(steps.items())
        ],
        never_answered=silent,
        replies=replies,
        sent_days=sent_days,
        departed=[
            Departed(
                email=r["email"],
                name=r["name"] or "",
                organization=r["organization"] or "",
                status=r["status"],
                reason=r["status_reason"] or "",
            )
            for r in queries.left_campaign(store, campaign)
        ],
    )


def who(departed: Departed) -> str:
    return f"{departed.name} <{departed.email}>" if departed.name else departed.email


def format_hours(hours: float | None) -> str:
    """A time to reply for people: "45 min", "5 h", "2 d 6 h"."""
    if hours is None:
        return "-"
    minutes = round(hours * 60)
    if minutes < 60:
        return f"{minutes} min"
    if minutes < 48 * 60:
        whole, rest = divmod(minutes, 60)
        return f"{whole} h" + (f" {rest} min" if rest and whole < 10 else "")
    days, rest = divmod(round(hours), 24)
    return f"{days} d" + (f" {rest} h" if rest else "")


def format_rate(rate: float | None) -> str:
    return "-" if rate is None else f"{rate * 100:.1f}%"


def funnel_lines(report: CampaignReport) -> list[tuple[str, str]]:
    """(label, value) rows shared by the terminal and the HTML report."""
    rows = [
        ("Audience", str(report.audience)),
        ("Sent", f"{report.sent} partners, {report.messages_sent} messages"),
    ]
    rows += [(f"  step {s.step}", str(s.sent)) for s in report.steps]
    rows += [
        ("Replied", str(report.replied)),
        ("Auto-replied", str(report.auto_replied)),
        ("Bounced", str(report.bounced)),
        ("Unsubscribed", str(report.unsubscribed)),
        ("Failed to send", str(report.failed)),
        ("Still pending", str(report.pending)),
        ("Reply rate", format_rate(report.reply_rate)),
        ("Median time to reply", format_hours(report.median_hours_to_reply)),
    ]
    return rows


def format_report(report: CampaignReport, zone: ZoneInfo, now: datetime) -> list[str]:
    lines = [
        f"Campaign {report.campaign} (as of {local_minute(now, zone)}, times in {zone.key})",
        "",
    ]
    rows = funnel_lines(report)
    width = max(len(label) for label, _ in rows) + 3
    lines += [label.ljust(width) + value for label, value in rows]
    lines.append("")
    if report.steps:
        lines.append(
            "Per step:   "
            + "   ".join(f"step {s.step}: {s.sent} sent, {s.replied} replied" for s in report.steps)
        )
        lines.append("")
    for status, label in (("opted_out", "Unsubscribed"), ("bounced", "Bounced")):
        named = report.departed_as(status)
        if named:
            lines.append(f"{label} ({len(named)}): " + ", ".join(who(d) for d in named))
    if report.departed:
        lines.append("")
    if not report.never_answered:
        lines.append("Never answered: nobody" if report.sent else "Nothing sent yet.")
        return lines
    lines.append(f"Never answered ({len(report.never_answered)}):")
    table: list[tuple[str, ...]] = [
        ("EMAIL", "NAME", "ORGANIZATION", "LAST STEP", "LAST SENT", "STATE")
    ]
    for s in report.never_answered:
        table.append(
            (
                s.email,
                s.name,
                s.organization,
                str(s.last_step),
                local_minute(s.last_sent_at, zone) if s.last_sent_at else "-",
                s.state
                + (" (auto-reply)" if s.auto_replied else "")
                + (f" ({s.round_label(zone)})" if s.round_label(zone) else ""),
            )
        )
    lines += ["  " + line for line in table_lines(table)]
    return lines


def report_json(report: CampaignReport, zone: ZoneInfo) -> dict[str, Any]:
    return {
        "campaign": report.campaign,
        "audience": report.audience,
        "sent": report.sent,
        "messages_sent": report.messages_sent,
        "sent_per_step": {str(s.step): s.sent for s in report.steps},
        "replied": report.replied,
        "auto_replied": report.auto_replied,
        "bounced": report.bounced,
        "unsubscribed": report.unsubscribed,
        "failed": report.failed,
        "pending": report.pending,
        "reply_rate": report.reply_rate,
        "median_hours_to_reply": report.median_hours_to_reply,
        "steps": [
            {
                "step": s.step,
                "sent": s.sent,
                "replied": s.replied,
                "auto_replied": s.auto_replied,
                "bounced": s.bounced,
            }
            for s in report.steps
        ],
        "never_answered": [
            {
                "partner": s.email,
                "name": s.name,
                "organization": s.organization,
                "state": s.state,
                "last_step": s.last_step,
                "auto_replied": s.auto_replied,
                "round": s.round,
                "round_label": s.round_label(zone) or None,
                "last_sent_at": s.last_sent_at.astimezone(zone).isoformat()
                if s.last_sent_at
                else None,
            }
            for s in report.never_answered
        ],
        **{
            key: [
                {
                    "partner": d.email,
                    "name": d.name,
                    "organization": d.organization,
                    "reason": d.reason,
                }
                for d in report.departed_as(status)
            ]
            for key, status in (
                ("unsubscribed_partners", "opted_out"),
                ("bounced_partners", "bounced"),
            )
        },
        "replies": [
            {
                "id": r.id,
                "at": r.at.astimezone(zone).isoformat(),
                "partner": r.partner,
                "name": r.name,
                "organization": r.organization,
                "step": r.step,
                "kind": r.kind,
                "text": r.text,
                "handled": r.handled,
                "from": r.from_addr,
                "from_name": r.from_name,
                "signature": r.signature,
            }
            for r in report.replies
        ],
    }


def day_buckets(
    first: date, last: date, counts: dict[date, int], max_bars: int = 120
) -> list[tuple[date, int]]:
    """Counts per day from first to last (zeros included), or per week (starting Monday)
    when that would be more than `max_bars` bars."""
    if last < first:
        first, last = last, first
    days = (last - first).days + 1
    if days <= max_bars:
        return [
            (first + timedelta(days=i), counts.get(first + timedelta(days=i), 0))
            for i in range(days)
        ]
    start = first - timedelta(days=first.weekday())
    weeks: dict[date, int] = {}
    for day, n in counts.items():
        monday = day - timedelta(days=day.weekday())
        weeks[monday] = weeks.get(monday, 0) + n
    out = []
    monday = start
    while monday <= last:
        out.append((monday, weeks.get(monday, 0)))
        monday += timedelta(days=7)
    return out
