"""Templates -> messages: sandbox, StrictUndefined, escaping, MIME shape, headers, threading.

The property tests at the end parse every built message back with the stdlib and check
that partner data can never add a header, a recipient or a part.
"""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import format_datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from helpers import edit, make_project
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from outreach.config import load_campaigns, load_config
from outreach.config.templates import renderer_for
from outreach.core.errors import RosterError, TemplateError
from outreach.core.model import Campaign, Partner
from outreach.core.render import Threading, build_message, header_safe, render_sequence
from outreach.core.roster import parse_roster
from outreach.core.settings import Config
from outreach.engine.message_ids import new_message_id

NOW = datetime(2026, 10, 5, 15, 0, tzinfo=UTC)
FIRST_SUBJECT = "Lincoln High CTE check-in: how is Acme Health doing?"
PARTNER = Partner(
    email="ana.diaz@acme.example",
    name="Ana Díaz",
    first_name="Ana",
    organization="Acme Health",
    pathway="Health Science",
    tags=("advisory",),
    timezone="America/Chicago",
    fields={"city": "Lincoln"},
)


def parse(raw: bytes) -> EmailMessage:
    message = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(message, EmailMessage)
    return message


class Project:
    def __init__(self, root: Path) -> None:
        self.root = make_project(root)

    @property
    def config(self) -> Config:
        return load_config(self.root / "config.toml")

    @property
    def campaign(self) -> Campaign:
        (campaign,) = load_campaigns(self.config)
        return campaign

    def template(self, name: str) -> Path:
        return self.root / "templates" / name

    def build(
        self, partner: Partner = PARTNER, steps: list[int] | None = None
    ) -> list[EmailMessage]:
        config = self.config
        campaign = self.campaign
        built = render_sequence(
            renderer_for(config),
            campaign,
            partner,
            config.accounts[campaign.account],
            NOW,
            new_message_id,
            steps,
        )
        return [parse(b.raw) for b in built]

    def fails(self, partner: Partner = PARTNER) -> str:
        with pytest.raises(TemplateError) as caught:
            self.build(partner)
        assert caught.value.exit_code == 2
        assert "\n" not in str(caught.value)
        return str(caught.value)


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return Project(tmp_path / "project")


def text_of(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None
    return str(part.get_content()).replace("\r\n", "\n")


def html_of(message: EmailMessage) -> str | None:
    part = message.get_body(("html",))
    return None if part is None else str(part.get_content())


# --------------------------------------------------------------------------- sandbox


@pytest.mark.parametrize(
    "expression",
    [
        "''.__class__.__mro__",
        "''.__class__.__mro__[1].__subclasses__()",
        "cycler.__init__.__globals__",
        "cycler.__init__.__globals__.os.system('touch {marker}')",
        "joiner.__init__.__globals__['os'].popen('touch {marker}').read()",
        "lipsum.__globals__['os'].system('touch {marker}')",
        "partner.__class__",
        "self._TemplateReference__context",
        "'{0.__class__.__mro__}'.format(partner)",
    ],
)
def test_templates_cannot_reach_python_internals(
    project: Project, tmp_path: Path, expression: str
) -> None:
    marker = tmp_path / "pwned"
    expression = expression.replace("{marker}", str(marker))
    path = project.template("followup.txt.j2")
    edit(path, "Thank you,", f"{{{{ {expression} }}}}\nThank you,")
    message = project.fails()
    assert not marker.exists()
    assert message.startswith(f"{path}:7: "), message
    assert "not allowed in a template" in message, message


def test_subjects_are_sandboxed_too(project: Project) -> None:
    edit(
        project.root / "campaigns" / "checkin.toml",
        "{{ program }} check-in",
        "{{ cycler.__init__.__globals__ }} check-in",
    )
    message = project.fails()
    path = project.root / "campaigns" / "checkin.toml"
    assert message.startswith(f"{path}:23: steps[0].subject: not allowed in a template")


# --------------------------------------------------------------------------- StrictUndefined


def test_undefined_partner_field_fails_naming_file_line_and_partner(project: Project) -> None:
    path = project.template("followup.txt.j2")
    edit(path, "Thank you,", "Your region: {{ partner.region }}\nThank you,")
    message = project.fails()
    assert message.startswith(f"{path}:7:"), message
    assert "region" in message and "ana.diaz@acme.example" in message


def test_undefined_top_level_variable_fails(project: Project) -> None:
    path = project.template("checkin.html.j2")
    edit(path, "Thank you,", "{{ programme }} Thank you,")
    message = project.fails()
    assert message.startswith(f"{path}:") and "programme" in message


def test_undefined_variable_in_an_included_template_names_the_include(project: Project) -> None:
    path = project.template("_signature.txt.j2")
    edit(path, "{{ phone }}", "{{ fax }}")
    message = project.fails()
    assert message.startswith(f"{path}:3:"), message


def test_no_blank_greeting_and_no_dear_comma(project: Project) -> None:
    nameless = Partner(email="x@acme.example", organization="Acme")
    messages = project.build(nameless)
    assert text_of(messages[0]).startswith("Hello there,")


def test_extra_fields_and_template_vars_are_in_context(project: Project) -> None:
    edit(
        project.template("followup.txt.j2"),
        "Thank you,",
        "{{ partner.city }}|{{ program }}|{{ account.email }}|{{ campaign.name }}|{{ step }}|"
        "{{ campaign.steps }}|{{ partner.tags | join(',') }}\nThank you,",
    )
    message = project.build(steps=[2])[0]
    assert "Lincoln|Lincoln High CTE|jlee@district.example|checkin|2|3|advisory" in text_of(message)


# --------------------------------------------------------------------------- escaping


def test_html_is_escaped_and_text_is_not(project: Project) -> None:
    edit(
        project.template("checkin.txt.j2"),
        "Thank you for",
        "Org: {{ partner.organization }}.\nThank you for",
    )
    partner = Partner(
        email="evil@acme.example",
        name="<script>alert(1)</script>",
        first_name="<script>alert(1)</script>",
        organization="Tom & Jerry's <b>Shop</b>",
    )
    (message,) = project.build(partner, steps=[1])
    html = html_of(message)
    assert html is not None
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "Tom &amp; Jerry&#39;s &lt;b&gt;Shop&lt;/b&gt;" in html
    text = text_of(message)
    assert "Hello <script>alert(1)</script>," in text
    assert "Org: Tom & Jerry's <b>Shop</b>." in text
    assert (
        message["Subject"] == "Lincoln High CTE check-in: how is Tom & Jerry's <b>Shop</b> doing?"
    )


# --------------------------------------------------------------------------- includes, MIME


def test_shared_signature_is_included_in_every_step(project: Project) -> None:
    edit(project.template("_signature.txt.j2"), "{{ phone }}", "{{ phone }} | Room 114")
    for message in project.build():
        assert text_of(message).rstrip().endswith("(555) 010-0199 | Room 114")


def test_template_inheritance(project: Project) -> None:
    project.template("_base.txt.j2").write_text(
        "Hello {{ partner.first_name }},\n\n{% block body %}{% endblock %}\n\n"
        "{% include '_signature.txt.j2' %}",
        encoding="utf-8",
    )
    project.template("followup.txt.j2").write_text(
        "{% extends '_base.txt.j2' %}{% block body %}Just following up.{% endblock %}",
        encoding="utf-8",
    )
    text = text_of(project.build(steps=[2])[0])
    assert text.startswith("Hello Ana,\n\nJust following up.\n\nJordan Lee\n")


def test_multipart_alternative_when_an_html_template_exists(project: Project) -> None:
    first, second, third = project.build()
    assert first.get_content_type() == "multipart/alternative"
    parts = [p.get_content_type() for p in first.iter_parts()]
    assert parts == ["text/plain", "text/html"]  # the preferred part last (RFC 2046 5.1.4)
    assert "How has your workplace changed this year?" in text_of(first)
    html = html_of(first)
    assert html is not None and "<li>How has your workplace changed this year?</li>" in html
    for message in (second, third):
        assert message.get_content_type() == "text/plain"
        assert html_of(message) is None


def test_unicode_body_and_subject_survive(project: Project) -> None:
    partner = Partner(
        email="z@acme.example", name="Zoë Ñúñez", first_name="Zoë", organization="Café Ñandú 北京"
    )
    first = project.build(partner, steps=[1])[0]
    assert first["Subject"] == "Lincoln High CTE check-in: how is Café Ñandú 北京 doing?"
    assert text_of(first).startswith("Hello Zoë,")
    assert first["To"].addresses[0].display_name == "Zoë Ñúñez"
    # no SMTPUTF8 or 8BITMIME needed: the message on the wire is 7-bit (RFC 2047, RFC 2045)
    raw = render_sequence(
        renderer_for(project.config),
        project.campaign,
        partner,
        project.config.accounts["default"],
        NOW,
        new_message_id,
        [1],
    )[0].raw
    assert raw.isascii()


# --------------------------------------------------------------------------- headers


def test_headers_of_a_first_message(project: Project) -> None:
    (message,) = project.build(steps=[1])
    assert message["From"] == "Jordan Lee <jlee@district.example>"
    (to,) = message["To"].addresses
    assert (to.display_name, to.addr_spec) == ("Ana Díaz", "ana.diaz@acme.example")
    for absent in ("Cc", "Bcc", "In-Reply-To", "References", "List-Unsubscribe-Post"):
        assert message[absent] is None
    assert message["Subject"] == FIRST_SUBJECT
    assert message["Date"].datetime == NOW
    assert re.fullmatch(r"<[^<>@\s]+@district\.example>", message["Message-ID"])
    assert message["List-Unsubscribe"] == "<mailto:jlee@district.example?subject=unsubscribe>"
    assert message["MIME-Version"] == "1.0"


def test_message_ids_are_unique(project: Project) -> None:
    ids = [m["Message-ID"] for _ in range(20) for m in project.build()]
    assert len(set(ids)) == len(ids)


def test_message_ids_stay_unique_across_the_random_pool_and_a_fork() -> None:
    """Message-IDs draw their random part from a pool refilled from the OS; a forked child
    (the classifier's worker processes) must not hand out the parent's pool again."""
    import os

    ours = {new_message_id("district.example") for _ in range(3 * 256 + 7)}
    assert len(ours) == 3 * 256 + 7
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child reports through the pipe
        os.close(read)
        ids = "\n".join(new_message_id("district.example") for _ in range(300))
        os.write(write, ids.encode())
        os._exit(0)
    os.close(write)
    theirs_text = b""
    while chunk := os.read(read, 65536):
        theirs_text += chunk
    os.close(read)
    os.waitpid(child, 0)
    theirs = {line.split(".")[1] for line in theirs_text.decode().splitlines()}
    mine = {new_message_id("district.example").split(".")[1] for _ in range(300)}
    assert len(theirs) == 300
    assert not theirs & mine


@given(st.datetimes(timezones=st.sampled_from([None, UTC, ZoneInfo("America/Chicago")])))
def test_the_date_header_is_the_stdlib_one(moment: datetime) -> None:
    """The Date header is made once per second (cached); it must equal the stdlib's
    formatting of that very moment, whatever its microseconds or time zone."""
    from outreach.core.render import date_header

    assert date_header(moment) == format_datetime(moment)
    assert date_header(moment.replace(microsecond=0)) == format_datetime(moment)
    if moment.tzinfo is not None:  # the same instant elsewhere: equal, written otherwise
        elsewhere = moment.astimezone(ZoneInfo("Asia/Kolkata"))
        assert date_header(elsewhere) == format_datetime(elsewhere)


def test_list_unsubscribe_with_url_and_one_click(project: Project) -> None:
    edit(
        project.root / "config.toml",
        "[accounts.default.limits]",
        "[accounts.default.unsubscribe]\n"
        'mailto = "optout@district.example"\n'
        'url = "https://district.example/unsubscribe?who={email}&m={message_id}"\n\n'
        "[accounts.default.limits]",
    )
    partner = Partner(email="o'neil+cte@acme.example", name="Pat O'Neil")
    (message,) = project.build(partner, steps=[1])
    message_id = message["Message-ID"].strip("<>")
    https, mailto = [t.strip() for t in str(message["List-Unsubscribe"]).split(",")]
    assert https.startswith(
        "<https://district.example/unsubscribe?who=o%27neil%2Bcte%40acme.example"
    )
    assert https.endswith(f"&m={message_id.replace('@', '%40')}>")
    assert mailto == "<mailto:optout@district.example?subject=unsubscribe>"
    # RFC 8058: one-click needs exactly this header next to an https URI
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_reply_to_when_configured(project: Project) -> None:
    edit(
        project.root / "config.toml",
        'from = "Jordan Lee <jlee@district.example>"',
        'from = "Jordan Lee <jlee@district.example>"\n'
        'reply_to = "CTE Office <cte@district.example>"',
    )
    (message,) = project.build(steps=[1])
    assert message["Reply-To"] == "CTE Office <cte@district.example>"


# --------------------------------------------------------------------------- threading


def test_follow_ups_thread_under_the_first_message(project: Project) -> None:
    first, second, third = project.build()
    ids = [m["Message-ID"] for m in (first, second, third)]
    assert second["In-Reply-To"] == ids[0]
    assert second["References"] == ids[0]
    assert third["In-Reply-To"] == ids[1]
    assert third["References"].split() == ids[:2]
    assert second["Subject"] == third["Subject"] == f"Re: {FIRST_SUBJECT}"


def test_threading_from_the_ledger(project: Project) -> None:
    config = project.config
    campaign = project.campaign
    account = config.accounts["default"]
    threading = Threading("Earlier subject", ("<a@district.example>", "<b@district.example>"))
    rendered = renderer_for(config).render(campaign, campaign.steps[2], PARTNER, account, threading)
    assert rendered.subject == "Re: Earlier subject"
    built = build_message(rendered, PARTNER, account, NOW, threading, "<c@district.example>")
    message = parse(built.raw)
    assert message["In-Reply-To"] == "<b@district.example>"
    assert message["References"] == "<a@district.example> <b@district.example>"
    assert (
        parse(
            build_message(
                rendered, PARTNER, account, NOW, Threading("Re: Earlier", ("<a@x>",)), "<c@x>"
            ).raw
        )["Subject"]
        == "Re: Earlier subject"
    )


def test_a_subject_that_already_says_re_is_not_doubled(project: Project) -> None:
    edit(
        project.root / "campaigns" / "checkin.toml",
        'subject = "{{ program }}',
        'subject = "RE: {{ program }}',
    )
    _, second, _ = project.build()
    assert second["Subject"] == "RE: " + FIRST_SUBJECT


def test_thread_false_uses_its_own_subject(project: Project) -> None:
    edit(
        project.root / "campaigns" / "checkin.toml",
        'after = "10d"',
        'after = "10d"\nthread = false\nsubject = "One last note for {{ partner.organization }}"',
    )
    first, second, third = project.build()
    assert third["Subject"] == "One last note for Acme Health"
    assert third["In-Reply-To"] is None and third["References"] is None
    assert second["Subject"] == f"Re: {FIRST_SUBJECT}"  # the others still thread
    assert first["Message-ID"] != third["Message-ID"]


# --------------------------------------------------------------------------- properties

FIRST_HEADERS = [
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "List-Unsubscribe",
    "MIME-Version",
    "Content-Type",
]
FOLLOW_UP_HEADERS = [*FIRST_HEADERS, "In-Reply-To", "References", "Content-Transfer-Encoding"]

# Anything a spreadsheet cell could hold, and the characters that split headers and lines.
nasty_text = st.one_of(
    st.text(st.characters(exclude_categories=["Cs"]), max_size=120),
    st.text(
        st.sampled_from(list("\r\n\x00\x0b\x0c\x1c\x85\u2028\u2029\t :;,<>\"'\\=?@()[]aZ")),
        max_size=60,
    ),
    st.builds(
        lambda a, b: f"x\r\n{a}: {b}",
        st.sampled_from(["Bcc", "To", "Cc", "Subject"]),
        st.text(max_size=20),
    ),
    st.builds(
        lambda a: f"=?utf-8?q?{a}?=", st.text(st.sampled_from(list("=0DA_:@<>,bc")), max_size=30)
    ),
    st.text(st.sampled_from("ab "), min_size=70, max_size=1200),
)


@pytest.fixture(scope="module")
def property_project(tmp_path_factory: pytest.TempPathFactory) -> tuple[Config, Campaign]:
    root = make_project(tmp_path_factory.mktemp("property") / "project")
    config = load_config(root / "config.toml")
    (campaign,) = load_campaigns(config)
    return config, campaign


def squash(value: str) -> str:
    """Compare header text without its whitespace: folding (RFC 5322 2.2.3) may move it."""
    return re.sub(r"\s+", "", value)


def assert_exact_headers(partner: Partner, config: Config, campaign: Campaign) -> None:
    account = config.accounts["default"]
    renderer = renderer_for(config)
    built = render_sequence(renderer, campaign, partner, account, NOW, new_message_id, [1, 2])
    subject = header_safe(f"Lincoln High CTE check-in: how is {partner.organization} doing?")
    for item, expected_names, expected_subject in (
        (built[0], FIRST_HEADERS, subject),
        (built[1], FOLLOW_UP_HEADERS, f"Re: {subject}"),
    ):
        raw = item.raw
        head, sep, _ = raw.partition(b"\r\n\r\n")
        assert sep, "no blank line after the headers"
        assert all(len(line) <= 998 for line in raw.split(b"\r\n"))  # RFC 5322 2.1.1
        assert b"\r" not in raw.replace(b"\r\n", b"") and b"\n" not in raw.replace(b"\r\n", b"")
        message = parse(raw)
        assert sorted(message.keys()) == sorted(expected_names)  # no extra, none repeated
        (to,) = message["To"].addresses
        assert to.addr_spec == partner.email
        assert squash(to.display_name) == squash(header_safe(partner.name))
        assert squash(str(message["Subject"])) == squash(expected_subject)
        assert message["From"] == "Jordan Lee <jlee@district.example>"
        for part in message.walk():
            assert not part.defects, part.defects
        if item is built[0]:
            assert [p.get_content_type() for p in message.iter_parts()] == [
                "text/plain",
                "text/html",
            ]


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(name=nasty_text, first_name=nasty_text, organization=nasty_text)
@example(name="Eve\r\nBcc: victim@example.org", first_name="", organization="")
@example(name="", first_name="", organization="Acme\r\n\r\n--boundary\r\nX: y")
@example(name="=?utf-8?q?a=0D=0ABcc:_x@y?=", first_name="", organization="=?utf-8?q?=0D=0A?=")
@example(name="a" * 1000, first_name="", organization="b" * 1000)
def test_partner_fields_cannot_add_headers_or_split_the_message(
    property_project: tuple[Config, Campaign], name: str, first_name: str, organization: str
) -> None:
    """Built directly from a Partner: whatever the roster let through, render neutralises."""
    config, campaign = property_project
    partner = Partner(
        email="p@acme.example",
        name=name,
        first_name=first_name,
        organization=organization,
        tags=("advisory",),
    )
    assert_exact_headers(partner, config, campaign)


def csv_bytes(cells: list[str]) -> bytes:
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(["email", "name", "first_name", "organization", "tags", "note"])
    writer.writerow(cells)
    return buffer.getvalue().encode("utf-8")


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(
    email=st.one_of(st.emails(), nasty_text),
    name=nasty_text,
    organization=nasty_text,
    note=nasty_text,
)
@example(email="p@acme.example", name="Eve\r\nBcc: victim@example.org", organization="", note="")
@example(email="p@acme.example\r\nBcc: victim@example.org", name="", organization="", note="")
def test_any_field_through_import_is_rejected_or_harmless(
    property_project: tuple[Config, Campaign],
    email: str,
    name: str,
    organization: str,
    note: str,
) -> None:
    config, campaign = property_project
    try:
        (partner,) = parse_roster(csv_bytes([email, name, "", organization, "advisory", note]))
    except RosterError as exc:
        assert "\n" not in str(exc)
        return
    assert "\r" not in partner.name and "\n" not in partner.organization
    assert_exact_headers(partner, config, campaign)


@pytest.mark.parametrize(
    ("value", "name"),
    [
        ('"Lee, Jordan" <jlee@district.example>', "Lee, Jordan"),
        ("José Pérez <jlee@district.example>", "José Pérez"),
    ],
)
def test_from_header_keeps_the_configured_name(project: Project, value: str, name: str) -> None:
    edit(
        project.root / "config.toml",
        'from = "Jordan Lee <jlee@district.example>"',
        f"from = '{value}'",
    )
    (message,) = project.build(steps=[1])
    (sender,) = message["From"].addresses
    assert (sender.display_name, sender.addr_spec) == (name, "jlee@district.example")


@pytest.mark.parametrize("target", ["../config.toml", "/etc/passwd", "templates/../../config.toml"])
def test_includes_stay_inside_the_templates_folder(project: Project, target: str) -> None:
    edit(
        project.template("followup.txt.j2"), "Thank you,", f'{{% include "{target}" %}}\nThank you,'
    )
    message = project.fails()
    assert "template not found" in message
    assert "smtp.district.example" not in message


@given(st.text(st.characters(blacklist_categories=("Cs",))))
def test_unsubscribe_urls_are_encoded_as_urllib_would(text: str) -> None:
    """The core encodes the partner's address and the Message-ID itself (it imports no
    urllib): exactly as urllib.parse.quote(text, safe="") does."""
    import urllib.parse

    from outreach.core.render import percent_encoded

    assert percent_encoded(text) == urllib.parse.quote(text, safe="")
