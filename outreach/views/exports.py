"""Exports of the response log: events, replies and partners as CSV, JSON or JSON Lines.

Column names are stable (documented in docs/response-logs.md); new columns are only ever
added at the end. Every format has the same columns in the same order.

- Times: `at` and the other `*_at` columns are ISO 8601 in UTC with their offset
  ("2026-11-24T15:00:00.000000+00:00", the stored form: sorts as text); `at_local` is the
  same moment in the coordinator's time zone.
- CSV: UTF-8 with a byte-order mark and CRLF line ends, so that spreadsheet programs open
  it with the right characters; a text cell that starts with = + - @ gets a leading `'` so a
  spreadsheet never runs a partner's text as a formula. JSON and JSON Lines keep values as
  they are (lists and objects as such; in CSV they are JSON text).
- Control characters: JSON escapes them (\\u001b, and C1 and bidi controls too: see
  outreach.cli.terminal.json_text), so the words are exact and safe to print. CSV cannot escape:
  written with `-o FILE` it holds the exact words (it is data for a spreadsheet); written to
  standard output, which may well be a terminal or a pager, a control character in a cell is
  shown as a symbol like everything else outreach prints.
- A file named with `-o` is created 0600 and appears only once complete (outreach.store.files).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from pathlib import Path
from typing import IO, Any, Protocol
from zoneinfo import ZoneInfo

from outreach.core.errors import OutreachError
from outreach.core.inbound.answers import stored_answers
from outreach.core.text import json_text, safe_text
from outreach.store import Store, queries
from outreach.store.files import DEVICE_ERRORS, private_text_file

EVENT_COLUMNS = (
    "id",
    "at",
    "partner",
    "organization",
    "campaign",
    "step",
    "kind",
    "summary",
    "message_id",
    "detail",
    "at_local",
    "name",
    "inbound_id",
    "owner",
    "account",
)
REPLY_COLUMNS = (
    "id",
    "at",
    "at_local",
    "received_at",
    "partner",
    "name",
    "organization",
    "campaign",
    "step",
    "kind",
    "subject",
    "text",
    "return_date",
    "bounced",
    "hard",
    "status_code",
    "diagnostic",
    "contact_change",
    "needs_review",
    "handled",
    "handled_at",
    "note",
    "match_rule",
    "message_id",
    "from_addr",
    "from_name",
    "unverified",
    "duplicate_of",
    "date_header",
    "unreadable",
    "signature",
    "owner",
    "account",
    "read_by",
)
PARTNER_COLUMNS = (
    "email",
    "name",
    "first_name",
    "organization",
    "industry",
    "pathway",
    "owner",
    "tags",
    "timezone",
    "status",
    "status_reason",
    "last_contact",
    "last_reply",
    "open_campaign",
    "open_state",
    "replies",
    "unhandled_replies",
    "created_at",
    "fields",
    "account",
)

Rows = Callable[[Store, ZoneInfo], Iterator[dict[str, Any]]]


def _local(text: str | None, zone: ZoneInfo) -> str | None:
    return datetime.fromisoformat(text).astimezone(zone).isoformat() if text else None


def event_rows(store: Store, zone: ZoneInfo) -> Iterator[dict[str, Any]]:
    for row in queries.export_rows(store, "events"):
        row["detail"] = json.loads(row["detail"] or "{}")
        row["at_local"] = _local(row["at"], zone)
        yield row


#: after REPLY_COLUMNS when the log holds answers (docs/answers.md): then one column
#: `answer_<question id>` per question the log holds answers to, then `answer_other`
ANSWER_COLUMNS = ("answers", "asks_help")


def reply_columns(store: Store) -> tuple[str, ...]:
    """The replies export's columns: the fixed ones, then (when the log holds answers: a
    campaign declares questions) the answers, and one column per question answered."""
    per_question = tuple(f"answer_{q}" for q in queries.answered_question_ids(store))
    if not per_question:
        return REPLY_COLUMNS
    return (*REPLY_COLUMNS, *ANSWER_COLUMNS, *per_question, "answer_other")


def reply_rows(store: Store, zone: ZoneInfo) -> Iterator[dict[str, Any]]:
    for row in queries.export_rows(store, "replies"):
        answers = stored_answers(row["answers"])
        row["answers"] = answers
        row["asks_help"] = None if row["asks_help"] is None else bool(row["asks_help"])
        for question, answer in (answers or {}).items():
            row[f"answer_{question}"] = answer
        row["at_local"] = _local(row["at"], zone)
        row["bounced"] = json.loads(row["bounced"] or "[]")
        row["unreadable"] = json.loads(row["unreadable"] or "[]")
        row["hard"] = None if row["hard"] is None else bool(row["hard"])
        for flag in ("contact_change", "needs_review", "handled"):
            row[flag] = bool(row[flag])
        yield row


def partner_rows(store: Store, zone: ZoneInfo) -> Iterator[dict[str, Any]]:
    for row in queries.export_rows(store, "partners"):
        row["tags"] = json.loads(row["tags"] or "[]")
        row["fields"] = json.loads(row["fields"] or "{}")
        yield row


EXPORTS: dict[str, tuple[tuple[str, ...], Rows]] = {
    "events": (EVENT_COLUMNS, event_rows),
    "replies": (REPLY_COLUMNS, reply_rows),
    "partners": (PARTNER_COLUMNS, partner_rows),
}
FORMATS = ("csv", "json", "jsonl")


class Progress(Protocol):
    """Shows how far a long export got (cli/progress.py: a bar on a terminal, else nothing):
    `items` wrapped, unchanged."""

    def __call__(
        self, items: Iterator[dict[str, Any]], *, length: int | None, label: str
    ) -> AbstractContextManager[Iterable[dict[str, Any]]]: ...


@contextmanager
def no_progress(
    items: Iterator[dict[str, Any]], *, length: int | None, label: str
) -> Iterator[Iterable[dict[str, Any]]]:
    yield items


def write_export(
    store: Store,
    what: str,
    fmt: str,
    output: Path | None,
    timezone: str,
    progress: Progress = no_progress,
) -> int:
    """Write one export to `output` (or standard output); returns the number of rows."""
    columns, source = EXPORTS[what]
    if what == "replies":
        columns = reply_columns(store)
    zone = ZoneInfo(timezone)
    total = queries.export_size(store, what)
    opened = private_text_file(output) if output is not None else _stdout()
    with (
        opened as handle,
        progress(source(store, zone), length=total, label=f"exporting {what}") as rows,
    ):
        return write_rows(handle, fmt, columns, rows, exact=output is not None)


@contextmanager
def _stdout() -> Iterator[IO[str]]:
    """Standard output as UTF-8 whatever the locale (names are not ASCII); a failed write
    (a full disk behind `>`) is one line, not a traceback."""
    try:
        buffer = getattr(sys.stdout, "buffer", None)
        if buffer is None:
            yield sys.stdout
            return
        sys.stdout.flush()
        wrapper = io.TextIOWrapper(buffer, encoding="utf-8", newline="", write_through=True)
        try:
            yield wrapper
            wrapper.flush()
        finally:
            with contextlib.suppress(OSError, ValueError):
                wrapper.detach()  # leave the process's stdout open
    except OSError as exc:
        if exc.errno not in DEVICE_ERRORS:
            raise
        raise OutreachError(f"standard output: cannot write: {exc.strerror}") from None


#: standard output as UTF-8, for other listings written like an export (`outreach answers`)
standard_output = _stdout


def write_rows(
    handle: IO[str],
    fmt: str,
    columns: tuple[str, ...],
    rows: Iterator[dict[str, Any]] | Any,
    *,
    exact: bool = True,
) -> int:
    """Rows in `fmt`; CSV cells keep control characters only when `exact` (a file)."""
    count = 0
    if fmt == "csv":
        handle.write("\ufeff")
        writer = csv.writer(handle, lineterminator="\r\n")
        writer.writerow(columns)
        for row in rows:
            cells = [_cell(row.get(c)) for c in columns]
            if not exact:
                cells = [safe_text(c) if isinstance(c, str) else c for c in cells]
            writer.writerow(cells)
            count += 1
    elif fmt == "jsonl":
        for row in rows:
            handle.write(json_text({c: row.get(c) for c in columns}) + "\n")
            count += 1
    else:
        handle.write("[")
        for row in rows:
            handle.write(
                ("," if count else "") + "\n  " + json_text({c: row.get(c) for c in columns})
            )
            count += 1
        handle.write("\n]\n" if count else "]\n")
    return count


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value
