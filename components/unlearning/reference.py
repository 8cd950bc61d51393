"""The two reference points of every comparison: the untouched original model and retraining from scratch."""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch

from components.runtime import Callback
from components.training import train_classifier
from components.unlearning.base import MethodConfig, UnlearningResult, UnlearningTask, register_method


class OriginalConfig(MethodConfig):
    """No settings: the original model is returned as it is."""


class RetrainConfig(MethodConfig):
    """No settings of its own: retraining reuses the original model's recipe (``task.train_config``) on D_r."""


@register_method("original", OriginalConfig, "No unlearning: the original model f_D")
def _original(config: OriginalConfig) -> object:
    def unlearn(task: UnlearningTask, callbacks: Sequence[Callback] = ()) -> UnlearningResult:
        return UnlearningResult(model=copy.deepcopy(task.original).eval(), seconds=0.0)

    return unlearn


@register_method("retrain", RetrainConfig, "Retrain from scratch on D_r (the gold standard)")
def _retrain(config: RetrainConfig) -> object:
    def unlearn(task: UnlearningTask, callbacks: Sequence[Callback] = ()) -> UnlearningResult:
        # Seed the fresh initialisation from the task seed so the reference is reproducible per seed.
        torch.manual_seed(task.seed)
        model = task.build_model().to(task.device)
        result = train_classifier(
            model, task.retain.images, task.retain.labels, task.train_config, task.seed, callbacks
        )
        return UnlearningResult(model=result.model, seconds=result.seconds)

    return unlearn
