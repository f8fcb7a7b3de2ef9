"""`outreach run` without --once: the long-running worker.

One cycle at start, then a `schedule.Scheduler` instance wakes the reader every `poll_every`
and the sender every `send_every`. schedule only decides when to wake up: it keeps no state
and skips missed runs, so what is due is computed afresh from the database at every wake-up,
and each job runs behind its own guard (schedule lets job exceptions escape).

- IMAP IDLE (RFC 2177), when enabled and offered, runs in a thread with its own connection
  and wakes the reader early. The database is only ever used from the main thread.
- SIGTERM / SIGINT: the current cycle stops between two messages (`should_stop`), bounded by
  `shutdown_timeout`, and the worker exits 0. A second signal exits at once; SQLite
  transactions keep the database whole, and a message caught between claim and result is
  reported `unknown` at the next start, never resent blindly.
- A mail server that is down or answers 4xx is logged and retried at later ticks with an
  exponential backoff; refused credentials or a broken config stop the worker (exit 1 / 2).
- SIGHUP, or a changed file seen at a cycle, reloads config.toml, campaigns and templates
  after checking them; a broken edit is reported and the last good version keeps running.
  The templates in use are a private copy, so an edit can never reach a running worker
  unchecked. What the worker is built around (the database, the campaign and template
  folders, [worker], IMAP IDLE's connections) changes at the next start; a reload says so.
- A heartbeat in the `worker` table feeds `outreach status`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import schedule

from outreach.config import campaign_files, key_location, load_campaigns, load_config
from outreach.core.durations import format_duration
from outreach.core.errors import (
    AuthenticationError,
    ConfigError,
    DamagedDatabaseError,
    InputError,
    MailServerError,
    OutreachError,
    Problems,
)
from outreach.core.model import Campaign, Partner, PartnerStatus
from outreach.core.settings import Account, Config, ServerSettings
from outreach.engine.credentials import Logins
from outreach.logs import log_event
from outreach.store import Store, database_errors, iso

if TYPE_CHECKING:
    from outreach.engine.ingest import ReadReport
    from outreach.engine.sending import SendReport
    from outreach.engine.worker import Worker

# Events (see logs.log_event) that mean a mail server could not be used: back off.
SERVER_TROUBLE = frozenset({"smtp_error", "imap_error"})
BACKOFF_CAP = timedelta(minutes=15)
IDLE_CHUNK = 60.0  # seconds per IDLE command; RFC 2177 asks for a new one within 29 minutes
RENDER_CHECK_PARTNERS = 200  # partners per campaign a reload renders for before accepting it


# --------------------------------------------------------------------------- pure helpers


def backoff_delay(
    interval: float, failures: int, cap: float = BACKOFF_CAP.total_seconds()
) -> float:
    """Seconds to wait after `failures` failures in a row: the interval, doubled each time,
    at most `cap` (or the interval itself when that is longer)."""
    if failures <= 0:
        return 0.0
    return float(min(interval * 2.0 ** (failures - 1), max(cap, interval)))


def every_seconds(delta: timedelta) -> int:
    """schedule counts whole seconds."""
    return max(1, round(delta.total_seconds()))


def idle_enabled(config: Config, account: Account) -> bool:
    return account.imap is not None and (config.worker.idle or account.imap.idle)


@dataclass
class Backoff:
    """When a job may run again after failures (monotonic seconds)."""

    interval: float
    failures: int = 0
    not_before: float = 0.0

    def ready(self, now: float) -> bool:
        return now >= self.not_before

    def failed(self, now: float) -> float:
        self.failures += 1
        delay = backoff_delay(self.interval, self.failures)
        self.not_before = now + delay
        return delay

    def succeeded(self) -> bool:
        """Reset; True when this ends a run of failures."""
        recovered = self.failures > 0
        self.failures = 0
        self.not_before = 0.0
        return recovered


class EventTap(logging.Filter):
    """Sees every event the worker logs, so a job can tell an outage from a partner's
    problem without the engine returning anything new."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[tuple[str, int, str]] = []

    def filter(self, record: logging.LogRecord) -> bool:
        self.events.append(
            (getattr(record, "event", "") or "", record.levelno, record.getMessage())
        )
        return True

    def take(self) -> list[tuple[str, int, str]]:
        events, self.events = self.events, []
        return events


def record_once(store: Store, read: ReadReport, sent: SendReport, now: datetime) -> None:
    """Heartbeat of `outreach run --once` (cron), so `outreach status` shows it too."""
    values: dict[str, Any] = {"heartbeat_at": iso(now), "last_cycle_at": iso(now)}
    if not read.errors:
        values["last_read_at"] = iso(now)
    if not sent.errors:
        values["last_send_at"] = iso(now)
    errors = read.errors + sent.errors
    if errors:
        values.update(last_error=errors[-1][:500], last_error_at=iso(now))
    store.update_worker(**values)


# --------------------------------------------------------------------------- campaigns & templates


def fingerprint(config: Config) -> tuple[tuple[str, int, int], ...]:
    """What changed on disk: (path, mtime, size) of config.toml, every campaign file and
    template."""
    paths = [config.path, *campaign_files(config)]
    if config.templates_dir.is_dir():
        paths += [p for p in config.templates_dir.rglob("*") if p.is_file()]
    found = []
    for path in sorted(paths):
        try:
            stat = path.stat()
        except OSError:
            continue
        found.append((str(path), stat.st_mtime_ns, stat.st_size))
    return tuple(found)


def render_check(
    config: Config, campaign: Campaign, partners: list[Partner]
) -> tuple[list[str], list[str]]:
    """Render every step for (up to RENDER_CHECK_PARTNERS of) the campaign's partners, or a
    sample partner when it has none: (problems, warnings). A template that fails for every
    partner is broken (a problem); one that fails for some is their data (a warning)."""
    from outreach.config.templates import renderer_for
    from outreach.core.plan import audience_or_sample, preview_account
    from outreach.core.render import render_sequence
    from outreach.engine.checks import render_problems
    from outreach.engine.message_ids import new_message_id

    audience, _sample = audience_or_sample(campaign.audience, partners, RENDER_CHECK_PARTNERS)
    renderer = renderer_for(config)
    now = datetime.now(UTC)
    failing = []
    for partner in audience:
        account = preview_account(config.accounts, campaign, partner)
        try:
            render_sequence(renderer, campaign, partner, account, now, new_message_id)
        except OutreachError:
            failing.append(partner)
    if not failing:
        return [], []
    found = render_problems(config, campaign, failing, renderer)  # knows what ran out of time
    return (found, []) if len(failing) == len(audience) else ([], found)


def live_config(started: Config, fresh: Config) -> tuple[Config, list[str]]:
    """config.toml as reloaded, less what only a restart changes (the worker was set up
    with it: its database, the folders it watches, [worker], IMAP IDLE's connections),
    and the keys among those that were edited."""
    held = [
        key
        for key, before, after in (
            ("outreach.database", started.database, fresh.database),
            ("outreach.campaigns", started.campaigns_dir, fresh.campaigns_dir),
            ("outreach.templates", started.templates_dir, fresh.templates_dir),
            ("[worker]", started.worker, fresh.worker),
        )
        if before != after
    ]
    for name, account in started.accounts.items():
        edited = fresh.accounts.get(name)
        if idle_enabled(started, account) and (edited is None or edited.imap != account.imap):
            held.append(f"accounts.{name}.imap (for IMAP IDLE; reading uses the new one)")
    live = replace(
        fresh,
        database=started.database,
        campaigns_dir=started.campaigns_dir,
        templates_dir=started.templates_dir,
        worker=started.worker,
    )
    return live, held


def _password_envs(config: Config) -> list[tuple[ServerSettings, str]]:
    return [
        (settings, settings.password_env)
        for account in config.accounts.values()
        for settings in (account.smtp, account.imap)
        if settings is not None and settings.password_env
    ]


def unset_password_envs(started: Config, fresh: Config) -> list[str]:
    """Each password_env a reload newly names that this process does not have: a reload
    cannot add a variable to the worker's environment, and the first send or read would
    stop the worker."""
    before = {name for _, name in _password_envs(started)}
    return [
        f"{key_location(settings.source, settings.key_path + '.password_env')}: the "
        f"environment variable {name} is not set for the running worker (set it, then restart)"
        for settings, name in _password_envs(fresh)
        if name not in os.environ and name not in before
    ]


class CampaignFiles:
    """The config, campaigns and templates the worker runs with: always the last version
    that passed the checks. Templates are used from a private copy made before checking."""

    def __init__(self, config: Config, store: Store) -> None:
        self.started = config  # where to look, and what a reload may change (live_config)
        self.held: list[str] = []  # edited keys that wait for a restart (see live_config)
        self.store = store
        self.root = Path(tempfile.mkdtemp(prefix="outreach-templates-"))
        self.current: Path | None = None
        self.warnings: list[str] = []
        self.seen: tuple[tuple[str, int, int], ...] | None = None
        self._versions = 0

    def changed(self) -> bool:
        return fingerprint(self.started) != self.seen

    def load(self) -> tuple[Config, list[Campaign]]:
        """Copy, check and return config.toml, the campaigns and templates on disk now;
        Problems if they do not pass (the current version is kept). Partners whose own data
        does not render (a missing field) are only `warnings`: they are reported at each send
        and must not hold back everyone else."""
        from outreach.engine.checks import template_syntax_problems

        self.seen = fingerprint(self.started)
        try:
            config, held = live_config(self.started, load_config(self.started.path))
        except ConfigError as exc:  # unreadable, or not TOML (Problems: everything else)
            raise Problems([str(exc)]) from exc
        unset = unset_password_envs(self.started, config)
        if unset:
            raise Problems(unset)
        self._versions += 1
        copy = self.root / f"v{self._versions}"
        real = str(self.started.templates_dir)
        self.warnings = []
        try:
            if self.started.templates_dir.is_dir():
                shutil.copytree(self.started.templates_dir, copy)
            else:
                copy.mkdir()
            candidate = replace(config, templates_dir=copy)
            problems = template_syntax_problems(candidate)
            campaigns: list[Campaign] = []
            try:
                campaigns = load_campaigns(candidate)
            except Problems as exc:
                problems += exc.problems
            except ConfigError as exc:
                problems.append(str(exc))
            if not problems:
                partners = self.store.partners(status=PartnerStatus.ACTIVE)
                for campaign in campaigns:
                    blocking, warnings = render_check(candidate, campaign, partners)
                    problems += blocking
                    self.warnings += [w.replace(str(copy), real) for w in warnings]
            if problems:
                raise Problems([p.replace(str(copy), real) for p in problems])
        except BaseException:
            shutil.rmtree(copy, ignore_errors=True)
            raise
        if self.current is not None:
            shutil.rmtree(self.current, ignore_errors=True)
        self.current = copy
        self.held = held
        return candidate, campaigns

    def cleanup(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


# --------------------------------------------------------------------------- IMAP IDLE


class IdleWatcher(threading.Thread):
    """Waits in IMAP IDLE on its own connection and calls `on_news` when mail arrives.

    It never touches the database. Without IDLE support it says so once and ends (the
    reader still polls); a dropped connection is retried with a backoff."""

    def __init__(
        self,
        account: Account,
        on_news: Callable[[], None],
        stop: threading.Event,
        logger: logging.Logger,
        poll_every: float,
        logins: Logins,
    ) -> None:
        super().__init__(name=f"outreach-idle-{account.name}", daemon=True)
        self.account = account
        self.on_news = on_news
        self.stop = stop
        self.log = logger
        self.retry = Backoff(interval=min(poll_every, 30.0))
        self.logins = logins

    def run(self) -> None:
        from outreach.transport.imap import Mailbox

        settings = self.account.imap
        assert settings is not None
        while not self.stop.is_set():
            try:
                with Mailbox(settings, self.logins.for_server(self.account, settings)) as mailbox:
                    if "IDLE" not in {c.upper() for c in mailbox.capabilities()}:
                        log_event(
                            self.log,
                            "idle",
                            f"{settings.address} does not offer IMAP "
                            "IDLE; the mailbox is polled instead",
                            account=self.account.name,
                        )
                        return
                    mailbox.select_readonly(settings.folder)
                    self.retry.succeeded()
                    said = False

                    def waiting() -> None:  # once the server has accepted IDLE
                        nonlocal said
                        if not said:
                            said = True
                            log_event(
                                self.log,
                                "idle",
                                f"waiting for new mail in "
                                f"{self.account.name}/{settings.folder} (IMAP IDLE)",
                                logging.DEBUG,
                                account=self.account.name,
                            )

                    while not self.stop.is_set():
                        if mailbox.idle_wait(IDLE_CHUNK, waiting) and not self.stop.is_set():
                            self.on_news()
            except AuthenticationError:
                return  # the reader reports it (the worker stops only if every mailbox refuses)
            except (MailServerError, ConfigError) as exc:
                # also SignInNeeded: the reader says so; IDLE tries again with a backoff
                if self.stop.is_set():
                    return
                delay = self.retry.failed(time.monotonic())
                log_event(
                    self.log,
                    "idle",
                    f"IMAP IDLE interrupted ({exc}); again in {delay:.0f}s",
                    logging.DEBUG,
                    account=self.account.name,
                )
                self.stop.wait(delay)
            except Exception as exc:  # noqa: BLE001 - IDLE is an optimisation; polling goes on
                log_event(
                    self.log,
                    "idle",
                    f"IMAP IDLE stopped: {type(exc).__name__}: {exc}",
                    logging.WARNING,
                    account=self.account.name,
                )
                return


# --------------------------------------------------------------------------- the service


class Service:
    def __init__(self, config: Config, worker: Worker, logger: logging.Logger) -> None:
        self.worker = worker
        self.store = worker.store
        self.log = logger
        self.config = config
        self.settings = self.config.worker
        self.files = CampaignFiles(self.config, self.store)
        self.tap = EventTap()
        self.stopping = False
        self.stop_signal: int | None = None
        self.reload_requested = False
        self.read_requested = False
        self.fatal: OutreachError | None = None
        self.poll = every_seconds(self.settings.poll_every)
        self.send = every_seconds(self.settings.send_every)
        self.backoffs = {
            "read": Backoff(float(self.poll)),
            "send": Backoff(float(self.send)),
            "digest": Backoff(float(max(self.send, 60))),
        }
        self.idle_stop = threading.Event()
        self.watchers: list[IdleWatcher] = []
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._timer: threading.Timer | None = None
        self._previous_handlers: dict[int, Any] = {}
        worker.should_stop = lambda: self.stopping

    # ------------------------------------------------------------------ signals

    def install_signals(self) -> None:
        for signum, handler in (
            (signal.SIGTERM, self._on_stop),
            (signal.SIGINT, self._on_stop),
            (signal.SIGHUP, self._on_reload),
        ):
            self._previous_handlers[signum] = signal.signal(signum, handler)

    def restore_signals(self) -> None:
        for signum, handler in self._previous_handlers.items():
            signal.signal(signum, handler)
        self._previous_handlers.clear()

    def _on_stop(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.stopping and self.fatal is None:
            log_event(self.log, "stop", f"{name} again: stopping at once", logging.WARNING)
            self._exit_now(128 + signum)
        self.stopping = True
        self.stop_signal = signum
        timeout = self.settings.shutdown_timeout
        log_event(
            self.log,
            "stop",
            f"{name}: finishing the current cycle (at most "
            f"{format_duration(timeout)}); send it again to stop at once",
            signal=name,
        )
        self._timer = threading.Timer(timeout.total_seconds(), self._timeout)
        self._timer.daemon = True
        self._timer.start()
        self.wake()

    def _on_reload(self, signum: int, frame: FrameType | None) -> None:
        self.reload_requested = True
        self.wake()

    def _timeout(self) -> None:
        log_event(
            self.log,
            "stop",
            f"the cycle did not finish within shutdown_timeout "
            f"({format_duration(self.settings.shutdown_timeout)}): stopping now",
            logging.ERROR,
        )
        self._exit_now(1)

    def _exit_now(self, code: int) -> None:
        """Leave without unwinding: the database is safe (every write is one SQLite
        transaction) and the kernel releases the worker lock."""
        for handler in self.log.handlers:
            handler.flush()
        sys.stderr.flush()
        self.files.cleanup()
        os._exit(code)

    def wake(self) -> None:
        with contextlib.suppress(OSError):  # a full pipe: the loop is awake anyway
            os.write(self._wake_w, b"!")

    def sleep(self, seconds: float) -> None:
        """Until the timeout, a signal, or IDLE news."""
        if seconds > 0:
            # a signal handler writes to the pipe, so select returns at once (PEP 475
            # would otherwise resume the wait)
            select.select([self._wake_r], [], [], seconds)
        with contextlib.suppress(OSError):
            while os.read(self._wake_r, 512):
                pass

    def on_news(self) -> None:  # called from an IDLE thread
        self.read_requested = True
        self.wake()

    # ------------------------------------------------------------------ jobs

    def run_job(self, name: str, job: Callable[[], None]) -> None:
        """Run one job behind a guard: an outage backs off, a bug is logged and the worker
        goes on, refused credentials or a broken config stop it."""
        if self.stopping:
            return
        backoff = self.backoffs.get(name)
        if backoff is not None and not backoff.ready(time.monotonic()):
            return
        self.tap.take()
        crashed: str | None = None
        try:
            with database_errors(lambda: self.store.path, all_errors=False):
                job()
        except (AuthenticationError, InputError, DamagedDatabaseError) as exc:
            self.fatal = exc
            self.stopping = True
            self.heartbeat(last_error=str(exc)[:500], last_error_at=iso(self.now()))
            return
        except OutreachError as exc:
            crashed = str(exc)
            log_event(self.log, "job_error", f"{name}: {exc}", logging.ERROR, job=name)
        except Exception as exc:  # noqa: BLE001 - schedule would let it end the worker
            crashed = f"{type(exc).__name__}: {exc}"
            where = traceback.extract_tb(exc.__traceback__)[-1]
            log_event(
                self.log,
                "job_error",
                f"{name} failed: {crashed} (at "
                f"{Path(where.filename).name}:{where.lineno}); the worker goes on",
                logging.ERROR,
                job=name,
            )
            for line in "".join(traceback.format_exception(exc)).rstrip().splitlines():
                self.log.debug(line)  # a log line is one line (logs.HumanFormatter)
        events = self.tap.take()
        now = self.now()
        values: dict[str, Any] = {"heartbeat_at": iso(now)}
        trouble = crashed is not None or any(e[0] in SERVER_TROUBLE for e in events)
        errors = [m for _e, level, m in events if level >= logging.ERROR]
        errors += [m for e, _l, m in events if e in SERVER_TROUBLE]
        if crashed is not None:
            errors.append(f"{name}: {crashed}")
        if name in ("read", "send"):
            values["last_cycle_at"] = iso(now)
            if not trouble:
                values[f"last_{name}_at"] = iso(now)
        if errors:
            values.update(last_error=errors[-1][:500], last_error_at=iso(now))
        self.heartbeat(**values)
        if backoff is None:
            return
        if trouble:
            delay = backoff.failed(time.monotonic())
            if delay > backoff.interval:
                log_event(
                    self.log,
                    "backoff",
                    f"{name}: trying again in {format_duration(timedelta(seconds=delay))}",
                    logging.WARNING,
                    job=name,
                    failures=backoff.failures,
                )
        elif backoff.succeeded():
            log_event(self.log, "recovered", f"{name}: working again", job=name)

    def now(self) -> datetime:
        return self.worker.clock()

    def heartbeat(self, **values: Any) -> None:
        try:
            self.store.update_worker(**values)
        except OutreachError as exc:  # a busy database must not end the worker
            log_event(self.log, "heartbeat", f"heartbeat not written: {exc}", logging.WARNING)

    def read(self) -> None:
        self.maybe_reload()
        report = self.worker.read_cycle()
        level = logging.INFO if report.recorded else logging.DEBUG
        log_event(self.log, "read", f"read: {report.summary()}", level)

    def send_due(self) -> None:
        self.maybe_reload()
        report = self.worker.send_cycle()
        busy = report.queued or report.sent or report.deferred or report.failed or report.unknown
        log_event(
            self.log, "send", f"send: {report.summary()}", logging.INFO if busy else logging.DEBUG
        )

    def digest(self) -> None:
        from outreach.engine.digest import send_digest
        from outreach.engine.owner_digest import send_owner_digests

        send_digest(
            self.config, self.worker.campaigns, self.store, self.now(), self.log, self.worker.logins
        )
        send_owner_digests(
            self.config, self.worker.campaigns, self.store, self.now(), self.log, self.worker.logins
        )

    def beat(self) -> None:
        self.heartbeat(heartbeat_at=iso(self.now()))

    # ------------------------------------------------------------------ reload

    def maybe_reload(self, force: bool = False) -> None:
        if not force and not self.files.changed():
            return
        try:
            config, campaigns = self.files.load()
        except Problems as exc:
            for problem in exc.problems[:10]:
                log_event(self.log, "reload_failed", problem, logging.ERROR)
            more = len(exc.problems) - 10
            log_event(
                self.log,
                "reload_failed",
                "config.toml, campaigns and templates not reloaded"
                + (f" ({more} more problems)" if more > 0 else "")
                + ": still running the last good version; `outreach check` shows why",
                logging.ERROR,
            )
            return
        self.config = config
        self.worker.reconfigure(config, campaigns)
        log_event(
            self.log,
            "reloaded",
            "config.toml, campaigns and templates reloaded: "
            + (", ".join(c.name for c in campaigns) or "no campaigns"),
        )
        for key in self.files.held:
            log_event(
                self.log,
                "restart_needed",
                f"{self.config.path}: {key} changed; the "
                "worker keeps the old value until it is restarted",
                logging.WARNING,
            )
        self.log_render_warnings()

    def log_render_warnings(self) -> None:
        for warning in self.files.warnings[:10]:
            log_event(
                self.log,
                "render_warning",
                f"{warning} (that partner is skipped and "
                "reported at each send until the data or the template is fixed)",
                logging.WARNING,
            )

    # ------------------------------------------------------------------ main loop

    def start_watchers(self) -> None:
        for account in self.config.accounts.values():
            if idle_enabled(self.config, account):
                watcher = IdleWatcher(
                    account,
                    self.on_news,
                    self.idle_stop,
                    self.log,
                    float(self.poll),
                    self.worker.logins,
                )
                watcher.start()
                self.watchers.append(watcher)

    def run(self) -> int:
        self.install_signals()  # first: a stop asked for during start-up is a warm one too
        try:
            return self._run()
        finally:
            self.idle_stop.set()
            self.restore_signals()
            self.log.removeFilter(self.tap)
            if self._timer is not None:
                self._timer.cancel()
            self.files.cleanup()
            for fd in (self._wake_r, self._wake_w):
                os.close(fd)

    def _run(self) -> int:
        try:
            config, campaigns = self.files.load()
        except Problems as exc:
            log_event(
                self.log,
                "fatal",
                f"cannot start: {exc.problems[0]}"
                + (
                    f" (and {len(exc.problems) - 1} more; `outreach check` shows them all)"
                    if len(exc.problems) > 1
                    else ""
                ),
                logging.ERROR,
            )
            return exc.exit_code
        self.worker.reconfigure(config, campaigns)
        self.log.addFilter(self.tap)
        started = self.now()
        self.heartbeat(
            pid=os.getpid(),
            host=socket.gethostname(),
            started_at=iso(started),
            heartbeat_at=iso(started),
            stopped_at=None,
        )
        idle = any(idle_enabled(self.config, a) for a in self.config.accounts.values())
        log_event(
            self.log,
            "started",
            f"worker started (pid {os.getpid()}): reads mail every "
            f"{format_duration(timedelta(seconds=self.poll))}"
            + (" and on IMAP IDLE" if idle else "")
            + f", sends every {format_duration(timedelta(seconds=self.send))}; "
            "SIGTERM/Ctrl-C stops it, SIGHUP reloads campaigns",
            pid=os.getpid(),
            database=str(self.config.database),
        )
        self.log_render_warnings()
        try:
            self.loop()
        finally:
            now = self.now()
            self.heartbeat(heartbeat_at=iso(now), stopped_at=iso(now))
        if self.fatal is not None:
            log_event(self.log, "fatal", f"stopping: {self.fatal}", logging.ERROR)
            return self.fatal.exit_code
        log_event(self.log, "stopped", "worker stopped")
        return 0

    def loop(self) -> None:
        self.run_job("recover", self.worker.recover)
        self.run_job("read", self.read)
        self.run_job("send", self.send_due)
        self.run_job("digest", self.digest)
        self.start_watchers()
        scheduler = schedule.Scheduler()
        scheduler.every(self.poll).seconds.do(self.run_job, "read", self.read)
        scheduler.every(self.send).seconds.do(self.run_job, "send", self.send_due)
        # always: a reload may add [digest] (without it, the job does nothing)
        scheduler.every(30).seconds.do(self.run_job, "digest", self.digest)
        scheduler.every(min(30, self.poll)).seconds.do(self.run_job, "heartbeat", self.beat)
        while not self.stopping:
            if self.reload_requested:
                self.reload_requested = False
                self.run_job("reload", lambda: self.maybe_reload(force=True))
            if self.read_requested:
                self.read_requested = False
                self.run_job("read", self.read)
            scheduler.run_pending()
            if self.stopping:
                break
            wait = scheduler.idle_seconds
            self.sleep(min(max(wait if wait is not None else 1.0, 0.0), 60.0))


def run_forever(config: Config, worker: Worker, logger: logging.Logger) -> int:
    """Run the worker until a signal stops it; returns the exit code."""
    return Service(config, worker, logger).run()
