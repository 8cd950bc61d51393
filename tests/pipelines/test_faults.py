"""Infrastructure faults (issue #12 items 3 and 6): a locked MLflow store, a full or unwritable artifact store, an
unwritable DVC remote, an S3 endpoint that is down.

Each fault ends in exit status 2 and one ``error:`` line naming the component and what to do, after bounded retries
where a retry can help (``components/adapters/retry.py``); the champion, the pending request and the data version
are untouched, or the batch is left open in its ledger and the next run finishes it.

The fast tests drive the adapters in-process; the ``slow`` ones run ``mixunlearn run`` on a throwaway project.
"""

from __future__ import annotations

import errno
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from mlflow.exceptions import MlflowException
from mlflow.store.artifact.local_artifact_repo import LocalArtifactRepository

from components.adapters import retry
from components.adapters.tracking import TrackingError, TrackingStore, default_tracking_uri
from components.adapters.versioning import DataVersioning, VersioningError
from components.deletion.ledger import BatchLedger
from tests.pipelines.conftest import git
from tests.pipelines.test_cli import invoke, run_args
from tests.pipelines.test_flow_certify import LENIENT_CERTIFICATION

MODEL = "mixunlearn-digits"
REQUEST_ID = "req-2026-11-27-owner-0042"  # examples/requests/digits-data-owner.json
LOCKED = "(sqlite3.OperationalError) database is locked"


def closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The retry helper's waits, recorded instead of slept."""
    waits: list[float] = []
    original = retry.retrying

    def quick(operation: Callable[[], Any], transient: Callable[[BaseException], bool], *args: Any, **kwargs: Any):
        return original(operation, transient, *args, **{**kwargs, "sleep": waits.append})

    monkeypatch.setattr(retry, "retrying", quick)
    import components.adapters.tracking as tracking_module
    import components.adapters.versioning as versioning_module

    monkeypatch.setattr(tracking_module, "retrying", quick)
    monkeypatch.setattr(versioning_module, "retrying", quick)
    return waits


# -- the retry helper --------------------------------------------------------------------------------------------


def test_a_transient_fault_is_retried_with_backoff_until_it_clears() -> None:
    calls, waits = [], []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise MlflowException(LOCKED)
        return "done"

    assert retry.retrying(flaky, retry.sqlite_locked, sleep=waits.append) == "done"
    assert (len(calls), waits) == (3, [0.5, 1.0])


def test_a_lasting_fault_fails_after_the_attempts_and_other_faults_at_once() -> None:
    waits: list[float] = []

    def locked() -> None:
        raise MlflowException(LOCKED)

    def full() -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(MlflowException):
        retry.retrying(locked, retry.sqlite_locked, sleep=waits.append)
    assert waits == [0.5, 1.0]
    with pytest.raises(OSError, match="No space"):
        retry.retrying(full, retry.connection_failed, sleep=waits.append)
    assert waits == [0.5, 1.0]  # not retried


# -- MLflow: a locked store, a full artifact store -----------------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> TrackingStore:
    return TrackingStore(default_tracking_uri(tmp_path), "faults")


def test_a_registry_write_waits_out_a_short_lock(
    store: TrackingStore, monkeypatch: pytest.MonkeyPatch, no_backoff: list[float]
) -> None:
    # given a registry that is locked for the first two writes
    done: list[tuple[str, str, str]] = []

    def set_alias(name: str, alias: str, version: str) -> None:
        if len(no_backoff) < 2:
            raise MlflowException(LOCKED)
        done.append((name, alias, version))

    monkeypatch.setattr(store._client, "set_registered_model_alias", set_alias)

    # when the alias is moved
    store.set_alias(MODEL, "champion", 2)

    # then the third attempt moved it
    assert (done, no_backoff) == ([(MODEL, "champion", "2")], [0.5, 1.0])


def test_a_lasting_lock_is_one_line_naming_the_store(
    store: TrackingStore, monkeypatch: pytest.MonkeyPatch, no_backoff: list[float]
) -> None:
    def locked(*args: Any) -> None:
        raise MlflowException(f"{LOCKED}\n[SQL: UPDATE ...]")

    monkeypatch.setattr(store._client, "set_registered_model_alias", locked)

    with pytest.raises(TrackingError) as raised:
        store.set_alias(MODEL, "champion", 2)

    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(
        f"MLflow tracking store {store.tracking_uri} is locked by another process after 3 attempts"
    )
    assert "stop the other process" in message
    assert "MLFLOW_TRACKING_URI" in message
    assert len(no_backoff) == 2


@pytest.mark.slow
def test_a_real_sqlite_lock_is_waited_out(tmp_path: Path) -> None:
    # given another process's exclusive lock on the store, released after 25 s (MLflow itself waits 20 s per try)
    uri = default_tracking_uri(tmp_path)
    TrackingStore(uri, "faults")
    holder = sqlite3.connect(tmp_path / "mlflow" / "mlflow.db", isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN EXCLUSIVE")
    threading.Timer(25, lambda: holder.execute("COMMIT")).start()
    started = time.monotonic()

    # when the store is opened, then the retry gets through once the lock is gone
    assert TrackingStore(uri, "faults").experiment_id
    assert time.monotonic() - started > 20


def tiny_model() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))


def test_a_full_artifact_store_is_one_line_and_registers_nothing(
    store: TrackingStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given an artifact store whose disk is full
    def full(*args: Any, **kwargs: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(LocalArtifactRepository, "log_artifacts", full)
    monkeypatch.setattr(LocalArtifactRepository, "log_artifact", full)

    # when a model is logged and registered
    with store.parent_run("faults"), pytest.raises(TrackingError) as raised:
        store.log_model(tiny_model(), np.zeros((1, 1, 2, 2), dtype=np.float32), MODEL, {"source": "original"})

    # then one line names the artifact store, and no version was registered
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(f"MLflow artifact store {store.artifact_root()} is full")
    assert "free space or make it writable" in message
    assert not store.is_registered(MODEL) or store.find_versions(MODEL) == []


# -- DVC: an unwritable remote, an S3 endpoint that is down --------------------------------------------------------


@pytest.fixture
def versioned(tmp_path: Path) -> Path:
    """A git repository whose data/ holds one committed version (pushed to the default local remote)."""
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.name", "t")
    git(root, "config", "user.email", "t@example.invalid")
    git(root, "commit", "-q", "--allow-empty", "-m", "init")
    (root / "data").mkdir()
    (root / "data" / "a.txt").write_text("one")
    DataVersioning(root).snapshot("data: first")
    (root / "data" / "a.txt").write_text("two")  # the next version, not committed yet
    return root


def unchanged(root: Path) -> Callable[[], bool]:
    head, dvc_file, config = (
        git(root, "rev-parse", "HEAD"),
        *((root / name).read_bytes() for name in ("data.dvc", ".dvc/config")),
    )
    return lambda: (
        (git(root, "rev-parse", "HEAD"), *((root / name).read_bytes() for name in ("data.dvc", ".dvc/config")))
        == (head, dvc_file, config)
        and git(root, "status", "--porcelain", "data.dvc") == ""
    )


def test_a_file_in_place_of_the_remote_directory_is_one_line_and_commits_nothing(versioned: Path) -> None:
    same = unchanged(versioned)
    blocker = versioned.parent / "remote-is-a-file"
    blocker.write_text("not a directory")

    with pytest.raises(VersioningError) as raised:
        DataVersioning(versioned, remote_url=str(blocker)).snapshot("data: second")

    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(f"DVC remote 'local' ({blocker}) is not writable")
    assert "set MIXUNLEARN_DVC_REMOTE" in message
    assert "data.dvc was not committed" in message
    assert same()


@pytest.mark.slow
def test_an_s3_endpoint_that_is_down_is_retried_then_one_line(
    versioned: Path, monkeypatch: pytest.MonkeyPatch, no_backoff: list[float]
) -> None:
    for key, value in {
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "y",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)
    same = unchanged(versioned)
    endpoint = f"http://127.0.0.1:{closed_port()}"

    with pytest.raises(VersioningError) as raised:
        DataVersioning(versioned, "data", "s3", "s3://bucket/prefix", endpoint).snapshot("data: second")

    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(f"DVC remote 's3' (s3://bucket/prefix, endpoint {endpoint}) is unreachable after 3")
    assert "S3_ENDPOINT_URL" in message
    assert no_backoff == [0.5, 1.0]
    assert same()


# -- the whole run: `mixunlearn run` under each fault --------------------------------------------------------------


class Served:
    """A project whose original model serves (version 1) and whose example request is pending."""

    def __init__(self, project: Any) -> None:
        self.project = project

    def facts(self) -> tuple[str | None, bool, bytes, str]:
        """(champion version, request pending, data.dvc bytes, HEAD)."""
        champion = self.project.tracking().get_alias(MODEL, "champion")
        pending = [request.request_id for request in self.project.store.pending("digits")]
        return (
            champion.version if champion else None,
            REQUEST_ID in pending,
            (self.project.root / "data.dvc").read_bytes(),
            self.project.head(),
        )


@pytest.fixture(scope="module")
def served(prefect_harness: None, new_project: Callable[..., Any]) -> Served:
    project = new_project("faults", "verify.mode=certify", *LENIENT_CERTIFICATION)
    result = invoke(run_args(project))  # trains and registers the original; nothing is pending yet
    assert result.exit_code == 0, result.output
    project.submit_example()
    return Served(project)


def one_error_line(result: Any) -> str:
    """The one ``error:`` line a failed run prints last on stderr (after its finished stages), exit status 2."""
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert [line for line in lines if line.startswith("error:")] == lines[-1:], result.stderr
    assert "Traceback" not in result.stderr
    return lines[-1]


def fault_line(served: Served, start: str, fault: AbstractContextManager[Any] | None = None) -> str:
    """Run with ``fault`` in force; the error line, after checking that nothing changed once the fault is gone."""
    before = served.facts()
    with fault or nullcontext():
        line = one_error_line(invoke(run_args(served.project)))
    assert line.startswith(f"error: {start}"), line
    assert served.facts() == before  # champion 1, the request pending, data.dvc and HEAD as they were
    assert before[:2] == ("1", True)
    assert BatchLedger(served.project.root).unfinished("digits") is None  # no batch was started
    return line


@pytest.mark.slow
def test_run_with_an_unwritable_dvc_remote(served: Served, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    blocker = tmp_path / "remote-is-a-file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("MIXUNLEARN_DVC_REMOTE", str(blocker))

    line = fault_line(served, f"DVC remote 'local' ({blocker}) is not writable")

    assert "set MIXUNLEARN_DVC_REMOTE" in line


@pytest.mark.slow
def test_run_with_the_s3_endpoint_down(served: Served, monkeypatch: pytest.MonkeyPatch) -> None:
    endpoint = f"http://127.0.0.1:{closed_port()}"
    for key, value in {
        "MIXUNLEARN_DVC_REMOTE": "s3://bucket/prefix",
        "S3_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "y",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)

    fault_line(served, f"DVC remote 's3' (s3://bucket/prefix, endpoint {endpoint}) is unreachable after 3 attempts")


@pytest.mark.slow
def test_run_with_the_mlflow_store_locked(served: Served) -> None:
    @contextmanager
    def locked() -> Iterator[None]:
        holder = sqlite3.connect(served.project.root / "mlflow" / "mlflow.db", isolation_level=None)
        try:
            holder.execute("BEGIN EXCLUSIVE")
            yield
        finally:
            holder.execute("ROLLBACK")
            holder.close()

    line = fault_line(served, f"MLflow tracking store {default_tracking_uri(served.project.root)} is locked", locked())

    assert "after 3 attempts" in line
    assert "MLFLOW_TRACKING_URI" in line


@pytest.mark.slow
def test_run_with_a_full_artifact_store_leaves_the_batch_for_the_next_run(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given an artifact store that fills up when the batch registers its model (the data contracts' GX results,
    # logged under gx/ before the batch is planned, still fit: a store full from the start stops the run there,
    # before anything changes)
    project = served.project
    log_artifacts, log_artifact = LocalArtifactRepository.log_artifacts, LocalArtifactRepository.log_artifact

    def full_but_gx(original: Any) -> Any:
        def write(self: Any, local: str, artifact_path: str | None = None) -> None:
            if (artifact_path or "").startswith("gx/"):
                return original(self, local, artifact_path)
            raise OSError(errno.ENOSPC, "No space left on device")

        return write

    with monkeypatch.context() as patch:
        patch.setattr(LocalArtifactRepository, "log_artifacts", full_but_gx(log_artifacts))
        patch.setattr(LocalArtifactRepository, "log_artifact", full_but_gx(log_artifact))
        line = one_error_line(invoke(run_args(project)))

    # then one line names the artifact store, the original still serves and the batch waits in its ledger
    assert line.startswith("error: MLflow artifact store "), line
    assert " is full " in line
    book = BatchLedger(project.root)
    state = book.unfinished("digits")
    assert state is not None
    assert state.stage == "verified"
    assert served.facts()[0] == "1"
    assert book.request_state(project.store, REQUEST_ID).startswith("in batch ")
    # the data version the ledger recorded is the one data.dvc holds
    assert DataVersioning(project.root).current_md5() == state.data_md5

    # when the store has room again, the next plain run finishes the batch
    result = invoke(run_args(project))

    assert result.exit_code == 0, result.output
    assert f"resumed batch {state.batch.batch_id}" in result.output
    assert book.unfinished("digits") is None
    assert book.request_state(project.store, REQUEST_ID) == "processed"
    assert served.facts()[0] == "2"
    assert project.git("status", "--porcelain", "data.dvc") == ""
