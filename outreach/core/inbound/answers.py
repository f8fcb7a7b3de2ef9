"""A reply's answer to each of a campaign's questions (issue 20, part 2): pure, no I/O, no clock.

A campaign may declare its questions (:mod:`outreach.core.questions`). :func:`split_answers` reads
a stored reply text (the partner's new words, with the quoted questions kept above inline
answers: see :mod:`outreach.core.inbound.replytext`) and places each piece of it under one
question, by
these rules in order:

1. inline: the partner's words below a quoted question (``> 2. Do you see lasting changes?``)
   answer it, up to the next quoted passage or question. The question is matched loosely
   (case, accents, punctuation, wrapping, a ``1.``/``Q1:`` prefix, the template's words around
   it, a question quoted in part or reworded). A line of the partner's own that restates a
   question ("2) Do you see lasting changes? Yes.") works the same way. Below a passage
   that quotes several questions, the words answer the last one when it ends the passage;
2. numbered: lines starting ``1.``, ``2)``, ``(3)``, ``Q1:``, ``#1``, ``1-`` answer that
   question number, each up to the next number. Only when the numbers fit (each within the
   questions, rising; a number that falls back starts a list inside the answer above) and
   the list does not read as a list of the partner's own: one that a line ending in ':'
   introduces ("We could use:"; not "My answers:"), or whose items' words point to other
   questions than their numbers. Text below an inline question is never split this way:
   a partner who numbers their needs under question 3 answers question 3;
3. keywords: each remaining paragraph goes to the question whose keywords it holds (light
   stemming: plurals, -ed, -ing, Spanish/Portuguese/French endings; a keyword of n words
   weighs n, shared by k questions n/k). Ties go to the first tied question not before the one
   the paragraph above answered (replies follow the questions' order), else the earliest.
   What matches nothing is ``other``.

A greeting that opens the reply ("Hi Jordan,") and the sign-off that closes it ("Thanks,
Maria") answer nothing and are not ``other`` either. Each piece (:class:`Part`) is a span of
the text: one paragraph answers at most one question, and every answer is the input's own
words. The whole text is kept beside the answers.
"""

from __future__ import annotations

import bisect
import json
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from functools import lru_cache
from itertools import accumulate
from typing import NamedTuple

from outreach.core.inbound.replytext.headers import quoted_lines
from outreach.core.inbound.replytext.signature import is_closing, is_greeting
from outreach.core.questions import (
    OTHER,
    STOP_WORDS,
    WORD,
    Question,
    fold,
    matches_keyword,
    text_stems,
    text_words,
    word_stem,
)

__all__ = [
    "OTHER",
    "Answers",
    "Part",
    "Rule",
    "asked_for_help",
    "correct_answers",
    "recorded_answers",
    "stored_answers",
    "declines",
    "split_answers",
]

# --------------------------------------------------------------------------- the matcher


@dataclass(frozen=True)
class _Compiled:
    """What matching needs of a campaign's questions, built once per question set."""

    questions: tuple[Question, ...]
    #: each question's text as stems, for finding it quoted or restated
    sequences: tuple[tuple[str, ...], ...]
    #: each question's number (as the partner writes it) -> its index
    numbers: Mapping[int, int]
    #: the first stem of each question, to pass over lines that cannot restate one
    openings: frozenset[str]
    #: each question's content stems, for finding it reworded
    contents: tuple[frozenset[str], ...]
    #: each question's keywords as stem phrases with their weight: a phrase of n words
    #: counts n (it says more than one word), shared by k questions 1/k of that
    keywords: tuple[tuple[tuple[tuple[str, ...], float], ...], ...]


@lru_cache(maxsize=64)
def _compile(questions: tuple[Question, ...]) -> _Compiled:
    phrases = [
        tuple(dict.fromkeys(tuple(text_stems(k)) for k in (q.keywords or ()) if text_stems(k)))
        for q in questions
    ]
    sharing: dict[tuple[str, ...], int] = {}
    for own in phrases:
        for phrase in own:
            sharing[phrase] = sharing.get(phrase, 0) + 1
    return _Compiled(
        questions=questions,
        sequences=tuple(tuple(text_stems(q.text)) for q in questions),
        numbers={q.number: index for index, q in enumerate(questions)},
        openings=frozenset(s[0] for q in questions if (s := text_stems(q.text))),
        contents=tuple(
            frozenset(word_stem(t) for t in text_words(q.text) if t not in STOP_WORDS)
            for q in questions
        ),
        keywords=tuple(tuple((p, len(p) / sharing[p]) for p in own) for own in phrases),
    )


def _longest_run(sequence: tuple[str, ...], stems: list[str]) -> tuple[int, int]:
    """(length, end in ``stems``) of the longest run of ``sequence`` found in ``stems``."""
    where: dict[str, list[int]] = {}
    for index, stem in enumerate(sequence):
        where.setdefault(stem, []).append(index)
    best = (0, 0)
    previous: dict[int, int] = {}
    for position, stem in enumerate(stems):
        current: dict[int, int] = {}
        for index in where.get(stem, ()):
            length = previous.get(index - 1, 0) + 1
            current[index] = length
            if length > best[0]:
                best = (length, position + 1)
        previous = current
    return best


_SENTENCE = re.compile(r"[^?]*\?")
#: only the end of a long quoted passage is searched: the question answered is right above
_QUOTE_TAIL = 400


def _quoted_questions(compiled: _Compiled, quote: str) -> tuple[list[int], int]:
    """The questions a quoted passage holds, in order, and how many words follow the last.

    A question is there when its words run in the passage in order (all of them, or at
    least half and three), or, failing that, when a sentence ending in '?' holds 60% of its
    content words (a template that words it differently). Overlapping finds go to the
    longer run. Only the passage's last words are searched: the question answered is the
    one right above the answer."""
    words = list(WORD.finditer(quote))[-_QUOTE_TAIL:]
    stems = [word_stem(fold(w.group())) for w in words]
    found: list[tuple[int, int, int]] = []  # (length, end, question index)
    for index, sequence in enumerate(compiled.sequences):
        if not sequence:
            continue
        length, end = _longest_run(sequence, stems)
        need = len(sequence) if len(sequence) < 3 else max(3, math.ceil(len(sequence) / 2))
        if length >= need:
            found.append((length, end, index))
    taken: list[tuple[int, int, int]] = []
    for length, end, index in sorted(found, reverse=True):
        if all(end <= e - n or end - length >= e for n, e, _i in taken):
            taken.append((length, end, index))
    placed = {index for _l, _e, index in taken}
    ends = [w.end() for w in words]
    for sentence in _SENTENCE.finditer(quote, words[0].start() if words else 0):
        sentence_stems = set(text_stems(sentence.group()))
        for index, content in enumerate(compiled.contents):
            shared = len(content & sentence_stems)
            if index in placed or not shared:
                continue
            if shared >= min(2, len(content)) and shared >= 0.6 * len(content):
                taken.append((shared, bisect.bisect_right(ends, sentence.end()), index))
                placed.add(index)
                break
    taken.sort(key=lambda t: t[1])
    trailing = len(stems) - taken[-1][1] if taken else len(stems)
    return [index for _l, _e, index in taken], trailing


_AFTER_QUESTION = re.compile(r"[ \t]*[?:.!]*[ \t]*")


def _restated(compiled: _Compiled, line: str, below: str) -> tuple[int, int] | None:
    """A line of the partner's own that starts (after a number) with a whole question, as
    in a reply that copies the questions: (question index, where the answer starts, counted
    in ``line + "\\n" + below``: past the line when the question wraps onto ``below``)."""
    marker = _MARKER.match(line)
    first = WORD.search(line, marker.end() if marker else 0)
    if first is None or word_stem(fold(first.group())) not in compiled.openings:
        return None  # (most lines: no question starts with their first word)
    joined = line + "\n" + below
    words = list(WORD.finditer(joined, first.start()))
    on_line = sum(1 for word in words if word.start() < len(line))
    if not on_line:
        return None
    stems = tuple(word_stem(fold(word.group())) for word in words)
    for index, sequence in enumerate(compiled.sequences):
        size = len(sequence)
        if not size or stems[:size] != sequence or (size < 3 and on_line > size):
            continue  # (a question of one or two words is too easy to write by chance)
        end = words[size - 1].end()
        after = _AFTER_QUESTION.match(joined, end)
        start = after.end() if after else end
        if start < len(joined) and joined[start] != "\n" and not joined[end:start].strip():
            continue  # its words go on into a sentence of the partner's: not the question
        return index, start
    return None


def _keyword_scores(compiled: _Compiled, text: str) -> list[float]:
    """Each question's score for a paragraph: the weights of the keywords it holds."""
    stems = text_stems(text)
    distinct = set(stems)
    scores = []
    for phrases in compiled.keywords:
        score = 0.0
        for phrase, weight in phrases:
            first = phrase[0]
            if len(phrase) == 1:
                if first in distinct or (
                    len(first) >= 4 and any(stem.startswith(first) for stem in distinct)
                ):
                    score += weight
                continue
            firsts = {stem for stem in distinct if matches_keyword(stem, first)}
            if firsts and (
                any(
                    all(matches_keyword(stems[at + k], phrase[k]) for k in range(1, len(phrase)))
                    for at in range(len(stems) - len(phrase) + 1)
                    if stems[at] in firsts
                )
            ):
                score += weight
        scores.append(score)
    return scores


def _best(scores: list[float], after: int) -> int | None:
    """The best-scoring question; a tie goes to the first not before ``after``."""
    top = max(scores, default=0.0)
    if top <= 0:
        return None
    tied = [i for i, s in enumerate(scores) if math.isclose(s, top)]
    return next((i for i in tied if i >= after), tied[0])


# --------------------------------------------------------------------------- the split


class Rule(StrEnum):
    """How a part of a reply was placed."""

    INLINE = "inline"
    NUMBERED = "numbered"
    KEYWORDS = "keywords"
    OTHER = "other"


@dataclass(frozen=True)
class Part:
    """A span of the reply text (``text == whole[start:end]``) and the question it answers
    (None: ``other``), with the rule that placed it."""

    question: str | None
    start: int
    end: int
    text: str
    rule: Rule


@dataclass(frozen=True)
class Answers(Mapping[str, str]):
    """A reply's answers: maps question id -> answer (answered questions only, in question
    order), with ``other`` (the partner's words no question took), ``text`` (the whole
    reply text) and ``parts`` (which span went where, and why)."""

    text: str
    by_question: Mapping[str, str] = field(default_factory=dict)
    other: str = ""
    parts: tuple[Part, ...] = ()

    def __getitem__(self, question_id: str) -> str:
        return self.by_question[question_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self.by_question)

    def __len__(self) -> int:
        return len(self.by_question)

    def to_json(self, questions: Sequence[Question]) -> dict[str, str | None]:
        """``{"changes": "...", "help": null, "other": "..."}``: every question of the
        campaign (null when unanswered, so each export has all its columns), then other."""
        shape: dict[str, str | None] = {q.id: self.by_question.get(q.id) for q in questions}
        shape[OTHER] = self.other or None
        return shape


_MARKER = re.compile(
    r"^[ \t*]*(?:"
    r"(?:q|p|question|pregunta|pergunta)[ \t]*(?P<q>\d{1,2})[ \t]*(?:[:.)\-–—]|$)"
    r"|\((?P<paren>\d{1,2})\)"
    r"|\#[ \t]?(?P<hash>\d{1,2})[:.)]?"
    r"|(?P<plain>\d{1,2})(?:[.)][-–—]?|[ \t]?[-–—:])"
    r")[ \t*]*(?=\s|$)",
    re.IGNORECASE,
)
#: a further number inside a line that starts with one ("1. Hybrid. 2. Yes. 3. A speaker.")
_MARKER_INSIDE = re.compile(
    r"(?<=[.!?;])[ \t]+"
    r"(?:\((?P<paren>\d{1,2})\)|(?:q|p)(?P<q>\d{1,2})[:.)]|(?P<plain>\d{1,2})[.)])[ \t]+",
    re.IGNORECASE,
)
#: a lead-in that announces answers, not a list of the partner's own ("My answers:")
_ANSWERS_LEAD = re.compile(
    r"answer|respuest|repons|respost|question|pregunt|pergunt|point|punto|below|abajo|dessous",
    re.IGNORECASE,
)
_BLANK = re.compile(r"\n[^\S\n]*\n\s*")  # a line of nothing but blanks ([^\S\n]: not \n)


class _Marker(NamedTuple):
    number: int
    start: int  # where the marker starts (the item ends before the next one)
    content: int  # where the item's words start


def split_answers(text: str, questions: Sequence[Question]) -> Answers:
    """Split a stored reply text into the answer to each question (see the module doc)."""
    compiled = _compile(tuple(questions))
    pieces: list[tuple[int, int, int | None, Rule | None]] = []  # start, end, question, rule
    for start, end, owner, rule in _regions(text, compiled):
        if rule is Rule.INLINE:
            pieces.append((start, end, owner, rule))
        else:
            pieces.extend(_numbered_or_paragraphs(text, start, end, compiled, owner))
    parts = _placed(text, pieces, compiled)
    by_question: dict[str, list[str]] = {}
    other: list[str] = []
    for part in parts:
        (other if part.question is None else by_question.setdefault(part.question, [])).append(
            part.text
        )
    return Answers(
        text=text,
        by_question={
            q.id: "\n\n".join(by_question[q.id]) for q in compiled.questions if q.id in by_question
        },
        other="\n\n".join(other),
        parts=tuple(parts),
    )


def _regions(text: str, compiled: _Compiled) -> list[tuple[int, int, int | None, Rule | None]]:
    """Spans of the partner's own words, each with the question it sits under.

    (start, end, question, Rule.INLINE) below a quoted or restated question; (start, end,
    question or None, None) elsewhere: below a passage quoting several questions, the last
    one when it ends the passage; None when no question is above."""
    lines = text.split("\n")
    starts = list(accumulate((len(line) + 1 for line in lines), initial=0))
    quoted = quoted_lines(lines)
    first, last = _answer_bounds(lines, quoted)
    spans: list[tuple[int, int, int | None, Rule | None]] = []
    owner: int | None = None
    rule: Rule | None = None
    region: int | None = None  # where the current span of own words started

    def close(at: int) -> None:
        nonlocal region
        if region is not None and at > region:
            spans.append((region, at, owner, rule))
        region = None

    index = 0
    while index < len(lines):
        if quoted[index]:
            end = _quote_end(lines, quoted, index)
            close(starts[index])
            quote = "\n".join(_QUOTE_PREFIX.sub("", line) for line in lines[index : end + 1])
            found, trailing = _quoted_questions(compiled, quote)
            owner = found[-1] if len(found) == 1 or (found and trailing <= 3) else None
            rule = Rule.INLINE if len(found) == 1 else None
            index = end + 1
            continue
        if not first <= index <= last:
            close(starts[index])  # the greeting, the sign-off
            index += 1
            continue
        below = lines[index + 1] if index < last and not quoted[index + 1] else ""
        restated = _restated(compiled, lines[index], below) if lines[index].strip() else None
        if restated is not None:
            close(starts[index])
            owner, rule = restated[0], Rule.INLINE
            region = starts[index] + restated[1]
            index = bisect.bisect_right(starts, region)  # the line after the answer's start
            continue
        if region is None:
            region = starts[index]
        index += 1
    close(len(text))
    return spans


def _quote_end(lines: list[str], quoted: list[bool], index: int) -> int:
    """Last line of the quoted passage at ``index`` (blank lines inside it belong to it)."""
    end = index
    probe = index + 1
    while probe < len(lines):
        if quoted[probe]:
            end = probe
        elif lines[probe].strip():
            break
        probe += 1
    return end


_QUOTE_PREFIX = re.compile(r"^\s*(?:>[ \t]?)+|^\|[ \t]?")


#: a line a closing may start with, other than the last: "Thanks,", "Best", "Un saludo,"
#: ("Guest speakers" above "Thanks,\nDana" looks like a name, yet it is an answer)
_SIGN_OFF_SHAPE = re.compile(
    r",\s*$|^\W*(?:thanks|thank you|many thanks|cheers|best|regards|kind regards|sincerely|"
    r"take care|gracias|muchas gracias|saludos|un saludo|atentamente|cordialmente|merci|"
    r"cordialement|bien a vous|obrigad[oa]|abracos?|atenciosamente)\b",
)


def _answer_bounds(lines: list[str], quoted: list[bool]) -> tuple[int, int]:
    """First and last line that may answer: without the greeting that opens the reply
    ("Hi Jordan,") and the sign-off that closes it ("Thanks,\\nMaria")."""
    own = [i for i, line in enumerate(lines) if line.strip() and not quoted[i]]
    if not own:
        return 0, -1
    first, last = own[0], own[-1]
    if not any(quoted[:first]) and (is_greeting([lines[first]]) or _addressed(lines[first])):
        first = next((i for i in own if i > first), len(lines))
    after_quote = max((i for i in range(len(lines)) if quoted[i]), default=-1)
    below_quote = [i for i in own if i > after_quote and i >= first]
    tail = below_quote[-7:]
    for position, index in enumerate(tail):
        if after_quote >= 0 and index == below_quote[0]:
            continue  # all the words below a quoted question: its answer ("Definitely.")
        if _closes(lines[index], [lines[i] for i in tail[position + 1 :]]):
            return first, max((i for i in own if i < index), default=-1)
    return first, last


#: "Sam,", "Sam and team," alone on the first line: whom the reply addresses
_ADDRESSEE = re.compile(r"^[A-ZÀ-Þ][\w'.-]*(?: [\w'.-]+){0,2},$")


def _addressed(line: str) -> bool:
    row = line.strip()
    return bool(_ADDRESSEE.match(row)) and fold(row[:-1]) not in _SHORT_ANSWERS


_SHORT_ANSWERS = frozenset({"yes", "no", "sure", "ok", "okay", "si", "oui", "non", "sim", "nao"})

#: "Grace Kim, CPA", "Dana Reyes, Owner": a name and a short title
_NAME_TITLE = re.compile(r"^([^,]{2,40}),\s*(?:[A-Z][\w.&/-]*\s*){1,4}$")


def _closes(line: str, below: list[str]) -> bool:
    """Do ``line`` and the lines ``below`` it only close the mail? A line that is not the
    last must look like a sign-off (the ':func:`is_closing`' of reply text also takes a
    name-like answer such as "Guest speakers" for a name); "Saludos cordiales," and "Name,
    Title" close a mail too."""
    row = line.strip()
    if not below:
        title = _NAME_TITLE.match(row)
        return is_closing([row]) or (title is not None and is_closing([title.group(1)]))
    if not _SIGN_OFF_SHAPE.search(fold(row)):
        return False
    if is_closing([row, *below]):
        return True
    return row.endswith(",") and len(row.split()) <= 4 and _closes(below[0], below[1:])


def _numbered_or_paragraphs(
    text: str, start: int, end: int, compiled: _Compiled, last: int | None
) -> list[tuple[int, int, int | None, Rule | None]]:
    """Numbered answers in a span when its numbers fit; else its paragraphs, unplaced (or
    all of it for ``last``: the question that ends the passage quoted above it)."""
    markers = _markers(text, start, end, compiled.numbers)
    if markers and _fits(text, start, end, markers, compiled):
        pieces: list[tuple[int, int, int | None, Rule | None]] = list(
            _paragraphs(text, start, markers[0].start)
        )
        if pieces and text[pieces[-1][0] : pieces[-1][1]].rstrip().endswith(":"):
            pieces[-1] = (*pieces[-1][:2], None, Rule.OTHER)  # "My answers:" answers nothing
        for k, marker in enumerate(markers):
            stop = markers[k + 1].start if k + 1 < len(markers) else end
            content = _without_question(text, marker.content, stop, compiled)
            pieces.append((content, stop, compiled.numbers[marker.number], Rule.NUMBERED))
        return pieces
    if last is not None:
        return [(start, end, last, Rule.INLINE)]
    return list(_paragraphs(text, start, end))


def _paragraphs(text: str, start: int, end: int) -> Iterator[tuple[int, int, None, None]]:
    """The paragraphs of a span that hold words."""
    at = start
    for blank in [*_BLANK.finditer(text, start, end), None]:
        stop = end if blank is None else blank.start()
        if text[at:stop].strip():
            yield at, stop, None, None
        if blank is not None:
            at = blank.end()


def _markers(text: str, start: int, end: int, numbers: Mapping[int, int]) -> list[_Marker]:
    """The top-level numbers of a span, rising; [] when one is not a question's number.

    A number not above the one before starts a list inside that item ("3. We need:\\n1.
    interns\\n2. a speaker"), and what follows stays in it."""
    found: list[_Marker] = []
    nested = False
    at = start
    for line in text[start:end].split("\n"):
        match = _MARKER.match(line)
        if match:
            candidates = [(match, at)]
            candidates += [(m, at) for m in _MARKER_INSIDE.finditer(line)]
            for hit, base in candidates:
                number = int(next(g for g in hit.groups() if g is not None))
                if nested or (found and number <= found[-1].number):
                    nested = True
                    continue
                if number not in numbers:
                    return []
                found.append(_Marker(number, base + hit.start(), base + hit.end()))
        at += len(line) + 1
    return found


def _fits(text: str, start: int, end: int, markers: list[_Marker], compiled: _Compiled) -> bool:
    """Do these numbers answer the questions, or number a list of the partner's own?"""
    lead = text[start : markers[0].start].rstrip()
    lead_line = lead.rsplit("\n", 1)[-1].strip()
    if lead_line.endswith(":") and not _ANSWERS_LEAD.search(lead_line):
        return False  # "We could use a few things:" then 1., 2., 3.
    agree = disagree = 0
    for k, marker in enumerate(markers):
        stop = markers[k + 1].start if k + 1 < len(markers) else end
        scores = _keyword_scores(compiled, text[marker.content : stop])
        best = _best(scores, 0)
        if best is None:
            continue
        if scores[compiled.numbers[marker.number]] > 0:
            agree += 1
        else:
            disagree += 1
    return not (disagree >= 2 and disagree > agree)


def _without_question(text: str, start: int, stop: int, compiled: _Compiled) -> int:
    """Where an item's answer starts when it restates its question first."""
    line_end = text.find("\n", start, stop)
    line = text[start : stop if line_end < 0 else line_end]
    below_end = text.find("\n", start + len(line) + 1, stop)
    below = (
        text[start + len(line) + 1 : stop if below_end < 0 else below_end] if line_end >= 0 else ""
    )
    restated = _restated(compiled, line, below)
    return start if restated is None else min(start + restated[1], stop)


#: blank space and divider lines ("--", "____") around a piece are not part of the answer
_EDGE_START = re.compile(r"(?:[^\S\n]*(?:[-_=*~]{2,}[^\S\n]*)?\n)*[^\S\n]*")
_EDGE_END = re.compile(r"(?:\n[^\S\n]*(?:[-_=*~]{2,}[^\S\n]*)?)*\s*$")


def _trimmed(text: str, start: int, end: int) -> tuple[int, int]:
    head = _EDGE_START.match(text, start, end)
    start = head.end() if head else start
    tail = _EDGE_END.search(text, start, end)
    return start, tail.start() if tail else end


def _placed(
    text: str, pieces: list[tuple[int, int, int | None, Rule | None]], compiled: _Compiled
) -> list[Part]:
    """Parts in text order: each piece trimmed; unplaced ones matched by keywords."""
    parts: list[Part] = []
    previous = 0
    for start, end, owner, rule in sorted(pieces, key=lambda p: p[0]):
        start, end = _trimmed(text, start, end)
        if start >= end:
            continue
        words = text[start:end]
        if rule is None:  # unplaced: its keywords decide
            owner = _best(_keyword_scores(compiled, words), previous)
            rule = Rule.OTHER if owner is None else Rule.KEYWORDS
        if owner is not None:
            previous = owner
        question = None if owner is None else compiled.questions[owner].id
        parts.append(Part(question, start, end, words, rule))
    return parts


# --------------------------------------------------------------------------- help


_DECLINE_START = re.compile(
    r"^\W*(?:all good|all set|we(?: a|')re (?:all )?(?:good|fine|set|ok|okay)|we are (?:all )?"
    r"(?:good|fine|set|ok|okay)|i think we(?: a|')re (?:good|fine)|todo bien|estamos bien|"
    r"tout va bien|tudo bem|estamos bem)\b",
)
_NEGATION_TEXT = """no not nope nah nothing none never dont don doesnt didnt isnt arent nada
    ninguna ninguno ningun nunca non rien pas aucun aucune nao nenhum nenhuma nein nichts kein"""
_NEGATION = frozenset(_NEGATION_TEXT.split())
#: "No, but a speaker would be great" asks; "Not really, but thank you" does not
_CONTRAST = re.compile(
    r"\b(?:but|though|although|however|except|unless|pero|sin embargo|aunque|salvo|excepto|"
    r"mais|sauf|cependant|mas|porem|embora|aber)\b(?![\s,]*(?:thank|gracias|merci|obrigad|danke))"
)
#: what may follow a no: "Thanks for asking!", "Gracias por preguntar."
_PLEASANTRY = re.compile(r"\b(?:thank|thanks|appreciate|gracias|merci|obrigad|danke)", re.I)
_SENTENCE_END = re.compile(r"(?<=[.!?;])\s+")


def declines(answer: str) -> bool:
    """Does this answer say no ("No, thanks", "Nothing right now", "We're all set", "Por
    ahora no, gracias")? A no among the first words of its first sentence, no "but", and
    nothing after it but thanks: "No. We would love a speaker." asks. When unsure it
    does not decline: better a coordinator reads a no than misses a request."""
    folded = fold(answer.strip()).replace("\u2019", "'")
    first, *rest = _SENTENCE_END.split(folded)
    words = [w.replace("'", "") for w in re.findall(r"[^\W_]+(?:'[^\W_]+)?", first)]
    if not words or len(words) > 15 or _CONTRAST.search(folded):
        return False
    if any(len(s.split()) > 6 or not _PLEASANTRY.search(s) for s in rest if s.strip()):
        return False
    return bool(_DECLINE_START.match(first)) or any(w in _NEGATION for w in words[:3])


def asked_for_help(answers: Mapping[str, str | None], questions: Sequence[Question]) -> bool:
    """True when a question marked ``asks`` has an answer that is more than a no.

    (The issue says "a non-empty answer"; "No, thanks" to "Is there anything we can do to
    help?" is non-empty, yet it would put a partner who needs nothing at the top of the
    review queue.)"""
    for question in questions:
        answer = (answers.get(question.id) or "").strip()
        if question.asks and answer and not declines(answer):
            return True
    return False


def recorded_answers(
    kind: str, text: str | None, questions: Sequence[Question]
) -> tuple[dict[str, str | None] | None, bool | None]:
    """What is stored with a message: its answers (JSON shape) and whether it asks for help;
    (None, None) when it is not a reply or its campaign declares no questions."""
    if kind != "reply" or not questions:
        return None, None
    shape = split_answers(text or "", questions).to_json(questions)
    return shape, asked_for_help(shape, questions)


def stored_answers(text: str | None) -> dict[str, str | None] | None:
    """Answers as stored (JSON text), or None: no answers, or a value that is not an object."""
    try:
        value = json.loads(text or "null")
    except ValueError:
        return None
    if not isinstance(value, dict):
        return None
    return {str(k): v if isinstance(v, str) else None for k, v in value.items()}


# --------------------------------------------------------------------------- corrections


def correct_answers(
    stored: Mapping[str, str | None],
    questions: Sequence[Question],
    question_id: str,
    text: str,
) -> dict[str, str | None]:
    """Answers (the JSON shape) after a person sets ``question_id``'s answer to ``text``.

    The new text leaves wherever it was (every copy of it in ``other`` or in another
    question's answer); what the question's old answer held that the new one does not moves
    to ``other``: nothing a partner wrote is lost. An empty ``text`` clears the answer (its
    words go to other). Raises ValueError for an id that is not one of ``questions``."""
    ids = [q.id for q in questions]
    if question_id not in ids:
        known = ", ".join(ids) or "none"
        raise ValueError(f"no question {question_id!r} in this campaign; its questions: {known}")
    new = text.replace("\r\n", "\n").strip()
    result: dict[str, str | None] = {q: stored.get(q) or None for q in ids}
    result.update({k: v or None for k, v in stored.items() if k not in result and k != OTHER})
    moved = [p for p in _split_paragraphs(new) if p]
    left = _without(result[question_id] or "", moved)  # what the new answer no longer holds
    for key, value in list(result.items()):
        if key != question_id and value:
            result[key] = _without(value, moved) or None
    other = _without(stored.get(OTHER) or "", moved)
    if left and _squash(left) not in _squash(other) and _squash(left) not in _squash(new):
        other = f"{other}\n\n{left}" if other else left
    result[question_id] = new or None
    result[OTHER] = other or None
    return result


def _split_paragraphs(text: str) -> list[str]:
    return [p.strip() for p in _BLANK.split(text.strip())]


def _squash(text: str) -> str:
    return " ".join(text.split())


def _without(text: str, paragraphs: list[str]) -> str:
    """``text`` with every copy of each of ``paragraphs`` taken out where it stands as whole
    words (as written, or as a whole paragraph that differs only in spacing)."""
    for paragraph in sorted(paragraphs, key=len, reverse=True):  # one inside another: both
        copy = re.compile(rf"(?<!\w){re.escape(paragraph)}(?!\w)")
        while found := copy.search(text):
            before, after = text[: found.start()].rstrip(" \t"), text[found.end() :].lstrip(" \t")
            glue = (
                " " if before and after and not before.endswith("\n") and after[0] != "\n" else ""
            )
            text = before + glue + after
        text = "\n\n".join(p for p in _split_paragraphs(text) if _squash(p) != _squash(paragraph))
    return "\n\n".join(p for p in _split_paragraphs(text) if p)
