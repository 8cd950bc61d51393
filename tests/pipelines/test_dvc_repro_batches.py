"""``dvc repro`` equals the flow on a SECOND batch: the stages unlearn from the champion the flow unlearned from (the
parent model version in the registry), not from a freshly trained original, and certify as the flow did.

Two flow runs (the example request, then 20 other pool IDs; certify mode, lenient certification), then the five
stages in dvc.yaml order, then ``dvc plots show`` on the project with this repository's dvc.yaml.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from components.deletion.store import read_image_set
from components.stages.repro import STAGES, StageContext
from tests.helpers.mlflow_reader import get_run
from tests.pipelines.conftest import CERTIFY_LENIENTLY as LENIENT_CERTIFICATION
from tests.pipelines.conftest import REPO_ROOT, forget_leaked_tracking_uri

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@dataclass(frozen=True)
class SecondBatch:
    project: Any  # conftest.Project
    summary: Any  # the second flow run's RunSummary
    results: dict[str, dict[str, Any]]


@pytest.fixture(scope="module")
def second_batch(prefect_harness: None, new_project: Callable[..., Any]) -> SecondBatch:
    project = new_project("dvc-second-batch", *LENIENT_CERTIFICATION)
    project.submit_example()
    assert project.run().status == "promoted"
    pool = read_image_set(project.root / "data" / "digits" / "pool.npz").ids.tolist()
    request = project.root / "second-request.json"
    request.write_text(
        json.dumps(
            {
                "request_id": "req-2026-12-01-owner-0077",
                "dataset": "digits",
                "requester": "data-owner-0077",
                "reason": "consent withdrawn",
                "requested_at": "2026-12-01T09:00:00Z",
                "ids": pool[:20],
            }
        )
    )
    project.store.submit(request)
    summary = project.run()
    assert summary.status == "promoted", summary.message
    forget_leaked_tracking_uri()
    context = StageContext(project.config, project.root)
    results = {name: STAGES[name](context) for name in ("validate", "parent", "unlearn", "retrain", "verify")}
    return SecondBatch(project, summary, results)


def test_the_parent_stage_loads_the_champion_before_the_second_batch(second_batch: SecondBatch) -> None:
    project, summary = second_batch.project, second_batch.summary
    batches = project.store.batches("digits")
    tags = project.tracking().version_tags(project.model_name, summary.version)
    assert summary.version == "3"
    assert second_batch.results["parent"]["batch_id"] == batches[-1].batch_id == tags["forget_batch_id"]
    assert second_batch.results["parent"]["source"] == "registry"
    assert second_batch.results["parent"]["parent_model_version"] == tags["parent_model_version"] == "2"


def test_the_reproduced_certification_equals_the_flows(second_batch: SecondBatch) -> None:
    project, summary = second_batch.project, second_batch.summary
    verdict = second_batch.results["verify"]
    assert verdict == json.loads((project.root / "artifacts" / "verify" / "verdict.json").read_text())
    assert verdict["mode"] == "certify"
    assert verdict["summary"] == summary.verdict
    assert verdict["passed"] is summary.verdict.startswith("PASS")
    # the cert_* metrics the flow logged on the version's pipeline run
    tracking = project.tracking()
    run_id = tracking.version_tags(project.model_name, summary.version)["pipeline_run_id"]
    logged = {name: value for name, value in get_run(tracking, run_id).metrics.items() if name.startswith("cert_")}
    reproduced = verdict["certification"]
    assert logged
    assert set(reproduced) == set(logged)
    for name, value in reproduced.items():
        assert value == pytest.approx(logged[name], abs=1e-6, nan_ok=True), name


def test_dvc_plots_show_renders_the_verification_plots(second_batch: SecondBatch, tmp_path: Path) -> None:
    project = second_batch.project
    shutil.copy2(REPO_ROOT / "dvc.yaml", project.root / "dvc.yaml")
    dvc = Path(sys.executable).with_name("dvc")
    result = subprocess.run(
        [str(dvc), "plots", "show", "--json", "-o", str(tmp_path / "plots")],
        cwd=project.root,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)["data"]
    (image,) = shown["artifacts/verify/metrics.png"]
    assert image["type"] == "image"
    (checks,) = shown["artifacts/verify/checks.csv"]
    assert checks["type"] == "vega"
    rows = checks["content"]["data"]["values"]
    assert {row["kind"] for row in rows} == {"gate", "certification"}
