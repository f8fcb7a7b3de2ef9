"""What partners said, question by question (docs/answers.md): `outreach answers` and the
report's "What partners said".

Each partner's answer to a question is what their replies to the campaign answered to it
(the replies' words in order, when they wrote more than once); a reply recorded before
answers were kept is split when it is read. Only the partner's own replies count
(unverified mail is left out: it is not known to be theirs).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from outreach.core.inbound.answers import asked_for_help, split_answers, stored_answers
from outreach.core.questions import OTHER, Question
from outreach.store import Store, queries
from outreach.views.text import wrap

#: the columns of `outreach answers --format csv` (and the keys of each JSON object)
ANSWER_COLUMNS = (
    "question",
    "number",
    "question_text",
    "partner",
    "name",
    "organization",
    "answer",
    "asks_help",
    "replies",
    "at",
)


@dataclass(frozen=True)
class PartnerAnswers:
    """One partner's answers to a campaign's questions, over all their replies."""

    partner: str
    name: str
    organization: str
    answers: dict[str, str]  # question id (or "other") -> their words
    replies: tuple[int, ...]  # the replies' ids, oldest first
    at: datetime  # their latest reply
    asks_help: bool

    @property
    def who(self) -> str:
        return f"{self.name} <{self.partner}>" if self.name else self.partner


@dataclass(frozen=True)
class CampaignAnswers:
    campaign: str
    questions: tuple[Question, ...]
    partners: tuple[PartnerAnswers, ...]  # in the order they first replied

    def answered(self, question_id: str) -> list[PartnerAnswers]:
        return [p for p in self.partners if p.answers.get(question_id)]

    @property
    def asking_help(self) -> list[PartnerAnswers]:
        return [p for p in self.partners if p.asks_help]


def load_answers(store: Store, campaign: str, questions: Sequence[Question]) -> CampaignAnswers:
    """Every partner's answer to each question of `campaign`."""
    asked = tuple(questions)
    merged: dict[str, dict[str, Any]] = {}
    for row in queries.campaign_answer_rows(store, campaign):
        stored = stored_answers(row["answers"])
        if stored is None:  # recorded before answers were kept
            stored = split_answers(row["text"] or "", asked).to_json(asked)
            helped = asked_for_help(stored, asked)
        else:
            helped = bool(row["asked_help"])
        entry = merged.setdefault(
            row["partner"],
            {"row": row, "answers": {}, "replies": [], "helped": False},
        )
        entry["row"] = {**row, "name": row["name"] or entry["row"]["name"]}
        entry["replies"].append(row["id"])
        entry["helped"] = entry["helped"] or helped
        for key, value in stored.items():
            if value and value.strip():
                words: list[str] = entry["answers"].setdefault(key, [])
                words.append(value.strip())
    partners = tuple(
        PartnerAnswers(
            partner=partner,
            name=entry["row"]["name"] or "",
            organization=entry["row"]["organization"] or "",
            answers={k: "\n\n".join(v) for k, v in entry["answers"].items()},
            replies=tuple(entry["replies"]),
            at=datetime.fromisoformat(entry["row"]["at"]),
            asks_help=entry["helped"],
        )
        for partner, entry in merged.items()
    )
    return CampaignAnswers(campaign, asked, partners)


def question_by_id(questions: Sequence[Question], question_id: str) -> Question | None:
    return next((q for q in questions if q.id == question_id), None)


def answer_rows(
    said: CampaignAnswers, zone: ZoneInfo, only: str | None = None
) -> Iterator[dict[str, Any]]:
    """One row per (question, partner who answered it), in question order: for CSV/JSON."""
    for question in said.questions:
        if only is not None and question.id != only:
            continue
        for p in said.answered(question.id):
            yield {
                "question": question.id,
                "number": question.number,
                "question_text": question.text,
                "partner": p.partner,
                "name": p.name,
                "organization": p.organization,
                "answer": p.answers[question.id],
                "asks_help": p.asks_help,
                "replies": list(p.replies),
                "at": p.at.astimezone(zone).isoformat(),
            }


def answers_json(said: CampaignAnswers, zone: ZoneInfo) -> dict[str, Any]:
    """`report --json`'s "what_partners_said": each question with every partner's answer,
    and who asked for help."""
    return {
        "questions": [
            {
                "id": q.id,
                "number": q.number,
                "text": q.text,
                "answers": [
                    {k: row[k] for k in ("partner", "name", "organization", "answer", "asks_help")}
                    for row in answer_rows(said, zone, q.id)
                ],
            }
            for q in said.questions
        ],
        "asked_for_help": [p.partner for p in said.asking_help],
    }


def format_answers(said: CampaignAnswers, width: int = 100, only: str | None = None) -> list[str]:
    """The text of `outreach answers`: each question, then each partner's answer under it;
    then who asked for help and what answered no question (not with `only`)."""
    replied = len(said.partners)
    lines = [
        f"{said.campaign}: what partners said ({replied} partner"
        f"{'' if replied == 1 else 's'} replied)"
    ]
    inner = max(20, width - 6)
    for question in said.questions:
        if only is not None and question.id != only:
            continue
        answered = said.answered(question.id)
        lines += ["", f"{question.number}. {question.text}  [{question.id}]"]
        for p in answered:
            lines.append(f"  {p.who}" + (f" · {p.organization}" if p.organization else ""))
            lines += [("      " + line).rstrip() for line in wrap(p.answers[question.id], inner)]
        lines.append(f"  ({len(answered)} of {replied} answered)")
    if only is None:
        others = said.answered(OTHER)
        if others:
            lines += ["", "Answered no question:"]
            for p in others:
                lines.append(f"  {p.who}")
                lines += [("      " + line).rstrip() for line in wrap(p.answers[OTHER], inner)]
        helpers = said.asking_help
        lines += ["", f"Asked for help ({len(helpers)}):"]
        lines += [
            f"  {p.who}" + (f" · {p.organization}" if p.organization else "") for p in helpers
        ] or ["  nobody yet"]
    return lines
