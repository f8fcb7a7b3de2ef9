"""Answers per question, kept with each reply (docs/answers.md): a person's correction of
one answer, and answers computed again when a message is reclassified.

The splitting itself is pure (core/inbound/answers.py); this module reads the stored row,
decides with the campaign's questions and writes the result with its event, in one
transaction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from outreach.core.errors import InputError
from outreach.core.inbound.answers import (
    asked_for_help,
    correct_answers,
    recorded_answers,
    split_answers,
    stored_answers,
)
from outreach.core.model import Campaign, InboundKind
from outreach.core.questions import Question
from outreach.store import Store

#: campaign name -> its questions
QuestionSets = Mapping[str, Sequence[Question]]


def question_sets(campaigns: Sequence[Campaign]) -> dict[str, tuple[Question, ...]]:
    return {c.name: c.questions for c in campaigns}


def correct_answer(
    store: Store,
    inbound_id: int,
    question_id: str,
    text: str,
    now: datetime,
    questions: QuestionSets,
) -> str:
    """Set reply ID's answer to QUESTION_ID to `text` (a person's correction; see
    core/inbound/answers.correct_answers for where the words it replaces go). Returns what
    happened, for the user. Bad input raises InputError and changes nothing."""
    row = store.inbound_row(inbound_id)
    if row is None or row["partner_id"] is None:
        raise InputError(f"no reply #{inbound_id}", hint="outreach replies")
    if row["kind"] != InboundKind.REPLY:
        kind = str(row["kind"]).replace("_", "-")
        raise InputError(
            f"#{inbound_id} is {'an' if kind[0] in 'aeiou' else 'a'} {kind}, not a reply: only "
            "replies have answers",
            hint=f"outreach replies reclassify {inbound_id} reply",
        )
    campaign = row["campaign"]
    asked = tuple(questions.get(campaign or "", ()))
    if not asked:
        raise InputError(
            f"campaign {campaign!r} of #{inbound_id} declares no questions",
            hint="add [[questions]] to its campaign file (docs/answers.md)",
        )
    known = [q.id for q in asked]
    if question_id not in known:
        raise InputError(
            f"campaign {campaign!r} has no question {question_id!r} "
            f"(its questions: {', '.join(known)})"
        )
    before = stored_answers(row["answers"])
    if before is None:  # read before answers were kept: split it first
        before = split_answers(row["text"] or "", asked).to_json(asked)
    after = correct_answers(before, asked, question_id, text)
    helped = asked_for_help(after, asked)
    with store.write():
        store.set_answers(inbound_id, after, helped, corrected_at=now)
        store.add_event(
            "answer_corrected",
            now,
            partner_id=row["partner_id"],
            campaign=campaign,
            step=row["step"],
            inbound_id=inbound_id,
            summary=f"#{inbound_id}: the answer to {question_id!r} set by hand",
            detail={
                "question": question_id,
                "text": after[question_id],
                "was": before.get(question_id),
                "asked_help": helped,
            },
        )
    return f"#{inbound_id} ({row['email']}): the answer to {question_id!r} is set" + (
        "; it asks for help" if helped else ""
    )


def recompute_answers(
    store: Store, row: Mapping[str, Any], kind: str, questions: QuestionSets
) -> None:
    """After a reclassification: the answers of the message as `kind` (none unless it is a
    reply), unless a person corrected them. Runs inside the caller's transaction."""
    if row.get("answers_corrected_at"):
        return
    asked = tuple(questions.get(row["campaign"] or "", ()))
    answers, helped = recorded_answers(kind, row["text"], asked)
    store.set_answers(row["id"], answers, helped)
