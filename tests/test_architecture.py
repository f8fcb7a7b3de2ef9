"""The house's rules, checked on every run (docs/architecture.md says why each holds).

The package's folders are its layers: core decides (no I/O), store and transport do the
I/O of the database and the mail servers, engine runs the use cases, views format what
people read, cli parses and prints, testing simulates the outside world. The rules:

- core imports only the standard library's pure parts, core itself (with core.errors) and
  pure libraries (jinja2, email-validator, flufl.bounce, mail-parser-reply); it reads no
  clock (`now` comes in as an argument);
- store and transport import only core, and never each other;
- config (the loader) imports only core;
- engine never imports views, cli or testing; views never import transport, engine, cli
  or testing;
- only the entry points (cli/, __main__) import cli; nothing in the package imports
  testing but testing itself (the CLI registers `demo` by name: cli/app.py);
- SQL text appears only under store/; no import cycles; no module over 800 lines;
- only cli/terminal.py writes to the terminal.

Everything is read with `ast` from the source: nothing is imported or run. Imports inside
functions count; imports under `if TYPE_CHECKING:` do not (they never run).
"""

from __future__ import annotations

import ast
import re
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from helpers import REPO

PACKAGE = REPO / "outreach"
LAYERS = ("core", "store", "transport", "engine", "views", "cli", "testing")
MAX_LINES = 800

# Standard-library modules that do I/O, run things, or read a clock or a random source.
IMPURE_STDLIB = frozenset(
    {
        "asyncio", "concurrent", "fcntl", "http", "imaplib", "multiprocessing", "os",
        "random", "secrets", "select", "selectors", "shutil", "signal", "smtplib", "socket",
        "sqlite3", "ssl", "subprocess", "sys", "tempfile", "threading", "time", "urllib",
        "webbrowser",
    }
)  # fmt: skip
# Libraries the core may use: they compute, they do no I/O of their own.
PURE_LIBRARIES = frozenset({"jinja2", "email_validator", "flufl", "mailparser_reply"})
# Calls that read the wall clock.
CLOCK_CALLS = frozenset({"now", "today", "utcnow", "time", "monotonic"})
# SQL as it is written in this project (upper case), as ../shared/tools/layers.py finds it.
SQL = re.compile(
    r"\b(SELECT\s[\s\S]*\bFROM\b|INSERT\s+(OR\s+\w+\s+)?INTO\b|UPDATE\s+\w+\s+SET\b|"
    r"DELETE\s+FROM\b|CREATE\s+(TABLE|INDEX|VIEW|UNIQUE|TRIGGER)\b|PRAGMA\s+\w+)"
)


# --------------------------------------------------------------------------- reading the code


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def type_checking_lines(tree: ast.AST) -> set[int]:
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for sub in node.body:
                skip.update(n.lineno for n in ast.walk(sub) if hasattr(n, "lineno"))
    return skip


def imported_modules(source: str, module: str, *, is_package: bool = False) -> set[str]:
    """Every module a source imports, anywhere in it (also inside functions, and
    importlib.import_module with a constant name), as full names; not what runs only for
    the type checker."""
    package = module if is_package else module.rpartition(".")[0]
    tree = ast.parse(source)
    skip = type_checking_lines(tree)
    found: set[str] = set()
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join(p for p in [*parts, node.module or ""] if p)
            else:
                base = node.module or ""
            found.add(base)
            # `from outreach import store` imports the module outreach.store
            found.update(f"{base}.{alias.name}" for alias in node.names)
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", ""))
            in ("import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.add(node.args[0].value)
    return found


def package_modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


MODULES = package_modules()


def own_imports(module: str) -> set[str]:
    """The package's modules that `module` imports (the longest name that is one)."""
    path = MODULES[module]
    found = set()
    for name in imported_modules(
        path.read_text(encoding="utf-8"), module, is_package=path.name == "__init__.py"
    ):
        parts = name.split(".")
        for size in range(len(parts), 0, -1):
            candidate = ".".join(parts[:size])
            if candidate in MODULES and candidate != module:
                found.add(candidate)
                break
    return found


def layer(module: str) -> str | None:
    """core, store, ... for a module in a layer; config and the other top-level modules
    (logs, __main__) are None-layered: `top`."""
    parts = module.split(".")
    if len(parts) > 1 and parts[1] in LAYERS:
        return parts[1]
    if len(parts) > 1 and parts[1] == "config":
        return "config"
    return None


GRAPH = {module: own_imports(module) for module in MODULES}


def breaks(allowed: dict[str | None, set[str | None]]) -> list[str]:
    """'a imports b' for each import from a layer into one it may not use."""
    found = []
    for module, imports in sorted(GRAPH.items()):
        source = layer(module)
        if source not in allowed:
            continue
        for target in sorted(imports):
            if layer(target) not in allowed[source] | {source}:
                found.append(f"{module} imports {target}")
    return found


# --------------------------------------------------------------------------- the rules


def test_the_layers_are_packages() -> None:
    assert {name for name in LAYERS if (PACKAGE / name / "__init__.py").is_file()} == set(LAYERS)


def test_the_core_imports_only_the_core() -> None:
    assert breaks({"core": set()}) == []


def test_the_core_imports_no_io_library_and_only_pure_libraries() -> None:
    """Not through itself either: each core module's own imports are checked."""
    stdlib = set(sys.stdlib_module_names)
    found = []
    for module, path in MODULES.items():
        if layer(module) != "core":
            continue
        source = path.read_text(encoding="utf-8")
        for name in imported_modules(source, module, is_package=path.name == "__init__.py"):
            top = name.split(".")[0]
            if top in ("outreach", "__future__"):
                continue
            if top in IMPURE_STDLIB or (top not in stdlib and top not in PURE_LIBRARIES):
                found.append(f"{module} imports {name}")
    assert found == []


def clock_reads(source: str) -> list[str]:
    """`name:line` of every call that reads a clock: datetime.now(), date.today(), time.time()."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in CLOCK_CALLS
            and ast.unparse(node.func.value).split(".")[-1] in ("datetime", "date", "time")
        ):
            found.append(f"{ast.unparse(node.func)}:{node.lineno}")
    return found


def test_the_core_reads_no_clock() -> None:
    found = {
        module: reads
        for module, path in MODULES.items()
        if layer(module) == "core" and (reads := clock_reads(path.read_text(encoding="utf-8")))
    }
    assert found == {}


def test_store_and_transport_know_only_the_core() -> None:
    assert breaks({"store": {"core"}, "transport": {"core"}}) == []


def test_the_loader_knows_only_the_core() -> None:
    assert breaks({"config": {"core"}}) == []


def test_the_engine_never_reaches_up() -> None:
    allowed = {"core", "config", "store", "transport", None}
    assert breaks({"engine": allowed}) == []


def test_the_views_read_the_store_and_format() -> None:
    assert breaks({"views": {"core", "store", None}}) == []


def test_only_the_entry_points_import_the_cli() -> None:
    found = [
        f"{module} imports {target}"
        for module, imports in sorted(GRAPH.items())
        for target in sorted(imports)
        if layer(target) == "cli" and layer(module) != "cli" and module != "outreach.__main__"
    ]
    assert found == []


def test_nothing_in_the_package_imports_testing() -> None:
    """The simulated outside world is for the tests and `outreach demo` (registered by name
    in cli/app.py), never a dependency of the product."""
    found = [
        f"{module} imports {target}"
        for module, imports in sorted(GRAPH.items())
        for target in sorted(imports)
        if layer(target) == "testing" and layer(module) != "testing"
    ]
    assert found == []


def sql_outside_store() -> list[str]:
    found = []
    for module, path in MODULES.items():
        if layer(module) == "store":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and len(node.value) > 12
                and " " in node.value.strip()
                and SQL.search(node.value)
            ):
                found.append(f"{module}:{node.lineno}")
    return found


def test_sql_is_written_only_under_store() -> None:
    assert sql_outside_store() == []


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in graph.get(node, ()):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles() -> None:
    assert cycles(GRAPH) == []


def test_no_module_is_over_800_lines() -> None:
    long = {
        module: lines
        for module, path in MODULES.items()
        if (lines := path.read_text(encoding="utf-8").count("\n")) > MAX_LINES
    }
    assert long == {}


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
    cannot forget it (issue 16). Exports write data through core.text.json_text/safe_text."""
    offenders = {
        module: found
        for module, path in MODULES.items()
        if module != "outreach.cli.terminal"
        and (found := direct_output(path.read_text(encoding="utf-8")))
    }
    assert offenders == {}


# ------------------------------------------------------------------ a rule in two languages


def test_the_review_queue_rule_is_the_same_in_python_and_in_the_view(tmp_path: Path) -> None:
    """needs_review (core/inbound/effects.py) and the reply_log view's needs_review column
    (store/schema.py, m005: frozen) say the same for every combination."""
    from outreach.core.inbound.effects import needs_review
    from outreach.store import Store

    combinations = [
        (kind, contact, unverified, duplicate)
        for kind in ("reply", "auto_reply", "bounce", "unsubscribe", "other", "error")
        for contact in (False, True)
        for unverified in (None, "not the partner")
        for duplicate in (None, 1)
    ]
    with Store(tmp_path / "o.db") as store, store.write():
        for uid, (kind, contact, unverified, duplicate) in enumerate(combinations, 1):
            store.record_inbound(
                {
                    "account": "a", "folder": "INBOX", "uidvalidity": 1, "uid": uid,
                    "kind": kind, "contact_change": int(contact), "unverified": unverified,
                    "duplicate_of": duplicate,
                    "processed_at": datetime(2026, 1, 1, tzinfo=UTC).isoformat(),
                }
            )  # fmt: skip
        view = {row["id"]: bool(row["needs_review"]) for row in store.query(
            "SELECT id, needs_review FROM reply_log"
        )}  # fmt: skip
    assert view == {
        uid: needs_review(kind, contact, unverified, duplicate)
        for uid, (kind, contact, unverified, duplicate) in enumerate(combinations, 1)
    }


# --------------------------------------------------------------------------- the checks can fail


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


def test_the_checker_resolves_relative_imports_and_skips_type_checking() -> None:
    source = (
        "from typing import TYPE_CHECKING\nfrom . import model\nfrom ..store import Store\n"
        "if TYPE_CHECKING:\n    from outreach.cli.app import App\n"
    )
    found = imported_modules(source, "outreach.core.plan")
    assert {"outreach.core.model", "outreach.store.Store"} <= found
    assert "outreach.cli.app" not in found


def test_the_clock_and_sql_checks_can_fail() -> None:
    source = "from datetime import datetime, date\nx = datetime.now()\ny = date.today()\n"
    assert clock_reads(source) == ["datetime.now:2", "date.today:3"]
    assert SQL.search("SELECT id FROM partners") and SQL.search("PRAGMA quick_check")
    assert not SQL.search("select the partners from the roster")


def test_the_cycle_checker_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_layer_checker_finds_a_break(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(GRAPH, "outreach.core.fake", {"outreach.store.outbox"})
    assert breaks({"core": set()}) == ["outreach.core.fake imports outreach.store.outbox"]


def test_the_print_checker_sees_each_way() -> None:
    source = (
        "import click, sys\nfrom click import echo as say\nprint(1)\nclick.echo(2)\n"
        "say(3)\nsys.stderr.write('x')\n"
    )
    assert direct_output(source) == ["print:3", "click.echo:4", "say:5", "sys.stderr.write:6"]
