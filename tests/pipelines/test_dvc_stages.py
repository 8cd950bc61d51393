"""The file-based stages ``dvc repro`` runs (``components.stages.repro``) recompute what the flow computed.

One flow run on a throwaway project (shrunk config, the example request), then the five stages in dvc.yaml order
on the same project, with the artifacts moved to a non-default folder so the test sees that the setting is used.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from components.cli import app
from components.data.types import DataError
from components.stages import steps as stages
from components.stages.repro import STAGES, StageContext
from tests.helpers.mlflow_reader import child_runs

pytestmark = pytest.mark.integration
# `slow` marks the tests that read `repro`: one flow run plus the five stages (~15 s)

ORDER = ("validate", "parent", "unlearn", "retrain", "verify")
ARTIFACTS = "dvc-out"
OUTPUTS = (
    "validate/report.json",
    "parent/model.pt",
    "parent/metrics.json",
    "unlearn/model.pt",
    "unlearn/metrics.json",
    "retrain/model.pt",
    "retrain/metrics.json",
    "verify/report.md",
    "verify/metrics.png",
    "verify/verdict.json",
    "verify/checks.csv",
)
GATES = {"gap_laf", "gap_salun", "test_drop", "forget_excess", "mia_gap"}


@dataclass(frozen=True)
class Repro:
    """A project after one flow run and the five stages: the flow's summary and each stage's returned document."""

    project: Any  # conftest.Project
    summary: Any  # pipelines.flows.RunSummary
    results: dict[str, dict[str, Any]]

    @property
    def out(self) -> Path:
        return self.project.root / ARTIFACTS

    def verdict(self) -> dict[str, Any]:
        return json.loads((self.out / "verify" / "verdict.json").read_text())

    def flow_metrics(self, run_name: str) -> dict[str, float]:
        """Metrics of one child run of the flow's parent run, read back from MLflow."""
        tracking = self.project.tracking()
        parent_id = tracking.version_tags(self.project.model_name, self.summary.version)["pipeline_run_id"]
        (child,) = [run for run in child_runs(tracking, parent_id) if run.name == run_name]
        return child.metrics


@pytest.fixture(scope="module")
def repro(prefect_harness: None, new_project: Callable[..., Any]) -> Repro:
    project = new_project("dvc-stages", f"pipeline.artifacts_dir={ARTIFACTS}")
    project.submit_example()
    summary = project.run()
    assert summary.status == "promoted", summary.message
    context = StageContext(project.config, project.root)
    results = {name: STAGES[name](context) for name in ORDER}
    return Repro(project, summary, results)


def test_stages_are_the_five_of_dvc_yaml() -> None:
    assert tuple(STAGES) == ORDER


@pytest.mark.slow
def test_every_stage_writes_its_outputs_under_the_configured_artifacts_dir(repro: Repro) -> None:
    for relative in OUTPUTS:
        assert (repro.out / relative).is_file(), relative
        assert (repro.out / relative).stat().st_size > 0, relative
    default = repro.project.root / "artifacts"
    assert not any((default / stage).exists() for stage in ORDER)


@pytest.mark.slow
def test_validate_reports_success(repro: Repro) -> None:
    report = json.loads((repro.out / "validate" / "report.json").read_text())
    assert report == repro.results["validate"]
    assert (report["dataset"], report["success"], report["failures"]) == ("digits", True, [])


@pytest.mark.slow
def test_parent_is_the_registered_version_the_batch_started_from(repro: Repro) -> None:
    # given the current (post-batch) pool and the batch
    stored = repro.project.store.load("digits")
    (batch,) = repro.project.store.batches("digits")
    tags = repro.project.tracking().version_tags(repro.project.model_name, repro.summary.version)
    # then: the parent is the flow's original (version 1, loaded, not trained), the reference saw no forgotten sample
    assert repro.results["parent"]["batch_id"] == batch.batch_id
    assert repro.results["parent"]["source"] == "registry"
    assert repro.results["parent"]["parent_model_version"] == tags["parent_model_version"] == "1"
    assert repro.results["retrain"]["pool_size"] == len(stored.pool)
    # the example request is sample-level: the method pipeline.kind_methods names for that kind
    assert repro.results["unlearn"]["method"] == repro.project.config.pipeline.method_for("sample")
    assert repro.results["unlearn"]["rte_seconds"] > 0


@pytest.mark.slow
def test_verdict_has_the_five_gates_and_agrees_with_the_flow(repro: Repro) -> None:
    verdict = repro.verdict()
    assert set(verdict["gates"]) == GATES
    for gate in verdict["gates"].values():
        assert set(gate) == {"value", "limit", "passed"}
    assert verdict["passed"] == all(gate["passed"] for gate in verdict["gates"].values())
    assert verdict["summary"] == repro.summary.verdict
    assert verdict == repro.results["verify"]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("model", "run_name"),
    [("unlearned", "evaluate-unlearned"), ("retrain", "evaluate-retrain"), ("original", "evaluate-original")],
)
def test_stage_metrics_equal_the_metrics_the_flow_logged(repro: Repro, model: str, run_name: str) -> None:
    # given the metrics verify computed from the stage models (the unlearned one under its method's name: the
    # example request is sample-level), and those the flow logged to MLflow
    key = repro.project.config.pipeline.method_for("sample") if model == "unlearned" else model
    computed = repro.verdict()["metrics"][key]
    logged = repro.flow_metrics(run_name)
    # then: the same metrics (None ones are not logged), equal to 1e-6
    present = {name: value for name, value in computed.items() if value is not None}
    assert present, computed
    assert set(logged) == set(present)
    for name, value in present.items():
        assert value == pytest.approx(logged[name], abs=1e-6), name


@pytest.mark.slow
def test_verify_report_names_the_batch(repro: Repro) -> None:
    (batch,) = repro.project.store.batches("digits")
    text = (repro.out / "verify" / "report.md").read_text()
    assert f"# Deletion report: {batch.batch_id}" in text
    assert f"## Verdict: {repro.summary.verdict}" in text


def test_unlearn_and_verify_before_any_batch_raise_a_data_error(
    pipeline_env: None, new_project: Callable[..., Any]
) -> None:
    # given a project whose data is materialised but which has no forget batch yet
    project = new_project("dvc-no-batch", "train.recipes.digits.epochs=1")
    stages.prepare_data(project.config, project.store)
    context = StageContext(project.config, project.root)
    # when: the parent stage has no batch to read a parent of, so it trains one and says so
    parent = STAGES["parent"](context)
    assert (parent["source"], parent["batch_id"], parent["parent_model_version"]) == ("trained", None, None)
    assert "no forget batch yet" in parent["note"]
    assert (project.root / "artifacts" / "parent" / "model.pt").is_file()
    # then
    for name in ("unlearn", "verify"):
        with pytest.raises(DataError, match=r"no forget batch has been applied yet: run `mixunlearn run`"):
            STAGES[name](context)
    assert not (project.root / "artifacts" / "unlearn" / "model.pt").exists()


def test_cli_stage_with_an_unknown_name_exits_2(tmp_path: Path) -> None:
    # when
    result = CliRunner().invoke(app, ["stage", "split", "--root", str(tmp_path)])
    # then
    assert result.exit_code == 2, result.output
    assert "unknown stage 'split'; stages: validate, parent, unlearn, retrain, verify" in result.stderr
