"""Security checks: header injection through partner data, template sandbox escapes, TLS
certificate verification, and passwords kept out of logs, the database and exports."""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import re
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from email.parser import BytesParser
from email.policy import default
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from click.testing import CliRunner, Result
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from helpers import assert_no_traceback, invoke, make_project
from workspace import ALWAYS_OPEN, Workspace, partner_rows

from outreach.cli import cli
from outreach.core.model import Partner
from outreach.testing.imap_server import LocalIMAPServer
from outreach.testing.smtp_server import LocalSMTPServer

if TYPE_CHECKING:
    from conftest import Mailstack, TestCA


# --------------------------------------------------------------------------- header injection

# Every partner field a template can use, plus an extra CSV column.
FIELDS = (
    "name",
    "first_name",
    "organization",
    "industry",
    "pathway",
    "owner",
    "tags",
    "timezone",
    "region",
)
EVERY_FIELD_SUBJECT = (
    "{{ partner.name }}|{{ partner.first_name }}|{{ partner.organization }}|"
    "{{ partner.industry }}|{{ partner.pathway }}|{{ partner.owner }}|"
    "{{ partner.tags|join(',') }}|{{ partner.timezone }}|{{ partner.region }}"
)
EVERY_FIELD_CAMPAIGN = (
    ALWAYS_OPEN
    + f"""
[[steps]]
template = "every_field"
subject = "{EVERY_FIELD_SUBJECT}"
"""
)
EVERY_FIELD_BODY = "\n".join(f"{f}: {{{{ partner.{f} }}}}" for f in FIELDS) + "\n"

# Line breaks and other controls that a reader or a server could take for the end of a
# header (or of the message): refused at import.
BREAKING = {
    "crlf": "\r\nBcc: evil@attacker.test",
    "lf": "\nBcc: evil@attacker.test",
    "cr": "\rBcc: evil@attacker.test",
    "nel": "\x85Bcc: evil@attacker.test",
    "line-separator": "\u2028Bcc: evil@attacker.test",
    "paragraph-separator": "\u2029Bcc: evil@attacker.test",
    "vertical-tab": "\x0bBcc: evil@attacker.test",
    "form-feed": "\x0cBcc: evil@attacker.test",
    "escape": "\x1b[31mBcc: evil@attacker.test",
    "smtp-smuggling": "\r\n.\r\nMAIL FROM:<evil@attacker.test>\r\nRCPT TO:<victim@x.test>",
}
# Printable text that tries to look like more addresses or headers: imported as it is, and
# harmless in the message.
PRINTABLE = {
    "encoded-crlf": "=?utf-8?q?=0D=0ABcc:_evil@attacker.test?=",
    "more-addresses": 'Bob" <evil@attacker.test>, "Eve',
    "address-list": "a@b.test, evil@attacker.test",
    "angle-address": "<evil@attacker.test>",
    "colon-header": "Bcc: evil@attacker.test",
    "semicolon-group": "undisclosed:; evil@attacker.test",
    "template-syntax": "{{ ''.__class__.__mro__ }} {% include '/etc/passwd' %}",
    "long-word": "x" * 2000,
}
EXPECTED_HEADERS = {
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "List-Unsubscribe",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
}


def csv_cell(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


def roster_csv(path: Path, field: str, value: str) -> Path:
    cells = {f: "" for f in FIELDS}
    cells.update(name="Dana Diaz", organization="Mercy Health")
    cells[field] = value
    header = "email," + ",".join(FIELDS)
    row = "dana@partners.test," + ",".join(csv_cell(cells[f]) for f in FIELDS)
    path.write_bytes((header + "\r\n" + row + "\r\n").encode("utf-8"))
    return path


def assert_one_clean_message(raw: bytes, rcpt_tos: tuple[str, ...], partner: str) -> None:
    """The bytes as sent hold exactly our headers, one recipient, one message."""
    assert rcpt_tos == (partner,)
    head = raw.split(b"\r\n\r\n", 1)[0]
    for line in head.split(b"\r\n"):
        name = line.split(b":", 1)[0].decode()
        assert line[:1] in (b" ", b"\t") or name in EXPECTED_HEADERS, line
        assert len(line) <= 998  # RFC 5322 2.1.1
    assert re.search(rb"[\x00\x0b\x0c\x1b\x7f]", head) is None
    assert b"\r" not in head.replace(b"\r\n", b"") and b"\n" not in head.replace(b"\r\n", b"")
    message = BytesParser(policy=default).parsebytes(raw)
    assert set(message.keys()) == EXPECTED_HEADERS
    assert [a.addr_spec for a in message["To"].addresses] == [partner]
    assert message["Bcc"] is None and message["Cc"] is None
    assert len(message.defects) == 0, message.defects


@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.parametrize("payload", BREAKING.values(), ids=BREAKING.keys())
def test_line_breaks_in_any_field_are_refused_at_import(
    tmp_path: Path, field: str, payload: str
) -> None:
    project = make_project(tmp_path / "p")
    csv = roster_csv(tmp_path / "roster.csv", field, "Mercy" + payload)
    result = _invoke(project, "partners", "import", str(csv))
    assert result.exit_code == 2, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1
    assert f"'{field}'" in errors[0] or "NUL" in errors[0] or field == "timezone", errors[0]
    assert "nothing imported" in errors[0]
    assert _invoke(project, "partners", "list", "--json").output.strip() == "[]"


@pytest.mark.parametrize(
    "payload",
    [
        "dana@partners.test\r\nBcc: evil@attacker.test",
        "dana@partners.test, evil@attacker.test",
        "Dana <dana@partners.test>",
        "dana@partners.test>\r\nRCPT TO:<evil@attacker.test",
        '"dana\r\n"@partners.test',
    ],
)
def test_injection_through_the_email_column_is_refused(tmp_path: Path, payload: str) -> None:
    project = make_project(tmp_path / "p")
    csv = tmp_path / "roster.csv"
    csv.write_bytes(("email,name\r\n" + csv_cell(payload) + ",Dana\r\n").encode())
    result = _invoke(project, "partners", "import", str(csv))
    assert result.exit_code == 2, result.output
    assert "nothing imported" in result.stderr


@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.parametrize("payload", PRINTABLE.values(), ids=PRINTABLE.keys())
def test_printable_tricks_in_any_field_are_harmless_in_the_sent_message(
    tmp_path: Path, smtp_server: LocalSMTPServer, field: str, payload: str
) -> None:
    ws = Workspace(tmp_path, smtp_port=smtp_server.port, campaign=EVERY_FIELD_CAMPAIGN)
    (tmp_path / "templates" / "every_field.txt.j2").write_text(EVERY_FIELD_BODY)
    csv = roster_csv(tmp_path / "roster.csv", field, payload)
    result = ws.cli("partners", "import", str(csv))
    if field == "timezone":  # not a time zone: refused, which is just as safe
        assert result.exit_code == 2 and "timezone" in result.stderr, result.output
        return
    assert result.exit_code == 0, result.output
    assert ws.worker().send_cycle().sent == 1
    (sent,) = smtp_server.messages
    assert_one_clean_message(sent.raw, sent.rcpt_tos, "dana@partners.test")
    message = sent.message
    if field == "tags" and ";" in payload:
        return  # tags are split on ';': the text is not kept as one
    # the text is kept (not evaluated as a template, not dropped) inside the one header
    assert payload in str(message["Subject"])
    assert payload in message.get_content()
    ws.close()


@pytest.mark.parametrize("zone", ["America", "Europe", "x" * 300, "America/" + "x" * 300])
def test_a_timezone_that_is_no_zone_file_is_one_line_not_a_traceback(
    tmp_path: Path, zone: str
) -> None:
    """ZoneInfo raises OSError for a folder of the zone database ("America") or a name too
    long for a path; that used to escape as a traceback from import and from the config."""
    project = make_project(tmp_path / "p")
    result = _invoke(
        project, "partners", "import", str(roster_csv(tmp_path / "roster.csv", "timezone", zone))
    )
    assert result.exit_code == 2 and "unknown time zone" in result.stderr, result.output
    config = project / "config.toml"
    config.write_text(
        re.sub(r'(?m)^timezone = "[^"]*"', f'timezone = "{zone}"', config.read_text(), count=1)
    )
    code, errors, output = check_output(project)
    assert code == 2 and len(errors) == 1 and "unknown time zone" in errors[0], output


def test_a_bad_timezone_already_in_the_store_falls_back_to_the_default(
    tmp_path: Path, smtp_server: LocalSMTPServer
) -> None:
    ws = Workspace(tmp_path, smtp_port=smtp_server.port)
    ws.store.upsert_partners(
        [
            Partner(
                email="dana@partners.test", name="Dana", organization="Mercy", timezone="America"
            )
        ],
        ws.clock(),
    )
    assert ws.worker().send_cycle().sent == 1
    ws.close()


@pytest.mark.parametrize("payload", BREAKING.values(), ids=BREAKING.keys())
def test_controls_that_reach_the_store_anyway_are_neutralised(
    tmp_path: Path, smtp_server: LocalSMTPServer, payload: str
) -> None:
    """Defence in depth: rows that did not come through the CSV check (an older version, a
    hand-edited database) cannot add a header, a recipient or a message either."""
    ws = Workspace(tmp_path, smtp_port=smtp_server.port, campaign=EVERY_FIELD_CAMPAIGN)
    (tmp_path / "templates" / "every_field.txt.j2").write_text(EVERY_FIELD_BODY)
    value = "Mercy" + payload
    ws.store.upsert_partners(
        [
            Partner(
                email="dana@partners.test",
                name=value,
                first_name=value,
                organization=value,
                industry=value,
                pathway=value,
                owner=value,
                tags=(value,),
                timezone=value,
                fields={"region": value},
            )
        ],
        ws.clock(),
    )
    assert ws.worker().send_cycle().sent == 1
    (sent,) = smtp_server.messages
    assert_one_clean_message(sent.raw, sent.rcpt_tos, "dana@partners.test")
    # a line with one dot went through as text (dot-stuffed, RFC 5321 4.5.2): the server
    # got the whole body as one message, and no command hidden in it ran
    assert sent.mail_from == "coordinator@district.test"
    assert sent.message.get_content().rstrip("\n").startswith("name: Mercy")
    assert "region: Mercy" in sent.message.get_content()
    ws.close()


# --------------------------------------------------------------------------- sandbox


ESCAPES = {
    "mro": "{{ ''.__class__.__mro__ }}",
    "subclasses": "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "cycler-globals": "{{ cycler.__init__.__globals__ }}",
    "joiner-globals": "{{ joiner.__init__.__globals__.os }}",
    "namespace-globals": "{{ namespace.__init__.__globals__ }}",
    "template-reference": "{{ self._TemplateReference__context }}",
    "lipsum-globals": "{{ lipsum.__globals__['os'].popen('id').read() }}",
    "attr-filter": "{{ ''|attr('__class__') }}",
    "format-string": "{{ '{0.__class__.__init__.__globals__}'.format(partner) }}",
    "partner-class": "{{ partner.__class__ }}",
    "huge-range": "{{ range(10**9)|list|length }}",
    "include-absolute": "{% include '/etc/passwd' %}",
    "include-traversal": "{% include '../config.toml' %}",
    "import-traversal": "{% import '../config.toml' as cfg %}",
    "extends-absolute": "{% extends '/etc/passwd' %}",
}
# what an escape would show: a file's content, Python objects, the config
LEAKS = ("root:", "<class", "password", "[accounts", "__builtins__", "uid=", "<module")


def check_output(project: Path) -> tuple[int, list[str], str]:
    result = _invoke(project, "check")
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    return result.exit_code, errors, result.output


@pytest.mark.parametrize(
    ("where", "attempt"),
    [
        pytest.param(where, attempt, id=f"{name}-{where}")
        for name, attempt in ESCAPES.items()
        for where in ("text", "html", "subject")
        if where != "subject" or not attempt.startswith("{%")  # subjects: expressions only
    ],
)
def test_sandbox_escapes_are_refused_by_check_in_one_line(
    tmp_path: Path, attempt: str, where: str
) -> None:
    project = make_project(tmp_path / "p")
    if where == "subject":
        campaign = project / "campaigns" / "checkin.toml"
        text = campaign.read_text()
        campaign.write_text(
            re.sub(
                r'(?m)^subject = ".*"$',
                lambda _m: "subject = " + json.dumps(attempt),
                text,
                count=1,
            )
        )
    else:
        name = "checkin.txt.j2" if where == "text" else "checkin.html.j2"
        template = project / "templates" / name
        template.write_text(template.read_text() + "\n" + attempt + "\n")
    code, errors, output = check_output(project)
    assert code == 2, output
    assert len(errors) == 1, errors
    line = errors[0]
    assert re.search(r"not allowed in a template|template not found|Range too big", line), line
    for leak in LEAKS:
        assert leak not in line, (leak, line)
    assert "root:" not in output and "<class" not in output
    assert "Traceback" not in output


def test_partner_data_is_never_evaluated_as_a_template(
    tmp_path: Path, smtp_server: LocalSMTPServer
) -> None:
    ws = Workspace(tmp_path, smtp_port=smtp_server.port, campaign=EVERY_FIELD_CAMPAIGN)
    (tmp_path / "templates" / "every_field.txt.j2").write_text(EVERY_FIELD_BODY)
    trick = "{{ 7 * 7 }}{{ cycler.__init__.__globals__ }}"
    ws.add_partners(
        [
            {
                "email": "dana@partners.test",
                "name": trick,
                "organization": trick,
                "fields": {"region": trick},
            }
        ]
    )  # type: ignore[dict-item]
    assert ws.worker().send_cycle().sent == 1
    message = smtp_server.messages[0].message
    assert "{{ 7 * 7 }}" in message["Subject"] and "49" not in message["Subject"]
    assert message.get_content().count("{{ 7 * 7 }}") == 3
    ws.close()


# --------------------------------------------------------------------------- TLS


def self_signed(tmp_path: Path, name: str = "localhost") -> tuple[ssl.SSLContext, str]:
    """A server context with a self-signed certificate for `name` and 127.0.0.1, and the
    path of that certificate (what a config would name in ca_file to trust it)."""
    import ipaddress

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName(name), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file = tmp_path / f"self-signed-{name}.pem"
    key_file = tmp_path / f"self-signed-{name}.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    return context, str(cert_file)


SMTP_TLS_MODES = {"starttls": {}, "tls": {"implicit_tls": True}}


@pytest.fixture(params=["self-signed", "unknown-ca"])
def untrusted_tls(
    request: pytest.FixtureRequest, tmp_path: Path, tls_ca: TestCA
) -> tuple[ssl.SSLContext, str]:
    """(server context, the PEM a config must name in ca_file to trust it)."""
    if request.param == "self-signed":
        return self_signed(tmp_path)
    return tls_ca.server_context(), tls_ca.ca_file  # a private CA nobody trusts by default


@pytest.mark.parametrize("mode", SMTP_TLS_MODES)
def test_smtp_refuses_an_untrusted_certificate_unless_ca_file_names_it(
    tmp_path: Path,
    smtp_server_factory: Callable[..., LocalSMTPServer],
    untrusted_tls: tuple[ssl.SSLContext, str],
    mode: str,
) -> None:
    context, pem = untrusted_tls
    server = smtp_server_factory(tls_context=context, **SMTP_TLS_MODES[mode])
    ws = Workspace(tmp_path, smtp_port=server.port, smtp_security=mode, smtp_host="localhost")
    ws.add_partners(partner_rows(2))
    result = ws.cli("run", "--once")
    assert result.exit_code == 1, result.output
    errors = [line for line in result.stderr.splitlines() if "TLS failed" in line]
    assert errors and "ca_file" in errors[0], result.output
    # the reason is told: a self-signed certificate, or an issuer nobody trusts here
    assert re.search(
        r"certificate refused: (self-signed certificate|unable to get local "
        r"issuer certificate)",
        errors[0],
    ), errors[0]
    assert server.messages == []
    assert {r["status"] for r in ws.store.query("SELECT status FROM messages")} == {"queued"}
    ws.close()

    trusting = Workspace(
        tmp_path,
        smtp_port=server.port,
        smtp_security=mode,
        smtp_host="localhost",
        smtp_extra=f', ca_file = "{pem}"',
    )
    result = trusting.cli("run", "--once")
    assert result.exit_code == 0, result.output
    assert len(server.wait_for(2)) == 2 and all(m.tls for m in server.messages)
    trusting.close()


@pytest.mark.parametrize("mode", SMTP_TLS_MODES)
def test_smtp_refuses_a_certificate_for_another_host_even_from_a_trusted_ca(
    tmp_path: Path,
    smtp_server_factory: Callable[..., LocalSMTPServer],
    tls_ca: TestCA,
    mode: str,
) -> None:
    other = tls_ca.ca.issue_cert("mail.elsewhere.test")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    other.configure_cert(context)
    server = smtp_server_factory(tls_context=context, **SMTP_TLS_MODES[mode])
    ws = Workspace(
        tmp_path,
        smtp_port=server.port,
        smtp_security=mode,
        smtp_host="localhost",
        smtp_extra=f', ca_file = "{tls_ca.ca_file}"',
    )
    ws.add_partners(partner_rows(1))
    report = ws.worker().send_cycle()
    assert report.sent == 0 and report.errors and "TLS failed" in report.errors[0]
    # said as it is: the certificate names another host (the CA is trusted: no ca_file hint)
    assert "Hostname mismatch" in report.errors[0], report.errors[0]
    assert "ca_file" not in report.errors[0] and "set host" in report.errors[0]
    assert server.messages == []
    ws.close()


@pytest.mark.integration
@pytest.mark.parametrize("mode", ["tls", "starttls"])
def test_imap_refuses_dovecots_self_signed_certificate_unless_ca_file_names_it(
    tmp_path: Path,
    mailstack: Mailstack,
    smtp_server: LocalSMTPServer,
    monkeypatch: pytest.MonkeyPatch,
    mode: str,
) -> None:
    user, password = mailstack.new_user()
    monkeypatch.setenv("TEST_IMAP_PW", password)
    port = mailstack.imaps_port if mode == "tls" else mailstack.imap_port
    imap = {
        "host": "localhost",
        "port": port,
        "security": mode,
        "username": user,
        "password_env": "TEST_IMAP_PW",
    }
    ws = Workspace(tmp_path / "untrusting", smtp_port=smtp_server.port, imap=imap)
    report = ws.worker().read_cycle()
    assert len(report.errors) == 1 and "TLS failed" in report.errors[0], report.errors
    assert "ca_file" in report.errors[0]
    assert ws.store.checkpoint("default", "INBOX") is None  # nothing was read
    ws.close()

    trusting = Workspace(
        tmp_path / "trusting",
        smtp_port=smtp_server.port,
        imap={**imap, "ca_file": mailstack.ca_file},
    )
    assert trusting.worker().read_cycle().errors == []
    assert trusting.store.checkpoint("default", "INBOX") is not None
    trusting.close()


@pytest.mark.integration
@pytest.mark.parametrize("mode", ["starttls", "tls"])
def test_smtp_refuses_postfixs_self_signed_certificate_unless_ca_file_names_it(
    tmp_path: Path,
    mailstack: Mailstack,
    monkeypatch: pytest.MonkeyPatch,
    mode: str,
) -> None:
    user, password = mailstack.new_user()
    partner, _ = mailstack.new_user()
    monkeypatch.setenv("TEST_SMTP_PW", password)
    port = mailstack.submission_port if mode == "starttls" else mailstack.smtps_port
    auth = f', username = "{user}", password_env = "TEST_SMTP_PW"'
    ws = Workspace(
        tmp_path / "untrusting",
        smtp_port=port,
        smtp_host="localhost",
        smtp_security=mode,
        smtp_extra=auth,
        from_header=user,
    )
    ws.add_partners([{"email": partner, "name": "P"}])
    report = ws.worker().send_cycle()
    assert report.sent == 0 and "TLS failed" in report.errors[0], report.errors
    ws.close()

    trusting = Workspace(
        tmp_path / "trusting",
        smtp_port=port,
        smtp_host="localhost",
        smtp_security=mode,
        from_header=user,
        smtp_extra=auth + f', ca_file = "{mailstack.ca_file}"',
    )
    trusting.add_partners([{"email": partner, "name": "P"}])
    assert trusting.worker().send_cycle().sent == 1
    mailstack.wait_for_messages(partner)
    trusting.close()


# --------------------------------------------------------------------------- passwords


SMTP_PASSWORD = "Smtp-S3cret-7f3a9c"
IMAP_PASSWORD = "Imap-S3cret-d41e08"


def secret_forms(password: str, user: str) -> list[bytes]:
    """The password as it could leak: plain, and as SMTP/IMAP AUTH would encode it."""
    forms = [password.encode(), password.encode("utf-16-le")]
    for auth in (f"\0{user}\0{password}", password):
        forms.append(base64.b64encode(auth.encode()))
    return forms


@pytest.fixture
def secret_imap() -> Iterator[LocalIMAPServer]:
    with LocalIMAPServer(password=IMAP_PASSWORD) as server:
        yield server


@pytest.mark.parametrize("source", ["password_env", "password_cmd"])
def test_passwords_never_reach_logs_database_or_exports(
    tmp_path: Path,
    smtp_server_factory: Callable[..., LocalSMTPServer],
    secret_imap: LocalIMAPServer,
    source: str,
) -> None:
    from outreach.testing import partner_mail

    smtp = smtp_server_factory(username="jlee", password=SMTP_PASSWORD)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OUTREACH_")}
    if source == "password_env":
        env.update(TEST_SMTP_PW=SMTP_PASSWORD, TEST_IMAP_PW=IMAP_PASSWORD)
        smtp_auth = ', username = "jlee", password_env = "TEST_SMTP_PW"'
        imap_auth = {"password_env": "TEST_IMAP_PW"}
    else:
        (tmp_path / "smtp.pw").write_text(SMTP_PASSWORD + "\n")
        (tmp_path / "imap.pw").write_text(IMAP_PASSWORD + "\n")
        smtp_auth = f', username = "jlee", password_cmd = "cat {tmp_path / "smtp.pw"}"'
        imap_auth = {"password_cmd": f"cat {tmp_path / 'imap.pw'}"}
    ws = Workspace(
        tmp_path / "project",
        smtp_port=smtp.port,
        smtp_extra=smtp_auth,
        imap={
            "host": "127.0.0.1",
            "port": secret_imap.port,
            "security": "none",
            "username": secret_imap.user,
            **imap_auth,
        },
        account_extra="save_sent = true",
        campaign=ALWAYS_OPEN + '[[steps]]\ntemplate = "hello"\nsubject = "Hi"\n'
        '[[steps]]\ntemplate = "nudge"\nafter = "0s"\n',
    )
    secret_imap.create_folder("Sent")
    ws.add_partners(partner_rows(3))
    ws.close()
    config = str(ws.root / "config.toml")

    def run(*args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [sys.executable, "-m", "outreach", "--config", config, *args],
            capture_output=True,
            env=env,
            timeout=120,
        )

    outputs: list[bytes] = []
    for log_flags in (["--log-json", "-v"], ["-v"]):
        done = run("run", "--once", *log_flags)
        outputs += [done.stdout, done.stderr]
        assert done.returncode == 0, done.stderr.decode()
    # replies are read, recorded and exported too
    for message in smtp.messages[:2]:
        secret_imap.append(partner_mail.reply(message.raw, "Thanks, all good"))
    outputs += [run("run", "--once", "--log-json", "-v").stderr]
    # and failures: a refused login, an unreachable server
    smtp.password = "rotated-on-the-server"
    secret_imap.append(partner_mail.reply(smtp.messages[2].raw, "One more"))
    for flags in (["--log-json", "-v"], ["-v"]):
        done = run("run", "--once", *flags)
        outputs += [done.stdout, done.stderr]
    commands = [
        ["export", what, "--format", fmt]
        for what in ("events", "replies", "partners")
        for fmt in ("jsonl", "csv", "json")
    ]
    commands += [
        ["status", "--json"],
        ["status"],
        ["check"],
        ["partners", "list", "--json"],
        ["resolve"],
        ["replies", "--json"],
        ["replies"],
        ["log"],
        ["report", "checkin"],
    ]
    for command in commands:  # in-process: the read-only views need no real process
        result = CliRunner().invoke(cli, ["--config", config, *command], env=env)
        assert_no_traceback(result)
        outputs += [result.stdout_bytes, result.stderr_bytes]

    assert b"sent" in b"".join(outputs)  # the logs are there...
    stores = [p.read_bytes() for p in (ws.root).glob("outreach.db*")]
    assert stores, "the database files"
    for password, user in ((SMTP_PASSWORD, "jlee"), (IMAP_PASSWORD, secret_imap.user)):
        for form in secret_forms(password, user):
            for index, blob in enumerate(outputs):
                assert form not in blob, f"{password} in output #{index}:\n{blob.decode()[:2000]}"
            for blob in stores:
                assert form not in blob, f"{password} in the database"


def _invoke(project: Path, *args: str) -> Result:
    result = invoke(args, project=project)
    assert_no_traceback(result)
    return result


# --------------------------------------------------------------------------- echoed credentials

# Issue 16, point 5: a server that quotes the credentials it refuses (or anything else it
# says) never gets the password, or any base64 of a text containing it, printed, logged or
# stored. Checked on every output and on the database's bytes.

BASE64_RUN = re.compile(rb"[A-Za-z0-9+/]{4,}=*")


def leaked(blob: bytes, password: str) -> str | None:
    """How `blob` gives `password` away: as it is, or in any base64 run that decodes (from
    any of its first four characters) to bytes containing it; None when it does not."""
    secret = password.encode()
    for form in (secret, password.encode("utf-16-le")):
        if form in blob:
            return f"as {form!r}"
    for run in BASE64_RUN.findall(blob):
        body = run.rstrip(b"=")
        for start in range(4):
            chunk = body[start:]
            chunk = chunk[:-1] if len(chunk) % 4 == 1 else chunk
            try:
                decoded = base64.b64decode(chunk + b"=" * (-len(chunk) % 4))
            except ValueError:
                continue
            if secret in decoded:
                return f"in base64 {run!r}"
    return None


def test_the_leak_finder_finds_each_form() -> None:
    for text in (f"\0jlee\0{SMTP_PASSWORD}", SMTP_PASSWORD, f"x{SMTP_PASSWORD}yz"):
        assert leaked(b"535 " + base64.b64encode(text.encode()), SMTP_PASSWORD)
    assert leaked(SMTP_PASSWORD.encode(), SMTP_PASSWORD)
    assert leaked(b"535 5.7.8 Authentication credentials invalid", SMTP_PASSWORD) is None


class EchoingIMAPLogin(threading.Thread):
    """An IMAP server (RFC 3501 greeting, CAPABILITY, LOGIN, AUTHENTICATE, LOGOUT) that
    refuses every login with a NO quoting what the client sent: the command line as it came,
    and its base64. A careless server's bug, shown to outreach's real IMAP client."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.logins = 0

    def run(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with conn, conn.makefile("rwb") as stream:
                self.serve(stream)

    def serve(self, stream: Any) -> None:
        stream.write(b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] echo server ready\r\n")
        stream.flush()
        for line in stream:
            tag, _, rest = line.rstrip(b"\r\n").partition(b" ")
            command = rest.split(b" ", 1)[0].upper()
            if command == b"CAPABILITY":
                stream.write(b"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n" + tag + b" OK done\r\n")
            elif command in (b"LOGIN", b"AUTHENTICATE"):
                self.logins += 1
                stream.write(
                    tag
                    + b" NO [AUTHENTICATIONFAILED] Invalid credentials: "
                    + rest
                    + b" ("
                    + base64.b64encode(rest)
                    + b")\r\n"
                )
            elif command == b"LOGOUT":
                stream.write(b"* BYE bye\r\n" + tag + b" OK done\r\n")
                stream.flush()
                return
            else:
                stream.write(tag + b" BAD unknown\r\n")
            stream.flush()

    def close(self) -> None:
        self.listener.close()


ECHO_535 = "535 5.7.8 Authentication failed: {sasl} (for {login} with {password})"


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_credentials_a_server_echoes_never_reach_output_log_or_database(
    tmp_path: Path,
    smtp_server_factory: Callable[..., LocalSMTPServer],
    mechanism: str,
) -> None:
    """An SMTP 535 repeating the AUTH data (aiosmtpd, PLAIN or LOGIN), an IMAP NO repeating
    the LOGIN command, and accepted messages whose replies quote the password too: nothing of
    it reaches stdout, stderr (the journal), the ledger or the worker's state."""
    echo_imap = EchoingIMAPLogin()
    echo_imap.start()
    refusing = smtp_server_factory(
        username="jlee",
        password="not-" + SMTP_PASSWORD,
        auth_reply=ECHO_535,
        auth_exclude=[m for m in ("PLAIN", "LOGIN") if m != mechanism],
    )
    accepting = smtp_server_factory(username="jlee", password=SMTP_PASSWORD)
    b64 = base64.b64encode(f"\0jlee\0{SMTP_PASSWORD}".encode()).decode()
    accepting.queue_data_responses(
        f"250 2.0.0 queued as {b64}", f"451 4.3.0 try again, {SMTP_PASSWORD}"
    )
    accepting.refuse("p0002@partners.test", f"550 5.1.1 no ({b64})")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OUTREACH_")}
    env.update(TEST_SMTP_PW=SMTP_PASSWORD, TEST_IMAP_PW=IMAP_PASSWORD)
    auth = ', username = "jlee", password_env = "TEST_SMTP_PW"'
    campaign = ALWAYS_OPEN + '[[steps]]\ntemplate = "hello"\nsubject = "Hi"\n'
    projects = {
        "smtp": Workspace(
            tmp_path / "smtp", smtp_port=refusing.port, smtp_extra=auth, campaign=campaign
        ),
        "imap": Workspace(
            tmp_path / "imap",
            smtp_port=accepting.port,
            smtp_extra=auth,
            campaign=campaign,
            imap={
                "host": "127.0.0.1",
                "port": echo_imap.port,
                "security": "none",
                "username": "jlee",
                "password_env": "TEST_IMAP_PW",
            },
        ),
        "replies": Workspace(
            tmp_path / "replies", smtp_port=accepting.port, smtp_extra=auth, campaign=campaign
        ),
    }
    for ws in projects.values():
        ws.add_partners(partner_rows(3))
        ws.close()
    outputs: list[tuple[str, bytes]] = []

    def run(name: str, *args: str) -> subprocess.CompletedProcess[bytes]:
        config = str(projects[name].root / "config.toml")
        done = subprocess.run(
            [sys.executable, "-m", "outreach", "--config", config, *args],
            capture_output=True,
            env=env,
            timeout=120,
        )
        outputs.extend(
            [(f"{name} {args} stdout", done.stdout), (f"{name} {args} stderr", done.stderr)]
        )
        return done

    try:
        for name in ("smtp", "imap"):
            for flags in (["-v"], ["--log-json", "-v"]):
                done = run(name, "run", "--once", *flags)
                assert done.returncode == 1, done.stderr.decode()
                assert b"refused" in done.stderr  # the login was refused, and said so
            # the long-running worker stops on it (exit 1) and keeps it as its last error
            assert run(name, "run", "--log-json", "-v").returncode == 1
            run(name, "status")
            run(name, "status", "--json")
        assert refusing.connections == 0 and echo_imap.logins >= 3
        assert run("replies", "run", "--once", "-v").returncode == 0
        run("replies", "status")
        run("replies", "export", "events", "--format", "csv")
    finally:
        echo_imap.close()
    for ws in projects.values():
        for path in ws.root.glob("outreach.db*"):
            outputs.append((str(path), path.read_bytes()))
    rows = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]);"
            "print(c.execute('select group_concat(last_error) from messages').fetchone());"
            "print(c.execute('select last_error from worker').fetchone())",
            str(projects["smtp"].root / "outreach.db"),
        ],
        capture_output=True,
    ).stdout
    for password in (SMTP_PASSWORD, IMAP_PASSWORD):
        for where, blob in outputs:
            how = leaked(blob, password)
            assert how is None, f"{password} {how} in {where}:\n{blob[:3000]!r}"
    assert any(b"[redacted]" in blob for _, blob in outputs)  # the echo was seen, and hidden
    assert b"redacted" in rows, rows  # the worker kept the error, without the password


@pytest.mark.parametrize("password", ["abcd", "secret", SMTP_PASSWORD, "pässwörd-ü"])
@pytest.mark.parametrize("before", ["", "x", "xy", "\0jlee\0"])
@pytest.mark.parametrize("after", ["", "z", "zz!"])
def test_redaction_hides_any_base64_holding_the_password(
    password: str, before: str, after: str
) -> None:
    """Short passwords too, at each of the three positions in a base64 group, and nothing
    else: an ordinary line is left as it is."""
    from outreach.core.redaction import redact_secrets

    echoed = base64.b64encode((before + password + after).encode()).decode()
    line = f"535 5.7.8 Authentication failed: {echoed} ({password})"
    assert redact_secrets(line, [password]) == (
        "535 5.7.8 Authentication failed: [redacted] ([redacted])"
    )
    ordinary = "250 2.0.0 OK queued as L000001 for p0001@partners.test"
    assert redact_secrets(ordinary, [password]) == ordinary
