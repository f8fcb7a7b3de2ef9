"""Templates -> email messages.

The templates come in through `TemplateFiles` (config/templates.py reads them from the
project's templates/ folder), the time limit's timer and each message's Message-ID from the
caller (engine/message_ids.py): nothing here reads a file, a clock or a random source.

Jinja2 runs sandboxed with StrictUndefined: a template cannot reach Python internals, and a
missing field fails loudly instead of sending "Dear ,". Rendering one message has a time,
step and size limit (template_limits). Partner data can never add a header or split a
message: every header value is stripped of control characters here, whatever the roster
let through.
"""

from __future__ import annotations

import binascii
import functools
import hashlib
import re
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.header import Header
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import default
from email.utils import format_datetime, formataddr, parseaddr
from pathlib import Path
from typing import Any, Protocol

import jinja2
from jinja2.exceptions import SecurityError

from outreach.core.errors import TemplateError
from outreach.core.model import Campaign, Partner, Step
from outreach.core.questions import template_questions
from outreach.core.settings import Account, Config
from outreach.core.template_limits import BoundedEnvironment, Budget, RenderLimitError, RenderLimits

HEADER_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


def header_safe(value: str) -> str:
    """Collapse CR, LF and other controls to one space: no header injection, no split message."""
    return HEADER_UNSAFE.sub(" ", value).strip()


@functools.lru_cache(maxsize=4)
def _date_header(second: datetime, offset: timedelta | None) -> str:
    return format_datetime(second)


def date_header(now: datetime) -> str:
    """RFC 5322 Date of `now`, made once per second (it has no finer unit): the stdlib's
    formatting was a large part of rendering a message. The offset is part of the key: the same
    instant in another zone is equal as a datetime but written with its own offset."""
    return _date_header(now.replace(microsecond=0), now.utcoffset())


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

    @property
    def message(self) -> EmailMessage:
        return parse_built(self.raw)


# A step whose templates ran out of time or steps for this many partners in a row fails
# at once for the others, with the same reason, until the templates are loaded again: each
# would cost up to the time limit, every cycle. One partner's odd data costs only that one.
GIVE_UP_AFTER = 3


class TemplateFiles(Protocol):
    """Where the renderer's templates come from (config/templates.py: the templates/ folder)."""

    @property
    def folder(self) -> Path:
        """Named in messages."""

    @property
    def loader(self) -> jinja2.BaseLoader: ...

    def exists(self, name: str) -> bool: ...

    def read(self, name: str) -> bytes | None:
        """The file's bytes, None when it cannot be read."""

    def key_location(self, path: Path, key_path: str) -> str:
        """'file:line: key' of a campaign key (for a subject that fails to render)."""


class Renderer:
    """Renders campaign steps for partners with one pair of sandboxed Jinja environments.

    `timer` measures the time limit of one message (time.monotonic, from the caller)."""

    def __init__(
        self,
        config: Config,
        files: TemplateFiles,
        timer: Callable[[], float],
        limits: RenderLimits | None = None,
    ) -> None:
        self.config = config
        self.files = files
        self.limits = limits or RenderLimits()
        self._budget = Budget(self.limits, timer)  # one message at a time: reset by `with`
        self._exhausted: dict[tuple[str, int], tuple[int, str]] = {}  # in a row, and why
        common: dict[str, Any] = dict(
            loader=files.loader,
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=True,
            auto_reload=False,
        )
        self.text_env = BoundedEnvironment(autoescape=False, **common)
        self.html_env = BoundedEnvironment(autoescape=True, **common)
        self._subjects: dict[str, jinja2.Template] = {}
        self._has_html: dict[str, bool] = {}

    def has_html(self, template: str) -> bool:
        found = self._has_html.get(template)
        if found is None:
            found = self._has_html[template] = self.files.exists(f"{template}.html.j2")
        return found

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
            campaign={
                "name": campaign.name,
                "description": campaign.description,
                "steps": len(campaign.steps),
            },
            step=step.number,
            questions=template_questions(campaign.questions),
            # the rounds of a campaign that repeats (core/rounds.round_context): a template
            # rendered outside a send (preview, check) sees a first round
            round=1,
            last_reply=None,
            previous=None,
        )
        return context

    def render(
        self,
        campaign: Campaign,
        step: Step,
        partner: Partner,
        account: Account,
        threading: Threading = Threading(),
        rounds: Mapping[str, Any] | None = None,
    ) -> Rendered:
        """`rounds`: `round`, `last_reply` and `previous` for the templates
        (core/rounds.round_context)."""
        failed = self._exhausted.get((campaign.name, step.number)) if self._exhausted else None
        if failed is not None and failed[0] >= GIVE_UP_AFTER:
            raise TemplateError(f"{failed[1]} (partner {partner.email})")
        try:
            with self._budget:
                rendered = self._render(campaign, step, partner, account, threading, rounds)
        except _Exhausted as exc:
            in_a_row = (failed[0] if failed else 0) + 1
            self._exhausted[(campaign.name, step.number)] = (in_a_row, exc.message)
            raise TemplateError(f"{exc.message} (partner {partner.email})") from None
        if failed is not None:
            del self._exhausted[(campaign.name, step.number)]
        size = len(rendered.subject) + len(rendered.text) + len(rendered.html or "")
        if size > self.limits.chars:  # each part was within it, not all of them together
            where = self.files.folder / f"{step.template}.txt.j2"
            raise TemplateError(
                f"{where}: over the limit for one message: {size:,} characters (at most "
                f"{self.limits.chars:,}) (partner {partner.email})"
            )
        return rendered

    def _render(
        self,
        campaign: Campaign,
        step: Step,
        partner: Partner,
        account: Account,
        threading: Threading,
        rounds: Mapping[str, Any] | None = None,
    ) -> Rendered:
        context = self.context(campaign, step, partner, account)
        if rounds:
            context.update(rounds)
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
        try:
            template = self._subjects.get(source)
            if template is None:
                template = self._subjects[source] = _flat_globals(self.text_env.from_string(source))
            return template.render(context)
        except Exception as exc:  # noqa: BLE001 - any template bug is the user's to fix
            # file:line of the subject, looked up only now that it is needed
            where = self.files.key_location(campaign.source, f"steps[{step.number - 1}].subject")
            if isinstance(exc, RenderLimitError):
                if exc.kind in _EXHAUSTED:
                    raise _Exhausted(f"{where}: {_over_limit(exc)}") from None
                reason = f"{_over_limit(exc)} (partner {partner.email})"
            elif isinstance(exc, jinja2.TemplateSyntaxError):
                reason = f"template syntax error: {exc.message}"
            elif isinstance(exc, SecurityError):
                reason = f"not allowed in a template: {exc}"
            elif isinstance(exc, jinja2.UndefinedError):
                reason = f"{exc.message} (partner {partner.email})"
            else:
                reason = f"{type(exc).__name__}: {exc} (partner {partner.email})"
            raise TemplateError(f"{where}: {reason}") from None

    def _render_file(
        self, env: BoundedEnvironment, name: str, partner: Partner, context: dict[str, Any]
    ) -> str:
        try:
            return _flat_globals(env.get_template(name)).render(context)
        except RenderLimitError as exc:
            where = _template_location(exc, self.files.folder / name)
            if exc.kind in _EXHAUSTED:
                raise _Exhausted(f"{where}: {_over_limit(exc)}") from None
            raise TemplateError(f"{where}: {_over_limit(exc)} (partner {partner.email})") from None
        except Exception as exc:  # noqa: BLE001 - any template bug is the user's to fix
            raise _file_error(exc, self.files, name, partner) from None


_EXHAUSTED = ("time", "steps")


class _Exhausted(Exception):
    """A step's templates ran out of time or steps: the reason, without the partner."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _over_limit(exc: RenderLimitError) -> str:
    return f"over the limit for one message: {exc}"


def _file_error(exc: Exception, files: TemplateFiles, name: str, partner: Partner) -> TemplateError:
    """A template file's failure, for the user: file:line and what went wrong."""
    folder = files.folder
    path = folder / name
    if isinstance(exc, jinja2.TemplateNotFound):
        return TemplateError(f"{folder / (exc.name or name)}: template not found")
    if isinstance(exc, UnicodeDecodeError):  # the same words as `outreach check`'s syntax pass
        if isinstance(exc.object, bytes) and files.read(name) == exc.object:
            line = exc.object[: exc.start].count(b"\n") + 1
            return TemplateError(f"{path}:{line}: not UTF-8 text")
        return TemplateError(f"{path}: a template it includes is not UTF-8 text")
    if isinstance(exc, jinja2.TemplateSyntaxError):
        where = f"{exc.filename or path}:{exc.lineno}"
        return TemplateError(f"{where}: template syntax error: {exc.message}")
    where = _template_location(exc, path)
    if isinstance(exc, SecurityError):
        return TemplateError(f"{where}: not allowed in a template: {exc}")
    if isinstance(exc, jinja2.UndefinedError):
        return TemplateError(f"{where}: {exc.message} (partner {partner.email})")
    return TemplateError(f"{where}: {type(exc).__name__}: {exc} (partner {partner.email})")


def _flat_globals(template: jinja2.Template) -> jinja2.Template:
    """The template with its globals in one dict instead of Jinja's ChainMap (its own over
    the environment's), which every render copies into a new context, two or three
    renders a message. Nothing changes the globals after loading."""
    if not isinstance(template.globals, dict):
        template.globals = dict(template.globals)
    return template


def _template_location(exc: BaseException, fallback: Path) -> str:
    """file:line of the innermost template frame; Jinja rewrites tracebacks to show them."""
    found = str(fallback)
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename.endswith(".j2"):
            found = f"{frame.filename}:{frame.lineno}"
    return found


_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def percent_encoded(text: str) -> str:
    """`text` for a URL's query or path: every byte of its UTF-8 but the unreserved
    characters (RFC 3986 2.3) as %XX, as urllib.parse.quote(text, safe="") writes it."""
    return "".join(
        char if char in _UNRESERVED else "".join(f"%{byte:02X}" for byte in char.encode())
        for char in text
    )


def unsubscribe_url(template: str, partner_email: str, message_id: str) -> str:
    return template.replace("{email}", percent_encoded(partner_email)).replace(
        "{message_id}", percent_encoded(message_id.strip("<>"))
    )


def build_message(
    rendered: Rendered,
    partner: Partner,
    account: Account,
    now: datetime,
    threading: Threading,
    message_id: str,
) -> Built:
    """The complete RFC 5322 message: one recipient, its own Message-ID (new for each
    message, from engine/message_ids.py), threading headers."""
    headers: list[tuple[str, str]] = [
        ("From", encode_address_header(account.from_header)),
        ("To", encode_address(header_safe(partner.name), partner.email)),
    ]
    if account.reply_to:
        headers.append(("Reply-To", encode_address_header(account.reply_to)))
    headers += [
        ("Subject", encode_text_header(rendered.subject)),
        ("Date", date_header(now)),
        ("Message-ID", message_id),
    ]
    if threading.earlier_ids:
        headers.append(("In-Reply-To", threading.earlier_ids[-1]))
        headers.append(("References", " ".join(threading.earlier_ids)))
    # RFC 2369 (mailto) and RFC 8058 (one-click https) unsubscribe
    targets = [f"<mailto:{account.unsubscribe_address}?subject=unsubscribe>"]
    if account.unsubscribe_url:
        url = unsubscribe_url(account.unsubscribe_url, partner.email, message_id)
        targets.insert(0, f"<{header_safe(url)}>")
        headers.append(("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"))
    headers.append(("List-Unsubscribe", ", ".join(targets)))
    headers.append(("MIME-Version", "1.0"))
    raw = serialize(headers, rendered.text, rendered.html, boundary_for(message_id))
    return Built(message_id=message_id, subject=rendered.subject, to_addr=partner.email, raw=raw)


# ----------------------------------------------------------------------------- serializing
# The stdlib's EmailMessage parses its headers again for every message, which costs more than
# an SMTP connection takes to send one (benchmarks/README.md). These few functions write the same
# RFC 5322 / MIME output with the stdlib's own encoders (RFC 2047 words, quoted-printable).

CRLF = "\r\n"


def fold(name: str, value: str) -> str:
    """`Name: value`, folded at spaces to keep lines near 78 characters (RFC 5322 2.2.3)."""
    if CRLF in value or (len(name) + len(value) < 77 and value[-1:] not in ("", " ")):
        return f"{name}: {value}"  # already folded by the RFC 2047 encoder, or short
    line = f"{name}: "
    lines: list[str] = []
    for word in value.split(" "):
        if len(line) + len(word) > 78 and line.strip() and not line.endswith(": "):
            lines.append(line.rstrip(" "))
            line = " "
        line += word + " "
    lines.append(line.rstrip(" "))
    return CRLF.join(lines)


def needs_encoded_words(value: str) -> bool:
    """True for text that cannot go into a header as it is (RFC 2047 encoded words instead).

    Non-ASCII text; ASCII that a reader would decode as an encoded word ("=?utf-8?q?...?=");
    a word too long for `fold` to keep its line within 78 characters (RFC 5322 2.1.1; past
    998 a server may reject or cut the message). Encoded words are split to fit.
    """
    return not value.isascii() or "=?" in value or any(len(w) > 77 for w in value.split(" "))


def encode_text_header(value: str) -> str:
    value = header_safe(value)
    if not needs_encoded_words(value):
        return value
    return Header(value, "utf-8", header_name="Subject").encode(splitchars=" ", linesep=CRLF)


def encode_address(name: str, address: str) -> str:
    if not name:
        return address
    if needs_encoded_words(name):
        # formataddr would write one unsplit encoded word, or leave "=?...?=" for readers
        # to decode; Header splits and encodes (an encoded word is a valid phrase word)
        return f"{Header(name, 'utf-8').encode(linesep=CRLF)} <{address}>"
    return formataddr((name, address))


@functools.lru_cache(maxsize=64)
def encode_address_header(value: str) -> str:
    name, address = parseaddr(header_safe(value))
    return encode_address(name, address or header_safe(value))


def encode_body(text: str) -> tuple[str, bytes]:
    """(Content-Transfer-Encoding, body with CRLF line ends)."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.endswith("\n"):
        text += "\n"
    if text.isascii() and all(len(line) <= 998 for line in text.split("\n")):
        return "7bit", text.replace("\n", "\r\n").encode("ascii")
    encoded = binascii.b2a_qp(text.encode("utf-8"), quotetabs=False, istext=True, header=False)
    return "quoted-printable", encoded.replace(b"\n", b"\r\n")


def _part(subtype: str, text: str) -> bytes:
    cte, body = encode_body(text)
    charset = "us-ascii" if cte == "7bit" else "utf-8"
    head = (
        f'Content-Type: text/{subtype}; charset="{charset}"{CRLF}'
        f"Content-Transfer-Encoding: {cte}{CRLF}{CRLF}"
    )
    return head.encode("ascii") + body


def boundary_for(message_id: str) -> str:
    """The multipart boundary of a message: from its Message-ID, which is unguessable and
    its own, so no partner's text can hold it (RFC 2046 5.1.1)."""
    return "=_outreach_" + hashlib.sha256(message_id.encode("utf-8")).hexdigest()[:24]


def serialize(headers: list[tuple[str, str]], text: str, html: str | None, boundary: str) -> bytes:
    head = CRLF.join(fold(name, value) for name, value in headers) + CRLF
    if html is None:
        return head.encode("ascii") + _part("plain", text)
    head += f'Content-Type: multipart/alternative; boundary="{boundary}"{CRLF}{CRLF}'
    parts = [head.encode("ascii")]
    for subtype, content in (("plain", text), ("html", html)):
        parts.append(f"--{boundary}{CRLF}".encode("ascii") + _part(subtype, content))
    parts.append(f"--{boundary}--{CRLF}".encode("ascii"))
    return b"".join(parts)


def parse_built(raw: bytes) -> EmailMessage:
    """The message as the stdlib reads it back (for preview and tests)."""
    message = BytesParser(policy=default).parsebytes(raw)
    assert isinstance(message, EmailMessage)
    return message


def render_sequence(
    renderer: Renderer,
    campaign: Campaign,
    partner: Partner,
    account: Account,
    now: datetime,
    new_message_id: Callable[[str], str],
    steps: Iterable[int] | None = None,
) -> list[Built]:
    """Every step of a campaign for one partner, threaded as the real sequence would be;
    `new_message_id(domain)` makes each message's id."""
    wanted = set(steps) if steps is not None else None
    built: list[Built] = []
    first_subject: str | None = None
    earlier: list[str] = []
    for step in campaign.steps:
        threading = Threading(first_subject, tuple(earlier)) if step.thread else Threading()
        rendered = renderer.render(campaign, step, partner, account, threading)
        message_id = new_message_id(account.domain)
        message = build_message(rendered, partner, account, now, threading, message_id)
        if step.number == 1:
            first_subject = rendered.subject
        earlier.append(message.message_id)
        if wanted is None or step.number in wanted:
            built.append(message)
    return built
