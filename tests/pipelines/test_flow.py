"""The deletion-batch flow end to end: real Prefect (test harness), MLflow on SQLite, DVC + git, GX contracts.

Each project is a throwaway git repository with params.yaml and examples/ (``new_project``); the digits recipe and
MixUnlearn run 3 epochs. A run is expensive (three models trained or exported), so each scenario runs once in a
module-scoped fixture and several tests read its results.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from components.adapters.expectations import ValidationFailed
from components.adapters.services import open_environment
from components.adapters.tracking import config_sha256, default_tracking_uri
from components.adapters.versioning import DataSnapshot, DataVersioning
from components.data.types import ImageSet
from components.deletion.store import ForgetBatch, ForgetRequest, image_set_bytes
from components.files import write_atomically
from components.models.backbones import Backbone
from components.stages import steps
from tests.helpers.mlflow_reader import artifact_paths, child_runs, get_run

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # every test runs the flow (Prefect server, 3 models)

STAGE_RUNS = {
    "validate-data",
    "train-original",
    "unlearn",
    "retrain-reference",
    "evaluate-unlearned",
    "evaluate-retrain",
    "evaluate-original",
    "promote",
}
LINEAGE_TAGS = (
    "data_md5",
    "git_rev",
    "forget_batch_id",
    "forget_manifest_sha256",
    "parent_model_version",
    "reference_run_id",
    "verdict",
    "config_sha256",
)


@dataclass(frozen=True)
class FlowRun:
    """One flow run on a project: the project, what the flow returned, and the request it honoured."""

    project: Any  # conftest.Project
    summary: Any  # pipelines.flows.RunSummary
    request: ForgetRequest


def example_request(project: Any) -> ForgetRequest:
    return ForgetRequest.load(project.root / "examples" / "requests" / "digits-data-owner.json")


def the_batch(project: Any) -> ForgetBatch:
    (batch,) = project.store.batches("digits")
    return batch


def read_ids(payload: bytes) -> set[str]:
    with np.load(io.BytesIO(payload), allow_pickle=False) as archive:
        return set(archive["ids"].tolist())


def version_numbers(project: Any, name: str) -> list[str]:
    return [ref.version for ref in project.tracking().find_versions(name)]


def write_request(project: Any, request_id: str, ids: list[str]) -> ForgetRequest:
    document = {
        "request_id": request_id,
        "dataset": "digits",
        "requester": f"owner-{request_id}",
        "reason": "test",
        "requested_at": "2026-11-28T08:00:00Z",
        "ids": ids,
    }
    path = project.root.parent / f"{project.root.name}-{request_id}.json"
    path.write_text(json.dumps(document))
    request, added = project.store.submit(path)
    assert added
    return request


# -- a passing run ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def passed(prefect_harness: None, new_project: Callable[..., Any], lenient_gates: tuple[str, ...]) -> FlowRun:
    """The example request on a fresh project, with gates the 3-epoch unlearned model passes."""
    project = new_project("passed", *lenient_gates)
    project.submit_example()
    return FlowRun(project, project.run(), example_request(project))


def test_run_promotes_the_unlearned_model_under_the_alias(passed: FlowRun) -> None:
    project, summary = passed.project, passed.summary
    tracking = project.tracking()

    assert summary.status == "promoted"
    assert summary.verdict == "PASS: every gate holds"
    assert (summary.model, summary.alias) == ("mixunlearn-digits", "champion")
    champion = tracking.get_alias("mixunlearn-digits", "champion")
    assert champion is not None
    assert champion.version == summary.version == "2"
    assert version_numbers(project, "mixunlearn-digits") == ["1", "2"]
    assert tracking.version_tags("mixunlearn-digits", "1")["source"] == "original"
    assert tracking.version_tags("mixunlearn-digits", "2")["source"] == "unlearned"
    assert "mixunlearn-digits@champion -> version 2 (unlearned model, previously 1)" in summary.message


def test_promoted_version_carries_the_lineage_tags(passed: FlowRun) -> None:
    # given the promoted version's tags and the batch record
    project, summary = passed.project, passed.summary
    tracking = project.tracking()
    tags = tracking.version_tags("mixunlearn-digits", summary.version)
    batch = the_batch(project)

    # then every lineage tag is there and agrees with the data, the batch record, the registry and the config
    assert set(LINEAGE_TAGS) <= set(tags)
    data_dvc = yaml.safe_load((project.root / "data.dvc").read_text())
    assert tags["data_md5"] == data_dvc["outs"][0]["md5"] == summary.data_md5
    assert tags["forget_batch_id"] == batch.batch_id
    expected_manifest = hashlib.sha256("\n".join(sorted(passed.request.ids)).encode()).hexdigest()
    assert tags["forget_manifest_sha256"] == batch.sha256 == expected_manifest
    assert tags["forget_request_ids"] == passed.request.request_id
    assert tags["parent_model_version"] == "1"
    (reference,) = tracking.find_versions("mixunlearn-digits-retrain")
    assert tags["reference_run_id"] == reference.run_id
    assert tags["reference_version"] == "mixunlearn-digits-retrain/1"
    assert tags["verdict"] == "pass"
    assert tags["config_sha256"] == config_sha256(project.config.model_dump())
    assert tags["parent_data_md5"] != tags["data_md5"]


def test_git_rev_tag_is_the_commit_that_holds_the_data_version(passed: FlowRun) -> None:
    project = passed.project
    tags = project.tracking().version_tags("mixunlearn-digits", passed.summary.version)

    assert project.git("cat-file", "-t", tags["git_rev"]) == "commit"
    committed = yaml.safe_load(project.git("show", f"{tags['git_rev']}:data.dvc"))
    assert committed["outs"][0]["md5"] == tags["data_md5"]
    assert project.git("status", "--porcelain", "--", "data.dvc") == ""


def test_forget_batch_is_committed_as_a_data_version(passed: FlowRun) -> None:
    project = passed.project
    batch = the_batch(project)
    subjects = project.subjects()

    assert subjects[0] == f"data: forget batch {batch.batch_id} ({len(batch.forget_ids)} samples)"
    assert subjects[1] == "data: digits version before deletion batches"
    assert len(batch.forget_ids) == len(passed.request.ids)
    assert (project.root / "data" / "batches" / f"{batch.batch_id}.json").is_file()
    assert (project.root / "data" / "requests" / "processed" / f"{passed.request.request_id}.json").is_file()
    assert list((project.root / "data" / "requests" / "pending").iterdir()) == []


def test_forgotten_ids_are_gone_now_but_retrievable_from_the_previous_data_version(passed: FlowRun) -> None:
    # given the forgotten IDs and the commit of the batch
    project = passed.project
    forgotten = set(passed.request.ids)
    batch_commit = project.tracking().version_tags("mixunlearn-digits", passed.summary.version)["git_rev"]

    # when the pool is read now and at the revision before the batch
    current = read_ids((project.root / "data" / "digits" / "pool.npz").read_bytes())
    before = read_ids(DataVersioning(project.root).read_at("data/digits/pool.npz", f"{batch_commit}~1"))

    # then the IDs are gone from the current version and present in the previous one, which differs by them only
    assert forgotten.isdisjoint(current)
    assert forgotten <= before
    assert before - current == forgotten
    # and the batch record names that previous version
    batch = the_batch(project)
    assert batch.parent_git_rev == project.git("rev-parse", f"{batch_commit}~1")
    assert batch.parent_data_md5 == yaml.safe_load(project.git("show", f"{batch_commit}~1:data.dvc"))["outs"][0]["md5"]


def test_parent_run_has_a_child_run_per_stage(passed: FlowRun) -> None:
    project = passed.project
    tracking = project.tracking()
    parent_id = tracking.version_tags("mixunlearn-digits", passed.summary.version)["pipeline_run_id"]

    parent = get_run(tracking, parent_id)
    children = child_runs(tracking, parent_id)

    assert parent.name == "deletion-batch-digits"
    assert parent.status == "FINISHED"
    assert parent.tags["outcome"] == "promoted"
    assert parent.tags["promoted_version"] == passed.summary.version
    assert {child.name for child in children} == STAGE_RUNS
    assert all(child.status == "FINISHED" for child in children)
    unlearn = next(child for child in children if child.name == "unlearn")
    assert unlearn.tags["forget_batch_id"] == the_batch(project).batch_id
    assert unlearn.params["method"] == project.config.pipeline.method_for("sample")  # the example is sample-level


def test_report_is_written_and_logged(passed: FlowRun) -> None:
    project, summary = passed.project, passed.summary
    batch = the_batch(project)

    report = project.root / "artifacts" / "reports" / batch.batch_id / "report.md"
    assert summary.report == str(report)
    text = report.read_text()
    assert f"# Deletion report: {batch.batch_id}" in text
    assert "## Verdict: PASS: every gate holds" in text
    assert "mixunlearn-digits@champion → version 2" in text
    assert (report.parent / "metrics.png").stat().st_size > 0
    assert "| retrain |" in summary.metrics_table
    parent_id = project.tracking().version_tags("mixunlearn-digits", summary.version)["pipeline_run_id"]
    assert {"report/report.md", "report/metrics.png"} <= set(artifact_paths(project.tracking(), parent_id))


def test_report_links_the_data_docs_of_the_batchs_validations(passed: FlowRun) -> None:
    # given: the batch's GX checkpoints kept their results and Data Docs under artifacts/gx
    project, summary = passed.project, passed.summary
    batch = the_batch(project)
    report = Path(summary.report)
    section = report.read_text().split("## Data contracts (Great Expectations)", 1)[1].split("## Lineage", 1)[0]
    runs = [f"digits-{split}" for split in ("pool", "val", "test")] + list(batch.request_ids)
    # then: one row per split's data contract and per request, each passing, each link resolving to a kept file
    for run in runs:
        assert any(
            line.startswith("| ") and f"| {run} |" in line and "| pass |" in line for line in section.splitlines()
        )
    links = re.findall(r"\]\(([^)]+)\)", section)
    assert len(links) == 1 + 2 * len(runs)  # the index, then a page and a JSON per validation
    assert all((report.parent / link).resolve().is_file() for link in links)
    assert (report.parent / links[0]).resolve() == project.root / "artifacts" / "gx" / "data_docs" / "index.html"
    # and MLflow holds each validation's result JSON and Data Docs page
    tracking = project.tracking()
    parent_id = tracking.version_tags("mixunlearn-digits", summary.version)["pipeline_run_id"]
    logged = artifact_paths(tracking, parent_id)
    for request_id in batch.request_ids:
        assert {Path(p).suffix for p in logged if p.startswith(f"gx/forget_request/{request_id}/")} == {
            ".json",
            ".html",
        }
    validate = next(child for child in child_runs(tracking, parent_id) if child.name == "validate-data")
    in_validate = artifact_paths(tracking, validate.run_id)
    assert {p.split("/")[2] for p in in_validate} == {"digits-pool", "digits-val", "digits-test"}


def test_retrain_reference_is_registered_once_and_reused(passed: FlowRun) -> None:
    from prefect.logging import disable_run_logger

    from pipelines import tasks

    # given the reference registry after the run
    project = passed.project
    tracking = project.tracking()
    (reference,) = tracking.find_versions("mixunlearn-digits-retrain")
    tags = tracking.version_tags("mixunlearn-digits-retrain", reference.version)
    stored = project.store.load("digits")
    context = steps.run_context(project.config, stored)
    recipe = context.recipe_tags()
    assert tags["data_md5"] == passed.summary.data_md5
    assert tags["recipe_sha256"] == recipe["recipe_sha256"]
    assert tags["seed"] == str(project.config.base.seed) == "0"
    assert tags["training_code_sha256"] == recipe["training_code_sha256"]
    assert tags["source"] == "retrain"

    # when the reference task runs again for the same data version
    snapshot = DataSnapshot(md5=passed.summary.data_md5, git_rev=project.head(), dvc_file="data.dvc")
    env = open_environment(project.config, project.root)
    with disable_run_logger():
        model, ref, seconds, trained = tasks.retrain_reference.fn(context, env, stored, snapshot)

    # then it loads the registered version instead of training a new one
    assert trained is False
    assert ref.version == reference.version
    assert seconds == pytest.approx(float(tags["train_seconds"]))
    assert version_numbers(project, "mixunlearn-digits-retrain") == ["1"]
    assert isinstance(model, Backbone)


def test_rerun_with_nothing_pending_changes_nothing(passed: FlowRun) -> None:
    # given the project after the batch
    project = passed.project
    head = project.head()
    versions = version_numbers(project, "mixunlearn-digits"), version_numbers(project, "mixunlearn-digits-retrain")

    # when the flow runs again with no pending request
    summary = project.run()

    # then it reports nothing pending and leaves the registry, the alias and git as they were
    assert summary.status == "nothing-pending"
    assert summary.version == passed.summary.version
    assert summary.data_md5 == passed.summary.data_md5
    assert summary.report is None
    assert project.tracking().get_alias("mixunlearn-digits", "champion").version == passed.summary.version
    assert (version_numbers(project, "mixunlearn-digits"), version_numbers(project, "mixunlearn-digits-retrain")) == (
        versions
    )
    assert project.head() == head


def test_each_project_opens_its_own_mlflow_store(
    passed: FlowRun, new_project: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a process that has run against another project's store (no MLFLOW_TRACKING_URI set by the user)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    other = new_project("other-store")
    with open_environment(other.config, other.root).tracking.parent_run("probe"):
        pass

    # when the environment of the first project is opened
    env = open_environment(passed.project.config, passed.project.root)

    # then it uses that project's own SQLite store
    assert env.tracking.tracking_uri == default_tracking_uri(passed.project.root)


# -- a failing gate ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def failed_gate(prefect_harness: None, new_project: Callable[..., Any]) -> FlowRun:
    """The example request with zero tolerance on both gaps: the unlearned model cannot pass."""
    project = new_project("failed-gate", "verify.max_gap_laf=0", "verify.max_gap_salun=0")
    project.submit_example()
    return FlowRun(project, project.run(), example_request(project))


def test_failing_gate_serves_the_retrain_reference(failed_gate: FlowRun) -> None:
    # given a run whose gaps exceed the zero limits
    project, summary = failed_gate.project, failed_gate.summary
    tracking = project.tracking()

    # then the alias moved to a new version holding the retrain reference, tagged as a failed verdict
    assert summary.status == "promoted"
    assert summary.verdict.startswith("FAIL: gap_laf = ")
    champion = tracking.get_alias("mixunlearn-digits", "champion")
    assert champion.version == summary.version == "2"
    tags = tracking.version_tags("mixunlearn-digits", champion.version)
    assert tags["source"] == "retrain"
    assert tags["verdict"] == "fail"
    assert tags["verdict_detail"] == summary.verdict
    assert tags["forget_batch_id"] == the_batch(project).batch_id
    (reference,) = tracking.find_versions("mixunlearn-digits-retrain")
    served = tracking.load_model(champion)
    retrain = tracking.load_model(reference)
    for key, value in retrain.state_dict().items():
        assert np.array_equal(served.state_dict()[key].numpy(), value.numpy()), key


def test_failing_gate_report_says_fail(failed_gate: FlowRun) -> None:
    text = (failed_gate.project.root / failed_gate.summary.report).read_text()

    assert "## Verdict: FAIL: gap_laf = " in text
    assert "| gap_laf | " in text
    assert "| FAIL |" in text
    assert "(retrain model; previously version 1)" in text


def test_next_batch_unlearns_from_the_served_model(failed_gate: FlowRun) -> None:
    # given the served model after the first batch, and a second request for samples still in the pool
    project = failed_gate.project
    tracking = project.tracking()
    served = tracking.get_alias("mixunlearn-digits", "champion").version
    before = version_numbers(project, "mixunlearn-digits")
    pool = project.store.load("digits").pool.ids.tolist()
    write_request(project, "req-second", pool[:8])

    # when the next batch runs
    summary = project.run()

    # then it unlearns from the served model: no new original is trained, and the lineage names the served version
    assert summary.status == "promoted"
    new = [v for v in version_numbers(project, "mixunlearn-digits") if v not in before]
    sources = [tracking.version_tags("mixunlearn-digits", v)["source"] for v in new]
    assert "original" not in sources
    assert tracking.version_tags("mixunlearn-digits", summary.version)["parent_model_version"] == served


# -- failures --------------------------------------------------------------------------------------------------


def test_data_contract_failure_stops_the_run_before_any_model(
    prefect_harness: None, new_project: Callable[..., Any]
) -> None:
    # given a materialised dataset whose pool holds a label outside range(10), written by the store's own writer
    project = new_project("contract")
    steps.prepare_data(project.config, project.store)
    pool_path = project.root / "data" / "digits" / "pool.npz"
    pool = project.store.load("digits").pool
    labels = pool.labels.copy()
    labels[3] = 10
    write_atomically(pool_path, image_set_bytes(ImageSet(ids=pool.ids, images=pool.images, labels=labels)))
    project.submit_example()
    head = project.head()

    # when the flow runs
    with pytest.raises(ValidationFailed) as caught:
        project.run()

    # then the error names the failing expectation, and nothing was versioned, registered or consumed
    message = str(caught.value)
    assert "image_set: 1 expectation(s) failed" in message
    assert "expect_column_values_to_be_in_set(label" in message
    assert "1 of " in message
    kept = sorted((project.root / "artifacts" / "gx" / "validations" / "image_set" / "digits-pool").rglob("*.json"))
    assert [json.loads(path.read_text())["success"] for path in kept] == [False]
    assert version_numbers(project, "mixunlearn-digits") == []
    assert project.tracking().get_alias("mixunlearn-digits", "champion") is None
    assert project.head() == head
    assert [r.request_id for r in project.store.pending("digits")] == [example_request(project).request_id]


def test_rejected_request_lands_in_rejected_with_its_reasons(
    prefect_harness: None, new_project: Callable[..., Any]
) -> None:
    # given a request naming one known and one unknown sample
    project = new_project("rejected")
    request = write_request(project, "req-unknown", ["digits/train/00001", "digits/train/99999"])

    # when the flow runs with no other request
    summary = project.run()

    # then the request is rejected with the failing expectation, and the run had nothing to do
    assert summary.status == "nothing-pending"
    rejected = json.loads((project.root / "data" / "requests" / "rejected" / "req-unknown.json").read_text())
    assert ForgetRequest.model_validate(rejected["request"]) == request
    (reason,) = rejected["reasons"]
    assert reason.startswith("expect_column_values_to_be_in_set(id")
    assert "digits/train/99999" in reason
    assert "1 of 2 unexpected" in reason
    assert project.store.pending("digits") == []
    assert project.store.batches("digits") == []
    assert version_numbers(project, "mixunlearn-digits-retrain") == []
    assert project.tracking().get_alias("mixunlearn-digits", "champion").version == summary.version == "1"


@pytest.fixture
def failing_record_decision(monkeypatch: pytest.MonkeyPatch) -> None:
    """Replace the read-back task after promotion with one that fails, as a registry outage would."""
    from prefect import task

    from pipelines import tasks

    @task(name="record-decision", **tasks.TASK_OPTIONS)
    def record_decision(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("registry read-back failed")

    monkeypatch.setattr(tasks, "record_decision", record_decision)


def test_failure_after_promotion_restores_the_alias(
    prefect_harness: None,
    new_project: Callable[..., Any],
    lenient_gates: tuple[str, ...],
    failing_record_decision: None,
) -> None:
    # given a fresh project: the run trains the original (version 1, champion), then promotes version 2
    project = new_project("rollback", *lenient_gates)
    project.submit_example()

    # when the transaction fails after the promotion
    with pytest.raises(RuntimeError, match="registry read-back failed"):
        project.run()

    # then version 2 was registered, but the alias is back on version 1
    tracking = project.tracking()
    assert version_numbers(project, "mixunlearn-digits") == ["1", "2"]
    assert tracking.version_tags("mixunlearn-digits", "2")["source"] == "unlearned"
    assert tracking.get_alias("mixunlearn-digits", "champion").version == "1"
