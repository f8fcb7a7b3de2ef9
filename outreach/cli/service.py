"""`outreach service install`: the worker as a systemd user service that restarts on
failure."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from outreach.cli.app import App, cli, pass_app
from outreach.cli.terminal import echo
from outreach.core.errors import InputError, OutreachError

UNIT_NAME = "outreach.service"


# --------------------------------------------------------------------------- systemd


def systemd_escape(value: str) -> str:
    """One argument for ExecStart= (systemd.service(5), "Command lines"): '%' starts a
    specifier and '$' a variable, so both are doubled; spaces and quotes need quoting."""
    value = value.replace("%", "%%").replace("$", "$$")
    if not value or any(c in value for c in " \t\"'\\;"):
        value = '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return value


def outreach_command() -> list[str]:
    """The absolute command that starts this outreach: the console script next to the
    running Python (a venv's bin/), else the one on PATH, else `python -m outreach`."""
    beside = Path(sys.executable).parent / "outreach"
    if beside.is_file() and os.access(beside, os.X_OK):
        return [str(beside.absolute())]
    import shutil

    found = shutil.which("outreach")
    if found:
        return [str(Path(found).absolute())]
    return [str(Path(sys.executable).absolute()), "-m", "outreach"]


def systemd_unit(command: list[str], config_path: Path, stop_timeout_seconds: int) -> str:
    """A systemd user unit for `outreach run` (paths must be absolute)."""
    folder = config_path.parent
    exec_start = " ".join(
        systemd_escape(a) for a in [*command, "--config", str(config_path), "run"]
    )
    folder_text = str(folder).replace("%", "%%")
    return f"""\
# outreach worker for {config_path}
# Written by `outreach service install --user`; see docs/service.md.
[Unit]
Description=outreach worker: email check-ins with industry partners ({folder.name})
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
WorkingDirectory={folder_text}
ExecStart={exec_start}
# SIGHUP reloads campaigns and templates (after checking them)
ExecReload=/bin/kill -HUP $MAINPID
# Passwords named by password_env in config.toml: put NAME=value lines in this file
# (chmod 600), or use password_cmd instead.
EnvironmentFile=-{folder_text}/outreach.env
Environment=PYTHONUNBUFFERED=1
Restart=on-failure
RestartSec=30
# exit code 2 is a broken config or campaign: restarting will not fix it
RestartPreventExitStatus=2
# SIGTERM lets the current cycle finish (shutdown_timeout in config.toml)
KillSignal=SIGTERM
TimeoutStopSec={stop_timeout_seconds}

[Install]
WantedBy=default.target
"""


def user_unit_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "systemd" / "user" / UNIT_NAME


@cli.group("service")
def service() -> None:
    """Run the worker as a background service (a systemd user unit)."""


@service.command("install")
@click.option(
    "--user",
    "user",
    is_flag=True,
    help=f"Write a systemd user unit to ~/.config/systemd/user/{UNIT_NAME}.",
)
@click.option("--print", "print_only", is_flag=True, help="Print the unit; write nothing.")
@click.option("--force", is_flag=True, help="Replace an existing unit file.")
@pass_app
def service_install(app: App, user: bool, print_only: bool, force: bool) -> None:
    """Install `outreach run` as a systemd user service that restarts on failure.

    The unit runs this outreach with the absolute path of config.toml, in its folder. An
    existing unit is never replaced without --force."""
    if not user and not print_only:
        raise InputError(
            "say where the unit goes: `outreach service install --user` (a unit "
            "of your own account)",
            hint="--print shows it without writing it",
        )
    config_path = app.config_path.absolute()
    config = app.config  # a broken config fails here, not later under systemd
    timeout = int(config.worker.shutdown_timeout.total_seconds()) + 15
    unit = systemd_unit(outreach_command(), config_path, timeout)
    if print_only:
        echo(unit, nl=False)
        return
    path = user_unit_path()
    if path.exists() and not force:
        raise OutreachError(
            f"{path}: already exists; not replaced",
            hint="--force replaces it, --print shows the new unit",
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(unit, encoding="utf-8")
    except OSError as exc:
        raise OutreachError(f"{path}: cannot write: {exc.strerror}") from exc
    env_file = config_path.parent / "outreach.env"
    echo(f"wrote {path}")
    echo(
        "\nNext:\n"
        "  systemctl --user daemon-reload\n"
        "  systemctl --user enable --now outreach\n"
        "  systemctl --user status outreach       # is it running?\n"
        "  journalctl --user -u outreach -f       # its log\n"
        '  loginctl enable-linger "$USER"         # keep it running after you log out\n'
        f"Passwords (password_env) go in {env_file} as NAME=value lines (chmod 600)."
    )
