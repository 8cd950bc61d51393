"""DVC + git adapter against a real DVC repo in a temporary git repo, with local and S3 (moto) remotes."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from components.adapters.storage import ObjectStore
from components.adapters.versioning import DataVersioning, VersioningError

pytestmark = pytest.mark.integration

Git = Callable[..., str]


def _write_data(repo: Path, labels: list[int]) -> bytes:
    """Write ``data/raw/labels.npy`` and a forget request; return the labels file's bytes."""
    raw = repo / "data" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    np.save(raw / "labels.npy", np.asarray(labels, dtype=np.int64))
    (repo / "data" / "forget_requests").mkdir(exist_ok=True)
    (repo / "data" / "forget_requests" / "b-001.json").write_text('{"ids": ["digits/train/00001"]}')
    return (raw / "labels.npy").read_bytes()


def test_two_snapshots_give_two_versions_and_old_data_stays_readable(git_repo: Path, git: Git) -> None:
    versioning = DataVersioning(git_repo)
    old_bytes = _write_data(git_repo, [0, 1, 2])
    first = versioning.snapshot("data: initial")
    new_bytes = _write_data(git_repo, [0, 1, 2, 3])
    second = versioning.snapshot("data: forget batch b-001")

    assert first.md5 != second.md5
    assert first.md5.endswith(".dir")
    assert second.dvc_file == "data.dvc"
    assert versioning.current_md5() == second.md5
    assert git(git_repo, "log", "--format=%s").splitlines() == ["data: forget batch b-001", "data: initial"]
    assert git(git_repo, "rev-parse", "HEAD") == second.git_rev == versioning.git_revision()
    assert git(git_repo, "rev-parse", "HEAD~1") == first.git_rev
    assert first.md5 in git(git_repo, "show", f"{first.git_rev}:data.dvc")
    assert git(git_repo, "status", "--porcelain") == ""  # data/ and the remote are ignored, the rest committed

    assert versioning.md5_at(first.git_rev) == first.md5
    assert versioning.md5_at(second.git_rev) == second.md5
    assert versioning.md5_at("0" * 40) is None  # no such revision
    assert versioning.read_at("data/raw/labels.npy", first.git_rev) == old_bytes
    assert versioning.read_at("data/raw/labels.npy", second.git_rev) == new_bytes
    with pytest.raises(VersioningError, match=r"cannot read data/raw/missing\.npy"):
        versioning.read_at("data/raw/missing.npy", first.git_rev)

    remote_files = [p for p in (git_repo / ".dvc-remote").rglob("*") if p.is_file()]
    assert any(p.name.endswith(".dir") for p in remote_files)
    config = (git_repo / ".dvc" / "config").read_text()
    assert "analytics = False" in config
    assert "url = ../.dvc-remote" in config  # relative to .dvc/, so clones work


def test_unchanged_data_makes_no_new_commit(git_repo: Path, git: Git) -> None:
    versioning = DataVersioning(git_repo)
    _write_data(git_repo, [5])
    first = versioning.snapshot("data: initial")
    again = versioning.snapshot("data: nothing new")
    assert again == first
    assert git(git_repo, "rev-list", "--count", "HEAD") == "1"


def test_snapshot_commits_only_its_own_files(git_repo: Path, git: Git) -> None:
    (git_repo / "notes.txt").write_text("work in progress")
    git(git_repo, "add", "notes.txt")
    _write_data(git_repo, [1])
    DataVersioning(git_repo).snapshot("data: initial")
    committed = git(git_repo, "show", "--name-only", "--format=", "HEAD").splitlines()
    assert "data.dvc" in committed
    assert "notes.txt" not in committed
    assert git(git_repo, "status", "--porcelain") == "A  notes.txt"


def test_restore_pulls_an_old_version_from_the_remote(git_repo: Path) -> None:
    versioning = DataVersioning(git_repo)
    old_bytes = _write_data(git_repo, [0, 1])
    first = versioning.snapshot("v1")
    _write_data(git_repo, [7, 7, 7])
    (git_repo / "data" / "raw" / "extra.bin").write_bytes(b"only in v2")
    versioning.snapshot("v2")

    shutil.rmtree(git_repo / ".dvc" / "cache")  # force the pull path
    shutil.rmtree(git_repo / "data")
    assert versioning.restore(first.git_rev) == first.md5
    assert (git_repo / "data" / "raw" / "labels.npy").read_bytes() == old_bytes
    assert not (git_repo / "data" / "raw" / "extra.bin").exists()
    with pytest.raises(VersioningError, match="git checkout failed"):
        versioning.restore("0" * 40)


def test_snapshot_pushes_to_s3_remote_without_writing_credentials(
    git_repo: Path, git: Git, moto_url: str, s3_bucket: str
) -> None:
    versioning = DataVersioning(git_repo, remote_name="s3", remote_url=f"s3://{s3_bucket}/dvc", endpoint_url=moto_url)
    old_bytes = _write_data(git_repo, [3, 1, 4])
    snap = versioning.snapshot("data: initial (s3)")

    keys = ObjectStore(s3_bucket, endpoint_url=moto_url).list("dvc/")
    md5 = snap.md5.removesuffix(".dir")
    assert f"dvc/files/md5/{md5[:2]}/{md5[2:]}.dir" in keys
    assert len(keys) == 3  # the .dir listing plus two files
    committed = git(git_repo, "show", f"{snap.git_rev}:.dvc/config")
    assert moto_url not in committed
    assert "s3://" not in committed
    local = (git_repo / ".dvc" / "config.local").read_text()
    assert f"endpointurl = {moto_url}" in local
    assert "testing" not in committed + local  # credentials come from the environment only
    assert "config.local" in git(git_repo, "check-ignore", ".dvc/config.local")

    shutil.rmtree(git_repo / ".dvc" / "cache")  # the old version must now come from S3
    _write_data(git_repo, [9])
    assert versioning.read_at("data/raw/labels.npy", snap.git_rev) == old_bytes


def test_failed_push_commits_nothing_and_restores_files(
    git_repo: Path, git: Git, moto_url: str, s3_bucket: str
) -> None:
    _write_data(git_repo, [1, 2])
    good = DataVersioning(git_repo).snapshot("data: initial")
    dvc_before = (git_repo / "data.dvc").read_text()
    config_before = (git_repo / ".dvc" / "config").read_text()

    broken = DataVersioning(
        git_repo, remote_name="broken", remote_url=f"s3://{s3_bucket}-missing/dvc", endpoint_url=moto_url
    )
    _write_data(git_repo, [1, 2, 3])
    with pytest.raises(VersioningError, match="failed at dvc push to remote 'broken'") as raised:
        broken.snapshot("data: should not land")
    assert f"bucket {s3_bucket}-missing does not exist at {moto_url}: create it" in str(raised.value)
    assert "\n" not in str(raised.value)

    assert git(git_repo, "rev-parse", "HEAD") == good.git_rev
    assert (git_repo / "data.dvc").read_text() == dvc_before
    assert (git_repo / ".dvc" / "config").read_text() == config_before
    assert git(git_repo, "status", "--porcelain") == ""


def test_refuses_a_folder_that_is_not_a_git_root(tmp_path: Path, git_repo: Path) -> None:
    with pytest.raises(VersioningError, match="not the root of a git repository"):
        DataVersioning(tmp_path / "elsewhere").ensure_initialised()
    (git_repo / "sub").mkdir()
    with pytest.raises(VersioningError, match="not the root of a git repository"):
        DataVersioning(git_repo / "sub").ensure_initialised()
    with pytest.raises(VersioningError, match="missing or empty"):
        DataVersioning(git_repo).snapshot("no data yet")
    with pytest.raises(VersioningError, match="needs an s3:// remote_url"):
        DataVersioning(git_repo, endpoint_url="http://127.0.0.1:1")


def test_endpoint_written_to_committed_config_earlier_moves_to_local_config(
    git_repo: Path, git: Git, moto_url: str, s3_bucket: str
) -> None:
    # given a committed .dvc/config that still names an S3 remote and its endpoint (as earlier versions wrote it)
    _write_data(git_repo, [2, 7])
    DataVersioning(git_repo).snapshot("data: initial")
    config = git_repo / ".dvc" / "config"
    config.write_text(
        config.read_text().replace("remote = local", "remote = s3")
        + f"['remote \"s3\"']\n    url = s3://{s3_bucket}/dvc\n    endpointurl = {moto_url}\n"
    )
    git(git_repo, "commit", "-q", "-am", "old config with an endpoint")
    # when the next snapshot runs with the remote from the environment
    _write_data(git_repo, [1, 8])
    snap = DataVersioning(
        git_repo, remote_name="s3", remote_url=f"s3://{s3_bucket}/dvc", endpoint_url=moto_url
    ).snapshot("v2")
    # then the committed config no longer holds it, the local one does, and the default directory remote stays
    committed = git(git_repo, "show", f"{snap.git_rev}:.dvc/config")
    assert moto_url not in committed
    assert "s3://" not in committed
    assert 'remote "local"' in committed
    assert f"endpointurl = {moto_url}" in (git_repo / ".dvc" / "config.local").read_text()


def test_read_version_reads_by_content_from_s3_in_a_repository_without_history(
    git_repo: Path, git: Git, tmp_path: Path, moto_url: str, s3_bucket: str
) -> None:
    # given a data version pushed to the S3 remote, then changed locally
    remote = {"remote_name": "s3", "remote_url": f"s3://{s3_bucket}/dvc", "endpoint_url": moto_url}
    old_bytes = _write_data(git_repo, [5, 3, 5])
    snap = DataVersioning(git_repo, **remote).snapshot("v1")
    _write_data(git_repo, [0])
    # when a worker's repository with no commits, no data and no cache reads that version by its md5
    worker = tmp_path / "worker"
    worker.mkdir()
    git(worker, "init", "-q", "-b", "main")
    reader = DataVersioning(worker, **remote)
    # then it gets the old bytes from S3, and a file the version lacks is one clear error
    assert reader.read_version(snap.md5, "raw/labels.npy") == old_bytes
    with pytest.raises(VersioningError, match=r"holds no raw/missing\.npy"):
        reader.read_version(snap.md5, "raw/missing.npy")
    with pytest.raises(VersioningError, match="neither the DVC cache nor the remote"):
        reader.read_version("0" * 32 + ".dir", "raw/labels.npy")
