"""Time zones by name: the coordinator's (config.toml's `timezone`) and each partner's own.

Sending windows are in the partner's zone; what a person reads (logs, reports, the plan)
is in the coordinator's.
"""

from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from outreach.core.model import Partner


def check_timezone(name: str) -> ZoneInfo:
    """ZoneInfo(name) or ValueError with a readable message."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        # OSError: a folder of the zone database ("America") or a name too long for a path
        raise ValueError(
            f'unknown time zone {name!r} (use a name like "America/Chicago")'
        ) from None


def partner_zone(partner: Partner, default_timezone: str) -> ZoneInfo:
    """The partner's own zone, else the coordinator's (a roster checks the names it takes)."""
    try:
        return ZoneInfo(partner.timezone or default_timezone)
    except (KeyError, ValueError, OSError):  # OSError: "America" is a folder of the database
        return ZoneInfo(default_timezone)
