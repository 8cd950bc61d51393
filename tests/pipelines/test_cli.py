"""``mixunlearn run`` through typer's CliRunner: a full run on a throwaway project, and user errors (exit 2)."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from components.cli import app

pytestmark = pytest.mark.integration
# `slow` marks the tests that read `example_run`: `mixunlearn run --example` end to end (~35 s with Prefect)

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_ID = "req-2026-11-27-owner-0042"
QUIETENED_LOGGERS = (
    "mlflow",
    "great_expectations",
    "great_expectations.data_context.types.base",
    "alembic",
    "prefect",
    "prefect.flow_runs",
    "prefect.task_runs",
)


@contextmanager
def process_state_restored() -> Iterator[None]:
    """``run`` sets Prefect/MLflow defaults with os.environ.setdefault and quietens some library loggers; take both
    back afterwards so later tests see the process as it was."""
    before = dict(os.environ)
    levels = {name: logging.getLogger(name).level for name in QUIETENED_LOGGERS}
    try:
        yield
    finally:
        for key in set(os.environ) - set(before):
            del os.environ[key]
        os.environ.update(before)
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
        from mlflow.utils.logging_utils import enable_logging

        enable_logging()  # `run` disables MLflow's own event stream


def invoke(args: Sequence[str]) -> Result:
    with process_state_restored():
        os.environ.pop("MLFLOW_TRACKING_URI", None)  # exported by mlflow.set_tracking_uri in earlier runs
        return CliRunner().invoke(app, list(args))


def run_args(project: Any, *extra: str) -> list[str]:
    sets = [part for override in project.overrides for part in ("--set", override)]
    return ["run", "--root", str(project.root), "--params", str(project.root / "params.yaml"), *sets, *extra]


def one_error_line(result: Result) -> str:
    """The single ``error: ...`` line a user error prints on stderr (exit status 2)."""
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


@dataclass(frozen=True)
class CliRun:
    project: Any  # conftest.Project
    result: Result


@pytest.fixture(scope="module")
def example_run(prefect_harness: None, new_project: Callable[..., Any], lenient_gates: tuple[str, ...]) -> CliRun:
    """``mixunlearn run --example`` on a fresh project with the shrunk recipe as ``--set`` overrides."""
    project = new_project("cli", *lenient_gates)
    return CliRun(project, invoke(run_args(project, "--example")))


@pytest.mark.slow
def test_run_example_queues_the_request_and_prints_the_verdict(example_run: CliRun) -> None:
    result = example_run.result

    assert result.exit_code == 0, result.output
    assert f"queued: request {EXAMPLE_ID} (64 samples, data-owner-0042)" in result.stdout
    assert (
        "PASS: every gate holds; mixunlearn-digits@champion -> version 2 (unlearned model, previously 1)"
        in result.stdout
    )
    assert "error:" not in result.output


@pytest.mark.slow
def test_run_example_prints_the_metrics_table_and_the_report(example_run: CliRun) -> None:
    lines = example_run.result.stdout.splitlines()

    header = next(line for line in lines if line.startswith("| Model | Train_r |"))
    assert "Train_f" in header
    assert "Gap SalUn" in header
    rows = {line.split("|")[1].strip() for line in lines if line.startswith("| ") and line != header}
    assert {example_run.project.config.pipeline.method_for("sample"), "retrain", "original"} <= rows
    report = next(line for line in lines if line.startswith("report: "))
    path = Path(report.removeprefix("report: "))
    assert path.is_file()
    assert path.is_relative_to(example_run.project.root / "artifacts" / "reports")


@pytest.mark.slow
def test_run_prints_one_line_per_stage_and_no_library_chatter(example_run: CliRun) -> None:
    stderr = example_run.result.stderr
    stages = [line.split()[0] for line in stderr.splitlines() if line.startswith("  ") and line.endswith(" s")]

    assert stages[:3] == ["close-interrupted-runs", "prepare-data", "validate-data"]
    assert {"original-model", "plan-batch", "unlearn", "promote", "report"} <= set(stages)
    for chatter in ("Successfully registered model", "Created version", "ephemeral docs site", "| INFO"):
        assert chatter not in example_run.result.output


@pytest.mark.slow
def test_run_again_reports_the_known_request_and_nothing_pending(example_run: CliRun) -> None:
    # given the project after the example batch
    # when the same command runs again
    result = invoke(run_args(example_run.project, "--example"))

    # then the request is recognised and the version served stays version 2
    assert result.exit_code == 0, result.output
    assert f"already known: request {EXAMPLE_ID}" in result.stdout
    assert "nothing pending: mixunlearn-digits@champion (version 2)" in result.stdout
    assert "| Method |" not in result.stdout


def clone_of(project: Any, target: Path, *copied: str) -> Any:
    """A git clone of ``project`` (no data/, no DVC cache, no MLflow store) with the git-ignored ``copied`` paths."""
    subprocess.run(["git", "clone", "-q", str(project.root), str(target)], check=True, capture_output=True)
    for key, value in (("user.name", "Pipeline Tests"), ("user.email", "pipeline-tests@example.invalid")):
        subprocess.run(["git", "-C", str(target), "config", key, value], check=True)
    for relative in copied:
        shutil.copytree(project.root / relative, target / relative)
    return SimpleNamespace(root=target, overrides=project.overrides)


@pytest.mark.slow
def test_a_clone_with_the_remote_restores_data_and_applies_no_second_batch(example_run: CliRun, tmp_path: Path) -> None:
    # given a clone of the project after the example batch: no data/, no DVC cache, the remote and the MLflow store
    clone = clone_of(example_run.project, tmp_path / "clone", ".dvc-remote", "mlflow")
    commits = subprocess.run(["git", "-C", str(clone.root), "rev-list", "--count", "HEAD"], capture_output=True)

    # when the same request is run again there
    result = invoke(run_args(clone, "--example"))

    # then data/ (batch records included) came back from DVC, the request is known and nothing is unlearned again
    assert result.exit_code == 0, result.output
    assert "restored data/ from dvc" in result.stdout
    assert f"already known: request {EXAMPLE_ID}" in result.stdout
    assert "nothing pending: mixunlearn-digits@champion (version 2)" in result.stdout
    assert len(list((clone.root / "data" / "batches").glob("*.json"))) == 1
    after = subprocess.run(["git", "-C", str(clone.root), "rev-list", "--count", "HEAD"], capture_output=True)
    assert after.stdout == commits.stdout


@pytest.mark.slow
def test_a_missing_tracking_store_is_an_error_once_batches_ran(example_run: CliRun, tmp_path: Path) -> None:
    # given a clone after the example batch with the DVC remote but without mlflow/ (the registry is lost)
    clone = clone_of(example_run.project, tmp_path / "clone", ".dvc-remote")

    # when it runs
    result = invoke(run_args(clone, "--example"))

    # then it stops with one line naming the store, and no fresh registry is started
    line = one_error_line(result)
    assert "tracking store mlflow/mlflow.db is missing" in line
    assert "restore it from its backup" in line
    assert not (clone.root / "mlflow" / "mlflow.db").exists()


@pytest.mark.slow
def test_purge_after_a_batch_keeps_the_audit_trail(example_run: CliRun, tmp_path: Path) -> None:
    # given a clone of the project after the example batch (remote and registry copied, so the original stays whole)
    from components.adapters.versioning import DataVersioning, DataVersionPurgedError
    from components.deletion.store import DataStore

    clone = clone_of(example_run.project, tmp_path / "clone", ".dvc-remote", "mlflow")
    invoke(run_args(clone, "--example"))  # restores data/ from the remote
    (batch,) = DataStore(clone.root / "data").batches("digits")
    sets = [part for override in clone.overrides for part in ("--set", override)]
    where = ["--root", str(clone.root), "--params", str(clone.root / "params.yaml"), *sets]

    # when purge runs with no retention left
    result = invoke(["purge", *where, "--older-than", "0"])

    # then the batch's parent version is gone with a clear message, the current one reads, the trail stays
    assert result.exit_code == 0, result.output
    assert f"purged data version {batch.parent_git_rev[:12]}" in result.stdout
    versioning = DataVersioning(clone.root)
    assert batch.parent_git_rev is not None
    with pytest.raises(DataVersionPurgedError, match=f"data version {batch.parent_git_rev} was purged on .* \\(batch "):
        versioning.read_at("data/digits/pool.npz", batch.parent_git_rev)
    assert versioning.read_at("data/digits/pool.npz", "HEAD")
    assert (clone.root / "data" / "batches" / f"{batch.batch_id}.json").is_file()
    assert len(list((clone.root / "data" / "purges").glob("*.json"))) == 1
    audit = invoke(["audit", "--root", str(clone.root), "--params", str(clone.root / "params.yaml"), *sets])
    assert audit.exit_code == 0, audit.output  # the registry's lineage tags still check out


# -- user errors -----------------------------------------------------------------------------------------------


@pytest.fixture
def params_root(tmp_path: Path) -> Path:
    """A folder with params.yaml and examples/ (no git: every error below stops before the flow)."""
    (tmp_path / "params.yaml").write_text((REPO_ROOT / "params.yaml").read_text())
    return tmp_path


def base_args(root: Path) -> list[str]:
    return ["run", "--root", str(root), "--params", str(root / "params.yaml")]


def write_request(root: Path, dataset: str) -> Path:
    path = root / "other-dataset.json"
    path.write_text(
        json.dumps(
            {
                "request_id": "req-fashion-1",
                "dataset": dataset,
                "requester": "someone",
                "reason": "test",
                "requested_at": "2026-11-27T08:00:00Z",
                "ids": ["fashion_mnist/train/00001"],
            }
        )
    )
    return path


def test_request_for_another_dataset_exits_2(params_root: Path) -> None:
    path = write_request(params_root, "fashion_mnist")

    result = invoke([*base_args(params_root), "--request", str(path)])

    assert one_error_line(result) == "error: request req-fashion-1 is for fashion_mnist, not digits"


def test_request_for_another_dataset_is_not_queued(params_root: Path) -> None:
    path = write_request(params_root, "fashion_mnist")

    result = invoke([*base_args(params_root), "--request", str(path)])

    assert result.exit_code == 2
    pending = params_root / "data" / "requests" / "pending"
    assert not pending.exists() or list(pending.iterdir()) == []


def test_missing_request_file_exits_2(params_root: Path) -> None:
    missing = params_root / "missing.json"

    result = invoke([*base_args(params_root), "--request", str(missing)])

    assert one_error_line(result) == f"error: forget request {missing} not found"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("epochs", "error: override 'epochs' is not of the form key.path=value"),
        ("=3", "error: override '=3' is not of the form key.path=value"),
        ("train.recipes.digits.epochs=[1", "error: override 'train.recipes.digits.epochs=[1': value is not valid YAML"),
        ("verify.max_gap_laf=-1", "error: invalid parameter verify.max_gap_laf: Input should be greater than or equal"),
        ("verify.max_gap_lfa=1", "error: invalid parameter verify.max_gap_lfa: Extra inputs are not permitted"),
        ("base.seed.value=1", "error: override 'base.seed.value=1': 'seed' is not a mapping"),
    ],
    ids=["no-equals", "no-key", "bad-yaml", "negative-gate", "unknown-key", "through-a-scalar"],
)
def test_malformed_params_override_exits_2(params_root: Path, override: str, message: str) -> None:
    result = invoke([*base_args(params_root), "--set", override])

    assert one_error_line(result).startswith(message)
    assert not (params_root / "data").exists()


def test_missing_params_file_exits_2(tmp_path: Path) -> None:
    result = invoke(["run", "--root", str(tmp_path), "--params", str(tmp_path / "nope.yaml")])

    assert one_error_line(result) == f"error: parameter file {tmp_path / 'nope.yaml'} not found"


def test_flow_failure_is_one_line_naming_the_root_cause(params_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # given a flow that fails with an SDK error wrapping a database error (neither is a known user error type)
    import sqlite3

    from mlflow.exceptions import MlflowException

    import components.cli
    import pipelines.flows
    import pipelines.server

    def broken(config: Any, root: str) -> None:
        try:
            raise sqlite3.OperationalError("database is locked")
        except sqlite3.OperationalError as error:
            raise MlflowException("could not register the model\nlong details") from error

    monkeypatch.setattr(pipelines.flows, "deletion_batch", broken)
    monkeypatch.setattr(components.cli, "free_stale_slot", lambda config: None)
    monkeypatch.setattr(pipelines.server, "boot_ephemeral_server", lambda: lambda: None)  # no flow runs: no server

    # when run starts it, without and with --verbose
    line = one_error_line(invoke(base_args(params_root)))
    verbose = invoke([*base_args(params_root), "--verbose"])

    # then the user sees one line with the outer message and the root cause, and no traceback; --verbose raises
    assert line == (
        "error: MlflowException: could not register the model (cause: OperationalError: database is locked)"
    )
    assert isinstance(verbose.exception, MlflowException)


# -- admission control at submit ---------------------------------------------------------------------------------


def submit_args(root: Path, path: Path) -> list[str]:
    return ["request", "submit", str(path), "--root", str(root), "--params", str(root / "params.yaml")]


def nothing_queued(root: Path) -> bool:
    requests = root / "data" / "requests"
    return not requests.exists() or not [p for p in requests.rglob("*") if p.is_file()]


def digits_request(root: Path, name: str, **changes: Any) -> Path:
    document = {
        "request_id": "req-digits-1",
        "dataset": "digits",
        "requester": "someone",
        "reason": "test",
        "requested_at": "2026-11-27T08:00:00Z",
        "ids": ["digits/train/00001"],
        **changes,
    }
    path = root / name
    path.write_text(json.dumps(document))
    return path


@pytest.mark.parametrize("command", ["run", "submit"])
def test_a_directory_as_request_file_exits_2_and_queues_nothing(params_root: Path, command: str) -> None:
    folder = params_root / "requests.json"
    folder.mkdir()
    args = [*base_args(params_root), "--request", str(folder)] if command == "run" else submit_args(params_root, folder)

    result = invoke(args)

    assert one_error_line(result) == f"error: forget request {folder} is a directory, not a request file"
    assert nothing_queued(params_root)


def test_submit_of_an_unknown_dataset_exits_2_and_queues_nothing(params_root: Path) -> None:
    path = digits_request(params_root, "unknown.json", dataset="imagenet", ids=["imagenet/train/00001"])

    result = invoke(submit_args(params_root, path))

    assert "dataset: unknown dataset 'imagenet'" in one_error_line(result)
    assert nothing_queued(params_root)


def test_run_refuses_every_request_before_queueing_any(params_root: Path) -> None:
    good = digits_request(params_root, "good.json")
    bad = digits_request(params_root, "bad.json", request_id="req-digits-2", requester="x; rm -rf ~")

    result = invoke([*base_args(params_root), "--request", str(good), "--request", str(bad)])

    assert "requester: character(s)" in one_error_line(result)
    assert nothing_queued(params_root)


def test_submit_of_a_known_request_id_with_other_content_is_a_conflict(params_root: Path) -> None:
    # given a queued request
    first = digits_request(params_root, "first.json")
    assert invoke(submit_args(params_root, first)).exit_code == 0
    queued = params_root / "data" / "requests" / "pending" / "req-digits-1.json"
    before = queued.read_bytes()

    # when the same file is submitted again, then it is already known
    again = invoke(submit_args(params_root, first))
    assert again.exit_code == 0, again.output
    assert "already known: req-digits-1" in again.stdout

    # when another file reuses its ID with other IDs, then it is a conflict and the queue is unchanged
    changed = digits_request(params_root, "changed.json", ids=["digits/train/00002"])
    result = invoke(submit_args(params_root, changed))
    assert "request_id: req-digits-1 is already pending with different content" in one_error_line(result)
    assert queued.read_bytes() == before
    assert [p.name for p in queued.parent.iterdir()] == ["req-digits-1.json"]


def test_run_refuses_one_request_id_given_twice_with_different_content(params_root: Path) -> None:
    first = digits_request(params_root, "first.json")
    second = digits_request(params_root, "second.json", ids=["digits/train/00002"])

    result = invoke([*base_args(params_root), "--request", str(first), "--request", str(second)])

    assert one_error_line(result) == f"error: request req-digits-1 is given twice with different content ({second})"
    assert nothing_queued(params_root)
