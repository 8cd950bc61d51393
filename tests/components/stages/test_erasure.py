"""Erasure that lasts: ``data/`` comes back from DVC (never from the source) and ``purge`` deletes forgotten samples
from older data versions, on real git + DVC repositories (no Prefect, no MLflow: the data store and the versioning
adapter directly)."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from components.adapters.services import open_versioning
from components.adapters.storage import ObjectStore
from components.adapters.versioning import DataSnapshot, DataVersioning, DataVersionPurgedError, VersioningError
from components.cli import app
from components.config import PipelineConfig, load_config
from components.data.types import DataError
from components.deletion import ledger
from components.deletion.ledger import BatchLedger
from components.deletion.store import DataStore, ForgetBatch, image_set_from_bytes
from components.stages import steps
from tests.pipelines.conftest import git

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[3]
REQUEST_ID = "req-erasure-1"


@dataclass(frozen=True)
class Project:
    root: Path
    config: PipelineConfig
    first: DataSnapshot
    second: DataSnapshot | None
    batch: ForgetBatch | None

    @property
    def store(self) -> DataStore:
        return DataStore(self.root / "data")

    @property
    def versioning(self) -> DataVersioning:
        return open_versioning(self.root)  # the remote from the environment, as the CLI opens it


def write_request(folder: Path, ids: list[str], request_id: str = REQUEST_ID) -> Path:
    path = folder / f"{request_id}.json"
    document = {
        "request_id": request_id,
        "dataset": "digits",
        "requester": "owner-1",
        "reason": "erasure test",
        "requested_at": "2026-01-02T03:04:05Z",
        "ids": ids,
    }
    path.write_text(json.dumps(document))
    return path


def make_project(root: Path, with_batch: bool = True) -> Project:
    """A git repository whose data/ went through the initial version and (``with_batch``) one forget batch."""
    root.mkdir(parents=True)
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.name", "Erasure Tests")
    git(root, "config", "user.email", "erasure@example.invalid")
    shutil.copy2(REPO_ROOT / "params.yaml", root / "params.yaml")
    git(root, "add", "params.yaml")
    git(root, "commit", "-q", "-m", "project")
    config = load_config(root / "params.yaml", ["base.device=cpu"])
    store, versioning = DataStore(root / "data"), open_versioning(root)
    stored, created = steps.prepare_data(config, store, versioning)
    assert created
    first = versioning.snapshot("data: digits version before deletion batches")
    if not with_batch:
        return Project(root, config, first, None, None)
    store.submit(write_request(root.parent, stored.pool.ids[:5].tolist()))
    batch = store.plan_batch(stored, store.pending("digits"), parent_data_md5=first.md5, parent_git_rev=first.git_rev)
    store.apply_batch(stored, batch)
    second = versioning.snapshot(f"data: forget batch {batch.batch_id} (5 samples)")
    return Project(root, config, first, second, batch)


@pytest.fixture(scope="module")
def batched(tmp_path_factory: pytest.TempPathFactory) -> Project:
    return make_project(tmp_path_factory.mktemp("erasure") / "project")


def clone(project: Project, target: Path, with_remote: bool) -> Project:
    """A clone (git only: no data/, no DVC cache), with a copy of the local remote when ``with_remote``."""
    git(target.parent, "clone", "-q", str(project.root), str(target))
    if with_remote:
        shutil.copytree(project.root / ".dvc-remote", target / ".dvc-remote")
    return Project(target, project.config, project.first, project.second, project.batch)


def test_a_clone_restores_data_and_batch_records_from_the_remote(batched: Project, tmp_path: Path) -> None:
    copy = clone(batched, tmp_path / "clone", with_remote=True)
    assert batched.batch is not None

    stored, created = steps.prepare_data(copy.config, copy.store, copy.versioning)

    assert not created  # never rebuilt from the source dataset
    assert [b.batch_id for b in copy.store.batches("digits")] == [batched.batch.batch_id]
    assert not set(batched.batch.forget_ids) & set(stored.pool.ids.tolist())
    assert batched.second is not None
    assert copy.versioning.current_md5() == batched.second.md5
    # the same request again is known (processed), so no second batch can be planned from it
    request, new = copy.store.submit(write_request(tmp_path, list(batched.batch.forget_ids)))
    assert (request.request_id, new) == (REQUEST_ID, False)
    assert copy.store.pending("digits") == []


def test_a_clone_without_cache_or_remote_fails_and_materialises_nothing(batched: Project, tmp_path: Path) -> None:
    copy = clone(batched, tmp_path / "clone", with_remote=False)

    with pytest.raises(DataError, match=r"neither the DVC cache \(\.dvc/cache\) nor the remote 'local'") as caught:
        steps.prepare_data(copy.config, copy.store, copy.versioning)

    assert len(str(caught.value).splitlines()) == 1
    assert not (copy.root / "data").exists()


def test_the_cli_restores_before_queueing_and_a_missing_version_exits_2(batched: Project, tmp_path: Path) -> None:
    copy = clone(batched, tmp_path / "clone", with_remote=False)
    assert batched.batch is not None
    request = write_request(tmp_path, list(batched.batch.forget_ids))
    args = ["run", "--root", str(copy.root), "--params", str(copy.root / "params.yaml"), "--request", str(request)]

    result = CliRunner().invoke(app, args)

    assert result.exit_code == 2, result.output
    assert result.stderr.strip().startswith("error: data.dvc records data version")
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (copy.root / "data").exists()  # the request was not queued either


def test_submit_on_a_fresh_checkout_restores_data_first_and_admits_against_it(batched: Project, tmp_path: Path) -> None:
    # given a clone (git only) whose remote holds the data versions
    copy = clone(batched, tmp_path / "clone", with_remote=True)
    assert batched.batch is not None
    assert batched.second is not None
    submit = ["request", "submit", "--root", str(copy.root), "--params", str(copy.root / "params.yaml")]
    forgotten = write_request(tmp_path, list(batched.batch.forget_ids[:2]), "req-erasure-again")

    # when a request names samples an earlier batch forgot
    refused = CliRunner().invoke(app, [*submit, str(forgotten)])

    # then data/ came back from DVC (not from the source, which still holds them) and admission refused the request
    assert refused.exit_code == 2, refused.output
    assert refused.stdout.startswith("restored data/ from dvc: the version data.dvc records\n")
    assert f"already forgotten by batch {batched.batch.batch_id}" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    assert copy.versioning.current_md5() == batched.second.md5
    assert copy.store.pending("digits") == []
    # and a request for samples still in the restored pool is queued, with nothing restored twice
    kept = copy.store.load("digits").pool.ids[:3].tolist()
    queued = CliRunner().invoke(app, [*submit, str(write_request(tmp_path, kept, "req-erasure-new"))])
    assert queued.exit_code == 0, queued.output
    assert queued.stdout == "queued: req-erasure-new\n"
    assert [request.request_id for request in copy.store.pending("digits")] == ["req-erasure-new"]


def test_submit_on_a_fresh_checkout_without_its_data_version_exits_2_and_queues_nothing(
    batched: Project, tmp_path: Path
) -> None:
    copy = clone(batched, tmp_path / "clone", with_remote=False)
    request = write_request(tmp_path, [f"digits/train/{index:05d}" for index in range(3)], "req-erasure-new")

    result = CliRunner().invoke(
        app, ["request", "submit", str(request), "--root", str(copy.root), "--params", str(copy.root / "params.yaml")]
    )

    assert result.exit_code == 2, result.output
    assert result.stderr.strip().startswith("error: data.dvc records data version")
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (copy.root / "data").exists()


def test_the_initial_version_is_rebuilt_from_the_source_only_when_its_md5_matches(tmp_path: Path) -> None:
    initial = make_project(tmp_path / "initial", with_batch=False)
    copy = clone(initial, tmp_path / "clone", with_remote=False)
    assert steps.restore_data(copy.config, copy.store, copy.versioning) == "source (verified md5)"
    assert copy.store.is_materialised("digits")

    other = clone(initial, tmp_path / "other-split", with_remote=False)
    config = load_config(other.root / "params.yaml", ["base.seed=1"])  # another split: another md5
    with pytest.raises(DataError, match="neither the DVC cache"):
        steps.restore_data(config, other.store, other.versioning)
    assert not (other.root / "data").exists()


def test_purge_waits_for_the_retention_period(batched: Project, tmp_path: Path) -> None:
    copy = clone(batched, tmp_path / "clone", with_remote=True)
    result = CliRunner().invoke(app, ["purge", "--root", str(copy.root), "--params", str(copy.root / "params.yaml")])
    assert result.exit_code == 0, result.output
    assert f"kept data version {batched.first.git_rev[:12]}" in result.stdout
    assert "retention of 30 days not passed" in result.stdout
    assert not (copy.root / "data" / "purges").exists()


def test_purge_refuses_while_a_batch_is_unfinished(batched: Project, tmp_path: Path) -> None:
    copy = clone(batched, tmp_path / "clone", with_remote=True)
    assert batched.batch is not None
    BatchLedger(copy.root).save(ledger.plan(batched.batch, parent_model_version="1"))
    args = ["purge", "--root", str(copy.root), "--params", str(copy.root / "params.yaml"), "--older-than", "0"]

    result = CliRunner().invoke(app, args)

    assert result.exit_code == 2, result.output
    assert result.stderr.strip() == (
        f"error: batch {batched.batch.batch_id} is unfinished (stage planned) and resumes from its parent data "
        "version: finish it with `mixunlearn run` first; nothing was purged"
    )
    assert not (copy.root / "data" / "purges").exists()


def test_purge_deletes_the_old_version_and_keeps_the_audit_trail(tmp_path: Path) -> None:
    project = make_project(tmp_path / "project")
    assert project.batch is not None
    assert project.second is not None
    versioning = project.versioning
    old_listing = versioning.listing(project.first.md5)
    assert old_listing is not None
    old_pool = old_listing["digits/pool.npz"]
    later = datetime.now(UTC) + timedelta(seconds=1)

    outcome = steps.purge_data(project.config, project.store, versioning, retention_days=0, now=later)

    record = outcome.record
    assert record is not None
    (version,) = record.versions
    assert (version.git_rev, version.data_md5) == (project.first.git_rev, project.first.md5)
    assert version.batch_ids == (project.batch.batch_id,)
    assert "digits/pool.npz" in version.files
    assert "digits/meta.json" not in version.files
    for root in (project.root / ".dvc" / "cache", project.root / ".dvc-remote"):
        assert not (root / "files" / "md5" / old_pool[:2] / old_pool[2:]).exists()
        md5 = project.first.md5
        assert not (root / "files" / "md5" / md5[:2] / md5[2:]).exists()
    # reading the purged version says so, in one line
    date = later.strftime("%Y-%m-%d")
    with pytest.raises(DataVersionPurgedError) as caught:
        versioning.read_at("data/digits/pool.npz", project.first.git_rev)
    message = str(caught.value)
    assert message.startswith(
        f"data version {project.first.git_rev} was purged on {date} (batch {project.batch.batch_id})"
    )
    assert len(message.splitlines()) == 1
    # the current version still reads, and the audit trail stays (batch record, processed request, purge record)
    current = image_set_from_bytes(versioning.read_at("data/digits/pool.npz", "HEAD"))
    assert not set(project.batch.forget_ids) & set(current.ids.tolist())
    assert [b.batch_id for b in project.store.batches("digits")] == [project.batch.batch_id]
    assert (project.store.processed_dir / f"{REQUEST_ID}.json").exists()
    assert (project.root / "data" / "purges" / f"{record.purge_id}.json").exists()
    assert git(project.root, "log", "-1", "--format=%s").startswith(f"data: {record.purge_id} deleted")
    assert git(project.root, "status", "--porcelain") == ""
    # the batch's parent version is no candidate any more
    assert steps.purge_data(project.config, project.store, versioning, retention_days=0).record is None
    assert np.isin(project.batch.forget_ids, current.ids).sum() == 0


def test_a_purge_whose_commit_failed_is_committed_by_the_next_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = make_project(tmp_path / "project")
    versioning = project.versioning

    def broken(message: str) -> DataSnapshot:
        raise VersioningError("snapshot of data/ failed at git commit: no identity")

    with monkeypatch.context() as patch:
        patch.setattr(versioning, "snapshot", broken)
        with pytest.raises(VersioningError, match="no identity"):
            steps.purge_data(project.config, project.store, versioning, retention_days=0)
    head = git(project.root, "rev-parse", "HEAD")

    again = steps.purge_data(project.config, project.store, versioning, retention_days=0)

    assert again.record is None  # the versions were purged the first time
    assert git(project.root, "rev-parse", "HEAD") != head
    assert git(project.root, "log", "-1", "--format=%s").startswith("data: purge records purges/purge-")
    assert git(project.root, "status", "--porcelain") == ""


def test_purge_on_an_s3_remote_deletes_the_old_objects_and_the_current_version_still_pulls(
    moto_url: str, s3_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a project whose data versions live in an S3 bucket (a real moto server), as the CLI configures it
    monkeypatch.setenv("MIXUNLEARN_DVC_REMOTE", f"s3://{s3_bucket}/dvc-store")
    monkeypatch.setenv("S3_ENDPOINT_URL", moto_url)
    project = make_project(tmp_path / "project")
    assert project.batch is not None
    bucket = ObjectStore(s3_bucket, endpoint_url=moto_url, prefix="dvc-store")
    old_listing = project.versioning.listing(project.first.md5)
    assert old_listing is not None
    old_objects = [old_listing["digits/pool.npz"], project.first.md5]
    assert all(bucket.exists(object_key(md5)) for md5 in old_objects)

    # when the retention has passed and `mixunlearn purge` runs
    args = ["purge", "--root", str(project.root), "--params", str(project.root / "params.yaml"), "--older-than", "0"]
    result = CliRunner().invoke(app, args)

    # then the old version's pool and listing are gone from the bucket and the cache, and only those
    assert result.exit_code == 0, result.output
    assert f"purged data version {project.first.git_rev[:12]}" in result.stdout
    assert not any(bucket.exists(object_key(md5)) for md5 in old_objects)
    cache = project.root / ".dvc" / "cache"
    assert not any((cache / object_key(md5)).exists() for md5 in old_objects)
    (record_path,) = (project.root / "data" / "purges").glob("*.json")
    deleted = json.loads(record_path.read_text())["deleted"]
    assert {f"s3://{s3_bucket}/dvc-store/{object_key(md5)}" for md5 in old_objects} <= set(deleted)
    current = project.versioning.current_md5()
    assert current is not None
    current_listing = project.versioning.listing(current)
    assert current_listing is not None
    assert all(bucket.exists(object_key(md5)) for md5 in [current, *current_listing.values()])
    # reading the old version says it was purged, in one line
    with pytest.raises(DataVersionPurgedError) as caught:
        project.versioning.read_at("data/digits/pool.npz", project.first.git_rev)
    assert str(caught.value).startswith(f"data version {project.first.git_rev} was purged on ")
    assert len(str(caught.value).splitlines()) == 1
    # and a fresh clone (no cache, no local remote) still pulls the current version from the bucket
    copy = clone(project, tmp_path / "clone", with_remote=False)
    stored, created = steps.prepare_data(copy.config, copy.store, copy.versioning)
    assert not created
    assert copy.versioning.current_md5() == current
    assert not set(project.batch.forget_ids) & set(stored.pool.ids.tolist())


def object_key(md5: str) -> str:
    """DVC 3's layout of a remote (dvc/data_cloud.py ``Remote.odb``, dvc_objects/db.py ``oid_to_path``)."""
    return f"files/md5/{md5[:2]}/{md5[2:]}"
