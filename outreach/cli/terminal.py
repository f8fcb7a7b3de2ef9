"""The CLI's only way to print: `echo`, of text made safe by core.text (control characters
shown as symbols, passwords hidden). A test checks that no other module writes to the
terminal, so a new command cannot forget it (issue 16)."""

from __future__ import annotations

import errno

import click

from outreach.core.errors import OutreachError
from outreach.core.text import safe_text


def echo(message: object = "", *, err: bool = False, nl: bool = True) -> None:
    """The CLI's only way to print: click.echo of safe text (standard error with `err`).
    Output that cannot be written (`> /dev/full`, a full disk) is one line and exit 1; a
    closed pipe (`| head`) is left to click, which ends quietly."""
    try:
        click.echo(safe_text(str(message)), err=err, nl=nl)
    except OSError as exc:
        if exc.errno == errno.EPIPE:
            raise
        where = "standard error" if err else "standard output"
        raise OutreachError(f"{where}: cannot write: {exc.strerror or exc}") from None
