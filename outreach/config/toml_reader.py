"""Reading one TOML file and reporting every problem in it with its file, line and key.

`KeyReader` is what makes a config error readable: it checks each value's type and range as
it is read, records "file:line: key: message" instead of stopping at the first problem
(`outreach check` reports all of them), and refuses to be read after its verdict, so no key
escapes the check. Unknown keys are problems too: they are usually typos.
"""

from __future__ import annotations

import re
import tomllib
from datetime import time, timedelta
from pathlib import Path
from typing import Any

from outreach.core.durations import parse_duration
from outreach.core.errors import ConfigError, Problems


def read_toml(path: Path) -> tuple[dict[str, Any], str]:
    """Parse a TOML file; syntax errors name the file and line."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: file not found", hint="run `outreach init` or pass --config PATH"
        ) from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    try:
        return tomllib.loads(text), text
    except RecursionError:  # tomllib parses nested arrays and tables recursively
        raise ConfigError(
            f"{path}: TOML syntax error: arrays or tables nested too deeply"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        found = re.search(r"\(at line (\d+), column (\d+)\)", message)
        reason = message[: found.start()].strip() if found else message
        where = f"{path}:{found.group(1)}" if found else str(path)
        raise ConfigError(f"{where}: TOML syntax error: {reason}") from None


class KeyReader:
    """Reads one TOML document, recording problems as 'file:line: key: message'."""

    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.lines = text.splitlines()
        self.problems: list[str] = []
        self.judged = False

    def verdict(self) -> None:
        """Raise Problems if any were found. Every key must be read before this: a value read
        afterwards would never be checked (`enabled = "no"` once sent mail that way)."""
        self.judged = True
        if self.problems:
            raise Problems(self.problems)

    def line_of(self, key_path: str) -> int | None:
        """Best effort: the line where the last part of `key_path` is written.

        `steps[2].after` is looked for after the third `[[steps]]` header (or the third
        inline table of an inline array); whole-line comments are skipped, so a
        commented-out example is never taken for the real key.
        """
        parts = re.findall(r"\[\d+\]|[^.\[\]]+", key_path)
        if not parts:
            return None
        code = [("" if line.lstrip().startswith("#") else line) for line in self.lines]
        names: list[str] = []
        start = 0
        for part in parts:
            if part.startswith("["):
                index = int(part[1:-1])
                array = re.compile(
                    r"^\s*\[\[\s*" + r"\s*\.\s*".join(map(re.escape, names)) + r"\s*\]\]"
                )
                hits = [n for n in range(start, len(code)) if array.search(code[n])]
                if not hits:  # an inline array of tables: one `{` per element
                    hits = [n for n in range(start, len(code)) if "{" in code[n]]
                if index < len(hits):
                    start = hits[index]
                continue
            names.append(part)
            header = re.compile(
                r"^\s*\[\[?\s*" + r"\s*\.\s*".join(map(re.escape, names)) + r"\s*\]"
            )
            assign = re.compile(r"(^|[{,\s])" + re.escape(part) + r"\s*=")
            for number in range(start, len(code)):
                if header.search(code[number]) or assign.search(code[number]):
                    start = number
                    break
        return start + 1

    def problem(self, key_path: str, message: str) -> None:
        if self.judged:
            raise RuntimeError(f"{key_path} checked after the verdict")
        line = self.line_of(key_path) if key_path else None
        where = f"{self.path}:{line}" if line else str(self.path)
        self.problems.append(
            f"{where}: {key_path}: {message}" if key_path else f"{where}: {message}"
        )

    def table(self, value: Any, key_path: str, allowed: tuple[str, ...]) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.problem(key_path, f"expected a table, got {kind_of(value)}")
            return {}
        for key in value:
            if key not in allowed:
                suggestion = _closest(key, allowed)
                hint = f" (did you mean '{suggestion}'?)" if suggestion else ""
                self.problem(
                    _join(key_path, key),
                    f"unknown key{hint}; expected one of: {', '.join(allowed)}",
                )
        return value

    def get(
        self,
        table: dict[str, Any],
        key_path: str,
        key: str,
        kind: type | tuple[type, ...],
        default: Any = None,
        required: bool = False,
    ) -> Any:
        if self.judged:  # a bug: this value would never be checked
            raise RuntimeError(f"{_join(key_path, key)} read after the verdict")
        full = _join(key_path, key)
        if key not in table:
            if required:
                self.problem(key_path or key, f"missing required key '{key}'")
            return default
        value = table[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if isinstance(value, bool) and bool not in kinds:
            self.problem(full, f"expected {_names(kinds)}, got a boolean")
            return default
        if not isinstance(value, kinds):
            self.problem(full, f"expected {_names(kinds)}, got {kind_of(value)}")
            return default
        return value

    def duration(
        self, table: dict[str, Any], key_path: str, key: str, default: timedelta, zero: bool = False
    ) -> timedelta:
        """A duration like "7d": longer than 0s unless `zero` says 0s means something (a
        jitter of "0s" turns it off). A bad value is a problem; the default stands in for it
        only so the other keys can still be checked."""
        text = self.get(table, key_path, key, str)
        if text is None:
            return default
        try:
            value = parse_duration(text)
        except ValueError as exc:
            self.problem(_join(key_path, key), str(exc))
            return default
        if not zero and value <= timedelta(0):
            self.problem(_join(key_path, key), f"{text!r}: must be longer than 0s")
            return default
        return value

    def integer(
        self,
        table: dict[str, Any],
        key_path: str,
        key: str,
        default: int,
        low: int,
        high: int,
        note: str = "",
    ) -> int:
        """A whole number from `low` to `high`; outside that range it is a problem."""
        value: int = self.get(table, key_path, key, int, default)
        if not low <= value <= high:
            self.problem(
                _join(key_path, key), f"{value:,} is out of range: use {low:,} to {high:,}{note}"
            )
            return default
        return value

    def string_list(self, table: dict[str, Any], key_path: str, key: str) -> tuple[str, ...]:
        value = self.get(table, key_path, key, (list, str), default=[])
        if isinstance(value, str):
            value = [value]
        if not all(isinstance(item, str) for item in value):
            self.problem(_join(key_path, key), "expected a list of strings")
            return ()
        return tuple(item.strip() for item in value if item.strip())


def _join(key_path: str, key: str) -> str:
    return f"{key_path}.{key}" if key_path else key


def kind_of(value: Any) -> str:
    """'a string', 'a table', ... for a message about a value of the wrong type."""
    return _TYPE_NAMES.get(type(value), type(value).__name__)


_TYPE_NAMES: dict[type, str] = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "a boolean",
    list: "a list",
    dict: "a table",
}


def _names(kinds: tuple[type, ...]) -> str:
    return " or ".join(_TYPE_NAMES.get(k, k.__name__) for k in kinds)


def _closest(key: str, allowed: tuple[str, ...]) -> str | None:
    import difflib

    found = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
    return found[0] if found else None


def key_location(path: Path, key_path: str) -> str:
    """'/path/file.toml:LINE: key' for a problem found after the file was read."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError):
        return f"{path}: {key_path}"
    return f"{path}:{KeyReader(path, text).line_of(key_path)}: {key_path}"


def parse_clock(reader: KeyReader, key_path: str, text: str) -> time | None:
    """A time of day like "09:00" ("24:00" is the end of the day); a problem otherwise."""
    found = re.fullmatch(r"\s*(\d{1,2}):(\d{2})\s*", text)
    if not found or int(found.group(1)) > 24 or int(found.group(2)) > 59:
        reader.problem(key_path, f'{text!r} is not a time of day like "09:00"')
        return None
    hour, minute = int(found.group(1)), int(found.group(2))
    if hour == 24:
        if minute:
            reader.problem(key_path, f"{text!r} is not a time of day")
            return None
        return time.max
    return time(hour, minute)
