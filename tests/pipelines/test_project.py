"""The flows prefect.yaml deploys read the worker checkout's params.yaml when they run."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from components.config import ConfigError
from pipelines.project import project_config
from tests.pipelines.conftest import REPO_ROOT


def test_params_are_read_relative_to_the_project_root_with_overrides(tmp_path: Path) -> None:
    shutil.copy2(REPO_ROOT / "params.yaml", tmp_path / "params.yaml")
    shutil.copy2(REPO_ROOT / "tuned.yaml", tmp_path / "tuned.yaml")
    config = project_config(str(tmp_path), "params.yaml", ["base.seed=7"])
    assert config.base.seed == 7


def test_a_missing_parameter_file_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"absent\.yaml not found"):
        project_config(str(tmp_path), "absent.yaml", None)
