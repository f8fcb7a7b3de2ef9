"""Regex prefilter: the literal words a pattern cannot match without, found once, so a text
that holds none of them is not searched with the (slow) pattern at all.

Reads the pattern's parse tree (the stdlib's `re._parser`, not public; a pattern it cannot
read is simply never skipped).
"""

from __future__ import annotations

import re
from typing import Any


class LiteralPrefilter:
    """Tells cheaply when a case-insensitive regex cannot match a text.

    Every match of the regex contains one of ``needles`` (lower-case ASCII), derived from its
    parsed form: the longest run of plain characters each alternative must match. An ASCII
    text that contains none of them cannot match, so a long alternation of phrases need not
    be run over it. ``maybe(text)`` is True when the regex may match (always for non-ASCII
    text, whose case folding goes beyond ``str.lower``, or when no needles could be derived).
    """

    MIN_NEEDLE = 3

    def __init__(self, pattern: re.Pattern[str]) -> None:
        self.needles: tuple[str, ...] | None = None
        try:
            from re import _parser  # type: ignore[attr-defined]

            found = _required_literals(_parser.parse(pattern.pattern, pattern.flags))
        except Exception:  # noqa: BLE001 - an unknown regex shape: no prefilter
            found = None
        if found and all(n.isascii() and len(n) >= self.MIN_NEEDLE for n in found):
            self.needles = tuple(sorted(found))

    def maybe(self, text: str) -> bool:
        if self.needles is None or not text.isascii():
            return True
        lowered = text.lower()
        return any(needle in lowered for needle in self.needles)


def _required_literals(items: Any) -> set[str] | None:
    """Strings one of which every match of this parsed sequence contains; None if unknown."""
    from re import _constants as c  # type: ignore[attr-defined]

    best: set[str] | None = None

    def better(candidate: set[str] | None) -> None:
        nonlocal best
        if candidate is None:
            return
        if best is None or (min(map(len, candidate)), -len(candidate)) > (
            min(map(len, best)),
            -len(best),
        ):
            best = candidate

    run: list[str] = []
    for op, av in list(items) + [(None, None)]:
        if op is c.LITERAL:
            run.append(chr(av))
            continue
        if len(run) >= LiteralPrefilter.MIN_NEEDLE:
            better({"".join(run).lower()})
        run = []
        if op is c.SUBPATTERN:
            better(_required_literals(av[-1]))
        elif op is c.BRANCH:
            alternatives = [_required_literals(a) for a in av[1]]
            if all(a is not None for a in alternatives):
                better(set().union(*alternatives))  # type: ignore[arg-type]
        elif op in (c.MAX_REPEAT, c.MIN_REPEAT, c.POSSESSIVE_REPEAT) and av[0] >= 1:
            better(_required_literals(av[2]))
    return best
