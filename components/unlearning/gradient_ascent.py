"""Gradient ascent on D_f (GA, Thudi et al. 2022; the SalUn protocol's "GA") and NegGrad+ (Kurmanji et al. 2023).

GA maximises the cross-entropy of the forget set. NegGrad+ keeps the model useful by descending on D_r at the
same time: ``L = alpha * CE(D_r batch) - (1 - alpha) * CE(D_f batch)``.

Choices where the papers are silent:
    * An epoch is one pass over D_f for both methods. NegGrad+ zips each forget batch with a retain batch from an
      endless reshuffled retain stream (Kurmanji et al.'s code zips the two loaders, which stops at the shorter,
      usually D_f), so both methods see the same forget batches per epoch and NegGrad+ costs twice GA.
    * The ascent is unbounded, as in both papers; ``epochs`` and ``lr`` are the brakes a grid tunes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field

from components.runtime import autocast, endless_minibatches
from components.unlearning.base import UnlearningTask, register_runner
from components.unlearning.finetune import OptimisedConfig, OptimisedRunner, Progress, num_batches


class GradientAscentConfig(OptimisedConfig):
    """Settings of GA: ``epochs`` passes over D_f maximising cross-entropy.

    Defaults: 5 epochs (the SalUn protocol's GA default), Adam lr 2e-5, batch 32, weight decay 0. Ascent with Adam
    takes sign-like steps of size lr and is unbounded: on digits, lr 1e-4 erases a forgotten class but collapses
    the model on a data-level forget set (retain accuracy 9%), while 2e-5 keeps the data-level model within 2
    points of Retrain and barely forgets a class. The default is the safe end; the grid covers the other.
    """

    epochs: int = Field(5, ge=1)
    lr: float = Field(2e-5, gt=0)


class NegGradPlusConfig(OptimisedConfig):
    """Settings of NegGrad+: ``epochs`` passes over D_f, each forget batch paired with a retain batch.

    Defaults: alpha 0.99 (weight of the retain descent; Kurmanji et al. tune it in [0.9, 0.999], larger values
    forget less), 5 epochs, Adam lr 1e-3 (the digits training lr; the retain term keeps it stable), batch 32,
    weight decay 0. On digits this is within 2 points of Retrain for both class- and data-level forgetting,
    while alpha 0.95 costs 10 points of retain accuracy on a forgotten class and lr 1e-4 hardly forgets.
    """

    alpha: float = Field(0.99, ge=0, le=1)
    epochs: int = Field(5, ge=1)
    lr: float = Field(1e-3, gt=0)


class GradientAscent(OptimisedRunner):
    """GA, and NegGrad+ when ``retain_weight`` (alpha) is given."""

    def __init__(self, config: OptimisedConfig, task: UnlearningTask, retain_weight: float | None = None) -> None:
        super().__init__(config, task)
        self.retain_weight = retain_weight

    def loss(self, forget_index: torch.Tensor, retain_index: torch.Tensor | None) -> torch.Tensor:
        """``-CE(D_f batch)``, or ``alpha * CE(D_r batch) - (1 - alpha) * CE(D_f batch)`` for NegGrad+."""
        task, device = self.task, self.task.device
        with autocast(device, self.config.amp):
            forget_logits = self.model(task.forget.images[forget_index])
        forget_loss = F.cross_entropy(forget_logits.float(), task.forget.labels[forget_index])
        if self.retain_weight is None or retain_index is None:
            return -forget_loss
        with autocast(device, self.config.amp):
            retain_logits = self.model(task.retain.images[retain_index])
        retain_loss = F.cross_entropy(retain_logits.float(), task.retain.labels[retain_index])
        return self.retain_weight * retain_loss - (1.0 - self.retain_weight) * forget_loss

    def total_steps(self) -> int:
        return self.config.epochs * num_batches(len(self.task.forget), self.config.batch_size)

    def train(self, progress: Progress) -> None:
        config, task = self.config, self.task
        # One stream for the whole run, so NegGrad+'s retain batches carry on across epochs instead of restarting.
        retain_stream = (
            endless_minibatches(len(task.retain), config.batch_size, self.generator)
            if self.retain_weight is not None
            else None
        )

        def loss(forget_index: torch.Tensor) -> torch.Tensor:
            retain_index = next(retain_stream).to(task.device) if retain_stream is not None else None
            return self.loss(forget_index, retain_index)

        for _ in range(config.epochs):
            self.minibatch_pass(len(task.forget), loss, progress)


register_runner("ga", GradientAscentConfig, "Gradient ascent on D_f (GA)", GradientAscent)


register_runner(
    "neggrad_plus",
    NegGradPlusConfig,
    "NegGrad+: descent on D_r with ascent on D_f",
    lambda config, task: GradientAscent(config, task, retain_weight=config.alpha),
)
