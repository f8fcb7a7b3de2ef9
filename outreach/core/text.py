"""Text written once: what may be shown of a text from outside (no control character, no
password), JSON as outreach writes it, and a text cut to one short line.

Reply text, names, subjects, organizations, server answers and file names come from outside.
A control character in them (ESC and the rest of C0 and C1, or a bidi override that makes a
line read differently, as in "Trojan Source", CVE-2021-42574) could recolour the screen,
move the cursor, set the window title or hide text. Everything the CLI prints or logs goes
through `safe_text` (cli/terminal.py's echo, logs.py), which shows such characters as
visible symbols; JSON is written by `json_text`, which keeps them as \\u escapes (nothing is
lost). Both also hide passwords (core.redaction).
"""

from __future__ import annotations

import json
import re
from typing import Any

from outreach.core.redaction import redact

# C0 controls but tab and newline, DEL, C1 controls, and the bidi embeddings, overrides and
# isolates (Unicode TR9: LRE RLE PDF LRO RLO, LRI RLI FSI PDI).
_BIDI = "\u202a-\u202e\u2066-\u2069"
_UNSAFE = re.compile(f"[\x00-\x08\x0b-\x1f\x7f-\x9f{_BIDI}]")
_UNSAFE_OR_NEWLINE = re.compile(f"[\x00-\x1f\x7f-\x9f{_BIDI}]")
# In JSON text these can only stand inside strings, where \\uXXXX means the same character.
_JSON_UNSAFE = re.compile(f"[\x7f-\x9f{_BIDI}\u2028\u2029]")


def _symbol(char: str) -> str:
    code = ord(char)
    if code < 0x20:
        return chr(0x2400 + code)  # the Unicode control pictures: ESC shows as ␛
    if code == 0x7F:
        return "\u2421"  # ␡
    return f"<U+{code:04X}>"


def visible(text: str, *, newlines: bool = True) -> str:
    """`text` with every control character shown as a symbol (ESC as ␛, U+202E as
    <U+202E>); tab and newline stay unless `newlines` is False (a log line is one line).
    A CRLF line end is a newline."""
    pattern = _UNSAFE if newlines else _UNSAFE_OR_NEWLINE
    if not pattern.search(text):
        return text
    if newlines:
        text = text.replace("\r\n", "\n")
    return pattern.sub(lambda m: "\t" if m.group(0) == "\t" else _symbol(m.group(0)), text)


def safe_text(text: str, *, newlines: bool = True) -> str:
    """What may be shown of `text`: no password, no control character (see `visible`)."""
    return visible(redact(text), newlines=newlines)


def json_text(value: Any, **options: Any) -> str:
    """JSON as outreach writes it (UTF-8 text, not \\u-escaped) with the characters a terminal
    would act on escaped, so the text means exactly the same and is safe to print."""
    text = redact(json.dumps(value, ensure_ascii=False, **options))
    if not _JSON_UNSAFE.search(text):
        return text
    return _JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group(0)):04x}", text)


def clip(text: str, limit: int) -> str:
    """`text`, cut to `limit` characters with "…" when it is longer."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def one_line(text: object, limit: int, *, printable: bool = False) -> str:
    """`text` on one line (runs of white space as one space), cut to `limit`; with
    `printable`, other characters that do not print become spaces first (a server's answer
    in a message)."""
    value = str(text)
    if printable:
        value = "".join(c if c.isprintable() else " " for c in value)
    return clip(" ".join(value.split()), limit)
