"""MLflow adapter against a real SQLite tracking store and registry in a temporary folder."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch

from components.adapters.tracking import (
    ModelVersionRef,
    TrackingError,
    TrackingStore,
    config_sha256,
    default_artifact_location,
    default_tracking_uri,
    metrics_callback,
)
from tests.helpers.mlflow_reader import active_run_id, artifact_paths, child_runs, get_run, metric_history

pytestmark = pytest.mark.integration


class TinyNet(torch.nn.Module):
    """Conv + batch norm + linear: enough structure for export, buffers and a state dict."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 4, 3)
        self.bn = torch.nn.BatchNorm2d(4)
        self.head = torch.nn.Linear(4 * 6 * 6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.bn(self.conv(x))).flatten(1))


@pytest.fixture(scope="module")
def store_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One SQLite store per module: creating the tables takes ~3 s, so tests share it and use unique names."""
    return tmp_path_factory.mktemp("tracking")


@pytest.fixture
def store(store_root: Path) -> TrackingStore:
    return TrackingStore(
        default_tracking_uri(store_root), f"exp-{uuid.uuid4().hex[:8]}", default_artifact_location(store_root)
    )


@pytest.fixture
def model_name() -> str:
    return f"tiny-{uuid.uuid4().hex[:8]}"


def test_default_uri_and_artifacts_live_under_root(tmp_path: Path) -> None:
    assert default_tracking_uri(tmp_path) == f"sqlite:///{tmp_path.resolve()}/mlflow/mlflow.db"
    assert default_artifact_location(tmp_path) == (tmp_path.resolve() / "mlflow" / "artifacts").as_uri()


def test_config_hash_is_canonical() -> None:
    config = {"train": {"lr": 0.1, "epochs": 3, "milestones": [1, 2]}, "data": {"name": "digits", "root": None}}
    reordered = {"data": {"root": None, "name": "digits"}, "train": {"milestones": [1, 2], "epochs": 3, "lr": 0.1}}
    assert config_sha256(reordered) == config_sha256(config)
    assert config_sha256({**config, "train": {**config["train"], "lr": 0.2}}) != config_sha256(config)
    assert len(config_sha256(config)) == 64
    with pytest.raises(TrackingError, match="not JSON-serialisable"):
        config_sha256({"bad": object()})


def test_parent_and_child_runs_record_everything(store: TrackingStore, tmp_path: Path) -> None:
    config = {"train": {"lr": 0.1, "epochs": 2}, "seed": 7}
    report = tmp_path / "report.txt"
    report.write_text("ok")
    reports = tmp_path / "reports"
    reports.mkdir()
    (reports / "metrics.json").write_text('{"accuracy": 0.9}')
    (reports / "summary.md").write_text("# summary")
    with store.parent_run("pipeline", tags={"config_sha256": config_sha256(config)}) as parent_id:
        store.log_params({"seed": 7, "train.epochs": 2, "train.lr": 0.1})
        with store.child_run("train", tags={"stage": "train"}) as train_id:
            log = metrics_callback(store)
            for step in range(5):
                log("train", {"loss": 1.0 / (step + 1)}, step)
            store.log_input("digits", "abc123.dir", "data/raw", "train")
            store.log_artifact(reports, "reports")  # a folder, under an artifact path
            store.log_artifact(report)
        with store.child_run("verify") as verify_id:
            store.log_metrics({"forget_acc": 0.1, "retain_acc": 0.95})
            store.set_tags({"verdict": "pass"})

    parent = get_run(store, parent_id)
    assert parent.status == "FINISHED"
    assert parent.parent_run_id is None
    assert parent.params == {"seed": "7", "train.epochs": "2", "train.lr": "0.1"}
    assert parent.tags["config_sha256"] == config_sha256(config)

    children = child_runs(store, parent_id)
    assert [c.run_id for c in children] == [train_id, verify_id]
    assert all(c.parent_run_id == parent_id and c.status == "FINISHED" for c in children)
    train = children[0]
    assert train.name == "train"
    assert train.tags == {"stage": "train"}
    assert train.metrics == {"train/loss": pytest.approx(0.2)}
    assert metric_history(store, train_id, "train/loss") == [(s, pytest.approx(1.0 / (s + 1))) for s in range(5)]
    assert train.dataset_digests == {"digits": "abc123.dir"}
    assert artifact_paths(store, train_id) == ["report.txt", "reports/metrics.json", "reports/summary.md"]
    assert children[1].metrics == {"forget_acc": 0.1, "retain_acc": 0.95}
    assert children[1].tags == {"verdict": "pass"}


def test_failing_stage_marks_runs_failed_and_leaves_no_active_run(store: TrackingStore) -> None:
    with (
        pytest.raises(RuntimeError, match="boom"),
        store.parent_run("pipeline") as parent_id,
        store.child_run("train") as child_id,
    ):
        raise RuntimeError("boom")
    assert get_run(store, parent_id).status == "FAILED"
    assert get_run(store, child_id).status == "FAILED"
    assert active_run_id() is None
    with store.parent_run("again") as again_id:
        assert active_run_id() == again_id


def test_child_run_in_worker_thread_nests_under_parent(store: TrackingStore) -> None:
    seen: dict[str, str] = {}

    def stage() -> None:
        with store.child_run("unlearn") as child_id:
            store.log_metrics({"loss": 0.5}, step=1)
            seen["child"] = child_id

    with store.parent_run("pipeline") as parent_id:
        worker = threading.Thread(target=stage)
        worker.start()
        worker.join()
        assert active_run_id() == parent_id  # the worker's run did not replace this thread's
    record = get_run(store, seen["child"])
    assert record.parent_run_id == parent_id
    assert record.metrics == {"loss": 0.5}


def test_logging_without_a_run_is_refused(store: TrackingStore) -> None:
    with pytest.raises(TrackingError, match="no run is active"):
        store.log_metrics({"loss": 1.0})
    with pytest.raises(TrackingError, match="no parent run is active"), store.child_run("orphan"):
        pass
    with store.parent_run("outer"), pytest.raises(TrackingError, match="is still active"), store.parent_run("inner"):
        pass


def _outputs(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    if isinstance(model, TinyNet):
        model.eval()  # an exported module is always in eval mode and refuses eval()
    with torch.no_grad():
        return model(x)


@pytest.mark.slow  # two torch.export model logs and four loads (~5 s)
def test_log_model_register_alias_and_load(store: TrackingStore, model_name: str) -> None:
    torch.manual_seed(0)
    first, second = TinyNet(), TinyNet()
    example = np.random.default_rng(0).random((2, 1, 8, 8), dtype=np.float32)
    probe = torch.rand(5, 1, 8, 8)  # another batch size than the example: the batch dimension is dynamic
    lineage = {"data_dvc_md5": "aaa.dir", "git_commit": "abc123", "forget_batch_id": "b-001", "verdict": "pass"}

    with store.parent_run("pipeline") as parent_id, store.child_run("train") as train_id:
        v1 = store.log_model(first, example, model_name, tags={**lineage, "forget_batch_id": "none"})
        v2 = store.log_model(second, example, model_name, tags={**lineage, "parent_model_version": v1.version})

    assert (v1.version, v2.version) == ("1", "2")
    assert v2 == ModelVersionRef(model_name, "2", train_id, f"models:/{model_name}/2")
    assert get_run(store, train_id).parent_run_id == parent_id
    assert store.version_tags(model_name, "2") == {**lineage, "parent_model_version": "1"}
    assert store.find_versions(model_name, {"forget_batch_id": "b-001"}) == [v2]
    assert store.find_versions(model_name, {"data_dvc_md5": "aaa.dir"}) == [v1, v2]
    assert store.find_versions(model_name, {"verdict": "fail"}) == []

    assert store.get_alias(model_name, "champion") is None
    assert store.get_alias("no-such-model", "champion") is None
    store.set_alias(model_name, "champion", v1.version)
    assert store.get_alias(model_name, "champion") == v1
    store.set_alias(model_name, "champion", v2.version)  # move
    assert store.get_alias(model_name, "champion") == v2

    loaded = store.load_model(f"models:/{model_name}@champion")
    torch.testing.assert_close(_outputs(loaded, probe), _outputs(second, probe))
    assert not torch.allclose(_outputs(loaded, probe), _outputs(first, probe))
    torch.testing.assert_close(_outputs(store.load_model(v1), probe), _outputs(first, probe))

    fresh = store.load_model(v2, into=TinyNet())  # weights back into the architecture, e.g. to unlearn further
    assert isinstance(fresh, TinyNet)
    assert not fresh.training
    torch.testing.assert_close(_outputs(fresh, probe), _outputs(second, probe))
    with pytest.raises(TrackingError, match="does not fit Linear"):
        store.load_model(v2, into=torch.nn.Linear(2, 2))

    store.delete_alias(model_name, "champion")
    store.delete_alias(model_name, "champion")  # idempotent
    assert store.get_alias(model_name, "champion") is None
    with pytest.raises(TrackingError, match="cannot load model"):
        store.load_model(f"models:/{model_name}@champion")
    with pytest.raises(TrackingError, match="cannot set alias"):
        store.set_alias(model_name, "champion", "99")


def test_version_search_refuses_quotes_it_cannot_escape(store: TrackingStore, model_name: str) -> None:
    with pytest.raises(TrackingError, match="single quote"):
        store.find_versions(model_name, {"verdict": "it's"})
    with pytest.raises(TrackingError, match="backtick"):
        store.find_versions(model_name, {"a`b": "pass"})
    with pytest.raises(TrackingError, match="cannot read version"):
        store.version_tags(model_name, "1")


def test_version_record_gives_tags_and_time_or_none_when_deleted(store: TrackingStore, model_name: str) -> None:
    from mlflow.tracking import MlflowClient

    example = np.zeros((1, 1, 8, 8), dtype=np.float32)
    with store.parent_run("pipeline") as parent_id:
        store.log_metrics({"cert_certified": 1.0})
        with store.child_run("unlearn"):
            store.log_metrics({"rte_seconds": 2.5})
            ref = store.log_model(TinyNet(), example, model_name, tags={"source": "original"})

    record = store.version_record(model_name, ref.version)
    assert record is not None
    assert record.tags == {"source": "original"}
    assert record.created_at is not None
    assert record.created_at.tzinfo is not None
    assert store.child_run_metrics(parent_id) == {"unlearn": {"rte_seconds": 2.5}}
    assert store.version_record(model_name, "99") is None
    MlflowClient(store.tracking_uri, store.tracking_uri).delete_model_version(model_name, ref.version)
    assert store.version_record(model_name, ref.version) is None
