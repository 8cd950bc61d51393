"""boto3 S3 adapter against a real moto server on loopback."""

from __future__ import annotations

from pathlib import Path

import pytest

from components.adapters.storage import ObjectStore, StorageError

pytestmark = pytest.mark.integration


def test_round_trip_under_a_prefix(moto_url: str, s3_bucket: str, tmp_path: Path) -> None:
    store = ObjectStore(s3_bucket, endpoint_url=moto_url, prefix="/mixunlearn/reports/")
    source = tmp_path / "report.json"
    source.write_bytes(b'{"verdict": "pass"}')

    assert (
        store.upload_file(source, "batch-001/report.json")
        == f"s3://{s3_bucket}/mixunlearn/reports/batch-001/report.json"
    )
    store.upload_file(source, "batch-002/report.json")
    assert store.exists("batch-001/report.json")
    assert not store.exists("batch-003/report.json")
    assert store.list() == ["batch-001/report.json", "batch-002/report.json"]
    assert store.list("batch-002") == ["batch-002/report.json"]
    assert ObjectStore(s3_bucket, endpoint_url=moto_url).list() == [
        "mixunlearn/reports/batch-001/report.json",
        "mixunlearn/reports/batch-002/report.json",
    ]

    target = tmp_path / "out" / "report.json"
    assert store.download_file("batch-001/report.json", target) == target
    assert target.read_bytes() == source.read_bytes()
    assert sorted(p.name for p in target.parent.iterdir()) == ["report.json"]  # no temporary file left


def test_failed_download_keeps_the_existing_file(moto_url: str, s3_bucket: str, tmp_path: Path) -> None:
    store = ObjectStore(s3_bucket, endpoint_url=moto_url)
    target = tmp_path / "model.pt"
    target.write_bytes(b"previous")
    with pytest.raises(StorageError, match=r"cannot download s3://.*/missing\.pt"):
        store.download_file("missing.pt", target)
    assert target.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]


def test_ensure_bucket_is_idempotent_and_errors_are_one_line(moto_url: str, tmp_path: Path) -> None:
    store = ObjectStore("fresh-bucket-for-ensure", endpoint_url=moto_url)
    with pytest.raises(StorageError, match="NoSuchBucket") as info:
        store.list()
    assert "\n" not in str(info.value)
    store.ensure_bucket()
    store.ensure_bucket()
    assert store.list() == []
    with pytest.raises(StorageError, match="not a file"):
        store.upload_file(tmp_path / "nope.bin", "nope.bin")
    with pytest.raises(StorageError, match="must not be empty"):
        store.exists("/")
