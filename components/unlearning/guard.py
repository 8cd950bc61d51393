"""A retained-accuracy guard for an unlearning loop: utility never collapses below a bound of the original's.

The loop calls ``check()`` at intervals. The guard measures the model's accuracy on held-out samples of the *kept*
classes (the validation split, never the test split) and compares it with the original model's accuracy on the
same samples. A check passes when the drop is at most ``max_drop`` percentage points; the state that passed is
remembered. A failed check restores the last state that passed (model and optimizer), lowers the learning rate by
``backoff`` and lets the loop go on; after ``max_backoffs`` back-offs it tells the loop to stop.

By construction the model the loop returns after ``finish()`` is either the original (accuracy = baseline) or a
state that passed a check, so its accuracy on these samples is at least ``baseline - max_drop``. The price is that
a guard can stop forgetting early; the loop reports that in its history (``guard_*`` keys).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from components.unlearning.base import LabeledTensors

Verdict = Literal["pass", "backoff", "stop"]


@dataclass(frozen=True)
class GuardSettings:
    """How strict the guard is; see the module docstring."""

    max_drop: float = 3.0
    backoff: float = 0.5
    max_backoffs: int = 3
    max_samples: int = 2000
    batch_size: int = 1024


def seeded_subset(data: LabeledTensors, positions: np.ndarray, max_samples: int, seed: int) -> LabeledTensors:
    """``data`` at ``positions``, or at a seeded draw of ``max_samples`` of them (kept in order) when there are more."""
    if len(positions) > max_samples:
        positions = np.sort(np.random.default_rng(seed).choice(positions, size=max_samples, replace=False))
    index = torch.as_tensor(positions, device=data.labels.device)
    return LabeledTensors(images=data.images[index], labels=data.labels[index])


def kept_class_heldout(
    heldout: LabeledTensors, retain_labels: torch.Tensor, max_samples: int, seed: int
) -> LabeledTensors | None:
    """The held-out samples whose class still has retained samples (class-level forgetting drops its classes), a
    seeded subset of at most ``max_samples``; None when fewer than 2 remain."""
    kept = torch.unique(retain_labels).to(heldout.labels.device)
    positions = torch.nonzero(torch.isin(heldout.labels, kept)).flatten().cpu().numpy()
    if len(positions) < 2:
        return None
    return seeded_subset(heldout, positions, max_samples, seed)


@torch.no_grad()
def accuracy(model: nn.Module, data: LabeledTensors, batch_size: int = 1024) -> float:
    """Percent of ``data`` the model classifies correctly (eval mode; the caller's mode is restored)."""
    was_training = model.training
    model.eval()
    correct = 0
    for start in range(0, len(data.labels), batch_size):
        logits = model(data.images[start : start + batch_size])
        correct += int((logits.argmax(dim=1) == data.labels[start : start + batch_size]).sum())
    model.train(was_training)
    return 100.0 * correct / len(data.labels)


class RetainedAccuracyGuard:
    """Watches ``model`` (trained by ``optimizer``) on ``heldout``; restores and backs off on a drop."""

    def __init__(
        self, model: nn.Module, optimizer: torch.optim.Optimizer, heldout: LabeledTensors, settings: GuardSettings
    ) -> None:
        self.model = model
        self.optimizer = optimizer
        self.heldout = heldout
        self.settings = settings
        self.baseline = accuracy(model, heldout, settings.batch_size)
        self.last_accuracy = self.baseline
        self.backoffs = 0
        self.checks = 0
        self.stopped = False
        self._initial_lr = [group["lr"] for group in optimizer.param_groups]
        self._good = self._snapshot()

    @property
    def floor(self) -> float:
        return self.baseline - self.settings.max_drop

    def _snapshot(self) -> dict[str, Any]:
        return {
            "model": copy.deepcopy(self.model.state_dict()),
            "optimizer": copy.deepcopy(self.optimizer.state_dict()),
        }

    def check(self) -> Verdict:
        """Measure now: remember a passing state; otherwise restore the last one and back off (or stop)."""
        self.checks += 1
        current = accuracy(self.model, self.heldout, self.settings.batch_size)
        if current >= self.floor:
            self.last_accuracy = current
            self._good = self._snapshot()
            return "pass"
        self.model.load_state_dict(self._good["model"])
        self.optimizer.load_state_dict(self._good["optimizer"])
        if self.backoffs >= self.settings.max_backoffs:
            self.stopped = True
            return "stop"
        self.backoffs += 1
        # from the initial lr, not the restored state's: two failures in a row must lower it twice
        scale = self.settings.backoff**self.backoffs
        for group, initial in zip(self.optimizer.param_groups, self._initial_lr, strict=True):
            group["lr"] = initial * scale
        return "backoff"

    def finish(self) -> None:
        """The final check: the loop returns the state this leaves, which passed a check or is the original."""
        if not self.stopped:
            self.check()

    def history(self) -> dict[str, float]:
        return {
            "guard_baseline": self.baseline,
            "guard_accuracy": self.last_accuracy,
            "guard_backoffs": float(self.backoffs),
            "guard_checks": float(self.checks),
            "guard_stopped": float(self.stopped),
        }
