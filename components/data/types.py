"""In-memory image data with a stable string ID per sample.

Every later stage (forget manifests, DVC snapshots, lineage tags) refers to samples by these IDs, never by
position, so the IDs must not depend on seeds or on the order in which a reader happens to return files.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch


class DataError(ValueError):
    """A dataset, split or forget request that cannot be used; the message is one line for the user."""


def ids_sha256(ids: Iterable[str]) -> str:
    """Fingerprint a set of sample IDs: sha256 hex of the sorted IDs joined by newlines.

    Sorting first makes the digest depend only on which samples are in the set, not on the order a caller holds them.
    """
    return hashlib.sha256("\n".join(sorted(ids)).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ImageSet:
    """Images, labels and IDs of one split, aligned by position.

    Attributes:
        ids: ``(n,)`` array of unique strings such as ``digits/train/00123``.
        images: ``(n, C, H, W)`` uint8 array (raw pixels; normalisation happens in ``to_tensor``).
        labels: ``(n,)`` int64 array of class indices.
    """

    ids: np.ndarray
    images: np.ndarray
    labels: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.ids)
        if self.images.ndim != 4 or len(self.images) != n or len(self.labels) != n:
            raise DataError(f"misaligned image set: {n} ids, images {self.images.shape}, labels {self.labels.shape}")

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, positions: np.ndarray) -> ImageSet:
        """Return the samples at ``positions`` (an index array), keeping the given order."""
        return ImageSet(ids=self.ids[positions], images=self.images[positions], labels=self.labels[positions])

    def positions_of(self, ids: list[str] | np.ndarray) -> np.ndarray:
        """Map sample IDs to positions; raises ``DataError`` naming the first unknown ID."""
        index = {sample_id: i for i, sample_id in enumerate(self.ids.tolist())}
        positions = []
        for sample_id in ids:
            if sample_id not in index:
                raise DataError(f"unknown sample ID {sample_id!r}")
            positions.append(index[sample_id])
        return np.asarray(positions, dtype=np.int64)


@dataclass(frozen=True)
class DatasetBundle:
    """A dataset as read from disk: its official train and test splits and how to normalise it."""

    name: str
    train: ImageSet
    test: ImageSet
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    default_model: str

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one image."""
        c, h, w = self.train.images.shape[1:]
        return int(c), int(h), int(w)

    def to_tensor(self, images: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
        """Scale uint8 pixels to [0, 1] and normalise per channel, as float32 on ``device``."""
        x = torch.as_tensor(images, device=device).float().div_(255.0)
        mean = torch.tensor(self.mean, device=device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=device).view(1, -1, 1, 1)
        return (x - mean) / std
