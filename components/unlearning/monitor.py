"""A forgetting monitor for an unlearning loop: stop once the forget batch looks forgotten, not after a fixed budget.

The cost of a deletion is the number of unlearning steps, and the steps a batch needs vary with the model and the
batch: on Fashion-MNIST one 500-sample request was forgotten after 100 steps, another still remembered after 100
(docs/tuning/certify-grid/). A fixed budget large enough for the hard case wastes most of it on the easy one. The
monitor measures, at intervals, what per-batch certification will check and tells the loop to stop once it holds:

- sample-level (the forget batch's classes are all kept): the unlearner's accuracy on the forget batch minus its
  accuracy on held-out samples of the same classes (pooled, as certification's ``forget_excess`` compares them) is at
  most ``max_excess`` points: a model that never saw the batch scores on it as on unseen data;
- class-level (the batch removes whole classes): accuracy on the forget batch is at most ``max_class_accuracy``.

Held-out samples must be ones certification does not read, or the stopping rule would select a moment where the
certificate's own sample happens to look good: the pipeline hands the loop only the monitor share of the
validation split (components/verification/heldout.py). The test split is never read.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from components.unlearning.base import LabeledTensors
from components.unlearning.guard import accuracy, seeded_subset


@dataclass(frozen=True)
class MonitorSettings:
    """When the forget batch counts as forgotten; see the module docstring."""

    max_excess: float = 0.0
    max_class_accuracy: float = 1.0
    max_samples: int = 2000
    batch_size: int = 1024


class ForgettingMonitor:
    """Watches ``model`` on ``forget`` (and on held-out samples of its classes at sample level)."""

    def __init__(
        self,
        model: nn.Module,
        forget: LabeledTensors,
        heldout: LabeledTensors | None,
        retain_labels: torch.Tensor,
        settings: MonitorSettings,
        seed: int,
    ) -> None:
        self.model = model
        self.settings = settings
        forget_classes = torch.unique(forget.labels).cpu().numpy()
        kept = torch.unique(retain_labels).cpu().numpy()
        self.class_level = bool(np.any(~np.isin(forget_classes, kept)))
        self.forget = seeded_subset(forget, np.arange(len(forget.labels)), settings.max_samples, seed)
        self.heldout: LabeledTensors | None = None
        if heldout is not None and not self.class_level:
            same_classes = np.flatnonzero(np.isin(heldout.labels.cpu().numpy(), forget_classes))
            if len(same_classes) >= 2:
                self.heldout = seeded_subset(heldout, same_classes, settings.max_samples, seed)
        self.checks = 0
        self.last_value = float("nan")
        self.forgotten = False

    @property
    def active(self) -> bool:
        """Whether the monitor can decide: class-level always; sample-level only with held-out samples."""
        return self.class_level or self.heldout is not None

    def check(self) -> bool:
        """Measure now; True once the forget batch looks forgotten (the loop then stops)."""
        self.checks += 1
        forget_accuracy = accuracy(self.model, self.forget, self.settings.batch_size)
        if self.class_level:
            self.last_value = forget_accuracy
            self.forgotten = forget_accuracy <= self.settings.max_class_accuracy
        else:
            assert self.heldout is not None
            self.last_value = forget_accuracy - accuracy(self.model, self.heldout, self.settings.batch_size)
            self.forgotten = self.last_value <= self.settings.max_excess
        return self.forgotten

    def history(self, step: int, stopped_at: int | None) -> dict[str, float]:
        """``monitor_value``: forget accuracy (class level) or its excess over held-out (sample level), last check."""
        return {
            "monitor_class_level": float(self.class_level),
            "monitor_checks": float(self.checks),
            "monitor_value": self.last_value,
            "monitor_forgotten": float(self.forgotten),
            "monitor_stopped_step": float(stopped_at if stopped_at is not None else step),
        }
