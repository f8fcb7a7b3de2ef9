"""`outreach init`: a working sample project, never over a file that exists."""

from __future__ import annotations

import shutil
from importlib import resources
from pathlib import Path

import click

from outreach.cli.app import cli
from outreach.cli.terminal import echo
from outreach.core.errors import InputError

SAMPLE_FILES = (
    "config.toml",
    "partners.csv",
    "campaigns/checkin.toml",
    "templates/_signature.txt.j2",
    "templates/checkin.txt.j2",
    "templates/checkin.html.j2",
    "templates/followup.txt.j2",
    "templates/last_call.txt.j2",
)


@cli.command()
@click.argument("directory", default=".", type=click.Path(file_okay=False, path_type=Path))
def init(directory: Path) -> None:
    """Write a working sample (config, campaign, templates, partners.csv) into DIRECTORY.

    Existing files are never overwritten.
    """
    sample = resources.files("outreach") / "sample"
    written, kept = [], []
    for name in SAMPLE_FILES:
        target = directory / name
        if target.exists():
            kept.append(name)
            continue
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with (sample / name).open("rb") as source, open(target, "xb") as out:
                shutil.copyfileobj(source, out)
        except OSError as exc:
            raise InputError(f"{target}: cannot write: {exc.strerror or exc}") from exc
        written.append(name)
    for name in written:
        echo(f"wrote {directory / name}")
    for name in kept:
        echo(f"kept  {directory / name} (already there)")
    echo(
        "\nNext: edit config.toml (your address and mail servers), then\n"
        f"  cd {directory}\n  outreach partners import partners.csv\n  outreach check\n"
        "  outreach preview checkin"
    )
