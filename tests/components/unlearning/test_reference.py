"""The two reference points: the untouched original model and retraining from scratch on D_r."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest
import torch
from pydantic import ValidationError
from torch import nn

import components.unlearning  # noqa: F401  (registers every method)
from components.unlearning import reference
from components.unlearning.base import UnlearningTask, build_unlearner

TaskFactory = Callable[..., UnlearningTask]


def _same_weights(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_original_returns_an_equal_copy_in_zero_seconds(tiny_task: TaskFactory) -> None:
    # given
    task = tiny_task()
    task.original.train()  # the copy must come back in eval mode whatever the original's mode
    # when
    result = build_unlearner("original")(task)
    # then
    assert result.model is not task.original
    assert _same_weights(result.model, task.original)
    assert all(p is not q for p, q in zip(result.model.parameters(), task.original.parameters(), strict=True))
    assert result.seconds == 0.0
    assert not result.model.training
    assert task.original.training  # the original's own mode is left alone


def test_original_copy_is_independent(tiny_task: TaskFactory) -> None:
    # given
    task = tiny_task()
    before = {k: v.clone() for k, v in task.original.state_dict().items()}
    result = build_unlearner("original")(task)
    # when
    with torch.no_grad():
        for parameter in result.model.parameters():
            parameter.add_(1.0)
    # then
    assert all(torch.equal(task.original.state_dict()[k], v) for k, v in before.items())


def test_retrain_trains_a_fresh_model_on_retain_only(tiny_task: TaskFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    # given
    task = tiny_task()
    original = {k: v.clone() for k, v in task.original.state_dict().items()}
    seen: dict[str, Any] = {}
    real_train = reference.train_classifier

    def spy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        seen.update(model=model, images=images, labels=labels, args=args)
        return real_train(model, images, labels, *args, **kwargs)

    monkeypatch.setattr(reference, "train_classifier", spy)
    # when
    result = build_unlearner("retrain")(task)
    # then
    assert torch.equal(seen["images"], task.retain.images)
    assert torch.equal(seen["labels"], task.retain.labels)
    assert seen["args"][:2] == (task.train_config, task.seed)
    assert seen["model"] is not task.original
    assert result.model is seen["model"]
    assert result.seconds > 0
    assert not result.model.training
    assert not _same_weights(result.model, task.original)
    assert all(torch.equal(task.original.state_dict()[k], v) for k, v in original.items())


def test_retrain_is_deterministic_per_seed(tiny_task: TaskFactory) -> None:
    # given
    task = tiny_task()
    retrain = build_unlearner("retrain")
    # when
    first, second = retrain(task).model, retrain(task).model
    other = retrain(dataclasses.replace(task, seed=5)).model
    # then
    assert _same_weights(first, second)
    assert not _same_weights(first, other)


def test_retrain_does_not_depend_on_the_global_rng(tiny_task: TaskFactory) -> None:
    # given
    task = tiny_task()
    retrain = build_unlearner("retrain")
    # when
    torch.manual_seed(100)
    first = retrain(task).model
    torch.manual_seed(200)
    second = retrain(task).model
    # then
    assert _same_weights(first, second)


@pytest.mark.parametrize("name", ["original", "retrain"])
def test_reference_methods_take_no_settings(name: str) -> None:
    with pytest.raises(ValidationError):
        build_unlearner(name, {"epochs": 3})
