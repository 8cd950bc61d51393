"""The ``retrain-audit`` flow: the serving model against Retrain on the current data version, off the deletion path.

Each project runs the deletion flow on the example request (certify mode, lenient certification so the unlearned
model serves), then audits it (Prefect test harness, MLflow on SQLite, DVC + git).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from components.deletion import audit
from tests.pipelines.conftest import CERTIFY_LENIENTLY as LENIENT_CERTIFICATION

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MODEL, REFERENCE = "mixunlearn-digits", "mixunlearn-digits-retrain"
ZERO_GATES = tuple(
    f"verify.{field}=0"
    for field in ("max_gap_laf", "max_gap_salun", "max_test_drop", "max_forget_excess", "max_mia_gap")
)


@dataclass(frozen=True)
class Audited:
    project: Any  # conftest.Project
    batch: Any  # pipelines.flows.RunSummary
    first: Any  # pipelines.audit.AuditSummary
    second: Any


def run_audit(project: Any) -> Any:
    from pipelines.audit import retrain_audit
    from tests.pipelines.conftest import forget_leaked_tracking_uri

    forget_leaked_tracking_uri()
    return retrain_audit(project.config, str(project.root))


def versions(project: Any, name: str) -> list[str]:
    tracking = project.tracking()
    return [ref.version for ref in tracking.find_versions(name)] if tracking.is_registered(name) else []


def audited_project(new_project: Callable[..., Any], name: str, *overrides: str) -> Audited:
    project = new_project(name, *LENIENT_CERTIFICATION, *overrides)
    project.submit_example()
    batch = project.run()
    return Audited(project, batch, run_audit(project), run_audit(project))


@pytest.fixture(scope="module")
def lenient(prefect_harness: None, new_project: Callable[..., Any], lenient_gates: tuple[str, ...]) -> Audited:
    return audited_project(new_project, "audit-pass", *lenient_gates)


@pytest.fixture(scope="module")
def strict(prefect_harness: None, new_project: Callable[..., Any]) -> Audited:
    return audited_project(new_project, "audit-strict", *ZERO_GATES)


def test_the_audit_retrains_and_records_its_result_on_the_serving_version(lenient: Audited) -> None:
    project, batch, first = lenient.project, lenient.batch, lenient.first
    assert batch.status == "promoted"
    assert batch.verdict.startswith("PASS")
    assert first.status == "audited"
    assert first.version == batch.version
    assert first.message.startswith("PASS")
    assert first.promoted_version is None
    tags = project.tracking().version_tags(MODEL, batch.version)
    assert tags["audit_verdict"] == "pass"
    assert tags["audit_reference"] == f"{REFERENCE}/1"
    assert tags["audit_batches_since_scratch"] == "1"
    assert versions(project, REFERENCE) == ["1"]
    alias = project.tracking().get_alias(MODEL, project.config.pipeline.alias)
    assert alias is not None
    assert alias.version == batch.version


def test_a_data_version_already_audited_is_not_retrained(lenient: Audited) -> None:
    assert lenient.second.status == "already-audited"
    assert lenient.second.message.startswith("PASS")
    assert versions(lenient.project, REFERENCE) == ["1"]  # no second reference


def test_the_audit_report_shows_gates_metrics_and_the_chain(lenient: Audited) -> None:
    text = Path(lenient.first.report).read_text()
    assert "## Verdict: PASS" in text
    assert "| gap_laf |" in text
    assert "| serving |" in text
    assert "| retrain |" in text
    history = text.split("## Audit history", 1)[1]
    assert "| 1 | original |" in history
    assert f"| {lenient.batch.version} | unlearned |" in history


def test_the_deletion_report_in_certify_mode_leaves_the_metrics_to_the_audit(lenient: Audited) -> None:
    text = Path(lenient.batch.report).read_text()
    assert lenient.batch.metrics_table is None
    assert "None computed on the deletion path" in text
    assert "## Audit history of the serving model" in text


def test_a_failing_serving_model_is_replaced_by_the_retrained_one(strict: Audited) -> None:
    project, batch, first = strict.project, strict.batch, strict.first
    tracking = project.tracking()
    tags = tracking.version_tags(MODEL, batch.version)
    alias = tracking.get_alias(MODEL, project.config.pipeline.alias)
    assert alias is not None
    # every limit is 0, so the audit passes only if every gap is exactly 0; otherwise the retrained model serves
    if tags["audit_verdict"] == "pass":
        assert float(tags["audit_gap_laf"]) == 0.0
        assert alias.version == batch.version
        return
    assert tags["audit_verdict"] == "fail"
    assert first.message.startswith("FAIL")
    assert first.promoted_version == alias.version != batch.version
    promoted = tracking.version_tags(MODEL, alias.version)
    assert (promoted["source"], promoted["promoted_by"]) == ("retrain", "retrain-audit")
    assert promoted["parent_model_version"] == batch.version
    assert promoted["audit_verdict"] == "exact"
    # the retrained model serves the same data, so a second audit finds nothing to retrain
    assert strict.second.status == "already-audited"
    assert [link.version for link in audit.chain(alias.version, lambda v: tracking.version_tags(MODEL, v))] == [
        "1",
        batch.version,
        alias.version,
    ]


def test_an_original_model_is_its_own_retrain(prefect_harness: None, new_project: Callable[..., Any]) -> None:
    project = new_project("audit-original")
    assert project.run().status == "nothing-pending"
    summary = run_audit(project)
    assert summary.status == "exact"
    assert summary.message.startswith("PASS")
    assert versions(project, REFERENCE) == []
    assert project.tracking().version_tags(MODEL, "1")["audit_verdict"] == "exact"


def test_an_idle_project_is_recognised_before_any_service_starts(
    prefect_harness: None, new_project: Callable[..., Any]
) -> None:
    from components.stages.preflight import idle_message

    project = new_project("idle")
    assert idle_message(project.config, project.root) is None  # nothing materialised yet: the flow decides
    assert project.run().status == "nothing-pending"
    message = idle_message(project.config, project.root)
    assert message is not None
    assert message.startswith("nothing pending: mixunlearn-digits@champion (version 1)")
    project.submit_example()  # a pending request changes data/ and is pending: the flow must run
    assert idle_message(project.config, project.root) is None
