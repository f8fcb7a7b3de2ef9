"""Progress for long operations, shown only when a person watches (stderr is a terminal)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import click

T = TypeVar("T")

# Below this many items an operation is quick enough that a bar would only flicker.
MIN_ITEMS = 500


@contextmanager
def progress(items: Iterable[T], *, length: int | None, label: str) -> Iterator[Iterable[T]]:
    """`items` unchanged, or wrapped in a click progress bar on stderr when stderr is a TTY
    and there are enough items to be worth one. Never writes to stdout (exports may go there).
    """
    if length is None or length < MIN_ITEMS or not _stderr_is_tty():
        yield items
        return
    with click.progressbar(
        items, length=length, label=label, file=sys.stderr, show_pos=True
    ) as bar:
        yield bar


@contextmanager
def progress_counter(*, length: int, label: str) -> Iterator[Callable[[int], None]]:
    """`advance(n)` for work done in chunks; a no-op unless a bar is worth showing."""
    if length < MIN_ITEMS or not _stderr_is_tty():
        yield lambda n: None
        return
    with click.progressbar(length=length, label=label, file=sys.stderr, show_pos=True) as bar:
        yield bar.update


def _stderr_is_tty() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False
