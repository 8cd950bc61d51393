"""Fine-tuning on D_r (FT), and the supervised building blocks the other baselines share.

FT is the simplest peer baseline (Golatkar et al. 2020; the SalUn protocol's "FT"): continue training the
original model on the retain set only and rely on catastrophic forgetting. The helpers below (a working copy,
the optimiser, progress reporting) and the ``OptimisedRunner`` base (seeding, the timed run, one optimiser pass
over mini-batches) are shared by every gradient-based peer, so that every baseline runs the same loop with the
same optimiser semantics and its reported seconds cover the same kind of work.

Choices where the peers' recipe is silent or does not fit the harness:
    * BatchNorm layers train as usual (``model.train()``), as in the SalUn code base.
    * Weight decay defaults to 0, like MixUnlearn's default, so no baseline gets a regulariser the others lack.
    * Adam is the default optimiser because the small-CNN recipes (params.yaml) train with Adam; ``sgd`` with
      momentum reproduces the SalUn code base's optimiser for ResNet-18.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from components.models.backbones import Backbone
from components.runtime import Callback, Stopwatch, autocast, emit, minibatches, seeded_generator
from components.training import make_optimizer
from components.unlearning.base import MethodConfig, UnlearningResult, UnlearningTask, register_runner

# A hook run after every optimiser step (SalUn restores its frozen weights there).
AfterStep = Callable[[], None]
# A term added to the loss at every step (l1-sparse's decaying penalty); receives the step index.
Regulariser = Callable[[int], torch.Tensor]


class OptimisedConfig(MethodConfig):
    """Optimiser settings shared by the gradient-based baselines; each method subclass documents its defaults.

    Attributes:
        epochs: passes over the method's loop data (see each method).
        batch_size: mini-batch size of every loader.
        optimizer: ``adam`` (the small-CNN recipes) or ``sgd`` with ``momentum`` (the SalUn code base).
        lr: learning rate.
        weight_decay: L2 weight decay of the optimiser; 0 like MixUnlearn's default.
        momentum: SGD momentum (ignored by Adam); 0.9 as in the SalUn code base.
        amp: bfloat16 autocast on CUDA; ignored on CPU.
    """

    epochs: int = Field(5, ge=1)
    batch_size: int = Field(32, ge=1)
    optimizer: Literal["adam", "sgd"] = "adam"
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    amp: bool = True


class FinetuneConfig(OptimisedConfig):
    """Settings of FT: ``epochs`` passes over D_r with cross-entropy.

    Defaults: 5 epochs (the SalUn protocol uses 10 of 182 training epochs; 5 of the digits recipe's 30 keeps FT
    at about a sixth of Retrain's cost), Adam lr 1e-3 (the digits training lr, so FT moves as fast as training
    did), batch 32 (the training batch), weight decay 0.
    """


class Progress:
    """Counts optimiser steps and reports them to the callbacks (``unlearn_start`` / ``unlearn_step``)."""

    def __init__(self, callbacks: Sequence[Callback], total_steps: int) -> None:
        self.callbacks = callbacks
        self.steps = 0
        self.last_loss: torch.Tensor | None = None
        emit(callbacks, "unlearn_start", {"total_steps": float(total_steps)}, 0)

    def step(self, loss: torch.Tensor) -> None:
        self.steps += 1
        self.last_loss = loss.detach()
        if self.callbacks:  # .item() synchronises the GPU: only pay for it when someone listens
            emit(self.callbacks, "unlearn_step", {"loss": loss.item()}, self.steps)

    def history(self) -> dict[str, float]:
        return {} if self.last_loss is None else {"loss": float(self.last_loss)}


def num_batches(n: int, batch_size: int) -> int:
    """Batches of one pass over ``n`` samples (the last one may be short)."""
    return -(-n // batch_size)


def working_copy(task: UnlearningTask) -> Backbone:
    """A trainable deep copy of the original model on the task's device; ``task.original`` is never touched."""
    model: Backbone = copy.deepcopy(task.original).to(task.device)
    for parameter in model.parameters():
        parameter.requires_grad_(True)
    return model.train()


def build_optimizer(model: torch.nn.Module, config: OptimisedConfig, lr: float | None = None) -> torch.optim.Optimizer:
    """The configured optimiser over all of ``model``'s parameters (``lr`` overrides ``config.lr``)."""
    return make_optimizer(
        list(model.parameters()),
        config.optimizer,
        config.lr if lr is None else lr,
        config.weight_decay,
        config.momentum,
    )


def optimizer_step(optimizer: torch.optim.Optimizer, loss: torch.Tensor, after_step: AfterStep | None = None) -> None:
    """Zero the gradients, back-propagate ``loss``, step, then run ``after_step``."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    if after_step is not None:
        after_step()


class OptimisedRunner(ABC):
    """Shared state and run loop of the optimiser-based peers: the task, seeded randomness, a working copy of f_D
    and its optimiser.

    A subclass says what one run trains (``train``) and how many optimiser steps that takes (``total_steps``, for
    the progress callbacks). ``run`` is the same for every peer so that their reported seconds time the same kind
    of work and every result comes back in eval mode.
    """

    def __init__(self, config: OptimisedConfig, task: UnlearningTask) -> None:
        self.config = config
        self.task = task
        torch.manual_seed(task.seed)
        self.generator = seeded_generator(task.seed)
        self.model = working_copy(task)
        self.optimizer = build_optimizer(self.model, config)

    @abstractmethod
    def total_steps(self) -> int:
        """Optimiser steps of one run, announced to the callbacks before it starts."""

    @abstractmethod
    def train(self, progress: Progress) -> None:
        """The timed unlearning work; every optimiser step is reported to ``progress``."""

    def extra_history(self) -> dict[str, float]:
        """Diagnostics added to the result's history; read after the timed work so they never count as its cost."""
        return {}

    def minibatch_pass(
        self,
        n: int,
        loss: Callable[[torch.Tensor], torch.Tensor],
        progress: Progress,
        after_step: AfterStep | None = None,
    ) -> None:
        """One shuffled pass over ``range(n)``: an optimiser step on ``loss(index)`` for each mini-batch index.

        The batch order is drawn from ``self.generator`` before ``loss`` runs, so a ``loss`` that draws from the
        same generator (random labels, a paired retain stream) always sees it in the same state.
        """
        self.model.train()
        for index in minibatches(n, self.config.batch_size, self.generator):
            value = loss(index.to(self.task.device))
            optimizer_step(self.optimizer, value, after_step)
            progress.step(value)

    def cross_entropy_pass(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        progress: Progress,
        regulariser: Regulariser | None = None,
        after_step: AfterStep | None = None,
    ) -> None:
        """One shuffled pass of cross-entropy descent over ``(images, labels)`` (plus ``regulariser(step)``)."""

        def loss(index: torch.Tensor) -> torch.Tensor:
            with autocast(images.device, self.config.amp):
                logits = self.model(images[index])
            value = F.cross_entropy(logits.float(), labels[index])
            if regulariser is not None:
                value = value + regulariser(progress.steps)
            return value

        self.minibatch_pass(len(images), loss, progress, after_step)

    def run(self, callbacks: Sequence[Callback] = ()) -> UnlearningResult:
        progress = Progress(callbacks, self.total_steps())
        stopwatch = Stopwatch(self.task.device)
        with stopwatch.measure():
            self.train(progress)
        self.model.eval()
        history = {**progress.history(), **self.extra_history()}
        return UnlearningResult(model=self.model, seconds=stopwatch.seconds, history=history)


class Finetune(OptimisedRunner):
    """FT: ``epochs`` passes of cross-entropy over D_r, starting from the original weights."""

    def regulariser(self) -> Regulariser | None:
        """An extra loss term by step; l1-sparse adds its decaying penalty here."""
        return None

    def total_steps(self) -> int:
        return self.config.epochs * num_batches(len(self.task.retain), self.config.batch_size)

    def train(self, progress: Progress) -> None:
        retain = self.task.retain
        for _ in range(self.config.epochs):
            self.cross_entropy_pass(retain.images, retain.labels, progress, regulariser=self.regulariser())


register_runner("ft", FinetuneConfig, "Fine-tune on D_r (FT)", Finetune)
