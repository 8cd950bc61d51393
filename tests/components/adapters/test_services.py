"""``open_environment``: the pipeline's services come from the project root and the environment only.

The MLflow store is replaced by a recorder (creating a real SQLite store takes seconds; test_tracking.py covers it),
so these tests check the wiring: which URI, artifact location and DVC remote each environment gives.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from components.adapters import services
from components.adapters.tracking import default_artifact_location, default_tracking_uri

CONFIG: Any = SimpleNamespace(pipeline=SimpleNamespace(experiment="mixunlearn-test"))  # the one field it reads


class RecordedStore:
    def __init__(self, tracking_uri: str, experiment: str, artifact_location: str | None = None) -> None:
        self.tracking_uri, self.experiment, self.artifact_location = tracking_uri, experiment, artifact_location


@pytest.fixture
def bare_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No endpoint from the environment, and a recorder in place of the MLflow store."""
    for key in ("MLFLOW_TRACKING_URI", "MIXUNLEARN_DVC_REMOTE", "S3_ENDPOINT_URL"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setattr(services, "TrackingStore", RecordedStore)
    return monkeypatch


def test_defaults_keep_everything_under_the_project_root(bare_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env = services.open_environment(CONFIG, tmp_path)
    assert env.root == tmp_path.resolve()
    assert env.store.root == tmp_path.resolve() / "data"
    assert env.tracking.tracking_uri == default_tracking_uri(tmp_path)
    assert env.tracking.artifact_location == default_artifact_location(tmp_path)
    assert env.tracking.experiment == "mixunlearn-test"
    versioning = env.versioning
    assert (versioning.repo_root, versioning.data_dir) == (tmp_path.resolve(), "data")
    assert (versioning.remote_name, versioning.remote_url, versioning.endpoint_url) == ("local", None, None)


def test_endpoints_come_from_the_environment(bare_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    bare_env.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    bare_env.setenv("MIXUNLEARN_DVC_REMOTE", "s3://bucket/mixunlearn")
    bare_env.setenv("S3_ENDPOINT_URL", "http://127.0.0.1:9000")
    env = services.open_environment(CONFIG, tmp_path)
    assert (env.tracking.tracking_uri, env.tracking.artifact_location) == ("http://127.0.0.1:5000", None)
    versioning = env.versioning
    assert (versioning.remote_name, versioning.remote_url) == ("s3", "s3://bucket/mixunlearn")
    assert versioning.endpoint_url == "http://127.0.0.1:9000"


def test_a_local_remote_ignores_the_s3_endpoint(bare_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    bare_env.setenv("MIXUNLEARN_DVC_REMOTE", str(tmp_path / "remote"))
    bare_env.setenv("S3_ENDPOINT_URL", "http://127.0.0.1:9000")
    versioning = services.open_environment(CONFIG, tmp_path).versioning
    assert (versioning.remote_name, versioning.remote_url, versioning.endpoint_url) == (
        "local",
        str(tmp_path / "remote"),
        None,
    )


def test_a_missing_tracking_store_is_an_error_once_batches_ran(bare_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # given data with a batch record and no mlflow/mlflow.db
    (tmp_path / "data" / "batches").mkdir(parents=True)
    (tmp_path / "data" / "batches" / "batch-1.json").write_text("{}")

    # when the environment opens, then it refuses to start a fresh registry
    with pytest.raises(services.TrackingStoreMissingError, match=r"tracking store mlflow/mlflow\.db is missing"):
        services.open_environment(CONFIG, tmp_path)
    assert not (tmp_path / "mlflow" / "mlflow.db").exists()


def test_an_empty_tracking_store_is_an_error_once_batches_ran(bare_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "data" / "batches").mkdir(parents=True)
    (tmp_path / "data" / "batches" / "batch-1.json").write_text("{}")
    (tmp_path / "mlflow").mkdir()
    (tmp_path / "mlflow" / "mlflow.db").write_bytes(b"")
    with pytest.raises(services.TrackingStoreMissingError, match="is empty"):
        services.open_environment(CONFIG, tmp_path)


def test_without_batches_a_fresh_tracking_store_is_created(bare_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env = services.open_environment(CONFIG, tmp_path)
    assert env.tracking.tracking_uri == default_tracking_uri(tmp_path)
