"""Where secrets come from: `password_env` and `client_secret_env` (environment variables),
`password_cmd` and `token_cmd` (a command that prints it), looked up at the moment a login
needs them.

Nothing else in outreach reads the environment for a secret or runs a command. Each value
found is remembered by core.redaction, so it is never printed, logged or stored.
"""

from __future__ import annotations

import os
import subprocess

from outreach.config.toml_reader import key_location
from outreach.core.errors import ConfigError
from outreach.core.oauth2 import OAuth2Settings
from outreach.core.redaction import remember_secret
from outreach.core.settings import ServerSettings

COMMAND_TIMEOUT = 60  # seconds a password_cmd or token_cmd may take


def server_password(settings: ServerSettings) -> str | None:
    """The password from the environment or from a command; None when no login is needed."""
    if settings.password_env:
        value = os.environ.get(settings.password_env)
        if value is None:
            raise ConfigError(
                f"{key_location(settings.source, settings.key_path + '.password_env')}: the "
                f"environment variable {settings.password_env} is not set",
                hint=f"export {settings.password_env}=... before starting outreach",
            )
        remember_secret(value)  # never printed, logged or stored (core.redaction)
        return value
    if settings.password_cmd:
        where = key_location(settings.source, settings.key_path + ".password_cmd")
        password = command_output(settings.password_cmd, where).rstrip("\r\n")
        remember_secret(password)
        return password
    return None


def oauth2_client_secret(settings: OAuth2Settings) -> str | None:
    """Google's installed-app clients have a secret that is not confidential (RFC 8252
    8.5) but still required; it comes from the environment, never from config.toml."""
    name = settings.client_secret_env
    if not name:
        return None
    value = os.environ.get(name)
    if value is None:
        where = key_location(settings.source, f"{settings.key_path}.client_secret_env")
        raise ConfigError(
            f"{where}: the environment variable {name} is not set",
            hint=f"export {name}=... before running outreach",
        )
    return value


def command_output(command: str, where: str, *, quiet: bool = False) -> str:
    """What `command` prints (run by the shell), or a ConfigError naming `where` (the key's
    file:line). `quiet`: a failure names only the kind of error, as the error's own text
    could show what a token_cmd printed."""
    try:
        done = subprocess.run(
            command, shell=True, capture_output=True, text=True, timeout=COMMAND_TIMEOUT
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        reason = type(exc).__name__ if quiet else str(exc)
        raise ConfigError(f"{where} could not run: {reason}") from (None if quiet else exc)
    if done.returncode != 0:
        raise ConfigError(f"{where} exited with {done.returncode}")
    return done.stdout
