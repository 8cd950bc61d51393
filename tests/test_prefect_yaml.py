"""prefect.yaml against the code: every entrypoint is a flow of this project, the GPU hand-over names the GPU
deployment, and no endpoint or credential is committed in it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from prefect.flows import Flow, load_flow_from_entrypoint

from pipelines.unlearn import unlearn_batch

PREFECT_YAML = Path(__file__).resolve().parents[1] / "prefect.yaml"


@pytest.fixture(scope="module")
def deployments() -> dict[str, dict[str, Any]]:
    document = yaml.safe_load(PREFECT_YAML.read_text())
    return {item["name"]: item for item in document["deployments"]}


def test_every_entrypoint_is_a_flow_of_this_project(deployments: dict[str, dict[str, Any]]) -> None:
    for deployment in deployments.values():
        assert isinstance(load_flow_from_entrypoint(deployment["entrypoint"]), Flow)


def test_deletion_batches_run_on_the_cpu_pool_and_hand_unlearning_to_the_gpu_deployment(
    deployments: dict[str, dict[str, Any]],
) -> None:
    gpu = [name for name, item in deployments.items() if item["work_pool"]["name"] == "mixunlearn-gpu"]
    assert gpu == ["gpu"]
    assert load_flow_from_entrypoint(deployments["gpu"]["entrypoint"]).name == unlearn_batch.name
    for name in ("scheduled", "on-request"):
        pool = deployments[name]["work_pool"]
        assert pool["name"] == "mixunlearn-cpu"
        assert pool["job_variables"]["env"]["MIXUNLEARN_GPU_DEPLOYMENT"] == f"{unlearn_batch.name}/gpu"


def test_no_endpoint_or_credential_is_committed() -> None:
    text = PREFECT_YAML.read_text()
    assert not re.search(r"https?://|s3://|postgres|sqlite|AWS_ACCESS|AWS_SECRET|password", text, re.IGNORECASE)
