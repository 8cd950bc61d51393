"""``mixunlearn audit`` through typer's CliRunner on a project with two deletion batches (original -> 2 -> 3).

The project runs the example request, then a second request of 20 other pool IDs (certify mode, lenient
certification so the unlearned models serve). The audit's answers are checked, then the recorded facts are broken
one at a time (a batch record altered, a parent version deleted) and the audit must exit 1 and name what broke.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import Result

from components.deletion.store import read_image_set
from tests.pipelines.conftest import CERTIFY_LENIENTLY as LENIENT_CERTIFICATION
from tests.pipelines.test_cli import invoke, one_error_line

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EXAMPLE_ID = "req-2026-11-27-owner-0042"
SECOND_ID = "req-2026-12-01-owner-0077"


@dataclass(frozen=True)
class TwoBatches:
    project: Any  # conftest.Project
    second_ids: tuple[str, ...]
    kept_id: str  # a pool sample no batch forgot


@pytest.fixture(scope="module")
def two_batches(prefect_harness: None, new_project: Callable[..., Any]) -> TwoBatches:
    project = new_project("cli-audit", *LENIENT_CERTIFICATION)
    project.submit_example()
    assert project.run().status == "promoted"
    pool = read_image_set(project.root / "data" / "digits" / "pool.npz").ids.tolist()
    second_ids = tuple(pool[:20])
    request = project.root / "second-request.json"
    request.write_text(
        json.dumps(
            {
                "request_id": SECOND_ID,
                "dataset": "digits",
                "requester": "data-owner-0077",
                "reason": "consent withdrawn",
                "requested_at": "2026-12-01T09:00:00Z",
                "ids": list(second_ids),
            }
        )
    )
    project.store.submit(request)
    assert project.run().status == "promoted"
    return TwoBatches(project, second_ids, pool[-1])


def audit(project: Any, *extra: str) -> Result:
    sets = [part for override in project.overrides for part in ("--set", override)]
    return invoke(["audit", "--root", str(project.root), "--params", str(project.root / "params.yaml"), *sets, *extra])


def test_the_chain_runs_from_the_original_to_the_champion_with_its_requesters(two_batches: TwoBatches) -> None:
    result = audit(two_batches.project, "--json")

    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["ok"] is True
    assert document["target"] == "mixunlearn-digits@champion"
    chain = document["chain"]
    assert [link["version"] for link in chain] == ["1", "2", "3"]
    assert [link["source"] for link in chain] == ["original", "unlearned", "unlearned"]
    assert chain[0]["batch"] is None
    assert chain[1]["batch"]["request_ids"] == [EXAMPLE_ID]
    assert chain[1]["batch"]["requesters"] == ["data-owner-0042"]
    assert chain[2]["batch"]["request_ids"] == [SECOND_ID]
    assert chain[2]["batch"]["requesters"] == ["data-owner-0077"]
    assert chain[2]["batch"]["forget_samples"] == 20
    assert chain[2]["parent_model_version"] == "2"
    assert all(link["promoted_by"] == "deletion-batch" and link["created_at"] for link in chain)
    assert "cert_certified" in chain[2]["metrics"]
    assert "rte_seconds" in chain[2]["metrics"]
    assert chain[2]["data"]["git_rev"]
    assert chain[2]["data"]["md5"].endswith(".dir")


def test_the_text_report_ends_with_ok_and_the_deep_check_rehashes_the_pools(two_batches: TwoBatches) -> None:
    text = audit(two_batches.project)
    deep = audit(two_batches.project, "--deep", "--json")

    assert text.exit_code == 0, text.output
    assert "version 3  unlearned" in text.stdout
    assert "requesters     data-owner-0077" in text.stdout
    assert text.stdout.strip().splitlines()[-1].startswith("OK: ")
    assert deep.exit_code == 0, deep.output
    assert json.loads(deep.stdout)["checks"] > json.loads(audit(two_batches.project, "--json").stdout)["checks"]


def test_request_and_sample_answers_name_the_version_that_honours_them(two_batches: TwoBatches) -> None:
    project = two_batches.project

    first = audit(project, "--request", EXAMPLE_ID, "--json")
    second = audit(project, "--request", SECOND_ID)
    forgotten = audit(project, "--sample", two_batches.second_ids[0], "--json")
    kept = audit(project, "--sample", two_batches.kept_id)
    unknown = audit(project, "--request", "req-nobody")

    assert first.exit_code == 0, first.output
    assert (json.loads(first.stdout)["status"], json.loads(first.stdout)["version"]) == ("honoured", "2")
    assert second.exit_code == 0, second.output
    assert "honours it since version 3" in second.stdout
    assert (json.loads(forgotten.stdout)["status"], json.loads(forgotten.stdout)["version"]) == ("honoured", "3")
    assert "still in the training pool" in kept.stdout
    assert "unknown" in unknown.stdout


def test_an_altered_batch_record_fails_the_audit_and_names_the_batch(two_batches: TwoBatches) -> None:
    batches = sorted((two_batches.project.root / "data" / "batches").glob("*.json"))
    record = next(path for path in batches if SECOND_ID in path.read_text())
    original = record.read_text()
    document = json.loads(original)
    document["forget_ids"] = document["forget_ids"][1:]  # one sample quietly dropped from the record
    record.write_text(json.dumps(document))
    try:
        result = audit(two_batches.project)
    finally:
        record.write_text(original)

    assert result.exit_code == 1, result.output
    assert f"version 3: batch {record.stem}" in result.stdout
    assert "FAIL: " in result.stdout


def test_after_a_purge_the_audit_reports_the_erasure_and_the_retrain_audit_refuses_in_one_line(
    two_batches: TwoBatches,
) -> None:
    # given the two batches' older data versions, still held within the retention period
    project = two_batches.project
    sets = [part for override in project.overrides for part in ("--set", override)]
    where = ["--root", str(project.root), "--params", str(project.root / "params.yaml"), *sets]
    before = audit(project)
    assert before.stdout.count(": erasure pending: ") == 2, before.output

    # when they are purged
    purged = invoke(["purge", *where, "--older-than", "0"])
    assert purged.exit_code == 0, purged.output
    print(purged.stdout)  # shown with -s: quoted in docs/reliability.md

    # then the audit reports each batch's erasure as complete and still passes
    text = audit(project)
    assert text.exit_code == 0, text.output
    assert text.stdout.count(": erasure complete: no stored data version holds its samples; purged (purges/") == 2
    assert text.stdout.strip().splitlines()[-1].startswith("OK: ")
    # the deep check re-reads the pool it still can and notes the purged ones, with no traceback and no failure
    deep = audit(project, "--deep")
    assert deep.exit_code == 0, deep.output
    assert deep.stdout.count("  note           pool not re-read: data version ") == 2
    assert "2 purged data version(s) not re-read: the purge records document them" in deep.stdout
    print(deep.stdout)
    answer = audit(project, "--request", EXAMPLE_ID)
    assert "  erasure: batch " in answer.stdout
    assert ": erasure complete: " in answer.stdout
    # and the Retrain audit, whose forget set was in a purged version, refuses in one line without retraining
    refused = one_error_line(invoke(["retrain-audit", *where]))
    assert refused.startswith("error: not audited: version 3 cannot be compared with Retrain: ")
    print(refused)
    tags = project.tracking().version_tags("mixunlearn-digits", "3")
    assert "audit_verdict" not in tags


def test_a_deleted_parent_version_fails_the_audit(two_batches: TwoBatches) -> None:
    from mlflow.tracking import MlflowClient

    tracking = two_batches.project.tracking()
    MlflowClient(tracking.tracking_uri, tracking.tracking_uri).delete_model_version("mixunlearn-digits", "2")

    result = audit(two_batches.project)

    assert result.exit_code == 1, result.output
    assert "version 3: names parent version 2, which is not in the registry" in result.stdout


def test_an_unknown_alias_is_a_usage_error(two_batches: TwoBatches) -> None:
    result = audit(two_batches.project, "mixunlearn-digits@nope")

    assert result.exit_code == 2
    assert result.stderr.strip() == "error: mixunlearn-digits has no alias 'nope'"


def test_no_registry_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "params.yaml").write_text((Path(__file__).resolve().parents[2] / "params.yaml").read_text())

    result = invoke(["audit", "--root", str(tmp_path), "--params", str(tmp_path / "params.yaml")])

    assert result.exit_code == 2
    assert result.stderr.startswith("error: no model registry under")
