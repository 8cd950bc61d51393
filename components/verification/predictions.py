"""Softmax outputs of one model on one split, the single input every verification metric reads.

Metrics and membership-inference attacks only need ``(probabilities, labels)``, so the expensive forward pass runs
once per split and every metric is a pure function of the result; tests can build ``Predictions`` by hand.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class Predictions:
    """Softmax probabilities and true labels of one split, aligned by position.

    Attributes:
        probs: ``(n, K)`` float32 or float64 array; each row is a softmax distribution over the ``K`` classes.
        labels: ``(n,)`` integer array of true class indices.
    """

    probs: np.ndarray
    labels: np.ndarray

    def __post_init__(self) -> None:
        if self.probs.ndim != 2 or self.labels.ndim != 1 or len(self.probs) != len(self.labels):
            raise ValueError(f"misaligned predictions: probs {self.probs.shape}, labels {self.labels.shape}")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_classes(self) -> int:
        """Number of classes ``K`` (columns of ``probs``)."""
        return int(self.probs.shape[1])

    def subset(self, mask_or_positions: np.ndarray) -> Predictions:
        """Return the rows selected by a boolean mask of length ``n`` or by an index array (order kept)."""
        selector = np.asarray(mask_or_positions)
        return Predictions(probs=self.probs[selector], labels=self.labels[selector])

    def accuracy(self) -> float:
        """Top-1 accuracy in percent (0-100).

        Raises:
            ValueError: if there are no samples; an empty split has no accuracy, and ``nan`` would silently
                propagate into gaps and gates.
        """
        if len(self) == 0:
            raise ValueError("accuracy of an empty prediction set is undefined")
        return float(np.mean(np.argmax(self.probs, axis=1) == self.labels) * 100.0)


def predict(
    model: torch.nn.Module,
    x: torch.Tensor,
    labels: np.ndarray | torch.Tensor,
    batch_size: int = 512,
) -> Predictions:
    """Run ``model`` over ``x`` in evaluation mode and return its softmax outputs.

    Batches are sliced from ``x`` on whatever device it lives on, so the caller decides placement (the model must
    already be there). Every module's train/eval flag is restored afterwards, including modules that were
    deliberately in a different mode from their parent (e.g. frozen batch-norm inside a training model).

    Args:
        model: Classifier returning ``(batch, K)`` logits.
        x: ``(n, ...)`` input tensor, already normalised as the model expects.
        labels: ``(n,)`` true labels, as a numpy array or tensor on any device.
        batch_size: Samples per forward pass; does not change the result.

    Returns:
        ``Predictions`` with float32 probabilities and int64 labels on the CPU.

    Raises:
        ValueError: if ``x`` is empty, if ``labels`` does not match ``x`` in length, or if ``batch_size < 1``.
    """
    labels_np = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    labels_np = labels_np.astype(np.int64).reshape(-1)
    if len(x) == 0:
        raise ValueError("cannot predict on an empty input")
    if len(labels_np) != len(x):
        raise ValueError(f"{len(x)} inputs but {len(labels_np)} labels")
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")

    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        chunks = []
        with torch.no_grad():
            for start in range(0, len(x), batch_size):
                logits = model(x[start : start + batch_size])
                # float32 softmax: half-precision logits would round small probabilities to 0, which the MIA
                # features (sorted vectors, p_y) are sensitive to.
                chunks.append(torch.softmax(logits.float(), dim=1).cpu())
    finally:
        for module, training in modes:
            module.training = training
    return Predictions(probs=torch.cat(chunks).numpy(), labels=labels_np)
