"""`outreach report`: the funnel over real cycles, and the HTML report checked in headless
Chromium (renders, no console errors, charts present, partner text escaped)."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from datetime import UTC, date, datetime
from html.parser import HTMLParser
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from logbook import EMAILS, ENGLISH, World
from workspace import Workspace

from outreach.views.report import (
    CampaignReport,
    ReportReply,
    StepFunnel,
    day_buckets,
    format_hours,
)
from outreach.views.report_html import render_html


def ok(result) -> str:
    assert result.exit_code == 0, (result.output, result.exception)
    return result.output


# --------------------------------------------------------------------------- terminal / JSON


def test_report_prints_the_funnel_and_who_never_answered(world: World):
    out = ok(world.ws.cli("report", "checkin"))
    expected = {
        "Audience": "6",
        "Sent": "6 partners, 9 messages",
        "step 1": "6",
        "step 2": "2",
        "step 3": "1",
        "Replied": "2",
        "Auto-replied": "1",
        "Bounced": "1",
        "Unsubscribed": "1",
        "Still pending": "2",
        "Reply rate": "33.3%",
        "Median time to reply": "30 h",
    }
    lines = {
        line.strip().rsplit("   ", 1)[0].strip(): line.strip().rsplit("   ", 1)[-1].strip()
        for line in out.splitlines()
        if "   " in line
    }
    for label, value in expected.items():
        assert lines.get(label) == value, (label, out)
    silent = out.split("Never answered (2):", 1)[1]
    assert "zoe@fjord.test" in silent and "Zoë Ødegaard" in silent
    assert "dan@buildright.test" in silent and "paused (auto-reply)" in silent
    for gone in (EMAILS[0], EMAILS[2], EMAILS[3], EMAILS[5]):  # answered, bounced, stopped
        assert gone not in silent
    # who left is named, not only counted (issue 21)
    assert "Unsubscribed (1): Sam Lee <sam@bistro.test>" in out
    assert "Bounced (1): Priya Shah <priya@netforge.test>" in out


def test_report_json(world: World):
    data = json.loads(ok(world.ws.cli("report", "checkin", "--json")))
    assert data["sent_per_step"] == {"1": 6, "2": 2, "3": 1}
    assert (
        data["replied"],
        data["auto_replied"],
        data["bounced"],
        data["unsubscribed"],
        data["pending"],
    ) == (2, 1, 1, 1, 2)
    assert data["reply_rate"] == 0.3333 and data["median_hours_to_reply"] == 30.5
    assert [s["replied"] for s in data["steps"]] == [1, 1, 0]
    assert [p["partner"] for p in data["never_answered"]] == [EMAILS[1], EMAILS[4]]
    assert [p["partner"] for p in data["unsubscribed_partners"]] == [EMAILS[3]]
    assert [p["partner"] for p in data["bounced_partners"]] == [EMAILS[2]]
    assert data["bounced_partners"][0]["name"] == "Priya Shah"
    assert [r["partner"] for r in data["replies"] if r["kind"] == "reply"] == [EMAILS[0], EMAILS[5]]


def test_report_unknown_campaign_and_empty_database(ws: Workspace):
    bad = ws.cli("report", "nope")
    assert bad.exit_code == 2 and "no campaign named 'nope'" in bad.output
    out = ok(ws.cli("report", "checkin"))  # configured, nothing sent yet
    assert "Audience               0" in out and "Nothing sent yet." in out
    html_file = ws.root / "empty.html"
    ok(ws.cli("report", "checkin", "--html", str(html_file)))
    page = html_file.read_text(encoding="utf-8")
    assert "No messages sent yet." in page and "Nothing sent yet." in page


# --------------------------------------------------------------------------- HTML file


class Dom(HTMLParser):
    """Elements by tag, with their attributes; text of the whole page."""

    def __init__(self) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str | None], list[str]]] = []
        self.stack: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs), list(self.stack)))
        if tag not in ("meta", "br", "img", "link", "input", "line", "rect"):
            self.stack.append(f"{tag}#{dict(attrs).get('id', '')}")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs), list(self.stack)))

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i].split("#")[0] == tag:
                del self.stack[i:]
                break

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def inside(self, tag: str, container: str) -> list[dict[str, str | None]]:
        return [a for t, a, stack in self.elements if t == tag and container in stack]


def parse(page: str) -> Dom:
    dom = Dom()
    dom.feed(page)
    return dom


def test_html_report_is_self_contained_and_escaped(world: World):
    target = world.ws.root / "out" / "checkin.html"
    target.parent.mkdir()
    result = world.ws.cli("report", "checkin", "--html", str(target))
    assert result.exit_code == 0 and "Audience" in result.stdout
    page = target.read_text(encoding="utf-8")
    dom = parse(page)
    tags = {t for t, _, _ in dom.elements}
    assert "script" not in tags and "link" not in tags and "img" not in tags
    assert "iframe" not in tags and "object" not in tags
    for _, attrs, _ in dom.elements:
        for name, value in attrs.items():
            assert not (name in ("src", "href") and value), (name, value)
            assert "http:" not in (value or "") and "https:" not in (value or "")
    assert "@import" not in page and "url(" not in page
    # the partner's words, escaped: shown as text, never as markup
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert ENGLISH in "".join(dom.text)
    assert "María González" in page and "🎉" in page and "Fjord &amp; Co" in page
    assert len(dom.inside("rect", "svg#chart-funnel")) >= 6
    assert len(dom.inside("rect", "svg#chart-replies")) >= 2


def test_html_escapes_everything_from_partners():
    evil = "<img src=x onerror=alert(1)>\"'&"
    report = CampaignReport(
        campaign="c<1>",
        audience=1,
        sent=1,
        messages_sent=1,
        replied=1,
        auto_replied=0,
        bounced=0,
        unsubscribed=0,
        failed=0,
        pending=0,
        reply_rate=1.0,
        median_hours_to_reply=2.0,
        steps=[StepFunnel(1, 1, 1, 0, 0)],
        replies=[
            ReportReply(
                1,
                datetime(2026, 1, 2, tzinfo=UTC),
                f"x{evil}@y.test",
                evil,
                evil,
                1,
                "reply",
                evil,
                False,
            )
        ],
        sent_days={date(2026, 1, 1): 1},
    )
    page = render_html(report, ZoneInfo("UTC"), datetime(2026, 1, 3, tzinfo=UTC))
    dom = parse(page)
    assert not [t for t, _, _ in dom.elements if t in ("img", "script")]
    assert not any(k.startswith("on") for _, a, _ in dom.elements for k in a)
    assert "c&lt;1&gt;" in page


# --------------------------------------------------------------------------- headless Chromium


def chromium_binary() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    # Never a skip: like Postfix and Dovecot, the browser is installed by scripts/test
    # (as root, with apt); a missing one is a missing install step.
    pytest.fail("chromium is not installed (scripts/test installs it as root, with apt)")


def run_chromium(page: Path, *extra: str) -> tuple[str, list[str]]:
    """(the DOM after load, console lines); a fresh empty profile per run."""
    binary = chromium_binary()
    with tempfile.TemporaryDirectory(prefix="outreach-chromium-") as profile:
        proc = subprocess.run(
            [
                binary,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={profile}",
                "--enable-logging=stderr",
                "--v=0",
                *extra,
                page.resolve().as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=90,
            stdin=subprocess.DEVNULL,
        )
    assert proc.returncode == 0, proc.stderr[-3000:]
    console = [
        line for line in proc.stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line
    ]
    return proc.stdout, console


def test_the_console_check_can_fail(tmp_path: Path):
    """The harness sees a broken page: otherwise 'no console errors' would prove nothing."""
    broken = tmp_path / "broken.html"
    broken.write_text("<!DOCTYPE html><p>x</p><script>throw new Error('boom')</script>")
    dom, console = run_chromium(broken, "--dump-dom")
    assert "<p>x</p>" in dom
    assert any("Uncaught Error: boom" in line for line in console), console


def test_html_report_in_headless_chromium(world: World):
    target = world.ws.root / "checkin.html"
    ok(world.ws.cli("report", "checkin", "--html", str(target)))
    dom_text, console = run_chromium(target, "--dump-dom")
    assert console == []
    dom = parse(dom_text)
    titles = [t for t, _, _ in dom.elements if t == "title"]
    assert titles and "Campaign report: checkin" in "".join(dom.text)
    assert len(dom.inside("rect", "svg#chart-funnel")) >= 6  # sent and replied per step
    bars = [a for a in dom.inside("rect", "svg#chart-replies") if a.get("class") == "bar"]
    assert len(bars) >= 6 and sum(float(a["height"] or 0) > 0 for a in bars) == 2
    assert "script" not in {t for t, _, _ in dom.elements}  # the reply stayed text
    assert "<script>alert('x')</script>" in "".join(dom.text)
    departed = "".join(dom.text).split("Unsubscribed and bounced (2)", 1)[1]
    assert "Sam Lee" in departed and "asked to stop" in departed
    assert "Priya Shah" in departed and "bounced" in departed
    assert len(dom.inside("tr", "table#departed")) == 3
    shot = world.ws.root / "shot.png"
    run_chromium(target, f"--screenshot={shot}", "--window-size=1000,1600")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 30_000


# --------------------------------------------------------------------------- pure parts


def test_format_hours():
    assert format_hours(None) == "-"
    assert format_hours(0.5) == "30 min"
    assert format_hours(5.25) == "5 h 15 min"
    assert format_hours(30.5) == "30 h"
    assert format_hours(54) == "2 d 6 h"


def test_day_buckets_fill_gaps_and_switch_to_weeks():
    days = day_buckets(date(2026, 1, 1), date(2026, 1, 4), {date(2026, 1, 3): 2})
    assert days == [(date(2026, 1, d), 2 if d == 3 else 0) for d in range(1, 5)]
    weeks = day_buckets(
        date(2026, 1, 1),
        date(2026, 12, 31),
        {date(2026, 1, 1): 1, date(2026, 1, 2): 1, date(2026, 6, 1): 3},
    )
    assert len(weeks) <= 54 and weeks[0] == (date(2025, 12, 29), 2)
    assert sum(n for _, n in weeks) == 5
