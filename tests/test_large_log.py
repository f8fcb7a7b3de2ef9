"""Every response-log command answers completely on a log of more than 10,000 events, and
shows progress only when stderr is a terminal. How fast they answer is measured in
benchmarks/views.py (against a raw read of the same database), not here: a timed test fails
on a busy machine and proves nothing on an idle one.

The log is built with the store API (what the worker calls), not by hand-written SQL, and
faster than real cycles would: 3,000 partners, three steps for some (each deferred once),
replies, auto-replies, bounces, unsubscribes.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from workspace import Workspace

from outreach.cli import cli
from outreach.core.model import Partner
from outreach.store import Store

PARTNERS = 3000
# the response-log commands a coordinator runs (benchmarks/views.py times the same)
COMMANDS: list[tuple[str, ...]] = [
    ("log",),
    ("log", "--json"),
    ("log", "--partner", "p00042@org42.test"),
    ("log", "--campaign", "checkin", "--since", "2026-03-03"),
    ("replies",),
    ("replies", "--unhandled", "--json"),
    ("report", "checkin"),
    ("partners", "list"),
    ("partners", "list", "--json"),
    ("partners", "list", "--stale", "90d"),
    ("export", "events", "--format", "csv"),
    ("export", "events", "--format", "jsonl"),
    ("export", "replies", "--format", "json"),
    ("export", "partners", "--format", "csv"),
]


def build_large_log(store: Store, start: datetime) -> None:
    partners = [
        Partner(
            email=f"p{i:05d}@org{i % 97}.test",
            name=f"Partnér {i} Ñandú",
            organization=f"Org {i % 97} & Sons",
        )
        for i in range(PARTNERS)
    ]
    store.upsert_partners(partners, start)
    ids = {p.email: p.id for p in store.partners()}
    with store.write():
        for n, partner in enumerate(partners):
            pid = ids[partner.email]
            assert pid is not None
            moment = start + timedelta(minutes=n % 600)
            steps = 3 if n % 5 == 0 else 1
            for step in range(1, steps + 1):
                sent_at = moment + timedelta(days=2 * (step - 1))
                ledger_id = store.queue_message(
                    campaign="checkin",
                    partner_id=pid,
                    step=step,
                    account="default",
                    message_id=f"<m{n}.{step}@district.test>",
                    to_addr=partner.email,
                    subject=f"Check-in {step}",
                    raw=b"x",
                    now=sent_at,
                )
                assert ledger_id is not None
                row = store.ledger_row(ledger_id)
                if steps == 3:  # a greylisting server: deferred once, then sent
                    store.mark_deferred(
                        row,
                        sent_at - timedelta(minutes=10),
                        sent_at,
                        451,
                        "4.7.1 greylisted, try again later",
                    )
                store.mark_sent(row, sent_at)
            kind = {0: "reply", 1: "auto_reply", 2: "bounce", 3: "unsubscribe"}.get(n % 6)
            if kind is None:
                continue
            at = moment + timedelta(hours=5 + n % 300)
            inbound_id = store.record_inbound(
                {
                    "account": "default",
                    "folder": "INBOX",
                    "uidvalidity": 1,
                    "uid": n + 1,
                    "message_id": f"r{n}@org.test",
                    "from_addr": partner.email,
                    "subject": "Re: Check-in",
                    "date": at.isoformat(),
                    "kind": kind,
                    "partner_id": pid,
                    "campaign": "checkin",
                    "step": 1,
                    "text": f"Respuesta {n}: ¡gracias! 🎉 =SUM(A1)" if kind == "reply" else None,
                    "processed_at": at.isoformat(),
                    "handled_at": None if kind == "reply" else at.isoformat(),
                }
            )
            store.add_event(
                kind,
                at,
                partner_id=pid,
                campaign="checkin",
                step=1,
                inbound_id=inbound_id,
                summary=f"{kind} {n}",
            )
            if kind == "reply":
                store.set_sequence_state("checkin", pid, "replied", at)
                store.add_event(
                    "stopped",
                    at,
                    partner_id=pid,
                    campaign="checkin",
                    inbound_id=inbound_id,
                    summary="follow-ups stopped",
                )


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workspace]:
    ws = Workspace(tmp_path_factory.mktemp("big"), smtp_port=2525)
    build_large_log(ws.store, datetime(2026, 3, 2, 14, 0, tzinfo=UTC))
    ws.close()
    yield ws


def run(ws: Workspace, *args: str) -> str:
    result = ws.cli(*args)
    assert result.exit_code == 0, (args, result.output[-2000:], result.exception)
    return result.stdout


def test_the_log_has_more_than_10k_events(big: Workspace):
    with Store(big.root / "outreach.db") as store:
        assert store.scalar("SELECT count(*) FROM events") > 10_000


@pytest.mark.parametrize("args", COMMANDS, ids=" ".join)
def test_commands_answer_on_a_large_log(big: Workspace, args: tuple[str, ...]):
    assert run(big, *args).strip()


def test_html_report_on_a_large_log(big: Workspace):
    target = big.root / "big.html"
    run(big, "report", "checkin", "--html", str(target))
    page = target.read_text(encoding="utf-8")
    assert page.count('class="reply"') == 500 + 500  # replies and auto-replies shown
    assert 'id="chart-replies"' in page and 'id="chart-funnel"' in page


def test_big_outputs_are_complete(big: Workspace):
    events = [
        json.loads(line) for line in run(big, "export", "events", "--format", "jsonl").splitlines()
    ]
    assert len(events) > 10_000 and events[0]["at"] <= events[-1]["at"]
    rows = list(
        csv.DictReader(
            io.StringIO(run(big, "export", "replies", "--format", "csv").lstrip("\ufeff"))
        )
    )
    assert len(rows) == 2000
    replies = [r for r in rows if r["kind"] == "reply"]
    assert replies[0]["text"].startswith("Respuesta") and "🎉" in replies[0]["text"]
    report = json.loads(run(big, "report", "checkin", "--json"))
    assert report["sent"] == PARTNERS and report["replied"] == 500
    assert report["sent_per_step"] == {"1": PARTNERS, "2": 600, "3": 600}


def test_progress_only_on_a_terminal(
    big: Workspace, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    copy = tmp_path / "copy"
    shutil.copytree(big.root, copy)  # this test imports partners: keep the shared log as is
    runner = CliRunner()
    config = ["--config", str(copy / "config.toml")]
    quiet = runner.invoke(cli, [*config, "export", "events", "-o", str(tmp_path / "a.jsonl")])
    assert quiet.exit_code == 0 and "exporting" not in quiet.stderr
    monkeypatch.setattr("outreach.cli.progress._stderr_is_tty", lambda: True)
    loud = runner.invoke(cli, [*config, "export", "events", "--format", "jsonl"])
    assert loud.exit_code == 0 and "exporting events" in loud.stderr
    assert all(json.loads(line) for line in loud.stdout.splitlines())  # stdout stays clean
    report = runner.invoke(cli, [*config, "report", "checkin", "--html", str(tmp_path / "r.html")])
    assert report.exit_code == 0 and "writing the report" in report.stderr
    roster = tmp_path / "roster.csv"
    roster.write_text(
        "email,name\n" + "".join(f"n{i}@new.test,Nuevo {i}\n" for i in range(600)), encoding="utf-8"
    )
    imported = runner.invoke(cli, [*config, "partners", "import", str(roster)])
    assert imported.exit_code == 0, imported.output
    assert "importing" in imported.stderr and "600 new" in imported.stdout
