"""The command line (click): `app` defines the group, App (what a command needs, built
lazily) and the shared options; each other module adds one command group. Importing this
package registers every command (as rq does), so `cli` and `main` come from here.

`outreach demo` is registered by name and loaded only when it runs (cli/app.py,
OutreachGroup.lazy): it lives in testing/, with the local mail servers it starts.
"""

from outreach.cli import (  # noqa: F401  (each registers its commands on `cli`)
    answers,
    auth,
    backup,
    campaigns,
    classify,
    logs,
    partners,
    project,
    run,
    service,
)
from outreach.cli.app import cli, main

__all__ = ["cli", "main"]
