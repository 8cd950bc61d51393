"""DataStore: materialising a dataset version, queueing forget requests, planning and applying forget batches.

Every test runs on a toy dataset (3 classes x 10 training images of 1x4x4 pixels) under ``tmp_path``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from components.data.datasets import DATASETS
from components.data.types import DataError, DatasetBundle, ImageSet
from components.deletion.store import (
    SPLITS,
    DataStore,
    ForgetBatch,
    ForgetRequest,
    StoredDataset,
    image_set_bytes,
    read_image_set,
    write_json,
)

NAME = "toy"
CLASSES = 3
PER_CLASS = 10
VAL_FRACTION = 0.2  # 2 validation samples per class
SEED = 0


def image_set(split: str, n: int, seed: int) -> ImageSet:
    rng = np.random.default_rng(seed)
    return ImageSet(
        ids=np.asarray([f"{NAME}/{split}/{i:05d}" for i in range(n)]),
        images=rng.integers(0, 256, size=(n, 1, 4, 4), dtype=np.uint8),
        labels=np.arange(n, dtype=np.int64) % CLASSES,
    )


def toy_bundle() -> DatasetBundle:
    return DatasetBundle(
        name=NAME,
        train=image_set("train", CLASSES * PER_CLASS, seed=1),
        test=image_set("test", 6, seed=2),
        num_classes=CLASSES,
        mean=(0.5,),
        std=(0.25,),
        default_model="small_cnn",
    )


def register_toy_datasets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``toy`` (and ``other``, never materialised) registered datasets for this test, as admission requires."""
    for name in (NAME, "other"):
        monkeypatch.setitem(DATASETS, name, lambda _data_dir: toy_bundle())


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> DataStore:
    """A store with the toy dataset materialised (and registered)."""
    register_toy_datasets(monkeypatch)
    data = DataStore(tmp_path / "data")
    data.materialise(toy_bundle(), VAL_FRACTION, SEED)
    return data


def request_document(request_id: str, ids: list[str], **fields: Any) -> dict[str, Any]:
    return {
        "request_id": request_id,
        "dataset": NAME,
        "requester": f"owner-of-{request_id}",
        "reason": "GDPR Art. 17",
        "requested_at": "2026-11-27T08:00:00Z",
        "ids": ids,
        **fields,
    }


@pytest.fixture
def write_request(tmp_path: Path) -> Callable[..., Path]:
    """``write_request(request_id, ids, **fields)``: a request JSON file outside the store; returns its path."""

    def write(request_id: str, ids: list[str], **fields: Any) -> Path:
        path = tmp_path / "incoming" / f"{request_id}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(request_document(request_id, ids, **fields)))
        return path

    return write


def make_request(request_id: str, ids: list[str], **fields: Any) -> ForgetRequest:
    return ForgetRequest.model_validate(request_document(request_id, ids, **fields))


def place_pending(store: DataStore, request: ForgetRequest) -> ForgetRequest:
    """Write ``request`` into ``requests/pending`` directly, as a hand-placed file would be (no admission)."""
    write_json(store.pending_dir / f"{request.request_id}.json", request.model_dump(mode="json"))
    return request


def ids_of(images: ImageSet) -> list[str]:
    return images.ids.tolist()


def pool_ids_of_class(stored: StoredDataset, label: int) -> list[str]:
    return stored.pool.ids[stored.pool.labels == label].tolist()


# -- materialise ---------------------------------------------------------------------------------------------


def test_materialise_writes_pool_val_test_and_meta(tmp_path: Path) -> None:
    # given an empty store
    data = DataStore(tmp_path / "data")
    assert not data.is_materialised(NAME)

    # when the toy dataset is materialised
    created = data.materialise(toy_bundle(), VAL_FRACTION, SEED)

    # then the three splits and meta.json exist, and the split is the stratified one
    assert created is True
    directory = tmp_path / "data" / NAME
    assert sorted(p.name for p in directory.iterdir()) == ["meta.json", "pool.npz", "test.npz", "val.npz"]
    stored = data.load(NAME)
    assert (len(stored.pool), len(stored.val), len(stored.test)) == (24, 6, 6)
    assert np.bincount(stored.val.labels).tolist() == [2, 2, 2]
    assert set(ids_of(stored.pool)).isdisjoint(ids_of(stored.val))
    assert sorted(ids_of(stored.pool) + ids_of(stored.val)) == sorted(ids_of(toy_bundle().train))
    meta = json.loads((directory / "meta.json").read_text())
    assert meta == {
        "dataset": NAME,
        "num_classes": CLASSES,
        "mean": [0.5],
        "std": [0.25],
        "default_model": "small_cnn",
        "split_seed": SEED,
        "val_fraction": VAL_FRACTION,
    }


def test_materialise_keeps_images_labels_and_ids_aligned(store: DataStore) -> None:
    # given the original training images by ID
    original = toy_bundle().train
    by_id = {sample_id: i for i, sample_id in enumerate(ids_of(original))}

    # when the pool is read back from disk
    pool = store.load(NAME).pool

    # then each pool sample keeps its own image and label
    positions = np.asarray([by_id[sample_id] for sample_id in ids_of(pool)])
    np.testing.assert_array_equal(pool.images, original.images[positions])
    np.testing.assert_array_equal(pool.labels, original.labels[positions])
    assert pool.images.dtype == np.uint8


def test_materialise_twice_returns_false_and_leaves_the_bytes_unchanged(store: DataStore) -> None:
    # given a materialised dataset
    directory = store.dataset_dir(NAME)
    before = {p.name: p.read_bytes() for p in directory.iterdir()}

    # when it is materialised again (even with another seed)
    created = store.materialise(toy_bundle(), VAL_FRACTION, SEED + 1)

    # then nothing is rewritten
    assert created is False
    assert {p.name: p.read_bytes() for p in directory.iterdir()} == before


def test_materialised_npz_bytes_are_deterministic(tmp_path: Path) -> None:
    # given two stores in different folders
    first, second = DataStore(tmp_path / "a"), DataStore(tmp_path / "b")

    # when the same dataset is materialised into both
    first.materialise(toy_bundle(), VAL_FRACTION, SEED)
    second.materialise(toy_bundle(), VAL_FRACTION, SEED)

    # then every file is byte-identical (no zip timestamps), so DVC sees one md5
    for split in SPLITS:
        name = f"{split}.npz"
        assert (tmp_path / "a" / NAME / name).read_bytes() == (tmp_path / "b" / NAME / name).read_bytes()
    assert image_set_bytes(toy_bundle().test) == image_set_bytes(toy_bundle().test)


def test_load_of_a_dataset_never_materialised_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="missing"):
        DataStore(tmp_path / "data").load(NAME)
    with pytest.raises(DataError, match="missing"):
        read_image_set(tmp_path / "nowhere.npz")


# -- submit / requests ---------------------------------------------------------------------------------------


def test_submit_queues_a_request_once(store: DataStore, write_request: Callable[..., Path]) -> None:
    # given a valid request file
    path = write_request("req-1", ["toy/train/00000", "toy/train/00001"])

    # when it is submitted twice
    request, added = store.submit(path)
    again, added_again = store.submit(path)

    # then it is queued once, as a normalised copy of the request
    assert (added, added_again) == (True, False)
    assert request == again
    assert request.ids == ("toy/train/00000", "toy/train/00001")
    queued = store.pending_dir / "req-1.json"
    assert ForgetRequest.load(queued) == request
    assert [r.request_id for r in store.pending(NAME)] == ["req-1"]


def test_submit_of_a_processed_request_is_not_queued_again(
    store: DataStore, write_request: Callable[..., Path]
) -> None:
    # given a request honoured by an applied batch
    stored = store.load(NAME)
    path = write_request("req-1", ids_of(stored.pool)[:2])
    request, _ = store.submit(path)
    store.apply_batch(stored, store.plan_batch(stored, [request]))
    assert (store.processed_dir / "req-1.json").exists()

    # when the same request file is submitted again
    _, added = store.submit(path)

    # then it stays processed and nothing is pending
    assert added is False
    assert store.pending(NAME) == []
    assert not (store.pending_dir / "req-1.json").exists()


def test_submit_of_a_rejected_request_is_not_queued_again(store: DataStore, write_request: Callable[..., Path]) -> None:
    # given a request placed in pending by hand (admission would refuse its unknown ID), rejected at batch time
    path = write_request("req-1", ["toy/train/99999"])
    request = place_pending(store, ForgetRequest.load(path))
    store.reject(request, ["unknown ID"])

    # when it is submitted again
    _, added = store.submit(path)

    # then it is not queued
    assert added is False
    assert store.pending(NAME) == []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"reason": None}, "reason: Field required"),
        ({"ids": ["toy/train/00001", "toy/train/00002", "toy/train/00001"]}, "duplicate IDs in the request"),
        ({"ids": []}, "ids:"),
        ({"request_id": "../escape"}, "request_id: String should match pattern"),
        ({"request_id": ""}, "request_id:"),
        ({"requested_at": "yesterday"}, "requested_at:"),
        ({"colour": "blue"}, "colour: Extra inputs are not permitted"),
    ],
    ids=["missing-field", "duplicate-ids", "no-ids", "path-in-request-id", "empty-request-id", "bad-time", "extra"],
)
def test_invalid_request_file_is_a_one_line_data_error(
    store: DataStore, tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    # given a request file with one defect
    document = request_document("req-1", ["toy/train/00001"])
    for key, value in change.items():
        if value is None:
            del document[key]
        else:
            document[key] = value
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(document))

    # when it is submitted, then a one-line DataError names the file and the defect, and nothing is queued
    with pytest.raises(DataError) as caught:
        store.submit(path)
    text = str(caught.value)
    assert message in text
    assert str(path) in text
    assert "\n" not in text
    assert not store.pending_dir.exists() or not any(store.pending_dir.iterdir())


def test_request_file_that_is_not_json_is_a_one_line_data_error(store: DataStore, tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text("request_id: req-1\nids: [a, b]\n")

    with pytest.raises(DataError, match="Invalid JSON") as caught:
        store.submit(path)

    assert "\n" not in str(caught.value)


def test_missing_request_file_is_a_data_error(store: DataStore, tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"forget request .*nope\.json not found"):
        store.submit(tmp_path / "nope.json")


def test_pending_filters_by_dataset_and_sorts_oldest_first(
    store: DataStore, write_request: Callable[..., Path]
) -> None:
    # given requests whose file names sort differently from their times, one of them for another dataset
    store.submit(write_request("a-late", ["toy/train/00001"], requested_at="2026-03-01T00:00:00Z"))
    store.submit(write_request("b-early", ["toy/train/00002"], requested_at="2026-01-01T00:00:00Z"))
    store.submit(write_request("c-early-too", ["toy/train/00003"], requested_at="2026-01-01T00:00:00Z"))
    store.submit(write_request("d-other", ["other/train/00001"], dataset="other", requested_at="2025-01-01T00:00:00Z"))

    # when the pending requests of each dataset are listed
    toy = [r.request_id for r in store.pending(NAME)]
    other = [r.request_id for r in store.pending("other")]

    # then each list holds its own dataset's requests, oldest first (ties by request ID)
    assert toy == ["b-early", "c-early-too", "a-late"]
    assert other == ["d-other"]


# -- plan_batch ----------------------------------------------------------------------------------------------


def test_plan_batch_splits_pool_ids_from_val_and_test_ids(store: DataStore) -> None:
    # given requests naming pool, validation and test samples (with an overlap between requests)
    stored = store.load(NAME)
    pool, val, test = ids_of(stored.pool), ids_of(stored.val), ids_of(stored.test)
    first = make_request("req-1", [pool[5], pool[0], val[0]], requester="alice")
    second = make_request("req-2", [pool[0], test[1]], requester="bob")

    # when a batch is planned at a fixed time
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    batch = store.plan_batch(stored, [first, second], now=now)

    # then pool IDs are to be unlearned and the others only deleted, each sorted and once
    assert batch.forget_ids == tuple(sorted([pool[0], pool[5]]))
    assert batch.removed_elsewhere == tuple(sorted([val[0], test[1]]))
    assert batch.request_ids == ("req-1", "req-2")
    assert batch.requesters == ("alice", "bob")
    assert batch.dataset == NAME
    assert batch.created_at == now
    assert batch.forgotten_classes == ()
    expected_sha = hashlib.sha256("\n".join(sorted([pool[0], pool[5]])).encode()).hexdigest()
    assert batch.sha256 == expected_sha
    assert batch.batch_id == f"batch-20260102T030405-{expected_sha[:8]}"
    assert batch.parent_pool_sha256 == hashlib.sha256("\n".join(sorted(pool)).encode()).hexdigest()


def test_plan_batch_names_a_class_only_when_every_pool_sample_of_it_is_requested(store: DataStore) -> None:
    # given the pool samples of class 1 and one sample of class 2
    stored = store.load(NAME)
    class_one = pool_ids_of_class(stored, 1)
    one_of_class_two = pool_ids_of_class(stored, 2)[:1]

    # when all of class 1 is requested, and then all of class 1 but one sample
    whole = store.plan_batch(stored, [make_request("req-1", class_one + one_of_class_two)])
    partial = store.plan_batch(stored, [make_request("req-2", class_one[:-1])])

    # then only the first batch removes a whole class
    assert whole.forgotten_classes == (1,)
    assert partial.forgotten_classes == ()


def test_plan_batch_refuses_an_empty_batch(store: DataStore) -> None:
    with pytest.raises(DataError, match="no pending forget requests"):
        store.plan_batch(store.load(NAME), [])


def test_plan_batch_refuses_a_batch_without_pool_samples(store: DataStore) -> None:
    stored = store.load(NAME)
    request = make_request("req-1", ids_of(stored.val)[:2] + ids_of(stored.test)[:1])

    with pytest.raises(DataError, match="nothing to unlearn"):
        store.plan_batch(stored, [request])


# -- apply_batch ---------------------------------------------------------------------------------------------


def test_apply_batch_removes_exactly_the_batch_ids_from_every_split(store: DataStore) -> None:
    # given a pending request naming samples of all three splits
    stored = store.load(NAME)
    removed = ids_of(stored.pool)[:3] + ids_of(stored.val)[:1] + ids_of(stored.test)[:2]
    (store.pending_dir).mkdir(parents=True, exist_ok=True)
    request = make_request("req-1", removed)
    (store.pending_dir / "req-1.json").write_text(request.model_dump_json())
    batch = store.plan_batch(stored, [request])

    # when the batch is applied
    returned = store.apply_batch(stored, batch)

    # then each split on disk lost exactly its named samples and kept the rest, aligned
    on_disk = store.load(NAME)
    for split in SPLITS:
        before, after = getattr(stored, split), getattr(on_disk, split)
        assert ids_of(after) == [i for i in ids_of(before) if i not in removed]
        kept = np.flatnonzero(~np.isin(before.ids, removed))
        np.testing.assert_array_equal(after.images, before.images[kept])
        np.testing.assert_array_equal(after.labels, before.labels[kept])
        assert ids_of(getattr(returned, split)) == ids_of(after)
    assert returned.meta == stored.meta


def test_apply_batch_writes_the_batch_record_and_moves_requests_to_processed(
    store: DataStore, write_request: Callable[..., Path]
) -> None:
    # given two pending requests planned as one batch
    stored = store.load(NAME)
    pool = ids_of(stored.pool)
    first, _ = store.submit(write_request("req-1", pool[:2]))
    second, _ = store.submit(write_request("req-2", pool[2:4]))
    batch = store.plan_batch(stored, [first, second])

    # when it is applied
    store.apply_batch(stored, batch)

    # then the record is the batch, and both requests moved from pending to processed
    record = store.batches_dir / f"{batch.batch_id}.json"
    assert ForgetBatch.model_validate_json(record.read_text()) == batch
    assert store.batches(NAME) == [batch]
    assert sorted(p.name for p in store.processed_dir.iterdir()) == ["req-1.json", "req-2.json"]
    assert list(store.pending_dir.iterdir()) == []
    assert ForgetRequest.load(store.processed_dir / "req-1.json") == first


def test_apply_batch_refuses_a_batch_planned_on_another_version(store: DataStore) -> None:
    # given a batch planned on the current version, and the version changed by another batch since
    stored = store.load(NAME)
    pool = ids_of(stored.pool)
    stale = store.plan_batch(stored, [make_request("req-2", pool[5:7])])
    current = store.apply_batch(stored, store.plan_batch(stored, [make_request("req-1", pool[:2])]))
    directory = store.dataset_dir(NAME)
    before = {p.name: p.read_bytes() for p in directory.iterdir()}

    # when the stale batch is applied, then it is refused and the data is left as it was
    with pytest.raises(DataError, match="planned on another data version"):
        store.apply_batch(current, stale)
    assert {p.name: p.read_bytes() for p in directory.iterdir()} == before
    assert not (store.batches_dir / f"{stale.batch_id}.json").exists()


def test_forgotten_ids_is_the_union_of_the_batch_records(store: DataStore) -> None:
    # given two applied batches, the first one also deleting a test sample
    stored = store.load(NAME)
    pool, test = ids_of(stored.pool), ids_of(stored.test)
    first = store.plan_batch(stored, [make_request("req-1", [pool[0], test[0]])], now=datetime(2026, 1, 1, tzinfo=UTC))
    stored = store.apply_batch(stored, first)
    second = store.plan_batch(stored, [make_request("req-2", [pool[1], pool[2]])], now=datetime(2026, 1, 2, tzinfo=UTC))
    store.apply_batch(stored, second)

    # when the forgotten IDs are read, then they are every ID either batch removed, and only for this dataset
    assert store.forgotten_ids(NAME) == {pool[0], pool[1], pool[2], test[0]}
    assert [b.batch_id for b in store.batches(NAME)] == [first.batch_id, second.batch_id]
    assert store.forgotten_ids("other") == set()


def test_reject_moves_the_request_with_its_reasons(store: DataStore) -> None:
    # given a request placed in pending by hand, naming an unknown ID
    request = place_pending(store, make_request("req-1", ["toy/train/99999"]))

    # when it is rejected
    store.reject(request, ["unknown ID toy/train/99999", "batch too large"])

    # then it left pending and sits in rejected beside its reasons
    assert store.pending(NAME) == []
    document = json.loads((store.rejected_dir / "req-1.json").read_text())
    assert document["reasons"] == ["unknown ID toy/train/99999", "batch too large"]
    assert ForgetRequest.model_validate(document["request"]) == request


def test_apply_batch_again_on_the_data_it_left_only_completes_the_record(store: DataStore) -> None:
    # given a batch whose samples were deleted by a run killed before it wrote the record and moved the requests
    request = place_pending(store, make_request("req-1", ids_of(store.load(NAME).pool)[:2]))
    stored = store.load(NAME)
    batch = store.plan_batch(stored, [request])
    after = store.apply_batch(stored, batch)
    (store.batches_dir / f"{batch.batch_id}.json").unlink()
    (store.processed_dir / "req-1.json").replace(store.pending_dir / "req-1.json")

    # when the batch is applied again to the current data
    again = store.apply_batch(store.load(NAME), batch)

    # then nothing more is deleted, and the record and the processed request are there
    assert ids_of(again.pool) == ids_of(after.pool)
    assert store.batches(NAME) == [batch]
    assert store.known_request("req-1")[0] == "processed"  # type: ignore[index]
