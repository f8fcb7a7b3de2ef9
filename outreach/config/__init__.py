"""config.toml and campaigns/*.toml -> core types (moved here from config.py)."""

from outreach.config.settings_file import *  # noqa: F403
from outreach.config.settings_file import _Reader, _read_account  # noqa: F401
