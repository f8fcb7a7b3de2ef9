"""OAuth2, the pure parts and the config: provider presets, token lifetimes, device-flow
decisions, SASL strings (XOAUTH2, RFC 7628 OAUTHBEARER), and [accounts.NAME.oauth2]."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from helpers import edit, invoke, isolate_env, line_of, make_project
from hypothesis import given
from hypothesis import strategies as st

from outreach.config import load_config
from outreach.config.oauth2_endpoints import endpoint_problem, preset_endpoints
from outreach.config.passwords import server_password
from outreach.core.errors import Problems
from outreach.core.oauth2 import (
    SCOPES,
    Endpoints,
    Flow,
    PollStep,
    Provider,
    TokenSet,
    needs_refresh,
    poll_interval,
    poll_step,
    refresh_margin,
    sign_in_needed,
    slower,
    token_set_from_response,
)
from outreach.core.sasl import (
    Conversation,
    Mechanism,
    describe_challenge,
    error_answer,
    initial_response,
)

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


# --------------------------------------------------------------------------- presets


def test_microsoft_preset_is_the_tenant_s_v2_device_flow_with_the_documented_scopes() -> None:
    found = preset_endpoints(Provider.MICROSOFT, "contoso.example")
    assert found == Endpoints(
        token_url="https://login.microsoftonline.com/contoso.example/oauth2/v2.0/token",
        device_authorization_url="https://login.microsoftonline.com/contoso.example/oauth2/v2.0/devicecode",
    )
    assert SCOPES[Provider.MICROSOFT] == (
        "https://outlook.office.com/IMAP.AccessAsUser.All",
        "https://outlook.office.com/SMTP.Send",
        "offline_access",
    )


def test_google_preset_is_the_installed_app_flow_with_the_mail_scope() -> None:
    found = preset_endpoints(Provider.GOOGLE, "organizations")
    assert found.device_authorization_url is None  # its device flow refuses mail scopes
    assert found.authorization_url == "https://accounts.google.com/o/oauth2/v2/auth"
    assert found.token_url == "https://oauth2.googleapis.com/token"
    assert found.revocation_url == "https://oauth2.googleapis.com/revoke"
    assert SCOPES[Provider.GOOGLE] == ("https://mail.google.com/",)


def test_a_test_origin_replaces_only_scheme_host_and_port() -> None:
    found = preset_endpoints(Provider.MICROSOFT, "organizations", "http://127.0.0.1:4100")
    assert found.token_url == "http://127.0.0.1:4100/organizations/oauth2/v2.0/token"
    google = preset_endpoints(Provider.GOOGLE, "x", "http://127.0.0.1:4100")
    assert google.authorization_url == "http://127.0.0.1:4100/o/oauth2/v2/auth"


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://login.example/token", True),
        ("http://127.0.0.1:8080/token", True),
        ("http://localhost/token", True),
        ("http://login.example/token", False),  # tokens in clear text over a network
        ("ftp://login.example/token", False),
        ("https:///token", False),
    ],
)
def test_endpoints_are_https_except_on_loopback(url: str, ok: bool) -> None:
    assert (endpoint_problem(url) is None) is ok


# --------------------------------------------------------------------------- tokens


def test_a_token_response_becomes_a_token_set_with_its_expiry() -> None:
    tokens = token_set_from_response(
        {
            "access_token": "AT",
            "token_type": "Bearer",
            "expires_in": 3599,
            "refresh_token": "RT",
            "scope": "a b",
        },
        NOW,
    )
    assert tokens.expires_at == NOW + timedelta(seconds=3599)
    assert (tokens.refresh_token, tokens.scope, tokens.obtained_at) == ("RT", "a b", NOW)
    assert "AT" not in repr(tokens) and "RT" not in repr(tokens)


def test_a_refresh_without_a_new_refresh_token_keeps_the_old_one() -> None:
    tokens = token_set_from_response({"access_token": "AT2", "expires_in": "60"}, NOW, "RT1")
    assert tokens.refresh_token == "RT1"
    assert tokens.expires_at == NOW + timedelta(seconds=60)  # "60" as a string, too


@pytest.mark.parametrize(
    "response",
    [
        {},
        {"access_token": ""},
        {"access_token": "a b"},
        {"access_token": "x\x01y"},
        {"access_token": "AT", "token_type": "mac"},
    ],
)
def test_a_malformed_token_response_is_refused(response: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        token_set_from_response(response, NOW)


def test_refresh_margin_is_five_minutes_or_a_quarter_of_a_short_lifetime() -> None:
    hour = TokenSet("a", "r", NOW + timedelta(hours=1), NOW)
    assert refresh_margin(hour) == timedelta(minutes=5)
    assert not needs_refresh(hour, NOW + timedelta(minutes=54))
    assert needs_refresh(hour, NOW + timedelta(minutes=55))
    short = TokenSet("a", "r", NOW + timedelta(seconds=4), NOW)
    assert not needs_refresh(short, NOW + timedelta(seconds=2.9))
    assert needs_refresh(short, NOW + timedelta(seconds=3))
    assert not needs_refresh(TokenSet("a", "r", None, NOW), NOW + timedelta(days=9))


@given(st.integers(min_value=1, max_value=10**7), st.integers(min_value=0, max_value=10**7))
def test_a_token_is_always_renewed_before_it_expires(lifetime: int, elapsed: int) -> None:
    tokens = token_set_from_response({"access_token": "AT", "expires_in": lifetime}, NOW)
    moment = NOW + timedelta(seconds=elapsed)
    if tokens.expires_at is not None and moment >= tokens.expires_at:
        assert needs_refresh(tokens, moment)


# --------------------------------------------------------------------------- device flow


def test_device_poll_answers_follow_rfc_8628() -> None:
    assert poll_step("authorization_pending") is PollStep.WAIT
    assert poll_step("slow_down") is PollStep.SLOW_DOWN
    assert poll_step("access_denied") is PollStep.DENIED
    assert poll_step("expired_token") is PollStep.EXPIRED
    assert poll_step("invalid_client") is PollStep.FAILED
    assert slower(5.0) == 10.0
    assert poll_interval(None) == 5.0  # RFC 8628 3.2: 5 s when the server names none
    assert poll_interval(0) == 1.0  # never hammer the server
    assert poll_interval(7) == 7.0


@pytest.mark.parametrize(
    ("error", "status", "needed"),
    [
        ("invalid_grant", 400, True),
        ("interaction_required", 400, True),
        ("invalid_client", 401, True),
        ("temporarily_unavailable", 400, False),
        ("", 503, False),
        ("", 429, False),
    ],
)
def test_which_refresh_refusals_need_a_new_sign_in(error: str, status: int, needed: bool) -> None:
    assert sign_in_needed(error, status) is needed


# --------------------------------------------------------------------------- SASL


def test_xoauth2_initial_response_is_the_documented_string() -> None:
    raw = initial_response(
        Mechanism.XOAUTH2, "someuser@example.com", "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg"
    )
    # the example of Google's XOAUTH2 page, base64 included
    assert base64.b64encode(raw) == (
        b"dXNlcj1zb21ldXNlckBleGFtcGxlLmNvbQFhdXRoPUJlYXJlciB5YTI5LnZGOWRmdDRxbVRjMk52YjNSbGNrQmhkSFJoZG1semRHRXVZMjl0Q2cBAQ=="
    )


def test_oauthbearer_initial_response_follows_rfc_7628() -> None:
    raw = initial_response(
        Mechanism.OAUTHBEARER,
        "user@example.com",
        "vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==",
        "server.example.com",
        143,
    )
    # RFC 7628 4.1, with the authorization identity of 3.1
    assert raw == (
        b"n,a=user@example.com,\x01host=server.example.com\x01port=143\x01"
        b"auth=Bearer vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==\x01\x01"
    )
    escaped = initial_response(Mechanism.OAUTHBEARER, "a,b=c@x", "T")
    assert escaped.startswith(b"n,a=a=2Cb=3Dc@x,\x01")  # RFC 5801 saslname


@pytest.mark.parametrize("bad", ["", "a\x01b", "line\r\nbreak"])
def test_sasl_fields_with_control_characters_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        initial_response(Mechanism.XOAUTH2, "u@x", bad)
    with pytest.raises(ValueError):
        initial_response(Mechanism.OAUTHBEARER, bad, "T")


def test_the_error_challenge_is_answered_as_each_mechanism_wants() -> None:
    assert error_answer(Mechanism.XOAUTH2) == b""
    assert error_answer(Mechanism.OAUTHBEARER) == b"\x01"  # RFC 7628 3.2.3
    talk = Conversation(Mechanism.OAUTHBEARER, "u@x", "T", "h", 993)
    assert talk(b"").startswith(b"n,a=u@x,")  # type: ignore[union-attr]
    assert talk(b'{"status":"401","schemes":"bearer","scope":"mail"}') == b"\x01"
    assert talk.error == "status 401, scope mail"
    assert talk(b"more?") is None  # a third challenge: abort ("*")


@given(st.binary(max_size=200))
def test_describing_any_challenge_never_raises_and_stays_short(blob: bytes) -> None:
    text = describe_challenge(blob)
    assert len(text) <= 200 and text.isprintable()


# --------------------------------------------------------------------------- config


def oauth_project(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, smtp: str, imap: str, oauth2: str
) -> Path:
    isolate_env(monkeypatch)
    root = make_project(tmp_path / "p")
    config = root / "config.toml"
    text = config.read_text(encoding="utf-8")
    start = text.index("smtp = {")
    end = text.index("\n", text.index("imap = {")) + 1
    config.write_text(
        text[:start]
        + f"smtp = {{ {smtp} }}\nimap = {{ {imap} }}\n"
        + text[end:]
        + f"\n[accounts.default.oauth2]\n{oauth2}\n",
        encoding="utf-8",
    )
    return config


MS_SMTP = (
    'host = "smtp.office365.com", port = 587, security = "starttls", '
    'username = "jlee@district.example", auth = "oauth2"'
)
MS_IMAP = (
    'host = "outlook.office365.com", port = 993, security = "tls", '
    'username = "jlee@district.example", auth = "oauth2"'
)


def test_the_issue_s_microsoft_example_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = oauth_project(
        tmp_path,
        monkeypatch,
        MS_SMTP,
        MS_IMAP,
        'provider = "microsoft"\nclient_id = "app-1"\ntenant = "organizations"',
    )
    account = load_config(config).accounts["default"]
    assert (account.smtp.auth, account.smtp.sasl, server_password(account.smtp)) == (
        "oauth2",
        "xoauth2",
        None,
    )
    assert account.imap is not None and account.imap.auth == "oauth2"
    oauth2 = account.oauth2
    assert oauth2 is not None and oauth2.flow is Flow.DEVICE
    assert oauth2.scopes == SCOPES[Provider.MICROSOFT]
    assert oauth2.endpoints == preset_endpoints(Provider.MICROSOFT, "organizations")


def test_google_custom_and_token_cmd_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    google = oauth_project(
        tmp_path / "g",
        monkeypatch,
        MS_SMTP,
        MS_IMAP + ', sasl = "oauthbearer"',
        'provider = "google"\nclient_id = "g"\nclient_secret_env = "G_SECRET"',
    )
    account = load_config(google).accounts["default"]
    assert account.oauth2 is not None and account.oauth2.flow is Flow.BROWSER
    assert account.imap is not None and account.imap.sasl == "oauthbearer"
    custom = oauth_project(
        tmp_path / "c",
        monkeypatch,
        MS_SMTP,
        MS_IMAP,
        'provider = "custom"\nclient_id = "c"\nscopes = ["mail"]\n'
        'token_url = "https://id.example/token"\n'
        'device_authorization_url = "https://id.example/device"',
    )
    found = load_config(custom).accounts["default"].oauth2
    assert found is not None and found.flow is Flow.DEVICE and found.scopes == ("mail",)
    command = oauth_project(
        tmp_path / "t", monkeypatch, MS_SMTP, MS_IMAP, 'token_cmd = "my-token-helper district"'
    )
    found = load_config(command).accounts["default"].oauth2
    assert found is not None and found.flow is Flow.COMMAND


def test_oauth2_with_a_password_key_is_exit_2_naming_file_line_and_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = oauth_project(
        tmp_path,
        monkeypatch,
        MS_SMTP + ', password_env = "PW"',
        MS_IMAP,
        'provider = "microsoft"\nclient_id = "app-1"',
    )
    result = invoke(["check"], project=config.parent)
    assert result.exit_code == 2, result.output
    line = line_of(config, "smtp = {")
    assert (
        f'{config}:{line}: accounts.default.smtp.password_env: auth = "oauth2" takes no password'
        in result.output
    )
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("smtp", "oauth2", "key", "words"),
    [
        (
            MS_SMTP,
            'provider = "yahoo"\nclient_id = "x"',
            "accounts.default.oauth2.provider",
            "is not one of: microsoft, google, custom",
        ),
        (
            MS_SMTP,
            'provider = "google"\nclient_id = "x"',
            "accounts.default.oauth2",
            "client_secret_env",
        ),
        (
            MS_SMTP,
            'provider = "microsoft"\nclient_id = "x"\ntoken_url = "https://evil.example/t"',
            "accounts.default.oauth2.token_url",
            "built in",
        ),
        (
            MS_SMTP,
            'provider = "custom"\nclient_id = "x"\nscopes = ["m"]\n'
            'token_url = "http://id.example/token"\ndevice_authorization_url = "https://id.example/d"',
            "accounts.default.oauth2.token_url",
            "https://",
        ),
        (MS_SMTP, 'provider = "microsoft"', "accounts.default.oauth2", "client_id"),
        (
            MS_SMTP,
            'provider = "google"\nclient_id = "x"\nclient_secret_env = "S"\ntenant = "t"',
            "accounts.default.oauth2.tenant",
            "only for provider",
        ),
        (
            MS_SMTP.replace('"oauth2"', '"oauth3"'),
            'provider = "microsoft"\nclient_id = "x"',
            "accounts.default.smtp.auth",
            "is not one of: password, oauth2",
        ),
        (
            MS_SMTP + ', sasl = "plain"',
            'provider = "microsoft"\nclient_id = "x"',
            "accounts.default.smtp.sasl",
            "xoauth2, oauthbearer",
        ),
        (
            MS_SMTP.replace(', auth = "oauth2"', ', sasl = "xoauth2"'),
            'provider = "microsoft"\nclient_id = "x"',
            "accounts.default.smtp.sasl",
            "only for",
        ),
        (
            MS_SMTP,
            'provider = "microsoft"\nclient_id = "x"\nclient = "y"',
            "accounts.default.oauth2.client",
            "unknown key",
        ),
    ],
)
def test_bad_oauth2_settings_name_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, smtp: str, oauth2: str, key: str, words: str
) -> None:
    config = oauth_project(tmp_path, monkeypatch, smtp, MS_IMAP, oauth2)
    with pytest.raises(Problems) as caught:
        load_config(config)
    found = [p for p in caught.value.problems if f": {key}:" in p]
    assert found and words in found[0], caught.value.problems
    assert found[0].startswith(f"{config}:")


def test_auth_oauth2_without_an_oauth2_table_is_a_problem(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = oauth_project(tmp_path, monkeypatch, MS_SMTP, MS_IMAP, "")
    edit(config, "\n[accounts.default.oauth2]\n", "\n")
    with pytest.raises(Problems) as caught:
        load_config(config)
    assert any(
        'accounts.default.smtp.auth: auth = "oauth2" needs an [accounts.default.oauth2]' in p
        for p in caught.value.problems
    ), caught.value.problems
