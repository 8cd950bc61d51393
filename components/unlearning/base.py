"""What every unlearning method receives and returns, and the registry that names them.

A method is a factory taking its validated config and returning a callable ``(task, callbacks) -> result``.
The registry replaces an if/elif chain: the benchmark, the CLI and the pipeline look methods up by name.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from pydantic import BaseModel, ConfigDict
from torch import nn

from components.models.backbones import Backbone
from components.runtime import Callback
from components.training import TrainConfig


@dataclass(frozen=True)
class LabeledTensors:
    """Normalised images and labels on the compute device."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class UnlearningTask:
    """Everything a method may use. ``original`` must be left unchanged: methods work on copies.

    Attributes:
        original: the trained model f_D.
        forget: D_f; retain: D_r (D = D_f + D_r).
        build_model: a freshly initialised backbone of the same architecture (for retrain-like methods).
        train_config: the recipe that trained ``original`` (retrain reuses it on D_r).
        val: the validation split, for methods or tuners that need held-out data (never the test set).
    """

    original: Backbone
    forget: LabeledTensors
    retain: LabeledTensors
    num_classes: int
    seed: int
    build_model: Callable[[], Backbone]
    train_config: TrainConfig
    val: LabeledTensors | None = None

    @property
    def device(self) -> torch.device:
        return self.forget.images.device


@dataclass(frozen=True)
class UnlearningResult:
    """The unlearned model and the wall seconds of the unlearning procedure alone (RTE, evaluation excluded)."""

    model: nn.Module
    seconds: float
    history: Mapping[str, float] = field(default_factory=dict)


class Unlearner(Protocol):
    def __call__(self, task: UnlearningTask, callbacks: Sequence[Callback] = ()) -> UnlearningResult: ...


class MethodConfig(BaseModel):
    """Base of every method's config: frozen, strict about unknown keys."""

    model_config = ConfigDict(frozen=True, extra="forbid")


@dataclass(frozen=True)
class MethodSpec:
    """A registered method: its config section in params.yaml, fixed switches, and factory."""

    name: str
    config_type: type[MethodConfig]
    section: str
    switches: Mapping[str, Any]
    factory: Callable[[Any], Unlearner]
    description: str


METHODS: dict[str, MethodSpec] = {}


def register_method(
    name: str,
    config_type: type[MethodConfig],
    description: str,
    section: str | None = None,
    switches: Mapping[str, Any] | None = None,
) -> Callable[[Callable[[Any], Unlearner]], Callable[[Any], Unlearner]]:
    """Register ``factory(config) -> Unlearner`` under ``name``.

    Args:
        section: the params.yaml key under ``unlearn`` holding this method's settings (defaults to ``name``);
            variants of one method share a section and differ only by ``switches``.
        switches: config fields this name fixes (e.g. an ablation turning a loss off); they win over params.yaml.
    """

    def decorate(factory: Callable[[Any], Unlearner]) -> Callable[[Any], Unlearner]:
        METHODS[name] = MethodSpec(
            name=name,
            config_type=config_type,
            section=section or name,
            switches=dict(switches or {}),
            factory=factory,
            description=description,
        )
        return factory

    return decorate


class Runner(Protocol):
    def run(self, callbacks: Sequence[Callback] = ()) -> UnlearningResult: ...


def register_runner(
    name: str,
    config_type: type[MethodConfig],
    description: str,
    runner: Callable[[Any, UnlearningTask], Runner],
    section: str | None = None,
    switches: Mapping[str, Any] | None = None,
) -> None:
    """Register a method whose state lives in ``runner(config, task)`` and whose work is its ``run(callbacks)``."""

    def factory(config: Any) -> Unlearner:
        def unlearn(task: UnlearningTask, callbacks: Sequence[Callback] = ()) -> UnlearningResult:
            return runner(config, task).run(callbacks)

        return unlearn

    register_method(name, config_type, description, section, switches)(factory)


def method_names() -> list[str]:
    """Registered names in registration order."""
    return list(METHODS)


def get_method(name: str) -> MethodSpec:
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; known methods: {', '.join(METHODS)}")
    return METHODS[name]


def build_config(name: str, settings: Mapping[str, Any] | None = None) -> MethodConfig:
    """Validate ``settings`` (the method's params.yaml section) with the method's switches applied on top."""
    spec = get_method(name)
    return spec.config_type.model_validate({**(settings or {}), **spec.switches})


def build_unlearner(name: str, settings: Mapping[str, Any] | None = None) -> Unlearner:
    """The callable for ``name`` configured from ``settings``."""
    return get_method(name).factory(build_config(name, settings))


def frozen_copy(model: nn.Module) -> nn.Module:
    """A deep copy in eval mode with gradients off: a teacher or attack target that training cannot move."""
    clone = copy.deepcopy(model).eval()
    for parameter in clone.parameters():
        parameter.requires_grad_(False)
    return clone
