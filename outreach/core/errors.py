"""One exception base for everything outreach reports to its user.

Messages are written for a coordinator: they begin with the file, host or partner they are
about and may end with a hint. The CLI catches `OutreachError` once and maps `exit_code`.
"""

from __future__ import annotations


class OutreachError(Exception):
    """Base class: an expected failure with a message meant for the user."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message} (hint: {self.hint})"
        return self.message


class InputError(OutreachError):
    """Bad input from the user: a file, a command-line value, a roster row. Exit code 2."""

    exit_code = 2


class ConfigError(InputError):
    """config.toml or a campaign file is wrong."""


class TemplateError(InputError):
    """A template is missing, does not parse, or does not render for some partner."""


class RosterError(InputError):
    """The partner CSV has bad rows; nothing was imported."""


class StoreError(OutreachError):
    """The database could not be opened or written."""


class DamagedDatabaseError(StoreError):
    """The database file is damaged (SQLite found a bad page): restore a backup."""


class MailServerError(OutreachError, ConnectionError):
    """A mail server could not be reached or refused us (temporary unless `permanent`)."""

    def __init__(self, message: str, *, hint: str | None = None, permanent: bool = False) -> None:
        super().__init__(message, hint=hint)
        self.permanent = permanent


def tls_failure(where: str, exc: BaseException) -> MailServerError:
    """A refused TLS handshake as one line that says why (self-signed, unknown issuer, issued
    for another name, expired), with the hint that fits."""
    verify = getattr(exc, "verify_message", None)  # ssl.SSLCertVerificationError
    reason = f"certificate refused: {verify}" if verify else getattr(exc, "reason", None) or exc
    if verify and "mismatch" in verify.lower():
        hint = "the certificate is for another name: set host to a name it is valid for"
    else:
        hint = (
            "if the server uses a private or self-signed certificate, name it (or its CA)"
            " in ca_file"
        )
    return MailServerError(f"{where}: TLS failed: {reason}", hint=hint, permanent=True)


class AuthenticationError(MailServerError):
    """The server rejected our credentials: retrying will not help."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message, hint=hint, permanent=True)


class WorkerLockedError(OutreachError):
    """Another worker holds the database."""


class Problems(InputError):
    """Several problems found at once (`outreach check` reports every one)."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        first = problems[0] if problems else "no problems"
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        super().__init__(first + more)


class SignInNeeded(MailServerError):
    """An OAuth2 account must be signed in again (its refresh token was revoked or expired,
    consent withdrawn, or it never signed in). Only that account waits: its messages stay
    queued, its mailbox is not read, and the worker goes on with the others."""

    def __init__(self, account: str, reason: str) -> None:
        super().__init__(
            f"accounts.{account}: sign-in needed ({reason}): its messages stay queued and its "
            f"mailbox is not read until you run `outreach auth login {account}`",
            permanent=True,
        )
        self.account = account
        self.reason = reason
