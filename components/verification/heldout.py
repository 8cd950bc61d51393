"""The validation split, divided once between the unlearning loop's monitors and certification.

Certification's held-out set ``H`` must be independent of every decision the unlearning loop took: a loop that
stops, backs off or restores a state because held-out accuracy looked good on some samples has selected the
moment those samples look good. The split is per class (each class keeps its share on both sides) and seeded by
the configuration's seed, so every batch of a chain divides the same validation split the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from components.data.types import ImageSet


@dataclass(frozen=True)
class HeldoutSplit:
    """``monitor``: the unlearning loop's share (None when empty); ``certification``: the rest, certification's H."""

    monitor: ImageSet | None
    certification: ImageSet


def monitor_mask(labels: np.ndarray, monitor_fraction: float, seed: int) -> np.ndarray:
    """True for the samples the monitor gets: ``monitor_fraction`` of each class (rounded down), drawn by ``seed``.

    A class too small to spare a sample stays whole on the certification side.
    """
    if not 0 <= monitor_fraction < 1:
        raise ValueError(f"monitor_fraction must be in [0, 1), got {monitor_fraction}")
    rng = np.random.default_rng(seed)
    mask = np.zeros(len(labels), dtype=bool)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        take = int(len(members) * monitor_fraction)
        if take:
            mask[rng.choice(members, size=take, replace=False)] = True
    return mask


def split_heldout(val: ImageSet, monitor_fraction: float, seed: int) -> HeldoutSplit:
    """Divide ``val`` by ``monitor_mask``; both sides keep ``val``'s order."""
    mask = monitor_mask(val.labels, monitor_fraction, seed)
    positions = np.arange(len(val))
    return HeldoutSplit(
        monitor=val.subset(positions[mask]) if mask.any() else None,
        certification=val.subset(positions[~mask]),
    )
