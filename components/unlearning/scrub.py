"""SCRUB (Kurmanji et al., "Towards Unbounded Machine Unlearning", NeurIPS 2023).

The student starts as a copy of the original model, which stays frozen as the teacher. Each epoch first runs a
*max* pass over D_f (only during the first ``max_steps`` epochs) that ascends ``KL(teacher || student)``, then a
*min* pass over D_r that descends ``alpha * KL(teacher || student) + gamma * CE``. The KL is the distillation
divergence at temperature T, ``T^2 * KL(softmax(t / T) || softmax(s / T))`` averaged over the batch.

Choices where the paper is silent or the code differs:
    * No learning-rate decay (the SCRUB code decays at fixed epochs; with a handful of epochs it hardly matters)
      and no SWA smoothing.
    * Both passes share one optimiser, as in the SCRUB code.
    * The student is in train mode and the teacher in eval mode. For a model without BatchNorm or dropout the
      student equals the teacher at the start, where the KL gradient is exactly zero, so the first max pass
      barely moves it; the max passes that follow a min pass do the forgetting.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field

from components.models.backbones import Backbone
from components.runtime import autocast, minibatches
from components.unlearning.base import UnlearningTask, frozen_copy, register_runner
from components.unlearning.finetune import OptimisedConfig, OptimisedRunner, Progress, num_batches


class ScrubConfig(OptimisedConfig):
    """Settings of SCRUB.

    Defaults (the SCRUB code's small-scale values: ``sgda_epochs`` 3, ``msteps`` 2, ``alpha`` 0.001,
    ``gamma`` 0.99, ``kd_T`` 4):
        epochs: 3 min passes over D_r.
        max_steps: 2 max passes over D_f, in the first two epochs.
        alpha: 0.001, weight of the retain KL (0.5, also used in the literature, keeps the student so close to
            the teacher that a forgotten digits class stays at 68% accuracy; 0.001 takes it to 0%).
        gamma: 0.99, weight of the retain cross-entropy.
        temperature: 4.0, the distillation temperature.
        lr: Adam 1e-4 (the code's SGD 5e-4 with momentum is for ResNet-18; Adam 5e-4 costs 15 points of retain
            accuracy on a digits data-level forget set, 1e-4 stays within a point of Retrain).
        batch_size: 32; weight_decay: 0.
    """

    epochs: int = Field(3, ge=1)
    max_steps: int = Field(2, ge=0)
    alpha: float = Field(0.001, ge=0)
    gamma: float = Field(0.99, ge=0)
    temperature: float = Field(4.0, gt=0)
    lr: float = Field(1e-4, gt=0)


def distillation_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """``T^2 * KL(softmax(teacher / T) || softmax(student / T))``, averaged over the batch."""
    log_student = F.log_softmax(student_logits.float() / temperature, dim=1)
    log_teacher = F.log_softmax(teacher_logits.float() / temperature, dim=1)
    return F.kl_div(log_student, log_teacher, reduction="batchmean", log_target=True) * temperature**2


class Scrub(OptimisedRunner):
    """The SCRUB state (``model`` is the student); ``run`` alternates the passes, tests call ``max_pass``/``min_pass``
    directly."""

    config: ScrubConfig

    def __init__(self, config: ScrubConfig, task: UnlearningTask) -> None:
        super().__init__(config, task)
        self.teacher: Backbone = frozen_copy(task.original)  # type: ignore[assignment]

    def divergence(self, images: torch.Tensor) -> torch.Tensor:
        """The distillation KL of the student from the teacher on ``images`` (student gradients flow)."""
        with autocast(images.device, self.config.amp):
            student_logits = self.model(images)
            with torch.no_grad():
                teacher_logits = self.teacher(images)
        return distillation_kl(student_logits, teacher_logits, self.config.temperature)

    def max_pass(self, progress: Progress) -> None:
        """One pass over D_f ascending the KL."""
        forget = self.task.forget
        self.minibatch_pass(len(forget), lambda index: -self.divergence(forget.images[index]), progress)

    def min_pass(self, progress: Progress) -> None:
        """One pass over D_r descending ``alpha * KL + gamma * CE``."""
        config, task = self.config, self.task

        def loss(index: torch.Tensor) -> torch.Tensor:
            images = task.retain.images[index]
            with autocast(task.device, config.amp):
                student_logits = self.model(images)
                with torch.no_grad():
                    teacher_logits = self.teacher(images)
            value = config.alpha * distillation_kl(student_logits, teacher_logits, config.temperature)
            return value + config.gamma * F.cross_entropy(student_logits.float(), task.retain.labels[index])

        self.minibatch_pass(len(task.retain), loss, progress)

    @torch.no_grad()
    def forget_divergence(self) -> float:
        """Mean distillation KL over D_f (eval mode), a diagnostic of how far the max passes pushed."""
        task = self.task
        was_training = self.model.training
        self.model.eval()
        total = 0.0
        for index in minibatches(len(task.forget), 1024, self.generator, shuffle=False):
            total += self.divergence(task.forget.images[index.to(task.device)]).item() * len(index)
        self.model.train(was_training)
        return total / max(len(task.forget), 1)

    def total_steps(self) -> int:
        config, task = self.config, self.task
        max_epochs = min(config.max_steps, config.epochs)
        return max_epochs * num_batches(len(task.forget), config.batch_size) + config.epochs * num_batches(
            len(task.retain), config.batch_size
        )

    def train(self, progress: Progress) -> None:
        for epoch in range(self.config.epochs):
            if epoch < self.config.max_steps:
                self.max_pass(progress)
            self.min_pass(progress)


register_runner("scrub", ScrubConfig, "SCRUB: teacher-student max steps on D_f, min steps on D_r", Scrub)
