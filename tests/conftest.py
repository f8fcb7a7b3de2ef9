"""Shared fixtures: local mail servers, a test CA, the real mail stack, hypothesis profiles.

Fast tier (in-process / child-process servers, see outreach/localservers.py):

* ``smtp_server`` -- a started :class:`LocalSMTPServer` (plain SMTP, no AUTH), new per test.
  Fault injection: ``smtp_server.refuse("bad@x.test", "550 5.1.1 No such user")``,
  ``smtp_server.queue_data_responses("451 4.3.0 Try again later")``,
  ``smtp_server.drop_after(n)``, ``smtp_server.delay = 0.5``; ``smtp_server.stop()`` /
  ``start()`` for an outage on the same port; ``smtp_server.wait_for(n)``.
* ``smtp_tls_server`` -- the same with STARTTLS, certificate for ``localhost`` and
  ``127.0.0.1`` signed by the session's trustme CA: ``smtp_tls_server.ca_file`` (PEM path)
  and ``smtp_tls_server.client_tls_context()`` (verifying ``ssl.SSLContext``).
* ``smtp_server_factory(**kwargs)`` -- any other LocalSMTPServer (AUTH, implicit TLS, ...),
  started, stopped after the test. ``tls_ca`` gives the CA and ready contexts.
* ``imap_server`` -- a :class:`LocalIMAPServer` (pymap) whose process lives for the whole
  session; each test gets it running and EMPTY (``clear()``: only INBOX, no messages). UIDs
  keep counting across tests and UIDVALIDITY stays; a test may ``restart()`` it (new
  UIDVALIDITY, UIDs from 101). ``fresh_imap_server`` is a new process for one test.

Integration tier (``@pytest.mark.integration``, automatic under tests/integration/):

* ``mailstack`` -- the real Postfix + Dovecot stack of scripts/mailstack, once per session,
  see :class:`Mailstack`. It FAILS (never skips) when the stack cannot start. One stack
  serves both kinds of login: passwords (PLAIN/LOGIN, passwd-file) and OAuth2 (XOAUTH2 /
  OAUTHBEARER, Dovecot's oauth2 passdb asking ``mailstack.oauth2``, a session-wide
  LocalOAuth2Server, whether a token is valid). ``stack_oauth2`` is that server, its
  settings put back after each test.

Hypothesis: profile "dev" (default, few examples) or "ci" (when the environment variable
CI is set, as in CI); HYPOTHESIS_PROFILE=NAME picks one explicitly.
"""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trustme
from helpers import isolate_env, make_project
from hypothesis import HealthCheck, settings
from logbook import World, build_world
from workspace import Workspace, make_workspace

from outreach.core.redaction import forget_secrets
from outreach.testing.imap_server import LocalIMAPServer
from outreach.testing.oauth2_server import LocalOAuth2Server
from outreach.testing.ports import free_ports
from outreach.testing.smtp_server import LocalSMTPServer

REPO = Path(__file__).resolve().parent.parent
MAILSTACK_SCRIPTS = REPO / "scripts" / "mailstack"

# --------------------------------------------------------------------------- isolation


@pytest.fixture(autouse=True)
def _forget_secrets() -> Iterator[None]:
    """Each test starts with no remembered secret: a password one test used ("right") must
    not be redacted out of another test's partner address (dan@buildright.test)."""
    forget_secrets()
    yield
    forget_secrets()


# --------------------------------------------------------------------------- hypothesis

settings.register_profile("dev", max_examples=30, deadline=1000)
settings.register_profile(
    "ci",
    max_examples=300,
    deadline=None,  # a noisy CI machine must not turn slowness into failures
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() not in ("", "0", "false", "no")


settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if _truthy(os.environ.get("CI")) else "dev")
)


# --------------------------------------------------------------------------- markers


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Everything under tests/integration/ is an integration test."""
    integration_dir = Path(__file__).parent / "integration"
    for item in items:
        if integration_dir in item.path.parents:
            item.add_marker(pytest.mark.integration)


# --------------------------------------------------------------------------- TLS


@dataclass
class TestCA:
    """A throwaway CA (trustme) and one server certificate for localhost / 127.0.0.1."""

    __test__ = False  # not a test class

    ca: trustme.CA
    cert: trustme.LeafCert
    ca_file: str  # PEM of the CA certificate: what clients must trust

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.cert.configure_cert(ctx)
        return ctx

    def client_context(self) -> ssl.SSLContext:
        """Verifying client context (hostname check on) that trusts only this CA."""
        return ssl.create_default_context(cafile=self.ca_file)


@pytest.fixture(scope="session")
def tls_ca(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    path = tmp_path_factory.mktemp("tls") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return TestCA(ca=ca, cert=cert, ca_file=str(path))


# --------------------------------------------------------------------------- SMTP


@pytest.fixture
def smtp_server_factory() -> Iterator[Callable[..., LocalSMTPServer]]:
    """``make(**kwargs)`` -> a started LocalSMTPServer; all are stopped after the test."""
    servers: list[LocalSMTPServer] = []

    def make(**kwargs: Any) -> LocalSMTPServer:
        server = LocalSMTPServer(**kwargs)
        servers.append(server)
        return server.start()

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def smtp_server(smtp_server_factory: Callable[..., LocalSMTPServer]) -> LocalSMTPServer:
    return smtp_server_factory()


@pytest.fixture
def smtp_tls_server(
    smtp_server_factory: Callable[..., LocalSMTPServer], tls_ca: TestCA
) -> LocalSMTPServer:
    """STARTTLS offered (not required); trust ``.ca_file`` / ``.client_tls_context()``."""
    return smtp_server_factory(tls_context=tls_ca.server_context(), ca_file=tls_ca.ca_file)


# --------------------------------------------------------------------------- IMAP


@pytest.fixture(scope="session")
def _imap_server_process() -> Iterator[LocalIMAPServer]:
    server = LocalIMAPServer()
    server.start()
    yield server
    server.close()


@pytest.fixture
def imap_server(_imap_server_process: LocalIMAPServer) -> LocalIMAPServer:
    """The session's pymap server, running and emptied for this test."""
    server = _imap_server_process
    server.start()  # no-op unless a previous test stopped it
    try:
        server.clear()
    except Exception:
        server.restart()
    return server


@pytest.fixture
def fresh_imap_server() -> Iterator[LocalIMAPServer]:
    """A pymap server of its own (~0.5 s): UIDs start at 101, nothing shared."""
    with LocalIMAPServer() as server:
        yield server


# --------------------------------------------------------------------------- OAuth2


@pytest.fixture
def oauth2_server() -> Iterator[LocalOAuth2Server]:
    """A local OAuth2 authorization server of its own (device flow, PKCE code, refresh with
    rotation, introspection, revocation) on 127.0.0.1; see outreach/oauth2_server.py."""
    with LocalOAuth2Server() as server:
        yield server


# --------------------------------------------------------------------------- mailstack


@dataclass
class Mailstack:
    """A running Postfix + Dovecot stack (scripts/mailstack/start.sh) on 127.0.0.1.

    Ports: ``smtp_port`` (plain SMTP, AUTH optional), ``submission_port`` (STARTTLS and
    AUTH required), ``smtps_port`` (implicit TLS, AUTH required), ``imap_port`` (plain,
    LOGIN allowed), ``imaps_port`` (implicit TLS), ``lmtp_port`` (direct delivery).
    TLS: self-signed certificate for localhost / 127.0.0.1; ``ca_file`` is that
    certificate, ``tls_context()`` a verifying client context that trusts it.
    Mail for any address in ``domains`` is delivered; ``bounce_domain`` addresses are
    accepted and then bounced by Postfix (a real DSN to the envelope sender within ~0.1 s);
    ``defer_domain`` addresses are deferred (a "delayed" DSN, message stays queued).
    ``users`` maps login -> password: ``coordinator`` (coordinator@example.test),
    partner1..5@example.test (password "secret") and spare users that ``new_user()`` hands
    out, one per call, so that a test gets an empty mailbox of its own (the stack is
    shared by the whole session). ``log_dir`` holds postfix.log and dovecot.log;
    ``log_tail()`` their ends.
    """

    dir: Path
    host: str
    smtp_port: int
    submission_port: int
    smtps_port: int
    imap_port: int
    imaps_port: int
    lmtp_port: int
    ca_file: str
    users: dict[str, str]
    domains: list[str]
    bounce_domain: str
    defer_domain: str
    dovecot_conf: str
    postfix_conf: str
    coordinator: str = "coordinator@example.test"
    spare_users: list[str] = field(default_factory=list)
    oauth2: LocalOAuth2Server | None = None  # validates the XOAUTH2 / OAUTHBEARER tokens
    log_dir: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log_dir = self.dir / "log"

    @property
    def password(self) -> str:
        """The coordinator's password."""
        return self.users[self.coordinator]

    def tls_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.ca_file)

    def add_user(self, address: str, password: str = "secret") -> str:
        """Let *address* log in (IMAP, SMTP AUTH) from now on; takes up to 1 s.

        Dovecot stats its passwd-file at most once per second (and re-reads it when it
        changed), so this waits for the next second. ``new_user()`` is instant.
        """
        address = address.lower()
        with open(self.dir / "etc" / "dovecot" / "users", "a") as f:
            f.write(f"{address}:{{PLAIN}}{password}::::::\n")
        self.users[address] = password
        now = time.time()
        time.sleep(int(now) + 1.02 - now)
        return address

    def new_user(self) -> tuple[str, str]:
        """An unused login with an empty mailbox: (address, password).

        Taken from the pool of spare users that were created at start (``user01`` ...),
        then made with ``add_user()`` when the pool is used up.
        """
        if self.spare_users:
            address = self.spare_users.pop(0)
            return address, self.users[address]
        return self.add_user(f"user-{uuid.uuid4().hex[:10]}@{self.domains[0]}"), "secret"

    def imap(self, user: str | None = None, *, tls: bool = True, timeout: float = 10) -> Any:
        """A logged-in IMAPClient (IMAPS with verification by default)."""
        from imapclient import IMAPClient

        user = user or self.coordinator
        if tls:
            c = IMAPClient(
                self.host,
                port=self.imaps_port,
                ssl=True,
                ssl_context=self.tls_context(),
                timeout=timeout,
            )
        else:
            c = IMAPClient(self.host, port=self.imap_port, ssl=False, timeout=timeout)
        c.login(user, self.users[user])
        return c

    def wait_for_messages(
        self,
        user: str,
        criteria: Any = "ALL",
        *,
        count: int = 1,
        folder: str = "INBOX",
        timeout: float = 10.0,
    ) -> dict[int, bytes]:
        """Poll *user*'s *folder* until SEARCH *criteria* matches *count* messages.

        Returns {uid: raw bytes} of the matches (fetched with BODY.PEEK[]).
        """
        deadline = time.monotonic() + timeout
        with self.imap(user) as c:
            c.select_folder(folder, readonly=True)
            while True:
                uids = c.search(criteria)
                if len(uids) >= count:
                    data = c.fetch(uids, ["BODY.PEEK[]"])
                    return {uid: d[b"BODY[]"] for uid, d in sorted(data.items())}
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"{len(uids)} of {count} messages matching {criteria!r} in "
                        f"{user}/{folder} after {timeout} s\n{self.log_tail()}"
                    )
                time.sleep(0.05)
                c.noop()

    def log_tail(self, lines: int = 40) -> str:
        return _log_tail([self.log_dir / "postfix.log", self.log_dir / "dovecot.log"], lines)


def _log_tail(paths: list[Path], lines: int) -> str:
    out = []
    for p in paths:
        try:
            text = p.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            continue
        if not text:
            continue
        out.append(f"--- {p} (last {len(text)} lines)\n" + "\n".join(text))
    return "\n".join(out)


_MAILSTACK_USERS = ["coordinator@example.test"] + [f"partner{i}@example.test" for i in range(1, 6)]
_SPARE_USERS = [f"user{i:02d}@example.test" for i in range(1, 51)]


@pytest.fixture(scope="session")
def _stack_oauth2_server() -> Iterator[LocalOAuth2Server]:
    with LocalOAuth2Server() as server:
        yield server


@pytest.fixture
def stack_oauth2(mailstack: Mailstack) -> Iterator[LocalOAuth2Server]:
    """The authorization server the session's stack asks; lifetimes and switches that a
    test changes are put back after it."""
    server = mailstack.oauth2
    assert server is not None
    saved = (
        server.access_lifetime,
        server.refresh_lifetime,
        server.browser_user,
        server.deny_consent,
        server.enforce_interval,
    )
    yield server
    (
        server.access_lifetime,
        server.refresh_lifetime,
        server.browser_user,
        server.deny_consent,
        server.enforce_interval,
    ) = saved
    server.device_errors.clear()


@pytest.fixture(scope="session")
def mailstack(_stack_oauth2_server: LocalOAuth2Server) -> Iterator[Mailstack]:
    """Start the real Postfix + Dovecot stack once per session; stop and purge it after."""
    if os.geteuid() != 0:
        pytest.fail("the mailstack (Postfix + Dovecot) must be started as root")
    missing = [cmd for cmd in ("postfix", "dovecot", "openssl") if shutil.which(cmd) is None]
    if missing:
        pytest.fail(
            f"not installed: {', '.join(missing)} -- run scripts/mailstack/install.sh "
            "(scripts/test does this)"
        )
    # pytest's tmp_path is under a 0700 folder that postfix/dovecot/mail cannot enter
    base = Path(tempfile.mkdtemp(prefix="outreach-mailstack-", dir="/tmp"))
    base.chmod(0o755)
    stack_dir = base / "stack"
    ports = free_ports(6)
    env = dict(
        os.environ,
        MAILSTACK_SMTP_PORT=str(ports[0]),
        MAILSTACK_SUBM_PORT=str(ports[1]),
        MAILSTACK_SMTPS_PORT=str(ports[2]),
        MAILSTACK_IMAP_PORT=str(ports[3]),
        MAILSTACK_IMAPS_PORT=str(ports[4]),
        MAILSTACK_LMTP_PORT=str(ports[5]),
        MAILSTACK_BOUNCE_DOMAIN="bounce.test",
        MAILSTACK_DEFER_DOMAIN="defer.test",
        MAILSTACK_IN_FLOW_DELAY="0s",
        MAILSTACK_OAUTH2_INTROSPECT_URL=_stack_oauth2_server.introspection_url,
        MAILSTACK_USERS=" ".join(f"{u}:secret" for u in _MAILSTACK_USERS + _SPARE_USERS),
    )
    start_log = base / "start.log"
    # output to a file, never a pipe: the daemons could inherit and hold it open
    with open(start_log, "wb") as out:
        try:
            rc = subprocess.run(
                [str(MAILSTACK_SCRIPTS / "start.sh"), str(stack_dir)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                timeout=120,
            ).returncode
        except subprocess.TimeoutExpired:
            rc = -1
    if rc != 0:
        logs = stack_dir / "log"
        report = _log_tail(
            [start_log]
            + [logs / n for n in ("postfix-start.out", "postfix.log", "dovecot-start.out")]
            + [logs / n for n in ("dovecot.log", "doveconf.err")],
            40,
        )
        _stop_mailstack(stack_dir)
        shutil.rmtree(base, ignore_errors=True)
        pytest.fail(f"mailstack failed to start (start.sh exit {rc}):\n{report}")

    cfg = json.loads((stack_dir / "stack.json").read_text())
    p = cfg["ports"]
    stack = Mailstack(
        dir=stack_dir,
        host=cfg["host"],
        smtp_port=p["smtp"],
        submission_port=p["subm"],
        smtps_port=p["smtps"],
        imap_port=p["imap"],
        imaps_port=p["imaps"],
        lmtp_port=p["lmtp"],
        ca_file=cfg["ca_file"],
        users=dict(cfg["users"]),
        domains=list(cfg["domains"]),
        bounce_domain=cfg["bounce_domain"],
        defer_domain=cfg["defer_domain"],
        dovecot_conf=cfg["dovecot_conf"],
        postfix_conf=cfg["postfix_conf"],
        spare_users=list(_SPARE_USERS),
        oauth2=_stack_oauth2_server,
    )
    try:
        yield stack
    finally:
        rc, output = _stop_mailstack(stack_dir)
        shutil.rmtree(base, ignore_errors=True)
        if rc != 0:
            pytest.fail(f"mailstack did not stop cleanly (stop.sh exit {rc}):\n{output}")


def _stop_mailstack(stack_dir: Path) -> tuple[int, str]:
    if not stack_dir.is_dir():
        return 0, ""
    proc = subprocess.run(
        [str(MAILSTACK_SCRIPTS / "stop.sh"), str(stack_dir), "--purge"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        timeout=60,
    )
    return proc.returncode, proc.stdout.decode(errors="replace")


# --------------------------------------------------------------------------- projects


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No config or password from the developer's shell may leak into a test."""
    isolate_env(monkeypatch)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the packaged sample project (`outreach init`), to break one thing in."""
    return make_project(tmp_path / "project")


@pytest.fixture
def ws(
    tmp_path: Path,
    smtp_server: LocalSMTPServer,
    imap_server: LocalIMAPServer,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Workspace]:
    """A workspace wired to the local SMTP and IMAP servers (the response-log tests)."""
    workspace = make_workspace(tmp_path, smtp_server, imap_server, monkeypatch)
    yield workspace
    workspace.close()


@pytest.fixture
def world(ws: Workspace, smtp_server: LocalSMTPServer, imap_server: LocalIMAPServer) -> World:
    """The response log of logbook.build_world: replies, an out-of-office, a bounce, ..."""
    return build_world(ws, smtp_server, imap_server)
