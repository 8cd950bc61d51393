"""One supervised training loop for the original model and the retrain-from-scratch reference.

The two differ only in their data (D versus D_r), which is what makes the retrained model a fair reference.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from components.runtime import Callback, Stopwatch, autocast, emit, minibatches, seeded_generator


class TrainConfig(BaseModel):
    """Recipe for training a classifier from scratch.

    Defaults are LAF's recipe for the original and retrained models (Adam, lr 1e-4, weight decay 1e-4,
    batch 32, 20 epochs, cross-entropy); params.yaml overrides them per dataset.

    Attributes:
        model: backbone name; None uses the dataset's default.
        augment: ``crop_flip`` = random 4-pixel-padded crop plus horizontal flip (CIFAR-style), applied on the
            device per batch; ``none`` for digit-like data where flips change the class.
        schedule: ``cosine`` decays the learning rate to zero over the run; ``constant`` keeps it.
        amp: bfloat16 autocast on CUDA; ignored on CPU.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str | None = None
    epochs: int = Field(20, ge=1)
    batch_size: int = Field(32, ge=1)
    optimizer: Literal["adam", "sgd"] = "adam"
    lr: float = Field(1e-4, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    schedule: Literal["constant", "cosine"] = "constant"
    augment: Literal["none", "crop_flip"] = "none"
    amp: bool = True


@dataclass(frozen=True)
class TrainResult:
    """The trained model, its training wall time (GPU-synchronised) and the per-epoch mean loss."""

    model: nn.Module
    seconds: float
    epoch_losses: tuple[float, ...]


def make_optimizer(
    params: Sequence[nn.Parameter] | list[nn.Parameter], name: str, lr: float, weight_decay: float, momentum: float
) -> torch.optim.Optimizer:
    """Adam or SGD with momentum, the two optimisers the recipes use."""
    optimizers = {
        "adam": lambda: torch.optim.Adam(params, lr=lr, weight_decay=weight_decay),
        "sgd": lambda: torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay),
    }
    return optimizers[name]()


def crop_flip(x: torch.Tensor, generator: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Per-sample random padded crop and horizontal flip of a batch, drawn from ``generator``."""
    n, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    offsets = torch.randint(0, 2 * pad + 1, (2, n), generator=generator).to(x.device)
    rows = (offsets[0].view(n, 1) + torch.arange(h, device=x.device)).view(n, 1, h, 1)
    cols = (offsets[1].view(n, 1) + torch.arange(w, device=x.device)).view(n, 1, 1, w)
    samples = torch.arange(n, device=x.device).view(n, 1, 1, 1)
    channels = torch.arange(c, device=x.device).view(1, c, 1, 1)
    out = padded[samples, channels, rows, cols]
    flip = torch.rand(n, generator=generator) < 0.5
    return torch.where(flip.to(x.device).view(n, 1, 1, 1), out.flip(3), out)


def train_classifier(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    config: TrainConfig,
    seed: int,
    callbacks: Sequence[Callback] = (),
) -> TrainResult:
    """Train ``model`` in place with cross-entropy on ``(images, labels)``, which sit on the model's device.

    Emits ``train_start`` ({"total_steps"}), ``train_step`` ({"loss"}) and ``train_epoch`` ({"loss", "epoch"}).
    """
    device = images.device
    model.to(device).train()
    generator = seeded_generator(seed)
    optimizer = make_optimizer(
        list(model.parameters()), config.optimizer, config.lr, config.weight_decay, config.momentum
    )
    steps_per_epoch = -(-len(images) // config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    scheduler = (
        torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
        if config.schedule == "cosine"
        else None
    )
    emit(callbacks, "train_start", {"total_steps": float(total_steps)}, 0)
    stopwatch = Stopwatch(device)
    epoch_losses: list[float] = []
    step = 0
    with stopwatch.measure():
        for epoch in range(config.epochs):
            loss_sum = torch.zeros((), device=device)
            for index in minibatches(len(images), config.batch_size, generator):
                index = index.to(device)
                x, y = images[index], labels[index]
                if config.augment == "crop_flip":
                    x = crop_flip(x, generator)
                with autocast(device, config.amp):
                    loss = F.cross_entropy(model(x), y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if scheduler is not None:
                    scheduler.step()
                loss_sum += loss.detach() * len(index)
                step += 1
                if callbacks:
                    emit(callbacks, "train_step", {"loss": loss.item()}, step)
            epoch_losses.append(float(loss_sum) / len(images))
            emit(callbacks, "train_epoch", {"loss": epoch_losses[-1], "epoch": float(epoch + 1)}, step)
    model.eval()
    return TrainResult(model=model, seconds=stopwatch.seconds, epoch_losses=tuple(epoch_losses))
