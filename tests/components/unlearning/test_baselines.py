"""Tests for the peer baselines (``components.unlearning.baselines``) on tiny 1x8x8 tasks."""

from __future__ import annotations

import copy
import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError

from components.models.backbones import Backbone, build_backbone
from components.training import TrainConfig, train_classifier
from components.unlearning.base import (
    METHODS,
    LabeledTensors,
    UnlearningTask,
    build_config,
    build_unlearner,
)
from components.unlearning.baselines import BASELINES
from components.unlearning.boundary_shrink import shrink_labels
from components.unlearning.finetune import Progress
from components.unlearning.random_label import random_wrong_labels
from components.unlearning.salun import SalUn, SalUnConfig, top_fraction_mask
from components.unlearning.scrub import Scrub, ScrubConfig
from components.unlearning.unsir import Unsir, UnsirConfig

SHAPE = (1, 8, 8)
K = 10

# Settings that keep every method to a handful of steps.
SMALL: dict[str, dict[str, Any]] = {
    "ft": {"epochs": 1},
    "ga": {"epochs": 2},
    "neggrad_plus": {"epochs": 2},
    "rl": {"epochs": 1},
    "boundary_shrink": {"epochs": 2},
    "l1_sparse": {"epochs": 1},
    "salun": {"epochs": 1},
    "scrub": {"epochs": 2, "max_steps": 1},
    "bad_teacher": {"epochs": 1},
    "unsir": {"noise_steps": 3, "noise_repeats": 2, "retain_fraction": 0.5},
}


def build_model() -> Backbone:
    return build_backbone("small_cnn", SHAPE, K)


def random_task(kind: str = "sample", seed: int = 0, n_retain: int = 64, n_forget: int = 16) -> UnlearningTask:
    """Random images; ``class`` forgets every sample of classes 0 and 1, ``sample`` a random subset."""
    generator = torch.Generator().manual_seed(123)
    images = torch.randn(n_retain + n_forget, *SHAPE, generator=generator)
    if kind == "class":
        labels = torch.cat([torch.randint(2, K, (n_retain,), generator=generator), torch.arange(n_forget) % 2])
    else:
        labels = torch.randint(0, K, (n_retain + n_forget,), generator=generator)
    torch.manual_seed(0)
    original = build_model().eval()
    return UnlearningTask(
        original=original,
        forget=LabeledTensors(images[n_retain:], labels[n_retain:]),
        retain=LabeledTensors(images[:n_retain], labels[:n_retain]),
        num_classes=K,
        seed=seed,
        build_model=build_model,
        train_config=TrainConfig(epochs=1),
    )


@functools.cache
def toy_task(seed: int = 0) -> UnlearningTask:
    """A SmallCNN trained on separable data (one bright pixel per class); D_f is a random quarter.

    Built once per session: the methods never modify ``task.original``.
    """
    generator = torch.Generator().manual_seed(7)
    n = 400
    labels = torch.arange(n) % K
    images = 0.3 * torch.randn(n, *SHAPE, generator=generator)
    images[torch.arange(n), 0, labels // 4 * 2, labels % 4 * 2] += 3.0
    torch.manual_seed(0)
    model = build_model()
    train_classifier(model, images, labels, TrainConfig(epochs=15, lr=1e-3, weight_decay=0.0), seed=0)
    order = torch.randperm(n, generator=generator)
    forget, retain = order[:100], order[100:]
    return UnlearningTask(
        original=model.eval(),
        forget=LabeledTensors(images[forget], labels[forget]),
        retain=LabeledTensors(images[retain], labels[retain]),
        num_classes=K,
        seed=seed,
        build_model=build_model,
        train_config=TrainConfig(epochs=1),
    )


def accuracy(model: torch.nn.Module, data: LabeledTensors) -> float:
    with torch.no_grad():
        return (model(data.images).argmax(1) == data.labels).float().mean().item()


def state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {key: value.detach().clone() for key, value in model.state_dict().items()}


def assert_same_state(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_every_baseline_is_registered() -> None:
    assert set(BASELINES) <= set(METHODS)
    assert len(set(BASELINES)) == len(BASELINES) == 10


@pytest.mark.parametrize("kind", ["sample", "class"])
@pytest.mark.parametrize("name", BASELINES)
def test_baseline_contract(name: str, kind: str) -> None:
    # given a tiny task and a recording callback
    task = random_task(kind)
    before = state(task.original)
    events: list[tuple[str, dict[str, float], int]] = []

    # when the method runs
    result = build_unlearner(name, SMALL[name])(task, [lambda e, v, s: events.append((e, dict(v), s))])

    # then it returns a fresh eval-mode model of the same architecture, timed, with finite outputs
    assert type(result.model) is type(task.original)
    assert result.model is not task.original
    assert {k: v.shape for k, v in result.model.state_dict().items()} == {k: v.shape for k, v in before.items()}
    assert not result.model.training
    assert result.seconds > 0
    with torch.no_grad():
        assert torch.isfinite(result.model(task.forget.images)).all()
    assert all(torch.isfinite(torch.tensor(value)) for value in result.history.values())
    # the original is untouched
    assert_same_state(state(task.original), before)
    assert not task.original.training
    assert all(p.requires_grad for p in task.original.parameters())
    # the progress events announce exactly the steps taken
    assert events[0][0] == "unlearn_start"
    steps = [event for event in events if event[0] == "unlearn_step"]
    assert len(steps) == events[0][1]["total_steps"] > 0
    assert all("loss" in values for _, values, _ in steps)
    # the model moved
    assert any(not torch.equal(v, result.model.state_dict()[k]) for k, v in before.items())


@pytest.mark.parametrize("name", BASELINES)
def test_baseline_is_deterministic_for_a_seed(name: str) -> None:
    first = build_unlearner(name, SMALL[name])(random_task(seed=3)).model
    second = build_unlearner(name, SMALL[name])(random_task(seed=3)).model
    other = build_unlearner(name, SMALL[name])(random_task(seed=4)).model
    assert_same_state(state(first), state(second))
    assert any(not torch.equal(v, other.state_dict()[k]) for k, v in first.state_dict().items())


@pytest.mark.parametrize("name", BASELINES)
def test_config_rejects_unknown_keys_and_is_frozen(name: str) -> None:
    with pytest.raises(ValidationError):
        build_config(name, {"no_such_setting": 1})
    config = build_config(name)
    with pytest.raises(ValidationError):
        config.lr = 1.0  # type: ignore[misc]


def test_gradient_ascent_lowers_forget_accuracy() -> None:
    task = toy_task()
    assert accuracy(task.original, task.forget) > 0.9
    model = build_unlearner("ga", {"lr": 1e-3, "epochs": 3})(task).model
    assert accuracy(model, task.forget) < accuracy(task.original, task.forget) - 0.3


def test_neggrad_plus_forgets_less_of_the_retain_set_than_ga() -> None:
    task = toy_task()
    ga = build_unlearner("ga", {"lr": 1e-3, "epochs": 3})(task).model
    ngp = build_unlearner("neggrad_plus", {"lr": 1e-3, "epochs": 3, "alpha": 0.9})(task).model
    assert accuracy(ngp, task.retain) > accuracy(ga, task.retain)


def test_random_labels_are_never_the_true_label() -> None:
    labels = torch.arange(2000) % K
    drawn = random_wrong_labels(labels, K, torch.Generator().manual_seed(0))
    assert (drawn != labels).all()
    assert ((drawn >= 0) & (drawn < K)).all()
    assert set(drawn[labels == 3].tolist()) == set(range(K)) - {3}  # uniform over the wrong classes


def test_boundary_shrink_labels_differ_from_true_labels() -> None:
    task = toy_task()
    new, crossed = shrink_labels(
        copy.deepcopy(task.original).eval(), task.forget.images, task.forget.labels, 0.1, batch_size=32
    )
    assert (new != task.forget.labels).all()
    assert ((new >= 0) & (new < K)).all()
    assert crossed.dtype == torch.bool
    assert len(crossed) == len(new)
    # a large step crosses the boundary for most samples, and then the label is the perturbed prediction
    _, crossed_far = shrink_labels(task.original, task.forget.images, task.forget.labels, 5.0, batch_size=32)
    assert crossed_far.float().mean() > crossed.float().mean()


def test_scrub_max_pass_increases_forget_divergence() -> None:
    task = toy_task()
    scrub = Scrub(ScrubConfig(lr=1e-3), task)
    progress = Progress((), 0)
    assert scrub.forget_divergence() == pytest.approx(0.0, abs=1e-6)  # the student starts as the teacher
    scrub.min_pass(progress)  # move off the teacher, where the KL gradient vanishes
    before = scrub.forget_divergence()
    scrub.max_pass(progress)
    assert scrub.forget_divergence() > before + 1e-3


@pytest.mark.parametrize(
    ("optimizer", "weight_decay"), [("sgd", 5e-4), ("sgd", 0.0), ("adam", 1e-2)], ids=["sgd-wd", "sgd", "adam-wd"]
)
def test_salun_frozen_weights_stay_exactly_at_theta0(optimizer: str, weight_decay: float) -> None:
    # given SalUn with momentum / weight decay that would move zero-gradient weights
    task = random_task()
    config = SalUnConfig(
        optimizer=optimizer, weight_decay=weight_decay, momentum=0.9, lr=1e-2, epochs=2, mask_ratio=0.3
    )
    salun = SalUn(config, task)

    # when it runs
    result = salun.run()

    # then the frozen entries equal theta_0 bit for bit, the trainable ones moved, and the ratio holds
    theta0 = list(task.original.parameters())
    trainable = salun.trainable
    total = sum(mask.numel() for mask in trainable)
    assert sum(int(mask.sum()) for mask in trainable) == round(0.3 * total)
    moved = 0
    for parameter, original, mask in zip(result.model.parameters(), theta0, trainable, strict=True):
        assert torch.equal(parameter[~mask], original[~mask])
        moved += int((parameter[mask] != original[mask]).sum())
    assert moved > 0.5 * round(0.3 * total)
    # their optimiser state (momentum buffer, Adam moments) is cleared, so no stale update is pending
    optimizer_state = salun.rl.optimizer.state
    buffers = [
        (value, mask)
        for parameter, mask in zip(result.model.parameters(), trainable, strict=True)
        for value in optimizer_state[parameter].values()
        if isinstance(value, torch.Tensor) and value.shape == parameter.shape
    ]
    assert buffers
    assert all((value[~mask] == 0).all() for value, mask in buffers)
    # and the returned model carries no gradient mask any more
    loss = F.cross_entropy(result.model(task.forget.images), task.forget.labels)
    loss.backward()
    assert any((p.grad[~m] != 0).any() for p, m in zip(result.model.parameters(), trainable, strict=True))


def test_salun_mask_ranks_saliency_globally() -> None:
    scores = [torch.tensor([0.1, 5.0, 0.2]), torch.tensor([[3.0, 0.0], [4.0, 1.0]])]
    masks = top_fraction_mask(scores, 3 / 7)
    assert masks[0].tolist() == [False, True, False]
    assert masks[1].tolist() == [[True, False], [True, False]]


def test_unsir_picks_class_or_sample_level_noise() -> None:
    class_level = Unsir(UnsirConfig(noise_steps=1), random_task("class"))
    sample_level = Unsir(UnsirConfig(noise_steps=1), random_task("sample"))
    assert class_level.level == "class"
    assert sample_level.level == "sample"
    noise, labels = class_level.make_noise()
    assert noise.shape == (2 * 32, *SHAPE)
    assert set(labels.tolist()) == {0, 1}
    noise, labels = sample_level.make_noise()
    assert noise.shape == (16, *SHAPE)
    assert sorted(labels.tolist()) == sorted(sample_level.task.forget.labels.tolist())


@pytest.mark.parametrize("dataset", ["digits", "fashion_mnist"])
def test_bench_grids_validate_against_the_method_configs(dataset: str) -> None:
    import components.unlearning  # noqa: F401  (registers mixunlearn and its variants)
    from components.bench.tuning import expand_grid, grid_size, grid_stages, load_grids

    grids = load_grids(Path(__file__).resolve().parents[3] / "grids.yaml", dataset)
    assert set(BASELINES) | {"mixunlearn"} <= set(grids)
    for name, grid in grids.items():
        # one size order for every method (grids.yaml header); a staged grid (MixUnlearn's) counts every stage
        assert 4 <= grid_size(grid) <= 15, name
        for stage in grid_stages(grid):
            for point in expand_grid(stage):
                build_config(name, point)  # raises on an unknown key or an out-of-range value
