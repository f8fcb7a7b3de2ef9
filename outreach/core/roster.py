"""The partner roster CSV -> Partner records (pure: bytes in, partners or every bad row out)."""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from collections.abc import Collection
from dataclasses import replace

from outreach.core.addresses import normalize_address
from outreach.core.errors import RosterError
from outreach.core.model import ROSTER_COLUMNS, Partner
from outreach.core.zones import check_timezone

# CR, LF and the other C0/C1 controls (tab excepted) could split a header or a message.
CONTROL_CHARS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")
RESERVED_COLUMNS = ("id", "status")
MAX_ERRORS_SHOWN = 50


def column_key(header: str) -> str:
    """'Region Name ' -> 'region_name', 'Región' -> 'región': names a template can use.

    Letters outside ASCII are kept (Jinja names may use them; NFC, as an editor writes
    them); a header that still is no identifier falls back to its ASCII letters and digits.
    """
    text = unicodedata.normalize("NFC", header.strip())
    key = re.sub(r"\W+", "_", text).strip("_").lower()
    if key and key[0].isdigit():
        key = "_" + key
    if key and not key.isidentifier():
        key = re.sub(r"[^0-9a-zA-Z_]+", "_", text).strip("_").lower()
        if key and key[0].isdigit():
            key = "_" + key
    return key


def decode_csv(data: bytes, source: str) -> str:
    """UTF-8 with or without a BOM; anything else is refused with a hint."""
    head = data[:4096]
    if data.startswith((b"\xff\xfe", b"\xfe\xff")) or head.count(0) * 4 > len(head):
        # a BOM, or UTF-16 without one: every other byte of ASCII text is NUL
        raise RosterError(
            f'{source}: the file is UTF-16; save it as "CSV UTF-8" and import it again'
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise RosterError(
            f"{source}:{line}: not UTF-8 text (byte 0x{data[exc.start]:02x}); save the file as "
            '"CSV UTF-8" and import it again'
        ) from None


class Roster(list[Partner]):
    """The partners of one CSV, and the columns it had (see `merge_partner`)."""

    def __init__(self, partners: list[Partner], columns: tuple[str, ...]) -> None:
        super().__init__(partners)
        self.columns = columns


def merge_partner(known: Partner, row: Partner, columns: Collection[str]) -> Partner:
    """A re-imported partner: the row's values for the columns the CSV has, the known values
    for the rest. A CSV with only `email,owner` reassigns owners; it does not blank names."""
    values = {
        name: getattr(row if name in columns else known, name)
        for name in ROSTER_COLUMNS
        if name != "email"
    }
    return replace(known, **values, fields={**known.fields, **row.fields})


def parse_roster(data: bytes, source: str = "partners.csv") -> Roster:
    """Parse a roster. All-or-nothing: raises RosterError naming every bad row by line."""
    text = decode_csv(data, source)
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise RosterError(
            f"{source}: the file is empty; it needs a header row with 'email'"
        ) from None
    except csv.Error as exc:
        raise RosterError(f"{source}:1: {exc}") from None
    keys = [column_key(h) for h in header]
    problems: list[str] = []
    if "email" not in keys:
        columns = ", ".join(map(repr, header))  # repr: a header may hold a line break
        raise RosterError(f"{source}:1: no 'email' column (columns: {columns})")
    for key, original in zip(keys, header, strict=True):
        if not key:
            problems.append(f"{source}:1: a column has no name ({original!r})")
        elif key in RESERVED_COLUMNS:
            problems.append(f"{source}:1: column {original!r} is managed by outreach; remove it")
    duplicates = {k for k in keys if keys.count(k) > 1 and k}
    for key in sorted(duplicates):
        problems.append(f"{source}:1: column {key!r} appears more than once")
    if problems:
        raise RosterError(_summary(source, problems))

    partners: list[Partner] = []
    first_line_of: dict[str, int] = {}
    line = 1
    while True:
        start = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            problems.append(f"{source}:{start}: {exc}")
            break
        line = start
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(keys):
            problems.append(
                f"{source}:{line}: {len(row)} values for {len(keys)} columns"
                " (a missing or extra comma?)"
            )
            continue
        record = dict(zip(keys, (cell.strip() for cell in row), strict=True))
        row_problems = _row_problems(record)
        if row_problems:
            problems.extend(f"{source}:{line}: {p}" for p in row_problems)
            continue
        email = normalize_address(record["email"])
        if email in first_line_of:
            problems.append(
                f"{source}:{line}: duplicate email {email} (first on line {first_line_of[email]})"
            )
            continue
        first_line_of[email] = line
        partners.append(_partner(record, email))
    if problems:
        raise RosterError(_summary(source, problems))
    return Roster(partners, tuple(keys))


def _row_problems(record: dict[str, str]) -> list[str]:
    problems = []
    for key, value in record.items():
        if CONTROL_CHARS.search(value):
            problems.append(f"column {key!r} contains a line break or control character")
    try:
        normalize_address(record["email"])
    except ValueError as exc:
        problems.append(f"email: {exc}")
    zone = record.get("timezone", "")
    if zone:
        try:
            check_timezone(zone)
        except ValueError as exc:
            problems.append(f"timezone: {exc}")
    return problems


def _partner(record: dict[str, str], email: str) -> Partner:
    tags = tuple(dict.fromkeys(t.strip() for t in record.get("tags", "").split(";") if t.strip()))
    extra = {k: v for k, v in record.items() if k not in ROSTER_COLUMNS}
    return Partner(
        email=email,
        name=record.get("name", ""),
        first_name=record.get("first_name", ""),
        organization=record.get("organization", ""),
        industry=record.get("industry", ""),
        pathway=record.get("pathway", ""),
        owner=record.get("owner", ""),
        tags=tags,
        timezone=record.get("timezone", ""),
        fields=extra,
    )


def _summary(source: str, problems: list[str]) -> str:
    shown = problems[:MAX_ERRORS_SHOWN]
    more = len(problems) - len(shown)
    text = "; ".join(shown)
    if more:
        text += f"; and {more} more"
    count = f"{len(problems)} problems" if len(problems) > 1 else "1 problem"
    return f"{text} ({count}, nothing imported)"
