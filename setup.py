"""Build step of the distribution (the metadata lives in pyproject.toml): copy the default files into the wheel.

``params.yaml``, ``tuned.yaml``, ``grids.yaml``, ``examples/`` and ``gx/`` (the GX project) are edited at the
repository root (DVC, the tests and the docs read them there). A wheel carries copies under ``components/defaults/``
so that an installed ``mixunlearn`` finds them outside the checkout (``components/packaged.py``). An editable
install copies nothing: it reads the checkout's root. MANIFEST.in puts the same files into the sdist, so a wheel
built from the sdist has them too.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
DEFAULT_FILES = ("params.yaml", "tuned.yaml", "grids.yaml", "examples", "gx")  # as components/packaged.py


class BuildPyWithDefaults(build_py):
    """``build_py``, then the default files copied to ``<build_lib>/components/defaults/``."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        target = Path(self.build_lib) / "components" / "defaults"
        for name in DEFAULT_FILES:
            source = ROOT / name
            if not source.exists():
                raise FileNotFoundError(f"default file {source} is missing; the wheel would ship without it")
            if source.is_dir():
                shutil.copytree(source, target / name, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                target.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, target / name)


setup(cmdclass={"build_py": BuildPyWithDefaults})
