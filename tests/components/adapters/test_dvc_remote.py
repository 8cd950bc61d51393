"""A DVC remote's objects by hash (what purge reads and deletes): a local directory and S3 on a real moto server."""

from __future__ import annotations

from pathlib import Path

import pytest

from components.adapters.dvc_remote import LocalObjects, RemoteObjectsError, object_key, open_remote
from components.adapters.storage import ObjectStore
from tests.helpers.moto import free_port

SAMPLE = "0123456789abcdef0123456789abcdef"
LISTING = "fedcba9876543210fedcba9876543210.dir"


def test_the_layout_is_dvc_3s() -> None:
    assert object_key(SAMPLE) == "files/md5/01/23456789abcdef0123456789abcdef"
    assert object_key(LISTING) == "files/md5/fe/dcba9876543210fedcba9876543210.dir"


def test_s3_objects_are_read_and_deleted_listings_last(moto_url: str, s3_bucket: str, tmp_path: Path) -> None:
    store = ObjectStore(s3_bucket, endpoint_url=moto_url, prefix="store")
    for md5 in (SAMPLE, LISTING):
        (tmp_path / md5).write_bytes(md5.encode())
        store.upload_file(tmp_path / md5, object_key(md5))
    remote = open_remote(f"s3://{s3_bucket}/store", moto_url, tmp_path)

    assert remote.read(LISTING) == LISTING.encode()
    assert remote.read("00" + SAMPLE[2:]) is None
    deleted = remote.delete([SAMPLE, LISTING, "00" + SAMPLE[2:]])  # an absent object is skipped, not an error

    assert deleted == [f"s3://{s3_bucket}/store/{object_key(md5)}" for md5 in (SAMPLE, LISTING)]
    assert store.list() == []
    assert remote.delete([SAMPLE]) == []  # idempotent


def test_a_local_remote_resolves_relative_paths_and_deletes_read_only_objects(tmp_path: Path) -> None:
    remote = open_remote("../store", None, tmp_path / ".dvc")
    assert isinstance(remote, LocalObjects)
    path = tmp_path / "store" / object_key(SAMPLE)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"x")
    path.chmod(0o444)

    assert remote.read(SAMPLE) == b"x"
    assert remote.delete([SAMPLE]) == [str(path)]
    assert not path.exists()


def test_an_unreachable_endpoint_and_an_unknown_scheme_are_one_line(tmp_path: Path) -> None:
    remote = open_remote("s3://bucket/store", f"http://127.0.0.1:{free_port()}", tmp_path)
    with pytest.raises(RemoteObjectsError) as caught:
        remote.read(LISTING)
    assert str(caught.value).startswith(f"cannot read s3://bucket/store/{object_key(LISTING)}")
    assert len(str(caught.value).splitlines()) == 1

    with pytest.raises(RemoteObjectsError, match=r"local-directory and s3:// remotes, not gs://bucket/store"):
        open_remote("gs://bucket/store", None, tmp_path)
