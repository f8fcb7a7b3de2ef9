"""Pure modules decide; adapters do I/O. The pure ones must not import a network, database
or CLI library, not even through another outreach module they import."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from helpers import REPO

PACKAGE = REPO / "outreach"
PURE = [
    "core.plan",
    "core.roster",
    "core.durations",
    "core.model",
    "core.inbound.classify",
    "core.inbound.mailparse",
    "core.oauth2",
    "core.sasl",
]
FORBIDDEN = frozenset(
    {
        "socket",
        "sqlite3",
        "sqlite_utils",
        "aiosmtplib",
        "imapclient",
        "click",
        "asyncio",
        "smtplib",
        "imaplib",
        "http",
        "requests",
        "authlib",
    }
)


def imported_modules(source: str, module: str) -> set[str]:
    """Every module a source imports, anywhere in it (also inside functions), as full names."""
    package = module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(p for p in [*parts, node.module or ""] if p)
            else:
                base = node.module or ""
            found.add(base)
            # `from outreach import store` imports the module outreach.store
            found.update(f"{base}.{alias.name}" for alias in node.names)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute | ast.Name)
            and getattr(node.func, "attr", getattr(node.func, "id", ""))
            in (
                "import_module",
                "__import__",
            )
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.add(node.args[0].value)
    return found


def own_module_path(name: str) -> Path | None:
    """outreach.x -> outreach/x.py (or a package's __init__.py); None for anything else."""
    if name != "outreach" and not name.startswith("outreach."):
        return None
    relative = Path(*name.split("."))
    for candidate in (REPO / relative.with_suffix(".py"), REPO / relative / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def forbidden_imports(module: str) -> list[str]:
    """'outreach.core.plan -> outreach.config -> click' for every way `module` reaches FORBIDDEN."""
    chains: list[str] = []
    seen: set[str] = set()
    stack: list[tuple[str, tuple[str, ...]]] = [(module, (module,))]
    while stack:
        name, chain = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        path = own_module_path(name)
        if path is None:
            continue
        for imported in sorted(imported_modules(path.read_text(encoding="utf-8"), name)):
            if imported.split(".")[0] in FORBIDDEN:
                chains.append(" -> ".join([*chain, imported]))
            elif own_module_path(imported) is not None:
                stack.append((imported, (*chain, imported)))
    return sorted(set(chains))


PRESENT = [name for name in PURE if (PACKAGE / f"{name.replace('.', '/')}.py").is_file()]


def test_the_foundation_pure_modules_exist() -> None:
    assert {"core.plan", "core.roster", "core.durations", "core.model"} <= set(PRESENT)


@pytest.mark.parametrize("name", PRESENT)
def test_pure_module_imports_no_network_database_or_cli_library(name: str) -> None:
    assert forbidden_imports(f"outreach.{name}") == []


# The checker itself must be able to fail.


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import socket", "socket"),
        ("import sqlite_utils.db", "sqlite_utils.db"),
        ("from asyncio import run", "asyncio"),
        ("def f():\n    import click\n", "click"),
        ("import importlib\nimportlib.import_module('smtplib')", "smtplib"),
        ("from imapclient.exceptions import IMAPClientError", "imapclient.exceptions"),
    ],
)
def test_the_checker_sees_every_kind_of_import(source: str, expected: str) -> None:
    assert expected in imported_modules(source, "outreach.core.plan")


def test_the_checker_follows_outreach_imports() -> None:
    source = "from . import store\nfrom .config import Campaign"
    found = imported_modules(source, "outreach.plan")
    assert {"outreach.store", "outreach.config"} <= found
    chains = forbidden_imports("outreach.store")
    assert any(chain.endswith("sqlite3") or chain.endswith("sqlite_utils") for chain in chains)


# Ways to write to the terminal that bypass outreach.cli.terminal.echo.
DIRECT_OUTPUT = {"print", "click.echo", "click.secho", "sys.stdout.write", "sys.stderr.write"}


def direct_output(source: str) -> list[str]:
    """`name:line` of every call in `source` that writes to the terminal directly."""
    tree = ast.parse(source)
    from_click = {
        a.asname or a.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module == "click"
        for a in node.names
        if a.name in ("echo", "secho")
    }
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = ast.unparse(node.func)
            if name in DIRECT_OUTPUT or name in from_click:
                found.append(f"{name}:{node.lineno}")
    return found


def test_only_the_terminal_module_prints() -> None:
    """Every line for a person goes through outreach.cli.terminal.echo, which shows control
    characters from mail as symbols and hides passwords: at one place, so a new command
    cannot forget it (issue 16). Exports write data through terminal.json_text/safe_text."""
    offenders = {
        path.name: found
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.name != "terminal.py" and (found := direct_output(path.read_text(encoding="utf-8")))
    }
    assert offenders == {}


def test_the_print_checker_sees_each_way() -> None:
    source = (
        "import click, sys\nfrom click import echo as say\nprint(1)\nclick.echo(2)\n"
        "say(3)\nsys.stderr.write('x')\n"
    )
    assert direct_output(source) == ["print:3", "click.echo:4", "say:5", "sys.stderr.write:6"]
