"""The new text of a human reply, and its signature, apart from quoted history: pure, no I/O.

:func:`split_reply` reads a body (plain text, or HTML turned into text with its quote
containers marked) line by line:

1. quoted history that is not ``>``-prefixed starts at a quote header (:mod:`.headers`: "On
   ... wrote:" in many languages, "-----Original Message-----", Outlook header blocks, ...)
   or at an HTML client's quote container; it is cut, and mailing-list footers with it;
2. ``>``-quoted text is dropped, with its attribution line ("On ... wrote:"), except when
   the partner answers inline: below each quoted question (or below one, after words of
   their own above it). Then the quoted passages their answers follow are kept, with their
   ``>`` marks; quoted text that nothing (or only a sign-off) follows is still dropped.
   A single quote with the answer below it is bottom-posting: the quote is history;
3. the signature is cut from the end and kept apart (:mod:`.signature`: the ``-- `` block and
   device lines such as "Sent from my iPhone"); the sign-off ("Thanks, Maria") stays text.

Every line of the text and of the signature is a line of the body: nothing is rewritten,
so :func:`passages` can later split a stored text into quoted questions and answers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from outreach.core.inbound.bodytext import QUOTE_MARK, normalize_newlines
from outreach.core.inbound.replytext.headers import (
    attributions,
    banner_end,
    footer_start,
    history_start,
    leading_block_end,
    quoted_lines,
)
from outreach.core.inbound.replytext.signature import is_closing, is_greeting, signature_start

__all__ = ["Passage", "ReplyText", "extract_reply", "new_words", "passages", "split_reply"]

#: Only the head of a body is searched for the answer: replies are short, history is long.
MAX_REPLY_SOURCE_CHARS = 50_000
#: Zero-width and direction marks (Outlook puts them in dates): invisible, but they hide a
#: quote header's final ':'.
_INVISIBLE = re.compile("[\u200b-\u200f\u2060\ufeff\u202a-\u202e]")
_RULE_ONLY = re.compile(r"^[\s\-_=*~]*$")
_QUOTE_PREFIX = re.compile(r"^\s*(?:>[ \t]?)+|^\|[ \t]?")


@dataclass(frozen=True)
class Passage:
    """A run of a reply's text: a quoted passage the partner answered below (``quoted``,
    its ``>`` marks removed), or the partner's own words."""

    quoted: bool
    text: str


@dataclass(frozen=True)
class ReplyText:
    """What a partner wrote (``text``) and the signature cut from its end (``signature``)."""

    text: str
    signature: str = ""

    @property
    def passages(self) -> tuple[Passage, ...]:
        return passages(self.text)


def split_reply(body: str) -> ReplyText:
    """The new text and the signature of a reply body; both '' when there are none."""
    text = _INVISIBLE.sub("", normalize_newlines(body or "")[:MAX_REPLY_SOURCE_CHARS])
    lines = text.split("\n")
    banner = banner_end(lines)
    start = banner + leading_block_end(lines[banner:])
    end = history_start(lines, start)
    lines = [line for line in lines[start:end] if line != QUOTE_MARK]
    lines = lines[: footer_start(lines)]
    quoted = quoted_lines(lines)
    for first, last, _quoted_next in attributions(lines, len(lines)):
        for index in range(first, last + 1):
            lines[index] = ""  # "On ... wrote:" is a header, not the partner's words
    cut = signature_start(lines, quoted)
    kept = _kept(lines[:cut], quoted[:cut])
    signature = [line for line, q in zip(lines[cut:], quoted[cut:], strict=True) if not q]
    return ReplyText(text=_tidy(kept), signature=_tidy(signature))


def extract_reply(body: str) -> str:
    """The new text the sender wrote, without quoted history or signature; '' when none."""
    return split_reply(body).text


def _kept(lines: list[str], quoted: list[bool]) -> list[str]:
    """The partner's lines, and, when they answer inline, the quoted text they answer.

    Inline means two or more quoted passages each followed by their words, or one after
    words of theirs above it ("my answers are below"). A single quote with their words
    below it is bottom-posting: that quote is the history, dropped like any other. Words
    that only close the mail ("Thanks, Dana") answer nothing."""
    runs = _runs(lines, quoted)
    if not runs:
        return [line for i, line in enumerate(lines) if not quoted[i]]
    answered = [
        k
        for k, (is_quoted, _rows) in enumerate(runs[:-1])
        if is_quoted
        and not runs[k + 1][0]
        and not (k + 2 == len(runs) and is_closing([lines[i] for i in runs[k + 1][1]]))
    ]
    words_above = not runs[0][0] and not is_greeting([lines[i] for i in runs[0][1]])
    inline = len(answered) >= 2 or (bool(answered) and words_above)
    keep = {i for k in answered for i in runs[k][1]} if inline else set()
    return [line for i, line in enumerate(lines) if not quoted[i] or i in keep]


def _runs(lines: list[str], quoted: list[bool]) -> list[tuple[bool, list[int]]]:
    """Consecutive quoted or own lines (blank lines join the run they sit in)."""
    runs: list[tuple[bool, list[int]]] = []
    for index, line in enumerate(lines):
        if not line.strip() and not quoted[index]:
            continue
        if runs and runs[-1][0] == quoted[index]:
            runs[-1][1].append(index)
        else:
            runs.append((quoted[index], [index]))
    while runs and runs[-1][0]:
        runs.pop()  # quoted text nothing follows
    return runs


def _tidy(lines: list[str]) -> str:
    rows = [line if line == "-- " else line.rstrip() for line in lines]  # RFC 3676 keeps "-- "
    while rows and _RULE_ONLY.match(rows[-1]):
        rows.pop()  # a separator left above a cut, or blank lines
    return re.sub(r"\n{3,}", "\n\n", "\n".join(rows)).strip("\n")


def passages(text: str) -> tuple[Passage, ...]:
    """A stored reply text as runs of quoted question lines and the partner's own words."""
    lines = text.split("\n")
    runs: list[Passage] = []
    current: list[str] = []
    current_quoted = False
    for line, line_quoted in zip(lines, quoted_lines(lines), strict=True):
        if not line.strip():
            current.append("")
            continue
        if line_quoted != current_quoted and any(r.strip() for r in current):
            runs.append(Passage(current_quoted, "\n".join(current).strip("\n")))
            current = []
        current_quoted = line_quoted
        current.append(_QUOTE_PREFIX.sub("", line) if line_quoted else line)
    if any(r.strip() for r in current):
        runs.append(Passage(current_quoted, "\n".join(current).strip("\n")))
    return tuple(runs)


def new_words(text: str) -> str:
    """A reply text without the quoted lines kept above answers: only the partner's words."""
    lines = text.split("\n")
    own = (line for line, q in zip(lines, quoted_lines(lines), strict=True) if not q)
    return "\n".join(own).strip("\n")
