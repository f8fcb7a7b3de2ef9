"""Text formatting every view shares, written once: aligned tables, times as a coordinator
reads them, wrapped paragraphs (core.text has the safety of a text and one-line clipping).
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from datetime import datetime, timedelta, tzinfo

from outreach.core.durations import format_duration
from outreach.core.text import clip
from outreach.store import parse_iso
from outreach.views.narrative import zone_label


def table_lines(rows: Sequence[Sequence[str]], max_width: int = 40) -> list[str]:
    """Rows as aligned columns (two spaces apart), each cell cut to `max_width`."""
    cut = [tuple(clip(c, max_width) for c in r) for r in rows]
    widths = [max(len(r[i]) for r in cut) for i in range(len(cut[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cut]


def format_table(rows: Sequence[Sequence[str]], max_width: int = 40) -> str:
    return "\n".join(table_lines(rows, max_width))


def local_minute(moment: datetime, zone: tzinfo) -> str:
    """A time as the coordinator reads it: the date and minute in `zone`, and which zone
    ("2026-11-30 09:12 CST")."""
    local = moment.astimezone(zone)
    return f"{local:%Y-%m-%d %H:%M} {zone_label(local)}"


def when(text: str | None, zone: tzinfo, now: datetime) -> str:
    """A stored time for people: local, with its zone and how long ago ("2026-11-30 09:12:03
    CST, 2m ago")."""
    moment = parse_iso(text)
    if moment is None:
        return "never"
    ago = max(timedelta(0), now - moment)
    ago = timedelta(seconds=int(ago.total_seconds()))
    local = moment.astimezone(zone)
    return f"{local:%Y-%m-%d %H:%M:%S} {zone_label(local)}, {format_duration(ago)} ago"


def wrap(text: str, width: int) -> list[str]:
    """Wrap each paragraph line of `text`; keep the author's line breaks."""
    out: list[str] = []
    for line in text.splitlines():
        out.extend(
            textwrap.wrap(line, width, break_long_words=True, break_on_hyphens=False) or [""]
        )
    while out and not out[-1].strip():
        out.pop()
    return out
