"""The new text of a human reply, and its signature, apart from quoted history: pure, no I/O.

:func:`split_reply` reads a body (plain text, or HTML turned into text with its quote
containers marked) line by line:

1. quoted history that is not ``>``-prefixed starts at a quote header (:mod:`.headers`: "On
   ... wrote:" in many languages, "-----Original Message-----", Outlook header blocks, ...)
   or at an HTML client's quote container; it is cut, and mailing-list footers with it;
2. ``>``-quoted text that the partner's words follow is kept, with its ``>`` marks: a partner
   who answers below each quoted question keeps the question lines their answers follow.
   Quoted text that nothing follows is dropped, and so are attribution lines ("On ... wrote:")
   and quoted text that only a sign-off follows;
3. the signature is cut from the end and kept apart (:mod:`.signature`: the ``-- `` block and
   device lines such as "Sent from my iPhone"); the sign-off ("Thanks, Maria") stays text.

Every line of the text and of the signature is a line of the body: nothing is rewritten,
so :func:`passages` can later split a stored text into quoted questions and answers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from outreach.mailparse import QUOTE_MARK, normalize_newlines
from outreach.replytext.headers import (
    attributions,
    footer_start,
    history_start,
    is_quote,
    leading_block_end,
)
from outreach.replytext.signature import is_sign_off, signature_start

__all__ = ["Passage", "ReplyText", "extract_reply", "new_words", "passages", "split_reply"]

#: Only the head of a body is searched for the answer: replies are short, history is long.
MAX_REPLY_SOURCE_CHARS = 50_000
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
    text = normalize_newlines(body or "")[:MAX_REPLY_SOURCE_CHARS]
    lines = text.split("\n")
    start = leading_block_end(lines)
    end = history_start(lines, start)
    lines = [line for line in lines[start:end] if line != QUOTE_MARK]
    lines = lines[: footer_start(lines)]
    quoted = [is_quote(line) for line in lines]
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
    """The partner's lines, and the quoted lines some of their words follow."""
    own = [i for i, line in enumerate(lines) if line.strip() and not quoted[i]]
    if not own:
        return []
    answered = own[-1]  # quoted text above the last line of their own is kept
    last_quote = max((i for i in range(answered) if quoted[i]), default=-1)
    if last_quote >= 0 and is_sign_off([lines[i] for i in own if i > last_quote]):
        answered = max((i for i in own if i < last_quote), default=-1)
    return [line for index, line in enumerate(lines) if not quoted[index] or index < answered]


def _tidy(lines: list[str]) -> str:
    rows = [line.rstrip() for line in lines]
    while rows and _RULE_ONLY.match(rows[-1]):
        rows.pop()  # a separator left above a cut, or blank lines
    return re.sub(r"\n{3,}", "\n\n", "\n".join(rows)).strip("\n")


def passages(text: str) -> tuple[Passage, ...]:
    """A stored reply text as runs of quoted question lines and the partner's own words."""
    runs: list[Passage] = []
    current: list[str] = []
    current_quoted = False
    for line in text.split("\n"):
        if not line.strip():
            current.append("")
            continue
        line_quoted = is_quote(line)
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
    return "\n".join(line for line in text.split("\n") if not is_quote(line)).strip("\n")
