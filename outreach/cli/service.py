"""`outreach service install`: the worker as a background service that restarts on
failure: a systemd user unit on Linux, a launchd agent on macOS."""

from __future__ import annotations

import os
import plistlib
import sys
from pathlib import Path
from typing import Any

import click

from outreach.cli.app import App, cli, pass_app
from outreach.cli.terminal import echo
from outreach.core.errors import InputError, OutreachError

UNIT_NAME = "outreach.service"
AGENT_LABEL = "org.outreach.worker"
LOG_FILE = "outreach.log"


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


# --------------------------------------------------------------------------- launchd


def launchd_agent(command: list[str], config_path: Path, stop_timeout_seconds: int) -> bytes:
    """A launchd agent (launchd.plist(5)) for `outreach run`, written with plistlib: started
    at login, started again when it exits with an error (KeepAlive SuccessfulExit=false),
    its log rotated in the project folder (`run --log-file`)."""
    folder = config_path.parent
    agent: dict[str, Any] = {
        "Label": AGENT_LABEL,
        "ProgramArguments": [
            *command,
            "--config",
            str(config_path),
            "run",
            "--log-file",
            str(folder / LOG_FILE),
        ],
        "WorkingDirectory": str(folder),
        "RunAtLoad": True,
        "KeepAlive": {"SuccessfulExit": False},
        "ThrottleInterval": 30,
        "ExitTimeOut": stop_timeout_seconds,
        "EnvironmentVariables": {"PYTHONUNBUFFERED": "1"},
        # what goes wrong before logging starts (a broken config: exit 2, not restarted
        # in a loop faster than ThrottleInterval)
        "StandardErrorPath": str(folder / "outreach.err.log"),
        "ProcessType": "Background",
    }
    return plistlib.dumps(agent, sort_keys=False)


def launch_agent_path() -> Path:
    return Path.home() / "Library" / "LaunchAgents" / f"{AGENT_LABEL}.plist"


def user_unit_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "systemd" / "user" / UNIT_NAME


@cli.group("service")
def service() -> None:
    """Run the worker as a background service (systemd on Linux, launchd on macOS)."""


@service.command("install")
@click.option(
    "--user",
    "user",
    is_flag=True,
    help=f"Write a service of your own account: a systemd user unit ({UNIT_NAME}), or on "
    f"macOS a launchd agent (~/Library/LaunchAgents/{AGENT_LABEL}.plist).",
)
@click.option(
    "--launchd/--systemd",
    "launchd",
    default=None,
    help="Which kind to write (default: launchd on macOS, systemd elsewhere).",
)
@click.option(
    "--to",
    "target",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE",
    help="Write it to FILE instead of the usual place.",
)
@click.option("--print", "print_only", is_flag=True, help="Print it; write nothing.")
@click.option("--force", is_flag=True, help="Replace an existing file.")
@pass_app
def service_install(
    app: App,
    user: bool,
    launchd: bool | None,
    target: Path | None,
    print_only: bool,
    force: bool,
) -> None:
    """Install `outreach run` as a service of your account that restarts on failure: a
    systemd user unit on Linux, a launchd agent on macOS.

    It runs this outreach with the absolute path of config.toml, in its folder. An
    existing file is never replaced without --force."""
    if not user and not print_only and target is None:
        raise InputError(
            "say where the service goes: `outreach service install --user` (a service "
            "of your own account)",
            hint="--print shows it without writing it",
        )
    if launchd is None:
        launchd = sys.platform == "darwin"
    config_path = app.config_path.absolute()
    config = app.config  # a broken config fails here, not later under systemd or launchd
    timeout = int(config.worker.shutdown_timeout.total_seconds()) + 15
    if launchd:
        content = launchd_agent(outreach_command(), config_path, timeout)
        path = target or launch_agent_path()
    else:
        content = systemd_unit(outreach_command(), config_path, timeout).encode("utf-8")
        path = target or user_unit_path()
    if print_only:
        echo(content.decode("utf-8"), nl=False)
        return
    if path.exists() and not force:
        raise OutreachError(
            f"{path}: already exists; not replaced",
            hint="--force replaces it, --print shows the new one",
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    except OSError as exc:
        raise OutreachError(f"{path}: cannot write: {exc.strerror}") from exc
    echo(f"wrote {path}")
    env_file = config_path.parent / "outreach.env"
    if launchd:
        echo(
            "\nNext:\n"
            f'  launchctl bootstrap gui/"$(id -u)" {path}\n'
            f'  launchctl print gui/"$(id -u)"/{AGENT_LABEL}   # is it running?\n'
            f"  tail -f {config_path.parent / LOG_FILE}   # its log (rotated at 10 MB)\n"
            "  outreach status\n"
            "launchd reads no environment file: give passwords with password_cmd (the macOS "
            "Keychain: `security find-generic-password -w -s outreach-smtp`)."
        )
        return
    echo(
        "\nNext:\n"
        "  systemctl --user daemon-reload\n"
        "  systemctl --user enable --now outreach\n"
        "  systemctl --user status outreach       # is it running?\n"
        "  journalctl --user -u outreach -f       # its log\n"
        '  loginctl enable-linger "$USER"         # keep it running after you log out\n'
        f"Passwords (password_env) go in {env_file} as NAME=value lines (chmod 600)."
    )
