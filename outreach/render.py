"""Templates -> email messages (pure apart from reading template files).

Jinja2 runs sandboxed with StrictUndefined: a template cannot reach Python internals, and a
missing field fails loudly instead of sending "Dear ,". Partner data can never add a header
or split a message: every header value is stripped of control characters here, whatever
the roster let through.
"""

from __future__ import annotations

import re
import secrets
import time
import traceback
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment, SecurityError

from outreach.config import Account, Campaign, Config, Step
from outreach.errors import TemplateError
from outreach.model import Partner

HEADER_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


def header_safe(value: str) -> str:
    """Collapse CR, LF and other controls to one space: no header injection, no split message."""
    return HEADER_UNSAFE.sub(" ", value).strip()


def new_message_id(domain: str) -> str:
    """A globally unique Message-ID on the account's domain (RFC 5322 section 3.6.4)."""
    return f"<{int(time.time() * 1000):x}.{secrets.token_hex(8)}.outreach@{domain}>"


def reply_subject(first_subject: str) -> str:
    return first_subject if re.match(r"(?i)re\s*:", first_subject) else f"Re: {first_subject}"


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str | None


@dataclass(frozen=True)
class Threading:
    """Earlier messages of the sequence, for In-Reply-To / References and the Re: subject."""

    first_subject: str | None = None
    earlier_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class Built:
    message_id: str
    subject: str
    to_addr: str
    raw: bytes
    message: EmailMessage = field(repr=False, compare=False)


class Renderer:
    """Renders campaign steps for partners with one pair of sandboxed Jinja environments."""

    def __init__(self, config: Config) -> None:
        self.config = config
        loader = jinja2.FileSystemLoader(str(config.templates_dir))
        common: dict[str, Any] = dict(
            loader=loader, undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
            auto_reload=False,
        )
        self.text_env = SandboxedEnvironment(autoescape=False, **common)
        self.html_env = SandboxedEnvironment(autoescape=True, **common)
        self._subjects: dict[str, jinja2.Template] = {}

    def has_html(self, template: str) -> bool:
        return (self.config.templates_dir / f"{template}.html.j2").is_file()

    def context(
        self, campaign: Campaign, step: Step, partner: Partner, account: Account
    ) -> dict[str, Any]:
        context: dict[str, Any] = dict(self.config.template_vars)
        context.update(
            partner=partner.template_context(),
            account={
                "name": account.name,
                "from": account.from_header,
                "from_name": account.from_name,
                "email": account.from_email,
            },
            campaign={"name": campaign.name, "description": campaign.description,
                      "steps": len(campaign.steps)},
            step=step.number,
        )
        return context

    def render(
        self, campaign: Campaign, step: Step, partner: Partner, account: Account,
        threading: Threading = Threading(),
    ) -> Rendered:
        context = self.context(campaign, step, partner, account)
        if step.subject is not None:
            subject = self._render_subject(campaign, step, partner, context)
        elif threading.first_subject:
            subject = reply_subject(threading.first_subject)
        else:
            first = campaign.steps[0]
            subject = reply_subject(self._render_subject(campaign, first, partner, context))
        text = self._render_file(self.text_env, f"{step.template}.txt.j2", partner, context)
        html = None
        if self.has_html(step.template):
            html = self._render_file(self.html_env, f"{step.template}.html.j2", partner, context)
        return Rendered(subject=header_safe(subject), text=text, html=html)

    def _render_subject(
        self, campaign: Campaign, step: Step, partner: Partner, context: dict[str, Any]
    ) -> str:
        source = step.subject or ""
        where = f"{campaign.source.name}: steps[{step.number - 1}].subject"
        try:
            template = self._subjects.get(source)
            if template is None:
                template = self._subjects[source] = self.text_env.from_string(source)
            return template.render(context)
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(f"{where}: template syntax error: {exc.message}") from None
        except SecurityError as exc:
            raise TemplateError(f"{where}: not allowed in a template: {exc}") from None
        except jinja2.UndefinedError as exc:
            raise TemplateError(f"{where}: {exc.message} (partner {partner.email})") from None
        except Exception as exc:  # noqa: BLE001 - any template bug is the user's to fix
            raise TemplateError(f"{where}: {type(exc).__name__}: {exc} (partner {partner.email})") from None

    def _render_file(
        self, env: SandboxedEnvironment, name: str, partner: Partner, context: dict[str, Any]
    ) -> str:
        path = self.config.templates_dir / name
        try:
            return env.get_template(name).render(context)
        except jinja2.TemplateNotFound as exc:
            missing = self.config.templates_dir / (exc.name or name)
            raise TemplateError(f"{missing}: template not found") from None
        except jinja2.TemplateSyntaxError as exc:
            where = f"{exc.filename or path}:{exc.lineno}"
            raise TemplateError(f"{where}: template syntax error: {exc.message}") from None
        except SecurityError as exc:
            where = _template_location(exc, path)
            raise TemplateError(f"{where}: not allowed in a template: {exc}") from None
        except jinja2.UndefinedError as exc:
            where = _template_location(exc, path)
            raise TemplateError(f"{where}: {exc.message} (partner {partner.email})") from None
        except Exception as exc:  # noqa: BLE001 - any template bug is the user's to fix
            where = _template_location(exc, path)
            raise TemplateError(
                f"{where}: {type(exc).__name__}: {exc} (partner {partner.email})"
            ) from None


def _template_location(exc: BaseException, fallback: Path) -> str:
    """file:line of the innermost template frame; Jinja rewrites tracebacks to show them."""
    found = str(fallback)
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename.endswith(".j2"):
            found = f"{frame.filename}:{frame.lineno}"
    return found


def unsubscribe_url(template: str, partner_email: str, message_id: str) -> str:
    return template.replace("{email}", urllib.parse.quote(partner_email, safe="")).replace(
        "{message_id}", urllib.parse.quote(message_id.strip("<>"), safe="")
    )


def build_message(
    rendered: Rendered, partner: Partner, account: Account, now: datetime,
    threading: Threading = Threading(), message_id: str | None = None,
) -> Built:
    """The complete RFC 5322 message: one recipient, its own Message-ID, threading headers."""
    message_id = message_id or new_message_id(account.domain)
    message = EmailMessage(policy=SMTP)
    message["From"] = header_safe(account.from_header)
    display = header_safe(partner.name)
    message["To"] = Address(display_name=display, addr_spec=partner.email) if display else partner.email
    if account.reply_to:
        message["Reply-To"] = header_safe(account.reply_to)
    message["Subject"] = rendered.subject
    message["Date"] = format_datetime(now)
    message["Message-ID"] = message_id
    if threading.earlier_ids:
        message["In-Reply-To"] = threading.earlier_ids[-1]
        message["References"] = " ".join(threading.earlier_ids)
    # RFC 2369 (mailto) and RFC 8058 (one-click https) unsubscribe
    targets = [f"<mailto:{account.unsubscribe_address}?subject=unsubscribe>"]
    if account.unsubscribe_url:
        targets.insert(0, f"<{unsubscribe_url(account.unsubscribe_url, partner.email, message_id)}>")
        message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    message["List-Unsubscribe"] = ", ".join(targets)
    message.set_content(rendered.text)
    if rendered.html is not None:
        message.add_alternative(rendered.html, subtype="html")
    return Built(
        message_id=message_id, subject=rendered.subject, to_addr=partner.email,
        raw=message.as_bytes(), message=message,
    )


def render_sequence(
    renderer: Renderer, campaign: Campaign, partner: Partner, account: Account, now: datetime,
    steps: Iterable[int] | None = None,
) -> list[Built]:
    """Every step of a campaign for one partner, threaded as the real sequence would be."""
    wanted = set(steps) if steps is not None else None
    built: list[Built] = []
    first_subject: str | None = None
    earlier: list[str] = []
    for step in campaign.steps:
        threading = Threading(first_subject, tuple(earlier)) if step.thread else Threading()
        rendered = renderer.render(campaign, step, partner, account, threading)
        message = build_message(rendered, partner, account, now, threading)
        if step.number == 1:
            first_subject = rendered.subject
        earlier.append(message.message_id)
        if wanted is None or step.number in wanted:
            built.append(message)
    return built
