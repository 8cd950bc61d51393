"""Evaluate one model on retain, forget and test tensors under both protocols."""

from __future__ import annotations

import torch

from components.unlearning.base import LabeledTensors
from components.verification.metrics import evaluate_predictions
from components.verification.predictions import predict


def evaluate_model(
    model: torch.nn.Module,
    retain: LabeledTensors,
    forget: LabeledTensors,
    test: LabeledTensors,
    forgotten_classes: tuple[int, ...],
    seed: int,
    batch_size: int = 1024,
) -> dict[str, float | None]:
    """All ten metrics in percent (see ``evaluate_predictions``)."""
    return evaluate_predictions(
        predict(model, retain.images, retain.labels, batch_size),
        predict(model, forget.images, forget.labels, batch_size),
        predict(model, test.images, test.labels, batch_size),
        forgotten_classes,
        seed,
    )
