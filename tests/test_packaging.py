"""Installable as a package: the declared dependencies, the packaged default files and the wheel's contents."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

import pytest

from components.config import DEFAULT_PARAMS, load_config, resolve_params
from components.packaged import DEFAULT_FILES, default_file, defaults_dir

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
DEV_ONLY = {"moto", "pytest", "pytest-timeout", "ruff"}


def _pins(lines: list[str]) -> dict[str, str]:
    """``{normalised name: specifier}`` of requirement lines (comments and blanks skipped, extras dropped)."""
    pins = {}
    for line in lines:
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)(\[[^]]*\])?\s*(.*)", text)
        assert match, f"unparsed requirement {text!r}"
        pins[re.sub(r"[-_.]+", "-", match.group(1)).lower()] = match.group(3).replace(" ", "")
    return pins


def test_pyproject_declares_the_requirements_pins() -> None:
    # given: requirements.txt (make install) and pyproject's dependencies + dev extra (pip install .)
    required = _pins((ROOT / "requirements.txt").read_text().splitlines())
    runtime = _pins(PYPROJECT["project"]["dependencies"])
    dev = _pins(PYPROJECT["project"]["optional-dependencies"]["dev"])
    # then: the same pins, the test/lint tools only in the extra, and torch in neither (a documented prerequisite:
    # PyPI's Linux wheel pulls CUDA)
    assert {**runtime, **dev} == required
    assert set(dev) == DEV_ONLY
    assert "torch" not in runtime
    assert all(spec.startswith("==") for spec in required.values())


def test_entry_point_and_packages_exclude_mlflow_and_tests() -> None:
    assert PYPROJECT["project"]["scripts"] == {"mixunlearn": "components.cli:main"}
    find = PYPROJECT["tool"]["setuptools"]["packages"]["find"]
    assert not any(pattern.startswith(("mlflow", "tests")) for pattern in find["include"])
    assert not (ROOT / "mlflow" / "__init__.py").exists()


def test_the_checkout_serves_as_the_packaged_defaults() -> None:
    # in a source checkout (and an editable install) the default files are the repository root's
    assert defaults_dir() == ROOT
    for name in DEFAULT_FILES:
        assert default_file(name) == ROOT / name
    assert default_file("examples/requests/digits-data-owner.json") is not None
    assert default_file("gx/great_expectations.yml") == ROOT / "gx" / "great_expectations.yml"
    assert default_file("nope.yaml") is None


def test_params_yaml_in_the_working_directory_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # given: a working directory with its own params.yaml
    (tmp_path / "params.yaml").write_text("base:\n  seed: 7\n")
    monkeypatch.chdir(tmp_path)
    # then: it is the one read, not the packaged copy
    assert resolve_params(DEFAULT_PARAMS) == DEFAULT_PARAMS
    assert load_config().base.seed == 7


def test_the_packaged_params_stand_in_outside_the_checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # given: a working directory without params.yaml
    monkeypatch.chdir(tmp_path)
    # then: the default name reads the packaged copy (with its tuned.yaml); an explicit other name is not replaced
    assert resolve_params(DEFAULT_PARAMS) == ROOT / "params.yaml"
    assert load_config() == load_config(ROOT / "params.yaml")
    assert load_config().unlearn.tuned
    assert resolve_params(tmp_path / "params.yaml") == tmp_path / "params.yaml"
    assert resolve_params("other.yaml") == Path("other.yaml")


def test_the_cli_says_so_when_torch_is_missing(tmp_path: Path) -> None:
    # given: an interpreter where torch cannot be found (``sys.modules["torch"] = None`` at start-up)
    (tmp_path / "sitecustomize.py").write_text("import sys\nsys.modules['torch'] = None\n")
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"}
    result = subprocess.run(
        [sys.executable, "-m", "components.cli", "--help"], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    # then: one error line naming the CPU install, exit 2, no traceback
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: mixunlearn needs PyTorch")
    assert "torch==2.13.0" in result.stderr
    assert "Traceback" not in result.stderr


def _source_tree(destination: Path) -> Path:
    """A copy of the checkout's tracked and new files (nothing ignored: no .venv, data, MLflow store, build/)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=False,
    )
    if listed.returncode != 0:
        pytest.skip("not a git checkout: the wheel is built from the tracked files")
    for name in filter(None, listed.stdout.decode().split("\0")):
        source = ROOT / name
        if source.is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)
    return destination


@pytest.mark.slow
def test_the_wheel_ships_the_packages_and_default_files(tmp_path: Path) -> None:
    # given: a wheel built from a copy of the checkout, offline (no build isolation, no dependencies)
    source = _source_tree(tmp_path / "src")
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), "."],
        cwd=source,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = tmp_path.glob("mixunlearn-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    # then: both packages, the default files (identical to the root's), the entry point, and no mlflow/ or tests/
    assert {"components/__init__.py", "components/cli.py", "components/packaged.py", "pipelines/flows.py"} <= names
    with zipfile.ZipFile(wheel) as archive:
        for name in ("params.yaml", "tuned.yaml", "grids.yaml"):
            assert archive.read(f"components/defaults/{name}") == (ROOT / name).read_bytes()
        for example in sorted((ROOT / "examples").rglob("*.json")):
            relative = example.relative_to(ROOT).as_posix()
            assert archive.read(f"components/defaults/{relative}") == example.read_bytes()
        gx_files = [path for path in sorted((ROOT / "gx").rglob("*")) if path.is_file()]
        assert {"gx/great_expectations.yml", "gx/expectations/image_set.json", "gx/checkpoints/data_contract.json"} <= {
            path.relative_to(ROOT).as_posix() for path in gx_files
        }
        for path in gx_files:  # the GX project's definitions, so the contracts load outside the checkout
            relative = path.relative_to(ROOT).as_posix()
            assert archive.read(f"components/defaults/{relative}") == path.read_bytes()
        info = next(name for name in names if name.endswith(".dist-info/entry_points.txt"))
        assert "mixunlearn = components.cli:main" in archive.read(info).decode()
        metadata = archive.read(next(name for name in names if name.endswith(".dist-info/METADATA"))).decode()
    tops = {name.split("/", 1)[0] for name in names}
    assert tops == {"components", "pipelines", next(top for top in tops if top.endswith(".dist-info"))}
    assert not any(name.startswith(("mlflow/", "tests/")) for name in names)
    assert "Requires-Dist: prefect==3.9.1" in metadata
    assert "Requires-Dist: torch" not in metadata
    # and, unpacked outside the checkout, the contracts load the packaged GX project and keep results elsewhere
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    code = (
        "from pathlib import Path\n"
        "from components.adapters.expectations import project_dir, validate_forget_request\n"
        "report = validate_forget_request(['a'], ['a', 'b'], [], 1.0, 2, outputs=Path('out'), run_name='r')\n"
        "print(project_dir(), report.success, report.docs_page.is_file())"
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    ran = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert ran.returncode == 0, ran.stderr[-2000:]
    assert ran.stdout.split() == [str(site / "components" / "defaults" / "gx"), "True", "True"]


@pytest.mark.slow
def test_the_sdist_carries_the_default_files(tmp_path: Path) -> None:
    # given: an sdist built from a copy of the checkout (a wheel built from it runs the same build step)
    source = _source_tree(tmp_path / "src")
    code = f"from setuptools import build_meta; print(build_meta.build_sdist({str(tmp_path)!r}))"
    built = subprocess.run([sys.executable, "-c", code], cwd=source, capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr[-2000:]
    with tarfile.open(tmp_path / built.stdout.split()[-1]) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    # then: setup.py, MANIFEST.in and the default files, and neither mlflow/ nor tests/
    assert {"setup.py", "MANIFEST.in", "params.yaml", "tuned.yaml", "grids.yaml"} <= names
    assert "examples/requests/digits-data-owner.json" in names
    gx_files = {path.relative_to(ROOT).as_posix() for path in (ROOT / "gx").rglob("*") if path.is_file()}
    assert gx_files <= names
    assert not any(name.startswith(("mlflow/", "tests/")) for name in names)
