"""Bad Teacher (Chundawat et al., "Can Bad Teaching Induce Forgetting?", AAAI 2023).

The student starts as a copy of the original model. Two frozen teachers: the competent one is the original model,
the incompetent one a randomly initialised model of the same architecture. On a set made of D_f plus a random
subset of D_r, the student is distilled toward the incompetent teacher on forget samples and toward the competent
teacher on retain samples: ``KL(p_teacher || p_student)`` with both softened by the temperature T.

Choices where the paper is silent or the code differs:
    * The KL is averaged per sample (``batchmean``); the authors' code averages over samples *and* classes, which
      only rescales the loss by 1/K.
    * The incompetent teacher is built under ``torch.manual_seed(task.seed + INCOMPETENT_SEED_OFFSET)``, so it is
      reproducible but not the initialisation Retrain starts from (Retrain seeds with ``task.seed``).
    * The retain subset is drawn once per run, without replacement, from the task seed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field

from components.models.backbones import Backbone
from components.runtime import autocast
from components.unlearning.base import UnlearningTask, frozen_copy, register_runner
from components.unlearning.finetune import OptimisedConfig, OptimisedRunner, Progress, num_batches

INCOMPETENT_SEED_OFFSET = 7919


class BadTeacherConfig(OptimisedConfig):
    """Settings of Bad Teacher.

    Defaults: retain_fraction 0.3 (the authors' 30% retain subset), temperature 1.0 (the authors' KL_temperature),
    1 epoch and Adam lr 1e-4 (the authors' values), batch 32 (the authors' 256 would leave a handful of steps on a
    1k-sample set), weight decay 0.
    """

    retain_fraction: float = Field(0.3, ge=0, le=1)
    temperature: float = Field(1.0, gt=0)
    epochs: int = Field(1, ge=1)
    lr: float = Field(1e-4, gt=0)


def retain_subset(n: int, fraction: float, generator: torch.Generator) -> torch.Tensor:
    """``round(fraction * n)`` indices of ``range(n)`` drawn without replacement."""
    return torch.randperm(n, generator=generator)[: round(fraction * n)]


class BadTeacher(OptimisedRunner):
    """The Bad Teacher state: the student (``model``), both frozen teachers and the forget + retain-subset set."""

    config: BadTeacherConfig

    def __init__(self, config: BadTeacherConfig, task: UnlearningTask) -> None:
        # Its own seed keeps it apart from Retrain's initialisation; the base then reseeds with task.seed as for
        # every peer, so the rest of the run draws exactly what it would without this teacher.
        torch.manual_seed(task.seed + INCOMPETENT_SEED_OFFSET)
        self.incompetent: Backbone = frozen_copy(task.build_model().to(task.device))  # type: ignore[assignment]
        super().__init__(config, task)
        self.competent: Backbone = frozen_copy(task.original)  # type: ignore[assignment]
        subset = retain_subset(len(task.retain), config.retain_fraction, self.generator).to(task.device)
        self.images = torch.cat([task.forget.images, task.retain.images[subset]])
        self.is_forget = torch.cat(
            [
                torch.ones(len(task.forget), dtype=torch.bool, device=task.device),
                torch.zeros(len(subset), dtype=torch.bool, device=task.device),
            ]
        )

    def loss(self, index: torch.Tensor) -> torch.Tensor:
        """KL of the student from the incompetent teacher on forget rows and the competent one on retain rows."""
        images, temperature = self.images[index], self.config.temperature
        with autocast(images.device, self.config.amp):
            student_logits = self.model(images)
            with torch.no_grad():
                competent = self.competent(images)
                incompetent = self.incompetent(images)
        teacher_logits = torch.where(self.is_forget[index].unsqueeze(1), incompetent, competent).float()
        log_teacher = F.log_softmax(teacher_logits / temperature, dim=1)
        log_student = F.log_softmax(student_logits.float() / temperature, dim=1)
        return F.kl_div(log_student, log_teacher, reduction="batchmean", log_target=True)

    def total_steps(self) -> int:
        return self.config.epochs * num_batches(len(self.images), self.config.batch_size)

    def train(self, progress: Progress) -> None:
        for _ in range(self.config.epochs):
            self.minibatch_pass(len(self.images), self.loss, progress)


register_runner(
    "bad_teacher", BadTeacherConfig, "Bad Teacher: distil a random teacher on D_f, the original on D_r", BadTeacher
)
