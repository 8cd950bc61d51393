"""The default files shipped with the distribution: ``params.yaml``, ``tuned.yaml``, ``grids.yaml``, ``examples/`` and
the GX project ``gx/`` (the data contracts' suites and checkpoints).

They are edited at the repository root. An installed wheel carries copies under ``components/defaults/`` (setup.py's
build step puts them there); a source checkout or an editable install (``pip install -e .``) has no such folder and
reads the repository root itself, so there is one copy to edit.

Precedence of the parameter file (``components.config.load_config`` with the default name ``params.yaml``):
``--params FILE`` when given, else ``./params.yaml`` in the working directory when it exists, else the packaged copy
found here. ``unlearn.tuned_file`` is relative to the parameter file, so the packaged params.yaml uses the packaged
tuned.yaml.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

DEFAULT_FILES = ("params.yaml", "tuned.yaml", "grids.yaml", "examples", "gx")
PACKAGED_DIR = "defaults"


def defaults_dir() -> Path | None:
    """The folder holding the default files: the installed package's ``defaults/``, else the source checkout's root
    (``components/``'s parent when it is the mixunlearn project), else None."""
    package = files("components")
    packaged = package.joinpath(PACKAGED_DIR)
    if isinstance(packaged, Path) and (packaged / "params.yaml").is_file():
        return packaged
    if isinstance(package, Path):
        checkout = package.parent
        if (checkout / "params.yaml").is_file() and (checkout / "pyproject.toml").is_file():
            return checkout
    return None


def default_file(name: str | Path) -> Path | None:
    """The packaged copy of ``name`` (relative, e.g. ``params.yaml`` or ``examples/requests/x.json``), or None."""
    folder = defaults_dir()
    if folder is None:
        return None
    path = folder / name
    return path if path.exists() else None
