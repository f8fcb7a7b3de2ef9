"""`outreach auth login | status | logout`: OAuth2 sign-in for Microsoft 365, Google
Workspace and other providers; they register on `cli`."""

from __future__ import annotations

import contextlib
import sys

import click

from outreach.cli.app import App, cli, json_option, now, pass_app
from outreach.cli.terminal import echo
from outreach.core.errors import InputError
from outreach.core.settings import Account
from outreach.core.text import json_text
from outreach.views.text import format_table, local_minute


@cli.group("auth")
def auth() -> None:
    """Sign accounts in with OAuth2 (auth = "oauth2"): Microsoft 365, Google Workspace."""


def oauth2_account(app: App, name: str) -> Account:
    account = app.config.accounts.get(name)
    if account is None:
        known = ", ".join(app.config.accounts) or "none"
        raise InputError(f"{app.config.path}: no account named {name!r} (accounts: {known})")
    if account.oauth2 is None:
        raise InputError(
            f"{app.config.path}: accounts.{name} signs in with a password (auth = "
            '"password"); `outreach auth login` is for accounts with auth = "oauth2"'
        )
    return account


@auth.command("login")
@click.argument("name", metavar="NAME")
@click.option(
    "--no-browser",
    is_flag=True,
    help="Do not open a browser here; paste the redirected address instead.",
)
@pass_app
def auth_login(app: App, name: str, no_browser: bool) -> None:
    """Sign account NAME in and store its tokens (beside the database, readable by you only).

    Microsoft 365 and custom providers: open the address shown on any device and enter the
    code. Google: sign in in the browser; without one, open the address elsewhere and paste
    back the address the browser ends on."""
    from outreach.engine.signin import sign_in
    from outreach.store.token_file import TokenFile, token_file_path

    account = oauth2_account(app, name)
    assert account.oauth2 is not None
    tokens = TokenFile(token_file_path(app.config.database))

    def open_browser(url: str) -> None:
        import webbrowser

        # no browser here: the address is printed anyway
        with contextlib.suppress(Exception):
            webbrowser.open(url)

    def read_line() -> str:
        return sys.stdin.readline()

    sign_in(
        account.oauth2,
        tokens,
        echo,
        open_browser=None if no_browser else open_browser,
        read_line=read_line,
    )
    echo(
        f"\nsigned in: accounts.{name} ({account.oauth2.provider_name}); the tokens are "
        f"in {tokens.path} (readable by you only). A running worker uses them from its "
        "next cycle on."
    )


@auth.command("status")
@json_option("A JSON array: account, auth, signed_in, expires_at.")
@pass_app
def auth_status(app: App, as_json: bool) -> None:
    """Whether each account is signed in, without contacting any server."""
    from outreach.engine.credentials import Logins

    rows = Logins(app.config).statuses(app.config)
    if as_json:
        echo(json_text([row.to_json() for row in rows], indent=2))
        return
    zone, moment = app.zone, now()
    table = [("ACCOUNT", "AUTH", "SIGNED IN", "ACCESS TOKEN EXPIRES")]
    for row in rows:
        if row.auth == "password":
            signed = "password" if row.signed_in else "no password set"
        elif row.provider == "token_cmd":
            signed = "token_cmd"
        else:
            signed = "yes" if row.signed_in else "NO"
        expires = "-"
        if row.expires_at is not None:
            left = row.expires_at - moment
            expires = local_minute(row.expires_at, zone) + (
                " (renewed when needed)" if left.total_seconds() > 0 else " (renewed at next use)"
            )
        table.append((row.account, row.auth, signed, expires))
    echo(format_table(table, max_width=60))
    for row in rows:
        if row.waiting:
            echo(
                f"\naccounts.{row.account}: {row.waiting}: run `outreach auth login {row.account}`"
            )


@auth.command("logout")
@click.argument("name", metavar="NAME")
@pass_app
def auth_logout(app: App, name: str) -> None:
    """Forget account NAME's tokens (and revoke them where the provider allows it)."""
    from outreach.engine.signin import sign_out
    from outreach.store.token_file import TokenFile, token_file_path

    account = oauth2_account(app, name)
    assert account.oauth2 is not None
    tokens = TokenFile(token_file_path(app.config.database))
    if sign_out(account.oauth2, tokens, echo):
        echo(
            f"signed out: accounts.{name}'s tokens are forgotten; it waits for "
            f"`outreach auth login {name}`"
        )
    else:
        echo(f"accounts.{name} was not signed in; nothing to forget")
