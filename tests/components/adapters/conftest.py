"""Fixtures for the adapter integration tests: real services on loopback, temporary git repositories.

* ``offline_env`` (session, autouse): telemetry off, dummy AWS credentials, git isolated from the user's config.
* ``moto_url`` (session): a real ``moto_server -H 127.0.0.1 -p <free port>`` subprocess, stopped at the end.
* ``s3_bucket``: a fresh bucket on that server.
* ``git_repo``: an empty git repository in ``tmp_path`` with ``user.name``/``user.email`` set; ``git`` runs
  git commands in it.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.helpers.moto import DUMMY_AWS, UNSET_AWS, fresh_bucket, running_moto

# MLflow decides about telemetry when it is imported, i.e. while test modules are collected, so these are set
# here at import time as well as in the session fixture below.
TELEMETRY_OFF = {"DO_NOT_TRACK": "true", "MLFLOW_DISABLE_TELEMETRY": "true", "DVC_NO_ANALYTICS": "1"}
os.environ.update(TELEMETRY_OFF)

_UNSET = (*UNSET_AWS, "MLFLOW_TRACKING_URI")


@pytest.fixture(scope="session", autouse=True)
def offline_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Telemetry off, dummy AWS credentials (moto accepts any), and git without global or system config."""
    with pytest.MonkeyPatch.context() as patch:
        for key, value in {**TELEMETRY_OFF, **DUMMY_AWS}.items():
            patch.setenv(key, value)
        for key in _UNSET:
            patch.delenv(key, raising=False)
        patch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path_factory.mktemp("git") / "gitconfig"))
        patch.setenv("GIT_CONFIG_NOSYSTEM", "1")
        yield


@pytest.fixture(scope="session")
def moto_url(offline_env: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Start a real moto S3 server on a free loopback port; yield its URL; stop it by PID at the end."""
    with running_moto(tmp_path_factory.mktemp("moto") / "moto.log") as url:
        yield url


@pytest.fixture
def s3_bucket(moto_url: str) -> str:
    """Create a fresh, uniquely named bucket on the moto server and return its name."""
    return fresh_bucket(moto_url, "test")


def _git(repo: Path, *args: str) -> str:
    """Run ``git -C repo ...`` and return its stripped stdout (raises on failure)."""
    result = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True)
    return result.stdout.strip()


@pytest.fixture
def git() -> Callable[..., str]:
    """``git(repo, *args)``: run a git command in ``repo`` and return its stripped stdout."""
    return _git


@pytest.fixture
def git_repo(tmp_path: Path) -> Path:
    """An empty git repository (branch ``main``) with a committer identity and signing off."""
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "config", "user.name", "Adapter Tests")
    _git(repo, "config", "user.email", "adapter-tests@example.invalid")
    _git(repo, "config", "commit.gpgsign", "false")
    return repo
