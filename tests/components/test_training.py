"""The shared training loop: it learns, is reproducible per seed, reports through callbacks; crop_flip."""

from __future__ import annotations

import pytest
import torch

from components.models.backbones import Backbone, build_backbone
from components.training import TrainConfig, crop_flip, make_optimizer, train_classifier

CLASSES = 4


def _separable(n: int = 64, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """1x8x8 images whose class is the bright 4x4 quadrant, plus mild noise."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % CLASSES
    images = 0.2 * torch.randn(n, 1, 8, 8, generator=generator)
    for index, label in enumerate(labels.tolist()):
        row, col = divmod(label, 2)
        images[index, 0, 4 * row : 4 * row + 4, 4 * col : 4 * col + 4] += 2.0
    return images, labels


def _model(seed: int = 0) -> Backbone:
    torch.manual_seed(seed)
    return build_backbone("small_cnn", (1, 8, 8), CLASSES)


def _accuracy(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model.eval()(images).argmax(dim=1) == labels).float().mean())


RECIPE = TrainConfig(epochs=6, batch_size=16, lr=3e-3, weight_decay=0.0, amp=False)


def test_training_drives_loss_down_and_accuracy_up() -> None:
    # given
    images, labels = _separable()
    model = _model()
    before = _accuracy(model, images, labels)
    # when
    result = train_classifier(model, images, labels, RECIPE, seed=0)
    # then
    assert len(result.epoch_losses) == RECIPE.epochs
    assert result.epoch_losses[-1] < 0.5 * result.epoch_losses[0]
    assert _accuracy(result.model, images, labels) >= 0.95 > before + 0.3
    assert result.model is model
    assert result.seconds > 0


@pytest.mark.parametrize(
    "recipe",
    [
        RECIPE,
        RECIPE.model_copy(update={"optimizer": "sgd", "lr": 0.05, "schedule": "cosine"}),
    ],
    ids=["adam-constant", "sgd-cosine"],
)
def test_same_seed_gives_identical_weights(recipe: TrainConfig) -> None:
    # given
    images, labels = _separable(32)
    recipe = recipe.model_copy(update={"epochs": 2})
    # when
    first = train_classifier(_model(), images, labels, recipe, seed=3).model.state_dict()
    second = train_classifier(_model(), images, labels, recipe, seed=3).model.state_dict()
    other = train_classifier(_model(), images, labels, recipe, seed=4).model.state_dict()
    # then
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert not all(torch.equal(first[k], other[k]) for k in first)


def test_model_is_in_eval_mode_afterwards() -> None:
    # given
    images, labels = _separable(16)
    model = _model().train()
    # when
    result = train_classifier(model, images, labels, RECIPE.model_copy(update={"epochs": 1}), seed=0)
    # then
    assert not any(module.training for module in result.model.modules())


def test_callbacks_receive_start_steps_and_epochs() -> None:
    # given: 40 samples in batches of 16 -> 3 steps per epoch, 2 epochs
    images, labels = _separable(40)
    events: list[tuple[str, dict[str, float], int]] = []
    recipe = RECIPE.model_copy(update={"epochs": 2})
    # when
    train_classifier(
        _model(), images, labels, recipe, seed=0, callbacks=[lambda e, v, s: events.append((e, dict(v), s))]
    )
    # then
    assert events[0] == ("train_start", {"total_steps": 6.0}, 0)
    steps = [(values, step) for event, values, step in events if event == "train_step"]
    assert [step for _, step in steps] == [1, 2, 3, 4, 5, 6]
    assert all(set(values) == {"loss"} and values["loss"] > 0 for values, _ in steps)
    epochs = [(values, step) for event, values, step in events if event == "train_epoch"]
    assert [(values["epoch"], step) for values, step in epochs] == [(1.0, 3), (2.0, 6)]
    assert [event for event, _, _ in events] == ["train_start"] + (["train_step"] * 3 + ["train_epoch"]) * 2


def test_crop_flip_augmentation_is_used_in_training() -> None:
    # given
    images, labels = _separable(16)
    recipe = RECIPE.model_copy(update={"epochs": 1})
    # when
    plain = train_classifier(_model(), images, labels, recipe, seed=0).model.state_dict()
    augmented_recipe = recipe.model_copy(update={"augment": "crop_flip"})
    augmented = train_classifier(_model(), images, labels, augmented_recipe, seed=0).model.state_dict()
    # then
    assert not all(torch.equal(plain[k], augmented[k]) for k in plain)


def test_crop_flip_keeps_shape_and_is_deterministic_per_generator() -> None:
    # given
    x = torch.randn(6, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    # when
    first = crop_flip(x, torch.Generator().manual_seed(11))
    second = crop_flip(x, torch.Generator().manual_seed(11))
    other = [crop_flip(x, torch.Generator().manual_seed(seed)) for seed in range(5)]
    # then
    assert first.shape == x.shape
    assert first.dtype == x.dtype
    torch.testing.assert_close(first, second, rtol=0, atol=0)
    assert any(not torch.equal(o, first) for o in other)
    assert any(not torch.equal(o, x) for o in other)


def test_crop_flip_without_shift_only_flips() -> None:
    # given: pad 0 leaves no room to shift, so each image is either unchanged or mirrored
    x = torch.randn(8, 1, 5, 5, generator=torch.Generator().manual_seed(1))
    # when
    out = crop_flip(x, torch.Generator().manual_seed(2), pad=0)
    # then
    for original, result in zip(x, out, strict=True):
        assert torch.equal(result, original) or torch.equal(result, original.flip(2))


@pytest.mark.parametrize(("name", "kind"), [("adam", torch.optim.Adam), ("sgd", torch.optim.SGD)])
def test_make_optimizer(name: str, kind: type[torch.optim.Optimizer]) -> None:
    # when
    optimizer = make_optimizer(list(_model().parameters()), name, lr=0.1, weight_decay=0.01, momentum=0.5)
    # then
    assert isinstance(optimizer, kind)
    assert optimizer.param_groups[0]["lr"] == 0.1
    assert optimizer.param_groups[0]["weight_decay"] == 0.01
