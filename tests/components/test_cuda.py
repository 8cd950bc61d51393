"""CUDA paths: training and MixUnlearn on a GPU. Marked ``gpu``; they skip with a reason on a machine without CUDA.

The CPU/CUDA comparison mirrors ``python -m components.bench.gpu``: the same MixUnlearn run (tiny task, identical
initial weights and random draws, fp32, deterministic kernels, no TF32) on both devices gives the same model.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator

import pytest
import torch

from components.models.backbones import build_backbone
from components.training import TrainConfig, train_classifier
from components.unlearning.base import LabeledTensors, UnlearningTask, build_unlearner
from tests.helpers.run_if import run_if

CUDA = torch.device("cuda")
SHAPE, CLASSES = (1, 8, 8), 10  # the tiny task of tests/conftest.py
MIXUNLEARN = {"epochs": 2, "batch_size": 16, "lr": 1e-3, "generator_interval": 2, "amp": False}


def _on(task: UnlearningTask, device: torch.device) -> UnlearningTask:
    """The same task with its model and tensors on ``device``."""

    def moved(data: LabeledTensors) -> LabeledTensors:
        return LabeledTensors(images=data.images.to(device), labels=data.labels.to(device))

    return dataclasses.replace(
        task, original=task.original.to(device), forget=moved(task.forget), retain=moved(task.retain)
    )


@pytest.fixture
def exact_cuda() -> Iterator[None]:
    """Deterministic cuDNN and no TF32 for the test, the previous settings afterwards."""
    saved = (
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
        torch.backends.cuda.matmul.allow_tf32,
        torch.backends.cudnn.allow_tf32,
    )
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    (
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
        torch.backends.cuda.matmul.allow_tf32,
        torch.backends.cudnn.allow_tf32,
    ) = saved


@run_if(min_gpus=1)
@pytest.mark.parametrize("amp", [False, True], ids=["fp32", "bf16"])
def test_small_cnn_trains_on_cuda_with_finite_losses(amp: bool) -> None:
    # given a SmallCNN and data on the GPU
    torch.manual_seed(0)
    model = build_backbone("small_cnn", SHAPE, CLASSES)
    images = torch.randn(64, *SHAPE, device=CUDA)
    labels = torch.randint(0, CLASSES, (64,), device=CUDA)
    # when
    result = train_classifier(model, images, labels, TrainConfig(epochs=2, batch_size=16, lr=1e-3, amp=amp), seed=0)
    # then the model trained where its data is, and every epoch's loss is a number
    assert len(result.epoch_losses) == 2
    assert all(math.isfinite(loss) for loss in result.epoch_losses)
    assert all(parameter.device.type == "cuda" for parameter in result.model.parameters())
    with torch.no_grad():
        assert torch.isfinite(result.model(images)).all()


@run_if(min_gpus=1)
def test_mixunlearn_on_cuda_matches_the_cpu_model(tiny_task: Callable[..., UnlearningTask], exact_cuda: None) -> None:
    # given the same tiny task on both devices
    unlearn = build_unlearner("mixunlearn", MIXUNLEARN)
    probe = torch.randn(64, *SHAPE, generator=torch.Generator().manual_seed(1))
    states, probabilities = {}, {}
    # when MixUnlearn runs on each
    for device in (torch.device("cpu"), CUDA):
        model = unlearn(_on(tiny_task(), device)).model
        assert next(model.parameters()).device.type == device.type
        with torch.no_grad():
            probabilities[device.type] = torch.softmax(model(probe.to(device)), dim=1).cpu()
        states[device.type] = {name: value.detach().cpu() for name, value in model.state_dict().items()}
    # then the weights and outputs agree (bench.gpu measured 6.5e-6 on an H200) and so do the predictions
    assert states["cpu"].keys() == states["cuda"].keys()
    for name, value in states["cpu"].items():
        torch.testing.assert_close(states["cuda"][name], value, atol=1e-4, rtol=1e-4, msg=name)
    torch.testing.assert_close(probabilities["cuda"], probabilities["cpu"], atol=1e-4, rtol=1e-4)
    assert torch.equal(probabilities["cuda"].argmax(dim=1), probabilities["cpu"].argmax(dim=1))
