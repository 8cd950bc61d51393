"""Pool / validation / test split: stratified, deterministic per seed, recorded by sorted IDs and digests."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from components.data.datasets import load_dataset, make_ids
from components.data.splits import make_split
from components.data.types import DataError, DatasetBundle, ImageSet


def toy_bundle(per_class: tuple[int, ...] = (10, 20, 7, 1)) -> DatasetBundle:
    labels = np.concatenate([np.full(n, c) for c, n in enumerate(per_class)])
    labels = labels[np.random.default_rng(9).permutation(len(labels))]  # interleave classes like real files
    n = len(labels)
    images = np.arange(n, dtype=np.uint8).reshape(n, 1, 1, 1)
    return DatasetBundle(
        name="toy",
        train=ImageSet(ids=make_ids("toy", "train", n), images=images, labels=labels.astype(np.int64)),
        test=ImageSet(ids=make_ids("toy", "test", 3), images=images[:3], labels=labels[:3].astype(np.int64)),
        num_classes=len(per_class),
        mean=(0.5,),
        std=(0.25,),
        default_model="small_cnn",
    )


def test_split_is_stratified_with_rounded_per_class_counts() -> None:
    bundle = toy_bundle()

    split = make_split(bundle, val_fraction=0.3, seed=0)

    # round(0.3 * n) per class, halves up: 10 -> 3, 20 -> 6, 7 -> 2 (2.1), 1 -> 0.
    assert np.bincount(split.val.labels, minlength=4).tolist() == [3, 6, 2, 0]
    assert np.bincount(split.pool.labels, minlength=4).tolist() == [7, 14, 5, 1]


def test_split_rounds_half_up() -> None:
    split = make_split(toy_bundle((10,)), val_fraction=0.25, seed=0)  # 2.5 -> 3

    assert len(split.val) == 3


def test_split_partitions_train_in_official_order_and_keeps_test() -> None:
    bundle = toy_bundle()

    split = make_split(bundle, val_fraction=0.2, seed=1)

    pool, val = split.pool.ids.tolist(), split.val.ids.tolist()
    assert set(pool).isdisjoint(val)
    assert sorted(pool + val) == bundle.train.ids.tolist()
    assert pool == sorted(pool)
    assert val == sorted(val)
    assert split.test is bundle.test
    # Images and labels stay aligned with their IDs.
    positions = bundle.train.positions_of(split.val.ids)
    np.testing.assert_array_equal(split.val.labels, bundle.train.labels[positions])
    np.testing.assert_array_equal(split.val.images, bundle.train.images[positions])


def test_split_is_deterministic_per_seed() -> None:
    bundle = toy_bundle()

    first, again = make_split(bundle, 0.2, seed=5), make_split(bundle, 0.2, seed=5)
    other = make_split(bundle, 0.2, seed=6)

    assert first.val.ids.tolist() == again.val.ids.tolist()
    assert first.val.ids.tolist() != other.val.ids.tolist()


def test_zero_val_fraction_gives_an_empty_val_set() -> None:
    bundle = toy_bundle()

    split = make_split(bundle, 0.0, seed=0)

    assert len(split.val) == 0
    assert split.val.images.shape == (0, 1, 1, 1)
    assert split.pool.ids.tolist() == bundle.train.ids.tolist()


@pytest.mark.parametrize("fraction", [-0.1, 0.5, 0.9, float("nan"), True])
def test_val_fraction_outside_range_is_refused(fraction: float) -> None:
    with pytest.raises(DataError, match=r"val_fraction must be in \[0, 0.5\)"):
        make_split(toy_bundle(), fraction, seed=0)


def test_record_lists_sorted_ids_with_their_sha256() -> None:
    split = make_split(toy_bundle(), 0.2, seed=3)

    record = json.loads(json.dumps(split.record()))

    assert (record["seed"], record["val_fraction"]) == (3, 0.2)
    for name, image_set in (("pool", split.pool), ("val", split.val), ("test", split.test)):
        ids = record[f"{name}_ids"]
        assert ids == sorted(image_set.ids.tolist())
        assert record[f"{name}_sha256"] == hashlib.sha256("\n".join(ids).encode()).hexdigest()
    assert record["pool_sha256"] != record["val_sha256"]


def test_digits_split_matches_the_salun_protocol_shape() -> None:
    bundle = load_dataset("digits")

    split = make_split(bundle, 0.1, seed=2)

    counts = np.bincount(bundle.train.labels)
    expected_val = np.floor(0.1 * counts + 0.5).astype(int)
    assert np.bincount(split.val.labels).tolist() == expected_val.tolist()
    assert len(split.pool) + len(split.val) == len(bundle.train)
    assert split.record()["val_ids"] == make_split(bundle, 0.1, seed=2).record()["val_ids"]
