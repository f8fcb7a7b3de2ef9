"""mail-parser-reply's language knowledge, read once: quote headers, device lines, sign-offs.

The library keeps, per language, the phrases of a quote header ("On ... wrote:", "Am ...
schrieb", Outlook "From:/Sent:" blocks), of a phone's signature ("Sent from my", "Enviado
desde mi") and of a sign-off ("Best regards", "Med venlig hilsen"). We use those through its
public constants and its message class instead of copying them; our own rules (in the sibling
modules) add what it lacks and guard against its looser matches.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from re import _constants as _c  # type: ignore[attr-defined]
from re import _parser  # type: ignore[attr-defined]
from typing import Any

from mailparser_reply import EmailReplyParser
from mailparser_reply.constants import MAIL_LANGUAGES
from mailparser_reply.parser import EmailMessage

#: Every language but "david" (a vendor's header, not a language: it matches plain "Von"/"An"
#: lines and cut answers that list them).
LANGUAGES = [lang for lang in MAIL_LANGUAGES if lang != "david"]
_PARSER = EmailReplyParser(languages=LANGUAGES)


def _phrases(key: str) -> list[str]:
    """A key's phrases over every language (regex text; each one may hold its own '|')."""
    found: list[str] = []
    for language in LANGUAGES:
        value = MAIL_LANGUAGES[language].get(key) or []
        found.extend(p for p in ([value] if isinstance(value, str) else value) if p)
    return list(dict.fromkeys(found))


#: "Sent from my", "Get Outlook for", "Enviado desde mi.*", "Inviato da", ... (regex text)
SENT_FROM = "|".join(f"(?:{p})" for p in _phrases("sent_from"))
#: "Best regards", "Thanks,", "Mit freundlichen Grüßen", "Hilsen", ... (regex text)
#: (Swedish "/John" is left out: a slash and a name is no phrase to look for in a line.)
SIGN_OFFS = "|".join(f"(?:{p})" for p in _phrases("signatures") if not p.startswith("/"))


def _header_block_words() -> tuple[list[str], list[str]]:
    """(From words, other field names) of each language's Outlook-style header block, read
    out of the library's patterns ("[* ]*(?:From|Sent|To|Subject|Date|Cc|Organization):");
    the first name of each list is its "From"."""
    froms: list[str] = []
    others: list[str] = []
    for language in LANGUAGES:
        match = re.search(
            r"\[\* \]\*\(\?:(.+?)\):", MAIL_LANGUAGES[language].get("from_header", "")
        )
        words = [w.strip() for w in match.group(1).split("|") if w.strip()] if match else []
        if words:
            froms.append(words[0])
            others.extend(words[1:])
    return list(dict.fromkeys(froms)), list(dict.fromkeys(others))


#: "From", "Von", "Od", "[Ff]ra", "De", "Da", "Van", "Från", ... (regex text, one per item)
#: and "Sent", "Gesendet", "Enviado", "Envoyé", "Inviato", "Oggetto", ...
HEADER_FROM_WORDS, HEADER_FIELD_WORDS = _header_block_words()


class _StartsFinder:
    """``pattern.finditer`` that tries a match only where one can start.

    The library's quote-header regex is a long alternation; ``re`` tries every alternative at
    every position of the text. Its parsed form shows that a match can only start at a line
    start, on a newline or on a few known characters: trying exactly those positions (in
    order, resuming after each match) finds the same matches, several times faster. Built
    by :func:`_starts_finder`, which returns None when it cannot tell.
    """

    def __init__(self, pattern: re.Pattern[str], line_start: bool, chars: frozenset[str]) -> None:
        self.pattern = pattern
        self.line_start = line_start
        self.chars = chars
        self.folded = bool(pattern.flags & re.IGNORECASE)
        self.any_non_ascii = self.folded  # case folding can map non-ASCII onto ASCII letters

    def _starts(self, text: str) -> list[int]:
        found: set[int] = set()
        if self.line_start:
            found.add(0)
        at = text.find("\n")
        while at >= 0:
            if self.line_start:
                found.add(at + 1)
            if "\n" in self.chars:
                found.add(at)
            at = text.find("\n", at + 1)
        for char in self.chars - {"\n"}:
            for variant in {char, char.lower(), char.upper()} if self.folded else {char}:
                at = text.find(variant)
                while at >= 0:
                    found.add(at)
                    at = text.find(variant, at + 1)
        if self.any_non_ascii and not text.isascii():
            found.update(m.start() for m in _NON_ASCII.finditer(text))
        return sorted(p for p in found if p <= len(text))

    def finditer(self, text: str) -> Iterator[re.Match[str]]:
        resume = 0
        for start in self._starts(text):
            if start < resume:
                continue
            match = self.pattern.match(text, start)
            if match is not None:
                yield match
                resume = max(match.end(), start + 1)


_NON_ASCII = re.compile(r"[^\x00-\x7f]")


def _first(items: Any) -> tuple[set[str] | None, bool]:
    """(where a match of this parsed sequence can start, can it match nothing): '^' is a line
    start, other strings are characters; None when it cannot be told."""
    starts: set[str] = set()
    for op, av in items:
        if op is _c.AT:
            if av in (_c.AT_BEGINNING, _c.AT_BEGINNING_LINE, _c.AT_BEGINNING_STRING):
                return starts | {"^"}, False
            return None, True
        if op is _c.LITERAL:
            return starts | {chr(av)}, False
        if op is _c.IN:
            chars = set()
            for kind, value in av:
                if kind is _c.LITERAL:
                    chars.add(chr(value))
                elif kind is _c.RANGE and value[1] - value[0] < 64:
                    chars.update(chr(c) for c in range(value[0], value[1] + 1))
                else:
                    return None, True
            return starts | chars, False
        if op is _c.SUBPATTERN:
            inner, nullable = _first(av[-1])
        elif op is _c.BRANCH:
            inner, nullable = set(), False
            for alternative in av[1]:
                one, empty = _first(alternative)
                if one is None:
                    return None, True
                inner |= one
                nullable = nullable or empty
        elif op in (_c.MAX_REPEAT, _c.MIN_REPEAT, _c.POSSESSIVE_REPEAT):
            inner, nullable = _first(av[2])
            nullable = nullable or av[0] == 0
        elif op is _c.ASSERT_NOT or (op is _c.ASSERT and av[0] >= 0):
            continue  # a lookahead takes no room: what follows decides where a match starts
        else:
            return None, True
        if inner is None:
            return None, True
        starts |= inner
        if not nullable:
            return starts, False
    return starts, True


def _starts_finder(pattern: re.Pattern[str]) -> _StartsFinder | None:
    try:
        starts, nullable = _first(_parser.parse(pattern.pattern, pattern.flags))
    except Exception:  # noqa: BLE001 - an unknown regex shape: keep the plain pattern
        return None
    if starts is None or nullable or "(?<" in pattern.pattern:
        return None
    return _StartsFinder(pattern, "^" in starts, frozenset(starts - {"^"}))


# The library builds its regexes (from every language's phrases) for each message it reads;
# they depend only on the languages, so the quote-header one is built once here.
_HEADER_REGEX = EmailMessage(text="", languages=_PARSER.languages).HEADER_REGEX
_HEADER_FINDER = _starts_finder(_HEADER_REGEX)


def quote_header_spans(lines: list[str]) -> list[tuple[int, int, str]]:
    """The library's quote headers in ``lines``: (first line, last line, matched text), in
    order; an Outlook block spans several lines. Never raises."""
    text = "\n".join(line.strip() for line in lines)  # as the library reads it
    spans: list[tuple[int, int, str]] = []
    try:
        for match in (_HEADER_FINDER or _HEADER_REGEX).finditer(text):
            matched = match.group()
            begin = match.start() + len(matched) - len(matched.lstrip("\n"))
            body = matched.strip("\n")
            if body.strip():
                first = text.count("\n", 0, begin)
                spans.append((first, first + body.count("\n"), body))
    except Exception:  # noqa: BLE001 - regex-heavy library, be defensive
        return []
    return spans
