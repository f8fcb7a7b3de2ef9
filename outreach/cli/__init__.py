"""The command line (click). `app` defines the group; each other module adds commands to it.
Importing this package registers every command (as rq does): `cli` and `main` are here."""

from outreach.cli import auth, logs, service  # noqa: F401  (they register their commands)
from outreach.cli.app import cli, main

__all__ = ["cli", "main"]
