"""The work of each pipeline stage, free of any orchestrator.

The Prefect flow (``pipelines/flows.py``) and the DVC stages (``mixunlearn stage <name>``) both call these
functions, so ``dvc repro`` and a flow run compute the same things from the same ``params.yaml``.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

import components.unlearning  # noqa: F401  (registers the methods)
from components.adapters.expectations import ValidationReport, validate_forget_request, validate_image_set
from components.config import PipelineConfig
from components.data.datasets import load_dataset
from components.data.types import DataError, DatasetBundle, ImageSet
from components.deletion.store import DataStore, ForgetBatch, ForgetRequest, StoredDataset
from components.models.backbones import Backbone, build_backbone
from components.runtime import Callback
from components.training import TrainConfig, train_classifier
from components.unlearning.base import LabeledTensors, UnlearningResult, UnlearningTask, build_unlearner, get_method
from components.verification.evaluate import evaluate_model
from components.verification.gates import Verdict, evaluate_gates


@dataclass(frozen=True)
class BatchData:
    """The samples a batch splits the pre-batch pool into."""

    retain: ImageSet
    forget: ImageSet


def prepare_data(config: PipelineConfig, store: DataStore) -> tuple[StoredDataset, bool]:
    """The current data version, materialised from the source dataset on first use (returns whether it was)."""
    name = config.base.dataset
    created = False
    if not store.is_materialised(name):
        bundle = load_dataset(name, config.base.data_dir)
        created = store.materialise(bundle, config.data.val_fraction, config.base.seed)
    return store.load(name), created


def validate_data(stored: StoredDataset) -> list[ValidationReport]:
    """Great Expectations contracts on every split (unique IDs, labels, pixel range, shapes)."""
    bundle = stored.bundle()
    return [
        validate_image_set(images.ids, images.labels, images.images, bundle.num_classes, bundle.image_shape)
        for images in (stored.pool, stored.val, stored.test)
    ]


def recipe_for(config: PipelineConfig, bundle: DatasetBundle) -> tuple[TrainConfig, str]:
    recipe = config.train.recipe(bundle.name)
    return recipe, recipe.model or bundle.default_model


def model_builder(config: PipelineConfig, bundle: DatasetBundle) -> Backbone:
    _, model_name = recipe_for(config, bundle)
    return build_backbone(model_name, bundle.image_shape, bundle.num_classes)


def tensors(bundle: DatasetBundle, images: ImageSet, device: torch.device) -> LabeledTensors:
    return LabeledTensors(
        images=bundle.to_tensor(images.images, device),
        labels=torch.as_tensor(images.labels, dtype=torch.long, device=device),
    )


def train_model(
    config: PipelineConfig,
    bundle: DatasetBundle,
    images: ImageSet,
    device: torch.device,
    callbacks: Sequence[Callback] = (),
) -> tuple[Backbone, float]:
    """Train a fresh model with the dataset's recipe (original on D, reference on D_r); (model, seconds)."""
    recipe, _ = recipe_for(config, bundle)
    torch.manual_seed(config.base.seed)
    model = model_builder(config, bundle).to(device)
    data = tensors(bundle, images, device)
    result = train_classifier(model, data.images, data.labels, recipe, config.base.seed, callbacks)
    return model, result.seconds


def validate_requests(
    config: PipelineConfig, store: DataStore, stored: StoredDataset, requests: Sequence[ForgetRequest]
) -> list[tuple[ForgetRequest, ValidationReport]]:
    """Contracts on each pending request: IDs exist, unique, not already forgotten, batch within policy."""
    known = np.concatenate([stored.pool.ids, stored.val.ids, stored.test.ids])
    forgotten = sorted(store.forgotten_ids(stored.name))
    return [
        (
            request,
            validate_forget_request(
                list(request.ids), known, forgotten, config.pipeline.max_batch_fraction, len(stored.pool)
            ),
        )
        for request in requests
    ]


def split_for_batch(stored: StoredDataset, batch: ForgetBatch) -> BatchData:
    """(retain, forget) of the pre-batch pool; the forget samples are the ones the batch names, by ID."""
    forget_mask = np.isin(stored.pool.ids, np.asarray(batch.forget_ids))
    if int(forget_mask.sum()) != len(batch.forget_ids):
        raise DataError(f"batch {batch.batch_id} names IDs that are not in this data version")
    return BatchData(
        retain=stored.pool.subset(np.flatnonzero(~forget_mask)),
        forget=stored.pool.subset(np.flatnonzero(forget_mask)),
    )


def unlearn(
    config: PipelineConfig,
    bundle: DatasetBundle,
    original: Backbone,
    batch_data: BatchData,
    forgotten_classes: tuple[int, ...],
    device: torch.device,
    callbacks: Sequence[Callback] = (),
) -> UnlearningResult:
    """Run the configured method (MixUnlearn by default) on the batch; the original model is left unchanged."""
    method = config.pipeline.method
    spec = get_method(method)
    kind = "class" if forgotten_classes else "sample"
    settings = config.unlearn.settings(spec.section, bundle.name, kind, method)
    recipe, _ = recipe_for(config, bundle)
    task = UnlearningTask(
        original=copy.deepcopy(original).to(device).eval(),
        forget=tensors(bundle, batch_data.forget, device),
        retain=tensors(bundle, batch_data.retain, device),
        num_classes=bundle.num_classes,
        seed=config.base.seed,
        build_model=lambda: model_builder(config, bundle),
        train_config=recipe,
    )
    return build_unlearner(method, settings)(task, callbacks)


def evaluate(
    model: torch.nn.Module,
    bundle: DatasetBundle,
    batch_data: BatchData,
    test: ImageSet,
    forgotten_classes: tuple[int, ...],
    seed: int,
    device: torch.device,
) -> dict[str, float | None]:
    """Both protocols' metrics on this batch's retain/forget sets and the current test split."""
    return evaluate_model(
        model.to(device),
        tensors(bundle, batch_data.retain, device),
        tensors(bundle, batch_data.forget, device),
        tensors(bundle, test, device),
        forgotten_classes,
        seed,
    )


def verify(config: PipelineConfig, unlearned: dict[str, float | None], reference: dict[str, float | None]) -> Verdict:
    return evaluate_gates(unlearned, reference, config.verify)


def load_state(path: Path, model: torch.nn.Module) -> torch.nn.Module:
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return model.eval()
