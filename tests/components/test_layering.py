"""The layering the design card promises: components/ never imports Prefect, and only adapters/ import the SDKs."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

COMPONENTS = Path(__file__).resolve().parents[2] / "components"
SDKS = ("mlflow", "dvc", "boto3", "botocore", "great_expectations", "prefect")


def imported_roots(path: Path) -> set[str]:
    """Top-level package names a module imports (at any depth of its code)."""
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_only_adapters_import_the_sdks_and_nothing_imports_prefect() -> None:
    offenders = []
    for path in sorted(COMPONENTS.rglob("*.py")):
        in_adapters = "adapters" in path.relative_to(COMPONENTS).parts
        forbidden = {"prefect"} if in_adapters else set(SDKS)
        for name in sorted(imported_roots(path) & forbidden):
            offenders.append(f"{path.relative_to(COMPONENTS.parent)} imports {name}")
    assert offenders == []


def test_the_cli_module_imports_without_prefect() -> None:
    # the run/serve commands import pipelines/ inside the command; building the app must not
    code = "import sys, components.cli; print('prefect' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_model_cache_keys_load_no_tracking_sdk() -> None:
    # the bench's cache key (RunContext.recipe_tags) is computed in every worker: it must not import MLflow
    code = (
        "import sys\n"
        "from components.config import load_config\n"
        "from components.data.datasets import load_dataset\n"
        "from components.stages.context import RunContext\n"
        "RunContext.create(load_config(None), load_dataset('digits')).recipe_tags()\n"
        "print('mlflow' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
