"""Fine-tuning on D_r (FT), and the supervised building blocks the other baselines share.

FT is the simplest peer baseline (Golatkar et al. 2020; the SalUn protocol's "FT"): continue training the
original model on the retain set only and rely on catastrophic forgetting. The helpers below (a working copy,
the optimiser, progress reporting, one cross-entropy pass) are reused by RL, SalUn, l1-sparse, Boundary Shrink
and UNSIR so that every baseline runs the same loop with the same optimiser semantics.

Choices where the peers' recipe is silent or does not fit the harness:
    * BatchNorm layers train as usual (``model.train()``), as in the SalUn code base.
    * Weight decay defaults to 0, like MixUnlearn's default, so no baseline gets a regulariser the others lack.
    * Adam is the default optimiser because the small-CNN recipes (params.yaml) train with Adam; ``sgd`` with
      momentum reproduces the SalUn code base's optimiser for ResNet-18.
"""

from __future__ import annotations

import copy
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


def cross_entropy_pass(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    images: torch.Tensor,
    labels: torch.Tensor,
    config: OptimisedConfig,
    generator: torch.Generator,
    progress: Progress,
    regulariser: Regulariser | None = None,
    after_step: AfterStep | None = None,
    batch_size: int | None = None,
) -> None:
    """One shuffled pass of cross-entropy descent over ``(images, labels)`` (plus ``regulariser(step)``)."""
    model.train()
    for index in minibatches(len(images), batch_size or config.batch_size, generator):
        index = index.to(images.device)
        with autocast(images.device, config.amp):
            logits = model(images[index])
        loss = F.cross_entropy(logits.float(), labels[index])
        if regulariser is not None:
            loss = loss + regulariser(progress.steps)
        optimizer_step(optimizer, loss, after_step)
        progress.step(loss)


class OptimisedRunner:
    """Shared state of the optimiser-based peers: the task, seeded randomness, a working copy of f_D and its
    optimiser."""

    def __init__(self, config: OptimisedConfig, task: UnlearningTask) -> None:
        self.config = config
        self.task = task
        torch.manual_seed(task.seed)
        self.generator = seeded_generator(task.seed)
        self.model = working_copy(task)
        self.optimizer = build_optimizer(self.model, config)


class Finetune(OptimisedRunner):
    """FT: ``epochs`` passes of cross-entropy over D_r, starting from the original weights."""

    def regulariser(self) -> Regulariser | None:
        """An extra loss term by step; l1-sparse adds its decaying penalty here."""
        return None

    def run(self, callbacks: Sequence[Callback] = ()) -> UnlearningResult:
        config, task = self.config, self.task
        progress = Progress(callbacks, config.epochs * num_batches(len(task.retain), config.batch_size))
        stopwatch = Stopwatch(task.device)
        with stopwatch.measure():
            for _ in range(config.epochs):
                cross_entropy_pass(
                    self.model,
                    self.optimizer,
                    task.retain.images,
                    task.retain.labels,
                    config,
                    self.generator,
                    progress,
                    regulariser=self.regulariser(),
                )
        self.model.eval()
        return UnlearningResult(model=self.model, seconds=stopwatch.seconds, history=progress.history())


register_runner("ft", FinetuneConfig, "Fine-tune on D_r (FT)", Finetune)
