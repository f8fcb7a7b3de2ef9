"""Commands to read the response logs (log, replies, report, exports); they register on `cli`."""

from __future__ import annotations
