"""The validation split's division between the unlearning loop's monitors and certification."""

from __future__ import annotations

import numpy as np
import pytest

from components.data.types import ImageSet
from components.verification.heldout import split_heldout


def _val(counts: dict[int, int]) -> ImageSet:
    labels = np.concatenate([np.full(n, label) for label, n in counts.items()]).astype(np.int64)
    ids = np.array([f"d/val/{i:05d}" for i in range(len(labels))])
    return ImageSet(ids=ids, images=np.zeros((len(labels), 1, 2, 2), dtype=np.uint8), labels=labels)


def test_the_two_sides_are_disjoint_cover_val_and_share_each_class() -> None:
    val = _val({0: 100, 1: 50, 2: 3})
    split = split_heldout(val, 0.3, seed=7)
    assert split.monitor is not None
    monitor, certification = set(split.monitor.ids), set(split.certification.ids)
    assert monitor.isdisjoint(certification)
    assert monitor | certification == set(val.ids)
    assert [int(np.sum(split.monitor.labels == c)) for c in (0, 1, 2)] == [30, 15, 0]


def test_the_division_is_fixed_by_the_seed() -> None:
    val = _val({0: 40, 1: 40})
    first, again = split_heldout(val, 0.25, seed=3), split_heldout(val, 0.25, seed=3)
    assert first.monitor is not None
    assert again.monitor is not None
    assert list(first.monitor.ids) == list(again.monitor.ids)


def test_a_zero_share_leaves_the_monitor_nothing_and_certification_everything() -> None:
    val = _val({0: 10, 1: 10})
    split = split_heldout(val, 0.0, seed=0)
    assert split.monitor is None
    assert list(split.certification.ids) == list(val.ids)


def test_a_share_outside_zero_to_one_is_refused() -> None:
    with pytest.raises(ValueError, match="monitor_fraction"):
        split_heldout(_val({0: 4}), 1.0, seed=0)
