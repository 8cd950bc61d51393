"""Two ``mixunlearn run`` processes started at the same moment on one project: one batch, versions 1 and 2 only."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.mlflow_reader import client
from tests.pipelines.conftest import REPO_ROOT, make_project

pytestmark = [pytest.mark.slow, pytest.mark.integration]

SHRUNK_SETS = ("base.device=cpu", "train.recipes.digits.epochs=3")


def test_two_simultaneous_runs_process_the_request_once(tmp_path: Path) -> None:
    # given a fresh digits project with the example request queued
    project = make_project(tmp_path / "project")
    project.submit_example()
    env = {key: value for key, value in os.environ.items() if key != "MLFLOW_TRACKING_URI"}
    env.update(PREFECT_HOME=str(tmp_path / "prefect-home"), OMP_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE")
    env.pop("PREFECT_API_URL", None)  # each process starts its own ephemeral server, as a user's would
    command = [sys.executable, "-m", "components.cli", "run", "--root", str(project.root)]
    command += ["--params", str(project.root / "params.yaml")]
    command += [part for override in SHRUNK_SETS for part in ("--set", override)]

    # when two runs start at the same moment
    runs = [
        subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [run.communicate(timeout=600) for run in runs]

    # then both succeed, one waited for the other, and the request became exactly one batch and one new version
    for run, (stdout, stderr) in zip(runs, outputs, strict=True):
        assert run.returncode == 0, stdout + stderr
    joined = "".join(stdout + stderr for stdout, stderr in outputs)
    assert "waiting for mixunlearn-digits lock held by pid " in joined
    assert sum("-> version 2" in stdout for stdout, _ in outputs) == 1
    assert sum("nothing pending" in stdout for stdout, _ in outputs) == 1
    batches = sorted((project.root / "data" / "batches").glob("*.json"))
    assert len(batches) == 1, batches
    assert json.loads(batches[0].read_text())["request_ids"] == ["req-2026-11-27-owner-0042"]
    versions = client(project.tracking()).search_model_versions(f"name = '{project.model_name}'")
    assert sorted(int(version.version) for version in versions) == [1, 2]
