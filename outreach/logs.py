"""Logging: one line per event on stderr (or in a rotated file, `run --log-file`),
human-readable or JSON (--log-json). Human lines say the time in the coordinator's zone
(`[outreach] timezone`) and name it; JSON has ISO 8601 with the offset.

Events carry structured fields (`extra={"fields": {...}}`); no caller ever passes a password
or a message body, and `redact` drops any field whose name suggests one. Each line is made
safe last, whatever went into it: no password the process holds, no control character
(a subject or a server's answer could carry ESC or a line break that forges a log line);
see outreach.cli.terminal.
"""

from __future__ import annotations

import logging
import logging.handlers
import sys
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any

from outreach.core.text import json_text, safe_text

LOGGER_NAME = "outreach"
_SECRET_WORDS = ("password", "secret", "token", "body", "raw", "text")


def redact(fields: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if not any(w in k.lower() for w in _SECRET_WORDS)}


#: A log file is rotated at this size, keeping this many old files (outreach.log.1 ...).
LOG_FILE_BYTES = 10 * 1024 * 1024
LOG_FILE_BACKUPS = 5


def zone_name(local: datetime) -> str:
    """The zone's abbreviation ("CST", "UTC"), or its offset when it has none ("+0530")."""
    name = local.tzname() or ""
    return name if name and name[0] not in "+-" else "UTC" + local.strftime("%z")


class HumanFormatter(logging.Formatter):
    """`2026-11-30 10:11:58 CST sent ...`: in `zone` (the coordinator's), else the
    computer's."""

    def __init__(self, zone: tzinfo | None = None) -> None:
        super().__init__()
        self.zone = zone

    def format(self, record: logging.LogRecord) -> str:
        local = datetime.fromtimestamp(record.created, UTC).astimezone(self.zone)
        stamp = f"{local:%Y-%m-%d %H:%M:%S} {zone_name(local)}"
        fields = redact(getattr(record, "fields", {}) or {})
        tail = " ".join(f"{k}={v}" for k, v in fields.items() if v is not None)
        level = "" if record.levelno == logging.INFO else f"{record.levelname.lower()}: "
        line = f"{stamp} {level}{record.getMessage()}" + (f" [{tail}]" if tail else "")
        return safe_text(line, newlines=False)


class JsonFormatter(logging.Formatter):
    """One JSON object per line; `at` is ISO 8601 with the offset of `zone`."""

    def __init__(self, zone: tzinfo | None = None) -> None:
        super().__init__()
        self.zone = zone or UTC

    def format(self, record: logging.LogRecord) -> str:
        moment = datetime.fromtimestamp(record.created, UTC).astimezone(self.zone)
        payload: dict[str, Any] = {
            "at": moment.isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "event": getattr(record, "event", None) or record.getMessage(),
            "message": record.getMessage(),
        }
        payload.update(redact(getattr(record, "fields", {}) or {}))
        return json_text(payload, default=str)


def setup_logging(
    as_json: bool = False,
    verbose: bool = False,
    zone: tzinfo | None = None,
    log_file: Path | None = None,
) -> logging.Logger:
    """The worker's logger: to stderr, or to `log_file` rotated at LOG_FILE_BYTES with
    LOG_FILE_BACKUPS old files kept (logging.handlers.RotatingFileHandler), so `nohup
    outreach run --log-file ... &` or a scheduled task keeps a bounded log. Raises OSError
    when the file cannot be opened."""
    logger = logging.getLogger(LOGGER_NAME)
    for old in logger.handlers:
        old.close()
    logger.handlers.clear()
    handler: logging.Handler
    if log_file is None:
        handler = logging.StreamHandler(sys.stderr)
    else:
        handler = logging.handlers.RotatingFileHandler(
            log_file, maxBytes=LOG_FILE_BYTES, backupCount=LOG_FILE_BACKUPS, encoding="utf-8"
        )
    handler.setFormatter(JsonFormatter(zone) if as_json else HumanFormatter(zone))
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    logger.propagate = False
    return logger


def log_event(
    logger: logging.Logger, event: str, message: str, level: int = logging.INFO, **fields: Any
) -> None:
    logger.log(level, message, extra={"event": event, "fields": fields})
