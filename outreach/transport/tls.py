"""TLS for the mail servers: certificates are always verified; a private CA is trusted only
when config.toml names it (ca_file)."""

from __future__ import annotations

import ssl

from outreach.core.settings import ServerSettings


def tls_context(settings: ServerSettings) -> ssl.SSLContext:
    if settings.ca_file is not None:
        return ssl.create_default_context(cafile=str(settings.ca_file))
    return ssl.create_default_context()
