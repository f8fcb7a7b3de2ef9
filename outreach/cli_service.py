"""Commands to run outreach as a service (service install, demo); they register on `cli`."""

from __future__ import annotations
