"""Training pool / validation / test split of a dataset, following the SalUn protocol.

A fraction of each class of the official train split is held out as validation (stratified, drawn with
``numpy.random.default_rng(seed)``); the rest is the training pool D from which forget sets are drawn. The official
test split is used untouched.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from components.data.types import DataError, DatasetBundle, ImageSet, ids_sha256

MAX_VAL_FRACTION = 0.5


@dataclass(frozen=True)
class Split:
    """The three sets every later stage works on.

    Attributes:
        pool: The training pool D (official train minus validation), in official order.
        val: The held-out validation samples, in official order.
        test: The official test split.
        seed: Seed of the validation draw.
        val_fraction: Fraction of each class moved to validation.
    """

    pool: ImageSet
    val: ImageSet
    test: ImageSet
    seed: int
    val_fraction: float

    def record(self) -> dict[str, Any]:
        """Return a JSON-ready record of the split: its parameters, sorted ID lists and their sha256 digests."""
        record: dict[str, Any] = {"seed": int(self.seed), "val_fraction": float(self.val_fraction)}
        for name, image_set in (("pool", self.pool), ("val", self.val), ("test", self.test)):
            ids = sorted(image_set.ids.tolist())
            record[f"{name}_ids"] = ids
            record[f"{name}_sha256"] = ids_sha256(ids)
        return record


def make_split(bundle: DatasetBundle, val_fraction: float, seed: int) -> Split:
    """Hold out ``val_fraction`` of each class of the official train split as validation.

    Args:
        bundle: The dataset as loaded by ``load_dataset``.
        val_fraction: Fraction in ``[0, 0.5)`` of each class to move to validation; the per-class count is rounded
            to the nearest integer (halves up). ``0`` gives an empty validation set.
        seed: Seed of ``numpy.random.default_rng``; the same seed always gives the same split.

    Returns:
        The split; pool and validation keep the official order.

    Raises:
        DataError: ``val_fraction`` outside ``[0, 0.5)``.
    """
    if isinstance(val_fraction, bool) or not (0.0 <= val_fraction < MAX_VAL_FRACTION):
        raise DataError(f"val_fraction must be in [0, {MAX_VAL_FRACTION}), got {val_fraction!r}")
    labels = bundle.train.labels
    rng = np.random.default_rng(seed)
    is_val = np.zeros(len(labels), dtype=bool)
    # Classes are visited in sorted order with one generator, so the draw depends only on the seed and the data.
    for cls in np.unique(labels):
        positions = np.flatnonzero(labels == cls)
        count = math.floor(val_fraction * len(positions) + 0.5)
        is_val[rng.choice(positions, size=count, replace=False)] = True
    return Split(
        pool=bundle.train.subset(np.flatnonzero(~is_val)),
        val=bundle.train.subset(np.flatnonzero(is_val)),
        test=bundle.test,
        seed=seed,
        val_fraction=float(val_fraction),
    )
