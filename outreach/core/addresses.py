"""Email address validation and normalisation (email-validator does the real work)."""

from __future__ import annotations

from email_validator import EmailNotValidError, validate_email


def normalize_address(text: str) -> str:
    """A validated address, lower-cased so it can serve as a key; ValueError if invalid.

    `test_environment` admits the reserved `.test` domain (RFC 6761) used by the demo and
    tests; DNS is never consulted (no network at import or check time). Messages are built
    without SMTPUTF8 (RFC 6531), so a non-ASCII local part is refused and an international
    domain is kept in its ASCII (IDNA) form, the one that can go into a header.
    """
    candidate = (text or "").strip()
    if not candidate:
        raise ValueError("the email address is empty")
    try:
        result = validate_email(
            candidate, check_deliverability=False, test_environment=True, allow_smtputf8=False
        )
    except EmailNotValidError as exc:
        raise ValueError(f"{candidate!r} is not a valid email address: {exc}") from None
    return (result.ascii_email or result.normalized).lower()


def address_domain(address: str) -> str:
    return address.rpartition("@")[2].lower()
