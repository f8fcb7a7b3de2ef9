"""Bounded templates: a time, step and size limit per message (template_limits).

A template that loops without end or makes a value of a billion characters fails for the
partner it is rendered for, quickly and with its file and line, in `check`, `preview` and
`run`; every other partner's message still goes out.
"""

from __future__ import annotations

import time
from pathlib import Path

import jinja2
import pytest
from helpers import (
    CSV_HEADER,
    assert_input_error,
    edit,
    error_lines,
    invoke,
    write_csv,
)
from jinja2.sandbox import ImmutableSandboxedEnvironment
from workspace import ALWAYS_OPEN, Workspace, partner_rows

from outreach.config import load_campaigns, load_config
from outreach.config.templates import renderer_for
from outreach.core.errors import TemplateError
from outreach.core.model import Partner
from outreach.core.render import GIVE_UP_AFTER, Renderer
from outreach.core.template_limits import BoundedEnvironment, Budget, RenderLimits
from outreach.testing.smtp_server import LocalSMTPServer

NESTED_LOOPS = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
SLOW_LOOP = "{% for i in range(100000) %}{% set x = range(100000)|join %}{% endfor %}"
BIG = "{% set big = 'x' * 4000000 %}"

# (id, template text on one line, words the error must hold)
BOMBS = [
    ("nested-range-loops", NESTED_LOOPS, "more than 100,000 steps"),
    ("string-times-a-billion", "{{ 'x' * 10**9 }}", "1,000,000,000 characters"),
    ("literal-times-a-billion", "{{ 'x' * 1000000000 }}", "1,000,000,000 characters"),
    ("list-times-a-billion", "{{ [0] * 10**9 }}", "repeating a value"),
    ("huge-power", "{{ 3 ** 100000000 }}", "too large"),
    ("center-filter", "{{ 'x'|center(1000000000) }}", "center"),
    ("ljust-method", "{{ 'x'.ljust(10**9) }}", "ljust"),
    ("zfill-method", "{{ '1'.zfill(10**9) }}", "zfill"),
    ("printf-width", "{{ '%0999999999d'|format(1) }}", "a width of 999,999,999"),
    ("printf-star-width", "{{ '%*d'|format(999999999, 1) }}", "a width of 999,999,999"),
    ("percent-width", "{{ '%0999999999d' % 1 }}", "a width of 999,999,999"),
    ("format-width", "{{ '{:>999999999}'.format(1) }}", "a width of 999,999,999"),
    ("format-nested-width", "{{ '{:>{}}'.format(1, 999999999) }}", "a width of 999,999,999"),
    ("indent", "{{ 'a\\nb'|indent(999999999) }}", "indent"),
    ("replace-filter", BIG + "{{ big|replace('x', 'yy') }}", "replace"),
    ("join-separator", BIG + "{{ big.join(['a', 'b', 'c']) }}", "join"),
    ("concatenation", BIG + "{{ (big ~ big)|length }}", "characters"),
    ("list-literal", BIG + "{{ [big, big]|length }}", "characters"),
    ("expandtabs", "{{ '\\t\\t'.expandtabs(999999999)|length }}", "expandtabs"),
    ("translate", BIG + "{{ big.translate({120: 'y' * 1000}) }}", "translate"),
    ("to-bytes", "{{ (1).to_bytes(1000000000, 'big')|length }}", "to_bytes"),
    ("lipsum", "{{ lipsum(100000, max=100000)|length }}", "lipsum"),
    ("slice-count", "{{ [1]|slice(1000000000)|list|length }}", "more than 100,000 items"),
    ("batch-filler", "{{ [1]|batch(100000, 'x' * 1000)|list|length }}", "filler"),
    ("sum-of-lists", "{{ ([[1]] * 100000)|sum(start=[])|length }}", "sum adds numbers"),
    ("tojson-indent", "{{ {'a': [1, 2, 3]}|tojson(indent=999999999) }}", "tojson"),
    ("wordwrap", "{{ ('x ' * 1000000)|wordwrap(1, wrapstring='z' * 100) }}", "wordwrap"),
    (
        "namespace-seen-many-times",
        "{% set ns = namespace(x='') %}{% set seen = [ns] * 1000 %}"
        "{% set ns.x = 'y' * 4000000 %}{{ seen|string|length }}",
        "characters",
    ),
    ("output-in-a-loop", "{% for i in range(100) %}{{ 'x' * 1000000 }}{% endfor %}", "longer than"),
    ("text-in-a-loop", "{% for i in range(100000) %}" + "y" * 100 + "{% endfor %}", "longer than"),
    (
        "macro-calling-itself-twice",
        "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}"
        "{{ f(40) }}",
        "more than 100,000 steps",
    ),
]


def partner(number: int, organization: str = "Acme") -> Partner:
    return Partner(email=f"p{number}@acme.example", name=f"P {number}", organization=organization)


def render_step_2(renderer: Renderer, project: Path, who: Partner) -> None:
    config = renderer.config
    (campaign,) = load_campaigns(config)
    renderer.render(campaign, campaign.steps[1], who, config.accounts["default"])


@pytest.mark.parametrize(("text", "needle"), [b[1:] for b in BOMBS], ids=[b[0] for b in BOMBS])
def test_a_costly_template_fails_quickly_naming_its_file_and_line(
    project: Path, text: str, needle: str
) -> None:
    path = project / "templates" / "followup.txt.j2"
    edit(path, "Thank you,", f"{text}\nThank you,")
    renderer = renderer_for(load_config(project / "config.toml"))
    started = time.monotonic()
    with pytest.raises(TemplateError) as caught:
        render_step_2(renderer, project, partner(1))
    took = time.monotonic() - started
    message = str(caught.value)
    assert message.startswith(f"{path}:7: over the limit for one message: "), message
    assert needle in message and message.endswith("(partner p1@acme.example)"), message
    assert took < 1.9, f"{took:.2f} s: it should fail before the time limit"


def test_the_time_limit_stops_a_template_that_yields_nothing(project: Path) -> None:
    """Each turn joins 100,000 numbers: under the step limit, over the time limit."""
    path = project / "templates" / "followup.txt.j2"
    edit(path, "Thank you,", f"{SLOW_LOOP}\nThank you,")
    renderer = renderer_for(load_config(project / "config.toml"), RenderLimits(seconds=0.3))
    started = time.monotonic()
    with pytest.raises(TemplateError) as caught:
        render_step_2(renderer, project, partner(1))
    assert 0.3 <= time.monotonic() - started < 1.5
    assert str(caught.value).startswith(f"{path}:7: over the limit for one message: rendering")
    assert "took over 0.3 s" in str(caught.value)


def test_a_step_that_runs_out_for_partners_in_a_row_fails_at_once_for_the_next(
    project: Path,
) -> None:
    edit(project / "templates" / "followup.txt.j2", "Thank you,", f"{SLOW_LOOP}\nThank you,")
    renderer = renderer_for(load_config(project / "config.toml"), RenderLimits(seconds=0.2))
    messages = []
    for number in range(GIVE_UP_AFTER + 2):
        started = time.monotonic()
        with pytest.raises(TemplateError) as caught:
            render_step_2(renderer, project, partner(number))
        took = time.monotonic() - started
        messages.append(str(caught.value).replace(f"p{number}@", "p@"))
        assert (took >= 0.2) if number < GIVE_UP_AFTER else (took < 0.05), (number, took)
    assert len(set(messages)) == 1  # the same reason for each, with their own address


def test_one_partners_costly_data_costs_only_that_partner(project: Path) -> None:
    """A template that runs out for some partners only: the others render, and the step is
    never given up for everyone."""
    edit(
        project / "templates" / "followup.txt.j2",
        "Thank you,",
        '{% if partner.organization == "Slow" %}' + SLOW_LOOP + "{% endif %}\nThank you,",
    )
    renderer = renderer_for(load_config(project / "config.toml"), RenderLimits(seconds=0.1))
    for number in range(2 * GIVE_UP_AFTER):
        slow = partner(number, "Slow")
        with pytest.raises(TemplateError, match="took over 0.1 s"):
            render_step_2(renderer, project, slow)
        render_step_2(renderer, project, partner(100 + number))  # no error


def test_ordinary_template_features_render_as_in_the_plain_sandbox() -> None:
    source = (
        "{% set ns = namespace(count=0) -%}\n"
        '{% for tag in tags if tag != "skip" -%}\n'
        '{{ loop.index }}/{{ loop.length }} {{ tag|upper }}{{ "," if not loop.last }}'
        "{% set ns.count = ns.count + 1 %}\n"
        "{% else %}none\n{% endfor -%}\n"
        'count={{ ns.count }} joined={{ tags|join("; ") }} mapped={{ tags|map("title")|join }}\n'
        "{% macro box(text, width=10) %}[{{ text|center(width) }}]{% endmacro %}"
        "{% macro wrap() %}({{ caller() }}){% endmacro -%}\n"
        '{{ box("hi") }} {% call wrap() %}<{{ "called" }}>{% endcall %}\n'
        '{%- set block %}Block {{ name ~ "!" }}{% endset %}\n'
        '{{ block }} {{ {"a": 1, "b": [1, 2, name]}|dictsort }} {{ (1, name) }} {{ [name] * 2 }}\n'
        '{{ "%-6s|%3d"|format(name, 7) }} {{ "{:>5}|{}".format(name, 2) }} '
        '{{ "%s and %s" % (name, name) }}\n'
        '{{ "a b c"|replace("b", "B") }} {{ "abc".replace("c", "C") }} {{ "x".ljust(3, ".") }}\n'
        '{{ "line1\\nline2"|indent(2) }} {{ range(5)|batch(2)|list }} '
        "{{ range(5)|slice(2)|list }} {{ [1, 2, 3]|sum }}\n"
        '{{ 2 ** 10 }} {{ 7 * 6 }} {{ "ab" + "cd" }}\n'
        "{%- filter upper %} filtered {{ name }}{% endfilter %}\n"
        '{% for item in [{"n": 1, "kids": [{"n": 2, "kids": []}]}] recursive %}'
        "{{ item.n }}{{ loop(item.kids) }}{% endfor %}\n"
        '{{ "word " * 3 }}{{ "-" * 3 }} {{ tags|tojson }} {{ tags|wordcount }}'
    )
    context = {"tags": ["a", "skip", "b", "c"], "name": "Ana"}
    plain = ImmutableSandboxedEnvironment(undefined=jinja2.StrictUndefined)
    bounded = BoundedEnvironment(undefined=jinja2.StrictUndefined)
    with Budget(RenderLimits(), time.monotonic) as spent:
        text = bounded.from_string(source).render(context)
    assert text == plain.from_string(source).render(context)
    assert "1/3 A," in text and "[    hi    ] (<called>)" in text and "FILTERED ANA" in text
    assert 0 < spent.steps < 100 and 0 < spent.chars < 1000


def test_lists_and_dicts_cannot_be_changed_in_a_template(project: Path) -> None:
    """`L.append(x)` in a loop would grow a value past every check: the sandbox refuses it
    (`{% set %}`, `+` and namespace() still work)."""
    path = project / "templates" / "followup.txt.j2"
    edit(path, "Thank you,", "{% set seen = [] %}{{ seen.append(1) }}\nThank you,")
    renderer = renderer_for(load_config(project / "config.toml"))
    with pytest.raises(TemplateError, match="not allowed in a template"):
        render_step_2(renderer, project, partner(1))


# --------------------------------------------------------------------------- check, preview


def test_check_and_preview_name_the_template_and_stop_quickly(project: Path) -> None:
    path = project / "templates" / "followup.txt.j2"
    edit(path, "Thank you,", f"{NESTED_LOOPS}\nThank you,")
    for command in (["check"], ["preview", "checkin", "--step", "2"]):
        started = time.monotonic()
        result = invoke(command, project=project)
        assert time.monotonic() - started < 10
        line = assert_input_error(result, f"{path}:7:", "over the limit for one message")
        assert "100,000 steps" in line and len(error_lines(result)) == 1


@pytest.mark.slow
def test_check_gives_up_on_a_slow_template_after_a_few_partners(project: Path) -> None:
    """Twenty partners, a template that runs out of time for each: `check` spends the
    limit on GIVE_UP_AFTER of them, not on every one."""
    rows = [f"p{n}@acme.example,P {n},,Acme,,,,advisory," for n in range(20)]
    roster = write_csv(project / "many.csv", [CSV_HEADER, *rows])
    assert invoke(["partners", "import", str(roster)], project=project).exit_code == 0
    path = project / "templates" / "followup.txt.j2"
    edit(path, "Thank you,", f"{SLOW_LOOP}\nThank you,")
    started = time.monotonic()
    result = invoke(["check"], project=project)
    took = time.monotonic() - started
    line = assert_input_error(result, f"{path}:7:", "rendering took over 2 s")
    assert line.endswith("(and 19 more partners)"), line
    assert took < (GIVE_UP_AFTER + 2) * 2, f"check took {took:.1f} s"


# --------------------------------------------------------------------------- run


def test_run_skips_the_partner_whose_message_is_over_the_limit_and_sends_the_others(
    tmp_path: Path, smtp_server: LocalSMTPServer
) -> None:
    steps = (
        '{% if partner.organization == "Org 1" %}' + NESTED_LOOPS + "{% endif %}"
        '{% if partner.organization == "Org 2" %}{{ "x" * 10**9 }}{% endif %}'
    )
    ws = Workspace(
        tmp_path,
        smtp_port=smtp_server.port,
        campaign=ALWAYS_OPEN + '[[steps]]\ntemplate = "hello"\nsubject = "Hi"\n',
    )
    hello = ws.root / "templates" / "hello.txt.j2"
    hello.write_text(f"Hello {{{{ partner.name }}}},\n{steps}\nHow are you?\n")
    ws.add_partners(partner_rows(4))
    ws.close()
    result = ws.cli("run", "--once")
    assert result.exit_code == 1, result.output  # a partner's message failed
    delivered = sorted(rcpt for item in smtp_server.wait_for(2) for rcpt in item.rcpt_tos)
    assert delivered == ["p0000@partners.test", "p0003@partners.test"]
    assert "send: 2 queued, 2 sent, 2 not prepared" in result.stdout
    for partner_address, reason in (
        ("p0001@partners.test", "more than 100,000 steps"),
        ("p0002@partners.test", "1,000,000,000 characters"),
    ):
        logged = [
            line for line in result.stderr.splitlines() if f"(partner {partner_address})" in line
        ]
        assert logged and f"{hello}:2: over the limit for one message" in logged[0], logged
        assert reason in logged[0]
    status = invoke(["status", "--json"], project=ws.root)
    assert "over the limit for one message" in status.stdout  # `status` shows the last error
    assert ws.store.scalar("SELECT count(*) FROM messages") == 2  # nothing queued for them
