"""Exports of the response log: stable column names (documented in the README)."""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from outreach.errors import InputError
from outreach.store import Store

EVENT_COLUMNS = (
    "id", "at", "partner", "organization", "campaign", "step", "kind", "summary", "message_id",
    "detail",
)


def event_rows(store: Store) -> Iterator[dict[str, Any]]:
    cursor = store.db.conn.execute(
        "SELECT e.id, e.at, p.email AS partner, p.organization, e.campaign, e.step, e.kind,"
        " e.summary, e.message_id, e.detail FROM events e LEFT JOIN partners p"
        " ON p.id = e.partner_id ORDER BY e.at, e.id"
    )
    names = [c[0] for c in cursor.description]
    for values in cursor:
        row = dict(zip(names, values, strict=True))
        row["detail"] = json.loads(row["detail"] or "{}")
        yield row


EXPORTS = {"events": (EVENT_COLUMNS, event_rows)}


def write_export(store: Store, what: str, fmt: str, output: Path | None, timezone: str) -> int:
    columns, source = EXPORTS[what]
    if output is not None:
        try:
            handle: IO[str] = open(output, "w", encoding="utf-8-sig" if fmt == "csv" else "utf-8",
                                   newline="")
        except OSError as exc:
            raise InputError(f"{output}: cannot write: {exc.strerror}") from None
    else:
        handle = sys.stdout
    try:
        return _write(handle, fmt, columns, source(store))
    finally:
        if output is not None:
            handle.close()


def _write(handle: IO[str], fmt: str, columns: tuple[str, ...], rows: Iterator[dict[str, Any]]) -> int:
    count = 0
    if fmt == "csv":
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _cell(v) for k, v in row.items()})
            count += 1
    elif fmt == "jsonl":
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
    else:
        handle.write("[")
        for row in rows:
            handle.write(("," if count else "") + "\n  " + json.dumps(row, ensure_ascii=False))
            count += 1
        handle.write("\n]\n" if count else "]\n")
    return count


def _cell(value: Any) -> Any:
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return value


def rows_as_csv(columns: tuple[str, ...], rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    _write(buffer, "csv", columns, iter(rows))
    return buffer.getvalue()
