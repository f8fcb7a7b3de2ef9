"""`outreach demo`: the whole loop on mail servers that live on this computer, in well under
a minute, with no account and no setup.

In a temporary folder it starts an SMTP server (aiosmtpd, in this process) and an IMAP
server (pymap, a child process) on 127.0.0.1, writes a config, a roster and a check-in
campaign with a short follow-up delay, and starts the real worker exactly as a user would:
`python -m outreach --config FOLDER/config.toml run --log-json` (a child process). Only the
servers are local. The partners are simulated at the SMTP server: when a check-in reaches
them, some answer in their own words, one is out of office, one address bounces (a DSN),
one asks to be removed and some stay silent, then get the follow-up. Their mail is put in
the coordinator's IMAP mailbox, where the worker reads it. At the end the worker is stopped
with SIGTERM and the response log (`outreach log`) is printed.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import secrets
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import click

from outreach.core.errors import InputError, OutreachError
from outreach.store import Store, queries
from outreach.testing import partner_mail
from outreach.testing.imap_server import LocalIMAPServer
from outreach.testing.smtp_server import LocalSMTPServer, ReceivedMessage

COORDINATOR = "jordan.lee@district.test"
PASSWORD_ENV = "OUTREACH_DEMO_IMAP_PASSWORD"
FOLLOW_UP_AFTER = 8  # seconds between the check-in and the follow-up
DEADLINE = 50.0  # seconds: the demo gives up waiting for the partners after this


@dataclass(frozen=True)
class Persona:
    email: str
    name: str
    first_name: str
    organization: str
    industry: str
    pathway: str
    does: str  # reply / away / bounce / remove / late (answers the follow-up) / silent
    words: str = ""
    delay: float = 1.0  # seconds between our message reaching them and their answer


PERSONAS = (
    Persona(
        "maria.gonzalez@mercyhealth.example",
        "María González",
        "María",
        "Mercy Health",
        "Healthcare",
        "Health Science",
        "reply",
        "Hi Jordan,\n\nIt has been a big year: we opened a night clinic and hired three of "
        "your graduates as medical assistants. Telehealth is here to stay, so students who "
        "are at ease with video visits stand out.\n\nWe would love to host two interns again "
        "this spring.",
        2.0,
    ),
    Persona(
        "dan.oconnor@buildright.example",
        "Dan O'Connor",
        "Dan",
        "BuildRight Construction",
        "Construction",
        "Architecture & Construction",
        "away",
        delay=0.8,
    ),
    Persona(
        "priya.shah@netforge.example",
        "Priya Shah",
        "Priya",
        "NetForge IT",
        "Information Technology",
        "IT & Cybersecurity",
        "reply",
        "Thanks for checking in! Most of our team is hybrid now and we rely on cloud tools "
        "far more than before. Security awareness is the one skill we wish every new hire "
        "had. Happy to visit your cyber class again.",
        3.0,
    ),
    Persona(
        "sam.lee@bistro21.example",
        "Sam Lee",
        "Sam",
        "Bistro 21",
        "Hospitality",
        "Culinary Arts",
        "remove",
        delay=2.5,
    ),
    Persona(
        "zoe.angstrom@nordlys-design.example",
        "Zoë Ångström",
        "Zoë",
        "Nordlys Design Studio",
        "Design",
        "Arts & Communication",
        "reply",
        "Hej Jordan! We moved to a four-day week and it works for us. Our interns now do "
        "real client work from the first week, which they love.",
        4.0,
    ),
    Persona(
        "jose@nunez-auto.example",
        "José Núñez",
        "José",
        "Núñez Auto Repair",
        "Automotive",
        "Transportation",
        "bounce",
        delay=0.5,
    ),
    Persona(
        "chloe.dubois@boulangerie-dubois.example",
        "Chloé Dubois",
        "Chloé",
        "Boulangerie Dubois",
        "Food Service",
        "Culinary Arts",
        "late",
        "Sorry for the slow answer, December is our busiest month! We started taking "
        "orders online this year and need people who can run that side. Yes, we can take "
        "one intern in January.",
        1.5,
    ),
    Persona(
        "kwame.mensah@riverside-logistics.example",
        "Kwame Mensah",
        "Kwame",
        "Riverside Logistics",
        "Logistics",
        "Transportation",
        "silent",
    ),
    Persona(
        "lukasz.wisniewski@stal-works.example",
        "Łukasz Wiśniewski",
        "Łukasz",
        "Stal Works",
        "Manufacturing",
        "Advanced Manufacturing",
        "silent",
    ),
)

# (event kind, step) each persona must have in the log before the demo ends
EXPECTED: dict[str, tuple[tuple[str, int | None], ...]] = {
    "reply": (("reply", None),),
    "away": (("auto_reply", None),),
    "bounce": (("bounce", None),),
    "remove": (("unsubscribe", None),),
    "late": (("sent", 2), ("reply", None)),
    "silent": (("sent", 2),),
}

CAMPAIGN = f"""\
# The demo's check-in: a first message, then a follow-up {FOLLOW_UP_AFTER} seconds later (a
# real campaign would say after = "7d") for partners who have not answered.
description = "Check-in with industry partners (demo)"
account = "default"

[window]                   # a real campaign sends in office hours only
days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
hours = "00:00-24:00"

[[steps]]
template = "checkin"
subject = "{{{{ program }}}} check-in: how is {{{{ partner.organization }}}} doing?"

[[steps]]
template = "followup"
after = "{FOLLOW_UP_AFTER}s"
"""

CHECKIN = """\
Hello {{ partner.first_name or partner.name or "there" }},

Thank you for everything {{ partner.organization }} does for our {{ partner.pathway or "CTE" }}
students. We are checking in with our industry partners and would love to hear from you:
how has your workplace changed this year, and is there anything we can do to help?

A few sentences in reply to this email are perfect.

Thank you,
{{ coordinator }}
{{ program }}
"""

FOLLOWUP = """\
Hello {{ partner.first_name or partner.name or "there" }},

Just following up on my note: even a line or two on how things are going at
{{ partner.organization }} would mean a lot to our team.

Thank you,
{{ coordinator }}
"""


def config_text(smtp_port: int, imap_port: int) -> str:
    return textwrap.dedent(f"""\
        # Written by `outreach demo`: both mail servers run on this computer (127.0.0.1),
        # so security = "none" is allowed; a real account uses "tls" or "starttls".
        [outreach]
        database = "outreach.db"
        timezone = "America/Chicago"

        [template_vars]
        program = "Lincoln High CTE"
        coordinator = "Jordan Lee"

        [accounts.default]
        from = "Jordan Lee <{COORDINATOR}>"
        smtp = {{ host = "127.0.0.1", port = {smtp_port}, security = "none" }}
        imap = {{ host = "127.0.0.1", port = {imap_port}, security = "none", \
username = "{COORDINATOR}", password_env = "{PASSWORD_ENV}" }}

        [accounts.default.limits]
        jitter = "0s"

        [worker]                # a real worker: "2m" each
        poll_every = "1s"
        send_every = "1s"
        idle = true
        shutdown_timeout = "10s"
        """)


def roster_text() -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["email", "name", "first_name", "organization", "industry", "pathway", "tags"])
    for p in PERSONAS:
        writer.writerow(
            [p.email, p.name, p.first_name, p.organization, p.industry, p.pathway, "advisory"]
        )
    return out.getvalue()


def write_project(folder: Path, smtp_port: int, imap_port: int) -> Path:
    (folder / "campaigns").mkdir(parents=True, exist_ok=True)
    (folder / "templates").mkdir(exist_ok=True)
    (folder / "config.toml").write_text(config_text(smtp_port, imap_port), encoding="utf-8")
    (folder / "campaigns" / "checkin.toml").write_text(CAMPAIGN, encoding="utf-8")
    (folder / "templates" / "checkin.txt.j2").write_text(CHECKIN, encoding="utf-8")
    (folder / "templates" / "followup.txt.j2").write_text(FOLLOWUP, encoding="utf-8")
    (folder / "partners.csv").write_text(roster_text(), encoding="utf-8")
    return folder / "config.toml"


def first_line(text: str, limit: int = 70) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


class Demo:
    def __init__(
        self, folder: Path, echo: Callable[[str], None], outreach: click.Command | None = None
    ) -> None:
        self.folder = folder
        self.echo = echo
        self.outreach = outreach  # the `outreach` command group, to run commands in-process
        self.by_email = {p.email: p for p in PERSONAS}
        self.started = time.monotonic()
        self.lock = threading.Lock()
        self.timers: list[threading.Timer] = []
        self.received: dict[str, int] = {}
        self.smtp: LocalSMTPServer | None = None
        self.imap: LocalIMAPServer | None = None
        self.worker: subprocess.Popen[str] | None = None
        self.worker_log: IO[str] | None = None
        self.closing = False

    # ------------------------------------------------------------------ output

    def say(self, who: str, what: str) -> None:
        with self.lock:
            self.echo(f"{time.monotonic() - self.started:6.1f}s  {who:<8} {what}")

    def name(self, email: str) -> str:
        persona = self.by_email.get(email.lower())
        return persona.name if persona else email

    # ------------------------------------------------------------------ the partners

    def on_message(self, message: ReceivedMessage) -> None:
        """Called by the SMTP server for every message the worker sends."""
        for recipient in message.rcpt_tos:
            persona = self.by_email.get(recipient.lower())
            if persona is None:
                continue
            with self.lock:
                step = self.received[persona.email] = self.received.get(persona.email, 0) + 1
            delay, act = self.plan(persona, step, message.raw)
            timer = threading.Timer(delay, self.deliver, (act,))
            timer.daemon = True
            self.timers.append(timer)
            timer.start()

    def plan(self, persona: Persona, step: int, raw: bytes) -> tuple[float, Callable[[], None]]:
        """What the partner does, and after how many seconds."""
        today = datetime.now(UTC).date()
        if (persona.does, step) in (("reply", 1), ("late", 2)):

            def answer() -> None:
                signed = f"{persona.words}\n\n{persona.first_name}"
                self.imap_append(partner_mail.reply(raw, signed))
                self.say(
                    "partner", f"{persona.name} replies: \u201c{first_line(persona.words)}\u201d"
                )

            return persona.delay, answer
        if persona.does == "away" and step == 1:
            back = today + timedelta(days=6)

            def away() -> None:
                self.imap_append(partner_mail.out_of_office(raw, back))
                self.say(
                    "partner",
                    f"{persona.name}'s mailbox answers by itself: out of the "
                    f"office until {long_date(back)}",
                )

            return persona.delay, away
        if persona.does == "bounce" and step == 1:
            domain = persona.email.rpartition("@")[2]

            def bounce() -> None:
                self.imap_append(partner_mail.bounce(raw, reporting_mta=f"mx.{domain}"))
                self.say(
                    "mail",
                    f"{domain}'s mail server bounces the check-in to "
                    f"{persona.name}: 5.1.1 user unknown (a delivery status notification)",
                )

            return persona.delay, bounce
        if persona.does == "remove" and step == 1:

            def remove() -> None:
                self.imap_append(partner_mail.unsubscribe(raw))
                self.say(
                    "partner",
                    f"{persona.name} answers: \u201cPlease remove me from your mailing list.\u201d",
                )

            return persona.delay, remove
        # the others read it and stay silent (said a moment later, after the worker's line)
        text = (
            "gets the follow-up and stays silent"
            if step > 1
            else "reads it and does not answer (yet)"
        )
        return 0.4, lambda: self.say("partner", f"{persona.name} {text}")

    def deliver(self, act: Callable[[], None]) -> None:
        """A partner acts (in a timer thread); a failure is shown, never raised."""
        if self.closing:
            return
        try:
            act()
        except Exception as exc:  # noqa: BLE001 - the demo goes on and shows what went wrong
            self.say("demo", f"could not deliver a partner's mail: {type(exc).__name__}: {exc}")

    def imap_append(self, raw: bytes) -> None:
        if self.imap is not None and not self.closing:
            self.imap.append(raw)

    # ------------------------------------------------------------------ the worker

    def follow_worker(self, stream: IO[str]) -> None:
        """Print the worker's own log (JSON lines on its stderr) as it happens."""
        for line in stream:
            if self.worker_log is not None:
                self.worker_log.write(line)
                self.worker_log.flush()
            try:
                event = json.loads(line)
            except ValueError:
                if line.strip():
                    self.say("worker", line.rstrip())
                continue
            text = self.describe(event)
            if text:
                self.say("worker", text)

    def describe(self, event: dict[str, Any]) -> str | None:
        kind = event.get("event")
        message = str(event.get("message", ""))
        sender = message.split(" from ", 1)[1].split(" ", 1)[0] if " from " in message else ""
        if kind == "started":
            return "started: `outreach run` (reads mail every 1s and on IMAP IDLE, sends every 1s)"
        if kind == "sent":
            step = event.get("step")
            label = "check-in" if step == 1 else "follow-up"
            return f"sent the {label} (step {step}) to {self.name(str(event.get('to', '')))}"
        if kind == "reply":
            return (
                f"read {self.name(sender)}'s reply: follow-ups stopped, the answer waits for review"
            )
        if kind == "auto_reply":
            return f"read {self.name(sender)}'s auto-reply: follow-ups paused until they are back"
        if kind == "bounce":
            bounced = str(event.get("bounced") or "the address")
            return f"read a bounce: {bounced} is marked bounced, nothing more goes to it"
        if kind == "unsubscribe":
            return f"read {self.name(sender)}'s request: opted out of every campaign"
        if kind in ("stop", "stopped"):
            return message
        if event.get("level") in ("warning", "error"):
            return f"{event.get('level')}: {message}"
        return None

    def start_worker(self, config: Path, password: str) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        env[PASSWORD_ENV] = password
        env.pop("OUTREACH_CONFIG", None)
        self.worker_log = open(self.folder / "worker.log", "w", encoding="utf-8")  # noqa: SIM115
        self.worker = subprocess.Popen(
            [sys.executable, "-m", "outreach", "--config", str(config), "run", "--log-json"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            env=env,
            cwd=self.folder,
        )
        assert self.worker.stderr is not None
        threading.Thread(
            target=self.follow_worker,
            args=(self.worker.stderr,),
            name="demo-worker-log",
            daemon=True,
        ).start()

    def stop_worker(self) -> int | None:
        worker = self.worker
        if worker is None:
            return None
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(20)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait(5)
        time.sleep(0.1)  # let the log thread print the last lines
        return worker.returncode

    # ------------------------------------------------------------------ progress

    def missing(self) -> list[str]:
        """What the partners did that the log does not show yet."""
        database = self.folder / "outreach.db"
        try:
            with Store(database) as store:
                rows = queries.partner_event_kinds(store)
        except (OutreachError, sqlite3.Error):
            return ["(database not readable yet)"]
        seen = {(email, kind, step) for email, kind, step in rows}
        seen_any = {(email, kind) for email, kind, _step in rows}
        gaps = []
        for persona in PERSONAS:
            for kind, step in EXPECTED[persona.does]:
                found = (
                    (persona.email, kind) in seen_any
                    if step is None
                    else (persona.email, kind, step) in seen
                )
                if not found:
                    gaps.append(f"{persona.name}: {kind}" + (f" step {step}" if step else ""))
        return gaps

    # ------------------------------------------------------------------ the run

    def run(self, keep: bool) -> int:
        cli = self.outreach
        assert cli is not None, "the demo runs from the `outreach demo` command"
        password = secrets.token_urlsafe(12)
        self.smtp = LocalSMTPServer(on_message=self.on_message).start()
        self.imap = LocalIMAPServer(
            user=COORDINATOR, password=password, log_path=self.folder / "pymap.log"
        ).start()
        config = write_project(self.folder, self.smtp.port, self.imap.port)
        removed = "" if keep else "  (removed at the end; --keep DIR keeps it)"
        lines = [
            "outreach demo: the whole loop on mail servers running on this computer (nothing",
            "leaves it). The worker below is the real `outreach run`; only the servers are local.",
            "",
            f"  folder       {self.folder}{removed}",
            f"  SMTP server  127.0.0.1:{self.smtp.port}  (aiosmtpd: the partners' side)",
            f"  IMAP server  127.0.0.1:{self.imap.port}  (pymap: the mailbox of {COORDINATOR})",
            f"  campaign     checkin: a check-in, then a follow-up {FOLLOW_UP_AFTER}s later",
            "               for partners who have not answered",
            "",
        ]
        self.echo("\n".join(lines))
        invoke(
            cli, ["--config", str(config), "partners", "import", str(self.folder / "partners.csv")]
        )
        self.echo("")
        self.started = time.monotonic()
        self.start_worker(config, password)
        gaps = self.missing()
        while gaps and time.monotonic() - self.started < DEADLINE:
            if self.worker is not None and self.worker.poll() is not None:
                break
            time.sleep(0.3)
            gaps = self.missing()
        if gaps:
            self.say("demo", "still waiting for: " + "; ".join(gaps[:5]))
        self.say(
            "demo",
            "everything happened: stopping the worker (SIGTERM)"
            if not gaps
            else "stopping the worker (SIGTERM)",
        )
        code = self.stop_worker()
        self.close_servers()
        self.echo(f"\nThe response log (`outreach --config {config} log`):\n")
        invoke(cli, ["--config", str(config), "log"])
        ok = code == 0 and not gaps
        took = time.monotonic() - self.started
        lines = [
            "",
            f"{'Done' if ok else 'Finished with problems'} in {took:.0f}s; the worker exited "
            f"with code {code}.",
            "Try it on your own mailbox: `outreach init my-outreach`, put your servers in",
            "my-outreach/config.toml, then `outreach check` and `outreach run`.",
        ]
        self.echo("\n".join(lines))
        if keep:
            self.echo(
                textwrap.dedent(f"""
                The demo folder is kept: {self.folder}
                  outreach --config {config} status
                  outreach --config {config} replies
                  outreach --config {config} log --partner {PERSONAS[0].email}
                (its mail servers are gone, so `run` there cannot connect)""")
            )
        return 0 if ok else 1

    def close_servers(self) -> None:
        self.closing = True
        for timer in self.timers:
            timer.cancel()
        if self.smtp is not None:
            self.smtp.stop()
        if self.imap is not None:
            self.imap.stop()
        if self.worker_log is not None:
            self.worker_log.close()
            self.worker_log = None

    def close(self) -> None:
        """After an interruption: Ctrl-C reached the worker too (same process group), so it
        is already finishing its cycle; give it a moment before asking again."""
        if self.worker is not None and self.worker.poll() is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.worker.wait(3)
            self.stop_worker()
        self.close_servers()


def long_date(day: date) -> str:
    return f"{day.strftime('%A')} {day.strftime('%B')} {day.day}"


#: The width the demo's commands print for, terminal or pipe: the demo reads the same
#: pasted into an issue as on the screen it ran on.
DEMO_COLUMNS = "100"


def invoke(command: Any, args: list[str]) -> None:
    """Run an outreach command in this process, as `outreach ARGS` would, for a terminal
    DEMO_COLUMNS wide whatever stdout is."""
    columns = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = DEMO_COLUMNS
    try:
        command.main(args, prog_name="outreach", standalone_mode=False)
    except SystemExit as exc:
        if exc.code not in (0, None):
            raise
    finally:
        if columns is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = columns


def demo_folder(keep: Path | None) -> Path:
    if keep is None:
        return Path(tempfile.mkdtemp(prefix="outreach-demo-"))
    if keep.exists() and (not keep.is_dir() or any(keep.iterdir())):
        raise InputError(f"{keep}: not an empty folder", hint="name a new folder for --keep")
    keep.mkdir(parents=True, exist_ok=True)
    return keep.absolute()


def run_demo(
    keep: Path | None, echo: Callable[[str], None] = print, outreach: click.Command | None = None
) -> int:
    """The whole demo; `outreach` is the command group it runs `partners import` and `log`
    with (in this process, as `outreach ARGS` would)."""
    folder = demo_folder(keep)
    demo = Demo(folder, echo, outreach)
    try:
        return demo.run(keep is not None)
    finally:
        demo.close()
        if keep is None:
            shutil.rmtree(folder, ignore_errors=True)


def demo_command(echo: Callable[[str], None]) -> click.Command:
    """`outreach demo`, made for the CLI when it is run: cli/app.py registers it by name
    (OutreachGroup.lazy), so the local servers' libraries (aiosmtpd, pymap) load only for
    the demo, not at the start of every other command; and this module never imports the
    CLI. `echo` is the CLI's way to print."""

    @click.command("demo")
    @click.option(
        "--keep",
        metavar="DIR",
        type=click.Path(file_okay=False, path_type=Path),
        help="Keep the demo's folder (config, roster, database, logs) in DIR.",
    )
    @click.pass_context
    def demo(ctx: click.Context, keep: Path | None) -> None:
        """See the whole loop work in under a minute, with no account and no setup.

        Starts an SMTP and an IMAP server on this computer, a sample roster and a check-in
        campaign, and the real worker; simulated partners reply, go out of office, bounce, ask
        to be removed or stay silent and get the follow-up. Ends with the response log."""
        code = run_demo(keep, echo=echo, outreach=ctx.find_root().command)
        if code:
            sys.exit(code)

    return demo
