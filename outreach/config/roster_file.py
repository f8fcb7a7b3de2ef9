"""partners.csv -> core.roster.Roster: the file is read here, checked there (every bad row
listed by line, nothing imported when one is bad)."""

from __future__ import annotations

from pathlib import Path

from outreach.core.errors import RosterError
from outreach.core.roster import Roster, parse_roster


def read_roster(path: Path) -> Roster:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise RosterError(f"{path}: cannot read: {exc.strerror}") from None
    return parse_roster(data, str(path))
