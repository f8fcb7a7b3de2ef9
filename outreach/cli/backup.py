"""`outreach backup FILE`: a consistent, checked copy of the database, even while the worker
runs (store/backup.py)."""

from __future__ import annotations

from pathlib import Path

import click

from outreach.cli.app import App, cli, pass_app
from outreach.cli.terminal import echo


@cli.command("backup")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Replace FILE if it exists.")
@pass_app
def backup_command(app: App, file: Path, force: bool) -> None:
    """Write a consistent copy of the database to FILE, even while the worker runs.

    The copy is checked for damage, readable by you alone (0600), and appears under its name
    only once complete. An existing FILE is never replaced without --force. To restore:
    stop the worker, move outreach.db and its -wal and -shm files aside, copy FILE to
    outreach.db (README, "Backups")."""
    from outreach.store.backup import backup

    made = backup(app.config.database, file, overwrite=force)
    echo(f"wrote {made.path} ({made.size / 1e6:.1f} MB): a copy of {app.config.database}")
