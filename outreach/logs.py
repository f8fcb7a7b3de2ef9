"""Logging: one line per event on stderr, human-readable or JSON (--log-json).

Events carry structured fields (`extra={"fields": {...}}`); no caller ever passes a password
or a message body, and `redact` drops any field whose name suggests one. Each line is made
safe last, whatever went into it: no password the process holds, no control character
(a subject or a server's answer could carry ESC or a line break that forges a log line);
see outreach.cli.terminal.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any

from outreach.core.text import json_text, safe_text

LOGGER_NAME = "outreach"
_SECRET_WORDS = ("password", "secret", "token", "body", "raw", "text")


def redact(fields: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if not any(w in k.lower() for w in _SECRET_WORDS)}


class HumanFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = (
            datetime.fromtimestamp(record.created, UTC).astimezone().strftime("%Y-%m-%d %H:%M:%S")
        )
        fields = redact(getattr(record, "fields", {}) or {})
        tail = " ".join(f"{k}={v}" for k, v in fields.items() if v is not None)
        level = "" if record.levelno == logging.INFO else f"{record.levelname.lower()}: "
        line = f"{stamp} {level}{record.getMessage()}" + (f" [{tail}]" if tail else "")
        return safe_text(line, newlines=False)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "at": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "event": getattr(record, "event", None) or record.getMessage(),
            "message": record.getMessage(),
        }
        payload.update(redact(getattr(record, "fields", {}) or {}))
        return json_text(payload, default=str)


def setup_logging(as_json: bool = False, verbose: bool = False) -> logging.Logger:
    logger = logging.getLogger(LOGGER_NAME)
    logger.handlers.clear()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if as_json else HumanFormatter())
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    logger.propagate = False
    return logger


def log_event(
    logger: logging.Logger, event: str, message: str, level: int = logging.INFO, **fields: Any
) -> None:
    logger.log(level, message, extra={"event": event, "fields": fields})
