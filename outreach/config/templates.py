"""templates/ -> the renderer's templates: the one place template files are read.

core/render.py renders from what this gives it (a Jinja loader over the folder, whether a
template exists, a file's bytes for an error message), so it reads no file itself.
"""

from __future__ import annotations

import time
from pathlib import Path

import jinja2

from outreach.config.toml_reader import key_location
from outreach.core.render import Renderer
from outreach.core.settings import Config
from outreach.core.template_limits import RenderLimits


class TemplateFolder:
    """A project's templates/ folder (core.render.TemplateFiles)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.loader = jinja2.FileSystemLoader(str(folder))

    def exists(self, name: str) -> bool:
        return (self.folder / name).is_file()

    def read(self, name: str) -> bytes | None:
        try:
            return (self.folder / name).read_bytes()
        except OSError:
            return None

    def key_location(self, path: Path, key_path: str) -> str:
        return key_location(path, key_path)


def renderer_for(config: Config, limits: RenderLimits | None = None) -> Renderer:
    """A renderer of the project's templates, with the time limit measured in real time."""
    return Renderer(config, TemplateFolder(config.templates_dir), time.monotonic, limits)
