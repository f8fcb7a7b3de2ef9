"""`outreach check`: every problem in the config, campaigns, templates and roster at once."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import jinja2

from outreach.config import key_location, load_campaigns, load_config
from outreach.config.passwords import server_password
from outreach.config.templates import renderer_for
from outreach.core.errors import ConfigError, OutreachError, Problems
from outreach.core.model import Campaign, Partner, PartnerStatus
from outreach.core.plan import audience_or_sample, preview_account, unrouted_partners
from outreach.core.render import Renderer, render_sequence
from outreach.core.settings import Config, ServerSettings
from outreach.engine.message_ids import new_message_id
from outreach.store import Store


@dataclass
class CheckReport:
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    damage: list[str] = field(default_factory=list)  # the database file (exit 1, not 2)


def check_all(config_path: Path) -> CheckReport:
    report = CheckReport()
    try:
        config = load_config(config_path)
    except Problems as exc:
        report.problems.extend(exc.problems)
        return report
    except ConfigError as exc:
        report.problems.append(str(exc))
        return report

    for account in config.accounts.values():
        for server in (account.smtp, account.imap):
            if server is None:
                continue
            try:
                server_password(server)
            except ConfigError as exc:
                report.warnings.append(f"{exc} (`outreach run` will refuse to start)")
    report.warnings.extend(sign_in_warnings(config))

    report.problems.extend(template_syntax_problems(config))
    try:
        campaigns = load_campaigns(config)
    except Problems as exc:
        report.problems.extend(exc.problems)
        campaigns = []
    except ConfigError as exc:
        report.problems.append(str(exc))
        campaigns = []
    if not campaigns and not report.problems:
        report.warnings.append(f"{config.campaigns_dir}: no campaigns (*.toml) yet")

    partners: list[Partner] = []
    if config.database.exists():
        report.damage, note = database_damage(config.database)
        report.notes.append(note)
        if not report.damage:
            with Store(config.database) as store:
                partners = store.partners(status=PartnerStatus.ACTIVE)
    for campaign in campaigns:
        audience, sample = audience_or_sample(campaign.audience, partners)
        if sample:
            report.notes.append(
                f"{campaign.name}: no partner in its audience yet; rendered for a sample partner"
            )
        else:
            report.notes.append(
                f"{campaign.name}: {len(campaign.steps)} step(s) rendered for "
                f"{len(audience)} partner(s)"
            )
        report.problems.extend(unrouted_problems(campaign, partners))
        # a template that does not parse was reported above; do not echo it per campaign
        report.problems.extend(
            p for p in render_problems(config, campaign, audience) if p not in report.problems
        )
    return report


def unrouted_problems(campaign: Campaign, partners: list[Partner]) -> list[str]:
    """Partners of an account = "owner" campaign whose owner no account lists: nothing is
    sent to them (a problem, so that nobody is left out unnoticed)."""
    missing = unrouted_partners(campaign, partners)
    if not missing:
        return []
    names = ", ".join(
        f"{p.email} (owner {p.owner!r})" if p.owner else f"{p.email} (no owner)"
        for p in missing[:10]
    )
    more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
    return [
        f'{campaign.source}: account = "owner": no account lists the owner of '
        f"{len(missing)} partner(s), who get nothing: {names}{more} "
        "(hint: add the owner to an account's owners, or set fallback_account)"
    ]


def template_syntax_problems(config: Config) -> list[str]:
    renderer = renderer_for(config)
    problems = []
    if not config.templates_dir.is_dir():
        return [
            f"{key_location(config.path, 'outreach.templates')}: the templates folder "
            f"{config.templates_dir} does not exist"
        ]
    for path in sorted(config.templates_dir.rglob("*.j2")):
        name = path.relative_to(config.templates_dir).as_posix()
        env = renderer.html_env if name.endswith(".html.j2") else renderer.text_env
        try:
            env.get_template(name)
        except jinja2.TemplateSyntaxError as exc:
            problems.append(f"{path}:{exc.lineno}: template syntax error: {exc.message}")
        except UnicodeDecodeError as exc:
            line = path.read_bytes()[: exc.start].count(b"\n") + 1
            problems.append(f"{path}:{line}: not UTF-8 text")
    return problems


def render_problems(
    config: Config, campaign: Campaign, partners: list[Partner], renderer: Renderer | None = None
) -> list[str]:
    """Render and build every step for every partner; the same error is reported once."""
    renderer = renderer or renderer_for(config)
    first: dict[str, str] = {}  # the problem without its partner -> the first full message
    count: dict[str, int] = {}
    now = datetime.now(UTC)
    for partner in partners:
        account = preview_account(config.accounts, campaign, partner)
        try:
            render_sequence(renderer, campaign, partner, account, now, new_message_id)
        except OutreachError as exc:
            key = str(exc).replace(f" (partner {partner.email})", "")
            first.setdefault(key, str(exc))
            count[key] = count.get(key, 0) + 1
    return [
        first[key] if n == 1 else f"{first[key]} (and {n - 1} more partners)"
        for key, n in count.items()
    ]


def database_damage(path: Path) -> tuple[list[str], str]:
    """The integrity check of the database (store_backup.integrity_problems): the damage
    found, as one line, and a note on what was checked."""
    from outreach.store.backup import CHECK_BUDGET, integrity_problems
    from outreach.store.failures import QUICK_CHECK, RESTORE

    found = integrity_problems(path)
    size = f"{path.stat().st_size / 1e6:.1f} MB"
    if found.problems:
        more = f" (and {len(found.problems) - 1} more)" if len(found.problems) > 1 else ""
        return [
            f"{path}: the database is damaged: {found.problems[0]}{more} (hint: {RESTORE})"
        ], f"database: damaged ({size})"
    if not found.finished:
        return [], (
            f"database: no damage found in the first {CHECK_BUDGET:g}s of the "
            f"integrity check ({size}); `outreach backup` checks all of it"
        )
    return [], f"database: no damage found ({size}, {QUICK_CHECK})"


def sign_in_warnings(config: Config) -> list[str]:
    """OAuth2 accounts that are not signed in, from the token file alone (no network)."""
    from outreach.engine.credentials import Logins

    return [
        f"accounts.{row.account}: not signed in ({row.waiting}): run `outreach auth login "
        f"{row.account}` (until then `outreach run` keeps its messages queued and does not "
        "read its mailbox)"
        for row in Logins(config).statuses(config)
        if row.auth == "oauth2" and row.waiting
    ]


def check_logins(config: Config) -> list[tuple[str, bool]]:
    """Log in to every account's SMTP and IMAP server, with a password or OAuth2 (an
    access token may be renewed on the way): (line, ok) for each."""
    import asyncio

    from outreach.engine.credentials import Logins
    from outreach.transport.imap import Mailbox
    from outreach.transport.login import Login
    from outreach.transport.smtp import Connection

    async def smtp_login(settings: ServerSettings, login: Login) -> None:
        connection = Connection(settings, login)
        try:
            await connection.open()
        finally:
            await connection.close()

    logins = Logins(config)
    lines: list[tuple[str, bool]] = []
    for account in config.accounts.values():
        for settings in (account.smtp, account.imap):
            if settings is None:
                continue
            where = f"accounts.{account.name}"
            try:
                login = logins.for_server(account, settings)
                if settings.kind == "smtp":
                    asyncio.run(smtp_login(settings, login))
                else:
                    with Mailbox(settings, login):
                        pass
            except OutreachError as exc:
                text = str(exc)
                lines.append((text if text.startswith(where) else f"{where}: {text}", False))
                continue
            how = login.mechanism.value if login.mechanism else "password"
            who = (
                f"logged in as {settings.username} ({how})"
                if settings.username
                else ("connected (no login configured)")
            )
            lines.append((f"ok: {where}: {settings.kind.upper()} {settings.address} {who}", True))
    return lines
