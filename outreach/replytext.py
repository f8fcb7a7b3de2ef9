"""The new text of a human reply, without quoted history: pure, no I/O.

mail-parser-reply finds the quote headers of many clients and languages ("On ... wrote:",
"Am ... schrieb", "-----Original Message-----", Outlook "From:/Sent:" blocks). Around it
we add what it lacks: HTML quote containers, ``>`` quoting (also bottom-posting and
interleaved answers), attribution lines such as ``26.06.2014, 14:41, "Bob" <b@x>:``,
Outlook's underscore separator, and mailing-list footers.

Convention (matching the labelled corpus, which follows talon): the sender's sign-off and
device signature ("Thanks, Alex", "Sent from my iPhone") are part of what they wrote and are
kept; quoted history, list footers and archive "scrubbed attachment" notes are removed.
"""

from __future__ import annotations

import re
from re import _constants as _c  # type: ignore[attr-defined]
from re import _parser  # type: ignore[attr-defined]
from typing import Any

from mailparser_reply import EmailReplyParser
from mailparser_reply.constants import MAIL_LANGUAGES
from mailparser_reply.parser import EmailMessage

from outreach.mailparse import QUOTE_MARK, normalize_newlines

#: Only the head of a body is searched for the answer: replies are short, history is long.
MAX_REPLY_SOURCE_CHARS = 50_000
_PARSER = EmailReplyParser(languages=[lang for lang in MAIL_LANGUAGES if lang != "david"])


class _StartsFindall:
    """``pattern.findall`` that tries a match only where one can start.

    The library's quote-header regex is a long alternation; ``re`` tries every alternative at
    every position of the text. Its parsed form shows that a match can only start at a line
    start, on a newline or on a few known characters: trying exactly those positions (in
    order, resuming after each match) finds the same matches, several times faster. Built
    by :func:`_starts_findall`, which returns the pattern itself when it cannot tell.
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

    def findall(self, text: str) -> list[Any]:
        out: list[Any] = []
        resume = 0
        groups = self.pattern.groups
        for start in self._starts(text):
            if start < resume:
                continue
            match = self.pattern.match(text, start)
            if match is None:
                continue
            out.append(match.group() if groups == 0 else match.group(1) if groups == 1
                       else match.groups(""))
            resume = match.end()
        return out


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


def _starts_findall(pattern: re.Pattern[str]) -> Any:
    try:
        starts, nullable = _first(_parser.parse(pattern.pattern, pattern.flags))
    except Exception:  # noqa: BLE001 - an unknown regex shape: keep the plain pattern
        return pattern
    if starts is None or nullable or "(?<" in pattern.pattern:
        return pattern
    return _StartsFindall(pattern, "^" in starts, frozenset(starts - {"^"}))


# The library builds its three regexes (from every language's phrases) for each message it
# reads; they depend only on the languages, so they are built once and handed to each message.
_TEMPLATE = EmailMessage(text="", languages=_PARSER.languages)
_REGEXES = (_starts_findall(_TEMPLATE.HEADER_REGEX), _TEMPLATE.SIGNATURE_REGEX,
            _TEMPLATE.DISCLAIMERS_REGEX)

_FROM_WORDS = r"(?:From|Von|De|Da|Van|Från|Fra|Od|От|Из|发件人|寄件者|差出人)"
_HEADER_WORDS = (
    r"(?:Sent|Date|To|Subject|Cc|Gesendet|Datum|An|Betreff|Envoyé|Date|À|Objet|Enviado|"
    r"Fecha|Para|Asunto|Inviato|Oggetto|Verzonden|Aan|Onderwerp|Skickat|Till|Ämne|Sendt|"
    r"Til|Emne|Wysłano|Do|Temat|Sujet|Pour|Enviada|Отправлено|Кому|Тема|Дата|发送时间|收件人|"
    r"主题|件名|送信日時)"
)
#: A quoted header block: "From:" then at least two more header lines (Sent/To/Subject...)
#: close below it, so an answer listing "From: 1 March / To: 30 April" is not cut.
_OUTLOOK_BLOCK = re.compile(
    rf"^[ >*]*{_FROM_WORDS}\s*:[^\n]*\n(?:[^\n]*\n){{0,2}}?[ >*]*{_HEADER_WORDS}\s*:[^\n]*\n"
    rf"(?:[^\n]*\n){{0,2}}?[ >*]*{_HEADER_WORDS}\s*:",
    re.MULTILINE | re.IGNORECASE,
)
_SEPARATORS = re.compile(
    r"^[ >]*(?:-{2,}\s*(?:Original Message|Urspr[üu]ngliche Nachricht|Message d'origine|"
    r"Mensaje original|Messaggio originale|Oorspronkelijk bericht|Ursprungligt meddelande|"
    r"Oprindelig meddelelse|Opprinnelig melding|Forwarded message|Reply message|"
    r"Original-Nachricht|Weitergeleitete Nachricht|Mensaje reenviado|Message transféré|"
    r"Mail original|Message original|Mensagem original|Originalnachricht|Messaggio inoltrato|"
    r"Mensagem encaminhada|Alkuperäinen viesti|Original message follows)"
    r"\s*-{2,}|_{20,}|Begin forwarded message:|Anfang der weitergeleiteten Nachricht:|"
    # Zoho and some webmails: "---- On Mon, 30 Nov 2026 ... <a@b> wrote ----"
    r"-{2,} ?[^\n]{0,200}(wrote|schrieb|schreef|a [ée]crit|escribi[óo]|ha scritto|escreveu) ?-{2,})"
    r"\s*$",
    re.MULTILINE | re.IGNORECASE,
)
_WROTE = re.compile(
    r"(wrote|writes|schrieb|schreef|a écrit|écrit|escribió|ha scritto|heeft geschreven|skrev|"
    r"napisał|napsal|kirjoitti|написал|написала|escreveu|yazdı)\s*:?\s*$",
    re.IGNORECASE,
)
#: "Op ma 30 nov. 2026 om 14:02 schreef Name <" / "a@b>:" - the verb mid-line, wrapped
_WROTE_INSIDE = re.compile(
    r"\b(wrote|schrieb|schreef|a [ée]crit|escribi[óo]|ha scritto|escreveu|skrev)\b", re.IGNORECASE
)
_WROTE_START = re.compile(
    r"^(On|Am|Le|El|Il|Op|Den|Dnia|W dniu|Em|Quoting|Zitat von)\b", re.IGNORECASE
)
_ATTRIBUTION = re.compile(
    r"((@|\d{1,2}:\d{2}|\d{4})[^\n]*:\s*$)|(\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}"
    r"[-/.]\d{2,4}).*(@| at )[\w.-]+\.\w+"
)
_ATTRIBUTION_PIECE = re.compile(r"(\d{1,2}:\d{2}|@|\d{4}|<\s*$|,\s*$)")
_LEADING_HEADERS = re.compile(
    rf"\A\s*(?:[ *]*(?:{_FROM_WORDS}|{_HEADER_WORDS})\s*:[^\n]*\n){{2,}}", re.IGNORECASE
)
_LIST_FOOTER = re.compile(
    r"^(-{10,} ?next part ?-{10,}|_{20,}\s*$|-- ?$\n[^\n]*mailing list|"
    r"[^\n]*mailing list\s*$|An HTML attachment was scrubbed|"
    r"-------------- next part)",
    re.MULTILINE | re.IGNORECASE,
)


#: Lotus Notes' quote header: "Name <a@b>" / date / "To" alone on a line (also localised).
_NOTES_BLOCK = re.compile(
    r"^[^\n]*@[^\n]*\n(?:[^\n]*\n){0,2}?[ \t]*\d{1,4}[./-]\d{1,2}[./-]\d{2,4}[^\n]*\n"
    r"(?:[ \t]*\n)?[ \t]*(?:To|An|À|A|Para|Aan)[ \t]*$",
    re.MULTILINE,
)


def _hard_cut(text: str) -> int:
    """Position where unprefixed quoted history starts (len(text) when none)."""
    positions = [len(text)]
    mark = text.find(QUOTE_MARK)
    if mark >= 0:
        positions.append(mark)
    for pattern in (_OUTLOOK_BLOCK, _SEPARATORS, _NOTES_BLOCK):
        for match in pattern.finditer(text):
            if text[: match.start()].strip():
                positions.append(match.start())
                break
    return min(positions)


def _is_quote(line: str) -> bool:
    return line.lstrip().startswith(">") or line.startswith("|")


def _attribution_lines(lines: list[str]) -> set[int]:
    """Indexes of 'On <date>, <name> wrote:' lines (possibly wrapped over 2-3 lines)."""
    found: set[int] = set()
    for index, line in enumerate(lines):
        stripped = line.strip()
        if not stripped or _is_quote(line):
            continue
        next_quoted = _next_nonblank_is_quote(lines, index)
        if _WROTE.search(stripped):
            start = index
            for back in (1, 2):
                previous = lines[index - back].strip() if index - back >= 0 else ""
                if not previous or not (
                    _WROTE_START.match(previous) or _ATTRIBUTION_PIECE.search(previous)
                ):
                    break
                start = index - back
            if _WROTE_START.match(lines[start].strip()) or next_quoted:
                found.update(range(start, index + 1))
        elif next_quoted and len(stripped) < 250 and _ATTRIBUTION.search(stripped):
            found.add(index)
        elif _WROTE_START.match(stripped) and _WROTE_INSIDE.search(stripped):
            for ahead in (1, 2):
                following = lines[index + ahead].strip() if index + ahead < len(lines) else ""
                if following.endswith(":") and len(following) < 120:
                    found.update(range(index, index + ahead + 1))
                    break
    return found


def _next_nonblank_is_quote(lines: list[str], index: int) -> bool:
    for line in lines[index + 1 : index + 4]:
        if line.strip():
            return _is_quote(line)
    return False


def _drop_quotes(text: str) -> str:
    """Remove '>' quoted lines and their attribution lines; keep interleaved answers."""
    lines = text.split("\n")
    attribution = _attribution_lines(lines)
    unquoted_attribution = [i for i in sorted(attribution) if not _next_nonblank_is_quote(lines, i)]
    if unquoted_attribution:
        # "On ... wrote:" followed by unprefixed text: everything after it is history
        cut = unquoted_attribution[0]
        if any(line.strip() for line in lines[:cut]):
            lines = lines[:cut]
            attribution = {i for i in attribution if i < cut}
    kept = [
        line for index, line in enumerate(lines) if index not in attribution and not _is_quote(line)
    ]
    return "\n".join(kept)


def _strip_footer(text: str) -> str:
    match = _LIST_FOOTER.search(text)
    if match and text[: match.start()].strip():
        return text[: match.start()]
    if match:
        return ""
    return text


def _tidy(text: str) -> str:
    lines = [line.rstrip() for line in text.split("\n")]
    joined = "\n".join(lines).strip("\n")
    return re.sub(r"\n{3,}", "\n\n", joined).strip()


def _library_reply(text: str) -> str | None:
    """mail-parser-reply's first non-empty reply (full body: signature kept)."""
    try:
        message = EmailMessage(text=text, languages=_PARSER.languages)  # as _PARSER.read(text)
        message._header_regex, message._signature_regex, message._disclaimers_regex = _REGEXES
        message = message.read()
    except Exception:  # noqa: BLE001 - regex-heavy library, be defensive
        return None
    for reply in message.replies:
        body = str(reply.full_body).strip()
        if body:
            return body
    return None


def extract_reply(text: str) -> str:
    """The new text the sender wrote, without quoted history; '' when there is none."""
    text = normalize_newlines(text or "")[:MAX_REPLY_SOURCE_CHARS]
    leading = _LEADING_HEADERS.match(text)
    if leading:  # the body opens with a quoted header block: the answer follows it
        text = text[leading.end() :]
    cut = _hard_cut(text)
    own = _drop_quotes(text[:cut])
    own = _strip_footer(own).replace(QUOTE_MARK, "")
    own = _tidy(own)
    library = _library_reply(text.replace(QUOTE_MARK, ""))
    if library is not None:
        library = _tidy(_strip_footer(_drop_quotes(library)))
    if own and library and len(library) < len(own) and _same_start(library, own):
        return library
    if not own and library:
        return library
    return own


def _same_start(short: str, long: str) -> bool:
    """True when both extractions begin with the same words (library cut a tail)."""
    return " ".join(short.split())[:40] == " ".join(long.split())[:40]


def quoted_part(text: str, reply: str) -> str:
    """Everything of ``text`` that is not in ``reply`` (for 'only quoted' checks)."""
    return text.replace(reply, "", 1) if reply else text
