"""The text of a message: its plain or HTML parts as text (quoted history marked), and what
can still be read of a message whose MIME structure could not be.

Everything here never raises: a part that cannot be decoded gives no text.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterator
from email.message import Message
from html.parser import HTMLParser

#: Parts bigger than this are never decoded for text (attachments, forwarded videos, ...).
MAX_TEXT_PART_BYTES = 2_000_000
#: HTML beyond this is not converted (the answer is at the top; the rest is history).
MAX_HTML_CHARS = 300_000
#: Line emitted by :func:`html_to_text` where a client's quoted-history container starts.
QUOTE_MARK = "\u2063QUOTE\u2063"

_HEADER_END = re.compile(rb"\r?\n\r?\n")
#: MIME boundary lines and part headers, left out of the text of a message whose structure
#: was not read.
_MIME_LINE = re.compile(
    r"^\s*(--\S*|content-[\w-]+:.*|mime-version:.*)$|^[ \t]+[\w*-]+=.*$", re.IGNORECASE
)
MAX_FALLBACK_TEXT = 20_000


def fallback_text(raw: bytes) -> str:
    """The readable lines of a message whose MIME structure could not be read: its body as
    UTF-8 (undecodable bytes replaced), without boundary lines and part headers. Rough,
    but the sender's words are kept for a person to read."""
    end = _HEADER_END.search(raw)
    body = raw[end.end() :] if end else raw
    kept: list[str] = []
    size = 0
    for line in body[:MAX_TEXT_PART_BYTES].decode("utf-8", "replace").splitlines():
        if _MIME_LINE.match(line):
            continue
        kept.append(line.rstrip())
        size += len(line) + 1
        if size > MAX_FALLBACK_TEXT:
            break
    return re.sub(r"\n{3,}", "\n\n", "\n".join(kept)).strip()


# --------------------------------------------------------------------------- bodies


def walk(msg: Message) -> Iterator[Message]:
    """Walk parts depth-first; never raises even on broken structures."""
    try:
        yield from msg.walk()
    except Exception:  # noqa: BLE001
        yield msg


def _charset_of(part: Message) -> str:
    try:
        charset = part.get_content_charset() or "utf-8"
        codecs.lookup(charset)
    except Exception:  # noqa: BLE001 - unknown, empty or bogus charset names
        charset = "utf-8"
    return charset


def part_text(part: Message) -> str:
    """Decode a leaf text part to str, whatever its charset or transfer encoding."""
    try:
        payload = part.get_payload(decode=True)
    except Exception:  # noqa: BLE001
        payload = None
    if payload is None:
        try:
            raw = part.get_payload()
        except Exception:  # noqa: BLE001
            return ""
        return raw if isinstance(raw, str) else ""
    if not isinstance(payload, bytes) or len(payload) > MAX_TEXT_PART_BYTES:
        return ""
    charset = _charset_of(part)
    try:
        return payload.decode(charset, errors="replace")
    except Exception:  # noqa: BLE001
        return payload.decode("latin-1", errors="replace")


def is_attachment(part: Message) -> bool:
    """True for parts the sender attached rather than wrote."""
    try:
        disposition = (part.get_content_disposition() or "").lower()
        filename = part.get_filename()
    except Exception:  # noqa: BLE001
        return False
    return disposition == "attachment" or (bool(filename) and disposition != "inline")


def _text_leaves(msg: Message, *, into_attached: bool) -> Iterator[Message]:
    """Yield text leaves, optionally not descending into attached messages (message/*)."""
    stack = [msg]
    while stack:
        part = stack.pop(0)
        try:
            ctype = part.get_content_type()
            multipart = part.is_multipart()
        except Exception:  # noqa: BLE001
            continue
        if multipart:
            if ctype.startswith("message/") and not into_attached:
                continue
            try:
                children = part.get_payload()
            except Exception:  # noqa: BLE001
                children = []
            if isinstance(children, list):
                stack[0:0] = [c for c in children if isinstance(c, Message)]
            continue
        if ctype in ("text/plain", "text/html") and not is_attachment(part):
            yield part


def body_text(msg: Message, *, into_attached: bool = False) -> str:
    """Readable text of a message: plain parts preferred, HTML converted when alone.

    Attached messages (``message/rfc822`` returned inside bounces) are skipped unless
    ``into_attached``; so are attachments and oversized parts.
    """
    plain: list[str] = []
    html: list[str] = []
    for part in _text_leaves(msg, into_attached=into_attached):
        try:
            ctype = part.get_content_type()
        except Exception:  # noqa: BLE001
            continue
        text = part_text(part)
        if not text.strip():
            continue
        (html if ctype == "text/html" else plain).append(text)
    if plain:
        return normalize_newlines("\n\n".join(plain))
    if html:
        return "\n\n".join(html_to_text(h) for h in html)
    return ""


def html_body_text(msg: Message) -> str | None:
    """Text of the first HTML part with quote containers marked, or None."""
    for part in _text_leaves(msg, into_attached=False):
        try:
            if part.get_content_type() == "text/html":
                text = part_text(part)
                if text.strip():
                    return html_to_text(text, mark_quotes=True)
        except Exception:  # noqa: BLE001
            continue
    return None


def has_plain_part(msg: Message) -> bool:
    """True when the message offers a non-empty text/plain body."""
    return any(
        part.get_content_type() == "text/plain" and part_text(part).strip()
        for part in _text_leaves(msg, into_attached=False)
    )


def normalize_newlines(text: str) -> str:
    """CRLF/CR to LF and non-breaking spaces to spaces."""
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\xa0", " ")


# --------------------------------------------------------------------------- HTML


_BLOCK_TAGS = frozenset(
    {
        "address", "article", "aside", "blockquote", "center", "dd", "div", "dl", "dt",
        "fieldset", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6",
        "header", "li", "main", "nav", "ol", "p", "pre", "section", "table", "tbody",
        "thead", "tfoot", "tr", "ul", "title",
    }
)  # fmt: skip
_SKIP_TAGS = frozenset({"script", "style", "head", "xml", "template"})
#: Containers mail clients wrap quoted history in (Gmail, Outlook web/desktop, Apple,
#: Thunderbird, Yahoo, Zimbra, ...): everything inside is old text.
_QUOTE_CLASSES = re.compile(
    r"\b(gmail_quote|gmail_extra_quote|yahoo_quoted|moz-cite-prefix|"
    r"zmail_extra|protonmail_quote|ms-outlook-mobile-reference-message|"
    r"OutlookMessageHeader|AppleOriginalContents)\b",
    re.IGNORECASE,
)
_QUOTE_IDS = re.compile(
    r"^(OLK_SRC_BODY_SECTION|divRplyFwdMsg|appendonsend|mail-editor-reference-message-container|"
    r"x_divRplyFwdMsg|reply-intro|isForwardContent|zwchr)$",
    re.IGNORECASE,
)


class _TextExtractor(HTMLParser):
    """Minimal HTML to text: blocks become lines, quotes get '> ' prefixes."""

    def __init__(self, mark_quotes: bool) -> None:
        super().__init__(convert_charrefs=True)
        self.mark_quotes = mark_quotes
        self.lines: list[str] = []
        self.current: list[str] = []
        self.skip_depth = 0
        self.quote_depth = 0
        self.stack: list[tuple[str, bool]] = []

    def _flush(self) -> None:
        text = " ".join("".join(self.current).split())
        prefix = "> " * self.quote_depth
        self.lines.append(prefix + text if text or not prefix else prefix.rstrip())
        self.current = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP_TAGS:
            self.skip_depth += 1
            return
        attributes = {k.lower(): (v or "") for k, v in attrs}
        quoting = tag == "blockquote" or bool(
            _QUOTE_CLASSES.search(attributes.get("class", ""))
            or _QUOTE_IDS.match(attributes.get("id", ""))
        )
        if tag in ("br", "hr") or tag in _BLOCK_TAGS:
            self._flush()
        if tag == "hr":
            self.lines.append("_" * 32)
        if quoting and tag not in ("br", "hr", "img", "meta", "link", "input"):
            if self.mark_quotes and self.quote_depth == 0 and tag != "blockquote":
                self.lines.append(QUOTE_MARK)
            self.quote_depth += 1 if tag == "blockquote" else 0
        if tag not in ("br", "hr", "img", "meta", "link", "input", "wbr", "col", "area"):
            self.stack.append((tag, quoting and tag == "blockquote"))

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP_TAGS:
            self.skip_depth = max(0, self.skip_depth - 1)
            return
        # pop up to the matching tag (HTML in mail is rarely well nested)
        for index in range(len(self.stack) - 1, -1, -1):
            if self.stack[index][0] == tag:
                popped = self.stack[index:]
                del self.stack[index:]
                if tag in _BLOCK_TAGS:
                    self._flush()
                self.quote_depth -= sum(1 for _t, q in popped if q)
                self.quote_depth = max(0, self.quote_depth)
                break

    def handle_data(self, data: str) -> None:
        if not self.skip_depth:
            self.current.append(data)

    def text(self) -> str:
        self._flush()
        joined = "\n".join(line.rstrip() for line in self.lines)
        return re.sub(r"\n{3,}", "\n\n", joined).strip("\n")


def html_to_text(html: str, *, mark_quotes: bool = False) -> str:
    """Convert HTML to plain text with stdlib html.parser; never raises.

    Block elements become line breaks, ``<blockquote>`` content is prefixed with ``> ``
    and ``<hr>`` becomes an Outlook-style underscore separator, so the plain-text reply
    extractor can treat HTML and text bodies alike. With ``mark_quotes`` a
    :data:`QUOTE_MARK` line is emitted where a client's quoted-history container opens.
    """
    parser = _TextExtractor(mark_quotes)
    try:
        parser.feed(html[:MAX_HTML_CHARS])
        parser.close()
    except Exception:  # noqa: BLE001
        pass
    try:
        return normalize_newlines(parser.text())
    except Exception:  # noqa: BLE001
        return re.sub(r"<[^>]+>", " ", html)
