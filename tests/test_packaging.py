"""The package as users get it: `python -m outreach`, and a regular (non-editable) install."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from helpers import REPO, edit, make_project

from outreach.cli.project import SAMPLE_FILES


def clean_env() -> dict[str, str]:
    """The environment without anything that could point Python or outreach elsewhere."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PYTHON", "OUTREACH_", "VIRTUAL_ENV", "PIP_REQUIRE"))
    }
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def run(
    args: list[str | Path], cwd: Path, timeout: float = 60, check: bool = True
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    if check and done.returncode != 0:
        raise AssertionError(
            f"{' '.join(map(str, args))} exited {done.returncode}\n"
            f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
        )
    return done


def test_python_m_outreach_help(tmp_path: Path) -> None:
    done = run([sys.executable, "-m", "outreach", "--help"], cwd=tmp_path)
    assert done.stdout.startswith("Usage: outreach ")
    for command in ("init", "check", "preview", "partners"):
        assert f"  {command} " in done.stdout
    assert done.stderr == ""


def test_python_m_outreach_version(tmp_path: Path) -> None:
    from outreach import __version__

    done = run([sys.executable, "-m", "outreach", "--version"], cwd=tmp_path)
    assert __version__ in done.stdout


def test_python_m_outreach_reports_a_bad_file_in_one_line(tmp_path: Path) -> None:
    project = make_project(tmp_path / "p")
    edit(project / "config.toml", "[worker]", "[worker")
    done = run(
        [sys.executable, "-m", "outreach", "--config", project / "config.toml", "partners", "list"],
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith(f"error: {project / 'config.toml'}:")
    assert len(done.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_a_regular_install_carries_everything_it_needs(tmp_path: Path) -> None:
    """Build a wheel, install it (not editable) into a new venv, and use it from elsewhere.

    The build backend (hatchling) and the dependencies come from the package index the
    way a user's `pip install .` gets them (pip's cache makes this quick).
    """
    wheels = tmp_path / "wheels"
    run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", wheels, REPO],
        cwd=tmp_path,
        timeout=120,
    )
    (wheel,) = wheels.glob("outreach-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in SAMPLE_FILES:
        assert f"outreach/sample/{name}" in names, f"the wheel lacks the sample's {name}"
    assert "outreach/__main__.py" in names

    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=tmp_path)
    python = venv / "bin" / "python"
    run(
        [sys.executable, "-m", "pip", "--python", python, "install", "--quiet", wheel],
        cwd=tmp_path,
        timeout=120,
    )

    work = tmp_path / "somewhere else"
    work.mkdir()
    location = run([python, "-c", "import outreach; print(outreach.__file__)"], cwd=work)
    assert Path(location.stdout.strip()).is_relative_to(venv), location.stdout
    assert not Path(location.stdout.strip()).is_relative_to(REPO)

    outreach = venv / "bin" / "outreach"
    assert run([outreach, "--help"], cwd=work).stdout.startswith("Usage: outreach ")
    assert run([python, "-m", "outreach", "--help"], cwd=work).stdout.startswith("Usage: outreach")

    init = run([outreach, "init", "project"], cwd=work)
    assert "wrote" in init.stdout
    project = work / "project"
    for name in SAMPLE_FILES:
        assert (project / name).read_bytes() == (REPO / "outreach" / "sample" / name).read_bytes()

    check = run([outreach, "check"], cwd=project)
    assert "ok: everything checks out" in check.stdout
    run([outreach, "partners", "import", "partners.csv"], cwd=project)
    assert "rendered for 4 partner(s)" in run([outreach, "check"], cwd=project).stdout
    preview = run(
        [outreach, "preview", "checkin", "--partner", "priya.shah@netforge.example", "--step", "3"],
        cwd=project,
    )
    assert "Subject: Re: Lincoln High CTE check-in: how is NetForge IT doing?" in preview.stdout
