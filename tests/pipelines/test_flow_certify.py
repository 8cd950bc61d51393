"""The deletion-batch flow in ``verify.mode=certify``: the unlearned model is certified against the untouched
champion (no retrained model), and a failed certification falls back to a retrained model.

Each scenario runs the flow once in a module-scoped fixture (Prefect test harness, MLflow on SQLite, DVC + git).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.mlflow_reader import child_runs, get_run

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REFERENCE = "mixunlearn-digits-retrain"
# Tolerances under which the 3-epoch MixUnlearn model on the example request certifies (the pass path).
LENIENT_CERTIFICATION = (
    "verify.certification.max_membership_advantage=1",
    "verify.certification.max_forget_excess=100",
    "verify.certification.max_utility_drop=100",
)


@dataclass(frozen=True)
class FlowRun:
    project: Any  # conftest.Project
    summary: Any  # pipelines.flows.RunSummary


def run_example(new_project: Callable[..., Any], name: str, *overrides: str) -> FlowRun:
    project = new_project(name, "verify.mode=certify", *overrides)
    project.submit_example()
    return FlowRun(project, project.run())


def versions(project: Any, name: str) -> list[str]:
    tracking = project.tracking()
    return [ref.version for ref in tracking.find_versions(name)] if tracking.is_registered(name) else []


def report_text(run: FlowRun) -> str:
    return Path(run.summary.report).read_text()


def certification_rows(text: str) -> list[list[str]]:
    """The cells of the Certification table's check rows."""
    section = text.split("## Certification\n\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| Check")]
    return [[cell.strip() for cell in row.strip("|").split("|")] for row in rows]


@pytest.fixture(scope="module")
def certified(prefect_harness: None, new_project: Callable[..., Any]) -> FlowRun:
    return run_example(new_project, "certified", *LENIENT_CERTIFICATION)


@pytest.fixture(scope="module")
def control(prefect_harness: None, new_project: Callable[..., Any]) -> FlowRun:
    """No unlearning at all, the candidate is the champion itself: ``original`` serves the example's kind (sample)
    through ``pipeline.kind_methods`` while ``pipeline.method`` stays mixunlearn."""
    return run_example(new_project, "control", "pipeline.kind_methods.sample=original")


def test_certified_batch_promotes_the_unlearned_model_without_a_retrained_one(certified: FlowRun) -> None:
    project, summary = certified.project, certified.summary
    tracking = project.tracking()

    assert summary.status == "promoted"
    assert summary.verdict.startswith("PASS")
    assert summary.message.startswith("PASS")
    assert versions(project, "mixunlearn-digits") == ["1", "2"]
    assert versions(project, REFERENCE) == []
    tags = tracking.version_tags("mixunlearn-digits", summary.version)
    assert tags["source"] == "unlearned"
    assert tags["verdict"] == "pass"
    assert tags["verify_mode"] == "certify"
    assert tags["certification"] == summary.verdict
    assert "reference_run_id" not in tags


def test_certification_is_recorded_on_the_parent_run(certified: FlowRun) -> None:
    tracking = certified.project.tracking()
    parent_id = tracking.version_tags("mixunlearn-digits", certified.summary.version)["pipeline_run_id"]
    parent = get_run(tracking, parent_id)
    assert parent.tags["certification"] == certified.summary.verdict
    assert parent.metrics["cert_certified"] == 1.0
    assert {"cert_membership_value", "cert_control_membership_value", "cert_utility_drop_upper"} <= set(parent.metrics)
    names = {child.name for child in child_runs(tracking, parent_id)}
    assert "certify" in names
    assert not {"retrain-reference", "evaluate-retrain"} & names


def test_certified_report_has_the_certification_section(certified: FlowRun) -> None:
    text = report_text(certified)
    assert "## Verdict: PASS" in text
    assert "## Certification\n\nPASS" in text
    names = [row[0] for row in certification_rows(text)]
    assert names == ["membership", "forget_excess", "utility_drop"]  # the example request is sample-level
    assert certified.summary.metrics_table is None  # certify mode: the Retrain audit measures them


def test_original_method_is_the_control_and_its_checks_equal_the_controls(control: FlowRun) -> None:
    # given a run whose "unlearning" is the identity: the candidate is the champion
    tracking = control.project.tracking()
    parent_id = get_run_id(control)
    metrics = get_run(tracking, parent_id).metrics

    # then every check of the candidate equals the control's
    checks = {key[len("cert_") :] for key in metrics if key.startswith("cert_") and not key.startswith("cert_control")}
    for key in checks - {"certified", "measurable", "attack_auc"}:
        assert metrics[f"cert_{key}"] == metrics[f"cert_control_{key}"], key
    for row in certification_rows(report_text(control)):
        _, candidate, candidate_result, control_value, control_result, _ = row
        assert (candidate, candidate_result) == (control_value, control_result)

    # and the batch's kind chose the method, on the parent run and in the unlearning stage
    assert get_run(tracking, parent_id).params["method"] == "original"
    assert get_run(tracking, parent_id).params["forget_kind"] == "sample"
    unlearn = next(child for child in child_runs(tracking, parent_id) if child.name == "unlearn")
    assert unlearn.params["method"] == "original"

    # and the no-op fails wherever the control fails: certified only when the checks cannot tell (not measurable)
    measurable = metrics["cert_measurable"] == 1.0
    assert control.summary.verdict.startswith("FAIL" if measurable else "PASS")
    source = tracking.version_tags("mixunlearn-digits", control.summary.version)["source"]
    assert source == ("retrain" if measurable else "unlearned")
    assert versions(control.project, REFERENCE) == (["1"] if measurable else [])


def get_run_id(run: FlowRun) -> str:
    return run.project.tracking().version_tags("mixunlearn-digits", run.summary.version)["pipeline_run_id"]


def test_failed_certification_falls_back_to_a_retrained_model(
    prefect_harness: None, new_project: Callable[..., Any]
) -> None:
    # given intervals so narrow (1% confidence) that the forget-set excess over held-out accuracy shows
    run = run_example(new_project, "fallback", "verify.certification.confidence=0.01")
    tracking = run.project.tracking()
    # then certification fails and a retrained model, registered as the reference, serves the batch
    assert run.summary.verdict.startswith("FAIL")
    assert run.summary.message.startswith("FAIL")
    assert versions(run.project, REFERENCE) == ["1"]
    tags = tracking.version_tags("mixunlearn-digits", run.summary.version)
    assert (tags["source"], tags["verdict"]) == ("retrain", "fail")
    assert "(retrain model; previously version 1)" in report_text(run)
