"""The forgetting monitor: what counts as forgotten at sample and class level, and the loop stopping on it."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest
import torch
from torch import nn

import components.unlearning  # noqa: F401  (registers every method)
from components.unlearning.base import LabeledTensors, UnlearningTask, build_unlearner
from components.unlearning.monitor import ForgettingMonitor, MonitorSettings

TaskFactory = Callable[..., UnlearningTask]
CLASSES = 3
FAST = {"epochs": 1, "batch_size": 8, "generator_interval": 1, "guard": False}


class EncodedClass(nn.Module):
    """Predicts the class written in each image's first pixel: accuracy is set by how a test labels its images."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return nn.functional.one_hot(images[:, 0, 0, 0].long(), CLASSES).float()


def _samples(labels: list[int], encoded: list[int]) -> LabeledTensors:
    images = torch.zeros(len(labels), 1, 2, 2)
    images[:, 0, 0, 0] = torch.tensor(encoded, dtype=torch.float32)
    return LabeledTensors(images=images, labels=torch.tensor(labels))


def _right(labels: list[int]) -> LabeledTensors:
    return _samples(labels, labels)


def _wrong(labels: list[int]) -> LabeledTensors:
    return _samples(labels, [(label + 1) % CLASSES for label in labels])


def _monitor(forget: LabeledTensors, heldout: LabeledTensors | None, kept: list[int]) -> ForgettingMonitor:
    return ForgettingMonitor(EncodedClass(), forget, heldout, torch.tensor(kept), MonitorSettings(), seed=0)


def test_a_remembered_batch_is_not_forgotten_and_an_unseen_looking_one_is() -> None:
    remembered = _monitor(_right([0, 1] * 4), _wrong([0, 1] * 4), kept=[0, 1, 2])
    looks_unseen = _monitor(_wrong([0, 1] * 4), _right([0, 1] * 4), kept=[0, 1, 2])
    assert not remembered.class_level
    assert remembered.check() is False
    assert remembered.last_value == pytest.approx(100.0)
    assert looks_unseen.check() is True
    assert looks_unseen.last_value == pytest.approx(-100.0)


def test_held_out_samples_of_other_classes_are_not_compared() -> None:
    # given: forget and held-out agree on classes 0 and 1; held-out class 2, absent from the batch, is all wrong
    heldout = LabeledTensors(
        images=torch.cat([_right([0, 1] * 4).images, _wrong([2] * 8).images]),
        labels=torch.cat([_right([0, 1] * 4).labels, _wrong([2] * 8).labels]),
    )
    monitor = _monitor(_right([0, 1] * 4), heldout, kept=[0, 1, 2])
    # then the excess is measured on classes 0 and 1 only: zero, which is forgotten at the default limit of 0
    assert monitor.check() is True
    assert monitor.last_value == pytest.approx(0.0)


def test_a_removed_class_is_forgotten_once_its_accuracy_is_at_most_the_bound() -> None:
    remembered = _monitor(_right([0] * 8), None, kept=[1, 2])
    forgotten = _monitor(_wrong([0] * 8), None, kept=[1, 2])
    assert remembered.class_level
    assert remembered.active
    assert remembered.check() is False
    assert forgotten.check() is True


def test_without_held_out_samples_a_sample_level_monitor_cannot_decide() -> None:
    assert not _monitor(_right([0, 1]), None, kept=[0, 1, 2]).active
    assert not _monitor(_right([0, 1]), _right([2, 2]), kept=[0, 1, 2]).active


def _sample_level(task: UnlearningTask) -> UnlearningTask:
    """The batch's classes are all kept (its samples are also retained) and the held-out samples are the batch's
    own: the monitor is sample-level and active, and its excess is exactly 0 by construction."""
    retain = LabeledTensors(
        images=torch.cat([task.retain.images, task.forget.images]),
        labels=torch.cat([task.retain.labels, task.forget.labels]),
    )
    return dataclasses.replace(task, retain=retain, val=task.forget)


def test_the_loop_stops_at_the_first_check_that_finds_the_batch_forgotten(tiny_task: TaskFactory) -> None:
    # given: a limit every state meets (excess 0), a 40-step budget and 4 checks (one every 10 steps)
    task = _sample_level(tiny_task(n_forget=16))
    settings = {**FAST, "steps": 40, "stop_when_forgotten": True, "monitor_checks": 4, "monitor_max_excess": 0.0}
    steps: list[int] = []
    # when
    result = build_unlearner("mixunlearn", settings)(
        task, [lambda event, values, step: steps.append(step) if event == "unlearn_step" else None]
    )
    # then
    assert result.history["monitor_forgotten"] == 1.0
    assert result.history["monitor_stopped_step"] == 10.0
    assert max(steps) == 10


def test_a_batch_never_forgotten_runs_the_whole_budget(tiny_task: TaskFactory) -> None:
    # given: a limit no state meets (an excess below -100 points)
    task = _sample_level(tiny_task(n_forget=16))
    settings = {**FAST, "steps": 12, "stop_when_forgotten": True, "monitor_checks": 3, "monitor_max_excess": -100.0}
    result = build_unlearner("mixunlearn", settings)(task)
    assert result.history["monitor_forgotten"] == 0.0
    assert result.history["monitor_stopped_step"] == 12.0
    assert result.history["monitor_checks"] == 2.0  # at steps 4 and 8; the budget's end is not a check


def test_the_monitor_is_off_by_default(tiny_task: TaskFactory) -> None:
    result = build_unlearner("mixunlearn", {**FAST, "steps": 4})(_sample_level(tiny_task()))
    assert not any(key.startswith("monitor") for key in result.history)
