"""The S3 request queue against a real moto server on loopback: claims, admission, processed and rejected moves."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta

import pytest

from components.adapters.storage import ObjectStore, StorageError
from components.deletion.admission import AdmissionLimits
from components.deletion.store import DataStore
from components.triggers.s3_queue import CLAIMS, INCOMING, PROCESSED, REJECTED, S3RequestQueue, local_admission
from components.triggers.settings import S3QueueConfig
from tests.components.deletion.test_store import request_document, store  # noqa: F401

pytestmark = pytest.mark.integration
PREFIX = "queue"


def queue_for(bucket: str, url: str, name: str, **settings: float) -> S3RequestQueue:
    return S3RequestQueue(S3QueueConfig(bucket=bucket, prefix=PREFIX, **settings), url, 16 * 2**20, claimer=name)


def drop(bucket: str, url: str, name: str, document: dict | bytes) -> None:
    """A data owner uploads a request object."""
    body = document if isinstance(document, bytes) else json.dumps(document).encode()
    ObjectStore(bucket, endpoint_url=url, prefix=PREFIX).write(INCOMING + name, body)


def keys(bucket: str, url: str) -> list[str]:
    return ObjectStore(bucket, endpoint_url=url, prefix=PREFIX).list()


def test_requests_are_admitted_locally_and_moved_to_processed(
    store: DataStore,  # noqa: F811
    moto_url: str,
    s3_bucket: str,
) -> None:
    drop(s3_bucket, moto_url, "r1.json", request_document("r1", ["toy/train/00001"]))
    drop(s3_bucket, moto_url, "r2.json", request_document("r2", ["toy/train/00002"]))
    queue = queue_for(s3_bucket, moto_url, "a")

    outcomes = queue.drain(local_admission(store, AdmissionLimits()))

    assert [(o.name, o.state, o.request_id, o.dataset) for o in outcomes] == [
        ("r1.json", "queued", "r1", "toy"),
        ("r2.json", "queued", "r2", "toy"),
    ]
    assert [r.request_id for r in store.pending("toy")] == ["r1", "r2"]
    assert keys(s3_bucket, moto_url) == [PROCESSED + "r1.json", PROCESSED + "r2.json"]  # no claim left behind
    assert queue.drain(local_admission(store, AdmissionLimits())) == []


def test_a_request_uploaded_again_is_already_known_and_still_filed(
    store: DataStore,  # noqa: F811
    moto_url: str,
    s3_bucket: str,
) -> None:
    document = request_document("r1", ["toy/train/00001"])
    queue = queue_for(s3_bucket, moto_url, "a")
    drop(s3_bucket, moto_url, "r1.json", document)
    queue.drain(local_admission(store, AdmissionLimits()))
    drop(s3_bucket, moto_url, "r1.json", document)

    (outcome,) = queue.drain(local_admission(store, AdmissionLimits()))

    assert outcome.state == "already-known"
    assert keys(s3_bucket, moto_url) == [PROCESSED + "r1.json"]


@pytest.mark.parametrize(
    ("name", "body", "reason"),
    [
        ("notes.txt", json.dumps(request_document("r9", ["toy/train/00001"])).encode(), "does not end in .json"),
        ("bad.json", b"\xff\xfe not text", "not UTF-8 text"),
        ("bad.json", b"{not json", "document: Invalid JSON"),
        ("bad.json", json.dumps(request_document("r9", ["toy/train/99999"])).encode(), "not in the current toy data"),
        ("bad.json", json.dumps(request_document("r9", ["x"], dataset="nope")).encode(), "unknown dataset"),
    ],
)
def test_bad_objects_are_rejected_with_the_admission_reason_and_nothing_is_queued(
    store: DataStore,  # noqa: F811
    moto_url: str,
    s3_bucket: str,
    name: str,
    body: bytes,
    reason: str,
) -> None:
    drop(s3_bucket, moto_url, name, body)
    queue = queue_for(s3_bucket, moto_url, "a")

    (outcome,) = queue.drain(local_admission(store, AdmissionLimits()))

    assert outcome.state == "rejected"
    assert reason in str(outcome.reason)
    assert "\n" not in str(outcome.reason)
    assert f"s3://{s3_bucket}/{PREFIX}/{INCOMING}{name}" in str(outcome.reason)  # as submit names the file
    assert queue.reason(name) == outcome.reason
    assert keys(s3_bucket, moto_url) == sorted([REJECTED + name, REJECTED + name + ".reason"])
    assert ObjectStore(s3_bucket, endpoint_url=moto_url, prefix=PREFIX).read(REJECTED + name, 2**20) == body
    assert not store.pending_dir.exists() or list(store.pending_dir.iterdir()) == []


def test_an_object_over_the_size_limit_is_rejected_before_it_is_read(
    store: DataStore,  # noqa: F811
    moto_url: str,
    s3_bucket: str,
) -> None:
    drop(s3_bucket, moto_url, "big.json", b" " * 2048)
    queue = S3RequestQueue(S3QueueConfig(bucket=s3_bucket, prefix=PREFIX), moto_url, max_bytes=1024)

    (outcome,) = queue.drain(local_admission(store, AdmissionLimits()))

    assert outcome.state == "rejected"
    assert "2048 bytes, more than the limit of 1024" in str(outcome.reason)


def test_of_two_claimers_one_wins_and_a_stale_claim_is_broken_after_its_ttl(moto_url: str, s3_bucket: str) -> None:
    drop(s3_bucket, moto_url, "r1.json", request_document("r1", ["toy/train/00001"]))
    first, second = queue_for(s3_bucket, moto_url, "first"), queue_for(s3_bucket, moto_url, "second")
    now = datetime.now(UTC)

    held = first.claim("r1.json", now)

    assert held is not None
    assert second.claim("r1.json", now) is None  # If-None-Match: * refused the second write
    claim = ObjectStore(s3_bucket, endpoint_url=moto_url, prefix=PREFIX).read(CLAIMS + "r1.json", 4096)
    assert json.loads(claim)["claimer"] == "first"
    # the first claimer dies holding it: after the TTL the second breaks the claim and takes the object
    later = now + timedelta(seconds=first.config.claim_ttl_seconds + 1)
    assert second.claim("r1.json", later) is not None
    claim = ObjectStore(s3_bucket, endpoint_url=moto_url, prefix=PREFIX).read(CLAIMS + "r1.json", 4096)
    assert json.loads(claim)["claimer"] == "second"
    first.release("r1.json", held)  # the late first claimer's release is conditional: the new claim stays
    assert CLAIMS + "r1.json" in keys(s3_bucket, moto_url)


def test_two_queues_draining_concurrently_queue_each_request_once(
    store: DataStore,  # noqa: F811
    moto_url: str,
    s3_bucket: str,
) -> None:
    names = [f"r{i:02d}" for i in range(12)]
    for index, name in enumerate(names):
        drop(s3_bucket, moto_url, f"{name}.json", request_document(name, [f"toy/train/{index:05d}"]))
    queues = [queue_for(s3_bucket, moto_url, "left"), queue_for(s3_bucket, moto_url, "right")]
    results: dict[str, list] = {}
    barrier = threading.Barrier(2)

    def drain(queue: S3RequestQueue) -> None:
        barrier.wait()
        results[queue.claimer] = queue.drain(local_admission(store, AdmissionLimits()))

    threads = [threading.Thread(target=drain, args=(queue,)) for queue in queues]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    queued = [o.request_id for outcomes in results.values() for o in outcomes if o.state == "queued"]
    assert sorted(queued) == names  # each request queued by exactly one of the two
    assert sorted(r.request_id for r in store.pending("toy")) == names
    assert keys(s3_bucket, moto_url) == sorted(PROCESSED + f"{name}.json" for name in names)


def test_a_missing_bucket_or_a_dead_endpoint_is_one_line(moto_url: str) -> None:
    missing = S3RequestQueue(S3QueueConfig(bucket="no-such-bucket-here"), moto_url, 1024)
    with pytest.raises(StorageError, match="does not exist: create it") as raised:
        missing.check()
    assert "\n" not in str(raised.value)

    dead = S3RequestQueue(S3QueueConfig(bucket="any-bucket"), "http://127.0.0.1:9", 1024)
    with pytest.raises(StorageError, match=r"cannot reach bucket any-bucket at http://127\.0\.0\.1:9") as raised:
        dead.check()
    assert "\n" not in str(raised.value)
