"""SalUn (Fan et al., ICLR 2024): random labelling restricted to the weights most salient for the forget set.

Saliency is ``|sum over D_f of grad CE|`` at the original weights theta_0 (the sign of the loss does not matter under
the absolute value). All parameters are ranked together and the top ``mask_ratio`` stay trainable; RL (see
``random_label.py``) then runs with the others frozen.

Frozen weights stay *exactly* at theta_0. Zeroing their gradients (the SalUn code) is not enough: weight decay and
momentum would still move them (OPTML-Group/Unlearn-Saliency issue #32, fixed by PR #33). So after every optimiser
step the frozen entries are copied back from theta_0 and their optimiser state entries (SGD momentum, Adam moments)
are zeroed; their gradients are masked as well, as in the SalUn code.

Choices where the paper is silent:
    * The saliency gradient is taken in eval mode (BatchNorm running statistics) with per-sample losses summed,
      so every forget sample weighs the same whatever the batch it falls in.
    * Ties at the threshold are broken by a stable sort over the parameters in registration order, so exactly
      ``round(mask_ratio * n)`` weights are trainable.
    * The reported seconds include computing the mask (it needs D_f, so it is part of the unlearning work); the
      mask alone is ``history["mask_seconds"]``. The SalUn paper reports the mask as a separate step.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from components.runtime import Callback, Stopwatch, autocast, minibatches
from components.unlearning.base import UnlearningResult, UnlearningTask, register_runner
from components.unlearning.finetune import Progress
from components.unlearning.random_label import RandomLabel, RandomLabelConfig


class SalUnConfig(RandomLabelConfig):
    """Settings of SalUn: the saliency mask, then RL on the trainable weights.

    Defaults: mask_ratio 0.5 (the released ``with_0.5.pt`` mask), 3 epochs and Adam lr 1e-4 (RL's defaults, so
    SalUn and RL differ only by the mask), batch 32, weight decay 0.
    """

    mask_ratio: float = Field(0.5, gt=0, le=1)


def saliency(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
    """``|sum_i grad CE(model(x_i), y_i)|`` over the given set, one tensor per parameter (eval mode)."""
    was_training = model.training
    model.eval()
    parameters = list(model.parameters())
    totals = [torch.zeros_like(parameter) for parameter in parameters]
    for index in minibatches(len(images), batch_size, torch.Generator(), shuffle=False):
        index = index.to(images.device)
        loss = F.cross_entropy(model(images[index]).float(), labels[index], reduction="sum")
        gradients = torch.autograd.grad(loss, parameters, allow_unused=True)
        for total, gradient in zip(totals, gradients, strict=True):
            if gradient is not None:
                total.add_(gradient)
    model.train(was_training)
    return [total.abs() for total in totals]


def top_fraction_mask(scores: Sequence[torch.Tensor], ratio: float) -> list[torch.Tensor]:
    """Boolean masks (True = trainable) keeping the globally top ``round(ratio * n)`` scores."""
    flat = torch.cat([score.flatten() for score in scores])
    keep = round(ratio * flat.numel())
    chosen = torch.zeros(flat.numel(), dtype=torch.bool, device=flat.device)
    chosen[torch.argsort(flat, descending=True, stable=True)[:keep]] = True
    masks, offset = [], 0
    for score in scores:
        masks.append(chosen[offset : offset + score.numel()].view_as(score))
        offset += score.numel()
    return masks


class FrozenWeights:
    """Keeps the masked-out entries of each parameter at theta_0, their gradients and optimiser state at zero."""

    def __init__(self, model: nn.Module, trainable: Sequence[torch.Tensor], optimizer: torch.optim.Optimizer) -> None:
        self.parameters = list(model.parameters())
        self.frozen = [~mask for mask in trainable]
        self.theta0 = [parameter.detach().clone() for parameter in self.parameters]
        self.optimizer = optimizer
        self.handles = [
            parameter.register_hook(lambda grad, keep=mask: grad * keep.to(grad.dtype))
            for parameter, mask in zip(self.parameters, trainable, strict=True)
        ]

    @torch.no_grad()
    def restore(self) -> None:
        """Copy theta_0 into the frozen entries and zero their optimiser state (momentum, Adam moments)."""
        for parameter, frozen, theta0 in zip(self.parameters, self.frozen, self.theta0, strict=True):
            parameter.copy_(torch.where(frozen, theta0, parameter))
            for value in self.optimizer.state.get(parameter, {}).values():
                if isinstance(value, torch.Tensor) and value.shape == parameter.shape:
                    value.masked_fill_(frozen, 0)

    def release(self) -> None:
        """Remove the gradient hooks so that the returned model trains normally."""
        for handle in self.handles:
            handle.remove()


class SalUn:
    """The SalUn state: RL whose optimiser steps are followed by ``FrozenWeights.restore``."""

    def __init__(self, config: SalUnConfig, task: UnlearningTask) -> None:
        self.config = config
        self.task = task
        self.rl = RandomLabel(config, task)
        self.model = self.rl.model
        self.trainable: list[torch.Tensor] = []

    def compute_mask(self) -> list[torch.Tensor]:
        task = self.task
        with autocast(task.device, self.config.amp):
            scores = saliency(self.model, task.forget.images, task.forget.labels, self.config.batch_size)
        return top_fraction_mask(scores, self.config.mask_ratio)

    def run(self, callbacks: Sequence[Callback] = ()) -> UnlearningResult:
        progress = Progress(callbacks, self.rl.total_steps())
        stopwatch = Stopwatch(self.task.device)
        with stopwatch.measure():
            self.trainable = self.compute_mask()
        mask_seconds = stopwatch.seconds
        frozen = FrozenWeights(self.model, self.trainable, self.rl.optimizer)
        with stopwatch.measure():
            self.rl.train(progress, after_step=frozen.restore)
        frozen.release()
        self.model.eval()
        history = {**progress.history(), "mask_seconds": mask_seconds}
        return UnlearningResult(model=self.model, seconds=stopwatch.seconds, history=history)


register_runner("salun", SalUnConfig, "SalUn: random labels on the forget-salient weights only", SalUn)
