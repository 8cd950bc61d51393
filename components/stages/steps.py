"""The work of each pipeline stage, free of any orchestrator.

The Prefect flow (``pipelines/flows.py``) and the DVC stages (``mixunlearn stage <name>``, ``components/stages/
repro.py``) both call these functions and a ``RunContext``, so ``dvc repro`` and a flow run compute the same things
from the same ``params.yaml``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from components.adapters.expectations import ValidationReport, validate_image_set
from components.config import PipelineConfig
from components.data.datasets import load_dataset
from components.data.types import DataError, ImageSet
from components.deletion import policy
from components.deletion.store import DataStore, ForgetBatch, StoredDataset
from components.stages.context import RunContext
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


def run_context(config: PipelineConfig, stored: StoredDataset) -> RunContext:
    """The run's context on the stored data (before a batch is known)."""
    return RunContext.create(config, stored.bundle())


def batch_context(context: RunContext, batch: ForgetBatch, data: BatchData) -> RunContext:
    """``context`` for this batch: its forget kind, and the tuned scenario it is an instance of (if any)."""
    return context.for_batch(
        batch.forgotten_classes, policy.tuned_scenario(batch.forgotten_classes, data.forget.labels)
    )


def validate_data(stored: StoredDataset) -> list[ValidationReport]:
    """Great Expectations contracts on every split (unique IDs, labels, pixel range, shapes)."""
    bundle = stored.bundle()
    return [
        validate_image_set(images.ids, images.labels, images.images, bundle.num_classes, bundle.image_shape)
        for images in (stored.pool, stored.val, stored.test)
    ]


def split_for_batch(pool: ImageSet, batch: ForgetBatch) -> BatchData:
    """(retain, forget) of the pre-batch ``pool``; the forget samples are the ones the batch names, by ID."""
    forget_mask = np.isin(pool.ids, np.asarray(batch.forget_ids))
    if int(forget_mask.sum()) != len(batch.forget_ids):
        raise DataError(f"batch {batch.batch_id} names IDs that are not in this data version")
    return BatchData(
        retain=pool.subset(np.flatnonzero(~forget_mask)),
        forget=pool.subset(np.flatnonzero(forget_mask)),
    )


def forgotten_since(earlier_pool: ImageSet, current_pool: ImageSet) -> BatchData:
    """(retain, forget) for the Retrain audit: the current pool, and every sample of ``earlier_pool`` (a data version
    a from-scratch model was trained on) that is no longer in it."""
    forget_mask = ~np.isin(earlier_pool.ids, current_pool.ids)
    return BatchData(retain=current_pool, forget=earlier_pool.subset(np.flatnonzero(forget_mask)))


def fully_forgotten_classes(data: BatchData) -> tuple[int, ...]:
    """Classes with forgotten samples and none left in the retained data: the audit's class-level semantics."""
    forgotten = set(np.unique(data.forget.labels).tolist())
    return tuple(sorted(forgotten - set(np.unique(data.retain.labels).tolist())))


def verify(config: PipelineConfig, unlearned: dict[str, float | None], reference: dict[str, float | None]) -> Verdict:
    return evaluate_gates(unlearned, reference, config.verify)


def load_state(path: Path, model: torch.nn.Module) -> torch.nn.Module:
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return model.eval()
