"""Durations as people write them in config files: "7d", "36h", "30m", "5s", "1d12h"."""

from __future__ import annotations

import re
from datetime import timedelta

_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(w|d|h|m|s)")
_UNITS = {"w": "weeks", "d": "days", "h": "hours", "m": "minutes", "s": "seconds"}
MAX_DURATION = timedelta(days=36525)


def parse_duration(text: str) -> timedelta:
    """Parse "7d", "36h", "30m", "5s", "1w", "1d12h" or "0s"; raise ValueError otherwise."""
    if not isinstance(text, str):
        raise ValueError(f'expected a duration like "7d" or "30m", got {text!r}')
    compact = text.strip().lower().replace(" ", "")
    if not compact:
        raise ValueError('expected a duration like "7d" or "30m", got an empty string')
    position = 0
    total = timedelta()
    for match in _PART.finditer(compact):
        if match.start() != position:
            break
        try:
            total += timedelta(**{_UNITS[match.group(2)]: float(match.group(1))})
        except OverflowError:
            raise ValueError(f"{text!r} is too long a duration (at most 100 years)") from None
        position = match.end()
    if position == len(compact) and total > MAX_DURATION:
        # later date arithmetic (last send + delay) would overflow datetime
        raise ValueError(f"{text!r} is too long a duration (at most 100 years)")
    if position != len(compact):
        raise ValueError(
            f'{text!r} is not a duration: use a number and a unit, like "7d", "36h", "30m" or "5s"'
        )
    return total


def format_duration(delta: timedelta) -> str:
    """The inverse of parse_duration, for messages: 1 day 12 hours -> "1d12h"."""
    seconds = int(delta.total_seconds())
    if seconds == 0:
        return "0s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)
