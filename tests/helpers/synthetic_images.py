"""A class-structured image set of any shape, made in memory: a dataset and input shape no tuning has seen.

Each class has a fixed random low-frequency colour pattern; a sample is its class pattern plus pixel noise, so a
small CNN learns it in a few epochs while the classes still overlap a little (accuracy is high but not trivially
100 %). Images are already normalised (about zero mean, unit scale), as the bench's tensors are.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from components.unlearning.base import LabeledTensors


def class_patterns(num_classes: int, shape: tuple[int, int, int], seed: int) -> torch.Tensor:
    """``(num_classes, C, H, W)`` smooth patterns: 4x4 random grids upsampled to the image size."""
    generator = torch.Generator().manual_seed(seed)
    channels, height, width = shape
    coarse = torch.randn(num_classes, channels, 4, 4, generator=generator)
    return F.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False)


def synthetic_images(
    per_class: int, num_classes: int, shape: tuple[int, int, int], seed: int, noise: float = 1.5, pattern_seed: int = 0
) -> LabeledTensors:
    """``per_class`` samples of each class (classes interleaved); the patterns depend on ``pattern_seed`` only, so
    train, validation and test sets drawn with different ``seed`` share them."""
    patterns = class_patterns(num_classes, shape, pattern_seed)
    generator = torch.Generator().manual_seed(10_000 + seed)
    labels = torch.arange(num_classes).repeat(per_class)
    images = patterns[labels] + noise * torch.randn(len(labels), *shape, generator=generator)
    return LabeledTensors(images=images, labels=labels)
