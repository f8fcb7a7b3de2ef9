"""The wall clock, read in one place: the worker plans with it (tests pass a clock of their
own), OAuth2 tokens expire by it, and commands stamp what they change with it. The core
never reads it: `now` is passed in."""

from __future__ import annotations

from datetime import UTC, datetime


def utc_now() -> datetime:
    return datetime.now(UTC)
