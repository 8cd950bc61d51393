"""Shared CPU-only fixtures: a tiny unlearning task on random 1x8x8 images."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from components.models.backbones import Backbone, build_backbone
from components.training import TrainConfig
from components.unlearning.base import LabeledTensors, UnlearningTask

TINY_SHAPE = (1, 8, 8)
TINY_CLASSES = 10


def make_tiny_task(seed: int = 0, n_forget: int = 16, n_retain: int = 48) -> UnlearningTask:
    """A SmallCNN f_D (random init, untrained) with random forget and retain sets; cheap enough for every test."""
    data = torch.Generator().manual_seed(1234 + seed)

    def labeled(n: int) -> LabeledTensors:
        images = torch.randn(n, *TINY_SHAPE, generator=data)
        labels = torch.randint(0, TINY_CLASSES, (n,), generator=data)
        return LabeledTensors(images=images, labels=labels)

    def build() -> Backbone:
        return build_backbone("small_cnn", TINY_SHAPE, TINY_CLASSES)

    torch.manual_seed(seed)
    original = build().eval()
    return UnlearningTask(
        original=original,
        forget=labeled(n_forget),
        retain=labeled(n_retain),
        num_classes=TINY_CLASSES,
        seed=seed,
        build_model=build,
        train_config=TrainConfig(epochs=2, batch_size=16, lr=1e-3, amp=False),
    )


@pytest.fixture
def tiny_task() -> Callable[..., UnlearningTask]:
    """Factory fixture: ``tiny_task(seed=0, n_forget=16, n_retain=48)``."""
    return make_tiny_task


REPO_ROOT = Path(__file__).resolve().parents[1]
CHECKER_CANDIDATES = (
    REPO_ROOT / "shared" / "tools" / "check_results.py",
    REPO_ROOT.parent / "shared" / "tools" / "check_results.py",
)


@pytest.fixture
def check_results() -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run the shared results.json contract checker with this interpreter: ``check_results(path, *args)``."""
    checker = next((path for path in CHECKER_CANDIDATES if path.is_file()), None)
    if checker is None:
        pytest.skip("shared/tools/check_results.py is not available next to the repository")

    def run(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(checker), str(path), *args], capture_output=True, text=True, check=False
        )

    return run
